//! The reference evaluator: exactly the decision semantics of language.md §3.
//!
//! [`Evaluator::new`] compiles a [`PolicySet`] into a plan once; [`Evaluator::decide`] then
//! decides a decoded [`Request`] without allocating beyond the result. [`Evaluator::explain`]
//! is the slow path behind `polctl eval`'s human output and reuses the same compiled conditions,
//! so explanations cannot disagree with decisions.

pub mod fast_hash;
pub mod generate;
pub mod json;
mod plan;
mod request;
mod sample;
pub mod time;

pub use plan::PlanError;
pub use request::{decode_request, decode_value, CounterIndex, Request, RequestError, Value};
pub use sample::sample_matching;

use crate::display::duration;
use crate::ir::{Cond, Effect, Path, PolicySet, Scope, ScopeTerm, Type};
use fast_hash::FastMap;
use plan::{compile, Target, C};
use serde::Serialize;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    Deny,
    RequireApproval,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::RequireApproval => "require_approval",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        match text {
            "allow" => Some(Outcome::Allow),
            "deny" => Some(Outcome::Deny),
            "require_approval" => Some(Outcome::RequireApproval),
            _ => None,
        }
    }
}

/// Why a deny was decided.
/// What a change does to access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Deny or require_approval → allow (including a raised or removed limit).
    Widen,
    /// Allow → deny or require_approval.
    Narrow,
    /// Who must approve changes (deny ↔ require_approval, or other groups).
    Approval,
}

impl ChangeKind {
    /// The kind of a change from one decision to another.
    pub fn of(from: Outcome, to: Outcome) -> ChangeKind {
        match (from, to) {
            (_, Outcome::Allow) if from != Outcome::Allow => ChangeKind::Widen,
            (Outcome::Allow, _) => ChangeKind::Narrow,
            _ => ChangeKind::Approval,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Widen => "widen",
            ChangeKind::Narrow => "narrow",
            ChangeKind::Approval => "approval",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyCause {
    /// Matching deny rules.
    Rules,
    /// No allow rule matched: the rule is `default`.
    Default,
    /// A limit was reached.
    Limit,
}

/// A decision with rule indexes; [`Evaluator::render`] turns it into the JSON shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The deciding rules (indexes into `PolicySet::rules`), ordered by rule id.
    pub rules: Vec<usize>,
    /// For `require_approval`: the missing approver groups (indexes), in schema order.
    pub approvers: Vec<usize>,
    pub cause: Option<DenyCause>,
}

/// A decision in the JSON shape of language.md §1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionJson {
    pub decision: Outcome,
    pub rules: Vec<String>,
    pub reasons: Vec<String>,
    pub approvers: Vec<String>,
    pub obligations: Vec<ObligationJson>,
    /// For an allow (or a deny by a limit): every limit the action counts against, so that a
    /// gateway can keep the counters without matching limits itself.
    pub limits: Vec<LimitJson>,
    pub policy_version: String,
}

/// One limit a decision counts against: the counter's identity (rule, key value, window) and
/// its state before this action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitJson {
    pub rule: String,
    /// The value of the limit's key (`per agent.id`: the agent's id); `null` for a limit with
    /// one counter for everyone.
    pub key: Option<String>,
    /// The start of the fixed window (aligned to the Unix epoch) the request's `time` falls
    /// in; `null` when the request carries no time.
    pub window_start: Option<String>,
    pub window_seconds: u64,
    /// The counter before this action (the request's `counters`, or 0).
    pub used: u64,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObligationJson {
    pub rule: String,
    pub name: String,
    pub text: String,
}

/// A rule that can match a tool, with its conditions compiled for that tool.
#[derive(Clone)]
struct Candidate {
    rule: usize,
    policy: usize,
    when: Option<C>,
    unless: Option<C>,
    /// For a rule filed under one part of an `and` scope: the other parts, tested when the
    /// bucket is visited.
    also: Option<Vec<ScopeTest>>,
}

/// Candidates grouped by the scopes that can make them apply, so a decision visits only the
/// rules whose policy applies to the request (no scope test on the hot path). A policy scoped to
/// `tenant "a" or tenant "b"` has its rules in both buckets.
#[derive(Default)]
struct Buckets {
    always: Vec<Candidate>,
    tenant: FastMap<u32, Vec<Candidate>>,
    agent: FastMap<u32, Vec<Candidate>>,
    role: FastMap<u32, Vec<Candidate>>,
}

impl Buckets {
    fn add(&mut self, candidate: Candidate, scope: Option<&[ScopeTest]>) {
        match scope {
            None => self.always.push(candidate),
            Some(terms) => {
                for term in terms {
                    // A conjunction is filed under its first part; the others are tested.
                    let (first, also) = match term {
                        ScopeTest::Both(parts) => match parts.split_first() {
                            Some((first, rest)) => (first, Some(rest.to_vec())),
                            None => continue,
                        },
                        simple => (simple, None),
                    };
                    let bucket = match first {
                        ScopeTest::Tenant(t) => self.tenant.entry(*t).or_default(),
                        ScopeTest::Agent(a) => self.agent.entry(*a).or_default(),
                        ScopeTest::Role(r) => self.role.entry(*r).or_default(),
                        ScopeTest::Both(_) => continue,
                    };
                    let mut filed = candidate.clone();
                    filed.also = also;
                    bucket.push(filed);
                }
            }
        }
    }

