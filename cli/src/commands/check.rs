//! `polctl check DIR`: compiles a policy set and reports every problem.
//!
//! Until the solver lands, `check` is the compile stage (syntax, schema and type checking);
//! `--compile-only` stays as the fast path for editors and pre-commit hooks.

use crate::exit::{CliError, Exit};
use crate::load::load_policy_set;
use crate::output::{plural, ColorChoice, Format};
use clap::Args;
use polctl_lang::diagnostic::{render_human, JsonFinding};
use polctl_lang::{compile, Compilation, SourceSet};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Check a policy set: syntax, schema and types, then (once the solver lands) conflicts.
///
/// Reports every error in every file in one run. Exits 0 when the set is clean, 2 when there
/// are errors (or warnings, with --strict), 1 when the set cannot be read.
#[derive(Args)]
pub struct CheckArgs {
    /// The policy set: a directory of `.pol` files (searched recursively), or one `.pol` file.
    path: PathBuf,
    /// Only parse and type-check (the fast path for editors and pre-commit hooks).
    #[arg(long)]
    compile_only: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Fail (exit 2) on warnings too.
    #[arg(long)]
    strict: bool,
    /// When to colour human output.
    #[arg(long, value_enum, default_value_t)]
    color: ColorChoice,
}

#[derive(Serialize)]
struct Summary {
    files: usize,
    policies: usize,
    rules: usize,
    errors: usize,
    warnings: usize,
    seconds: f64,
}

#[derive(Serialize)]
struct Report {
    findings: Vec<JsonFinding>,
    summary: Summary,
}

pub fn run(args: CheckArgs) -> Result<Exit, CliError> {
    let started = Instant::now();
    let sources = load_policy_set(&args.path)?;
    // The analysis stage (issue: Z3 conflict analysis) will run here unless `--compile-only`.
    let _ = args.compile_only;
    let compilation = compile(&sources);
    let seconds = started.elapsed().as_secs_f64();
    match args.format {
        Format::Human => print_human(&compilation, &sources, seconds, args.color),
        Format::Json => print_json(&compilation, &sources, seconds)?,
    }
    let failing = compilation.errors() > 0 || (args.strict && compilation.warnings() > 0);
    Ok(if failing {
        Exit::Findings
    } else {
        Exit::Success
    })
}

fn print_human(compilation: &Compilation, sources: &SourceSet, seconds: f64, color: ColorChoice) {
    let color = color.enabled_for_stdout();
    for diagnostic in &compilation.diagnostics {
        println!("{}", render_human(diagnostic, sources, color));
    }
    let stats = compilation.stats;
    let counted = format!(
        "{}, {}, {}",
        plural(stats.files, "file"),
        plural(stats.policies, "policy").replace("policys", "policies"),
        plural(stats.rules, "rule")
    );
    let (errors, warnings) = (compilation.errors(), compilation.warnings());
    if errors + warnings == 0 {
        println!("checked {counted}: no problems ({seconds:.2}s)");
    } else {
        println!(
            "checked {counted}: {} and {} ({seconds:.2}s)",
            plural(errors, "error"),
            plural(warnings, "warning")
        );
    }
}

fn print_json(
    compilation: &Compilation,
    sources: &SourceSet,
    seconds: f64,
) -> Result<(), CliError> {
    let report = Report {
        findings: compilation
            .diagnostics
            .iter()
            .map(|d| JsonFinding::from_diagnostic(d, sources))
            .collect(),
        summary: Summary {
            files: compilation.stats.files,
            policies: compilation.stats.policies,
            rules: compilation.stats.rules,
            errors: compilation.errors(),
            warnings: compilation.warnings(),
            seconds: (seconds * 1000.0).round() / 1000.0,
        },
    };
    let json = serde_json::to_string_pretty(&report)
        .map_err(|error| CliError::new(format!("cannot encode the report as JSON: {error}")))?;
    println!("{json}");
    Ok(())
}
