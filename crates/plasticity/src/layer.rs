//! [`PlasticNet`]: a fully recurrent network with plastic connections, as a burn module.
//!
//! ```text
//! y_t    = tanh( y_{t-1} (w + alpha * Hebb_t) + x_t )                 ICML 2018, eq. 1
//! Hebb_t+1 = (1 - eta) Hebb_t + eta outer(y_{t-1}, y_t)                eq. 2 (or Oja, eq. 3)
//! ```
//! `w`, `alpha` and `eta` are parameters; `Hebb` lives in [`PlasticState`] and is reset for
//! each episode. A whole episode is one fused operation ([`crate::ops::plastic_episode`]).
//!
//! With [`PlasticNetConfig::modulation`] set, the network controls its own plasticity through a
//! neuromodulator (ICLR 2019 "Backpropamine", section 3; equations in [`Modulation`]): the
//! [`Modulator`] computes `M(t) = tanh(m . y(t) + m_b)` (optionally fanned out to
//! `eta_j = v_j M + b_j`), which replaces `eta` in the Hebbian update (simple) or gates an
//! eligibility trace whose rate is `eta` (retroactive). The episode then runs as
//! [`crate::ops::modulated_episode`].
//!
//! With [`PlasticNetConfig::plastic`] off, the same network is the non-plastic baseline of the
//! papers (`alpha = 0`, not trained): it runs the plain recurrence `y_t = tanh(y_{t-1} w + x_t)`
//! through burn's autodiff, without the `N x N` traces.

use crate::config::{NoOtherFields, PlasticityConfig};
use crate::ops::{modulated_episode, plastic_episode, static_episode, ModulatedTensors};
use crate::tensors::{from_vec, zero_trace};
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use plasticity_kernels::{EpisodeSpec, InputMode, Modulation, SpecError, TraceRule};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Configuration of a [`PlasticNet`]; the defaults are the paper's (ICML 2018 section 4.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlasticNetConfig {
    /// Neurons `N`.
    pub neurons: usize,
    /// `false`: the non-plastic network (`alpha = 0` and `eta` fixed, no trace; the papers'
    /// "same network without plasticity" baseline), run by [`static_episode`] on the engine.
    pub plastic: bool,
    /// Input mode.
    pub input: InputMode,
    /// Neuromodulation of the plasticity (ICLR 2019); `none` by default. With retroactive
    /// modulation, `eta` is the rate of the eligibility trace; simple modulation does not use it.
    /// Modulated networks need `rule: hebb`.
    pub modulation: Modulation,
    /// Trace rule, `alpha`, `eta`, initialisation, clip, backward strategy (flattened: the
    /// fields sit beside `neurons` in JSON).
    #[serde(flatten)]
    pub plasticity: PlasticityConfig,
    /// Refuses unknown fields.
    #[serde(flatten)]
    pub no_other_fields: NoOtherFields,
}

impl Default for PlasticNetConfig {
    fn default() -> Self {
        PlasticNetConfig {
            neurons: 1001,
            plastic: true,
            input: InputMode::Additive,
            modulation: Modulation::None,
            plasticity: PlasticityConfig::default(),
            no_other_fields: NoOtherFields::default(),
        }
    }
}

/// Activity and trace of a batch of episodes.
#[derive(Clone, Debug)]
pub struct PlasticState {
    /// `y: [B, N]`.
    pub y: Tensor<2>,
    /// `hebb: [B, N, N]` (detached: gradients do not cross episodes; `None` for a non-plastic
    /// network, and zeros at the start of an episode).
    pub hebb: Option<Tensor<3>>,
    /// The eligibility trace `E: [B, N, N]` of retroactive modulation (detached; `None`
    /// otherwise, and zeros at the start of an episode).
    pub elig: Option<Tensor<3>>,
}

