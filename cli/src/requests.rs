//! Reading request files: one JSON request, or JSON Lines.

use crate::exit::CliError;
use crate::load::read_text;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// One request read from the input, with the line it starts on.
pub struct Input {
    pub line: usize,
    pub json: Result<Value, String>,
}

/// One JSON document (possibly spread over lines) is one request; anything else is JSON Lines,
/// each non-empty line a request on its own, so output lines align with input lines.
pub fn read_requests(text: &str) -> Vec<Input> {
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        let line = text.len() - text.trim_start().len();
        return vec![Input {
            line: text[..line].matches('\n').count() + 1,
            json: Ok(json),
        }];
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| Input {
            line: index + 1,
            json: serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}")),
        })
        .collect()
}

/// Reads requests from a file, or stdin for `-`; an input with no request is an error.
pub fn read_request_input(path: &Path) -> Result<Vec<Input>, CliError> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            CliError::new(format!("cannot read stdin: {e}"))
                .with_help("pipe the requests in, or pass a file: `--request requests.jsonl`")
        })?;
        text
    } else {
        read_text(path)?
    };
    let inputs = read_requests(&text);
    if inputs.is_empty() {
        return Err(
            CliError::new(format!("`{}` holds no request", path.display()))
                .with_help("write one JSON request, or one request per line (JSON Lines)"),
        );
    }
    Ok(inputs)
}
