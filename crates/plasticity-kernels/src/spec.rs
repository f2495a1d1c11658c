//! What an episode computes: sizes, trace rule, input mode, shape of `alpha`, backward strategy.

use core::fmt;
use serde::{Deserialize, Serialize};

/// How the Hebbian trace changes after each step (ICML 2018, eq. 2 and 3).
///
/// `y` is the presynaptic activity (previous step), `y'` the new activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceRule {
    /// Decaying Hebb: `Hebb_ij <- (1 - eta) Hebb_ij + eta y_i y'_j` (eq. 2).
    Hebb,
    /// Oja's rule: `Hebb_ij <- Hebb_ij + eta y'_j (y_i - Hebb_ij y'_j)` (eq. 3).
    Oja,
}

/// How the external input enters the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputMode {
    /// `y'_j = tanh(sum_i (w_ij + alpha_ij Hebb_ij) y_i + x_j)`; the caller scales `x`.
    Additive,
    /// A neuron whose input is non-zero outputs exactly its input (`y'_j = x_j`); the others
    /// follow the additive step with zero input (ICML 2018 section 4.2, images).
    Clamped,
}

/// Shape of the plasticity coefficients `alpha`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlphaShape {
    /// One coefficient per connection, `alpha: [N, N]` (the paper's default).
    PerConnection,
    /// One coefficient per postsynaptic neuron, `alpha: [N]` (`alpha_ij = alpha_j`).
    PerNeuron,
    /// One coefficient for the whole network, `alpha: [1]`.
    Scalar,
}

impl AlphaShape {
    /// Shape of `alpha` for `n` neurons: `[N, N]`, `[1, N]` or `[1, 1]`.
    pub fn dims(self, n: usize) -> [usize; 2] {
        match self {
            AlphaShape::PerConnection => [n, n],
            AlphaShape::PerNeuron => [1, n],
            AlphaShape::Scalar => [1, 1],
        }
    }

    /// Number of values `alpha` holds for `n` neurons.
    pub fn len(self, n: usize) -> usize {
        let [rows, cols] = self.dims(n);
        rows * cols
    }
}

/// How the backward pass recovers `Hebb_t` for each step without storing all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackwardStrategy {
    /// Reverse the trace when the rule is invertible and well conditioned (no clipping,
    /// `(1 - eta)^T` not too small), verify the reversal, and fall back to checkpointing.
    Auto,
    /// Always recompute from checkpoints: `Hebb` is stored every `segment` steps
    /// (`0`: `ceil(sqrt(T))`), and each segment's traces are recomputed in the backward.
    Checkpoint {
        /// Steps between stored traces; `0` picks `ceil(sqrt(T))`.
        segment: usize,
    },
    /// Store every trace (`T` copies of `Hebb`): the memory-hungry reference.
    StoreAll,
}

/// The static description of a plastic episode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpisodeSpec {
    /// Neurons `N`.
    pub neurons: usize,
    /// Independent episodes run together, `B`.
    pub batch: usize,
    /// Steps `T`.
    pub steps: usize,
    /// Trace rule.
    pub rule: TraceRule,
    /// Clip the trace to `[-c, c]` after each update.
    pub clip: Option<f64>,
    /// Input mode.
    pub input: InputMode,
    /// Shape of `alpha`.
    pub alpha: AlphaShape,
    /// Backward strategy.
    pub backward: BackwardStrategy,
}

/// A shape or value that does not fit the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

impl EpisodeSpec {
    /// A spec with the paper's defaults: decaying Hebb, no clipping, additive input,
    /// per-connection `alpha`, automatic backward.
    pub fn new(neurons: usize, batch: usize, steps: usize) -> Self {
        EpisodeSpec {
            neurons,
            batch,
            steps,
            rule: TraceRule::Hebb,
            clip: None,
            input: InputMode::Additive,
            alpha: AlphaShape::PerConnection,
            backward: BackwardStrategy::Auto,
        }
    }

    /// Checks the sizes and the clip value.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.neurons == 0 || self.batch == 0 || self.steps == 0 {
            return Err(SpecError(format!(
                "neurons, batch and steps must be positive (got N={}, B={}, T={})",
                self.neurons, self.batch, self.steps
            )));
        }
        if let Some(c) = self.clip {
            if !(c > 0.0 && c.is_finite()) {
                return Err(SpecError(format!(
                    "clip must be positive and finite (got {c})"
                )));
            }
        }
        Ok(())
    }

    /// Checks that a buffer has the expected number of values.
    pub(crate) fn check_len(&self, what: &str, got: usize, want: usize) -> Result<(), SpecError> {
        if got == want {
            Ok(())
        } else {
            Err(SpecError(format!(
                "{what}: expected {want} values, got {got} (N={}, B={}, T={})",
                self.neurons, self.batch, self.steps
            )))
        }
    }
}
