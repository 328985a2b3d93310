//! Classes of changed decisions found with concrete requests, decided by both versions'
//! evaluators.
//!
//! The search is seeded with requests built around the rules that differ between the versions
//! (in their scope, satisfying their conditions, alone and together with each allow or
//! approval rule of the tool, with approvals and limit counters varied). From every class it
//! has (including those Z3 finds) it then walks to the neighbours: the same request moved into
//! the scope and the condition of one more allow or approval rule, keeping the class's own
//! deciding rules satisfied. A change that adds a rule usually changes the decision for many
//! combinations of the tool's other rules; walking finds most of them for the price of a few
//! evaluations each, and leaves Z3 to find the rest and to prove that there is none.

use crate::construct::{construct, place_in_scope, scoped_request};
use crate::witness::{compact, decide_own, decode_own, simplify};
use polctl_lang::display::rule_text;
use polctl_lang::eval::generate::{request_to_json, RequestGenerator};
use polctl_lang::eval::{DecisionJson, Evaluator, Outcome, Request};
use polctl_lang::ir::{Cond, Effect, PolicySet};
use serde_json::Value as Json;

/// Generated requests tried per changed rule in the seed.
const TRIED_PER_RULE: usize = 24;

/// Allow and approval rules paired with each changed rule, per version.
const MAX_PARTNERS: usize = 24;

/// Requests tried per (changed rule, partner) in the seed, and per (class, partner) walking.
const TRIED_PER_PAIR: usize = 4;
const TRIED_PER_STEP: usize = 2;

/// Requests the walk tries per tool at most.
const WALK_BUDGET: usize = 20_000;

/// One class of requests whose decision changes, with its witness.
pub struct Class {
    pub was: DecisionJson,
    pub is: DecisionJson,
    pub witness: Json,
}

/// What offering a witness found.
pub enum Offer {
    /// A class not found before (now the last of `found`).
    New,
    /// A class already found.
    Known,
    /// The decision does not change.
    Unchanged,
    /// A version cannot decode the witness.
    Invalid(String),
}

pub struct ClassSearch<'e> {
    old: &'e Evaluator,
    new: &'e Evaluator,
    old_tool: usize,
    new_tool: usize,
    pub found: Vec<Class>,
    /// Requests the walk has tried.
    walked: usize,
}

