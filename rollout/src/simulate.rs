//! `polctl simulate` without the IO (runtime.md §5.2): the plan run by the same controller the
//! server runs, on a virtual clock driven by the traffic's times. Each request is decided by
//! its cohort's version and, while the rollout runs, by the other in shadow; counters (with
//! the counter migration) and approvals evolve as on the server; session outcomes feed task
//! completion. The caller streams lines in with [`Simulator::feed_text`] and takes the
//! [`SimulationReport`] at the end.
//!
//! Offline there is no decision time to measure that would not depend on the machine, so
//! latency criteria are judged only on times recorded in the traffic; without them they are
//! not judged and the report says so (docs/rollouts.md). Everything else is a function of the
//! inputs: the same files give the same timeline and verdict on any machine.

use crate::cohort::Cohort;
use crate::controller::{Abort, Controller, Event, Observation, Phase, StageReport};
use crate::counters::{
    count_allowed, limit_uses, load_counters, CounterStore, LimitUse, MemoryCounters,
};
use crate::duration::Millis;
use crate::migration::{
    migrate_approvals, ApprovalRow, CounterMigration, MigrationReport, PendingApproval,
};
use crate::plan::{AttributeScope, Plan, Stickiness};
use crate::traffic::{read_line, request_json, TrafficLine, TrafficRequest};
use crate::window::Verdict;
use polctl_lang::eval::fast_hash::FastMap;
use polctl_lang::eval::json::JsonRef;
use polctl_lang::eval::time::format_rfc3339;
use polctl_lang::eval::{Decision, DecisionJson, Evaluator, Outcome, Request};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, VecDeque};

/// A class of changed decisions `polctl diff` found.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PredictedClass {
    pub tool: String,
    pub from: Outcome,
    pub to: Outcome,
    pub old_rules: Vec<String>,
    pub new_rules: Vec<String>,
}

/// What the semantic diff predicted: its classes, and the (tool, from, to) pairs it could not
/// finish (divergences there are not called unexpected: the diff did not say).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Prediction {
    pub classes: Vec<PredictedClass>,
    pub unfinished: Vec<(String, Outcome, Outcome)>,
}

impl Prediction {
    pub fn predicts(
        &self,
        tool: &str,
        from: Outcome,
        to: Outcome,
        old: &[String],
        new: &[String],
    ) -> bool {
        self.classes.iter().any(|c| {
            c.tool == tool
                && c.from == from
                && c.to == to
                && c.old_rules == old
                && c.new_rules == new
        }) || self
            .unfinished
            .iter()
            .any(|(t, f, o)| t == tool && *f == from && *o == to)
    }
}

/// The inputs of a simulation besides the traffic.
pub struct SimulationSetup<'a> {
    pub stable: &'a Evaluator,
    pub candidate: &'a Evaluator,
    pub plan: Plan,
    /// `None`: the diff was not run, and no divergence is called unexpected.
    pub prediction: Option<Prediction>,
    pub rollout_id: String,
    /// The candidate's sequence, for the approval migration's reasons.
    pub sequence: u64,
}

/// Sessions idle this long are forgotten (their outcome, if it comes later, is not counted).
const SESSION_IDLE_MS: Millis = 6 * 3_600_000;
/// How long an approval stays pending in the simulation (the server's default expiry).
const APPROVAL_EXPIRY_MS: Millis = 24 * 3_600_000;
/// Pending approvals kept at most (the oldest are dropped first).
const MAX_PENDING_APPROVALS: usize = 10_000;
/// Divergence groups kept at most; further groups are counted in `other_divergences`.
const MAX_DIVERGENCE_GROUPS: usize = 1_000;
/// Points of the rate chart at most; buckets double in width to stay under it.
const MAX_SERIES_POINTS: usize = 400;

/// A divergence group: `(old decision, new decision, old rules, new rules, tool)`.
type DivergenceKey = (Outcome, Outcome, Vec<String>, Vec<String>, String);

