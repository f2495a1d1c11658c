//! Synthetic episodes at the papers' sizes, for benchmarking the engine where the real task is
//! not the point (or not built yet): random inputs, a squared-error loss on the outputs.
//!
//! A training step costs what the real task's does (the same plastic network, the same episode
//! shapes, the same trace rule, clipping and input mode); only the data is random. The PyTorch
//! reference (`bench/pytorch_reference.py`) builds the same episodes.
//!
//! - Inputs: each neuron gets `input_scale * (+1 | -1)` with probability `input_density` at each
//!   step, else 0 (in clamped mode the neurons with non-zero input output it).
//! - Loss: `sum_j (y_j - target_j)^2` with random `target_j = +1 | -1`, at the last step
//!   ([`LossSteps::Last`], pattern and image tasks) or summed over all steps
//!   ([`LossSteps::All`], like the maze's actor-critic loss, which reaches every step).

use crate::config::PlasticityConfig;
use crate::layer::{PlasticNet, PlasticNetConfig};
use crate::tensors::{from_vec, to_vec};
use crate::train::Experiment;
use burn::optim::AdamConfig;
use burn::tensor::{Device, Tensor};
use plasticity_kernels::{InputMode, TraceRule};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Where the loss looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossSteps {
    /// The last step only.
    Last,
    /// Every step.
    All,
}

/// A synthetic workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// The plastic network.
    pub net: PlasticNetConfig,
    /// Steps per episode `T`.
    pub steps: usize,
    /// Episodes per update `B`.
    pub batch: usize,
    /// Probability that a neuron receives input at a step.
    pub input_density: f64,
    /// Magnitude of the inputs.
    pub input_scale: f64,
    /// Where the loss looks.
    pub loss: LossSteps,
    /// Adam learning rate.
    pub learning_rate: f64,
}

impl SyntheticConfig {
    /// The image task's sizes (ICML 2018 section 4.2): N = 1025, T = 201, B = 1, clamped input,
    /// decaying Hebb, loss at the last step.
    pub fn images() -> Self {
        SyntheticConfig {
            net: PlasticNetConfig {
                neurons: 1025,
                input: InputMode::Clamped,
                ..PlasticNetConfig::default()
            },
            steps: 201,
            batch: 1,
            input_density: 0.9,
            input_scale: 1.0,
            loss: LossSteps::Last,
            learning_rate: 1e-4,
        }
    }

    /// The maze's sizes (ICLR 2019 section 4.2): recurrent N = 100, B = 30, T = 200, decaying
    /// Hebb with the trace clipped to [-1, 1], loss at every step.
    pub fn maze() -> Self {
        SyntheticConfig {
            net: PlasticNetConfig {
                neurons: 100,
                plasticity: PlasticityConfig {
                    rule: TraceRule::Hebb,
                    clip: Some(1.0),
                    ..PlasticityConfig::default()
                },
                ..PlasticNetConfig::default()
            },
            steps: 200,
            batch: 30,
            input_density: 0.2,
            input_scale: 1.0,
            loss: LossSteps::All,
            learning_rate: 1e-4,
        }
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps == 0 || self.batch == 0 {
            return Err("steps, batch: must be positive".into());
        }
        crate::check::unit_interval("input_density", self.input_density)?;
        self.net.validate()
    }
}

/// The synthetic workload as an [`Experiment`].
#[derive(Clone, Debug)]
pub struct SyntheticTask {
    /// Configuration.
    pub config: SyntheticConfig,
}

impl SyntheticTask {
    /// A task; fails with a message naming the field when the configuration is invalid.
    pub fn new(config: SyntheticConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(SyntheticTask { config })
    }

    /// Draws a batch: inputs `[B, T, N]` and targets `[B, N]`.
    pub fn episodes(&self, rng: &mut impl Rng) -> (Vec<f32>, Vec<f32>) {
        let c = &self.config;
        let n = c.net.neurons;
        let sign = |rng: &mut dyn rand::RngCore| if rng.gen::<bool>() { 1.0 } else { -1.0 };
        let x = (0..c.batch * c.steps * n)
            .map(|_| {
                if rng.gen_bool(c.input_density) {
                    c.input_scale as f32 * sign(rng)
                } else {
                    0.0
                }
            })
            .collect();
        let targets = (0..c.batch * n).map(|_| sign(rng)).collect();
        (x, targets)
    }

    fn loss(
        &self,
        net: &PlasticNet,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Tensor<1>, String> {
        let c = &self.config;
        let (b, t, n) = (c.batch, c.steps, c.net.neurons);
        let (x, targets) = self.episodes(rng);
        let (ys, _) = net
            .forward(from_vec(x, [b, t, n], device), None)
            .map_err(|e| e.0)?;
        let target: Tensor<3> = from_vec(targets, [b, 1, n], device);
        let looked = match c.loss {
            LossSteps::Last => ys.slice([0..b, t - 1..t, 0..n]),
            LossSteps::All => ys,
        };
        Ok((looked - target)
            .powf_scalar(2.0)
            .sum()
            .div_scalar(b as f32)
            .reshape([1]))
    }
}

impl Experiment for SyntheticTask {
    type Model = PlasticNet;

    fn name(&self) -> &'static str {
        "synthetic"
    }

    fn init_model(&self, rng: &mut ChaCha8Rng, device: &Device) -> PlasticNet {
        self.config.net.init(rng, device)
    }

    fn optimizer(&self) -> (AdamConfig, f64) {
        (AdamConfig::new(), self.config.learning_rate)
    }

    fn train_batch(
        &self,
        model: &PlasticNet,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(Tensor<1>, Vec<f64>), String> {
        Ok((self.loss(model, rng, device)?, vec![]))
    }

    fn eval_batch(
        &self,
        model: &PlasticNet,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Vec<f64>, String> {
        let loss = to_vec(self.loss(model, rng, device)?);
        if loss[0].is_finite() {
            Ok(vec![])
        } else {
            Err("the loss is not finite".into())
        }
    }
}