    /// The candidates whose policy applies to a request with this key. A candidate in two
    /// matching buckets is visited twice; callers deduplicate the rules they collect.
    /// The rules of the applicable candidates whose conditions hold (a rule in two scope
    /// buckets may appear twice; callers sort and deduplicate).
    fn matching(&self, key: &ScopeKey, request: &Request) -> Vec<usize> {
        self.applicable(key)
            .filter(|c| Evaluator::matches(c, request))
            .map(|c| c.rule)
            .collect()
    }

    fn applicable<'p>(&'p self, key: &'p ScopeKey) -> impl Iterator<Item = &'p Candidate> {
        let pick = |map: &'p FastMap<u32, Vec<Candidate>>, id: Option<u32>| {
            id.and_then(|id| map.get(&id))
                .map(Vec::as_slice)
                .unwrap_or(&[])
        };
        self.always
            .iter()
            .chain(pick(&self.tenant, key.tenant))
            .chain(pick(&self.agent, key.agent))
            .chain(pick(&self.role, key.role))
            .filter(|c| {
                c.also
                    .as_ref()
                    .is_none_or(|also| also.iter().all(|t| t.holds(key)))
            })
    }

    /// Every candidate once, whatever its scope (for explanations).
    fn all(&self) -> Vec<&Candidate> {
        let mut all: Vec<&Candidate> = self
            .always
            .iter()
            .chain(self.tenant.values().flatten())
            .chain(self.agent.values().flatten())
            .chain(self.role.values().flatten())
            .collect();
        all.sort_by_key(|c| c.rule);
        all.dedup_by_key(|c| c.rule);
        all
    }
}

#[derive(Default)]
struct ToolPlan {
    denies: Buckets,
    approvals: Buckets,
    allows: Buckets,
    limits: Buckets,
}

/// A scope term with its string interned.
#[derive(Clone)]
enum ScopeTest {
    Tenant(u32),
    Agent(u32),
    Role(u32),
    /// Every part (none of them `Both`).
    Both(Vec<ScopeTest>),
}

impl ScopeTest {
    fn holds(&self, key: &ScopeKey) -> bool {
        match self {
            ScopeTest::Tenant(t) => key.tenant == Some(*t),
            ScopeTest::Agent(a) => key.agent == Some(*a),
            ScopeTest::Role(r) => key.role == Some(*r),
            ScopeTest::Both(parts) => parts.iter().all(|part| part.holds(key)),
        }
    }
}

/// The interned scope-relevant attributes of one request.
struct ScopeKey {
    tenant: Option<u32>,
    agent: Option<u32>,
    role: Option<u32>,
}

