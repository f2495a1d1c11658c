//! Word-level language modelling on Penn Treebank with plastic and neuromodulated LSTMs
//! (Miconi et al., ICLR 2019 "Backpropamine", section 4.3).
//!
//! The model: a word embedding `[V, E]` (tied to the decoder: `logits = h E^T + b`), a stack of
//! [`PlasticLstm`] layers (the last one has `E` units, the others `hidden`), dropout on the
//! embeddings, between layers and on the output (one mask per sequence and segment, shared by all
//! its steps). Three models ([`Model`]): a standard LSTM, a plastic LSTM and a neuromodulated
//! plastic LSTM; the plastic ones get the `hidden` size whose parameter count is closest to the
//! LSTM's, and must land within 1% of it ([`LmConfig::sizes`]).
//!
//! Training is truncated backpropagation through time over the training stream cut into `batch`
//! parallel sequences: one update (an "episode" of [`crate::train`]) is one segment of `bptt`
//! steps. The state (`h`, `c` and the traces) is carried from one segment to the next, detached
//! (no gradient crosses segments), and reset to zeros at the start of each epoch. Checkpoints
//! hold the carried state, so a resumed run, at an epoch boundary or mid-epoch, is exactly the
//! uninterrupted run (tested); a checkpoint written before the state was saved resumes with
//! the state restarted from zeros.
//!
//! Metrics (`metrics.csv`, one row per update): `train_perplexity` (`exp` of the segment's loss)
//! at every update, `valid_perplexity` and `perplexity` (test set) at the end of each epoch
//! (empty fields otherwise). Validation and test run through the whole stream with `eval_batch`
//! sequences, without dropout, the state carried across segments.

use crate::check::fields;
use crate::config::{NoOtherFields, PlasticityConfig};
use crate::data::ptb::Corpus;
use crate::lstm::{LstmState, PlasticLstm, PlasticLstmConfig, Plasticity};
use crate::tensors::{from_vec, to_vec};
use crate::train::Experiment;
use burn::module::{Module, Param};
use burn::optim::AdamConfig;
use burn::tensor::activation::log_softmax;
use burn::tensor::module::embedding;
use burn::tensor::{Device, Int, Tensor, TensorData};
use plasticity_kernels::AlphaShape;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::sync::Arc;

pub use super::Model;

/// The layers the language model can stack: standard LSTM, plastic LSTM (decaying Hebbian
/// trace, learned rate), neuromodulated plastic LSTM with simple (`modplast`) or retroactive
/// (`modul`) modulation (ICLR 2019 section 4.3).
pub const MODELS: &[Model] = &[Model::Lstm, Model::Plastic, Model::Modplast, Model::Modul];

/// Sizes and schedule presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LmPreset {
    /// Two layers of 200 units, for a small CPU (about 2.6M parameters, most in the embedding).
    Small,
    /// The paper's size (3 layers, 1150 units, 400-dimensional embedding, about 24M
    /// parameters; the AWD-LSTM sizes the paper builds on), for a big machine or a GPU.
    Paper,
}

/// Configuration of the language model and its training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LmConfig {
    /// The preset the other fields started from (recorded; the fields are what counts).
    pub preset: LmPreset,
    /// Model.
    pub model: Model,
    /// Recurrent layers.
    pub layers: usize,
    /// Embedding size `E` (also the last layer's units: the decoder is tied to the embedding).
    pub embedding: usize,
    /// Units of the other layers in the LSTM model; the plastic models get the size that
    /// matches the LSTM's parameter count (when `match_params`).
    pub hidden: usize,
    /// Match the plastic models' parameter count to the LSTM's by adjusting `hidden`.
    pub match_params: bool,
    /// Steps of truncated backpropagation through time (one update per segment).
    pub bptt: usize,
    /// Parallel training sequences.
    pub batch: usize,
    /// Parallel sequences when measuring validation and test perplexity.
    pub eval_batch: usize,
    /// Training epochs.
    pub epochs: u64,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// The learning rate is multiplied by this after each epoch.
    pub lr_decay: f64,
    /// Largest global gradient norm (larger gradients are scaled down).
    pub max_grad_norm: f64,
    /// Dropout on the embedded words.
    pub dropout_embedding: f64,
    /// Dropout between recurrent layers.
    pub dropout_hidden: f64,
    /// Dropout on the last layer's output.
    pub dropout_output: f64,
    /// The plastic layers' `alpha` shape (the paper's LSTM: per neuron), trace `clip` (the
    /// paper: 2; required) and initial `eta` (plastic) or `eta_E` (retroactive). The plastic
    /// LSTM's trace is decaying Hebb with a learned rate and it initialises itself, so `rule`,
    /// `learn_eta`, `init_std`, `alpha_init_std` and `backward` must stay at their defaults.
    #[serde(flatten)]
    pub plasticity: PlasticityConfig,
    /// Refuses unknown fields.
    #[serde(flatten)]
    pub no_other_fields: NoOtherFields,
}

