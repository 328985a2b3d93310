//! `polctl-runtime`: the decision engine of runtime.md §3 and its HTTP front end.
//!
//! - [`approvals`]: approvals bound to their request, per-group decisions, one use each;
//! - [`breakers`]: per-policy circuit breakers, their failure modes and forcing;
//! - [`engine`]: the active bundle behind one atomic route, counters, decisions;
//! - [`rollouts`]: the rollout controller driven by live decisions, the clock and operators;
//! - [`swap`]: the state migration of a swap (counters, approvals) and its report;
//! - [`store`]: the embedded state under `--data` (SQLite) and the journal thread that
//!   commits decisions in groups before they are answered;
//! - [`audit`]: audit entries and their hash chain;
//! - [`audit_log`]: reading the log: verify (chain and signed checkpoints), query, at, export;
//! - [`loaded`]: a bundle verified, compiled and ready to decide;
//! - [`http`]: the axum routes (the engine never sees HTTP);
//! - [`tokens`]: tokens, roles and pinned agent attributes;
//! - [`error`]: the one error type, with a code and an HTTP status.

pub mod approvals;
pub mod audit;
pub mod audit_log;
pub mod breakers;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod loaded;
pub mod metrics;
pub mod rollouts;
pub mod store;
pub mod swap;
pub mod tokens;
