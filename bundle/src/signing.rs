//! Ed25519 keys, signatures over a bundle's content hash and release metadata, and the
//! verification that `polctl verify` and a runtime perform before loading a bundle.
//!
//! A signature covers the message
//! `"polctl-bundle-signature-v1\n" + hex(content hash) + "\n" + canonical JSON of
//! {"key_id", "sequence", "signed_at"}`, so neither the content nor the release metadata can be
//! changed without invalidating it. Verification uses `verify_strict` (no malleable
//! signatures, no small-order keys).

use crate::container::{canonical_json, decode, encode};
use crate::manifest::{open, Bundle};
use crate::BundleError;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

const DOMAIN: &str = "polctl-bundle-signature-v1";

/// A private key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateKeyFile {
    algorithm: String,
    key_id: String,
    private_key: String,
}

/// A public key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyFile {
    algorithm: String,
    key_id: String,
    public_key: String,
}

/// A signature record in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRecord {
    pub algorithm: String,
    pub key_id: String,
    /// Release sequence number, for anti-rollback: a runtime refuses a lower one than it runs.
    pub sequence: u64,
    /// When it was signed (RFC 3339, UTC); informational, covered by the signature.
    pub signed_at: String,
    pub signature: String,
}

pub struct PrivateKey {
    pub key_id: String,
    signing: SigningKey,
}

#[derive(Debug, Clone)]
pub struct PublicKey {
    pub key_id: String,
    verifying: VerifyingKey,
}

/// The key id: the first 16 hex digits of the public key's SHA-256.
fn key_id(public: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public.as_bytes()))[..16].to_owned()
}

/// A new key pair from 32 random bytes (the caller supplies the randomness): the private and
/// public key files, and the key id.
pub fn generate_key(seed: [u8; 32]) -> Result<(Vec<u8>, Vec<u8>, String), BundleError> {
    let signing = SigningKey::from_bytes(&seed);
    let verifying = signing.verifying_key();
    let id = key_id(&verifying);
    let private = PrivateKeyFile {
        algorithm: "ed25519".to_owned(),
        key_id: id.clone(),
        private_key: hex::encode(signing.to_bytes()),
    };
    let public = PublicKeyFile {
        algorithm: "ed25519".to_owned(),
        key_id: id.clone(),
        public_key: hex::encode(verifying.as_bytes()),
    };
    let mut private = canonical_json(&private)?;
    private.push(b'\n');
    let mut public = canonical_json(&public)?;
    public.push(b'\n');
    Ok((private, public, id))
}

fn key_bytes(text: &str, what: &str) -> Result<[u8; 32], BundleError> {
    let bytes =
        hex::decode(text).map_err(|_| BundleError::Key(format!("the {what} is not hex")))?;
    bytes
        .try_into()
        .map_err(|_| BundleError::Key(format!("the {what} is not 32 bytes")))
}

fn supported_algorithm(algorithm: &str) -> Result<(), BundleError> {
    if algorithm != "ed25519" {
        return Err(BundleError::Key(format!(
            "unsupported algorithm `{algorithm}`"
        )));
    }
    Ok(())
}

/// A key file's stated id must be the one its key hashes to.
fn same_key_id(stated: &str, actual: &str) -> Result<(), BundleError> {
    if stated != actual {
        return Err(BundleError::Key(format!(
            "the key id `{stated}` does not belong to this key (it is `{actual}`)"
        )));
    }
    Ok(())
}

pub fn parse_private_key(text: &str) -> Result<PrivateKey, BundleError> {
    let file: PrivateKeyFile = serde_json::from_str(text)
        .map_err(|e| BundleError::Key(format!("not a polctl private key file: {e}")))?;
    supported_algorithm(&file.algorithm)?;
    let signing = SigningKey::from_bytes(&key_bytes(&file.private_key, "private key")?);
    let id = key_id(&signing.verifying_key());
    same_key_id(&file.key_id, &id)?;
    Ok(PrivateKey {
        key_id: id,
        signing,
    })
}

pub fn parse_public_key(text: &str) -> Result<PublicKey, BundleError> {
    let file: PublicKeyFile = serde_json::from_str(text)
        .map_err(|e| BundleError::Key(format!("not a polctl public key file: {e}")))?;
    supported_algorithm(&file.algorithm)?;
    let verifying = VerifyingKey::from_bytes(&key_bytes(&file.public_key, "public key")?)
        .map_err(|_| BundleError::Key("the public key is not a valid Ed25519 point".to_owned()))?;
    let id = key_id(&verifying);
    same_key_id(&file.key_id, &id)?;
    Ok(PublicKey {
        key_id: id,
        verifying,
    })
}

fn message(
    content_hash: &[u8; 32],
    key_id: &str,
    sequence: u64,
    signed_at: &str,
) -> Result<Vec<u8>, BundleError> {
    let metadata = canonical_json(&json!({
        "key_id": key_id,
        "sequence": sequence,
        "signed_at": signed_at,
    }))?;
    let mut out = format!("{DOMAIN}\n{}\n", hex::encode(content_hash)).into_bytes();
    out.extend_from_slice(&metadata);
    Ok(out)
}

