//! The semantic diff against brute force, on generated sets and edited copies of them (rules
//! removed, denies, allows and approvals added): every reported witness is decided by both
//! versions as reported, and every generated request whose decision changes falls in a
//! reported class.

use polctl_bench::{generate, SynthConfig};
use polctl_lang::eval::generate::{request_to_json, RequestGenerator};
use polctl_lang::eval::{DecisionJson, Evaluator, Outcome};
use polctl_solver::diff::{semantic_diff, Change};

/// Requests generated per version and set.
const REQUESTS: usize = 4_000;

fn evaluator(files: &[(String, String)]) -> Evaluator {
    let sources = polctl_lang::SourceSet::from_files(files.to_vec());
    let set = polctl_lang::compile(&sources)
        .set
        .expect("the generated set compiles");
    Evaluator::new(set, "test").expect("plan")
}

/// A copy of a generated set with two rules removed and four added, on the tools of `tools`;
/// its schema gains a context attribute and an optional argument on the first tool, and lists
/// the agent roles in another order.
fn edited(files: &[(String, String)], tools: &[String], seed: usize) -> Vec<(String, String)> {
    let mut files = files.to_vec();
    for (path, text) in files.iter_mut() {
        if path == "schema.pol" {
            *text = text
                .replace("verified: bool", "verified: bool\n    on_call: bool")
                .replace(
                    "role: enum { support, sales, billing, ops }",
                    "role: enum { ops, billing, sales, support }",
                )
                .replacen(": read {", ": read { ticket: string?,", 1);
        }
    }
    let policies: Vec<usize> = (0..files.len())
        .filter(|&i| files[i].0 != "schema.pol")
        .collect();
    // Remove the first rule of two files.
    for k in 0..2 {
        let text = &mut files[policies[(seed * 3 + k * 5) % policies.len()]].1;
        if let Some(start) = text.find("\n  rule ") {
            let rest = &text[start + 1..];
            let end = rest
                .find("\n\n")
                .or_else(|| rest.find("\n}"))
                .unwrap_or(rest.len());
            text.replace_range(start..start + 1 + end, "");
        }
    }
    let added = [
        "deny {tool} when context.hour == 23\n    because \"night freeze\"",
        "allow {tool} when context.verified == true",
        "require approval from finance for {tool} when context.mode == incident",
        "deny {tool} when context.on_call == false and context.hour > 20\n    because \"after hours\"",
    ];
    for (k, rule) in added.iter().enumerate() {
        let tool = &tools[(seed + k * 3) % tools.len()];
        let text = &mut files[policies[(seed * 7 + k * 11) % policies.len()]].1;
        let end = text.rfind('}').expect("a policy ends with `}`");
        text.insert_str(
            end,
            &format!("\n  rule edit_{k}:\n    {}\n", rule.replace("{tool}", tool)),
        );
    }
    files
}

fn same_class(change: &Change, tool: &str, was: &DecisionJson, is: &DecisionJson) -> bool {
    change.tool == tool
        && change.from == was.decision
        && change.to == is.decision
        && change.old_rules == was.rules
        && change.new_rules == is.rules
}

#[test]
fn every_changed_decision_falls_in_a_reported_class() {
    let mut changed_requests = 0;
    for seed in 1..=4usize {
        let config = SynthConfig {
            rules: 150,
            files: 15,
            tools: 8,
            tenants: 4,
            seed: seed as u64,
        };
        let old_files = generate(&config);
        let old = evaluator(&old_files);
        let tools: Vec<String> = old
            .set()
            .schema
            .tools
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let new = evaluator(&edited(&old_files, &tools, seed));
        // A generous query limit: a few of these proposals need Z3 to find strings (about 5 s
        // each on seed 4, alone on this machine), and CI runs other tests beside this one. The
        // assertion below, that nothing is left undecided, stays.
        let diff = semantic_diff(&old, &new, 40_000).expect("diff");
        assert!(
            diff.unknown.is_empty(),
            "seed {seed}: undecided {:?}",
            diff.unknown
        );
        for change in &diff.changes {
            let decide = |e: &Evaluator| {
                polctl_solver::witness::decide_own(e, &change.witness).expect("the witness fits")
            };
            let (was, is) = (decide(&old), decide(&new));
            assert!(
                same_class(change, &change.tool, &was, &is),
                "seed {seed}: witness {} is decided {was:?} then {is:?}",
                change.witness
            );
        }
        for evaluator in [&old, &new] {
            let mut generator = RequestGenerator::new(evaluator.set(), seed as u64);
            for _ in 0..REQUESTS {
                let request = generator.next_request();
                let json = request_to_json(evaluator.set(), &request);
                let decide = |e: &Evaluator| polctl_solver::witness::decide_own(e, &json).ok();
                let (Some(was), Some(is)) = (decide(&old), decide(&new)) else {
                    continue;
                };
                let changed = was.decision != is.decision
                    || (was.decision == Outcome::RequireApproval && was.approvers != is.approvers);
                if !changed {
                    continue;
                }
                changed_requests += 1;
                let tool = json["tool"].as_str().unwrap_or_default();
                let pair = format!("{} → {}", was.decision.as_str(), is.decision.as_str());
                if diff
                    .truncated
                    .iter()
                    .any(|t| t.tool == tool && t.change() == pair)
                {
                    continue;
                }
                assert!(
                    diff.changes.iter().any(|c| same_class(c, tool, &was, &is)),
                    "seed {seed}: {json} changes from {was:?} to {is:?}, in no reported class"
                );
            }
        }
    }
    // The edits do change decisions that random requests reach, so the check above is not
    // vacuous.
    assert!(changed_requests > 50, "only {changed_requests} changed");
}
