//! Solver-found edge values: the smallest change around a test value that flips a rule.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print

use polctl_lang::eval::{Evaluator, Outcome};
use polctl_lang::{compile, SourceSet};
use polctl_solver::edges::{edge_values, EdgeValue, Target};

fn evaluator(policy: &str) -> Evaluator {
    let schema = r#"
schema {
  agent { id: string, tenant: string }
  tool send_email: send { to: string, subject: string }
}
"#;
    let sources = SourceSet::from_files([
        ("schema.pol".to_owned(), schema.to_owned()),
        ("policy.pol".to_owned(), policy.to_owned()),
    ]);
    let set = compile(&sources).set.expect("compiles");
    Evaluator::new(set, "test").expect("plan")
}

fn edge_values_for(policy: &str, to: &str) -> Vec<EdgeValue> {
    let evaluator = evaluator(policy);
    let request = evaluator
        .decode(&serde_json::json!({
            "agent": { "id": "bot-1", "tenant": "acme" },
            "tool": "send_email",
            "args": { "to": to, "subject": "hi" }
        }))
        .expect("request");
    let target = Target {
        arg: "to",
        element: None,
        keep: Outcome::Deny,
    };
    edge_values(&evaluator, &request, target, 10_000)
}

fn edges(policy: &str, to: &str) -> Vec<String> {
    edge_values_for(policy, to)
        .into_iter()
        .map(|e| e.value)
        .collect()
}

#[test]
fn an_unanchored_regex_is_reached_around_the_original() {
    let found = edges(
        r#"policy acme.mail {
  applies to tenant "acme"
  rule internal_mail:
    allow send_email when args.to matches "^[a-z.]+@acme\\.example"
}"#,
        "eve@evil.example",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("eve@evil.example"), "{found:?}");
    assert!(regex::Regex::new("^[a-z.]+@acme\\.example")
        .unwrap()
        .is_match(&found[0]));
}

#[test]
fn an_anchored_regex_cannot_be_reached() {
    let found = edges(
        r#"policy acme.mail {
  applies to tenant "acme"
  rule internal_mail:
    allow send_email when args.to matches "^[a-z.]+@acme\\.example$"
}"#,
        "eve@evil.example",
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_suffix_deny_is_escaped_by_one_more_character() {
    let found = edges(
        r#"policy acme.mail {
  applies to tenant "acme"
  rule no_evil:
    deny send_email when args.to ends with "@evil.example"
}"#,
        "eve@evil.example",
    );
    assert_eq!(found, ["eve@evil.examplex"]);
}

#[test]
fn the_solver_finds_what_one_test_at_a_time_cannot() {
    // Reaching the allow needs a prefix and a suffix at once; neither built value has both.
    let found = edge_values_for(
        r#"policy acme.mail {
  applies to tenant "acme"
  rule tagged:
    allow send_email when args.to starts with "ok:" and args.to ends with ":ok"
}"#,
        "eve@evil.example",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].how.starts_with("solver: reaches"), "{found:?}");
    assert!(found[0].value.starts_with("ok:") && found[0].value.ends_with(":ok"));
    assert!(found[0].value.contains("eve@evil.example"));
}
