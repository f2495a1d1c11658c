//! The training loop every experiment shares, and its run directory.
//!
//! A run directory holds `config.json` (the resolved configuration and the seed),
//! `metrics.csv` (`update,loss,<metrics...>,seconds`) and `checkpoint.bin` (parameters,
//! optimizer state, update counter, RNG state and the experiment's carried state, written to a
//! temporary file and renamed). Beside it, `weights.safetensors` holds the trained parameters
//! for other tools (see [`crate::weights`]); a resume reads only `checkpoint.bin`.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Parameters of `module` that are trained (take a gradient), e.g. without the fixed
/// `alpha = 0` of a non-plastic network. `module` must live on an autodiff device.
pub fn trainable_params<M: Module>(module: &M) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            if t.is_require_grad() {
                self.0 += t.shape().num_elements();
            }
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}

/// An experiment plugs into the shared loop: its model, its episodes, its metrics.
pub trait Experiment {
    /// The trained model.
    type Model: Module + Clone + fmt::Debug;
    /// Name used in outputs (`pattern`, `images`...).
    fn name(&self) -> &'static str;
    /// Names of the metric columns, as in `eval --json` (e.g. `["error"]`). Default: none (the
    /// loss only).
    fn metric_names(&self) -> &'static [&'static str] {
        &[]
    }
    /// Builds a fresh model from the run's RNG.
    fn init_model(&self, rng: &mut ChaCha8Rng, device: &Device) -> Self::Model;
    /// Adam settings and learning rate.
    fn optimizer(&self) -> (AdamConfig, f64);
    /// Learning rate of update `update` (0-based); default: constant, `optimizer().1`.
    fn learning_rate(&self, update: u64) -> f64 {
        let _ = update;
        self.optimizer().1
    }
    /// Samples one training batch of episodes (one update's worth) and returns the loss `[1]` and
    /// the metrics.
    fn train_batch(
        &self,
        model: &Self::Model,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(Tensor<1>, Vec<f64>), String>;
    /// Largest global L2 norm of the gradients (all parameters together); larger gradients are
    /// scaled down to it before the optimizer step. `None` (the default): no clipping.
    fn max_grad_norm(&self) -> Option<f64> {
        None
    }
    /// Called before each update with the number of updates done so far (also the
    /// first one after a resume), for experiments that walk through a data set in order (the
    /// language model). Default: nothing.
    fn before_update(&self, update: u64) {
        let _ = update;
    }
    /// Called after update `update` (1-based) with the updated model and the update's metrics,
    /// for metrics measured only now and then (the language model's validation and test
    /// perplexity at the end of each epoch). A metric that is `NaN` is written to `metrics.csv`
    /// as an empty field (not measured at this update). Default: nothing.
    fn after_update(
        &self,
        model: &Self::Model,
        update: u64,
        metrics: &mut [f64],
        device: &Device,
    ) -> Result<(), String> {
        let _ = (model, update, metrics, device);
        Ok(())
    }
    /// State the experiment carries from one update to the next besides the model, the
    /// optimizer and the RNG (the language model's LSTM states between segments), as bytes for
    /// the checkpoint, so that a resumed run equals the uninterrupted one. Default: none.
    fn save_carry(&self) -> Vec<u8> {
        Vec::new()
    }
    /// Restores what [`Experiment::save_carry`] returned when the checkpoint of update `update`
    /// (its count of updates done) was written; called once at a resume, before the first
    /// update. An error is a corrupt checkpoint. Default: nothing to restore.
    fn load_carry(&self, bytes: &[u8], update: u64, device: &Device) -> Result<(), String> {
        let _ = (bytes, update, device);
        Ok(())
    }
    /// Runs one evaluation batch (held-out data where the task has it); returns the metrics.
    fn eval_batch(
        &self,
        model: &Self::Model,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Vec<f64>, String>;
}

/// Failure of a run.
#[derive(Debug)]
pub enum TrainError {
    /// Bad configuration, data or files (exit code 2).
    Usage(String),
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    NonFinite {
        /// Update at which the loss was not finite.
        update: u64,
        /// Update of the checkpoint that was kept (0: none).
        checkpoint: u64,
    },
    /// Training diverged (a metric became infinite, or the loss grew far above its first
    /// value) though the loss stayed finite; the last good checkpoint is kept.
    Diverged {
        /// Update at which it was detected.
        update: u64,
        /// What was seen (e.g. `train_perplexity is inf`).
        reason: String,
        /// Update of the checkpoint that was kept (0: none).
        checkpoint: u64,
    },
    /// An update failed: the experiment's `train_batch` or `after_update` returned an error
    /// (a GPU driver error, a failed rollout); the last good checkpoint is kept.
    Failed {
        /// Update that failed.
        update: u64,
        /// The experiment's error.
        reason: String,
        /// Update of the checkpoint that was kept (0: none).
        checkpoint: u64,
    },
    /// Other failure (exit code 1).
    Other(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Usage(m) | TrainError::Other(m) => f.write_str(m),
            TrainError::NonFinite { update, checkpoint } => write!(
                f,
                "loss is NaN or infinite at update {update}; stopped. {}",
                kept(*checkpoint)
            ),
            TrainError::Diverged {
                update,
                reason,
                checkpoint,
            } => write!(
                f,
                "training diverged at update {update} ({reason}); stopped. {}",
                kept(*checkpoint)
            ),
            TrainError::Failed {
                update,
                reason,
                checkpoint,
            } => write!(
                f,
                "update {update} failed: {reason}; stopped. {}",
                kept(*checkpoint)
            ),
        }
    }
}

