//! Deciding a query that Z3's string solver gives up on, by choosing its strings outside Z3.
//!
//! A string variable of the encoding appears only in regex memberships (every text test is
//! one) and in comparisons with literal texts (`==`, `in`, scopes). So once it is known which
//! memberships hold and which literal, if any, the variable equals, each variable can be
//! chosen on its own: a string that passes the memberships that hold, fails the others and is
//! none of the literals. That search is exact on the product of the languages' DFAs (the
//! `regex` crate's, so the evaluator's semantics) together with a UTF-8 automaton.
//!
//! The loop (a lazy, CEGAR-style refinement): Z3 solves the query with the membership
//! Booleans left free (no regex left, so it answers at once); for every variable the
//! memberships its model asks for are looked for in the DFAs. A combination no string has
//! comes back as a clause that holds for every string, and Z3 is asked again. When every
//! variable has a string, Z3 confirms the query with the strings fixed (a ground check) and
//! its model is the witness. An unsatisfiable abstraction is a proof: it is the query with
//! only facts about strings added.

use crate::encode::LanguageTest;
use crate::languages::{at, dfa_of, passes_here, At, Prepared};
use crate::strings::{literal, unescape};
use regex_automata::dfa::{dense, Automaton};
use regex_automata::util::start;
use regex_automata::Anchored;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;
use z3::ast::{Bool, String as Z3String};
use z3::{Model, Params, SatResult, Solver};

/// Refinement rounds before giving up.
const MAX_ROUNDS: usize = 64;

/// Product states one string search may visit.
const STATES_LIMIT: usize = 200_000;

/// Checks the whole query (`solver` holds it) with the chosen strings fixed.
fn confirm(solver: Solver, strings: &[(Z3String, String)], ms: u32) -> Option<Model> {
    for (variable, value) in strings {
        solver.assert(variable.eq(literal(value)));
    }
    let mut params = Params::new();
    params.set_u32("timeout", ms.max(1));
    solver.set_params(&params);
    (solver.check() == SatResult::Sat)
        .then(|| solver.get_model())
        .flatten()
}

/// Why a query ended undecided, from Z3's reason and the loop's: running out of time is
/// Z3's reason already, anything else is worth adding.
pub(crate) fn unknown_reason(z3_reason: String, why: &str) -> String {
    if why == "timeout" || why == "canceled" {
        z3_reason
    } else {
        format!("{z3_reason}; {why}")
    }
}

/// What the loop concluded.
pub(crate) enum Realized {
    /// A model of the whole query, strings included.
    Sat(Model),
    Unsat,
    Unknown(String),
}

/// One string variable of the query: its memberships and the literals it is compared with.
struct Variable<'t> {
    variable: Z3String,
    tests: Vec<Prepared<'t>>,
    literals: Vec<String>,
    /// Built on first use: a DFA of exactly the literals, to keep a chosen string off them.
    literal_dfa: Option<Option<dense::DFA<Vec<u32>>>>,
}

