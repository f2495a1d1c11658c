//! Command-line options as an overlay on a configuration. Each experiment's options are one
//! struct whose fields are named as the configuration's (`#[arg(long = "lr")] learning_rate`):
//! an option given replaces that field, one not given leaves it alone ([`apply`]), and the
//! options given are known without a list kept by hand ([`given`]), so that a resumed run can
//! refuse them.

use super::common::{usage, Failure};
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Value};

/// The fields an overlay sets: its serialized fields without the options not given (`None`,
/// and flags not given, which skip serialization).
fn set_fields<O: Serialize>(overlay: &O) -> Map<String, Value> {
    match serde_json::to_value(overlay).expect("options serialize") {
        Value::Object(m) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => Map::new(),
    }
}

/// Replaces the fields of configuration `c` by `fields`; `context` names their source in an
/// error (an unknown field, a value of the wrong type).
pub(crate) fn merge<C>(c: C, fields: &Map<String, Value>, context: &str) -> Result<C, Failure>
where
    C: Serialize + DeserializeOwned,
{
    let mut merged = serde_json::to_value(&c).expect("config serializes");
    for (k, v) in fields {
        merged[k] = v.clone();
    }
    serde_json::from_value(merged).map_err(|e| usage(format!("{context}: {e}")))
}

/// Configuration `c` with the options of `overlay` that were given.
pub(crate) fn apply<C, O>(c: C, overlay: &O) -> Result<C, Failure>
where
    C: Serialize + DeserializeOwned,
    O: Serialize,
{
    merge(c, &set_fields(overlay), "config")
}

/// The options of `overlay` that were given, as the command line spells them (`--lr`).
pub(crate) fn given<O: Serialize + clap::Args>(overlay: &O) -> Vec<String> {
    let cmd = O::augment_args(clap::Command::new("options"));
    set_fields(overlay)
        .keys()
        .map(|k| {
            let long = cmd
                .get_arguments()
                .find(|a| a.get_id().as_str() == k)
                .and_then(|a| a.get_long());
            format!(
                "--{}",
                long.map_or_else(|| k.replace('_', "-"), str::to_string)
            )
        })
        .collect()
}

/// The value parser of a real-valued option: a finite number. (A configuration travels as
/// JSON, which has no NaN or infinity; the message names the configuration field.)
#[derive(Clone, Copy)]
pub(crate) struct Finite;

impl TypedValueParser for Finite {
    type Value = f64;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<f64, clap::Error> {
        let text = value.to_string_lossy();
        let field = arg.map_or("the value", |a| a.get_id().as_str());
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(_) => Err(clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("{field}: must be a finite number (got {text})\n"),
            )
            .with_cmd(cmd)),
            Err(_) => Err(clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("{field}: expected a number (got '{text}')\n"),
            )
            .with_cmd(cmd)),
        }
    }
}