struct SessionState {
    cohort: Cohort,
    /// The candidate denied an action stable allowed in this (candidate) session.
    broke: bool,
    last: Millis,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TrafficCounts {
    pub lines: u64,
    pub requests: u64,
    pub outcomes: u64,
    /// Requests the enforced version could not decide.
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DivergenceGroup {
    pub tool: String,
    pub from: Outcome,
    pub to: Outcome,
    pub old_rules: Vec<String>,
    pub new_rules: Vec<String>,
    pub count: u64,
    /// `null` when the diff was not run.
    pub predicted: Option<bool>,
    pub example: Json,
}

/// Decisions per cohort in one bucket of time, for the chart.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SeriesPoint {
    pub start: Millis,
    /// Per cohort (stable, candidate): enforced decisions, denies, errors.
    pub decisions: [u64; 2],
    pub denies: [u64; 2],
    pub errors: [u64; 2],
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    pub bucket_ms: Millis,
    pub points: Vec<SeriesPoint>,
}

impl Series {
    fn add(&mut self, time: Millis, cohort: Cohort, verdict: Verdict) {
        if self.points.is_empty() {
            self.bucket_ms = 5 * 60_000;
            self.points.push(SeriesPoint {
                start: time - time.rem_euclid(self.bucket_ms),
                ..SeriesPoint::default()
            });
        }
        let origin = self.points[0].start;
        let mut index = ((time - origin) / self.bucket_ms).max(0) as usize;
        while index >= MAX_SERIES_POINTS {
            self.merge_pairs();
            index = ((time - origin) / self.bucket_ms).max(0) as usize;
        }
        while self.points.len() <= index {
            let start = origin + self.points.len() as Millis * self.bucket_ms;
            self.points.push(SeriesPoint {
                start,
                ..SeriesPoint::default()
            });
        }
        let point = &mut self.points[index];
        let c = cohort.index();
        point.decisions[c] += 1;
        match verdict {
            Verdict::Deny => point.denies[c] += 1,
            Verdict::Error => point.errors[c] += 1,
            _ => {}
        }
    }

    fn merge_pairs(&mut self) {
        self.bucket_ms *= 2;
        let merged = self
            .points
            .chunks(2)
            .map(|pair| {
                let mut point = pair[0];
                if let Some(second) = pair.get(1) {
                    for c in 0..2 {
                        point.decisions[c] += second.decisions[c];
                        point.denies[c] += second.denies[c];
                        point.errors[c] += second.errors[c];
                    }
                }
                point
            })
            .collect();
        self.points = merged;
    }
}

/// A request decoded by each version (`None`: it does not fit that version's schema). When
/// both versions share a schema it is decoded once, into `stable`.
pub struct Decoded {
    stable: Option<Request>,
    /// Boxed: it is rare (schemas differ), and prepared lines travel by the thousand.
    candidate: Option<Box<Request>>,
    /// Each version's limit uses (stable, candidate), when the preparing thread already
    /// worked them out (a pure function of the request and its time). Boxed like
    /// `candidate`: only requests a limit counts carry them.
    uses: Option<Box<[Option<Vec<LimitUse>>; 2]>>,
}

impl Decoded {
    fn request(&self, cohort: Cohort, shared: bool) -> Option<&Request> {
        match cohort {
            Cohort::Candidate if !shared => self.candidate.as_deref(),
            _ => self.stable.as_ref(),
        }
    }

