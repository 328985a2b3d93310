//! `polctl test`: test files (language.md §5), the runner, adversarial variants, coverage and
//! the human, JSON and JUnit reports.
//!
//! Pure: the CLI reads the files and prints the reports.

pub mod adversarial;
pub mod file;
pub mod report;
pub mod runner;

pub use file::{parse_test_file, TestFile, TestFileError};
pub use runner::{run, CaseResult, Outcome as CaseOutcome, RunOptions, RunReport};
