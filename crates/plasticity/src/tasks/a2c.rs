//! Advantage actor-critic (A2C) for recurrent agents with plastic or neuromodulated connections:
//! the engine that the reinforcement-learning tasks ([`super::maze`], [`super::cue_reward`])
//! plug into through [`Environment`] and [`A2cTask`].
//!
//! # Agent
//! `x(t) = W_in obs(t) + b_in` drives a recurrent network of `N` neurons ([`PlasticNet`]:
//! non-plastic, plastic, or neuromodulated, [`Model`]); linear heads read the policy
//! (softmax over the actions) and the value from `y(t)`.
//!
//! # Loss (ICLR 2019, section 4.2)
//! Per episode `b`: returns `R_t = r_t + gamma R_{t+1}`;
//! `sum_t [ -log pi(a_t) (R_t - V_t) + value_weight (R_t - V_t)^2 + prob_penalty sum_a pi(a)^2 ]`
//! with `R_t - V_t` detached in the policy term (each episode's own value is its baseline),
//! averaged over the batch; Adam and global gradient-norm clipping.
//!
//! # How an update runs
//! The batch is first rolled out without gradients, step by step, on plain buffers with the
//! fused kernels' in-place stepper (the action sampled at step `t` is part of the observation
//! at `t+1`), or the CUDA engine's device stepper when `--device cuda` selected one (the
//! parameters go to the GPU once per rollout, the traces stay there; each step copies `x` in
//! and `y`, `M` out); then the recorded observations are replayed through the fused episode
//! operation in one call, which gives the same activities, for the gradient.

use crate::check::fields;
use crate::config::{NoOtherFields, PlasticityConfig};
use crate::layer::{PlasticNet, PlasticNetConfig};
use crate::tensors::{from_vec, to_vec};
use crate::train::Experiment;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::AdamConfig;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor};
use plasticity_kernels::{self as kernels, ModulatedParams, Modulation, Params, TraceRule};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A task an agent acts in: `B` independent episodes of [`Environment::steps`] steps.
pub trait Environment {
    /// The state of one episode.
    type Episode: Clone;
    /// Values in an observation.
    fn observation_size(&self) -> usize;
    /// Number of discrete actions.
    fn actions(&self) -> usize;
    /// Steps per episode.
    fn steps(&self) -> usize;
    /// A new episode.
    fn reset(&self, rng: &mut ChaCha8Rng) -> Self::Episode;
    /// Writes the observation at step `t` into `out` (`observation_size` values).
    fn observe(&self, episode: &Self::Episode, t: usize, out: &mut [f32]);
    /// Takes `action` at step `t`; returns the reward.
    fn step(
        &self,
        episode: &mut Self::Episode,
        t: usize,
        action: usize,
        rng: &mut ChaCha8Rng,
    ) -> f32;
}

pub use super::Model;

/// The networks that can drive an agent (ICLR 2019, sections 4.1-4.2): non-plastic
/// (`alpha = 0`, not trained), plastic (decaying Hebb with a learned `eta`, or Oja's rule),
/// simple and retroactive neuromodulation.
pub const MODELS: &[Model] = &[Model::Rnn, Model::Plastic, Model::Modplast, Model::Modul];

/// The recurrent network of an agent.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentSpec {
    /// Network variant.
    pub model: Model,
    /// Neurons `N`.
    pub neurons: usize,
    /// Fan the modulator out to one rate per neuron (`modplast`, `modul`).
    pub fan_out: bool,
    /// Trace rule (`hebb`; `oja` for `plastic` only), `alpha`, `eta` (the plasticity rate, or
    /// the eligibility trace's rate for `modul`), clip, initialisation (`init_std` `0`:
    /// `1 / sqrt(N)`).
    pub plasticity: PlasticityConfig,
}

