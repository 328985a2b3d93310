//! Requests built to satisfy conditions: the field-by-field reading of a rule's `when`.
//!
//! Z3 4.8.12's string solver can take seconds on conjunctions such as `starts with "prod"
//! and ends with "@acme.example"` that are trivial to satisfy by hand: `"prod@acme.example"`.
//! So before a query goes to the solver, candidates are built from the conditions of the
//! rules it must match: per field, a prefix, the required substrings and regex samples, and a
//! suffix; numbers at the edge of their bounds; list elements built the same way. Only
//! positive conjuncts are used (`or` takes the branch picked by `variant`, `not` is skipped),
//! so a construction can fail: the evaluator checks every candidate before it is used.

use polctl_lang::decimal::Decimal;
use polctl_lang::eval::generate::{RequestGenerator, Rng};
use polctl_lang::eval::{sample_matching, Request, Value};
use polctl_lang::ir::{
    CmpOp, Cond, Path, PolicySet, Scope, ScopeTerm, TextOp, Type, Value as IrValue,
};

/// What the conditions ask of one field.
#[derive(Default)]
struct Wanted {
    equal: Option<IrValue>,
    prefix: String,
    middle: Vec<String>,
    suffix: String,
    /// Bounds on a number, in its own unit (millionths for decimals).
    low: Option<i64>,
    high: Option<i64>,
    present: bool,
    /// List elements that must be present.
    elements: Vec<String>,
    /// What every (or some) element must satisfy.
    element: Option<Box<Wanted>>,
    every: bool,
    count_low: Option<i64>,
}

fn number(value: &IrValue, ty: &Type) -> Option<i64> {
    match (value, ty) {
        (IrValue::Int(i), Type::Decimal { .. }) => i.checked_mul(1_000_000),
        (IrValue::Int(i), _) => Some(*i),
        (IrValue::Decimal(d), _) => Some(d.millionths()),
        _ => None,
    }
}

struct Collector<'a> {
    set: &'a PolicySet,
    tool: usize,
    variant: usize,
    wanted: Vec<(Path, Wanted)>,
}

impl Collector<'_> {
    fn entry(&mut self, path: &Path) -> &mut Wanted {
        if let Some(i) = self.wanted.iter().position(|(p, _)| p == path) {
            return &mut self.wanted[i].1;
        }
        self.wanted.push((path.clone(), Wanted::default()));
        let last = self.wanted.len() - 1;
        &mut self.wanted[last].1
    }

    /// Records what a condition asks, positively; `element` collects under `every`/`some`.
    fn collect(&mut self, cond: &Cond, element: Option<&mut Wanted>) {
        match (cond, element) {
            (Cond::And(items), mut element) => {
                for item in items {
                    self.collect(item, element.as_deref_mut());
                }
            }
            (Cond::Or(items), element) if !items.is_empty() => {
                let pick = self.variant % items.len();
                self.collect(&items[pick], element);
            }
            (Cond::Every { path, cond: inner } | Cond::Some { path, cond: inner }, None) => {
                let every = matches!(cond, Cond::Every { .. });
                let mut element = Wanted::default();
                self.collect(inner, Some(&mut element));
                let wanted = self.entry(path);
                wanted.every |= every;
                if !every {
                    wanted.count_low = Some(wanted.count_low.unwrap_or(0).max(1));
                }
                wanted.element = Some(Box::new(element));
            }
            (leaf, Some(element)) => Self::text(element, leaf, self.variant),
            (leaf, None) => self.leaf(leaf),
        }
    }

    /// A string test on a value (a field or a list element).
    fn text(wanted: &mut Wanted, cond: &Cond, variant: usize) {
        match cond {
            Cond::Compare {
                op: CmpOp::Eq,
                value,
                ..
            } => wanted.equal = Some(value.clone()),
            Cond::In { values, .. } if !values.is_empty() => {
                wanted.equal = Some(values[variant % values.len()].clone())
            }
            Cond::Text { op, pattern, .. } => match op {
                TextOp::StartsWith => wanted.prefix = pattern.clone(),
                TextOp::EndsWith => wanted.suffix = pattern.clone(),
                TextOp::Contains => wanted.middle.push(pattern.clone()),
                TextOp::Matches => {
                    if let Some(sample) = sample_matching(pattern, &mut Rng::new(variant as u64)) {
                        wanted.middle.push(sample);
                    }
                }
            },
            Cond::ContainsAny { needles, .. } if !needles.is_empty() => {
                wanted.middle.push(needles[variant % needles.len()].clone())
            }
            _ => {}
        }
    }

    fn leaf(&mut self, cond: &Cond) {
        let variant = self.variant;
        match cond {
            Cond::Has(name) => self.entry(&Path::Arg(name.clone())).present = true,
            Cond::Compare { path, op, value } => {
                let ty = self.set.schema.path_type(path, &[self.tool]);
                let bound = ty.as_ref().and_then(|ty| number(value, ty));
                let unit = 1;
                let wanted = self.entry(path);
                match (op, bound) {
                    (CmpOp::Eq, _) => wanted.equal = Some(value.clone()),
                    (CmpOp::Gt, Some(v)) => wanted.low = Some(v + unit),
                    (CmpOp::Ge, Some(v)) => wanted.low = Some(v),
                    (CmpOp::Lt, Some(v)) => wanted.high = Some(v - unit),
                    (CmpOp::Le, Some(v)) => wanted.high = Some(v),
                    _ => {}
                }
            }
            Cond::In { path, .. } | Cond::Text { path, .. } | Cond::ContainsAny { path, .. } => {
                Self::text(self.entry(path), cond, variant)
            }
            Cond::ListContains { path, value } => self.entry(path).elements.push(value.clone()),
            Cond::ListContainsAny { path, values } if !values.is_empty() => self
                .entry(path)
                .elements
                .push(values[variant % values.len()].clone()),
            Cond::Count {
                path,
                op: CmpOp::Ge | CmpOp::Gt | CmpOp::Eq,
                value,
            } => {
                let low = match cond {
                    Cond::Count { op: CmpOp::Gt, .. } => value + 1,
                    _ => *value,
                };
                self.entry(path).count_low = Some(low);
            }
            _ => {}
        }
    }
}

