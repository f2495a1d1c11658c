//! `plasticity eval <experiment>`: evaluates the last checkpoint of a run on fresh episodes.

use super::common::load_run_model;
use super::common::{parse_device, usage, value_name, Failure, MachineArgs};
use super::{images, lm, omniglot, pattern, rl};
use clap::{Args, ValueEnum};
use plasticity::tasks::omniglot::ClassSet;
use plasticity::train;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `plasticity eval`.
#[derive(Args)]
pub(crate) struct EvalArgs {
    /// Experiment of the run.
    experiment: Experiment,
    /// Run directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) run: PathBuf,
    /// Evaluation episodes, run in whole batches of the run's batch size (at least this many)
    /// [default: pattern and images 100, maze and cue-reward 100 batches, omniglot 1000].
    #[arg(long)]
    pub(crate) episodes: Option<u64>,
    /// Seed of the evaluation episodes (distinct from training by default).
    #[arg(long, default_value_t = 1_000_003)]
    pub(crate) seed: u64,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// omniglot: classes per test episode [default: the run's].
    #[arg(long)]
    pub(crate) ways: Option<usize>,
    /// omniglot: labelled drawings per class [default: the run's].
    #[arg(long)]
    pub(crate) shots: Option<usize>,
    /// omniglot: classes the episodes are drawn from, test (held-out) or train (the
    /// training classes, unshifted: the generalisation gap) [default: test].
    #[arg(long)]
    pub(crate) classes: Option<ClassSet>,
    /// Data directory for experiments that read data (default: the run's).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) machine: MachineArgs,
}

impl EvalArgs {
    /// Evaluation episodes: `--episodes`, or `default`.
    pub(crate) fn episodes_or(&self, default: u64) -> u64 {
        self.episodes.unwrap_or(default)
    }
}

/// The experiments a run can be of.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Experiment {
    Pattern,
    Images,
    Maze,
    CueReward,
    Omniglot,
    Lm,
}

/// `plasticity eval`.
pub(crate) fn eval(a: EvalArgs) -> Result<(), Failure> {
    let experiment = value_name(&a.experiment);
    a.machine.set_threads(&experiment)?;
    let omniglot_options = a.ways.is_some() || a.shots.is_some() || a.classes.is_some();
    match a.experiment {
        Experiment::Omniglot => {
            a.machine.cpu_only("omniglot")?;
            omniglot::eval_omniglot(&a)
        }
        Experiment::Lm => {
            a.machine.cpu_only("eval lm")?;
            if omniglot_options || a.episodes.is_some() {
                return Err(usage(
                    "--episodes, --ways, --shots, --classes: not options of eval lm (it reads the whole test set)",
                ));
            }
            lm::eval_lm(&a)
        }
        _ if omniglot_options => Err(usage(format!(
            "--ways, --shots, --classes: not options of eval {experiment}"
        ))),
        _ if a.episodes == Some(0) => {
            Err(usage("--episodes: must be positive (0 evaluates nothing)"))
        }
        Experiment::Pattern => pattern::eval_pattern(&a, &parse_device(&a.machine.device)?),
        Experiment::Images => images::eval_images(&a, &parse_device(&a.machine.device)?),
        Experiment::Maze | Experiment::CueReward => {
            rl::eval_rl(&experiment, &a, &rl::agent_device(&a.machine.device)?)
        }
    }
}

/// What an evaluation measured: the metric means, the updates the model was trained for,
/// the episodes evaluated (whole batches: at least those asked for) and the seconds it took.
pub(crate) struct Evaluation {
    pub(crate) means: Vec<f64>,
    pub(crate) trained_updates: u64,
    pub(crate) episodes: u64,
    pub(crate) seconds: f64,
}

impl Evaluation {
    /// The `--json` object: `experiment`, `episodes`, `trained_updates`, `seed`, then `more`.
    pub(crate) fn json(&self, experiment: &str, seed: u64, more: serde_json::Value) -> String {
        let mut v = json!({"experiment": experiment, "episodes": self.episodes,
                           "trained_updates": self.trained_updates, "seed": seed});
        if let Some(more) = more.as_object() {
            for (k, x) in more {
                v[k] = x.clone();
            }
        }
        v.to_string()
    }
}

/// Evaluates `model` (trained for `trained_updates`) on `--episodes` fresh episodes (default
/// `default_episodes`), run in batches of `batch`: as many batches as cover them.
pub(crate) fn evaluate_episodes<E: train::Experiment>(
    task: &E,
    model: &E::Model,
    trained_updates: u64,
    a: &EvalArgs,
    (default_episodes, batch): (u64, usize),
    device: &burn::tensor::Device,
) -> Result<Evaluation, Failure> {
    let batch = batch.max(1) as u64;
    let batches = a.episodes_or(default_episodes).div_ceil(batch);
    let started = Instant::now();
    let (means, _) = train::evaluate(task, model, batches, a.seed, device)?;
    Ok(Evaluation {
        means,
        trained_updates,
        episodes: batches * batch,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Loads the last checkpoint of `a.run` and evaluates it (see [`evaluate_episodes`]).
pub(crate) fn eval_run<E: train::Experiment>(
    task: &E,
    a: &EvalArgs,
    episodes_and_batch: (u64, usize),
    device: &burn::tensor::Device,
) -> Result<Evaluation, Failure> {
    let (model, trained) = load_run_model(task, &a.run, device)?;
    evaluate_episodes(task, &model, trained, a, episodes_and_batch, device)
}
