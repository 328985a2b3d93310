//! Approvals (runtime.md §3.3): a `require_approval` decision creates a pending approval bound
//! to its exact request (same agent, tool, arguments and context, by canonical hash), or
//! returns the one already pending for it. Approvers approve or reject per group; the agent
//! repeats the request with `approval_id`; an `allow` consumes the approval: one approval, one
//! action.
//!
//! This module is the book of approvals and its rules, without IO; the engine persists every
//! change through the journal before it is answered.

use crate::error::RuntimeError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// An approval's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    Expired,
    Consumed,
}

impl ApprovalState {
    pub fn parse(text: &str) -> Option<ApprovalState> {
        serde_json::from_value(json!(text)).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub state: ApprovalState,
    /// The canonical hash of the request it is bound to.
    pub request_hash: String,
    /// The request as the agent sent it.
    pub request: Json,
    pub tool: String,
    /// The rules that required it.
    pub rules: Vec<String>,
    /// Groups that still have to approve.
    pub missing: Vec<String>,
    pub granted: Vec<String>,
    /// The sequence of the bundle that created it.
    pub sequence: u64,
    pub created_ms: i64,
    pub expires_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

impl Approval {
    /// The approval as of `now_ms`: pending or approved past its expiry shows as expired.
    pub fn as_of(&self, now_ms: i64) -> Approval {
        let mut approval = self.clone();
        if matches!(
            approval.state,
            ApprovalState::Pending | ApprovalState::Approved
        ) && approval.expires_ms <= now_ms
        {
            approval.state = ApprovalState::Expired;
        }
        approval
    }

    /// The JSON of `GET /v1/approvals/{id}`.
    pub fn to_json(&self) -> Json {
        let mut value = serde_json::to_value(self).unwrap_or(Json::Null);
        if let Json::Object(object) = &mut value {
            object.insert(
                "created_at".to_owned(),
                json!(crate::audit::format_time(self.created_ms)),
            );
            object.insert(
                "expires_at".to_owned(),
                json!(crate::audit::format_time(self.expires_ms)),
            );
        }
        value
    }
}

/// The canonical hash that binds an approval to a request: agent, tool, arguments and context,
/// as canonical JSON (keys sorted, no whitespace).
pub fn request_hash(request: &Json) -> String {
    let bound = json!({
        "agent": request.get("agent").cloned().unwrap_or(Json::Null),
        "tool": request.get("tool").cloned().unwrap_or(Json::Null),
        "args": request.get("args").cloned().unwrap_or(Json::Null),
        "context": request.get("context").cloned().unwrap_or(Json::Null),
    });
    hex::encode(Sha256::digest(bound.to_string().as_bytes()))
}

/// Every approval the server holds, and the pending ones by request hash.
#[derive(Default)]
pub struct ApprovalBook {
    by_id: BTreeMap<String, Approval>,
    pending: HashMap<String, String>,
}

impl ApprovalBook {
    pub fn load(approvals: Vec<Approval>) -> ApprovalBook {
        let mut book = ApprovalBook::default();
        for approval in approvals {
            book.put(approval);
        }
        book
    }

    fn put(&mut self, approval: Approval) {
        if approval.state == ApprovalState::Pending {
            self.pending
                .insert(approval.request_hash.clone(), approval.id.clone());
        } else if self.pending.get(&approval.request_hash) == Some(&approval.id) {
            self.pending.remove(&approval.request_hash);
        }
        self.by_id.insert(approval.id.clone(), approval);
    }

    pub fn get(&self, id: &str) -> Option<&Approval> {
        self.by_id.get(id)
    }

    /// The pending, unexpired approval for a request hash.
    pub fn pending_for(&self, hash: &str, now_ms: i64) -> Option<&Approval> {
        self.pending
            .get(hash)
            .and_then(|id| self.by_id.get(id))
            .filter(|a| a.expires_ms > now_ms)
    }

    /// Records a changed or new approval (after the journal committed it).
    pub fn record(&mut self, approval: Approval) {
        self.put(approval);
    }

    /// Every approval in a state (all with `None`) as of `now_ms` (an approval whose time ran
    /// out shows as expired), oldest first.
    pub fn list(&self, state: Option<ApprovalState>, now_ms: i64) -> Vec<Approval> {
        let mut found: Vec<Approval> = self
            .by_id
            .values()
            .map(|a| a.as_of(now_ms))
            .filter(|a| state.is_none_or(|s| a.state == s))
            .collect();
        found.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        found
    }

    /// Drops finished approvals older than `before_ms` (memory stays bounded).
    pub fn forget_finished(&mut self, before_ms: i64) {
        self.by_id.retain(|_, a| {
            matches!(a.state, ApprovalState::Pending | ApprovalState::Approved)
                || a.expires_ms > before_ms
        });
    }
}

/// What an approver may do to an approval: the approval after approving (`reject: None`) or
/// rejecting for `group`, or why not.
pub fn decide_approval(
    approval: &Approval,
    group: &str,
    reject: Option<&str>,
    by: &str,
    now_ms: i64,
) -> Result<Approval, RuntimeError> {
    match approval.state {
        ApprovalState::Pending => {}
        ApprovalState::Approved if reject.is_none() => {}
        state => {
            return Err(RuntimeError::new(
                409,
                "approval_closed",
                format!("approval `{}` is {}", approval.id, state_name(state)),
            ))
        }
    }
    if approval.expires_ms <= now_ms {
        return Err(RuntimeError::new(
            410,
            "approval_expired",
            format!("approval `{}` expired", approval.id),
        ));
    }
    let mut next = approval.clone();
    if !approval.missing.iter().any(|g| g == group) {
        if approval.granted.iter().any(|g| g == group) && reject.is_none() {
            return Ok(next); // approving twice changes nothing
        }
        return Err(RuntimeError::bad_request(
            "unknown_group",
            format!(
                "approval `{}` waits for {}, not `{group}`",
                approval.id,
                if approval.missing.is_empty() {
                    "no group".to_owned()
                } else {
                    approval.missing.join(", ")
                }
            ),
        ));
    }
    next.decided_by = Some(by.to_owned());
    match reject {
        Some(reason) => {
            next.state = ApprovalState::Rejected;
            next.reason = Some(reason.to_owned());
        }
        None => {
            next.missing.retain(|g| g != group);
            next.granted.push(group.to_owned());
            if next.missing.is_empty() {
                next.state = ApprovalState::Approved;
            }
        }
    }
    Ok(next)
}

/// Checks an `approval_id` a request carries: it must exist, be bound to this request, and be
/// neither rejected, expired nor used.
pub fn check_presented(
    approval: Option<&Approval>,
    id: &str,
    hash: &str,
    now_ms: i64,
) -> Result<Approval, RuntimeError> {
    let Some(approval) = approval else {
        return Err(RuntimeError::new(
            404,
            "unknown_approval",
            format!("no approval `{id}`"),
        ));
    };
    if approval.request_hash != hash {
        return Err(RuntimeError::new(
            403,
            "approval_mismatch",
            format!(
                "approval `{id}` was given for another request (agent, tool, arguments and context must be the same)"
            ),
        ));
    }
    match approval.state {
        ApprovalState::Pending | ApprovalState::Approved if approval.expires_ms > now_ms => {
            Ok(approval.clone())
        }
        ApprovalState::Pending | ApprovalState::Approved | ApprovalState::Expired => Err(
            RuntimeError::new(410, "approval_expired", format!("approval `{id}` expired")),
        ),
        ApprovalState::Rejected => Err(RuntimeError::new(
            409,
            "approval_rejected",
            format!(
                "approval `{id}` was rejected: {}",
                approval.reason.as_deref().unwrap_or("no reason given")
            ),
        )),
        ApprovalState::Consumed => Err(RuntimeError::new(
            409,
            "approval_consumed",
            format!("approval `{id}` was already used for an action (one approval, one action)"),
        )),
    }
}

fn state_name(state: ApprovalState) -> &'static str {
    match state {
        ApprovalState::Pending => "pending",
        ApprovalState::Approved => "approved",
        ApprovalState::Rejected => "rejected",
        ApprovalState::Expired => "expired",
        ApprovalState::Consumed => "consumed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(missing: &[&str]) -> Approval {
        Approval {
            id: "a-1".to_owned(),
            state: ApprovalState::Pending,
            request_hash: "h".to_owned(),
            request: json!({}),
            tool: "deploy".to_owned(),
            rules: vec!["r".to_owned()],
            missing: missing.iter().map(|g| g.to_string()).collect(),
            granted: Vec::new(),
            sequence: 1,
            created_ms: 0,
            expires_ms: 1_000,
            reason: None,
            decided_by: None,
        }
    }

    #[test]
    fn every_group_must_approve_and_one_rejection_ends_it() {
        let a = approval(&["finance", "security"]);
        let a = decide_approval(&a, "finance", None, "f", 10).expect("approves");
        assert_eq!(
            (a.state, a.granted.clone()),
            (ApprovalState::Pending, vec!["finance".to_owned()])
        );
        let a = decide_approval(&a, "finance", None, "f", 10).expect("twice is harmless");
        assert_eq!(a.state, ApprovalState::Pending);
        let done = decide_approval(&a, "security", None, "s", 10).expect("approves");
        assert_eq!(done.state, ApprovalState::Approved);
        let rejected = decide_approval(&a, "security", Some("no"), "s", 10).expect("rejects");
        assert_eq!(rejected.state, ApprovalState::Rejected);
        let error = decide_approval(&rejected, "security", None, "s", 10).expect_err("closed");
        assert_eq!(error.code, "approval_closed");
        let error = decide_approval(&a, "legal", None, "l", 10).expect_err("not asked");
        assert_eq!(error.code, "unknown_group");
        let error = decide_approval(&a, "security", None, "s", 1_000).expect_err("late");
        assert_eq!(error.code, "approval_expired");
    }

    #[test]
    fn a_presented_approval_must_be_this_requests_and_unused() {
        let mut a = approval(&[]);
        a.state = ApprovalState::Approved;
        let code = |a: Option<&Approval>, hash: &str, now: i64| {
            check_presented(a, "a-1", hash, now)
                .map(|_| ())
                .map_err(|e| e.code)
        };
        assert_eq!(code(Some(&a), "h", 10), Ok(()));
        assert_eq!(code(None, "h", 10), Err("unknown_approval"));
        assert_eq!(code(Some(&a), "other", 10), Err("approval_mismatch"));
        assert_eq!(code(Some(&a), "h", 1_000), Err("approval_expired"));
        a.state = ApprovalState::Consumed;
        assert_eq!(code(Some(&a), "h", 10), Err("approval_consumed"));
    }

    #[test]
    fn the_hash_binds_agent_tool_arguments_and_context_only() {
        let base = json!({"agent": {"id": "a"}, "tool": "t", "args": {"x": 1}, "context": {}, "session": "s1"});
        let mut other_session = base.clone();
        other_session["session"] = json!("s2");
        assert_eq!(request_hash(&base), request_hash(&other_session));
        let mut other_args = base.clone();
        other_args["args"]["x"] = json!(2);
        assert_ne!(request_hash(&base), request_hash(&other_args));
    }
}