impl std::error::Error for TrainError {}

/// What a stopped run keeps: its last checkpoint, or (none written yet) only its
/// configuration and metrics.
fn kept(checkpoint: u64) -> String {
    if checkpoint > 0 {
        format!("The last good checkpoint (update {checkpoint}) is kept")
    } else {
        "No checkpoint had been written yet: the run directory keeps config.json and metrics.csv only (nothing to resume)".into()
    }
}

/// Set (by a signal handler, see the CLI) to ask a running [`train`] to stop after the current
/// update: it writes a checkpoint and returns with [`Summary::stopped_by_signal`]. Storing
/// into an atomic is async-signal-safe.
pub static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// A loss larger than this many times its first value (at least 1) in absolute value counts as
/// divergence (e.g. a language model with a far too large learning rate, whose loss reaches
/// 1e12 while staying finite).
pub const DIVERGENCE_FACTOR: f64 = 1e6;

fn io_err(path: &Path, e: impl fmt::Display) -> TrainError {
    TrainError::Usage(format!("{}: {e}", path.display()))
}

/// Options of a training run (the experiment's own configuration lives in the experiment).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Updates (optimiser steps) of the run.
    pub updates: u64,
    /// Seed of the run's RNG (initialisation and episodes).
    pub seed: u64,
    /// Run directory.
    pub out: PathBuf,
    /// Continue from the checkpoint in `out`.
    pub resume: bool,
    /// Updates between checkpoints.
    pub checkpoint_every: u64,
    /// Wall-clock budget in seconds, counting the time before a resume: the run checkpoints
    /// and stops after the first update that reaches it (`None`: no limit).
    pub time_limit: Option<f64>,
}

/// What the progress callback sees after each update.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Updates done.
    pub update: u64,
    /// Updates in the run.
    pub total: u64,
    /// Loss of this update.
    pub loss: f64,
    /// Mean of each metric over the last (up to) 50 updates.
    pub running: Vec<f64>,
}

/// The RNG state in a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RngState {
    seed: [u8; 32],
    stream: u64,
    word_pos: u128,
}

impl RngState {
    fn of(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos(),
        }
    }
    fn restore(&self) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos);
        rng
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointHeader {
    experiment: String,
    /// Updates done (named "episode" in older checkpoints, still read).
    #[serde(alias = "episode")]
    update: u64,
    seconds: f64,
    rng: RngState,
}

/// Checkpoint format 2: header, model, optimizer, the experiment's carried state.
const MAGIC: &[u8; 8] = b"PLSTCKP2";
/// Format 1 (before the carried state), still read: header, model, optimizer.
const MAGIC_V1: &[u8; 8] = b"PLSTCKP1";

/// FNV-1a, to detect a corrupt or truncated checkpoint.
fn checksum(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
/// A temporary file left by an earlier failure (a full disk, a kill) is replaced, even when it
/// cannot be opened for writing; a failed write removes its temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    if let Ok(meta) = fs::symlink_metadata(&tmp) {
        let removed = if meta.is_dir() {
            fs::remove_dir_all(&tmp)
        } else {
            fs::remove_file(&tmp)
        };
        removed.map_err(|e| {
            io_err(
                &tmp,
                format!("cannot remove this stale temporary file: {e}"),
            )
        })?;
    }
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path, e)
    })
}