/// Rewrites a language-model configuration (one with `bptt`) written before `modul` was a model
/// of its own (`"model": "modulated", "retroactive": true`) as today's (`"model": "modul"`),
/// dropping the `retroactive` flag; leaves any other JSON as it is (so another experiment's
/// configuration with a `retroactive` key is still refused as unknown).
pub fn upgrade_legacy_config(config: &mut serde_json::Value) {
    let Some(obj) = config.as_object_mut().filter(|o| o.contains_key("bptt")) else {
        return;
    };
    if let Some(retroactive) = obj.remove("retroactive") {
        if retroactive == serde_json::Value::Bool(true)
            && obj.get("model") == Some(&"modulated".into())
        {
            obj.insert("model".into(), "modul".into());
        }
    }
}

impl Default for LmConfig {
    fn default() -> Self {
        LmConfig::preset(LmPreset::Small, Model::Lstm)
    }
}

/// Parameter count of a model, by part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamCount {
    /// Units of the layers, first to last.
    pub layer_units: Vec<usize>,
    /// Parameters of the embedding (tied decoder) and the decoder bias.
    pub embedding: usize,
    /// Parameters of the recurrent layers.
    pub recurrent: usize,
    /// Total.
    pub total: usize,
}

impl LmConfig {
    /// The preset's configuration for `model`.
    pub fn preset(preset: LmPreset, model: Model) -> Self {
        let base = LmConfig {
            preset,
            model,
            layers: 2,
            embedding: 200,
            hidden: 200,
            match_params: true,
            bptt: 35,
            batch: 20,
            eval_batch: 10,
            epochs: 6,
            learning_rate: 2e-3,
            lr_decay: 0.85,
            max_grad_norm: 0.25,
            dropout_embedding: 0.1,
            dropout_hidden: 0.2,
            dropout_output: 0.25,
            plasticity: PlasticityConfig {
                alpha: AlphaShape::PerNeuron,
                clip: Some(2.0),
                eta: 0.1,
                ..PlasticityConfig::default()
            },
            no_other_fields: NoOtherFields::default(),
        };
        match preset {
            LmPreset::Small => base,
            LmPreset::Paper => LmConfig {
                layers: 3,
                embedding: 400,
                hidden: 1150,
                bptt: 70,
                batch: 80,
                epochs: 100,
                learning_rate: 1e-3,
                lr_decay: 0.98,
                dropout_hidden: 0.3,
                dropout_output: 0.4,
                ..base
            },
        }
    }

