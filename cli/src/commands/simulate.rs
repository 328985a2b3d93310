//! `polctl simulate --from OLD --to NEW --traffic FILE --plan PLAN`: rehearse a rollout on
//! recorded or generated traffic with the controller the server runs (runtime.md §5.2).

use crate::commands::diff::{compile_side, load_side};
use crate::exit::{CliError, Exit};
use crate::load::{read_text, write_atomically};
use crate::output::Format;
use crate::traffic_file::{Chunk, TrafficReader};
use clap::Args;
use polctl_lang::eval::Evaluator;
use polctl_rollout::controller::show;
use polctl_rollout::plan::{parse_plan, Plan};
use polctl_rollout::simulate::{
    PredictedClass, Prediction, PreparedLine, SimulationReport, SimulationSetup, Simulator,
};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Rehearse a rollout: run the plan's stages, criteria and rollback triggers over a traffic
/// file, each request decided by its cohort's version and shadowed by the other, on a clock
/// driven by the traffic's times.
///
/// Prints the stage timeline, per-stage and per-cohort figures, the divergences between the
/// versions (and whether `polctl diff` predicted them), the state migration at cutover and the
/// verdict. Exits 0 when the rollout completes, 5 when it is aborted or the traffic ends first.
#[derive(Args)]
pub struct SimulateArgs {
    /// The stable version: a directory, a bundle, or `git:REV[:PATH]`.
    #[arg(long, value_name = "OLD")]
    from: String,
    /// The candidate: a directory, a bundle, or `git:REV[:PATH]`.
    #[arg(long, value_name = "NEW")]
    to: String,
    /// The traffic file (JSON Lines, in time order), from `polctl traffic generate` or
    /// `polctl audit export`.
    #[arg(long, value_name = "FILE")]
    traffic: PathBuf,
    /// The rollout plan (`rollout.toml`); without it, the default plan (docs/rollouts.md).
    #[arg(long, value_name = "PLAN")]
    plan: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Also write an HTML page with the deny and error rates per cohort over time, the stages
    /// drawn as bands.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// The rollout id that fixes the cohorts (default: derived from both versions).
    #[arg(long, value_name = "ID")]
    rollout_id: Option<String>,
    /// The candidate's sequence number, for the approval migration's reasons.
    #[arg(long, default_value_t = 0, value_name = "N")]
    sequence: u64,
    /// Time limit of one solver query of the semantic diff (run to tell expected divergences
    /// from unexpected ones when the plan sets `unexpected_divergence`).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    timeout_ms: u32,
}

/// Lines per chunk passed from the reading thread to the simulator.
const CHUNK: usize = 8192;

/// Lines, the first of them prepared (all but those from the first bad line on), and the
/// error that ended the file early, if any.
type PreparedChunk = (Chunk, Vec<PreparedLine>, Option<CliError>);

/// Reads and validates a plan file, or the default plan.
pub fn load_plan(path: Option<&Path>) -> Result<Plan, CliError> {
    let Some(path) = path else {
        return Ok(Plan::default());
    };
    let text = read_text(path)?;
    parse_plan(&text).map_err(|error| {
        CliError::new(format!(
            "`{}` line {}, column {}: {}",
            path.display(),
            error.line,
            error.column,
            error.message
        ))
        .with_help(error.help)
    })
}

/// The classes of changed decisions the semantic diff finds, for `unexpected_divergence`.
pub fn predict(old: &Evaluator, new: &Evaluator, timeout_ms: u32) -> Result<Prediction, CliError> {
    let diff = polctl_solver::diff::semantic_diff(old, new, timeout_ms)
        .map_err(|e| CliError::new(format!("the semantic diff failed: {e}")))?;
    let mut prediction = Prediction {
        classes: diff
            .changes
            .iter()
            .map(|c| PredictedClass {
                tool: c.tool.clone(),
                from: c.from,
                to: c.to,
                old_rules: c.old_rules.clone(),
                new_rules: c.new_rules.clone(),
            })
            .collect(),
        unfinished: diff
            .unknown
            .iter()
            .chain(&diff.truncated)
            .map(|u| (u.tool.clone(), u.from, u.to))
            .collect(),
    };
    // A tool the diff could not compare: it predicts nothing either way there.
    use polctl_lang::eval::Outcome::*;
    for (tool, _) in &diff.skipped {
        for from in [Allow, Deny, RequireApproval] {
            for to in [Allow, Deny, RequireApproval] {
                prediction.unfinished.push((tool.clone(), from, to));
            }
        }
    }
    Ok(prediction)
}

