//! Adversarial variants of a string: the spellings an attacker (or a confused agent) uses to
//! slip past a string rule.
//!
//! Case changes, surrounding and inner whitespace, Unicode confusables and invisible characters,
//! percent- and HTML-encoding, trailing dots, and extra `@` and path segments built from the
//! policy's own literals for the argument (`eve@evil.example@acme.example` against an
//! `ends with "@acme.example"` rule). Every variant differs from the original.

/// One variant: a short description and the mutated value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub how: String,
    pub value: String,
}

/// Latin letters and a look-alike from another script.
const CONFUSABLES: &[(char, char)] = &[
    ('a', '\u{0430}'), // Cyrillic a
    ('e', '\u{0435}'), // Cyrillic ie
    ('o', '\u{043E}'), // Cyrillic o
    ('p', '\u{0440}'), // Cyrillic er
    ('c', '\u{0441}'), // Cyrillic es
    ('x', '\u{0445}'), // Cyrillic ha
    ('i', '\u{0456}'), // Cyrillic i
    ('s', '\u{0455}'), // Cyrillic dze
];

fn confusable(c: char) -> Option<char> {
    CONFUSABLES
        .iter()
        .find(|(latin, _)| *latin == c.to_ascii_lowercase())
        .map(|(_, other)| *other)
}

fn percent_encode(text: &str, all: bool) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if all || matches!(c, '@' | '.' | '/' | ':') {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn middle(text: &str) -> usize {
    let chars = text.chars().count();
    text.char_indices()
        .nth(chars / 2)
        .map_or(text.len(), |(i, _)| i)
}

fn insert_at(text: &str, at: usize, what: &str) -> String {
    format!("{}{what}{}", &text[..at], &text[at..])
}

/// Where a separator-like character sits (`@`, else `.`, else the middle).
fn separator(text: &str) -> usize {
    text.find('@')
        .or_else(|| text.rfind('.'))
        .unwrap_or_else(|| middle(text))
}

/// The variants of `value`; `literals` are the strings the policy compares this argument with.
pub fn variants(value: &str, literals: &[String]) -> Vec<Variant> {
    let mut out: Vec<Variant> = Vec::new();
    let mut add = |how: &str, candidate: String| {
        if candidate != value && !out.iter().any(|v| v.value == candidate) {
            out.push(Variant {
                how: how.to_owned(),
                value: candidate,
            });
        }
    };
    // Case.
    add("upper case", value.to_uppercase());
    add("lower case", value.to_lowercase());
    let mut chars = value.chars();
    add(
        "first letter flipped",
        chars
            .next()
            .map(|c| {
                let flipped: String = if c.is_uppercase() {
                    c.to_lowercase().collect()
                } else {
                    c.to_uppercase().collect()
                };
                flipped + chars.as_str()
            })
            .unwrap_or_default(),
    );
    add(
        "alternating case",
        value
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect(),
    );
    // Whitespace.
    add("leading space", format!(" {value}"));
    add("trailing space", format!("{value} "));
    add("trailing newline", format!("{value}\n"));
    add("tab inside", insert_at(value, separator(value), "\t"));
    add(
        "space before separator",
        insert_at(value, separator(value), " "),
    );
    add("non-breaking space", format!("{value}\u{00A0}"));
    // Invisible characters.
    add("zero-width space prefix", format!("\u{200B}{value}"));
    add(
        "zero-width space inside",
        insert_at(value, middle(value), "\u{200B}"),
    );
    add(
        "zero-width joiner before separator",
        insert_at(value, separator(value), "\u{200D}"),
    );
    add("byte order mark prefix", format!("\u{FEFF}{value}"));
    add(
        "soft hyphen inside",
        insert_at(value, middle(value), "\u{00AD}"),
    );
    add("right-to-left override", format!("\u{202E}{value}"));
    // Confusables.
    if let Some((i, c)) = value.char_indices().find(|(_, c)| confusable(*c).is_some()) {
        let other = confusable(c).unwrap_or(c);
        add(
            "one look-alike letter",
            format!("{}{other}{}", &value[..i], &value[i + c.len_utf8()..]),
        );
    }
    add(
        "look-alike letters",
        value.chars().map(|c| confusable(c).unwrap_or(c)).collect(),
    );
    add(
        "fullwidth @ and .",
        value.replace('@', "\u{FF20}").replace('.', "\u{FF0E}"),
    );
    add("Greek omicron", value.replacen('o', "\u{03BF}", 1));
    // Encodings.
    add("percent-encoded separators", percent_encode(value, false));
    add("fully percent-encoded", percent_encode(value, true));
    add("HTML entity for @", value.replace('@', "&#64;"));
    add("HTML named entity for @", value.replace('@', "&commat;"));
    add("HTML entity for .", value.replace('.', "&#46;"));
    // Trailing dots and extra segments.
    add("trailing dot", format!("{value}."));
    add("two trailing dots", format!("{value}.."));
    add("path traversal prefix", format!("../{value}"));
    add("path segment suffix", format!("{value}/../"));
    add(
        "dot segment inside",
        insert_at(value, separator(value), "/."),
    );
    add("mailto prefix", format!("mailto:{value}"));
    add("doubled", format!("{value}{value}"));
    add("null byte suffix", format!("{value}\u{0}"));
    for literal in literals {
        add(
            &format!("policy literal {literal:?} appended"),
            format!("{value}{literal}"),
        );
        add(
            &format!("policy literal {literal:?} after @"),
            format!("{value}@{}", literal.trim_start_matches('@')),
        );
        add(
            &format!("policy literal {literal:?} prepended"),
            format!("{literal}{value}"),
        );
        add(
            &format!("policy literal {literal:?} as a comment"),
            format!("{value}#{literal}"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_25_distinct_variants_of_a_realistic_string() {
        let all = variants("eve@evil.example", &[]);
        assert!(all.len() >= 25, "{}", all.len());
        let mut values: Vec<_> = all.iter().map(|v| v.value.clone()).collect();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), all.len());
        assert!(all.iter().all(|v| v.value != "eve@evil.example"));
    }

    #[test]
    fn policy_literals_build_extra_at_variants() {
        let all = variants("eve@evil.example", &["@acme.example".to_owned()]);
        assert!(all
            .iter()
            .any(|v| v.value == "eve@evil.example@acme.example"));
    }

    #[test]
    fn short_and_unicode_strings_do_not_panic() {
        for value in ["", "x", "é", "\u{1F600}@", "@"] {
            variants(value, &["ü".to_owned()]);
        }
    }
}
