//! A bundle made ready to decide: its bytes checked (integrity always, signatures when the
//! server has trusted keys), its sources compiled, its evaluator built. Everything that can
//! fail about a bundle fails here, before it can touch the route (runtime.md §3.4).

use crate::error::RuntimeError;
use polctl_bundle::{PublicKey, Verified};
use polctl_lang::eval::Evaluator;
use polctl_lang::project::{ProjectConfig, PROJECT_FILE};
use polctl_lang::{compile, SourceSet};
use std::time::Instant;

/// What the server trusts: the keys of `--trust` and how many must have signed.
#[derive(Clone, Default)]
pub struct Trust {
    pub keys: Vec<PublicKey>,
    pub threshold: usize,
}

impl Trust {
    /// A server without trusted keys serves unsigned bundles (local development, like OPA
    /// without bundle signing); it says so at start and in its status.
    pub fn verifies(&self) -> bool {
        !self.keys.is_empty()
    }
}

/// A compiled bundle.
pub struct LoadedBundle {
    /// The signed release number (0 for a bundle served without verification).
    pub sequence: u64,
    /// The manifest's revision: the hash of the sources, the decisions' `policy_version`.
    pub revision: String,
    pub name: String,
    pub rules: usize,
    pub verified: bool,
    pub evaluator: Evaluator,
    /// The set's `polctl.toml` (operator context).
    pub project: ProjectConfig,
    pub bytes: Vec<u8>,
    pub compile_ms: u64,
    /// The policy each rule belongs to (indexes into the set's policies), for breakers.
    pub rule_policy: Vec<Option<usize>>,
}

/// Opens, verifies and compiles a bundle's bytes.
pub fn load_bundle(bytes: Vec<u8>, trust: &Trust) -> Result<LoadedBundle, RuntimeError> {
    let refused = |code: &'static str, message: String| RuntimeError::new(422, code, message);
    let (bundle, sequence) = if trust.verifies() {
        let policy = polctl_bundle::Policy {
            threshold: trust.threshold.max(1),
            min_sequence: None,
        };
        let Verified { bundle, signatures } =
            polctl_bundle::verify(&bytes, &trust.keys, &policy)
                .map_err(|e| refused("bundle_signature", format!("the bundle is refused: {e}")))?;
        let sequence = signatures.iter().map(|s| s.sequence).min().unwrap_or(0);
        (bundle, sequence)
    } else {
        let bundle = polctl_bundle::open(&bytes)
            .map_err(|e| refused("bundle_corrupt", format!("the bundle is refused: {e}")))?;
        (bundle, 0)
    };
    let started = Instant::now();
    let files = bundle.sources();
    let sources = SourceSet::from_files(
        files
            .iter()
            .filter(|(path, _)| path.ends_with(".pol"))
            .cloned(),
    );
    let compilation = compile(&sources);
    let Some(set) = compilation.set else {
        let first = compilation
            .diagnostics
            .first()
            .map(|d| d.message.clone())
            .unwrap_or_default();
        return Err(refused(
            "bundle_compile",
            format!(
                "the bundle's sources do not compile ({} errors; the first: {first}); run `polctl check` on them",
                compilation.errors()
            ),
        ));
    };
    let project = match files.iter().find(|(path, _)| path == PROJECT_FILE) {
        Some((_, text)) => ProjectConfig::parse(text, &set.schema).map_err(|message| {
            refused(
                "bundle_config",
                format!("the bundle's {PROJECT_FILE}: {message}"),
            )
        })?,
        None => ProjectConfig::default(),
    };
    let rules = set.rules.len();
    let mut rule_policy = vec![None; rules];
    for (index, policy) in set.policies.iter().enumerate() {
        for &rule in &policy.rules {
            if let Some(slot) = rule_policy.get_mut(rule) {
                *slot = Some(index);
            }
        }
    }
    let evaluator = Evaluator::new(set, bundle.manifest.revision.clone()).map_err(|e| {
        refused(
            "bundle_compile",
            format!("rule `{}`: {}", e.rule, e.message),
        )
    })?;
    Ok(LoadedBundle {
        sequence,
        revision: bundle.manifest.revision.clone(),
        name: bundle.manifest.name.clone(),
        rules,
        verified: trust.verifies(),
        evaluator,
        project,
        bytes,
        compile_ms: started.elapsed().as_millis() as u64,
        rule_policy,
    })
}
