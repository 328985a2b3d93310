//! Realistic requests generated from a policy set, deterministically from a seed.
//!
//! Every tool is covered in turn; values are drawn from the literals the policies compare them
//! with (so conditions are exercised both ways), from the scopes' tenants and agent ids, from
//! declared ranges and enum members, with random strings mixed in. Used by `polctl bench` and by
//! property and differential tests.

use super::request::{Request, Value};
use super::sample::sample_matching;
use crate::decimal::Decimal;
use crate::ir::{
    Attribute, Cond, Path, PolicySet, Scope, ScopeTerm, TextOp, Type, Value as IrValue,
};
use std::collections::HashMap;

/// SplitMix64: small, fast and the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Literal values the policies use, by the path they are compared with.
#[derive(Default)]
struct Literals {
    strings: HashMap<Path, Vec<String>>,
    numbers: HashMap<Path, Vec<IrValue>>,
}

impl Literals {
    fn collect(set: &PolicySet) -> Literals {
        let mut literals = Literals::default();
        for rule in &set.rules {
            for cond in rule.when.iter().chain(rule.unless.iter()) {
                literals.walk(cond);
            }
        }
        for policy in &set.policies {
            if let Scope::Any(terms) = &policy.scope {
                for term in terms.iter().flat_map(ScopeTerm::parts) {
                    match term {
                        ScopeTerm::Tenant(t) => {
                            literals.add_string(Path::Agent("tenant".into()), t)
                        }
                        ScopeTerm::Agent(a) => literals.add_string(Path::Agent("id".into()), a),
                        ScopeTerm::Role(_) | ScopeTerm::Both(_) => {}
                    }
                }
            }
        }
        // An attribute's declared `known` values are what requests usually carry.
        let declared = [
            (&set.schema.agent, Path::Agent as fn(String) -> Path),
            (&set.schema.context, Path::Context as fn(String) -> Path),
        ];
        for (attributes, path) in declared {
            for attribute in attributes.iter() {
                for value in attribute.known.iter().flatten() {
                    literals.add_string(path(attribute.name.clone()), value);
                }
            }
        }
        literals
    }

    fn add_string(&mut self, path: Path, value: &str) {
        let entry = self.strings.entry(path).or_default();
        if !entry.iter().any(|v| v == value) {
            entry.push(value.to_owned());
        }
    }

    fn add(&mut self, path: &Path, value: &IrValue) {
        match value {
            IrValue::Str(s) => self.add_string(path.clone(), s),
            IrValue::Int(_) | IrValue::Decimal(_) => self
                .numbers
                .entry(path.clone())
                .or_default()
                .push(value.clone()),
            _ => {}
        }
    }

    /// Collects the values a condition compares with, by the path they are compared to.
    fn walk(&mut self, cond: &Cond) {
        cond.for_each_leaf(&mut |path, leaf| match leaf {
            Cond::Compare { value, .. } => self.add(path, value),
            Cond::In { values, .. } => values.iter().for_each(|v| self.add(path, v)),
            Cond::Text {
                op: TextOp::Matches,
                pattern,
                ..
            } => {
                // A few strings the regex matches, from different branches.
                for seed in 0..3 {
                    if let Some(sample) = sample_matching(pattern, &mut Rng::new(seed)) {
                        self.add_string(path.clone(), &sample);
                    }
                }
            }
            Cond::Text { pattern, .. } => {
                // Values that satisfy a prefix, suffix or substring test.
                self.add_string(path.clone(), &format!("x{pattern}"));
                self.add_string(path.clone(), &format!("{pattern}x"));
            }
            Cond::ContainsAny { needles, .. } => needles
                .iter()
                .for_each(|n| self.add_string(path.clone(), &format!("a {n} b"))),
            Cond::ListContains { value, .. } => self.add_string(path.clone(), value),
            Cond::ListContainsAny { values, .. } => {
                values.iter().for_each(|v| self.add_string(path.clone(), v))
            }
            _ => {}
        });
    }
}

