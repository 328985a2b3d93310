//! Bundles: reproducible bytes, signatures, and tamper resistance (every byte of a signed
//! bundle is checked).
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print

use polctl_bundle::{
    build, generate_key, open, parse_private_key, parse_public_key, sign, verify, BuildInput,
    BundleError, CheckSummary, Policy, PublicKey, TestSummary,
};
use polctl_lang::{compile, SourceSet};

const SCHEMA: &str =
    "schema {\n  agent { id: string, tenant: string }\n  tool send_email: send { to: string }\n}\n";
const POLICY: &str = "policy acme.mail {\n  applies to tenant \"acme\"\n\n  rule internal:\n    allow send_email when args.to ends with \"@acme.example\"\n}\n";

fn files() -> Vec<(String, String)> {
    vec![
        ("schema.pol".to_owned(), SCHEMA.to_owned()),
        ("acme/mail.pol".to_owned(), POLICY.to_owned()),
        ("tests/mail.test.toml".to_owned(), "# no cases\n".to_owned()),
    ]
}

fn unsigned(files: Vec<(String, String)>) -> Vec<u8> {
    let pol: Vec<(String, String)> = files
        .iter()
        .filter(|(p, _)| p.ends_with(".pol"))
        .cloned()
        .collect();
    let set = compile(&SourceSet::from_files(pol)).set.expect("compiles");
    build(&BuildInput {
        name: "mail".to_owned(),
        files,
        set: &set,
        check: CheckSummary {
            errors: 0,
            warnings: 0,
            digest: "sha256:00".to_owned(),
        },
        tests: Some(TestSummary {
            passed: 1,
            failed: 0,
            digest: "sha256:11".to_owned(),
        }),
        parent: None,
    })
    .expect("build")
}

fn key(seed: u8) -> (polctl_bundle::PrivateKey, PublicKey) {
    let (private, public, _) = generate_key([seed; 32]).expect("key");
    (
        parse_private_key(std::str::from_utf8(&private).expect("utf-8")).expect("private"),
        parse_public_key(std::str::from_utf8(&public).expect("utf-8")).expect("public"),
    )
}

fn signed() -> (Vec<u8>, PublicKey) {
    let (private, public) = key(7);
    let bytes = sign(&unsigned(files()), &private, 3, "2026-11-22T00:00:00Z").expect("sign");
    (bytes, public)
}

fn policy(threshold: usize) -> Policy {
    Policy {
        threshold,
        min_sequence: None,
    }
}

#[test]
fn the_same_sources_give_the_same_bytes_in_any_order() {
    let mut reversed = files();
    reversed.reverse();
    assert_eq!(unsigned(files()), unsigned(reversed));
    let bundle = open(&unsigned(files())).expect("opens");
    assert_eq!(bundle.manifest.files.len(), 3);
    assert_eq!(bundle.manifest.rules, 1);
    assert_eq!(
        bundle.manifest.revision,
        SourceSet::from_files(vec![
            ("schema.pol".to_owned(), SCHEMA.to_owned()),
            ("acme/mail.pol".to_owned(), POLICY.to_owned()),
        ])
        .revision()
    );
}

#[test]
fn a_signed_bundle_verifies() {
    let (bytes, public) = signed();
    let verified = verify(&bytes, &[public], &policy(1)).expect("verifies");
    assert_eq!(verified.signatures.len(), 1);
    assert_eq!(verified.signatures[0].sequence, 3);
    assert_eq!(verified.bundle.sources().len(), 3);
}

#[test]
fn every_single_byte_flip_is_rejected() {
    let (bytes, public) = signed();
    let keys = [public];
    for index in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut tampered = bytes.clone();
            tampered[index] ^= flip;
            let result = verify(&tampered, &keys, &policy(1));
            assert!(
                result.is_err(),
                "flipping byte {index} by {flip:#x} was accepted"
            );
        }
    }
}

#[test]
fn truncation_and_trailing_data_are_rejected() {
    let (bytes, public) = signed();
    let keys = [public];
    for length in 0..bytes.len() {
        assert!(
            verify(&bytes[..length], &keys, &policy(1)).is_err(),
            "truncated to {length} bytes was accepted"
        );
    }
    let mut extended = bytes.clone();
    extended.push(0);
    match verify(&extended, &keys, &policy(1)) {
        Err(BundleError::Malformed(message)) => assert!(message.contains("trailing data")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_wrong_key_a_missing_signature_and_an_unmet_threshold_are_rejected() {
    let (bytes, _) = signed();
    let (_, other) = key(9);
    assert!(matches!(
        verify(&bytes, std::slice::from_ref(&other), &policy(1)),
        Err(BundleError::UnknownKey(_))
    ));
    match verify(&unsigned(files()), std::slice::from_ref(&other), &policy(1)) {
        Err(BundleError::Signature(message)) => assert!(message.contains("not signed")),
        result => panic!("{result:?}"),
    }
    let (_, public) = key(7);
    assert!(matches!(
        verify(&bytes, std::slice::from_ref(&public), &policy(2)),
        Err(BundleError::Threshold {
            found: 1,
            needed: 2
        })
    ));
    // Two-person rule: a second key signs, and the threshold of 2 is met.
    let (second, second_public) = key(9);
    let twice = sign(&bytes, &second, 3, "2026-11-22T00:05:00Z").expect("second signature");
    verify(&twice, &[public.clone(), second_public], &policy(2)).expect("two signatures");
    // The same key cannot sign twice.
    let (first, _) = key(7);
    assert!(sign(&bytes, &first, 3, "2026-11-22T00:06:00Z").is_err());
}

#[test]
fn a_lower_sequence_than_the_floor_is_rejected() {
    let (bytes, public) = signed();
    let floor = Policy {
        threshold: 1,
        min_sequence: Some(4),
    };
    assert!(matches!(
        verify(&bytes, std::slice::from_ref(&public), &floor),
        Err(BundleError::Sequence { found: 3, floor: 4 })
    ));
    let at_floor = Policy {
        threshold: 1,
        min_sequence: Some(3),
    };
    verify(&bytes, &[public], &at_floor).expect("sequence 3 meets a floor of 3");
}

#[test]
fn a_key_file_with_a_foreign_key_id_is_rejected() {
    let (_, public, _) = generate_key([1; 32]).expect("key");
    let text = String::from_utf8(public).expect("utf-8");
    let forged = text.replacen("\"key_id\":\"", "\"key_id\":\"0", 1);
    assert!(parse_public_key(&forged).is_err());
}
