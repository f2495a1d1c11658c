//! [`PlasticLstm`]: an LSTM layer whose recurrent input to the cell candidate is plastic, and
//! optionally neuromodulated (Miconi et al., ICLR 2019 "Backpropamine", section 4.3).
//!
//! ```text
//! xp      = x W_x + b                                      one matmul for all T steps
//! i, f, o = sigmoid(xp + h W_h)                             the usual gates
//! g       = tanh(xp_g + sum_i h_i (w_ij + alpha_ij Hebb_ij)) the plastic candidate
//! c'      = f c + i g,   h' = o tanh(c')
//! ```
//!
//! and the trace follows one of [`Plasticity`] (equations in [`plasticity_kernels::lstm`]).
//! The recurrence of all `T` steps is one fused operation ([`crate::ops::plastic_lstm`]) that
//! never stores `T` copies of the trace. The state ([`LstmState`]) is returned detached, so that
//! truncated backpropagation through time carries it to the next segment without a gradient.

pub use crate::ops::LstmState;
use crate::ops::{plastic_lstm, LstmTensors};
use crate::tensors::{from_vec, zero_trace};
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use plasticity_kernels::{AlphaShape, LstmPlasticity, LstmSpec, SpecError};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which plasticity a [`PlasticLstm`] has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Plasticity {
    /// A standard LSTM.
    None,
    /// Plastic candidate, decaying Hebbian trace with a learned rate `eta`:
    /// `Hebb' = clip((1 - eta) Hebb + eta outer(h, g))`.
    Plastic,
    /// Plastic candidate whose trace changes at rates set by a neuromodulator of the new hidden
    /// state, fanned out per neuron: `M = tanh(m . h' + m_b)`, `eta_j = v_j M + b_j`.
    Modulated {
        /// Retroactive modulation: `M` gates an eligibility trace instead of the Hebbian
        /// increment itself.
        #[serde(default)]
        retroactive: bool,
    },
}

impl Plasticity {
    /// The kernels' kind.
    pub fn kernel(self) -> LstmPlasticity {
        match self {
            Plasticity::None => LstmPlasticity::None,
            Plasticity::Plastic => LstmPlasticity::Hebb,
            Plasticity::Modulated { retroactive: false } => LstmPlasticity::Simple,
            Plasticity::Modulated { retroactive: true } => LstmPlasticity::Retroactive,
        }
    }

    /// Parameters a layer of `hidden` units has beyond a standard LSTM's (`alpha`, `eta`, the
    /// modulator).
    pub fn extra_params(self, hidden: usize, alpha: AlphaShape) -> usize {
        let k = self.kernel();
        let mut n = 0;
        if k.is_plastic() {
            n += alpha.len(hidden);
        }
        if k == LstmPlasticity::Hebb {
            n += 1;
        }
        if k.is_modulated() {
            n += 3 * hidden + 1;
        }
        if k.has_eligibility() {
            n += 1;
        }
        n
    }
}

/// Configuration of a [`PlasticLstm`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlasticLstmConfig {
    /// Input size `D`.
    pub input: usize,
    /// Hidden units `H`.
    pub hidden: usize,
    /// Kind of plasticity.
    pub plasticity: Plasticity,
    /// Shape of `alpha` (the paper's LSTM: one per neuron).
    #[serde(default = "default_alpha")]
    pub alpha: AlphaShape,
    /// The trace is clipped to `[-clip, clip]` (the paper: 2).
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// Initial `eta` of [`Plasticity::Plastic`] and `eta_E` of retroactive modulation.
    #[serde(default = "default_eta")]
    pub eta: f64,
}

fn default_alpha() -> AlphaShape {
    AlphaShape::PerNeuron
}
fn default_clip() -> f64 {
    2.0
}
fn default_eta() -> f64 {
    0.1
}

/// An LSTM layer with a plastic (optionally neuromodulated) cell candidate.
#[derive(Module, Debug)]
pub struct PlasticLstm {
    /// Input projection `x W_x + b`, `[D] -> [4H]` (gate blocks `i, f, o, g`).
    pub input: Linear,
    /// Recurrent weights `W_h: [H, 4H]`; the `g` block is the fixed part `w` of the plastic
    /// weights.
    pub w_h: Param<Tensor<2>>,
    /// Plasticity coefficients `alpha: [H, H] | [1, H] | [1, 1]` (plastic layers).
    pub alpha: Option<Param<Tensor<2>>>,
    /// Trace rate `eta: [1]` ([`Plasticity::Plastic`]).
    pub eta: Option<Param<Tensor<1>>>,
    /// Modulator weights `m: [H]` (modulated layers).
    pub m: Option<Param<Tensor<1>>>,
    /// Modulator bias `m_b: [1]`.
    pub m_bias: Option<Param<Tensor<1>>>,
    /// Fan-out weights `v: [H]`.
    pub fan_w: Option<Param<Tensor<1>>>,
    /// Fan-out biases `b: [H]`.
    pub fan_b: Option<Param<Tensor<1>>>,
    /// Eligibility-trace rate `eta_E: [1]` (retroactive modulation).
    pub eta_e: Option<Param<Tensor<1>>>,
    #[module(skip)]
    config: PlasticLstmConfig,
}

impl PlasticLstmConfig {
    /// A configuration with the paper's defaults (per-neuron `alpha`, clip 2).
    pub fn new(input: usize, hidden: usize, plasticity: Plasticity) -> Self {
        PlasticLstmConfig {
            input,
            hidden,
            plasticity,
            alpha: default_alpha(),
            clip: default_clip(),
            eta: default_eta(),
        }
    }

