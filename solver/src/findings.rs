//! The findings of `polctl check` (language.md §4), each a named query over the encoding.
//!
//! Every query runs on a solver with the set's domain loaded and a per-query time limit. Every
//! witness is a model read back as a request and replayed through the reference evaluator
//! before it is reported; a witness the evaluator disagrees with is an [`AnalysisError`], never
//! a finding.

use crate::encode::{all, any, EncodeError, Encoding};
use polctl_lang::diagnostic::{Diagnostic, DiagnosticKind, Severity};
use polctl_lang::eval::{Evaluator, Outcome, RuleStatus};
use polctl_lang::ir::{Actions, Effect, PolicySet, Scope};
use serde_json::Value as Json;
use z3::ast::Bool;
use z3::{Model, Params, SatResult, Solver};

/// Analysis settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Time limit of one solver query.
    pub timeout_ms: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options { timeout_ms: 10_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalysisError {
    Encode(EncodeError),
    /// A solver witness the evaluator decides differently: a bug in polctl.
    Witness {
        finding: String,
        message: String,
    },
}

impl std::fmt::Display for AnalysisError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            AnalysisError::Encode(e) => write!(f, "rule `{}` cannot be encoded for the solver: {}", e.rule, e.message),
            AnalysisError::Witness { finding, message } => write!(
                f,
                "internal error: the evaluator disagrees with the solver's witness for {finding}: {message}; please report this"
            ),
        }
    }
}

/// What the analysis found, with counts for the summary.
pub struct Analysis {
    pub findings: Vec<Diagnostic>,
    pub queries: usize,
}

enum Answer {
    Sat(Model),
    Unsat,
    Unknown(String),
}

struct Analyzer<'a> {
    set: &'a PolicySet,
    encoding: &'a Encoding<'a>,
    evaluator: &'a Evaluator,
    options: Options,
    queries: usize,
    findings: Vec<Diagnostic>,
    all_approved: Bool,
}

fn share_tool(a: &[usize], b: &[usize]) -> bool {
    a.iter().any(|t| b.contains(t))
}

impl<'a> Analyzer<'a> {
    /// One query, on a fresh solver that knows only the regexes of the rules involved.
    fn check(&mut self, rules: &[usize], constraints: &[Bool]) -> Answer {
        self.queries += 1;
        let solver: Solver = self.encoding.solver_for(rules);
        let mut params = Params::new();
        params.set_u32("timeout", self.options.timeout_ms);
        solver.set_params(&params);
        for constraint in constraints {
            solver.assert(constraint);
        }
        match solver.check() {
            SatResult::Sat => match solver.get_model() {
                Some(model) => Answer::Sat(model),
                None => Answer::Unknown("no model".to_owned()),
            },
            SatResult::Unsat => Answer::Unsat,
            SatResult::Unknown => Answer::Unknown(
                solver
                    .get_reason_unknown()
                    .unwrap_or_else(|| "unknown".to_owned()),
            ),
        }
    }

    fn rule_id(&self, rule: usize) -> &str {
        &self.set.rules[rule].id
    }

    fn diagnostic(
        &self,
        kind: DiagnosticKind,
        rule: usize,
        message: String,
        help: &str,
    ) -> Diagnostic {
        let severity = match kind {
            DiagnosticKind::DeadRule
            | DiagnosticKind::Shadowed
            | DiagnosticKind::ApprovalDeadEnd
            | DiagnosticKind::LayerViolation => Severity::Error,
            _ => Severity::Warning,
        };
        let code = match kind {
            DiagnosticKind::DeadRule => "A01",
            DiagnosticKind::Shadowed => "A02",
            DiagnosticKind::Conflict => "A03",
            DiagnosticKind::Redundant => "A04",
            DiagnosticKind::DeadLimit => "A05",
            DiagnosticKind::ZeroLimit => "A06",
            DiagnosticKind::ApprovalDeadEnd => "A07",
            DiagnosticKind::LayerViolation => "A08",
            DiagnosticKind::Vacuous => "A09",
            _ => "A10",
        };
        let rule_ir = &self.set.rules[rule];
        let mut diagnostic = match severity {
            Severity::Error => Diagnostic::error(kind, code, rule_ir.name_span, message),
            Severity::Warning => Diagnostic::warning(kind, code, rule_ir.name_span, message),
        }
        .with_help(help);
        diagnostic.rule = Some(rule_ir.id.clone());
        diagnostic
    }

