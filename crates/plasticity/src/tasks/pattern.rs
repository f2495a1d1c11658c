//! Binary pattern memorisation and completion (ICML 2018, section 4.1).
//!
//! Each episode shows `patterns` random patterns of `bits` values (exactly half +1, half -1),
//! `cycles` times in a shuffled order, each for `present_steps` steps followed by `gap_steps`
//! steps of zero input; then one of them with half of its bits set to 0 for `test_steps` steps.
//! Inputs are multiplied by `input_scale`; a bias neuron always receives `input_scale`. The
//! loss is the sum of squared errors between the last step's activity of the pattern neurons
//! and the full test pattern; the metric `error` is the fraction of bits whose sign is wrong.

use super::completion::{add_network_memory, last_step, squared_error, with_bias};
use super::completion::{CompletionConfig, CompletionFields, CompletionModel, CompletionTask};
use super::Model;
use crate::check::fields;
use crate::tensors::to_vec;
use burn::tensor::{Device, Tensor};
use plasticity_kernels::InputMode;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Configuration of the pattern task; the defaults are the paper's (section 4.1).
pub type PatternConfig = CompletionConfig<PatternFields>;

/// The pattern task's own fields of [`PatternConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PatternFields {
    /// Bits per pattern.
    pub bits: usize,
    /// Patterns per episode.
    pub patterns: usize,
    /// Fraction of the test pattern's bits set to 0.
    pub degraded_fraction: f64,
    /// Input multiplier (also the bias neuron's input).
    pub input_scale: f64,
    /// Neurons of the non-plastic RNN (`0`: `bits + 1`).
    pub rnn_neurons: usize,
}

impl Default for PatternFields {
    fn default() -> Self {
        PatternFields {
            bits: 1000,
            patterns: 5,
            degraded_fraction: 0.5,
            input_scale: 20.0,
            rnn_neurons: 0,
        }
    }
}

impl CompletionFields for PatternFields {
    const INPUT: InputMode = InputMode::Additive;

    /// Section 4.1: 2 cycles of 6 + 4 steps, 6 test steps (106 steps); Adam's rate 3e-4; an
    /// LSTM of 2000 cells.
    fn paper() -> PatternConfig {
        CompletionConfig::new(PatternFields::default(), [2, 6, 4, 6], 3e-4, 2000)
    }

    fn shape(&self) -> [usize; 2] {
        [self.patterns, self.bits]
    }

    fn neurons(&self, model: Model) -> usize {
        match model {
            Model::Rnn if self.rnn_neurons > 0 => self.rnn_neurons,
            _ => self.bits + 1,
        }
    }

    fn validate(&self, model: Model) -> Result<(), String> {
        fields!(self, count: [bits, patterns]);
        if !self.bits.is_multiple_of(2) {
            return Err(format!(
                "bits: must be even (half +1, half -1), got {}",
                self.bits
            ));
        }
        fields!(self, unit_interval: [degraded_fraction], positive: [input_scale]);
        if model == Model::Rnn && self.rnn_neurons != 0 && self.rnn_neurons <= self.bits {
            return Err(format!(
                "rnn_neurons: must exceed bits ({}) to hold the inputs and the bias",
                self.bits
            ));
        }
        Ok(())
    }
}

/// Named sets of defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum PatternPreset {
    /// Section 4.1: 1000 bits, 5 patterns (the default).
    Paper,
    /// The paper's comparison with RNN and LSTM: 50 bits, 2 patterns.
    Comparison50,
}

impl PatternConfig {
    /// The defaults of `preset`.
    pub fn preset(preset: PatternPreset) -> Self {
        match preset {
            PatternPreset::Paper => PatternConfig::default(),
            PatternPreset::Comparison50 => PatternConfig::comparison50(),
        }
    }

    /// The paper's comparison setting (section 4.1): 50 bits, 2 patterns, 1 cycle, 3 steps
    /// shown, 1 step gap, 3 test steps; RNN of 2051 neurons, LSTM of 2000 cells.
    pub fn comparison50() -> Self {
        PatternConfig {
            task: PatternFields {
                bits: 50,
                patterns: 2,
                rnn_neurons: 2051,
                ..PatternFields::default()
            },
            cycles: 1,
            present_steps: 3,
            gap_steps: 1,
            test_steps: 3,
            ..Self::default()
        }
    }

