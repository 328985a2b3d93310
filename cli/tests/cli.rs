//! End-to-end tests: run the `polctl` binary and check exit codes and output.

mod common;

use common::{polctl, scratch, stderr, stdout};
use polctl_testsupport::workspace_dir;
use std::path::Path;
use std::process::Command;

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
    assert!(stdout(&output).contains("11 files, 9 policies, 56 rules: no problems"));
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
    std::fs::copy(
        workspace_dir().join("cli/tests/fixtures/misspelt-tool/set.pol"),
        dir.join("set.pol"),
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
    std::fs::copy(workspace_dir().join(entry), dir.join("warnings.pol")).expect("copy");
    std::fs::copy(
        workspace_dir().join("lang/tests/corpus/schema.pol"),
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
    copy_tree(&workspace_dir().join("examples/support-fleet"), &dir);
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
    let broken = polctl_testsupport::read("cli/tests/fixtures/syntax-error/broken.pol");
    std::fs::write(dir.join("broken.pol"), &broken).expect("write");
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

/// Replaces the timing at the end of summary lines, which varies from run to run.
fn without_timing(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("finished in ") {
            Some(at) => format!("{}finished in TIME", &line[..at]),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn eval_prints_one_json_decision_per_line_in_order() {
    let output = polctl(&[
        "eval",
        "examples/support-fleet",
        "--request",
        "cli/tests/fixtures/requests.jsonl",
        "--format",
        "json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the last request does not fit the schema"
    );
    let text = stdout(&output);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 5);
    let decisions: Vec<&str> = lines[..4]
        .iter()
        .map(|l| l["decision"].as_str().expect("decision"))
        .collect();
    assert_eq!(decisions, ["require_approval", "allow", "allow", "deny"]);
    assert_eq!(lines[0]["approvers"][0], "finance");
    assert_eq!(lines[2]["obligations"][0]["name"], "footer");
    assert_eq!(lines[3]["rules"][0], "platform.modes.read_only_mode");
    assert_eq!(lines[3]["reasons"][0], "the platform is in read-only mode");
    assert!(lines[0]["policy_version"]
        .as_str()
        .expect("version")
        .starts_with("sha256:"));
    assert_eq!(lines[4]["line"], 5);
    assert_eq!(
        lines[4]["error"],
        "`args.currency`: `yen` is not one of eur, usd, gbp"
    );
    assert!(stderr(&output).contains("1 of 5 requests do not fit the schema"));
}

#[test]
fn eval_human_output_explains_the_decision() {
    let output = Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args(["eval", "examples/support-fleet", "--request", "-"])
        .current_dir(workspace_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let requests =
                std::fs::read_to_string(workspace_dir().join("cli/tests/fixtures/requests.jsonl"))?;
            let first = requests.lines().next().unwrap_or_default().to_owned();
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(first.as_bytes())?;
            child.wait_with_output()
        })
        .expect("runs");
    assert_eq!(output.status.code(), Some(0));
    insta::assert_snapshot!(stdout(&output));
}

#[test]
fn the_example_tests_pass_with_full_coverage() {
    let output = polctl(&["test", "examples/support-fleet", "--min-coverage", "100"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("test result: ok. 110 passed; 0 failed; 0 not yet checked"),
        "{text}"
    );
    assert!(text.contains("coverage: 56 of 56 rules decided at least one case (100.0%)"));
    let cases = text
        .lines()
        .filter(|l| {
            l.starts_with("test ") && !l.contains("adversarial") && !l.contains("not yet checked")
        })
        .count();
    assert!(cases >= 80, "only {cases} cases");
}

#[test]
fn adversarial_variants_catch_the_weak_rule_in_the_docs() {
    let output = polctl(&["test", "docs/examples/weak-mail-rule"]);
    assert_eq!(output.status.code(), Some(3));
    insta::assert_snapshot!(without_timing(&stdout(&output)));
    // The docs show this output; keep them in step.
    let docs =
        std::fs::read_to_string(workspace_dir().join("docs/testing.md")).expect("docs/testing.md");
    assert!(docs.contains("args.to = \"eve@evil.example@acme.example\" (policy literal \"@acme.example\" appended): allow by acme.mail.internal_mail"));
}

#[test]
fn test_reports_in_json_and_junit() {
    let output = polctl(&[
        "test",
        "docs/examples/weak-mail-rule",
        "--format",
        "json",
        "--coverage",
    ]);
    assert_eq!(output.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["summary"]["passed"], 2);
    assert_eq!(report["summary"]["failed"], 1);
    assert_eq!(report["results"][2]["kind"], "adversarial");
    assert_eq!(report["results"][2]["variants"], 62);
    assert_eq!(report["results"][0]["decision"]["decision"], "allow");
    assert_eq!(report["coverage"]["total"], 2);
    // Per-test durations, and the failing variants as data.
    for result in report["results"].as_array().expect("results") {
        assert!(
            result["seconds"].as_f64().is_some_and(|s| s >= 0.0),
            "{result}"
        );
    }
    let failing = report["results"][2]["failing_variants"]
        .as_array()
        .expect("failing variants");
    assert_eq!(failing.len(), 2, "{failing:?}");
    assert_eq!(failing[0]["arg"], "args.to");
    assert_eq!(failing[0]["value"], "eve@evil.example@acme.example");
    assert_eq!(failing[0]["decision"], "allow");
    assert_eq!(failing[0]["rules"][0], "acme.mail.internal_mail");
    let output = polctl(&["test", "docs/examples/weak-mail-rule", "--format", "junit"]);
    let xml = stdout(&output);
    assert!(
        xml.contains(
            "<property name=\"failing_variant\" value=\"{&quot;arg&quot;:&quot;args.to&quot;"
        ),
        "{xml}"
    );
    assert!(xml.matches(" time=\"").count() >= 5, "{xml}");

    let output = polctl(&["test", "examples/support-fleet", "--format", "junit"]);
    assert_eq!(output.status.code(), Some(0));
    let xml = stdout(&output);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"polctl\" tests=\"110\" failures=\"0\" skipped=\"0\""), "{xml}");
    assert_eq!(xml.matches("<testsuite ").count(), 5);
}

#[test]
fn test_filter_and_coverage_threshold() {
    let output = polctl(&[
        "test",
        "examples/support-fleet",
        "--filter",
        "globex",
        "--min-coverage",
        "50",
    ]);
    let text = stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(3),
        "coverage of a filtered run is low: {text}"
    );
    assert!(text.contains("running 14 tests from 5 files"), "{text}");
    assert!(stderr(&output).contains("is below the required 50.0%"));
}

#[test]
fn malformed_test_files_name_the_file_and_line() {
    let dir = scratch("malformed_tests");
    copy_tree(&workspace_dir().join("docs/examples/weak-mail-rule"), &dir);
    std::fs::write(
        dir.join("broken.test.toml"),
        "[[case]]\nname = \"x\"\ntool = \"send_email\"\nexpct = \"deny\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("also-broken.test.toml"),
        "[[case]]\nname = \"y\"\ntool = \"send_email\"\nexpect = \"allowed\"\n\n[[adversarial]]\nfrom = \"z\"\n",
    )
    .expect("write");
    let output = polctl(&["test", &dir.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    // Every problem of every file, in one run.
    for expected in [
        "broken.test.toml:4: unknown key `expct` in [[case]] (did you mean `expect`?)",
        "also-broken.test.toml:1: case `y`: `expect = \"allowed\"` is not a decision",
        "also-broken.test.toml:6: `from = \"z\"` names no case in this file",
        "error: 2 test files malformed and not run",
    ] {
        assert!(errors.contains(expected), "{expected}\n{errors}");
    }
    // The files that parse still run, and the summary never says "ok".
    let text = stdout(&output);
    assert!(
        text.contains("test result: FAILED.") && text.contains("2 files not run (malformed)"),
        "{text}"
    );
    let empty = scratch("no_tests");
    std::fs::copy(
        workspace_dir().join("docs/examples/weak-mail-rule/mail.pol"),
        empty.join("mail.pol"),
    )
    .expect("copy");
    let output = polctl(&["test", &empty.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no `*.test.toml` files"));
}

#[test]
fn bench_reports_latency_percentiles_as_json() {
    let output = polctl(&[
        "bench",
        "examples/support-fleet",
        "--decisions",
        "100000",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    for field in [
        "p50_ns",
        "p90_ns",
        "p99_ns",
        "max_ns",
        "decisions_per_sec",
        "rules",
    ] {
        assert!(report[field].is_number(), "{field} missing: {report}");
    }
    assert_eq!(report["rules"], 56);
    assert!(report["p50_ns"].as_u64() <= report["p99_ns"].as_u64());
    assert!(report["p99_ns"].as_u64() <= report["max_ns"].as_u64());
    let output = polctl(&["bench", "examples/support-fleet", "--decisions", "10"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "fewer than 100,000 decisions is refused"
    );
}

#[test]
fn check_finds_the_planted_mistakes_with_witnesses() {
    let output = polctl(&[
        "check",
        "docs/examples/planted-mistakes",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let found: Vec<(&str, &str)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().expect("kind"),
                f["rules"][0].as_str().expect("rule"),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("shadowed", "acme.support.refunds"),
            ("approval_dead_end", "acme.support.large_refunds"),
            ("conflict", "acme.support.mail"),
        ]
    );
    for finding in report["findings"].as_array().expect("findings") {
        assert!(finding["witness"]["tool"].is_string(), "{finding}");
    }
    assert_eq!(
        report["findings"][0]["blocking"][0],
        "acme.support.no_refunds_for_support"
    );
    // With --compile-only the set is clean: the mistakes are semantic.
    assert_eq!(
        polctl(&["check", "docs/examples/planted-mistakes", "--compile-only"])
            .status
            .code(),
        Some(0)
    );
    // The bundled example checks clean under the full analysis.
    let example = polctl(&["check", "examples/support-fleet", "--strict"]);
    assert_eq!(example.status.code(), Some(0), "{}", stdout(&example));
    // The docs show this output.
    let docs = std::fs::read_to_string(workspace_dir().join("docs/findings.md"))
        .expect("docs/findings.md");
    assert!(docs.contains(
        "[A07] Error: requests approved under `acme.support.large_refunds` are never allowed"
    ));
}

#[test]
fn properties_are_proven_or_refuted_with_a_counterexample() {
    let output = polctl(&["test", "cli/tests/fixtures/properties"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.contains("refunds over 2000 are never allowed ... ok"),
        "{text}"
    );
    assert!(
        text.contains("always need an approval or are allowed ... ok"),
        "{text}"
    );
    assert!(
        text.contains("refunds are never allowed ... FAILED"),
        "{text}"
    );
    // Proven only with the fact that `^ticket-[0-9]+$` and `ends with ".example"` are disjoint.
    assert!(
        text.contains("no notification goes to an outside address ... ok"),
        "{text}"
    );
    // The counterexample is a request the evaluator decides `allow`.
    let start = text.find("decided allow:\n").expect("counterexample") + "decided allow:\n".len();
    let end = start + text[start..].find("\n}\n").expect("end of JSON") + 2;
    let request: serde_json::Value = serde_json::from_str(&text[start..end]).expect("JSON request");
    assert_eq!(request["tool"], "issue_refund");
    let dir = scratch("property-counterexample");
    let file = dir.join("request.json");
    std::fs::write(&file, request.to_string()).expect("write");
    let file = file.to_string_lossy().into_owned();
    let decided = polctl(&[
        "eval",
        "cli/tests/fixtures/properties",
        "--request",
        &file,
        "--format",
        "json",
    ]);
    assert!(
        stdout(&decided).contains("\"decision\":\"allow\""),
        "{}",
        stdout(&decided)
    );
}

#[test]
fn check_against_the_live_set_finds_emergent_conflicts() {
    let output = polctl(&[
        "check",
        "cli/tests/fixtures/swap",
        "--against",
        "examples/support-fleet",
        "--strict",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let found: Vec<(String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| (f["kind"].to_string(), f["rules"].to_string()))
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    for (kind, rules) in &found {
        assert_eq!(kind, "\"conflict\"");
        assert!(rules.contains("acme.support.partner_mail"), "{rules}");
        assert!(rules.contains("platform."), "{rules}");
    }
    // The live set alone is clean: the conflicts come from the swap.
    let live = polctl(&["check", "examples/support-fleet", "--strict"]);
    assert_eq!(live.status.code(), Some(0));
    // A file that is not a bundle fails verification (exit 4) and says why.
    let file = polctl(&[
        "check",
        "cli/tests/fixtures/swap",
        "--against",
        "examples/support-fleet/schema.pol",
    ]);
    assert_eq!(file.status.code(), Some(4));
    assert!(
        stderr(&file).contains("not a polctl bundle"),
        "{}",
        stderr(&file)
    );
}

#[test]
fn adversarial_edge_values_find_an_unanchored_regex() {
    let output = polctl(&["test", "cli/tests/fixtures/regex-bypass"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.contains(
            "(edge of `acme.mail.internal_mail`: reaches it): allow by acme.mail.internal_mail"
        ),
        "{text}"
    );
}

#[test]
fn an_edge_value_with_text_on_both_sides_reaches_a_regex_rule() {
    // Found on the rule's DFAs: Z3 4.8.12 gives up on the regex, and text from the rule's
    // tests on one side of the original is not enough.
    let output = polctl(&["test", "cli/tests/fixtures/regex-wrap"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.contains(
            r#"args.name = "ops-0-drop-tables-ok" (solver: reaches `acme.jobs.ops_jobs`): allow by acme.jobs.ops_jobs"#
        ),
        "{text}"
    );
}

#[test]
fn bundles_are_reproducible_signed_and_verified() {
    let dir = scratch("bundles");
    // Two copies of the example in different directories build byte-identical bundles.
    let copy = dir.join("elsewhere/support-fleet");
    copy_tree(&workspace_dir().join("examples/support-fleet"), &copy);
    let first = dir.join("first.polb");
    let second = dir.join("second.polb");
    let built = polctl(&[
        "build",
        "examples/support-fleet",
        "-o",
        first.to_str().expect("path"),
    ]);
    assert_eq!(built.status.code(), Some(0), "{}", stderr(&built));
    let built = polctl(&[
        "build",
        copy.to_str().expect("path"),
        "-o",
        second.to_str().expect("path"),
    ]);
    assert_eq!(built.status.code(), Some(0), "{}", stderr(&built));
    assert_eq!(
        std::fs::read(&first).expect("first"),
        std::fs::read(&second).expect("second")
    );

    // Keys: the private key is readable by its owner only, and never overwritten.
    let key = dir.join("release");
    let key_text = key.to_str().expect("path");
    assert_eq!(polctl(&["keygen", "-o", key_text]).status.code(), Some(0));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(polctl(&["keygen", "-o", key_text]).status.code(), Some(1));

    let bundle = first.to_str().expect("path");
    let public = format!("{key_text}.pub");
    // Unsigned: verification fails with exit 4.
    let unsigned = polctl(&["verify", bundle, "--key", &public]);
    assert_eq!(unsigned.status.code(), Some(4));
    assert!(
        stderr(&unsigned).contains("not signed"),
        "{}",
        stderr(&unsigned)
    );
    assert_eq!(
        polctl(&["sign", bundle, "--key", key_text, "--sequence", "7"])
            .status
            .code(),
        Some(0)
    );
    let verified = polctl(&["verify", bundle, "--key", &public]);
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
    assert!(stdout(&verified).contains("(sequence 7)"));
    // Anti-rollback and the two-person rule.
    let floor = polctl(&["verify", bundle, "--key", &public, "--min-sequence", "8"]);
    assert_eq!(floor.status.code(), Some(4));
    assert!(stderr(&floor).contains("sequence 7 is below the required 8"));
    let two = polctl(&["verify", bundle, "--key", &public, "--threshold", "2"]);
    assert_eq!(two.status.code(), Some(4));
    assert!(stderr(&two).contains("threshold not met"));

    // Tampering with a sample of bytes across the file: every one is caught.
    let bytes = std::fs::read(&first).expect("signed");
    let tampered = dir.join("tampered.polb");
    let step = bytes.len() / 40;
    for index in (0..bytes.len()).step_by(step.max(1)) {
        let mut changed = bytes.clone();
        changed[index] ^= 0x20;
        std::fs::write(&tampered, &changed).expect("write");
        let output = polctl(&["verify", tampered.to_str().expect("path"), "--key", &public]);
        assert_eq!(output.status.code(), Some(4), "byte {index} accepted");
        assert!(stderr(&output).contains("failed verification"));
    }

    // inspect shows the manifest; check --against accepts the bundle as the live set.
    let inspected = polctl(&["inspect", bundle]);
    assert_eq!(inspected.status.code(), Some(0));
    assert!(
        stdout(&inspected).contains("tests     110 passed, 0 failed"),
        "{}",
        stdout(&inspected)
    );
    let against = polctl(&[
        "check",
        "cli/tests/fixtures/swap",
        "--against",
        bundle,
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&against.stdout).expect("JSON");
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(3));
}

#[test]
fn build_refuses_sets_with_error_findings() {
    let dir = scratch("refused-build");
    let output = dir.join("planted.polb");
    let refused = polctl(&[
        "build",
        "docs/examples/planted-mistakes",
        "-o",
        output.to_str().expect("path"),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("refusing to build: `polctl check` reports 2 errors"));
    assert!(!output.exists(), "nothing is written");
}

#[test]
fn a_reader_that_closes_the_pipe_early_is_not_a_crash() {
    use std::io::Read;
    let dir = scratch("closed-pipe");
    let one = std::fs::read_to_string(workspace_dir().join("cli/tests/fixtures/requests.jsonl"))
        .expect("requests");
    let first = one.lines().next().expect("a request").to_owned();
    let many = format!("{first}\n").repeat(20_000);
    let file = dir.join("many.jsonl");
    std::fs::write(&file, many).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args([
            "eval",
            "examples/support-fleet",
            "--request",
            file.to_str().expect("path"),
        ])
        .current_dir(workspace_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut start = [0u8; 64];
    stdout.read_exact(&mut start).expect("some output");
    drop(stdout);
    let output = child.wait_with_output().expect("exits");
    assert_eq!(output.status.code(), Some(0));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn a_regex_too_large_to_run_is_e310_in_every_command() {
    let dir = "cli/tests/fixtures/regex-too-large";
    let out = scratch("regex-too-large");
    let bundle = out.join("set.polb");
    let commands: [Vec<&str>; 5] = [
        vec!["check", dir, "--compile-only"],
        vec!["check", dir],
        vec![
            "eval",
            dir,
            "-r",
            "cli/tests/fixtures/regex-too-large/request.json",
        ],
        vec!["bench", dir],
        vec!["build", dir, "-o", bundle.to_str().expect("utf-8")],
    ];
    for args in commands {
        let output = polctl(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stdout(&output)
        );
        let text = stdout(&output);
        assert!(
            text.contains("[E310]") && text.contains("set.pol:9:"),
            "{args:?}: {text}"
        );
    }
    assert!(!bundle.exists());
    let output = polctl(&["check", dir, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["findings"][0]["code"], "E310", "{json}");
    assert_eq!(json["findings"][0]["spans"][0]["line"], 9);
    // Commands that need the IR say so in JSON too when asked for JSON.
    for args in [
        vec![
            "eval",
            dir,
            "-r",
            "cli/tests/fixtures/regex-too-large/request.json",
            "--format",
            "json",
        ],
        vec!["bench", dir, "--format", "json"],
    ] {
        let output = polctl(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(json["findings"][0]["code"], "E310", "{args:?}: {json}");
        assert_eq!(json["error"]["exit_code"], 2);
    }
}

#[test]
fn the_summary_says_when_z3_gave_up() {
    let dir = scratch("z3-gave-up");
    for name in ["schema.pol", "unknown_redundant.pol"] {
        std::fs::copy(
            workspace_dir().join("solver/tests/analysis").join(name),
            dir.join(name),
        )
        .expect("copy");
    }
    let path = dir.to_str().expect("utf-8");
    let output = polctl(&["check", path, "--timeout-ms", "300"]);
    let text = stdout(&output);
    assert!(
        text.contains("note: Z3 gave up on 1 query (--timeout-ms 300): 0 then decided outside Z3, 1 left unknown (A10)"),
        "{text}"
    );
    let output = polctl(&["check", path, "--timeout-ms", "300", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["summary"]["queries_at_time_limit"], 1, "{json}");
    assert_eq!(json["summary"]["queries_undecided"], 1, "{json}");
    assert_eq!(json["findings"][0]["kind"], "unknown");
    // The example needs no query Z3 cannot decide. Said with a generous limit, so that a
    // loaded machine (tests run in parallel on two cores) cannot make it fail: this is about
    // the queries, not the machine's speed.
    let output = polctl(&[
        "check",
        "examples/support-fleet",
        "--format",
        "json",
        "--timeout-ms",
        "60000",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["summary"]["queries_at_time_limit"], 0, "{json}");
}

#[test]
fn usage_and_io_errors_say_what_to_do() {
    let dir = scratch("usage-errors");
    let key = dir.join("release");
    let bundle = dir.join("set.polb");
    let key_path = key.to_str().expect("utf-8");
    let bundle_path = bundle.to_str().expect("utf-8");
    assert_eq!(polctl(&["keygen", "-o", key_path]).status.code(), Some(0));
    let output = polctl(&["build", "examples/support-fleet", "-o", bundle_path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let public = format!("{key_path}.pub");
    let missing = dir.join("missing.pub");
    let scratch_dir = dir.to_str().expect("utf-8");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["check", "/nonexistent/set"], 1, "does not exist"),
        (
            vec![
                "diff",
                "git:no-such-ref:examples/support-fleet",
                "examples/support-fleet",
            ],
            1,
            "failed",
        ),
        (
            vec![
                "eval",
                "examples/support-fleet",
                "-r",
                "/nonexistent/requests.jsonl",
            ],
            1,
            "cannot read",
        ),
        (
            vec![
                "verify",
                bundle_path,
                "--key",
                missing.to_str().expect("utf-8"),
            ],
            1,
            "cannot read",
        ),
        (
            vec!["sign", bundle_path, "--key", &public],
            1,
            "is a public key",
        ),
        (
            vec!["sign", scratch_dir, "--key", key_path],
            1,
            "is a directory, not a bundle",
        ),
        (vec!["sign", bundle_path, "--key", key_path], 0, ""),
        (
            vec!["sign", bundle_path, "--key", key_path],
            4,
            "already signed",
        ),
    ];
    for (args, code, message) in cases {
        let output = polctl(&args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            stderr(&output)
        );
        if code == 0 {
            continue;
        }
        let errors = stderr(&output);
        let lines: Vec<&str> = errors.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("error: ") && l.contains(message)),
            "{args:?}: {errors}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("  help: ")),
            "{args:?} has no help line: {errors}"
        );
    }
    // With --format json the error is also a JSON document on stdout.
    let output = polctl(&["check", "/nonexistent/set", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["error"]["exit_code"], 1);
    assert!(json["error"]["help"].is_string(), "{json}");
    // After a report, stdout stays one document: the error goes to stderr only.
    let output = Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args([
            "diff",
            "old",
            "new",
            "--fail-on",
            "widen",
            "--format",
            "json",
        ])
        .current_dir(workspace_dir().join("cli/tests/fixtures/diff/widen_new_allow"))
        .output()
        .expect("polctl runs");
    assert_eq!(output.status.code(), Some(2));
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert!(json["changes"].is_array());
}

#[test]
fn eval_test_and_bench_accept_a_bundle() {
    let dir = scratch("bundle-as-set");
    let bundle = dir.join("fleet.polb");
    let bundle_path = bundle.to_str().expect("utf-8");
    let output = polctl(&["build", "examples/support-fleet", "-o", bundle_path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let requests = "cli/tests/fixtures/requests.jsonl";
    let from_dir = polctl(&[
        "eval",
        "examples/support-fleet",
        "-r",
        requests,
        "--format",
        "json",
    ]);
    let from_bundle = polctl(&["eval", bundle_path, "-r", requests, "--format", "json"]);
    // The fixture's last request does not fit the schema: the same exit code, the same lines.
    assert_eq!(from_bundle.status.code(), from_dir.status.code());
    assert_eq!(stdout(&from_dir), stdout(&from_bundle));
    let output = polctl(&["test", bundle_path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("110 passed"),
        "{}",
        stdout(&output)
    );
    let output = polctl(&["bench", bundle_path, "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // A bundle that fails its integrity check is refused with exit 4, before anything runs.
    let mut bytes = std::fs::read(&bundle).expect("bundle");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let corrupt = dir.join("corrupt.polb");
    std::fs::write(&corrupt, bytes).expect("write");
    let output = polctl(&["eval", corrupt.to_str().expect("utf-8"), "-r", requests]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stdout(&output).is_empty());
}

#[test]
fn eval_reports_limits_and_shows_named_values_by_name() {
    let request = "cli/tests/fixtures/limits/request.json";
    let output = polctl(&[
        "eval",
        "examples/support-fleet",
        "-r",
        request,
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let decision: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(decision["decision"], "allow");
    // Every limit the allow counts against: its counter's identity and state.
    assert_eq!(
        decision["limits"],
        serde_json::json!([
            {"rule": "platform.limits.mail_per_agent", "key": "bot-1",
             "window_start": "2026-12-01T00:00:00Z", "window_seconds": 86400, "used": 3, "max": 200},
            {"rule": "platform.limits.mail_per_tenant", "key": "acme",
             "window_start": "2026-12-01T00:00:00Z", "window_seconds": 86400, "used": 0, "max": 2000}
        ])
    );
    let output = polctl(&["eval", "examples/support-fleet", "-r", request]);
    let text = stdout(&output);
    assert!(
        text.contains("`when` does not hold: args.body matches secret_markers or args.subject matches secret_markers"),
        "{text}"
    );
}

/// Every snapshot under `tests/snapshots` belongs to a test that still exists (insta names
/// them `<binary>__<test or snapshot name>.snap`).
#[test]
fn no_orphaned_snapshots() {
    let tests = workspace_dir().join("cli/tests");
    polctl_testsupport::assert_no_orphaned_snapshots(&tests.join("snapshots"), |snap| {
        let stem = snap.file_stem().expect("a name").to_string_lossy();
        let Some((binary, test)) = stem.split_once("__") else {
            return false;
        };
        // Named after the test function, or given a name in `assert_snapshot!("name", ...)`.
        std::fs::read_to_string(tests.join(format!("{binary}.rs"))).is_ok_and(|source| {
            source.contains(&format!("fn {test}()")) || source.contains(&format!("\"{test}\""))
        })
    });
}
