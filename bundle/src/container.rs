//! The bundle container: a strict binary layout in which every byte is either covered by the
//! content hash or is part of a signature record that is itself checked (docs/bundle-format.md).
//!
//! ```text
//! magic      8 bytes   "POLCTLB" 0x01
//! manifest   u32 BE length, then canonical JSON
//! entries    u32 BE count, then per entry: u16 BE path length, path (UTF-8),
//!            u64 BE content length, content; paths strictly increasing
//! ---------- the content hash (SHA-256) covers everything above this line
//! signatures u32 BE count, then per signature: u32 BE length, canonical JSON record
//! end        no byte may follow
//! ```

use crate::BundleError;
use serde::Serialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"POLCTLB\x01";

/// The most entries, and the longest manifest or signature record, a reader accepts: far
/// beyond real sets, small enough that a corrupt length cannot make it allocate gigabytes.
const MAX_ENTRIES: u32 = 1_000_000;
const MAX_RECORD: u32 = 64 << 20;

/// A decoded container.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub manifest: Json,
    /// `(path, content)`, sorted by path.
    pub entries: Vec<(String, Vec<u8>)>,
    pub signatures: Vec<Json>,
    pub content_hash: [u8; 32],
    /// The length of the body: the bytes the content hash covers.
    pub body_len: usize,
}

/// Canonical JSON: keys sorted (serde_json's map is ordered), no whitespace.
pub fn canonical_json(value: &impl Serialize) -> Result<Vec<u8>, BundleError> {
    let value = serde_json::to_value(value)
        .map_err(|e| BundleError::Malformed(format!("cannot encode JSON: {e}")))?;
    serde_json::to_vec(&value)
        .map_err(|e| BundleError::Malformed(format!("cannot encode JSON: {e}")))
}

/// The bytes of an unsigned bundle (magic, manifest, entries) with no signatures section.
pub fn encode_body(manifest: &Json, entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, BundleError> {
    let mut sorted: Vec<&(String, Vec<u8>)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    let manifest = canonical_json(manifest)?;
    out.extend_from_slice(&(manifest.len() as u32).to_be_bytes());
    out.extend_from_slice(&manifest);
    out.extend_from_slice(&(sorted.len() as u32).to_be_bytes());
    for (path, content) in sorted {
        let path_bytes = path.as_bytes();
        if path_bytes.len() > u16::MAX as usize {
            return Err(BundleError::Malformed(format!("path `{path}` is too long")));
        }
        out.extend_from_slice(&(path_bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(path_bytes);
        out.extend_from_slice(&(content.len() as u64).to_be_bytes());
        out.extend_from_slice(content);
    }
    Ok(out)
}

/// A whole bundle: body, then the signature records.
pub fn encode(body: &[u8], signatures: &[Json]) -> Result<Vec<u8>, BundleError> {
    let mut out = body.to_vec();
    out.extend_from_slice(&(signatures.len() as u32).to_be_bytes());
    for record in signatures {
        let bytes = canonical_json(record)?;
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], BundleError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(BundleError::Malformed(format!(
                "truncated: {what} needs {n} bytes at offset {}, the file has {}",
                self.at,
                self.bytes.len()
            )));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u16(&mut self, what: &str) -> Result<u16, BundleError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, BundleError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, BundleError> {
        let b = self.take(8, what)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(b);
        Ok(u64::from_be_bytes(array))
    }

    /// A length-prefixed canonical JSON document.
    fn canonical(&mut self, what: &str) -> Result<Json, BundleError> {
        let len = self.u32(what)?;
        if len > MAX_RECORD {
            return Err(BundleError::Malformed(format!("{what} claims {len} bytes")));
        }
        let bytes = self.take(len as usize, what)?;
        let value: Json = serde_json::from_slice(bytes)
            .map_err(|e| BundleError::Malformed(format!("{what} is not JSON: {e}")))?;
        if canonical_json(&value)? != bytes {
            return Err(BundleError::Malformed(format!(
                "{what} is not in canonical form (sorted keys, no whitespace)"
            )));
        }
        Ok(value)
    }
}

/// Decodes a bundle, rejecting anything that does not follow the layout exactly.
pub fn decode(bytes: &[u8]) -> Result<Container, BundleError> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(MAGIC.len(), "the magic number")? != MAGIC {
        return Err(BundleError::Malformed(
            "not a polctl bundle (wrong magic number)".to_owned(),
        ));
    }
    let manifest = reader.canonical("the manifest")?;
    let count = reader.u32("the entry count")?;
    if count > MAX_ENTRIES {
        return Err(BundleError::Malformed(format!("{count} entries claimed")));
    }
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for index in 0..count {
        let what = format!("entry {index}");
        let len = reader.u16(&what)?;
        let path = std::str::from_utf8(reader.take(len as usize, &what)?)
            .map_err(|_| BundleError::Malformed(format!("{what}: the path is not UTF-8")))?
            .to_owned();
        if let Some((previous, _)) = entries.last() {
            if *previous >= path {
                return Err(BundleError::Malformed(format!(
                    "{what}: `{path}` is out of order or repeated"
                )));
            }
        }
        let size = reader.u64(&what)?;
        let remaining = (bytes.len() - reader.at) as u64;
        if size > remaining {
            return Err(BundleError::Malformed(format!(
                "truncated: `{path}` claims {size} bytes, {remaining} remain"
            )));
        }
        let content = reader.take(size as usize, &what)?.to_vec();
        entries.push((path, content));
    }
    let body_len = reader.at;
    let content_hash: [u8; 32] = Sha256::digest(&bytes[..body_len]).into();
    let signature_count = reader.u32("the signature count")?;
    if signature_count > 1_000 {
        return Err(BundleError::Malformed(format!(
            "{signature_count} signatures claimed"
        )));
    }
    let mut signatures = Vec::new();
    for index in 0..signature_count {
        signatures.push(reader.canonical(&format!("signature {index}"))?);
    }
    if reader.at != bytes.len() {
        return Err(BundleError::Malformed(format!(
            "trailing data: {} bytes after the last signature",
            bytes.len() - reader.at
        )));
    }
    Ok(Container {
        manifest,
        entries,
        signatures,
        content_hash,
        body_len,
    })
}
