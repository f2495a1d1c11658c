//! `plasticity maze` and `plasticity cue-reward` (ICLR 2019 sections 4.1-4.2, ICML 2018
//! section 4.4), their evaluation and their pictures: the agent's trajectory in one episode
//! before and after training (maze) and the modulator over an episode (modulated agents).

use super::common::{
    check_model, load_run_model, parse_device, run_config_error, saved_run, usage, CommonArgs,
    Failure, Rule,
};
use super::eval::evaluate_episodes;
use super::eval::EvalArgs;
use super::overlay::Finite;
use super::pipeline::{config_error, Session};
use super::rl_pictures::{write_pictures, write_trajectory};
use clap::Args;
use plasticity::tasks::a2c::{self, A2cTask};
use plasticity::tasks::cue_reward::{self, CueRewardConfig, CueRewardTask};
use plasticity::tasks::maze::{MazeConfig, MazePreset, MazeTask};
use plasticity::tasks::{Model, TaskConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;

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
fn check_trials(c: &CueRewardConfig) -> Result<(), String> {
    let trial = cue_reward::TRIAL_STEPS;
    let steps = c.env.steps;
    if !steps.is_multiple_of(trial) {
        let below = steps / trial * trial;
        return Err(format!(
            "steps: must be a whole number of {trial}-step trials (got {}; {below} or {})",
            steps,
            below + trial
        ));
    }
    Ok(())
}

/// The device named by `--device` for maze and cue-reward: `cpu`, or `cuda[:INDEX]` (the
/// episode op on the GPU, the tensors around it on the CPU); the wgpu path has no
/// neuromodulated episode, so it is refused.
pub(crate) fn agent_device(name: &str) -> Result<burn::tensor::Device, Failure> {
    if name == "cpu" || name.split(':').next() == Some("cuda") {
        parse_device(name)
    } else {
        Err(usage(
            "--device: maze and cue-reward run on the CPU or with --device cuda[:INDEX] (the wgpu path has no neuromodulated episode)",
        ))
    }
}

/// `plasticity maze`.
pub fn train_maze(args: MazeArgs) -> Result<(), Failure> {
    let preset = args.preset.unwrap_or(MazePreset::Paper);
    let command = AgentCommand {
        experiment: "maze",
        common: &args.common,
        fixed: &[("--preset", args.preset.is_some())],
    };
    let (task, out) = command.train(
        &args.options,
        args.options.agent.model,
        || MazeConfig::preset(preset),
        MazeTask::new,
    )?;
    write_pictures(&task, &out, |ro, path, when| {
        write_trajectory(&task, ro, path, when)
    })
}

/// `plasticity cue-reward`.
pub fn train_cue_reward(args: CueRewardArgs) -> Result<(), Failure> {
    let command = AgentCommand {
        experiment: "cue-reward",
        common: &args.common,
        fixed: &[],
    };
    let (task, out) = command.train(
        &args.options,
        args.options.agent.model,
        CueRewardConfig::default,
        |c| {
            check_trials(&c)?;
            CueRewardTask::new(c)
        },
    )?;
    write_pictures(&task, &out, |_, _, _| Ok(()))
}

/// A training command of an actor-critic agent: its experiment, the options every training
/// command shares, and its other options that a resumed run refuses (`(flag, given)`).
struct AgentCommand<'a> {
    experiment: &'static str,
    common: &'a CommonArgs,
    fixed: &'a [(&'a str, bool)],
}

impl AgentCommand<'_> {
    /// Trains the task that `new` makes of the configuration (`fresh()` or the resumed run's,
    /// overlaid by `options`) through the shared pipeline; returns it with its run directory.
    fn train<C: TaskConfig, O: Serialize + clap::Args, T: A2cTask>(
        &self,
        options: &O,
        model: Option<Model>,
        fresh: impl FnOnce() -> C,
        new: impl FnOnce(C) -> Result<T, String>,
    ) -> Result<(T, PathBuf), Failure> {
        agent_device(&self.common.machine.device)?;
        check_model(model, a2c::MODELS)?;
        let s = Session::start(self.experiment, self.common, options, self.fixed)?;
        let config = s.task_config(fresh, options)?;
        let task = new(config.clone()).map_err(config_error)?;
        let agent = task.agent_spec();
        let spec = s
            .model_run(agent.model, &config, &["loss", "reward"])
            .recording(json!({"neurons": agent.neurons}));
        s.run(&task, &spec, task.settings().batch)?;
        Ok((task, spec.out))
    }
}

/// `plasticity eval maze|cue-reward`: mean reward per episode over `--episodes` fresh batches.
pub fn eval_rl(
    experiment: &str,
    a: &EvalArgs,
    device: &burn::tensor::Device,
) -> Result<(), Failure> {
    let bad_config = run_config_error(&a.run);
    match experiment {
        "maze" => {
            let (_, config): (_, MazeConfig) = saved_run(&a.run, "maze")?;
            let task = MazeTask::new(config).map_err(bad_config)?;
            eval_task(&task, a, device, |_, _, _, _| Ok(Vec::new()))
        }
        _ => {
            let (_, config): (_, CueRewardConfig) = saved_run(&a.run, "cue-reward")?;
            let task = CueRewardTask::new(config).map_err(bad_config)?;
            eval_task(&task, a, device, answers)
        }
    }
}

/// Cue-reward: how the trained agent answers on the evaluation's own episodes (the same
/// `batches` batches from `seed`, rolled out again): `p(respond | target shown)`,
/// `p(respond | not shown)` at the response steps and their difference (0: the target is
/// not found; 1: it is).
fn answers(
    task: &CueRewardTask,
    model: &a2c::ActorCritic,
    batches: u64,
    seed: u64,
) -> Result<Vec<(&'static str, f64)>, Failure> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rollouts = (0..batches)
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
    a: &EvalArgs,
    device: &burn::tensor::Device,
    extra: impl Fn(&T, &a2c::ActorCritic, u64, u64) -> Result<Vec<(&'static str, f64)>, Failure>,
) -> Result<(), Failure> {
    let name = task.task_name();
    let batch = task.settings().batch;
    let (model, trained) = load_run_model(task, &a.run, device)?;
    let ev = evaluate_episodes(
        task,
        &model,
        trained,
        a,
        (100 * batch as u64, batch),
        device,
    )?;
    let more = extra(task, &model, ev.episodes / batch as u64, a.seed)?;
    if a.json {
        let mut v = json!({"reward": ev.means[0]});
        for (k, x) in &more {
            v[*k] = json!(x);
        }
        println!("{}", ev.json(name, a.seed, v));
    } else {
        println!(
            "{name}: reward {:.3} per episode over {} fresh episodes (model trained {} updates of {batch} episodes; {:.1} s)",
            ev.means[0], ev.episodes, ev.trained_updates, ev.seconds,
        );
        for (k, x) in &more {
            println!("  {k}: {x:.3}");
        }
    }
    Ok(())
}
