//! Reading traffic files (runtime.md §5.1) in chunks of lines: never the whole file in memory,
//! every bad line reported with the file and line number, and a progress bar on a terminal
//! for long files.

use crate::exit::CliError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub struct TrafficReader {
    path: PathBuf,
    file: File,
    /// Bytes read after the last line handed out (the start of the next line).
    pending: Vec<u8>,
    at_end: bool,
    /// The largest chunk's size so far: the next chunk's buffer starts that big.
    typical_chunk: usize,
    spare: Vec<Chunk>,
    line: u64,
    progress: ProgressBar,
}

/// Bytes read from the file at a time.
const BLOCK: u64 = 1 << 20;

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
            file,
            pending: Vec::new(),
            at_end: false,
            typical_chunk: 0,
            spare: Vec::new(),
            line: 0,
            progress,
        })
    }

    /// An error about line `line` of the file.
    pub fn line_error(&self, line: u64, message: impl std::fmt::Display) -> CliError {
        line_error(&self.path, line, message)
    }

    /// Gives back a chunk that is done with: the next chunk reuses its buffers (a fresh buffer
    /// of megabytes costs its page faults every time).
    pub fn recycle(&mut self, chunk: Chunk) {
        self.spare.push(chunk);
    }

    /// Up to `count` non-blank lines, and the error that ended the reading early, if any: the
    /// lines before a bad one still count. The file is read in blocks straight into the
    /// chunk's buffer, and lines are found in it with a vectorized search: no copy and no
    /// allocation per line.
    pub fn chunk(&mut self, count: usize) -> (Chunk, Option<CliError>) {
        let (mut bytes, mut lines) = match self.spare.pop() {
            Some(Chunk { text, mut lines }) => {
                let mut bytes = text.into_bytes();
                bytes.clear();
                lines.clear();
                (bytes, lines)
            }
            // A first guess of 384 bytes a line saves most of the growing.
            None => (
                Vec::with_capacity(self.typical_chunk.max(count.saturating_mul(384))),
                Vec::with_capacity(count),
            ),
        };
        bytes.append(&mut self.pending);
        let mut failure = None;
        // Where the next line starts, and where the search for its end resumes.
        let (mut start, mut searched) = (0, 0);
        while lines.len() < count {
            let end = match memchr::memchr(b'\n', &bytes[searched..]) {
                Some(offset) => searched + offset,
                None if !self.at_end => {
                    searched = bytes.len();
                    let read = (&mut self.file).take(BLOCK).read_to_end(&mut bytes);
                    match read {
                        Ok(0) => self.at_end = true,
                        Ok(_) => {}
                        Err(error) => {
                            failure = Some(CliError::read(&self.path, &error));
                            break;
                        }
                    }
                    continue;
                }
                // The last line may have no line end.
                None if start < bytes.len() => bytes.len(),
                None => break,
            };
            self.line += 1;
            let line = &bytes[start..end];
            let trimmed_end = start + line.trim_ascii_end().len();
            if !bytes[start..trimmed_end].trim_ascii_start().is_empty() {
                lines.push((self.line, start, trimmed_end));
            }
            start = (end + 1).min(bytes.len());
            searched = start;
        }
        // What follows the last line handed out waits for the next chunk.
        self.pending.extend_from_slice(&bytes[start..]);
        bytes.truncate(start);
        self.progress.inc(start as u64);
        if self.at_end && self.pending.is_empty() {
            self.progress.finish_and_clear();
        }
        self.typical_chunk = self.typical_chunk.max(bytes.len());
        // The text is checked once, as a whole; a line that is not UTF-8 ends the chunk.
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                let valid = error.utf8_error().valid_up_to();
                let bad = lines.partition_point(|&(_, _, end)| end <= valid);
                let mut bytes = error.into_bytes();
                let (number, start) = lines.get(bad).map_or((self.line, 0), |l| (l.0, l.1));
                failure = Some(self.line_error(number, "is not UTF-8 text"));
                bytes.truncate(start);
                lines.truncate(bad);
                // What is left is the valid prefix (whole lines before the bad one).
                String::from_utf8(bytes).unwrap_or_default()
            }
        };
        (Chunk { text, lines }, failure)
    }
}

/// Lines read together: their text in one buffer, and each line's number and place in it.
pub struct Chunk {
    text: String,
    lines: Vec<(u64, usize, usize)>,
}

impl Chunk {
    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    /// Line `index` of the chunk: its number in the file and its text.
    pub fn line(&self, index: usize) -> (u64, &str) {
        let (number, start, end) = self.lines[index];
        (number, &self.text[start..end])
    }
}
