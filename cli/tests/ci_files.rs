//! The CI integrations: SARIF reports validate against the SARIF 2.1.0 schema, the Markdown
//! diff reads as a pull-request comment, and the example workflow and pre-commit hooks are
//! valid YAML whose every `polctl` command line uses real subcommands and flags.

use polctl_testsupport::workspace_dir;
use std::path::Path;
use std::process::{Command, Output};
use yaml_rust2::{Yaml, YamlLoader};

fn polctl_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("polctl runs")
}

fn sarif_validator() -> jsonschema::Validator {
    let text =
        std::fs::read_to_string(workspace_dir().join("cli/tests/fixtures/sarif-schema-2.1.0.json"))
            .expect("schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema JSON");
    jsonschema::validator_for(&schema).expect("a valid schema")
}

fn assert_valid_sarif(
    validator: &jsonschema::Validator,
    output: &Output,
    what: &str,
) -> serde_json::Value {
    let sarif: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: invalid SARIF:\n{}",
        errors.join("\n")
    );
    sarif
}

#[test]
fn check_sarif_is_valid_and_locates_every_finding() {
    let validator = sarif_validator();
    let root = workspace_dir();
    // A clean set: a valid document with no results.
    let output = polctl_in(
        &root,
        &["check", "examples/support-fleet", "--format", "sarif"],
    );
    assert_eq!(output.status.code(), Some(0));
    let sarif = assert_valid_sarif(&validator, &output, "clean set");
    assert_eq!(
        sarif["runs"][0]["results"].as_array().map(Vec::len),
        Some(0)
    );
    // Syntax errors in several files, and analysis findings with related locations.
    for (set, code) in [
        ("lang/tests/corpus/sets/errors_in_every_file", "E102"),
        ("cli/tests/fixtures/regex-too-large", "E310"),
    ] {
        let output = polctl_in(&root, &["check", set, "--format", "sarif"]);
        assert_eq!(output.status.code(), Some(2), "{set}");
        let sarif = assert_valid_sarif(&validator, &output, set);
        let results = sarif["runs"][0]["results"].as_array().expect("results");
        assert!(
            results.iter().any(|r| r["ruleId"] == code),
            "{set}: {sarif}"
        );
        for result in results {
            let uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .expect("uri");
            // Paths as given on the command line: code scanning resolves them from the root.
            assert!(uri.starts_with(set) && root.join(uri).is_file(), "{uri}");
            assert!(
                result["locations"][0]["physicalLocation"]["region"]["startLine"].as_u64()
                    > Some(0)
            );
        }
    }
    let dir = workspace_dir().join("solver/tests/analysis");
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sarif-findings");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    for name in [
        "schema.pol",
        "redundant_narrower_condition.pol",
        "conflict_platform_deny_and_tenant_allow.pol",
    ] {
        std::fs::copy(dir.join(name), scratch.join(name)).expect("copy");
    }
    let output = polctl_in(&scratch, &["check", ".", "--format", "sarif"]);
    let sarif = assert_valid_sarif(&validator, &output, "findings");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    let kinds: Vec<&str> = results
        .iter()
        .filter_map(|r| r["ruleId"].as_str())
        .collect();
    assert!(
        kinds.contains(&"A04") && kinds.contains(&"A03"),
        "{kinds:?}"
    );
    assert!(
        results.iter().any(|r| r["relatedLocations"]
            .as_array()
            .is_some_and(|l| !l.is_empty())),
        "{sarif}"
    );
    assert!(
        results.iter().all(|r| r["message"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("witness request"))),
        "{sarif}"
    );
}

#[test]
fn diff_sarif_and_markdown() {
    let validator = sarif_validator();
    let cases = workspace_dir().join("cli/tests/fixtures/diff");
    let output = polctl_in(
        &cases.join("widen_new_allow"),
        &["diff", "old", "new", "--format", "sarif"],
    );
    assert_eq!(output.status.code(), Some(0));
    let sarif = assert_valid_sarif(&validator, &output, "widen");
    let result = &sarif["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "widen");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "new/mail.pol"
    );
    let output = polctl_in(
        &cases.join("enum_member_added"),
        &["diff", "old", "new", "--format", "sarif"],
    );
    let sarif = assert_valid_sarif(&validator, &output, "one-sided");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert!(
        results.iter().any(|r| r["ruleId"] == "not_compared"),
        "{sarif}"
    );

    let output = polctl_in(
        &cases.join("widen_new_allow"),
        &["diff", "old", "new", "--format", "markdown"],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("## polctl diff: `old` → `new`"), "{text}");
    assert!(text.contains("**1 widening**"), "{text}");
    assert!(
        text.contains("| widen | `send_email` | deny → allow | default → acme.mail.partners |"),
        "{text}"
    );
    assert!(text.contains("```json"), "{text}");
    let output = polctl_in(
        &cases.join("refactor_same_meaning"),
        &["diff", "old", "new", "--format", "markdown"],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("**No semantic change**"), "{text}");
}

