//! One-shot classification of handwritten characters, Omniglot (ICML 2018, section 4.3).
//!
//! An episode draws `ways` characters from the training classes, each rotated by a random
//! multiple of 90 degrees (a rotated character is a new class); shows `shots` drawings of
//! each, with its label, in a random order (`ways x shots` support steps); then one *other*
//! drawing of one of them without its label (the query step). The network must output the
//! query's label.
//!
//! Model: 4 convolutions (3x3, stride 2, 64 channels, tanh: 31 -> 15 -> 7 -> 3 -> 1) give 64
//! features per image (burn `Conv2d` modules, run on the CPU as one fused operation,
//! [`conv_stack`]); a plastic output layer ([`PlasticDense`], Oja's rule, softmax) maps
//! them to `ways` outputs. At support steps the one-hot label times `label_clamp` (1000) is
//! added to the logits, so the softmax output is the label and the trace stores the
//! association between the image's features and its label. The loss is the binary
//! cross-entropy between the query's softmax output and its one-hot label (mean over the
//! outputs and the meta-batch); Adam.
//!
//! Splits ([`Split`]): the paper's (all 1,623 characters, `test_classes` = 100 random ones held
//! out, fixed by `split_seed`) or the standard one (background set for training, evaluation
//! set's unseen alphabets for testing).

use crate::check::fields;
use crate::config::{NoOtherFields, PlasticityConfig};
use crate::data::omniglot::{rotate90, Omniglot, OmniglotSet};
use crate::dense::{DenseActivation, PlasticDense, PlasticDenseConfig};
use crate::ops::{conv_stack, conv_stack_supported};
use crate::tensors::{from_vec, to_vec};
use crate::train::Experiment;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::optim::AdamConfig;
use burn::tensor::{Device, Tensor};
use plasticity_kernels::TraceRule;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which characters train and which test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Split {
    /// ICML 2018: all 1,623 characters of both sets; `test_classes` of them, drawn with
    /// `split_seed`, are held out for testing.
    Paper,
    /// Background set (30 alphabets) for training, evaluation set (20 other alphabets) for
    /// testing.
    Standard,
}

/// What the plastic layer sees of the convolutions' features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FeatureNorm {
    /// The `C` tanh features as they are (the paper).
    #[default]
    None,
    /// Not in the paper: each image's features scaled to Euclidean norm `sqrt(C)` (the norm
    /// of saturated tanh features), `x sqrt(C) / |x|`, so the plastic term `sum_i alpha_ij
    /// Hebb_ij x_i` compares directions (a cosine similarity to the stored support features)
    /// and no support image wins by the size of its features.
    L2,
}

