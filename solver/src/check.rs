//! Deciding one conjunction of literals against a theory, for the lazy enumerations (the
//! semantic diff's): quickly with an unsat core when Z3 can, slowly without one when it must.
//!
//! Z3 4.8.12 decides a check with assumptions in its incremental kernel, which skips the
//! preprocessing (solving equations, propagating values) that a fresh solver's first check
//! gets. On the diff's string-heavy theories that difference is 10 ms against a time-out. So
//! a conjunction is first tried briefly as assumptions on one long-lived solver (which names
//! the literals it needed when it is unsatisfiable), and otherwise asserted into fresh solvers.
//!
//! Z3's string solver is also heavy-tailed: the same question can take 50 ms with one random
//! seed and time out with another. So the fresh attempts get 1/7, 2/7 and 4/7 of what is left
//! of the limit, each with its own seed.

use z3::ast::Bool;
use z3::{Model, Params, SatResult, Solver};

/// How long the first, incremental attempt may take.
const QUICK_MS: u32 = 250;

/// What a conjunction of literals is, against a theory.
pub enum Decided {
    /// Satisfiable: a model of the theory and the literals.
    Sat(Model),
    /// Unsatisfiable: literals that are already contradictory with the theory (all of them
    /// when the fresh solvers decided it).
    Unsat(Vec<Bool>),
    /// Z3 gave up, and why.
    Unknown(String),
}

fn limit(solver: &Solver, timeout_ms: u32, seed: u32) {
    let mut params = Params::new();
    params.set_u32("timeout", timeout_ms.max(1));
    params.set_u32("random_seed", seed);
    solver.set_params(&params);
}

/// Decides `literals` within `timeout_ms` in all: as assumptions on `incremental` (which holds
/// the theory), then asserted into solvers made by `fresh` (each holding the theory too).
///
/// A check that Z3 4.8.12 cancels can leave its incremental kernel in a state that crashes the
/// next check (seen as a segmentation fault inside `check_assumptions`), so after giving up
/// the incremental solver is replaced by a fresh one.
pub fn decide(
    incremental: &mut Solver,
    fresh: &dyn Fn() -> Solver,
    literals: &[Bool],
    timeout_ms: u32,
) -> Decided {
    let quick = QUICK_MS.min(timeout_ms / 4);
    limit(incremental, quick, 0);
    match incremental.check_assumptions(literals) {
        SatResult::Sat => {
            if let Some(model) = incremental.get_model() {
                return Decided::Sat(model);
            }
        }
        SatResult::Unsat => return Decided::Unsat(incremental.get_unsat_core()),
        SatResult::Unknown => *incremental = fresh(),
    }
    const SHARES: [u32; 3] = [1, 2, 4];
    let total: u32 = SHARES.iter().sum();
    let left = timeout_ms.saturating_sub(quick);
    let mut reason = "unknown".to_owned();
    for (seed, share) in SHARES.iter().enumerate() {
        let solver = fresh();
        for literal in literals {
            solver.assert(literal);
        }
        limit(&solver, left / total * share, seed as u32);
        match solver.check() {
            SatResult::Sat => {
                if let Some(model) = solver.get_model() {
                    return Decided::Sat(model);
                }
                return Decided::Unknown("no model".to_owned());
            }
            SatResult::Unsat => return Decided::Unsat(literals.to_vec()),
            SatResult::Unknown => {}
        }
        reason = solver.get_reason_unknown().unwrap_or(reason);
        // Out of time is worth another seed; anything else (an unsupported construct, say)
        // would give up again.
        if !(reason.contains("timeout") || reason.contains("canceled")) {
            break;
        }
    }
    Decided::Unknown(reason)
}
