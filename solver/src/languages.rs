//! Facts about the regex languages that tests on one field use: which pairs are disjoint, as
//! lemmas over the membership Booleans.
//!
//! Z3 4.8.12 cannot refute two memberships of one string in languages that do not meet
//! (`^export-[0-9]+$` and `ends with "@globex.example"`) when they are separate assertions,
//! whatever the time limit, but decides the same question at once when it is asked as one
//! membership in their intersection. Asking it that way per pair, and handing the answers to
//! the solver as clauses, lets a query that combines such tests be decided.
//!
//! Most pairs are settled without Z3: two text tests exclude each other only when both are
//! `starts with` (or both `ends with`) and neither text extends the other, and a regex meets
//! a test when one of its samples passes it. Z3 is slow to show that two such languages do
//! meet, so it is asked only what is left.

use crate::encode::{LanguageTest, TextTest};
use polctl_lang::eval::generate::Rng;
use polctl_lang::eval::sample_matching;
use polctl_lang::ir::TextOp;
use z3::ast::Bool;
use z3::{Params, SatResult, Solver};

/// Time for one emptiness question.
const PAIR_MS: u32 = 200;

/// Samples of a regex tried against the other test.
const SAMPLES: usize = 8;

/// Whether `language` (an SMT-LIB regex term) has no word; `None` when Z3 gives up.
fn empty(language: &str) -> Option<bool> {
    let solver = Solver::new();
    let mut params = Params::new();
    params.set_u32("timeout", PAIR_MS);
    solver.set_params(&params);
    solver.from_string(format!(
        "(declare-const word String)(assert (str.in_re word {language}))"
    ));
    match solver.check() {
        SatResult::Unsat => Some(true),
        SatResult::Sat => Some(false),
        SatResult::Unknown => None,
    }
}

/// Two text tests that no string passes together.
fn texts_disjoint(a: (&TextOp, &[String]), b: (&TextOp, &[String])) -> bool {
    let apart = |fits: fn(&str, &str) -> bool| {
        a.1.iter()
            .all(|x| b.1.iter().all(|y| !fits(x, y) && !fits(y, x)))
    };
    match (a.0, b.0) {
        (TextOp::StartsWith, TextOp::StartsWith) => apart(|x, y| x.starts_with(y)),
        (TextOp::EndsWith, TextOp::EndsWith) => apart(|x, y| x.ends_with(y)),
        // Any other pair is met by a concatenation of the texts.
        _ => false,
    }
}

/// A sample of one side's regex passes the other side's test.
fn share_a_sample(a: &LanguageTest, b: &LanguageTest) -> bool {
    let passes = |test: &TextTest, value: &str| match test {
        TextTest::Text(..) => test.holds(value) == Some(true),
        TextTest::Regex(pattern) => {
            regex::Regex::new(&polctl_lang::check::executable_regex(pattern))
                .is_ok_and(|r| r.is_match(value))
        }
    };
    [(a, b), (b, a)].into_iter().any(|(from, to)| {
        let TextTest::Regex(pattern) = &from.test else {
            return false;
        };
        let mut rng = Rng::new(7);
        (0..SAMPLES).any(|_| {
            sample_matching(pattern, &mut rng).is_some_and(|sample| passes(&to.test, &sample))
        })
    })
}

fn disjoint(a: &LanguageTest, b: &LanguageTest) -> bool {
    if let (TextTest::Text(op_a, texts_a), TextTest::Text(op_b, texts_b)) = (&a.test, &b.test) {
        return texts_disjoint((op_a, texts_a), (op_b, texts_b));
    }
    !share_a_sample(a, b)
        && empty(&format!("(re.inter {} {})", a.language, b.language)) == Some(true)
}

/// `¬(a ∧ b)` for every pair of memberships on the same subject whose languages are disjoint.
pub(crate) fn lemmas(memberships: &[LanguageTest]) -> Vec<Bool> {
    let mut lemmas = Vec::new();
    for (i, a) in memberships.iter().enumerate() {
        for b in &memberships[i + 1..] {
            if a.subject == b.subject && a.language != b.language && disjoint(a, b) {
                lemmas.push(Bool::and(&[a.member.clone(), b.member.clone()]).not());
            }
        }
    }
    lemmas
}
