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
    /// The rollout did not complete (aborted or rolled back; `simulate` also when the traffic
    /// ended first).
    RolloutIncomplete = 5,
    /// Refused: authentication, authorization, anti-rollback, or a bundle that fails to verify,
    /// compile or test where it is served (runtime.md §2).
    Refused = 6,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// Why a command failed: one line, a help line that says what to do, and the exit code
/// (1, a usage or I/O error, unless set). Every failure is returned as this value and printed
/// in one place (`main`), as `error:` and `help:` lines on stderr, and also as JSON on stdout
/// when the command was asked for `--format json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub message: String,
    pub help: Option<String>,
    pub exit: Exit,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            help: None,
            exit: Exit::Usage,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> CliError {
        self.help = Some(help.into());
        self
    }

    /// The failure is not a usage error: findings (2), failed tests (3), a bundle or
    /// signature that does not verify (4).
    pub fn with_exit(mut self, exit: Exit) -> CliError {
        self.exit = exit;
        self
    }
}

/// What a person can do about an I/O error, by its kind.
fn io_help(kind: std::io::ErrorKind, writing: bool) -> &'static str {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::NotFound if writing => "create the directory first, or choose another path",
        ErrorKind::NotFound => "check the path: no file or directory has that name",
        ErrorKind::PermissionDenied => {
            "check the file's permissions (`ls -l`), or run as its owner"
        }
        ErrorKind::IsADirectory => "pass a file here, not a directory",
        ErrorKind::NotADirectory => "a part of the path is a file, not a directory",
        ErrorKind::AlreadyExists => "remove the old file, or choose another path",
        ErrorKind::StorageFull => "free some disk space and run the command again",
        ErrorKind::ReadOnlyFilesystem => "write to a writable location",
        _ => "check the path and try again",
    }
}

impl CliError {
    /// `cannot read `PATH`: ...` with a help line for the error's kind.
    pub fn read(path: &std::path::Path, error: &std::io::Error) -> CliError {
        CliError::new(format!("cannot read `{}`: {error}", path.display()))
            .with_help(io_help(error.kind(), false))
    }

    /// `cannot write `PATH`: ...` with a help line for the error's kind.
    pub fn write(path: &std::path::Path, error: &std::io::Error) -> CliError {
        CliError::new(format!("cannot write `{}`: {error}", path.display()))
            .with_help(io_help(error.kind(), true))
    }
}
