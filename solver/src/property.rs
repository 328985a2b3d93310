//! Proofs of `[[property]]` entries (language.md §5): `never` / `always` a decision over every
//! request that satisfies `forall`.
//!
//! One query: `forall` and the decision (for `never`) or its negation (for `always`). Unsat is
//! a proof; a model is a counterexample, replayed through the evaluator (which must agree that
//! `forall` holds and that the decision is the forbidden one) before it is reported. Lists are
//! reasoned about up to [`crate::LIST_BOUND`] elements, so a proof about lists holds up to it.

use crate::encode::{load_tests, Encoding};
use crate::realize::{self, Realized};
use polctl_lang::eval::{Evaluator, Outcome};
use polctl_lang::ir::{CmpOp, Cond, Path, PolicySet, Value};
use serde_json::Value as Json;
use std::time::{Duration, Instant};
use z3::{Params, SatResult};

/// What a property claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Never(Outcome),
    Always(Outcome),
}

/// How long Z3 gets before the strings are chosen outside it (`realize.rs`).
const FIRST_TRY_MS: u32 = 1_000;

/// The solver's verdict on a property.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Proven,
    /// A request that satisfies `forall` and breaks the claim, with the decision it gets.
    Counterexample {
        request: Json,
        decision: Outcome,
    },
    /// The query hit its time limit.
    Unknown(String),
    /// The solver and the evaluator disagree: a bug in polctl.
    Internal(String),
}

/// The tools a `forall` can be about: those named by a top-level `tool.name` test, or all.
fn tools_of(set: &PolicySet, forall: &Cond) -> Vec<usize> {
    let all: Vec<usize> = (0..set.schema.tools.len()).collect();
    let conjuncts: Vec<&Cond> = match forall {
        Cond::And(items) => items.iter().collect(),
        other => vec![other],
    };
    let named = |values: &[&Value]| -> Vec<usize> {
        values
            .iter()
            .filter_map(|v| match v {
                Value::Tool(name) => set.schema.tool_index(name),
                _ => None,
            })
            .collect()
    };
    for conjunct in conjuncts {
        match conjunct {
            Cond::Compare {
                path: Path::ToolName,
                op: CmpOp::Eq,
                value,
            } => return named(&[value]),
            Cond::In {
                path: Path::ToolName,
                values,
            } => return named(&values.iter().collect::<Vec<_>>()),
            _ => {}
        }
    }
    all
}

/// Proves or refutes one property.
pub fn prove(
    set: &PolicySet,
    evaluator: &Evaluator,
    forall: &Cond,
    claim: Claim,
    timeout_ms: u32,
) -> Verdict {
    let encoding = match Encoding::new(set) {
        Ok(encoding) => encoding,
        Err(e) => {
            return Verdict::Internal(format!(
                "rule `{}` cannot be encoded: {}",
                e.rule, e.message
            ))
        }
    };
    let tools = tools_of(set, forall);
    let condition = match encoding.encode_condition(forall, &tools) {
        Ok(condition) => condition,
        Err(message) => return Verdict::Internal(format!("`forall` cannot be encoded: {message}")),
    };
    let decision = encoding.decision();
    let term = |outcome: Outcome| match outcome {
        Outcome::Allow => decision.allow.clone(),
        Outcome::Deny => decision.deny.clone(),
        Outcome::RequireApproval => decision.require_approval.clone(),
    };
    let broken = match claim {
        Claim::Never(outcome) => term(outcome),
        Claim::Always(outcome) => term(outcome).not(),
    };
    // Only the rules that can decide these tools: their regexes are all the solver needs.
    let rules: Vec<usize> = (0..set.rules.len())
        .filter(|&r| set.rules[r].tools.iter().any(|t| tools.contains(t)))
        .collect();
    let solver = encoding.solver_for(&rules, Some(&tools));
    let condition_tests = encoding.load_condition_definitions(&solver, &condition);
    let started = Instant::now();
    solver.assert(&condition.term);
    solver.assert(&broken);
    let first_try_ms = (timeout_ms / 4).min(FIRST_TRY_MS);
    let mut params = Params::new();
    params.set_u32("timeout", first_try_ms.max(1));
    solver.set_params(&params);
    let model = match solver.check() {
        SatResult::Unsat => return Verdict::Proven,
        SatResult::Sat => solver.get_model(),
        SatResult::Unknown => {
            // Z3 4.8.12's string solver gives up on some combinations of text tests on one
            // field in any time: decide them with strings chosen outside Z3 (`realize.rs`),
            // worth setting up only now (every rule on the tools takes part).
            let mut memberships = condition_tests.clone();
            memberships.extend(encoding.memberships_of(&rules));
            let mut facts = crate::languages::lemmas(&memberships);
            facts.extend([condition.term.clone(), broken]);
            let build = |with_memberships: bool| {
                if with_memberships {
                    let solver = encoding.solver_for(&rules, Some(&tools));
                    load_tests(&solver, &condition_tests);
                    solver
                } else {
                    encoding.domain_solver(Some(&tools))
                }
            };
            let deadline = started + Duration::from_millis(timeout_ms.into());
            match realize::decide(
                &build,
                &facts,
                &memberships,
                &|subject| encoding.literals_of(subject),
                deadline,
            ) {
                Realized::Sat(model) => Some(model),
                Realized::Unsat => return Verdict::Proven,
                Realized::Unknown(why) => {
                    let reason = solver
                        .get_reason_unknown()
                        .unwrap_or_else(|| "unknown".to_owned());
                    return Verdict::Unknown(realize::unknown_reason(reason, &why));
                }
            }
        }
    };
    let Some(model) = model else {
        return Verdict::Unknown("no model".to_owned());
    };
    let json = encoding.request_from_model(&model);
    replay(evaluator, forall, claim, json)
}

/// The evaluator must agree that the counterexample satisfies `forall` and breaks the claim.
fn replay(evaluator: &Evaluator, forall: &Cond, claim: Claim, json: Json) -> Verdict {
    let request = match evaluator.decode(&json) {
        Ok(request) => request,
        Err(e) => {
            return Verdict::Internal(format!(
                "the counterexample does not fit the schema: {e}: {json}"
            ))
        }
    };
    if !evaluator.condition_holds(forall, &request) {
        return Verdict::Internal(format!(
            "the evaluator says the counterexample does not satisfy `forall`: {json}"
        ));
    }
    let outcome = evaluator.decide(&request).outcome;
    let breaks = match claim {
        Claim::Never(forbidden) => outcome == forbidden,
        Claim::Always(wanted) => outcome != wanted,
    };
    if !breaks {
        return Verdict::Internal(format!(
            "the evaluator decides the counterexample {} instead: {json}",
            outcome.as_str()
        ));
    }
    Verdict::Counterexample {
        request: json,
        decision: outcome,
    }
}
