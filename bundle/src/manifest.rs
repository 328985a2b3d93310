//! Building a bundle from checked sources, and checking that a decoded bundle's entries are the
//! ones its manifest describes.

use crate::container::{canonical_json, decode, encode, encode_body, Container};
use crate::BundleError;
use polctl_lang::ir::PolicySet;
use polctl_lang::SourceSet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The bundle format this polctl writes and reads.
pub const FORMAT: u32 = 1;

/// Where sources live inside a bundle.
pub const SOURCES: &str = "sources/";
/// The compiled IR entry.
pub const IR: &str = "ir.json";

/// One source file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// What `polctl check` said when the bundle was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSummary {
    pub errors: usize,
    pub warnings: usize,
    /// SHA-256 of the canonical JSON findings.
    pub digest: String,
}

/// What `polctl test` said when the bundle was built (absent when the set has no tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSummary {
    pub passed: usize,
    pub failed: usize,
    /// SHA-256 of the canonical JSON results (names and outcomes, no timings).
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub polctl_version: String,
    pub name: String,
    /// The hash of the canonical source content (the evaluator's policy version).
    pub revision: String,
    pub parent: Option<String>,
    pub files: Vec<FileEntry>,
    pub schema_sha256: String,
    pub ir_sha256: String,
    pub policies: usize,
    pub rules: usize,
    pub check: CheckSummary,
    pub tests: Option<TestSummary>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Everything a build needs; the CLI gathers it (files, reports) and writes the result.
pub struct BuildInput<'a> {
    pub name: String,
    /// Relative path and text of every source file (`.pol` and `.test.toml`).
    pub files: Vec<(String, String)>,
    pub set: &'a PolicySet,
    pub check: CheckSummary,
    pub tests: Option<TestSummary>,
    pub parent: Option<String>,
}

/// The revision of a set of sources: the policy version of its `.pol` files.
pub fn revision(files: &[(String, String)]) -> String {
    SourceSet::from_files(
        files
            .iter()
            .filter(|(path, _)| path.ends_with(".pol"))
            .cloned(),
    )
    .revision()
}

/// An unsigned bundle: the same input always gives the same bytes.
pub fn build(input: &BuildInput) -> Result<Vec<u8>, BundleError> {
    let mut files = input.files.clone();
    files.sort();
    let ir = canonical_json(input.set)?;
    let schema = canonical_json(&input.set.schema)?;
    let manifest = Manifest {
        format: FORMAT,
        polctl_version: env!("CARGO_PKG_VERSION").to_owned(),
        name: input.name.clone(),
        revision: revision(&files),
        parent: input.parent.clone(),
        files: files
            .iter()
            .map(|(path, text)| FileEntry {
                path: path.clone(),
                sha256: sha256_hex(text.as_bytes()),
                bytes: text.len() as u64,
            })
            .collect(),
        schema_sha256: sha256_hex(&schema),
        ir_sha256: sha256_hex(&ir),
        policies: input.set.policies.len(),
        rules: input.set.rules.len(),
        check: input.check.clone(),
        tests: input.tests.clone(),
    };
    let mut entries: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|(path, text)| (format!("{SOURCES}{path}"), text.into_bytes()))
        .collect();
    entries.push((IR.to_owned(), ir));
    let manifest = serde_json::to_value(&manifest)
        .map_err(|e| BundleError::Malformed(format!("cannot encode the manifest: {e}")))?;
    encode(&encode_body(&manifest, &entries)?, &[])
}

/// A decoded bundle whose entries match its manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub container: Container,
    pub manifest: Manifest,
}

impl Bundle {
    /// The source files, by relative path.
    pub fn sources(&self) -> Vec<(String, String)> {
        self.container
            .entries
            .iter()
            .filter_map(|(path, content)| {
                let relative = path.strip_prefix(SOURCES)?;
                Some((
                    relative.to_owned(),
                    String::from_utf8(content.clone()).ok()?,
                ))
            })
            .collect()
    }
}

/// Decodes a bundle and checks its integrity: the manifest's shape, every source file's hash
/// and size, the IR hash, the revision, and that no entry is missing or extra. Signatures are
/// checked by [`crate::verify`].
pub fn open(bytes: &[u8]) -> Result<Bundle, BundleError> {
    let container = decode(bytes)?;
    let manifest: Manifest = serde_json::from_value(container.manifest.clone()).map_err(|e| {
        BundleError::Malformed(format!(
            "the manifest does not have the expected fields: {e}"
        ))
    })?;
    if manifest.format != FORMAT {
        return Err(BundleError::Malformed(format!(
            "bundle format {} is not supported (this polctl reads format {FORMAT})",
            manifest.format
        )));
    }
    let mismatch = |what: String| BundleError::ContentHash(what);
    let mut expected: Vec<String> = manifest
        .files
        .iter()
        .map(|f| format!("{SOURCES}{}", f.path))
        .collect();
    expected.push(IR.to_owned());
    expected.sort();
    let present: Vec<String> = container.entries.iter().map(|(p, _)| p.clone()).collect();
    if expected != present {
        return Err(mismatch(format!(
            "the entries {present:?} are not the files the manifest lists {expected:?}"
        )));
    }
    let mut sources = Vec::new();
    for file in &manifest.files {
        let path = format!("{SOURCES}{}", file.path);
        let Some((_, content)) = container.entries.iter().find(|(p, _)| *p == path) else {
            return Err(mismatch(format!("`{}` is missing", file.path)));
        };
        if sha256_hex(content) != file.sha256 || content.len() as u64 != file.bytes {
            return Err(mismatch(format!(
                "`{}` does not match its SHA-256 in the manifest",
                file.path
            )));
        }
        let text = String::from_utf8(content.clone())
            .map_err(|_| BundleError::Malformed(format!("`{}` is not UTF-8", file.path)))?;
        sources.push((file.path.clone(), text));
    }
    let ir = container
        .entries
        .iter()
        .find(|(p, _)| p == IR)
        .map(|(_, c)| c.as_slice())
        .unwrap_or_default();
    if sha256_hex(ir) != manifest.ir_sha256 {
        return Err(mismatch(
            "the compiled IR does not match its SHA-256".to_owned(),
        ));
    }
    if revision(&sources) != manifest.revision {
        return Err(mismatch(
            "the sources do not hash to the manifest's revision".to_owned(),
        ));
    }
    Ok(Bundle {
        container,
        manifest,
    })
}
