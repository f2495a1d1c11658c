//! Natural-image memorisation and half-image completion (ICML 2018, section 4.2).
//!
//! Each episode shows `images` grey images (`side x side` pixels, normalised to `[-1, 1]`,
//! see [`crate::data::normalise`]) `cycles` times in an order shuffled each cycle, each for
//! `present_steps` steps followed by `gap_steps` steps of zero input; then one of them, with its
//! bottom half (pixels `P/2..P`, `P = side^2`) zeroed, or its top half (pixels `0..P/2`) with
//! probability `top_half_probability`, for `test_steps` steps. Paper defaults: 3 images, 3
//! cycles, 20 + 2 steps, 3 test steps: 201 steps.
//!
//! The plastic network has `N = P + 1` neurons: one per pixel plus a bias neuron whose input is
//! 1 at every step. Inputs are clamped ([`InputMode::Clamped`]): a neuron whose input is
//! non-zero outputs its input; the others (gap steps, the erased half, and any pixel whose
//! normalised value is exactly 0) run freely, `y_j = tanh(sum_i (w_ij + alpha_ij Hebb_ij) y_i)`.
//!
//! Loss and metric (per episode, averaged over the batch):
//! - the training loss is the paper's: the sum over all `P` pixels of the squared difference
//!   between the last step's output and the full test image. Clamped pixels output their own
//!   (correct) value, so they add 0 and the loss is, up to visible pixels that are exactly 0,
//!   the error on the erased half;
//! - the metric `erased_loss` (reported as `loss` by `eval`) is the same sum restricted to the
//!   `P/2` erased pixels. Predicting 0 for the erased half scores the sum of their squares
//!   (about 71 on CIFAR-10 images).
//!
//! Baselines use the same inputs and the same loss. `rnn`: the same clamped network with
//! `alpha = 0` (not plastic), `N^2` weights. `lstm`: an LSTM of `lstm_cells` cells fed the
//! `P` pixels and a constant 1, with a linear read-out to the `P` pixels and `tanh`; its output
//! is clamped like the plastic network's (visible pixels of the last step output their input),
//! so only the erased half is predicted.

use crate::check::fields;
use crate::data::ImageSet;
use crate::tensors::{from_vec, to_vec};
use burn::tensor::{Device, Tensor};
use plasticity_kernels::InputMode;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::completion::{add_network_memory, last_step, squared_error, with_bias};
use super::completion::{CompletionConfig, CompletionFields, CompletionModel, CompletionTask};
use super::Model;

/// Configuration of the image task; the defaults are the paper's (section 4.2).
pub type ImageConfig = CompletionConfig<ImageFields>;

/// The image task's own fields of [`ImageConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageFields {
    /// Side of the (square) images in pixels.
    pub side: usize,
    /// Images per episode.
    pub images: usize,
    /// Probability that the top half is erased (otherwise the bottom half).
    pub top_half_probability: f64,
}

impl Default for ImageFields {
    fn default() -> Self {
        ImageFields {
            side: 32,
            images: 3,
            top_half_probability: 0.5,
        }
    }
}

impl ImageFields {
    /// Pixels per image, `P = side^2`.
    pub fn pixels(&self) -> usize {
        self.side * self.side
    }
}

impl CompletionFields for ImageFields {
    const INPUT: InputMode = InputMode::Clamped;

    /// Section 4.2: 3 cycles of 20 + 2 steps, 3 test steps (201 steps with 3 images); Adam's
    /// rate 1e-4; an LSTM of 330 cells (2,130,184 parameters, more than the plastic
    /// network's 2,101,251).
    fn paper() -> ImageConfig {
        CompletionConfig::new(ImageFields::default(), [3, 20, 2, 3], 1e-4, 330)
    }

    /// The images and their pixels: the recurrent networks have one neuron per pixel plus the
    /// bias neuron (`P + 1`).
    fn shape(&self) -> [usize; 2] {
        [self.images, self.pixels()]
    }

    fn validate(&self, _: Model) -> Result<(), String> {
        fields!(self, count: [side, images]);
        if !self.pixels().is_multiple_of(2) {
            return Err(format!(
                "side: side^2 must be even (two halves), got side {}",
                self.side
            ));
        }
        fields!(self, unit_interval: [top_half_probability]);
        Ok(())
    }
}

impl ImageConfig {
    /// A lower bound on the memory training needs (checked before anything is allocated).
    pub fn memory_estimate(&self) -> super::MemoryEstimate {
        let mut m = super::MemoryEstimate::default();
        let side = format!("side = {} ({} neurons)", self.task.side, self.neurons());
        let (lstm, run) = (
            [self.neurons(), self.lstm_cells],
            [self.batch, self.steps()],
        );
        add_network_memory(&mut m, self.model, (side, self.neurons()), lstm, run);
        m
    }
}

/// A batch of episodes.
#[derive(Clone, Debug)]
pub struct ImageEpisodes {
    /// Pixel inputs `[B, T, P]` (the bias neuron's input is added by the models).
    pub inputs: Vec<f32>,
    /// The shown images `[B, images, P]`, in the order they were drawn.
    pub shown: Vec<f32>,
    /// The full test images `[B, P]`.
    pub targets: Vec<f32>,
    /// Whether each pixel of the test image is erased, `[B, P]`.
    pub erased: Vec<bool>,
    /// Batch size, steps, pixels.
    pub dims: [usize; 3],
}