impl<'e> ClassSearch<'e> {
    pub fn new(
        old: &'e Evaluator,
        new: &'e Evaluator,
        old_tool: usize,
        new_tool: usize,
    ) -> ClassSearch<'e> {
        ClassSearch {
            old,
            new,
            old_tool,
            new_tool,
            found: Vec::new(),
            walked: 0,
        }
    }

    /// Decides `witness` with both versions and records its class if it is a new one, with the
    /// witness made plain.
    pub fn offer(&mut self, witness: &Json) -> Offer {
        let (was, is) = match (decide_own(self.old, witness), decide_own(self.new, witness)) {
            (Ok(was), Ok(is)) => (was, is),
            (Err(e), _) | (_, Err(e)) => return Offer::Invalid(e.to_string()),
        };
        let changed = was.decision != is.decision
            || (was.decision == Outcome::RequireApproval && was.approvers != is.approvers);
        if !changed {
            return Offer::Unchanged;
        }
        let known = self.found.iter().any(|c| {
            c.was.decision == was.decision
                && c.is.decision == is.decision
                && c.was.rules == was.rules
                && c.is.rules == is.rules
        });
        if known {
            return Offer::Known;
        }
        let witness = plain_witness(self.old, self.new, witness, &was, &is);
        self.found.push(Class { was, is, witness });
        Offer::New
    }

    /// The tool's index in a version.
    fn tool_in(&self, set: &PolicySet) -> usize {
        if std::ptr::eq(set, self.old.set()) {
            self.old_tool
        } else {
            self.new_tool
        }
    }

    /// Rules of a version that name the tool and can make a request allowed or pending: a
    /// change is most often found where one of them meets a rule that differs.
    fn partners(&self, set: &PolicySet) -> Vec<usize> {
        let tool = self.tool_in(set);
        set.rules_naming(tool)
            .filter(|&r| {
                matches!(
                    set.rules[r].effect,
                    Effect::Allow { .. } | Effect::RequireApproval { .. }
                )
            })
            .take(MAX_PARTNERS)
            .collect()
    }

    /// Rules of `set` naming the tool whose text (or scope) the other version does not have.
    fn differing(&self, set: &PolicySet, other: &PolicySet) -> Vec<usize> {
        let tool = self.tool_in(set);
        set.rules_naming(tool)
            .filter(|&r| {
                let text = rule_text(set, &set.rules[r]);
                !other
                    .rules
                    .iter()
                    .any(|o| o.id == set.rules[r].id && rule_text(other, o) == text)
            })
            .collect()
    }

    /// Requests built from scratch around each differing rule, alone and with each partner.
    pub fn seed(&mut self) {
        let (old, new) = (self.old, self.new);
        for (evaluator, other) in [(old, new), (new, old)] {
            let set = evaluator.set();
            let tool = self.tool_in(set);
            let mut generator = RequestGenerator::new(set, 0xd1ff);
            let mut pairs: Vec<(usize, Option<(&PolicySet, usize)>)> = Vec::new();
            for rule in self.differing(set, other.set()) {
                pairs.push((rule, None));
                for of in [set, other.set()] {
                    for partner in self.partners(of) {
                        pairs.push((rule, Some((of, partner))));
                    }
                }
            }
            for (rule, partner) in pairs {
                let mut when: Vec<&Cond> = set.rules[rule].when.iter().collect();
                if let Some((partner_set, partner)) = partner {
                    when.extend(partner_set.rules[partner].when.iter());
                }
                let attempts = if partner.is_some() {
                    TRIED_PER_PAIR
                } else {
                    TRIED_PER_RULE
                };
                for attempt in 0..attempts {
                    let mut request = scoped_request(set, &mut generator, rule, attempt);
                    request.tool = tool;
                    if request.args.len() != set.schema.tools[tool].args.len() {
                        continue;
                    }
                    if let Some((partner_set, partner)) = partner {
                        // In the partner's scope too (the schemas' agent attributes are equal).
                        place_in_scope(partner_set, &mut request, partner, attempt);
                    }
                    if attempt % 4 != 3 {
                        request = construct(set, &request, &when, attempt);
                    }
                    if attempt % 2 == 1 {
                        request.approvals.iter_mut().for_each(|a| *a = true);
                    }
                    let mut witness = request_to_json(set, &request);
                    if let Effect::Limit(limit) = &set.rules[rule].effect {
                        if attempt % 3 != 0 {
                            let count = limit.max.saturating_sub(u64::from(attempt % 3 == 2));
                            witness["counters"][set.rules[rule].id.as_str()] =
                                serde_json::json!(count);
                        }
                    }
                    compact(&mut witness);
                    self.offer(&witness);
                }
            }
        }
        self.walk(0);
    }

    /// Walks from the classes found from index `start` on (and from those the walk finds) to
    /// their neighbours, within [`WALK_BUDGET`] requests per tool.
    pub fn walk(&mut self, start: usize) {
        let (old, new) = (self.old, self.new);
        let mut next = start;
        while next < self.found.len() && self.walked < WALK_BUDGET {
            let class = next;
            next += 1;
            for evaluator in [old, new] {
                let set = evaluator.set();
                let Ok(base) = decode_own(evaluator, &self.found[class].witness) else {
                    continue;
                };
                // The class's own deciding rules stay satisfied.
                let deciding = |version: &PolicySet, ids: &[String]| -> Vec<usize> {
                    ids.iter()
                        .filter_map(|id| version.rules.iter().position(|r| &r.id == id))
                        .collect()
                };
                let keep: Vec<(&PolicySet, usize)> = [
                    (old.set(), &self.found[class].was.rules),
                    (new.set(), &self.found[class].is.rules),
                ]
                .into_iter()
                .flat_map(|(version, ids)| {
                    deciding(version, ids)
                        .into_iter()
                        .map(move |r| (version, r))
                })
                .collect();
                for partner in self.partners(set) {
                    let id = &set.rules[partner].id;
                    if self.found[class].was.rules.contains(id)
                        || self.found[class].is.rules.contains(id)
                    {
                        continue;
                    }
                    let mut when: Vec<&Cond> = set.rules[partner].when.iter().collect();
                    for (version, rule) in &keep {
                        when.extend(version.rules[*rule].when.iter());
                    }
                    for attempt in 0..TRIED_PER_STEP {
                        self.walked += 1;
                        let request = step(set, &base, partner, &when, attempt);
                        let mut witness = request_to_json(set, &request);
                        compact(&mut witness);
                        self.offer(&witness);
                    }
                }
            }
        }
    }
}

/// The base request moved into `partner`'s scope and made to satisfy `when`.
fn step(
    set: &PolicySet,
    base: &Request,
    partner: usize,
    when: &[&Cond],
    attempt: usize,
) -> Request {
    let mut request = base.clone();
    place_in_scope(set, &mut request, partner, attempt);
    let mut request = construct(set, &request, when, attempt);
    if attempt % 2 == 1 {
        request.approvals.iter_mut().for_each(|a| *a = true);
    }
    request
}

/// A witness with its fields made plain while both versions still decide it the same way
/// (same decisions, same deciding rules). Kept as it is when it needs counters of a limit that
/// only the old version has (the new schema's request cannot carry them).
fn plain_witness(
    old: &Evaluator,
    new: &Evaluator,
    witness: &Json,
    was: &DecisionJson,
    is: &DecisionJson,
) -> Json {
    let set = new.set();
    let as_json = |request: &Request| {
        let mut json = request_to_json(set, request);
        compact(&mut json);
        json
    };
    let same = |json: &Json| {
        let decided = |e: &Evaluator| decide_own(e, json).ok();
        decided(old).is_some_and(|d| d.decision == was.decision && d.rules == was.rules)
            && decided(new).is_some_and(|d| d.decision == is.decision && d.rules == is.rules)
    };
    let Ok(request) = new.decode(witness) else {
        return witness.clone();
    };
    if !same(&as_json(&request)) {
        return witness.clone();
    }
    as_json(&simplify(set, &request, |r| same(&as_json(r))))
}
