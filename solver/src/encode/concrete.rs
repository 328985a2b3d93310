//! Rules decided on concrete values: a string's membership, a condition under a request with one field left free.

use super::*;

impl Encoding<'_> {
    /// Whether a concrete string is in an SMT-LIB regex language, decided by a one-constraint
    /// solver and cached.
    pub(super) fn concrete_member(&self, membership: &Membership, value: &str) -> bool {
        if let Some(holds) = membership.test.holds(value) {
            return holds;
        }
        let language = &membership.language;
        let key = (language.to_owned(), value.to_owned());
        if let Some(known) = self.definitions.borrow().cache.get(&key) {
            return *known;
        }
        let solver = Solver::new();
        solver.from_string(format!(
            "(assert (str.in_re \"{}\" {language}))",
            crate::strings::escape(value)
        ));
        let result = solver.check() == z3::SatResult::Sat;
        self.definitions.borrow_mut().cache.insert(key, result);
        result
    }

    /// Evaluates terms on a concrete request by substituting its values and simplifying (much
    /// faster than solving). `None` when a term does not reduce to a constant.
    pub fn evaluate(
        &self,
        request: &polctl_lang::eval::Request,
        terms: &[&Bool],
    ) -> Vec<Option<bool>> {
        let pairs = self.substitutions(request, None);
        let references: Vec<(&Dynamic, &Dynamic)> = pairs.iter().map(|(a, b)| (a, b)).collect();
        terms
            .iter()
            .map(|term| term.substitute(&references).simplify().as_bool())
            .collect()
    }

    /// Terms with every request variable pinned to the request's value except `free` (a
    /// string variable, with its regex memberships), for questions about one field.
    pub fn pinned_except(
        &self,
        request: &polctl_lang::eval::Request,
        free: &Z3String,
        terms: &[&Bool],
    ) -> Vec<Bool> {
        let pairs = self.substitutions(request, Some(&free.to_string()));
        let references: Vec<(&Dynamic, &Dynamic)> = pairs.iter().map(|(a, b)| (a, b)).collect();
        terms
            .iter()
            .map(|term| term.substitute(&references).simplify())
            .collect()
    }

    /// `(variable, value)` pairs for a concrete request, skipping the variable named `free`.
    pub(super) fn substitutions(
        &self,
        request: &polctl_lang::eval::Request,
        free: Option<&str>,
    ) -> Vec<(Dynamic, Dynamic)> {
        use polctl_lang::eval::Value as V;
        let mut pairs: Vec<(Dynamic, Dynamic)> = Vec::new();
        let mut strings: HashMap<String, String> = HashMap::new();
        let mut pin =
            |term: &Term, value: &V, pairs: &mut Vec<(Dynamic, Dynamic)>| match (term, value) {
                (Term::Str(s), V::Str(v)) => {
                    strings.insert(s.to_string(), v.clone());
                    pairs.push((Dynamic::from_ast(s), Dynamic::from_ast(&literal(v))));
                }
                (Term::Int(i), V::Int(v)) => {
                    pairs.push((Dynamic::from_ast(i), Dynamic::from_ast(&Int::from_i64(*v))))
                }
                (Term::Int(i), V::Decimal(d)) => pairs.push((
                    Dynamic::from_ast(i),
                    Dynamic::from_ast(&Int::from_i64(d.millionths())),
                )),
                (Term::Int(i), V::Enum(m)) => pairs.push((
                    Dynamic::from_ast(i),
                    Dynamic::from_ast(&Int::from_i64(i64::from(*m))),
                )),
                (Term::Bool(b), V::Bool(v)) => pairs.push((
                    Dynamic::from_ast(b),
                    Dynamic::from_ast(&Bool::from_bool(*v)),
                )),
                (Term::List { len, items }, V::List(values)) => {
                    pairs.push((
                        Dynamic::from_ast(len),
                        Dynamic::from_ast(&Int::from_i64(values.len() as i64)),
                    ));
                    for (item, value) in items.iter().zip(values) {
                        strings.insert(item.to_string(), value.clone());
                        pairs.push((Dynamic::from_ast(item), Dynamic::from_ast(&literal(value))));
                    }
                }
                _ => {}
            };
        let schema = &self.set.schema;
        pairs.push((
            Dynamic::from_ast(&self.tool),
            Dynamic::from_ast(&Int::from_i64(request.tool as i64)),
        ));
        pin(
            &Term::Str(self.session.clone()),
            &V::Str(request.session.clone()),
            &mut pairs,
        );
        for (term, value) in self.agent.iter().zip(&request.agent) {
            pin(term, value, &mut pairs);
        }
        for (term, value) in self.context.iter().zip(&request.context) {
            pin(term, value, &mut pairs);
        }
        let declared = schema.tools.get(request.tool);
        for ((name, key), var) in &self.args {
            let arg = declared.and_then(|t| {
                t.args
                    .iter()
                    .position(|a| &a.name == name && &type_key(&a.ty) == key)
            });
            match arg.and_then(|i| request.args.get(i)).map(Option::as_ref) {
                Some(Some(value)) => {
                    pairs.push((
                        Dynamic::from_ast(&var.present),
                        Dynamic::from_ast(&Bool::from_bool(true)),
                    ));
                    pin(&var.value, value, &mut pairs);
                }
                _ => pairs.push((
                    Dynamic::from_ast(&var.present),
                    Dynamic::from_ast(&Bool::from_bool(false)),
                )),
            }
        }
        for (flag, value) in self.approvals.iter().zip(&request.approvals) {
            pairs.push((
                Dynamic::from_ast(flag),
                Dynamic::from_ast(&Bool::from_bool(*value)),
            ));
        }
        for (rule, counter) in &self.counters {
            let value = request
                .counters
                .iter()
                .find(|(r, _)| r == rule)
                .map_or(0, |(_, c)| *c);
            pairs.push((
                Dynamic::from_ast(counter),
                Dynamic::from_ast(&Int::from_i64(value.min(i64::MAX as u64) as i64)),
            ));
        }
        let members: Vec<Membership> = self.definitions.borrow().members.clone();
        for membership in &members {
            let subject = membership.subject.to_string();
            if free == Some(subject.as_str()) {
                continue;
            }
            if let Some(value) = strings.get(&subject) {
                let result = self.concrete_member(membership, value);
                pairs.push((
                    Dynamic::from_ast(&membership.member),
                    Dynamic::from_ast(&Bool::from_bool(result)),
                ));
            }
        }
        if let Some(free) = free {
            pairs.retain(|(variable, _)| variable.to_string() != free);
        }
        pairs
    }
}
