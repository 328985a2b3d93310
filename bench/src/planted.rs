//! Synthetic policy sets that are clean by construction, with planted mistakes of every
//! finding kind: the analysis must report each planted mistake and nothing else.
//!
//! The clean part: platform guards written as `any tool` / `any write tool` denies (not
//! conflicts), and per (tenant, tool) or (agent, tool) slot at most one allow, one deny, one
//! approval and one limit, with conditions chosen so that none covers another. Tenant
//! policies and agent policies use disjoint tools, so their allows and denies never meet.
//! Each planted mistake gets a tool of its own (for the ones involving a platform rule) or a
//! (tenant, tool) slot of its own, so one mistake never causes another finding.

use crate::synth::Rng;
use polctl_lang::diagnostic::Diagnostic;
use std::fmt::Write;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlantedConfig {
    /// About this many rules in all.
    pub rules: usize,
    pub tools: usize,
    pub tenants: usize,
    pub seed: u64,
}

/// A planted mistake: the finding kind and the rule the finding is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planted {
    pub kind: &'static str,
    pub rule: String,
}

/// The generated set: files (path, text) and the findings the analysis must report.
pub struct PlantedSet {
    pub files: Vec<(String, String)>,
    pub planted: Vec<Planted>,
    pub rule_count: usize,
}

const KINDS: [&str; 4] = ["read", "write", "send", "execute"];

fn schema(tools: usize) -> String {
    let mut text = String::from(
        "# Generated schema.\nschema {\n  agent {\n    id: string\n    role: enum { support, sales, billing, ops }\n    tenant: string\n    tier: enum { free, pro, enterprise }\n  }\n  context {\n    mode: enum { normal, read_only, incident }\n    hour: int in 0..23\n    verified: bool\n  }\n  approvers { finance, security, legal }\n\n",
    );
    for tool in 0..tools {
        let _ = writeln!(
            text,
            "  tool t{tool}: {} {{ target: string, amount: decimal in 0.01..100000.00, count: int in 0..10000, level: enum {{ low, medium, high }}, recipients: [string], note: string? }}",
            KINDS[tool % KINDS.len()]
        );
    }
    text.push_str("}\n");
    text
}

/// An allow condition of one of several forms; none is always true, and two slots never
/// share a (scope, tool), so allows never cover one another.
fn allow_condition(form: usize, scope_tag: &str, rng: &mut Rng) -> String {
    match form % 6 {
        0 => format!("args.amount <= {}.00", 100 + rng.below(5000)),
        1 => format!("args.target starts with \"{scope_tag}-\" and args.level != high"),
        2 => format!("every args.recipients ends with \"@{scope_tag}.example\""),
        3 => format!(
            "args.target matches \"^[a-z]+-[0-9]+$\" and context.hour >= {}",
            1 + rng.below(12)
        ),
        4 => "has args.note and args.note contains \"ticket\"".to_owned(),
        _ => format!(
            "args.count < {} and context.verified == true",
            10 + rng.below(1000)
        ),
    }
}

/// A planted mistake: its kind, the rule the finding names, and the rules (name, body).
type Plant = (&'static str, &'static str, Vec<(String, String)>);

struct Writer {
    files: Vec<(String, String)>,
    rules: usize,
}

impl Writer {
    fn policy(&mut self, path: String, name: &str, scope: &str, rules: &[(String, String)]) {
        let mut text =
            format!("policy {name} {{\n  owner \"team@example.com\"\n  applies to {scope}\n");
        for (rule, body) in rules {
            let _ = write!(text, "\n  rule {rule}:\n    {body}\n");
        }
        text.push_str("}\n");
        self.rules += rules.len();
        self.files.push((path, text));
    }
}

