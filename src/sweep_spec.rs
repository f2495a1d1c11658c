//! A sweep's specification (TOML or JSON) and its grid: which experiment, the options every run
//! shares, the axes to vary and the budget of each run; expanded into points, each named from
//! its axis values and turned into the command line of an ordinary run. Knows nothing of the
//! experiments: the command table checks the options and values ([`crate::commands::sweep`]).
//!
//! ```toml
//! experiment = "maze"
//! [options]                    # every run: the experiment's options without `--`
//! preset = "paper"
//! [axes]                       # the grid: every combination of these values
//! model = ["modul", "modplast", "plastic", "rnn"]
//! seed = [0, 1, 2]
//! [budget]                     # each run: updates (lm: epochs) and/or minutes
//! updates = 5000
//! minutes = 60
//! [slurm]                      # --on slurm: resources of each array task
//! cpus-per-task = 1
//! max-parallel = 8
//! args = ["--time=02:00:00"]
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

mod point;
pub use point::{name_part, scalar_text, Point};

/// A specification error: the field (`axes.model`, `budget.updates`) and what is wrong.
#[derive(Debug)]
pub struct SpecError {
    /// The field, as the spec spells it.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn error(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// The budget of each run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Optimiser updates (`--updates`).
    pub updates: Option<u64>,
    /// Epochs of a language model (`--epochs`).
    pub epochs: Option<u64>,
    /// Wall-clock minutes (`--time-limit`).
    pub minutes: Option<f64>,
}

/// Resources of each Slurm array task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SlurmSpec {
    /// `--cpus-per-task`, also each run's `--threads` [default: 1].
    #[serde(default = "one")]
    pub cpus_per_task: u32,
    /// Array tasks running at once (`%M` of `--array`) [default: every point].
    pub max_parallel: Option<u32>,
    /// More `sbatch` options (`--time=02:00:00`, `--partition=cpu`, `--mem=4G`).
    #[serde(default)]
    pub args: Vec<String>,
}

fn one() -> u32 {
    1
}

impl Default for SlurmSpec {
    fn default() -> Self {
        SlurmSpec {
            cpus_per_task: 1,
            max_parallel: None,
            args: Vec::new(),
        }
    }
}

/// A parsed specification.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The experiment's command (`pattern`, `maze`...).
    pub experiment: String,
    /// Options every run shares, by name without `--`, sorted.
    pub options: Vec<(String, Value)>,
    /// The axes in naming order: `model` (or a table axis) first, then the others by name,
    /// `seed` last; each a non-empty list of values.
    pub axes: Vec<(String, Vec<Value>)>,
    /// Each run's budget.
    pub budget: Budget,
    /// Slurm resources.
    pub slurm: SlurmSpec,
}

/// Options that the sweep sets itself, and why a spec may not.
const RESERVED: &[(&str, &str)] = &[
    ("out", "the sweep names each run's folder"),
    ("resume", "the sweep resumes interrupted runs itself"),
    ("force", "the sweep never replaces a run"),
    (
        "threads",
        "the sweep divides the threads (--threads of `plasticity sweep`)",
    ),
    ("updates", "a run's length goes in [budget] (updates)"),
    ("episodes", "a run's length goes in [budget] (updates)"),
    ("epochs", "a run's length goes in [budget] (epochs)"),
    ("time-limit", "a run's length goes in [budget] (minutes)"),
];

/// Options that a resumed run accepts again (everything else is in its config.json).
pub const RUN_LEVEL: &[&str] = &["checkpoint-every", "device", "progress-every", "data-dir"];

/// A grid larger than this is refused without `--yes`.
pub const MAX_POINTS: usize = 1000;

impl Spec {
    /// Parses a spec: TOML when `toml` is true, else JSON.
    pub fn parse(text: &str, toml: bool) -> Result<Spec, SpecError> {
        let value: Value = if toml {
            toml::from_str(text).map_err(|e| error("spec", format!("invalid TOML: {e}")))?
        } else {
            serde_json::from_str(text).map_err(|e| error("spec", format!("invalid JSON: {e}")))?
        };
        Spec::from_value(&value)
    }

    /// The spec as a JSON value (what [`Spec::from_value`] reads back).
    pub fn to_value(&self) -> Value {
        let axes: Map<String, Value> = self
            .axes
            .iter()
            .map(|(k, v)| (k.clone(), Value::Array(v.clone())))
            .collect();
        serde_json::json!({
            "experiment": self.experiment,
            "options": self.options.iter().cloned().collect::<Map<_, _>>(),
            "axes": axes,
            "budget": self.budget,
            "slurm": self.slurm,
        })
    }

