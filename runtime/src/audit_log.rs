//! Reading the audit log under `--data` (runtime.md §3.9): `verify` (the chain and the signed
//! checkpoints), `query`, `at` and `export`. Everything here opens the state file read-only,
//! so it runs beside a live server (the server's endpoints call the same functions).

use crate::audit::{
    check_link, checkpoint_message, entry_facts, format_time, ChainBreak, CHECKPOINT_DOMAIN,
};
use crate::error::RuntimeError;
use crate::store::database_path;
use polctl_bundle::PublicKey;
use rayon::prelude::*;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;

fn open_read_only(data: &Path) -> Result<Connection, RuntimeError> {
    let path = database_path(data);
    if !path.exists() {
        return Err(RuntimeError::state(format!(
            "`{}` holds no state file (state.sqlite); is it the server's --data directory?",
            data.display()
        )));
    }
    Ok(Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?)
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub index: u64,
    pub head: String,
    pub time_ms: i64,
    pub key_id: String,
    pub signature: String,
}

/// What `audit verify` found in an intact log.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub entries: u64,
    pub head: Option<String>,
    pub checkpoints: u64,
    /// The last entry a verified checkpoint covers.
    pub checkpointed_to: Option<u64>,
    /// Entries after the last checkpoint (written in the last second before the log was
    /// read, or by a server without a key): their truncation could not be detected.
    pub uncovered: u64,
    /// The key the checkpoints were checked with; `None`: not checked (no key).
    pub key_id: Option<String>,
    /// The last entry removed by retention (`[audit] retain`): the kept log begins after it.
    pub pruned_to: Option<u64>,
    /// When that pruning happened.
    pub pruned_at: Option<String>,
}

/// Why a log does not verify.
#[derive(Debug)]
pub enum VerifyError {
    Broken(ChainBreak),
    Unreadable(RuntimeError),
}

impl From<RuntimeError> for VerifyError {
    fn from(error: RuntimeError) -> Self {
        VerifyError::Unreadable(error)
    }
}

impl From<rusqlite::Error> for VerifyError {
    fn from(error: rusqlite::Error) -> Self {
        VerifyError::Unreadable(error.into())
    }
}

