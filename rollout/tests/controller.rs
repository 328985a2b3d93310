//! The controller corpus: `tests/controller/*.txt`, each a plan and a script of events, with
//! the timeline they produce snapshotted beside it (`.snap`).
//!
//! A script line is `at DURATION COMMAND`:
//! - `traffic N [OPTION=VALUE]...`: N requests spread evenly since the previous line, each
//!   routed by the controller and followed by a tick. Options: `stable.deny`,
//!   `candidate.deny`, `stable.error`, `candidate.error` (rates), `keys` (distinct stickiness
//!   keys; default one per request), `keyless=true`, `unexpected` (every how-many-th
//!   divergence is unexpected), `candidate.latency_us`, `candidate.slow` with `slow_us`.
//!   Verdicts come from low-discrepancy sequences, so a script is deterministic: request `i`
//!   is denied by a version when `frac(i·φ)` is below its deny rate (the same `i` for both,
//!   so equal rates never diverge).
//! - `outcomes stable=C/R candidate=C/R`: R sessions of each cohort report, C completed.
//! - `tick`, `pause`, `resume`, `promote`, `promote-full`, `abort [REASON]`.
//! - `restart`: the controller's state goes through JSON and back, as a server persists it
//!   and a restart restores it (the current stage's figures start again).
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora

use polctl_rollout::cohort::Cohort;
use polctl_rollout::controller::{Controller, Observation};
use polctl_rollout::duration::parse_millis;
use polctl_rollout::plan::parse_plan;
use polctl_rollout::window::{cluster_of, Verdict};
use polctl_testsupport::{assert_no_orphaned_snapshots, list, workspace_dir, Corpus};
use std::collections::HashMap;
use std::fmt::Write;
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    workspace_dir().join("rollout/tests/controller")
}

fn frac(x: f64) -> f64 {
    x - x.floor()
}