    fn request_mut(&mut self, cohort: Cohort, shared: bool) -> Option<&mut Request> {
        match cohort {
            Cohort::Candidate if !shared => self.candidate.as_deref_mut(),
            _ => self.stable.as_mut(),
        }
    }
}

/// A piece of a line's text: where it is in the line (a string without escapes), or its own
/// copy. A prepared line travels to the simulator without its text, which comes with it to
/// [`Simulator::feed_prepared`]: no copy of the line per line.
enum LineText {
    At(usize, usize),
    Owned(String),
}

impl LineText {
    fn of(line: &str, text: &str) -> LineText {
        let start = (text.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
        match start.checked_add(text.len()) {
            Some(end) if end <= line.len() && line.get(start..end) == Some(text) => {
                LineText::At(start, end)
            }
            _ => LineText::Owned(text.to_owned()),
        }
    }

    fn get<'t>(&'t self, line: &'t str) -> &'t str {
        match self {
            LineText::At(start, end) => line.get(*start..*end).unwrap_or_default(),
            LineText::Owned(text) => text,
        }
    }
}

/// A traffic line with its request decoded by both versions and its stickiness key, ready for
/// [`Simulator::feed_prepared`]. None of that depends on the rollout's state, so reader
/// threads can prepare lines while the simulator runs: the one part of a line that is not
/// sequential.
pub struct PreparedLine {
    time: Millis,
    kind: PreparedKind,
}

// Most lines are requests (an outcome ends a session of several), and prepared lines live in
// reused vectors: boxing the request variant would cost an allocation a line for nothing.
#[allow(clippy::large_enum_variant)]
enum PreparedKind {
    Request {
        session: Option<LineText>,
        key: Option<LineText>,
        decisions: Decisions,
    },
    Outcome {
        session: LineText,
        completed: bool,
    },
}

/// A prepared request: decoded, to be decided by the simulator, or decided already.
enum Decisions {
    Later(Decoded),
    Early(Early),
}

/// Both versions' decisions on a request that no limit of either version counts: they cannot
/// depend on the simulation's counters (nor on anything else it keeps), so the preparing
/// thread makes them, with the rendering the simulator needs where it will need one (changed
/// decisions, a stable `require_approval`). The request itself is then freed there.
struct Early {
    stable: Option<Decision>,
    candidate: Option<Decision>,
    stable_rendered: Option<Box<DecisionJson>>,
    candidate_rendered: Option<Box<DecisionJson>>,
    /// The candidate's tool index (divergences are grouped by its name).
    candidate_tool: Option<usize>,
}

/// Decodes traffic requests for both versions of a simulation.
#[derive(Clone)]
pub struct Decoders<'a> {
    stable: &'a Evaluator,
    candidate: &'a Evaluator,
    same_schema: bool,
    stickiness: Stickiness,
    /// Set by the simulator once the rollout is over: from then on one version decides, so
    /// deciding both early would be wasted work.
    rollout_over: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Decoders<'_> {
    /// Reads and prepares a line from its text, parsing it once. The same text goes with the
    /// prepared line to [`Simulator::feed_prepared`].
    pub fn prepare_text(&self, text: &str) -> Result<PreparedLine, String> {
        let (line, tree) = read_line(text)?;
        let time = line.time();
        let kind = match (line, tree) {
            (TrafficLine::Request(traffic), Some(tree)) => {
                let stable = self.stable.decode_ref(&tree).ok();
                let candidate = if self.same_schema {
                    None
                } else {
                    self.candidate.decode_ref(&tree).ok().map(Box::new)
                };
                let key = self.stickiness_key(&traffic, &tree, text);
                let mut decoded = Decoded {
                    stable,
                    candidate,
                    uses: None,
                };
                let decisions = match self.decide_early(&mut decoded, time / 1000) {
                    Some(early) => Decisions::Early(early),
                    None => Decisions::Later(decoded),
                };
                PreparedKind::Request {
                    session: traffic.session.map(|s| LineText::of(text, &s)),
                    key,
                    decisions,
                }
            }
            (TrafficLine::Request(traffic), None) => PreparedKind::Request {
                session: traffic.session.map(|s| LineText::of(text, &s)),
                key: None,
                decisions: Decisions::Later(Decoded {
                    stable: None,
                    candidate: None,
                    uses: None,
                }),
            },
            (
                TrafficLine::Outcome {
                    session, completed, ..
                },
                _,
            ) => PreparedKind::Outcome {
                session: LineText::of(text, &session),
                completed,
            },
        };
        Ok(PreparedLine { time, kind })
    }

    /// [`Early`] decisions, when the rollout is running and no limit of either version counts
    /// the request (the decoded requests are then freed). When a limit counts it, the limit
    /// uses are kept in `decoded` for the simulator.
    fn decide_early(&self, decoded: &mut Decoded, now_seconds: i64) -> Option<Early> {
        if self.rollout_over.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let shared = self.same_schema;
        let stable_request = decoded.request(Cohort::Stable, shared);
        let candidate_request = decoded.request(Cohort::Candidate, shared);
        let uses = [
            stable_request.map(|r| limit_uses(self.stable, r, now_seconds)),
            candidate_request.map(|r| limit_uses(self.candidate, r, now_seconds)),
        ];
        if uses.iter().flatten().any(|u| !u.is_empty()) {
            decoded.uses = Some(Box::new(uses));
            return None;
        }
        let stable = stable_request.map(|r| self.stable.decide(r));
        let candidate = candidate_request.map(|r| self.candidate.decide(r));
        let changed = match (&stable, &candidate) {
            (Some(s), Some(c)) => s.outcome != c.outcome,
            _ => false,
        };
        let stable_rendered = match (&stable, stable_request) {
            (Some(d), Some(r)) if changed || d.outcome == Outcome::RequireApproval => {
                Some(Box::new(self.stable.render(r, d)))
            }
            _ => None,
        };
        let candidate_rendered = match (&candidate, candidate_request) {
            (Some(d), Some(r)) if changed => Some(Box::new(self.candidate.render(r, d))),
            _ => None,
        };
        Some(Early {
            stable,
            candidate,
            stable_rendered,
            candidate_rendered,
            candidate_tool: candidate_request.map(|r| r.tool),
        })
    }

