//! The papers' experiments, each a configuration with the paper's defaults, an episode
//! generator, a metric and its models, plugged into [`crate::train`].

pub mod a2c;
pub mod completion;
pub mod cue_reward;
pub mod images;
pub mod lm;
pub mod maze;
pub mod omniglot;
pub mod pattern;
pub mod synthetic;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Parses one of a type's values by the name users see (its serde name, aliases included);
/// an error names the valid ones: `unknown model 'mlp' (expected plastic, rnn, lstm)`.
pub fn parse_name<T: DeserializeOwned>(what: &str, name: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(name.into())).map_err(|e| {
        let e = e.to_string();
        let valid = e.split_once("expected ").map_or(e.as_str(), |(_, v)| v);
        let valid = valid.trim_start_matches("one of ").replace('`', "");
        format!("unknown {what} '{name}' (expected {valid})")
    })
}

/// The network variants, with the names users see (ICML 2018; ICLR 2019), one type for every
/// task; each task takes some of them (its `MODELS`, checked by its configuration's
/// `validate` through [`Model::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Model {
    /// Non-plastic recurrent network.
    Rnn,
    /// LSTM.
    Lstm,
    /// Plastic network without modulation.
    Plastic,
    /// Simple neuromodulation (ICLR 2019 eq. 3); `modulated` is the language model's old name.
    #[serde(alias = "modulated")]
    #[cfg_attr(feature = "clap", value(alias = "modulated"))]
    Modplast,
    /// Retroactive neuromodulation with an eligibility trace (ICLR 2019 eq. 4-5).
    Modul,
}

impl Model {
    /// The name users see: `rnn`, `lstm`, `plastic`, `modplast`, `modul`.
    pub fn name(self) -> &'static str {
        match self {
            Model::Rnn => "rnn",
            Model::Lstm => "lstm",
            Model::Plastic => "plastic",
            Model::Modplast => "modplast",
            Model::Modul => "modul",
        }
    }

    /// `Ok` when the model is one of `allowed` (a task's `MODELS`); the error names them:
    /// `unknown model 'modul' (expected plastic, rnn or lstm)`.
    pub fn check(self, allowed: &[Model]) -> Result<(), String> {
        if allowed.contains(&self) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|m| m.name()).collect();
        let list = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        };
        Err(format!("unknown model '{}' (expected {list})", self.name()))
    }
}

/// What the training pipeline asks of every task's configuration: the checks of its fields and
/// the memory a run of it needs, both before anything is allocated.
pub trait TaskConfig: Clone + Serialize + DeserializeOwned {
    /// Checks every field; the message names the field as written.
    fn validate(&self) -> Result<(), String>;
    /// A lower bound on the memory training needs.
    fn memory_estimate(&self) -> MemoryEstimate;
}

/// [`TaskConfig`] for configurations whose own `validate` and `memory_estimate` say it.
macro_rules! task_configs {
    ($($config:ty),+) => {$(
        impl TaskConfig for $config {
            fn validate(&self) -> Result<(), String> {
                <$config>::validate(self)
            }
            fn memory_estimate(&self) -> MemoryEstimate {
                <$config>::memory_estimate(self)
            }
        }
    )+};
}

task_configs!(
    pattern::PatternConfig,
    images::ImageConfig,
    maze::MazeConfig,
    cue_reward::CueRewardConfig,
    omniglot::OmniglotConfig
);

/// A lower bound on the memory a configuration needs before it allocates anything, in parts,
/// each named by the configuration field that sets it (e.g. `bits = 1000000000 (1000000001
/// neurons)`), so that a configuration far too large for the machine is refused with a message
/// instead of aborting in an allocation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryEstimate {
    /// `(what sets it, bytes)`.
    pub parts: Vec<(String, f64)>,
}

impl MemoryEstimate {
    /// Adds a part.
    pub fn add(&mut self, what: impl Into<String>, bytes: f64) {
        self.parts.push((what.into(), bytes));
    }

    /// Bytes of all parts together.
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|p| p.1).sum()
    }

    /// The largest part: what to name when the total is too much.
    pub fn largest(&self) -> Option<&(String, f64)> {
        self.parts.iter().max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The parts of a fully recurrent plastic (or non-plastic) network of `n` neurons trained
    /// on `batch` episodes of `steps` steps: `w` and `alpha`, their gradients and Adam's two
    /// moments (8 N^2 floats), each episode's trace and its gradient (2 B N^2), the activity
    /// kept for the backward pass (about 4 B T N). `neurons` names the field that sets `n`.
    pub fn add_recurrent(&mut self, neurons: String, n: usize, batch: usize, steps: usize) {
        let (n, b, t) = (n as f64, batch as f64, steps as f64);
        self.add(
            format!(
                "{neurons} with batch = {batch} (w, alpha, their gradients and Adam state, {batch} traces of {n} x {n})"
            ),
            4.0 * (8.0 + 2.0 * b) * n * n,
        );
        self.add(
            format!("steps = {steps} (activity of {batch} episodes x {steps} steps x {n} neurons)"),
            4.0 * 4.0 * b * t * n,
        );
    }

    /// The parts of an LSTM of `cells` cells on `inputs` inputs, `batch` sequences of `steps`:
    /// its weights with their gradients and Adam state (4 x 4 (inputs + cells) cells floats),
    /// and the gates kept for the backward pass (about 8 B T cells).
    pub fn add_lstm(
        &mut self,
        cells_field: String,
        inputs: usize,
        cells: usize,
        batch: usize,
        steps: usize,
    ) {
        let (i, h, b, t) = (inputs as f64, cells as f64, batch as f64, steps as f64);
        self.add(cells_field, 4.0 * 4.0 * 4.0 * (i + h) * h);
        self.add(
            format!("batch = {batch}, steps = {steps} (LSTM gates of {batch} x {steps} x {cells})"),
            4.0 * 8.0 * b * t * h,
        );
    }
}
