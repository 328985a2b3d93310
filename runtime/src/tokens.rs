//! Tokens and roles (runtime.md §3.2). The tokens file lists each token by the SHA-256 of its
//! secret, never the secret itself, with its roles and, for `decide` tokens, agent attributes
//! it pins:
//!
//! ```toml
//! [[token]]
//! name = "acme-agents"
//! sha256 = "9f86d08..."
//! roles = ["decide"]
//! agent = { tenant = "acme" }
//! ```
//!
//! Clients send `Authorization: Bearer <secret>`. Without a tokens file the server writes an
//! admin token to `DIR/admin.token` on first start and leaves only the data plane open, and
//! only on loopback.

use crate::error::RuntimeError;
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// What a caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything: push, rollout, rollback, context, breakers, approvals, audit.
    Admin,
    /// Approve or reject for one approver group.
    Approver(String),
    /// Read the audit log.
    Auditor,
    /// Ask for decisions.
    Decide,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            "decide" => Some(Role::Decide),
            _ => text
                .strip_prefix("approver:")
                .filter(|group| !group.is_empty())
                .map(|group| Role::Approver(group.to_owned())),
        }
    }
}

/// What an endpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    Decide,
    Admin,
    Auditor,
    Approver(String),
    /// Reading approvals: auditors and any approver.
    ReadApprovals,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub roles: Vec<Role>,
    /// Agent attributes the token pins (decide tokens).
    pub agent: Map<String, Json>,
}

impl Caller {
    pub fn may(&self, need: &Need) -> bool {
        self.roles.iter().any(|role| match (role, need) {
            (Role::Admin, _) => true,
            (Role::Decide, Need::Decide) => true,
            (Role::Auditor, Need::Auditor) => true,
            (Role::Approver(group), Need::Approver(wanted)) => group == wanted,
            (Role::Approver(_) | Role::Auditor, Need::ReadApprovals) => true,
            _ => false,
        })
    }

    /// Fills the pinned agent attributes into a request, refusing one that claims others.
    pub fn pin(&self, request: &mut Json) -> Result<(), RuntimeError> {
        if self.agent.is_empty() {
            return Ok(());
        }
        let Some(object) = request.as_object_mut() else {
            return Ok(()); // the engine refuses it with the right message
        };
        let agent = object
            .entry("agent")
            .or_insert_with(|| Json::Object(Map::new()));
        let Some(agent) = agent.as_object_mut() else {
            return Ok(());
        };
        for (name, pinned) in &self.agent {
            match agent.get(name) {
                Some(claimed) if claimed != pinned => {
                    return Err(RuntimeError::new(
                        403,
                        "pinned_attribute",
                        format!(
                            "token `{}` may only decide for agent.{name} = {pinned}; the request claims {claimed}",
                            self.name
                        ),
                    ))
                }
                _ => {
                    agent.insert(name.clone(), pinned.clone());
                }
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    roles: Vec<String>,
    #[serde(default)]
    agent: Map<String, Json>,
}

/// How callers are authenticated.
pub enum Access {
    /// The tokens of a tokens file, by the hash of their secret.
    Tokens(HashMap<String, Caller>),
    /// No tokens file: the data plane is open (the server listens on loopback only) and the
    /// admin token in `DIR/admin.token` does everything else.
    Local { admin_sha256: String },
}

impl Access {
    /// Reads a tokens file's text; `Err` names the token and what to fix.
    pub fn parse(text: &str) -> Result<Access, String> {
        let file: TokensFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut callers = HashMap::new();
        for entry in file.token {
            let hash = entry.sha256.trim().to_ascii_lowercase();
            let hash = hash.strip_prefix("sha256:").unwrap_or(&hash).to_owned();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "token `{}`: `sha256` is not 64 hex digits; `polctl token new` prints the line to add",
                    entry.name
                ));
            }
            let mut roles = Vec::new();
            for role in &entry.roles {
                roles.push(Role::parse(role).ok_or_else(|| {
                    format!(
                        "token `{}`: unknown role `{role}`; the roles are admin, auditor, decide and approver:<group>",
                        entry.name
                    )
                })?);
            }
            if roles.is_empty() {
                return Err(format!("token `{}` has no roles", entry.name));
            }
            if !entry.agent.is_empty() && !roles.contains(&Role::Decide) {
                return Err(format!(
                    "token `{}`: `agent` pins attributes of decide requests; add the `decide` role or remove `agent`",
                    entry.name
                ));
            }
            let caller = Caller {
                name: entry.name.clone(),
                roles,
                agent: entry.agent,
            };
            if callers.insert(hash, caller).is_some() {
                return Err(format!(
                    "token `{}` has the same secret as another token",
                    entry.name
                ));
            }
        }
        Ok(Access::Tokens(callers))
    }

