//! The bundle reader on arbitrary bytes: `open` either returns an error or a bundle whose
//! integrity it checked; reading its sources and compiling them never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polctl_lang::{compile, SourceSet};

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = polctl_bundle::open(data) {
        let sources = SourceSet::from_files(
            bundle
                .sources()
                .into_iter()
                .filter(|(path, _)| path.ends_with(".pol")),
        );
        compile(&sources);
    }
});