    /// The key that places a request in a cohort (runtime.md §4.2).
    fn stickiness_key(
        &self,
        request: &TrafficRequest,
        tree: &JsonRef,
        text: &str,
    ) -> Option<LineText> {
        match &self.stickiness {
            Stickiness::Session => request.session.as_ref().map(|s| LineText::of(text, s)),
            Stickiness::Attribute { scope, name } => {
                let object = match scope {
                    AttributeScope::Agent => "agent",
                    AttributeScope::Context => "context",
                };
                match tree.get(object)?.get(name)? {
                    JsonRef::String(s) => Some(LineText::of(text, s)),
                    JsonRef::Null => None,
                    other => Some(LineText::Owned(other.to_string())),
                }
            }
        }
    }
}

pub struct Simulator<'a> {
    stable: &'a Evaluator,
    candidate: &'a Evaluator,
    plan: Plan,
    prediction: Option<Prediction>,
    rollout_id: String,
    sequence: u64,
    /// Both versions read requests the same way: each is decoded once.
    same_schema: bool,
    controller: Option<Controller>,
    counters: MemoryCounters,
    counter_migration: CounterMigration,
    approvals: VecDeque<(Millis, PendingApproval)>,
    approvals_created: u64,
    approval_rows: Option<(Millis, Vec<ApprovalRow>)>,
    sessions: FastMap<String, SessionState>,
    /// Shared with the [`Decoders`]: whether the rollout is over (see [`Early`]).
    rollout_over: std::sync::Arc<std::sync::atomic::AtomicBool>,
    next_sweep: Millis,
    divergences: BTreeMap<DivergenceKey, DivergenceGroup>,
    other_divergences: u64,
    traffic: TrafficCounts,
    series: Series,
    last_time: Option<Millis>,
}

impl<'a> Simulator<'a> {
    pub fn new(setup: SimulationSetup<'a>) -> Simulator<'a> {
        Simulator {
            stable: setup.stable,
            candidate: setup.candidate,
            plan: setup.plan,
            prediction: setup.prediction,
            rollout_id: setup.rollout_id,
            sequence: setup.sequence,
            same_schema: setup.stable.set().schema == setup.candidate.set().schema,
            controller: None,
            counters: MemoryCounters::default(),
            counter_migration: CounterMigration::default(),
            approvals: VecDeque::new(),
            approvals_created: 0,
            approval_rows: None,
            sessions: FastMap::default(),
            rollout_over: Default::default(),
            next_sweep: 0,
            divergences: BTreeMap::new(),
            other_divergences: 0,
            traffic: TrafficCounts::default(),
            series: Series::default(),
            last_time: None,
        }
    }

    /// The rollout's phase so far (`None` before the first line).
    pub fn phase(&self) -> Option<Phase> {
        self.controller.as_ref().map(Controller::phase)
    }

    /// What decodes requests for this simulation (shareable with a reading thread).
    pub fn decoders(&self) -> Decoders<'a> {
        Decoders {
            stable: self.stable,
            candidate: self.candidate,
            same_schema: self.same_schema,
            stickiness: self.plan.stickiness.clone(),
            rollout_over: self.rollout_over.clone(),
        }
    }

    /// Adds one traffic line, given its text. Lines must come in time order.
    pub fn feed_text(&mut self, text: &str) -> Result<(), String> {
        let mut prepared = self.decoders().prepare_text(text)?;
        self.feed_prepared(&mut prepared, text)
    }

