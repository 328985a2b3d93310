//! `polctl context set|unset|show`: operator context on a running server (runtime.md §3.5),
//! the kill switch and read-only mode of a live system: seconds, no bundle, no deploy.

use crate::exit::{CliError, Exit};
use crate::output::Format;
use crate::server_client::{ServerArgs, ServerClient};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

/// Set, unset or show the operator context (the context attributes the set's polctl.toml
/// gives to operators, e.g. `mode` and `kill_switch`).
#[derive(Args)]
pub struct ContextArgs {
    #[command(subcommand)]
    command: ContextCommand,
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Subcommand)]
enum ContextCommand {
    /// Set values: `polctl context set mode=incident kill_switch=true`.
    Set {
        /// Only for this tenant (its values win over every tenant's).
        #[arg(long)]
        tenant: Option<String>,
        /// NAME=VALUE; VALUE is read as JSON when it is JSON (true, 3, "x"), else as text.
        #[arg(required = true, value_name = "NAME=VALUE")]
        values: Vec<String>,
    },
    /// Remove values (the set's default applies again).
    Unset {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Show the values and the defaults.
    Show,
}

pub fn run(args: ContextArgs) -> Result<Exit, CliError> {
    let client = ServerClient::new(&args.server)?;
    let document = match args.command {
        ContextCommand::Set { tenant, values } => {
            let mut parsed = Map::new();
            for pair in &values {
                let (name, value) = pair.split_once('=').ok_or_else(|| {
                    CliError::new(format!("`{pair}` is not NAME=VALUE"))
                        .with_help("e.g. `polctl context set mode=read_only`")
                })?;
                let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
                parsed.insert(name.to_owned(), value);
            }
            client.put_json(
                "/v1/context",
                &json!({ "tenant": tenant, "values": parsed }),
            )?
        }
        ContextCommand::Unset { tenant, names } => {
            let mut last = Value::Null;
            for name in names {
                let query = tenant
                    .as_ref()
                    .map(|t| format!("?tenant={}", encode(t)))
                    .unwrap_or_default();
                last = client.delete(&format!("/v1/context/{}{query}", encode(&name)))?;
            }
            last
        }
        ContextCommand::Show => client.get("/v1/context")?,
    };
    match args.format {
        Format::Json => crate::output::print_document(
            &serde_json::to_string_pretty(&document).unwrap_or_default(),
        ),
        Format::Human => print_human(&document),
    }
    Ok(Exit::Success)
}

fn print_human(document: &Value) {
    let empty = Map::new();
    let all = document["all_tenants"].as_object().unwrap_or(&empty);
    println!("operator context (every tenant):");
    for (name, default) in document["defaults"].as_object().unwrap_or(&empty) {
        match all.get(name) {
            Some(value) => println!("  {name} = {value}"),
            None => println!("  {name} = {default} (default)"),
        }
    }
    for (tenant, values) in document["tenants"].as_object().unwrap_or(&empty) {
        println!("tenant {tenant}:");
        for (name, value) in values.as_object().unwrap_or(&empty) {
            println!("  {name} = {value}");
        }
    }
}

/// Percent-encodes a path or query component.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
