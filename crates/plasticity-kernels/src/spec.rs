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

impl TraceRule {
    /// Every rule, in declaration order.
    pub const ALL: [TraceRule; 2] = [TraceRule::Hebb, TraceRule::Oja];
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

impl InputMode {
    /// Every input mode, in declaration order.
    pub const ALL: [InputMode; 2] = [InputMode::Additive, InputMode::Clamped];
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
    /// Every shape, in declaration order.
    pub const ALL: [AlphaShape; 3] = [
        AlphaShape::PerConnection,
        AlphaShape::PerNeuron,
        AlphaShape::Scalar,
    ];

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

/// Neuromodulation of plasticity (Miconi, Rawal, Clune & Stanley, "Backpropamine", ICLR 2019,
/// arXiv 2002.10585, section 3). The network computes its own plasticity rate at every step
/// from its new activity `y(t)`, with one modulator per episode and step:
///
/// ```text
/// y(t)       = tanh( y(t-1) (w + alpha * Hebb(t)) + x(t) )                  eq. 1
/// M(t)       = tanh( sum_j m_j y_j(t) + m_b )                               the modulator
/// eta_j(t)   = M(t)                  (fan_out: false)
/// eta_j(t)   = v_j M(t) + b_j        (fan_out: true, one rate per postsynaptic neuron)
/// ```
///
/// then, for [`Modulation::Simple`] (section 3.1, eq. 3, `M(t)` in place of eq. 2's `eta`):
///
/// ```text
/// Hebb_ij(t+1) = clip( Hebb_ij(t) + eta_j(t) y_i(t-1) y_j(t), -c, c )
/// ```
///
/// and for [`Modulation::Retroactive`] (section 3.2, eq. 4-5), an eligibility trace `E` of past
/// coincidences that the modulator turns into plastic change; eq. 4 uses `E(t)`, the trace
/// *before* this step's coincidence is added (eq. 5), so a coincidence reaches `Hebb` one step
/// later, through the next steps' modulator:
///
/// ```text
/// Hebb_ij(t+1) = clip( Hebb_ij(t) + eta_j(t) E_ij(t), -c, c )                eq. 4
/// E_ij(t+1)    = (1 - eta_E) E_ij(t) + eta_E y_i(t-1) y_j(t)                 eq. 5
/// ```
///
/// `m: [N]`, `m_b`, `v, b: [N]` and `eta_E` are learned with `w` and `alpha`; the kernels are in
/// [`crate::trace::Modulated`] (engine: [`crate::rnn`]), the readable step in [`crate::reference::modulated_step`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Modulation {
    /// No modulation: the fixed rate `eta` of [`TraceRule`] (ICML 2018).
    #[default]
    None,
    /// Simple neuromodulation (ICLR 2019 eq. 3): `M(t)` is the rate of the Hebbian update.
    Simple {
        /// One rate per postsynaptic neuron `eta_j = v_j M + b_j` instead of `M` itself.
        #[serde(default)]
        fan_out: bool,
    },
    /// Retroactive neuromodulation (ICLR 2019 eq. 4-5): `M(t)` gates an eligibility trace.
    Retroactive {
        /// One rate per postsynaptic neuron `eta_j = v_j M + b_j` instead of `M` itself.
        #[serde(default)]
        fan_out: bool,
    },
}

impl Modulation {
    /// Whether the modulator fans out to one rate per postsynaptic neuron.
    pub fn fan_out(self) -> bool {
        match self {
            Modulation::None => false,
            Modulation::Simple { fan_out } | Modulation::Retroactive { fan_out } => fan_out,
        }
    }

    /// Whether the episode keeps an eligibility trace `E`.
    pub fn has_eligibility(self) -> bool {
        matches!(self, Modulation::Retroactive { .. })
    }
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
    /// Neuromodulation ([`Modulation::None`]: the ICML 2018 network, run with
    /// [`crate::Params`]; otherwise with [`crate::ModulatedParams`]).
    pub modulation: Modulation,
    /// `false`: the same network without plasticity (the papers' baseline; `alpha = 0`, no
    /// trace): `y_t = tanh(y_{t-1} w + x_t)`, run with [`crate::Params`] whose `alpha` is empty
    /// ([`crate::trace::NoTrace`]); the rule, clip, alpha shape and backward strategy are unused.
    pub plastic: bool,
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
    /// per-connection `alpha`, automatic backward, no modulation.
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
            modulation: Modulation::None,
            plastic: true,
        }
    }

    /// This spec with every fixed-rate rule x input mode x alpha shape, unclipped and clipped at
    /// `clip` (24 specs): the grid the device checks compare with the CPU.
    pub fn fixed_rate_grid(self, clip: f64) -> Vec<EpisodeSpec> {
        let mut specs = Vec::new();
        for rule in TraceRule::ALL {
            for input in InputMode::ALL {
                for alpha in AlphaShape::ALL {
                    for clip in [None, Some(clip)] {
                        specs.push(EpisodeSpec {
                            rule,
                            input,
                            alpha,
                            clip,
                            ..self
                        });
                    }
                }
            }
        }
        specs
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
