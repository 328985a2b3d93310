//! Differential test: on generated requests (10,000 for the example and the library, 4,000 for
//! each valid corpus set and analysis corpus case, which hold a handful of rules each), the Z3
//! encoding (evaluated on the concrete request) and the reference evaluator give the same
//! decision and the same deciding rules.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print

use polctl_lang::eval::generate::RequestGenerator;
use polctl_lang::eval::{DenyCause, Evaluator, Outcome};
use polctl_lang::{compile, SourceSet};
use polctl_solver::Encoding;
use polctl_testsupport::workspace_dir;
use std::path::Path;

fn read_tree(root: &Path) -> Vec<(String, String)> {
    polctl_testsupport::read_tree(root, "pol")
}

/// Every valid policy set the project has: the examples, the library and the valid corpus.
fn sets() -> Vec<(String, Vec<(String, String)>)> {
    let mut sets = vec![
        (
            "examples/support-fleet".to_owned(),
            read_tree(&workspace_dir().join("examples/support-fleet")),
        ),
        (
            "policies".to_owned(),
            read_tree(&workspace_dir().join("policies")),
        ),
        (
            "sets/multi_file_valid".to_owned(),
            read_tree(&workspace_dir().join("lang/tests/corpus/sets/multi_file_valid")),
        ),
    ];
    let schema = std::fs::read_to_string(workspace_dir().join("lang/tests/corpus/schema.pol"))
        .expect("schema");
    for entry in std::fs::read_dir(workspace_dir().join("lang/tests/corpus/valid")).expect("corpus")
    {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "pol") {
            let text = std::fs::read_to_string(&path).expect("utf-8");
            let mut files = vec![("entry.pol".to_owned(), text.clone())];
            if !text.contains("schema {") {
                files.push(("schema.pol".to_owned(), schema.clone()));
            }
            sets.push((
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                files,
            ));
        }
    }
    // The analysis corpus: small sets built to sit at the edges of each finding kind.
    let analysis = workspace_dir().join("solver/tests/analysis");
    let schema = std::fs::read_to_string(analysis.join("schema.pol")).expect("schema");
    for entry in std::fs::read_dir(&analysis).expect("analysis corpus") {
        let path = entry.expect("entry").path();
        let stem = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        if path.extension().is_some_and(|e| e == "pol") && stem != "schema" {
            let text = std::fs::read_to_string(&path).expect("utf-8");
            sets.push((
                format!("analysis/{stem}"),
                vec![
                    ("schema.pol".to_owned(), schema.clone()),
                    ("case.pol".to_owned(), text),
                ],
            ));
        }
    }
    sets.sort_by(|a, b| a.0.cmp(&b.0));
    sets
}

fn check_set(name: &str, files: Vec<(String, String)>, requests: usize) -> usize {
    let set = compile(&SourceSet::from_files(files))
        .set
        .unwrap_or_else(|| panic!("{name} compiles"));
    let evaluator = Evaluator::new(set.clone(), "").expect("plan");
    let encoding = Encoding::new(&set).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let decision = encoding.decision();
    let mut generator = RequestGenerator::new(&set, 7);
    let mut checked = 0;
    for _ in 0..requests {
        let request = generator.next_request();
        if request.args.iter().flatten().any(|v| matches!(v, polctl_lang::eval::Value::List(items) if items.len() > polctl_solver::LIST_BOUND)) {
            continue;
        }
        let expected = evaluator.decide(&request);
        let denies = encoding.deny_rules();
        let approvals = encoding.approval_rules();
        let allows = encoding.allow_rules();
        let limits = encoding.limit_rules();
        let waiting: Vec<z3::ast::Bool> = approvals.iter().map(|&r| encoding.waiting(r)).collect();
        let reached: Vec<z3::ast::Bool> =
            limits.iter().map(|&r| encoding.limit_reached(r)).collect();
        let mut terms: Vec<&z3::ast::Bool> =
            vec![&decision.allow, &decision.deny, &decision.require_approval];
        terms.extend(denies.iter().map(|&r| &encoding.matches[r]));
        terms.extend(waiting.iter());
        terms.extend(allows.iter().map(|&r| &encoding.matches[r]));
        terms.extend(reached.iter());
        let values = encoding.evaluate(&request, &terms);
        let value =
            |i: usize| values[i].unwrap_or_else(|| panic!("{name}: term {i} is not concrete"));
        let outcome = if value(0) {
            Outcome::Allow
        } else if value(2) {
            Outcome::RequireApproval
        } else {
            assert!(value(1), "{name}: no decision holds");
            Outcome::Deny
        };
        let mut offset = 3;
        let mut holding = |rules: &[usize]| {
            let held: Vec<usize> = rules
                .iter()
                .enumerate()
                .filter(|(i, _)| value(offset + i))
                .map(|(_, r)| *r)
                .collect();
            offset += rules.len();
            held
        };
        let (deny_held, waiting_held, allow_held, limit_held) = (
            holding(&denies),
            holding(&approvals),
            holding(&allows),
            holding(&limits),
        );
        let rules: Vec<usize> = match (outcome, expected.cause) {
            (Outcome::Deny, Some(DenyCause::Default)) => Vec::new(),
            (Outcome::Deny, Some(DenyCause::Limit)) => limit_held,
            (Outcome::Deny, _) => deny_held,
            (Outcome::RequireApproval, _) => waiting_held,
            (Outcome::Allow, _) => allow_held,
        };
        let mut expected_rules = expected.rules.clone();
        expected_rules.sort_unstable();
        assert_eq!(
            (outcome, rules),
            (expected.outcome, expected_rules),
            "{name}: the solver and the evaluator disagree on {}",
            polctl_lang::eval::generate::request_to_json(&set, &request)
        );
        checked += 1;
    }
    checked
}

#[test]
fn solver_and_evaluator_agree_on_the_example() {
    let files = read_tree(&workspace_dir().join("examples/support-fleet"));
    let started = std::time::Instant::now();
    let checked = check_set("examples/support-fleet", files, 10_000);
    eprintln!("{checked} requests in {:?}", started.elapsed());
    assert!(checked > 9_000);
}

#[test]
fn solver_and_evaluator_agree_on_every_valid_set() {
    use rayon::prelude::*;
    let sets: Vec<_> = sets()
        .into_iter()
        .filter(|(name, _)| name != "examples/support-fleet")
        .collect();
    assert!(sets.len() >= 80, "only {} sets", sets.len());
    // Each rayon worker has its own Z3 context; each set is encoded on the worker that checks it.
    let checked: Vec<usize> = sets
        .into_par_iter()
        .map(|(name, files)| {
            let requests = if name == "policies" { 10_000 } else { 4_000 };
            check_set(&name, files, requests) * 10 / requests
        })
        .collect();
    // Tenths of the requests checked (those with lists beyond the solver's bound are skipped).
    assert!(checked.iter().all(|&n| n >= 9), "{checked:?}");
}
