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

/// Set once a command has written its JSON (or JUnit) document to stdout: an error after it
/// goes to stderr only, so stdout stays one parseable document.
static STDOUT_HAS_DOCUMENT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Prints a command's machine-readable document to stdout.
pub fn print_document(document: &str) {
    STDOUT_HAS_DOCUMENT.store(true, std::sync::atomic::Ordering::Relaxed);
    println!("{document}");
}

pub fn print_error(error: &CliError, json: bool) {
    eprintln!("error: {}", error.message);
    if let Some(help) = &error.help {
        eprintln!("  help: {help}");
    }
    if json && !STDOUT_HAS_DOCUMENT.load(std::sync::atomic::Ordering::Relaxed) {
        // CI reading stdout gets a document it can parse, not an empty stream.
        let document = serde_json::json!({
            "error": {
                "message": error.message,
                "help": error.help,
                "exit_code": error.exit as u8,
            }
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        );
    }
}

/// Whether the command line asks for JSON output (`--format json` or `--format=json`).
pub fn wants_json(args: &[String]) -> bool {
    args.windows(2)
        .any(|pair| pair[0] == "--format" && pair[1] == "json")
        || args.iter().any(|arg| arg == "--format=json")
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
