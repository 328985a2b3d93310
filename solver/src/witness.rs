//! Witness requests: made plain before they are shown, in the compact JSON form reports use,
//! and decided by a version of a set that may not have all of the witness's limit rules.

use polctl_lang::eval::{DecisionJson, Evaluator, Request, RequestError};
use polctl_lang::ir::PolicySet;
use serde_json::Value as Json;

/// Drops the optional fields a witness does not need: an empty session, no approvals, no
/// counters.
pub fn compact(json: &mut Json) {
    if let Json::Object(map) = json {
        map.retain(|key, value| match key.as_str() {
            "session" => value.as_str().is_some_and(|s| !s.is_empty()),
            "approvals" => value.as_array().is_some_and(|a| !a.is_empty()),
            "counters" => value.as_object().is_some_and(|c| !c.is_empty()),
            _ => true,
        });
    }
}

/// Decodes a witness for one version of a set, which reads only what its own schema declares
/// and the counters of its own limit rules: a diff's witness carries the fields of both
/// versions (an attribute, argument, approver group or limit may be in one of them only).
pub fn decode_own(evaluator: &Evaluator, witness: &Json) -> Result<Request, RequestError> {
    let set = evaluator.set();
    let schema = &set.schema;
    let mut own = witness.clone();
    if let Some(counters) = own.get_mut("counters").and_then(Json::as_object_mut) {
        counters.retain(|id, _| set.rules.iter().any(|r| &r.id == id));
    }
    for (key, declared) in [("agent", &schema.agent), ("context", &schema.context)] {
        if let Some(object) = own.get_mut(key).and_then(Json::as_object_mut) {
            object.retain(|name, _| declared.iter().any(|a| &a.name == name));
        }
    }
    let tool = own["tool"]
        .as_str()
        .and_then(|name| schema.tool_index(name));
    if let (Some(tool), Some(args)) = (tool, own.get_mut("args").and_then(Json::as_object_mut)) {
        args.retain(|name, _| schema.tools[tool].args.iter().any(|a| &a.name == name));
    }
    if let Some(groups) = own.get_mut("approvals").and_then(Json::as_array_mut) {
        groups.retain(|g| {
            g.as_str()
                .is_some_and(|g| schema.approvers.iter().any(|a| a == g))
        });
    }
    evaluator.decode(&own)
}

/// Decides a witness with one version of a set (see [`decode_own`]).
pub fn decide_own(evaluator: &Evaluator, witness: &Json) -> Result<DecisionJson, RequestError> {
    let request = decode_own(evaluator, witness)?;
    Ok(evaluator.render(&request, &evaluator.decide(&request)))
}

/// The witness with each field made as plain as its claim allows: strings emptied, lists
/// emptied, optional arguments dropped, approvals withdrawn, one at a time, each kept only if
/// the claim still holds. What is left is what the finding (or change) depends on.
pub fn simplify(set: &PolicySet, witness: &Request, holds: impl Fn(&Request) -> bool) -> Request {
    use polctl_lang::eval::Value;
    let plain = |value: &Value| match value {
        Value::Str(s) if !s.is_empty() => Some(Value::Str(String::new())),
        Value::List(items) if !items.is_empty() => Some(Value::List(Vec::new())),
        _ => None,
    };
    let mut best = witness.clone();
    let attempt = |change: &dyn Fn(&mut Request) -> bool, best: &mut Request| {
        let mut candidate = best.clone();
        if change(&mut candidate) && holds(&candidate) {
            *best = candidate;
        }
    };
    for i in 0..best.agent.len() {
        attempt(
            &|r| plain(&r.agent[i]).map(|v| r.agent[i] = v).is_some(),
            &mut best,
        );
    }
    for i in 0..best.context.len() {
        attempt(
            &|r| plain(&r.context[i]).map(|v| r.context[i] = v).is_some(),
            &mut best,
        );
    }
    let optional: Vec<bool> = set
        .schema
        .tools
        .get(best.tool)
        .map(|t| t.args.iter().map(|a| a.optional).collect())
        .unwrap_or_default();
    for i in 0..best.args.len() {
        if optional.get(i).copied().unwrap_or(false) {
            attempt(&|r| r.args[i].take().is_some(), &mut best);
        }
        attempt(
            &|r| match r.args[i].as_ref().and_then(plain) {
                Some(v) => {
                    r.args[i] = Some(v);
                    true
                }
                None => false,
            },
            &mut best,
        );
    }
    attempt(&|r| !std::mem::take(&mut r.session).is_empty(), &mut best);
    for i in 0..best.approvals.len() {
        attempt(
            &|r| std::mem::replace(&mut r.approvals[i], false),
            &mut best,
        );
    }
    best
}
