//! Facts about the regex languages that tests on one field use: which pairs are disjoint and
//! which contain which, as lemmas over the membership Booleans.
//!
//! Z3 4.8.12 cannot refute two memberships of one string in languages that do not meet
//! (`^export-[0-9]+$` and `ends with "@globex.example"`) when they are separate assertions,
//! whatever the time limit, but decides the same question at once when it is asked as one
//! membership in their intersection. Asking it that way per pair, and handing the answers to
//! the solver as clauses, lets a query that combines such tests be decided.
//!
//! Z3 is not asked at all when it can be helped: between text tests both questions are decided
//! from the texts (two `starts with` exclude each other when neither text extends the other;
//! `starts with "ab"` is inside `contains "b"`); a sample of one language that passes (or
//! fails) the other test shows that they meet (or that one is not inside the other); the rest
//! is decided exactly by walking the two languages' DFAs (the `regex` crate's, so with the
//! evaluator's semantics, case folding included) together. Z3's intersection and complement
//! are the fallback for a regex whose DFA is too big.

use crate::encode::{LanguageTest, TextTest};
use polctl_lang::eval::generate::Rng;
use polctl_lang::eval::sample_matching;
use polctl_lang::ir::TextOp;
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::util::{primitives::StateID, start};
use regex_automata::{Anchored, MatchKind};
use std::cell::OnceCell;
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

/// A sample of one side's language passes the other side's test.
fn share_a_sample(a: &Prepared, b: &Prepared) -> bool {
    [(a, b), (b, a)]
        .into_iter()
        .any(|(from, to)| from.samples.iter().any(|s| to.passes(s)))
}

/// Every string that passes text test `a` passes text test `b`.
fn text_inside(a: (&TextOp, &[String]), b: (&TextOp, &[String])) -> bool {
    let each = |fits: &dyn Fn(&str) -> bool| a.1.iter().all(|x| fits(x));
    match (a.0, b.0) {
        (TextOp::StartsWith, TextOp::StartsWith) => {
            each(&|x| b.1.iter().any(|y| x.starts_with(y.as_str())))
        }
        (TextOp::EndsWith, TextOp::EndsWith) => {
            each(&|x| b.1.iter().any(|y| x.ends_with(y.as_str())))
        }
        // A string that starts with, ends with or contains `x` contains what `x` contains.
        (_, TextOp::Contains) => each(&|x| b.1.iter().any(|y| x.contains(y.as_str()))),
        // Text can be added at either end of a string that passes `a`.
        _ => false,
    }
}

/// A membership with what the pair questions need of it, worked out once per membership
/// rather than once per pair: samples of its language, its compiled regex, its DFA (built on
/// first use: text tests against text tests never need one).
pub(crate) struct Prepared<'t> {
    pub test: &'t LanguageTest,
    /// Strings in its language, to refute cheaply that it is inside another.
    samples: Vec<String>,
    /// For a `matches` test, the evaluator's regex.
    regex: Option<regex::Regex>,
    dfa: OnceCell<Option<dense::DFA<Vec<u32>>>>,
}

