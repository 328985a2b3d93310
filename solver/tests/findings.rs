//! The solver's findings on small sets: each kind is found where it should be, not found on a
//! near miss, and carries a witness (replayed by `analyze` itself) unless it is a proof of
//! absence.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print

use polctl_lang::eval::Evaluator;
use polctl_lang::{compile, SourceSet};
use polctl_solver::{analyze, Options};

/// `(kind, rule, related rules, blocking rules, has a witness)` of one finding.
type Found = (String, String, Vec<String>, Vec<String>, bool);

/// A fixture of `tests/fixtures/findings` (the policies of one case).
fn fixture(name: &str) -> String {
    polctl_testsupport::read(format!("solver/tests/fixtures/findings/{name}.pol"))
}

/// The findings on `policies` over the suite's schema (`fixtures/findings/schema.pol`).
fn findings(policies: &str) -> Vec<Found> {
    let sources = SourceSet::from_files([
        ("schema.pol".to_owned(), fixture("schema")),
        ("policies.pol".to_owned(), policies.to_owned()),
    ]);
    let compilation = compile(&sources);
    let messages: Vec<_> = compilation
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect();
    let set = compilation
        .set
        .unwrap_or_else(|| panic!("compiles: {messages:?}"));
    let evaluator = Evaluator::new(set.clone(), "test").expect("plan");
    let analysis = analyze(&set, &evaluator, Options { timeout_ms: 20_000 }).expect("analysis");
    analysis
        .findings
        .into_iter()
        .map(|d| {
            (
                d.kind.as_str().to_owned(),
                d.rule.clone().unwrap_or_default(),
                d.related_rules.clone(),
                d.blocking.clone(),
                d.witness.is_some(),
            )
        })
        .collect()
}

fn kinds(policies: &str) -> Vec<(String, String)> {
    findings(policies)
        .into_iter()
        .map(|(k, r, ..)| (k, r))
        .collect()
}

fn pair(kind: &str, rule: &str) -> (String, String) {
    (kind.to_owned(), rule.to_owned())
}

#[test]
fn dead_rules() {
    let found = findings(&fixture("dead_rule_contradictory_range"));
    assert_eq!(
        found,
        [(
            "dead_rule".to_owned(),
            "p.never".to_owned(),
            vec![],
            vec![],
            false
        )]
    );
    assert_eq!(kinds(&fixture("dead_rule_near_miss_range")), []);
    // A regex no string can match, and an out-of-scope combination.
    assert_eq!(
        kinds(&fixture("dead_rule_disjoint_regexes")),
        [pair("dead_rule", "p.never")]
    );
}

#[test]
fn shadowed_rules_name_their_minimal_blockers() {
    let found = findings(&fixture("shadowed_by_one_of_two_denies"));
    assert_eq!(
        found,
        [(
            "shadowed".to_owned(),
            "p.small".to_owned(),
            vec![],
            vec!["p.block".to_owned()],
            true
        )]
    );
    assert_eq!(kinds(&fixture("shadowed_near_miss")), []);
}

#[test]
fn layer_violations_and_conflicts() {
    let layer = fixture("layer_violation_tenant_allow");
    let found = findings(&layer);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1.as_str()),
        ("layer_violation", "acme.refunds")
    );
    assert_eq!(found[0].3, ["platform.no_refunds"]);
    assert!(found[0].4);

    let conflict = fixture("conflict_read_only_guard");
    let found = findings(&conflict);
    assert_eq!(
        found,
        [(
            "conflict".to_owned(),
            "acme.refunds".to_owned(),
            vec!["platform.read_only".to_owned()],
            vec![],
            true
        )]
    );

    // Acknowledged with `overrides`, or written as a cross-cutting guard: no conflict.
    let acknowledged = conflict.replace("read_only\n}", "read_only overrides acme.refunds\n}");
    assert_eq!(kinds(&acknowledged), []);
    let guard = conflict.replace("deny refund when", "deny any write tool when");
    assert_eq!(kinds(&guard), []);
}

#[test]
fn approval_dead_ends() {
    let dead_end = fixture("approval_dead_end");
    let found = findings(&dead_end);
    assert_eq!(
        found,
        [(
            "approval_dead_end".to_owned(),
            "p.big".to_owned(),
            vec![],
            vec![],
            true
        )]
    );
    assert_eq!(
        kinds(&dead_end.replace("when args.amount <= 100", "when args.amount <= 500")),
        []
    );
}

#[test]
fn zero_limits() {
    let zero = fixture("zero_limit");
    let found = findings(&zero);
    assert_eq!(
        found,
        [(
            "zero_limit".to_owned(),
            "p.none".to_owned(),
            vec!["p.mail".to_owned()],
            vec![],
            true
        )]
    );
    assert_eq!(kinds(&zero.replace("to 0 per", "to 5 per")), []);
}

#[test]
fn dead_limits() {
    let dominated = fixture("dead_limit_dominated");
    let found = findings(&dominated);
    assert_eq!(
        found,
        [(
            "dead_limit".to_owned(),
            "p.hourly".to_owned(),
            vec![],
            vec!["p.daily".to_owned()],
            true
        )]
    );
    // Another key: both can bind.
    assert_eq!(
        kinds(&dominated.replace("50 per 1d per agent.id", "50 per 1d per agent.tenant")),
        []
    );
    // Nothing the limit covers is ever allowed: a proof of absence, no witness.
    let found = findings(&fixture("dead_limit_nothing_allowed"));
    assert_eq!(
        found,
        [(
            "dead_limit".to_owned(),
            "p.refunds".to_owned(),
            vec![],
            vec![],
            false
        )]
    );
}

#[test]
fn redundant_rules() {
    let redundant = fixture("redundant_narrower_allow");
    let found = findings(&redundant);
    assert_eq!(
        found,
        [(
            "redundant".to_owned(),
            "p.support".to_owned(),
            vec!["p.all".to_owned()],
            vec![],
            true
        )]
    );
    // Different obligations are different effects.
    assert_eq!(
        kinds(&redundant.replace(
            "agent.role == support",
            "agent.role == support with note \"x\""
        )),
        []
    );
    // Two identical rules: only the later one is reported.
    let twins = fixture("redundant_twins");
    assert_eq!(kinds(&twins), [pair("redundant", "p.b")]);
}

#[test]
fn vacuous_allows() {
    let vacuous = fixture("vacuous_allow");
    let found = findings(&vacuous);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1.as_str()),
        ("vacuous", "p.kb")
    );
    assert!(found[0].4);
    assert_eq!(
        kinds(&vacuous.replace("or args.query != \"\"", "or args.query == \"x\"")),
        []
    );
}