/// The agents' plastic settings (ICLR 2019 section 4.2): trace clipped to `[-1, 1]`,
/// `eta = 0.1`, `w ~ N(0, 1/N)`, `alpha ~ N(0, 0.01^2)`. `alpha` starts small: the modulated
/// traces have no decay and reach the clip within a few steps, so with `alpha` as large as `w`
/// the plastic term doubles the random recurrent weights and the modulated agents learned 2-3x
/// slower than the non-plastic one (docs/experiments/maze.md).
pub fn agent_plasticity() -> PlasticityConfig {
    PlasticityConfig {
        clip: Some(1.0),
        eta: 0.1,
        init_std: 0.0,
        alpha_init_std: Some(0.01),
        ..PlasticityConfig::default()
    }
}

impl AgentSpec {
    /// The recurrent network's configuration.
    pub fn net_config(&self) -> PlasticNetConfig {
        let n = self.neurons;
        let mut plasticity = self.plasticity.clone();
        if plasticity.init_std == 0.0 {
            plasticity.init_std = 1.0 / (n as f64).sqrt();
        }
        PlasticNetConfig {
            neurons: n,
            plastic: self.model != Model::Rnn,
            modulation: match self.model {
                // (`lstm` drives no agent: `validate` refuses it.)
                Model::Rnn | Model::Plastic | Model::Lstm => Modulation::None,
                Model::Modplast => Modulation::Simple {
                    fan_out: self.fan_out,
                },
                Model::Modul => Modulation::Retroactive {
                    fan_out: self.fan_out,
                },
            },
            plasticity,
            ..PlasticNetConfig::default()
        }
    }

    /// Checks the fields; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        crate::check::model(self.model, MODELS)?;
        fields!(self, count: [neurons]);
        if self.plasticity.rule == TraceRule::Oja
            && matches!(self.model, Model::Modplast | Model::Modul)
        {
            return Err("rule: the neuromodulated models (modplast, modul) use rule hebb".into());
        }
        self.net_config().validate()
    }

    /// Adds the agent's parts to a memory estimate: the recurrent network, an eligibility
    /// trace per episode for `modul`, and the rollout's observations.
    pub fn add_memory(
        &self,
        m: &mut super::MemoryEstimate,
        batch: usize,
        steps: usize,
        observation: usize,
    ) {
        let n = self.neurons;
        m.add_recurrent(format!("neurons = {n}"), n, batch, steps);
        if self.model == Model::Modul {
            m.add(
                format!("neurons = {n} with batch = {batch} (eligibility traces of {n} x {n})"),
                4.0 * 2.0 * batch as f64 * (n as f64) * (n as f64),
            );
        }
        m.add(
            format!("steps = {steps} (observations of {batch} episodes)"),
            4.0 * 2.0 * batch as f64 * steps as f64 * observation as f64,
        );
    }
}

/// Configuration of an actor-critic task: the environment's own fields `E`
/// ([`MazeFields`](super::maze::MazeFields), [`CueRewardFields`](super::cue_reward::CueRewardFields))
/// and the agent's: its network and the actor-critic's settings. One flat JSON object: `E`'s
/// fields, the plastic ones and the actor-critic's beside the others; an unknown field is
/// refused by name. The defaults are the task's paper's ([`AgentFields::paper`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, bound(deserialize = "E: AgentFields + Deserialize<'de>"))]
pub struct AgentConfig<E> {
    /// The environment's fields (beside the others in JSON).
    #[serde(flatten)]
    pub env: E,
    /// Network.
    pub model: Model,
    /// Neurons (`0`: the task's default size where it has one, [`AgentFields::neurons`]).
    pub neurons: usize,
    /// Fan the modulator out to one rate per neuron (`modplast`, `modul`).
    pub fan_out: bool,
    /// The network's plastic fields: `rule` (`hebb`; `oja` for `plastic` only), `eta` (the
    /// plasticity rate, or the eligibility trace's rate for `modul`), `clip`, `init_std` (`0`:
    /// `1 / sqrt(N)`), `alpha_init_std`, ... ([`agent_plasticity`]).
    #[serde(flatten)]
    pub plasticity: PlasticityConfig,
    /// The actor-critic's `batch` (episodes per update), `gamma`, loss weights and Adam.
    #[serde(flatten)]
    pub a2c: A2cSettings,
    /// Refuses unknown fields.
    #[serde(flatten)]
    pub no_other_fields: NoOtherFields,
}

