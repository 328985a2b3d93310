//! `polctl replay --traffic FILE --against NEW [--from OLD]`: decide recorded traffic with a
//! new version and report the decisions that change (runtime.md §5.3): shadow mode after the
//! fact. Lines are parsed and decided in parallel, in chunks, so memory holds a few chunks
//! whatever the file's size.

use crate::commands::diff::{compile_side, load_side, FailOn};
use crate::exit::{CliError, Exit};
use crate::output::{plural, Format};
use crate::traffic_file::TrafficReader;
use clap::Args;
use polctl_rollout::replay::{ChangeKind, Replay, ReplayReport};
use rayon::prelude::*;
use std::path::PathBuf;

/// Replay a traffic file against a new version and list the decisions that change, grouped
/// by (old rules → new rules) with counts and an example request each.
///
/// The old decision comes from --from, or from the `decision` recorded in each line (as
/// `polctl audit export` writes it). Exits 2 when --fail-on names a kind of change that
/// occurs.
#[derive(Args)]
pub struct ReplayArgs {
    /// The traffic file (JSON Lines).
    #[arg(long, value_name = "FILE")]
    traffic: PathBuf,
    /// The version to replay: a directory, a bundle, or `git:REV[:PATH]`.
    #[arg(long, value_name = "NEW")]
    against: String,
    /// The version to compare with (default: the decisions recorded in the traffic).
    #[arg(long, value_name = "OLD")]
    from: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Exit 2 when a change of this kind occurs.
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
}

/// Lines per chunk read at a time.
const CHUNK: usize = 64 * 1024;
/// Lines per part a thread of the pool replays.
const PART: usize = 4096;

pub fn run(args: ReplayArgs) -> Result<Exit, CliError> {
    let new_files = load_side(&args.against)?;
    let Some((new, _)) = compile_side(&args.against, &new_files)? else {
        return Ok(Exit::Findings);
    };
    let old = match &args.from {
        Some(spec) => {
            let files = load_side(spec)?;
            match compile_side(spec, &files)? {
                Some((old, _)) => Some(old),
                None => return Ok(Exit::Findings),
            }
        }
        None => None,
    };
    let mut reader = TrafficReader::open(&args.traffic)?;
    let mut total = Replay::new(&new, old.as_ref());
    // A thread reads the next chunk while the pool decides this one; the bounded channel keeps
    // two chunks in memory at most.
    std::thread::scope(|scope| -> Result<(), CliError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let (returns, returned) = std::sync::mpsc::channel();
        let reading = scope.spawn(move || loop {
            while let Ok(done) = returned.try_recv() {
                reader.recycle(done);
            }
            let (chunk, failure) = reader.chunk(CHUNK);
            let last = chunk.line_count() < CHUNK || failure.is_some();
            if sender.send((chunk, failure)).is_err() || last {
                return reader;
            }
        });
        for (chunk, failure) in receiver {
            let count = chunk.line_count();
            let parts: Vec<Result<Replay, (u64, String)>> = (0..count.div_ceil(PART))
                .into_par_iter()
                .map(|part_index| {
                    let mut part = Replay::new(&new, old.as_ref());
                    for index in part_index * PART..count.min((part_index + 1) * PART) {
                        let (number, text) = chunk.line(index);
                        part.feed(number, text)
                            .map_err(|message| (number, message))?;
                    }
                    Ok(part)
                })
                .collect();
            for part in parts {
                match part {
                    Ok(part) => total.merge(part),
                    // The first bad line of the chunk, in file order (parts are in order).
                    Err((number, message)) => {
                        return Err(crate::traffic_file::line_error(
                            &args.traffic,
                            number,
                            message,
                        ))
                    }
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
            let _ = returns.send(chunk);
        }
        let _ = reading.join();
        Ok(())
    })?;
    let report = total.finish();
    match args.format {
        Format::Json => crate::output::print_document(
            &serde_json::to_string_pretty(&report).unwrap_or_default(),
        ),
        Format::Human => print_human(&report, &args),
    }
    let Some(wanted) = args.fail_on else {
        return Ok(Exit::Success);
    };
    let failing: u64 = report
        .changes
        .iter()
        .filter(|c| match wanted {
            FailOn::Widen => c.kind == ChangeKind::Widen,
            FailOn::Narrow => c.kind == ChangeKind::Narrow,
            FailOn::Any => true,
        })
        .map(|c| c.count)
        .sum();
    if failing > 0 {
        let flag = match wanted {
            FailOn::Widen => "widen",
            FailOn::Narrow => "narrow",
            FailOn::Any => "any",
        };
        return Err(CliError::new(format!(
            "{} changed (--fail-on {flag})",
            plural(failing as usize, "request")
        ))
        .with_help("review the changes listed above; each has an example request and its line")
        .with_exit(Exit::Findings));
    }
    Ok(Exit::Success)
}

fn print_human(report: &ReplayReport, args: &ReplayArgs) {
    let t = &report.traffic;
    let baseline = args
        .from
        .as_deref()
        .map_or("the recorded decisions".to_owned(), |old| {
            format!("`{old}`")
        });
    println!(
        "replay: `{}` against `{}`, compared with {baseline}: {} requests, {} compared, {} changed",
        args.traffic.display(),
        args.against,
        t.requests,
        t.compared,
        t.changed
    );
    if t.without_baseline > 0 {
        println!(
            "  {} without a decision to compare with (no --from, none recorded)",
            plural(t.without_baseline as usize, "request")
        );
    }
    for error in &report.errors {
        println!(
            "  {} cannot be decided by the {} version: {} (first at line {})",
            plural(error.count as usize, "request"),
            error.version,
            error.message,
            error.example_line
        );
    }
    if report.changes.is_empty() {
        println!("no decision changes");
        return;
    }
    for change in &report.changes {
        println!(
            "\n{} {}: {} → {}  [{}] → [{}]  {}",
            change.kind.as_str(),
            change.tool,
            change.from.as_str(),
            change.to.as_str(),
            change.old_rules.join(", "),
            change.new_rules.join(", "),
            plural(change.count as usize, "request")
        );
        println!("  e.g. line {}: {}", change.example_line, change.example);
    }
}