/// Configuration of the Omniglot task; the defaults are the paper's (section 4.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OmniglotConfig {
    /// Classes per episode (N-way).
    pub ways: usize,
    /// Labelled drawings per class per episode (K-shot).
    pub shots: usize,
    /// Train/test split.
    pub split: Split,
    /// Seed of the paper split's held-out classes (shared by training and evaluation).
    pub split_seed: u64,
    /// Held-out characters of the paper split.
    pub test_classes: usize,
    /// Rotate each class by a random multiple of 90 degrees per episode.
    pub rotations: bool,
    /// Training-only augmentation, not in the paper: `0` (the paper) shows the drawings as
    /// they are; `s > 0` translates every training image (support and query alike, each
    /// its own draw) by `(dy, dx)` uniform in `[-s, s]^2` pixels, after the rotation, filling
    /// with paper (0). Evaluation never shifts. With `0` no random numbers are drawn, so runs
    /// without it are unchanged.
    pub max_shift: usize,
    /// Side of the resized images (`2^k - 1`: `k` stride-2 convolutions reduce it to 1).
    pub side: usize,
    /// Channels of every convolution (= features into the plastic layer).
    pub channels: usize,
    /// Training only, not in the paper (1): query steps per training episode. Each query is
    /// a separate paper episode that shares the support steps (their features are computed
    /// once): `queries` losses for `ways x shots + queries` images instead of one for
    /// `ways x shots + 1`. Evaluation always runs one query per episode.
    pub queries: usize,
    /// What the plastic layer sees of the features (the paper: [`FeatureNorm::None`]).
    pub feature_norm: FeatureNorm,
    /// Multiplier of the one-hot label added to the logits at support steps.
    pub label_clamp: f64,
    /// The plastic output layer's `rule`, `eta`, `learn_eta` and `init_std` (the standard
    /// deviation of the initial `w` and `alpha`); its `alpha` is one per connection, its trace
    /// is not clipped and its backward always recomputes from checkpoints, so `alpha`,
    /// `alpha_init_std`, `clip` and `backward` must stay at their defaults.
    #[serde(flatten)]
    pub plasticity: PlasticityConfig,
    /// Mean of the initial `alpha` (`alpha = alpha_init_mean + init_std N(0, 1)`). With
    /// `alpha` centred on 0 and `eta = 0.01` the plastic term starts ~1e-4 of the logits
    /// and a test run stayed at chance for its first 2,400 episodes; 0.5 (with `eta = 0.1`)
    /// starts learning at once.
    pub alpha_init_mean: f64,
    /// Convolution weights and biases start `U(-b, b)` with `b = conv_init_gain x sqrt(3 /
    /// fan_in)`. `1/sqrt(3)` (0.577) is PyTorch's default; with it the activations shrink by
    /// about 1/sqrt(3) per tanh layer and the 64 features start nearly identical for all
    /// images. The default 5/3 is the tanh gain of Kaiming/Xavier initialisation.
    pub conv_init_gain: f64,
    /// Episodes per update (the paper: 1). One metrics row and one Adam step per meta-batch.
    pub meta_batch: usize,
    /// Adam learning rate (the paper: 3e-5).
    pub learning_rate: f64,
    /// The learning rate is multiplied by this every `lr_decay_every` episodes (the paper:
    /// 0.666 every 1,000,000).
    pub lr_decay: f64,
    /// Episodes (not updates) between learning-rate decays.
    pub lr_decay_every: u64,
    /// `0` (the paper): the step decay above. Otherwise the learning rate follows a half
    /// cosine from `learning_rate` to 0 over this many episodes, `learning_rate x (1 +
    /// cos(pi x seen / lr_cosine_episodes)) / 2`, and `lr_decay` is not used: a schedule that
    /// ends with the budget (set it to the episodes the run will see).
    pub lr_cosine_episodes: u64,
    /// Adam epsilon.
    pub adam_epsilon: f64,
    /// Refuses unknown fields.
    #[serde(flatten)]
    pub no_other_fields: NoOtherFields,
}

impl Default for OmniglotConfig {
    fn default() -> Self {
        OmniglotConfig {
            ways: 5,
            shots: 1,
            split: Split::Paper,
            split_seed: 0,
            test_classes: 100,
            rotations: true,
            max_shift: 0,
            queries: 1,
            feature_norm: FeatureNorm::None,
            side: 31,
            channels: 64,
            label_clamp: 1000.0,
            plasticity: PlasticityConfig {
                rule: TraceRule::Oja,
                eta: 0.1,
                ..PlasticityConfig::default()
            },
            alpha_init_mean: 0.5,
            conv_init_gain: 5.0 / 3.0,
            meta_batch: 1,
            learning_rate: 3e-5,
            lr_decay: 0.666,
            lr_decay_every: 1_000_000,
            lr_cosine_episodes: 0,
            adam_epsilon: 1e-8,
            no_other_fields: NoOtherFields::default(),
        }
    }
}

impl OmniglotConfig {
    /// Steps per episode: `ways x shots` support steps and the query.
    pub fn steps(&self) -> usize {
        self.ways * self.shots + 1
    }

    /// Number of stride-2 3x3 convolutions that reduce `side` to 1.
    pub fn conv_layers(&self) -> usize {
        let (mut s, mut k) = (self.side, 0);
        while s > 1 {
            s = (s - 3) / 2 + 1;
            k += 1;
        }
        k
    }

    /// The sets a split reads.
    pub fn sets(&self) -> Vec<OmniglotSet> {
        vec![OmniglotSet::Background, OmniglotSet::Evaluation]
    }

