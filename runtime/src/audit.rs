//! Audit entries and their hash chain (runtime.md §3.9). An entry is canonical JSON (keys
//! sorted, no whitespace) of `index`, `time`, `kind`, `body` and `prev`, the SHA-256 of the
//! entry before it; its own hash is the SHA-256 of those bytes. Any edit, deletion,
//! reordering or truncation of stored entries breaks the chain, which [`verify_chain`] finds.

use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry waiting for its place in the chain (index and `prev` are assigned by the one
/// writer, in the order entries are written).
#[derive(Debug, Clone)]
pub struct PendingEntry {
    /// Unix milliseconds.
    pub time_ms: i64,
    pub kind: &'static str,
    pub body: Json,
}

/// An entry's canonical bytes and hash, given its place.
pub fn seal(index: u64, prev: &str, entry: &PendingEntry) -> (String, String) {
    seal_text(index, prev, entry, &entry.body.to_string())
}

/// [`seal`] with the body already serialized (by the thread that made the entry).
pub fn seal_text(index: u64, prev: &str, entry: &PendingEntry, body: &str) -> (String, String) {
    // The canonical text written directly, keys in order (body, index, kind, prev, time),
    // without copying the body into a new map: this runs on the journal's one thread for
    // every entry. serde_json's map is a B-tree (no `preserve_order`), so the body's own keys
    // come out sorted, recursively. `canonical_text_is_the_sorted_json` checks the equivalence.
    let kind = Json::from(entry.kind).to_string();
    let time = format_time(entry.time_ms);
    let mut text = String::with_capacity(body.len() + prev.len() + 80);
    text.push_str("{\"body\":");
    text.push_str(body);
    text.push_str(",\"index\":");
    text.push_str(&index.to_string());
    text.push_str(",\"kind\":");
    text.push_str(&kind);
    text.push_str(",\"prev\":\"");
    text.push_str(prev);
    text.push_str("\",\"time\":\"");
    text.push_str(&time);
    text.push_str("\"}");
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    (text, hash)
}

/// Domain of a checkpoint signature (never confused with a bundle signature).
pub const CHECKPOINT_DOMAIN: &str = "polctl-audit-checkpoint-v1";

/// What a checkpoint signs: canonical JSON of the index of the last entry it covers, that
/// entry's hash (the head of the chain) and the time it was signed.
pub fn checkpoint_message(index: u64, head: &str, time_ms: i64) -> Vec<u8> {
    json!({ "index": index, "head": head, "time": format_time(time_ms) })
        .to_string()
        .into_bytes()
}

/// RFC 3339 in UTC with milliseconds.
pub fn format_time(time_ms: i64) -> String {
    let seconds = time_ms.div_euclid(1000);
    let millis = time_ms.rem_euclid(1000);
    let text = polctl_lang::eval::time::format_rfc3339(seconds);
    // `...T14:03:00Z` → `...T14:03:00.123Z`
    match text.strip_suffix('Z') {
        Some(stem) => format!("{stem}.{millis:03}Z"),
        None => text,
    }
}

/// Unix milliseconds of an RFC 3339 date-time (fractions of a second kept to the
/// millisecond); `None` if it is not one.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    let seconds = polctl_lang::eval::time::parse_rfc3339(text)?;
    let millis = match text.get(19..).and_then(|rest| rest.strip_prefix('.')) {
        Some(fraction) => {
            let digits: String = fraction
                .chars()
                .take_while(char::is_ascii_digit)
                .chain(std::iter::repeat('0'))
                .take(3)
                .collect();
            digits.parse::<i64>().ok()?
        }
        None => 0,
    };
    Some(seconds * 1000 + millis)
}

/// Why a stored chain does not verify: the first bad entry and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub index: u64,
    pub message: String,
}

