//! `polctl replay` without the IO (runtime.md §5.3): every request of a traffic file decided
//! by NEW and compared with OLD's decision (or the one recorded in the file), the changes
//! grouped by (old rules → new rules) with counts and an example each: shadow mode after the
//! fact. Requests are independent, so the CLI replays chunks of lines in parallel and
//! [`Replay::merge`]s them; the result does not depend on how the file was split.

use crate::traffic::{read_line, request_json, TrafficLine, TrafficRequest};
use polctl_lang::eval::json::JsonRef;
pub use polctl_lang::eval::ChangeKind;
use polctl_lang::eval::{Evaluator, Outcome, Request};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Requests whose decision changes the same way.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayChange {
    pub kind: ChangeKind,
    pub tool: String,
    pub from: Outcome,
    pub to: Outcome,
    pub old_rules: Vec<String>,
    pub new_rules: Vec<String>,
    pub count: u64,
    /// The first request of the file (by line) in this group.
    pub example: Json,
    pub example_line: u64,
}

/// Requests a version could not decide, by the error.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayError {
    /// `old` or `new`.
    pub version: &'static str,
    pub message: String,
    pub count: u64,
    pub example_line: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ReplayCounts {
    pub lines: u64,
    pub requests: u64,
    pub outcomes: u64,
    /// Requests both sides decided.
    pub compared: u64,
    pub changed: u64,
    /// Requests with no old decision: no OLD set and none recorded in the line.
    pub without_baseline: u64,
}

type GroupKey = (Outcome, Outcome, Vec<String>, Vec<String>, String);

/// Replay of (part of) a traffic file.
pub struct Replay<'a> {
    new: &'a Evaluator,
    old: Option<&'a Evaluator>,
    /// Both versions read requests the same way: decode each once.
    same_schema: bool,
    groups: BTreeMap<GroupKey, ReplayChange>,
    errors: BTreeMap<(&'static str, String), ReplayError>,
    counts: ReplayCounts,
}

impl<'a> Replay<'a> {
    /// `old`: the set to compare with; `None` compares with the decisions recorded in the
    /// traffic (`decision` and `rules`, as `polctl audit export` writes them).
    pub fn new(new: &'a Evaluator, old: Option<&'a Evaluator>) -> Replay<'a> {
        Replay {
            new,
            old,
            same_schema: old.is_some_and(|old| old.set().schema == new.set().schema),
            groups: BTreeMap::new(),
            errors: BTreeMap::new(),
            counts: ReplayCounts::default(),
        }
    }

    /// Adds line `number` (1-based) of the file, given its text; `Err` says what is wrong
    /// with the line (the caller adds the file and line).
    pub fn feed(&mut self, number: u64, text: &str) -> Result<(), String> {
        let (line, tree) = read_line(text)?;
        self.counts.lines += 1;
        match (line, tree) {
            (TrafficLine::Request(request), Some(tree)) => self.request(number, request, &tree),
            _ => self.counts.outcomes += 1,
        }
        Ok(())
    }

    fn error(&mut self, version: &'static str, message: String, line: u64) {
        let entry = self
            .errors
            .entry((version, message.clone()))
            .or_insert(ReplayError {
                version,
                message,
                count: 0,
                example_line: line,
            });
        entry.count += 1;
        entry.example_line = entry.example_line.min(line);
    }

    fn decode(evaluator: &Evaluator, json: &JsonRef) -> Result<Request, String> {
        evaluator.decode_ref(json).map_err(|e| {
            let path = if e.path.is_empty() {
                "request"
            } else {
                &e.path
            };
            format!("{path}: {}", e.message)
        })
    }

    fn request(&mut self, number: u64, traffic: TrafficRequest, tree: &JsonRef) {
        self.counts.requests += 1;
        let new_request = match Self::decode(self.new, tree) {
            Ok(request) => request,
            Err(message) => {
                self.error("new", message, number);
                return;
            }
        };
        let new_decision = self.new.decide(&new_request);
        // The old decision, and what it takes to name its rules when the decision changed.
        let old_request;
        let (old_outcome, old_rules) = match self.old {
            Some(old) => {
                let request = if self.same_schema {
                    &new_request
                } else {
                    match Self::decode(old, tree) {
                        Ok(request) => {
                            old_request = request;
                            &old_request
                        }
                        Err(message) => {
                            self.error("old", message, number);
                            return;
                        }
                    }
                };
                let decision = old.decide(request);
                if decision.outcome == new_decision.outcome {
                    self.counts.compared += 1;
                    return;
                }
                (decision.outcome, old.render(request, &decision).rules)
            }
            None => match traffic.recorded {
                Some(outcome) if outcome == new_decision.outcome => {
                    self.counts.compared += 1;
                    return;
                }
                Some(outcome) => (outcome, traffic.recorded_rules.clone().unwrap_or_default()),
                None => {
                    self.counts.without_baseline += 1;
                    return;
                }
            },
        };
        self.counts.compared += 1;
        self.counts.changed += 1;
        let new_rules = self.new.render(&new_request, &new_decision).rules;
        let tool = self.new.set().schema.tools[new_request.tool].name.clone();
        let key = (
            old_outcome,
            new_decision.outcome,
            old_rules,
            new_rules,
            tool,
        );
        if let Some(group) = self.groups.get_mut(&key) {
            group.count += 1;
            if number < group.example_line {
                group.example_line = number;
                group.example = request_json(traffic.text);
            }
            return;
        }
        let (from, to, old_rules, new_rules, tool) = key.clone();
        self.groups.insert(
            key,
            ReplayChange {
                kind: ChangeKind::of(from, to),
                tool,
                from,
                to,
                old_rules,
                new_rules,
                count: 1,
                example: request_json(traffic.text),
                example_line: number,
            },
        );
    }

    /// Adds another part's results (of other lines of the same file).
    pub fn merge(&mut self, other: Replay<'a>) {
        let c = other.counts;
        self.counts.lines += c.lines;
        self.counts.requests += c.requests;
        self.counts.outcomes += c.outcomes;
        self.counts.compared += c.compared;
        self.counts.changed += c.changed;
        self.counts.without_baseline += c.without_baseline;
        for (key, group) in other.groups {
            match self.groups.get_mut(&key) {
                Some(mine) => {
                    mine.count += group.count;
                    if group.example_line < mine.example_line {
                        mine.example_line = group.example_line;
                        mine.example = group.example;
                    }
                }
                None => {
                    self.groups.insert(key, group);
                }
            }
        }
        for (key, error) in other.errors {
            match self.errors.get_mut(&key) {
                Some(mine) => {
                    mine.count += error.count;
                    mine.example_line = mine.example_line.min(error.example_line);
                }
                None => {
                    self.errors.insert(key, error);
                }
            }
        }
    }

    pub fn finish(self) -> ReplayReport {
        let mut changes: Vec<ReplayChange> = self.groups.into_values().collect();
        changes.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.example_line.cmp(&b.example_line))
        });
        let mut errors: Vec<ReplayError> = self.errors.into_values().collect();
        errors.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.example_line.cmp(&b.example_line))
        });
        let mut kinds = BTreeMap::new();
        for change in &changes {
            *kinds.entry(change.kind.as_str()).or_insert(0u64) += change.count;
        }
        ReplayReport {
            changes,
            kinds,
            errors,
            traffic: self.counts,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub changes: Vec<ReplayChange>,
    /// Changed requests per kind.
    pub kinds: BTreeMap<&'static str, u64>,
    pub errors: Vec<ReplayError>,
    pub traffic: ReplayCounts,
}