    /// Learning rate of update `update` (0-based): `learning_rate x lr_decay^floor(episodes
    /// seen / lr_decay_every)`, episodes seen = `update x meta_batch`; or the half cosine of
    /// [`OmniglotConfig::lr_cosine_episodes`] (0 after its last episode).
    pub fn learning_rate_at(&self, update: u64) -> f64 {
        let seen = update.saturating_mul(self.meta_batch as u64);
        if self.lr_cosine_episodes > 0 {
            let frac = (seen as f64 / self.lr_cosine_episodes as f64).min(1.0);
            return self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos());
        }
        let k = seen / self.lr_decay_every.max(1);
        self.learning_rate * self.lr_decay.powi(k.min(i32::MAX as u64) as i32)
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        fields!(self, count: [ways, shots, channels, meta_batch, queries, test_classes]);
        if self.ways < 2 {
            return Err(format!("ways: must be at least 2 (got {})", self.ways));
        }
        if self.side < 3 || !(self.side + 1).is_power_of_two() {
            return Err(format!(
                "side: must be 2^k - 1 >= 3 so that stride-2 3x3 convolutions end at 1x1 (got {})",
                self.side
            ));
        }
        fields!(self, positive: [learning_rate, adam_epsilon, lr_decay, conv_init_gain]);
        fields!(self, count: [lr_decay_every]);
        if 2 * self.max_shift >= self.side {
            return Err(format!(
                "max_shift: must be less than half the image side {} (got {})",
                self.side, self.max_shift
            ));
        }
        fields!(self, non_negative: [label_clamp]);
        self.plasticity.validate()?;
        self.plasticity.unused(
            &PlasticityConfig::default(),
            &["alpha", "alpha_init_std", "clip", "backward"],
            "the plastic output layer",
        )?;
        self.dense_config().validate()
    }

    /// A lower bound on the memory training needs (checked before anything is allocated): the
    /// convolutions' weights with their gradients and Adam state, and the activity of one
    /// update's images through the first convolution (kept for the backward pass).
    pub fn memory_estimate(&self) -> super::MemoryEstimate {
        let mut m = super::MemoryEstimate::default();
        let c = self.channels as f64;
        m.add(
            format!("channels = {}", self.channels),
            4.0 * 4.0 * 9.0 * c * c * self.conv_layers() as f64,
        );
        let images = self.meta_batch as f64 * (self.ways * self.shots + self.queries) as f64;
        let side = self.side as f64;
        m.add(
            format!(
                "meta_batch = {}, ways = {}, shots = {}, queries = {} ({images} images a update)",
                self.meta_batch, self.ways, self.shots, self.queries
            ),
            4.0 * 2.0 * images * c * (side / 2.0).powi(2),
        );
        m
    }

    fn dense_config(&self) -> PlasticDenseConfig {
        PlasticDenseConfig {
            inputs: self.channels,
            outputs: self.ways,
            rule: self.plasticity.rule,
            activation: DenseActivation::Softmax,
            eta: self.plasticity.eta,
            learn_eta: self.plasticity.learn_eta,
            init_std: self.plasticity.init_std,
            alpha_mean: self.alpha_init_mean,
        }
    }
}

/// Character indices (into [`Omniglot::characters`]) for training and testing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassSplit {
    /// Training classes.
    pub train: Vec<usize>,
    /// Held-out classes.
    pub test: Vec<usize>,
}

/// One side of a [`ClassSplit`]: the classes an evaluation draws its episodes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ClassSet {
    /// The held-out classes (the test result).
    Test,
    /// The training classes, without the training shifts: with [`ClassSet::Test`] it gives
    /// the generalisation gap.
    Train,
}

impl ClassSplit {
    /// The sorted character indices of `set`.
    pub fn classes(&self, set: ClassSet) -> &[usize] {
        match set {
            ClassSet::Test => &self.test,
            ClassSet::Train => &self.train,
        }
    }
}

/// Splits the characters of `data` as `config.split` says. The paper split shuffles all
/// character indices with a ChaCha8 RNG seeded by `split_seed` and holds out the first
/// `test_classes`; both lists are returned sorted.
pub fn split_classes(config: &OmniglotConfig, data: &Omniglot) -> Result<ClassSplit, String> {
    let n = data.characters.len();
    let (mut train, mut test): (Vec<usize>, Vec<usize>) = match config.split {
        Split::Paper => {
            if config.test_classes >= n {
                return Err(format!(
                    "test_classes: {} held-out classes leave none of the {n} characters for training",
                    config.test_classes
                ));
            }
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(&mut ChaCha8Rng::seed_from_u64(config.split_seed));
            let test = all[..config.test_classes].to_vec();
            (all[config.test_classes..].to_vec(), test)
        }
        Split::Standard => (0..n).partition(|&k| data.characters[k].set == OmniglotSet::Background),
    };
    train.sort_unstable();
    test.sort_unstable();
    for (name, list) in [("training", &train), ("test", &test)] {
        if list.len() < config.ways {
            return Err(format!(
                "ways: {} classes per episode, but the {} split has only {} {name} classes",
                config.ways,
                serde_json::to_value(config.split)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                list.len()
            ));
        }
    }
    Ok(ClassSplit { train, test })
}

