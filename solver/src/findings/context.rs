//! What the analysis shares between workers ([`Shared`]) and what each worker owns
//! ([`Worker`]: its encoding), with the helpers every finding kind uses: asking a query,
//! replaying a witness and building a diagnostic.

use super::{AnalysisError, Options};
use crate::candidates::{search, FieldsRead};
use crate::construct::{construct, scoped_request};
use crate::encode::Encoding;
use crate::query::{all_approved, Query};
use crate::realize::{self, Realized};
use polctl_lang::diagnostic::{Diagnostic, DiagnosticKind, Severity};
use polctl_lang::eval::generate::{request_to_json, RequestGenerator};
use polctl_lang::eval::{Decision, Evaluator, Request, RuleStatus, RuleTrace};
use polctl_lang::ir::{Cond, Effect, PolicySet, Scope, ScopeTerm};
use serde_json::Value as Json;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use z3::ast::Bool;
use z3::{Params, SatResult};

/// The answer to a query.
pub enum Answer {
    /// A request satisfying the query, confirmed by the evaluator.
    Sat(Box<Request>),
    Unsat,
    Unknown(String),
}

/// Read-only state shared by the workers, plus counters.
pub struct Shared<'a> {
    pub set: &'a PolicySet,
    pub evaluator: &'a Evaluator,
    pub options: Options,
    pub fields: FieldsRead,
    /// Per tool, the rules that name it.
    pub by_tool: Vec<Vec<usize>>,
    /// Per rule, requests it matches (none: dead, or not yet known); the first is the one
    /// reported.
    pub witnesses: Vec<Vec<Request>>,
    /// Per rule: every request it matches is denied (stage 2).
    pub shadowed: Vec<bool>,
    pub queries: AtomicUsize,
    pub solver_queries: AtomicUsize,
    /// Queries on which Z3's first check gave up (its time limit, or an incomplete theory).
    pub solver_gave_up: AtomicUsize,
    /// Queries left undecided after the strings chosen outside Z3: reported as `unknown`.
    pub undecided: AtomicUsize,
    pub solver_micros: AtomicU64,
}

