//! Candidate witnesses: concrete requests tried through the evaluator before a query goes to
//! Z3.
//!
//! Every live rule has a witness (a request it matches). Most questions about two rules ("do
//! they meet?", "does this one cover that one?") are answered by one rule's witness, or by
//! that witness with the fields the other rule reads copied over from the other's witness:
//! rules usually constrain different fields. A candidate is only ever used when the evaluator
//! confirms it satisfies the query, so this search can answer "yes, here is a request" but
//! never "no"; proofs of absence always come from the solver.

use crate::construct::construct;
use crate::query::Query;
use polctl_lang::eval::{Evaluator, Request};
use polctl_lang::ir::{Cond, Path, PolicySet, Scope, ScopeTerm};

/// The most candidates tried for one query.
const MAX_CANDIDATES: usize = 48;

/// Constructions tried per pair of rules (they differ in the `or` branches taken).
const CONSTRUCTED_VARIANTS: usize = 2;

/// Per rule, the request fields its scope and conditions read.
pub struct FieldsRead {
    per_rule: Vec<Vec<Path>>,
}

impl FieldsRead {
    pub fn new(set: &PolicySet) -> FieldsRead {
        let per_rule = set
            .rules
            .iter()
            .map(|rule| {
                let mut paths: Vec<Path> = Vec::new();
                let mut add = |path: &Path| {
                    if !paths.contains(path) {
                        paths.push(path.clone());
                    }
                };
                if let Some(Scope::Any(terms)) = set.policies.get(rule.policy).map(|p| &p.scope) {
                    for term in terms.iter().flat_map(ScopeTerm::parts) {
                        let attribute = match term {
                            ScopeTerm::Tenant(_) => "tenant",
                            ScopeTerm::Agent(_) => "id",
                            ScopeTerm::Role(_) => "role",
                            ScopeTerm::Both(_) => continue,
                        };
                        add(&Path::Agent(attribute.to_owned()));
                    }
                }
                for cond in rule.when.iter().chain(rule.unless.iter()) {
                    cond.for_each_leaf(&mut |path, _| add(path));
                }
                paths
            })
            .collect();
        FieldsRead { per_rule }
    }

    pub fn of(&self, rule: usize) -> &[Path] {
        self.per_rule.get(rule).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// `base` with the fields in `paths` taken from `donor`. Arguments are copied by name when
/// both tools declare them with values of the same shape.
pub fn overlay(set: &PolicySet, base: &Request, paths: &[Path], donor: &Request) -> Request {
    let schema = &set.schema;
    let mut merged = base.clone();
    for path in paths {
        match path {
            Path::Agent(name) => {
                if let Some(i) = schema.agent.iter().position(|a| &a.name == name) {
                    merged.agent[i] = donor.agent[i].clone();
                }
            }
            Path::Context(name) => {
                if let Some(i) = schema.context.iter().position(|a| &a.name == name) {
                    merged.context[i] = donor.context[i].clone();
                }
            }
            Path::Arg(name) => {
                let position = |request: &Request| {
                    schema
                        .tools
                        .get(request.tool)
                        .and_then(|t| t.args.iter().position(|a| &a.name == name))
                };
                let (Some(to), Some(from)) = (position(base), position(donor)) else {
                    continue;
                };
                let (into, out_of) = (
                    &schema.tools[base.tool].args[to],
                    &schema.tools[donor.tool].args[from],
                );
                let fits = into.ty == out_of.ty && (into.optional || donor.args[from].is_some());
                if fits {
                    merged.args[to] = donor.args[from].clone();
                }
            }
            Path::Session => merged.session = donor.session.clone(),
            Path::Element | Path::ToolName | Path::ToolKind => {}
        }
    }
    merged
}

/// Tries candidate requests built from the witnesses of the query's positive rules; returns
/// the first the evaluator confirms.
pub fn search(
    evaluator: &Evaluator,
    fields: &FieldsRead,
    witnesses: &[Vec<Request>],
    query: &Query,
) -> Option<Request> {
    let set = evaluator.set();
    let positive = query.positive_rules();
    let seeds = |r: usize| witnesses.get(r).map(Vec::as_slice).unwrap_or(&[]);
    let mut candidates: Vec<Request> = Vec::new();
    let subject = positive.first().copied();
    for &rule in &positive {
        if candidates.len() >= MAX_CANDIDATES {
            break;
        }
        candidates.extend(seeds(rule).iter().cloned());
        let Some(subject) = subject.filter(|&s| s != rule) else {
            continue;
        };
        if let (Some(base), Some(own)) = (seeds(subject).first(), seeds(rule).first()) {
            let merged = overlay(set, base, fields.of(rule), own);
            // Both rules' conditions on the fields they share, built together.
            let conds: Vec<&Cond> = [&set.rules[subject].when, &set.rules[rule].when]
                .into_iter()
                .flatten()
                .collect();
            for variant in 0..CONSTRUCTED_VARIANTS {
                candidates.push(construct(set, &merged, &conds, variant));
            }
            candidates.push(merged);
            candidates.push(overlay(set, own, fields.of(subject), base));
        }
    }
    let all_approved = query.wants_all_approved();
    candidates.into_iter().find_map(|mut candidate| {
        if all_approved {
            candidate.approvals.iter_mut().for_each(|a| *a = true);
        }
        let states = evaluator.rule_states(&candidate);
        query.holds(&candidate, &states).then_some(candidate)
    })
}
