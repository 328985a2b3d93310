//! Calibration of the rollback statistics, on 200 seeded rollouts each:
//! - A/A (the same version on both sides) aborts in at most 1 % of runs: through the whole
//!   simulator with traffic generated from the example set, and through the controller with
//!   synthetic clustered traffic;
//! - an injected change of +2 percentage points of deny rate on a 10 % base, and one of +1 %
//!   errors, abort in at least 95 % of runs, in the stage where traffic first meets them (the
//!   shadow stage, where the candidate decides every request).
//!
//! The synthetic traffic is clustered the way real traffic is: sessions of 2 to 12 requests,
//! and a deny propensity per session (most sessions rarely denied, some often), so a test that
//! treated requests as independent would fire on A/A noise.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora

use polctl_lang::eval::generate::Rng;
use polctl_lang::eval::Evaluator;
use polctl_lang::{compile, SourceSet};
use polctl_rollout::cohort::Cohort;
use polctl_rollout::controller::{Controller, Observation, Phase};
use polctl_rollout::plan::parse_plan;
use polctl_rollout::simulate::{SimulationSetup, Simulator};
use polctl_rollout::traffic::{GenerateOptions, TrafficGenerator};
use polctl_rollout::window::{cluster_of, Verdict};
use polctl_testsupport::{read, read_tree, workspace_dir};

const RUNS: u64 = 200;

/// The plan of the calibration: a shadow stage with tight criteria, a canary, then all.
const PLAN: &str = r#"
[[stage]]
name = "shadow"
traffic = 0
min_duration = "20m"
min_decisions = 1000
max_error_rate = 0.001
max_deny_rate_change = 0.05

[[stage]]
name = "canary"
traffic = 10
min_duration = "30m"
min_decisions = 500
max_error_rate = 0.002
max_deny_rate_change = 0.3

[[stage]]
name = "full"
traffic = 100

[rollback]
max_error_rate = 0.01
max_deny_rate_change = 0.5
min_task_completion_ratio = 0.8
bake = "20m"
"#;

/// The change injected into the candidate.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Change {
    None,
    /// +2 percentage points of deny rate on a 10 % base.
    Denies,
    /// +1 % of requests the candidate cannot decide.
    Errors,
}

/// One controller-level rollout over synthetic clustered traffic; `(phase, stage, trigger)`.
fn synthetic_rollout(seed: u64, change: Change) -> (Phase, String, String) {
    let plan = parse_plan(PLAN).expect("plan");
    let mut rng = Rng::new(seed);
    let uniform = |rng: &mut Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut controller = Controller::new(plan, format!("calibration-{seed}"), 0);
    let mut time = 0i64;
    let mut session = 0u64;
    // About 60,000 requests over 12 hours: enough for every stage and the bake.
    while time < 12 * 3_600_000 && !controller.phase().is_final() {
        session += 1;
        let key = format!("s-{seed}-{session}");
        // Seven sessions in ten are rarely denied, three often: a 10 % deny rate overall.
        let propensity = if uniform(&mut rng) < 0.7 { 0.04 } else { 0.24 };
        let calls = 2 + rng.below(11);
        let mut denied_by_candidate_only = false;
        let mut cohort_of_session = Cohort::Stable;
        for _ in 0..calls {
            time += 700;
            let route = controller.route(Some(&key));
            cohort_of_session = route.decides;
            let u = uniform(&mut rng);
            let stable = if u < propensity {
                Verdict::Deny
            } else {
                Verdict::Allow
            };
            let candidate = match change {
                Change::Errors if uniform(&mut rng) < 0.01 => Verdict::Error,
                Change::Denies if u < propensity + 0.02 => Verdict::Deny,
                _ => stable,
            };
            if candidate == Verdict::Deny && stable == Verdict::Allow {
                denied_by_candidate_only = true;
            }
            let evaluated = |c: Cohort| route.decides == c || route.shadow;
            controller.observe(&Observation {
                cohort: route.decides,
                verdicts: [
                    evaluated(Cohort::Stable).then_some((stable, None)),
                    evaluated(Cohort::Candidate).then_some((candidate, None)),
                ],
                unexpected: false,
                cluster: cluster_of(Some(&key)),
            });
            controller.tick(time);
        }
        let failed = (cohort_of_session == Cohort::Candidate && denied_by_candidate_only)
            || uniform(&mut rng) < 0.08;
        controller.observe_outcome(cohort_of_session, !failed);
        controller.tick(time);
    }
    let (stage, trigger) = controller
        .aborted()
        .map(|a| (a.stage.clone(), a.trigger.clone()))
        .unwrap_or_default();
    (controller.phase(), stage, trigger)
}