impl<'a> Shared<'a> {
    pub fn new(
        set: &'a PolicySet,
        evaluator: &'a Evaluator,
        options: Options,
        fields: FieldsRead,
    ) -> Shared<'a> {
        let mut by_tool = vec![Vec::new(); set.schema.tools.len()];
        for (index, rule) in set.rules.iter().enumerate() {
            for &tool in &rule.tools {
                if let Some(rules) = by_tool.get_mut(tool) {
                    rules.push(index);
                }
            }
        }
        Shared {
            set,
            evaluator,
            options,
            fields,
            by_tool,
            witnesses: vec![Vec::new(); set.rules.len()],
            shadowed: vec![false; set.rules.len()],
            queries: AtomicUsize::new(0),
            solver_queries: AtomicUsize::new(0),
            solver_gave_up: AtomicUsize::new(0),
            undecided: AtomicUsize::new(0),
            solver_micros: AtomicU64::new(0),
        }
    }

    /// The rule can match some request.
    pub fn alive(&self, rule: usize) -> bool {
        !self.witnesses[rule].is_empty()
    }

    /// The request reported as the rule's witness.
    pub fn witness(&self, rule: usize) -> Option<&Request> {
        self.witnesses[rule].first()
    }

    /// Alive, and not shadowed.
    pub fn live(&self, rule: usize) -> bool {
        self.alive(rule) && !self.shadowed[rule]
    }

    /// Rules that can meet `rule` (they share a tool and their scopes are compatible) and
    /// satisfy `wanted`, in index order.
    pub fn near(&self, rule: usize, wanted: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut found: Vec<usize> = self.set.rules[rule]
            .tools
            .iter()
            .filter_map(|&t| self.by_tool.get(t))
            .flatten()
            .copied()
            .filter(|&other| other != rule && wanted(other) && self.scopes_meet(rule, other))
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Whether one request can be in the scope of both rules' policies: a term of each, whose
    /// tenant parts (and agent parts, and role parts) all name the same value.
    pub fn scopes_meet(&self, a: usize, b: usize) -> bool {
        let scope = |rule: usize| &self.set.policies[self.set.rules[rule].policy].scope;
        let (Scope::Any(left), Scope::Any(right)) = (scope(a), scope(b)) else {
            return true;
        };
        let compatible = |p: &ScopeTerm, q: &ScopeTerm| match (p, q) {
            (ScopeTerm::Tenant(p), ScopeTerm::Tenant(q))
            | (ScopeTerm::Agent(p), ScopeTerm::Agent(q))
            | (ScopeTerm::Role(p), ScopeTerm::Role(q)) => p == q,
            _ => true,
        };
        left.iter().any(|x| {
            right.iter().any(|y| {
                x.parts()
                    .iter()
                    .all(|p| y.parts().iter().all(|q| compatible(p, q)))
            })
        })
    }

    pub fn id(&self, rule: usize) -> &str {
        &self.set.rules[rule].id
    }

    pub fn is_deny(&self, rule: usize) -> bool {
        matches!(self.set.rules[rule].effect, Effect::Deny { .. })
    }

    pub fn is_allow(&self, rule: usize) -> bool {
        matches!(self.set.rules[rule].effect, Effect::Allow { .. })
    }

    /// A witness as JSON (language.md §1), without the empty optional fields.
    pub fn witness_json(&self, request: &Request) -> Json {
        let mut json = request_to_json(self.set, request);
        crate::witness::compact(&mut json);
        json
    }

    /// A finding about `rule`, with the severity and code of its kind.
    pub fn diagnostic(
        &self,
        kind: DiagnosticKind,
        rule: usize,
        message: String,
        help: &str,
    ) -> Diagnostic {
        let (code, severity) = polctl_lang::check::codes::finding(kind);
        let rule_ir = &self.set.rules[rule];
        let mut diagnostic = match severity {
            Severity::Error => Diagnostic::error(kind, code, rule_ir.name_span, message),
            Severity::Warning => Diagnostic::warning(kind, code, rule_ir.name_span, message),
        }
        .with_help(help);
        diagnostic.rule = Some(rule_ir.id.clone());
        diagnostic
    }

    /// Points at `rules` with `label`, listed as blocking or as related rules.
    pub fn with_rules(
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

    pub fn unknown(&self, rule: usize, query: &str, reason: &str) -> Diagnostic {
        let message = format!(
            "the solver gave up on `{query}` for `{}` after {} ms ({reason})",
            self.id(rule),
            self.options.timeout_ms
        );
        self.diagnostic(
            DiagnosticKind::Unknown,
            rule,
            message,
            "raise the limit with `--timeout-ms`, or simplify the rule's regexes",
        )
    }

    /// Replays a witness: the evaluator must decide it as the finding claims. Returns the
    /// witness as JSON for the report.
    pub fn replay(
        &self,
        finding: &str,
        witness: &Request,
        claim: impl Fn(&Decision, &[RuleTrace]) -> Result<(), String>,
    ) -> Result<Json, AnalysisError> {
        let holds = |request: &Request| {
            claim(
                &self.evaluator.decide(request),
                &self.evaluator.explain(request),
            )
            .is_ok()
        };
        let witness = if holds(witness) {
            crate::witness::simplify(self.set, witness, holds)
        } else {
            witness.clone()
        };
        let json = self.witness_json(&witness);
        // Decode the JSON that will be printed, so what the user sees is what was checked.
        let request = self
            .evaluator
            .decode(&json)
            .map_err(|e| AnalysisError::Witness {
                finding: finding.to_owned(),
                message: format!("the witness does not fit the schema: {e}: {json}"),
            })?;
        let decision = self.evaluator.decide(&request);
        let traces = self.evaluator.explain(&request);
        claim(&decision, &traces).map_err(|message| AnalysisError::Witness {
            finding: finding.to_owned(),
            message: format!("{message}; witness {json}"),
        })?;
        Ok(json)
    }
}

/// The rule matched the request (a limit counts as matched whatever its counter).
pub fn matched(traces: &[RuleTrace], rule: usize) -> bool {
    traces.iter().any(|t| {
        t.rule == rule && matches!(t.status, RuleStatus::Matched | RuleStatus::Limit { .. })
    })
}

/// One worker: the shared state and this thread's encoding.
pub struct Worker<'a> {
    pub shared: &'a Shared<'a>,
    pub encoding: Encoding<'a>,
    all_approved: Bool,
    /// Reseeded per query, so answers do not depend on which worker asks.
    generator: RefCell<RequestGenerator<'a>>,
}

/// Fresh requests tried per query around its subject rule before asking Z3.
const EXPLORED_PER_QUERY: usize = 24;