/// One step of an episode: which drawing is shown, rotated how, with which label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Character index in [`Omniglot::characters`].
    pub character: usize,
    /// Drawing index in the character's drawings.
    pub drawing: usize,
    /// Quarter turns (counter-clockwise) applied to the image.
    pub rotation: u8,
    /// Translation `(dy, dx)` in pixels applied after the rotation (`(0, 0)` unless
    /// [`EpisodeShape::max_shift`] > 0).
    pub shift: (i8, i8),
    /// Label (`0..ways`): shown at support steps, the target at the query step.
    pub label: usize,
}

/// A meta-batch of episodes.
#[derive(Clone, Debug)]
pub struct Episodes {
    /// Images `[B, T, side * side]`, ink in `[0, 1]`.
    pub images: Vec<f32>,
    /// Logit offsets `[B, T, ways]`: `label_clamp x one-hot label` at support steps, 0 at the query.
    pub clamp: Vec<f32>,
    /// Steps `[B][T]`; the last `queries` steps of each episode are its queries.
    pub steps: Vec<Vec<Step>>,
    /// `[B, T, ways]`, `T = ways x shots + queries`.
    pub dims: [usize; 3],
    /// Query steps per episode (1: the paper's episode).
    pub queries: usize,
}

impl Episodes {
    /// Query labels `[B x queries]` (episode-major).
    pub fn targets(&self) -> Vec<usize> {
        self.steps
            .iter()
            .flat_map(|s| s[s.len() - self.queries..].iter().map(|q| q.label))
            .collect()
    }
}

/// What an episode looks like: classes, drawings per class, rotations, shifts, label clamp.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpisodeShape {
    /// Classes per episode (N-way).
    pub ways: usize,
    /// Support drawings per class (K-shot).
    pub shots: usize,
    /// Rotate each class by a random multiple of 90 degrees.
    pub rotations: bool,
    /// Translate each image by up to this many pixels per axis (0: none, the paper).
    pub max_shift: usize,
    /// Multiplier of the one-hot label added to the logits at support steps.
    pub label_clamp: f32,
    /// Query steps after the support steps (1: the paper). Each query's class is drawn
    /// uniformly, its drawing differs from that class's support drawings and other queries.
    pub queries: usize,
}

/// Draws `batch` episodes of `shape.ways` classes from `classes` with `shape.shots` support
/// drawings each and `shape.queries` queries. Every class must have at least `shots +
/// queries` drawings (checked by [`OmniglotTask::new`] and `run_batch`).
pub fn generate(
    data: &Omniglot,
    classes: &[usize],
    shape: &EpisodeShape,
    batch: usize,
    rng: &mut impl Rng,
) -> Episodes {
    let EpisodeShape {
        ways,
        shots,
        rotations,
        max_shift,
        label_clamp,
        queries,
    } = *shape;
    let px = data.side * data.side;
    let t_len = ways * shots + queries;
    let mut images = Vec::with_capacity(batch * t_len * px);
    let mut clamp = vec![0.0f32; batch * t_len * ways];
    let mut all_steps = Vec::with_capacity(batch);
    let s = max_shift.min(i8::MAX as usize) as i8;
    let shift = |rng: &mut _| {
        if s == 0 {
            (0, 0)
        } else {
            (rng_shift(rng, s), rng_shift(rng, s))
        }
    };
    for b in 0..batch {
        let chosen = rand::seq::index::sample(rng, classes.len(), ways);
        let query_labels: Vec<usize> = (0..queries).map(|_| rng.gen_range(0..ways)).collect();
        let mut steps = Vec::with_capacity(t_len);
        let mut query_steps: Vec<(usize, Step)> = Vec::with_capacity(queries);
        for (label, k) in chosen.iter().enumerate() {
            let character = classes[k];
            let rotation = if rotations { rng.gen_range(0..4u8) } else { 0 };
            let n_draw = data.characters[character].drawings.len();
            let mine: Vec<usize> = (0..queries).filter(|&q| query_labels[q] == label).collect();
            let need = shots + mine.len();
            let drawings = rand::seq::index::sample(rng, n_draw, need).into_vec();
            for &drawing in &drawings[..shots] {
                steps.push(Step {
                    character,
                    drawing,
                    rotation,
                    shift: shift(rng),
                    label,
                });
            }
            // Sampled without replacement: a query differs from this class's support
            // drawings and from the class's other queries.
            for (&q, &drawing) in mine.iter().zip(&drawings[shots..]) {
                let step = Step {
                    character,
                    drawing,
                    rotation,
                    shift: shift(rng),
                    label,
                };
                query_steps.push((q, step));
            }
        }
        steps.shuffle(rng);
        query_steps.sort_by_key(|&(q, _)| q);
        steps.extend(query_steps.into_iter().map(|(_, step)| step));
        for (t, st) in steps.iter().enumerate() {
            let img = &data.characters[st.character].drawings[st.drawing].pixels;
            let rotated = rotate90(img, data.side, st.rotation);
            let moved = translate(&rotated, data.side, st.shift);
            images.extend(moved.iter().map(|&v| v as f32 / 255.0));
            if t < ways * shots {
                clamp[(b * t_len + t) * ways + st.label] = label_clamp;
            }
        }
        all_steps.push(steps);
    }
    Episodes {
        images,
        clamp,
        steps: all_steps,
        dims: [batch, t_len, ways],
        queries,
    }
}

