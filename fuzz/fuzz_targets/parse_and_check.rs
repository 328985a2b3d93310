//! The front end on arbitrary text: parse, check, render every diagnostic for humans and as
//! JSON, and format. Nothing may panic, and every span must be inside its file on character
//! boundaries. The text is checked beside the corpus schema, so policies reach the checker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polctl_lang::diagnostic::{render_human, JsonFinding};
use polctl_lang::format::format_source;
use polctl_lang::{compile, SourceSet};

const SCHEMA: &str = include_str!("../../lang/tests/corpus/schema.pol");

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let sources = SourceSet::from_files([
        ("fuzz.pol".to_owned(), text.clone()),
        ("schema.pol".to_owned(), SCHEMA.to_owned()),
    ]);
    let compilation = compile(&sources);
    for diagnostic in &compilation.diagnostics {
        for label in std::iter::once(&diagnostic.primary).chain(&diagnostic.secondary) {
            let file = &sources.file(label.span.file).text;
            assert!(label.span.start <= label.span.end && label.span.end as usize <= file.len());
            assert!(file.is_char_boundary(label.span.start as usize));
            assert!(file.is_char_boundary(label.span.end as usize));
        }
        render_human(diagnostic, &sources, false);
        serde_json::to_string(&JsonFinding::from_diagnostic(diagnostic, &sources)).expect("JSON");
    }
    if let Ok(formatted) = format_source(&text) {
        assert!(
            format_source(&formatted).is_ok(),
            "formatted output does not parse"
        );
    }
});
