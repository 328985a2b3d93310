//! Conditions as Z3 terms: paths, values, text tests (memberships in regular languages), lists and quantifiers.

use super::*;

impl Encoding<'_> {
    pub(super) fn term(
        &self,
        path: &Path,
        tools: &[usize],
        element: Option<&Z3String>,
    ) -> Result<Term, String> {
        let schema = &self.set.schema;
        let missing = || format!("`{path}` is not declared");
        match path {
            Path::Agent(name) => schema
                .agent
                .iter()
                .position(|a| &a.name == name)
                .map(|i| self.agent[i].clone())
                .ok_or_else(missing),
            Path::Context(name) => schema
                .context
                .iter()
                .position(|a| &a.name == name)
                .map(|i| self.context[i].clone())
                .ok_or_else(missing),
            Path::Arg(name) => {
                let ty = self.set.schema.path_type(path, tools).ok_or_else(missing)?;
                self.args
                    .get(&(name.clone(), type_key(&ty)))
                    .map(|v| v.value.clone())
                    .ok_or_else(missing)
            }
            Path::Session => Ok(Term::Str(self.session.clone())),
            Path::Element => element
                .cloned()
                .map(Term::Str)
                .ok_or_else(|| "an element outside `every`/`some`".to_owned()),
            Path::ToolName | Path::ToolKind => Err("tool paths have no term".to_owned()),
        }
    }

    pub(super) fn string_term(
        &self,
        path: &Path,
        tools: &[usize],
        element: Option<&Z3String>,
    ) -> Result<Z3String, String> {
        match self.term(path, tools, element)? {
            Term::Str(s) => Ok(s),
            _ => Err(format!("`{path}` is not a string")),
        }
    }

    pub(super) fn value_equals(
        &self,
        path: &Path,
        tools: &[usize],
        element: Option<&Z3String>,
        value: &Value,
    ) -> Result<Bool, String> {
        let schema = &self.set.schema;
        match value {
            Value::Tool(name) => Ok(match schema.tool_index(name) {
                Some(index) => self.is_tool(index),
                None => Bool::from_bool(false),
            }),
            Value::Kind(kind) => Ok(any(schema
                .tools
                .iter()
                .enumerate()
                .filter(|(_, t)| t.kind == *kind)
                .map(|(i, _)| self.is_tool(i))
                .collect())),
            Value::Str(s) => Ok(self.text_is(&self.string_term(path, tools, element)?, s)),
            Value::Bool(b) => match self.term(path, tools, element)? {
                Term::Bool(v) => Ok(v.eq(Bool::from_bool(*b))),
                _ => Err(format!("`{path}` is not a bool")),
            },
            Value::Int(i) => match self.term(path, tools, element)? {
                Term::Int(v) => Ok(v.eq(Int::from_i64(*i))),
                _ => Err(format!("`{path}` is not a number")),
            },
            Value::Decimal(d) => match self.term(path, tools, element)? {
                Term::Int(v) => Ok(v.eq(Int::from_i64(d.millionths()))),
                _ => Err(format!("`{path}` is not a number")),
            },
            Value::Enum(member) => {
                let Some(Type::Enum { members }) = self.set.schema.path_type(path, tools) else {
                    return Err(format!("`{path}` is not an enum"));
                };
                match (
                    self.term(path, tools, element)?,
                    members.iter().position(|m| m == member),
                ) {
                    (Term::Int(v), Some(index)) => Ok(v.eq(Int::from_i64(index as i64))),
                    _ => Ok(Bool::from_bool(false)),
                }
            }
        }
    }

    pub(super) fn list(
        &self,
        path: &Path,
        tools: &[usize],
    ) -> Result<(Int, Vec<Z3String>), String> {
        match self.term(path, tools, None)? {
            Term::List { len, items } => Ok((len, items)),
            _ => Err(format!("`{path}` is not a list")),
        }
    }

    /// Encodes a condition that is not a rule's (a property's `forall`), with the regex
    /// memberships its term refers to.
    pub fn encode_condition(
        &self,
        cond: &Cond,
        tools: &[usize],
    ) -> Result<EncodedCondition, String> {
        let mut memberships = Vec::new();
        let term = self.cond(cond, tools, None, &mut memberships)?;
        Ok(EncodedCondition { term, memberships })
    }

    /// Encodes a condition; `element` is the list element under `every`/`some`. The regex
    /// memberships the term refers to are added to `used`: a solver that asserts the term
    /// must load their definitions.
    pub(super) fn cond(
        &self,
        cond: &Cond,
        tools: &[usize],
        element: Option<&Z3String>,
        used: &mut Vec<usize>,
    ) -> Result<Bool, String> {
        Ok(match cond {
            Cond::And(items) => all(items
                .iter()
                .map(|c| self.cond(c, tools, element, used))
                .collect::<Result<_, _>>()?),
            Cond::Or(items) => any(items
                .iter()
                .map(|c| self.cond(c, tools, element, used))
                .collect::<Result<_, _>>()?),
            Cond::Not(inner) => self.cond(inner, tools, element, used)?.not(),
            Cond::Has(name) => {
                let ty = self
                    .set
                    .schema
                    .path_type(&Path::Arg(name.clone()), tools)
                    .ok_or_else(|| format!("`args.{name}` is not declared"))?;
                self.args
                    .get(&(name.clone(), type_key(&ty)))
                    .map(|v| v.present.clone())
                    .ok_or_else(|| format!("`args.{name}` is not declared"))?
            }
            Cond::Compare { path, op, value } => match (op, value) {
                (CmpOp::Eq, _) => self.value_equals(path, tools, element, value)?,
                (CmpOp::Ne, _) => self.value_equals(path, tools, element, value)?.not(),
                (_, Value::Int(_) | Value::Decimal(_)) => {
                    let Term::Int(left) = self.term(path, tools, element)? else {
                        return Err(format!("`{path}` is not a number"));
                    };
                    let right = match value {
                        Value::Int(i) => *i,
                        Value::Decimal(d) => d.millionths(),
                        _ => 0,
                    };
                    compare(&left, *op, Int::from_i64(right))
                }
                _ => return Err(format!("`{}` does not order `{path}`", op.as_str())),
            },
            Cond::In { path, values } => any(values
                .iter()
                .map(|v| self.value_equals(path, tools, element, v))
                .collect::<Result<_, _>>()?),
            Cond::Text { path, op, pattern } => {
                let subject = self.string_term(path, tools, element)?;
                match op {
                    TextOp::Matches => {
                        let language = matching_language(pattern)
                            .map_err(|e| format!("regex `{pattern}`: {}", e.0))?;
                        self.regex_member(
                            &subject,
                            language,
                            TextTest::Regex(pattern.clone()),
                            used,
                        )
                    }
                    _ => {
                        let texts = vec![pattern.clone()];
                        let language = text_language(*op, &texts);
                        self.regex_member(&subject, language, TextTest::Text(*op, texts), used)
                    }
                }
            }
            Cond::ContainsAny { path, needles } => {
                let subject = self.string_term(path, tools, element)?;
                let language = text_language(TextOp::Contains, needles);
                self.regex_member(
                    &subject,
                    language,
                    TextTest::Text(TextOp::Contains, needles.clone()),
                    used,
                )
            }
            Cond::ListContains { path, value } => {
                let (len, items) = self.list(path, tools)?;
                any(items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        Bool::and(&[len.gt(Int::from_i64(i as i64)), self.text_is(item, value)])
                    })
                    .collect())
            }
            Cond::ListContainsAny { path, values } => {
                let (len, items) = self.list(path, tools)?;
                any(items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        Bool::and(&[
                            len.gt(Int::from_i64(i as i64)),
                            any(values.iter().map(|v| self.text_is(item, v)).collect()),
                        ])
                    })
                    .collect())
            }
            Cond::Every { path, cond } => {
                let (len, items) = self.list(path, tools)?;
                let mut parts = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    parts.push(len.gt(Int::from_i64(i as i64)).implies(self.cond(
                        cond,
                        tools,
                        Some(item),
                        used,
                    )?));
                }
                all(parts)
            }
            Cond::Some { path, cond } => {
                let (len, items) = self.list(path, tools)?;
                let mut parts = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    parts.push(Bool::and(&[
                        len.gt(Int::from_i64(i as i64)),
                        self.cond(cond, tools, Some(item), used)?,
                    ]));
                }
                any(parts)
            }
            Cond::Count { path, op, value } => {
                let (len, _) = self.list(path, tools)?;
                compare(&len, *op, Int::from_i64(*value))
            }
            Cond::Length { path, op, value } => {
                let subject = self.string_term(path, tools, element)?;
                compare(&subject.length(), *op, Int::from_i64(*value))
            }
        })
    }

    /// `subject == text`, remembered as a literal of `subject`.
    pub(super) fn text_is(&self, subject: &Z3String, text: &str) -> Bool {
        self.definitions
            .borrow_mut()
            .literals
            .entry(subject.to_string())
            .or_default()
            .insert(text.to_owned());
        subject.eq(literal(text))
    }

    /// The texts a string variable (by its Z3 name) is compared with anywhere in the encoding.
    pub(crate) fn literals_of(&self, subject: &str) -> Vec<String> {
        self.definitions
            .borrow()
            .literals
            .get(subject)
            .map(|texts| texts.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A Boolean defined as `subject` being in `language` (an SMT-LIB regex term), added to
    /// `used`. Its name is a digest of both, so the same test gets the same Boolean in every
    /// encoding: the solver then reasons once about a regex that the old and the new version
    /// share.
    pub(super) fn regex_member(
        &self,
        subject: &Z3String,
        language: String,
        test: TextTest,
        used: &mut Vec<usize>,
    ) -> Bool {
        use sha2::{Digest, Sha256};
        let mut definitions = self.definitions.borrow_mut();
        let key = (subject.to_string(), language);
        let index = match definitions.index.get(&key) {
            Some(&index) => index,
            None => {
                let digest = Sha256::new()
                    .chain_update(key.0.as_bytes())
                    .chain_update([0])
                    .chain_update(key.1.as_bytes())
                    .finalize();
                let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                let member = Bool::new_const(format!("matches#{name}"));
                definitions.members.push(Membership {
                    member,
                    subject: subject.clone(),
                    language: key.1.clone(),
                    test,
                });
                let index = definitions.members.len() - 1;
                definitions.index.insert(key, index);
                index
            }
        };
        used.push(index);
        definitions.members[index].member.clone()
    }
}
