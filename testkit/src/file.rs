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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    defaults: Option<Defaults>,
    #[serde(default)]
    case: Vec<Spanned<RawCase>>,
    #[serde(default)]
    adversarial: Vec<Spanned<RawAdversarial>>,
    #[serde(default)]
    property: Vec<Spanned<RawProperty>>,
}

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

/// Parses one test file; `path` is only used in errors.
pub fn parse_test_file(path: &str, text: &str) -> Result<TestFile, TestFileError> {
    let raw: RawFile = toml::from_str(text).map_err(|error| TestFileError {
        path: path.to_owned(),
        line: error.span().map_or(1, |span| line_of(text, span.start)),
        message: error.message().trim_end().to_owned(),
    })?;
    let at = |line: usize, message: String| TestFileError {
        path: path.to_owned(),
        line,
        message,
    };
    let mut names = std::collections::HashMap::new();
    let cases: Vec<Case> = raw
        .case
        .into_iter()
        .map(|spanned| Case {
            line: line_of(text, spanned.span().start),
            raw: spanned.into_inner(),
        })
        .collect();
    for case in &cases {
        if !DECISIONS.contains(&case.raw.expect.as_str()) {
            return Err(at(
                case.line,
                format!(
                    "case `{}`: `expect = \"{}\"` is not a decision; write \"allow\", \"deny\" or \"require_approval\"",
                    case.raw.name, case.raw.expect
                ),
            ));
        }
        if let Some(first) = names.insert(case.raw.name.clone(), case.line) {
            return Err(at(
                case.line,
                format!(
                    "case `{}` is defined twice (first on line {first})",
                    case.raw.name
                ),
            ));
        }
    }
    let adversarial: Vec<Adversarial> = raw
        .adversarial
        .into_iter()
        .map(|spanned| Adversarial {
            line: line_of(text, spanned.span().start),
            raw: spanned.into_inner(),
        })
        .collect();
    for entry in &adversarial {
        if !names.contains_key(&entry.raw.from) {
            return Err(at(
                entry.line,
                format!("`from = \"{}\"` names no case in this file", entry.raw.from),
            ));
        }
        if let Some(expect) = &entry.raw.expect {
            if !DECISIONS.contains(&expect.as_str()) {
                return Err(at(
                    entry.line,
                    format!("`expect = \"{expect}\"` is not a decision"),
                ));
            }
        }
    }
    let properties: Vec<Property> = raw
        .property
        .into_iter()
        .map(|spanned| Property {
            line: line_of(text, spanned.span().start),
            raw: spanned.into_inner(),
        })
        .collect();
    for property in &properties {
        let decision = match (&property.raw.never, &property.raw.always) {
            (Some(d), None) | (None, Some(d)) => d,
            _ => {
                return Err(at(
                    property.line,
                    format!(
                        "property `{}` needs exactly one of `never` and `always`",
                        property.raw.name
                    ),
                ))
            }
        };
        if !DECISIONS.contains(&decision.as_str()) {
            return Err(at(property.line, format!("`{decision}` is not a decision")));
        }
    }
    Ok(TestFile {
        path: path.to_owned(),
        defaults: raw.defaults.unwrap_or_default(),
        cases,
        adversarial,
        properties,
    })
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
        let error = parse_test_file(
            "t.test.toml",
            "[[case]]\nname = \"one\"\ntool = \"t\"\nexpct = \"deny\"\n",
        )
        .expect_err("unknown key");
        assert_eq!(error.line, 4, "{error}");
        assert!(error.message.contains("unknown field `expct`"), "{error}");
        let error = parse_test_file(
            "t.test.toml",
            "[[case]]\nname = \"one\"\ntool = \"t\"\nexpect = \"denied\"\n",
        )
        .expect_err("bad decision");
        assert!(
            error
                .to_string()
                .starts_with("t.test.toml:1: case `one`: `expect = \"denied\"`"),
            "{error}"
        );
    }
}
