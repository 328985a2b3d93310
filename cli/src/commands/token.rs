//! `polctl token new --name N --role R`: a new secret, printed once, and the line to add to
//! the server's tokens file (which holds only the secret's SHA-256).

use crate::exit::{CliError, Exit};
use clap::{Args, Subcommand};
use polctl_runtime::tokens::{hash_secret, secret_from, Role};

/// Create tokens for `polctl serve --tokens FILE`.
#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new secret and its tokens-file entry.
    New {
        /// A name for audit entries (who pushed, who approved).
        #[arg(long)]
        name: String,
        /// admin, auditor, decide or approver:<group>; repeatable.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Pin an agent attribute for a decide token: `--agent tenant=acme`; repeatable.
        #[arg(long = "agent", value_name = "NAME=VALUE")]
        agent: Vec<String>,
    },
}

pub fn run(args: TokenArgs) -> Result<Exit, CliError> {
    let TokenCommand::New { name, roles, agent } = args.command;
    for role in &roles {
        if Role::parse(role).is_none() {
            return Err(CliError::new(format!("unknown role `{role}`"))
                .with_help("the roles are admin, auditor, decide and approver:<group>"));
        }
    }
    let mut pins = Vec::new();
    for pin in &agent {
        let (key, value) = pin
            .split_once('=')
            .ok_or_else(|| CliError::new(format!("`--agent {pin}` is not NAME=VALUE")))?;
        pins.push(format!("{key} = {}", toml_string(value)));
    }
    let mut random = [0u8; 32];
    getrandom::getrandom(&mut random)
        .map_err(|e| CliError::new(format!("no randomness for the token: {e}")))?;
    let secret = secret_from(random);
    println!("secret (shown once; give it to the client as POLCTL_TOKEN or a --token-file):");
    println!("  {secret}");
    println!();
    println!("add to the tokens file:");
    println!("[[token]]");
    println!("name = {}", toml_string(&name));
    println!("sha256 = \"{}\"", hash_secret(&secret));
    println!(
        "roles = [{}]",
        roles
            .iter()
            .map(|r| toml_string(r))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !pins.is_empty() {
        println!("agent = {{ {} }}", pins.join(", "));
    }
    Ok(Exit::Success)
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