fn save_checkpoint<M: Module>(
    path: &Path,
    header: &CheckpointHeader,
    model: &M,
    optim: &ModuleOptimizer,
    carry: &[u8],
) -> Result<(), TrainError> {
    let head = serde_json::to_vec(header).map_err(|e| TrainError::Other(e.to_string()))?;
    let model_bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::Other(format!("saving model: {e:?}")))?;
    let optim_bytes = optim
        .to_record()
        .into_bytes()
        .map_err(|e| TrainError::Other(format!("saving optimizer: {e:?}")))?;
    let parts: [&[u8]; 4] = [&head, &model_bytes, &optim_bytes, carry];
    let mut out = Vec::with_capacity(64 + parts.iter().map(|p| p.len()).sum::<usize>());
    out.extend_from_slice(MAGIC);
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    out.extend_from_slice(&checksum(&parts).to_le_bytes());
    write_atomic(path, &out)
}

/// Writes the parameters of `model` to `weights.safetensors` in run directory `dir`
/// (atomically), with the run's configuration `config` (JSON), the update counter `update` and
/// the experiment's name in its metadata (`config`, `update`, `experiment`).
fn save_weights<M: Module>(
    dir: &Path,
    experiment: &str,
    config: &str,
    update: u64,
    model: &M,
) -> Result<(), TrainError> {
    let metadata = std::collections::HashMap::from([
        ("config".to_string(), config.to_string()),
        ("update".to_string(), update.to_string()),
        ("experiment".to_string(), experiment.to_string()),
    ]);
    let bytes = crate::weights::to_safetensors(model, metadata)
        .map_err(|e| TrainError::Other(format!("saving weights: {e}")))?;
    write_atomic(&dir.join(crate::weights::WEIGHTS_FILE), &bytes)
}

/// A checkpoint read back: header, model bytes, optimizer bytes, carried state (empty in a
/// format-1 checkpoint).
struct Checkpoint {
    header: CheckpointHeader,
    model: Vec<u8>,
    optim: Vec<u8>,
    carry: Vec<u8>,
}

fn read_checkpoint(path: &Path) -> Result<Checkpoint, TrainError> {
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    let corrupt = |what: &str| {
        TrainError::Usage(format!(
            "{}: corrupt or truncated checkpoint ({what})",
            path.display()
        ))
    };
    let count = match bytes.get(..8) {
        Some(m) if m == MAGIC => 4,
        Some(m) if m == MAGIC_V1 => 3,
        _ => return Err(corrupt("not a plasticity checkpoint")),
    };
    let mut pos = 8;
    let mut parts = Vec::new();
    for _ in 0..count {
        let len_bytes = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| corrupt("truncated"))?;
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        pos += 8;
        let part = bytes
            .get(pos..pos.checked_add(len).ok_or_else(|| corrupt("bad length"))?)
            .ok_or_else(|| corrupt("truncated"))?;
        parts.push(part.to_vec());
        pos += len;
    }
    let sum = bytes
        .get(pos..pos + 8)
        .ok_or_else(|| corrupt("truncated"))?;
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    if u64::from_le_bytes(sum.try_into().expect("8 bytes")) != checksum(&refs)
        || bytes.len() != pos + 8
    {
        return Err(corrupt("checksum mismatch"));
    }
    let header: CheckpointHeader =
        serde_json::from_slice(&parts[0]).map_err(|e| corrupt(&e.to_string()))?;
    let carry = if count == 4 {
        parts.pop().expect("4 parts")
    } else {
        Vec::new()
    };
    let optim = parts.pop().expect("3 parts");
    let model = parts.pop().expect("3 parts");
    Ok(Checkpoint {
        header,
        model,
        optim,
        carry,
    })
}

/// Loads model parameters saved in checkpoint `path` (for the error message) into `model`.
fn load_record_bytes<M: Module>(path: &Path, model: M, bytes: Vec<u8>) -> Result<M, TrainError> {
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| TrainError::Usage(format!("{}: model record: {e:?}", path.display())))?;
    model.try_load_record(record).map_err(|e| {
        TrainError::Usage(format!(
            "{}: the model record does not fit this model (a checkpoint of another model or version?): {e:?}",
            path.display()
        ))
    })
}