/// Walks the chain entry by entry (streaming: a log of millions of entries is never held in
/// memory) and checks every checkpoint: its signature with `key`, the head it names, and that
/// no entry it covers is missing (truncation).
pub fn verify(data: &Path, key: Option<&PublicKey>) -> Result<VerifyReport, VerifyError> {
    let connection = open_read_only(data)?;
    let checkpoints = read_checkpoints(&connection)?;
    let broken = |index: u64, message: String| VerifyError::Broken(ChainBreak { index, message });
    if let Some(key) = key {
        for checkpoint in &checkpoints {
            let message =
                checkpoint_message(checkpoint.index, &checkpoint.head, checkpoint.time_ms);
            if checkpoint.key_id != key.key_id
                || !key.verify_message(CHECKPOINT_DOMAIN, &message, &checkpoint.signature)
            {
                return Err(broken(
                    checkpoint.index,
                    format!(
                        "is covered by a checkpoint whose signature does not verify with key `{}` (the checkpoint was forged or altered)",
                        key.key_id
                    ),
                ));
            }
        }
    }
    let heads: BTreeMap<u64, &str> = checkpoints
        .iter()
        .map(|c| (c.index, c.head.as_str()))
        .collect();
    // A pruned log (`[audit] retain`) begins after the entry `last` of its latest `prune`
    // entry, whose `head` is that entry's hash: the first kept entry must link to it. The
    // prune entry itself is in the chain, and a signed checkpoint must cover it (else it could
    // be a forgery appended to excuse deleted entries).
    let prune = latest_prune(&connection)?;
    let pruned_to: Option<(u64, String)> = prune.as_ref().and_then(|p| {
        Some((
            p["body"]["last"].as_u64()?,
            p["body"]["head"].as_str()?.to_owned(),
        ))
    });
    if let (Some(prune), Some(_)) = (&prune, key) {
        let index = prune["index"].as_u64().unwrap_or(0);
        if checkpoints.last().is_none_or(|c| c.index < index) {
            return Err(broken(
                index,
                "is a prune entry that no signed checkpoint covers (it may have been appended to excuse deleted entries)".to_owned(),
            ));
        }
    }
    let mut statement = connection.prepare("SELECT idx, entry, hash FROM audit ORDER BY idx")?;
    let mut rows = statement.query([])?;
    let mut last: Option<(u64, String)> = pruned_to.clone();
    let mut entries = 0u64;
    // Read in batches; what each entry says on its own (its JSON, its hash) is worked out in
    // parallel, the links in order.
    let mut batch: Vec<(u64, String, String)> = Vec::with_capacity(VERIFY_BATCH);
    loop {
        batch.clear();
        while batch.len() < VERIFY_BATCH {
            let Some(row) = rows.next()? else {
                break;
            };
            batch.push((
                row.get::<_, i64>(0)?.max(0) as u64,
                row.get(1)?,
                row.get(2)?,
            ));
        }
        if batch.is_empty() {
            break;
        }
        let facts: Vec<_> = batch
            .par_iter()
            .map(|(_, text, _)| entry_facts(text))
            .collect();
        for ((index, _, stored), facts) in batch.iter().zip(&facts) {
            // Entries of a prune's range not deleted yet (the journal removes them a chunk at
            // a time): the chain is checked from the first of them, and must arrive at the
            // prune's `head` at its `last`.
            if entries == 0 {
                if let Some((pruned_last, _)) = &pruned_to {
                    if index <= pruned_last {
                        last = index
                            .checked_sub(1)
                            .map(|before| (before, facts.prev().unwrap_or_default().to_owned()));
                    }
                }
            }
            let hash =
                check_link(last.as_ref(), *index, facts, stored).map_err(VerifyError::Broken)?;
            if let Some((pruned_last, pruned_head)) = &pruned_to {
                if index == pruned_last && hash != *pruned_head {
                    return Err(broken(
                        *index,
                        "does not match the hash the prune entry recorded for it (the log was rewritten)".to_owned(),
                    ));
                }
            }
            if let Some(head) = heads.get(index) {
                if *head != hash {
                    return Err(broken(
                        *index,
                        "does not match the signed checkpoint of this entry (the log was rewritten from here)".to_owned(),
                    ));
                }
            }
            entries += 1;
            last = Some((*index, hash));
        }
    }
    // With nothing kept after the pruned range, `last` is still the prune's own bound.
    let last_index = last.as_ref().map(|(i, _)| *i);
    if let Some(checkpoint) = checkpoints.last() {
        if last_index.is_none_or(|l| l < checkpoint.index) {
            let first_missing = last_index.map_or(0, |l| l + 1);
            return Err(broken(
                first_missing,
                format!(
                    "is missing: a signed checkpoint covers the log up to entry {} but it ends {} (the log was truncated)",
                    checkpoint.index,
                    match last_index {
                        Some(l) => format!("at entry {l}"),
                        None => "before its first entry".to_owned(),
                    }
                ),
            ));
        }
    }
    let checkpointed_to = checkpoints.last().map(|c| c.index);
    Ok(VerifyReport {
        entries,
        head: last.map(|(_, h)| h),
        checkpoints: checkpoints.len() as u64,
        checkpointed_to,
        uncovered: match (last_index, checkpointed_to) {
            (Some(l), Some(c)) => l - c,
            (Some(l), None) => l + 1,
            _ => 0,
        },
        key_id: key.map(|k| k.key_id.clone()),
        pruned_to: pruned_to.map(|(index, _)| index),
        pruned_at: prune.and_then(|p| p["time"].as_str().map(str::to_owned)),
    })
}

/// Entries read and checked at a time.
const VERIFY_BATCH: usize = 8192;