pub struct Evaluator {
    set: PolicySet,
    by_tool: Vec<ToolPlan>,
    /// Per policy: `None` for `applies to all`.
    scopes: Vec<Option<Vec<ScopeTest>>>,
    /// Scope strings (tenants and agent ids) to their interned ids.
    interned: FastMap<String, u32>,
    tenant_attribute: Option<usize>,
    agent_id_attribute: Option<usize>,
    role_attribute: Option<usize>,
    /// Per rule: its position in id order, so decisions list rules deterministically.
    rank: Vec<u32>,
    counters: CounterIndex,
    policy_version: String,
}

impl Evaluator {
    /// Compiles the plan. Fails only if a regex exceeds the `regex` crate's limits.
    pub fn new(set: PolicySet, policy_version: impl Into<String>) -> Result<Evaluator, PlanError> {
        let schema = &set.schema;
        let attribute = |name: &str| schema.agent.iter().position(|a| a.name == name);
        let (tenant_attribute, agent_id_attribute, role_attribute) =
            (attribute("tenant"), attribute("id"), attribute("role"));
        let mut interned: FastMap<String, u32> = FastMap::default();
        let mut intern = |text: &str| {
            let next = interned.len() as u32;
            *interned.entry(text.to_owned()).or_insert(next)
        };
        let role_members: &[String] = match role_attribute.map(|i| &schema.agent[i].ty) {
            Some(Type::Enum { members }) => members,
            _ => &[],
        };
        let scopes: Vec<Option<Vec<ScopeTest>>> = set
            .policies
            .iter()
            .map(|policy| match &policy.scope {
                Scope::All => None,
                Scope::Any(terms) => {
                    // `None`: a term no request can meet (a role the schema does not have).
                    fn test(
                        term: &ScopeTerm,
                        intern: &mut dyn FnMut(&str) -> u32,
                        role_members: &[String],
                    ) -> Option<ScopeTest> {
                        match term {
                            ScopeTerm::Tenant(t) => Some(ScopeTest::Tenant(intern(t))),
                            ScopeTerm::Agent(a) => Some(ScopeTest::Agent(intern(a))),
                            ScopeTerm::Role(r) => role_members
                                .iter()
                                .position(|m| m == r)
                                .map(|i| ScopeTest::Role(i as u32)),
                            ScopeTerm::Both(parts) => parts
                                .iter()
                                .map(|part| test(part, intern, role_members))
                                .collect::<Option<Vec<_>>>()
                                .map(ScopeTest::Both),
                        }
                    }
                    Some(
                        terms
                            .iter()
                            .filter_map(|term| test(term, &mut intern, role_members))
                            .collect(),
                    )
                }
            })
            .collect();

        let mut by_tool: Vec<ToolPlan> = (0..schema.tools.len())
            .map(|_| ToolPlan::default())
            .collect();
        for (index, rule) in set.rules.iter().enumerate() {
            for &tool in &rule.tools {
                let Some(tool_decl) = schema.tools.get(tool) else {
                    continue;
                };
                let target = Target {
                    set: &set,
                    tool: tool_decl,
                };
                let compiled = |cond: &Option<Cond>| -> Result<Option<C>, PlanError> {
                    cond.as_ref()
                        .map(|c| compile(c, &target))
                        .transpose()
                        .map_err(|message| PlanError {
                            rule: rule.id.clone(),
                            message,
                        })
                };
                let candidate = Candidate {
                    rule: index,
                    policy: rule.policy,
                    when: compiled(&rule.when)?,
                    unless: compiled(&rule.unless)?,
                    also: None,
                };
                // A condition that folded to a constant false can never match this tool.
                if matches!(candidate.when, Some(C::Const(false)))
                    || matches!(candidate.unless, Some(C::Const(true)))
                {
                    continue;
                }
                let plan = &mut by_tool[tool];
                let scope: Option<&[ScopeTest]> = scopes
                    .get(rule.policy)
                    .and_then(|s: &Option<Vec<ScopeTest>>| s.as_deref());
                match rule.effect {
                    Effect::Deny { .. } => plan.denies.add(candidate, scope),
                    Effect::RequireApproval { .. } => plan.approvals.add(candidate, scope),
                    Effect::Allow { .. } => plan.allows.add(candidate, scope),
                    Effect::Limit(_) => plan.limits.add(candidate, scope),
                }
            }
        }
        let mut order: Vec<usize> = (0..set.rules.len()).collect();
        order.sort_by(|a, b| set.rules[*a].id.cmp(&set.rules[*b].id));
        let mut rank = vec![0u32; set.rules.len()];
        for (position, rule) in order.into_iter().enumerate() {
            rank[rule] = position as u32;
        }
        let counters = CounterIndex::new(&set);
        Ok(Evaluator {
            set,
            by_tool,
            scopes,
            interned,
            tenant_attribute,
            agent_id_attribute,
            role_attribute,
            rank,
            counters,
            policy_version: policy_version.into(),
        })
    }