const WORDS: &[&str] = &[
    "alpha",
    "bob@customer.example",
    "hello world",
    "o-1234",
    "#general",
    "SELECT 1",
    "report",
    "",
];

/// Generates requests that fit a policy set's schema.
pub struct RequestGenerator<'s> {
    set: &'s PolicySet,
    literals: Literals,
    rng: Rng,
    next_tool: usize,
}

impl<'s> RequestGenerator<'s> {
    pub fn new(set: &'s PolicySet, seed: u64) -> RequestGenerator<'s> {
        RequestGenerator {
            set,
            literals: Literals::collect(set),
            rng: Rng::new(seed),
            next_tool: 0,
        }
    }

    fn string(&mut self, path: &Path) -> String {
        if let Some(known) = self.literals.strings.get(path) {
            if !known.is_empty() && self.rng.chance(70) {
                return known[self.rng.below(known.len())].clone();
            }
        }
        WORDS[self.rng.below(WORDS.len())].to_owned()
    }

    fn value(&mut self, path: &Path, ty: &Type) -> Value {
        match ty {
            Type::String => Value::Str(self.string(path)),
            Type::Bool => Value::Bool(self.rng.chance(50)),
            Type::Enum { members } => Value::Enum(self.rng.below(members.len()) as u32),
            Type::StringList => {
                let count = self.rng.below(4);
                Value::List((0..count).map(|_| self.string(path)).collect())
            }
            Type::Int { range } => {
                let (low, high) = range.unwrap_or((-1000, 100_000));
                let literal = self.literals.numbers.get(path).and_then(|values| {
                    let value = &values[self.rng.below(values.len())];
                    match value {
                        IrValue::Int(i) => Some(*i),
                        _ => None,
                    }
                });
                let value = match literal {
                    Some(i) if self.rng.chance(60) => i + self.rng.below(3) as i64 - 1,
                    _ => {
                        low + (self.rng.next_u64() % ((high - low) as u64).saturating_add(1)) as i64
                    }
                };
                Value::Int(value.clamp(low, high))
            }
            Type::Decimal { range } => {
                let (low, high) = range
                    .map(|(l, h)| (l.millionths(), h.millionths()))
                    .unwrap_or((0, 100_000_000_000));
                let literal = self.literals.numbers.get(path).and_then(|values| {
                    match &values[self.rng.below(values.len())] {
                        IrValue::Decimal(d) => Some(d.millionths()),
                        IrValue::Int(i) => i.checked_mul(1_000_000),
                        _ => None,
                    }
                });
                let value = match literal {
                    Some(d) if self.rng.chance(60) => d + (self.rng.below(3) as i64 - 1) * 10_000,
                    // Whole cents, as money usually is.
                    _ => {
                        low + ((self.rng.next_u64() % ((high - low) as u64 / 10_000 + 1)) * 10_000)
                            as i64
                    }
                };
                Value::Decimal(Decimal::from_millionths(value.clamp(low, high)))
            }
        }
    }

    fn attributes(&mut self, declared: &[Attribute], path: fn(String) -> Path) -> Vec<Value> {
        declared
            .iter()
            .map(|a| self.value(&path(a.name.clone()), &a.ty))
            .collect()
    }

    /// Restarts the random sequence: the same seed gives the same requests from here on.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// The next request; tools are covered round-robin.
    pub fn next_request(&mut self) -> Request {
        let tool = self.next_tool % self.set.schema.tools.len().max(1);
        self.next_tool += 1;
        self.request_for(tool)
    }

    /// A request for the tool with this index.
    pub fn request_for(&mut self, tool: usize) -> Request {
        let schema = &self.set.schema;
        let agent = self.attributes(&schema.agent, Path::Agent);
        let context = self.attributes(&schema.context, Path::Context);
        let args = match schema.tools.get(tool) {
            Some(declared) => declared
                .args
                .iter()
                .map(|a| {
                    if a.optional && self.rng.chance(50) {
                        None
                    } else {
                        Some(self.value(&Path::Arg(a.name.clone()), &a.ty))
                    }
                })
                .collect(),
            None => Vec::new(),
        };
        let approvals = (0..schema.approvers.len())
            .map(|_| self.rng.chance(30))
            .collect();
        let counters = self
            .set
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| match &rule.effect {
                crate::ir::Effect::Limit(limit)
                    if rule.tools.contains(&tool) && self.rng.chance(50) =>
                {
                    Some((i, self.rng.next_u64() % (limit.max + 2)))
                }
                _ => None,
            })
            .collect();
        Request {
            agent,
            context,
            tool,
            args,
            session: format!("s-{}", self.rng.below(50)),
            approvals,
            counters,
            time: None,
        }
    }
}