impl<'a> Worker<'a> {
    pub fn new(shared: &'a Shared<'a>, encoding: Encoding<'a>) -> Worker<'a> {
        let all_approved = all_approved(&encoding);
        Worker {
            shared,
            encoding,
            all_approved,
            generator: RefCell::new(RequestGenerator::new(shared.set, 0)),
        }
    }

    /// Asks a query: concrete candidates first, then Z3.
    pub fn ask(&self, query: &Query) -> Result<Answer, AnalysisError> {
        let shared = self.shared;
        shared.queries.fetch_add(1, Ordering::Relaxed);
        if let Some(request) = search(shared.evaluator, &shared.fields, &shared.witnesses, query) {
            return Ok(Answer::Sat(Box::new(request)));
        }
        if let Some(request) = self.explore(query) {
            return Ok(Answer::Sat(Box::new(request)));
        }
        self.solve(query)
    }

    /// Fresh requests for the query's subject rule, in its scope, raw or built from its
    /// condition together with one other positive rule's.
    fn explore(&self, query: &Query) -> Option<Request> {
        let shared = self.shared;
        let set = shared.set;
        let positive = query.positive_rules();
        let &subject = positive.first()?;
        let mut generator = self.generator.borrow_mut();
        generator.reseed(0x9e37_79b9 ^ subject as u64);
        let partners: Vec<usize> = positive.iter().copied().skip(1).take(8).collect();
        for attempt in 0..EXPLORED_PER_QUERY {
            let mut candidate = scoped_request(set, &mut generator, subject, attempt);
            if attempt % 4 != 3 {
                let mut conds: Vec<&Cond> = set.rules[subject].when.iter().collect();
                if let Some(&partner) = partners.get(attempt % partners.len().max(1)) {
                    conds.extend(set.rules[partner].when.iter());
                }
                candidate = construct(set, &candidate, &conds, attempt);
            }
            if query.wants_all_approved() {
                candidate.approvals.iter_mut().for_each(|a| *a = true);
            }
            let states = shared.evaluator.rule_states(&candidate);
            if query.holds(&candidate, &states) {
                return Some(candidate);
            }
        }
        None
    }

    /// Asks Z3 only, on a fresh solver loaded with the involved rules' regexes.
    pub fn solve(&self, query: &Query) -> Result<Answer, AnalysisError> {
        let shared = self.shared;
        shared.solver_queries.fetch_add(1, Ordering::Relaxed);
        // Every query has a subject rule the witness must reach: its tools bound the request's.
        let subject_tools = query
            .positive_rules()
            .first()
            .map(|&r| shared.set.rules[r].tools.as_slice());
        let rules = query.rules();
        let memberships = self.encoding.memberships_of(&rules);
        // Which of these rules' text tests on one field exclude or include each other: Z3
        // 4.8.12 cannot refute an anchored regex together with a disjoint `ends with` in any
        // time, but is handed the answer here (see `languages.rs`).
        let mut facts = crate::languages::lemmas(&memberships);
        facts.extend(query.constraints(&self.encoding, &self.all_approved));
        let timeout_ms = shared.options.timeout_ms;
        let solver = self.encoding.solver_for(&rules, subject_tools);
        facts.iter().for_each(|fact| solver.assert(fact));
        // With text tests, Z3 gets half the limit; what it gives up on is decided with
        // strings chosen outside it (`realize.rs`) in the other half.
        let first_ms = if memberships.is_empty() {
            timeout_ms
        } else {
            timeout_ms / 2
        };
        let mut params = Params::new();
        params.set_u32("timeout", first_ms.max(1));
        solver.set_params(&params);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(timeout_ms.into());
        let result = match solver.check() {
            SatResult::Unsat => Err(Answer::Unsat),
            SatResult::Sat => solver
                .get_model()
                .ok_or_else(|| Answer::Unknown("no model".to_owned())),
            SatResult::Unknown => {
                shared.solver_gave_up.fetch_add(1, Ordering::Relaxed);
                let reason = solver
                    .get_reason_unknown()
                    .unwrap_or_else(|| "unknown".to_owned());
                if memberships.is_empty() {
                    Err(Answer::Unknown(reason))
                } else {
                    let solver = |with_memberships: bool| {
                        if with_memberships {
                            self.encoding.solver_for(&rules, subject_tools)
                        } else {
                            self.encoding.domain_solver(subject_tools)
                        }
                    };
                    match realize::decide(
                        &solver,
                        &facts,
                        &memberships,
                        &|subject| self.encoding.literals_of(subject),
                        deadline,
                    ) {
                        Realized::Sat(model) => Ok(model),
                        Realized::Unsat => Err(Answer::Unsat),
                        Realized::Unknown(why) => {
                            Err(Answer::Unknown(realize::unknown_reason(reason, &why)))
                        }
                    }
                }
            }
        };
        shared
            .solver_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match result {
            Err(answer) => {
                if matches!(answer, Answer::Unknown(_)) {
                    shared.undecided.fetch_add(1, Ordering::Relaxed);
                }
                Ok(answer)
            }
            Ok(model) => {
                let json = self.encoding.request_from_model(&model);
                let mut request =
                    shared
                        .evaluator
                        .decode(&json)
                        .map_err(|e| AnalysisError::Witness {
                            finding: format!("a query on {:?}", query.lits),
                            message: format!("the model does not fit the schema: {e}: {json}"),
                        })?;
                request.counters.clear();
                if !query.wants_all_approved() {
                    request.approvals.iter_mut().for_each(|a| *a = false);
                }
                // One semantics: the evaluator must agree the model satisfies the query.
                let states = shared.evaluator.rule_states(&request);
                if query.check(&request, &states) == Some(false) {
                    return Err(AnalysisError::Witness {
                        finding: format!("a query on {:?}", query.lits),
                        message: format!(
                            "the evaluator says the model does not satisfy it: {json}"
                        ),
                    });
                }
                Ok(Answer::Sat(Box::new(request)))
            }
        }
    }
}