/// The environment-specific part of an [`AgentConfig`]: the task's paper's configuration, what
/// `neurons: 0` means, the checks of its fields and its episodes' sizes.
pub trait AgentFields: Sized {
    /// The paper's configuration of the task (the `Default` of its [`AgentConfig`]).
    fn paper() -> AgentConfig<Self>;
    /// The shape of an episode's observations, `[steps, values]`.
    fn observations(&self) -> [usize; 2];
    /// Adds what the environment itself holds to a memory estimate (default: nothing).
    fn add_memory(&self, m: &mut super::MemoryEstimate) {
        let _ = m;
    }
    /// Neurons of the network of `model` for the configuration's `neurons` (default: as
    /// given).
    fn neurons(neurons: usize, model: Model) -> usize {
        let _ = model;
        neurons
    }
    /// Checks the fields; the message names the field.
    fn validate(&self) -> Result<(), String>;
}

impl<E: AgentFields> Default for AgentConfig<E> {
    fn default() -> Self {
        E::paper()
    }
}

impl<E: AgentFields> AgentConfig<E> {
    /// The agent both papers' tasks start from, on the environment `env`: a retroactively
    /// neuromodulated network (`modul`) of `neurons` neurons without fan-out, the
    /// [`agent_plasticity`] and the default [`A2cSettings`].
    pub fn new(env: E, neurons: usize) -> Self {
        AgentConfig {
            env,
            model: Model::Modul,
            neurons,
            fan_out: false,
            plasticity: agent_plasticity(),
            a2c: A2cSettings::default(),
            no_other_fields: NoOtherFields::default(),
        }
    }

    /// Neurons of the recurrent network.
    pub fn neurons(&self) -> usize {
        E::neurons(self.neurons, self.model)
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.env.validate()?;
        self.a2c.validate()?;
        self.agent_spec().validate()
    }

    /// A lower bound on the memory training needs (checked before anything is allocated): the
    /// environment's and the agent's network's.
    pub fn memory_estimate(&self) -> super::MemoryEstimate {
        let mut m = super::MemoryEstimate::default();
        self.env.add_memory(&mut m);
        let [steps, observation] = self.env.observations();
        self.agent_spec()
            .add_memory(&mut m, self.a2c.batch, steps, observation);
        m
    }

    /// The agent's network.
    pub fn agent_spec(&self) -> AgentSpec {
        AgentSpec {
            model: self.model,
            neurons: self.neurons(),
            fan_out: self.fan_out,
            plasticity: self.plasticity.clone(),
        }
    }
}

/// Training settings of the actor-critic; embedded (flattened) in [`AgentConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct A2cSettings {
    /// Episodes run in parallel per update.
    pub batch: usize,
    /// Discount of the returns.
    pub gamma: f64,
    /// Weight of the value loss.
    pub value_weight: f64,
    /// Weight of the penalty on the summed squared action probabilities.
    pub prob_penalty: f64,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Adam epsilon.
    pub adam_epsilon: f64,
    /// Largest global gradient norm.
    pub max_grad_norm: f64,
}

impl Default for A2cSettings {
    /// ICLR 2019 section 4.2's.
    fn default() -> Self {
        A2cSettings {
            batch: 30,
            gamma: 0.9,
            value_weight: 0.1,
            prob_penalty: 0.03,
            learning_rate: 1e-4,
            adam_epsilon: 1e-4,
            max_grad_norm: 4.0,
        }
    }
}

impl A2cSettings {
    /// Checks the fields; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        fields!(self, count: [batch], non_negative: [value_weight, prob_penalty]);
        fields!(self, positive: [learning_rate, adam_epsilon, max_grad_norm]);
        fields!(self, unit_interval: [gamma]);
        Ok(())
    }
}

