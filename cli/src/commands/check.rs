//! `polctl check DIR`: compiles a policy set and reports every problem.
//!
//! The compile stage (syntax, schema and type checking), then the Z3 analysis over the whole
//! set (docs/findings.md) unless `--compile-only`. A progress bar goes to stderr when it is a
//! terminal and the analysis runs for more than half a second.

use crate::exit::{CliError, Exit};
use crate::load::{load_policy_set, read_bytes};
use crate::output::{plural, ColorChoice};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use polctl_lang::diagnostic::{render_human, JsonFinding};
use polctl_lang::eval::Evaluator;
use polctl_lang::{compile, compile_against, Compilation, SourceSet};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Check a policy set: syntax, schema and types, then the Z3 analysis of the whole set.
///
/// Reports every error in every file in one run. Exits 0 when the set is clean, 2 when there
/// are errors (or warnings, with --strict), 1 when the set cannot be read.
#[derive(Args)]
pub struct CheckArgs {
    /// The policy set: a directory of `.pol` files (searched recursively), one `.pol` file, or a
    /// bundle (`polctl build`).
    path: PathBuf,
    /// Only parse and type-check, skipping the Z3 analysis (the fast path for editors and
    /// pre-commit hooks).
    #[arg(long)]
    compile_only: bool,
    /// Accepted for compatibility: the analysis now runs by default.
    #[arg(long, hide = true, conflicts_with = "compile_only")]
    analyze: bool,
    /// Analyse the set that would be live after a swap: the running set (a directory or a
    /// bundle), with PATH's policies (and schema and named values) replacing theirs. Finds
    /// conflicts with policies the author of PATH never saw.
    #[arg(long, value_name = "LIVE", conflicts_with = "compile_only")]
    against: Option<PathBuf>,
    /// Time limit of one solver query; a query that hits it is reported as `unknown`.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    timeout_ms: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: CheckFormat,
    /// Fail (exit 2) on warnings too.
    #[arg(long)]
    strict: bool,
    /// When to colour human output.
    #[arg(long, value_enum, default_value_t)]
    color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum CheckFormat {
    /// Source excerpts with labels and help, for people.
    #[default]
    Human,
    /// One JSON document (language.md §4), for CI.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning and other SARIF viewers.
    Sarif,
}

#[derive(Serialize)]
struct Summary {
    files: usize,
    policies: usize,
    rules: usize,
    errors: usize,
    warnings: usize,
    seconds: f64,
    /// Solver queries that ran to their time limit (`--timeout-ms`), however they ended.
    queries_at_time_limit: usize,
    /// Of those, the ones left undecided (each behind an `unknown` finding).
    queries_undecided: usize,
}

#[derive(Serialize)]
struct Report {
    findings: Vec<JsonFinding>,
    summary: Summary,
}

pub fn run(args: CheckArgs) -> Result<Exit, CliError> {
    let started = Instant::now();
    let (sources, mut compilation) = match &args.against {
        None => {
            let sources = load_policy_set(&args.path)?;
            let compilation = compile(&sources);
            (sources, compilation)
        }
        Some(live) => match compile_swapped(&args.path, live)? {
            Some(swapped) => swapped,
            None => return Ok(Exit::Verification),
        },
    };
    let mut limits = TimeLimits::default();
    if let (Some(set), false) = (&compilation.set, args.compile_only) {
        let evaluator = Evaluator::new(set.clone(), sources.revision())
            .map_err(|e| CliError::new(format!("rule `{}`: {}", e.rule, e.message)))?;
        let options = polctl_solver::Options {
            timeout_ms: args.timeout_ms,
        };
        let progress = AnalysisProgress::new(started);
        let analysis = polctl_solver::analyze_with_progress(
            set,
            &evaluator,
            options,
            &|stage, done, total| progress.update(stage, done, total),
        );
        progress.finish();
        let analysis = analysis.map_err(|e| CliError::new(e.to_string()))?;
        limits = TimeLimits {
            reached: analysis.solver_gave_up,
            undecided: analysis.undecided,
            timeout_ms: args.timeout_ms,
        };
        compilation.diagnostics.extend(analysis.findings);
        polctl_lang::diagnostic::sort_diagnostics(&mut compilation.diagnostics);
    }
    let seconds = started.elapsed().as_secs_f64();
    match args.format {
        CheckFormat::Human => print_human(&compilation, &sources, seconds, &limits, args.color),
        CheckFormat::Json => print_json(&compilation, &sources, seconds, &limits)?,
        CheckFormat::Sarif => crate::output::print_document(
            &serde_json::to_string_pretty(&crate::reports::check_sarif(
                &compilation.diagnostics,
                &sources,
            ))
            .unwrap_or_default(),
        ),
    }
    let failing = compilation.errors() > 0 || (args.strict && compilation.warnings() > 0);
    Ok(if failing {
        Exit::Findings
    } else {
        Exit::Success
    })
}

/// The set after a swap: the new set's files and the live set's (a directory, or the sources
/// of a bundle), shown under their own paths, the live files marked so that the new set's
/// definitions replace theirs. `Ok(None)`: the bundle failed its integrity check (exit 4).
fn compile_swapped(new: &Path, live: &Path) -> Result<Option<(SourceSet, Compilation)>, CliError> {
    let new_set = load_policy_set(new)?;
    let live_files: Vec<(String, String)> = if live.is_file() {
        let bytes = read_bytes(live)?;
        match polctl_bundle::open(&bytes) {
            Ok(bundle) => bundle
                .sources()
                .into_iter()
                .filter(|(path, _)| path.ends_with(".pol"))
                .map(|(path, text)| (format!("{}:{path}", live.display()), text))
                .collect(),
            Err(error) => {
                return Err(CliError::new(format!("`{}`: {error}", live.display()))
                    .with_help("`--against` takes the live set's directory or an intact bundle")
                    .with_exit(Exit::Verification));
            }
        }
    } else {
        let live_set = load_policy_set(live)?;
        live_set
            .files()
            .map(|(id, file)| (live_set.display_path(id), file.text.clone()))
            .collect()
    };
    let mut files = Vec::new();
    let mut live_paths = std::collections::HashSet::new();
    for (id, file) in new_set.files() {
        files.push((new_set.display_path(id), file.text.clone()));
    }
    for (mut path, text) in live_files {
        if files.iter().any(|(p, _)| *p == path) {
            path = format!("live:{path}");
        }
        live_paths.insert(path.clone());
        files.push((path, text));
    }
    let sources = SourceSet::from_files(files);
    let compilation = compile_against(&sources, &|id| live_paths.contains(&sources.file(id).path));
    Ok(Some((sources, compilation)))
}

/// The analysis progress bar: hidden until the analysis has run for half a second, and
/// drawn only on a terminal (indicatif hides it otherwise).
struct AnalysisProgress {
    bar: ProgressBar,
    started: Instant,
    shown: std::sync::atomic::AtomicBool,
}

impl AnalysisProgress {
    fn new(started: Instant) -> AnalysisProgress {
        let bar = ProgressBar::hidden();
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} analysing: {msg} [{bar:30}] {pos}/{len} ({elapsed})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        AnalysisProgress {
            bar,
            started,
            shown: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn update(&self, stage: &str, done: usize, total: usize) {
        use std::sync::atomic::Ordering;
        if !self.shown.load(Ordering::Relaxed)
            && self.started.elapsed() > Duration::from_millis(500)
            && !self.shown.swap(true, Ordering::Relaxed)
        {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.set_message(stage.to_owned());
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// How many solver queries ran to their time limit: said in the summary, since they are where
/// the time went and what `--timeout-ms` changes.
#[derive(Default)]
struct TimeLimits {
    reached: usize,
    undecided: usize,
    timeout_ms: u32,
}

fn print_human(
    compilation: &Compilation,
    sources: &SourceSet,
    seconds: f64,
    limits: &TimeLimits,
    color: ColorChoice,
) {
    let color = color.enabled_for_stdout();
    for diagnostic in &compilation.diagnostics {
        println!("{}", render_human(diagnostic, sources, color));
    }
    let stats = compilation.stats;
    let counted = format!(
        "{}, {}, {}",
        plural(stats.files, "file"),
        plural(stats.policies, "policy"),
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
    if limits.reached > 0 {
        println!(
            "note: Z3 gave up on {} (--timeout-ms {}): {} then decided outside Z3, {} left \
             unknown (A10)",
            plural(limits.reached, "query"),
            limits.timeout_ms,
            limits.reached - limits.undecided.min(limits.reached),
            limits.undecided
        );
    }
}

fn print_json(
    compilation: &Compilation,
    sources: &SourceSet,
    seconds: f64,
    limits: &TimeLimits,
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
            queries_at_time_limit: limits.reached,
            queries_undecided: limits.undecided,
        },
    };
    let json = serde_json::to_string_pretty(&report)
        .map_err(|error| CliError::new(format!("cannot encode the report as JSON: {error}")))?;
    crate::output::print_document(&json);
    Ok(())
}