    /// Reads a spec from a JSON value, checking its shape (not the experiment's options).
    pub fn from_value(value: &Value) -> Result<Spec, SpecError> {
        let top = value
            .as_object()
            .ok_or_else(|| error("spec", "expected a table of fields"))?;
        const FIELDS: &[&str] = &["experiment", "options", "axes", "budget", "slurm"];
        if let Some(k) = top.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(error(
                k.as_str(),
                format!("unknown field (expected {})", FIELDS.join(", ")),
            ));
        }
        let experiment = top
            .get("experiment")
            .ok_or_else(|| {
                error(
                    "experiment",
                    "missing (the experiment to run, e.g. \"maze\")",
                )
            })?
            .as_str()
            .ok_or_else(|| error("experiment", "expected a string"))?
            .to_string();
        let table = |name: &str| -> Result<Map<String, Value>, SpecError> {
            match top.get(name) {
                None => Ok(Map::new()),
                Some(Value::Object(m)) => Ok(m.clone()),
                Some(_) => Err(error(name, "expected a table")),
            }
        };
        let options = table("options")?;
        for (k, v) in &options {
            check_name(&format!("options.{k}"), k)?;
            check_scalar(&format!("options.{k}"), v)?;
        }
        let axes = table("axes")?;
        if axes.is_empty() {
            return Err(error(
                "axes",
                "no axis: give at least one (e.g. seed = [0, 1, 2])",
            ));
        }
        let mut parsed = Vec::new();
        for (k, v) in &axes {
            let field = format!("axes.{k}");
            let values = v
                .as_array()
                .ok_or_else(|| error(&field, "expected a list of values"))?;
            if values.is_empty() {
                return Err(error(&field, "empty list: give at least one value"));
            }
            if options.contains_key(k) {
                return Err(error(
                    &field,
                    format!("also set in options.{k}: set it in one place"),
                ));
            }
            for (i, x) in values.iter().enumerate() {
                check_value(&format!("{field}[{i}]"), k, x)?;
            }
            parsed.push((k.clone(), values.clone()));
        }
        parsed.sort_by_key(|(k, v)| (axis_rank(k, v), k.clone()));
        let section = |name: &str| top.get(name).cloned().unwrap_or(Value::Object(Map::new()));
        let budget: Budget = serde_json::from_value(section("budget"))
            .map_err(|e| error("budget", e.to_string()))?;
        if budget.updates == Some(0) || budget.epochs == Some(0) {
            return Err(error("budget", "must be positive (0 trains nothing)"));
        }
        if let Some(m) = budget.minutes {
            if !(m.is_finite() && m > 0.0) {
                return Err(error(
                    "budget.minutes",
                    format!("must be a positive number (got {m})"),
                ));
            }
        }
        let slurm: SlurmSpec =
            serde_json::from_value(section("slurm")).map_err(|e| error("slurm", e.to_string()))?;
        if slurm.cpus_per_task == 0 || slurm.max_parallel == Some(0) {
            return Err(error(
                "slurm",
                "cpus-per-task and max-parallel must be positive",
            ));
        }
        let mut options: Vec<(String, Value)> = options.into_iter().collect();
        options.sort_by(|a, b| a.0.cmp(&b.0));
        let spec = Spec {
            experiment,
            options,
            axes: parsed,
            budget,
            slurm,
        };
        spec.check_names()?;
        Ok(spec)
    }

    /// Points of the grid: `seed` varies slowest (every variant of the first seed comes first,
    /// so that an interrupted sweep still compares every variant), then the other axes in
    /// naming order, the last fastest.
    pub fn points(&self) -> Vec<Point> {
        let mut order: Vec<usize> = (0..self.axes.len()).collect();
        if let Some(s) = self.axes.iter().position(|(k, _)| k == "seed") {
            order.retain(|&i| i != s);
            order.insert(0, s);
        }
        let total = self.grid_size();
        let mut points = Vec::with_capacity(total);
        for n in 0..total {
            let mut choice = vec![0; self.axes.len()];
            let mut rest = n;
            for &a in order.iter().rev() {
                let len = self.axes[a].1.len();
                choice[a] = rest % len;
                rest /= len;
            }
            let values: Vec<(String, Value)> = self
                .axes
                .iter()
                .zip(&choice)
                .map(|((k, v), &c)| (k.clone(), v[c].clone()))
                .collect();
            points.push(Point::new(n, values));
        }
        points
    }

    /// Points of the grid: the product of the axes' lengths.
    pub fn grid_size(&self) -> usize {
        self.axes
            .iter()
            .map(|(_, v)| v.len())
            .fold(1usize, |a, b| a.saturating_mul(b))
    }

    /// Two points named alike (values that differ only in characters a folder name cannot
    /// hold) would share a folder.
    fn check_names(&self) -> Result<(), SpecError> {
        for (k, values) in &self.axes {
            let mut seen: Vec<String> = Vec::new();
            for v in values {
                let part = name_part(k, v);
                if seen.contains(&part) {
                    return Err(error(
                        format!("axes.{k}"),
                        format!("two values give the folder name '{part}' (repeated value?)"),
                    ));
                }
                seen.push(part);
            }
        }
        Ok(())
    }

    /// The command line of a new run of `point`, after the experiment's name, without
    /// `--out` and `--threads`: the options, the point's values, the budget.
    pub fn run_args(&self, point: &Point) -> Vec<String> {
        let mut args = vec![self.experiment.clone()];
        for (k, v) in self.options.iter().chain(point.options().iter()) {
            push_option(&mut args, k, v);
        }
        args.extend(self.budget_args());
        args
    }

    /// The command line that resumes `point` (after `--resume DIR`): the budget and the
    /// run-level options ([`RUN_LEVEL`]).
    pub fn resume_args(&self, point: &Point) -> Vec<String> {
        let mut args = vec![self.experiment.clone()];
        for (k, v) in self.options.iter().chain(point.options().iter()) {
            if RUN_LEVEL.contains(&k.as_str()) {
                push_option(&mut args, k, v);
            }
        }
        args.extend(self.budget_args());
        args
    }

    fn budget_args(&self) -> Vec<String> {
        let b = &self.budget;
        let mut args = Vec::new();
        if let Some(u) = b.updates {
            args.extend(["--updates".to_string(), u.to_string()]);
        }
        if let Some(e) = b.epochs {
            args.extend(["--epochs".to_string(), e.to_string()]);
        }
        if let Some(m) = b.minutes {
            args.extend(["--time-limit".to_string(), m.to_string()]);
        }
        args
    }

    /// Every option the spec sets: its name, its field (`options.lr`, `axes.model`,
    /// `axes.variant[1].neurons`) and its value.
    pub fn option_fields(&self) -> Vec<(String, String, Value)> {
        let mut out: Vec<(String, String, Value)> = self
            .options
            .iter()
            .map(|(k, v)| (k.clone(), format!("options.{k}"), v.clone()))
            .collect();
        for (axis, values) in &self.axes {
            for (i, v) in values.iter().enumerate() {
                match v {
                    Value::Object(m) => out.extend(
                        m.iter()
                            .filter(|(k, _)| *k != "name")
                            .map(|(k, x)| (k.clone(), format!("axes.{axis}[{i}].{k}"), x.clone())),
                    ),
                    _ => out.push((axis.clone(), format!("axes.{axis}"), v.clone())),
                }
            }
        }
        out
    }
}

