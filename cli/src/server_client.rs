//! How client commands (`push`, `rollback`, ...) reach a server: `--server URL` or
//! `POLCTL_SERVER` (default `http://127.0.0.1:8181`), the token from `--token-file F` or
//! `POLCTL_TOKEN` (runtime.md §2), and the server's errors turned into exit codes: 6 when the
//! server refuses (401, 403, 409, 422), 1 for everything else.

use crate::exit::{CliError, Exit};
use crate::load::read_text;
use clap::Args;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct ServerArgs {
    /// The server's URL [env: POLCTL_SERVER; default: http://127.0.0.1:8181].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// A file holding the token [env: POLCTL_TOKEN holds the token itself].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

pub struct ServerClient {
    base: String,
    token: Option<String>,
    client: Client,
}

impl ServerClient {
    pub fn new(args: &ServerArgs) -> Result<ServerClient, CliError> {
        let base = args
            .server
            .clone()
            .or_else(|| std::env::var("POLCTL_SERVER").ok())
            .unwrap_or_else(|| "http://127.0.0.1:8181".to_owned())
            .trim_end_matches('/')
            .to_owned();
        let token = match &args.token_file {
            Some(path) => Some(read_text(path)?.trim().to_owned()),
            None => std::env::var("POLCTL_TOKEN")
                .ok()
                .map(|t| t.trim().to_owned()),
        };
        let client = Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| CliError::new(format!("cannot make an HTTP client: {e}")))?;
        Ok(ServerClient {
            base,
            token,
            client,
        })
    }

    pub fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<Value, CliError> {
        self.send(
            self.client
                .put(format!("{}{path}", self.base))
                .header("content-type", "application/octet-stream")
                .body(body),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body))
    }

    pub fn put_json(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.client.put(format!("{}{path}", self.base)).json(body))
    }

    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.client.get(format!("{}{path}", self.base)))
    }

    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.client.delete(format!("{}{path}", self.base)))
    }

    fn send(&self, request: RequestBuilder) -> Result<Value, CliError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().map_err(|e| {
            CliError::new(format!("cannot reach the server at `{}`: {e}", self.base)).with_help(
                "start it with `polctl serve`, or point --server (or POLCTL_SERVER) at it",
            )
        })?;
        let status = response.status().as_u16();
        let body: Value = response.json().unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("unknown");
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("the server gave no reason");
        let refused = matches!(status, 401 | 403 | 409 | 422);
        let mut error = CliError::new(format!("the server refused ({status} {code}): {message}"));
        if status == 401 {
            error = error.with_help(
                "pass the token with --token-file FILE or POLCTL_TOKEN (a server without --tokens wrote one to DIR/admin.token)",
            );
        }
        Err(error.with_exit(if refused { Exit::Refused } else { Exit::Usage }))
    }
}
