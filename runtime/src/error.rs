//! The runtime's one error type: a stable machine-readable code (what clients and tests match
//! on), the HTTP status it maps to, and a message that names the field or file and the fix.
//! runtime.md §3: every error is `{"error": {"code": "...", "message": "..."}}`.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeError {
    pub code: &'static str,
    #[serde(skip)]
    pub status: u16,
    pub message: String,
}

impl RuntimeError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> RuntimeError {
        RuntimeError {
            code,
            status,
            message: message.into(),
        }
    }

    /// A request the client must fix (400).
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> RuntimeError {
        RuntimeError::new(400, code, message)
    }

    /// The state under `--data` could not be read or written (503: the client may retry; the
    /// decision was not given).
    pub fn state(message: impl Into<String>) -> RuntimeError {
        RuntimeError::new(503, "state_unavailable", message)
    }

    /// The error document of runtime.md §3.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for RuntimeError {}

impl From<rusqlite::Error> for RuntimeError {
    fn from(error: rusqlite::Error) -> RuntimeError {
        RuntimeError::state(format!("the state database: {error}"))
    }
}