/// A decoded request back in the JSON shape of language.md §1 (decoding it gives it back).
pub fn request_to_json(set: &PolicySet, request: &Request) -> serde_json::Value {
    use serde_json::{json, Map, Value as Json};
    fn value(ty: &Type, value: &Value) -> Json {
        match (value, ty) {
            (Value::Str(s), _) => json!(s),
            (Value::Int(i), _) => json!(i),
            (Value::Decimal(d), _) => serde_json::from_str(&d.to_string()).unwrap_or(Json::Null),
            (Value::Bool(b), _) => json!(b),
            (Value::Enum(i), Type::Enum { members }) => json!(members.get(*i as usize)),
            (Value::Enum(_), _) => Json::Null,
            (Value::List(items), _) => json!(items),
        }
    }
    let object = |declared: &[Attribute], values: &[Value]| -> Json {
        Json::Object(
            declared
                .iter()
                .zip(values)
                .map(|(a, v)| (a.name.clone(), value(&a.ty, v)))
                .collect::<Map<_, _>>(),
        )
    };
    let schema = &set.schema;
    let tool = &schema.tools[request.tool.min(schema.tools.len().saturating_sub(1))];
    let args: Map<String, Json> = tool
        .args
        .iter()
        .zip(&request.args)
        .filter_map(|(a, v)| v.as_ref().map(|v| (a.name.clone(), value(&a.ty, v))))
        .collect();
    let approvals: Vec<&String> = schema
        .approvers
        .iter()
        .zip(&request.approvals)
        .filter(|(_, approved)| **approved)
        .map(|(g, _)| g)
        .collect();
    let counters: Map<String, Json> = request
        .counters
        .iter()
        .map(|(rule, count)| (set.rules[*rule].id.clone(), json!(count)))
        .collect();
    let mut json = json!({
        "agent": object(&schema.agent, &request.agent),
        "context": object(&schema.context, &request.context),
        "tool": tool.name,
        "args": args,
        "session": request.session,
        "approvals": approvals,
        "counters": counters,
    });
    if let Some(time) = request.time {
        json["time"] = json!(super::time::format_rfc3339(time));
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compile, SourceSet};

    /// An attribute's `known` values are what generated requests carry (70 % of the time, as
    /// for the set's own literals), though no rule names them.
    #[test]
    fn known_values_are_drawn() {
        let source = r#"
schema {
  agent { id: string, tenant: string known { "acme", "globex" } }
  context { region: string known { "eu" } }
  tool read_ticket: read { id: string }
}
policy p {
  rule r:
    allow read_ticket
}
"#;
        let set = compile(&SourceSet::from_files(vec![(
            "set.pol".to_owned(),
            source.to_owned(),
        )]))
        .set
        .expect("compiles");
        let mut generator = RequestGenerator::new(&set, 7);
        let (mut tenants, mut regions) = (Vec::new(), 0);
        for _ in 0..200 {
            let json = request_to_json(&set, &generator.next_request());
            tenants.push(json["agent"]["tenant"].as_str().unwrap_or("").to_owned());
            regions += usize::from(json["context"]["region"] == "eu");
        }
        for known in ["acme", "globex"] {
            assert!(tenants.iter().any(|t| t == known), "{known} never drawn");
        }
        assert!(regions > 100 && regions < 200, "{regions} of 200 in eu");
    }
}