pub fn run(args: SimulateArgs) -> Result<Exit, CliError> {
    let plan = load_plan(args.plan.as_deref())?;
    let (old_files, new_files) = (load_side(&args.from)?, load_side(&args.to)?);
    let (Some((old, _)), Some((new, _))) = (
        compile_side(&args.from, &old_files)?,
        compile_side(&args.to, &new_files)?,
    ) else {
        return Ok(Exit::Findings);
    };
    let mut reader = TrafficReader::open(&args.traffic)?;
    let prediction = if plan.rollback.unexpected_divergence {
        Some(predict(&old, &new, args.timeout_ms)?)
    } else {
        None
    };
    let rollout_id = args.rollout_id.clone().unwrap_or_else(|| {
        let version = |e: &Evaluator| {
            let hash = e.policy_version();
            let hash = hash.rsplit(':').next().unwrap_or(hash);
            hash.chars().take(12).collect::<String>()
        };
        format!("sim-{}-{}", version(&old), version(&new))
    });
    let mut simulator = Simulator::new(SimulationSetup {
        stable: &old,
        candidate: &new,
        plan: plan.clone(),
        prediction,
        rollout_id,
        sequence: args.sequence,
    });
    // Reading, parsing and decoding on one thread, the rollout (sequential by nature) on this
    // one: chunks of prepared lines pass through a bounded channel, so memory stays flat.
    let decoders = simulator.decoders();
    let report = std::thread::scope(|scope| -> Result<_, CliError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<PreparedChunk>(2);
        // Chunks come back when done with, so their buffers (megabytes) are reused instead of
        // being allocated, faulted in and freed again for every chunk.
        let (returns, returned) = std::sync::mpsc::channel::<(Chunk, Vec<PreparedLine>)>();
        let reading = scope.spawn(move || {
            let mut spare_lines = Vec::new();
            let mut results = Vec::new();
            loop {
                while let Ok((done, mut lines)) = returned.try_recv() {
                    reader.recycle(done);
                    // Freed on this thread, not on the rollout's (the busiest).
                    lines.clear();
                    spare_lines.push(lines);
                }
                let (lines, mut failure) = reader.chunk(CHUNK);
                // Lines are independent until the rollout sees them: prepared in parallel.
                results.clear();
                results.par_extend((0..lines.line_count()).into_par_iter().map(|index| {
                    let (number, text) = lines.line(index);
                    decoders
                        .prepare_text(text)
                        .map_err(|message| (number, message))
                }));
                let mut ready = spare_lines
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(CHUNK));
                for line in results.drain(..) {
                    match line {
                        Ok(line) => ready.push(line),
                        Err((number, message)) => {
                            failure = Some(reader.line_error(number, message));
                            break;
                        }
                    }
                }
                let done = lines.line_count() < CHUNK || failure.is_some();
                if sender.send((lines, ready, failure)).is_err() || done {
                    return reader;
                }
            }
        });
        for (lines, mut ready, failure) in receiver {
            for (index, prepared) in ready.iter_mut().enumerate() {
                let (number, text) = lines.line(index);
                if let Err(message) = simulator.feed_prepared(prepared, text) {
                    // Stop the reader (it sees the channel close) and report the line.
                    return Err(crate::traffic_file::line_error(
                        &args.traffic,
                        number,
                        message,
                    ));
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
            let _ = returns.send((lines, ready));
        }
        let _ = reading.join();
        Ok(simulator.finish())
    })?;
    if let Some(path) = &args.report {
        let html = crate::rollout_report::html(&report, &plan, &args.from, &args.to);
        write_atomically(path, html.as_bytes())?;
    }
    match args.format {
        Format::Json => crate::output::print_document(
            &serde_json::to_string_pretty(&report).unwrap_or_default(),
        ),
        Format::Human => print_human(&report, &args),
    }
    Ok(if report.verdict == "completed" {
        Exit::Success
    } else {
        Exit::RolloutIncomplete
    })
}

