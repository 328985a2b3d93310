//! Terminal output: colour detection and the rendering of usage errors.

use crate::exit::CliError;
use clap::ValueEnum;
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    pub fn enabled_for_stdout(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Source excerpts with labels and help, for people.
    #[default]
    Human,
    /// One JSON document (language.md §4), for CI.
    Json,
}

pub fn print_error(error: &CliError) {
    eprintln!("error: {}", error.message);
    if let Some(help) = &error.help {
        eprintln!("  help: {help}");
    }
}

/// "1 error", "2 warnings", "3 policies".
pub fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        format!("{count} {word}")
    } else if let Some(stem) = word
        .strip_suffix('y')
        .filter(|stem| !stem.ends_with(['a', 'e', 'i', 'o', 'u']))
    {
        // "policy" -> "policies", but "key" -> "keys".
        format!("{count} {stem}ies")
    } else {
        format!("{count} {word}s")
    }
}