    /// Adds one traffic line prepared by [`Decoders::prepare_text`] (possibly on another
    /// thread) from `text`. The prepared line is borrowed, so that another thread can free it
    /// (the rollout's thread is the busiest).
    pub fn feed_prepared(&mut self, prepared: &mut PreparedLine, text: &str) -> Result<(), String> {
        let time = prepared.time;
        if let Some(last) = self.last_time {
            if time < last {
                return Err(format!(
                    "`time` {} is earlier than the line before ({}); traffic files are in time order (sort them by `time`)",
                    format_rfc3339(time / 1000),
                    format_rfc3339(last / 1000)
                ));
            }
        }
        self.last_time = Some(time);
        self.traffic.lines += 1;
        if self.controller.is_none() {
            self.counter_migration = CounterMigration::prepare(
                self.stable.set(),
                self.candidate.set(),
                time / 1000,
                &mut self.counters,
            );
            self.controller = Some(Controller::new(
                self.plan.clone(),
                self.rollout_id.clone(),
                time,
            ));
            self.next_sweep = time + 600_000;
        }
        self.tick(time);
        match &mut prepared.kind {
            PreparedKind::Request {
                session,
                key,
                decisions,
            } => {
                // An early-decided request has nothing left to decode.
                let mut nothing = Decoded {
                    stable: None,
                    candidate: None,
                    uses: None,
                };
                let (decoded, early) = match decisions {
                    Decisions::Later(decoded) => (decoded, None),
                    Decisions::Early(early) => (&mut nothing, Some(early)),
                };
                self.request(
                    text,
                    time,
                    session.as_ref().map(|s| s.get(text)),
                    decoded,
                    key.as_ref().map(|k| k.get(text)),
                    early,
                )
            }
            PreparedKind::Outcome { session, completed } => {
                self.traffic.outcomes += 1;
                if let Some(state) = self.sessions.remove(session.get(text)) {
                    let completed = *completed && !state.broke;
                    if let Some(controller) = self.controller.as_mut() {
                        controller.observe_outcome(state.cohort, completed);
                    }
                }
            }
        }
        if self
            .controller
            .as_ref()
            .is_some_and(|c| c.phase().is_final())
        {
            self.rollout_over
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    fn tick(&mut self, time: Millis) {
        let Some(controller) = self.controller.as_mut() else {
            return;
        };
        let before = controller.phase();
        controller.tick(time);
        if before != Phase::Completed && controller.phase() == Phase::Completed {
            self.cut_over(time);
        }
        if time >= self.next_sweep {
            self.next_sweep = time + 600_000;
            self.sessions.retain(|_, s| time - s.last < SESSION_IDLE_MS);
            self.counters.expire(time / 1000);
            while self
                .approvals
                .front()
                .is_some_and(|(created, _)| time - created >= APPROVAL_EXPIRY_MS)
            {
                self.approvals.pop_front();
            }
        }
    }

    /// The candidate becomes stable: pending approvals migrate to it.
    fn cut_over(&mut self, time: Millis) {
        let pending: Vec<PendingApproval> = self.approvals.drain(..).map(|(_, a)| a).collect();
        let rows = migrate_approvals(self.candidate, &pending, self.sequence);
        self.approval_rows = Some((time, rows));
    }

    fn request(
        &mut self,
        text: &str,
        time: Millis,
        session: Option<&str>,
        decoded: &mut Decoded,
        key: Option<&str>,
        mut early: Option<&mut Early>,
    ) {
        self.traffic.requests += 1;
        let now_seconds = time / 1000;
        let Some(controller) = self.controller.as_ref() else {
            return;
        };
        let route = controller.route(key);
        let evaluate = |cohort: Cohort| route.decides == cohort || route.shadow;

        // The counters each evaluated version reads. When both versions read requests alike,
        // one decoded request serves both (its counters are loaded before each decision).
        let shared = self.same_schema;
        let (stable_decision, candidate_decision, stable_uses, candidate_uses) = match &mut early {
            // Decided while preparing: no limit counts this request, so there are no counters
            // to read, seed or count.
            Some(early) => (
                early.stable.take().filter(|_| evaluate(Cohort::Stable)),
                early
                    .candidate
                    .take()
                    .filter(|_| evaluate(Cohort::Candidate)),
                None,
                None,
            ),
            None => {
                // Worked out while preparing, unless the rollout was over by then.
                let [stable_uses, candidate_uses] = match decoded.uses.take() {
                    Some(uses) => *uses,
                    None => [
                        decoded
                            .stable
                            .as_ref()
                            .map(|r| limit_uses(self.stable, r, now_seconds)),
                        decoded
                            .request(Cohort::Candidate, shared)
                            .map(|r| limit_uses(self.candidate, r, now_seconds)),
                    ],
                };
                let stable_uses = stable_uses.filter(|_| evaluate(Cohort::Stable));
                let candidate_uses = candidate_uses.filter(|_| evaluate(Cohort::Candidate));
                if let Some(candidate_uses) = &candidate_uses {
                    let stable_uses = stable_uses.as_deref().unwrap_or_default();
                    self.counter_migration
                        .seed(&mut self.counters, candidate_uses, stable_uses);
                }
                let mut decide =
                    |evaluator: &Evaluator, cohort: Cohort, uses: Option<&[LimitUse]>| {
                        let request = decoded.request_mut(cohort, shared)?;
                        load_counters(request, uses?, &self.counters);
                        Some(evaluator.decide(request))
                    };
                let stable_decision = decide(self.stable, Cohort::Stable, stable_uses.as_deref());
                let candidate_decision =
                    decide(self.candidate, Cohort::Candidate, candidate_uses.as_deref());
                (
                    stable_decision,
                    candidate_decision,
                    stable_uses,
                    candidate_uses,
                )
            }
        };
        let stable = decoded
            .request(Cohort::Stable, shared)
            .filter(|_| stable_decision.is_some());
        let candidate = decoded
            .request(Cohort::Candidate, shared)
            .filter(|_| candidate_decision.is_some());
        // What names a decision's rules: the early rendering, or the request to render from.
        let (stable_rendered, candidate_rendered, early_tool) = match &mut early {
            Some(early) => (
                early.stable_rendered.take(),
                early.candidate_rendered.take(),
                early.candidate_tool,
            ),
            None => (None, None, None),
        };
        let render_stable = |decision: &Decision| match (&stable_rendered, stable) {
            (Some(rendered), _) => Some(rendered.as_ref().clone()),
            (None, Some(request)) => Some(self.stable.render(request, decision)),
            (None, None) => None,
        };

        let verdict =
            |evaluated: bool, decision: &Option<Decision>| -> Option<(Verdict, Option<u64>)> {
                if !evaluated {
                    return None;
                }
                Some((
                    match decision {
                        None => Verdict::Error,
                        Some(d) => match d.outcome {
                            Outcome::Allow => Verdict::Allow,
                            Outcome::Deny => Verdict::Deny,
                            Outcome::RequireApproval => Verdict::RequireApproval,
                        },
                    },
                    None,
                ))
            };
        let verdicts = [
            verdict(evaluate(Cohort::Stable), &stable_decision),
            verdict(evaluate(Cohort::Candidate), &candidate_decision),
        ];

        // Divergence: both decided, differently.
        let mut unexpected = false;
        let changed = match (&stable_decision, &candidate_decision) {
            (Some(s), Some(c)) if s.outcome != c.outcome => {
                let new = match (candidate_rendered, candidate) {
                    (Some(rendered), _) => Some(*rendered),
                    (None, Some(request)) => Some(self.candidate.render(request, c)),
                    (None, None) => None,
                };
                let tool = early_tool.or(candidate.map(|r| r.tool));
                match (render_stable(s), new, tool) {
                    (Some(old), Some(new), Some(tool)) => Some((s, c, old.rules, new.rules, tool)),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some((s, c, old_rules, new_rules, tool)) = changed {
            let tool = self.candidate.set().schema.tools[tool].name.clone();
            let predicted = self
                .prediction
                .as_ref()
                .map(|p| p.predicts(&tool, s.outcome, c.outcome, &old_rules, &new_rules));
            unexpected = predicted == Some(false);
            let group_key = (s.outcome, c.outcome, old_rules, new_rules, tool);
            if let Some(group) = self.divergences.get_mut(&group_key) {
                group.count += 1;
            } else if self.divergences.len() < MAX_DIVERGENCE_GROUPS {
                let (from, to, old_rules, new_rules, tool) = group_key.clone();
                self.divergences.insert(
                    group_key,
                    DivergenceGroup {
                        tool,
                        from,
                        to,
                        old_rules,
                        new_rules,
                        count: 1,
                        predicted,
                        example: request_json(text),
                    },
                );
            } else {
                self.other_divergences += 1;
            }
        }

        let enforced = verdicts[route.decides.index()]
            .map(|(v, _)| v)
            .unwrap_or(Verdict::Error);
        if enforced == Verdict::Error {
            self.traffic.errors += 1;
        }
        // The chart follows the controller's figures: each cohort's enforced decisions, and a
        // version's shadow decisions in a stage that gives it nothing to enforce.
        let traffic_now = self.controller.as_ref().map_or(0.0, Controller::traffic);
        for version in [Cohort::Stable, Cohort::Candidate] {
            let shadow_only = match version {
                Cohort::Candidate => traffic_now == 0.0,
                Cohort::Stable => traffic_now >= 100.0,
            };
            let counted = route.decides == version || (route.shadow && shadow_only);
            if let (true, Some((verdict, _))) = (counted, verdicts[version.index()]) {
                self.series.add(time, version, verdict);
            }
        }

        // Counters: an allowed action counts against the limits of every evaluated version.
        if enforced == Verdict::Allow {
            let uses: Vec<&[LimitUse]> = [&stable_uses, &candidate_uses]
                .into_iter()
                .filter_map(|uses| uses.as_deref())
                .collect();
            count_allowed(&mut self.counters, &uses);
        }
        // Approvals: a require_approval by the enforced stable version waits.
        if enforced == Verdict::RequireApproval && route.decides == Cohort::Stable {
            if let Some(rendered) = stable_decision.as_ref().and_then(render_stable) {
                self.approvals_created += 1;
                self.approvals.push_back((
                    time,
                    PendingApproval {
                        id: format!("a-{}", self.approvals_created),
                        request: request_json(text),
                        rules: rendered.rules,
                        missing: rendered.approvers,
                        granted: Vec::new(),
                    },
                ));
                if self.approvals.len() > MAX_PENDING_APPROVALS {
                    self.approvals.pop_front();
                }
            }
        }

        // Sessions: which cohort each is in, and whether the candidate broke it.
        if let Some(session) = session {
            let broke = route.decides == Cohort::Candidate
                && matches!(
                    (&stable_decision, &candidate_decision),
                    (Some(s), Some(c)) if s.outcome == Outcome::Allow && c.outcome == Outcome::Deny
                );
            // Looked up before inserting: most lines continue a session already known.
            match self.sessions.get_mut(session) {
                Some(state) => {
                    state.broke |= broke;
                    state.last = time;
                }
                None => {
                    self.sessions.insert(
                        session.to_owned(),
                        SessionState {
                            cohort: route.decides,
                            broke,
                            last: time,
                        },
                    );
                }
            }
        }

        let observation = Observation {
            cohort: route.decides,
            verdicts,
            unexpected,
            cluster: crate::window::cluster_of(key),
        };
        if let Some(controller) = self.controller.as_mut() {
            controller.observe(&observation);
        }
    }

    /// Judges once more at the last line's time and reports.
    pub fn finish(mut self) -> SimulationReport {
        if let Some(time) = self.last_time {
            self.tick(time);
        }
        let Some(controller) = self.controller else {
            return SimulationReport::empty(self.traffic);
        };
        let verdict = match controller.phase() {
            Phase::Completed => "completed",
            Phase::Aborted => "aborted",
            _ => "unfinished",
        };
        let unfinished = (verdict == "unfinished").then(|| {
            let last = controller.events().last();
            format!(
                "the traffic ended in stage `{}` ({}){}",
                controller.current().name,
                controller.phase().as_str(),
                last.map(|e| format!(": {}", e.detail)).unwrap_or_default()
            )
        });
        let completed_at = controller
            .events()
            .iter()
            .find(|e| e.event == crate::controller::EventKind::Completed)
            .map(|e| time_text(e.time));
        let (migrated_at, approval_rows) = match self.approval_rows {
            Some((time, rows)) => (Some(time_text(time)), rows),
            None => (None, Vec::new()),
        };
        let mut divergences: Vec<DivergenceGroup> = self.divergences.into_values().collect();
        divergences.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.tool.cmp(&b.tool)));
        SimulationReport {
            verdict,
            aborted: controller.aborted().map(AbortJson::from),
            completed_at,
            unfinished,
            rollout_id: controller.rollout_id().to_owned(),
            timeline: controller.events().iter().map(EventJson::from).collect(),
            stages: controller
                .stage_reports()
                .into_iter()
                .map(StageJson::from)
                .collect(),
            divergences,
            other_divergences: self.other_divergences,
            migration: MigrationJson {
                at: migrated_at,
                report: MigrationReport::new(&self.counter_migration, approval_rows),
            },
            latency_judged: false,
            traffic: self.traffic,
            series: self.series,
        }
    }
}

fn time_text(ms: Millis) -> String {
    format_rfc3339(ms.div_euclid(1000))
}

#[derive(Debug, Clone, Serialize)]
pub struct AbortJson {
    pub stage: String,
    pub trigger: String,
    pub value: f64,
    pub threshold: f64,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&Abort> for AbortJson {
    fn from(abort: &Abort) -> AbortJson {
        AbortJson {
            stage: abort.stage.clone(),
            trigger: abort.trigger.clone(),
            value: crate::window::round6(abort.value),
            threshold: abort.threshold,
            time: time_text(abort.time),
            reason: abort.reason.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EventJson {
    pub time: String,
    pub event: &'static str,
    pub stage: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figure: Option<crate::controller::Figure>,
}

impl From<&Event> for EventJson {
    fn from(event: &Event) -> EventJson {
        EventJson {
            time: time_text(event.time),
            event: event.event.as_str(),
            stage: event.stage.clone(),
            detail: event.detail.clone(),
            figure: event.figure.clone().map(|mut f| {
                f.value = crate::window::round6(f.value);
                f
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageJson {
    pub name: String,
    pub traffic: f64,
    pub entered: String,
    pub left: Option<String>,
    pub requests: u64,
    pub divergence: f64,
    pub cohorts: crate::controller::Cohorts,
}

impl From<StageReport> for StageJson {
    fn from(stage: StageReport) -> StageJson {
        StageJson {
            name: stage.name,
            traffic: stage.traffic,
            entered: time_text(stage.entered),
            left: stage.left.map(time_text),
            requests: stage.requests,
            divergence: stage.divergence,
            cohorts: stage.cohorts,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationJson {
    /// When the candidate became stable and approvals migrated (`null` if it never did).
    pub at: Option<String>,
    #[serde(flatten)]
    pub report: MigrationReport,
}

/// The result of a simulation, in the JSON shape of runtime.md §5.2 (with a few additions:
/// `completed_at`, `unfinished`, `rollout_id`, `other_divergences`, `latency_judged`).
#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    /// `completed`, `aborted`, or `unfinished` when the traffic ended before the plan did.
    pub verdict: &'static str,
    pub aborted: Option<AbortJson>,
    pub completed_at: Option<String>,
    pub unfinished: Option<String>,
    pub rollout_id: String,
    pub timeline: Vec<EventJson>,
    pub stages: Vec<StageJson>,
    pub divergences: Vec<DivergenceGroup>,
    pub other_divergences: u64,
    pub migration: MigrationJson,
    /// Whether latency criteria were judged (only on recorded decision times).
    pub latency_judged: bool,
    pub traffic: TrafficCounts,
    #[serde(skip)]
    pub series: Series,
}

impl SimulationReport {
    fn empty(traffic: TrafficCounts) -> SimulationReport {
        SimulationReport {
            verdict: "unfinished",
            aborted: None,
            completed_at: None,
            unfinished: Some("the traffic file has no lines".to_owned()),
            rollout_id: String::new(),
            timeline: Vec::new(),
            stages: Vec::new(),
            divergences: Vec::new(),
            other_divergences: 0,
            migration: MigrationJson {
                at: None,
                report: MigrationReport::default(),
            },
            latency_judged: false,
            traffic,
            series: Series::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // the test reads the example sets
    use super::*;
    use crate::plan::parse_plan;
    use crate::traffic::{GenerateOptions, TrafficGenerator};
    use polctl_lang::{compile, SourceSet};
    use polctl_testsupport::{read_tree, workspace_dir};

    const PLAN: &str = r#"
[[stage]]
name = "shadow"
traffic = 0
min_duration = "30m"
min_decisions = 300

[[stage]]
name = "canary"
traffic = 10
min_duration = "1h"
min_decisions = 60
max_deny_rate_change = 0.25

[[stage]]
name = "full"
traffic = 100

[rollback]
max_deny_rate_change = 0.5
bake = "30m"
"#;

    fn evaluator(path: &str) -> Evaluator {
        let files = read_tree(&workspace_dir().join(path), "pol");
        let set = compile(&SourceSet::from_files(files))
            .set
            .expect("the example compiles");
        Evaluator::new(set, path).expect("plan")
    }

    /// Deciding on the preparing thread (requests no limit counts) changes nothing: the report
    /// is the same when every request is decided by the simulator, for a rollout that
    /// completes (so lines after it are decided by one version) and one that aborts.
    #[test]
    fn early_decisions_give_the_same_report() {
        let stable = evaluator("examples/support-fleet");
        for (candidate_path, expected) in [
            ("examples/releases/verified-lookups", "completed"),
            ("examples/releases/verified-reads", "aborted"),
        ] {
            let candidate = evaluator(candidate_path);
            let lines: Vec<String> = TrafficGenerator::new(
                &stable,
                &GenerateOptions {
                    sessions: 1_500,
                    duration_ms: 24 * 3_600_000,
                    seed: 7,
                    start: 1_796_083_200_000,
                },
            )
            .map(|line| line.to_string())
            .collect();
            let report = |early: bool| {
                let mut simulator = Simulator::new(SimulationSetup {
                    stable: &stable,
                    candidate: &candidate,
                    plan: parse_plan(PLAN).expect("plan"),
                    prediction: None,
                    rollout_id: "early-test".to_owned(),
                    sequence: 2,
                });
                let (mut early_count, mut late_count) = (0, 0);
                for line in &lines {
                    simulator
                        .rollout_over
                        .fetch_or(!early, std::sync::atomic::Ordering::Relaxed);
                    let mut prepared = simulator.decoders().prepare_text(line).expect("a line");
                    match &prepared.kind {
                        PreparedKind::Request {
                            decisions: Decisions::Early(_),
                            ..
                        } => early_count += 1,
                        PreparedKind::Request { .. } => late_count += 1,
                        PreparedKind::Outcome { .. } => {}
                    }
                    simulator
                        .feed_prepared(&mut prepared, line)
                        .expect("in time order");
                }
                let report = simulator.finish();
                (
                    serde_json::to_value(&report).expect("json"),
                    report.verdict,
                    early_count,
                    late_count,
                )
            };
            let (with_early, verdict, early, late) = report(true);
            let (all_late, _, none_early, _) = report(false);
            assert_eq!(none_early, 0);
            assert!(early > 1_000 && late > 100, "{early} early, {late} late");
            assert_eq!(verdict, expected, "{candidate_path}");
            assert_eq!(with_early, all_late, "{candidate_path}");
        }
    }
}
