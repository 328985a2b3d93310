//! One module per `polctl` subcommand.

pub mod bench;
pub mod check;
pub mod completions;
pub mod eval;
pub mod fmt;
pub mod test;
