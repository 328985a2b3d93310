//! Witness requests as JSON: the compact form reports show, and decoding one witness for a
//! version of a set that may not have all of its limit rules.

use polctl_lang::eval::{DecisionJson, Evaluator, RequestError};
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

/// Decides a witness with one version of a set, which reads only the counters of its own
/// limit rules (the other version may have limits this one does not).
pub fn decide_own(evaluator: &Evaluator, witness: &Json) -> Result<DecisionJson, RequestError> {
    let mut own = witness.clone();
    if let Some(counters) = own.get_mut("counters").and_then(Json::as_object_mut) {
        counters.retain(|id, _| evaluator.set().rules.iter().any(|r| &r.id == id));
    }
    let request = evaluator.decode(&own)?;
    Ok(evaluator.render(&evaluator.decide(&request)))
}