fn build_string(wanted: &Wanted) -> String {
    if let Some(IrValue::Str(s)) = &wanted.equal {
        return s.clone();
    }
    let mut text = wanted.prefix.clone();
    for part in &wanted.middle {
        text.push_str(part);
    }
    text.push_str(&wanted.suffix);
    text
}

fn build_value(wanted: &Wanted, ty: &Type, current: Option<&Value>) -> Option<Value> {
    Some(match ty {
        Type::String => Value::Str(build_string(wanted)),
        Type::Bool => match &wanted.equal {
            Some(IrValue::Bool(b)) => Value::Bool(*b),
            _ => current.cloned().unwrap_or(Value::Bool(false)),
        },
        Type::Enum { members } => match &wanted.equal {
            Some(IrValue::Enum(m)) => Value::Enum(members.iter().position(|x| x == m)? as u32),
            _ => current.cloned().unwrap_or(Value::Enum(0)),
        },
        Type::Int { range } => {
            let equal = wanted.equal.as_ref().and_then(|v| number(v, ty));
            let (lo, hi) = range.unwrap_or((i64::MIN, i64::MAX));
            let current = match current {
                Some(Value::Int(i)) => *i,
                _ => lo.max(0),
            };
            Value::Int(pick(equal, wanted, current).clamp(lo, hi))
        }
        Type::Decimal { range } => {
            let equal = wanted.equal.as_ref().and_then(|v| number(v, ty));
            let (lo, hi) = range
                .map(|(l, h)| (l.millionths(), h.millionths()))
                .unwrap_or((i64::MIN, i64::MAX));
            let current = match current {
                Some(Value::Decimal(d)) => d.millionths(),
                _ => lo.max(0),
            };
            Value::Decimal(Decimal::from_millionths(
                pick(equal, wanted, current).clamp(lo, hi),
            ))
        }
        Type::StringList => {
            let mut items = wanted.elements.clone();
            let element = wanted.element.as_deref().map(build_string);
            let needed = wanted.count_low.unwrap_or(0).max(0) as usize;
            match element {
                Some(element) => {
                    if wanted.every {
                        // Every element must pass: replace the required ones too.
                        items.clear();
                    }
                    while items.len() < needed.max(1) {
                        items.push(element.clone());
                    }
                }
                None => {
                    while items.len() < needed {
                        items.push(format!("item{}", items.len()));
                    }
                }
            }
            if items.is_empty() {
                return current.cloned().or(Some(Value::List(Vec::new())));
            }
            Value::List(items)
        }
    })
}

