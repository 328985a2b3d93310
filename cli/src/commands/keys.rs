//! `polctl keygen`, `polctl sign` and `polctl verify`: Ed25519 keys and bundle signatures
//! (docs/security.md).

use crate::exit::{CliError, Exit};
use crate::load::{read_bytes, read_text, write_atomically};
use clap::Args;
use polctl_bundle::{parse_private_key, parse_public_key, sign, verify, Policy};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write a new Ed25519 key pair: NAME (private, mode 0600) and NAME.pub.
#[derive(Args)]
pub struct KeygenArgs {
    /// The private key file to write; the public key goes to the same name plus `.pub`.
    #[arg(short, long, value_name = "NAME")]
    output: PathBuf,
}

fn public_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Creates a file that must not exist yet, readable by its owner only when `private`.
fn create_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::AlreadyExists => {
            CliError::new(format!("`{}` already exists", path.display()))
                .with_help("keys are never overwritten; choose another name or remove the old key")
        }
        _ => CliError::write(path, &error),
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| CliError::write(path, &error))
}

pub fn run_keygen(args: KeygenArgs) -> Result<Exit, CliError> {
    let public = public_path(&args.output);
    if public.exists() {
        return Err(
            CliError::new(format!("`{}` already exists", public.display()))
                .with_help("keys are never overwritten; choose another name or remove the old key"),
        );
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| CliError::new(format!("no randomness from the operating system: {e}")))?;
    let (private_bytes, public_bytes, key_id) =
        polctl_bundle::generate_key(seed).map_err(|e| CliError::new(e.to_string()))?;
    create_new(&args.output, &private_bytes, true)?;
    if let Err(error) = create_new(&public, &public_bytes, false) {
        // Leave no half-made key pair behind.
        let _ = std::fs::remove_file(&args.output);
        return Err(error);
    }
    println!(
        "wrote `{}` (private, mode 0600) and `{}`; key id {key_id}",
        args.output.display(),
        public.display()
    );
    Ok(Exit::Success)
}

/// Add a signature to a bundle: over its content hash and the release metadata (sequence
/// number, signing time, key id). Several keys may sign the same bundle.
#[derive(Args)]
pub struct SignArgs {
    /// The bundle file (rewritten in place, atomically).
    file: PathBuf,
    /// The private key file (from `polctl keygen`).
    #[arg(long, value_name = "NAME")]
    key: PathBuf,
    /// The release sequence number; runtimes refuse a bundle with a lower one than they run
    /// (default: the sequence of the bundle's existing signatures, or 1).
    #[arg(long)]
    sequence: Option<u64>,
}

pub fn run_sign(args: SignArgs) -> Result<Exit, CliError> {
    if args.file.is_dir() {
        return Err(CliError::new(format!(
            "`{}` is a directory, not a bundle",
            args.file.display()
        ))
        .with_help(format!(
            "build a bundle first: `polctl build {} -o set.polb`, then sign `set.polb`",
            args.file.display()
        )));
    }
    let key_text = read_text(&args.key)?;
    let key = parse_private_key(&key_text).map_err(|e| {
        let private = args.key.with_extension("");
        if key_text.contains("\"public_key\"") {
            CliError::new(format!(
                "`{}` is a public key; `sign` needs the private key",
                args.key.display()
            ))
            .with_help(format!(
                "pass the private key, the same name without `.pub`: `--key {}`",
                private.display()
            ))
        } else {
            CliError::new(format!("`{}`: {e}", args.key.display())).with_help(
                "pass a private key written by `polctl keygen -o NAME` (the file NAME, not NAME.pub)",
            )
        }
    })?;
    let bytes = read_bytes(&args.file)?;
    let existing = polctl_bundle::open(&bytes).map(|b| {
        b.container
            .signatures
            .iter()
            .filter_map(|s| s["sequence"].as_u64())
            .max()
    });
    let existing = match existing {
        Ok(existing) => existing,
        Err(error) => {
            return Err(CliError::new(format!("`{}`: {error}", args.file.display()))
                .with_help("sign the bundle `polctl build` wrote; `polctl verify` says what is wrong with this one")
                .with_exit(Exit::Verification));
        }
    };
    let sequence = args.sequence.or(existing).unwrap_or(1);
    let signed = match sign(&bytes, &key, sequence, &now_rfc3339()) {
        Ok(signed) => signed,
        Err(error) => {
            let help = if error.to_string().contains("already signed") {
                format!(
                    "each key signs a bundle once; `polctl inspect {}` lists its signatures, \
                     and a second signer uses their own key (`--threshold 2` on verify)",
                    args.file.display()
                )
            } else {
                "rebuild the bundle with `polctl build` and sign it again".to_owned()
            };
            return Err(CliError::new(format!("`{}`: {error}", args.file.display()))
                .with_help(help)
                .with_exit(Exit::Verification));
        }
    };
    write_atomically(&args.file, &signed)?;
    println!(
        "signed `{}` with key {} (sequence {sequence})",
        args.file.display(),
        key.key_id
    );
    Ok(Exit::Success)
}

/// Check every byte of a signed bundle: the container, the content against the manifest, and
/// the signatures. Exits 4, saying what failed, when anything is wrong.
#[derive(Args)]
pub struct VerifyArgs {
    /// The bundle file.
    file: PathBuf,
    /// Trusted public key files (`NAME.pub`); every signature must be by one of them.
    #[arg(long = "key", value_name = "PUB", required = true)]
    keys: Vec<PathBuf>,
    /// How many distinct trusted keys must have signed (two-person rule: 2).
    #[arg(long, default_value_t = 1)]
    threshold: usize,
    /// Refuse signatures with a lower sequence number (anti-rollback).
    #[arg(long, value_name = "N")]
    min_sequence: Option<u64>,
}

pub fn run_verify(args: VerifyArgs) -> Result<Exit, CliError> {
    let mut keys = Vec::new();
    for path in &args.keys {
        keys.push(
            parse_public_key(&read_text(path)?)
                .map_err(|e| CliError::new(format!("`{}`: {e}", path.display())))?,
        );
    }
    let bytes = read_bytes(&args.file)?;
    let policy = Policy {
        threshold: args.threshold,
        min_sequence: args.min_sequence,
    };
    match verify(&bytes, &keys, &policy) {
        Ok(verified) => {
            let manifest = &verified.bundle.manifest;
            let signers: Vec<String> = verified
                .signatures
                .iter()
                .map(|s| format!("{} (sequence {})", s.key_id, s.sequence))
                .collect();
            println!(
                "verified `{}`: {} {}, signed by {}",
                args.file.display(),
                manifest.name,
                manifest.revision,
                signers.join(", ")
            );
            Ok(Exit::Success)
        }
        Err(error) => Err(CliError::new(format!(
            "`{}` failed verification: {error}",
            args.file.display()
        ))
        .with_help("do not deploy this bundle; rebuild and sign it from reviewed sources")
        .with_exit(Exit::Verification)),
    }
}

/// The current time as RFC 3339 UTC, to the second (no date crate needed for this one line).
fn now_rfc3339() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}
