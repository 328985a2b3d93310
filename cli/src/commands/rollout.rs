//! `polctl rollout status [--watch] [--wait] | promote [--full] | pause | resume | abort`
//! (runtime.md §2): the rollout on a running server, shown as a tree of stages like
//! `kubectl argo rollouts get`, and the operator's actions on it.
//!
//! `--wait` (and `polctl push --wait`) polls until the rollout is over: exit 0 when it
//! completed, 5 when it was aborted or rolled back.

use crate::exit::{CliError, Exit};
use crate::output::Format;
use crate::server_client::{ServerArgs, ServerClient};
use clap::{Args, Subcommand};
use polctl_rollout::duration::format_millis;
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

/// See and steer the rollout on a server.
#[derive(Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    action: RolloutCommand,
}

#[derive(Subcommand)]
enum RolloutCommand {
    /// The rollout's stages, figures and recent events.
    Status {
        /// Print the status again whenever it changes, until the rollout is over.
        #[arg(long)]
        watch: bool,
        /// Wait until the rollout is over: exit 0 completed, 5 aborted.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Skip the rest of the current stage (`--full`: every remaining stage, at once).
    Promote {
        #[arg(long)]
        full: bool,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Hold the current stage (rollback triggers are still watched).
    Pause {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Continue a paused rollout.
    Resume {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Send all traffic back to stable and stop the rollout (the candidate is kept).
    Abort {
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub fn run(args: RolloutArgs) -> Result<Exit, CliError> {
    let (action, body, server, format) = match args.action {
        RolloutCommand::Status {
            watch,
            wait,
            server,
            format,
        } => {
            let client = ServerClient::new(&server)?;
            return if watch || wait {
                follow(&client, format, watch)
            } else {
                let document = client.get("/v1/rollouts/current")?;
                show(&document, format);
                Ok(Exit::Success)
            };
        }
        RolloutCommand::Promote {
            full,
            server,
            format,
        } => ("promote", json!({ "full": full }), server, format),
        RolloutCommand::Pause { server, format } => ("pause", json!({}), server, format),
        RolloutCommand::Resume { server, format } => ("resume", json!({}), server, format),
        RolloutCommand::Abort {
            reason,
            server,
            format,
        } => ("abort", json!({ "reason": reason }), server, format),
    };
    let client = ServerClient::new(&server)?;
    let document = client.post(&format!("/v1/rollouts/current/{action}"), &body)?;
    show(&document, format);
    Ok(Exit::Success)
}

/// Polls the rollout until it is over; prints it when it changes (`watch`) or once at the
/// end. Exit 0 completed, 5 aborted.
pub fn follow(client: &ServerClient, format: Format, watch: bool) -> Result<Exit, CliError> {
    let mut last_events = usize::MAX;
    let mut last_phase = String::new();
    loop {
        let document = client.get("/v1/rollouts/current")?;
        let phase = document["phase"].as_str().unwrap_or("").to_owned();
        let events = document["events"].as_array().map_or(0, Vec::len);
        let over = matches!(phase.as_str(), "completed" | "aborted");
        if watch && (events != last_events || phase != last_phase) {
            if format == Format::Human && last_events != usize::MAX {
                println!();
            }
            show(&document, format);
            let _ = std::io::stdout().flush();
        }
        if over {
            if !watch {
                show(&document, format);
            }
            return Ok(if phase == "completed" {
                Exit::Success
            } else {
                Exit::RolloutIncomplete
            });
        }
        (last_events, last_phase) = (events, phase);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Prints a rollout document: JSON as the server gave it, or the tree.
pub fn show(document: &Value, format: Format) {
    match format {
        Format::Json => crate::output::print_document(
            &serde_json::to_string_pretty(document).unwrap_or_default(),
        ),
        Format::Human => print!("{}", tree(document)),
    }
}

/// The rollout as an operator reads it at 3 am: what is rolling out, where it is, each
/// stage's figures, why it waits or stopped, and the last events.
pub fn tree(document: &Value) -> String {
    let mut out = String::new();
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let phase = text(&document["phase"]);
    let symbol = match phase.as_str() {
        "completed" => "✔",
        "aborted" => "✖",
        "paused" => "॥",
        _ => "◌",
    };
    out.push_str(&format!(
        "Rollout   {}\nStatus    {symbol} {phase}",
        text(&document["rollout_id"]),
    ));
    if !matches!(phase.as_str(), "completed" | "aborted") {
        out.push_str(&format!(
            " in stage `{}`: the candidate decides {}% of requests, for {}",
            text(&document["stage"]),
            percent(&document["traffic"]),
            format_millis(document["stage_elapsed_ms"].as_i64().unwrap_or(0))
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "Candidate sequence {} ({})\nStable    sequence {}\nSticky by {}\n",
        document["sequence"],
        text(&document["revision"]),
        document["stable_sequence"],
        text(&document["stickiness"]),
    ));
    if let Some(abort) = document["aborted"].as_object() {
        let field = |key: &str| abort.get(key).cloned().unwrap_or(Value::Null);
        let trigger = field("trigger").as_str().unwrap_or("").to_owned();
        let figure = if trigger == "manual" {
            "by an operator".to_owned()
        } else {
            format!(
                "`{trigger}` breached: {} against {}",
                show_figure(&trigger, &field("value")),
                show_figure(&trigger, &field("threshold"))
            )
        };
        out.push_str(&format!(
            "Aborted   in `{}` {figure}{}\n",
            field("stage").as_str().unwrap_or(""),
            field("reason")
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
        ));
    }
    out.push('\n');
    let stages = document["stages"].as_array().cloned().unwrap_or_default();
    for (index, stage) in stages.iter().enumerate() {
        let branch = if index + 1 == stages.len() {
            "└──"
        } else {
            "├──"
        };
        let state = text(&stage["state"]);
        let mark = match state.as_str() {
            "done" => "✔",
            "current" => "►",
            "paused" => "॥",
            "aborted" => "✖",
            _ => " ",
        };
        out.push_str(&format!(
            "{branch} {mark} {:<12} {:>4}%  {:<8}",
            text(&stage["name"]),
            percent(&stage["traffic"]),
            state
        ));
        let figures = &stage["figures"];
        if figures.is_object() {
            let cohort = |name: &str| {
                let c = &figures["cohorts"][name];
                format!(
                    "{} {} decisions, deny {:.1}%, errors {:.2}%{}",
                    name,
                    c["decisions"],
                    c["deny_rate"].as_f64().unwrap_or(0.0) * 100.0,
                    c["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                    c["p99_us"]
                        .as_u64()
                        .map(|us| format!(", p99 {us}µs"))
                        .unwrap_or_default()
                )
            };
            let pad = if index + 1 == stages.len() {
                "    "
            } else {
                "│   "
            };
            out.push_str(&format!(
                " {} requests, divergence {:.2}%\n{pad}    {}\n{pad}    {}",
                figures["requests"],
                figures["divergence"].as_f64().unwrap_or(0.0) * 100.0,
                cohort("candidate"),
                cohort("stable"),
            ));
        }
        out.push('\n');
    }
    let events = document["events"].as_array().cloned().unwrap_or_default();
    if !events.is_empty() {
        out.push_str("\nEvents (latest last)\n");
        for event in events.iter().rev().take(8).rev() {
            let time = event["time"].as_i64().unwrap_or(0);
            out.push_str(&format!(
                "  {}  {:<9} {:<12} {}\n",
                polctl_runtime::audit::format_time(time),
                text(&event["event"]),
                text(&event["stage"]),
                text(&event["detail"])
            ));
        }
    }
    out
}

/// A traffic percentage without a needless `.0`.
fn percent(value: &Value) -> String {
    let value = value.as_f64().unwrap_or(0.0);
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// A criterion's figure as the controller words it (rates in percent, latencies in time).
fn show_figure(key: &str, value: &Value) -> String {
    polctl_rollout::controller::show(key, value.as_f64().unwrap_or(0.0))
}