/// `model` and table axes name a run first, `seed` last.
fn axis_rank(k: &str, values: &[Value]) -> u8 {
    match k {
        "model" => 0,
        "seed" => 3,
        _ if values.iter().any(Value::is_object) => 1,
        _ => 2,
    }
}

/// An option's name: lower-case words joined by `-`, as on the command line.
fn check_name(field: &str, k: &str) -> Result<(), SpecError> {
    if let Some((_, why)) = RESERVED.iter().find(|(r, _)| *r == k) {
        return Err(error(field, format!("set by the sweep: {why}")));
    }
    let ok = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(error(
            field,
            "an option's name as on the command line, without -- (e.g. checkpoint-every)",
        ));
    }
    Ok(())
}

/// An option's value: a string, a number, or true / false for a flag.
fn check_scalar(field: &str, v: &Value) -> Result<(), SpecError> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
        _ => Err(error(field, "expected a string, a number or true/false")),
    }
}

/// An axis value: a scalar, or (a variant) a table of options set together with an optional
/// `name`.
fn check_value(field: &str, axis: &str, v: &Value) -> Result<(), SpecError> {
    let Value::Object(m) = v else {
        check_name(field, axis)?;
        return check_scalar(field, v);
    };
    if m.keys().all(|k| k == "name") {
        return Err(error(field, "a variant sets at least one option"));
    }
    for (k, x) in m {
        let f = format!("{field}.{k}");
        if k == "name" {
            if !x.is_string() {
                return Err(error(f, "expected a string (the variant's folder name)"));
            }
            continue;
        }
        check_name(&f, k)?;
        check_scalar(&f, x)?;
    }
    Ok(())
}

/// Pushes `--k v` (`--k` for a flag set to true, nothing for false).
fn push_option(args: &mut Vec<String>, k: &str, v: &Value) {
    match v {
        Value::Bool(true) => args.push(format!("--{k}")),
        Value::Bool(false) => {}
        _ => args.extend([format!("--{k}"), scalar_text(v)]),
    }
}

#[cfg(test)]
#[path = "sweep_spec_tests.rs"]
mod tests;
