//! End-to-end tests: run the `polctl` binary and check exit codes and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn polctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args(args)
        .current_dir(workspace())
        .env("NO_COLOR", "1")
        .output()
        .expect("polctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A scratch directory under the target directory, fresh for each test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

#[test]
fn the_example_checks_clean() {
    let output = polctl(&["check", "examples/support-fleet"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("11 files, 9 policies, 55 rules: no problems"));
    let output = polctl(&[
        "check",
        "examples/support-fleet",
        "--compile-only",
        "--strict",
    ]);
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn the_policy_library_checks_clean() {
    let output = polctl(&["check", "policies", "--strict"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}

#[test]
fn errors_exit_2_with_every_error_reported() {
    let output = polctl(&[
        "check",
        "lang/tests/corpus/invalid/syntax_multiple_errors.pol",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let text = stdout(&output);
    assert_eq!(text.matches("Error:").count(), 4, "{text}");
    assert!(text.contains("4 errors and 0 warnings"));
}

#[test]
fn human_output_names_file_line_and_help() {
    let dir = scratch("human_output");
    std::fs::write(
        dir.join("set.pol"),
        "schema {\n  tool send_email: send { to: string }\n}\n\npolicy p {\n  rule r:\n    allow send_emial\n}\n",
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args(["check", "set.pol"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let text = stdout(&output);
    let text = text
        .rsplit_once(" (")
        .map_or(text.clone(), |(head, _)| format!("{head} (TIME)"));
    insta::assert_snapshot!(text, @r"
    [E210] Error: unknown tool `send_emial`
       ╭─[ set.pol:7:11 ]
       │
     7 │     allow send_emial
       │           ─────┬────  
       │                ╰────── not declared in the schema
       │ 
       │ Help: did you mean `send_email`?
    ───╯

    checked 1 file, 1 policy, 1 rule: 1 error and 0 warnings (TIME)
    ");
}

#[test]
fn json_output_has_the_contract_shape() {
    let output = polctl(&[
        "check",
        "lang/tests/corpus/sets/errors_in_every_file",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    let findings = report["findings"].as_array().expect("findings");
    let kinds: Vec<&str> = findings
        .iter()
        .map(|f| f["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["syntax", "schema", "type"],
        "one per file, in file order"
    );
    let unknown_tool = &findings[1];
    assert_eq!(unknown_tool["severity"], "error");
    assert_eq!(unknown_tool["code"], "E210");
    assert_eq!(unknown_tool["rules"][0], "b.r");
    assert_eq!(unknown_tool["message"], "unknown tool `u`");
    assert_eq!(unknown_tool["help"], "did you mean `t`?");
    // Spans are relative to the set, so CI output does not depend on the checkout path.
    assert_eq!(unknown_tool["spans"][0]["file"], "b.pol");
    assert_eq!(unknown_tool["spans"][0]["line"], 3);
    assert_eq!(unknown_tool["spans"][0]["column"], 11);
    let summary = &report["summary"];
    for field in [
        "files", "policies", "rules", "errors", "warnings", "seconds",
    ] {
        assert!(summary.get(field).is_some(), "summary lacks {field}");
    }
    assert_eq!(summary["files"], 4);
    assert_eq!(summary["errors"], 3);
}

#[test]
fn warnings_fail_only_with_strict() {
    let entry = "lang/tests/corpus/invalid/warnings.pol";
    // The corpus entry relies on the shared corpus schema: check it beside a copy.
    let dir = scratch("warnings");
    std::fs::copy(workspace().join(entry), dir.join("warnings.pol")).expect("copy");
    std::fs::copy(
        workspace().join("lang/tests/corpus/schema.pol"),
        dir.join("schema.pol"),
    )
    .expect("copy");
    let dir = dir.to_string_lossy().into_owned();
    assert_eq!(polctl(&["check", &dir]).status.code(), Some(0));
    assert_eq!(polctl(&["check", &dir, "--strict"]).status.code(), Some(2));
}

#[test]
fn bad_input_gets_one_line_errors_and_exit_1() {
    let missing = polctl(&["check", "no/such/dir"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).starts_with("error: `no/such/dir` does not exist\n"));

    let empty = scratch("empty");
    let output = polctl(&["check", &empty.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no `.pol` files under"));

    let output = polctl(&["check", "Cargo.toml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("is not a `.pol` file or a directory"));

    let binary = scratch("binary");
    std::fs::write(binary.join("bad.pol"), b"schema {}\n\xff\xfe\n").expect("write");
    let output = polctl(&["check", &binary.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is not valid UTF-8 (line 2"),
        "{}",
        stderr(&output)
    );

    let output = polctl(&["chek", "examples/support-fleet"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("similar subcommand exists: 'check'"));
    for output in [&missing, &output] {
        assert!(!stderr(output).contains("panicked"));
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["fmt", "--help"],
        &["--version"],
    ] {
        let output = polctl(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
    }
    assert!(stdout(&polctl(&["check", "--help"])).contains("--compile-only"));
}

#[test]
fn completions_are_printed() {
    for shell in ["bash", "zsh", "fish"] {
        let output = polctl(&["completions", shell]);
        assert_eq!(output.status.code(), Some(0));
        assert!(stdout(&output).contains("polctl"));
    }
}

#[test]
fn fmt_check_lists_unformatted_files_and_fmt_fixes_them() {
    let dir = scratch("fmt");
    copy_tree(&workspace().join("examples/support-fleet"), &dir);
    let dir_text = dir.to_string_lossy().into_owned();
    assert_eq!(
        polctl(&["fmt", "--check", &dir_text]).status.code(),
        Some(0)
    );

    let messy = dir.join("tenants/globex.pol");
    let original = std::fs::read_to_string(&messy).expect("read");
    let scrambled = original
        .replace("\n  rule ", "\n      rule ")
        .replace(" when ", "   when ");
    std::fs::write(&messy, &scrambled).expect("write");
    let output = polctl(&["fmt", "--check", &dir_text]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("would reformat"));
    assert!(stdout(&output).contains("globex.pol"));
    assert_eq!(
        std::fs::read_to_string(&messy).expect("read"),
        scrambled,
        "--check wrote"
    );

    assert_eq!(polctl(&["fmt", &dir_text]).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&messy).expect("read"), original);
    assert_eq!(
        polctl(&["fmt", "--check", &dir_text]).status.code(),
        Some(0)
    );
}

#[test]
fn fmt_leaves_files_with_syntax_errors_untouched() {
    let dir = scratch("fmt_broken");
    let broken = "policy p {\n  rule r\n    allow   x\n}\n";
    std::fs::write(dir.join("broken.pol"), broken).expect("write");
    let output = polctl(&["fmt", &dir.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).contains("not formatted because of syntax errors"));
    assert_eq!(
        std::fs::read_to_string(dir.join("broken.pol")).expect("read"),
        broken
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert_eq!(leftovers.len(), 1, "a temporary file was left behind");
}
