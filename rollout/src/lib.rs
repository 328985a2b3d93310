//! Rollouts, sans IO (runtime.md §3.6–§3.8, §4, §5): the plan, cohorts, the controller and the
//! statistics of its triggers, breakers, counters, state migration, traffic files, and the
//! simulator and replay that run them offline.
//!
//! Nothing here reads a clock, a file or a socket: time comes in as milliseconds, traffic as
//! parsed JSON, and results go out as values. `polctl serve` drives the same controller with
//! live decisions and the wall clock; `polctl simulate` with recorded traffic and its times.

pub mod breaker;
pub mod cohort;
pub mod controller;
pub mod counters;
pub mod duration;
pub mod migration;
pub mod plan;
pub mod stats;
pub mod window;

pub use cohort::{bucket, cohort, Cohort};
pub use controller::{Controller, Event, EventKind, Observation, Phase, Route};
pub use plan::{parse_plan, Plan, PlanError, Stage};
pub mod replay;
pub mod simulate;
pub mod traffic;