fn read_checkpoints(connection: &Connection) -> Result<Vec<Checkpoint>, RuntimeError> {
    let mut statement = connection
        .prepare("SELECT idx, head, time_ms, key_id, signature FROM checkpoints ORDER BY idx")?;
    let rows = statement.query_map([], |row| {
        Ok(Checkpoint {
            index: row.get::<_, i64>(0)?.max(0) as u64,
            head: row.get(1)?,
            time_ms: row.get(2)?,
            key_id: row.get(3)?,
            signature: row.get(4)?,
        })
    })?;
    let mut checkpoints = Vec::new();
    for row in rows {
        checkpoints.push(row?);
    }
    Ok(checkpoints)
}

/// What `audit query` selects. Times are Unix milliseconds, inclusive.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Entry kind (`decision` unless said otherwise).
    pub kind: Option<String>,
    pub agent: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Entries after this index only (paging).
    pub after: Option<u64>,
    pub limit: usize,
}

/// Entries matching a query, in log order, as their JSON.
pub fn query(data: &Path, query: &Query) -> Result<Vec<Json>, RuntimeError> {
    let connection = open_read_only(data)?;
    let mut statement = connection.prepare_cached(
        "SELECT entry FROM audit
         WHERE kind = ?1
           AND (?2 IS NULL OR time_ms >= ?2) AND (?3 IS NULL OR time_ms <= ?3)
           AND idx > ?4
           AND (?5 IS NULL OR json_extract(entry, '$.body.request.agent.id') = ?5)
           AND (?6 IS NULL OR json_extract(entry, '$.body.request.tool') = ?6)
           AND (?7 IS NULL OR json_extract(entry, '$.body.decision.decision') = ?7)
         ORDER BY idx LIMIT ?8",
    )?;
    let rows = statement.query_map(
        params![
            query.kind.as_deref().unwrap_or("decision"),
            query.since_ms,
            query.until_ms,
            query.after.map_or(-1, |a| a.min(i64::MAX as u64) as i64),
            query.agent,
            query.tool,
            query.decision,
            query.limit.min(i64::MAX as usize) as i64,
        ],
        |row| row.get::<_, String>(0),
    )?;
    let mut entries = Vec::new();
    for row in rows {
        if let Ok(entry) = serde_json::from_str(&row?) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// What was in effect after some entries: the stable bundle, the rollout, the operator
/// context. Built by replaying `activate`, `rollback`, `rollout` and `context` entries in
/// order; a `prune` entry carries it as of the last entry it removed, so `at` still answers
/// for times after the kept log begins.
#[derive(Debug, Clone, Default)]
pub struct InEffect {
    stable: Json,
    rollout: Option<Json>,
    plan: Option<String>,
    all_tenants: serde_json::Map<String, Json>,
    tenants: BTreeMap<String, serde_json::Map<String, Json>>,
}

/// The entry kinds that change what is in effect.
const IN_EFFECT_KINDS: &str = "'activate', 'rollback', 'rollout', 'context'";

impl InEffect {
    /// The state a `prune` entry's `in_effect` holds.
    pub fn from_snapshot(snapshot: &Json) -> InEffect {
        let object = |value: &Json| value.as_object().cloned().unwrap_or_default();
        InEffect {
            stable: snapshot["stable"].clone(),
            rollout: Some(snapshot["rollout"].clone()).filter(|r| !r.is_null()),
            plan: snapshot["plan"].as_str().map(str::to_owned),
            all_tenants: object(&snapshot["context"]["all_tenants"]),
            tenants: snapshot["context"]["tenants"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(tenant, values)| (tenant.clone(), object(values)))
                .collect(),
        }
    }

    pub fn snapshot(&self) -> Json {
        json!({
            "stable": self.stable,
            "rollout": self.rollout,
            "plan": self.plan,
            "context": { "all_tenants": self.all_tenants, "tenants": self.tenants },
        })
    }

    /// Applies one entry (of any kind; those that change nothing are skipped).
    pub fn apply(&mut self, index: i64, entry: &Json) {
        let body = &entry["body"];
        match entry["kind"].as_str() {
            Some("activate" | "rollback") => {
                self.stable = json!({
                    "sequence": body["sequence"],
                    "revision": body["revision"],
                    "name": body["name"],
                    "since": entry["time"],
                    "by": body["by"],
                    "entry": index,
                });
                // An activation ends any rollout (its completion, a switch, a rollback).
                self.rollout = None;
            }
            Some("rollout") => {
                if let Some(text) = body["plan"].as_str() {
                    self.plan = Some(text.to_owned());
                }
                let events = body["events"].as_array();
                let stage = events
                    .and_then(|e| e.last())
                    .map(|e| e["stage"].clone())
                    .or_else(|| self.rollout.as_ref().map(|r| r["stage"].clone()))
                    .unwrap_or(Json::Null);
                let phase = body["phase"].as_str().unwrap_or("running").to_owned();
                let plan = self
                    .plan
                    .as_deref()
                    .and_then(|text| polctl_rollout::plan::parse_plan(text).ok());
                let traffic = match phase.as_str() {
                    "aborted" => Some(0.0),
                    "completed" => Some(100.0),
                    _ => plan.as_ref().and_then(|p| {
                        p.stages
                            .iter()
                            .find(|s| Some(s.name.as_str()) == stage.as_str())
                            .map(|s| s.traffic)
                    }),
                };
                self.rollout = Some(json!({
                    "rollout_id": body["rollout_id"],
                    "sequence": body["sequence"],
                    "stage": stage,
                    "phase": phase,
                    "traffic": traffic,
                    "entry": index,
                }));
            }
            Some("context") => {
                let slot = match body["tenant"].as_str() {
                    Some(tenant) => self.tenants.entry(tenant.to_owned()).or_default(),
                    None => &mut self.all_tenants,
                };
                if let Some(set) = body["set"].as_object() {
                    for (name, value) in set {
                        slot.insert(name.clone(), value.clone());
                    }
                }
                for name in body["unset"].as_array().into_iter().flatten() {
                    if let Some(name) = name.as_str() {
                        slot.remove(name);
                    }
                }
            }
            _ => {}
        }
    }

    /// What was in effect after the entries up to `last_index` (inclusive) on `connection`,
    /// starting from the latest prune's state.
    pub fn through(connection: &Connection, last_index: u64) -> Result<InEffect, RuntimeError> {
        let prune = latest_prune(connection)?;
        InEffect::replay(connection, prune.as_ref(), "idx", last_index as i64)
    }

    /// The prune's state (if any), then every kept entry that changes what is in effect with
    /// `column` (`idx` or `time_ms`) at most `bound`.
    fn replay(
        connection: &Connection,
        prune: Option<&Json>,
        column: &str,
        bound: i64,
    ) -> Result<InEffect, RuntimeError> {
        let mut state = prune
            .map(|prune| InEffect::from_snapshot(&prune["body"]["in_effect"]))
            .unwrap_or_default();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT idx, entry FROM audit WHERE kind IN ({IN_EFFECT_KINDS}) AND idx > ?1 AND {column} <= ?2 ORDER BY idx"
        ))?;
        let rows = statement.query_map(params![pruned_last(prune), bound], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (index, text) = row?;
            if let Ok(entry) = serde_json::from_str::<Json>(&text) {
                state.apply(index, &entry);
            }
        }
        Ok(state)
    }
}

