//! `polctl traffic generate SET -o FILE`: realistic traffic for `simulate`, `replay` and
//! benchmarks (runtime.md §5.1), written line by line.

use crate::exit::{CliError, Exit};
use crate::load::compile_or_report;
use crate::output::ColorChoice;
use clap::{Args, Subcommand};
use polctl_lang::eval::time::parse_rfc3339;
use polctl_lang::eval::Evaluator;
use polctl_rollout::duration::parse_millis;
use polctl_rollout::traffic::{GenerateOptions, TrafficGenerator};
use std::io::Write;
use std::path::PathBuf;

/// Traffic files: generate realistic traffic from a policy set.
#[derive(Args)]
pub struct TrafficArgs {
    #[command(subcommand)]
    command: TrafficCommand,
}

#[derive(Subcommand)]
enum TrafficCommand {
    Generate(GenerateArgs),
}

/// Generate a traffic file: sessions of several calls by agents of every role and tenant the
/// set mentions, arguments drawn from the set's own literals, session starts following a
/// daily rhythm, and an outcome per session. The same seed gives the same file.
#[derive(Args)]
struct GenerateArgs {
    /// The policy set (a directory, a `.pol` file or a bundle).
    set: PathBuf,
    /// Where to write the JSON Lines.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// How many sessions.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    sessions: u64,
    /// The span the sessions start in (`24h`, `7d`).
    #[arg(long, default_value = "24h")]
    duration: String,
    /// The seed of the random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The first instant (RFC 3339).
    #[arg(long, default_value = "2026-12-01T00:00:00Z")]
    start: String,
}

pub fn run(args: TrafficArgs) -> Result<Exit, CliError> {
    let TrafficCommand::Generate(args) = args.command;
    let duration_ms = parse_millis(&args.duration).map_err(|message| {
        CliError::new(format!("--duration: {message}")).with_help("write it like `24h` or `7d`")
    })?;
    if duration_ms <= 0 {
        return Err(
            CliError::new("--duration must be longer than 0").with_help("write it like `24h`")
        );
    }
    let start = parse_rfc3339(&args.start).ok_or_else(|| {
        CliError::new(format!(
            "--start `{}` is not an RFC 3339 date-time",
            args.start
        ))
        .with_help("write it like `2026-12-01T00:00:00Z`")
    })?;
    let Some((sources, set)) = compile_or_report(&args.set, ColorChoice::Auto, false)? else {
        return Ok(Exit::Findings);
    };
    if set.schema.tools.is_empty() {
        return Err(
            CliError::new(format!("`{}` declares no tools", args.set.display()))
                .with_help("traffic is tool calls; declare tools in the schema"),
        );
    }
    let evaluator = Evaluator::new(set, sources.revision())
        .map_err(|e| CliError::new(format!("rule `{}`: {}", e.rule, e.message)))?;
    let options = GenerateOptions {
        sessions: args.sessions,
        duration_ms,
        seed: args.seed,
        start: start * 1000,
    };
    // Written beside the target and renamed at the end: an interrupted run leaves no
    // half-written traffic file under the name.
    let mut temporary = args.output.as_os_str().to_owned();
    temporary.push(".polctl.tmp");
    let temporary = PathBuf::from(temporary);
    let file = std::fs::File::create(&temporary).map_err(|e| CliError::write(&temporary, &e))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut lines = 0u64;
    let result = (|| -> std::io::Result<()> {
        for line in TrafficGenerator::new(&evaluator, &options) {
            serde_json::to_writer(&mut writer, &line)?;
            writer.write_all(b"\n")?;
            lines += 1;
        }
        writer.flush()
    })();
    if let Err(error) = result.and_then(|()| std::fs::rename(&temporary, &args.output)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(CliError::write(&args.output, &error));
    }
    eprintln!(
        "wrote {lines} lines ({} sessions) to `{}`",
        args.sessions,
        args.output.display()
    );
    Ok(Exit::Success)
}