/// The agent: input layer, recurrent (plastic) network, policy and value heads.
#[derive(Module, Debug)]
pub struct ActorCritic {
    /// `obs -> N`.
    pub input: Linear,
    /// The recurrent network.
    pub net: PlasticNet,
    /// `N -> actions` (logits).
    pub policy: Linear,
    /// `N -> 1`.
    pub value: Linear,
}

impl ActorCritic {
    /// A fresh agent for `env` with the network `spec`, initialised from `rng`.
    pub fn init<E: Environment>(
        env: &E,
        spec: &AgentSpec,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Self {
        let n = spec.neurons;
        let net = spec.net_config().init(rng, device);
        // burn initialises the linear layers from its own seeded RNG: seed it from ours.
        device.seed(rng.gen());
        ActorCritic {
            input: LinearConfig::new(env.observation_size(), n).init(device),
            net,
            policy: LinearConfig::new(n, env.actions()).init(device),
            value: LinearConfig::new(n, 1).init(device),
        }
    }
}

/// What a rollout records, `B` episodes of `T` steps, batch-major.
#[derive(Clone, Debug)]
pub struct Rollout<S> {
    /// Observations `[B, T, obs]`.
    pub obs: Vec<f32>,
    /// Actions `[B, T]`.
    pub actions: Vec<usize>,
    /// Rewards `[B, T]`.
    pub rewards: Vec<f32>,
    /// The policy's action probabilities `[B, T, actions]`.
    pub probs: Vec<f32>,
    /// The modulator `M(t)` `[B, T]` (empty without modulation).
    pub modulator: Vec<f32>,
    /// Each episode's state before acting at each step, `[B, T]`.
    pub states: Vec<S>,
    /// Episodes `B`.
    pub batch: usize,
    /// Steps `T`.
    pub steps: usize,
}

impl<S> Rollout<S> {
    /// Mean total reward per episode.
    pub fn mean_reward(&self) -> f64 {
        self.rewards.iter().map(|&r| r as f64).sum::<f64>() / self.batch as f64
    }
}

/// Discounted returns `R_t = r_t + gamma R_{t+1}` (`R_T = 0`) of each episode, `[B, T]`.
pub fn returns(rewards: &[f32], steps: usize, gamma: f64) -> Vec<f32> {
    let mut out = vec![0.0; rewards.len()];
    for (ro, ri) in out.chunks_mut(steps).zip(rewards.chunks(steps)) {
        let mut acc = 0.0f64;
        for t in (0..steps).rev() {
            acc = ri[t] as f64 + gamma * acc;
            ro[t] = acc as f32;
        }
    }
    out
}

/// `out[b, j] = sum_i x[b, i] w[i, j] + bias[j]` (burn's `Linear` layout, `w: [d_in, d_out]`).
fn affine(x: &[f32], w: &[f32], bias: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() / d_in * d_out);
    for row in x.chunks(d_in) {
        let start = out.len();
        out.extend_from_slice(bias);
        let o = &mut out[start..start + d_out];
        for (i, &xi) in row.iter().enumerate() {
            for (oj, &wij) in o.iter_mut().zip(&w[i * d_out..(i + 1) * d_out]) {
                *oj += xi * wij;
            }
        }
    }
    out
}

fn linear_buffers(l: &Linear) -> (Vec<f32>, Vec<f32>) {
    let w = to_vec(l.weight.val());
    let b = l.bias.as_ref().map(|b| to_vec(b.val())).unwrap_or_default();
    (w, b)
}

/// The recurrent network's parameters as plain buffers, fixed during a rollout.
struct NetBuffers {
    w: Vec<f32>,
    /// Empty without plasticity (the engine then keeps no trace).
    alpha: Vec<f32>,
    /// `eta`, or `eta_E` when retroactive.
    eta: f32,
    /// The modulator's parameters (modulated networks).
    modulator: Option<ModulatorBuffers>,
}

/// The modulator's `m: [N]`, `m_b`, fan-out `v, b: [N]` (empty without fan-out).
struct ModulatorBuffers {
    m: Vec<f32>,
    m_bias: f32,
    fan_w: Vec<f32>,
    fan_b: Vec<f32>,
}

