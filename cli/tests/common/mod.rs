//! What the CLI's end-to-end tests share: running the binary and a scratch directory.
#![allow(dead_code)] // each test binary uses a different part of this module

use polctl_testsupport::workspace_dir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `polctl ARGS` in the workspace, without colour.
pub fn polctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polctl"))
        .args(args)
        .current_dir(workspace_dir())
        .env("NO_COLOR", "1")
        .output()
        .expect("polctl runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A scratch directory under the target directory, fresh for each test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
