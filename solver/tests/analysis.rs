//! The analysis corpus: `tests/analysis/*.pol`, each checked against `tests/analysis/schema.pol`.
//!
//! Every case states what the analysis must report in `# expect: KIND RULE` lines (`# expect:
//! nothing` for a near miss) and may set `# timeout-ms: N` and `# z3-gives-up: never`. The test requires exactly those
//! findings, and keeps an insta snapshot beside each case with the numbered source, the human
//! report and the JSON findings (witnesses included; each was replayed by the analysis).
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print

use polctl_lang::diagnostic::{render_human, JsonFinding};
use polctl_lang::eval::Evaluator;
use polctl_lang::{compile, SourceSet};
use polctl_solver::{analyze, Options};
use polctl_testsupport::{assert_no_orphaned_snapshots, numbered, read_tree, Corpus};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/analysis")
}

fn cases() -> Vec<(String, String)> {
    read_tree(&corpus_dir(), "pol")
        .into_iter()
        .filter(|(path, _)| path != "schema.pol")
        .map(|(path, text)| (path.trim_end_matches(".pol").to_owned(), text))
        .collect()
}

fn expected(text: &str) -> (Vec<(String, String)>, u32) {
    let mut expect = Vec::new();
    let mut timeout_ms = Options::default().timeout_ms;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# expect: ") {
            if rest.trim() != "nothing" {
                let (kind, rule) = rest.trim().split_once(' ').expect("`# expect: KIND RULE`");
                expect.push((kind.to_owned(), rule.to_owned()));
            }
        } else if let Some(rest) = line.strip_prefix("# timeout-ms: ") {
            timeout_ms = rest.trim().parse().expect("a number of milliseconds");
        }
    }
    expect.sort();
    (expect, timeout_ms)
}

/// The findings as `(kind, rule)`, the snapshot text, and how many queries Z3 gave up on.
fn run_case(name: &str, text: &str, timeout_ms: u32) -> (Vec<(String, String)>, String, usize) {
    let schema = std::fs::read_to_string(corpus_dir().join("schema.pol")).expect("schema");
    let sources = SourceSet::from_files([
        ("schema.pol".to_owned(), schema),
        (format!("{name}.pol"), text.to_owned()),
    ]);
    let compilation = compile(&sources);
    assert!(
        compilation.diagnostics.is_empty(),
        "{name} does not compile cleanly: {:?}",
        compilation.diagnostics
    );
    let set = compilation.set.expect("compiles");
    let evaluator = Evaluator::new(set.clone(), "test").expect("plan");
    let analysis = analyze(&set, &evaluator, Options { timeout_ms }).expect("analysis");
    let mut found: Vec<(String, String)> = analysis
        .findings
        .iter()
        .map(|d| {
            (
                d.kind.as_str().to_owned(),
                d.rule.clone().unwrap_or_default(),
            )
        })
        .collect();
    found.sort();
    let mut out = format!("--- {name}.pol\n{}\n--- human\n", numbered(text));
    if analysis.findings.is_empty() {
        out.push_str("(no findings)\n");
    }
    for finding in &analysis.findings {
        out.push_str(&render_human(finding, &sources, false));
    }
    let json: Vec<JsonFinding> = analysis
        .findings
        .iter()
        .map(|d| JsonFinding::from_diagnostic(d, &sources))
        .collect();
    let _ = write!(
        out,
        "\n--- json\n{}\n",
        serde_json::to_string_pretty(&json).expect("JSON")
    );
    (found, out, analysis.solver_gave_up)
}

#[test]
fn analysis_corpus() {
    let cases = cases();
    let mut per_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut corpus = Corpus::new();
    for (name, text) in &cases {
        let (expect, timeout_ms) = expected(text);
        let (found, rendered, gave_up) = run_case(name, text, timeout_ms);
        // `# z3-gives-up: never`: every query is decided without running to the time limit
        // (a count, not a clock, so it holds on a loaded machine).
        if text.contains("# z3-gives-up: never") && gave_up > 0 {
            corpus.fail(name, format!("Z3 gave up on {gave_up} queries"));
        }
        let kind = KINDS
            .iter()
            .find(|k| name.starts_with(*k))
            .map_or("other", |k| k)
            .to_owned();
        let near_miss = name.contains("_near_");
        let entry = per_kind.entry(kind).or_default();
        if near_miss {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
        if found != expect {
            corpus.fail(name, format!("expected {expect:?}, found {found:?}"));
        }
        corpus.snapshot(&corpus_dir(), name, name, &rendered);
    }
    corpus.finish(40);
    // At least three cases that must be found and two near misses per kind.
    for kind in KINDS {
        let (found, near) = per_kind.get(kind).copied().unwrap_or_default();
        assert!(
            found >= 3 && near >= 2,
            "{kind}: {found} found, {near} near misses"
        );
    }
}

/// Case names start with the kind they are about (`approval` for `approval_dead_end`, `layer`
/// for `layer_violation`).
const KINDS: [&str; 10] = [
    "dead_rule",
    "shadowed",
    "conflict",
    "redundant",
    "dead_limit",
    "zero_limit",
    "approval",
    "layer",
    "vacuous",
    "unknown",
];

/// Every snapshot belongs to a case.
#[test]
fn no_orphaned_snapshots() {
    assert_no_orphaned_snapshots(&corpus_dir(), |snap| snap.with_extension("pol").exists());
}
