//! The rollout plan (`rollout.toml`, runtime.md §4.1): stages in increasing traffic, the
//! criteria each stage must meet to advance, and the rollback triggers watched throughout.
//! Parsing checks every value and reports the line and column of the first problem in each
//! field, with a fix.

use crate::duration::{format_millis, parse_micros, parse_millis};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Which request attribute keeps a request in the same cohort as its neighbours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Stickiness {
    /// The request's `session`.
    Session,
    /// An attribute path, `agent.id` or `context.region`.
    Attribute { scope: AttributeScope, name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeScope {
    Agent,
    Context,
}

impl From<Stickiness> for String {
    fn from(value: Stickiness) -> String {
        value.to_string()
    }
}

impl std::fmt::Display for Stickiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stickiness::Session => f.write_str("session"),
            Stickiness::Attribute { scope, name } => {
                let scope = match scope {
                    AttributeScope::Agent => "agent",
                    AttributeScope::Context => "context",
                };
                write!(f, "{scope}.{name}")
            }
        }
    }
}

/// Thresholds judged on a stage's per-cohort figures. Every one is optional; a stage criterion
/// must hold for the stage to advance, a rollback trigger is watched in every stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Criteria {
    /// Fraction of requests both versions decided where the decisions differ.
    pub max_divergence: Option<f64>,
    /// Fraction of the candidate's decisions that are errors.
    pub max_error_rate: Option<f64>,
    /// `|deny_c - deny_s| / deny_s`.
    pub max_deny_rate_change: Option<f64>,
    /// Microseconds the candidate's 99th percentile decision time may reach.
    pub max_latency_p99_us: Option<u64>,
    /// Candidate completion rate over stable completion rate, of sessions reporting an outcome.
    pub min_task_completion_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub name: String,
    /// Percent of requests the candidate decides; 0 is a shadow stage.
    pub traffic: f64,
    pub min_duration_ms: i64,
    pub min_decisions: u64,
    pub criteria: Criteria,
}

