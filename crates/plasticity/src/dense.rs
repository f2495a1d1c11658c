//! [`PlasticDense`]: a feed-forward layer with plastic connections (ICML 2018, section 4.3,
//! the output layer of the Omniglot network).
//!
//! ```text
//! y_j(t)        = f( sum_i (w_ij + alpha_ij Hebb_ij(t)) x_i(t) + c_j(t) )      eq. 1, feed-forward
//! Hebb_ij(t+1)  = Hebb_ij(t) + eta y_j(t) (x_i(t) - Hebb_ij(t) y_j(t))         Oja's rule, eq. 3
//! Hebb_ij(t+1)  = (1 - eta) Hebb_ij(t) + eta x_i(t) y_j(t)                     decaying Hebb, eq. 2
//! Hebb_ij(0)    = 0
//! ```
//!
//! `x(t)` is the layer's input at step `t` (for Omniglot the 64 convolutional features), `c(t)`
//! an optional additive term on the logits (Omniglot: the support step's one-hot label times
//! 1000, which clamps the output to the label), and `f` the output activation. The trace takes
//! the *activated* output `y`: with a softmax output and the label clamp, `y` is the one-hot
//! label at support steps, so `Hebb` accumulates feature-label associations (section 4.3: the
//! plastic weights from the features to the output are updated with Oja's rule, the output
//! being the softmax). `w` and `alpha` are per connection, `eta` is one learned scalar.
//!
//! Implementation: one op ([`crate::ops::plastic_dense`]) over the engine's passes
//! (`plasticity_kernels::dense`: the trace rules, plastic product and row passes of the plastic
//! RNN, with the layer's input as presynaptic activity); the activation of the returned logits
//! is a burn operation. Tested by a finite-difference gradient check and golden values
//! (`tests/omniglot.rs`) and, in the kernels crate, against the equations.

use crate::ops::plastic_dense;
use crate::tensors::from_vec;
use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use plasticity_kernels::dense::DenseSpec;
use plasticity_kernels::TraceRule;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Output activation `f` of a [`PlasticDense`] layer.
pub use plasticity_kernels::dense::DenseActivation;

/// Configuration of a [`PlasticDense`] layer; the defaults are the Omniglot experiment's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlasticDenseConfig {
    /// Inputs `I`.
    pub inputs: usize,
    /// Outputs `O`.
    pub outputs: usize,
    /// Trace rule.
    pub rule: TraceRule,
    /// Output activation.
    pub activation: DenseActivation,
    /// Initial plasticity rate `eta`.
    pub eta: f64,
    /// Whether `eta` is learned.
    pub learn_eta: bool,
    /// `w` starts as `init_std * N(0, 1)`, `alpha` as `alpha_mean + init_std * N(0, 1)`.
    pub init_std: f64,
    /// Mean of the initial `alpha` (0: centred on zero).
    pub alpha_mean: f64,
}

impl Default for PlasticDenseConfig {
    fn default() -> Self {
        PlasticDenseConfig {
            inputs: 64,
            outputs: 5,
            rule: TraceRule::Oja,
            activation: DenseActivation::Softmax,
            eta: 0.01,
            learn_eta: true,
            init_std: 0.01,
            alpha_mean: 0.0,
        }
    }
}

