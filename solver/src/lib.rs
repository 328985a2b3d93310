//! Z3 analysis of policy sets: the IR's semantics (language.md §3) as SMT terms, and the
//! findings of `polctl check` built on it.
//!
//! The only crate that links `z3`. Z3 contexts are thread-local, so every rayon worker has its
//! own.

pub mod candidates;
pub mod check;
pub mod construct;
pub mod diff;
pub mod edges;
pub mod encode;
pub mod findings;
pub mod languages;
pub mod pool;
pub mod property;
pub mod query;
pub(crate) mod realize;
pub mod regex;
pub mod strings;
pub mod witness;

pub use encode::{EncodeError, EncodedCondition, Encoding, LIST_BOUND};
pub use findings::{analyze, analyze_with_progress, Analysis, AnalysisError, Options, ProgressFn};