impl Stage {
    pub fn is_shadow(&self) -> bool {
        self.traffic == 0.0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rollback {
    pub criteria: Criteria,
    /// A changed decision outside the classes `polctl diff` predicts rolls back.
    pub unexpected_divergence: bool,
    /// How long the triggers are still watched after the last stage is reached.
    pub bake_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub stickiness: Stickiness,
    pub stages: Vec<Stage>,
    pub rollback: Rollback,
}

/// A problem in a plan file, at a line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl Default for Plan {
    /// A cautious plan for a change that has not been given one: a shadow stage, a small
    /// canary, half, then all traffic, with loose rollback triggers and a short bake.
    fn default() -> Plan {
        let stage = |name: &str, traffic: f64, minutes: i64, decisions: u64, criteria| Stage {
            name: name.to_owned(),
            traffic,
            min_duration_ms: minutes * 60_000,
            min_decisions: decisions,
            criteria,
        };
        Plan {
            stickiness: Stickiness::Session,
            stages: vec![
                stage("shadow", 0.0, 5, 500, Criteria::default()),
                stage(
                    "canary",
                    5.0,
                    15,
                    1000,
                    Criteria {
                        max_error_rate: Some(0.001),
                        ..Criteria::default()
                    },
                ),
                stage("half", 50.0, 15, 1000, Criteria::default()),
                stage("full", 100.0, 0, 0, Criteria::default()),
            ],
            rollback: Rollback {
                criteria: Criteria {
                    max_error_rate: Some(0.01),
                    max_deny_rate_change: Some(0.5),
                    min_task_completion_ratio: Some(0.9),
                    ..Criteria::default()
                },
                unexpected_divergence: true,
                bake_ms: 10 * 60_000,
            },
        }
    }
}

impl Plan {
    /// The plan as `rollout.toml` text (parsing it gives the same plan).
    pub fn to_toml(&self) -> String {
        let mut out = format!("stickiness = \"{}\"\n", self.stickiness);
        let criteria = |out: &mut String, c: &Criteria| {
            let mut line = |key: &str, value: String| out.push_str(&format!("{key} = {value}\n"));
            if let Some(v) = c.max_divergence {
                line("max_divergence", v.to_string());
            }
            if let Some(v) = c.max_error_rate {
                line("max_error_rate", v.to_string());
            }
            if let Some(v) = c.max_deny_rate_change {
                line("max_deny_rate_change", v.to_string());
            }
            if let Some(v) = c.max_latency_p99_us {
                line("max_latency_p99", format!("\"{}us\"", v));
            }
            if let Some(v) = c.min_task_completion_ratio {
                line("min_task_completion_ratio", v.to_string());
            }
        };
        for stage in &self.stages {
            out.push_str(&format!(
                "\n[[stage]]\nname = \"{}\"\ntraffic = {}\n",
                stage.name, stage.traffic
            ));
            if stage.min_duration_ms > 0 {
                out.push_str(&format!(
                    "min_duration = \"{}\"\n",
                    format_millis(stage.min_duration_ms)
                ));
            }
            if stage.min_decisions > 0 {
                out.push_str(&format!("min_decisions = {}\n", stage.min_decisions));
            }
            criteria(&mut out, &stage.criteria);
        }
        out.push_str("\n[rollback]\n");
        criteria(&mut out, &self.rollback.criteria);
        out.push_str(&format!(
            "unexpected_divergence = {}\n",
            self.rollback.unexpected_divergence
        ));
        if self.rollback.bake_ms > 0 {
            out.push_str(&format!(
                "bake = \"{}\"\n",
                format_millis(self.rollback.bake_ms)
            ));
        }
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    stickiness: Option<Spanned<String>>,
    #[serde(default)]
    stage: Vec<Spanned<RawStage>>,
    rollback: Option<RawRollback>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: Spanned<String>,
    traffic: Spanned<f64>,
    min_duration: Option<Spanned<String>>,
    min_decisions: Option<Spanned<i64>>,
    max_divergence: Option<Spanned<f64>>,
    max_error_rate: Option<Spanned<f64>>,
    max_deny_rate_change: Option<Spanned<f64>>,
    max_latency_p99: Option<Spanned<String>>,
    min_task_completion_ratio: Option<Spanned<f64>>,
}

/// The criteria of a stage or of `[rollback]`, as written. (Not `#[serde(flatten)]`ed into
/// both: flattening loses the spans that errors point at.)
struct RawCriteria<'r> {
    max_divergence: &'r Option<Spanned<f64>>,
    max_error_rate: &'r Option<Spanned<f64>>,
    max_deny_rate_change: &'r Option<Spanned<f64>>,
    max_latency_p99: &'r Option<Spanned<String>>,
    min_task_completion_ratio: &'r Option<Spanned<f64>>,
}

macro_rules! raw_criteria {
    ($raw:expr) => {
        RawCriteria {
            max_divergence: &$raw.max_divergence,
            max_error_rate: &$raw.max_error_rate,
            max_deny_rate_change: &$raw.max_deny_rate_change,
            max_latency_p99: &$raw.max_latency_p99,
            min_task_completion_ratio: &$raw.min_task_completion_ratio,
        }
    };
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollback {
    max_divergence: Option<Spanned<f64>>,
    max_error_rate: Option<Spanned<f64>>,
    max_deny_rate_change: Option<Spanned<f64>>,
    max_latency_p99: Option<Spanned<String>>,
    min_task_completion_ratio: Option<Spanned<f64>>,
    unexpected_divergence: Option<bool>,
    bake: Option<Spanned<String>>,
}

/// The keys a `[[stage]]` and `[rollback]` may hold, for did-you-mean.
const STAGE_KEYS: [&str; 9] = [
    "name",
    "traffic",
    "min_duration",
    "min_decisions",
    "max_divergence",
    "max_error_rate",
    "max_deny_rate_change",
    "max_latency_p99",
    "min_task_completion_ratio",
];

/// Parses and validates a plan. `text` is the whole file.
pub fn parse_plan(text: &str) -> Result<Plan, PlanError> {
    let at = |span: std::ops::Range<usize>, message: String, help: &str| {
        let (line, column) = line_column(text, span.start);
        PlanError {
            line,
            column,
            message,
            help: help.to_owned(),
        }
    };
    let raw: RawPlan = toml::from_str(text).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        let message = error.message().trim().to_owned();
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next());
        let all_keys = STAGE_KEYS
            .iter()
            .copied()
            .chain(["stickiness", "stage", "rollback", "unexpected_divergence", "bake"]);
        let help = if let Some(suggestion) =
            unknown.and_then(|name| polctl_lang::suggest::help_did_you_mean(name, all_keys))
        {
            suggestion
        } else if unknown.is_some() {
            let keys = STAGE_KEYS.join("`, `");
            format!("a `[[stage]]` takes `{keys}`; `[rollback]` takes the `max_*`/`min_*` criteria, `unexpected_divergence` and `bake`; the top level takes `stickiness`")
        } else {
            "see docs/rollouts.md for the plan format".to_owned()
        };
        at(span, message, &help)
    })?;

    let stickiness = match &raw.stickiness {
        None => Stickiness::Session,
        Some(value) => parse_stickiness(value.get_ref()).map_err(|message| {
            at(
                value.span(),
                message,
                "write `stickiness = \"session\"` or an attribute path such as `\"agent.id\"`",
            )
        })?,
    };
    if raw.stage.is_empty() {
        return Err(at(
            0..0,
            "the plan has no stages".to_owned(),
            "add at least one `[[stage]]` with a `name` and a `traffic` percentage; the last usually has `traffic = 100`",
        ));
    }
    let mut stages: Vec<Stage> = Vec::new();
    for raw_stage in &raw.stage {
        let stage = raw_stage.get_ref();
        let name = stage.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return Err(at(
                stage.name.span(),
                "a stage needs a name".to_owned(),
                "name it, e.g. `name = \"canary\"`",
            ));
        }
        if let Some(earlier) = stages.iter().find(|s| s.name == name) {
            return Err(at(
                stage.name.span(),
                format!("a second stage named `{}`", earlier.name),
                "stage names appear in the timeline and in `polctl rollout status`; make each unique",
            ));
        }
        let traffic = *stage.traffic.get_ref();
        if !(0.0..=100.0).contains(&traffic) || !traffic.is_finite() {
            return Err(at(
                stage.traffic.span(),
                format!("traffic {traffic} is not a percentage"),
                "traffic is the percent of requests the candidate decides, from 0 (shadow) to 100",
            ));
        }
        // Buckets are in millionths: a percentage with more than four decimals cannot be routed.
        if ((traffic * 10_000.0).round() - traffic * 10_000.0).abs() > 1e-6 {
            return Err(at(
                stage.traffic.span(),
                format!("traffic {traffic} has more precision than cohorts have"),
                "cohorts are decided in steps of 0.0001 percent; round the percentage",
            ));
        }
        if let Some(previous) = stages.last() {
            if traffic <= previous.traffic {
                return Err(at(
                    stage.traffic.span(),
                    format!(
                        "stage `{name}` sends {traffic}% of traffic to the candidate, no more than stage `{}` before it ({}%)",
                        previous.name, previous.traffic
                    ),
                    "stages run in order and each must raise the candidate's traffic",
                ));
            }
        }
        let min_duration_ms = match &stage.min_duration {
            None => 0,
            Some(text) => parse_millis(text.get_ref()).map_err(|message| {
                at(
                    text.span(),
                    message,
                    "durations are written like `10m`, `1h` or `1d`",
                )
            })?,
        };
        let min_decisions = match &stage.min_decisions {
            None => 0,
            Some(value) => u64::try_from(*value.get_ref()).map_err(|_| {
                at(
                    value.span(),
                    format!("min_decisions {} is negative", value.get_ref()),
                    "a count of decisions, 0 or more",
                )
            })?,
        };
        let criteria = criteria(&raw_criteria!(stage), &at)?;
        if let (Some(divergence), false) = (&stage.max_divergence, traffic == 0.0) {
            return Err(at(
                divergence.span(),
                format!("`max_divergence` in stage `{name}`, which sends {traffic}% of traffic to the candidate"),
                "divergence is a shadow-stage criterion (traffic = 0), where both versions decide every request; in later stages use `max_deny_rate_change`",
            ));
        }
        stages.push(Stage {
            name,
            traffic,
            min_duration_ms,
            min_decisions,
            criteria,
        });
    }
    let rollback = match &raw.rollback {
        None => Rollback::default(),
        Some(raw) => {
            if let Some(divergence) = &raw.max_divergence {
                return Err(at(
                    divergence.span(),
                    "`max_divergence` is a stage criterion, not a rollback trigger".to_owned(),
                    "put it in the shadow `[[stage]]`; `[rollback]` takes `unexpected_divergence = true` for changes `polctl diff` did not predict",
                ));
            }
            Rollback {
                criteria: criteria(&raw_criteria!(raw), &at)?,
                unexpected_divergence: raw.unexpected_divergence.unwrap_or(false),
                bake_ms: match &raw.bake {
                    None => 0,
                    Some(text) => parse_millis(text.get_ref()).map_err(|message| {
                        at(
                            text.span(),
                            message,
                            "durations are written like `30m` or `1h`",
                        )
                    })?,
                },
            }
        }
    };
    Ok(Plan {
        stickiness,
        stages,
        rollback,
    })
}