impl NetBuffers {
    fn of(net: &PlasticNet) -> Self {
        let alpha = if net.config().plastic {
            to_vec(net.alpha.val())
        } else {
            Vec::new()
        };
        let optional = |v: &Option<burn::module::Param<Tensor<1>>>| {
            v.as_ref().map(|v| to_vec(v.val())).unwrap_or_default()
        };
        NetBuffers {
            w: to_vec(net.w.val()),
            alpha,
            eta: to_vec(net.eta.val())[0],
            modulator: net.modulator.as_ref().map(|md| ModulatorBuffers {
                m: to_vec(md.m.val()),
                m_bias: to_vec(md.m_bias.val())[0],
                fan_w: optional(&md.fan_w),
                fan_b: optional(&md.fan_b),
            }),
        }
    }

    fn plain(&self) -> Params<'_, f32> {
        Params {
            w: &self.w,
            alpha: &self.alpha,
            eta: self.eta,
        }
    }

    fn modulated(&self) -> Option<ModulatedParams<'_, f32>> {
        self.modulator.as_ref().map(|md| ModulatedParams {
            w: &self.w,
            alpha: &self.alpha,
            modulator: kernels::ModulatorParams {
                m: &md.m,
                m_bias: md.m_bias,
                fan_w: &md.fan_w,
                fan_b: &md.fan_b,
                eta_e: self.eta,
            },
        })
    }

    /// The network on the CUDA engine, from `y0: [B, N]` and zero traces.
    #[cfg(feature = "cuda")]
    fn device_stepper<'a>(
        &self,
        engine: &'a plasticity_cuda::Engine,
        spec: &kernels::EpisodeSpec,
        y0: &[f32],
    ) -> Result<Box<dyn StepNet + 'a>, String> {
        use plasticity_cuda::RuleParams;
        let p = match self.modulated() {
            Some(p) => RuleParams::Modulated(p),
            None => RuleParams::Plain(self.plain()),
        };
        let stepper = engine
            .stepper(spec, &p, y0, None, None)
            .map_err(|e| format!("--device cuda: the rollout could not start: {e}"))?;
        Ok(Box::new(stepper))
    }
}

/// The network's state during a rollout, advanced in place one step at a time: the CPU
/// engine's stepper, or the CUDA engine's when one is selected.
trait StepNet {
    /// One step with input `x: [B, N]`: `(y_t: [B, N], M(t): [B])` (`M` empty without
    /// modulation).
    fn step(&mut self, x: &[f32]) -> Result<(&[f32], &[f32]), String>;
}

/// The CPU engine's stepper with the parameters it steps with.
struct CpuNet(kernels::Stepper<f32>, NetBuffers);

impl StepNet for CpuNet {
    fn step(&mut self, x: &[f32]) -> Result<(&[f32], &[f32]), String> {
        let CpuNet(stepper, buffers) = self;
        match buffers.modulated() {
            Some(p) => stepper.step_modulated(&p, x).map_err(|e| e.0),
            None => Ok((stepper.step(&buffers.plain(), x).map_err(|e| e.0)?, &[])),
        }
    }
}

#[cfg(feature = "cuda")]
impl StepNet for plasticity_cuda::DeviceStepper<'_> {
    fn step(&mut self, x: &[f32]) -> Result<(&[f32], &[f32]), String> {
        plasticity_cuda::DeviceStepper::step(self, x)
            .map_err(|e| format!("--device cuda: a step of the rollout failed: {e}"))
    }
}

