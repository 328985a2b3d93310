//! `polctl diff` on a corpus of changes (`tests/fixtures/diff/<case>/{old,new}`): each case's
//! `expect` file lists the kinds of semantic change it must report (one per class, sorted);
//! the human output is snapshotted beside the case (`diff.snap`). Every witness was replayed
//! against both versions by the diff itself.

use polctl_testsupport::{assert_no_orphaned_snapshots, file_name, list, workspace_dir, Corpus};
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus_dir() -> PathBuf {
    workspace_dir().join("cli/tests/fixtures/diff")
}

fn diff(case: &Path, format: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args(["diff", "old", "new", "--format", format])
        .current_dir(case)
        .env("NO_COLOR", "1")
        .output()
        .expect("polctl runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn diff_corpus() {
    let mut corpus = Corpus::new();
    for case in list(&corpus_dir(), |p| p.is_dir()) {
        let name = file_name(&case);
        let (code, json) = diff(&case, "json");
        if code != Some(0) {
            corpus.fail(&name, format!("exit {code:?}: {json}"));
            continue;
        }
        let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let changes = report["changes"].as_array().expect("changes");
        let mut kinds: Vec<&str> = changes
            .iter()
            .map(|c| c["kind"].as_str().expect("kind"))
            .collect();
        kinds.sort();
        let expect = std::fs::read_to_string(case.join("expect")).expect("expect file");
        let mut expected: Vec<&str> = expect.lines().collect();
        expected.sort();
        if kinds != expected {
            corpus.fail(&name, format!("expected {expected:?}, found {kinds:?}"));
        }
        if let Some(change) = changes.iter().find(|c| !c["witness"]["tool"].is_string()) {
            corpus.fail(&name, format!("a change without a witness: {change}"));
        }
        let (_, human) = diff(&case, "human");
        corpus.snapshot(&case, "diff", &name, &human);
    }
    corpus.finish(8);
}

/// Every `diff.snap` belongs to a case with both sides.
#[test]
fn no_orphaned_snapshots() {
    assert_no_orphaned_snapshots(&corpus_dir(), |snap| {
        let case = snap.parent().expect("a case directory");
        case.join("old").is_dir() && case.join("new").is_dir()
    });
}

#[test]
fn fail_on_gates_and_identical_sets_have_no_changes() {
    let root = corpus_dir();
    let run_with = |case: &str, fail_on: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_polctl"))
            .args(["diff", "old", "new", "--fail-on", fail_on])
            .args(extra)
            .current_dir(root.join(case))
            .output()
            .expect("polctl runs")
            .status
            .code()
    };
    let run = |case: &str, fail_on: &str| run_with(case, fail_on, &[]);
    assert_eq!(run("widen_new_allow", "widen"), Some(2));
    assert_eq!(run("widen_new_allow", "narrow"), Some(0));
    assert_eq!(run("narrow_new_deny", "narrow"), Some(2));
    assert_eq!(run("narrow_new_deny", "any"), Some(2));
    assert_eq!(run("refactor_same_meaning", "any"), Some(0));
    // A new role's requests are not compared (the old version does not accept them): a widen
    // could hide there, so the gate fails unless told to gate only on what was compared.
    assert_eq!(run("enum_member_added", "narrow"), Some(2));
    assert_eq!(run("enum_member_added", "widen"), Some(2));
    assert_eq!(
        run_with("enum_member_added", "widen", &["--allow-incomplete"]),
        Some(0)
    );
    // The gate says why it fails.
    let output = Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args(["diff", "old", "new", "--fail-on", "widen"])
        .current_dir(root.join("widen_new_allow"))
        .output()
        .expect("polctl runs");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.contains("error: 1 widening change (--fail-on widen)"),
        "{errors}"
    );
    let same = Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args([
            "diff",
            "examples/support-fleet",
            "examples/support-fleet",
            "--fail-on",
            "any",
        ])
        .current_dir(workspace_dir())
        .output()
        .expect("polctl runs");
    assert_eq!(same.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&same.stdout).contains("semantic changes: none"));
}

#[test]
fn git_revisions_are_a_side() {
    // The example at HEAD against the working tree: same sources, no changes.
    let output = Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args([
            "diff",
            "git:HEAD:examples/support-fleet",
            "examples/support-fleet",
            "--format",
            "json",
        ])
        .current_dir(workspace_dir())
        .output()
        .expect("polctl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    if output.status.code() == Some(1) {
        // Not a git checkout (e.g. a source tarball): the error says so.
        assert!(String::from_utf8_lossy(&output.stderr).contains("git"));
        return;
    }
    assert_eq!(output.status.code(), Some(0), "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(report["changes"].as_array().map(Vec::len), Some(0));
}