/// Every `polctl ...` command in a shell snippet, as words (variables left as they are).
fn polctl_commands(script: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    for line in script.lines() {
        for part in line
            .split(['|', ';', '>'])
            .flat_map(|p| p.split("&&"))
            .flat_map(|p| p.split("||"))
        {
            let words: Vec<String> = part
                .split_whitespace()
                .map(|w| w.trim_matches('"').to_owned())
                .collect();
            if words.first().map(String::as_str) == Some("polctl") {
                commands.push(words);
            }
        }
    }
    commands
}

/// The subcommand exists and every `--flag` is one of its flags.
fn assert_real_command(words: &[String], context: &str) {
    let subcommand = &words[1];
    let help = polctl_in(&workspace_dir(), &[subcommand.as_str(), "--help"]);
    assert_eq!(
        help.status.code(),
        Some(0),
        "{context}: `polctl {subcommand}` is not a command"
    );
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        let flag = flag.split('=').next().unwrap_or(flag);
        assert!(
            help.contains(flag),
            "{context}: `polctl {subcommand}` has no flag `{flag}`"
        );
    }
}

fn load_yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).expect("read");
    let mut documents = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()));
    assert_eq!(documents.len(), 1, "{}", path.display());
    documents.remove(0)
}

#[test]
fn the_example_workflow_is_valid_and_runs_real_commands() {
    let path = workspace_dir().join("examples/ci/policy-ci.yml");
    let workflow = load_yaml(&path);
    assert!(workflow["name"].as_str().is_some());
    assert!(!workflow["on"].is_badvalue(), "no `on`");
    let jobs = workflow["jobs"].as_hash().expect("jobs");
    assert!(jobs.len() >= 2);
    let mut seen = Vec::new();
    for (name, job) in jobs {
        let name = name.as_str().expect("job name");
        assert!(job["runs-on"].as_str().is_some(), "{name}: runs-on");
        for step in job["steps"].as_vec().expect("steps") {
            let uses = step["uses"].as_str();
            let run = step["run"].as_str();
            assert!(
                uses.is_some() != run.is_some(),
                "{name}: a step has `uses` or `run`"
            );
            for words in polctl_commands(run.unwrap_or_default()) {
                assert_real_command(&words, &format!("{}: job {name}", path.display()));
                seen.push(format!(
                    "{} {}",
                    words[1],
                    words
                        .iter()
                        .filter(|w| w.starts_with("--"))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
        }
    }
    for wanted in [
        "check --format",
        "test --format",
        "diff --fail-on",
        "diff --format",
        "build",
        "sign",
        "verify",
    ] {
        assert!(
            seen.iter().any(|s| s.starts_with(wanted)),
            "the workflow never runs `polctl {wanted}`: {seen:?}"
        );
    }
}

#[test]
fn the_pre_commit_hooks_are_valid_and_run_real_commands() {
    let path = workspace_dir().join(".pre-commit-hooks.yaml");
    let hooks = load_yaml(&path);
    let hooks = hooks.as_vec().expect("a list of hooks");
    assert!(hooks.len() >= 2);
    let mut ids = Vec::new();
    for hook in hooks {
        let id = hook["id"].as_str().expect("id");
        for key in ["name", "entry", "language"] {
            assert!(hook[key].as_str().is_some(), "{id}: `{key}` missing");
        }
        assert_eq!(
            hook["pass_filenames"].as_bool(),
            Some(false),
            "{id}: a set is checked whole"
        );
        let words = polctl_commands(hook["entry"].as_str().expect("entry"));
        assert_eq!(words.len(), 1, "{id}: the entry is one polctl command");
        assert_real_command(&words[0], id);
        ids.push(id.to_owned());
    }
    assert!(
        ids.contains(&"polctl-check".to_owned()) && ids.contains(&"polctl-fmt".to_owned()),
        "{ids:?}"
    );
}