    pub fn set(&self) -> &PolicySet {
        &self.set
    }

    /// The policy version decisions carry (the set's content hash).
    pub fn policy_version(&self) -> &str {
        &self.policy_version
    }

    /// Decodes a JSON request against this evaluator's schema.
    pub fn decode(&self, json: &serde_json::Value) -> Result<Request, RequestError> {
        decode_request(&self.set, &self.counters, &json::JsonRef::from_value(json))
    }

    /// [`Evaluator::decode`] on a borrowed tree: what a hot path that parses text uses (no
    /// `Value` in between).
    pub fn decode_ref(&self, json: &json::JsonRef) -> Result<Request, RequestError> {
        decode_request(&self.set, &self.counters, json)
    }

    fn interned_string(&self, request: &Request, attribute: Option<usize>) -> Option<u32> {
        let value = request.agent.get(attribute?)?;
        let text = match value {
            Value::Str(s) => s.as_str(),
            Value::Enum(i) => match &self.set.schema.agent[attribute?].ty {
                Type::Enum { members } => members.get(*i as usize)?.as_str(),
                _ => return None,
            },
            _ => return None,
        };
        self.interned.get(text).copied()
    }

    fn scope_key(&self, request: &Request) -> ScopeKey {
        ScopeKey {
            tenant: self.interned_string(request, self.tenant_attribute),
            agent: self.interned_string(request, self.agent_id_attribute),
            role: match self.role_attribute.and_then(|i| request.agent.get(i)) {
                Some(Value::Enum(member)) => Some(*member),
                _ => None,
            },
        }
    }

    fn in_scope(&self, policy: usize, key: &ScopeKey) -> bool {
        match self.scopes.get(policy) {
            Some(None) => true,
            Some(Some(terms)) => terms.iter().any(|term| term.holds(key)),
            None => false,
        }
    }

    /// Whether a candidate taken from an applicable bucket matches: its conditions hold.
    fn matches(candidate: &Candidate, request: &Request) -> bool {
        candidate
            .when
            .as_ref()
            .is_none_or(|c| c.eval(request, None))
            && !candidate
                .unless
                .as_ref()
                .is_some_and(|c| c.eval(request, None))
    }

    /// Rules in id order, each once.
    fn sorted(&self, mut rules: Vec<usize>) -> Vec<usize> {
        rules.sort_by_key(|r| self.rank[*r]);
        rules.dedup();
        rules
    }

    /// Decides one request (language.md §3).
    pub fn decide(&self, request: &Request) -> Decision {
        self.decide_skipping(request, &|_| false)
    }

