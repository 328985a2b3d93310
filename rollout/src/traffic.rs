//! Traffic files (runtime.md §5.1): JSON Lines, each a request of language.md §1 with `time`
//! (RFC 3339) and `session`, or a session outcome `{"time", "session", "outcome"}`, in time
//! order. This module reads one line at a time (files are streamed, never loaded whole) and
//! generates realistic traffic from a set.

use crate::duration::Millis;
use polctl_lang::eval::generate::{request_to_json, RequestGenerator, Rng};
use polctl_lang::eval::json::JsonRef;
use polctl_lang::eval::time::{format_rfc3339, parse_rfc3339};
use polctl_lang::eval::{Evaluator, Outcome, Request, Value};
use polctl_lang::ir::ToolKind;
use serde_json::{json, Value as Json};
use std::borrow::Cow;
use std::collections::BinaryHeap;

/// Fields a traffic line may carry besides a request's: what a server recorded.
pub const RECORDED_FIELDS: [&str; 3] = ["decision", "rules", "latency_us"];

/// One line of a traffic file, borrowing from its text.
#[derive(Debug, Clone, PartialEq)]
pub enum TrafficLine<'a> {
    Request(TrafficRequest<'a>),
    Outcome {
        time: Millis,
        session: Cow<'a, str>,
        completed: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrafficRequest<'a> {
    pub time: Millis,
    pub session: Option<Cow<'a, str>>,
    /// The line as read. The request is decoded straight from it (no `Value` in between, see
    /// [`read_line`]) and read again only to be shown ([`request_json`]).
    pub text: &'a str,
    /// The decision recorded with it (`audit export`), if any.
    pub recorded: Option<Outcome>,
    pub recorded_rules: Option<Vec<String>>,
}

/// The request of a traffic line's text as language.md §1 has it (with `time` and `session`),
/// recorded fields removed: what reports show as an example.
pub fn request_json(text: &str) -> Json {
    let mut value: Json = serde_json::from_str(text).unwrap_or(Json::Null);
    if let Json::Object(object) = &mut value {
        for field in RECORDED_FIELDS {
            object.remove(field);
        }
    }
    value
}

/// Reads one line: `Err` says what is wrong with it (the caller adds the file and line).
pub fn parse_line(text: &str) -> Result<TrafficLine<'_>, String> {
    read_line(text).map(|(line, _)| line)
}

/// Reads one line, and for a request also its tree, borrowed from `text`, with the recorded
/// fields removed: what [`Evaluator::decode_ref`] decodes, so a line is parsed once.
pub fn read_line(text: &str) -> Result<(TrafficLine<'_>, Option<JsonRef<'_>>), String> {
    let mut value = JsonRef::parse(text).map_err(|e| format!("not JSON: {e}"))?;
    let JsonRef::Object(members) = &mut value else {
        return Err("a traffic line is a JSON object (a request or an outcome)".to_owned());
    };
    // The fields this reads, found in one pass (the last of repeated keys wins, as in a
    // `Value`'s map): every line of a file comes through here.
    let (mut time, mut session, mut outcome, mut decision, mut rules, mut tool) =
        (None, None, None, None, None, None);
    // Recorded fields (`decision`, `rules`, `latency_us`) are removed before decoding.
    let mut recorded_fields = false;
    for (key, value) in members.iter() {
        match key.as_ref() {
            "time" => time = Some(value),
            "session" => session = Some(value),
            "outcome" => outcome = Some(value),
            "tool" => tool = Some(value),
            "decision" => (decision, recorded_fields) = (Some(value), true),
            "rules" => (rules, recorded_fields) = (Some(value), true),
            "latency_us" => recorded_fields = true,
            _ => {}
        }
    }
    let time_text = match time {
        Some(JsonRef::String(text)) => text,
        Some(_) => {
            return Err(
                "`time` is not a string; write it as RFC 3339, e.g. \"2026-12-01T14:03:00Z\""
                    .to_owned(),
            )
        }
        None => {
            return Err("`time` is missing; every traffic line has an RFC 3339 `time`".to_owned())
        }
    };
    let time = parse_rfc3339(time_text)
        .ok_or_else(|| format!("`time` `{time_text}` is not an RFC 3339 date-time"))?
        .saturating_mul(1000);
    let session = match session {
        None | Some(JsonRef::Null) => None,
        Some(JsonRef::String(s)) => Some(s.clone()),
        Some(_) => return Err("`session` is not a string".to_owned()),
    };
    if let Some(outcome) = outcome {
        let completed = match outcome.as_str() {
            Some("completed") => true,
            Some("failed") => false,
            _ => {
                return Err(format!(
                    "`outcome` is {outcome}; it is \"completed\" or \"failed\""
                ))
            }
        };
        let session = session.ok_or("an outcome line needs the `session` it reports on")?;
        return Ok((
            TrafficLine::Outcome {
                time,
                session,
                completed,
            },
            None,
        ));
    }
    let recorded = match decision {
        None | Some(JsonRef::Null) => None,
        Some(JsonRef::String(text)) => Some(Outcome::parse(text).ok_or_else(|| {
            format!("`decision` `{text}` is not allow, deny or require_approval")
        })?),
        Some(decision @ JsonRef::Object(_)) => match decision.get("decision") {
            Some(JsonRef::String(text)) => Some(Outcome::parse(text).ok_or_else(|| {
                format!("`decision.decision` `{text}` is not allow, deny or require_approval")
            })?),
            _ => return Err("`decision` is an object without a `decision` string".to_owned()),
        },
        Some(other) => {
            return Err(format!(
                "`decision` is {other}; it is a decision name or object"
            ))
        }
    };
    let recorded_rules = match rules {
        Some(JsonRef::Array(items)) => Some(
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or("`rules` lists rule ids as strings")
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None | Some(JsonRef::Null) => None,
        Some(_) => return Err("`rules` is a list of rule ids".to_owned()),
    };
    if tool.is_none() {
        return Err(
            "the line is neither a request (no `tool`) nor an outcome (no `outcome`)".to_owned(),
        );
    }
    if recorded_fields {
        members.retain(|(key, _)| !RECORDED_FIELDS.contains(&key.as_ref()));
    }
    Ok((
        TrafficLine::Request(TrafficRequest {
            time,
            session,
            text,
            recorded,
            recorded_rules,
        }),
        Some(value),
    ))
}

impl TrafficLine<'_> {
    pub fn time(&self) -> Millis {
        match self {
            TrafficLine::Request(request) => request.time,
            TrafficLine::Outcome { time, .. } => *time,
        }
    }
}

