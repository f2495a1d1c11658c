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
            if !rl::rl_device_ok(&a.machine.device) {
                return Err(usage(rl::RL_CPU_ONLY));
            }
            rl::eval_rl(&experiment, &a, &parse_device(&a.machine.device)?)
        }
    }
}