/// A shift uniform in `[-s, s]` (a typed function: the closure in `generate` cannot name
/// its RNG's type).
fn rng_shift(rng: &mut impl Rng, s: i8) -> i8 {
    rng.gen_range(-s..=s)
}

/// `img` (`side x side`, row-major) moved down by `dy` and right by `dx` pixels; pixels
/// moved in from outside are 0 (paper).
pub fn translate(img: &[u8], side: usize, (dy, dx): (i8, i8)) -> Vec<u8> {
    if (dy, dx) == (0, 0) {
        return img.to_vec();
    }
    let mut out = vec![0u8; side * side];
    let (dy, dx, n) = (dy as isize, dx as isize, side as isize);
    for r in 0..n {
        let sr = r - dy;
        if !(0..n).contains(&sr) {
            continue;
        }
        for c in 0..n {
            let sc = c - dx;
            if (0..n).contains(&sc) {
                out[(r * n + c) as usize] = img[(sr * n + sc) as usize];
            }
        }
    }
    out
}

/// The network of section 4.3: convolutions, then a plastic output layer.
#[derive(Module, Debug)]
pub struct OmniglotNet {
    /// 3x3 stride-2 convolutions with tanh, `side -> 1`.
    pub convs: Vec<Conv2d>,
    /// Plastic output layer `channels -> ways`.
    pub plastic: PlasticDense,
    /// Normalisation of the features before the plastic layer.
    #[module(skip)]
    pub feature_norm: FeatureNorm,
}

impl OmniglotNet {
    /// Softmax outputs `[B, T, ways]` of `images: [B, T, side * side]` with logit offsets
    /// `clamp: [B, T, ways]`. `ways` may be smaller than the layer's outputs.
    pub fn forward(&self, images: Tensor<3>, clamp: Tensor<3>, side: usize) -> Tensor<3> {
        self.forward_with_logits(images, clamp, side).0
    }

    /// As [`Self::forward`], also returning the logits `[B, T, ways]` (clamp included).
    pub fn forward_with_logits(
        &self,
        images: Tensor<3>,
        clamp: Tensor<3>,
        side: usize,
    ) -> (Tensor<3>, Tensor<3>) {
        let ways = clamp.dims()[2];
        self.plastic
            .forward_with_logits(self.features(images, side), Some(clamp), ways)
    }

    /// Softmax outputs and logits `[B x Q, ways]` of the `Q = queries` query steps that end
    /// each episode of `images: [B, S + Q, side * side]` (`clamp: [B, S + Q, ways]`, zero at
    /// the queries): every query is run as its own episode, the `S` support steps followed
    /// by that query, with the support features computed once. `queries = 1` is
    /// [`Self::forward_with_logits`]'s last step.
    pub fn query_outputs(
        &self,
        images: Tensor<3>,
        clamp: Tensor<3>,
        side: usize,
        queries: usize,
    ) -> (Tensor<2>, Tensor<2>) {
        let [b, t, ways] = clamp.dims();
        let q = queries;
        let features = self.features(images, side); // [B, S + Q, C]
        let c = features.dims()[2];
        let support = t - q;
        let (x, offsets) = if q == 1 {
            (features, clamp)
        } else {
            let repeat = |x: Tensor<3>, width: usize| {
                // [B, S, width] -> [B x Q, S, width], each episode's support Q times.
                x.slice([0..b, 0..support, 0..width])
                    .unsqueeze_dim::<4>(1)
                    .expand([b, q, support, width])
                    .reshape([b * q, support, width])
            };
            let query_x = features
                .clone()
                .slice([0..b, support..t, 0..c])
                .reshape([b * q, 1, c]);
            let query_offsets =
                clamp
                    .clone()
                    .slice([0..b, support..t, 0..ways])
                    .reshape([b * q, 1, ways]);
            (
                Tensor::cat(vec![repeat(features, c), query_x], 1), // [B x Q, S + 1, C]
                Tensor::cat(vec![repeat(clamp, ways), query_offsets], 1),
            )
        };
        let (y, logits) = self.plastic.forward_with_logits(x, Some(offsets), ways);
        let n = y.dims()[0];
        let s1 = y.dims()[1];
        (
            y.slice([0..n, s1 - 1..s1, 0..ways]).reshape([n, ways]),
            logits.slice([0..n, s1 - 1..s1, 0..ways]).reshape([n, ways]),
        )
    }