    /// Decides with the limit and approval rules for which `skipped` holds left out (a
    /// runtime's fail-open circuit breaker, runtime.md §3.6); allows and denies still apply.
    /// With nothing skipped this is [`Evaluator::decide`].
    pub fn decide_skipping(&self, request: &Request, skipped: &dyn Fn(usize) -> bool) -> Decision {
        let deny_default = || Decision {
            outcome: Outcome::Deny,
            rules: Vec::new(),
            approvers: Vec::new(),
            cause: Some(DenyCause::Default),
        };
        let Some(plan) = self.by_tool.get(request.tool) else {
            return deny_default();
        };
        let key = self.scope_key(request);

        // 2. Any matching deny denies; every matching deny is reported.
        let denies: Vec<usize> = plan.denies.matching(&key, request);
        if !denies.is_empty() {
            return Decision {
                outcome: Outcome::Deny,
                rules: self.sorted(denies),
                approvers: Vec::new(),
                cause: Some(DenyCause::Rules),
            };
        }

        // 3. Any matching approval rule whose groups have not all approved.
        let mut waiting = Vec::new();
        let mut missing = Vec::new();
        for candidate in plan
            .approvals
            .applicable(&key)
            .filter(|c| !skipped(c.rule) && Self::matches(c, request))
        {
            let Effect::RequireApproval { groups } = &self.set.rules[candidate.rule].effect else {
                continue;
            };
            // A rule in two matching scope buckets is considered once.
            if waiting.contains(&candidate.rule) {
                continue;
            }
            let before = missing.len();
            for group in groups {
                if let Some(index) = self.set.schema.approvers.iter().position(|g| g == group) {
                    if !request.approvals.get(index).copied().unwrap_or(false) {
                        missing.push(index);
                    }
                }
            }
            if missing.len() > before {
                waiting.push(candidate.rule);
            }
        }
        if !waiting.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            return Decision {
                outcome: Outcome::RequireApproval,
                rules: self.sorted(waiting),
                approvers: missing,
                cause: None,
            };
        }

        // 4. A matching allow is a candidate allow; none is a default deny.
        let allows: Vec<usize> = plan.allows.matching(&key, request);
        if allows.is_empty() {
            return deny_default();
        }

