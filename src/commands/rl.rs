//! `plasticity maze` and `plasticity cue-reward` (ICLR 2019 sections 4.1-4.2, ICML 2018
//! section 4.4), their evaluation and their pictures: the agent's trajectory in one episode
//! before and after training (maze) and the modulator over an episode (modulated agents).

use super::common::{
    check_model, load_run_model, saved_run, usage, CommonArgs, Failure, ProductThreads, Rule,
};
use super::overlay::Finite;
use super::pipeline::{RunSpec, Session};
use super::rl_pictures::{write_pictures, write_trajectory};
use clap::Args;
use plasticity::tasks::a2c::{self, A2cTask};
use plasticity::tasks::cue_reward::{self, CueRewardConfig, CueRewardTask};
use plasticity::tasks::maze::{MazeConfig, MazePreset, MazeTask};
use plasticity::tasks::Model;
use plasticity::train;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// Options of `plasticity maze`.
#[derive(Args)]
pub struct MazeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Defaults to start from [default: paper].
    #[arg(long)]
    preset: Option<MazePreset>,
    #[command(flatten)]
    options: MazeOptions,
}

/// Options of `plasticity cue-reward`.
#[derive(Args)]
pub struct CueRewardArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    options: CueRewardOptions,
}

/// The options of both actor-critic tasks that overlay their configuration (named as its
/// fields).
#[derive(Args, Serialize)]
struct AgentOptions {
    /// Network: rnn, plastic, modplast (simple neuromodulation) or modul (retroactive
    /// neuromodulation) [paper: modul].
    #[arg(long)]
    model: Option<Model>,
    /// Neurons [maze: 0, the paper's parameter-matched size (100, or 101 for plastic);
    /// cue-reward: 200].
    #[arg(long)]
    neurons: Option<usize>,
    /// Steps per episode [maze: 200; cue-reward: 120, trials of 4 steps].
    #[arg(long)]
    steps: Option<usize>,
    /// Episodes in parallel per update [paper: 30].
    #[arg(long)]
    batch: Option<usize>,
    /// Adam learning rate [paper: 1e-4].
    #[arg(long = "lr", allow_negative_numbers = true, value_parser = Finite)]
    learning_rate: Option<f64>,
    /// Fan the modulator out to one plasticity rate per neuron.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fan_out: bool,
    /// Standard deviation of the initial plasticity coefficients `alpha` [default: 0.01].
    #[arg(long, value_parser = Finite)]
    alpha_init_std: Option<f64>,
}

/// The options that overlay the maze configuration.
#[derive(Args, Serialize)]
struct MazeOptions {
    #[command(flatten)]
    #[serde(flatten)]
    agent: AgentOptions,
    /// Side of the maze (odd) [paper: 13].
    #[arg(long)]
    size: Option<usize>,
    /// Trace rule of --model plastic [paper: hebb; icml2018: oja].
    #[arg(long)]
    rule: Option<Rule>,
}

/// The options that overlay the cue-reward configuration.
#[derive(Args, Serialize)]
struct CueRewardOptions {
    #[command(flatten)]
    #[serde(flatten)]
    agent: AgentOptions,
    /// Curriculum: train the first N updates on the easy version (2 cues, one per trial,
    /// go/no-go answers), then on the task [paper: 0].
    #[arg(long, value_name = "N")]
    warmup_updates: Option<u64>,
}

/// A cue-reward episode is a whole number of trials.
fn check_trials(c: &CueRewardConfig) -> Result<(), Failure> {
    let trial = cue_reward::TRIAL_STEPS;
    if !c.steps.is_multiple_of(trial) {
        let below = c.steps / trial * trial;
        return Err(usage(format!(
            "config: steps: must be a whole number of {trial}-step trials (got {}; {below} or {})",
            c.steps,
            below + trial
        )));
    }
    Ok(())
}

/// The modulated episode operation runs on the CPU and on CUDA, not on wgpu.
pub const RL_CPU_ONLY: &str =
    "--device: maze and cue-reward run on the CPU or with --device cuda[:INDEX] (the wgpu path has no neuromodulated episode)";

/// Whether `--device` can run maze and cue-reward: `cpu`, or `cuda[:INDEX]` (the episode op on
/// the GPU, the tensors around it on the CPU).
pub fn rl_device_ok(device: &str) -> bool {
    device == "cpu" || device.split(':').next() == Some("cuda")
}

/// `plasticity maze`.
pub fn train_maze(args: MazeArgs) -> Result<(), Failure> {
    if !rl_device_ok(&args.common.device) {
        return Err(usage(RL_CPU_ONLY));
    }
    check_model(args.options.agent.model, a2c::MODELS)?;
    let s = Session::start(
        "maze",
        &args.common,
        ProductThreads::PerRun,
        &args.options,
        &[("--preset", args.preset.is_some())],
    )?;
    let preset = args.preset.unwrap_or(MazePreset::Paper);
    let config = s.config(
        || MazeConfig::preset(preset),
        &args.options,
        MazeConfig::validate,
    )?;
    crate::safety::check_memory("maze", &config.memory_estimate())?;
    let task = MazeTask::new(config.clone()).map_err(|e| usage(format!("config: {e}")))?;
    let config_json = serde_json::to_value(&config).expect("serializes");
    let out = train_rl(&task, &s, config_json)?;
    write_pictures(&task, &out, |ro, path, when| {
        write_trajectory(&task, ro, path, when)
    })
}

