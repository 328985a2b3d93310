//! The `*.test.toml` format: `[defaults]`, `[[case]]`, `[[adversarial]]` and `[[property]]`.
//!
//! Every entry keeps the line it starts on, so failures point at the case. Unknown keys are
//! errors (a misspelt `expect` must not silently test nothing).

use serde::Deserialize;
use std::fmt;
use toml::Spanned;

/// A malformed test file: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFileError {
    pub path: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for TestFileError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub agent: Option<toml::Table>,
    pub context: Option<toml::Table>,
    pub session: Option<String>,
    pub approvals: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCase {
    pub name: String,
    pub tool: String,
    #[serde(default)]
    pub args: toml::Table,
    pub agent: Option<toml::Table>,
    pub context: Option<toml::Table>,
    pub session: Option<String>,
    pub approvals: Option<Vec<String>>,
    pub counters: Option<toml::Table>,
    pub expect: String,
    pub expect_rules: Option<Vec<String>>,
    pub expect_approvers: Option<Vec<String>>,
    /// Obligation names the allow must carry.
    pub expect_obligations: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdversarial {
    /// The name of a case in the same file.
    pub from: String,
    /// The decision every variant must keep; the case's `expect` when absent.
    pub expect: Option<String>,
    /// The string arguments to mutate; every string argument when absent.
    pub args: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProperty {
    pub name: String,
    pub forall: String,
    pub never: Option<String>,
    pub always: Option<String>,
}

/// The file before its entries are read: each entry keeps its table and where it starts, so
/// that one malformed entry does not hide the problems of the next.
#[derive(Debug, Deserialize)]
struct LooseFile {
    defaults: Option<Spanned<toml::Value>>,
    #[serde(default)]
    case: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    adversarial: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    property: Vec<Spanned<toml::Value>>,
}

const TOP_LEVEL: [&str; 4] = ["defaults", "case", "adversarial", "property"];
const CASE_FIELDS: [&str; 12] = [
    "name",
    "tool",
    "args",
    "agent",
    "context",
    "session",
    "approvals",
    "counters",
    "expect",
    "expect_rules",
    "expect_approvers",
    "expect_obligations",
];
const DEFAULTS_FIELDS: [&str; 4] = ["agent", "context", "session", "approvals"];
const ADVERSARIAL_FIELDS: [&str; 3] = ["from", "expect", "args"];
const PROPERTY_FIELDS: [&str; 4] = ["name", "forall", "never", "always"];

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub line: usize,
    pub raw: RawCase,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Adversarial {
    pub line: usize,
    pub raw: RawAdversarial,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub line: usize,
    pub raw: RawProperty,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestFile {
    pub path: String,
    pub defaults: Defaults,
    pub cases: Vec<Case>,
    pub adversarial: Vec<Adversarial>,
    pub properties: Vec<Property>,
}

const DECISIONS: [&str; 3] = ["allow", "deny", "require_approval"];

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Where one entry (`[[case]]`, ...) is in the text, for errors about it and its keys.
struct Entry<'t> {
    text: &'t str,
    span: std::ops::Range<usize>,
}

impl Entry<'_> {
    fn line(&self) -> usize {
        line_of(self.text, self.span.start)
    }

    /// The line of `key = ...` inside the entry (the entry's first line if not found).
    fn line_of_key(&self, key: &str) -> usize {
        let body = &self.text[self.span.clone()];
        let mut offset = 0;
        for line in body.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return line_of(self.text, self.span.start + offset);
                }
            }
            offset += line.len();
        }
        self.line()
    }
}