/// Runs one script; the rendered timeline.
fn run(text: &str) -> Result<String, String> {
    let (plan_text, script) = text
        .split_once("\nevents:\n")
        .ok_or("a case has a plan, a line `events:`, and the script")?;
    let plan = parse_plan(plan_text).map_err(|e| format!("plan: {e}"))?;
    let mut controller = Controller::new(plan, "corpus", 0);
    let mut out = String::new();
    let mut shown = 0;
    let mut previous = 0i64;
    let mut request_index = 0u64;
    let mut divergences = 0u64;
    let show = |controller: &Controller, out: &mut String, shown: &mut usize| {
        for event in &controller.events()[*shown..] {
            let _ = write!(
                out,
                "  {:>8}  {:<9} {:<8} {}",
                polctl_rollout::duration::format_millis(event.time),
                event.event.as_str(),
                event.stage,
                event.detail
            );
            if let Some(f) = &event.figure {
                let _ = write!(
                    out,
                    "  [{} = {:.4}, threshold {}]",
                    f.key, f.value, f.threshold
                );
            }
            out.push('\n');
        }
        *shown = controller.events().len();
    };
    show(&controller, &mut out, &mut shown);
    for line in script
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let _ = writeln!(out, "> {line}");
        let mut words = line.split_whitespace();
        if words.next() != Some("at") {
            return Err(format!("`{line}`: a line starts with `at`"));
        }
        let time = parse_millis(words.next().ok_or("a time")?)?;
        let command = words.next().ok_or("a command")?;
        let rest: Vec<&str> = words.collect();
        let refused = |r: Result<(), String>, out: &mut String| {
            if let Err(why) = r {
                let _ = writeln!(out, "  refused: {why}");
            }
        };
        match command {
            "traffic" => {
                let count: u64 = rest
                    .first()
                    .ok_or("a count")?
                    .parse()
                    .map_err(|_| "a count")?;
                let options: HashMap<&str, &str> = rest[1..]
                    .iter()
                    .map(|o| {
                        o.split_once('=')
                            .ok_or(format!("`{o}` is not OPTION=VALUE"))
                    })
                    .collect::<Result<_, _>>()?;
                let rate = |key: &str| -> f64 {
                    options.get(key).map_or(0.0, |v| v.parse().unwrap_or(0.0))
                };
                let keys: u64 = options.get("keys").map_or(0, |v| v.parse().unwrap_or(0));
                let keyless = options.get("keyless") == Some(&"true");
                let unexpected_every: u64 = options
                    .get("unexpected")
                    .map_or(0, |v| v.parse().unwrap_or(0));
                for n in 0..count {
                    request_index += 1;
                    let i = request_index as f64;
                    let at = previous + (time - previous) * (n as i64 + 1) / count as i64;
                    let key = if keyless {
                        None
                    } else if keys > 0 {
                        Some(format!("k{}", request_index % keys))
                    } else {
                        Some(format!("k{request_index}"))
                    };
                    let route = controller.route(key.as_deref());
                    let u = frac(i * 0.618_033_988_749_895);
                    let v = frac(i * 0.754_877_666_246_693);
                    let w = frac(i * 0.569_840_290_998_053);
                    let verdict = |version: &str| {
                        if v < rate(&format!("{version}.error")) {
                            Verdict::Error
                        } else if u < rate(&format!("{version}.deny")) {
                            Verdict::Deny
                        } else {
                            Verdict::Allow
                        }
                    };
                    let latency = |version: &str| -> Option<u64> {
                        let base = options
                            .get(format!("{version}.latency_us").as_str())?
                            .parse()
                            .ok()?;
                        if w < rate(&format!("{version}.slow")) {
                            options.get("slow_us").and_then(|v| v.parse().ok())
                        } else {
                            Some(base)
                        }
                    };
                    let (s, c) = (verdict("stable"), verdict("candidate"));
                    let mut unexpected = false;
                    if s != c && s != Verdict::Error && c != Verdict::Error {
                        divergences += 1;
                        unexpected = unexpected_every > 0 && divergences % unexpected_every == 0;
                    }
                    let evaluated = |cohort: Cohort| route.decides == cohort || route.shadow;
                    let observation = Observation {
                        cohort: route.decides,
                        verdicts: [
                            evaluated(Cohort::Stable).then(|| (s, latency("stable"))),
                            evaluated(Cohort::Candidate).then(|| (c, latency("candidate"))),
                        ],
                        unexpected,
                        cluster: cluster_of(key.as_deref()),
                    };
                    controller.observe(&observation);
                    controller.tick(at);
                }
            }
            "outcomes" => {
                for part in &rest {
                    let (cohort, counts) = part.split_once('=').ok_or("cohort=C/R")?;
                    let (completed, reported) = counts.split_once('/').ok_or("C/R")?;
                    let (completed, reported): (u64, u64) = (
                        completed.parse().map_err(|_| "C")?,
                        reported.parse().map_err(|_| "R")?,
                    );
                    let cohort = if cohort == "stable" {
                        Cohort::Stable
                    } else {
                        Cohort::Candidate
                    };
                    for i in 0..reported {
                        controller.observe_outcome(cohort, i < completed);
                    }
                }
                controller.tick(time);
            }
            "tick" => controller.tick(time),
            "restart" => {
                let text = serde_json::to_string(&controller.state()).map_err(|e| e.to_string())?;
                let state = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                controller = Controller::restore(state)?;
                let _ = writeln!(out, "  (restarted from the persisted state)");
            }
            "pause" => refused(controller.pause(time), &mut out),
            "resume" => refused(controller.resume(time), &mut out),
            "promote" => refused(controller.promote(time, false), &mut out),
            "promote-full" => refused(controller.promote(time, true), &mut out),
            "abort" => {
                let reason = (!rest.is_empty()).then(|| rest.join(" "));
                refused(controller.abort(time, reason), &mut out)
            }
            other => return Err(format!("unknown command `{other}`")),
        }
        previous = time;
        show(&controller, &mut out, &mut shown);
    }
    let _ = writeln!(
        out,
        "\nphase: {}, stage `{}`, candidate traffic {}%",
        controller.phase().as_str(),
        controller.current().name,
        controller.traffic()
    );
    for stage in controller.stage_reports() {
        let _ = writeln!(
            out,
            "  {:<8} requests {:>6}  divergence {:.4}  stable {:>5} decisions deny {:.4} errors {:.4}  candidate {:>5} decisions deny {:.4} errors {:.4} p99 {:?}",
            stage.name,
            stage.requests,
            stage.divergence,
            stage.cohorts.stable.decisions,
            stage.cohorts.stable.deny_rate,
            stage.cohorts.stable.error_rate,
            stage.cohorts.candidate.decisions,
            stage.cohorts.candidate.deny_rate,
            stage.cohorts.candidate.error_rate,
            stage.cohorts.candidate.p99_us,
        );
    }
    Ok(out)
}

#[test]
fn controller_corpus() {
    let mut corpus = Corpus::new();
    for path in list(&corpus_dir(), |p| p.extension().is_some_and(|e| e == "txt")) {
        let name = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("read");
        match run(&text) {
            Ok(rendered) => {
                // `# expect: PHASE` lines are checked, not only snapshotted.
                for expected in text.lines().filter_map(|l| l.strip_prefix("# expect: ")) {
                    if !rendered.contains(expected.trim()) {
                        corpus.fail(&name, format!("expected `{expected}` in the timeline"));
                    }
                }
                corpus.snapshot(&corpus_dir(), &name, &name, &rendered);
            }
            Err(error) => corpus.fail(&name, error),
        }
    }
    corpus.finish(15);
}

#[test]
fn no_orphaned_snapshots() {
    assert_no_orphaned_snapshots(&corpus_dir(), |snap| snap.with_extension("txt").exists());
}