impl<'t> Prepared<'t> {
    pub fn new(test: &'t LanguageTest) -> Prepared<'t> {
        let (samples, regex) = match &test.test {
            TextTest::Text(op, texts) => (
                texts
                    .iter()
                    .flat_map(|t| match op {
                        TextOp::StartsWith => vec![t.clone(), format!("{t}~")],
                        TextOp::EndsWith => vec![t.clone(), format!("~{t}")],
                        TextOp::Contains | TextOp::Matches => vec![t.clone(), format!("~{t}~")],
                    })
                    .collect(),
                None,
            ),
            TextTest::Regex(pattern) => {
                let mut rng = Rng::new(7);
                let samples = (0..SAMPLES)
                    .filter_map(|_| sample_matching(pattern, &mut rng))
                    .collect();
                let regex = regex::Regex::new(&polctl_lang::check::executable_regex(pattern)).ok();
                (samples, regex)
            }
        };
        Prepared {
            test,
            samples,
            regex,
            dfa: OnceCell::new(),
        }
    }

    /// Whether `value` passes the test (a regex by the evaluator's `regex` semantics).
    pub fn passes(&self, value: &str) -> bool {
        match &self.test.test {
            TextTest::Text(..) => self.test.test.holds(value) == Some(true),
            TextTest::Regex(_) => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    pub fn dfa(&self) -> Option<&dense::DFA<Vec<u32>>> {
        self.dfa.get_or_init(|| dfa(self.test)).as_ref()
    }
}

/// Every string in `a`'s language is in `b`'s.
fn inside(a: &Prepared, b: &Prepared) -> bool {
    if let (TextTest::Text(op_a, texts_a), TextTest::Text(op_b, texts_b)) =
        (&a.test.test, &b.test.test)
    {
        return text_inside((op_a, texts_a), (op_b, texts_b));
    }
    if !a.samples.iter().all(|s| b.passes(s)) {
        return false;
    }
    match (a.dfa(), b.dfa()) {
        (Some(da), Some(db)) => some_string(da, db, |x, y| x && !y) == Some(false),
        _ => {
            empty(&format!(
                "(re.inter {} (re.comp {}))",
                a.test.language, b.test.language
            )) == Some(true)
        }
    }
}

fn disjoint(a: &Prepared, b: &Prepared) -> bool {
    if let (TextTest::Text(op_a, texts_a), TextTest::Text(op_b, texts_b)) =
        (&a.test.test, &b.test.test)
    {
        return texts_disjoint((op_a, texts_a), (op_b, texts_b));
    }
    if share_a_sample(a, b) {
        return false;
    }
    match (a.dfa(), b.dfa()) {
        (Some(da), Some(db)) => some_string(da, db, |x, y| x && y) == Some(false),
        _ => {
            empty(&format!(
                "(re.inter {} {})",
                a.test.language, b.test.language
            )) == Some(true)
        }
    }
}

/// Bytes a DFA may take to build, and pairs of states [`some_string`] may visit.
const DFA_LIMIT: usize = 1 << 20;
const PAIRS_LIMIT: usize = 50_000;

/// A test's language as a DFA of the `regex` crate (the evaluator's engine), searching
/// anywhere in the string as `Regex::is_match` does. `None` when it cannot be built within
/// [`DFA_LIMIT`] (then Z3 is asked instead).
fn dfa(test: &LanguageTest) -> Option<dense::DFA<Vec<u32>>> {
    dfa_of(&match &test.test {
        TextTest::Regex(pattern) => polctl_lang::check::executable_regex(pattern),
        TextTest::Text(_, texts) if texts.is_empty() => return None,
        TextTest::Text(op, texts) => {
            let texts: Vec<String> = texts.iter().map(|t| regex_syntax::escape(t)).collect();
            let any = texts.join("|");
            match op {
                TextOp::StartsWith => format!("^(?:{any})"),
                TextOp::EndsWith => format!("(?:{any})$"),
                TextOp::Contains | TextOp::Matches => format!("(?:{any})"),
            }
        }
    })
}

/// A pattern of the `regex` crate as a DFA that searches anywhere in the string; `None` when
/// it cannot be built within [`DFA_LIMIT`].
pub(crate) fn dfa_of(pattern: &str) -> Option<dense::DFA<Vec<u32>>> {
    let config = dense::DFA::config()
        .match_kind(MatchKind::All)
        .start_kind(StartKind::Unanchored)
        .dfa_size_limit(Some(DFA_LIMIT))
        .determinize_size_limit(Some(DFA_LIMIT));
    dense::Builder::new().configure(config).build(pattern).ok()
}

/// Where a DFA is after some bytes: a match has been seen (the string passes whatever
/// follows), or a state.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum At {
    Matched,
    In(StateID),
}

pub(crate) fn at(dfa: &dense::DFA<Vec<u32>>, state: StateID) -> At {
    // A match state means a match ended before the last byte (matches are reported one byte
    // late), so the string passes.
    if dfa.is_match_state(state) {
        At::Matched
    } else {
        At::In(state)
    }
}

pub(crate) fn passes_here(dfa: &dense::DFA<Vec<u32>>, at: At) -> bool {
    match at {
        At::Matched => true,
        At::In(state) => dfa.is_match_state(dfa.next_eoi_state(state)),
    }
}

/// Whether some byte string ends with `wanted(passes a, passes b)`: a breadth-first walk of
/// the two DFAs together. `None` when more than [`PAIRS_LIMIT`] pairs of states are reached.
/// A string that is not UTF-8 can only make the answer `Some(true)`, which never adds a lemma,
/// so the lemmas hold for every string a request can carry.
fn some_string(
    a: &dense::DFA<Vec<u32>>,
    b: &dense::DFA<Vec<u32>>,
    wanted: fn(bool, bool) -> bool,
) -> Option<bool> {
    let unanchored = start::Config::new().anchored(Anchored::No);
    let start = (
        at(a, a.start_state(&unanchored).ok()?),
        at(b, b.start_state(&unanchored).ok()?),
    );
    let step = |dfa: &dense::DFA<Vec<u32>>, from: At, byte: u8| match from {
        At::Matched => At::Matched,
        At::In(state) => at(dfa, dfa.next_state(state, byte)),
    };
    let mut seen = std::collections::HashSet::from([start]);
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some((x, y)) = queue.pop_front() {
        if wanted(passes_here(a, x), passes_here(b, y)) {
            return Some(true);
        }
        for byte in 0..=u8::MAX {
            let next = (step(a, x, byte), step(b, y, byte));
            if seen.insert(next) {
                if seen.len() > PAIRS_LIMIT {
                    return None;
                }
                queue.push_back(next);
            }
        }
    }
    Some(false)
}

/// For every pair of memberships on the same subject: `¬(a ∧ b)` when their languages are
/// disjoint, `a ⇒ b` when `a`'s is inside `b`'s (a narrowed regex in one version of a rule
/// and the wider one in the other).
pub(crate) fn lemmas(memberships: &[LanguageTest]) -> Vec<Bool> {
    let prepared: Vec<Prepared> = memberships.iter().map(Prepared::new).collect();
    let mut lemmas = Vec::new();
    for (i, a) in prepared.iter().enumerate() {
        for b in &prepared[i + 1..] {
            let (x, y) = (a.test, b.test);
            if x.subject != y.subject || x.language == y.language {
                continue;
            }
            if disjoint(a, b) {
                lemmas.push(Bool::and(&[x.member.clone(), y.member.clone()]).not());
                continue;
            }
            if inside(a, b) {
                lemmas.push(x.member.implies(&y.member));
            }
            if inside(b, a) {
                lemmas.push(y.member.implies(&x.member));
            }
        }
    }
    lemmas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regex::{matching_language, text_language};

    fn regex(pattern: &str) -> LanguageTest {
        LanguageTest {
            member: Bool::new_const(format!("m {pattern}")),
            variable: z3::ast::String::new_const("s"),
            subject: "s".to_owned(),
            language: matching_language(pattern).expect("translatable"),
            test: TextTest::Regex(pattern.to_owned()),
        }
    }

    fn text(op: TextOp, texts: &[&str]) -> LanguageTest {
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        LanguageTest {
            member: Bool::new_const(format!("t {op:?} {texts:?}")),
            variable: z3::ast::String::new_const("s"),
            subject: "s".to_owned(),
            language: text_language(op, &texts),
            test: TextTest::Text(op, texts),
        }
    }

    fn disjoint(a: &LanguageTest, b: &LanguageTest) -> bool {
        super::disjoint(&Prepared::new(a), &Prepared::new(b))
    }

    fn inside(a: &LanguageTest, b: &LanguageTest) -> bool {
        super::inside(&Prepared::new(a), &Prepared::new(b))
    }

    #[test]
    fn an_anchored_regex_and_another_ending_do_not_meet() {
        let anchored = regex("^export-[0-9]+$");
        let ending = text(TextOp::EndsWith, &["@globex.example"]);
        assert!(disjoint(&anchored, &ending));
        assert!(!disjoint(&anchored, &text(TextOp::EndsWith, &["7"])));
        assert!(!disjoint(&regex("export-[0-9]+"), &ending));
    }

    #[test]
    fn a_narrowed_regex_is_inside_the_wider_one() {
        let narrow = regex("(?i)(insert|update|delete)");
        let wide = regex("(?i)(insert|update|delete|grant)");
        assert!(inside(&narrow, &wide));
        assert!(!inside(&wide, &narrow));
        assert!(inside(&text(TextOp::StartsWith, &["DELETE "]), &narrow));
        assert!(!inside(&text(TextOp::EndsWith, &["grant"]), &narrow));
    }

    #[test]
    fn text_tests_are_decided_from_their_texts() {
        let starts = |t: &str| text(TextOp::StartsWith, &[t]);
        assert!(disjoint(&starts("ab"), &starts("ac")));
        assert!(!disjoint(&starts("ab"), &starts("a")));
        assert!(inside(&starts("ab"), &starts("a")));
        assert!(inside(
            &starts("xaby"),
            &text(TextOp::Contains, &["ab", "zz"])
        ));
        assert!(!inside(&text(TextOp::Contains, &["ab"]), &starts("ab")));
        assert!(!disjoint(&starts("ab"), &text(TextOp::EndsWith, &["cd"])));
    }
}