/// Generates `batch` episodes from the images of `set` (three distinct images per episode).
/// `set` must hold at least `c.task.images` images of `c.task.side` pixels a side.
pub fn generate<R: Rng>(
    c: &ImageConfig,
    set: &ImageSet,
    batch: usize,
    rng: &mut R,
) -> ImageEpisodes {
    let (dims, p) = ([batch, c.steps(), c.task.pixels()], c.task.pixels());
    let mut shown = Vec::with_capacity(batch * c.task.images * p);
    let mut erased = Vec::with_capacity(batch * p);
    let draw = |rng: &mut R| {
        let picked = rand::seq::index::sample(rng, set.len(), c.task.images);
        let items: Vec<&[f32]> = picked.iter().map(|k| set.image(k)).collect();
        shown.extend(items.iter().flat_map(|item| item.iter()));
        items
    };
    let degrade = |target: &[f32], rng: &mut R| {
        let erase_top = rng.gen_bool(c.task.top_half_probability);
        let is_erased = |k: usize| (k < p / 2) == erase_top;
        erased.extend((0..p).map(is_erased));
        (0..p)
            .map(|k| if is_erased(k) { 0.0 } else { target[k] })
            .collect()
    };
    let (inputs, targets) = c.schedule().episodes(dims, rng, draw, degrade);
    ImageEpisodes {
        inputs,
        shown,
        targets,
        erased,
        dims,
    }
}

/// The model of an image run (its RNN is the clamped network with `plastic: false`: `y_t =
/// tanh(y_{t-1} w)` for free neurons, `y_t = x_t` for clamped ones).
pub type ImageModel = CompletionModel;

/// The image experiment: configuration, training and test images, and the shared-loop hooks.
#[derive(Clone, Debug)]
pub struct ImageTask {
    /// Configuration.
    pub config: ImageConfig,
    /// Training images.
    pub train: ImageSet,
    /// Held-out test images (disjoint from the training images).
    pub test: ImageSet,
}

impl ImageTask {
    /// A task; fails with a message naming the field or the data set when the configuration
    /// is invalid or a set is too small or has the wrong image size.
    pub fn new(config: ImageConfig, train: ImageSet, test: ImageSet) -> Result<Self, String> {
        config.validate()?;
        for (name, set) in [("training", &train), ("test", &test)] {
            if set.side != config.task.side {
                return Err(format!(
                    "{name} images are {0}x{0} but side is {1}",
                    set.side, config.task.side
                ));
            }
            if set.len() < config.task.images {
                return Err(format!(
                    "{name} images: {} image(s), an episode needs {} distinct ones",
                    set.len(),
                    config.task.images
                ));
            }
        }
        Ok(ImageTask {
            config,
            train,
            test,
        })
    }

    /// The reconstructed test images: the last step's output of the pixel neurons, `[B, P]`.
    pub fn outputs(
        &self,
        model: &ImageModel,
        ep: &ImageEpisodes,
        device: &Device,
    ) -> Result<Tensor<2>, String> {
        let [b, t, p] = ep.dims;
        // The pixels, then the bias neuron's constant 1.
        let x = with_bias(&ep.inputs, ep.dims, p + 1, 1.0, device);
        match model {
            ImageModel::Plastic(net) | ImageModel::Rnn(net) => {
                Ok(last_step(net.forward(x, None).map_err(|e| e.0)?.0, p))
            }
            ImageModel::Lstm(net) => {
                let predicted = net.last_output(x);
                // Clamp like the plastic network: visible pixels output their input.
                let x_last: Vec<f32> = ep.inputs[..]
                    .chunks(t * p)
                    .flat_map(|e| e[(t - 1) * p..].iter().copied())
                    .collect();
                let free: Vec<f32> = x_last
                    .iter()
                    .map(|&v| if v != 0.0 { 0.0 } else { 1.0 })
                    .collect();
                let x_last = from_vec(x_last, [b, p], device);
                let free = from_vec(free, [b, p], device);
                Ok(predicted * free + x_last)
            }
        }
    }

    /// Runs `batch` episodes on the images of `split`; returns the episodes, the training loss
    /// (sum over all pixels, mean over the batch) and the erased-half loss.
    pub fn run_episodes(
        &self,
        model: &ImageModel,
        split: crate::data::Split,
        batch: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(ImageEpisodes, Tensor<1>, Vec<f32>, f64), String> {
        let set = match split {
            crate::data::Split::Train => &self.train,
            crate::data::Split::Test => &self.test,
        };
        let ep = generate(&self.config, set, batch, rng);
        let b = ep.dims[0];
        let out = self.outputs(model, &ep, device)?;
        let loss = squared_error(out.clone(), &ep.targets, device);
        let recon = to_vec(out);
        let erased_loss = erased_loss(&recon, &ep.targets, &ep.erased) / b as f64;
        Ok((ep, loss, recon, erased_loss))
    }
}

/// Sum of squared errors over the erased pixels.
pub fn erased_loss(output: &[f32], target: &[f32], erased: &[bool]) -> f64 {
    output
        .iter()
        .zip(target)
        .zip(erased)
        .filter(|(_, &e)| e)
        .map(|((&o, &t), _)| ((o - t) as f64).powi(2))
        .sum()
}

super::completion::completion_experiment!(ImageTask, "images", "erased_loss");

impl CompletionTask for ImageTask {
    /// The loss and the erased-half loss, on training or test images.
    fn loss_and_metric(
        &self,
        model: &ImageModel,
        training: bool,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(Tensor<1>, f64), String> {
        let split = if training {
            crate::data::Split::Train
        } else {
            crate::data::Split::Test
        };
        let (_, loss, _, erased) =
            self.run_episodes(model, split, self.config.batch, rng, device)?;
        Ok((loss, erased))
    }
}