/// Settings of `polctl traffic generate`.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub sessions: u64,
    pub duration_ms: Millis,
    pub seed: u64,
    /// Unix milliseconds of the first instant.
    pub start: Millis,
}

/// A session being played out: its next call's time and what it still has to do.
#[derive(PartialEq, Eq)]
struct Pending {
    time: Millis,
    /// Ties are broken by session number, so generation is deterministic.
    session: u64,
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Earliest first in a max-heap.
        other
            .time
            .cmp(&self.time)
            .then_with(|| other.session.cmp(&self.session))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

struct SessionPlan {
    calls_left: u32,
    agent: Vec<Value>,
    context: Vec<Value>,
    denied: bool,
}

/// Generates traffic in time order: sessions of 2 to 12 calls a few seconds to minutes apart,
/// by agents of every role and tenant the set mentions, arguments drawn from the set's own
/// literals so that its rules are exercised, session starts following a daily rhythm (busy
/// afternoons, quiet nights), and an outcome per session (a session that met a deny fails more
/// often). Memory holds the sessions in progress, not the file.
pub struct TrafficGenerator<'s> {
    evaluator: &'s Evaluator,
    generator: RequestGenerator<'s>,
    rng: Rng,
    /// Session start times, sorted, not yet begun.
    starts: std::vec::IntoIter<Millis>,
    next_start: Option<Millis>,
    started: u64,
    active: BinaryHeap<Pending>,
    sessions: std::collections::HashMap<u64, SessionPlan>,
    /// Tools weighted by kind: reads are common, execution rare.
    tool_weights: Vec<(usize, u32)>,
    seed: u64,
}

impl<'s> TrafficGenerator<'s> {
    pub fn new(evaluator: &'s Evaluator, options: &GenerateOptions) -> TrafficGenerator<'s> {
        let set = evaluator.set();
        let mut rng = Rng::new(options.seed ^ 0x7261_6666_6963);
        let mut starts: Vec<Millis> = (0..options.sessions)
            .map(|_| {
                options.start + daily_rhythm_offset(&mut rng, options.duration_ms, options.start)
            })
            .collect();
        starts.sort_unstable();
        let tool_weights = set
            .schema
            .tools
            .iter()
            .enumerate()
            .map(|(i, tool)| {
                let weight = match tool.kind {
                    ToolKind::Read => 6,
                    ToolKind::Send => 3,
                    ToolKind::Write => 2,
                    ToolKind::Execute => 1,
                };
                (i, weight)
            })
            .collect();
        let mut starts = starts.into_iter();
        let next_start = starts.next();
        TrafficGenerator {
            evaluator,
            generator: RequestGenerator::new(set, options.seed),
            rng,
            starts,
            next_start,
            started: 0,
            active: BinaryHeap::new(),
            sessions: std::collections::HashMap::new(),
            tool_weights,
            seed: options.seed,
        }
    }

    fn pick_tool(&mut self) -> usize {
        let total: u32 = self.tool_weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return 0;
        }
        let mut pick = (self.rng.next_u64() % total as u64) as u32;
        for (tool, weight) in &self.tool_weights {
            if pick < *weight {
                return *tool;
            }
            pick -= weight;
        }
        0
    }

