//! A policy set's `polctl.toml` (runtime.md §3.5): settings that travel with the set in its
//! bundle, so every server of a release agrees. Today one section:
//!
//! ```toml
//! [operator]
//! context = ["mode", "kill_switch"]   # context attributes set by operators, never by requests
//!
//! [operator.defaults]                 # optional: the value until an operator sets one
//! mode = "normal"
//! ```
//!
//! Without a default, an operator attribute starts at its type's zero: `false`, the first
//! member of an enum, `0` (or the low end of a range), `""`, `[]`.

use crate::decimal::Decimal;
use crate::eval::json::JsonRef;
use crate::eval::{decode_value, Value};
use crate::ir::{Schema, Type};
use crate::suggest::help_did_you_mean;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The file's name at the root of a set.
pub const PROJECT_FILE: &str = "polctl.toml";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectConfig {
    /// Operator context attributes with their starting values, by context attribute index.
    pub operator_context: Vec<OperatorAttribute>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperatorAttribute {
    pub name: String,
    /// Index into `Schema::context`.
    pub index: usize,
    /// The value before an operator sets one, as JSON.
    pub default: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    operator: Option<OperatorSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorSection {
    #[serde(default)]
    context: Vec<String>,
    #[serde(default)]
    defaults: BTreeMap<String, toml::Value>,
}

impl ProjectConfig {
    /// Reads `polctl.toml` against the set's schema. `Err` says what is wrong and how to fix
    /// it (the caller adds the file name).
    pub fn parse(text: &str, schema: &Schema) -> Result<ProjectConfig, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let Some(section) = file.operator else {
            return Ok(ProjectConfig::default());
        };
        let names = || schema.context.iter().map(|a| a.name.as_str());
        let mut operator_context = Vec::new();
        for name in &section.context {
            let Some(index) = schema.context.iter().position(|a| &a.name == name) else {
                let mut message = format!(
                    "[operator] context names `{name}`, which is not a context attribute of the schema"
                );
                if let Some(help) = help_did_you_mean(name, names()) {
                    message.push_str(&format!(" ({help})"));
                }
                return Err(message);
            };
            if operator_context
                .iter()
                .any(|a: &OperatorAttribute| a.index == index)
            {
                return Err(format!("[operator] context lists `{name}` twice"));
            }
            let ty = &schema.context[index].ty;
            let default = match section.defaults.get(name) {
                Some(value) => {
                    let json = serde_json::to_value(value).map_err(|e| e.to_string())?;
                    check_value(ty, &json)
                        .map_err(|e| format!("[operator.defaults] {name}: {e}"))?;
                    json
                }
                None => zero(ty),
            };
            operator_context.push(OperatorAttribute {
                name: name.clone(),
                index,
                default,
            });
        }
        if let Some(extra) = section
            .defaults
            .keys()
            .find(|k| !section.context.contains(k))
        {
            return Err(format!(
                "[operator.defaults] sets `{extra}`, which is not listed in [operator] context"
            ));
        }
        Ok(ProjectConfig { operator_context })
    }

    /// The operator attribute called `name`.
    pub fn operator(&self, name: &str) -> Option<&OperatorAttribute> {
        self.operator_context.iter().find(|a| a.name == name)
    }
}

/// Whether `json` is a value of `ty` (the request decoder's rules); `Err` says why not.
pub fn check_value(ty: &Type, json: &serde_json::Value) -> Result<Value, String> {
    decode_value("", ty, &JsonRef::from_value(json)).map_err(|e| e.message)
}

/// A type's starting value.
fn zero(ty: &Type) -> serde_json::Value {
    use serde_json::json;
    match ty {
        Type::Bool => json!(false),
        Type::String => json!(""),
        Type::StringList => json!([]),
        Type::Enum { members } => json!(members.first().cloned().unwrap_or_default()),
        Type::Int { range } => json!(range.map_or(0, |(low, high)| 0.clamp(low, high))),
        Type::Decimal { range } => {
            let zero = Decimal::from_millionths(0);
            match crate::ir::outside_range(range, zero) {
                Some((low, _)) => json!(low.to_string()),
                None => json!(0),
            }
        }
    }
}
