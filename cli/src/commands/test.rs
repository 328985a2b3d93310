//! `polctl test DIR`: runs the `*.test.toml` files of a policy set.

use crate::exit::{CliError, Exit};
use crate::load::{compile_loaded_or_report, load_set_and_tests};
use crate::output::ColorChoice;
use clap::{Args, ValueEnum};
use polctl_lang::eval::Evaluator;
use polctl_testkit::{parse_test_file, report, run, RunOptions};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum TestFormat {
    /// A line per test, then failures and a summary, like `cargo test`.
    #[default]
    Human,
    /// One JSON document with every result.
    Json,
    /// JUnit XML, one test suite per file.
    Junit,
}

/// Run the policy set's test files (`*.test.toml`): cases, adversarial variants and properties.
///
/// Exits 3 when a test fails (or coverage is below --min-coverage), 1 when a test file is
/// malformed, 2 when the set does not compile.
#[derive(Args)]
pub struct TestArgs {
    /// The policy set directory (test files are found anywhere under it), or a bundle, whose
    /// test files are the ones it was built with.
    path: PathBuf,
    /// Run only the tests whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: TestFormat,
    /// List the rules that no case exercised (matched and decided).
    #[arg(long)]
    coverage: bool,
    /// Fail (exit 3) when fewer than this percentage of rules are covered.
    #[arg(long, value_name = "PCT")]
    min_coverage: Option<f64>,
    /// Time limit of one property proof; a proof that hits it fails the property.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    timeout_ms: u32,
    /// When to colour diagnostics.
    #[arg(long, value_enum, default_value_t)]
    color: ColorChoice,
}

pub fn run_tests(args: TestArgs) -> Result<Exit, CliError> {
    let started = Instant::now();
    // A bundle is read and verified once for its policies and its tests.
    let (loaded, found) = load_set_and_tests(&args.path)?;
    let json = args.format == TestFormat::Json;
    let Some((sources, set)) = compile_loaded_or_report(&args.path, loaded, args.color, json)?
    else {
        return Ok(Exit::Findings);
    };
    if found.is_empty() {
        return Err(CliError::new(format!(
            "no `*.test.toml` files under `{}`",
            args.path.display()
        ))
        .with_help(
            "write test cases as described in docs/testing.md, e.g. `tests/mail.test.toml`",
        ));
    }
    let mut files = Vec::new();
    let mut malformed = Vec::new();
    for (shown, relative, text) in &found {
        match parse_test_file(relative, text) {
            Ok(file) => files.push(file),
            Err(errors) => {
                for error in &errors {
                    eprintln!("error: {shown}:{}: {}", error.line, error.message);
                }
                malformed.push(shown.clone());
            }
        }
    }
    let evaluator = Evaluator::new(set, sources.revision())
        .map_err(|e| CliError::new(format!("rule `{}`: {}", e.rule, e.message)))?;
    let options = RunOptions {
        filter: args.filter.clone(),
        timeout_ms: args.timeout_ms.max(1),
    };
    let outcome = run(&evaluator, &files, &options);
    let seconds = started.elapsed().as_secs_f64();
    let wants_coverage = args.coverage || args.min_coverage.is_some();
    let coverage = wants_coverage.then(|| report::coverage(&outcome, evaluator.set(), &sources));
    match args.format {
        TestFormat::Human => print!(
            "{}",
            report::human(
                &outcome,
                files.len(),
                &malformed,
                seconds,
                coverage.as_ref()
            )
        ),
        TestFormat::Json => {
            crate::output::print_document(&report::json(&outcome, seconds, coverage.as_ref()))
        }
        TestFormat::Junit => {
            crate::output::print_document(report::junit(&outcome, seconds).trim_end())
        }
    }
    if !malformed.is_empty() {
        return Err(CliError::new(format!(
            "{} malformed and not run",
            crate::output::plural(malformed.len(), "test file")
        ))
        .with_help("fix the problems listed above; docs/testing.md describes the format"));
    }
    if let (Some(minimum), Some(coverage)) = (args.min_coverage, &coverage) {
        if coverage.percent + 1e-9 < minimum {
            return Err(CliError::new(format!(
                "rule coverage {:.1}% is below the required {minimum:.1}%",
                coverage.percent
            ))
            .with_help("add cases for the rules listed as not covered")
            .with_exit(Exit::TestFailures));
        }
    }
    Ok(if outcome.failed() > 0 {
        Exit::TestFailures
    } else {
        Exit::Success
    })
}