    fn session_name(&self, session: u64) -> String {
        format!("s-{:x}-{session}", self.seed)
    }

    /// A request of this session: a drawn call, with the session's agent and context.
    fn draw(&mut self, session: u64) -> Request {
        let tool = self.pick_tool();
        let mut request = self.generator.request_for(tool);
        let plan = self.sessions.get(&session).expect("an active session");
        request.agent = plan.agent.clone();
        request.context = plan.context.clone();
        request.session = self.session_name(session);
        request.approvals.iter_mut().for_each(|a| *a = false);
        request.counters.clear();
        request
    }

    /// The next call of a session. Agents mostly do what they are meant to: nine calls in ten
    /// are drawn until the set allows one (a few tries), the rest are taken as drawn, so the
    /// traffic has a realistic share of denies rather than the random generator's majority.
    /// Drawn calls are decided as decoded requests; only the one kept becomes JSON.
    fn call(&mut self, time: Millis, session: u64) -> Json {
        let want_allowed = self.rng.chance(90);
        let mut request = self.draw(session);
        let mut outcome = self.evaluator.decide(&request).outcome;
        if want_allowed {
            for _ in 0..12 {
                if outcome == Outcome::Allow {
                    break;
                }
                request = self.draw(session);
                outcome = self.evaluator.decide(&request).outcome;
            }
        }
        request.time = Some(time / 1000);
        let mut json = request_to_json(self.evaluator.set(), &request);
        // The runtime keeps its own counters; traffic never carries them.
        if let Some(object) = json.as_object_mut() {
            object.remove("counters");
        }
        let plan = self.sessions.get_mut(&session).expect("an active session");
        if outcome == Outcome::Deny {
            plan.denied = true;
        }
        plan.calls_left -= 1;
        json
    }
}

/// A start offset within `duration`: uniform, thinned by an hour-of-day weight peaking in the
/// afternoon (UTC) and lowest at night.
fn daily_rhythm_offset(rng: &mut Rng, duration: Millis, start: Millis) -> Millis {
    let duration = duration.max(1);
    loop {
        let offset = (rng.next_u64() % duration as u64) as Millis;
        let hour = ((start + offset) / 3_600_000).rem_euclid(24) as f64;
        // 1.0 at 15:00, 0.15 at 03:00.
        let weight = 0.575 + 0.425 * ((hour - 15.0) / 24.0 * std::f64::consts::TAU).cos();
        if (rng.next_u64() % 10_000) as f64 / 10_000.0 < weight {
            return offset;
        }
    }
}

impl Iterator for TrafficGenerator<'_> {
    type Item = Json;

    fn next(&mut self) -> Option<Json> {
        // Begin every session that starts before the next pending call.
        while let Some(start) = self.next_start {
            if self.active.peek().is_some_and(|p| p.time <= start) {
                break;
            }
            let session = self.started;
            self.started += 1;
            let request = self.generator.next_request();
            let calls = 2 + self.rng.below(11) as u32;
            self.sessions.insert(
                session,
                SessionPlan {
                    calls_left: calls,
                    agent: request.agent,
                    context: request.context,
                    denied: false,
                },
            );
            self.active.push(Pending {
                time: start,
                session,
            });
            self.next_start = self.starts.next();
        }
        let Pending { time, session } = self.active.pop()?;
        let calls_left = self.sessions.get(&session).map_or(0, |s| s.calls_left);
        if calls_left == 0 {
            // The session is over: its outcome.
            let plan = self.sessions.remove(&session)?;
            let failure_percent = if plan.denied { 40 } else { 5 };
            let completed = !self.rng.chance(failure_percent);
            return Some(json!({
                "time": format_rfc3339(time / 1000),
                "session": self.session_name(session),
                "outcome": if completed { "completed" } else { "failed" },
            }));
        }
        let line = self.call(time, session);
        // The next call, or the outcome, a few seconds to a few minutes later.
        let gap = 2_000 + (self.rng.next_u64() % 90_000) as Millis;
        self.active.push(Pending {
            time: time + gap,
            session,
        });
        Some(line)
    }
}
