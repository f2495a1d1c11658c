//! `plasticity eval <experiment>`: evaluates the last checkpoint of a run on fresh episodes.

use super::common::{parse_device, product_threads, set_threads, usage, value_name, Failure};
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
    run: PathBuf,
    /// Evaluation episodes [default: pattern 100, omniglot 1000].
    #[arg(long)]
    episodes: Option<u64>,
    /// Seed of the evaluation episodes (distinct from training by default).
    #[arg(long, default_value_t = 1_000_003)]
    seed: u64,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// omniglot: classes per test episode [default: the run's].
    #[arg(long)]
    ways: Option<usize>,
    /// omniglot: labelled drawings per class [default: the run's].
    #[arg(long)]
    shots: Option<usize>,
    /// omniglot: classes the episodes are drawn from, test (held-out) or train (the
    /// training classes, unshifted: the generalisation gap) [default: test].
    #[arg(long)]
    classes: Option<ClassSet>,
    /// Data directory for experiments that read data (default: the run's).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Device: cpu | wgpu[:INDEX] | cuda[:INDEX] (a GPU; needs a build with `--features wgpu` or `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
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
    set_threads(a.threads, product_threads(experiment))?;
    if experiment == "omniglot" {
        if a.device != "cpu" {
            return Err(usage("--device: omniglot runs on the CPU"));
        }
        let o = omniglot::EvalOptions {
            episodes: a.episodes,
            seed: a.seed,
            json: a.json,
            ways: a.ways,
            shots: a.shots,
            data_dir: a.data_dir,
            classes: a.classes,
        };
        return omniglot::eval_omniglot(&a.run, o);
    }
    if experiment == "lm" {
        if a.device != "cpu" {
            return Err(usage("--device: eval lm runs on the CPU"));
        }
        if a.ways.is_some() || a.shots.is_some() || a.classes.is_some() || a.episodes.is_some() {
            return Err(usage(
                "--episodes, --ways, --shots, --classes: not options of eval lm (it reads the whole test set)",
            ));
        }
        return lm::eval_lm(&a.run, a.data_dir, a.json);
    }
    if a.ways.is_some() || a.shots.is_some() || a.classes.is_some() {
        return Err(usage(format!(
            "--ways, --shots, --classes: not options of eval {experiment}"
        )));
    }
    if a.episodes == Some(0) {
        return Err(usage("--episodes: must be positive (0 evaluates nothing)"));
    }
    if (experiment == "maze" || experiment == "cue-reward") && !rl::rl_device_ok(&a.device) {
        return Err(usage(rl::RL_CPU_ONLY));
    }
    let device = parse_device(&a.device)?;
    let (run, episodes, seed, json) = (&a.run, a.episodes.unwrap_or(100), a.seed, a.json);
    match experiment {
        "pattern" => pattern::eval_pattern(run, episodes, seed, json, &device),
        "images" => images::eval_images(run, episodes, seed, json, a.data_dir, &device),
        "maze" | "cue-reward" => rl::eval_rl(experiment, run, episodes, seed, json, &device),
        _ => Err(usage(format!(
            "eval: unknown experiment '{experiment}' (available: pattern, images, maze, cue-reward, omniglot, lm)"
        ))),
    }
}
