//! `polctl serve --config serve.toml` (runtime.md §2): server settings, each with the default
//! written here: `[approvals]`, `[http]`, `[breakers]` and `[audit]`. Keys of `[audit]` this
//! version does not know are reported at start as not applied, so a file written for a later
//! version still starts the server; anything else unknown is an error.
//!
//! ```toml
//! [approvals]
//! expiry = "24h"        # how long an approval stays valid
//!
//! [http]
//! body_limit = 1048576  # bytes
//!
//! [breakers]            # runtime.md §3.6
//! window = "10s"        # failures are counted over this window
//! min_calls = 20        # at least this many calls in the window
//! failure_ratio = 0.5   # and at least this fraction failing opens the breaker
//! open = "30s"          # it stays open this long
//! trial_calls = 10      # then this many trial calls decide between closing and opening again
//!
//! [audit]
//! arguments = "keep"    # or "hash": decision entries hold each argument's SHA-256, not its value
//! retain = "90d"        # prune whole UTC days older than this (default: keep everything)
//! ```

use crate::engine::EngineSettings;
use crate::http::HttpSettings;
use serde::Deserialize;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    pub http: HttpSettings,
    pub engine: EngineSettings,
    /// `[audit] retain`: audit entries older than this (whole UTC days) are pruned.
    pub retain_ms: Option<i64>,
    /// Settings read but not applied yet, to report at start.
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
    breakers: Option<Breakers>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Breakers {
    window: Option<String>,
    min_calls: Option<u32>,
    failure_ratio: Option<f64>,
    open: Option<String>,
    trial_calls: Option<u32>,
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
        if let Some(breakers) = file.breakers {
            let settings = &mut config.engine.breakers;
            let duration = |key: &str, text: &str| -> Result<i64, String> {
                let ms = polctl_rollout::duration::parse_millis(text)
                    .map_err(|e| format!("[breakers] {key}: {e}"))?;
                if ms <= 0 {
                    return Err(format!("[breakers] {key} must be longer than 0s"));
                }
                Ok(ms)
            };
            if let Some(window) = &breakers.window {
                settings.window_ms = duration("window", window)?;
            }
            if let Some(open) = &breakers.open {
                settings.open_ms = duration("open", open)?;
            }
            if let Some(calls) = breakers.min_calls {
                settings.min_calls = calls.max(1);
            }
            if let Some(calls) = breakers.trial_calls {
                settings.trial_calls = calls.max(1);
            }
            if let Some(ratio) = breakers.failure_ratio {
                if !(ratio > 0.0 && ratio <= 1.0) {
                    return Err(format!(
                        "[breakers] failure_ratio = {ratio} is not a fraction above 0 and at most 1"
                    ));
                }
                settings.failure_ratio = ratio;
            }
        }
        for (key, value) in file.audit.unwrap_or_default() {
            match (key.as_str(), value.as_str()) {
                ("arguments", Some("keep")) => config.engine.hash_arguments = false,
                ("arguments", Some("hash")) => config.engine.hash_arguments = true,
                ("retain", Some(text)) => {
                    let ms = polctl_rollout::duration::parse_millis(text)
                        .map_err(|e| format!("[audit] retain: {e}"))?;
                    if ms < DAY_MS {
                        return Err(format!(
                            "[audit] retain = \"{text}\" is shorter than a day: the log is pruned in whole days; use \"1d\" or more"
                        ));
                    }
                    config.retain_ms = Some(ms);
                }
                ("retain", _) => {
                    return Err(format!(
                        "[audit] retain = {value}: give a duration such as \"90d\""
                    ))
                }
                ("arguments", _) => {
                    return Err(format!(
                        "[audit] arguments = {value}: use \"keep\" (the default) or \"hash\""
                    ))
                }
                _ => config.not_applied.push(format!("[audit] {key}")),
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
        assert_eq!(config.retain_ms, Some(90 * 86_400_000));
        assert!(config.not_applied.is_empty());
        let config = ServerConfig::parse("[audit]\nsegments = \"1d\"\n").expect("parses");
        assert_eq!(config.not_applied, vec!["[audit] segments".to_owned()]);
        let error = ServerConfig::parse("[audit]\nretain = \"12h\"\n").expect_err("bad");
        assert!(error.contains("shorter than a day"), "{error}");
        assert!(!config.engine.hash_arguments);
        let config = ServerConfig::parse("[audit]\narguments = \"hash\"\n").expect("parses");
        assert!(config.engine.hash_arguments && config.not_applied.is_empty());
        let error = ServerConfig::parse("[audit]\narguments = \"sha\"\n").expect_err("bad");
        assert!(
            error.contains("[audit] arguments") && error.contains("\"hash\""),
            "{error}"
        );
        let error = ServerConfig::parse("[approvals]\nexpiry = \"soon\"\n").expect_err("bad");
        assert!(error.contains("[approvals] expiry"), "{error}");
        let error = ServerConfig::parse("[aproovals]\n").expect_err("unknown section");
        assert!(error.contains("aproovals"), "{error}");
        let config =
            ServerConfig::parse("[breakers]\nwindow = \"5s\"\nmin_calls = 4\nopen = \"2s\"\n")
                .expect("parses");
        assert_eq!(config.engine.breakers.window_ms, 5000);
        assert_eq!(config.engine.breakers.min_calls, 4);
        assert_eq!(config.engine.breakers.open_ms, 2000);
        let error =
            ServerConfig::parse("[breakers]\nfailure_ratio = 1.5\n").expect_err("bad ratio");
        assert!(error.contains("failure_ratio"), "{error}");
    }
}
