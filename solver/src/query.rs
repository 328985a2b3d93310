//! One analysis question as data: a conjunction of literals over the rules' match terms.
//!
//! Keeping a query as data (rather than as Z3 terms straight away) lets the analysis ask it two
//! ways: first of concrete candidate requests through the reference evaluator (cheap, and
//! enough to answer most "can these meet?" questions with a witness), and only then of Z3,
//! which is needed for every proof of absence.

use crate::encode::{all, any, Encoding};
use polctl_lang::eval::{Request, RuleState};
use z3::ast::Bool;

/// A literal of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lit {
    /// The rule matches (scope, tool, `when`, not `unless`).
    Matches(usize),
    /// The rule does not match.
    NotMatches(usize),
    /// None of these rules match.
    NoneMatch(Vec<usize>),
    /// At least one of these rules matches.
    SomeMatch(Vec<usize>),
    /// The rule's policy applies and the tool is one of its actions.
    Reaches(usize),
    /// The rule's condition does not hold.
    ConditionFails(usize),
    /// Every approver group has approved.
    AllApproved,
}

/// A conjunction of literals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub lits: Vec<Lit>,
}

impl Query {
    pub fn new(lits: Vec<Lit>) -> Query {
        Query { lits }
    }

    /// Every rule the query mentions (their regexes must be loaded into the solver).
    pub fn rules(&self) -> Vec<usize> {
        let mut rules: Vec<usize> = self
            .lits
            .iter()
            .flat_map(|lit| match lit {
                Lit::Matches(r) | Lit::NotMatches(r) | Lit::Reaches(r) | Lit::ConditionFails(r) => {
                    vec![*r]
                }
                Lit::NoneMatch(rs) | Lit::SomeMatch(rs) => rs.clone(),
                Lit::AllApproved => Vec::new(),
            })
            .collect();
        rules.sort_unstable();
        rules.dedup();
        rules
    }

    /// Rules a witness must match: the places to look for candidate requests.
    pub fn positive_rules(&self) -> Vec<usize> {
        let mut rules = Vec::new();
        for lit in &self.lits {
            match lit {
                Lit::Matches(r) | Lit::Reaches(r) => rules.push(*r),
                Lit::SomeMatch(rs) => rules.extend(rs.iter().copied()),
                _ => {}
            }
        }
        rules
    }

    pub fn wants_all_approved(&self) -> bool {
        self.lits.contains(&Lit::AllApproved)
    }

    /// The query as Z3 constraints over an encoding.
    pub fn constraints(&self, encoding: &Encoding, all_approved: &Bool) -> Vec<Bool> {
        let matches = |r: &usize| encoding.matches[*r].clone();
        self.lits
            .iter()
            .map(|lit| match lit {
                Lit::Matches(r) => matches(r),
                Lit::NotMatches(r) => matches(r).not(),
                Lit::NoneMatch(rs) => any(rs.iter().map(matches).collect()).not(),
                Lit::SomeMatch(rs) => any(rs.iter().map(matches).collect()),
                Lit::Reaches(r) => encoding.reach[*r].clone(),
                Lit::ConditionFails(r) => encoding.condition[*r].not(),
                Lit::AllApproved => all_approved.clone(),
            })
            .collect()
    }

    /// Whether a concrete request satisfies the query, from the evaluator's rule states:
    /// `None` when that cannot be told (a rule missing from `states` does not match, but its
    /// reach and condition are not known).
    pub fn check(&self, request: &Request, states: &[RuleState]) -> Option<bool> {
        let state = |r: usize| states.iter().find(|s| s.rule == r);
        let matches = |r: &usize| state(*r).is_some_and(|s| s.in_scope && s.condition);
        let mut known = true;
        let mut holds = true;
        for lit in &self.lits {
            let value = match lit {
                Lit::Matches(r) => Some(matches(r)),
                Lit::NotMatches(r) => Some(!matches(r)),
                Lit::NoneMatch(rs) => Some(!rs.iter().any(matches)),
                Lit::SomeMatch(rs) => Some(rs.iter().any(matches)),
                Lit::Reaches(r) => state(*r).map(|s| s.in_scope),
                Lit::ConditionFails(r) => state(*r).map(|s| !s.condition),
                Lit::AllApproved => Some(request.approvals.iter().all(|a| *a)),
            };
            match value {
                Some(false) => return Some(false),
                Some(true) => {}
                None => known = false,
            }
            holds &= value.unwrap_or(true);
        }
        known.then_some(holds)
    }

    /// The request certainly satisfies the query.
    pub fn holds(&self, request: &Request, states: &[RuleState]) -> bool {
        self.check(request, states) == Some(true)
    }
}

/// The conjunction of every approval flag.
pub fn all_approved(encoding: &Encoding) -> Bool {
    all(encoding.approvals.clone())
}