/// Decides the query `facts`. `solver(false)` is a solver for its domain without the regex
/// membership definitions (their Booleans free: the abstraction), `solver(true)` the same
/// with them; `memberships` are the query's; `literals_of` gives a variable's literals by its
/// Z3 name.
pub(crate) fn decide(
    solver: &dyn Fn(bool) -> Solver,
    facts: &[Bool],
    memberships: &[LanguageTest],
    literals_of: &dyn Fn(&str) -> Vec<String>,
    deadline: Instant,
) -> Realized {
    let abstraction = solver(false);
    facts.iter().for_each(|fact| abstraction.assert(fact));
    let mut by_subject: BTreeMap<&str, Variable> = BTreeMap::new();
    for test in memberships {
        by_subject
            .entry(test.subject.as_str())
            .or_insert_with(|| Variable {
                variable: test.variable.clone(),
                tests: Vec::new(),
                literals: literals_of(&test.subject),
                literal_dfa: None,
            })
            .tests
            .push(Prepared::new(test));
    }
    let left_ms = || {
        deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(u32::MAX as u128) as u32
    };
    for _ in 0..MAX_ROUNDS {
        if left_ms() == 0 {
            return Realized::Unknown("timeout".to_owned());
        }
        let mut params = Params::new();
        params.set_u32("timeout", left_ms().max(1));
        abstraction.set_params(&params);
        let model = match abstraction.check() {
            SatResult::Unsat => return Realized::Unsat,
            SatResult::Unknown => {
                return Realized::Unknown(
                    abstraction
                        .get_reason_unknown()
                        .unwrap_or_else(|| "unknown".to_owned()),
                )
            }
            SatResult::Sat => match abstraction.get_model() {
                Some(model) => model,
                None => return Realized::Unknown("no model".to_owned()),
            },
        };
        let mut chosen = Vec::new();
        let mut refined = false;
        for variable in by_subject.values_mut() {
            match variable.choose(&model) {
                Choice::String(value) => chosen.push((variable.variable.clone(), value)),
                Choice::Refuted(clause) => {
                    abstraction.assert(&clause);
                    refined = true;
                }
                Choice::GaveUp(reason) => return Realized::Unknown(reason),
            }
        }
        if !refined {
            let whole = solver(true);
            facts.iter().for_each(|fact| whole.assert(fact));
            return match confirm(whole, &chosen, left_ms()) {
                Some(model) => Realized::Sat(model),
                None => {
                    Realized::Unknown("the strings chosen outside Z3 were not confirmed".into())
                }
            };
        }
    }
    Realized::Unknown(format!("no strings after {MAX_ROUNDS} rounds"))
}

enum Choice {
    String(String),
    /// No string has what the model asks of this variable: a clause that says so.
    Refuted(Bool),
    GaveUp(String),
}

impl Variable<'_> {
    /// A string for this variable with the memberships (and the literal, if any) that the
    /// abstraction's model gives it.
    fn choose(&mut self, model: &Model) -> Choice {
        let wanted: Vec<bool> = self
            .tests
            .iter()
            .map(|t| {
                model
                    .eval(&t.test.member, true)
                    .and_then(|b| b.as_bool())
                    .unwrap_or(false)
            })
            .collect();
        let literals: Vec<Bool> = self
            .literals
            .iter()
            .map(|l| self.variable.eq(literal(l)))
            .collect();
        let value = model
            .eval(&self.variable, true)
            .and_then(|v| v.as_string())
            .map(|v| unescape(&v));
        // The model's string is one of the literals: it must be that string, which decides
        // every membership; when the model got one wrong, Z3 is told what the literal decides.
        if let Some(value) = value.filter(|v| self.literals.contains(v)) {
            let is_value = self.variable.eq(literal(&value));
            let mut wrong = false;
            let mut facts = Vec::new();
            for (test, wanted) in self.tests.iter().zip(&wanted) {
                let passes = test.passes(&value);
                wrong |= passes != *wanted;
                facts.push(if passes {
                    test.test.member.clone()
                } else {
                    test.test.member.not()
                });
            }
            return if wrong {
                Choice::Refuted(is_value.implies(crate::encode::all(facts)))
            } else {
                Choice::String(value)
            };
        }
        let mut pass = Vec::new();
        let mut fail = Vec::new();
        for (test, wanted) in self.tests.iter().zip(&wanted) {
            match (test.dfa(), wanted) {
                (Some(dfa), true) => pass.push(dfa),
                (Some(dfa), false) => fail.push(dfa),
                (None, _) => return Choice::GaveUp("a regex too big for a DFA".to_owned()),
            }
        }
        if !self.literals.is_empty() {
            let texts = &self.literals;
            let dfa = self.literal_dfa.get_or_insert_with(|| {
                let any: Vec<String> = texts.iter().map(|l| regex_syntax::escape(l)).collect();
                dfa_of(&format!("^(?:{})$", any.join("|")))
            });
            match dfa {
                Some(dfa) => fail.push(dfa),
                None => return Choice::GaveUp("too many literals for a DFA".to_owned()),
            }
        }
        match string_in(&pass, &fail) {
            Search::Found(value) => Choice::String(value),
            Search::Empty => {
                // No string passes exactly these tests and is none of the literals.
                let mut conjunction: Vec<Bool> = self
                    .tests
                    .iter()
                    .zip(&wanted)
                    .map(|(t, w)| {
                        if *w {
                            t.test.member.clone()
                        } else {
                            t.test.member.not()
                        }
                    })
                    .collect();
                conjunction.extend(literals.iter().map(|l| l.not()));
                Choice::Refuted(crate::encode::all(conjunction).not())
            }
            Search::CutOff => {
                Choice::GaveUp(format!("the string search passed {STATES_LIMIT} states"))
            }
        }
    }
}

