//! The findings of `polctl check` (language.md §4), each a named query over the encoding.
//!
//! The analysis runs in three stages, each fanned out over the rayon workers (one Z3 context
//! and encoding per worker, see `pool.rs`):
//!
//! 1. a witness for every rule (generated requests first, then the solver): rules without one
//!    are `dead_rule`s;
//! 2. `shadowed` / `layer_violation` for every allow and approval rule;
//! 3. per rule: `conflict`, `approval_dead_end`, the limit kinds, `redundant` and `vacuous`.
//!
//! Queries only pair rules that can meet: they share a tool and their scopes are compatible.
//! Each query is first tried on concrete candidate requests through the evaluator
//! (`candidates.rs`) and goes to a fresh Z3 solver, loaded with only the involved rules'
//! regexes, when that finds nothing. Every witness is replayed through the reference
//! evaluator before it is reported; a witness the evaluator disagrees with is an
//! [`AnalysisError`], never a finding.

mod context;
mod kinds;

use crate::candidates::FieldsRead;
use crate::construct::{construct, scoped_request};
use crate::encode::{EncodeError, Encoding};
use crate::pool::run_jobs;
use context::{Shared, Worker};
use polctl_lang::diagnostic::Diagnostic;
use polctl_lang::eval::generate::RequestGenerator;
use polctl_lang::eval::{Evaluator, Request, RuleState};
use polctl_lang::ir::{Cond, Effect, PolicySet};
use std::sync::atomic::Ordering;

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

/// What the analysis found, with counts for the summary and the benchmarks.
pub struct Analysis {
    pub findings: Vec<Diagnostic>,
    /// Queries asked, however answered.
    pub queries: usize,
    /// Queries that went to Z3 (the rest were answered by a concrete candidate).
    pub solver_queries: usize,
    /// Total time spent inside Z3, summed over workers.
    pub solver_seconds: f64,
    /// Z3 queries that ran to their time limit (or that Z3 gave up on for another reason);
    /// some are then decided with strings chosen outside Z3.
    pub solver_gave_up: usize,
    /// Of those, the queries left undecided (each behind an `unknown` finding).
    pub undecided: usize,
}

/// Where the analysis is, for a progress bar: `(stage, done, total)`.
pub type ProgressFn<'a> = &'a (dyn Fn(&str, usize, usize) + Sync);

/// Generated requests per tool tried as witnesses before asking the solver.
const GENERATED_PER_TOOL: usize = 64;

/// Targeted requests tried per rule that random ones missed.
const GENERATED_PER_RULE: usize = 24;

/// Generated witnesses kept per rule: different requests answer different queries.
const WITNESSES_PER_RULE: usize = 4;

/// Runs every analysis over a compiled set.
pub fn analyze(
    set: &PolicySet,
    evaluator: &Evaluator,
    options: Options,
) -> Result<Analysis, AnalysisError> {
    analyze_with_progress(set, evaluator, options, &|_, _, _| {})
}

