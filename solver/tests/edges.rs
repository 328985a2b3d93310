//! Solver-found edge values: the smallest change around a test value that flips a rule.

use polctl_lang::eval::{Evaluator, Outcome};
use polctl_lang::{compile, SourceSet};
use polctl_solver::edges::{edge_values, Target};

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

fn edges(policy: &str, to: &str) -> Vec<String> {
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
fn the_solver_escapes_a_suffix_deny() {
    let evaluator = evaluator(
        r#"policy acme.mail {
  applies to tenant "acme"
  rule no_evil:
    deny send_email when args.to ends with "@evil.example"
}"#,
    );
    let request = evaluator
        .decode(&serde_json::json!({
            "agent": { "id": "bot-1", "tenant": "acme" },
            "tool": "send_email",
            "args": { "to": "eve@evil.example", "subject": "hi" }
        }))
        .expect("request");
    let target = Target {
        arg: "to",
        element: None,
        keep: Outcome::Deny,
    };
    let found = edge_values(&evaluator, &request, target, 10_000);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].how.starts_with("solver: escapes"), "{found:?}");
    assert!(found[0].value.contains("eve@evil.example"));
    assert!(!found[0].value.ends_with("@evil.example"));
}
