//! Synthetic policy sets for benchmarks and scale tests.
//!
//! [`generate`] writes a realistic, valid policy set of any size, deterministically from a seed:
//! a schema with tools of all four kinds and every argument type, then policy files scoped to
//! the platform, to tenants, to roles and to agents, using every rule form and condition
//! operator. The same configuration always gives the same bytes.
//!
//! [`generate_planted`] writes a set that is clean by construction plus planted mistakes of
//! every finding kind, for the analysis benchmark.

pub mod planted;
pub mod synth;

pub use planted::{compare, generate_planted, Comparison, Planted, PlantedConfig, PlantedSet};
pub use synth::{generate, SynthConfig};
