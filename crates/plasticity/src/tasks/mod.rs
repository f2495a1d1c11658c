//! The papers' experiments, each a configuration with the paper's defaults, an episode
//! generator, a metric and its models, plugged into [`crate::train`].

pub mod a2c;
pub mod cue_reward;
pub mod images;
pub mod lm;
pub mod maze;
pub mod omniglot;
pub mod pattern;
pub mod synthetic;

use serde::{Deserialize, Serialize};

/// Which network learns the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Plastic recurrent network (one neuron per input value, plus a bias neuron).
    Plastic,
    /// Non-plastic recurrent network.
    Rnn,
    /// LSTM with a linear read-out.
    Lstm,
}

impl std::str::FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plastic" => Ok(ModelKind::Plastic),
            "rnn" => Ok(ModelKind::Rnn),
            "lstm" => Ok(ModelKind::Lstm),
            _ => Err(format!(
                "unknown model '{s}' (expected plastic, rnn or lstm)"
            )),
        }
    }
}
