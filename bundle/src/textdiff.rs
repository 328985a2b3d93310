//! The text half of `polctl diff`: which files were added, removed or changed between two
//! versions of a set, with a unified diff of each change.

use serde::Serialize;
use similar::TextDiff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Added,
    Removed,
    Changed,
}

impl FileStatus {
    /// `added`, `removed`, `changed`: as the JSON and every report write it.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Added => "added",
            FileStatus::Removed => "removed",
            FileStatus::Changed => "changed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub status: FileStatus,
    /// Unified diff (3 lines of context), `old/PATH` → `new/PATH`.
    pub diff: String,
}

/// Files that differ, sorted by path; identical files are left out.
pub fn text_diff(old: &[(String, String)], new: &[(String, String)]) -> Vec<FileDiff> {
    let mut paths: Vec<&String> = old.iter().chain(new).map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    let find = |files: &[(String, String)], path: &str| {
        files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, t)| t.clone())
    };
    paths
        .into_iter()
        .filter_map(|path| {
            let (before, after) = (find(old, path), find(new, path));
            let status = match (&before, &after) {
                (None, Some(_)) => FileStatus::Added,
                (Some(_), None) => FileStatus::Removed,
                (Some(a), Some(b)) if a != b => FileStatus::Changed,
                _ => return None,
            };
            let (a, b) = (before.unwrap_or_default(), after.unwrap_or_default());
            let diff = TextDiff::from_lines(&a, &b)
                .unified_diff()
                .context_radius(3)
                .header(&format!("old/{path}"), &format!("new/{path}"))
                .to_string();
            Some(FileDiff {
                path: path.clone(),
                status,
                diff,
            })
        })
        .collect()
}
