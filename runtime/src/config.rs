//! `polctl serve --config serve.toml` (runtime.md §2): server settings, each with the default
//! written here. Built so far: `[approvals] expiry` and `[http] body_limit`; the `[audit]` and
//! `[breakers]` sections are read and their settings reported as not applied yet, so a file
//! written for a later version still starts the server.
//!
//! ```toml
//! [approvals]
//! expiry = "24h"        # how long an approval stays valid
//!
//! [http]
//! body_limit = 1048576  # bytes
//! ```

use crate::engine::EngineSettings;
use crate::http::HttpSettings;
use serde::Deserialize;

#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    pub http: HttpSettings,
    pub engine: EngineSettings,
    /// Settings read but not applied yet (`[audit] retain`, ...), to report at start.
    pub not_applied: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    approvals: Option<Approvals>,
    #[serde(default)]
    http: Option<Http>,
    #[serde(default)]
    audit: Option<toml::Table>,
    #[serde(default)]
    breakers: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Approvals {
    expiry: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Http {
    body_limit: Option<usize>,
}

impl ServerConfig {
    /// Reads the file's text; `Err` names the setting and what is wrong.
    pub fn parse(text: &str) -> Result<ServerConfig, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut config = ServerConfig::default();
        if let Some(expiry) = file.approvals.and_then(|a| a.expiry) {
            let ms = polctl_rollout::duration::parse_millis(&expiry)
                .map_err(|e| format!("[approvals] expiry: {e}"))?;
            if ms <= 0 {
                return Err("[approvals] expiry must be longer than 0s".to_owned());
            }
            config.engine.approval_expiry_ms = ms;
        }
        if let Some(limit) = file.http.and_then(|h| h.body_limit) {
            if limit < 1024 {
                return Err(format!(
                    "[http] body_limit = {limit} is under 1024 bytes; a request would not fit"
                ));
            }
            config.http.body_limit = limit;
        }
        for (section, table) in [("audit", file.audit), ("breakers", file.breakers)] {
            for key in table.unwrap_or_default().keys() {
                config.not_applied.push(format!("[{section}] {key}"));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_have_defaults_and_bad_values_are_named() {
        let config = ServerConfig::parse("").expect("empty is fine");
        assert_eq!(config.engine.approval_expiry_ms, 24 * 3600 * 1000);
        assert_eq!(config.http.body_limit, 1024 * 1024);
        let config =
            ServerConfig::parse("[approvals]\nexpiry = \"90m\"\n[audit]\nretain = \"90d\"\n")
                .expect("parses");
        assert_eq!(config.engine.approval_expiry_ms, 90 * 60 * 1000);
        assert_eq!(config.not_applied, vec!["[audit] retain".to_owned()]);
        let error = ServerConfig::parse("[approvals]\nexpiry = \"soon\"\n").expect_err("bad");
        assert!(error.contains("[approvals] expiry"), "{error}");
        let error = ServerConfig::parse("[aproovals]\n").expect_err("unknown section");
        assert!(error.contains("aproovals"), "{error}");
    }
}
