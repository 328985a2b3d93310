//! Tools at presentation time (runtime.md §3.1, `POST /v1/tools`), answered with the solver:
//! for a fixed agent, operator-resolved context and session, each tool is
//! - hidden when every call of it is denied (`always deny` proven over all its arguments),
//! - `allow` when every call is allowed (`always allow` proven),
//! - `require_approval` when every call waits for approval,
//! - `depends_on_args` otherwise, including when a proof does not finish in time.
//!
//! A tool is hidden only on a proof, so no tool that some arguments would allow (or send for
//! approval) is ever hidden. Counters and approvals are free in these proofs: a tool with a
//! limit is not "always allowed" (a spent limit denies), so it shows as `depends_on_args`.
//! The runtime calls this through its `ToolPresenter` (it does not link the solver).

use polctl_lang::eval::{Evaluator, Outcome};
use polctl_lang::ir::{CmpOp, Cond, Path, Type, Value};
use polctl_runtime::engine::ShownTool;
use polctl_runtime::loaded::LoadedBundle;
use polctl_solver::property::{prove, Claim, Verdict};
use serde_json::Value as Json;

/// How long one proof may take.
const PROOF_TIMEOUT_MS: u32 = 2_000;

/// An attribute's JSON value as a condition's value, when the type allows equality.
fn ir_value(ty: &Type, value: &Json) -> Option<Value> {
    match (ty, value) {
        (Type::String, Json::String(s)) => Some(Value::Str(s.clone())),
        (Type::Int { .. }, Json::Number(n)) => n.as_i64().map(Value::Int),
        (Type::Decimal { .. }, Json::Number(n)) => {
            polctl_lang::decimal::Decimal::parse(&n.to_string())
                .ok()
                .map(Value::Decimal)
        }
        (Type::Bool, Json::Bool(b)) => Some(Value::Bool(*b)),
        (Type::Enum { members }, Json::String(s)) if members.contains(s) => {
            Some(Value::Enum(s.clone()))
        }
        // Lists, and values of the wrong type (the attribute stays free: a proof then holds
        // for every value, which is still sound).
        _ => None,
    }
}

pub fn present(
    bundle: &LoadedBundle,
    agent: &Json,
    context: &Json,
    session: Option<&str>,
) -> Vec<ShownTool> {
    present_for(&bundle.evaluator, agent, context, session)
}

fn present_for(
    evaluator: &Evaluator,
    agent: &Json,
    context: &Json,
    session: Option<&str>,
) -> Vec<ShownTool> {
    let set = evaluator.set();
    let schema = &set.schema;
    let mut fixed = Vec::new();
    for attribute in &schema.agent {
        if let Some(value) = agent
            .get(&attribute.name)
            .and_then(|v| ir_value(&attribute.ty, v))
        {
            fixed.push(Cond::Compare {
                path: Path::Agent(attribute.name.clone()),
                op: CmpOp::Eq,
                value,
            });
        }
    }
    for attribute in &schema.context {
        if let Some(value) = context
            .get(&attribute.name)
            .and_then(|v| ir_value(&attribute.ty, v))
        {
            fixed.push(Cond::Compare {
                path: Path::Context(attribute.name.clone()),
                op: CmpOp::Eq,
                value,
            });
        }
    }
    if let Some(session) = session {
        fixed.push(Cond::Compare {
            path: Path::Session,
            op: CmpOp::Eq,
            value: Value::Str(session.to_owned()),
        });
    }
    let mut shown = Vec::new();
    for tool in &schema.tools {
        let mut conditions = vec![Cond::Compare {
            path: Path::ToolName,
            op: CmpOp::Eq,
            value: Value::Tool(tool.name.clone()),
        }];
        conditions.extend(fixed.iter().cloned());
        let forall = Cond::And(conditions);
        let proven = |outcome| {
            matches!(
                prove(
                    set,
                    evaluator,
                    &forall,
                    Claim::Always(outcome),
                    PROOF_TIMEOUT_MS
                ),
                Verdict::Proven
            )
        };
        let decision = if proven(Outcome::Deny) {
            continue;
        } else if proven(Outcome::Allow) {
            "allow"
        } else if proven(Outcome::RequireApproval) {
            "require_approval"
        } else {
            "depends_on_args"
        };
        shown.push(ShownTool {
            name: tool.name.clone(),
            decision,
        });
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use polctl_rollout::traffic::{GenerateOptions, TrafficGenerator};

    /// Never hides a tool that some call would get allowed or sent for approval, and shows
    /// `allow` only for tools every call of which is allowed: checked against the evaluator on
    /// generated traffic, with each call's agent and context replaced by the fixed ones.
    #[test]
    fn no_tool_some_call_gets_is_hidden_and_allow_means_allowed() {
        let root = polctl_testsupport::workspace_dir().join("examples/support-fleet");
        let sources =
            polctl_lang::SourceSet::from_files(polctl_testsupport::read_tree(&root, "pol"));
        let set = polctl_lang::compile(&sources)
            .set
            .expect("the example compiles");
        let evaluator = Evaluator::new(set, sources.revision()).expect("an evaluator");
        let options = GenerateOptions {
            sessions: 300,
            duration_ms: 3_600_000,
            seed: 11,
            start: 1_796_000_000_000,
        };
        let lines: Vec<Json> = TrafficGenerator::new(&evaluator, &options)
            .filter_map(|line| serde_json::to_value(&line).ok())
            .filter(|line| line.get("tool").is_some())
            .collect();
        let context = serde_json::json!({
            "mode": "normal", "region": "eu", "hour": 10, "kill_switch": false, "customer_verified": true
        });
        for role in ["ops", "billing"] {
            let agent = lines
                .iter()
                .map(|l| l["agent"].clone())
                .find(|a| a["role"] == role)
                .expect("an agent of the role");
            let shown = present_for(&evaluator, &agent, &context, None);
            let mut checked = 0;
            for line in &lines {
                let mut request = line.clone();
                request["agent"] = agent.clone();
                request["context"] = context.clone();
                request["approvals"] = serde_json::json!([]);
                request.as_object_mut().map(|o| o.remove("counters"));
                let Ok(decoded) = evaluator.decode(&request) else {
                    continue;
                };
                let outcome = evaluator.decide(&decoded).outcome;
                let tool = request["tool"].as_str().unwrap_or("");
                let listed = shown.iter().find(|t| t.name == tool);
                match outcome {
                    Outcome::Allow | Outcome::RequireApproval => {
                        assert!(
                            listed.is_some(),
                            "{role}: {tool} is hidden, but {request} gets {outcome:?}"
                        )
                    }
                    Outcome::Deny => assert_ne!(
                        listed.map(|t| t.decision),
                        Some("allow"),
                        "{role}: {tool} shows as allow, but {request} is denied"
                    ),
                }
                checked += 1;
            }
            assert!(checked > 100, "{role}: only {checked} calls checked");
            assert!(shown.len() < evaluator.set().schema.tools.len() || role == "ops");
        }
    }
}
