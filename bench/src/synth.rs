//! The generator of synthetic policy sets (see the crate docs).

use std::fmt::Write;

/// The size and shape of a generated set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthConfig {
    pub rules: usize,
    pub files: usize,
    pub tools: usize,
    pub tenants: usize,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> SynthConfig {
        SynthConfig {
            rules: 1_000,
            files: 100,
            tools: 60,
            tenants: 40,
            seed: 1,
        }
    }
}

/// A small deterministic PRNG (SplitMix64): the same seed gives the same set on any machine.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ArgType {
    Text,
    Count,
    Money,
    Flag,
    Level,
    Recipients,
    OptionalNote,
}

const ARG_SHAPES: &[(&str, ArgType)] = &[
    ("target", ArgType::Text),
    ("count", ArgType::Count),
    ("amount", ArgType::Money),
    ("urgent", ArgType::Flag),
    ("level", ArgType::Level),
    ("recipients", ArgType::Recipients),
    ("note", ArgType::OptionalNote),
];

const KINDS: &[&str] = &["read", "write", "send", "execute"];
const VERBS: &[&str] = &[
    "get", "list", "update", "create", "send", "post", "run", "sync", "export", "archive",
];
const NOUNS: &[&str] = &[
    "order", "invoice", "ticket", "account", "report", "record", "message", "job", "file", "user",
    "lead", "refund",
];
const DOMAINS: &[&str] = &[
    "@acme.example",
    "@globex.example",
    "@partner.example",
    "@corp.example",
];
const WORDS: &[&str] = &[
    "prod", "staging", "billing", "support", "internal", "archive", "legacy", "export",
];