/// The neuromodulator of a [`PlasticNet`]: `M(t) = tanh(sum_j m_j y_j(t) + m_b)`, and with
/// fan-out `eta_j(t) = v_j M(t) + b_j` (ICLR 2019 section 3).
#[derive(Module, Debug)]
pub struct Modulator {
    /// `m: [N]`, drawn from `U(-1/sqrt(N), 1/sqrt(N))` (a linear layer's initialisation).
    pub m: Param<Tensor<1>>,
    /// `m_b: [1]`, initially 0.
    pub m_bias: Param<Tensor<1>>,
    /// Fan-out weights `v: [N]`, drawn from `U(-1, 1)` (`None` without fan-out).
    pub fan_w: Option<Param<Tensor<1>>>,
    /// Fan-out biases `b: [N]`, initially 0 (`None` without fan-out).
    pub fan_b: Option<Param<Tensor<1>>>,
}

/// A fully recurrent plastic network.
#[derive(Module, Debug)]
pub struct PlasticNet {
    /// Fixed weights `w: [N, N]`.
    pub w: Param<Tensor<2>>,
    /// Plasticity coefficients `alpha: [N, N] | [1, N] | [1, 1]`.
    pub alpha: Param<Tensor<2>>,
    /// Plasticity rate `eta: [1]` (with retroactive modulation: the eligibility trace's rate).
    pub eta: Param<Tensor<1>>,
    /// The neuromodulator (`None` without modulation).
    pub modulator: Option<Modulator>,
    #[module(skip)]
    config: PlasticNetConfig,
}

impl PlasticNetConfig {
    /// Checks the configuration; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.neurons == 0 {
            return Err("neurons: must be positive".into());
        }
        self.plasticity.validate()?;
        if !self.plastic && self.modulation != Modulation::None {
            return Err(format!(
                "modulation: {:?} needs a plastic network (plastic: false)",
                self.modulation
            ));
        }
        if self.modulation != Modulation::None && self.plasticity.rule != TraceRule::Hebb {
            return Err(format!(
                "modulation: {:?} needs rule hebb (the modulator replaces its rate), got {:?}",
                self.modulation, self.plasticity.rule
            ));
        }
        Ok(())
    }

    /// Builds the network, drawing `w` and `alpha` from `rng`. A non-plastic network draws
    /// both too and then sets `alpha` to 0, so that a plastic and a non-plastic network built
    /// from one seed share `w` and the random stream after it.
    pub fn init(&self, rng: &mut impl Rng, device: &Device) -> PlasticNet {
        let n = self.neurons;
        let p = &self.plasticity;
        let mut normal = |len: usize, std: f64| -> Vec<f32> {
            (0..len)
                .map(|_| (std * rng.sample::<f64, _>(StandardNormal)) as f32)
                .collect()
        };
        let w = from_vec(normal(n * n, p.init_std), [n, n], device);
        let alpha_dims = p.alpha.dims(n);
        let alpha_std = p.alpha_init_std.unwrap_or(p.init_std);
        let alpha_drawn = normal(alpha_dims[0] * alpha_dims[1], alpha_std);
        let alpha = if self.plastic {
            Param::from_tensor(from_vec(alpha_drawn, alpha_dims, device))
        } else {
            Param::from_tensor(Tensor::zeros(alpha_dims, device)).set_require_grad(false)
        };
        let eta = Param::from_tensor(from_vec(vec![p.eta as f32], [1], device));
        // Drawn after w and alpha, so unmodulated networks keep their initialisation.
        let modulator = (self.modulation != Modulation::None).then(|| {
            let mut uniform = |len: usize, bound: f64| -> Vec<f32> {
                (0..len)
                    .map(|_| (bound * (rng.gen::<f64>() * 2.0 - 1.0)) as f32)
                    .collect()
            };
            let m = uniform(n, 1.0 / (n as f64).sqrt());
            let fan_w = self.modulation.fan_out().then(|| uniform(n, 1.0));
            let param = |v: Vec<f32>| {
                let len = v.len();
                Param::from_tensor(from_vec(v, [len], device))
            };
            Modulator {
                m: param(m),
                m_bias: param(vec![0.0]),
                fan_w: fan_w.map(param),
                fan_b: self.modulation.fan_out().then(|| param(vec![0.0; n])),
            }
        });
        PlasticNet {
            w: Param::from_tensor(w),
            alpha,
            eta: if p.learn_eta && self.plastic {
                eta
            } else {
                eta.set_require_grad(false)
            },
            modulator,
            config: self.clone(),
        }
    }
}