/// The last entry a prune removed (-1 without one): entries up to it that are still stored are
/// waiting to be deleted, and what they changed is in the prune's `in_effect`.
pub fn pruned_last(prune: Option<&Json>) -> i64 {
    prune.and_then(|p| p["body"]["last"].as_i64()).unwrap_or(-1)
}

/// The index of the oldest stored entry (None: an empty log).
pub fn first_index(data: &Path) -> Result<Option<u64>, RuntimeError> {
    let connection = open_read_only(data)?;
    let first: Option<i64> =
        connection.query_row("SELECT MIN(idx) FROM audit", [], |row| row.get(0))?;
    Ok(first.map(|f| f.max(0) as u64))
}

/// The most recent `prune` entry, if the log was ever pruned.
pub fn latest_prune(connection: &Connection) -> Result<Option<Json>, RuntimeError> {
    let text: Option<String> = connection
        .query_row(
            "SELECT entry FROM audit WHERE kind = 'prune' ORDER BY idx DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// `audit at T`: which bundle was stable, which rollout ran and at what stage, and the
/// operator context, at `time_ms`.
/// On a pruned log, a time before the kept log begins is an error (404 `pruned`).
pub fn at(data: &Path, time_ms: i64) -> Result<Json, RuntimeError> {
    let connection = open_read_only(data)?;
    let prune = latest_prune(&connection)?;
    if let Some(prune) = &prune {
        let first_kept: Option<i64> = connection
            .query_row(
                "SELECT time_ms FROM audit WHERE idx = ?1",
                params![prune["body"]["last"].as_i64().unwrap_or(-1) + 1],
                |row| row.get(0),
            )
            .optional()?;
        if first_kept.is_some_and(|first| time_ms < first) {
            return Err(RuntimeError::new(
                404,
                "pruned",
                format!(
                    "the audit log before {} was pruned by retention ([audit] retain; entry {} says so): ask about a later time",
                    first_kept.map_or_else(String::new, format_time),
                    prune["index"]
                ),
            ));
        }
    }
    let state = InEffect::replay(&connection, prune.as_ref(), "time_ms", time_ms)?;
    let InEffect {
        stable,
        rollout,
        all_tenants,
        mut tenants,
        ..
    } = state;
    // A rollout that ended (aborted) is history, not in effect.
    let rollout = rollout.filter(|r| r["phase"] != "aborted" && r["phase"] != "completed");
    tenants.retain(|_, values| !values.is_empty());
    Ok(json!({
        "time": format_time(time_ms),
        "stable": stable,
        "rollout": rollout,
        "context": { "all_tenants": all_tenants, "tenants": tenants },
    }))
}

/// What `audit export` wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Decisions written as traffic lines.
    pub written: u64,
    /// Decisions left out because their arguments were hashed.
    pub hashed: u64,
}

/// `audit export`: decision entries as traffic lines (runtime.md §5.1) for `simulate` and
/// `replay`: each request as it was sent, with the time it was decided, in time order.
pub fn export(
    data: &Path,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    mut write: impl FnMut(&Json) -> std::io::Result<()>,
) -> Result<Exported, RuntimeError> {
    let connection = open_read_only(data)?;
    let mut statement = connection.prepare(
        "SELECT entry FROM audit WHERE kind = 'decision'
           AND (?1 IS NULL OR time_ms >= ?1) AND (?2 IS NULL OR time_ms <= ?2)
         ORDER BY time_ms, idx",
    )?;
    let mut rows = statement.query(params![since_ms, until_ms])?;
    let mut exported = Exported::default();
    while let Some(row) = rows.next()? {
        let text: String = row.get(0)?;
        let Ok(entry) = serde_json::from_str::<Json>(&text) else {
            continue;
        };
        if let Some(line) = traffic_line(&entry) {
            write(&line).map_err(|e| RuntimeError::state(format!("cannot write: {e}")))?;
            exported.written += 1;
        } else if arguments_hashed(&entry) {
            exported.hashed += 1;
        }
    }
    Ok(exported)
}

/// A decision entry as a traffic line: the request with the entry's time (whole seconds, as
/// traffic files carry it) and without the runtime's own `approval_id`. None for an entry
/// whose arguments were hashed (`[audit] arguments = "hash"`): it cannot be decided again.
pub fn traffic_line(entry: &Json) -> Option<Json> {
    if arguments_hashed(entry) {
        return None;
    }
    let mut request = entry["body"]["request"].clone();
    let object = request.as_object_mut()?;
    object.remove("approval_id");
    let time = entry["time"].as_str()?;
    // `2026-12-02T06:08:56.008Z` → `2026-12-02T06:08:56Z`
    let seconds = match time.split_once('.') {
        Some((stem, _)) => format!("{stem}Z"),
        None => time.to_owned(),
    };
    object.insert("time".to_owned(), json!(seconds));
    Some(request)
}

/// Whether a decision entry holds its arguments' hashes rather than their values.
pub fn arguments_hashed(entry: &Json) -> bool {
    entry["body"]["arguments"] == "hashed"
}

/// The index of an entry's hash, for messages.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}