/// A number within the wanted bounds, as close to `current` as they allow.
fn pick(equal: Option<i64>, wanted: &Wanted, current: i64) -> i64 {
    if let Some(v) = equal {
        return v;
    }
    let mut value = current;
    if let Some(low) = wanted.low {
        value = value.max(low);
    }
    if let Some(high) = wanted.high {
        value = value.min(high);
    }
    value
}

/// `base` changed so that it satisfies the positive conjuncts of `conds` where it can.
pub fn construct(set: &PolicySet, base: &Request, conds: &[&Cond], variant: usize) -> Request {
    let mut collector = Collector {
        set,
        tool: base.tool,
        variant,
        wanted: Vec::new(),
    };
    for cond in conds {
        collector.collect(cond, None);
    }
    let schema = &set.schema;
    let mut request = base.clone();
    for (path, wanted) in &collector.wanted {
        match path {
            Path::Agent(name) => {
                if let Some(i) = schema.agent.iter().position(|a| &a.name == name) {
                    if let Some(v) = build_value(wanted, &schema.agent[i].ty, Some(&base.agent[i]))
                    {
                        request.agent[i] = v;
                    }
                }
            }
            Path::Context(name) => {
                if let Some(i) = schema.context.iter().position(|a| &a.name == name) {
                    if let Some(v) =
                        build_value(wanted, &schema.context[i].ty, Some(&base.context[i]))
                    {
                        request.context[i] = v;
                    }
                }
            }
            Path::Arg(name) => {
                let Some(tool) = schema.tools.get(base.tool) else {
                    continue;
                };
                if let Some(i) = tool.args.iter().position(|a| &a.name == name) {
                    let current = base.args[i].as_ref();
                    if let Some(v) = build_value(wanted, &tool.args[i].ty, current) {
                        request.args[i] = Some(v);
                    }
                }
            }
            Path::Session => request.session = build_string(wanted),
            Path::Element | Path::ToolName | Path::ToolKind => {}
        }
    }
    request
}

/// A generated request for one of the rule's tools (by `attempt`) with the agent placed in its
/// policy's scope: a tenant's rules are rarely hit by chance.
pub fn scoped_request(
    set: &PolicySet,
    generator: &mut RequestGenerator,
    rule: usize,
    attempt: usize,
) -> Request {
    let rule_ir = &set.rules[rule];
    let tool = rule_ir
        .tools
        .get(attempt % rule_ir.tools.len().max(1))
        .copied()
        .unwrap_or(0);
    let mut request = generator.request_for(tool);
    place_in_scope(set, &mut request, rule, attempt);
    request.counters.clear();
    request.approvals.iter_mut().for_each(|a| *a = false);
    request
}

/// Sets the agent attributes that put the request in the scope of the rule's policy (one of
/// its scope terms, picked by `attempt`, with every part of an `and`); nothing for a platform
/// policy.
pub fn place_in_scope(set: &PolicySet, request: &mut Request, rule: usize, attempt: usize) {
    let schema = &set.schema;
    let terms: &[ScopeTerm] = match &set.policies[set.rules[rule].policy].scope {
        Scope::All => &[],
        Scope::Any(terms) => terms,
    };
    let attribute = |name: &str| schema.agent.iter().position(|a| a.name == name);
    let Some(term) = terms.get(attempt % terms.len().max(1)) else {
        return;
    };
    for part in term.parts() {
        let (index, value) = match part {
            ScopeTerm::Tenant(t) => (attribute("tenant"), Value::Str(t.clone())),
            ScopeTerm::Agent(a) => (attribute("id"), Value::Str(a.clone())),
            ScopeTerm::Role(r) => {
                let index = attribute("role");
                let member = index.and_then(|i| match &schema.agent[i].ty {
                    Type::Enum { members } => members.iter().position(|m| m == r),
                    _ => None,
                });
                (index, Value::Enum(member.unwrap_or(0) as u32))
            }
            ScopeTerm::Both(_) => continue,
        };
        if let Some(index) = index {
            request.agent[index] = value;
        }
    }
}
