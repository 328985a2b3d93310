//! `polctl breakers list | open POLICY | close POLICY | release POLICY`: a policy's circuit
//! breaker on a running server (runtime.md §3.6). Forcing one open is a per-policy kill switch:
//! the policy's `on failure` applies at once (fail closed: its requests are denied; fail open:
//! its limits and approvals are skipped, with `failsafe` in the decision), until released.

use crate::exit::{CliError, Exit};
use crate::output::Format;
use crate::server_client::{ServerArgs, ServerClient};
use clap::{Args, Subcommand};
use serde_json::json;

/// Show, force or release policies' circuit breakers.
#[derive(Args)]
pub struct BreakersArgs {
    #[command(subcommand)]
    command: BreakersCommand,
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Subcommand)]
enum BreakersCommand {
    /// Every breaker that has seen a call or was forced.
    List,
    /// Force a policy's breaker open (its failure mode applies) until released.
    Open { policy: String },
    /// Force it closed (evaluated normally whatever its state does) until released.
    Close { policy: String },
    /// Give it back to its failures and the clock.
    Release { policy: String },
}

pub fn run(args: BreakersArgs) -> Result<Exit, CliError> {
    let client = ServerClient::new(&args.server)?;
    let answer = match &args.command {
        BreakersCommand::List => client.get("/v1/breakers")?,
        BreakersCommand::Open { policy } => {
            client.post(&format!("/v1/breakers/{policy}/open"), &json!({}))?
        }
        BreakersCommand::Close { policy } => {
            client.post(&format!("/v1/breakers/{policy}/close"), &json!({}))?
        }
        BreakersCommand::Release { policy } => {
            client.post(&format!("/v1/breakers/{policy}/release"), &json!({}))?
        }
    };
    match args.format {
        Format::Json => crate::output::print_document(
            &serde_json::to_string_pretty(&answer).unwrap_or_default(),
        ),
        Format::Human => {
            let breakers = answer["breakers"].as_object().cloned().unwrap_or_default();
            if breakers.is_empty() {
                println!("no breaker has seen a failure or been forced: every policy is evaluated normally");
            }
            for (policy, breaker) in breakers {
                let forced = match breaker["forced"].as_str() {
                    Some(forced) => format!(" (forced {forced} by an operator)"),
                    None => String::new(),
                };
                println!(
                    "{policy:<32} {}{forced}",
                    breaker["state"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(Exit::Success)
}