/// Checks stored entries `(index, text, hash)` in order, starting after `(index, hash)` of the
/// entry before them (`None`: from the first entry).
pub fn verify_chain<'a>(
    start: Option<(u64, String)>,
    entries: impl IntoIterator<Item = (u64, &'a str, &'a str)>,
) -> Result<Option<(u64, String)>, ChainBreak> {
    let mut last = start;
    for (index, text, stored_hash) in entries {
        let hash = check_link(last.as_ref(), index, &entry_facts(text), stored_hash)?;
        last = Some((index, hash));
    }
    Ok(last)
}

/// What can be learnt of a stored entry on its own (in parallel with other entries); the
/// chain's links are checked in order by [`check_link`].
pub struct EntryFacts {
    parse_error: Option<String>,
    index: Option<u64>,
    prev: Option<String>,
    hash: String,
    canonical: bool,
}

/// A stored entry read without building its body: the body stays the exact bytes stored.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored<'a> {
    #[serde(borrow)]
    body: &'a serde_json::value::RawValue,
    index: u64,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    prev: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
}

pub fn entry_facts(text: &str) -> EntryFacts {
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    match serde_json::from_str::<Stored>(text) {
        Ok(stored) => {
            // The stored text must be laid out as [`seal`] writes it (keys in order, no
            // whitespace), or two texts could claim one entry; the body's bytes are what the
            // hash covers. Checked without building the body, which is most of an entry.
            let kind = Json::from(stored.kind.as_ref()).to_string();
            let canonical = text.starts_with("{\"body\":")
                && text[8..].starts_with(stored.body.get())
                && text[8 + stored.body.get().len()..]
                    == format!(
                        ",\"index\":{},\"kind\":{kind},\"prev\":\"{}\",\"time\":\"{}\"}}",
                        stored.index, stored.prev, stored.time
                    );
            EntryFacts {
                parse_error: None,
                index: Some(stored.index),
                prev: Some(stored.prev.into_owned()),
                canonical,
                hash,
            }
        }
        Err(error) => EntryFacts {
            parse_error: Some(error.to_string()),
            index: None,
            prev: None,
            hash,
            canonical: false,
        },
    }
}

impl EntryFacts {
    /// The entry's `prev` field, if it could be read.
    pub fn prev(&self) -> Option<&str> {
        self.prev.as_deref()
    }
}

/// Checks an entry's place in the chain after `last`; its hash.
pub fn check_link(
    last: Option<&(u64, String)>,
    index: u64,
    facts: &EntryFacts,
    stored_hash: &str,
) -> Result<String, ChainBreak> {
    let expected_index = last.map_or(0, |(i, _)| i + 1);
    let expected_prev = last.map_or(GENESIS, |(_, h)| h.as_str());
    let broken = |message: String| ChainBreak { index, message };
    if index != expected_index {
        return Err(broken(format!(
            "entry {index} follows entry {} (an entry was deleted or moved)",
            expected_index.saturating_sub(1)
        )));
    }
    if let Some(error) = &facts.parse_error {
        return Err(broken(format!("is not JSON: {error}")));
    }
    if facts.index != Some(index) {
        return Err(broken(
            "its `index` field does not match its place".to_owned(),
        ));
    }
    if facts.prev.as_deref() != Some(expected_prev) {
        return Err(broken(
            "its `prev` is not the hash of the entry before it (an entry before it was edited, deleted or reordered)"
                .to_owned(),
        ));
    }
    if facts.hash != stored_hash || !facts.canonical {
        return Err(broken(
            "its content does not match its hash (the entry was edited)".to_owned(),
        ));
    }
    Ok(facts.hash.clone())
}