impl PlasticNet {
    /// The configuration the network was built with.
    pub fn config(&self) -> &PlasticNetConfig {
        &self.config
    }

    /// The kernels' description of an episode of `batch` x `steps` for this network.
    pub fn spec(&self, batch: usize, steps: usize) -> EpisodeSpec {
        let c = &self.config;
        EpisodeSpec {
            neurons: c.neurons,
            batch,
            steps,
            rule: c.plasticity.rule,
            clip: c.plasticity.clip,
            input: c.input,
            alpha: c.plasticity.alpha,
            backward: c.plasticity.backward,
            modulation: c.modulation,
            plastic: c.plastic,
        }
    }

    /// A zero state (`y = 0`, `Hebb = 0`) for `batch` episodes.
    pub fn zero_state(&self, batch: usize, device: &Device) -> PlasticState {
        let (c, n) = (&self.config, self.config.neurons);
        PlasticState {
            y: Tensor::zeros([batch, n], device),
            hebb: zero_trace(c.plastic, [batch, n], device),
            elig: zero_trace(c.modulation.has_eligibility(), [batch, n], device),
        }
    }

    /// Runs `T` steps. `x: [B, T, N]`; returns `ys: [B, T, N]` and the state after the last step.
    /// `state: None` starts from `y = 0`, `Hebb = 0` (without allocating the zero trace).
    pub fn forward(
        &self,
        x: Tensor<3>,
        state: Option<PlasticState>,
    ) -> Result<(Tensor<3>, PlasticState), SpecError> {
        self.forward_with_modulator(x, state)
            .map(|(ys, state, _)| (ys, state))
    }

    /// [`PlasticNet::forward`], also returning the modulator `M(t)` of every step, `[B, T]`
    /// (`None` without modulation), e.g. to plot it.
    pub fn forward_with_modulator(
        &self,
        x: Tensor<3>,
        state: Option<PlasticState>,
    ) -> Result<(Tensor<3>, PlasticState, Option<Tensor<2>>), SpecError> {
        let [b, t, n] = x.dims();
        let (y0, hebb0, elig0) = match state {
            Some(s) => (Some(s.y), s.hebb, s.elig),
            None => (None, None, None),
        };
        if !self.config.plastic {
            let y0 = y0.unwrap_or_else(|| Tensor::zeros([b, n], &x.device()));
            let spec = EpisodeSpec {
                neurons: n,
                ..self.spec(b, t)
            };
            let ys = static_episode(self.w.val(), x, y0, spec)?;
            let y = ys.clone().slice([0..b, t - 1..t, 0..n]).reshape([b, n]);
            let state = PlasticState {
                y,
                hebb: None,
                elig: None,
            };
            return Ok((ys, state, None));
        }
        let y0 = y0.unwrap_or_else(|| Tensor::zeros([b, n], &x.device()));
        let spec = EpisodeSpec {
            neurons: n,
            ..self.spec(b, t)
        };
        if let Some(md) = &self.modulator {
            let fan_out = match (&md.fan_w, &md.fan_b) {
                (Some(v), Some(bias)) => Some((v.val(), bias.val())),
                _ => None,
            };
            let out = modulated_episode(
                ModulatedTensors {
                    w: self.w.val(),
                    alpha: self.alpha.val(),
                    m: md.m.val(),
                    m_bias: md.m_bias.val(),
                    fan_out,
                    eta_e: self.eta.val(),
                },
                x,
                y0,
                hebb0,
                elig0,
                spec,
            )?;
            let y = out.ys.clone().slice([0..b, t - 1..t, 0..n]).reshape([b, n]);
            let state = PlasticState {
                y,
                hebb: Some(out.hebb),
                elig: out.elig,
            };
            return Ok((out.ys, state, Some(out.modulator)));
        }
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
        Ok((
            ys,
            PlasticState {
                y,
                hebb: Some(hebb),
                elig: None,
            },
            None,
        ))
    }
}
