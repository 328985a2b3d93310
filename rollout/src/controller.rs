//! The rollout controller: a state machine over a plan, driven by observations and time that
//! the caller passes in (the server: live decisions and the wall clock; `polctl simulate`:
//! replayed decisions and the traffic's times). It routes requests to cohorts, keeps the
//! current stage's figures, judges criteria and triggers, and records every transition as an
//! [`Event`] carrying the figure that caused it.
//!
//! Phases: `running` a stage → (criteria met) the next stage → ... → `baking` after the last
//! stage (rollback triggers still watched for `bake`) → `completed`. A significant breach of a
//! stage criterion or a rollback trigger, in any phase before completion, is `aborted`: all
//! traffic back to stable. `paused` holds the stage (triggers are still watched); `promote`
//! skips to the next stage, `promote --full` completes at once.

use crate::cohort::{cohort, Cohort};
use crate::duration::{format_millis, Millis};
use crate::plan::{Criteria, Plan, Stage};
use crate::stats::{
    paired_relative_change_above, rate_above, ratio_below, relative_change_above, Judgement, Sample,
};
use crate::window::{CohortFigures, Verdict, Window};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Running,
    Paused,
    Baking,
    Completed,
    Aborted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Baking => "baking",
            Phase::Completed => "completed",
            Phase::Aborted => "aborted",
        }
    }

    /// The rollout is over: nothing routes to a candidate any more, or it is the stable.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Completed | Phase::Aborted)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Entered,
    Advanced,
    Waiting,
    Paused,
    Resumed,
    Promoted,
    Baking,
    Aborted,
    Completed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Entered => "entered",
            EventKind::Advanced => "advanced",
            EventKind::Waiting => "waiting",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Promoted => "promoted",
            EventKind::Baking => "baking",
            EventKind::Aborted => "aborted",
            EventKind::Completed => "completed",
        }
    }
}

/// The figure behind a transition: a plan key, its value and its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub key: String,
    pub value: f64,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time: Millis,
    pub event: EventKind,
    pub stage: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figure: Option<Figure>,
}

/// Why a rollout was aborted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Abort {
    pub stage: String,
    /// The plan key that fired, or `manual`.
    pub trigger: String,
    pub value: f64,
    pub threshold: f64,
    pub time: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The version whose decision is enforced.
    pub decides: Cohort,
    /// The other version decides too, for comparison and for its counters.
    pub shadow: bool,
}

/// What the versions made of one request.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// The cohort the request was routed to.
    pub cohort: Cohort,
    /// Per version (`Cohort::index`): its verdict and decision time, if it decided.
    pub verdicts: [Option<(Verdict, Option<u64>)>; 2],
    /// Both decided and differ, outside the classes `polctl diff` predicted.
    pub unexpected: bool,
    /// The request's cluster ([`crate::window::cluster_of`] its stickiness key).
    pub cluster: Option<u64>,
}

/// A finished (or the current) stage's figures, for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    pub name: String,
    pub traffic: f64,
    pub entered: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<Millis>,
    pub requests: u64,
    pub divergence: f64,
    pub cohorts: Cohorts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cohorts {
    pub stable: CohortFigures,
    pub candidate: CohortFigures,
}

pub struct Controller {
    plan: Plan,
    rollout_id: String,
    phase: Phase,
    stage: usize,
    stage_entered: Millis,
    bake_started: Option<Millis>,
    window: Window,
    finished: Vec<StageReport>,
    events: Vec<Event>,
    aborted: Option<Abort>,
    /// The last `waiting` detail, so a stage that waits says so once per reason.
    waiting: Option<String>,
}

/// What a server persists of a rollout so that a restart resumes it at the same stage and
/// phase (the current stage's figures start again: a restart never advances a stage on
/// figures it cannot show).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControllerState {
    /// The plan as `rollout.toml` text.
    pub plan: String,
    pub rollout_id: String,
    pub phase: Phase,
    pub stage: usize,
    pub stage_entered: Millis,
    pub bake_started: Option<Millis>,
    pub aborted: Option<Abort>,
    pub finished: Vec<StageReport>,
    pub events: Vec<Event>,
}

