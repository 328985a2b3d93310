//! `polctl diff` on a corpus of changes (`tests/fixtures/diff/<case>/{old,new}`): each case's
//! `expect` file lists the kinds of semantic change it must report (one per class, sorted);
//! the human output is snapshotted. Every witness was replayed against both versions by the
//! diff itself.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
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
    let root = workspace().join("cli/tests/fixtures/diff");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8);
    for case in cases {
        let name = case
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let (code, json) = diff(&case, "json");
        assert_eq!(code, Some(0), "{name}: {json}");
        let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let mut kinds: Vec<String> = report["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| c["kind"].as_str().expect("kind").to_owned())
            .collect();
        kinds.sort();
        let mut expected: Vec<String> = std::fs::read_to_string(case.join("expect"))
            .expect("expect file")
            .lines()
            .map(str::to_owned)
            .collect();
        expected.sort();
        assert_eq!(kinds, expected, "{name}");
        for change in report["changes"].as_array().expect("changes") {
            assert!(change["witness"]["tool"].is_string(), "{name}: {change}");
        }
        let (_, human) = diff(&case, "human");
        insta::with_settings!({ snapshot_suffix => name.clone(), omit_expression => true }, {
            insta::assert_snapshot!(human);
        });
    }
}

#[test]
fn fail_on_gates_and_identical_sets_have_no_changes() {
    let root = workspace().join("cli/tests/fixtures/diff");
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
        .current_dir(workspace())
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
        .current_dir(workspace())
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