    /// Checks the configuration; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.input == 0 || self.hidden == 0 {
            return Err(format!(
                "input, hidden: must be positive (got {}, {})",
                self.input, self.hidden
            ));
        }
        crate::check::positive("clip", self.clip)?;
        if !self.eta.is_finite() {
            return Err(format!("eta: must be finite (got {})", self.eta));
        }
        Ok(())
    }

    /// Parameters of the layer: `4H (D + H + 1)` plus [`Plasticity::extra_params`].
    pub fn num_params(&self) -> usize {
        let h = self.hidden;
        4 * h * (self.input + h + 1) + self.plasticity.extra_params(h, self.alpha)
    }

    /// Builds the layer. Every weight (`W_x`, `b`, `W_h`, `alpha`, `m`) is drawn from
    /// `U(-1/sqrt(H), 1/sqrt(H))`, the usual LSTM initialisation; `v` from `U(-1, 1)` as for the
    /// modulated recurrent network; `m_b = b = 0`; `eta` and `eta_E` start at `eta`.
    pub fn init(&self, rng: &mut impl Rng, device: &Device) -> PlasticLstm {
        let (d, h) = (self.input, self.hidden);
        let bound = 1.0 / (h as f64).sqrt();
        let mut uniform = |len: usize, bound: f64| -> Vec<f32> {
            (0..len)
                .map(|_| (bound * (rng.gen::<f64>() * 2.0 - 1.0)) as f32)
                .collect()
        };
        let mut input = LinearConfig::new(d, 4 * h).init(device);
        input.weight = Param::from_tensor(from_vec(uniform(d * 4 * h, bound), [d, 4 * h], device));
        input.bias = Some(Param::from_tensor(from_vec(
            uniform(4 * h, bound),
            [4 * h],
            device,
        )));
        let w_h = Param::from_tensor(from_vec(uniform(4 * h * h, bound), [h, 4 * h], device));
        let k = self.plasticity.kernel();
        let alpha = k.is_plastic().then(|| {
            let dims = self.alpha.dims(h);
            Param::from_tensor(from_vec(uniform(dims[0] * dims[1], bound), dims, device))
        });
        let param1 = |v: Vec<f32>| {
            let len = v.len();
            Param::from_tensor(from_vec(v, [len], device))
        };
        let modulated = k.is_modulated();
        let m = modulated.then(|| param1(uniform(h, bound)));
        let fan_w = modulated.then(|| param1(uniform(h, 1.0)));
        PlasticLstm {
            input,
            w_h,
            alpha,
            eta: (k == LstmPlasticity::Hebb).then(|| param1(vec![self.eta as f32])),
            m,
            m_bias: modulated.then(|| param1(vec![0.0])),
            fan_w,
            fan_b: modulated.then(|| param1(vec![0.0; h])),
            eta_e: k.has_eligibility().then(|| param1(vec![self.eta as f32])),
            config: self.clone(),
        }
    }
}

impl PlasticLstm {
    /// The configuration the layer was built with.
    pub fn config(&self) -> &PlasticLstmConfig {
        &self.config
    }

    /// A zero state for `batch` sequences.
    pub fn zero_state(&self, batch: usize, device: &Device) -> LstmState {
        let h = self.config.hidden;
        let k = self.config.plasticity.kernel();
        LstmState {
            h: Tensor::zeros([batch, h], device),
            c: Tensor::zeros([batch, h], device),
            hebb: zero_trace(k.is_plastic(), [batch, h], device),
            elig: zero_trace(k.has_eligibility(), [batch, h], device),
        }
    }

    /// Runs `T` steps. `xs: [B, T, D]`; returns `hs: [B, T, H]` and the (detached) state after
    /// the last step. `state: None` starts from zeros (without allocating the zero traces).
    pub fn forward(
        &self,
        xs: Tensor<3>,
        state: Option<LstmState>,
    ) -> Result<(Tensor<3>, LstmState), SpecError> {
        let [b, t, d] = xs.dims();
        let c = &self.config;
        if d != c.input {
            return Err(SpecError(format!(
                "input: expected {} features, got {d}",
                c.input
            )));
        }
        let h = c.hidden;
        let device = xs.device();
        let state = state.unwrap_or_else(|| LstmState {
            h: Tensor::zeros([b, h], &device),
            c: Tensor::zeros([b, h], &device),
            hebb: None,
            elig: None,
        });
        let spec = LstmSpec {
            alpha: c.alpha,
            clip: c.clip,
            ..LstmSpec::new(h, b, t, c.plasticity.kernel())
        };
        let xproj = self.input.forward(xs);
        let modulator = match (&self.m, &self.m_bias, &self.fan_w, &self.fan_b) {
            (Some(m), Some(mb), Some(v), Some(fb)) => Some((m.val(), mb.val(), v.val(), fb.val())),
            _ => None,
        };
        let out = plastic_lstm(
            LstmTensors {
                w_h: self.w_h.val(),
                alpha: self.alpha.as_ref().map(Param::val),
                eta: self.eta.as_ref().map(Param::val),
                modulator,
                eta_e: self.eta_e.as_ref().map(Param::val),
            },
            xproj,
            state,
            spec,
        )?;
        Ok((out.hs, out.state))
    }
}