    /// Checks the configuration; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        crate::check::model(self.model, MODELS)?;
        fields!(self, count: [layers, embedding, hidden, bptt, batch, eval_batch, epochs]);
        fields!(self, below_one: [dropout_embedding, dropout_hidden, dropout_output]);
        fields!(self, positive: [learning_rate, lr_decay, max_grad_norm]);
        self.plasticity.validate()?;
        if self.plasticity.clip.is_none() {
            return Err("clip: the plastic LSTM needs one (the paper: 2)".into());
        }
        self.plasticity.unused(
            &PlasticityConfig::default(),
            &[
                "rule",
                "learn_eta",
                "init_std",
                "alpha_init_std",
                "backward",
            ],
            "the plastic LSTM",
        )
    }

    /// A lower bound on the memory training needs with a vocabulary of `vocabulary` words
    /// (checked before the model is allocated): the embedding and the layers with their
    /// gradients and Adam state, and one segment's logits and gates kept for the backward pass.
    pub fn memory_estimate(&self, vocabulary: usize) -> super::MemoryEstimate {
        let mut m = super::MemoryEstimate::default();
        let (v, e, h, l) = (
            vocabulary as f64,
            self.embedding as f64,
            self.hidden as f64,
            self.layers as f64,
        );
        let tokens = self.batch as f64 * self.bptt as f64;
        m.add(
            format!("embedding = {} ({vocabulary} words)", self.embedding),
            4.0 * 4.0 * v * e,
        );
        m.add(
            format!("hidden = {}, layers = {}", self.hidden, self.layers),
            4.0 * 4.0 * l * 4.0 * (h + h) * h,
        );
        m.add(
            format!(
                "batch = {}, bptt = {} (logits over {vocabulary} words, gates)",
                self.batch, self.bptt
            ),
            4.0 * 2.0 * tokens * (v + l * 8.0 * h),
        );
        m.add(
            format!("eval_batch = {}", self.eval_batch),
            4.0 * self.eval_batch as f64 * (v + l * 8.0 * h),
        );
        m
    }

    /// The layers' plasticity.
    pub fn layer_plasticity(&self) -> Plasticity {
        match self.model {
            // (`rnn` is no language model: `validate` refuses it.)
            Model::Lstm | Model::Rnn => Plasticity::None,
            Model::Plastic => Plasticity::Plastic,
            Model::Modplast => Plasticity::Modulated { retroactive: false },
            Model::Modul => Plasticity::Modulated { retroactive: true },
        }
    }

    fn layer_configs(&self, plasticity: Plasticity, hidden: usize) -> Vec<PlasticLstmConfig> {
        (0..self.layers)
            .map(|k| {
                let input = if k == 0 { self.embedding } else { hidden };
                let units = if k + 1 == self.layers {
                    self.embedding
                } else {
                    hidden
                };
                PlasticLstmConfig {
                    alpha: self.plasticity.alpha,
                    clip: self.plasticity.clip.unwrap_or(2.0),
                    eta: self.plasticity.eta,
                    ..PlasticLstmConfig::new(input, units, plasticity)
                }
            })
            .collect()
    }

    fn count(&self, plasticity: Plasticity, hidden: usize, vocab: usize) -> ParamCount {
        let layers = self.layer_configs(plasticity, hidden);
        let recurrent = layers.iter().map(PlasticLstmConfig::num_params).sum();
        let embedding = vocab * self.embedding + vocab;
        ParamCount {
            layer_units: layers.iter().map(|l| l.hidden).collect(),
            embedding,
            recurrent,
            total: embedding + recurrent,
        }
    }

    /// Parameter counts of the LSTM baseline and of this configuration's model, with the
    /// layers' configurations, for a vocabulary of `vocab` words. With `match_params`, a plastic
    /// model's `hidden` is the one (at most the LSTM's) whose total is closest to the LSTM's;
    /// an error when it is not within 1%.
    pub fn sizes(
        &self,
        vocab: usize,
    ) -> Result<(ParamCount, ParamCount, Vec<PlasticLstmConfig>), String> {
        let baseline = self.count(Plasticity::None, self.hidden, vocab);
        let plasticity = self.layer_plasticity();
        let hidden = if self.match_params && plasticity != Plasticity::None && self.layers > 1 {
            (1..=self.hidden)
                .min_by_key(|&h| {
                    let t = self.count(plasticity, h, vocab).total;
                    (t.abs_diff(baseline.total), usize::MAX - h)
                })
                .unwrap_or(self.hidden)
        } else {
            self.hidden
        };
        let own = self.count(plasticity, hidden, vocab);
        let gap = own.total.abs_diff(baseline.total) as f64 / baseline.total as f64;
        if self.match_params && gap > 0.01 {
            return Err(format!(
                "hidden: the {} model has {} parameters, {:.2}% away from the LSTM's {} \
                 (more than 1%); use more layers, a smaller alpha shape or match_params: false",
                serde_json::to_value(self.model)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                own.total,
                100.0 * gap,
                baseline.total
            ));
        }
        Ok((baseline, own, self.layer_configs(plasticity, hidden)))
    }
}

/// The language model: tied embedding, stacked (plastic) LSTM layers, decoder bias.
#[derive(Module, Debug)]
pub struct LmNet {
    /// Word embedding `[V, E]`, also the decoder's weights (`logits = h E^T + b`).
    pub embedding: Param<Tensor<2>>,
    /// Recurrent layers, first to last (the last has `E` units).
    pub layers: Vec<PlasticLstm>,
    /// Decoder bias `[V]`.
    pub decoder_bias: Param<Tensor<1>>,
}