    /// The plastic layer's inputs `[B, T, C]` for `images: [B, T, side * side]`: the
    /// convolutions' output, normalised as [`Self::feature_norm`] says.
    pub fn features(&self, images: Tensor<3>, side: usize) -> Tensor<3> {
        let [b, t, _] = images.dims();
        let mut x = images.reshape([b * t, 1, side, side]); // [B*T, 1, side, side]
        let fused = |conv: &Conv2d| {
            conv.stride == [2, 2]
                && conv.kernel_size == [3, 3]
                && conv.dilation == [1, 1]
                && conv.groups == 1
                && conv.padding == PaddingConfig2d::Valid
                && conv.bias.is_some()
        };
        if conv_stack_supported(&x.device()) && self.convs.iter().all(fused) {
            // One fused operation (im2col + one matrix product per layer, hand-written
            // backward), the same function as the loop below.
            let layers: Vec<(Tensor<4>, Tensor<1>)> = self
                .convs
                .iter()
                .filter_map(|conv| Some((conv.weight.val(), conv.bias.as_ref()?.val())))
                .collect();
            x = conv_stack(x, &layers).expect("shapes of 3x3 stride-2 convolutions");
        } else {
            for conv in &self.convs {
                x = conv.forward(x).tanh(); // [B*T, C, s', s']
            }
        }
        let c = x.dims()[1];
        let mut features = x.reshape([b, t, c]); // [B, T, C]
        if self.feature_norm == FeatureNorm::L2 {
            // x sqrt(C) / |x|; the 1e-12 only guards an all-zero feature vector.
            let norm = (features.clone().powf_scalar(2.0).sum_dim(2) + 1e-12).sqrt(); // [B, T, 1]
            features = features * (c as f64).sqrt() / norm;
        }
        features
    }
}

/// The Omniglot experiment: configuration, data and class split.
#[derive(Clone, Debug)]
pub struct OmniglotTask {
    /// Configuration.
    pub config: OmniglotConfig,
    /// The decoded characters.
    pub data: Arc<Omniglot>,
    /// Training and held-out classes.
    pub split: ClassSplit,
}

/// Outcome of a batch of episodes: loss `[1]`, query outputs and correct count.
struct BatchResult {
    loss: Tensor<1>,
    correct: usize,
    episodes: usize,
}

impl OmniglotTask {
    /// A task; fails with a message naming the field or character when the configuration
    /// does not fit the data.
    pub fn new(config: OmniglotConfig, data: Arc<Omniglot>) -> Result<Self, String> {
        config.validate()?;
        if data.side != config.side {
            return Err(format!(
                "side: images were resized to {}, configuration says {}",
                data.side, config.side
            ));
        }
        let split = split_classes(&config, &data)?;
        let train = split.train.iter().map(|&k| (k, config.queries.max(1)));
        for (k, queries) in train.chain(split.test.iter().map(|&k| (k, 1))) {
            let ch = &data.characters[k];
            if ch.drawings.len() < config.shots + queries {
                return Err(format!(
                    "shots, queries: {}/{}/{} has {} drawings, {}-shot episodes with {} \
                     queries need {}",
                    ch.set.dir_name(),
                    ch.alphabet,
                    ch.name,
                    ch.drawings.len(),
                    config.shots,
                    queries,
                    config.shots + queries
                ));
            }
        }
        Ok(OmniglotTask {
            config,
            data,
            split,
        })
    }