/// Runs `RUNS` seeds on two threads.
fn runs<T: Send>(run: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let run = &run;
    std::thread::scope(|scope| {
        let halves: Vec<_> = (0..2u64)
            .map(|half| {
                scope.spawn(move || {
                    (0..RUNS)
                        .filter(|seed| seed % 2 == half)
                        .map(run)
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("a calibration thread"))
            .collect()
    })
}

#[test]
fn a_a_rollouts_of_synthetic_clustered_traffic_rarely_abort() {
    let results = runs(|seed| synthetic_rollout(seed, Change::None));
    let aborted: Vec<_> = results.iter().filter(|r| r.0 == Phase::Aborted).collect();
    let completed = results.iter().filter(|r| r.0 == Phase::Completed).count();
    assert!(
        aborted.len() as u64 <= RUNS / 100,
        "{} of {RUNS} A/A rollouts aborted: {aborted:?}",
        aborted.len()
    );
    assert!(
        completed as u64 >= RUNS * 95 / 100,
        "only {completed} of {RUNS} completed"
    );
}

#[test]
fn two_points_more_denies_abort_in_the_shadow_stage() {
    let results = runs(|seed| synthetic_rollout(1_000 + seed, Change::Denies));
    let caught = results
        .iter()
        .filter(|(phase, stage, _)| *phase == Phase::Aborted && stage == "shadow")
        .count();
    assert!(
        caught as u64 >= RUNS * 95 / 100,
        "{caught} of {RUNS} aborted in shadow: {:?}",
        results
            .iter()
            .filter(|r| r.1 != "shadow")
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(results
        .iter()
        .filter(|r| r.0 == Phase::Aborted)
        .all(|(_, _, trigger)| trigger == "max_deny_rate_change"));
}

#[test]
fn one_percent_errors_abort_in_the_shadow_stage() {
    let results = runs(|seed| synthetic_rollout(2_000 + seed, Change::Errors));
    let caught = results
        .iter()
        .filter(|(phase, stage, trigger)| {
            *phase == Phase::Aborted && stage == "shadow" && trigger == "max_error_rate"
        })
        .count();
    assert!(caught as u64 >= RUNS * 95 / 100, "{caught} of {RUNS}");
}

/// The plan of the whole-simulator A/A runs: the example's shape (a shadow stage, a canary, half,
/// all, then a bake), with minimums scaled to a day of 1,000 sessions so that runs complete.
const SIMULATION_PLAN: &str = r#"
stickiness = "session"

[[stage]]
name = "shadow"
traffic = 0
min_duration = "30m"
min_decisions = 300
max_error_rate = 0.001
max_deny_rate_change = 0.25

[[stage]]
name = "canary"
traffic = 5
min_duration = "1h"
min_decisions = 60
max_error_rate = 0.002
max_deny_rate_change = 0.5

[[stage]]
name = "half"
traffic = 50
min_duration = "1h"
min_decisions = 500

[[stage]]
name = "full"
traffic = 100

[rollback]
max_error_rate = 0.01
max_deny_rate_change = 0.5
min_task_completion_ratio = 0.8
unexpected_divergence = true
bake = "1h"
"#;

/// A/A through the whole simulator: the example set on both sides, traffic generated with a
/// different seed each run.
#[test]
fn a_a_simulations_of_the_example_rarely_abort() {
    let files = read_tree(&workspace_dir().join("examples/support-fleet"), "pol");
    let set = compile(&SourceSet::from_files(files))
        .set
        .expect("the example compiles");
    let evaluator = Evaluator::new(set, "example").expect("plan");
    // The example's own plan parses (it is for a fleet's traffic, larger than these runs').
    parse_plan(&read("examples/support-fleet/rollout.toml")).expect("the example plan");
    let plan = parse_plan(SIMULATION_PLAN).expect("plan");
    let results = runs(|seed| {
        let options = GenerateOptions {
            sessions: 1_000,
            duration_ms: 24 * 3_600_000,
            seed,
            start: 1_796_083_200_000,
        };
        let mut simulator = Simulator::new(SimulationSetup {
            stable: &evaluator,
            candidate: &evaluator,
            plan: plan.clone(),
            prediction: None,
            rollout_id: format!("a-a-{seed}"),
            sequence: 1,
        });
        for line in TrafficGenerator::new(&evaluator, &options) {
            simulator
                .feed_text(&line.to_string())
                .expect("in time order");
        }
        let report = simulator.finish();
        assert!(report.divergences.is_empty(), "the same set diverged");
        (report.verdict, report.aborted.map(|a| (a.stage, a.trigger)))
    });
    let aborted: Vec<_> = results.iter().filter(|r| r.0 == "aborted").collect();
    assert!(
        aborted.len() as u64 <= RUNS / 100,
        "{} of {RUNS} A/A simulations aborted: {aborted:?}",
        aborted.len()
    );
    let completed = results.iter().filter(|r| r.0 == "completed").count();
    assert!(
        completed as u64 >= RUNS * 9 / 10,
        "only {completed} of {RUNS} A/A simulations completed"
    );
}
