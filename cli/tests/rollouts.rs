//! End-to-end tests of `polctl traffic generate`, `simulate` and `replay` through the binary:
//! the two example releases rehearsed on generated traffic (human and JSON snapshots), an
//! identical pair, divergences replayed through `polctl eval`, bad plans and bad traffic lines,
//! and exit codes.

mod common;

use common::{polctl, scratch, stderr, stdout};
use polctl_testsupport::workspace_dir;
use std::process::Output;
use std::sync::OnceLock;

/// A day of traffic for the example (5,000 sessions, seed 7), generated once per run.
fn traffic() -> &'static str {
    static TRAFFIC: OnceLock<String> = OnceLock::new();
    TRAFFIC.get_or_init(|| {
        let dir = scratch("rollouts-traffic");
        let path = dir.join("fleet.jsonl");
        let path_text = path.to_string_lossy().into_owned();
        let output = polctl(&[
            "traffic",
            "generate",
            "examples/support-fleet",
            "-o",
            &path_text,
            "--sessions",
            "5000",
            "--seed",
            "7",
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        path_text
    })
}

fn simulate(to: &str, format: &str) -> (Option<i32>, String) {
    let output = polctl(&[
        "simulate",
        "--from",
        "examples/support-fleet",
        "--to",
        to,
        "--traffic",
        traffic(),
        "--plan",
        "examples/support-fleet/rollout.toml",
        "--format",
        format,
    ]);
    (
        output.status.code(),
        stdout(&output).replace(traffic(), "TRAFFIC"),
    )
}

#[test]
fn generated_traffic_is_deterministic_and_realistic() {
    let dir = scratch("rollouts-generate");
    let run = |name: &str| {
        let path = dir.join(name);
        let output = polctl(&[
            "traffic",
            "generate",
            "examples/support-fleet",
            "-o",
            &path.to_string_lossy(),
            "--sessions",
            "300",
            "--seed",
            "3",
            "--duration",
            "6h",
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        std::fs::read_to_string(path).expect("written")
    };
    let (first, second) = (run("a.jsonl"), run("b.jsonl"));
    assert_eq!(first, second, "the same seed gives the same file");
    let lines: Vec<serde_json::Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let outcomes = lines.iter().filter(|l| l.get("outcome").is_some()).count();
    assert_eq!(outcomes, 300, "one outcome per session");
    let times: Vec<&str> = lines
        .iter()
        .map(|l| l["time"].as_str().expect("time"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    let tenants: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l["agent"]["tenant"].as_str())
        .collect();
    for tenant in ["acme", "globex", "initech"] {
        assert!(tenants.contains(tenant), "agents of {tenant}");
    }
}

#[test]
fn a_release_that_narrows_one_tool_completes() {
    let (code, human) = simulate("examples/releases/verified-lookups", "human");
    assert_eq!(code, Some(0), "{human}");
    insta::assert_snapshot!("simulate_verified_lookups", human);
    let (_, json) = simulate("examples/releases/verified-lookups", "json");
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(report["verdict"], "completed");
    assert!(report["aborted"].is_null());
    let stages: Vec<&str> = report["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(stages, ["shadow", "canary", "half", "full"]);
    for divergence in report["divergences"].as_array().expect("divergences") {
        assert_eq!(divergence["predicted"], true, "{divergence}");
    }
}

#[test]
fn a_release_that_denies_a_tenant_s_reads_is_aborted_in_shadow() {
    let (code, json) = simulate("examples/releases/verified-reads", "json");
    assert_eq!(code, Some(5), "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(report["verdict"], "aborted");
    assert_eq!(report["aborted"]["stage"], "shadow");
    assert_eq!(report["aborted"]["trigger"], "max_deny_rate_change");
    assert_eq!(report["aborted"]["threshold"], 0.25);
    assert!(report["aborted"]["value"].as_f64().expect("value") > 0.25);
    insta::assert_snapshot!("simulate_verified_reads_json", json);
    let (_, human) = simulate("examples/releases/verified-reads", "human");
    insta::assert_snapshot!("simulate_verified_reads", human);
}

/// Every divergence's example request gets the reported decisions from `polctl eval` on
/// each version.
#[test]
fn divergences_replay_through_the_evaluator() {
    let (_, json) = simulate("examples/releases/verified-reads", "json");
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let divergences = report["divergences"].as_array().expect("divergences");
    assert!(divergences.len() >= 3);
    let dir = scratch("rollouts-replayed");
    for (index, divergence) in divergences.iter().enumerate() {
        let request = dir.join(format!("request-{index}.json"));
        std::fs::write(&request, divergence["example"].to_string()).expect("write");
        for (set, decision, rules) in [
            (
                "examples/support-fleet",
                &divergence["from"],
                &divergence["old_rules"],
            ),
            (
                "examples/releases/verified-reads",
                &divergence["to"],
                &divergence["new_rules"],
            ),
        ] {
            let request = request.to_string_lossy();
            let output = polctl(&["eval", set, "--request", &request, "--format", "json"]);
            let decided: serde_json::Value =
                serde_json::from_str(stdout(&output).trim()).expect("a decision");
            assert_eq!(&decided["decision"], decision, "{set}: {divergence}");
            assert_eq!(&decided["rules"], rules, "{set}: {divergence}");
        }
    }
}

#[test]
fn identical_versions_never_diverge_and_complete() {
    let output = polctl(&[
        "simulate",
        "--from",
        "examples/support-fleet",
        "--to",
        "examples/support-fleet",
        "--traffic",
        traffic(),
        "--plan",
        "examples/support-fleet/rollout.toml",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(report["verdict"], "completed");
    assert_eq!(report["divergences"], serde_json::json!([]));
    assert_eq!(report["migration"]["counters"]["carried"], 7);
}

#[test]
fn the_html_report_draws_both_cohorts_and_the_stages() {
    let dir = scratch("rollouts-report");
    let page = dir.join("report.html");
    let output = polctl(&[
        "simulate",
        "--from",
        "examples/support-fleet",
        "--to",
        "examples/releases/verified-lookups",
        "--traffic",
        traffic(),
        "--plan",
        "examples/support-fleet/rollout.toml",
        "--report",
        &page.to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let html = std::fs::read_to_string(&page).expect("the report");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "a deny-rate and an error-rate chart"
    );
    // Two cohorts' lines in each chart, and a band per stage.
    assert!(html.matches("stroke=\"#2563eb\"").count() >= 2);
    assert!(html.matches("stroke=\"#ea580c\"").count() >= 2);
    for stage in ["shadow (0%)", "canary (5%)", "half (50%)", "full (100%)"] {
        assert!(html.contains(stage), "band {stage}");
    }
    assert!(!html.contains("<script"), "a static page");
}

#[test]
fn replay_groups_changes_and_gates_like_diff() {
    let args = |extra: &[&str]| -> Output {
        let mut args = vec![
            "replay",
            "--traffic",
            traffic(),
            "--against",
            "examples/releases/verified-reads",
            "--from",
            "examples/support-fleet",
        ];
        args.extend_from_slice(extra);
        polctl(&args)
    };
    let output = args(&["--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    let changes = report["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 5, "one group per acme read tool");
    assert!(changes
        .iter()
        .all(|c| c["kind"] == "narrow" && c["old_rules"][0] == "acme.support.read_everything"));
    let counted: u64 = changes
        .iter()
        .map(|c| c["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(report["traffic"]["changed"].as_u64(), Some(counted));
    assert_eq!(args(&["--fail-on", "narrow"]).status.code(), Some(2));
    assert_eq!(args(&["--fail-on", "widen"]).status.code(), Some(0));
    // The same set on both sides: nothing changes.
    let same = polctl(&[
        "replay",
        "--traffic",
        traffic(),
        "--against",
        "examples/support-fleet",
        "--from",
        "examples/support-fleet",
        "--fail-on",
        "any",
    ]);
    assert_eq!(same.status.code(), Some(0), "{}", stdout(&same));
}

#[test]
fn replay_compares_with_recorded_decisions() {
    let output = polctl(&[
        "replay",
        "--traffic",
        "cli/tests/fixtures/traffic/recorded.jsonl",
        "--against",
        "examples/releases/verified-lookups",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    // Two lookups recorded as allowed: the unverified one is now denied.
    assert_eq!(report["traffic"]["compared"], 3);
    assert_eq!(report["traffic"]["changed"], 1);
    assert_eq!(report["traffic"]["without_baseline"], 1);
    assert_eq!(report["changes"][0]["example_line"], 1);
    assert_eq!(
        report["changes"][0]["new_rules"],
        serde_json::json!(["default"])
    );
}

#[test]
fn bad_plans_and_bad_traffic_lines_name_the_line() {
    let dir = scratch("rollouts-bad");
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        "[[stage]]\nname = \"canary\"\ntraffic = 5\nmax_eror_rate = 0.01\n",
    )
    .expect("write");
    let output = polctl(&[
        "simulate",
        "--from",
        "examples/support-fleet",
        "--to",
        "examples/support-fleet",
        "--traffic",
        "cli/tests/fixtures/traffic/recorded.jsonl",
        "--plan",
        &plan.to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("plan.toml` line 4, column 1: unknown field `max_eror_rate`"),
        "{err}"
    );
    assert!(err.contains("did you mean `max_error_rate`?"), "{err}");

    let cases: [(&str, &str); 5] = [
        (
            "{\"time\": \"2026-12-01T09:00:00Z\", \"session\": \"s\", \"tool\": \"search_kb\"\n",
            "line 1: not JSON",
        ),
        ("[1, 2]\n", "line 1: a traffic line is a JSON object"),
        (
            "{\"session\": \"s\", \"tool\": \"search_kb\"}\n",
            "line 1: `time` is missing",
        ),
        (
            "{\"time\": \"yesterday\", \"tool\": \"search_kb\"}\n",
            "line 1: `time` `yesterday` is not an RFC 3339",
        ),
        (
            "\n{\"time\": \"2026-12-01T09:00:00Z\", \"session\": \"s\", \"outcome\": \"done\"}\n",
            "line 2: `outcome` is \"done\"",
        ),
    ];
    for (index, (text, expected)) in cases.iter().enumerate() {
        let traffic = dir.join(format!("bad-{index}.jsonl"));
        std::fs::write(&traffic, text).expect("write");
        let traffic = traffic.to_string_lossy();
        for args in simulate_and_replay(&traffic) {
            let command = args[0];
            let output = polctl(&args);
            assert_eq!(output.status.code(), Some(1), "{command} {text}");
            assert!(
                stderr(&output).contains(expected),
                "{command}: {}",
                stderr(&output)
            );
            assert!(stderr(&output).contains("help:"), "{}", stderr(&output));
        }
    }
    // A line that is not UTF-8, after good ones (CRLF line ends and a blank line included):
    // reported with its number, by both commands.
    let recorded =
        std::fs::read_to_string(workspace_dir().join("cli/tests/fixtures/traffic/recorded.jsonl"))
            .expect("fixture");
    let mut bytes = Vec::new();
    for line in recorded.lines().take(2) {
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n  \n");
    }
    bytes.extend_from_slice(b"{\"time\": \"2026-12-01T09:00:00Z\", \"tool\": \"search_\xff\"}\n");
    let traffic = dir.join("latin1.jsonl");
    std::fs::write(&traffic, bytes).expect("write");
    let traffic = traffic.to_string_lossy();
    for args in simulate_and_replay(&traffic) {
        let output = polctl(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&output).contains("line 5: is not UTF-8 text"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // Out of time order.
    let traffic = dir.join("unordered.jsonl");
    let recorded =
        std::fs::read_to_string(workspace_dir().join("cli/tests/fixtures/traffic/recorded.jsonl"))
            .expect("fixture");
    let mut lines: Vec<&str> = recorded.lines().collect();
    lines.swap(0, 3);
    std::fs::write(&traffic, lines.join("\n")).expect("write");
    let output = polctl(&[
        "simulate",
        "--from",
        "examples/support-fleet",
        "--to",
        "examples/support-fleet",
        "--traffic",
        &traffic.to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output)
            .contains("line 2: `time` 2026-12-01T09:00:05Z is earlier than the line before (2026-12-01T09:01:00Z)"),
        "{}",
        stderr(&output)
    );
    // A missing traffic file.
    let output = polctl(&[
        "replay",
        "--against",
        "examples/support-fleet",
        "--traffic",
        "no/such.jsonl",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot read `no/such.jsonl`"));
}

#[test]
fn traffic_that_ends_early_is_unfinished_and_exits_5() {
    let output = polctl(&[
        "simulate",
        "--from",
        "examples/support-fleet",
        "--to",
        "examples/support-fleet",
        "--traffic",
        "cli/tests/fixtures/traffic/recorded.jsonl",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(5));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(report["verdict"], "unfinished");
    assert_eq!(report["traffic"]["lines"], 5);
    assert_eq!(report["traffic"]["outcomes"], 1);
}

/// `simulate` of the example against itself and `replay` against it, on a traffic file.
fn simulate_and_replay(traffic: &str) -> [Vec<&str>; 2] {
    [
        vec![
            "simulate",
            "--from",
            "examples/support-fleet",
            "--to",
            "examples/support-fleet",
            "--traffic",
            traffic,
        ],
        vec![
            "replay",
            "--against",
            "examples/support-fleet",
            "--traffic",
            traffic,
        ],
    ]
}
