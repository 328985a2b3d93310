//! One module per `polctl` subcommand.

pub mod approvals;
pub mod audit;
pub mod bench;
pub mod breakers;
pub mod build;
pub mod check;
pub mod completions;
pub mod context;
pub mod diff;
pub mod eval;
pub mod fmt;
pub mod keys;
pub mod release;
pub mod replay;
pub mod rollout;
pub mod serve;
pub mod simulate;
pub mod test;
pub mod token;
pub mod traffic;