fn percent(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

fn print_human(report: &SimulationReport, args: &SimulateArgs) {
    println!(
        "simulate: {} → {} over `{}` ({} lines: {} requests, {} outcomes)",
        args.from,
        args.to,
        args.traffic.display(),
        report.traffic.lines,
        report.traffic.requests,
        report.traffic.outcomes
    );
    println!("\ntimeline");
    for event in &report.timeline {
        println!(
            "  {}  {:<9} {:<10} {}",
            event.time, event.event, event.stage, event.detail
        );
    }
    println!("\nstages");
    println!(
        "  {:<10} {:>8} {:>9}  {:<9} {:>9} {:>9} {:>10} {:>8}",
        "stage", "traffic", "requests", "cohort", "decisions", "deny", "errors", "p99"
    );
    for stage in &report.stages {
        for (index, (name, figures)) in [
            ("stable", &stage.cohorts.stable),
            ("candidate", &stage.cohorts.candidate),
        ]
        .into_iter()
        .enumerate()
        {
            let (label, traffic, requests) = if index == 0 {
                (
                    stage.name.clone(),
                    format!("{}%", stage.traffic),
                    stage.requests.to_string(),
                )
            } else {
                (String::new(), String::new(), String::new())
            };
            println!(
                "  {:<10} {:>8} {:>9}  {:<9} {:>9} {:>9} {:>10} {:>8}",
                label,
                traffic,
                requests,
                name,
                figures.decisions,
                percent(figures.deny_rate),
                percent(figures.error_rate),
                figures
                    .p99_us
                    .map_or("—".to_owned(), |us| format!("{us}us"))
            );
        }
    }
    if !report.latency_judged {
        println!(
            "  (latency is not judged offline without recorded decision times: docs/rollouts.md)"
        );
    }
    let changed: u64 = report.divergences.iter().map(|d| d.count).sum();
    if report.divergences.is_empty() {
        println!("\ndivergences: none (both versions decided every compared request the same)");
    } else {
        println!(
            "\ndivergences: {} in {}{}",
            crate::output::plural(changed as usize, "request"),
            crate::output::plural(report.divergences.len(), "group"),
            if report.other_divergences > 0 {
                format!(" (and {} in groups not listed)", report.other_divergences)
            } else {
                String::new()
            }
        );
        for group in &report.divergences {
            let predicted = match group.predicted {
                Some(true) => "predicted by polctl diff",
                Some(false) => "NOT predicted by polctl diff",
                None => "diff not run",
            };
            println!(
                "  {} {} → {}  [{}] → [{}]  {} requests, {predicted}",
                group.tool,
                group.from.as_str(),
                group.to.as_str(),
                group.old_rules.join(", "),
                group.new_rules.join(", "),
                group.count
            );
            println!("      e.g. {}", group.example);
        }
    }
    let m = &report.migration.report;
    match &report.migration.at {
        Some(at) => println!("\nmigration at cutover ({at})"),
        None => println!(
            "\nmigration (counters; approvals migrate only at cutover, which did not happen)"
        ),
    }
    println!(
        "  counters: {} carried, {} changed (seeded from stable), {} added, {} removed",
        m.counters.carried, m.counters.changed, m.counters.added, m.counters.removed
    );
    if report.migration.at.is_some() {
        println!(
            "  approvals: {} kept, {} regrouped, {} resolved as approved, {} cancelled",
            m.approvals.kept, m.approvals.regrouped, m.approvals.resolved, m.approvals.cancelled
        );
    }
    println!();
    match (report.verdict, &report.aborted) {
        ("completed", _) => println!(
            "verdict: completed at {}",
            report.completed_at.as_deref().unwrap_or("?")
        ),
        ("aborted", Some(abort)) if abort.trigger == "manual" => {
            println!(
                "verdict: aborted in stage `{}` by hand at {}",
                abort.stage, abort.time
            )
        }
        ("aborted", Some(abort)) => println!(
            "verdict: aborted in stage `{}` by `{}` ({} against {}) at {}",
            abort.stage,
            abort.trigger,
            show(&abort.trigger, abort.value),
            show(&abort.trigger, abort.threshold),
            abort.time
        ),
        _ => println!(
            "verdict: unfinished: {}",
            report
                .unfinished
                .as_deref()
                .unwrap_or("the traffic ended first")
        ),
    }
}
