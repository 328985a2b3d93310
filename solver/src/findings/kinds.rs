//! The finding kinds: one method per kind on a [`Worker`], each asking its queries and
//! replaying its witness.

use super::context::{matched, Answer, Shared, Worker};
use super::AnalysisError;
use crate::query::{Lit, Query};
use polctl_lang::diagnostic::{Diagnostic, DiagnosticKind};
use polctl_lang::eval::{Outcome, Request};
use polctl_lang::ir::{Actions, Effect, Scope};

type Found = Result<Vec<Diagnostic>, AnalysisError>;

fn approve_all(request: &Request) -> Request {
    let mut request = request.clone();
    request.approvals.iter_mut().for_each(|a| *a = true);
    request
}

fn quoted(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Worker<'_> {
    /// Stage 1 for a rule no generated request matched: the solver finds a witness, or proves
    /// the rule dead.
    pub fn dead_rule(
        &self,
        rule: usize,
    ) -> Result<(Option<Request>, Vec<Diagnostic>), AnalysisError> {
        let shared = self.shared;
        Ok(match self.solve(&Query::new(vec![Lit::Matches(rule)]))? {
            Answer::Sat(request) => (Some(*request), Vec::new()),
            Answer::Unsat => {
                let diagnostic = shared.diagnostic(
                    DiagnosticKind::DeadRule,
                    rule,
                    format!("rule `{}` can never match a request", shared.id(rule)),
                    "its scope, actions and conditions contradict each other (or the schema's ranges); fix or delete the rule",
                );
                (None, vec![diagnostic])
            }
            Answer::Unknown(reason) => (None, vec![shared.unknown(rule, "dead_rule", &reason)]),
        })
    }

    /// Stage 2: `shadowed`, or `layer_violation` when only platform denies block a scoped
    /// allow.
    pub fn shadowed(&self, rule: usize) -> Found {
        let shared = self.shared;
        let set = shared.set;
        let candidates = shared.near(rule, |d| shared.is_deny(d) && shared.alive(d));
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let unblocked = |denies: &[usize]| {
            Query::new(vec![Lit::Matches(rule), Lit::NoneMatch(denies.to_vec())])
        };
        match self.ask(&unblocked(&candidates))? {
            Answer::Unsat => {}
            Answer::Sat(_) => return Ok(Vec::new()),
            Answer::Unknown(reason) => return Ok(vec![shared.unknown(rule, "shadowed", &reason)]),
        }
        // The smallest set of blocking denies, by deletion.
        let mut blocking = candidates.clone();
        for deny in candidates {
            let without: Vec<usize> = blocking.iter().copied().filter(|&d| d != deny).collect();
            if matches!(self.solve(&unblocked(&without))?, Answer::Unsat) {
                blocking = without;
            }
        }
        let scoped = !matches!(set.policies[set.rules[rule].policy].scope, Scope::All);
        let all_platform = blocking
            .iter()
            .all(|&d| matches!(set.policies[set.rules[d].policy].scope, Scope::All));
        let layer = scoped && all_platform && shared.is_allow(rule);
        let Some(request) = shared.witness(rule) else {
            return Ok(Vec::new());
        };
        let kind_name = if layer { "layer_violation" } else { "shadowed" };
        let witness = shared.replay(
            &format!("{kind_name} `{}`", shared.id(rule)),
            request,
            |decision, traces| {
                if decision.outcome != Outcome::Deny
                    || !decision.rules.iter().any(|r| blocking.contains(r))
                {
                    return Err(format!("expected a deny by {blocking:?}, got {decision:?}"));
                }
                if !matched(traces, rule) {
                    return Err("the rule does not match the witness".to_owned());
                }
                Ok(())
            },
        )?;
        let blocking_ids: Vec<&str> = blocking.iter().map(|&d| shared.id(d)).collect();
        let diagnostic = if layer {
            shared.diagnostic(
                DiagnosticKind::LayerViolation,
                rule,
                format!("`{}` allows what the platform always denies", shared.id(rule)),
                "a tenant or agent policy cannot loosen a platform deny: change the platform policy, or remove this allow",
            )
        } else {
            shared.diagnostic(
                DiagnosticKind::Shadowed,
                rule,
                format!(
                    "`{}` never changes a decision: every request it matches is denied by {}",
                    shared.id(rule),
                    quoted(&blocking_ids)
                ),
                "narrow the blocking deny rules, or delete this rule",
            )
        };
        let mut diagnostic = shared.with_rules(diagnostic, "this deny blocks it", &blocking, true);
        diagnostic.witness = Some(witness);
        Ok(vec![diagnostic])
    }

    /// Stage 3: every pairwise and limit finding about one live rule.
    pub fn rule_findings(&self, rule: usize) -> Found {
        let shared = self.shared;
        let mut found = Vec::new();
        if !shared.live(rule) {
            return Ok(found);
        }
        match &shared.set.rules[rule].effect {
            Effect::Allow { .. } => {
                found.extend(self.conflicts(rule)?);
                found.extend(self.vacuous(rule)?);
            }
            Effect::RequireApproval { .. } => found.extend(self.approval_dead_end(rule)?),
            Effect::Limit(spec) if spec.max == 0 => found.extend(self.zero_limit(rule)?),
            Effect::Limit(_) => found.extend(self.dead_limit(rule)?),
            Effect::Deny { .. } => {}
        }
        found.extend(self.redundant(rule)?);
        Ok(found)
    }

    /// `conflict`: an allow and a deny from different policies, both naming a tool, meet.
    fn conflicts(&self, allow: usize) -> Found {
        let shared = self.shared;
        let rules = &shared.set.rules;
        let mut found = Vec::new();
        if !matches!(rules[allow].actions, Actions::Tools(_)) {
            return Ok(found);
        }
        let denies = shared.near(allow, |d| {
            let deny = &rules[d];
            let acknowledged = matches!(&deny.effect, Effect::Deny { overrides } if overrides.contains(&rules[allow].id));
            shared.is_deny(d)
                && shared.alive(d)
                && deny.policy != rules[allow].policy
                && !acknowledged
                && matches!(deny.actions, Actions::Tools(_))
        });
        for deny in denies {
            match self.ask(&Query::new(vec![Lit::Matches(allow), Lit::Matches(deny)]))? {
                Answer::Sat(request) => {
                    let witness = shared.replay(
                        &format!("conflict `{}`/`{}`", shared.id(allow), shared.id(deny)),
                        &request,
                        |decision, traces| {
                            if decision.outcome != Outcome::Deny
                                || !decision.rules.contains(&deny)
                                || !matched(traces, allow)
                            {
                                return Err(format!(
                                    "expected `{}` to match and `{}` to deny, got {decision:?}",
                                    shared.id(allow),
                                    shared.id(deny)
                                ));
                            }
                            Ok(())
                        },
                    )?;
                    let diagnostic = shared.diagnostic(
                        DiagnosticKind::Conflict,
                        allow,
                        format!(
                            "`{}` allows requests that `{}` denies",
                            shared.id(allow),
                            shared.id(deny)
                        ),
                        &format!(
                            "if the deny is meant to win, say so: add `overrides {}` to `{}`; otherwise narrow one of the rules",
                            shared.id(allow),
                            shared.id(deny)
                        ),
                    );
                    let mut diagnostic =
                        shared.with_rules(diagnostic, "the conflicting deny", &[deny], false);
                    diagnostic.witness = Some(witness);
                    found.push(diagnostic);
                }
                Answer::Unsat => {}
                Answer::Unknown(reason) => found.push(shared.unknown(allow, "conflict", &reason)),
            }
        }
        Ok(found)
    }

    /// The query "an approved request the rule matches is allowed", over nearby rules.
    fn allowed_under(&self, rule: usize) -> Query {
        let shared = self.shared;
        let denies = shared.near(rule, |d| shared.is_deny(d) && shared.alive(d));
        let mut allows = shared.near(rule, |a| shared.is_allow(a) && shared.live(a));
        if shared.is_allow(rule) {
            allows.push(rule);
        }
        Query::new(vec![
            Lit::Matches(rule),
            Lit::SomeMatch(allows),
            Lit::NoneMatch(denies),
            Lit::AllApproved,
        ])
    }

    /// `approval_dead_end`: approved requests are never allowed.
    fn approval_dead_end(&self, rule: usize) -> Found {
        let shared = self.shared;
        match self.ask(&self.allowed_under(rule))? {
            Answer::Sat(_) => Ok(Vec::new()),
            Answer::Unknown(reason) => Ok(vec![shared.unknown(rule, "approval_dead_end", &reason)]),
            Answer::Unsat => {
                let Some(base) = shared.witness(rule) else {
                    return Ok(Vec::new());
                };
                let witness = shared.replay(
                    &format!("approval_dead_end `{}`", shared.id(rule)),
                    &approve_all(base),
                    |decision, traces| {
                        if decision.outcome != Outcome::Deny || !matched(traces, rule) {
                            return Err(format!(
                                "expected an approved request to be denied, got {decision:?}"
                            ));
                        }
                        Ok(())
                    },
                )?;
                let mut diagnostic = shared.diagnostic(
                    DiagnosticKind::ApprovalDeadEnd,
                    rule,
                    format!("requests approved under `{}` are never allowed", shared.id(rule)),
                    "approvers would approve in vain: add an allow rule for these requests, or remove the approval rule",
                );
                diagnostic.witness = Some(witness);
                Ok(vec![diagnostic])
            }
        }
    }

    /// `zero_limit`: a limit of 0 makes the allows it covers dead.
    fn zero_limit(&self, limit: usize) -> Found {
        let shared = self.shared;
        let mut affected = Vec::new();
        let mut sample: Option<Request> = None;
        let mut undecided = Undecided::default();
        let allows = shared.near(limit, |a| shared.is_allow(a) && shared.live(a));
        for allow in allows {
            // The limit covers every request the allow matches...
            let covered = Query::new(vec![Lit::Matches(allow), Lit::NotMatches(limit)]);
            if !undecided.unsat(self.ask(&covered)?) {
                continue;
            }
            // ... and the allow would otherwise allow some of them.
            match self.ask(&self.allowed_under(allow))? {
                Answer::Sat(request) => {
                    affected.push(allow);
                    sample.get_or_insert(*request);
                }
                answer => {
                    undecided.unsat(answer);
                }
            }
        }
        let Some(request) = sample else {
            return Ok(undecided.report(shared, limit, "zero_limit"));
        };
        let witness = shared.replay(
            &format!("zero_limit `{}`", shared.id(limit)),
            &request,
            |decision, _| {
                if decision.outcome != Outcome::Deny || !decision.rules.contains(&limit) {
                    return Err(format!(
                        "expected a deny by the zero limit, got {decision:?}"
                    ));
                }
                Ok(())
            },
        )?;
        let diagnostic = shared.diagnostic(
            DiagnosticKind::ZeroLimit,
            limit,
            format!(
                "`{}` admits no action, so the allow rules for its actions never allow",
                shared.id(limit)
            ),
            "a limit of 0 is a deny: write a `deny` rule instead, or raise the limit",
        );
        let mut diagnostic = shared.with_rules(
            diagnostic,
            "never allows because of the limit",
            &affected,
            false,
        );
        diagnostic.witness = Some(witness);
        Ok(vec![diagnostic])
    }

    /// `dead_limit`: nothing the limit covers is ever allowed, or a tighter limit on the same
    /// actions and key, with an equal or longer window, always binds first.
    fn dead_limit(&self, limit: usize) -> Found {
        let shared = self.shared;
        let rules = &shared.set.rules;
        let Effect::Limit(spec) = &rules[limit].effect else {
            return Ok(Vec::new());
        };
        let allowed = match self.ask(&self.allowed_under(limit))? {
            Answer::Unsat => {
                let diagnostic = shared.diagnostic(
                    DiagnosticKind::DeadLimit,
                    limit,
                    format!(
                        "`{}` can never bind: nothing it covers is ever allowed",
                        shared.id(limit)
                    ),
                    "only allowed actions count against a limit; delete it, or fix the allow rules it was meant for",
                );
                return Ok(vec![diagnostic]);
            }
            Answer::Unknown(reason) => {
                return Ok(vec![shared.unknown(limit, "dead_limit", &reason)])
            }
            Answer::Sat(request) => *request,
        };
        let tighter_limits = shared.near(limit, |other| {
            let Effect::Limit(tighter) = &rules[other].effect else {
                return false;
            };
            let same_shape =
                tighter.max == spec.max && tighter.window_seconds == spec.window_seconds;
            shared.alive(other)
                && tighter.key == spec.key
                && tighter.max <= spec.max
                && tighter.window_seconds >= spec.window_seconds
                && !(same_shape && other > limit)
        });
        let mut undecided = Undecided::default();
        for other in tighter_limits {
            let Effect::Limit(tighter) = &rules[other].effect else {
                continue;
            };
            let escapes = Query::new(vec![Lit::Matches(limit), Lit::NotMatches(other)]);
            if !undecided.unsat(self.ask(&escapes)?) {
                continue;
            }
            let mut request = approve_all(&allowed);
            request.counters = vec![(other, tighter.max)];
            let witness = shared.replay(
                &format!("dead_limit `{}`", shared.id(limit)),
                &request,
                |decision, _| {
                    if decision.outcome != Outcome::Deny || !decision.rules.contains(&other) {
                        return Err(format!(
                            "expected `{}` to bind, got {decision:?}",
                            shared.id(other)
                        ));
                    }
                    Ok(())
                },
            )?;
            let diagnostic = shared.diagnostic(
                DiagnosticKind::DeadLimit,
                limit,
                format!(
                    "`{}` can never bind: `{}` is tighter and always binds first",
                    shared.id(limit),
                    shared.id(other)
                ),
                "delete the looser limit, or make it tighter than the other",
            );
            let mut diagnostic = shared.with_rules(diagnostic, "binds first", &[other], true);
            diagnostic.witness = Some(witness);
            return Ok(vec![diagnostic]);
        }
        Ok(undecided.report(shared, limit, "dead_limit"))
    }

    /// `redundant`: another rule with the same effect matches everything this one matches.
    fn redundant(&self, rule: usize) -> Found {
        let shared = self.shared;
        let rules = &shared.set.rules;
        let same_effect = |a: &Effect, b: &Effect| match (a, b) {
            (Effect::Allow { obligations: x }, Effect::Allow { obligations: y }) => x == y,
            (Effect::Deny { .. }, Effect::Deny { .. }) => true,
            (Effect::RequireApproval { groups: x }, Effect::RequireApproval { groups: y }) => {
                let (mut x, mut y) = (x.clone(), y.clone());
                x.sort();
                y.sort();
                x == y
            }
            (Effect::Limit(x), Effect::Limit(y)) => x == y,
            _ => false,
        };
        let others = shared.near(rule, |other| {
            shared.live(other) && same_effect(&rules[rule].effect, &rules[other].effect)
        });
        let mut undecided = Undecided::default();
        for other in others {
            let escapes = Query::new(vec![Lit::Matches(rule), Lit::NotMatches(other)]);
            if !undecided.unsat(self.ask(&escapes)?) {
                continue;
            }
            // Two rules that match the same requests: report the later one only. When that
            // cannot be decided, this one is reported: a redundancy is never dropped.
            let converse = Query::new(vec![Lit::Matches(other), Lit::NotMatches(rule)]);
            if rule < other && matches!(self.ask(&converse)?, Answer::Unsat) {
                continue;
            }
            let Some(request) = shared.witness(rule) else {
                continue;
            };
            let witness = shared.replay(
                &format!("redundant `{}`", shared.id(rule)),
                request,
                |_, traces| {
                    if !matched(traces, rule) || !matched(traces, other) {
                        return Err(format!(
                            "expected both `{}` and `{}` to match",
                            shared.id(rule),
                            shared.id(other)
                        ));
                    }
                    Ok(())
                },
            )?;
            let diagnostic = shared.diagnostic(
                DiagnosticKind::Redundant,
                rule,
                format!(
                    "`{}` is redundant: `{}` has the same effect on every request it matches",
                    shared.id(rule),
                    shared.id(other)
                ),
                "delete one of the two rules",
            );
            let mut diagnostic = shared.with_rules(diagnostic, "covers it", &[other], false);
            diagnostic.witness = Some(witness);
            return Ok(vec![diagnostic]);
        }
        Ok(undecided.report(shared, rule, "redundant"))
    }

    /// `vacuous`: an allow whose condition always holds, while its actions are denied
    /// elsewhere.
    fn vacuous(&self, allow: usize) -> Found {
        let shared = self.shared;
        let rule = &shared.set.rules[allow];
        if rule.when.is_none() && rule.unless.is_none() {
            return Ok(Vec::new());
        }
        let Some(&deny) = shared
            .near(allow, |d| {
                shared.is_deny(d) && shared.alive(d) && shared.set.rules[d].policy != rule.policy
            })
            .first()
        else {
            return Ok(Vec::new());
        };
        let fails = Query::new(vec![Lit::Reaches(allow), Lit::ConditionFails(allow)]);
        match self.ask(&fails)? {
            Answer::Sat(_) => Ok(Vec::new()),
            Answer::Unknown(reason) => Ok(vec![shared.unknown(allow, "vacuous", &reason)]),
            Answer::Unsat => {
                let Some(request) = shared.witness(allow) else {
                    return Ok(Vec::new());
                };
                let witness =
                    shared.replay(&format!("vacuous `{}`", rule.id), request, |_, traces| {
                        if !matched(traces, allow) {
                            return Err("the rule does not match the witness".to_owned());
                        }
                        Ok(())
                    })?;
                let diagnostic = shared.diagnostic(
                    DiagnosticKind::Vacuous,
                    allow,
                    format!(
                        "the condition of `{}` holds for every request of its actions and scope",
                        rule.id
                    ),
                    "the condition restricts nothing; tighten it, or drop it to say what is meant",
                );
                let mut diagnostic =
                    shared.with_rules(diagnostic, "a deny for the same actions", &[deny], false);
                diagnostic.witness = Some(witness);
                Ok(vec![diagnostic])
            }
        }
    }
}

/// The first query of a finding's loop that Z3 could not decide. A loop that finds nothing
/// but left a query undecided reports `unknown` (A10), so a timeout never silently drops a
/// finding.
#[derive(Default)]
struct Undecided {
    reason: Option<String>,
}

impl Undecided {
    /// Whether the answer is `Unsat`, keeping the reason of the first `Unknown`.
    fn unsat(&mut self, answer: Answer) -> bool {
        match answer {
            Answer::Unsat => true,
            Answer::Unknown(reason) => {
                self.reason.get_or_insert(reason);
                false
            }
            Answer::Sat(_) => false,
        }
    }

    fn report(self, shared: &Shared, rule: usize, query: &str) -> Vec<Diagnostic> {
        self.reason
            .map(|reason| shared.unknown(rule, query, &reason))
            .into_iter()
            .collect()
    }
}