    /// Who presents `authorization` (the header's value, if any), for an endpoint that needs
    /// `need`: 401 without a valid token, 403 with one that lacks the role.
    pub fn check(&self, authorization: Option<&str>, need: &Need) -> Result<Caller, RuntimeError> {
        let secret = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let open_data_plane = matches!(self, Access::Local { .. }) && *need == Need::Decide;
        let Some(secret) = secret else {
            if open_data_plane {
                return Ok(Caller {
                    name: "loopback".to_owned(),
                    roles: vec![Role::Decide],
                    agent: Map::new(),
                });
            }
            return Err(RuntimeError::new(
                401,
                "unauthenticated",
                "send `Authorization: Bearer <token>` (polctl reads it from --token-file or POLCTL_TOKEN)",
            ));
        };
        let hash = hash_secret(secret);
        let caller = match self {
            Access::Tokens(callers) => callers.get(&hash).cloned(),
            Access::Local { admin_sha256 } => (hash == *admin_sha256).then(|| Caller {
                name: "admin".to_owned(),
                roles: vec![Role::Admin],
                agent: Map::new(),
            }),
        };
        let Some(caller) = caller else {
            return Err(RuntimeError::new(
                401,
                "unauthenticated",
                "the token is not known to this server",
            ));
        };
        if !caller.may(need) {
            return Err(RuntimeError::new(
                403,
                "forbidden",
                format!(
                    "token `{}` does not have the role this needs ({})",
                    caller.name,
                    match need {
                        Need::Decide => "decide".to_owned(),
                        Need::Admin => "admin".to_owned(),
                        Need::Auditor => "auditor".to_owned(),
                        Need::Approver(group) => format!("approver:{group}"),
                        Need::ReadApprovals => "auditor or approver".to_owned(),
                    }
                ),
            ));
        }
        Ok(caller)
    }
}

/// The hex SHA-256 of a secret, as the tokens file lists it.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new secret from 32 random bytes.
pub fn secret_from(random: [u8; 32]) -> String {
    format!("polctl_{}", hex::encode(random))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn access() -> Access {
        Access::parse(&format!(
            r#"
[[token]]
name = "ops"
sha256 = "{}"
roles = ["admin"]

[[token]]
name = "acme-agents"
sha256 = "{}"
roles = ["decide"]
agent = {{ tenant = "acme" }}

[[token]]
name = "finance"
sha256 = "{}"
roles = ["approver:finance"]
"#,
            hash_secret("s-admin"),
            hash_secret("s-acme"),
            hash_secret("s-finance")
        ))
        .expect("parses")
    }

    #[test]
    fn roles_decide_what_a_token_may_do() {
        let access = access();
        let code = |auth: Option<&str>, need: Need| {
            access
                .check(auth, &need)
                .map(|c| c.name)
                .map_err(|e| e.status)
        };
        assert_eq!(code(None, Need::Decide), Err(401));
        assert_eq!(code(Some("Bearer nope"), Need::Decide), Err(401));
        assert_eq!(
            code(Some("Bearer s-admin"), Need::Decide),
            Ok("ops".to_owned())
        );
        assert_eq!(
            code(Some("Bearer s-acme"), Need::Decide),
            Ok("acme-agents".to_owned())
        );
        assert_eq!(code(Some("Bearer s-acme"), Need::Admin), Err(403));
        assert_eq!(
            code(Some("Bearer s-finance"), Need::Approver("finance".into())),
            Ok("finance".to_owned())
        );
        assert_eq!(
            code(Some("Bearer s-finance"), Need::Approver("security".into())),
            Err(403)
        );
    }

    #[test]
    fn pinned_attributes_are_filled_in_and_never_overridden() {
        let access = access();
        let caller = access
            .check(Some("Bearer s-acme"), &Need::Decide)
            .expect("known");
        let mut request = json!({ "agent": { "id": "a-1" }, "tool": "x" });
        caller.pin(&mut request).expect("fills");
        assert_eq!(request["agent"]["tenant"], "acme");
        let mut claims_other = json!({ "agent": { "tenant": "globex" }, "tool": "x" });
        let error = caller.pin(&mut claims_other).expect_err("refused");
        assert_eq!((error.status, error.code), (403, "pinned_attribute"));
    }

    #[test]
    fn a_bad_tokens_file_says_what_to_fix() {
        let error =
            Access::parse("[[token]]\nname = \"x\"\nsha256 = \"abc\"\nroles = [\"admin\"]\n")
                .err()
                .expect("refused");
        assert!(error.contains("64 hex digits"), "{error}");
        let error = Access::parse(&format!(
            "[[token]]\nname = \"x\"\nsha256 = \"{}\"\nroles = [\"root\"]\n",
            hash_secret("s")
        ))
        .err()
        .expect("refused");
        assert!(error.contains("unknown role `root`"), "{error}");
        let error = Access::parse("[[tokens]]\n").err().expect("refused");
        assert!(error.contains("tokens"), "{error}");
    }

    #[test]
    fn without_a_tokens_file_only_deciding_is_open() {
        let access = Access::Local {
            admin_sha256: hash_secret("s-admin"),
        };
        assert!(access.check(None, &Need::Decide).is_ok());
        assert_eq!(
            access
                .check(None, &Need::Admin)
                .map(|_| ())
                .map_err(|e| e.status),
            Err(401)
        );
        assert!(access.check(Some("Bearer s-admin"), &Need::Admin).is_ok());
    }
}