    fn with_rules(
        &self,
        mut diagnostic: Diagnostic,
        label: &str,
        rules: &[usize],
        blocking: bool,
    ) -> Diagnostic {
        for &rule in rules {
            let rule_ir = &self.set.rules[rule];
            diagnostic = diagnostic.with_secondary(rule_ir.name_span, label);
            if blocking {
                diagnostic.blocking.push(rule_ir.id.clone());
            } else {
                diagnostic.related_rules.push(rule_ir.id.clone());
            }
        }
        diagnostic
    }

    fn unknown(&mut self, rule: usize, query: &str, reason: &str) {
        let message = format!(
            "the solver gave up on `{query}` for `{}` after {} ms ({reason})",
            self.rule_id(rule),
            self.options.timeout_ms
        );
        let diagnostic = self.diagnostic(
            DiagnosticKind::Unknown,
            rule,
            message,
            "raise the limit with `--timeout-ms`, or simplify the rule's regexes",
        );
        self.findings.push(diagnostic);
    }

    /// Replays a witness: the evaluator must decide it as claimed.
    fn replay(
        &self,
        finding: &str,
        witness: &Json,
        claim: impl Fn(
            &polctl_lang::eval::Decision,
            &[polctl_lang::eval::RuleTrace],
        ) -> Result<(), String>,
    ) -> Result<(), AnalysisError> {
        let request = self
            .evaluator
            .decode(witness)
            .map_err(|e| AnalysisError::Witness {
                finding: finding.to_owned(),
                message: format!("the witness does not fit the schema: {e}: {witness}"),
            })?;
        let decision = self.evaluator.decide(&request);
        let traces = self.evaluator.explain(&request);
        claim(&decision, &traces).map_err(|message| AnalysisError::Witness {
            finding: finding.to_owned(),
            message: format!("{message}; witness {witness}"),
        })
    }
}

fn matched(traces: &[polctl_lang::eval::RuleTrace], rule: usize) -> bool {
    traces.iter().any(|t| {
        t.rule == rule && matches!(t.status, RuleStatus::Matched | RuleStatus::Limit { .. })
    })
}

fn approve_all(set: &PolicySet, mut witness: Json) -> Json {
    witness["approvals"] = serde_json::json!(set.schema.approvers);
    witness
}

/// Runs every analysis over a compiled set.
pub fn analyze(
    set: &PolicySet,
    evaluator: &Evaluator,
    options: Options,
) -> Result<Analysis, AnalysisError> {
    let encoding = Encoding::new(set).map_err(AnalysisError::Encode)?;
    let all_approved = all(encoding.approvals.clone());
    let mut analyzer = Analyzer {
        set,
        encoding: &encoding,
        evaluator,
        options,
        queries: 0,
        findings: Vec::new(),
        all_approved,
    };
    analyzer.run()?;
    let mut findings = analyzer.findings;
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    Ok(Analysis {
        findings,
        queries: analyzer.queries,
    })
}