fn criteria(
    raw: &RawCriteria<'_>,
    at: &dyn Fn(std::ops::Range<usize>, String, &str) -> PlanError,
) -> Result<Criteria, PlanError> {
    let fraction = |value: &Option<Spanned<f64>>,
                    key: &str,
                    upper: f64|
     -> Result<Option<f64>, PlanError> {
        let Some(value) = value else { return Ok(None) };
        let v = *value.get_ref();
        if !v.is_finite() || v < 0.0 || v > upper {
            return Err(at(
                value.span(),
                format!("{key} {v} is out of range"),
                if upper == 1.0 {
                    "a fraction from 0 to 1: `0.01` is one percent"
                } else {
                    "a relative change, 0 or more: `0.05` is five percent more or less than stable"
                },
            ));
        }
        Ok(Some(v))
    };
    let ratio = match raw.min_task_completion_ratio {
        None => None,
        Some(value) => {
            let v = *value.get_ref();
            if !v.is_finite() || v <= 0.0 || v > 1.0 {
                return Err(at(
                    value.span(),
                    format!("min_task_completion_ratio {v} is out of range"),
                    "a ratio above 0 and at most 1: `0.9` rolls back when the candidate's sessions complete 10% less often",
                ));
            }
            Some(v)
        }
    };
    Ok(Criteria {
        max_divergence: fraction(raw.max_divergence, "max_divergence", 1.0)?,
        max_error_rate: fraction(raw.max_error_rate, "max_error_rate", 1.0)?,
        max_deny_rate_change: fraction(raw.max_deny_rate_change, "max_deny_rate_change", f64::MAX)?,
        max_latency_p99_us: match raw.max_latency_p99 {
            None => None,
            Some(text) => Some(parse_micros(text.get_ref()).map_err(|message| {
                at(
                    text.span(),
                    message,
                    "a decision time like `5ms` or `800us`",
                )
            })?),
        },
        min_task_completion_ratio: ratio,
    })
}

fn parse_stickiness(text: &str) -> Result<Stickiness, String> {
    if text == "session" {
        return Ok(Stickiness::Session);
    }
    let (scope, name) = text
        .split_once('.')
        .ok_or_else(|| format!("`{text}` is not `session` or an attribute path"))?;
    let scope = match scope {
        "agent" => AttributeScope::Agent,
        "context" => AttributeScope::Context,
        _ => {
            return Err(format!(
                "`{text}`: stickiness reads `session`, `agent.*` or `context.*`"
            ))
        }
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`{text}` is not an attribute path"));
    }
    Ok(Stickiness::Attribute {
        scope,
        name: name.to_owned(),
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