/// Which criteria are judged, and whether they gate advancement or only trigger rollback.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Stage,
    Rollback,
}

impl Controller {
    /// Starts a rollout at its first stage. `rollout_id` fixes the cohorts for its life.
    pub fn new(plan: Plan, rollout_id: impl Into<String>, now: Millis) -> Controller {
        let mut controller = Controller {
            plan,
            rollout_id: rollout_id.into(),
            phase: Phase::Running,
            stage: 0,
            stage_entered: now,
            bake_started: None,
            window: Window::default(),
            finished: Vec::new(),
            events: Vec::new(),
            aborted: None,
            waiting: None,
        };
        let stage = controller.current().clone();
        controller.emit(now, EventKind::Entered, entered_detail(&stage), None);
        controller
    }

    /// The state to persist ([`Controller::restore`] reads it back).
    pub fn state(&self) -> ControllerState {
        ControllerState {
            plan: self.plan.to_toml(),
            rollout_id: self.rollout_id.clone(),
            phase: self.phase,
            stage: self.stage,
            stage_entered: self.stage_entered,
            bake_started: self.bake_started,
            aborted: self.aborted.clone(),
            finished: self.finished.clone(),
            events: self.events.clone(),
        }
    }

    /// Resumes a persisted rollout at its stage and phase, with empty figures.
    pub fn restore(state: ControllerState) -> Result<Controller, String> {
        let plan = crate::plan::parse_plan(&state.plan)
            .map_err(|e| format!("the persisted plan does not parse: {e}"))?;
        if state.stage >= plan.stages.len() {
            return Err(format!(
                "the persisted stage {} is not in the plan ({} stages)",
                state.stage,
                plan.stages.len()
            ));
        }
        Ok(Controller {
            plan,
            rollout_id: state.rollout_id,
            phase: state.phase,
            stage: state.stage,
            stage_entered: state.stage_entered,
            bake_started: state.bake_started,
            window: Window::default(),
            finished: state.finished,
            events: state.events,
            aborted: state.aborted,
            waiting: None,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn rollout_id(&self) -> &str {
        &self.rollout_id
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn current(&self) -> &Stage {
        &self.plan.stages[self.stage]
    }

    pub fn stage_index(&self) -> usize {
        self.stage
    }

    pub fn stage_entered(&self) -> Millis {
        self.stage_entered
    }

    pub fn window(&self) -> &Window {
        &self.window
    }

    pub fn aborted(&self) -> Option<&Abort> {
        self.aborted.as_ref()
    }

    /// Every event so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The percent of traffic the candidate decides now.
    pub fn traffic(&self) -> f64 {
        match self.phase {
            Phase::Completed => 100.0,
            Phase::Aborted => 0.0,
            _ => self.current().traffic,
        }
    }

    /// Routes a request by its stickiness key (`None` when the request lacks it: stable).
    pub fn route(&self, key: Option<&str>) -> Route {
        match self.phase {
            Phase::Completed => Route {
                decides: Cohort::Candidate,
                shadow: false,
            },
            Phase::Aborted => Route {
                decides: Cohort::Stable,
                shadow: false,
            },
            _ => Route {
                decides: cohort(&self.rollout_id, key, self.current().traffic),
                shadow: true,
            },
        }
    }

    /// Adds one request's verdicts to the current stage's figures.
    pub fn observe(&mut self, observation: &Observation) {
        if self.phase.is_final() {
            return;
        }
        let limits = (
            self.current().criteria.max_latency_p99_us,
            self.plan.rollback.criteria.max_latency_p99_us,
        );
        let window = &mut self.window;
        window.requests += 1;
        if observation.cluster.is_none() {
            window.keyless += 1;
        }
        for version in [Cohort::Stable, Cohort::Candidate] {
            if let Some((verdict, latency)) = observation.verdicts[version.index()] {
                let tally = if version == observation.cohort {
                    &mut window.enforced[version.index()]
                } else {
                    &mut window.shadow[version.index()]
                };
                tally.record(verdict, latency, limits, observation.cluster);
            }
        }
        if let [Some((stable, _)), Some((candidate, _))] = observation.verdicts {
            if stable != Verdict::Error && candidate != Verdict::Error {
                window.compared += 1;
                let diverged = stable != candidate;
                if diverged {
                    window.diverged += 1;
                }
                window
                    .divergence_clusters
                    .add(observation.cluster, diverged, false);
                window.paired.add(
                    observation.cluster,
                    candidate == Verdict::Deny,
                    stable == Verdict::Deny,
                );
            }
        }
        if observation.unexpected {
            window.unexpected += 1;
        }
    }

    /// A session of `cohort` reported its outcome.
    pub fn observe_outcome(&mut self, cohort: Cohort, completed: bool) {
        if self.phase.is_final() {
            return;
        }
        let outcomes = &mut self.window.outcomes[cohort.index()];
        outcomes.reported += 1;
        if completed {
            outcomes.completed += 1;
        }
    }

    /// Judges the current stage at `now`: aborts on a significant breach, advances when the
    /// stage's minimums are reached and its criteria hold, completes after the bake.
    pub fn tick(&mut self, now: Millis) {
        if self.phase.is_final() {
            return;
        }
        if let Some((figure, role)) = self.breach() {
            let stage = self.current().name.clone();
            let what = match role {
                Role::Stage => "stage criterion",
                Role::Rollback => "rollback trigger",
            };
            let detail = format!(
                "{what} `{}` breached: {} against {} ({})",
                figure.key,
                show(&figure.key, figure.value),
                show(&figure.key, figure.threshold),
                self.sample_text(&figure.key)
            );
            self.abort_with(now, figure, None, &stage, detail);
            return;
        }
        match self.phase {
            Phase::Paused => {}
            Phase::Baking => {
                let started = self.bake_started.unwrap_or(now);
                if now - started >= self.plan.rollback.bake_ms {
                    self.complete(now, format!("baked for {}", format_millis(now - started)));
                }
            }
            _ => self.try_advance(now),
        }
    }

    fn try_advance(&mut self, now: Millis) {
        let stage = self.current().clone();
        let elapsed = now - self.stage_entered;
        if elapsed < stage.min_duration_ms {
            return;
        }
        let decisions = self
            .window
            .tally(Cohort::Candidate, stage.traffic)
            .decisions;
        if decisions < stage.min_decisions {
            let detail = if self.window.requests == 0 {
                format!(
                    "no traffic since the stage began {} ago; it needs {} decisions by the candidate",
                    format_millis(elapsed),
                    stage.min_decisions
                )
            } else if self.window.keyless > 0 && stage.traffic > 0.0 {
                format!(
                    "{decisions} of {} decisions by the candidate after {}; {} of {} requests had no stickiness key (`{}`) and went to stable",
                    stage.min_decisions,
                    format_millis(elapsed),
                    self.window.keyless,
                    self.window.requests,
                    self.plan.stickiness
                )
            } else {
                format!(
                    "{decisions} of {} decisions by the candidate after {}",
                    stage.min_decisions,
                    format_millis(elapsed)
                )
            };
            // One event per kind of wait (no traffic / too few decisions), not per tick.
            let reason = if self.window.requests == 0 {
                "no traffic"
            } else {
                "decisions"
            };
            self.wait(now, reason, detail, None);
            return;
        }
        // A likely breach of a stage criterion holds the stage until the data shows whether
        // it is a breach (abort) or noise (the evidence fades).
        for (judgement, key, threshold) in self.judgements(&stage.criteria, Role::Stage) {
            if judgement.likely() {
                let figure = Figure {
                    key: key.to_owned(),
                    value: judgement.value,
                    threshold,
                };
                let detail = format!(
                    "`{key}` at {} against {}: likely breached, not yet significant ({})",
                    show(key, judgement.value),
                    show(key, threshold),
                    self.sample_text(key)
                );
                self.wait(now, key, detail, Some(figure));
                return;
            }
        }
        let detail = format!(
            "after {} and {decisions} decision{} by the candidate{}",
            format_millis(elapsed),
            if decisions == 1 { "" } else { "s" },
            self.criteria_text(&stage.criteria)
        );
        let figure = Figure {
            key: "min_decisions".to_owned(),
            value: decisions as f64,
            threshold: stage.min_decisions as f64,
        };
        self.leave_stage(now);
        if self.stage + 1 < self.plan.stages.len() {
            self.emit(now, EventKind::Advanced, detail, Some(figure));
            self.enter(self.stage + 1, now);
        } else if self.plan.rollback.bake_ms > 0 {
            self.emit(now, EventKind::Advanced, detail, Some(figure));
            self.phase = Phase::Baking;
            self.bake_started = Some(now);
            self.window = Window::default();
            self.emit(
                now,
                EventKind::Baking,
                format!(
                    "watching the rollback triggers for {}",
                    format_millis(self.plan.rollback.bake_ms)
                ),
                None,
            );
        } else {
            self.complete(now, detail);
        }
    }

    fn wait(&mut self, now: Millis, reason: &str, detail: String, figure: Option<Figure>) {
        if self.waiting.as_deref() == Some(reason) {
            return;
        }
        self.waiting = Some(reason.to_owned());
        self.emit(now, EventKind::Waiting, detail, figure);
    }

    /// Holds the current stage; triggers are still watched.
    pub fn pause(&mut self, now: Millis) -> Result<(), String> {
        match self.phase {
            Phase::Running | Phase::Baking => {
                self.phase = Phase::Paused;
                self.emit(
                    now,
                    EventKind::Paused,
                    "paused by an operator".to_owned(),
                    None,
                );
                Ok(())
            }
            other => Err(format!("the rollout is {}", other.as_str())),
        }
    }

    pub fn resume(&mut self, now: Millis) -> Result<(), String> {
        match self.phase {
            Phase::Paused => {
                self.phase = if self.bake_started.is_some() {
                    Phase::Baking
                } else {
                    Phase::Running
                };
                self.emit(
                    now,
                    EventKind::Resumed,
                    "resumed by an operator".to_owned(),
                    None,
                );
                Ok(())
            }
            other => Err(format!("the rollout is {}, not paused", other.as_str())),
        }
    }

    /// Skips the rest of the current stage (`full`: every remaining stage and the bake).
    pub fn promote(&mut self, now: Millis, full: bool) -> Result<(), String> {
        if self.phase.is_final() {
            return Err(format!("the rollout is {}", self.phase.as_str()));
        }
        self.leave_stage(now);
        if full || self.bake_started.is_some() || self.stage + 1 >= self.plan.stages.len() {
            self.emit(
                now,
                EventKind::Promoted,
                "promoted to all traffic by an operator".to_owned(),
                None,
            );
            self.complete(now, "promoted".to_owned());
        } else {
            self.emit(
                now,
                EventKind::Promoted,
                format!(
                    "promoted to `{}` by an operator",
                    self.plan.stages[self.stage + 1].name
                ),
                None,
            );
            self.phase = Phase::Running;
            self.enter(self.stage + 1, now);
        }
        Ok(())
    }

    /// Aborts the rollout by hand.
    pub fn abort(&mut self, now: Millis, reason: Option<String>) -> Result<(), String> {
        if self.phase.is_final() {
            return Err(format!("the rollout is already {}", self.phase.as_str()));
        }
        let stage = self.current().name.clone();
        let detail = match &reason {
            Some(reason) => format!("aborted by an operator: {reason}"),
            None => "aborted by an operator".to_owned(),
        };
        let figure = Figure {
            key: "manual".to_owned(),
            value: 0.0,
            threshold: 0.0,
        };
        self.abort_with(now, figure, reason, &stage, detail);
        Ok(())
    }

    fn abort_with(
        &mut self,
        now: Millis,
        figure: Figure,
        reason: Option<String>,
        stage: &str,
        detail: String,
    ) {
        self.leave_stage(now);
        self.phase = Phase::Aborted;
        self.aborted = Some(Abort {
            stage: stage.to_owned(),
            trigger: figure.key.clone(),
            value: figure.value,
            threshold: figure.threshold,
            time: now,
            reason,
        });
        self.emit(now, EventKind::Aborted, detail, Some(figure));
    }

    fn complete(&mut self, now: Millis, detail: String) {
        self.phase = Phase::Completed;
        self.emit(now, EventKind::Completed, detail, None);
    }

    fn enter(&mut self, stage: usize, now: Millis) {
        self.stage = stage;
        self.stage_entered = now;
        self.window = Window::default();
        self.waiting = None;
        let stage = self.current().clone();
        self.emit(now, EventKind::Entered, entered_detail(&stage), None);
    }

    /// Files the current stage's figures (once per stage).
    fn leave_stage(&mut self, now: Millis) {
        if self.finished.len() > self.stage || self.bake_started.is_some() {
            return;
        }
        let report = self.report_of_current(Some(now));
        self.finished.push(report);
    }

    fn report_of_current(&self, left: Option<Millis>) -> StageReport {
        let stage = self.current();
        StageReport {
            name: stage.name.clone(),
            traffic: stage.traffic,
            entered: self.stage_entered,
            left,
            requests: self.window.requests,
            divergence: crate::window::round6(self.window.divergence()),
            cohorts: Cohorts {
                stable: self.window.tally(Cohort::Stable, stage.traffic).summary(),
                candidate: self
                    .window
                    .tally(Cohort::Candidate, stage.traffic)
                    .summary(),
            },
        }
    }

    /// The figures of every stage entered so far, the current one last.
    pub fn stage_reports(&self) -> Vec<StageReport> {
        let mut reports = self.finished.clone();
        if reports.len() <= self.stage && !self.phase.is_final() {
            reports.push(self.report_of_current(None));
        }
        reports
    }

    fn emit(&mut self, time: Millis, event: EventKind, detail: String, figure: Option<Figure>) {
        let stage = self.current().name.clone();
        self.events.push(Event {
            time,
            event,
            stage,
            detail,
            figure,
        });
    }

    /// The first significant breach of a stage criterion or a rollback trigger.
    fn breach(&self) -> Option<(Figure, Role)> {
        let stage = self.current();
        let during_bake = self.bake_started.is_some();
        let mut checks = Vec::new();
        if !during_bake {
            checks.extend(
                self.judgements(&stage.criteria, Role::Stage)
                    .into_iter()
                    .map(|j| (j, Role::Stage)),
            );
        }
        checks.extend(
            self.judgements(&self.plan.rollback.criteria, Role::Rollback)
                .into_iter()
                .map(|j| (j, Role::Rollback)),
        );
        if let Some(((judgement, key, threshold), role)) =
            checks.into_iter().find(|((j, _, _), _)| j.significant())
        {
            let figure = Figure {
                key: key.to_owned(),
                value: judgement.value,
                threshold,
            };
            return Some((figure, role));
        }
        if self.plan.rollback.unexpected_divergence && self.window.unexpected > 0 {
            return Some((
                Figure {
                    key: "unexpected_divergence".to_owned(),
                    value: self.window.unexpected as f64,
                    threshold: 0.0,
                },
                Role::Rollback,
            ));
        }
        None
    }

    /// Each criterion that is set, judged on the current window: `(judgement, key, threshold)`.
    fn judgements(&self, criteria: &Criteria, role: Role) -> Vec<(Judgement, &'static str, f64)> {
        let traffic = self.current().traffic;
        let candidate = self.window.tally(Cohort::Candidate, traffic);
        let stable = self.window.tally(Cohort::Stable, traffic);
        let mut out = Vec::new();
        if let Some(max) = criteria.max_divergence {
            out.push((
                rate_above(self.window.divergence_sample(), max),
                "max_divergence",
                max,
            ));
        }
        if let Some(max) = criteria.max_error_rate {
            out.push((
                rate_above(candidate.error_sample(), max),
                "max_error_rate",
                max,
            ));
        }
        if let Some(max) = criteria.max_deny_rate_change {
            out.push((
                // Both versions decide every request while a rollout runs: the change is
                // measured on the same requests (docs/rollouts.md), so cohort noise cannot
                // fire it; without paired decisions, the cohorts are compared.
                if self.window.paired.n > 0 {
                    paired_relative_change_above(self.window.paired.sample(), max)
                } else {
                    relative_change_above(candidate.deny_sample(), stable.deny_sample(), max)
                },
                "max_deny_rate_change",
                max,
            ));
        }
        if let Some(max_us) = criteria.max_latency_p99_us {
            // The 99th percentile is above the limit when more than 1 % of decisions are.
            let over = match role {
                Role::Stage => candidate.over_stage_latency,
                Role::Rollback => candidate.over_rollback_latency,
            };
            let mut judgement = rate_above(Sample::independent(over, candidate.timed), 0.01);
            judgement.value = candidate.p99_us().unwrap_or(0) as f64;
            out.push((judgement, "max_latency_p99", max_us as f64));
        }
        if let Some(min) = criteria.min_task_completion_ratio {
            let c = self.window.outcomes[Cohort::Candidate.index()];
            let s = self.window.outcomes[Cohort::Stable.index()];
            out.push((
                ratio_below(
                    Sample::independent(c.completed, c.reported),
                    Sample::independent(s.completed, s.reported),
                    min,
                ),
                "min_task_completion_ratio",
                min,
            ));
        }
        out
    }

    /// The sample behind a figure, in words.
    fn sample_text(&self, key: &str) -> String {
        let traffic = self.current().traffic;
        if key == "min_task_completion_ratio" {
            let c = self.window.outcomes[Cohort::Candidate.index()];
            let s = self.window.outcomes[Cohort::Stable.index()];
            return format!(
                "{} of {} candidate and {} of {} stable sessions completed",
                c.completed, c.reported, s.completed, s.reported
            );
        }
        if key == "unexpected_divergence" {
            return format!(
                "{} divergence{} outside the classes `polctl diff` predicted",
                self.window.unexpected,
                if self.window.unexpected == 1 { "" } else { "s" }
            );
        }
        if key == "max_deny_rate_change" && self.window.paired.n > 0 {
            return format!(
                "{} requests both versions decided: {} denied by the candidate, {} by stable",
                self.window.paired.n, self.window.paired.candidate, self.window.paired.stable
            );
        }
        if key == "max_divergence" {
            return format!(
                "{} of {} requests both versions decided",
                self.window.diverged, self.window.compared
            );
        }
        if key == "max_latency_p99" {
            let tally = self.window.tally(Cohort::Candidate, traffic);
            return format!("{} timed candidate decisions", tally.timed);
        }
        format!(
            "{} candidate and {} stable decisions",
            self.window.tally(Cohort::Candidate, traffic).decisions,
            self.window.tally(Cohort::Stable, traffic).decisions
        )
    }

    fn criteria_text(&self, criteria: &Criteria) -> String {
        let parts: Vec<String> = self
            .judgements(criteria, Role::Stage)
            .into_iter()
            .map(|(j, key, threshold)| {
                let untimed = key == "max_latency_p99"
                    && self
                        .window
                        .tally(Cohort::Candidate, self.current().traffic)
                        .timed
                        == 0;
                if untimed {
                    format!("{key} not judged (no decision times)")
                } else {
                    format!(
                        "{key} {} (threshold {})",
                        show(key, j.value),
                        show(key, threshold)
                    )
                }
            })
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("; {}", parts.join(", "))
        }
    }
}

fn entered_detail(stage: &Stage) -> String {
    if stage.is_shadow() {
        "shadow: the candidate decides every request, stable's decisions are enforced".to_owned()
    } else {
        format!("the candidate decides {}% of requests", stage.traffic)
    }
}

/// A figure as text: rates as percentages, latencies in microseconds or milliseconds.
pub fn show(key: &str, value: f64) -> String {
    if key == "max_latency_p99" {
        if value >= 1000.0 {
            format!("{:.1}ms", value / 1000.0)
        } else {
            format!("{value:.0}us")
        }
    } else if key == "unexpected_divergence" || key == "min_decisions" {
        format!("{value:.0}")
    } else if value.is_infinite() {
        "∞".to_owned()
    } else {
        format!("{:.2}%", value * 100.0)
    }
}