/// Loads the model of a run's checkpoint into `model` (built with the run's configuration).
/// Returns it with the update it was saved at.
pub fn load_model<M: Module>(run: &Path, model: M) -> Result<(M, u64), TrainError> {
    let path = run.join("checkpoint.bin");
    let ck = read_checkpoint(&path)?;
    Ok((load_record_bytes(&path, model, ck.model)?, ck.header.update))
}

/// The update counter of the checkpoint of run directory `run` (`None`: no checkpoint.bin).
/// A corrupt checkpoint is an error naming the file.
pub fn checkpoint_update(run: &Path) -> Result<Option<u64>, TrainError> {
    let path = run.join("checkpoint.bin");
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(read_checkpoint(&path)?.header.update))
}

/// Files a run writes into its directory (besides the temporary files of atomic writes).
pub const RUN_FILES: &[&str] = &[
    "config.json",
    "metrics.csv",
    "checkpoint.bin",
    crate::weights::WEIGHTS_FILE,
];

/// Whether `dir` holds a run, and how far it went: `Some(description)` such as
/// `"a run at update 60"` when it has a config.json, metrics.csv or checkpoint.bin.
pub fn describe_run(dir: &Path) -> Option<String> {
    if !RUN_FILES.iter().any(|f| dir.join(f).exists()) {
        return None;
    }
    if let Ok(Some(update)) = checkpoint_update(dir) {
        return Some(format!("a run at update {update}"));
    }
    let rows = fs::read_to_string(dir.join("metrics.csv"))
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find_map(|l| l.split(',').next()?.parse::<u64>().ok())
        });
    Some(match rows {
        Some(update) => {
            format!("a run with metrics up to update {update} (no valid checkpoint)")
        }
        None => "a run (no update recorded)".into(),
    })
}

