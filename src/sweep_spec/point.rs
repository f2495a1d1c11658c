//! A point of a sweep's grid and how it is named: its folder's name from its axis values, and
//! the values as the command line writes them.

use serde_json::Value;

/// One point of the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Its index (the Slurm array task that runs it).
    pub index: usize,
    /// The axes' values, in naming order.
    pub values: Vec<(String, Value)>,
    /// Its folder's name: the values' name parts joined by `-` (`modul-lr0.0003-seed2`).
    pub name: String,
    /// Its group: the name without its `-seed<N>` (the runs a median is taken over).
    pub group: String,
}

impl Point {
    pub(super) fn new(index: usize, values: Vec<(String, Value)>) -> Point {
        let parts: Vec<String> = values.iter().map(|(k, v)| name_part(k, v)).collect();
        let name = parts.join("-");
        let group: Vec<String> = values
            .iter()
            .zip(&parts)
            .filter(|((k, _), _)| k != "seed")
            .map(|(_, p)| p.clone())
            .collect();
        let group = if group.is_empty() {
            "all".to_string()
        } else {
            group.join("-")
        };
        Point {
            index,
            values,
            name,
            group,
        }
    }

    /// The options this point sets: its values, a table axis's entries spread out.
    pub fn options(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (k, v) in &self.values {
            match v {
                Value::Object(m) => out.extend(
                    m.iter()
                        .filter(|(k, _)| *k != "name")
                        .map(|(k, v)| (k.clone(), v.clone())),
                ),
                _ => out.push((k.clone(), v.clone())),
            }
        }
        out
    }
}

/// A scalar as the command line writes it.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A value's part of a folder name: a model by itself (`modul`), a number glued to its axis
/// (`seed2`, `lr0.0003`), a string after it (`rule-oja`), a flag as `fan-out` / `no-fan-out`,
/// a variant by its `name` or its options' parts; characters a folder name should not hold
/// become `_`.
pub fn name_part(axis: &str, v: &Value) -> String {
    let raw = match v {
        Value::Bool(true) => axis.to_string(),
        Value::Bool(false) => format!("no-{axis}"),
        Value::Number(n) => format!("{axis}{n}"),
        Value::String(s) if axis == "model" => s.clone(),
        Value::String(s) => format!("{axis}-{s}"),
        Value::Object(m) => match m.get("name").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by_key(|k| (k.as_str() != "model", k.as_str()));
                keys.iter()
                    .map(|k| name_part(k, &m[k.as_str()]))
                    .collect::<Vec<_>>()
                    .join("-")
            }
        },
        _ => axis.to_string(),
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