/// [`analyze`], reporting progress as jobs finish.
pub fn analyze_with_progress(
    set: &PolicySet,
    evaluator: &Evaluator,
    options: Options,
    progress: ProgressFn,
) -> Result<Analysis, AnalysisError> {
    let mut shared = Shared::new(set, evaluator, options, FieldsRead::new(set));
    let mut findings = Vec::new();

    // Stage 1: a witness for every rule.
    shared.witnesses = generated_witnesses(set, evaluator);
    let missing: Vec<usize> = (0..set.rules.len())
        .filter(|&r| shared.witnesses[r].is_empty())
        .collect();
    let found = run_stage(&shared, &missing, "witnesses", progress, |worker, &rule| {
        worker.dead_rule(rule)
    })?;
    for (&rule, (witness, diagnostics)) in missing.iter().zip(found) {
        shared.witnesses[rule].extend(witness);
        findings.extend(diagnostics);
    }

    // Stage 2: allow and approval rules every request of which is denied.
    let subjects: Vec<usize> = (0..set.rules.len())
        .filter(|&r| {
            shared.alive(r)
                && matches!(
                    set.rules[r].effect,
                    Effect::Allow { .. } | Effect::RequireApproval { .. }
                )
        })
        .collect();
    let shadowed = run_stage(
        &shared,
        &subjects,
        "shadowing",
        progress,
        |worker, &rule| worker.shadowed(rule),
    )?;
    for (&rule, diagnostics) in subjects.iter().zip(shadowed) {
        if !diagnostics.is_empty() {
            shared.shadowed[rule] = true;
        }
        findings.extend(diagnostics);
    }

    // Stage 3: everything else, per rule.
    let live: Vec<usize> = (0..set.rules.len()).filter(|&r| shared.alive(r)).collect();
    let per_rule = run_stage(&shared, &live, "pairs", progress, |worker, &rule| {
        worker.rule_findings(rule)
    })?;
    findings.extend(per_rule.into_iter().flatten());

    findings.sort_by(|a, b| (a.sort_key(), &a.message).cmp(&(b.sort_key(), &b.message)));
    Ok(Analysis {
        findings,
        queries: shared.queries.load(Ordering::Relaxed),
        solver_queries: shared.solver_queries.load(Ordering::Relaxed),
        solver_seconds: shared.solver_micros.load(Ordering::Relaxed) as f64 / 1e6,
        solver_gave_up: shared.solver_gave_up.load(Ordering::Relaxed),
        undecided: shared.undecided.load(Ordering::Relaxed),
    })
}

/// One stage: `work` on every job, on every rayon worker with that worker's own encoding.
fn run_stage<J: Sync, R: Send>(
    shared: &Shared,
    jobs: &[J],
    name: &str,
    progress: ProgressFn,
    work: impl Fn(&Worker, &J) -> Result<R, AnalysisError> + Sync,
) -> Result<Vec<R>, AnalysisError> {
    run_jobs(
        jobs,
        || {
            Encoding::new(shared.set)
                .map(|encoding| Worker::new(shared, encoding))
                .map_err(AnalysisError::Encode)
        },
        work,
        &|done, total| progress(name, done, total),
    )
}

/// Witnesses from generated requests: the first few generated requests each rule matches.
/// Random requests first; then, for each rule still without one, requests for its tools with
/// the agent placed in its policy's scope (a tenant's rules are rarely hit by chance).
fn generated_witnesses(set: &PolicySet, evaluator: &Evaluator) -> Vec<Vec<Request>> {
    let mut witnesses: Vec<Vec<Request>> = vec![Vec::new(); set.rules.len()];
    let mut generator = RequestGenerator::new(set, 0x5eed);
    let record = |mut request: Request, witnesses: &mut Vec<Vec<Request>>| {
        // Queries never read counters; approvals are set where a query needs them.
        request.counters.clear();
        request.approvals.iter_mut().for_each(|a| *a = false);
        for RuleState {
            rule,
            in_scope,
            condition,
        } in evaluator.rule_states(&request)
        {
            if in_scope && condition && witnesses[rule].len() < WITNESSES_PER_RULE {
                witnesses[rule].push(request.clone());
            }
        }
    };
    for _ in 0..GENERATED_PER_TOOL * set.schema.tools.len() {
        let request = generator.next_request();
        record(request, &mut witnesses);
    }
    for rule in 0..set.rules.len() {
        let rule_ir = &set.rules[rule];
        let mut scoped_request =
            |attempt: usize| scoped_request(set, &mut generator, rule, attempt);
        if rule_ir.tools.is_empty() {
            continue;
        }
        for attempt in 0..GENERATED_PER_RULE {
            if !witnesses[rule].is_empty() {
                break;
            }
            record(scoped_request(attempt), &mut witnesses);
        }
        // Then requests built from the rule's condition.
        let when: Vec<&Cond> = rule_ir.when.iter().collect();
        for variant in 0..GENERATED_PER_RULE {
            if !witnesses[rule].is_empty() {
                break;
            }
            let request = construct(set, &scoped_request(variant), &when, variant);
            record(request, &mut witnesses);
        }
    }
    witnesses
}