/// Keeps the rows of `metrics.csv` up to `update` (a resumed run rewrites what came after), with
/// the first column named `update`.
fn truncate_metrics(path: &Path, update: u64) -> Result<(), TrainError> {
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let mut out = String::new();
    for (k, line) in text.lines().enumerate() {
        let keep = k == 0
            || line
                .split(',')
                .next()
                .and_then(|e| e.parse::<u64>().ok())
                .is_some_and(|e| e <= update);
        if keep {
            // Runs written before the column was named `update` said `episode`.
            let line = match line.strip_prefix("episode,") {
                Some(rest) if k == 0 => format!("update,{rest}"),
                _ => line.to_string(),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    write_atomic(path, out.as_bytes())
}

/// Summary of a finished run.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Updates done.
    pub updates: u64,
    /// Mean loss over the last (up to) 50 updates.
    pub final_loss: f64,
    /// Mean of each metric over the last (up to) 50 updates.
    pub final_metrics: Vec<f64>,
    /// Wall-clock seconds (including those before a resume).
    pub seconds: f64,
    /// The run stopped at its time limit before `RunOptions::updates`.
    pub stopped_by_time_limit: bool,
    /// The run stopped early because [`STOP_REQUESTED`] was set (SIGINT, SIGTERM), after
    /// writing a checkpoint.
    pub stopped_by_signal: bool,
    /// Updates the final means are over: the last (up to) 50 of this session.
    pub averaged: usize,
}

/// Trains `exp` as `opts` says, writing metrics and checkpoints into `opts.out`.
/// `config_json` is written as `config.json` (resolved configuration, seed included).
pub fn train<E: Experiment>(
    exp: &E,
    config_json: &serde_json::Value,
    opts: &RunOptions,
    device: &Device,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary, TrainError> {
    fs::create_dir_all(&opts.out).map_err(|e| io_err(&opts.out, e))?;
    let ckpt_path = opts.out.join("checkpoint.bin");
    let metrics_path = opts.out.join("metrics.csv");
    let (adam, _) = exp.optimizer();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut model = exp.init_model(&mut rng, device);
    let mut optim: ModuleOptimizer = adam.init();
    let mut start_update = 0;
    let mut seconds_before = 0.0;
    if opts.resume {
        let ck = read_checkpoint(&ckpt_path)?;
        if ck.header.experiment != exp.name() {
            return Err(TrainError::Usage(format!(
                "{}: checkpoint is from experiment '{}', not '{}'",
                ckpt_path.display(),
                ck.header.experiment,
                exp.name()
            )));
        }
        model = load_record_bytes(&ckpt_path, model, ck.model)?;
        let orecord =
            burn::optim::OptimizerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(ck.optim))
                .map_err(|e| {
                    TrainError::Usage(format!("{}: optimizer record: {e:?}", ckpt_path.display()))
                })?;
        optim = optim.load_record(orecord);
        rng = ck.header.rng.restore();
        start_update = ck.header.update;
        seconds_before = ck.header.seconds;
        exp.load_carry(&ck.carry, start_update, device)
            .map_err(|e| {
                TrainError::Usage(format!(
                    "{}: corrupt or truncated checkpoint (carried state: {e})",
                    ckpt_path.display()
                ))
            })?;
        if metrics_path.exists() {
            truncate_metrics(&metrics_path, start_update)?;
        }
    } else {
        let header = format!("update,loss,{},seconds\n", exp.metric_names().join(","));
        write_atomic(&metrics_path, header.as_bytes())?;
    }
    let config_text =
        serde_json::to_string_pretty(config_json).map_err(|e| TrainError::Other(e.to_string()))?;
    write_atomic(&opts.out.join("config.json"), config_text.as_bytes())?;
    let mut metrics_file = fs::OpenOptions::new()
        .append(true)
        .open(&metrics_path)
        .map_err(|e| io_err(&metrics_path, e))?;
    let started = Instant::now();
    let mut window: std::collections::VecDeque<(f64, Vec<f64>)> = Default::default();
    let mut last_checkpoint = start_update;
    let mut update = start_update;
    let elapsed = |started: &Instant| seconds_before + started.elapsed().as_secs_f64();
    let out_of_time = |started: &Instant| opts.time_limit.is_some_and(|l| elapsed(started) >= l);
    let mut stopped_by_time_limit = false;
    let mut stopped_by_signal = false;
    let mut first_loss: Option<f64> = None;
    while update < opts.updates && !stopped_by_time_limit && !stopped_by_signal {
        exp.before_update(update);
        let failed = |reason, update| TrainError::Failed {
            update,
            reason,
            checkpoint: last_checkpoint,
        };
        let (loss, mut metrics) = exp
            .train_batch(&model, &mut rng, device)
            .map_err(|e| failed(e, update + 1))?;
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            return Err(TrainError::NonFinite {
                update: update + 1,
                checkpoint: last_checkpoint,
            });
        }
        let start = *first_loss.get_or_insert(loss_value);
        if let Some(reason) = divergence(exp.metric_names(), &metrics, loss_value, start) {
            return Err(TrainError::Diverged {
                update: update + 1,
                reason,
                checkpoint: last_checkpoint,
            });
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(max_norm) = exp.max_grad_norm() {
            clip_global_norm(&model, &mut grads, max_norm);
        }
        model = optim.step(exp.learning_rate(update), model, grads);
        update += 1;
        exp.after_update(&model, update, &mut metrics, device)
            .map_err(|e| failed(e, update))?;
        if let Some(reason) = divergence(exp.metric_names(), &metrics, loss_value, start) {
            return Err(TrainError::Diverged {
                update,
                reason,
                checkpoint: last_checkpoint,
            });
        }
        let row: Vec<String> = std::iter::once(update.to_string())
            .chain(std::iter::once(format!("{loss_value:.6}")))
            .chain(metrics.iter().map(|m| {
                if m.is_nan() {
                    String::new()
                } else {
                    format!("{m:.6}")
                }
            }))
            .chain(std::iter::once(format!("{:.3}", elapsed(&started))))
            .collect();
        writeln!(metrics_file, "{}", row.join(",")).map_err(|e| io_err(&metrics_path, e))?;
        window.push_back((loss_value, metrics));
        if window.len() > 50 {
            window.pop_front();
        }
        let running = mean_columns(
            window.iter().map(|(_, m)| m.as_slice()),
            exp.metric_names().len(),
        );
        progress(&Progress {
            update,
            total: opts.updates,
            loss: loss_value,
            running,
        });
        stopped_by_time_limit = out_of_time(&started);
        stopped_by_signal = STOP_REQUESTED.load(Ordering::SeqCst) && update < opts.updates;
        if update % opts.checkpoint_every.max(1) == 0
            || update == opts.updates
            || stopped_by_time_limit
            || stopped_by_signal
        {
            metrics_file.flush().map_err(|e| io_err(&metrics_path, e))?;
            let header = CheckpointHeader {
                experiment: exp.name().into(),
                update,
                seconds: elapsed(&started),
                rng: RngState::of(&rng),
            };
            save_checkpoint(&ckpt_path, &header, &model, &optim, &exp.save_carry())?;
            save_weights(&opts.out, exp.name(), &config_text, update, &model)?;
            last_checkpoint = update;
        }
    }
    let n = window.len().max(1) as f64;
    Ok(Summary {
        updates: update,
        final_loss: window.iter().map(|(l, _)| l).sum::<f64>() / n,
        final_metrics: mean_columns(
            window.iter().map(|(_, m)| m.as_slice()),
            exp.metric_names().len(),
        ),
        seconds: elapsed(&started),
        stopped_by_time_limit,
        stopped_by_signal,
        averaged: window.len(),
    })
}

/// Why the training counts as diverged after an update with loss `loss` (first loss of the
/// session `start`) and `metrics`: an infinite metric (`NaN` metrics are "not measured"), or a
/// loss [`DIVERGENCE_FACTOR`] times above its start. `None`: not diverged.
fn divergence(names: &[&str], metrics: &[f64], loss: f64, start: f64) -> Option<String> {
    if let Some((name, v)) = names.iter().zip(metrics).find(|(_, v)| v.is_infinite()) {
        return Some(format!("{name} is {v} with loss {loss:.4e}"));
    }
    let limit = DIVERGENCE_FACTOR * start.abs().max(1.0);
    (loss.abs() > limit).then(|| {
        format!(
            "loss {loss:.4e} is more than {DIVERGENCE_FACTOR:e} times its first value {start:.4e}"
        )
    })
}

/// Scales every gradient by `min(1, max_norm / |g|)`, `|g|` the L2 norm of all of the model's
/// gradients together (burn's own clipping is per parameter). Returns `|g|` before scaling.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    use burn::module::{ModuleVisitor, Param};
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        total: f64,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.total += g.powf_scalar(2.0).sum().into_scalar::<f32>() as f64;
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f32,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut sum = SumSquares { grads, total: 0.0 };
    model.visit(&mut sum);
    let norm = sum.total.sqrt();
    if norm > max_norm {
        model.visit(&mut Scale {
            grads,
            factor: (max_norm / norm) as f32,
        });
    }
    norm
}

/// Mean of each of the `k` columns over the rows, skipping `NaN` (not measured) values; a
/// column with no value is `NaN`.
fn mean_columns<'a>(rows: impl Iterator<Item = &'a [f64]>, k: usize) -> Vec<f64> {
    let mut sum = vec![0.0; k];
    let mut count = vec![0.0; k];
    let mut any_row = false;
    for r in rows {
        any_row = true;
        for ((s, c), v) in sum.iter_mut().zip(count.iter_mut()).zip(r) {
            if !v.is_nan() {
                *s += v;
                *c += 1.0;
            }
        }
    }
    sum.iter()
        .zip(&count)
        .map(|(s, &c)| {
            if c > 0.0 || !any_row {
                s / f64::max(c, 1.0)
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// Evaluates `model` on `batches` fresh evaluation batches; returns each metric's mean and
/// the per-batch values. Runs without autodiff (`model.valid()` on `device` without its
/// autodiff layer): on an autodiff device every forward pass would record a graph that nothing
/// frees before a backward pass, so memory would grow with `batches`.
pub fn evaluate<E: Experiment>(
    exp: &E,
    model: &E::Model,
    batches: u64,
    seed: u64,
    device: &Device,
) -> Result<(Vec<f64>, Vec<Vec<f64>>), TrainError> {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut all = Vec::new();
    for _ in 0..batches {
        all.push(
            exp.eval_batch(&model, &mut rng, &device)
                .map_err(TrainError::Usage)?,
        );
    }
    Ok((
        mean_columns(all.iter().map(Vec::as_slice), exp.metric_names().len()),
        all,
    ))
}

#[cfg(test)]
mod tests {
    use super::{CheckpointHeader, RngState};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_checkpoint_header_written_before_updates_were_so_named_still_reads() {
        let header = CheckpointHeader {
            experiment: "pattern".into(),
            update: 60,
            seconds: 1.5,
            rng: RngState::of(&ChaCha8Rng::seed_from_u64(3)),
        };
        let mut v = serde_json::to_value(&header).unwrap();
        let fields = v.as_object_mut().unwrap();
        let count = fields.remove("update").unwrap();
        fields.insert("episode".into(), count);
        let old: CheckpointHeader = serde_json::from_value(v).unwrap();
        assert_eq!((old.update, old.experiment.as_str()), (60, "pattern"));
    }
}
