//! Reading traffic files (runtime.md §5.1) a line at a time: never the whole file in memory,
//! every bad line reported with the file and line number, and a progress bar on a terminal
//! for long files.

use crate::exit::CliError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

pub struct TrafficReader {
    path: PathBuf,
    reader: BufReader<File>,
    buffer: String,
    line: u64,
    progress: ProgressBar,
}

/// The help line of every bad-line error.
const LINE_HELP: &str = "each line is a request of language.md §1 with `time` (RFC 3339) and `session`, or an outcome {\"time\", \"session\", \"outcome\"}; `polctl traffic generate` writes valid files";

/// An error about line `line` of the traffic file at `path`, with the format's help.
pub fn line_error(path: &Path, line: u64, message: impl std::fmt::Display) -> CliError {
    CliError::new(format!("`{}` line {line}: {message}", path.display())).with_help(LINE_HELP)
}

impl TrafficReader {
    pub fn open(path: &Path) -> Result<TrafficReader, CliError> {
        let file = File::open(path).map_err(|error| CliError::read(path, &error))?;
        let length = file.metadata().map(|m| m.len()).unwrap_or(0);
        let progress = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({elapsed})")
        {
            progress.set_style(style.progress_chars("=> "));
        }
        progress.set_message(format!("reading {}", path.display()));
        // Drawn on stderr only on a terminal, and only for files worth waiting for.
        if length > 20_000_000 {
            progress.set_draw_target(ProgressDrawTarget::stderr());
        }
        Ok(TrafficReader {
            path: path.to_owned(),
            reader: BufReader::with_capacity(1 << 20, file),
            buffer: String::new(),
            line: 0,
            progress,
        })
    }

    /// An error about line `line` of the file.
    pub fn line_error(&self, line: u64, message: impl std::fmt::Display) -> CliError {
        line_error(&self.path, line, message)
    }

    /// The next non-blank line's text and number, or `None` at the end.
    pub fn next_text(&mut self) -> Option<Result<(u64, &str), CliError>> {
        loop {
            self.buffer.clear();
            match self.reader.read_line(&mut self.buffer) {
                Ok(0) => {
                    self.progress.finish_and_clear();
                    return None;
                }
                Ok(read) => {
                    self.line += 1;
                    self.progress.inc(read as u64);
                    if !self.buffer.trim().is_empty() {
                        break;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                    self.line += 1;
                    return Some(Err(self.line_error(self.line, "is not UTF-8 text")));
                }
                Err(error) => return Some(Err(CliError::read(&self.path, &error))),
            }
        }
        Some(Ok((self.line, self.buffer.trim_end())))
    }

    /// Up to `count` lines' texts with their numbers (for parallel parsing).
    pub fn chunk(&mut self, count: usize) -> Result<Vec<(u64, String)>, CliError> {
        let mut lines = Vec::with_capacity(count);
        while lines.len() < count {
            match self.next_text() {
                None => break,
                Some(Ok((number, text))) => lines.push((number, text.to_owned())),
                Some(Err(error)) => return Err(error),
            }
        }
        Ok(lines)
    }
}
