//! Binary pattern memorisation and completion (ICML 2018, section 4.1).
//!
//! Each episode shows `patterns` random patterns of `bits` values (exactly half +1, half -1),
//! `cycles` times in a shuffled order, each for `present_steps` steps followed by `gap_steps`
//! steps of zero input; then one of them with half of its bits set to 0 for `test_steps` steps.
//! Inputs are multiplied by `input_scale`; a bias neuron always receives `input_scale`. The
//! loss is the sum of squared errors between the last step's activity of the pattern neurons
//! and the full test pattern; the metric `error` is the fraction of bits whose sign is wrong.

use super::completion::{add_network_memory, last_step, recurrent_net, squared_error, with_bias};
pub use super::completion::{CompletionModel, LstmNet};
use super::completion::{CompletionTask, Schedule};
pub use super::Model;
use crate::check::fields;
use crate::config::{NoOtherFields, PlasticityConfig};
use crate::layer::PlasticNetConfig;
use crate::tensors::to_vec;
use burn::tensor::{Device, Tensor};
use plasticity_kernels::InputMode;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Configuration of the pattern task; the defaults are the paper's (section 4.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PatternConfig {
    /// Bits per pattern.
    pub bits: usize,
    /// Patterns per episode.
    pub patterns: usize,
    /// Presentation cycles.
    pub cycles: usize,
    /// Steps each pattern is shown.
    pub present_steps: usize,
    /// Steps of zero input after each pattern.
    pub gap_steps: usize,
    /// Steps the degraded test pattern is shown.
    pub test_steps: usize,
    /// Fraction of the test pattern's bits set to 0.
    pub degraded_fraction: f64,
    /// Input multiplier (also the bias neuron's input).
    pub input_scale: f64,
    /// Episodes per update (the paper: 1).
    pub batch: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Adam epsilon.
    pub adam_epsilon: f64,
    /// Model.
    pub model: Model,
    /// The plastic network's rule, `alpha`, `eta`, initialisation, clip and backward (fields
    /// beside these in JSON).
    #[serde(flatten)]
    pub plasticity: PlasticityConfig,
    /// Neurons of the non-plastic RNN (`0`: `bits + 1`).
    pub rnn_neurons: usize,
    /// Cells of the LSTM.
    pub lstm_cells: usize,
    /// Refuses unknown fields.
    #[serde(flatten)]
    pub no_other_fields: NoOtherFields,
}

impl Default for PatternConfig {
    fn default() -> Self {
        PatternConfig {
            bits: 1000,
            patterns: 5,
            cycles: 2,
            present_steps: 6,
            gap_steps: 4,
            test_steps: 6,
            degraded_fraction: 0.5,
            input_scale: 20.0,
            batch: 1,
            learning_rate: 3e-4,
            adam_epsilon: 1e-8,
            model: Model::Plastic,
            plasticity: PlasticityConfig::default(),
            rnn_neurons: 0,
            lstm_cells: 2000,
            no_other_fields: NoOtherFields::default(),
        }
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
            bits: 50,
            patterns: 2,
            cycles: 1,
            present_steps: 3,
            gap_steps: 1,
            test_steps: 3,
            rnn_neurons: 2051,
            ..Self::default()
        }
    }

    /// Steps of an episode.
    pub fn steps(&self) -> usize {
        self.cycles * self.patterns * (self.present_steps + self.gap_steps) + self.test_steps
    }

    /// Neurons of the recurrent network for the chosen model (inputs + bias included).
    pub fn neurons(&self) -> usize {
        match self.model {
            Model::Rnn if self.rnn_neurons > 0 => self.rnn_neurons,
            _ => self.bits + 1,
        }
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        crate::check::model(self.model, super::completion::MODELS)?;
        fields!(self, count: [bits, patterns, cycles, present_steps, test_steps, batch, lstm_cells]);
        if !self.bits.is_multiple_of(2) {
            return Err(format!(
                "bits: must be even (half +1, half -1), got {}",
                self.bits
            ));
        }
        fields!(self, positive: [learning_rate, adam_epsilon]);
        fields!(self, unit_interval: [degraded_fraction], positive: [input_scale]);
        if self.model == Model::Rnn && self.rnn_neurons != 0 && self.rnn_neurons <= self.bits {
            return Err(format!(
                "rnn_neurons: must exceed bits ({}) to hold the inputs and the bias",
                self.bits
            ));
        }
        self.plastic_config().validate()
    }

    /// A lower bound on the memory training needs (checked before anything is allocated).
    pub fn memory_estimate(&self) -> super::MemoryEstimate {
        let mut m = super::MemoryEstimate::default();
        let steps = self.steps();
        let sized_by = match self.model {
            Model::Rnn if self.rnn_neurons > 0 => format!("rnn_neurons = {}", self.rnn_neurons),
            _ => format!("bits = {} ({} neurons)", self.bits, self.neurons()),
        };
        let (lstm, run) = ([self.bits + 1, self.lstm_cells], [self.batch, steps]);
        add_network_memory(&mut m, self.model, (sized_by, self.neurons()), lstm, run);
        m.add(
            format!("patterns = {} (the episodes' patterns)", self.patterns),
            4.0 * (self.batch as f64) * (self.patterns as f64 + steps as f64) * self.bits as f64,
        );
        m
    }

    fn schedule(&self) -> Schedule {
        let s = self;
        Schedule([s.cycles, s.present_steps, s.gap_steps, s.test_steps])
    }

    fn plastic_config(&self) -> PlasticNetConfig {
        let s = self;
        recurrent_net(s.model, s.neurons(), &s.plasticity, InputMode::Additive)
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
    let (dims, bits) = ([batch, c.steps(), c.bits], c.bits);
    let draw = |rng: &mut _| (0..c.patterns).map(|_| draw_pattern(bits, rng)).collect();
    let degrade = |target: &[f32], rng: &mut _| {
        let mut degraded = target.to_vec();
        let zeroed = (bits as f64 * c.degraded_fraction).round() as usize;
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
                let scale = c.input_scale as f32;
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

super::completion::completion_experiment!(PatternTask);

impl CompletionTask for PatternTask {
    const NAME: &'static str = "pattern";
    const METRICS: &'static [&'static str] = &["error"];

    fn networks(&self) -> (Model, PlasticNetConfig, [usize; 3]) {
        let c = &self.config;
        (
            c.model,
            c.plastic_config(),
            [c.bits + 1, c.lstm_cells, c.bits],
        )
    }

    fn adam(&self) -> (f64, f64) {
        (self.config.learning_rate, self.config.adam_epsilon)
    }

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
