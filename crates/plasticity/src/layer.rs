//! [`PlasticNet`]: a fully recurrent network with plastic connections, as a burn module.
//!
//! ```text
//! y_t    = tanh( y_{t-1} (w + alpha * Hebb_t) + x_t )                 ICML 2018, eq. 1
//! Hebb_t+1 = (1 - eta) Hebb_t + eta outer(y_{t-1}, y_t)                eq. 2 (or Oja, eq. 3)
//! ```
//! `w`, `alpha` and `eta` are parameters; `Hebb` lives in [`PlasticState`] and is reset for
//! each episode. A whole episode is one fused operation ([`crate::op::plastic_episode`]).

use crate::op::plastic_episode;
use crate::tensors::from_vec;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use plasticity_kernels::{
    AlphaShape, BackwardStrategy, EpisodeSpec, InputMode, SpecError, TraceRule,
};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Configuration of a [`PlasticNet`]; the defaults are the paper's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlasticNetConfig {
    /// Neurons `N`.
    pub neurons: usize,
    /// Trace rule.
    pub rule: TraceRule,
    /// Clip the trace to `[-clip, clip]` (`None`: no clipping).
    pub clip: Option<f64>,
    /// Input mode.
    pub input: InputMode,
    /// Shape of `alpha`.
    pub alpha: AlphaShape,
    /// Initial plasticity rate `eta`.
    pub eta: f64,
    /// Whether `eta` is learned (otherwise fixed).
    pub learn_eta: bool,
    /// `w` and `alpha` start as `init_std * N(0, 1)`.
    pub init_std: f64,
    /// How the backward recovers the traces.
    pub backward: BackwardStrategy,
}

impl Default for PlasticNetConfig {
    fn default() -> Self {
        PlasticNetConfig {
            neurons: 1001,
            rule: TraceRule::Hebb,
            clip: None,
            input: InputMode::Additive,
            alpha: AlphaShape::PerConnection,
            eta: 0.01,
            learn_eta: true,
            init_std: 0.01,
            backward: BackwardStrategy::Auto,
        }
    }
}

/// Activity and trace of a batch of episodes.
#[derive(Clone, Debug)]
pub struct PlasticState {
    /// `y: [B, N]`.
    pub y: Tensor<2>,
    /// `hebb: [B, N, N]` (detached: gradients do not cross episodes).
    pub hebb: Tensor<3>,
}

/// A fully recurrent plastic network.
#[derive(Module, Debug)]
pub struct PlasticNet {
    /// Fixed weights `w: [N, N]`.
    pub w: Param<Tensor<2>>,
    /// Plasticity coefficients `alpha: [N, N] | [1, N] | [1, 1]`.
    pub alpha: Param<Tensor<2>>,
    /// Plasticity rate `eta: [1]`.
    pub eta: Param<Tensor<1>>,
    #[module(skip)]
    config: PlasticNetConfig,
}

impl PlasticNetConfig {
    /// Checks the configuration; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.neurons == 0 {
            return Err("neurons: must be positive".into());
        }
        if !(self.eta.is_finite()) {
            return Err(format!("eta: must be finite (got {})", self.eta));
        }
        if !(self.init_std.is_finite() && self.init_std >= 0.0) {
            return Err(format!(
                "init_std: must be finite and >= 0 (got {})",
                self.init_std
            ));
        }
        if let Some(c) = self.clip {
            if !(c.is_finite() && c > 0.0) {
                return Err(format!("clip: must be positive (got {c})"));
            }
        }
        Ok(())
    }

    /// Builds the network, drawing `w` and `alpha` from `rng`.
    pub fn init(&self, rng: &mut impl Rng, device: &Device) -> PlasticNet {
        let n = self.neurons;
        let mut normal = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| (self.init_std * rng.sample::<f64, _>(StandardNormal)) as f32)
                .collect()
        };
        let w = from_vec(normal(n * n), [n, n], device);
        let alpha_dims = self.alpha.dims(n);
        let alpha = from_vec(normal(alpha_dims[0] * alpha_dims[1]), alpha_dims, device);
        let eta = Param::from_tensor(from_vec(vec![self.eta as f32], [1], device));
        PlasticNet {
            w: Param::from_tensor(w),
            alpha: Param::from_tensor(alpha),
            eta: if self.learn_eta {
                eta
            } else {
                eta.set_require_grad(false)
            },
            config: self.clone(),
        }
    }
}

impl PlasticNet {
    /// The configuration the network was built with.
    pub fn config(&self) -> &PlasticNetConfig {
        &self.config
    }

    /// A zero state (`y = 0`, `Hebb = 0`) for `batch` episodes.
    pub fn zero_state(&self, batch: usize, device: &Device) -> PlasticState {
        let n = self.config.neurons;
        PlasticState {
            y: Tensor::zeros([batch, n], device),
            hebb: Tensor::zeros([batch, n, n], device),
        }
    }

    /// Runs `T` steps. `x: [B, T, N]`; returns `ys: [B, T, N]` and the state after the last step.
    /// `state: None` starts from `y = 0`, `Hebb = 0` (without allocating the zero trace).
    pub fn forward(
        &self,
        x: Tensor<3>,
        state: Option<PlasticState>,
    ) -> Result<(Tensor<3>, PlasticState), SpecError> {
        let [b, t, n] = x.dims();
        let (y0, hebb0) = match state {
            Some(s) => (s.y, Some(s.hebb)),
            None => (Tensor::zeros([b, n], &x.device()), None),
        };
        let c = &self.config;
        let spec = EpisodeSpec {
            neurons: n,
            batch: b,
            steps: t,
            rule: c.rule,
            clip: c.clip,
            input: c.input,
            alpha: c.alpha,
            backward: c.backward,
            modulation: plasticity_kernels::Modulation::None,
        };
        let (ys, hebb) = plastic_episode(
            self.w.val(),
            self.alpha.val(),
            self.eta.val(),
            x,
            y0,
            hebb0,
            spec,
        )?;
        let y = ys.clone().slice([0..b, t - 1..t, 0..n]).reshape([b, n]);
        Ok((ys, PlasticState { y, hebb }))
    }
}
