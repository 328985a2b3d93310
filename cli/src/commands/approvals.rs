//! `polctl approvals list|show|approve|reject` (runtime.md §3.3): what approvers run.

use crate::exit::{CliError, Exit};
use crate::output::Format;
use crate::server_client::{ServerArgs, ServerClient};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// List, show, approve or reject approvals on a running server.
#[derive(Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    command: ApprovalsCommand,
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// List approvals, oldest first.
    List {
        /// pending, approved, rejected, expired or consumed.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one approval with its request.
    Show { id: String },
    /// Approve for a group (your token needs `approver:<group>` or `admin`).
    Approve {
        id: String,
        #[arg(long)]
        group: String,
    },
    /// Reject for a group, with a reason the agent and the audit log show.
    Reject {
        id: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        reason: String,
    },
}

pub fn run(args: ApprovalsArgs) -> Result<Exit, CliError> {
    let client = ServerClient::new(&args.server)?;
    let document = match &args.command {
        ApprovalsCommand::List { state } => client.get(&match state {
            Some(state) => format!("/v1/approvals?state={state}"),
            None => "/v1/approvals".to_owned(),
        })?,
        ApprovalsCommand::Show { id } => client.get(&format!("/v1/approvals/{id}"))?,
        ApprovalsCommand::Approve { id, group } => client.post(
            &format!("/v1/approvals/{id}/approve"),
            &json!({ "group": group }),
        )?,
        ApprovalsCommand::Reject { id, group, reason } => client.post(
            &format!("/v1/approvals/{id}/reject"),
            &json!({ "group": group, "reason": reason }),
        )?,
    };
    match args.format {
        Format::Json => crate::output::print_document(
            &serde_json::to_string_pretty(&document).unwrap_or_default(),
        ),
        Format::Human => match &args.command {
            ApprovalsCommand::List { .. } => {
                let approvals = document["approvals"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if approvals.is_empty() {
                    println!("no approvals");
                }
                for approval in approvals {
                    println!("{}", line(&approval));
                }
            }
            ApprovalsCommand::Show { .. } => {
                println!("{}", line(&document));
                println!("  rules:   {}", list(&document["rules"]));
                println!(
                    "  expires: {}",
                    document["expires_at"].as_str().unwrap_or("")
                );
                println!("  request: {}", document["request"]);
            }
            _ => println!("{}", line(&document)),
        },
    }
    Ok(Exit::Success)
}

/// `a-... pending  deploy_config  waiting for security  (granted: finance)`.
fn line(approval: &Value) -> String {
    let missing = list(&approval["missing"]);
    let granted = list(&approval["granted"]);
    format!(
        "{}  {:<8} {}  {}{}",
        approval["id"].as_str().unwrap_or(""),
        approval["state"].as_str().unwrap_or(""),
        approval["tool"].as_str().unwrap_or(""),
        if missing.is_empty() {
            "no group missing".to_owned()
        } else {
            format!("waiting for {missing}")
        },
        if granted.is_empty() {
            String::new()
        } else {
            format!("  (granted: {granted})")
        }
    )
}

fn list(value: &Value) -> String {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