/// Dropout probabilities of one forward pass (zeros: none).
#[derive(Clone, Copy, Debug, Default)]
struct Dropouts {
    embedding: f64,
    hidden: f64,
    output: f64,
}

/// A locked dropout mask `[B, 1, D]` (one per sequence, shared by every step of the segment),
/// scaled by `1 / (1 - p)`; `None` when `p` is 0.
fn dropout_mask(
    p: f64,
    b: usize,
    d: usize,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Option<Tensor<3>> {
    (p > 0.0).then(|| {
        let keep = (1.0 / (1.0 - p)) as f32;
        let v = (0..b * d)
            .map(|_| if rng.gen::<f64>() < p { 0.0 } else { keep })
            .collect();
        from_vec(v, [b, 1, d], device)
    })
}

impl LmNet {
    /// Mean cross-entropy (nats per word) of predicting `targets` from `inputs` (both `[B, T]`
    /// word ids, row-major), from `states` (`None`: zeros). Returns the loss `[1]` and the
    /// (detached) states after the segment. Dropout masks are drawn from `rng` when given.
    fn segment_loss(
        &self,
        inputs: &[u32],
        targets: &[u32],
        b: usize,
        t: usize,
        states: Option<Vec<LstmState>>,
        dropout: Option<(Dropouts, &mut ChaCha8Rng)>,
    ) -> Result<(Tensor<1>, Vec<LstmState>), String> {
        let weight = self.embedding.val();
        let device = weight.device();
        let [_, e] = weight.dims();
        let ids = |x: &[u32]| x.iter().map(|&i| i as i64).collect::<Vec<i64>>();
        let input: Tensor<2, Int> =
            Tensor::from_data(TensorData::new(ids(inputs), [b, t]), &device);
        let mut x = embedding(weight.clone(), input);
        let mut rng = dropout;
        let mut mask = |p: fn(&Dropouts) -> f64, d: usize| match &mut rng {
            Some((drop, r)) => dropout_mask(p(drop), b, d, r, &device),
            None => None,
        };
        if let Some(m) = mask(|d| d.embedding, e) {
            x = x * m;
        }
        let mut states_in: Vec<Option<LstmState>> = match states {
            Some(s) => s.into_iter().map(Some).collect(),
            None => vec![None; self.layers.len()],
        };
        let mut states_out = Vec::with_capacity(self.layers.len());
        let last = self.layers.len() - 1;
        for (k, layer) in self.layers.iter().enumerate() {
            let (hs, st) = layer
                .forward(x, states_in[k].take())
                .map_err(|e| e.to_string())?;
            states_out.push(st);
            x = hs;
            let units = layer.config().hidden;
            let p: fn(&Dropouts) -> f64 = if k == last {
                |d| d.output
            } else {
                |d| d.hidden
            };
            if let Some(m) = mask(p, units) {
                x = x * m;
            }
        }
        let logits = x.reshape([b * t, e]).matmul(weight.transpose())
            + self.decoder_bias.val().unsqueeze_dim(0);
        let logp = log_softmax(logits, 1);
        let target: Tensor<2, Int> =
            Tensor::from_data(TensorData::new(ids(targets), [b * t, 1]), &device);
        let nll = logp.gather(1, target).neg().mean();
        Ok((nll, states_out))
    }
}

/// A token stream cut into `batch` parallel sequences of `len` tokens each (row-major
/// `[batch, len]`; the tail that does not fill a row is dropped).
#[derive(Clone, Debug)]
pub struct Batched {
    /// Token ids, `[batch, len]`.
    pub ids: Vec<u32>,
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub len: usize,
}

impl Batched {
    /// Cuts `stream` into `batch` rows.
    pub fn new(stream: &[u32], batch: usize) -> Self {
        let len = stream.len() / batch.max(1);
        Batched {
            ids: stream[..len * batch].to_vec(),
            batch,
            len,
        }
    }

    /// Segments of at most `bptt` steps (each needs its next token as target).
    pub fn segments(&self, bptt: usize) -> usize {
        self.len.saturating_sub(1).div_ceil(bptt)
    }

    /// Inputs and targets of segment `k`, each `[batch, t]`, and `t`.
    pub fn segment(&self, k: usize, bptt: usize) -> (Vec<u32>, Vec<u32>, usize) {
        let start = k * bptt;
        let t = bptt.min(self.len - 1 - start);
        let mut inputs = Vec::with_capacity(self.batch * t);
        let mut targets = Vec::with_capacity(self.batch * t);
        for b in 0..self.batch {
            let row = &self.ids[b * self.len..(b + 1) * self.len];
            inputs.extend_from_slice(&row[start..start + t]);
            targets.extend_from_slice(&row[start + 1..start + t + 1]);
        }
        (inputs, targets, t)
    }
}

/// What the training carries from one update to the next.
#[derive(Debug, Default)]
struct Carry {
    /// Updates done before the current one.
    update: u64,
    /// Layers' states after the previous segment (`None`: zeros).
    states: Option<Vec<LstmState>>,
}

const CARRY_MAGIC: &[u8; 4] = b"LMC1";

/// The carried state as bytes: magic, `update` (u64), a flag for the states, then per layer
/// `h`, `c`, `Hebb`, `E`, each its rank (0: absent), dimensions (u64) and `f32` values
/// (little-endian).
fn encode_carry(update: u64, states: Option<&[LstmState]>) -> Vec<u8> {
    let mut out = CARRY_MAGIC.to_vec();
    out.extend_from_slice(&update.to_le_bytes());
    let Some(states) = states else {
        out.push(0);
        return out;
    };
    out.push(1);
    out.extend_from_slice(&(states.len() as u64).to_le_bytes());
    for st in states {
        put_tensor(&mut out, Some(&st.h));
        put_tensor(&mut out, Some(&st.c));
        put_tensor(&mut out, st.hebb.as_ref());
        put_tensor(&mut out, st.elig.as_ref());
    }
    out
}

/// Appends one optional tensor to [`encode_carry`]'s bytes: rank (0: absent), dimensions,
/// values.
fn put_tensor<const D: usize>(out: &mut Vec<u8>, t: Option<&Tensor<D>>) {
    let Some(t) = t else {
        out.push(0);
        return;
    };
    out.push(D as u8);
    for d in t.dims() {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    for v in to_vec(t.clone()) {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads [`encode_carry`]'s bytes, checking every shape against `batch` and the layers.
fn decode_carry(
    bytes: &[u8],
    batch: usize,
    layers: &[PlasticLstmConfig],
    device: &Device,
) -> Result<(u64, Option<Vec<LstmState>>), String> {
    let mut pos: usize = 0;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let part = bytes
            .get(pos..pos.checked_add(n).ok_or("bad length")?)
            .ok_or("truncated")?;
        pos += n;
        Ok(part)
    };
    if take(4)? != CARRY_MAGIC {
        return Err("unknown format".into());
    }
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let update = u64_at(take(8)?);
    if take(1)?[0] == 0 {
        return Ok((update, None));
    }
    let count = u64_at(take(8)?);
    if count != layers.len() as u64 {
        return Err(format!("{count} layers, the model has {}", layers.len()));
    }
    let mut states = Vec::with_capacity(layers.len());
    for (k, layer) in layers.iter().enumerate() {
        let h = layer.hidden;
        let mut tensor = |want: &[usize], name: &str| -> Result<Option<Vec<f32>>, String> {
            let rank = take(1)?[0] as usize;
            if rank == 0 {
                return Ok(None);
            }
            let dims = (0..rank)
                .map(|_| take(8).map(|b| u64_at(b) as usize))
                .collect::<Result<Vec<_>, _>>()?;
            if dims != want {
                return Err(format!(
                    "layer {k} {name}: shape {dims:?}, the model needs {want:?}"
                ));
            }
            let len: usize = want.iter().product();
            let raw = take(len.checked_mul(4).ok_or("bad length")?)?;
            Ok(Some(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
            ))
        };
        let vec2 = |v: Vec<f32>| from_vec(v, [batch, h], device);
        let vec3 = |v: Vec<f32>| from_vec(v, [batch, h, h], device);
        let hs = tensor(&[batch, h], "h")?.ok_or(format!("layer {k}: h missing"))?;
        let cs = tensor(&[batch, h], "c")?.ok_or(format!("layer {k}: c missing"))?;
        let hebb = tensor(&[batch, h, h], "Hebb")?.map(vec3);
        let elig = tensor(&[batch, h, h], "E")?.map(vec3);
        states.push(LstmState {
            h: vec2(hs),
            c: vec2(cs),
            hebb,
            elig,
        });
    }
    if pos != bytes.len() {
        return Err("trailing bytes".into());
    }
    Ok((update, Some(states)))
}

/// The language-modelling experiment.
#[derive(Debug)]
pub struct LmTask {
    /// Configuration.
    pub config: LmConfig,
    /// The corpus (shared with the caller).
    pub corpus: Arc<Corpus>,
    layers: Vec<PlasticLstmConfig>,
    train: Batched,
    carry: RefCell<Carry>,
}

impl LmTask {
    /// Checks the configuration against the corpus and prepares the batched training stream.
    pub fn new(config: LmConfig, corpus: Arc<Corpus>) -> Result<Self, String> {
        config.validate()?;
        let (_, _, layers) = config.sizes(corpus.vocab.len())?;
        let train = Batched::new(&corpus.train, config.batch);
        if train.segments(config.bptt) == 0 {
            return Err(format!(
                "batch: the training stream ({} words) is too short for {} sequences",
                corpus.train.len(),
                config.batch
            ));
        }
        for (name, s) in [("valid", &corpus.valid), ("test", &corpus.test)] {
            if Batched::new(s, config.eval_batch).segments(config.bptt) == 0 {
                return Err(format!(
                    "eval_batch: the {name} stream ({} words) is too short for {} sequences",
                    s.len(),
                    config.eval_batch
                ));
            }
        }
        Ok(LmTask {
            config,
            corpus,
            layers,
            train,
            carry: RefCell::new(Carry::default()),
        })
    }

    /// Updates (segments) per epoch.
    pub fn segments_per_epoch(&self) -> u64 {
        self.train.segments(self.config.bptt) as u64
    }

    /// Updates of the whole run: `epochs` x segments per epoch.
    pub fn total_updates(&self) -> u64 {
        self.config.epochs * self.segments_per_epoch()
    }

    /// Parameter counts of the LSTM baseline and of this model.
    pub fn param_counts(&self) -> (ParamCount, ParamCount) {
        let (a, b, _) = self
            .config
            .sizes(self.corpus.vocab.len())
            .expect("checked by LmTask::new");
        (a, b)
    }

    /// Perplexity of `model` on `stream` (no dropout, no gradient, state carried across
    /// segments of `bptt` steps over `eval_batch` sequences).
    pub fn perplexity(&self, model: &LmNet, stream: &[u32]) -> Result<f64, String> {
        let model = model.valid();
        let data = Batched::new(stream, self.config.eval_batch);
        let mut states = None;
        let (mut nll, mut count) = (0.0f64, 0usize);
        for k in 0..data.segments(self.config.bptt) {
            let (inputs, targets, t) = data.segment(k, self.config.bptt);
            let (loss, st) = model.segment_loss(&inputs, &targets, data.batch, t, states, None)?;
            let n = data.batch * t;
            nll += loss.into_scalar::<f32>() as f64 * n as f64;
            count += n;
            states = Some(st);
        }
        Ok((nll / count.max(1) as f64).exp())
    }
}

impl Experiment for LmTask {
    type Model = LmNet;

    fn name(&self) -> &'static str {
        "lm"
    }

    fn metric_names(&self) -> &'static [&'static str] {
        &["perplexity", "valid_perplexity", "train_perplexity"]
    }

    fn init_model(&self, rng: &mut ChaCha8Rng, device: &Device) -> LmNet {
        let (v, e) = (self.corpus.vocab.len(), self.config.embedding);
        // The embedding as in AWD-LSTM: U(-0.1, 0.1); the decoder bias starts at 0.
        let emb = (0..v * e)
            .map(|_| (0.1 * (rng.gen::<f64>() * 2.0 - 1.0)) as f32)
            .collect();
        let layers = self.layers.iter().map(|c| c.init(rng, device)).collect();
        LmNet {
            embedding: Param::from_tensor(from_vec(emb, [v, e], device)),
            layers,
            decoder_bias: Param::from_tensor(Tensor::zeros([v], device)),
        }
    }

    fn optimizer(&self) -> (AdamConfig, f64) {
        (AdamConfig::new(), self.config.learning_rate)
    }

    fn learning_rate(&self, update: u64) -> f64 {
        let epoch = update / self.segments_per_epoch();
        self.config.learning_rate * self.config.lr_decay.powi(epoch.min(i32::MAX as u64) as i32)
    }

    fn max_grad_norm(&self) -> Option<f64> {
        Some(self.config.max_grad_norm)
    }

    fn before_update(&self, update: u64) {
        let mut carry = self.carry.borrow_mut();
        if carry.update != update {
            // A resume (or a jump): the carried state does not belong to this segment.
            carry.states = None;
        }
        carry.update = update;
    }

    fn train_batch(
        &self,
        model: &LmNet,
        rng: &mut ChaCha8Rng,
        _device: &Device,
    ) -> Result<(Tensor<1>, Vec<f64>), String> {
        let c = &self.config;
        let mut carry = self.carry.borrow_mut();
        let k = (carry.update % self.segments_per_epoch()) as usize;
        let states = if k == 0 { None } else { carry.states.take() };
        let (inputs, targets, t) = self.train.segment(k, c.bptt);
        let drop = Dropouts {
            embedding: c.dropout_embedding,
            hidden: c.dropout_hidden,
            output: c.dropout_output,
        };
        let (loss, st) = model.segment_loss(
            &inputs,
            &targets,
            self.train.batch,
            t,
            states,
            Some((drop, rng)),
        )?;
        carry.states = Some(st.into_iter().map(LstmState::detach).collect());
        carry.update += 1;
        let value = loss.clone().into_scalar::<f32>() as f64;
        Ok((loss, vec![f64::NAN, f64::NAN, value.exp()]))
    }

    fn after_update(
        &self,
        model: &LmNet,
        update: u64,
        metrics: &mut [f64],
        _device: &Device,
    ) -> Result<(), String> {
        if update.is_multiple_of(self.segments_per_epoch()) {
            metrics[0] = self.perplexity(model, &self.corpus.test)?;
            metrics[1] = self.perplexity(model, &self.corpus.valid)?;
        }
        Ok(())
    }

    /// The carried state: the update count and every layer's `h`, `c` and traces.
    fn save_carry(&self) -> Vec<u8> {
        let carry = self.carry.borrow();
        encode_carry(carry.update, carry.states.as_deref())
    }

    fn load_carry(&self, bytes: &[u8], update: u64, device: &Device) -> Result<(), String> {
        if bytes.is_empty() {
            // A checkpoint written before the state was saved: restart it from zeros.
            return Ok(());
        }
        let (saved, states) = decode_carry(bytes, self.train.batch, &self.layers, device)?;
        if saved != update {
            return Err(format!(
                "the state is of update {saved}, the checkpoint of update {update}"
            ));
        }
        *self.carry.borrow_mut() = Carry { update, states };
        Ok(())
    }

    /// The whole test and validation sets (the same at every call; `rng` is unused).
    fn eval_batch(
        &self,
        model: &LmNet,
        _rng: &mut ChaCha8Rng,
        _device: &Device,
    ) -> Result<Vec<f64>, String> {
        Ok(vec![
            self.perplexity(model, &self.corpus.test)?,
            self.perplexity(model, &self.corpus.valid)?,
            f64::NAN,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::{upgrade_legacy_config, LmConfig, Model};
    use serde_json::json;

    #[test]
    fn an_old_retroactive_run_reads_as_modul() {
        let mut old = serde_json::to_value(LmConfig::default()).unwrap();
        old["model"] = json!("modulated");
        old["retroactive"] = json!(true);
        let mut simple = old.clone();
        simple["retroactive"] = json!(false);
        upgrade_legacy_config(&mut old);
        upgrade_legacy_config(&mut simple);
        let read = |v| serde_json::from_value::<LmConfig>(v).unwrap().model;
        assert_eq!(read(old), Model::Modul);
        assert_eq!(read(simple), Model::Modplast);
        let mut other = json!({"model": "modul", "eta": 0.1});
        upgrade_legacy_config(&mut other);
        assert_eq!(other, json!({"model": "modul", "eta": 0.1}));
        let pattern = json!({"model": "plastic", "retroactive": true});
        let mut kept = pattern.clone();
        upgrade_legacy_config(&mut kept);
        assert_eq!(kept, pattern, "not a language model: left to be refused");
    }
}
