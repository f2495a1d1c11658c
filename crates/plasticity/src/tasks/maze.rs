//! Grid maze exploration (ICML 2018 section 4.5; ICLR 2019 section 4.2): an agent must find an
//! invisible reward in a maze, remember where it is, and return to it again and again after
//! being teleported.
//!
//! # Rules
//! An `L x L` maze (odd `L`): walls on the border and at every cell whose two coordinates are
//! even, except the centre. The reward sits on a random free cell other than the centre; the
//! agent starts at the centre. Actions: up, down, left, right; bumping into a wall keeps the
//! agent in place (reward `-wall_penalty`). Reaching the reward cell gives `reward` and teleports
//! the agent to a random free cell other than the reward cell. An episode has `steps` steps; a
//! batch runs `batch` independent episodes (each with its own reward cell).
//!
//! # Observation (`OBS` = 16 values)
//! `[0..9]` the 3x3 neighbourhood's walls (1: wall) row by row from the top-left, `[9]` the
//! previous step's reward, `[10..14]` the previous action one-hot (zeros at the first step),
//! `[14]` `step / steps`, `[15]` a bias of 1.
//!
//! # Agent and training (advantage actor-critic)
//! `x(t) = W_in obs(t) + b_in` drives a recurrent network of `N` neurons ([`PlasticNet`]:
//! non-plastic, plastic, or neuromodulated); linear heads give the policy (softmax over 4
//! actions) and the value. Per episode `b`: returns `R_t = r_t + gamma R_{t+1}`; loss
//! `sum_t [ -log pi(a_t) (R_t - V_t) + value_weight (R_t - V_t)^2 + prob_penalty sum_a pi(a)^2 ]`
//! with `R_t - V_t` detached in the policy term (each episode's own value is its baseline), averaged
//! over the batch; Adam, global gradient-norm clipping.
//!
//! An episode is first rolled out without gradients, step by step, on plain buffers (the actions
//! sampled at step `t` are inputs at step `t+1`); then the recorded observations are replayed
//! through the fused episode operation in one call for the gradient.

use crate::layer::{PlasticNet, PlasticNetConfig};
use crate::tensors::{from_vec, to_vec};
use crate::train::Experiment;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::AdamConfig;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor};
use plasticity_kernels::{
    self as kernels, AlphaShape, BackwardStrategy, ModulatedParams, Modulation, Params, TraceRule,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Values in an observation.
pub const OBS: usize = 16;
/// Actions: up, down, left, right.
pub const ACTIONS: usize = 4;

/// Which network drives the agent (ICLR 2019 section 4.2's variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MazeModel {
    /// Non-plastic recurrent network (`alpha = 0`, 100 neurons by default).
    Rnn,
    /// Plastic network without modulation (decaying Hebb, learned `eta`; 101 neurons).
    Plastic,
    /// Simple neuromodulation (ICLR 2019 eq. 3; 100 neurons).
    Modplast,
    /// Retroactive neuromodulation with an eligibility trace (eq. 4-5; 100 neurons).
    Modul,
}

impl std::str::FromStr for MazeModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rnn" => Ok(MazeModel::Rnn),
            "plastic" => Ok(MazeModel::Plastic),
            "modplast" => Ok(MazeModel::Modplast),
            "modul" => Ok(MazeModel::Modul),
            _ => Err(format!(
                "unknown model '{s}' (expected rnn, plastic, modplast or modul)"
            )),
        }
    }
}

/// Configuration of the maze task; the defaults are the paper's (ICLR 2019 section 4.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MazeConfig {
    /// Side `L` of the maze (odd, at least 5).
    pub size: usize,
    /// Steps per episode.
    pub steps: usize,
    /// Episodes run in parallel per update.
    pub batch: usize,
    /// Reward for reaching the reward cell.
    pub reward: f64,
    /// Penalty for bumping into a wall.
    pub wall_penalty: f64,
    /// Network.
    pub model: MazeModel,
    /// Neurons (`0`: the paper's parameter-matched size: 100, or 101 for `plastic`).
    pub neurons: usize,
    /// Fan the modulator out to one rate per neuron (`modplast`, `modul`).
    pub fan_out: bool,
    /// Clip the Hebbian trace to `[-clip, clip]`.
    pub clip: f64,
    /// Initial `eta` (plasticity rate, or the eligibility trace's rate for `modul`).
    pub eta: f64,
    /// Standard deviation of the initial recurrent `w` and `alpha` (`0`: `1 / sqrt(N)`).
    pub init_std: f64,
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

