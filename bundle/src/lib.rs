//! polctl bundles: what `polctl build` writes, `polctl sign` signs and `polctl verify` (and a
//! runtime) checks before loading a policy set.
//!
//! - `container.rs`: the strict binary layout (docs/bundle-format.md);
//! - `manifest.rs`: building a bundle from checked sources, and its integrity checks;
//! - `signing.rs`: Ed25519 keys, signatures and verification;
//! - `textdiff.rs`: the file-by-file text diff of two versions (`polctl diff`).
//!
//! Pure: the CLI reads and writes the files and supplies randomness and the time.

pub mod container;
pub mod manifest;
pub mod signing;
pub mod textdiff;

pub use manifest::{build, open, BuildInput, Bundle, CheckSummary, Manifest, TestSummary};
pub use signing::{
    generate_key, parse_private_key, parse_public_key, sign, verify, Policy, PrivateKey, PublicKey,
    SignatureRecord, Verified,
};

/// Why a bundle, key or signature was rejected. Each says what failed, in the words
/// `polctl verify` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    /// The bytes do not follow the container layout.
    Malformed(String),
    /// The content does not match the manifest's hashes.
    ContentHash(String),
    /// A signature is missing or invalid.
    Signature(String),
    /// A signature by a key that was not given.
    UnknownKey(String),
    /// Fewer distinct trusted signatures than required.
    Threshold { found: usize, needed: usize },
    /// A signature's sequence number is below the floor (a replayed older bundle).
    Sequence { found: u64, floor: u64 },
    /// A key file is invalid.
    Key(String),
}

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            BundleError::Malformed(m) => write!(f, "malformed bundle: {m}"),
            BundleError::ContentHash(m) => write!(f, "content hash mismatch: {m}"),
            BundleError::Signature(m) => write!(f, "signature check failed: {m}"),
            BundleError::UnknownKey(id) => write!(
                f,
                "unknown key: the bundle is signed by key `{id}`, which is not among the keys given"
            ),
            BundleError::Threshold { found, needed } => write!(
                f,
                "threshold not met: {found} valid signature(s) from trusted keys, {needed} required"
            ),
            BundleError::Sequence { found, floor } => write!(
                f,
                "sequence {found} is below the required {floor}: an older release cannot replace a newer one"
            ),
            BundleError::Key(m) => write!(f, "invalid key: {m}"),
        }
    }
}
