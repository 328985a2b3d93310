//! Source files of a policy set and byte spans into them.
//!
//! Every AST and IR node carries a [`Span`]: a file id plus a byte range. Line and column numbers are
//! computed only when a diagnostic is rendered, from a per-file table of line starts.

use serde::{Deserialize, Serialize};

/// Index of a file in its [`SourceSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: start as u32,
            end: end.max(start) as u32,
        }
    }

    /// A span over `start..end` in `text`, widened to whole characters: `start` moves back and
    /// `end` forward to the nearest character boundary, and both are clamped to the text. Every
    /// span made from an offset that was computed (the end of a file plus one, an error's
    /// one-character width) goes through here, so no diagnostic can point inside a character.
    pub fn on_char_boundaries(file: FileId, text: &str, start: usize, end: usize) -> Span {
        let mut start = start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = end.clamp(start, text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        Span::new(file, start, end)
    }

    /// The span of the last character of `text` (empty at 0 for an empty text): where an error
    /// at the end of a file is shown.
    pub fn last_char(file: FileId, text: &str) -> Span {
        let start = text.char_indices().last().map_or(0, |(at, _)| at);
        Span::new(file, start, text.len())
    }

    /// The smallest span covering both `self` and `other` (which must be in the same file).
    pub fn join(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One `.pol` file: its path relative to the policy set's root (always with `/` separators) and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset; offsets past the end clamp to it.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next - 1,
        };
        let line_start = self.line_starts[line];
        let column = self
            .text
            .get(line_start..offset)
            .map_or(offset - line_start, |s| s.chars().count());
        (line + 1, column + 1)
    }
}

/// All files of a policy set, in a deterministic order (sorted by path).
#[derive(Debug, Clone, Default)]
pub struct SourceSet {
    files: Vec<SourceFile>,
    /// Where the set was loaded from, as the user named it; human output shows paths under it
    /// (so a terminal can open them) while JSON keeps the set-relative paths.
    display_root: Option<String>,
}

impl SourceSet {
    pub fn new() -> SourceSet {
        SourceSet::default()
    }

    /// Builds a set from `(path, text)` pairs, sorting them by path so that ids do not depend on the
    /// order in which a directory was listed.
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> SourceSet {
        let mut files: Vec<SourceFile> = files
            .into_iter()
            .map(|(path, text)| SourceFile::new(path, text))
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        SourceSet {
            files,
            display_root: None,
        }
    }

    pub fn with_display_root(mut self, root: impl Into<String>) -> SourceSet {
        self.display_root = Some(root.into());
        self
    }

    /// The path to show a person: under the display root when there is one.
    pub fn display_path(&self, id: FileId) -> String {
        let path = &self.file(id).path;
        match self.display_root.as_deref() {
            None | Some("") | Some(".") => path.clone(),
            // `fleet.polb:` shows a bundle's files as `fleet.polb:schema.pol`.
            Some(root) if root.ends_with('/') || root.ends_with(':') => format!("{root}{path}"),
            Some(root) => format!("{root}/{path}"),
        }
    }

    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile::new(path, text));
        FileId(self.files.len() as u32 - 1)
    }

    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    /// `sha256:<hex>` over every file's set-relative path and text, in path order: the same
    /// sources give the same revision on any machine. Used as a decision's `policy_version`.
    pub fn revision(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        let mut files: Vec<&SourceFile> = self.files.iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        for file in files {
            hasher.update((file.path.len() as u64).to_be_bytes());
            hasher.update(file.path.as_bytes());
            hasher.update((file.text.len() as u64).to_be_bytes());
            hasher.update(file.text.as_bytes());
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters_not_bytes() {
        let file = SourceFile::new("a.pol", "ab\n\u{e9}x\n");
        assert_eq!(file.line_column(0), (1, 1));
        assert_eq!(file.line_column(3), (2, 1));
        // `x` follows a two-byte character: byte 5, column 2.
        assert_eq!(file.line_column(5), (2, 2));
        assert_eq!(file.line_column(100), (3, 1));
    }
}