impl Default for MazeConfig {
    fn default() -> Self {
        MazeConfig {
            size: 13,
            steps: 200,
            batch: 30,
            reward: 10.0,
            wall_penalty: 0.0,
            model: MazeModel::Modul,
            neurons: 0,
            fan_out: false,
            clip: 1.0,
            eta: 0.1,
            init_std: 0.0,
            gamma: 0.9,
            value_weight: 0.1,
            prob_penalty: 0.03,
            learning_rate: 1e-4,
            adam_epsilon: 1e-4,
            max_grad_norm: 4.0,
        }
    }
}

impl MazeConfig {
    /// Neurons of the recurrent network.
    pub fn neurons(&self) -> usize {
        match (self.neurons, self.model) {
            (0, MazeModel::Plastic) => 101,
            (0, _) => 100,
            (n, _) => n,
        }
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.size < 5 || self.size.is_multiple_of(2) {
            return Err(format!(
                "size: must be odd and at least 5 (got {})",
                self.size
            ));
        }
        for (name, v) in [("steps", self.steps), ("batch", self.batch)] {
            if v == 0 {
                return Err(format!("{name}: must be positive"));
            }
        }
        for (name, v) in [
            ("reward", self.reward),
            ("wall_penalty", self.wall_penalty),
            ("value_weight", self.value_weight),
            ("prob_penalty", self.prob_penalty),
            ("init_std", self.init_std),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name}: must be finite and >= 0 (got {v})"));
            }
        }
        for (name, v) in [
            ("clip", self.clip),
            ("learning_rate", self.learning_rate),
            ("adam_epsilon", self.adam_epsilon),
            ("max_grad_norm", self.max_grad_norm),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name}: must be positive (got {v})"));
            }
        }
        if !(self.gamma >= 0.0 && self.gamma <= 1.0) {
            return Err(format!("gamma: must be in [0, 1] (got {})", self.gamma));
        }
        self.net_config().validate()
    }

    /// The recurrent network's configuration.
    pub fn net_config(&self) -> PlasticNetConfig {
        let n = self.neurons();
        PlasticNetConfig {
            neurons: n,
            rule: TraceRule::Hebb,
            clip: Some(self.clip),
            alpha: AlphaShape::PerConnection,
            eta: self.eta,
            learn_eta: self.model != MazeModel::Rnn,
            init_std: if self.init_std > 0.0 {
                self.init_std
            } else {
                1.0 / (n as f64).sqrt()
            },
            backward: BackwardStrategy::Auto,
            modulation: match self.model {
                MazeModel::Rnn | MazeModel::Plastic => Modulation::None,
                MazeModel::Modplast => Modulation::Simple {
                    fan_out: self.fan_out,
                },
                MazeModel::Modul => Modulation::Retroactive {
                    fan_out: self.fan_out,
                },
            },
            ..PlasticNetConfig::default()
        }
    }
}

/// The maze's walls.
#[derive(Clone, Debug, PartialEq)]
pub struct Maze {
    size: usize,
    walls: Vec<bool>,
    free: Vec<(usize, usize)>,
}

impl Maze {
    /// The `size x size` maze of the rules above (`size` odd).
    pub fn new(size: usize) -> Self {
        let c = size / 2;
        let wall = |r: usize, col: usize| {
            let border = r == 0 || col == 0 || r == size - 1 || col == size - 1;
            border || (r.is_multiple_of(2) && col.is_multiple_of(2) && (r, col) != (c, c))
        };
        let walls: Vec<bool> = (0..size * size).map(|k| wall(k / size, k % size)).collect();
        let free = (0..size * size)
            .filter(|&k| !walls[k])
            .map(|k| (k / size, k % size))
            .collect();
        Maze { size, walls, free }
    }

    /// Side of the maze.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether `(row, col)` is a wall.
    pub fn is_wall(&self, row: usize, col: usize) -> bool {
        self.walls[row * self.size + col]
    }

    /// The free cells, row by row.
    pub fn free_cells(&self) -> &[(usize, usize)] {
        &self.free
    }

    /// The centre, where the agent starts.
    pub fn centre(&self) -> (usize, usize) {
        (self.size / 2, self.size / 2)
    }

    /// A random free cell other than `not`.
    fn random_free(&self, not: (usize, usize), rng: &mut impl Rng) -> (usize, usize) {
        loop {
            let cell = self.free[rng.gen_range(0..self.free.len())];
            if cell != not {
                return cell;
            }
        }
    }
}

