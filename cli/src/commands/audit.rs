//! `polctl audit verify --data DIR`: walks a server's audit chain offline (runtime.md §3.9)
//! and names the first entry that breaks it (exit 4).

use crate::exit::{CliError, Exit};
use clap::{Args, Subcommand};
use polctl_runtime::audit::verify_chain;
use std::path::PathBuf;

/// Read and check a decision server's audit log.
#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain of every entry; exit 4 naming the first bad one.
    Verify {
        /// The server's --data directory (read only; the server may be running).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
}

pub fn run(args: AuditArgs) -> Result<Exit, CliError> {
    match args.command {
        AuditCommand::Verify { data } => verify(&data),
    }
}

fn verify(data: &std::path::Path) -> Result<Exit, CliError> {
    let entries = polctl_runtime::store::read_audit(data).map_err(|e| CliError::new(e.message))?;
    match verify_chain(
        None,
        entries.iter().map(|(i, t, h)| (*i, t.as_str(), h.as_str())),
    ) {
        Ok(last) => {
            println!(
                "audit log of `{}`: {} entries, the chain is intact{}",
                data.display(),
                entries.len(),
                last.map(|(_, hash)| format!(" (head {})", &hash[..16]))
                    .unwrap_or_default()
            );
            Ok(Exit::Success)
        }
        Err(broken) => Err(CliError::new(format!(
            "audit log of `{}`: entry {} {}",
            data.display(),
            broken.index,
            broken.message
        ))
        .with_help("the log was changed after it was written; keep this copy as evidence and restore the data directory from a backup")
        .with_exit(Exit::Verification)),
    }
}