/// Generates a set of about `config.rules` rules with planted mistakes of every kind.
pub fn generate_planted(config: &PlantedConfig) -> PlantedSet {
    let mut rng = Rng(config.seed);
    let per_kind = 1 + config.rules / 2_500;
    // Tools of their own for the plants that involve a platform rule (3 kinds), plus a
    // shared pool for the tenant-local plants; the rest are split between tenants and agents.
    let plant_tools = 3 * per_kind + 2;
    let tools = config.tools.max(plant_tools + 4);
    let base_tools = tools - plant_tools;
    let tenant_tools = base_tools / 2;
    let mut writer = Writer {
        files: vec![("schema.pol".to_owned(), schema(tools))],
        rules: 0,
    };
    let mut planted = Vec::new();

    writer.policy(
        "platform/guards.pol".to_owned(),
        "platform.guards",
        "all",
        &[
            (
                "no_writes_in_read_only".to_owned(),
                "deny any write tool when context.mode == read_only".to_owned(),
            ),
            (
                "free_tier_incident_stop".to_owned(),
                "deny any tool when context.mode == incident and agent.tier == free".to_owned(),
            ),
        ],
    );

    // The planted mistakes.
    let shared_pool = [tools - 2, tools - 1];
    let mut exclusive = base_tools..tools - 2;
    for i in 0..per_kind {
        let tenant = format!("tenant-{}", i % config.tenants.max(1));
        let tag = format!("plant{i}");
        let local = |n: usize| format!("t{}", shared_pool[n % 2]);
        // Tenant-local plants, each on its own (tenant, tool) slot: plant tenant i, slot n.
        let plants: [Plant; 6] = [
            (
                "dead_rule",
                "dead",
                vec![(
                    "dead".into(),
                    format!(
                        "allow {} when args.amount > 500 and args.amount < 100",
                        local(0)
                    ),
                )],
            ),
            (
                "shadowed",
                "allow_high",
                vec![
                    (
                        "allow_high".into(),
                        format!("allow {} when args.level == high", local(1)),
                    ),
                    (
                        "deny_high".into(),
                        format!("deny {} when args.level == high", local(1)),
                    ),
                ],
            ),
            (
                "redundant",
                "narrow",
                vec![
                    (
                        "wide".into(),
                        format!("allow {} when args.count <= 100", local(0)),
                    ),
                    (
                        "narrow".into(),
                        format!("allow {} when args.count <= 50", local(0)),
                    ),
                ],
            ),
            (
                "dead_limit",
                "hourly",
                vec![
                    (
                        "allow_small".into(),
                        format!("allow {} when args.amount < 10.00", local(1)),
                    ),
                    (
                        "hourly".into(),
                        format!("limit {} to 100 per 1h per agent.id", local(1)),
                    ),
                    (
                        "daily".into(),
                        format!("limit {} to 50 per 1d per agent.id", local(1)),
                    ),
                ],
            ),
            (
                "zero_limit",
                "none_allowed",
                vec![
                    (
                        "allow_few".into(),
                        format!("allow {} when args.count < 5", local(0)),
                    ),
                    (
                        "none_allowed".into(),
                        format!("limit {} to 0 per 1h per agent.id", local(0)),
                    ),
                ],
            ),
            (
                "approval_dead_end",
                "approve_large",
                vec![(
                    "approve_large".into(),
                    format!(
                        "require approval from finance for {} when args.amount > 1000.00",
                        local(1)
                    ),
                )],
            ),
        ];
        for (kind, subject, rules) in plants {
            // Each plant its own tenant so their slots never meet.
            let name = format!("plants.{kind}{i}");
            let tenant_name = format!("{tenant}-{kind}");
            writer.policy(
                format!("plants/{kind}{i}.pol"),
                &name,
                &format!("tenant \"{tenant_name}\""),
                &rules,
            );
            planted.push(Planted {
                kind,
                rule: format!("{name}.{subject}"),
            });
        }
        // Plants that involve a platform rule, each on a tool of its own.
        let mut own = || format!("t{}", exclusive.next().unwrap_or(tools - 1));
        let (conflict_tool, layer_tool, vacuous_tool) = (own(), own(), own());
        writer.policy(
            format!("plants/platform{i}.pol"),
            &format!("platform.plants{i}"),
            "all",
            &[
                (
                    "no_secret_targets".into(),
                    format!("deny {conflict_tool} when args.target contains \"secret\""),
                ),
                ("never".into(), format!("deny {layer_tool}")),
                (
                    "no_high".into(),
                    format!(
                        "deny {vacuous_tool} when args.level == high overrides plants.tenant{i}.always"
                    ),
                ),
            ],
        );
        writer.policy(
            format!("plants/tenant{i}.pol"),
            &format!("plants.tenant{i}"),
            &format!("tenant \"{tenant}-{tag}\""),
            &[
                (
                    "low".into(),
                    format!("allow {conflict_tool} when args.level == low"),
                ),
                (
                    "blocked".into(),
                    format!("allow {layer_tool} when args.level == low"),
                ),
                (
                    "always".into(),
                    format!("allow {vacuous_tool} when args.count >= 0"),
                ),
            ],
        );
        for (kind, rule) in [
            ("conflict", "low"),
            ("layer_violation", "blocked"),
            ("vacuous", "always"),
        ] {
            planted.push(Planted {
                kind,
                rule: format!("plants.tenant{i}.{rule}"),
            });
        }
    }

    // The clean part: tenant slots, then agent slots, until the rule budget is spent.
    let mut tenant_slot = 0usize;
    let mut file = 0usize;
    while writer.rules < config.rules && tenant_slot < config.tenants * tenant_tools {
        let tenant = tenant_slot / tenant_tools;
        let first_tool = tenant_slot % tenant_tools;
        let tag = format!("tn{tenant}");
        let mut rules = Vec::new();
        // One policy per tenant and group of up to 5 tools.
        for tool in first_tool..(first_tool + 5).min(tenant_tools) {
            let form = rng.below(6);
            let t = format!("t{tool}");
            rules.push((
                format!("allow_{t}"),
                format!("allow {t} when {}", allow_condition(form, &tag, &mut rng)),
            ));
            if rng.below(3) == 0 {
                rules.push((
                    format!("deny_{t}"),
                    format!("deny {t} when args.target contains \"secret\""),
                ));
            }
            if form == 0 && rng.below(2) == 0 {
                rules.push((
                    format!("approve_{t}"),
                    format!(
                        "require approval from finance, security for {t} when args.amount > 50.00"
                    ),
                ));
            }
            if rng.below(3) == 0 {
                rules.push((
                    format!("limit_{t}"),
                    format!("limit {t} to {} per 1h per agent.id", 10 + rng.below(500)),
                ));
            }
            tenant_slot += 1;
        }
        writer.policy(
            format!("tenants/p{file:05}.pol"),
            &format!("tenants.p{file}"),
            &format!("tenant \"tenant-{tenant}\""),
            &rules,
        );
        file += 1;
    }
    let mut agent = 0usize;
    while writer.rules < config.rules {
        let tag = format!("ag{agent}");
        let mut rules = Vec::new();
        for k in 0..5 {
            let tool = tenant_tools + (agent * 5 + k) % (base_tools - tenant_tools).max(1);
            let t = format!("t{tool}");
            if rules
                .iter()
                .any(|(name, _): &(String, String)| name == &format!("allow_{t}"))
            {
                continue;
            }
            let form = rng.below(6);
            rules.push((
                format!("allow_{t}"),
                format!("allow {t} when {}", allow_condition(form, &tag, &mut rng)),
            ));
            if rng.below(4) == 0 {
                rules.push((
                    format!("limit_{t}"),
                    format!("limit {t} to {} per 1d per session", 5 + rng.below(100)),
                ));
            }
        }
        writer.policy(
            format!("agents/p{file:05}.pol"),
            &format!("agents.p{file}"),
            &format!("agent \"agent-{agent}\""),
            &rules,
        );
        file += 1;
        agent += 1;
    }
    planted.sort_by(|a, b| (a.kind, &a.rule).cmp(&(b.kind, &b.rule)));
    PlantedSet {
        rule_count: writer.rules,
        files: writer.files,
        planted,
    }
}

/// How an analysis's findings compare with the plants: `(kind, rule)` pairs that were
/// planted but not reported, and reported but not planted. Exactly the plants were reported
/// when both are empty and `reported == expected`.
pub struct Comparison {
    pub expected: usize,
    pub reported: usize,
    pub missed: Vec<(String, String)>,
    pub extra: Vec<(String, String)>,
}

pub fn compare(set: &PlantedSet, findings: &[Diagnostic]) -> Comparison {
    let found: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f.kind.as_str().to_owned(),
                f.rule.clone().unwrap_or_default(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = set
        .planted
        .iter()
        .map(|p| (p.kind.to_owned(), p.rule.clone()))
        .collect();
    Comparison {
        expected: expected.len(),
        reported: found.len(),
        missed: expected
            .iter()
            .filter(|e| !found.contains(e))
            .cloned()
            .collect(),
        extra: found
            .iter()
            .filter(|f| !expected.contains(f))
            .cloned()
            .collect(),
    }
}