/// One episode's state in the maze.
#[derive(Clone, Debug, PartialEq)]
pub struct MazeEpisode {
    /// The agent's cell `(row, col)`.
    pub agent: (usize, usize),
    /// The reward cell.
    pub reward_cell: (usize, usize),
    /// Reward of the previous step.
    pub prev_reward: f32,
    /// Action of the previous step (`None` at the first step).
    pub prev_action: Option<usize>,
}

impl MazeEpisode {
    /// A new episode: the reward on a random free cell other than the centre, the agent at the
    /// centre.
    pub fn new(maze: &Maze, rng: &mut impl Rng) -> Self {
        MazeEpisode {
            agent: maze.centre(),
            reward_cell: maze.random_free(maze.centre(), rng),
            prev_reward: 0.0,
            prev_action: None,
        }
    }

    /// Takes `action` (0 up, 1 down, 2 left, 3 right) and returns the reward.
    pub fn step(
        &mut self,
        maze: &Maze,
        config: &MazeConfig,
        action: usize,
        rng: &mut impl Rng,
    ) -> f32 {
        let (r, c) = self.agent;
        let target = match action {
            0 => (r - 1, c),
            1 => (r + 1, c),
            2 => (r, c - 1),
            3 => (r, c + 1),
            _ => panic!("action {action} out of range"),
        };
        let mut reward = 0.0;
        if maze.is_wall(target.0, target.1) {
            reward -= config.wall_penalty as f32;
        } else {
            self.agent = target;
        }
        if self.agent == self.reward_cell {
            reward += config.reward as f32;
            self.agent = maze.random_free(self.reward_cell, rng);
        }
        self.prev_reward = reward;
        self.prev_action = Some(action);
        reward
    }

    /// The observation at step `t` of `steps` (layout in the module docs).
    pub fn observation(&self, maze: &Maze, t: usize, steps: usize) -> [f32; OBS] {
        let mut obs = [0.0; OBS];
        let (r, c) = self.agent;
        for dr in 0..3 {
            for dc in 0..3 {
                obs[dr * 3 + dc] = maze.is_wall(r + dr - 1, c + dc - 1) as u8 as f32;
            }
        }
        obs[9] = self.prev_reward;
        if let Some(a) = self.prev_action {
            obs[10 + a] = 1.0;
        }
        obs[14] = t as f32 / steps as f32;
        obs[15] = 1.0;
        obs
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

/// The agent: input layer, recurrent (plastic) network, policy and value heads.
#[derive(Module, Debug)]
pub struct MazeAgent {
    /// `OBS -> N`.
    pub input: Linear,
    /// The recurrent network.
    pub net: PlasticNet,
    /// `N -> ACTIONS` (logits).
    pub policy: Linear,
    /// `N -> 1`.
    pub value: Linear,
}

/// What a rollout records, `B` episodes of `T` steps, batch-major.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// Observations `[B, T, OBS]`.
    pub obs: Vec<f32>,
    /// Actions `[B, T]`.
    pub actions: Vec<usize>,
    /// Rewards `[B, T]`.
    pub rewards: Vec<f32>,
    /// The policy's action probabilities `[B, T, ACTIONS]`.
    pub probs: Vec<f32>,
    /// The modulator `[B, T]` (empty without modulation).
    pub modulator: Vec<f32>,
    /// The agent's cell at each step before acting, `[B, T]`.
    pub cells: Vec<(usize, usize)>,
    /// Reward cell of each episode, `[B]`.
    pub reward_cells: Vec<(usize, usize)>,
}

impl Rollout {
    /// Mean total reward per episode.
    pub fn mean_reward(&self, batch: usize) -> f64 {
        self.rewards.iter().map(|&r| r as f64).sum::<f64>() / batch as f64
    }
}

/// The maze experiment.
#[derive(Clone, Debug)]
pub struct MazeTask {
    /// Configuration.
    pub config: MazeConfig,
    maze: Maze,
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

impl MazeTask {
    /// A task; fails with a message naming the field when the configuration is invalid.
    pub fn new(config: MazeConfig) -> Result<Self, String> {
        config.validate()?;
        let maze = Maze::new(config.size);
        Ok(MazeTask { config, maze })
    }

    /// The maze.
    pub fn maze(&self) -> &Maze {
        &self.maze
    }