/// A state of the product: each DFA's, and the UTF-8 decoder's.
type Node = (Vec<At>, Utf8);

enum Search {
    Found(String),
    Empty,
    CutOff,
}

/// Where a UTF-8 decoder is: between characters, or expecting `need` more continuation bytes,
/// the next in `lo..=hi` (which rules out overlong forms and surrogates).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Utf8 {
    need: u8,
    lo: u8,
    hi: u8,
}

const CHARACTER_DONE: Utf8 = Utf8 {
    need: 0,
    lo: 0,
    hi: 0,
};

impl Utf8 {
    fn next(self, byte: u8) -> Option<Utf8> {
        let expect = |need: u8, lo: u8, hi: u8| Some(Utf8 { need, lo, hi });
        if self.need == 0 {
            return match byte {
                0x00..=0x7f => Some(CHARACTER_DONE),
                0xc2..=0xdf => expect(1, 0x80, 0xbf),
                0xe0 => expect(2, 0xa0, 0xbf),
                0xe1..=0xec | 0xee..=0xef => expect(2, 0x80, 0xbf),
                0xed => expect(2, 0x80, 0x9f),
                0xf0 => expect(3, 0x90, 0xbf),
                0xf1..=0xf3 => expect(3, 0x80, 0xbf),
                0xf4 => expect(3, 0x80, 0x8f),
                _ => None,
            };
        }
        if !(self.lo..=self.hi).contains(&byte) {
            return None;
        }
        if self.need == 1 {
            Some(CHARACTER_DONE)
        } else {
            expect(self.need - 1, 0x80, 0xbf)
        }
    }
}

/// Bytes in the order the search tries them, so that witnesses read well: letters, digits,
/// punctuation and space, then the rest.
fn byte_order() -> Vec<u8> {
    let mut order: Vec<u8> = (b'a'..=b'z')
        .chain(b'0'..=b'9')
        .chain(b'A'..=b'Z')
        .collect();
    order.extend((0x20..0x7f).filter(|b: &u8| !b.is_ascii_alphanumeric()));
    order.extend((0u8..=0xff).filter(|b| !(0x20..0x7f).contains(b)));
    order
}

