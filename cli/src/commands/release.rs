//! The release commands that talk to a running server (runtime.md §2): `polctl push BUNDLE`
//! uploads a bundle (the server verifies it, compiles it and runs its tests) and switches
//! traffic to it, or starts a staged rollout with `--plan`; `polctl rollback [--to SEQUENCE]`
//! sends all traffic back at once.

use crate::exit::{CliError, Exit};
use crate::load::read_bytes;
use crate::output::Format;
use crate::server_client::{ServerArgs, ServerClient};
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Upload a bundle to a server and roll it out (without --plan: all traffic at once).
///
/// The server refuses (exit 6) a bundle that is unsigned or badly signed where it has trusted
/// keys, whose sequence is not above every one it activated, that does not compile, or whose
/// own tests fail; the bundle it serves keeps serving.
#[derive(Args)]
pub struct PushArgs {
    /// The bundle (`polctl build`, `polctl sign`).
    bundle: PathBuf,
    /// A rollout plan (rollout.toml): roll out in its stages (rehearse it first with `polctl
    /// simulate`). Without one, the bundle takes all traffic at once.
    #[arg(long, value_name = "PLAN")]
    plan: Option<PathBuf>,
    /// Wait until the rollout is over: exit 0 completed, 5 aborted or rolled back.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run_push(args: PushArgs) -> Result<Exit, CliError> {
    let client = ServerClient::new(&args.server)?;
    let bytes = read_bytes(&args.bundle)?;
    let plan = match &args.plan {
        Some(path) => {
            // Checked here first, for errors with the file's line and column.
            crate::commands::simulate::load_plan(Some(path))?;
            let text = crate::load::read_text(path)?;
            let table: toml::Table = toml::from_str(&text)
                .map_err(|e| CliError::new(format!("`{}`: {e}", path.display())))?;
            Some(serde_json::to_value(table).unwrap_or(Value::Null))
        }
        None => None,
    };
    let uploaded = client.put_bytes("/v1/bundles", bytes)?;
    let sequence = uploaded["sequence"].as_u64().unwrap_or(0);
    let rollout = client.post(
        "/v1/rollouts",
        &json!({ "sequence": sequence, "plan": plan }),
    )?;
    let staged = plan.is_some();
    match args.format {
        Format::Json if !args.wait => crate::output::print_document(
            &serde_json::to_string_pretty(&json!({ "bundle": uploaded, "rollout": rollout }))
                .unwrap_or_default(),
        ),
        Format::Json => {}
        Format::Human => {
            let passed = uploaded["tests"]["passed"].as_u64().unwrap_or(0);
            println!(
                "uploaded sequence {sequence} ({}, {} rules, compiled in {} ms, {})",
                uploaded["revision"].as_str().unwrap_or(""),
                uploaded["rules"],
                uploaded["compile_ms"],
                if passed == 0 {
                    "no test cases in the bundle".to_owned()
                } else {
                    format!("{passed} test cases passed on the server")
                },
            );
            if staged {
                println!(
                    "rollout {} started: stage `{}`, the candidate decides {}% of requests; follow it with `polctl rollout status --watch`",
                    rollout["rollout_id"].as_str().unwrap_or(""),
                    rollout["stage"].as_str().unwrap_or(""),
                    rollout["traffic"].as_f64().unwrap_or(0.0)
                );
            } else {
                println!("sequence {sequence} is active: all traffic (blue-green switch)");
            }
        }
    }
    if args.wait && staged {
        return crate::commands::rollout::follow(&client, args.format, false);
    }
    Ok(Exit::Success)
}

/// Send all traffic back to the previous bundle (or a kept one) at once, whatever the rollout
/// stage.
#[derive(Args)]
pub struct RollbackArgs {
    /// The sequence of a kept bundle (the server keeps the last 10 it activated).
    #[arg(long, value_name = "SEQUENCE")]
    to: Option<u64>,
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run_rollback(args: RollbackArgs) -> Result<Exit, CliError> {
    let client = ServerClient::new(&args.server)?;
    let answer = client.post("/v1/rollback", &json!({ "to_sequence": args.to }))?;
    match args.format {
        Format::Json => crate::output::print_document(
            &serde_json::to_string_pretty(&answer).unwrap_or_default(),
        ),
        Format::Human => println!(
            "rolled back: sequence {} ({}) takes all traffic",
            answer["sequence"],
            answer["revision"].as_str().unwrap_or("")
        ),
    }
    Ok(Exit::Success)
}