    /// Runs `batch` episodes without gradients, sampling actions from the policy.
    pub fn rollout(
        &self,
        agent: &MazeAgent,
        batch: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Rollout, String> {
        let c = &self.config;
        let n = c.neurons();
        let steps = c.steps;
        let (w_in, b_in) = linear_buffers(&agent.input);
        let (w_pol, b_pol) = linear_buffers(&agent.policy);
        let net = &agent.net;
        let (w, alpha, eta) = (
            to_vec(net.w.val()),
            to_vec(net.alpha.val()),
            to_vec(net.eta.val())[0],
        );
        let md = net.modulator.as_ref().map(|md| {
            (
                to_vec(md.m.val()),
                to_vec(md.m_bias.val())[0],
                md.fan_w
                    .as_ref()
                    .map(|v| to_vec(v.val()))
                    .unwrap_or_default(),
                md.fan_b
                    .as_ref()
                    .map(|v| to_vec(v.val()))
                    .unwrap_or_default(),
            )
        });
        let spec = net.spec(batch, 1);
        let mut episodes: Vec<MazeEpisode> = (0..batch)
            .map(|_| MazeEpisode::new(&self.maze, rng))
            .collect();
        let mut y = vec![0.0f32; batch * n];
        let mut hebb = vec![0.0f32; batch * n * n];
        let mut elig = vec![
            0.0f32;
            if spec.modulation.has_eligibility() {
                batch * n * n
            } else {
                0
            }
        ];
        let mut out = Rollout {
            obs: vec![0.0; batch * steps * OBS],
            actions: vec![0; batch * steps],
            rewards: vec![0.0; batch * steps],
            probs: vec![0.0; batch * steps * ACTIONS],
            modulator: Vec::new(),
            cells: vec![(0, 0); batch * steps],
            reward_cells: episodes.iter().map(|e| e.reward_cell).collect(),
        };
        if md.is_some() {
            out.modulator = vec![0.0; batch * steps];
        }
        let mut obs_t = vec![0.0f32; batch * OBS];
        for t in 0..steps {
            for (b, ep) in episodes.iter().enumerate() {
                let o = ep.observation(&self.maze, t, steps);
                obs_t[b * OBS..(b + 1) * OBS].copy_from_slice(&o);
                out.obs[(b * steps + t) * OBS..(b * steps + t + 1) * OBS].copy_from_slice(&o);
                out.cells[b * steps + t] = ep.agent;
            }
            let x = affine(&obs_t, &w_in, &b_in, OBS, n);
            match &md {
                None => {
                    let ep = kernels::forward(
                        &spec,
                        &Params {
                            w: &w,
                            alpha: &alpha,
                            eta,
                        },
                        &x,
                        &y,
                        Some(&hebb),
                    )
                    .map_err(|e| e.0)?;
                    y = ep.ys;
                    hebb = ep.hebb;
                }
                Some((m, m_bias, fan_w, fan_b)) => {
                    let p = ModulatedParams {
                        w: &w,
                        alpha: &alpha,
                        m,
                        m_bias: *m_bias,
                        fan_w,
                        fan_b,
                        eta_e: eta,
                    };
                    let e0 = (!elig.is_empty()).then_some(elig.as_slice());
                    let ep = kernels::modulated::forward(&spec, &p, &x, &y, Some(&hebb), e0)
                        .map_err(|e| e.0)?;
                    for (b, &mv) in ep.modulator.iter().enumerate() {
                        out.modulator[b * steps + t] = mv;
                    }
                    y = ep.ys;
                    hebb = ep.hebb;
                    elig = ep.elig;
                }
            }
            let logits = affine(&y, &w_pol, &b_pol, n, ACTIONS);
            for (b, ep) in episodes.iter_mut().enumerate() {
                let l = &logits[b * ACTIONS..(b + 1) * ACTIONS];
                let top = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f64> = l.iter().map(|&v| ((v - top) as f64).exp()).collect();
                let total: f64 = e.iter().sum();
                for (a, &p) in e.iter().enumerate() {
                    out.probs[(b * steps + t) * ACTIONS + a] = (p / total) as f32;
                }
                let mut u = rng.gen::<f64>() * total;
                let mut action = ACTIONS - 1;
                for (a, &p) in e.iter().enumerate() {
                    if u < p {
                        action = a;
                        break;
                    }
                    u -= p;
                }
                out.actions[b * steps + t] = action;
                out.rewards[b * steps + t] = ep.step(&self.maze, c, action, rng);
            }
        }
        Ok(out)
    }

    /// Replays recorded observations `[B, T, OBS]` through the fused episode operation: returns
    /// the policy's logits `[B, T, ACTIONS]` and the values `[B, T]`.
    pub fn replay(
        &self,
        agent: &MazeAgent,
        ro: &Rollout,
        device: &Device,
    ) -> Result<(Tensor<3>, Tensor<2>), String> {
        let steps = self.config.steps;
        let batch = ro.actions.len() / steps;
        let obs = from_vec(ro.obs.clone(), [batch, steps, OBS], device);
        let x = agent.input.forward(obs); // [B, T, N]
        let (ys, _) = agent.net.forward(x, None).map_err(|e| e.0)?; // [B, T, N]
        let logits = agent.policy.forward(ys.clone()); // [B, T, A]
        let values = agent.value.forward(ys).reshape([batch, steps]); // [B, T]
        Ok((logits, values))
    }

    /// The A2C loss of a recorded rollout, replayed through the fused episode operation.
    pub fn loss(
        &self,
        agent: &MazeAgent,
        ro: &Rollout,
        device: &Device,
    ) -> Result<Tensor<1>, String> {
        let c = &self.config;
        let steps = c.steps;
        let batch = ro.actions.len() / steps;
        let (logits, values) = self.replay(agent, ro, device)?;
        let mut onehot = vec![0.0f32; batch * steps * ACTIONS];
        for (k, &a) in ro.actions.iter().enumerate() {
            onehot[k * ACTIONS + a] = 1.0;
        }
        let onehot = from_vec(onehot, [batch, steps, ACTIONS], device);
        let logp = (log_softmax(logits.clone(), 2) * onehot)
            .sum_dim(2)
            .reshape([batch, steps]); // log pi(a_t)
        let probs = softmax(logits, 2);
        let rets = from_vec(returns(&ro.rewards, steps, c.gamma), [batch, steps], device);
        let advantage = rets - values;
        let policy_loss = -(logp * advantage.clone().detach()).sum();
        let value_loss = advantage.powf_scalar(2.0).sum();
        let penalty = probs.powf_scalar(2.0).sum();
        let loss = (policy_loss
            + value_loss.mul_scalar(c.value_weight as f32)
            + penalty.mul_scalar(c.prob_penalty as f32))
        .div_scalar(batch as f32);
        Ok(loss.reshape([1]))
    }
}

impl Experiment for MazeTask {
    type Model = MazeAgent;

