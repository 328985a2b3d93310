//! Strings between Rust and Z3 4.8.12.
//!
//! Z3 reads a C string byte by byte, so raw UTF-8 would become several bogus characters. Every
//! literal is therefore written as printable ASCII with `\u{..}` escapes for everything else
//! (the backslash included), and strings read back from a model are decoded the same way.

use z3::ast::String as Z3String;

/// `text` as a Z3 string literal body.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // The quote too: a literal inside SMT-LIB text (regex languages) must not end early.
        if (' '..='~').contains(&c) && c != '\\' && c != '"' {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    out
}

/// Decodes a string printed by Z3 (`\u{..}` escapes).
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        match after.find('}').and_then(|end| {
            u32::from_str_radix(&after[..end], 16)
                .ok()
                .and_then(char::from_u32)
                .map(|c| (c, end))
        }) {
            Some((c, end)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("\\u{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn literal(text: &str) -> Z3String {
    // An interior NUL cannot cross the C API; it is escaped like every other control character.
    Z3String::from(escape(text).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trips() {
        for text in [
            "plain",
            "a\\b",
            "\u{e9}t\u{e9}",
            "\u{1F600}",
            "x\u{0}y\n",
            "\\u{41}",
            "say \"hi\"",
        ] {
            assert_eq!(unescape(&escape(text)), text);
        }
    }
}