/// Parses one test file; `path` is only used in errors. Every problem in the file is
/// reported, each at its line, with did-you-mean for misspelt keys.
pub fn parse_test_file(path: &str, text: &str) -> Result<TestFile, Vec<TestFileError>> {
    let loose: LooseFile = toml::from_str(text).map_err(|error| {
        vec![TestFileError {
            path: path.to_owned(),
            line: error.span().map_or(1, |span| line_of(text, span.start)),
            message: error.message().trim_end().to_owned(),
        }]
    })?;
    let mut errors = Vec::new();
    let mut at = |line: usize, message: String| {
        errors.push(TestFileError {
            path: path.to_owned(),
            line,
            message,
        })
    };
    // Unknown top-level keys: the loose reading ignores them, the plain table has them.
    let top: toml::Table = toml::from_str(text).unwrap_or_default();
    for key in top.keys().filter(|key| !TOP_LEVEL.contains(&key.as_str())) {
        let line = text
            .lines()
            .position(|l| {
                let l = l.trim_start().trim_start_matches('[').trim_start();
                l.starts_with(key.as_str())
            })
            .map_or(1, |i| i + 1);
        at(line, unknown_key("a test file", key, &TOP_LEVEL));
    }
    let defaults = match loose.defaults {
        None => Defaults::default(),
        Some(spanned) => {
            let entry = Entry {
                text,
                span: spanned.span(),
            };
            read_entry::<Defaults>(
                &entry,
                spanned.into_inner(),
                "[defaults]",
                &DEFAULTS_FIELDS,
                &mut at,
            )
            .unwrap_or_default()
        }
    };
    let cases: Vec<Case> =
        read_entries::<RawCase>(text, loose.case, "[[case]]", &CASE_FIELDS, &mut at)
            .into_iter()
            .map(|(line, raw)| Case { line, raw })
            .collect();
    let mut names = std::collections::HashMap::new();
    for case in &cases {
        if !DECISIONS.contains(&case.raw.expect.as_str()) {
            at(
                case.line,
                format!(
                    "case `{}`: `expect = \"{}\"` is not a decision; write \"allow\", \"deny\" or \"require_approval\"",
                    case.raw.name, case.raw.expect
                ),
            );
        }
        if let Some(first) =
            names.insert(case.raw.name.clone(), (case.line, case.raw.expect.clone()))
        {
            at(
                case.line,
                format!(
                    "case `{}` is defined twice (first on line {})",
                    case.raw.name, first.0
                ),
            );
        }
    }
    let adversarial: Vec<Adversarial> = read_entries::<RawAdversarial>(
        text,
        loose.adversarial,
        "[[adversarial]]",
        &ADVERSARIAL_FIELDS,
        &mut at,
    )
    .into_iter()
    .map(|(line, raw)| Adversarial { line, raw })
    .collect();
    for entry in &adversarial {
        let Some((_, case_expect)) = names.get(&entry.raw.from) else {
            let help = did_you_mean_help(&entry.raw.from, names.keys().map(String::as_str));
            at(
                entry.line,
                format!(
                    "`from = \"{}\"` names no case in this file{help}",
                    entry.raw.from
                ),
            );
            continue;
        };
        if let Some(expect) = &entry.raw.expect {
            if !DECISIONS.contains(&expect.as_str()) {
                at(
                    entry.line,
                    format!("`expect = \"{expect}\"` is not a decision"),
                );
            } else if expect != case_expect && DECISIONS.contains(&case_expect.as_str()) {
                // The unmutated request is one of the variants: it cannot keep a decision its
                // own case says it does not get, so every variant would fail for the same reason.
                at(
                    entry.line,
                    format!(
                        "`expect = \"{expect}\"` contradicts case `{}`, which expects \"{case_expect}\"; \
                         variants keep their case's decision: remove `expect`, or test the other \
                         decision from a case that has it",
                        entry.raw.from
                    ),
                );
            }
        }
    }
    let properties: Vec<Property> = read_entries::<RawProperty>(
        text,
        loose.property,
        "[[property]]",
        &PROPERTY_FIELDS,
        &mut at,
    )
    .into_iter()
    .map(|(line, raw)| Property { line, raw })
    .collect();
    for property in &properties {
        match (&property.raw.never, &property.raw.always) {
            (Some(d), None) | (None, Some(d)) => {
                if !DECISIONS.contains(&d.as_str()) {
                    at(property.line, format!("`{d}` is not a decision; write \"allow\", \"deny\" or \"require_approval\""));
                }
            }
            _ => at(
                property.line,
                format!(
                    "property `{}` needs exactly one of `never` and `always`",
                    property.raw.name
                ),
            ),
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(errors);
    }
    Ok(TestFile {
        path: path.to_owned(),
        defaults,
        cases,
        adversarial,
        properties,
    })
}

/// Reads every entry of one kind (`[[case]]`, ...) as `(line, T)`, reporting each one's
/// problems; entries that cannot be used are left out.
fn read_entries<T: serde::de::DeserializeOwned>(
    text: &str,
    entries: Vec<Spanned<toml::Value>>,
    what: &str,
    fields: &[&str],
    at: &mut impl FnMut(usize, String),
) -> Vec<(usize, T)> {
    let mut read = Vec::new();
    for spanned in entries {
        let entry = Entry {
            text,
            span: spanned.span(),
        };
        if let Some(raw) = read_entry::<T>(&entry, spanned.into_inner(), what, fields, at) {
            read.push((entry.line(), raw));
        }
    }
    read
}

/// Reads one entry's table as `T`, reporting unknown keys (with did-you-mean) and missing or
/// mistyped fields at their lines. `None` when the entry cannot be used.
fn read_entry<T: serde::de::DeserializeOwned>(
    entry: &Entry,
    value: toml::Value,
    what: &str,
    fields: &[&str],
    at: &mut impl FnMut(usize, String),
) -> Option<T> {
    let toml::Value::Table(table) = value else {
        at(entry.line(), format!("{what} must be a table"));
        return None;
    };
    let mut usable = true;
    // The fields a misspelt key was probably meant to be: their "missing field" errors would
    // only repeat the unknown key's.
    let mut meant = Vec::new();
    for key in table.keys() {
        if !fields.contains(&key.as_str()) {
            at(entry.line_of_key(key), unknown_key(what, key, fields));
            meant.extend(polctl_lang::suggest::did_you_mean(
                key,
                fields.iter().copied(),
            ));
            usable = false;
        }
    }
    let known: toml::Table = table
        .into_iter()
        .filter(|(key, _)| fields.contains(&key.as_str()))
        .collect();
    match T::deserialize(toml::Value::Table(known)) {
        Ok(parsed) => usable.then_some(parsed),
        Err(error) => {
            let message = error.message().trim_end().to_owned();
            if meant
                .iter()
                .any(|field| message == format!("missing field `{field}`"))
            {
                return None;
            }
            // serde names the field in backticks: "missing field `tool`", "invalid type: ... for key `args`".
            let line = message
                .split('`')
                .nth(1)
                .map_or(entry.line(), |key| entry.line_of_key(key));
            at(line, format!("{what}: {message}"));
            None
        }
    }
}

fn unknown_key(what: &str, key: &str, fields: &[&str]) -> String {
    let help = did_you_mean_help(key, fields.iter().copied());
    format!(
        "unknown key `{key}` in {what}{help}; the keys are {}",
        fields
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `" (did you mean `x`?)"`, or nothing when no candidate is close.
pub(crate) fn did_you_mean_help<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    polctl_lang::suggest::did_you_mean(name, candidates)
        .map(|candidate| format!(" (did you mean `{candidate}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_their_lines() {
        let file = parse_test_file(
            "t.test.toml",
            "[defaults]\nagent = { id = \"a\" }\n\n[[case]]\nname = \"one\"\ntool = \"t\"\nexpect = \"deny\"\n\n[[adversarial]]\nfrom = \"one\"\n",
        )
        .expect("parses");
        assert_eq!(file.cases[0].line, 4);
        assert_eq!(file.adversarial[0].line, 9);
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        let errors = parse_test_file(
            "t.test.toml",
            "[[case]]\nname = \"one\"\ntool = \"t\"\nexpct = \"deny\"\n",
        )
        .expect_err("unknown key");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 4, "{}", errors[0]);
        assert!(
            errors[0]
                .message
                .starts_with("unknown key `expct` in [[case]] (did you mean `expect`?)"),
            "{}",
            errors[0]
        );
        let errors = parse_test_file(
            "t.test.toml",
            "[[case]]\nname = \"one\"\ntool = \"t\"\nexpect = \"denied\"\n",
        )
        .expect_err("bad decision");
        assert!(
            errors[0]
                .to_string()
                .starts_with("t.test.toml:1: case `one`: `expect = \"denied\"`"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn every_problem_in_a_file_is_reported() {
        let text = "\
[defaults]
agnet = { id = \"a\" }

[[case]]
name = \"one\"
tool = \"t\"
expect = \"allow\"

[[case]]
name = \"two\"
expect = \"deny\"

[[case]]
name = \"three\"
tool = \"t\"
expect_rule = [\"p.r\"]
expect = \"deny\"

[[adversarial]]
from = \"one\"
expect = \"deny\"

[[adversarial]]
from = \"onee\"

[[property]]
name = \"p\"
forall = \"tool.name == t\"

[[cases]]
name = \"x\"
";
        let errors = parse_test_file("t.test.toml", text).expect_err("malformed");
        let found: Vec<(usize, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        let expected: [(usize, &str); 6] = [
            (
                2,
                "unknown key `agnet` in [defaults] (did you mean `agent`?)",
            ),
            (9, "[[case]]: missing field `tool`"),
            (
                16,
                "unknown key `expect_rule` in [[case]] (did you mean `expect_rules`?)",
            ),
            (
                19,
                "`expect = \"deny\"` contradicts case `one`, which expects \"allow\"",
            ),
            (
                23,
                "`from = \"onee\"` names no case in this file (did you mean `one`?)",
            ),
            (26, "property `p` needs exactly one of `never` and `always`"),
        ];
        assert_eq!(found.len(), expected.len() + 1, "{errors:#?}");
        for (line, start) in expected {
            assert!(
                found
                    .iter()
                    .any(|(l, m)| *l == line && m.starts_with(start)),
                "expected line {line}: {start}\nin {errors:#?}"
            );
        }
        assert!(
            found.iter().any(|(l, m)| *l == 30
                && m.starts_with("unknown key `cases` in a test file (did you mean `case`?)")),
            "{errors:#?}"
        );
    }
}