struct Tool {
    name: String,
    kind: &'static str,
    args: Vec<(&'static str, ArgType)>,
}

fn tools(config: &SynthConfig, rng: &mut Rng) -> Vec<Tool> {
    (0..config.tools)
        .map(|i| {
            let name = format!(
                "{}_{}_{i}",
                VERBS[i % VERBS.len()],
                NOUNS[(i / VERBS.len()) % NOUNS.len()]
            );
            let kind = KINDS[i % KINDS.len()];
            let mut args: Vec<(&'static str, ArgType)> = vec![ARG_SHAPES[0]];
            for shape in &ARG_SHAPES[1..] {
                if rng.chance(55) {
                    args.push(*shape);
                }
            }
            Tool { name, kind, args }
        })
        .collect()
}

fn schema(tools: &[Tool]) -> String {
    let mut out = String::from(
        "# Generated schema.\nschema {\n  agent {\n    id: string\n    role: enum { support, sales, billing, ops }\n    tenant: string\n    tier: enum { free, pro, enterprise }\n  }\n  context {\n    mode: enum { normal, read_only, incident }\n    region: enum { eu, us, apac }\n    hour: int in 0..23\n    verified: bool\n  }\n  approvers { finance, security, legal, support_lead, ops_lead }\n\n",
    );
    for tool in tools {
        let args: Vec<String> = tool
            .args
            .iter()
            .map(|(name, ty)| {
                let ty = match ty {
                    ArgType::Text => "string",
                    ArgType::Count => "int in 0..10000",
                    ArgType::Money => "decimal in 0.01..100000.00",
                    ArgType::Flag => "bool",
                    ArgType::Level => "enum { low, medium, high }",
                    ArgType::Recipients => "[string]",
                    ArgType::OptionalNote => "string?",
                };
                format!("{name}: {ty}")
            })
            .collect();
        let _ = writeln!(
            out,
            "  tool {}: {} {{ {} }}",
            tool.name,
            tool.kind,
            args.join(", ")
        );
    }
    out.push_str("}\n");
    out
}

/// One comparison on an argument of `tool`.
fn arg_condition(tool: &Tool, rng: &mut Rng) -> String {
    let (name, ty) = *rng.pick(&tool.args);
    match ty {
        ArgType::Text => match rng.below(5) {
            0 => format!("args.{name} starts with \"{}\"", rng.pick(WORDS)),
            1 => format!("args.{name} ends with \"{}\"", rng.pick(DOMAINS)),
            2 => format!(
                "args.{name} contains any [\"{}\", \"{}\"]",
                rng.pick(WORDS),
                rng.pick(WORDS)
            ),
            3 => format!("args.{name} matches \"^{}-[0-9]+$\"", rng.pick(WORDS)),
            _ => format!(
                "args.{name} in [\"{}\", \"{}\"]",
                rng.pick(WORDS),
                rng.pick(WORDS)
            ),
        },
        ArgType::Count => format!(
            "args.{name} {} {}",
            rng.pick(&[">", "<=", ">=", "<"]),
            rng.below(5000)
        ),
        ArgType::Money => format!("args.{name} > {}.{:02}", rng.below(20_000), rng.below(100)),
        ArgType::Flag => format!("args.{name} == {}", rng.chance(50)),
        ArgType::Level => format!(
            "args.{name} {} [{}]",
            rng.pick(&["in", "not in"]),
            rng.pick(&["high", "low, medium", "medium, high"])
        ),
        ArgType::Recipients => match rng.below(3) {
            0 => format!("every args.{name} ends with \"{}\"", rng.pick(DOMAINS)),
            1 => format!("some args.{name} ends with \"{}\"", rng.pick(DOMAINS)),
            _ => format!("count args.{name} <= {}", 1 + rng.below(10)),
        },
        ArgType::OptionalNote => format!(
            "has args.{name} and args.{name} contains \"{}\"",
            rng.pick(WORDS)
        ),
    }
}

fn context_condition(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => format!("context.mode == {}", rng.pick(&["read_only", "incident"])),
        1 => format!("context.region != {}", rng.pick(&["eu", "us", "apac"])),
        2 => format!("context.hour {} {}", rng.pick(&["<", ">="]), rng.below(24)),
        3 => format!("agent.tier == {}", rng.pick(&["free", "pro", "enterprise"])),
        _ => format!("context.verified == {}", rng.chance(50)),
    }
}

fn condition(tool: &Tool, rng: &mut Rng) -> Option<String> {
    let parts: Vec<String> = (0..rng.below(4))
        .map(|i| {
            if i == 0 || rng.chance(60) {
                arg_condition(tool, rng)
            } else {
                context_condition(rng)
            }
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" and "))
}

fn rule(index: usize, tools: &[Tool], rng: &mut Rng) -> String {
    let tool = rng.pick(tools);
    let mut out = format!("  rule r{index}:\n    ");
    let roll = rng.below(100);
    let when = condition(tool, rng);
    let when_text = when.map(|c| format!(" when {c}")).unwrap_or_default();
    if roll < 50 {
        let _ = write!(out, "allow {}{when_text}", tool.name);
        if rng.chance(10) {
            let _ = write!(out, "\n    with notice \"generated obligation {index}\"");
        }
    } else if roll < 75 {
        if rng.chance(20) {
            let kind = rng.pick(KINDS);
            let _ = write!(out, "deny any {kind} tool when {}", context_condition(rng));
        } else {
            let _ = write!(out, "deny {}{when_text}", tool.name);
        }
        let _ = write!(out, "\n    because \"generated deny {index}\"");
    } else if roll < 87 {
        let groups = rng.pick(&[
            "finance",
            "security",
            "legal, finance",
            "support_lead",
            "ops_lead, security",
        ]);
        let _ = write!(
            out,
            "require approval from {groups} for {}{when_text}",
            tool.name
        );
    } else {
        let key = rng.pick(&[" per agent.id", " per agent.tenant", " per session", ""]);
        let window = rng.pick(&["1m", "15m", "1h", "1d"]);
        let _ = write!(
            out,
            "limit {} to {} per {window}{key}",
            tool.name,
            1 + rng.below(500)
        );
    }
    out.push('\n');
    out
}

/// Generates a policy set: `(path, text)` pairs, `schema.pol` first.
pub fn generate(config: &SynthConfig) -> Vec<(String, String)> {
    let mut rng = Rng(config.seed);
    let tools = tools(config, &mut rng);
    let mut files = vec![("schema.pol".to_owned(), schema(&tools))];
    let policy_files = config.files.max(1);
    let mut rule_index = 0;
    for file in 0..policy_files {
        let rules_here =
            config.rules / policy_files + usize::from(file < config.rules % policy_files);
        let (dir, scope) = match file % 10 {
            0 => ("platform", "all".to_owned()),
            1 => (
                "roles",
                format!("role {}", rng.pick(&["support", "sales", "billing", "ops"])),
            ),
            2 => ("agents", format!("agent \"agent-{}\"", rng.below(500))),
            _ => (
                "tenants",
                format!("tenant \"tenant-{}\"", rng.below(config.tenants.max(1))),
            ),
        };
        let mut text = format!(
            "# Generated policy file {file}.\npolicy {dir}.p{file} {{\n  owner \"team-{}@example.com\"\n  applies to {scope}\n",
            file % 17
        );
        for _ in 0..rules_here {
            text.push('\n');
            text.push_str(&rule(rule_index, &tools, &mut rng));
            rule_index += 1;
        }
        text.push_str("}\n");
        files.push((format!("{dir}/p{file:05}.pol"), text));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use polctl_lang::{compile, SourceSet};

    #[test]
    fn generated_sets_compile_cleanly_and_deterministically() {
        let config = SynthConfig {
            rules: 2_000,
            files: 50,
            ..SynthConfig::default()
        };
        let files = generate(&config);
        assert_eq!(files, generate(&config));
        let compilation = compile(&SourceSet::from_files(files));
        let problems: Vec<_> = compilation
            .diagnostics
            .iter()
            .take(5)
            .map(|d| d.message.clone())
            .collect();
        assert!(compilation.diagnostics.is_empty(), "{problems:?}");
        assert_eq!(compilation.stats.rules, 2_000);
        assert_eq!(compilation.stats.files, 51);
    }
}