impl Analyzer<'_> {
    fn run(&mut self) -> Result<(), AnalysisError> {
        let set = self.set;
        let encoding = self.encoding;
        let rules = &set.rules;
        let count = rules.len();
        let denies = encoding.deny_rules();
        let allows = encoding.allow_rules();
        // Rules that can match together share a tool: queries range only over those.
        let near = |of: &[usize], rule: usize| -> Vec<usize> {
            of.iter()
                .copied()
                .filter(|&r| share_tool(&rules[r].tools, &rules[rule].tools))
                .collect()
        };
        let any_of = |of: &[usize]| any(of.iter().map(|&r| encoding.matches[r].clone()).collect());
        let involved = |groups: &[&[usize]]| -> Vec<usize> {
            groups.iter().flat_map(|g| g.iter().copied()).collect()
        };

        // dead_rule: no request matches the rule.
        let mut witness: Vec<Option<Json>> = vec![None; count];
        for rule in 0..count {
            match self.check(&[rule], &[encoding.matches[rule].clone()]) {
                Answer::Sat(model) => witness[rule] = Some(encoding.request_from_model(&model)),
                Answer::Unsat => {
                    let diagnostic = self.diagnostic(
                        DiagnosticKind::DeadRule,
                        rule,
                        format!("rule `{}` can never match a request", rules[rule].id),
                        "its scope, actions and conditions contradict each other (or the schema's ranges); fix or delete the rule",
                    );
                    self.findings.push(diagnostic);
                }
                Answer::Unknown(reason) => self.unknown(rule, "dead_rule", &reason),
            }
        }
        let alive = |rule: usize| witness[rule].is_some();

        // shadowed / layer_violation: every request an allow or approval rule matches is denied.
        let mut shadowed = vec![false; count];
        for rule in 0..count {
            if !alive(rule)
                || !matches!(
                    rules[rule].effect,
                    Effect::Allow { .. } | Effect::RequireApproval { .. }
                )
            {
                continue;
            }
            let candidates: Vec<usize> = denies
                .iter()
                .copied()
                .filter(|&d| share_tool(&rules[d].tools, &rules[rule].tools))
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let not_denied =
                |ds: &[usize]| any(ds.iter().map(|&d| encoding.matches[d].clone()).collect()).not();
            match self.check(
                &involved(&[&[rule], &candidates]),
                &[encoding.matches[rule].clone(), not_denied(&candidates)],
            ) {
                Answer::Unsat => {}
                Answer::Sat(_) => continue,
                Answer::Unknown(reason) => {
                    self.unknown(rule, "shadowed", &reason);
                    continue;
                }
            }
            // The smallest set of blocking denies, by deletion.
            let mut blocking = candidates.clone();
            for deny in candidates {
                let without: Vec<usize> = blocking.iter().copied().filter(|&d| d != deny).collect();
                if matches!(
                    self.check(
                        &involved(&[&[rule], &without]),
                        &[encoding.matches[rule].clone(), not_denied(&without)]
                    ),
                    Answer::Unsat
                ) {
                    blocking = without;
                }
            }
            shadowed[rule] = true;
            let scoped = !matches!(set.policies[rules[rule].policy].scope, Scope::All);
            let all_platform = blocking
                .iter()
                .all(|&d| matches!(set.policies[rules[d].policy].scope, Scope::All));
            let layer =
                scoped && all_platform && matches!(rules[rule].effect, Effect::Allow { .. });
            let Some(request) = witness[rule].clone() else {
                continue;
            };
            let kind_name = if layer { "layer_violation" } else { "shadowed" };
            self.replay(
                &format!("{kind_name} `{}`", rules[rule].id),
                &request,
                |decision, traces| {
                    if decision.outcome != Outcome::Deny
                        || !decision.rules.iter().any(|r| blocking.contains(r))
                    {
                        return Err(format!(
                            "expected a deny by {:?}, got {:?}",
                            blocking, decision
                        ));
                    }
                    if !matched(traces, rule) {
                        return Err("the rule does not match the witness".to_owned());
                    }
                    Ok(())
                },
            )?;
            let blocking_ids: Vec<&str> = blocking.iter().map(|&d| rules[d].id.as_str()).collect();
            let diagnostic = if layer {
                self.diagnostic(
                    DiagnosticKind::LayerViolation,
                    rule,
                    format!("`{}` allows what the platform always denies", rules[rule].id),
                    "a tenant or agent policy cannot loosen a platform deny: change the platform policy, or remove this allow",
                )
            } else {
                self.diagnostic(
                    DiagnosticKind::Shadowed,
                    rule,
                    format!(
                        "`{}` never changes a decision: every request it matches is denied by {}",
                        rules[rule].id,
                        blocking_ids
                            .iter()
                            .map(|id| format!("`{id}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "narrow the blocking deny rules, or delete this rule",
                )
            };
            let mut diagnostic =
                self.with_rules(diagnostic, "this deny blocks it", &blocking, true);
            diagnostic.witness = Some(request);
            self.findings.push(diagnostic);
        }
        let live = |rule: usize| alive(rule) && !shadowed[rule];

        // conflict: an allow and a deny from different policies, both naming a tool.
        for &allow in &allows {
            if !live(allow) || !matches!(rules[allow].actions, Actions::Tools(_)) {
                continue;
            }
            for &deny in &denies {
                let deny_rule = &rules[deny];
                let acknowledged = matches!(&deny_rule.effect, Effect::Deny { overrides } if overrides.contains(&rules[allow].id));
                if !alive(deny)
                    || deny_rule.policy == rules[allow].policy
                    || acknowledged
                    || !matches!(deny_rule.actions, Actions::Tools(_))
                    || !share_tool(&deny_rule.tools, &rules[allow].tools)
                {
                    continue;
                }
                match self.check(
                    &[allow, deny],
                    &[
                        encoding.matches[allow].clone(),
                        encoding.matches[deny].clone(),
                    ],
                ) {
                    Answer::Sat(model) => {
                        let request = encoding.request_from_model(&model);
                        self.replay(
                            &format!("conflict `{}`/`{}`", rules[allow].id, deny_rule.id),
                            &request,
                            |decision, traces| {
                                if decision.outcome != Outcome::Deny
                                    || !decision.rules.contains(&deny)
                                    || !matched(traces, allow)
                                {
                                    return Err(format!(
                                        "expected `{}` to match and `{}` to deny, got {decision:?}",
                                        rules[allow].id, deny_rule.id
                                    ));
                                }
                                Ok(())
                            },
                        )?;
                        let diagnostic = self.diagnostic(
                            DiagnosticKind::Conflict,
                            allow,
                            format!("`{}` allows requests that `{}` denies", rules[allow].id, deny_rule.id),
                            &format!(
                                "if the deny is meant to win, say so: add `overrides {}` to `{}`; otherwise narrow one of the rules",
                                rules[allow].id, deny_rule.id
                            ),
                        );
                        let mut diagnostic =
                            self.with_rules(diagnostic, "the conflicting deny", &[deny], false);
                        diagnostic.witness = Some(request);
                        self.findings.push(diagnostic);
                    }
                    Answer::Unsat => {}
                    Answer::Unknown(reason) => self.unknown(allow, "conflict", &reason),
                }
            }
        }

        // approval_dead_end: approved requests are never allowed.
        for rule in encoding.approval_rules() {
            if !live(rule) {
                continue;
            }
            let (nearby_denies, nearby_allows) = (near(&denies, rule), near(&allows, rule));
            let allowed_after_approval = [
                encoding.matches[rule].clone(),
                any_of(&nearby_denies).not(),
                any_of(&nearby_allows),
            ];
            match self.check(
                &involved(&[&[rule], &nearby_denies, &nearby_allows]),
                &allowed_after_approval,
            ) {
                Answer::Sat(_) => {}
                Answer::Unknown(reason) => self.unknown(rule, "approval_dead_end", &reason),
                Answer::Unsat => {
                    let Some(base) = witness[rule].clone() else {
                        continue;
                    };
                    let request = approve_all(set, base);
                    self.replay(
                        &format!("approval_dead_end `{}`", rules[rule].id),
                        &request,
                        |decision, traces| {
                            if decision.outcome != Outcome::Deny || !matched(traces, rule) {
                                return Err(format!(
                                    "expected an approved request to be denied, got {decision:?}"
                                ));
                            }
                            Ok(())
                        },
                    )?;
                    let mut diagnostic = self.diagnostic(
                        DiagnosticKind::ApprovalDeadEnd,
                        rule,
                        format!("requests approved under `{}` are never allowed", rules[rule].id),
                        "approvers would approve in vain: add an allow rule for these requests, or remove the approval rule",
                    );
                    diagnostic.witness = Some(request);
                    self.findings.push(diagnostic);
                }
            }
        }

        // zero_limit and dead_limit.
        let limits = encoding.limit_rules();
        for &limit in &limits {
            if !alive(limit) {
                continue;
            }
            let Effect::Limit(spec) = &rules[limit].effect else {
                continue;
            };
            if spec.max == 0 {
                let mut affected = Vec::new();
                let mut sample = None;
                for &allow in &allows {
                    if !live(allow) || !share_tool(&rules[allow].tools, &rules[limit].tools) {
                        continue;
                    }
                    if let Answer::Unsat = self.check(
                        &[allow, limit],
                        &[
                            encoding.matches[allow].clone(),
                            encoding.matches[limit].not(),
                        ],
                    ) {
                        let nearby_denies = near(&denies, allow);
                        let query = [
                            encoding.matches[allow].clone(),
                            any_of(&nearby_denies).not(),
                            self.all_approved.clone(),
                        ];
                        if let Answer::Sat(model) =
                            self.check(&involved(&[&[allow], &nearby_denies]), &query)
                        {
                            affected.push(allow);
                            sample.get_or_insert_with(|| {
                                approve_all(set, encoding.request_from_model(&model))
                            });
                        }
                    }
                }
                if let Some(request) = sample {
                    self.replay(
                        &format!("zero_limit `{}`", rules[limit].id),
                        &request,
                        |decision, _| {
                            if decision.outcome != Outcome::Deny || !decision.rules.contains(&limit)
                            {
                                return Err(format!(
                                    "expected a deny by the zero limit, got {decision:?}"
                                ));
                            }
                            Ok(())
                        },
                    )?;
                    let diagnostic = self.diagnostic(
                        DiagnosticKind::ZeroLimit,
                        limit,
                        format!(
                            "`{}` admits no action, so the allow rules for its actions never allow",
                            rules[limit].id
                        ),
                        "a limit of 0 is a deny: write a `deny` rule instead, or raise the limit",
                    );
                    let mut diagnostic = self.with_rules(
                        diagnostic,
                        "never allows because of the limit",
                        &affected,
                        false,
                    );
                    diagnostic.witness = Some(request);
                    self.findings.push(diagnostic);
                }
                continue;
            }
            // Nothing the limit covers is ever allowed.
            let (nearby_denies, nearby_allows) = (near(&denies, limit), near(&allows, limit));
            let allowed = [
                encoding.matches[limit].clone(),
                any_of(&nearby_denies).not(),
                any_of(&nearby_allows),
                self.all_approved.clone(),
            ];
            let allowed_rules = involved(&[&[limit], &nearby_denies, &nearby_allows]);
            match self.check(&allowed_rules, &allowed) {
                Answer::Unsat => {
                    let diagnostic = self.diagnostic(
                        DiagnosticKind::DeadLimit,
                        limit,
                        format!("`{}` can never bind: nothing it covers is ever allowed", rules[limit].id),
                        "only allowed actions count against a limit; delete it, or fix the allow rules it was meant for",
                    );
                    self.findings.push(diagnostic);
                    continue;
                }
                Answer::Unknown(reason) => {
                    self.unknown(limit, "dead_limit", &reason);
                    continue;
                }
                Answer::Sat(_) => {}
            }
            // A tighter limit on the same actions and key, with an equal or longer window.
            for &other in &limits {
                let Effect::Limit(tighter) = &rules[other].effect else {
                    continue;
                };
                let same_shape =
                    tighter.max == spec.max && tighter.window_seconds == spec.window_seconds;
                if other == limit
                    || !alive(other)
                    || tighter.key != spec.key
                    || tighter.max > spec.max
                    || tighter.window_seconds < spec.window_seconds
                    || (same_shape && other > limit)
                {
                    continue;
                }
                if !matches!(
                    self.check(
                        &[limit, other],
                        &[
                            encoding.matches[limit].clone(),
                            encoding.matches[other].not()
                        ]
                    ),
                    Answer::Unsat
                ) {
                    continue;
                }
                let Answer::Sat(model) = self.check(&allowed_rules, &allowed) else {
                    continue;
                };
                let mut request = approve_all(set, encoding.request_from_model(&model));
                request["counters"] = serde_json::json!({ rules[other].id.clone(): tighter.max });
                self.replay(
                    &format!("dead_limit `{}`", rules[limit].id),
                    &request,
                    |decision, _| {
                        if decision.outcome != Outcome::Deny || !decision.rules.contains(&other) {
                            return Err(format!(
                                "expected `{}` to bind, got {decision:?}",
                                rules[other].id
                            ));
                        }
                        Ok(())
                    },
                )?;
                let diagnostic = self.diagnostic(
                    DiagnosticKind::DeadLimit,
                    limit,
                    format!(
                        "`{}` can never bind: `{}` is tighter and always binds first",
                        rules[limit].id, rules[other].id
                    ),
                    "delete the looser limit, or make it tighter than the other",
                );
                let mut diagnostic = self.with_rules(diagnostic, "binds first", &[other], true);
                diagnostic.witness = Some(request);
                self.findings.push(diagnostic);
                break;
            }
        }

        // redundant: another rule with the same effect matches everything this one matches.
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
        for rule in 0..count {
            if !live(rule) {
                continue;
            }
            for other in 0..count {
                if other == rule
                    || !live(other)
                    || !same_effect(&rules[rule].effect, &rules[other].effect)
                    || !share_tool(&rules[rule].tools, &rules[other].tools)
                {
                    continue;
                }
                if !matches!(
                    self.check(
                        &[rule, other],
                        &[
                            encoding.matches[rule].clone(),
                            encoding.matches[other].not()
                        ]
                    ),
                    Answer::Unsat
                ) {
                    continue;
                }
                // Two rules that match the same requests: report the later one only.
                let mutual = matches!(
                    self.check(
                        &[rule, other],
                        &[
                            encoding.matches[other].clone(),
                            encoding.matches[rule].not()
                        ]
                    ),
                    Answer::Unsat
                );
                if mutual && rule < other {
                    continue;
                }
                let Some(request) = witness[rule].clone() else {
                    continue;
                };
                self.replay(
                    &format!("redundant `{}`", rules[rule].id),
                    &request,
                    |_, traces| {
                        if !matched(traces, rule) || !matched(traces, other) {
                            return Err(format!(
                                "expected both `{}` and `{}` to match",
                                rules[rule].id, rules[other].id
                            ));
                        }
                        Ok(())
                    },
                )?;
                let diagnostic = self.diagnostic(
                    DiagnosticKind::Redundant,
                    rule,
                    format!(
                        "`{}` is redundant: `{}` has the same effect on every request it matches",
                        rules[rule].id, rules[other].id
                    ),
                    "delete one of the two rules",
                );
                let mut diagnostic = self.with_rules(diagnostic, "covers it", &[other], false);
                diagnostic.witness = Some(request);
                self.findings.push(diagnostic);
                break;
            }
        }

        // vacuous: an allow whose condition always holds, while its actions are denied elsewhere.
        for &allow in &allows {
            let rule = &rules[allow];
            if !live(allow) || (rule.when.is_none() && rule.unless.is_none()) {
                continue;
            }
            let Some(deny) = denies.iter().copied().find(|&d| {
                alive(d)
                    && rules[d].policy != rule.policy
                    && share_tool(&rules[d].tools, &rule.tools)
            }) else {
                continue;
            };
            match self.check(
                &[allow],
                &[
                    encoding.reach[allow].clone(),
                    encoding.condition[allow].not(),
                ],
            ) {
                Answer::Unsat => {
                    let Some(request) = witness[allow].clone() else {
                        continue;
                    };
                    self.replay(&format!("vacuous `{}`", rule.id), &request, |_, traces| {
                        if !matched(traces, allow) {
                            return Err("the rule does not match the witness".to_owned());
                        }
                        Ok(())
                    })?;
                    let diagnostic = self.diagnostic(
                        DiagnosticKind::Vacuous,
                        allow,
                        format!("the condition of `{}` holds for every request of its actions and scope", rule.id),
                        "the condition restricts nothing; tighten it, or drop it to say what is meant",
                    );
                    let mut diagnostic =
                        self.with_rules(diagnostic, "a deny for the same actions", &[deny], false);
                    diagnostic.witness = Some(request);
                    self.findings.push(diagnostic);
                }
                Answer::Sat(_) => {}
                Answer::Unknown(reason) => self.unknown(allow, "vacuous", &reason),
            }
        }
        Ok(())
    }
}
