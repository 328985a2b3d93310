//! `polctl completions SHELL`: prints a completion script.

use crate::exit::{CliError, Exit};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// Print a shell completion script to stdout.
///
/// Example: `polctl completions bash > ~/.local/share/bash-completion/completions/polctl`
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    shell: Shell,
}

pub fn run<C: CommandFactory>(args: CompletionsArgs) -> Result<Exit, CliError> {
    let mut command = C::command();
    clap_complete::generate(args.shell, &mut command, "polctl", &mut std::io::stdout());
    Ok(Exit::Success)
}
