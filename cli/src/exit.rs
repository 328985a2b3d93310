//! Exit codes shared by every command (language.md §4) and the error type for usage and IO
//! failures.

/// What a command's exit status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// Bad arguments, a missing or unreadable file.
    Usage = 1,
    /// Findings at or above the failing severity.
    Findings = 2,
    TestFailures = 3,
    Verification = 4,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// A usage or IO error: one line, and a help line that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub message: String,
    pub help: Option<String>,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> CliError {
        self.help = Some(help.into());
        self
    }
}