    /// A lower bound on the memory training needs (checked before anything is allocated).
    pub fn memory_estimate(&self) -> super::MemoryEstimate {
        let mut m = super::MemoryEstimate::default();
        let (steps, t) = (self.steps(), &self.task);
        let sized_by = match self.model {
            Model::Rnn if t.rnn_neurons > 0 => format!("rnn_neurons = {}", t.rnn_neurons),
            _ => format!("bits = {} ({} neurons)", t.bits, self.neurons()),
        };
        let (lstm, run) = ([t.bits + 1, self.lstm_cells], [self.batch, steps]);
        add_network_memory(&mut m, self.model, (sized_by, self.neurons()), lstm, run);
        m.add(
            format!("patterns = {} (the episodes' patterns)", t.patterns),
            4.0 * (self.batch as f64) * (t.patterns as f64 + steps as f64) * t.bits as f64,
        );
        m
    }
}

/// A batch of episodes: inputs and targets.
#[derive(Clone, Debug)]
pub struct PatternEpisodes {
    /// Unscaled inputs `[B, T, bits]` (+1, -1, 0).
    pub inputs: Vec<f32>,
    /// Test patterns `[B, bits]`.
    pub targets: Vec<f32>,
    /// Batch size, steps, bits.
    pub dims: [usize; 3],
}

/// Draws a pattern of `bits` values, exactly half +1 and half -1.
fn draw_pattern(bits: usize, rng: &mut impl Rng) -> Vec<f32> {
    let mut p: Vec<f32> = (0..bits)
        .map(|k| if k < bits / 2 { 1.0 } else { -1.0 })
        .collect();
    p.shuffle(rng);
    p
}

/// Generates `batch` episodes of the task.
pub fn generate(c: &PatternConfig, batch: usize, rng: &mut impl Rng) -> PatternEpisodes {
    let (dims, bits) = ([batch, c.steps(), c.task.bits], c.task.bits);
    let draw = |rng: &mut _| {
        (0..c.task.patterns)
            .map(|_| draw_pattern(bits, rng))
            .collect()
    };
    let degrade = |target: &[f32], rng: &mut _| {
        let mut degraded = target.to_vec();
        let zeroed = (bits as f64 * c.task.degraded_fraction).round() as usize;
        for k in rand::seq::index::sample(rng, bits, zeroed) {
            degraded[k] = 0.0;
        }
        degraded
    };
    let (inputs, targets) = c.schedule().episodes(dims, rng, draw, degrade);
    PatternEpisodes {
        inputs,
        targets,
        dims,
    }
}

/// The model of a pattern run.
pub type PatternModel = CompletionModel;

/// The pattern experiment: configuration plus the shared-loop hooks.
#[derive(Clone, Debug)]
pub struct PatternTask {
    /// Configuration.
    pub config: PatternConfig,
}

impl PatternTask {
    /// A task; fails with a message naming the field when the configuration is invalid.
    pub fn new(config: PatternConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(PatternTask { config })
    }

    /// Final-step outputs of the pattern neurons, `[B, bits]`.
    pub fn outputs(
        &self,
        model: &PatternModel,
        ep: &PatternEpisodes,
        device: &Device,
    ) -> Result<Tensor<2>, String> {
        let c = &self.config;
        let bits = ep.dims[2];
        match model {
            PatternModel::Plastic(net) | PatternModel::Rnn(net) => {
                // Neurons 0..bits get the pattern, neuron `bits` is the bias; any others are hidden.
                let scale = c.task.input_scale as f32;
                let x = with_bias(&ep.inputs, ep.dims, c.neurons(), scale, device);
                Ok(last_step(net.forward(x, None).map_err(|e| e.0)?.0, bits))
            }
            // Unscaled pattern plus a constant bias input.
            PatternModel::Lstm(net) => {
                Ok(net.last_output(with_bias(&ep.inputs, ep.dims, bits + 1, 1.0, device)))
            }
        }
    }
}

super::completion::completion_experiment!(PatternTask, "pattern", "error");

impl CompletionTask for PatternTask {
    /// The loss and the fraction of bits of wrong sign (the task has no held-out data).
    fn loss_and_metric(
        &self,
        model: &PatternModel,
        _training: bool,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(Tensor<1>, f64), String> {
        let ep = generate(&self.config, self.config.batch, rng);
        let [b, _, bits] = ep.dims;
        let out = self.outputs(model, &ep, device)?;
        let loss = squared_error(out.clone(), &ep.targets, device);
        let wrong = to_vec(out)
            .iter()
            .zip(&ep.targets)
            .filter(|(o, t)| (**o > 0.0) != (**t > 0.0))
            .count();
        Ok((loss, wrong as f64 / (b * bits) as f64))
    }
}