/// Runs `batch` episodes of `env` without gradients, sampling actions from the policy, one
/// step at a time on the CPU engine's stepper, or on the GPU's when a CUDA engine is selected
/// (`crate::cuda::select`, feature `cuda`).
pub fn rollout<E: Environment>(
    env: &E,
    agent: &ActorCritic,
    batch: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Rollout<E::Episode>, String> {
    let (obs_n, act_n, steps) = (env.observation_size(), env.actions(), env.steps());
    let net = &agent.net;
    let n = net.config().neurons;
    let (w_in, b_in) = linear_buffers(&agent.input);
    let (w_pol, b_pol) = linear_buffers(&agent.policy);
    let buffers = NetBuffers::of(net);
    let modulated = buffers.modulator.is_some();
    let spec = net.spec(batch, 1);
    let mut episodes: Vec<E::Episode> = (0..batch).map(|_| env.reset(rng)).collect();
    let y0 = vec![0.0f32; batch * n];
    #[cfg(feature = "cuda")]
    let engine = crate::cuda::selected();
    #[cfg(feature = "cuda")]
    let device = engine
        .as_deref()
        .map(|e| buffers.device_stepper(e, &spec, &y0))
        .transpose()?;
    #[cfg(not(feature = "cuda"))]
    let device: Option<Box<dyn StepNet>> = None;
    let mut stepper = match device {
        Some(d) => d,
        None => Box::new(CpuNet(
            kernels::Stepper::new(&spec, &y0, None, None).map_err(|e| e.0)?,
            buffers,
        )),
    };
    let mut out = Rollout {
        obs: vec![0.0; batch * steps * obs_n],
        actions: vec![0; batch * steps],
        rewards: vec![0.0; batch * steps],
        probs: vec![0.0; batch * steps * act_n],
        modulator: if modulated {
            vec![0.0; batch * steps]
        } else {
            Vec::new()
        },
        states: Vec::with_capacity(batch * steps),
        batch,
        steps,
    };
    let mut states: Vec<Vec<E::Episode>> = vec![Vec::with_capacity(steps); batch];
    let mut obs_t = vec![0.0f32; batch * obs_n];
    let mut e = vec![0.0f64; act_n];
    for t in 0..steps {
        for (b, ep) in episodes.iter().enumerate() {
            let o = &mut obs_t[b * obs_n..(b + 1) * obs_n];
            env.observe(ep, t, o);
            out.obs[(b * steps + t) * obs_n..(b * steps + t + 1) * obs_n].copy_from_slice(o);
            states[b].push(ep.clone());
        }
        let x = affine(&obs_t, &w_in, &b_in, obs_n, n);
        let (y, modulator) = stepper.step(&x)?;
        for (b, &mv) in modulator.iter().enumerate() {
            out.modulator[b * steps + t] = mv;
        }
        let logits = affine(y, &w_pol, &b_pol, n, act_n);
        for (b, ep) in episodes.iter_mut().enumerate() {
            let l = &logits[b * act_n..(b + 1) * act_n];
            let top = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for (ea, &v) in e.iter_mut().zip(l) {
                *ea = ((v - top) as f64).exp();
            }
            let total: f64 = e.iter().sum();
            for (a, &p) in e.iter().enumerate() {
                out.probs[(b * steps + t) * act_n + a] = (p / total) as f32;
            }
            let mut u = rng.gen::<f64>() * total;
            let mut action = act_n - 1;
            for (a, &p) in e.iter().enumerate() {
                if u < p {
                    action = a;
                    break;
                }
                u -= p;
            }
            out.actions[b * steps + t] = action;
            out.rewards[b * steps + t] = env.step(ep, t, action, rng);
        }
    }
    out.states = states.into_iter().flatten().collect();
    Ok(out)
}

/// Replays recorded observations `[B, T, obs]` through the fused episode operation: returns
/// the policy's logits `[B, T, actions]` and the values `[B, T]`.
pub fn replay<S>(
    agent: &ActorCritic,
    ro: &Rollout<S>,
    device: &Device,
) -> Result<(Tensor<3>, Tensor<2>), String> {
    let (batch, steps) = (ro.batch, ro.steps);
    let obs_n = ro.obs.len() / (batch * steps);
    let obs = from_vec(ro.obs.clone(), [batch, steps, obs_n], device);
    let x = agent.input.forward(obs); // [B, T, N]
    let ys = agent.net.forward(x, None).map_err(|e| e.0)?.0; // [B, T, N]
    let logits = agent.policy.forward(ys.clone()); // [B, T, A]
    let values = agent.value.forward(ys).reshape([batch, steps]); // [B, T]
    Ok((logits, values))
}

/// The A2C loss `[1]` of a recorded rollout, replayed through the fused episode operation.
pub fn loss<S>(
    agent: &ActorCritic,
    ro: &Rollout<S>,
    settings: &A2cSettings,
    device: &Device,
) -> Result<Tensor<1>, String> {
    let (batch, steps) = (ro.batch, ro.steps);
    let (logits, values) = replay(agent, ro, device)?;
    let act_n = logits.dims()[2];
    let mut onehot = vec![0.0f32; batch * steps * act_n];
    for (k, &a) in ro.actions.iter().enumerate() {
        onehot[k * act_n + a] = 1.0;
    }
    let onehot = from_vec(onehot, [batch, steps, act_n], device);
    let logp = (log_softmax(logits.clone(), 2) * onehot)
        .sum_dim(2)
        .reshape([batch, steps]); // log pi(a_t)
    let probs = softmax(logits, 2);
    let rets = from_vec(
        returns(&ro.rewards, steps, settings.gamma),
        [batch, steps],
        device,
    );
    let advantage = rets - values;
    let policy_loss = -(logp * advantage.clone().detach()).sum();
    let value_loss = advantage.powf_scalar(2.0).sum();
    let penalty = probs.powf_scalar(2.0).sum();
    let loss = (policy_loss
        + value_loss.mul_scalar(settings.value_weight as f32)
        + penalty.mul_scalar(settings.prob_penalty as f32))
    .div_scalar(batch as f32);
    Ok(loss.reshape([1]))
}

/// A reinforcement-learning task: an [`Environment`] with its agent and training settings.
/// Every `A2cTask` is an [`Experiment`] (metric: `reward`, the mean total reward per episode).
pub trait A2cTask: Environment {
    /// Name used in outputs (`maze`, `cue-reward`).
    fn task_name(&self) -> &'static str;
    /// The task's configuration.
    fn config(&self) -> &AgentConfig<impl AgentFields>;
    /// The agent's network.
    fn agent_spec(&self) -> AgentSpec {
        self.config().agent_spec()
    }
    /// Training settings.
    fn settings(&self) -> A2cSettings {
        self.config().a2c.clone()
    }
    /// Called before each training update with the number of updates done so far (also after
    /// a resume), for tasks with a curriculum. Default: nothing.
    fn before_update(&self, update: u64) {
        let _ = update;
    }
}

impl<T: A2cTask> Experiment for T {
    type Model = ActorCritic;

    fn name(&self) -> &'static str {
        self.task_name()
    }

    fn metric_names(&self) -> &'static [&'static str] {
        &["reward"]
    }

    fn init_model(&self, rng: &mut ChaCha8Rng, device: &Device) -> ActorCritic {
        ActorCritic::init(self, &self.agent_spec(), rng, device)
    }

    fn optimizer(&self) -> (AdamConfig, f64) {
        let s = self.settings();
        (
            AdamConfig::new().with_epsilon(s.adam_epsilon as f32),
            s.learning_rate,
        )
    }

    fn max_grad_norm(&self) -> Option<f64> {
        Some(self.settings().max_grad_norm)
    }

    fn before_update(&self, update: u64) {
        A2cTask::before_update(self, update);
    }

    fn train_batch(
        &self,
        model: &ActorCritic,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(Tensor<1>, Vec<f64>), String> {
        let s = self.settings();
        let ro = rollout(self, model, s.batch, rng)?;
        let loss = loss(model, &ro, &s, device)?;
        Ok((loss, vec![ro.mean_reward()]))
    }

    fn eval_batch(
        &self,
        model: &ActorCritic,
        rng: &mut ChaCha8Rng,
        _device: &Device,
    ) -> Result<Vec<f64>, String> {
        let ro = rollout(self, model, self.settings().batch, rng)?;
        Ok(vec![ro.mean_reward()])
    }
}
