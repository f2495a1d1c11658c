//! `plasticity eval <experiment>`: evaluates the last checkpoint of a run on fresh episodes.

use super::common::{parse_device, usage, value_name, Failure, MachineArgs};
use super::{images, lm, omniglot, pattern, rl};
use clap::{Args, ValueEnum};
use plasticity::tasks::omniglot::ClassSet;
use std::path::PathBuf;

/// Options of `plasticity eval`.
#[derive(Args)]
pub(crate) struct EvalArgs {
    /// Experiment of the run.
    experiment: Experiment,
    /// Run directory.
    #[arg(long)]
    pub(crate) run: PathBuf,
    /// Evaluation episodes [default: pattern 100, omniglot 1000].
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
    #[arg(long)]
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
    let name = value_name(&a.experiment);
    let experiment = name.as_str();
    a.machine.set_threads(experiment)?;
    if experiment == "omniglot" {
        a.machine.cpu_only("omniglot")?;
        return omniglot::eval_omniglot(&a);
    }
    if experiment == "lm" {
        a.machine.cpu_only("eval lm")?;
        if a.ways.is_some() || a.shots.is_some() || a.classes.is_some() || a.episodes.is_some() {
            return Err(usage(
                "--episodes, --ways, --shots, --classes: not options of eval lm (it reads the whole test set)",
            ));
        }
        return lm::eval_lm(&a);
    }
    if a.ways.is_some() || a.shots.is_some() || a.classes.is_some() {
        return Err(usage(format!(
            "--ways, --shots, --classes: not options of eval {experiment}"
        )));
    }
    if a.episodes == Some(0) {
        return Err(usage("--episodes: must be positive (0 evaluates nothing)"));
    }
    if (experiment == "maze" || experiment == "cue-reward") && !rl::rl_device_ok(&a.machine.device)
    {
        return Err(usage(rl::RL_CPU_ONLY));
    }
    let device = parse_device(&a.machine.device)?;
    match experiment {
        "pattern" => pattern::eval_pattern(&a, &device),
        "images" => images::eval_images(&a, &device),
        "maze" | "cue-reward" => rl::eval_rl(experiment, &a, &device),
        _ => Err(usage(format!(
            "eval: unknown experiment '{experiment}' (available: pattern, images, maze, cue-reward, omniglot, lm)"
        ))),
    }
}