impl PrivateKey {
    /// Signs a message of another kind than a bundle (an audit checkpoint): `domain` keeps
    /// the two from ever being confused. The signature in hex.
    pub fn sign_message(&self, domain: &str, message: &[u8]) -> String {
        let mut bytes = format!("{domain}\n").into_bytes();
        bytes.extend_from_slice(message);
        hex::encode(self.signing.sign(&bytes).to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key_id: self.key_id.clone(),
            verifying: self.signing.verifying_key(),
        }
    }
}

impl PublicKey {
    /// Checks a [`PrivateKey::sign_message`] signature.
    pub fn verify_message(&self, domain: &str, message: &[u8], signature: &str) -> bool {
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            return false;
        };
        let mut signed = format!("{domain}\n").into_bytes();
        signed.extend_from_slice(message);
        self.verifying
            .verify_strict(&signed, &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

/// Adds a signature to a bundle (whose integrity is checked first). A key signs once.
pub fn sign(
    bytes: &[u8],
    key: &PrivateKey,
    sequence: u64,
    signed_at: &str,
) -> Result<Vec<u8>, BundleError> {
    open(bytes)?;
    let container = decode(bytes)?;
    let mut records = container.signatures.clone();
    for record in &records {
        let existing: SignatureRecord = serde_json::from_value(record.clone())
            .map_err(|e| BundleError::Malformed(format!("a signature record is malformed: {e}")))?;
        if existing.key_id == key.key_id {
            return Err(BundleError::Signature(format!(
                "the bundle is already signed by key `{}`",
                key.key_id
            )));
        }
    }
    let signature = key.signing.sign(&message(
        &container.content_hash,
        &key.key_id,
        sequence,
        signed_at,
    )?);
    let record = SignatureRecord {
        algorithm: "ed25519".to_owned(),
        key_id: key.key_id.clone(),
        sequence,
        signed_at: signed_at.to_owned(),
        signature: hex::encode(signature.to_bytes()),
    };
    records.push(
        serde_json::to_value(&record)
            .map_err(|e| BundleError::Malformed(format!("cannot encode a signature: {e}")))?,
    );
    encode(&bytes[..container.body_len], &records)
}

/// What verification requires.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// How many distinct trusted keys must have signed (at least 1).
    pub threshold: usize,
    /// The lowest acceptable sequence number (anti-rollback).
    pub min_sequence: Option<u64>,
}

/// A verified bundle and who signed it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub bundle: Bundle,
    pub signatures: Vec<SignatureRecord>,
}

/// Checks every byte: the container layout, the content against the manifest, and every
/// signature (each must be by a trusted key and valid; at least `threshold` distinct keys).
pub fn verify(bytes: &[u8], keys: &[PublicKey], policy: &Policy) -> Result<Verified, BundleError> {
    let bundle = open(bytes)?;
    let container = &bundle.container;
    if container.signatures.is_empty() {
        return Err(BundleError::Signature(
            "the bundle is not signed".to_owned(),
        ));
    }
    let mut records = Vec::new();
    for (index, value) in container.signatures.iter().enumerate() {
        let record: SignatureRecord = serde_json::from_value(value.clone())
            .map_err(|e| BundleError::Malformed(format!("signature {index} is malformed: {e}")))?;
        if record.algorithm != "ed25519" {
            return Err(BundleError::Signature(format!(
                "signature {index} uses unsupported algorithm `{}`",
                record.algorithm
            )));
        }
        let Some(key) = keys.iter().find(|k| k.key_id == record.key_id) else {
            return Err(BundleError::UnknownKey(record.key_id.clone()));
        };
        let raw = hex::decode(&record.signature)
            .ok()
            .filter(|_| record.signature.bytes().all(|b| !b.is_ascii_uppercase()))
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or_else(|| {
                BundleError::Malformed(format!(
                    "signature {index} is not 64 bytes of lowercase hex"
                ))
            })?;
        let signed = message(
            &container.content_hash,
            &record.key_id,
            record.sequence,
            &record.signed_at,
        )?;
        key.verifying
            .verify_strict(&signed, &Signature::from_bytes(&raw))
            .map_err(|_| {
                BundleError::Signature(format!(
                    "the signature by key `{}` does not match the bundle's content and metadata",
                    record.key_id
                ))
            })?;
        if let Some(floor) = policy.min_sequence {
            if record.sequence < floor {
                return Err(BundleError::Sequence {
                    found: record.sequence,
                    floor,
                });
            }
        }
        if records
            .iter()
            .any(|r: &SignatureRecord| r.key_id == record.key_id)
        {
            return Err(BundleError::Signature(format!(
                "key `{}` signed twice",
                record.key_id
            )));
        }
        records.push(record);
    }
    let threshold = policy.threshold.max(1);
    if records.len() < threshold {
        return Err(BundleError::Threshold {
            found: records.len(),
            needed: threshold,
        });
    }
    Ok(Verified {
        bundle,
        signatures: records,
    })
}