/// A shortest UTF-8 string that passes every DFA in `pass` and none in `fail`: a
/// breadth-first walk of their product. States from which a `pass` test can no longer pass,
/// or in which a `fail` test has passed, are not followed.
fn string_in(pass: &[&dense::DFA<Vec<u32>>], fail: &[&dense::DFA<Vec<u32>>]) -> Search {
    let unanchored = start::Config::new().anchored(Anchored::No);
    let dfas: Vec<&dense::DFA<Vec<u32>>> = pass.iter().chain(fail).copied().collect();
    let passing = pass.len();
    let mut start = Vec::with_capacity(dfas.len());
    for dfa in &dfas {
        match dfa.start_state(&unanchored) {
            Ok(state) => start.push(at(dfa, state)),
            Err(_) => return Search::CutOff,
        }
    }
    let hopeless = |states: &[At]| {
        states.iter().enumerate().any(|(i, &state)| match state {
            At::Matched => i >= passing,
            At::In(id) => i < passing && dfas[i].is_dead_state(id),
        })
    };
    if hopeless(&start) {
        return Search::Empty;
    }
    let order = byte_order();
    let start = (start, CHARACTER_DONE);
    // Each state remembers the state and byte it was reached from, to spell the string.
    let mut parent: HashMap<Node, Option<(Node, u8)>> = HashMap::from([(start.clone(), None)]);
    let mut seen: HashSet<Node> = HashSet::from([start.clone()]);
    let mut queue = VecDeque::from([start]);
    while let Some(current) = queue.pop_front() {
        let (states, utf8) = &current;
        let accepted = *utf8 == CHARACTER_DONE
            && states
                .iter()
                .enumerate()
                .all(|(i, &state)| passes_here(dfas[i], state) == (i < passing));
        if accepted {
            let mut bytes = Vec::new();
            let mut at_state = current.clone();
            while let Some(Some((previous, byte))) = parent.get(&at_state) {
                bytes.push(*byte);
                at_state = previous.clone();
            }
            bytes.reverse();
            return match String::from_utf8(bytes) {
                Ok(text) => Search::Found(text),
                Err(_) => Search::CutOff,
            };
        }
        for &byte in &order {
            let Some(next_utf8) = utf8.next(byte) else {
                continue;
            };
            let next_states: Vec<At> = states
                .iter()
                .enumerate()
                .map(|(i, &state)| match state {
                    At::Matched => At::Matched,
                    At::In(id) => at(dfas[i], dfas[i].next_state(id, byte)),
                })
                .collect();
            if hopeless(&next_states) {
                continue;
            }
            let next = (next_states, next_utf8);
            if seen.insert(next.clone()) {
                if seen.len() > STATES_LIMIT {
                    return Search::CutOff;
                }
                parent.insert(next.clone(), Some((current.clone(), byte)));
                queue.push_back(next);
            }
        }
    }
    Search::Empty
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::TextTest;
    use crate::regex::{matching_language, text_language};
    use polctl_lang::ir::TextOp;

    /// A membership of the string constant `s`.
    fn membership(name: &str, test: TextTest) -> LanguageTest {
        let language = match &test {
            TextTest::Regex(pattern) => matching_language(pattern).expect("translatable"),
            TextTest::Text(op, texts) => text_language(*op, texts),
        };
        LanguageTest {
            member: Bool::new_const(name),
            variable: Z3String::new_const("s"),
            subject: Z3String::new_const("s").to_string(),
            language,
            test,
        }
    }

    /// Runs the loop on `literals` of `s` and `constraints` over the memberships.
    fn run(tests: &[LanguageTest], literals: &[&str], constraints: &[Bool]) -> Realized {
        let literals: Vec<String> = literals.iter().map(|l| l.to_string()).collect();
        let solver = |with_memberships: bool| {
            let solver = Solver::new();
            if with_memberships {
                crate::encode::load_tests(&solver, tests);
            }
            solver
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        decide(&solver, constraints, tests, &|_| literals.clone(), deadline)
    }

    #[test]
    fn chooses_a_string_that_is_none_of_the_literals() {
        let tests = [
            membership("m1", TextTest::Regex("^prod-[0-9]+$".into())),
            membership("m2", TextTest::Text(TextOp::EndsWith, vec!["7".into()])),
            membership(
                "m3",
                TextTest::Text(TextOp::StartsWith, vec!["prod-1".into()]),
            ),
        ];
        let s = Z3String::new_const("s");
        let constraints = [
            tests[0].member.clone(),
            tests[1].member.clone(),
            tests[2].member.not(),
            s.eq(literal("prod-7")).not(),
        ];
        let Realized::Sat(model) = run(&tests, &["prod-7"], &constraints) else {
            panic!("expected a model");
        };
        let value = model.eval(&s, true).and_then(|v| v.as_string()).expect("s");
        assert_eq!(value, "prod-07");
    }

    #[test]
    fn a_literal_decides_the_memberships() {
        // `s == "prod-x"` or a string ending in "x", and the regex: the literal fails the
        // regex, which the loop learns if the abstraction tries it, so it must choose another.
        let tests = [
            membership("n1", TextTest::Regex("^prod-[0-9]+x?$".into())),
            membership("n2", TextTest::Text(TextOp::EndsWith, vec!["x".into()])),
        ];
        let s = Z3String::new_const("s");
        let constraints = [
            tests[0].member.clone(),
            Bool::or(&[s.eq(literal("prod-x")), tests[1].member.clone()]),
        ];
        let Realized::Sat(model) = run(&tests, &["prod-x"], &constraints) else {
            panic!("expected a model");
        };
        let value = model.eval(&s, true).and_then(|v| v.as_string()).expect("s");
        assert_eq!(value, "prod-0x");
    }

    #[test]
    fn three_tests_with_no_common_string_are_refuted() {
        let tests = [
            membership("k1", TextTest::Regex("^[a-z]+(-[0-9]+)?$".into())),
            membership("k2", TextTest::Text(TextOp::EndsWith, vec!["x".into()])),
            membership("k3", TextTest::Text(TextOp::Contains, vec!["-".into()])),
        ];
        let all: Vec<Bool> = tests.iter().map(|t| t.member.clone()).collect();
        assert!(matches!(run(&tests, &[], &all), Realized::Unsat));
    }

    fn dfa(pattern: &str) -> dense::DFA<Vec<u32>> {
        dfa_of(pattern).expect("a small DFA")
    }

    fn found(pass: &[&str], fail: &[&str]) -> Option<String> {
        let pass: Vec<_> = pass.iter().map(|p| dfa(p)).collect();
        let fail: Vec<_> = fail.iter().map(|p| dfa(p)).collect();
        match string_in(
            &pass.iter().collect::<Vec<_>>(),
            &fail.iter().collect::<Vec<_>>(),
        ) {
            Search::Found(text) => Some(text),
            Search::Empty => None,
            Search::CutOff => panic!("cut off"),
        }
    }

    #[test]
    fn finds_a_shortest_string_with_the_wanted_tests() {
        let text = found(&["^prod-[0-9]+$", "7"], &["^prod-1"]).expect("exists");
        assert_eq!(text, "prod-7");
        let text = found(&["(?i)^ticket-"], &["^ticket-"]).expect("exists");
        assert!(regex::Regex::new("(?i)^ticket-")
            .expect("regex")
            .is_match(&text));
        assert!(!text.starts_with("ticket-"), "{text}");
    }

    #[test]
    fn three_tests_that_meet_in_pairs_have_no_string() {
        assert_eq!(found(&["^[a-z]+(-[0-9]+)?$", "x$", "-"], &[]), None);
        assert!(found(&["^[a-z]+(-[0-9]+)?$", "x$"], &[]).is_some());
    }

    #[test]
    fn strings_are_utf8_and_respect_unicode_classes() {
        let text = found(&["^é+$"], &[]).expect("exists");
        assert_eq!(text, "é");
        let text = found(&["^[^a-zA-Z0-9 -~]$"], &["^[\u{0}-\u{7f}]"]).expect("exists");
        assert_eq!(text.chars().count(), 1);
        assert!(!text.is_ascii());
    }

    #[test]
    fn the_utf8_automaton_rejects_overlong_forms_and_surrogates() {
        let decode = |bytes: &[u8]| {
            bytes
                .iter()
                .try_fold(CHARACTER_DONE, |state, &b| state.next(b))
                .is_some_and(|state| state == CHARACTER_DONE)
        };
        assert!(decode("aé€😀".as_bytes()));
        assert!(!decode(&[0xc0, 0x80]));
        assert!(!decode(&[0xed, 0xa0, 0x80]));
        assert!(!decode(&[0xe2, 0x82]));
    }
}