    fn name(&self) -> &'static str {
        "maze"
    }

    fn metric_names(&self) -> &'static [&'static str] {
        &["reward"]
    }

    fn init_model(&self, rng: &mut ChaCha8Rng, device: &Device) -> MazeAgent {
        let c = &self.config;
        let n = c.neurons();
        let mut net = c.net_config().init(rng, device);
        if c.model == MazeModel::Rnn {
            // Non-plastic: alpha = 0, fixed.
            let dims = net.alpha.val().dims();
            net.alpha = Param::from_tensor(Tensor::zeros(dims, device)).set_require_grad(false);
        }
        // burn initialises the linear layers from its own seeded RNG: seed it from ours.
        device.seed(rng.gen());
        MazeAgent {
            input: LinearConfig::new(OBS, n).init(device),
            net,
            policy: LinearConfig::new(n, ACTIONS).init(device),
            value: LinearConfig::new(n, 1).init(device),
        }
    }

    fn optimizer(&self) -> (AdamConfig, f64) {
        (
            AdamConfig::new().with_epsilon(self.config.adam_epsilon as f32),
            self.config.learning_rate,
        )
    }

    fn max_grad_norm(&self) -> Option<f64> {
        Some(self.config.max_grad_norm)
    }

    fn train_episode(
        &self,
        model: &MazeAgent,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(Tensor<1>, Vec<f64>), String> {
        let ro = self.rollout(model, self.config.batch, rng)?;
        let loss = self.loss(model, &ro, device)?;
        Ok((loss, vec![ro.mean_reward(self.config.batch)]))
    }

    fn eval_episode(
        &self,
        model: &MazeAgent,
        rng: &mut ChaCha8Rng,
        _device: &Device,
    ) -> Result<Vec<f64>, String> {
        let ro = self.rollout(model, self.config.batch, rng)?;
        Ok(vec![ro.mean_reward(self.config.batch)])
    }
}