impl PlasticDenseConfig {
    /// Checks the configuration; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.inputs == 0 || self.outputs == 0 {
            return Err("inputs, outputs: must be positive".into());
        }
        if !self.eta.is_finite() {
            return Err(format!("eta: must be finite (got {})", self.eta));
        }
        if !self.alpha_mean.is_finite() {
            return Err(format!(
                "alpha_mean: must be finite (got {})",
                self.alpha_mean
            ));
        }
        if !(self.init_std.is_finite() && self.init_std >= 0.0) {
            return Err(format!(
                "init_std: must be finite and >= 0 (got {})",
                self.init_std
            ));
        }
        Ok(())
    }

    /// Builds the layer, drawing `w` then `alpha` from `rng`.
    pub fn init(&self, rng: &mut impl Rng, device: &Device) -> PlasticDense {
        let (i, o) = (self.inputs, self.outputs);
        let mut normal = || -> Vec<f32> {
            (0..i * o)
                .map(|_| (self.init_std * rng.sample::<f64, _>(StandardNormal)) as f32)
                .collect()
        };
        let w = normal();
        let alpha = normal()
            .into_iter()
            .map(|a| a + self.alpha_mean as f32)
            .collect();
        self.from_values(w, alpha, self.eta as f32, device)
    }

    /// Builds the layer from given values: `w, alpha: [I, O]` row-major.
    pub fn from_values(
        &self,
        w: Vec<f32>,
        alpha: Vec<f32>,
        eta: f32,
        device: &Device,
    ) -> PlasticDense {
        let (i, o) = (self.inputs, self.outputs);
        let eta = Param::from_tensor(from_vec(vec![eta], [1], device));
        PlasticDense {
            w: Param::from_tensor(from_vec(w, [i, o], device)),
            alpha: Param::from_tensor(from_vec(alpha, [i, o], device)),
            eta: if self.learn_eta {
                eta
            } else {
                eta.set_require_grad(false)
            },
            config: self.clone(),
        }
    }
}

/// A feed-forward layer with plastic connections; see the module documentation.
#[derive(Module, Debug)]
pub struct PlasticDense {
    /// Fixed weights `w: [I, O]` (row `i` = input).
    pub w: Param<Tensor<2>>,
    /// Plasticity coefficients `alpha: [I, O]`.
    pub alpha: Param<Tensor<2>>,
    /// Plasticity rate `eta: [1]`.
    pub eta: Param<Tensor<1>>,
    #[module(skip)]
    config: PlasticDenseConfig,
}

impl PlasticDense {
    /// The configuration the layer was built with.
    pub fn config(&self) -> &PlasticDenseConfig {
        &self.config
    }

    /// Runs `T` steps from a zero trace. `x: [B, T, I]`, `logit_offset: [B, T, O]` (added
    /// to the logits before the activation; `None`: zero). Returns `y: [B, T, O]`.
    pub fn forward(&self, x: Tensor<3>, logit_offset: Option<Tensor<3>>) -> Tensor<3> {
        self.forward_outputs(x, logit_offset, self.config.outputs)
    }

    /// As [`Self::forward`], using only the first `outputs` output neurons (a layer trained
    /// with 20 outputs can run 5-way episodes). `logit_offset: [B, T, outputs]`.
    ///
    /// # Panics
    /// If `outputs` exceeds the layer's outputs or `x`'s last dimension is not `I`.
    pub fn forward_outputs(
        &self,
        x: Tensor<3>,
        logit_offset: Option<Tensor<3>>,
        outputs: usize,
    ) -> Tensor<3> {
        self.forward_with_logits(x, logit_offset, outputs).0
    }

    /// As [`Self::forward_outputs`], also returning the logits (before the activation, offset
    /// included): `(y, logits)`, both `[B, T, outputs]`. A loss on the logits avoids taking the
    /// log of a saturated softmax.
    ///
    /// # Panics
    /// As [`Self::forward_outputs`].
    pub fn forward_with_logits(
        &self,
        x: Tensor<3>,
        logit_offset: Option<Tensor<3>>,
        outputs: usize,
    ) -> (Tensor<3>, Tensor<3>) {
        let [b, t, i] = x.dims();
        assert_eq!(i, self.config.inputs, "PlasticDense: input width");
        assert!(outputs <= self.config.outputs, "PlasticDense: outputs");
        let o = outputs;
        let spec = DenseSpec {
            inputs: i,
            outputs: o,
            batch: b,
            steps: t,
            rule: self.config.rule,
            activation: self.config.activation,
        };
        let w = self.w.val().slice([0..i, 0..o]);
        let alpha = self.alpha.val().slice([0..i, 0..o]);
        let logits = plastic_dense(x, logit_offset, w, alpha, self.eta.val(), spec)
            .unwrap_or_else(|e| panic!("PlasticDense: {e}"));
        let y = match self.config.activation {
            DenseActivation::Softmax => softmax(logits.clone(), 2),
            DenseActivation::Tanh => logits.clone().tanh(),
            DenseActivation::Identity => logits.clone(),
        };
        (y, logits)
    }
}