/// A decision entry's body with each argument's value replaced by `sha256:<hex>` of the
/// value's compact JSON text (`[audit] arguments = "hash"`), and so are the limit keys in the
/// decision (a limit's key is often an argument: `per args.service`), and marked
/// `"arguments": "hashed"`. The log keeps which arguments were sent, and an auditor can confirm
/// a value they hold (`printf '%s' '"refund policy"' | sha256sum`), but it does not show them.
/// A hash hides a value from reading, not from guessing: a short or predictable value (an
/// amount, an environment name) can be found by trying candidates.
pub fn hash_decision_arguments(body: &mut Json) {
    fn hash(value: &mut Json) {
        let digest = Sha256::digest(value.to_string().as_bytes());
        *value = Json::String(format!("sha256:{}", hex::encode(digest)));
    }
    if let Some(args) = body["request"]
        .get_mut("args")
        .and_then(Json::as_object_mut)
    {
        args.values_mut().for_each(hash);
    }
    if let Some(limits) = body["decision"]
        .get_mut("limits")
        .and_then(Json::as_array_mut)
    {
        for limit in limits {
            if let Some(key) = limit.get_mut("key").filter(|k| !k.is_null()) {
                hash(key);
            }
        }
    }
    body["arguments"] = json!("hashed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<(u64, String, String)> {
        let mut prev = GENESIS.to_owned();
        (0..n)
            .map(|index| {
                let entry = PendingEntry {
                    time_ms: 1_764_000_000_000 + index as i64,
                    kind: "decision",
                    body: json!({ "decision_id": format!("d-{index}"), "decision": "allow" }),
                };
                let (text, hash) = seal(index, &prev, &entry);
                prev = hash.clone();
                (index, text, hash)
            })
            .collect()
    }

    fn check(entries: &[(u64, String, String)]) -> Result<Option<(u64, String)>, ChainBreak> {
        verify_chain(
            None,
            entries.iter().map(|(i, t, h)| (*i, t.as_str(), h.as_str())),
        )
    }

    #[test]
    fn canonical_text_is_the_sorted_json() {
        let entry = PendingEntry {
            time_ms: 1_764_597_780_042,
            kind: "decision",
            body: json!({ "z": [1, {"b": "\u{1F600}\"", "a": null}], "a": 1.5 }),
        };
        let (text, _) = seal(7, GENESIS, &entry);
        let expected = json!({
            "index": 7,
            "time": format_time(entry.time_ms),
            "kind": entry.kind,
            "body": entry.body,
            "prev": GENESIS,
        })
        .to_string();
        assert_eq!(text, expected);
    }

    #[test]
    fn an_intact_chain_verifies() {
        let entries = chain(5);
        assert_eq!(check(&entries).expect("intact").map(|(i, _)| i), Some(4));
    }

    #[test]
    fn every_tampering_names_the_first_bad_entry() {
        let entries = chain(6);
        let mut edited = entries.clone();
        edited[2].1 = edited[2].1.replace("allow", "deny_");
        assert_eq!(check(&edited).map_err(|e| e.index), Err(2));

        let mut rehashed = edited.clone();
        rehashed[2].2 = hex::encode(Sha256::digest(rehashed[2].1.as_bytes()));
        assert_eq!(check(&rehashed).map_err(|e| e.index), Err(3));

        let mut deleted = entries.clone();
        deleted.remove(3);
        assert_eq!(check(&deleted).map_err(|e| e.index), Err(4));

        let mut reordered = entries.clone();
        reordered.swap(1, 2);
        assert_eq!(check(&reordered).map_err(|e| e.index), Err(2));
    }

    #[test]
    fn times_have_milliseconds() {
        assert_eq!(format_time(1_764_597_780_042), "2025-12-01T14:03:00.042Z");
        assert_eq!(
            parse_time_ms("2025-12-01T14:03:00.042Z"),
            Some(1_764_597_780_042)
        );
        assert_eq!(
            parse_time_ms("2025-12-01T14:03:00.5Z"),
            Some(1_764_597_780_500)
        );
        assert_eq!(
            parse_time_ms("2025-12-01T14:03:00Z"),
            Some(1_764_597_780_000)
        );
        assert_eq!(parse_time_ms("yesterday"), None);
    }
}
