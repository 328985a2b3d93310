//! A borrowed JSON tree, what requests are decoded from.
//!
//! `serde_json::Value` owns every key and string and keeps objects in B-trees. For a request
//! that is decoded once and then dropped, those allocations cost more than decoding and deciding
//! together (runtime.md §5's throughput targets). `JsonRef` borrows strings from the text it was
//! parsed from (a string with escapes is the one that gets its own copy) and keeps an object as
//! its members in document order. It reads the same as `Value` where decoding looks: the last
//! of repeated keys wins, numbers are `serde_json::Number`s built the same way, and
//! [`JsonRef::sorted_members`] gives an object's members in `Value`'s (sorted) order for the
//! places where order shows (the first of several errors, counters).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value as Json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// A JSON value borrowing its strings where it can.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonRef<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<JsonRef<'a>>),
    /// Members in document order, repeated keys included (lookups take the last).
    Object(Vec<(Cow<'a, str>, JsonRef<'a>)>),
}

impl<'a> JsonRef<'a> {
    /// Parses JSON text (serde_json's grammar and nesting limit).
    pub fn parse(text: &'a str) -> Result<JsonRef<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A view of a parsed `Value` (strings borrowed from it).
    pub fn from_value(value: &'a Json) -> JsonRef<'a> {
        match value {
            Json::Null => JsonRef::Null,
            Json::Bool(b) => JsonRef::Bool(*b),
            Json::Number(n) => JsonRef::Number(n.clone()),
            Json::String(s) => JsonRef::String(Cow::Borrowed(s)),
            Json::Array(items) => JsonRef::Array(items.iter().map(JsonRef::from_value).collect()),
            Json::Object(members) => JsonRef::Object(
                members
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), JsonRef::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The owned `Value` (for examples and messages).
    pub fn to_value(&self) -> Json {
        match self {
            JsonRef::Null => Json::Null,
            JsonRef::Bool(b) => Json::Bool(*b),
            JsonRef::Number(n) => Json::Number(n.clone()),
            JsonRef::String(s) => Json::String(s.to_string()),
            JsonRef::Array(items) => Json::Array(items.iter().map(JsonRef::to_value).collect()),
            JsonRef::Object(members) => Json::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// An object's member (the last one, when the key repeats, as `Value` keeps it).
    pub fn get(&self, key: &str) -> Option<&JsonRef<'a>> {
        match self {
            JsonRef::Object(members) => members
                .iter()
                .rev()
                .find(|(k, _)| k.as_ref() == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// An object's members as `Value` has them: sorted by key, the last of repeated keys.
    pub fn sorted_members(&self) -> Vec<(&str, &JsonRef<'a>)> {
        match self {
            JsonRef::Object(members) => members
                .iter()
                .map(|(k, v)| (k.as_ref(), v))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, JsonRef::Object(_))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            JsonRef::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            JsonRef::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            JsonRef::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            JsonRef::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[JsonRef<'a>]> {
        match self {
            JsonRef::Array(items) => Some(items),
            _ => None,
        }
    }

    /// How an error message names a value it did not expect.
    pub fn describe(&self) -> String {
        match self {
            JsonRef::Null => "null".to_owned(),
            JsonRef::Bool(b) => b.to_string(),
            JsonRef::Number(n) => n.to_string(),
            JsonRef::String(s) => format!("{s:?}"),
            JsonRef::Array(_) => "a list".to_owned(),
            JsonRef::Object(_) => "an object".to_owned(),
        }
    }
}

impl fmt::Display for JsonRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.to_value())
    }
}

/// A string that borrows from the input when it has no escapes.
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

impl<'de> Deserialize<'de> for JsonRef<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonRefVisitor)
    }
}

struct JsonRefVisitor;

impl<'de> Visitor<'de> for JsonRefVisitor {
    type Value = JsonRef<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(JsonRef::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(JsonRef::Number(n.into()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(JsonRef::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        // As `Value` does: a non-finite float (not reachable from JSON text) becomes null.
        Ok(Number::from_f64(n).map_or(JsonRef::Null, JsonRef::Number))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(JsonRef::String(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(JsonRef::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(JsonRef::String(Cow::Owned(s)))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonRef::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonRef::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Deserialize::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsonRef::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // serde_json gives no size hint; requests' objects have up to about 8 members, and
        // growing a vector is a copy and a free.
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(BorrowedStr(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(JsonRef::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let text = r#"{"a": "plain", "b\u0041": "esc\"aped"}"#;
        let JsonRef::Object(members) = JsonRef::parse(text).expect("parses") else {
            panic!("an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("a")));
        assert!(matches!(
            members[0].1,
            JsonRef::String(Cow::Borrowed("plain"))
        ));
        assert_eq!(members[1].0, "bA");
        assert_eq!(members[1].1.as_str(), Some("esc\"aped"));
    }

    #[test]
    fn reads_like_value() {
        let texts = [
            r#"{"z": 1, "a": [true, null, -3, 2.5e3, 18446744073709551615], "z": {"k": "v"}}"#,
            r#"[1.0, 0.1, -0, 1e400, "\ud83d\ude00"]"#,
            "\"x\"",
            "12345678901234567890123",
        ];
        for text in texts {
            let value: Result<Json, _> = serde_json::from_str(text);
            let borrowed = JsonRef::parse(text);
            match (value, borrowed) {
                (Ok(value), Ok(borrowed)) => {
                    assert_eq!(borrowed.to_value(), value, "{text}");
                    assert_eq!(JsonRef::from_value(&value).to_value(), value, "{text}");
                }
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                (a, b) => panic!("{text}: {a:?} vs {b:?}"),
            }
        }
        let repeated = JsonRef::parse(r#"{"k": 1, "k": 2}"#).expect("parses");
        assert_eq!(repeated.get("k").and_then(JsonRef::as_i64), Some(2));
        assert_eq!(repeated.sorted_members().len(), 1);
    }
}