        // 5. Every matching limit whose counter already holds its maximum denies.
        let reached: Vec<usize> = plan
            .limits
            .applicable(&key)
            .filter(|c| {
                let Effect::Limit(limit) = &self.set.rules[c.rule].effect else {
                    return false;
                };
                !skipped(c.rule)
                    && request.counter(c.rule) >= limit.max
                    && Self::matches(c, request)
            })
            .map(|c| c.rule)
            .collect();
        if !reached.is_empty() {
            return Decision {
                outcome: Outcome::Deny,
                rules: self.sorted(reached),
                approvers: Vec::new(),
                cause: Some(DenyCause::Limit),
            };
        }
        Decision {
            outcome: Outcome::Allow,
            rules: self.sorted(allows),
            approvers: Vec::new(),
            cause: None,
        }
    }

    /// The rules a request brings into evaluation: those for its tool whose scope applies to
    /// it, whether their conditions hold or not (a runtime's fail-closed circuit breaker denies
    /// a request that one of an open policy's rules would evaluate, runtime.md §3.6).
    pub fn rules_in_play(&self, request: &Request) -> Vec<usize> {
        let Some(plan) = self.by_tool.get(request.tool) else {
            return Vec::new();
        };
        let key = self.scope_key(request);
        let mut rules: Vec<usize> = [&plan.denies, &plan.approvals, &plan.allows, &plan.limits]
            .into_iter()
            .flat_map(|buckets| buckets.applicable(&key).map(|c| c.rule))
            .collect();
        rules.sort_unstable();
        rules.dedup();
        rules
    }

    /// The limit rules that match a request (in scope, conditions hold), whatever it is decided:
    /// the counters a runtime must look up before deciding it, in rule id order.
    pub fn matching_limits(&self, request: &Request) -> Vec<usize> {
        let Some(plan) = self.by_tool.get(request.tool) else {
            return Vec::new();
        };
        self.sorted(plan.limits.matching(&self.scope_key(request), request))
    }

    /// The value of a limit rule's key in a request, as text (`None` for a global limit, or a
    /// key the request does not carry).
    pub fn limit_key_value(&self, request: &Request, rule: usize) -> Option<String> {
        match &self.set.rules.get(rule)?.effect {
            Effect::Limit(limit) => self.key_value(request, limit.key.as_ref()?),
            _ => None,
        }
    }

    /// The limits a decided request counts against: for an allow, or a deny by a limit.
    pub fn limits_used(&self, request: &Request, decision: &Decision) -> Vec<LimitJson> {
        let counts = decision.outcome == Outcome::Allow || decision.cause == Some(DenyCause::Limit);
        let Some(plan) = self.by_tool.get(request.tool).filter(|_| counts) else {
            return Vec::new();
        };
        let key = self.scope_key(request);
        let matching: Vec<usize> = plan.limits.matching(&key, request);
        self.sorted(matching)
            .into_iter()
            .filter_map(|rule| {
                let Effect::Limit(limit) = &self.set.rules[rule].effect else {
                    return None;
                };
                let window = limit.window_seconds.min(i64::MAX as u64) as i64;
                Some(LimitJson {
                    rule: self.set.rules[rule].id.clone(),
                    key: limit
                        .key
                        .as_ref()
                        .and_then(|path| self.key_value(request, path)),
                    window_start: request
                        .time
                        .map(|t| time::format_rfc3339(t - t.rem_euclid(window.max(1)))),
                    window_seconds: limit.window_seconds,
                    used: request.counter(rule),
                    max: limit.max,
                })
            })
            .collect()
    }

    /// A limit key's value in a request, as text.
    fn key_value(&self, request: &Request, path: &Path) -> Option<String> {
        let schema = &self.set.schema;
        let (value, ty) = match path {
            Path::Agent(name) => {
                let at = schema.agent.iter().position(|a| &a.name == name)?;
                (request.agent.get(at)?, &schema.agent[at].ty)
            }
            Path::Context(name) => {
                let at = schema.context.iter().position(|a| &a.name == name)?;
                (request.context.get(at)?, &schema.context[at].ty)
            }
            Path::Arg(name) => {
                let tool = schema.tools.get(request.tool)?;
                let at = tool.args.iter().position(|a| &a.name == name)?;
                (request.args.get(at)?.as_ref()?, &tool.args[at].ty)
            }
            Path::Session => return Some(request.session.clone()),
            Path::ToolName | Path::ToolKind | Path::Element => return None,
        };
        Some(match (value, ty) {
            (Value::Str(s), _) => s.clone(),
            (Value::Int(i), _) => i.to_string(),
            (Value::Decimal(d), _) => d.to_string(),
            (Value::Bool(b), _) => b.to_string(),
            (Value::Enum(i), Type::Enum { members }) => members.get(*i as usize)?.clone(),
            (Value::Enum(i), _) => i.to_string(),
            (Value::List(items), _) => items.join(","),
        })
    }

    /// The decision in the JSON shape of language.md §1, with the limits the request counts
    /// against.
    pub fn render(&self, request: &Request, decision: &Decision) -> DecisionJson {
        let rules = &self.set.rules;
        let reasons = match decision.cause {
            Some(DenyCause::Default) => vec!["no rule allows this request".to_owned()],
            _ => decision
                .rules
                .iter()
                .filter_map(|&r| {
                    let rule = &rules[r];
                    match (&rule.because, &rule.effect) {
                        (Some(because), _) => Some(because.clone()),
                        (None, Effect::Limit(limit)) => Some(format!(
                            "limit of {} per {} reached",
                            limit.max,
                            duration(limit.window_seconds)
                        )),
                        (None, _) => None,
                    }
                })
                .collect(),
        };
        let obligations = if decision.outcome == Outcome::Allow {
            decision
                .rules
                .iter()
                .flat_map(|&r| match &rules[r].effect {
                    Effect::Allow { obligations } => obligations
                        .iter()
                        .map(|o| ObligationJson {
                            rule: rules[r].id.clone(),
                            name: o.name.clone(),
                            text: o.text.clone(),
                        })
                        .collect(),
                    _ => Vec::new(),
                })
                .collect()
        } else {
            Vec::new()
        };
        DecisionJson {
            decision: decision.outcome,
            rules: match decision.cause {
                Some(DenyCause::Default) => vec!["default".to_owned()],
                _ => decision
                    .rules
                    .iter()
                    .map(|&r| rules[r].id.clone())
                    .collect(),
            },
            reasons,
            approvers: decision
                .approvers
                .iter()
                .map(|&g| self.set.schema.approvers[g].clone())
                .collect(),
            obligations,
            limits: self.limits_used(request, decision),
            policy_version: self.policy_version.clone(),
        }
    }

    /// Whether a condition (one compiled with [`crate::compile_condition`]) holds for a
    /// request; `false` for a request whose tool is unknown.
    pub fn condition_holds(&self, cond: &Cond, request: &Request) -> bool {
        let Some(tool) = self.set.schema.tools.get(request.tool) else {
            return false;
        };
        let target = Target {
            set: &self.set,
            tool,
        };
        compile(cond, &target).is_ok_and(|c| c.eval(request, None))
    }

    /// For every rule that names the request's tool (and whose conditions do not fold to a
    /// constant false for it): whether its policy applies and whether its condition (`when`
    /// and not `unless`) holds. Rules not listed do not match. The analysis uses this to test
    /// candidate witnesses without asking the solver.
    pub fn rule_states(&self, request: &Request) -> Vec<RuleState> {
        let Some(plan) = self.by_tool.get(request.tool) else {
            return Vec::new();
        };
        let key = self.scope_key(request);
        let everything = [&plan.denies, &plan.approvals, &plan.allows, &plan.limits];
        everything
            .into_iter()
            .flat_map(Buckets::all)
            .map(|candidate| RuleState {
                rule: candidate.rule,
                in_scope: self.in_scope(candidate.policy, &key),
                condition: Self::matches(candidate, request),
            })
            .collect()
    }

    /// How every rule that names the request's tool fared: the slow path behind human output.
    pub fn explain(&self, request: &Request) -> Vec<RuleTrace> {
        let Some(plan) = self.by_tool.get(request.tool) else {
            return Vec::new();
        };
        let key = self.scope_key(request);
        let tool = &self.set.schema.tools[request.tool];
        let mut traces = Vec::new();
        let everything = [&plan.denies, &plan.approvals, &plan.allows, &plan.limits];
        for candidate in everything.into_iter().flat_map(Buckets::all) {
            let rule = &self.set.rules[candidate.rule];
            let status = if !self.in_scope(candidate.policy, &key) {
                RuleStatus::OutOfScope
            } else if candidate
                .when
                .as_ref()
                .is_some_and(|c| !c.eval(request, None))
            {
                RuleStatus::WhenFailed(first_failing(rule.when.as_ref(), &self.set, tool, request))
            } else if candidate
                .unless
                .as_ref()
                .is_some_and(|c| c.eval(request, None))
            {
                RuleStatus::UnlessHeld(
                    rule.unless
                        .as_ref()
                        .map(|cond| {
                            crate::display::WithNames {
                                cond,
                                names: &self.set.named_values,
                            }
                            .to_string()
                        })
                        .unwrap_or_default(),
                )
            } else {
                match &rule.effect {
                    Effect::Limit(limit) => RuleStatus::Limit {
                        count: request.counter(candidate.rule),
                        max: limit.max,
                    },
                    _ => RuleStatus::Matched,
                }
            };
            traces.push(RuleTrace {
                rule: candidate.rule,
                status,
            });
        }
        traces.sort_by_key(|t| self.rank[t.rule]);
        traces
    }
}