    /// Runs `batch` episodes of `ways`-way `shots`-shot from `classes`, images shifted by up
    /// to `max_shift` pixels (training augmentation; 0 for evaluation).
    #[allow(clippy::too_many_arguments)]
    fn run_batch(
        &self,
        model: &OmniglotNet,
        classes: &[usize],
        ways: usize,
        shots: usize,
        max_shift: usize,
        queries: usize,
        batch: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<BatchResult, String> {
        let c = &self.config;
        if ways > model.plastic.config().outputs {
            return Err(format!(
                "ways: the model has {} outputs, cannot run {ways}-way episodes",
                model.plastic.config().outputs
            ));
        }
        if ways < 2 {
            return Err(format!("ways: must be at least 2 (got {ways})"));
        }
        if classes.len() < ways {
            return Err(format!(
                "ways: {ways}-way episodes need {ways} classes, the split has {}",
                classes.len()
            ));
        }
        let min_drawings = classes
            .iter()
            .map(|&k| self.data.characters[k].drawings.len())
            .min()
            .unwrap_or(0);
        if min_drawings < shots + queries {
            return Err(format!(
                "shots, queries: {shots}-shot episodes with {queries} queries need {} drawings \
                 per class, some have {min_drawings}",
                shots + queries
            ));
        }
        let shape = EpisodeShape {
            ways,
            shots,
            rotations: c.rotations,
            max_shift,
            label_clamp: c.label_clamp as f32,
            queries,
        };
        let ep = generate(&self.data, classes, &shape, batch, rng);
        let [b, t, w] = ep.dims;
        let px = c.side * c.side;
        let images = from_vec(ep.images.clone(), [b, t, px], device);
        let clamp = from_vec(ep.clamp.clone(), [b, t, w], device);
        // [B x Q, ways] each
        let (query, query_logits) = model.query_outputs(images, clamp, c.side, queries);
        let targets = ep.targets();
        let b = b * queries;
        let mut onehot = vec![0.0f32; b * w];
        for (k, &l) in targets.iter().enumerate() {
            onehot[k * w + l] = 1.0;
        }
        let target = from_vec(onehot, [b, w], device);
        let bce = softmax_bce(query_logits, target);
        let out = to_vec(query);
        let correct = targets
            .iter()
            .enumerate()
            .filter(|(k, &l)| {
                let row = &out[k * w..(k + 1) * w];
                let best = (0..w)
                    .max_by(|&a, &z| row[a].total_cmp(&row[z]))
                    .expect("ways > 0");
                best == l
            })
            .count();
        Ok(BatchResult {
            loss: bce,
            correct,
            episodes: b,
        })
    }

    /// Accuracy on `episodes` fresh `ways`-way `shots`-shot episodes of the classes of `set`
    /// ([`ClassSet::Test`]: the held-out result), run `batch` at a time, images never shifted.
    /// Returns `(correct, episodes)`.
    /// Runs without autodiff (`model.valid()`) on the model's own device, whatever the
    /// device of the model passed in: evaluation memory stays flat in the episode count.
    #[allow(clippy::too_many_arguments)] // the episode shape and the RNG of the caller
    pub fn accuracy(
        &self,
        model: &OmniglotNet,
        set: ClassSet,
        episodes: u64,
        ways: usize,
        shots: usize,
        batch: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<(u64, u64), String> {
        let classes = self.split.classes(set);
        // Without autodiff: on an autodiff device every forward would record a graph that
        // nothing frees until a backward pass (memory grew ~0.4 MB per episode).
        let model = model.valid();
        let device = &model.plastic.eta.val().device();
        let mut done = 0u64;
        let mut correct = 0u64;
        while done < episodes {
            let n = (episodes - done).min(batch.max(1) as u64) as usize;
            let r = self.run_batch(&model, classes, ways, shots, 0, 1, n, rng, device)?;
            correct += r.correct as u64;
            done += r.episodes as u64;
        }
        Ok((correct, done))
    }

    /// `batch` training episodes as training draws them (training classes, shifted images,
    /// `queries` queries).
    fn training_batch(
        &self,
        model: &OmniglotNet,
        batch: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<BatchResult, String> {
        let c = &self.config;
        let classes = &self.split.train;
        let (ways, shots, shift, queries) = (c.ways, c.shots, c.max_shift, c.queries);
        self.run_batch(
            model, classes, ways, shots, shift, queries, batch, rng, device,
        )
    }

    /// Training-class accuracy helper for tests: `(correct, episodes)` on one batch.
    pub fn train_batch_accuracy(
        &self,
        model: &OmniglotNet,
        batch: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(usize, usize), String> {
        let r = self.training_batch(model, batch, rng, device)?;
        Ok((r.correct, r.episodes))
    }
}

/// Binary cross-entropy between `softmax(logits)` and `target` (both `[B, O]`), mean over
/// all `B x O` entries: `-mean(t log p + (1 - t) log(1 - p))`, computed from the logits:
/// `log p_j = l_j - LSE(l)`, `log(1 - p_j) = LSE_{k != j}(l_k) - LSE(l)` (LSE: log-sum-exp).
/// No clamping, so a confidently wrong output still has a gradient. Needs `O >= 2`.
pub fn softmax_bce(logits: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    let [b, o] = logits.dims();
    let device = logits.device();
    let lse = |x: Tensor<3>| -> Tensor<3> {
        // log-sum-exp over the last dimension, keeping it: [B, R, 1]
        let m = x.clone().max_dim(2).detach();
        (x - m.clone()).exp().sum_dim(2).log() + m
    };
    let l3 = logits.clone().unsqueeze_dim::<3>(1); // [B, 1, O]
    let all = lse(l3.clone()).reshape([b, 1]); // [B, 1]
    let mut mask = vec![0.0f32; o * o];
    for j in 0..o {
        mask[j * o + j] = -1e30; // row j leaves out output j
    }
    let mask = from_vec(mask, [1, o, o], &device);
    let others = lse(l3.expand([b, o, o]) + mask).reshape([b, o]); // [B, O]
    let log_p = logits - all.clone();
    let log_not_p = others - all;
    let ones = Tensor::<2>::ones([b, o], &device);
    (target.clone() * log_p + (ones - target) * log_not_p)
        .mean()
        .neg()
        .reshape([1])
}

/// Wilson score interval of a proportion `k / n` at 95% (`z = 1.96`): `(low, high)`.
///
/// `p = k/n`, `centre = (p + z^2/2n) / (1 + z^2/n)`,
/// `half = z / (1 + z^2/n) sqrt(p(1-p)/n + z^2/4n^2)`. Unlike the normal interval it stays
/// inside `[0, 1]` and is not empty at `p = 1`.
pub fn wilson_interval(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Uniform `[-bound, bound]` values from `rng`.
fn uniform(rng: &mut impl Rng, len: usize, bound: f64) -> Vec<f32> {
    (0..len)
        .map(|_| rng.gen_range(-bound..=bound) as f32)
        .collect()
}

impl Experiment for OmniglotTask {
    type Model = OmniglotNet;

    fn name(&self) -> &'static str {
        "omniglot"
    }

    fn metric_names(&self) -> &'static [&'static str] {
        &["accuracy"]
    }

    /// Convolutions: weights and biases `U(-b, b)`, `b = conv_init_gain x sqrt(3 / fan_in)`,
    /// fan_in = `in_channels x 9` (gain `1/sqrt(3)` is PyTorch's default), drawn from the
    /// run's RNG; then the plastic layer's `w`, `alpha` (`init_std x N(0, 1)`).
    fn init_model(&self, rng: &mut ChaCha8Rng, device: &Device) -> OmniglotNet {
        let c = &self.config;
        let mut convs = Vec::new();
        for k in 0..c.conv_layers() {
            let cin = if k == 0 { 1 } else { c.channels };
            let bound = c.conv_init_gain * (3.0 / (cin * 9) as f64).sqrt();
            let mut conv = Conv2dConfig::new([cin, c.channels], [3, 3])
                .with_stride([2, 2])
                .init(device);
            conv.weight = Param::from_tensor(from_vec(
                uniform(rng, c.channels * cin * 9, bound),
                [c.channels, cin, 3, 3],
                device,
            ));
            conv.bias = Some(Param::from_tensor(from_vec(
                uniform(rng, c.channels, bound),
                [c.channels],
                device,
            )));
            convs.push(conv);
        }
        OmniglotNet {
            convs,
            plastic: c.dense_config().init(rng, device),
            feature_norm: c.feature_norm,
        }
    }

    fn optimizer(&self) -> (AdamConfig, f64) {
        (
            AdamConfig::new().with_epsilon(self.config.adam_epsilon as f32),
            self.config.learning_rate,
        )
    }

    fn learning_rate(&self, update: u64) -> f64 {
        self.config.learning_rate_at(update)
    }

    fn train_batch(
        &self,
        model: &OmniglotNet,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(Tensor<1>, Vec<f64>), String> {
        let r = self.training_batch(model, self.config.meta_batch, rng, device)?;
        Ok((r.loss, vec![r.correct as f64 / r.episodes as f64]))
    }

    fn eval_batch(
        &self,
        model: &OmniglotNet,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Vec<f64>, String> {
        let c = &self.config;
        let r = self.run_batch(
            model,
            &self.split.test,
            c.ways,
            c.shots,
            0,
            1,
            c.meta_batch,
            rng,
            device,
        )?;
        Ok(vec![r.correct as f64 / r.episodes as f64])
    }
}