/// `plasticity cue-reward`.
pub fn train_cue_reward(args: CueRewardArgs) -> Result<(), Failure> {
    if !rl_device_ok(&args.common.device) {
        return Err(usage(RL_CPU_ONLY));
    }
    check_model(args.options.agent.model, a2c::MODELS)?;
    let s = Session::start(
        "cue-reward",
        &args.common,
        ProductThreads::PerRun,
        &args.options,
        &[],
    )?;
    let config = s.config(
        CueRewardConfig::default,
        &args.options,
        CueRewardConfig::validate,
    )?;
    check_trials(&config)?;
    crate::safety::check_memory("cue-reward", &config.memory_estimate())?;
    let task = CueRewardTask::new(config.clone()).map_err(|e| usage(format!("config: {e}")))?;
    let config_json = serde_json::to_value(&config).expect("serializes");
    let out = train_rl(&task, &s, config_json)?;
    write_pictures(&task, &out, |_, _, _| Ok(()))
}

/// Trains an actor-critic task through the shared pipeline; returns the run directory.
fn train_rl<T: A2cTask>(
    task: &T,
    s: &Session<'_>,
    config: serde_json::Value,
) -> Result<std::path::PathBuf, Failure> {
    let spec = task.agent_spec();
    let run = RunSpec {
        out: s.model_out(spec.model),
        total: s.updates(1000),
        unit: "updates",
        task_json: config,
        extra: json!({"neurons": spec.neurons}),
        curves: &["loss", "reward"],
    };
    s.run(task, &run, task.settings().batch)?;
    Ok(run.out)
}

/// `plasticity eval maze|cue-reward`: mean reward per episode over `episodes` fresh batches.
pub fn eval_rl(
    experiment: &str,
    run: &Path,
    episodes: u64,
    seed: u64,
    json_out: bool,
    device: &burn::tensor::Device,
) -> Result<(), Failure> {
    let bad_config = |e: String| usage(format!("{}: {e}", run.join("config.json").display()));
    match experiment {
        "maze" => {
            let (_, config): (_, MazeConfig) = saved_run(run, "maze")?;
            let task = MazeTask::new(config).map_err(bad_config)?;
            eval_task(
                &task,
                run,
                episodes,
                seed,
                json_out,
                device,
                |_, _, _, _| Ok(Vec::new()),
            )
        }
        _ => {
            let (_, config): (_, CueRewardConfig) = saved_run(run, "cue-reward")?;
            let task = CueRewardTask::new(config).map_err(bad_config)?;
            eval_task(&task, run, episodes, seed, json_out, device, answers)
        }
    }
}

/// Cue-reward: how the trained agent answers on the evaluation's own episodes (the same
/// `episodes` batches from `seed`, rolled out again): `p(respond | target shown)`,
/// `p(respond | not shown)` at the response steps and their difference (0: the target is
/// not found; 1: it is).
fn answers(
    task: &CueRewardTask,
    model: &a2c::ActorCritic,
    episodes: u64,
    seed: u64,
) -> Result<Vec<(&'static str, f64)>, Failure> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rollouts = (0..episodes)
        .map(|_| a2c::rollout(task, model, task.settings().batch, &mut rng))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure(1, e))?;
    let r = cue_reward::response_rates(&rollouts);
    Ok(vec![
        ("respond_if_shown", r.shown),
        ("respond_if_not_shown", r.not_shown),
        ("discrimination", r.shown - r.not_shown),
    ])
}

fn eval_task<T: A2cTask>(
    task: &T,
    run: &Path,
    episodes: u64,
    seed: u64,
    json_out: bool,
    device: &burn::tensor::Device,
    extra: impl Fn(&T, &a2c::ActorCritic, u64, u64) -> Result<Vec<(&'static str, f64)>, Failure>,
) -> Result<(), Failure> {
    let name = task.task_name();
    let (model, trained) = load_run_model(task, run, device)?;
    let started = Instant::now();
    let (means, _) = train::evaluate(task, &model, episodes, seed, device)?;
    let more = extra(task, &model, episodes, seed)?;
    let secs = started.elapsed().as_secs_f64();
    if json_out {
        let mut v = json!({"experiment": name, "episodes": episodes, "reward": means[0], "trained_episodes": trained, "seed": seed});
        for (k, x) in &more {
            v[*k] = json!(x);
        }
        println!("{v}");
    } else {
        println!(
            "{name}: reward {:.3} per episode over {episodes} fresh batches of {} (model trained {trained} episodes; {secs:.1} s)",
            means[0],
            task.settings().batch,
        );
        for (k, x) in &more {
            println!("  {k}: {x:.3}");
        }
    }
    Ok(())
}