/// The first top-level conjunct of `when` that is false for this request, as source text.
fn first_failing(
    when: Option<&Cond>,
    set: &PolicySet,
    tool: &crate::ir::Tool,
    request: &Request,
) -> String {
    let Some(when) = when else {
        return String::new();
    };
    let target = Target { set, tool };
    let conjuncts: Vec<&Cond> = match when {
        Cond::And(items) => items.iter().collect(),
        other => vec![other],
    };
    conjuncts
        .into_iter()
        .find(|c| compile(c, &target).is_ok_and(|c| !c.eval(request, None)))
        .map(|cond| {
            crate::display::WithNames {
                cond,
                names: &set.named_values,
            }
            .to_string()
        })
        .unwrap_or_else(|| when.to_string())
}

/// One rule's parts on a request (see [`Evaluator::rule_states`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleState {
    pub rule: usize,
    pub in_scope: bool,
    pub condition: bool,
}

/// How one rule fared on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    pub rule: usize,
    pub status: RuleStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleStatus {
    OutOfScope,
    /// The first condition of `when` that does not hold.
    WhenFailed(String),
    /// The `unless` condition that holds.
    UnlessHeld(String),
    Matched,
    /// A matching limit and its counter.
    Limit {
        count: u64,
        max: u64,
    },
}
