//! Solvers for a query: the domain, and only the regex definitions and membership facts its rules use.

use super::*;

impl Encoding<'_> {
    /// A solver with the domain and the regex definitions that `rules` use. Loading only
    /// those keeps Z3's string solver away from regexes a query cannot involve. When `tools`
    /// is given, the request's tool is one of them and only their argument domains are loaded
    /// (a query whose subject rule names those tools loses nothing by it).
    pub fn solver_for(&self, rules: &[usize], tools: Option<&[usize]>) -> Solver {
        let solver = self.domain_solver(tools);
        self.load_definitions(&solver, rules);
        solver
    }

    /// [`Encoding::solver_for`] without the regex membership definitions: their Booleans are
    /// free (the abstraction of `realize.rs`).
    pub(crate) fn domain_solver(&self, tools: Option<&[usize]>) -> Solver {
        let solver = Solver::new();
        solver.assert(&self.domain);
        match tools {
            Some(tools) => {
                solver.assert(any(tools.iter().map(|&t| self.is_tool(t)).collect()));
                for &t in tools {
                    if let Some(facts) = self.tool_domains.get(t) {
                        solver.assert(facts);
                    }
                }
            }
            None => self.tool_domains.iter().for_each(|d| solver.assert(d)),
        }
        solver
    }

    /// Loads the regex membership definitions that `rules` use into a solver.
    pub fn load_definitions(&self, solver: &Solver, rules: &[usize]) {
        self.load_memberships(solver, self.membership_indexes(rules));
    }

    /// The indexes of the regex memberships that `rules` use (unsorted, maybe repeated).
    pub(super) fn membership_indexes(&self, rules: &[usize]) -> Vec<usize> {
        rules
            .iter()
            .flat_map(|&r| self.regexes_of_rule.get(r).cloned().unwrap_or_default())
            .collect()
    }

    /// Loads the regex membership definitions of a condition encoded with
    /// [`Encoding::encode_condition`] (a property's `forall`), and returns them.
    pub(crate) fn load_condition_definitions(
        &self,
        solver: &Solver,
        condition: &EncodedCondition,
    ) -> Vec<LanguageTest> {
        self.load_memberships(solver, condition.memberships.clone());
        self.language_tests(condition.memberships.clone())
    }

    /// The regex memberships that `rules` use.
    pub(crate) fn memberships_of(&self, rules: &[usize]) -> Vec<LanguageTest> {
        self.language_tests(self.membership_indexes(rules))
    }

    pub(super) fn language_tests(&self, mut indexes: Vec<usize>) -> Vec<LanguageTest> {
        let definitions = self.definitions.borrow();
        indexes.sort_unstable();
        indexes.dedup();
        indexes
            .into_iter()
            .map(|i| {
                let m = &definitions.members[i];
                LanguageTest {
                    member: m.member.clone(),
                    variable: m.subject.clone(),
                    subject: m.subject.to_string(),
                    language: m.language.clone(),
                    test: m.test.clone(),
                }
            })
            .collect()
    }

    pub(super) fn load_memberships(&self, solver: &Solver, indexes: Vec<usize>) {
        load_tests(solver, &self.language_tests(indexes));
    }
}
