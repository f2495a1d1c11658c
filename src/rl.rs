//! `plasticity maze` and `plasticity cue-reward` (ICLR 2019 sections 4.1-4.2, ICML 2018
//! section 4.4), their evaluation and their pictures: the agent's trajectory in one episode
//! before and after training (maze) and the modulator over an episode (modulated agents).

use crate::{
    merge_config_file, parse_enum, plot, png, read_json, resumed_config, saved_run, set_threads,
    train_command, usage, CommonArgs, Failure, ProductThreads, TrainCommand,
};
use clap::Args;
use plasticity::tasks::a2c::{self, A2cTask, AgentModel, Rollout};
use plasticity::tasks::cue_reward::{self, CueRewardConfig, CueRewardTask};
use plasticity::tasks::maze::{MazeConfig, MazeEpisode, MazePreset, MazeTask};
use plasticity::train::{self, Experiment};
use plasticity::TraceRule;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

#[derive(Args)]
pub struct MazeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// paper (ICLR 2019 section 4.2: 13x13, batch 30, clipped Hebbian trace) | icml2018 (ICML
    /// 2018 section 4.4: 9x9, batch 1, Oja's rule, model plastic) [default: paper].
    #[arg(long)]
    preset: Option<String>,
    /// rnn | plastic | modplast (simple neuromodulation) | modul (retroactive neuromodulation)
    /// [paper: modul].
    #[arg(long)]
    model: Option<String>,
    /// Neurons (0: the paper's parameter-matched size, 100 or 101 for plastic) [default: 0].
    #[arg(long)]
    neurons: Option<usize>,
    /// Side of the maze (odd) [paper: 13].
    #[arg(long)]
    size: Option<usize>,
    /// Steps per episode [paper: 200].
    #[arg(long)]
    steps: Option<usize>,
    /// Episodes in parallel per update [paper: 30].
    #[arg(long)]
    batch: Option<usize>,
    /// Adam learning rate [paper: 1e-4].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Trace rule of --model plastic: hebb | oja [paper: hebb; icml2018: oja].
    #[arg(long)]
    rule: Option<String>,
    /// Fan the modulator out to one plasticity rate per neuron.
    #[arg(long)]
    fan_out: bool,
    /// Standard deviation of the initial plasticity coefficients `alpha` [default: 0.01].
    #[arg(long)]
    alpha_init_std: Option<f64>,
}

#[derive(Args)]
pub struct CueRewardArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// rnn | plastic | modplast (simple neuromodulation) | modul (retroactive neuromodulation)
    /// [default: modul].
    #[arg(long)]
    model: Option<String>,
    /// Neurons [paper: 200].
    #[arg(long)]
    neurons: Option<usize>,
    /// Steps per episode (trials of 4 steps) [paper: 120].
    #[arg(long)]
    steps: Option<usize>,
    /// Episodes in parallel per update [paper: 30].
    #[arg(long)]
    batch: Option<usize>,
    /// Adam learning rate [default: 1e-4].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Fan the modulator out to one plasticity rate per neuron.
    #[arg(long)]
    fan_out: bool,
    /// Standard deviation of the initial plasticity coefficients `alpha` [default: 0.01].
    #[arg(long)]
    alpha_init_std: Option<f64>,
    /// Curriculum: train the first N updates on the easy version (2 cues, one per trial,
    /// go/no-go answers), then on the task [paper: 0].
    #[arg(long, value_name = "N")]
    warmup_updates: Option<u64>,
}

fn parse_model(v: &str) -> Result<AgentModel, Failure> {
    v.parse::<AgentModel>()
        .map_err(|e| usage(format!("--model: {e}")))
}

/// Resolves the maze configuration: preset (or the resumed run's), config file, options.
fn maze_config(args: &MazeArgs, base: Option<serde_json::Value>) -> Result<MazeConfig, Failure> {
    let mut c: MazeConfig = match base {
        Some(v) => serde_json::from_value(v).map_err(|e| usage(format!("config: {e}")))?,
        None => {
            let preset = match &args.preset {
                Some(p) => p
                    .parse::<MazePreset>()
                    .map_err(|e| usage(format!("--preset: {e}")))?,
                None => MazePreset::Paper,
            };
            MazeConfig::preset(preset)
        }
    };
    if let Some(path) = &args.common.config {
        c = merge_config_file(c, path)?;
    }
    if let Some(m) = &args.model {
        c.model = parse_model(m)?;
    }
    if let Some(v) = args.neurons {
        c.neurons = v;
    }
    if let Some(v) = args.size {
        c.size = v;
    }
    if let Some(v) = args.steps {
        c.steps = v;
    }
    if let Some(v) = args.batch {
        c.batch = v;
    }
    if let Some(v) = args.lr {
        c.learning_rate = v;
    }
    if let Some(v) = &args.rule {
        c.rule = parse_enum::<TraceRule>("--rule", v)?;
    }
    if args.fan_out {
        c.fan_out = true;
    }
    if let Some(v) = args.alpha_init_std {
        c.alpha_init_std = Some(v);
    }
    c.validate().map_err(|e| usage(format!("config: {e}")))?;
    Ok(c)
}

/// Resolves the cue-reward configuration: defaults (or the resumed run's), config file, options.
fn cue_reward_config(
    args: &CueRewardArgs,
    base: Option<serde_json::Value>,
) -> Result<CueRewardConfig, Failure> {
    let mut c: CueRewardConfig = match base {
        Some(v) => serde_json::from_value(v).map_err(|e| usage(format!("config: {e}")))?,
        None => CueRewardConfig::default(),
    };
    if let Some(path) = &args.common.config {
        c = merge_config_file(c, path)?;
    }
    if let Some(m) = &args.model {
        c.model = parse_model(m)?;
    }
    if let Some(v) = args.neurons {
        c.neurons = v;
    }
    if let Some(v) = args.steps {
        c.steps = v;
    }
    if let Some(v) = args.batch {
        c.batch = v;
    }
    if let Some(v) = args.lr {
        c.learning_rate = v;
    }
    if args.fan_out {
        c.fan_out = true;
    }
    if let Some(v) = args.alpha_init_std {
        c.alpha_init_std = Some(v);
    }
    if let Some(v) = args.warmup_updates {
        c.warmup_updates = v;
    }
    c.validate().map_err(|e| usage(format!("config: {e}")))?;
    let trial = cue_reward::TRIAL_STEPS;
    if !c.steps.is_multiple_of(trial) {
        let below = c.steps / trial * trial;
        return Err(usage(format!(
            "config: steps: must be a whole number of {trial}-step trials (got {}; {below} or {})",
            c.steps,
            below + trial
        )));
    }
    Ok(c)
}

/// The modulated episode operation has a CPU implementation only.
pub const RL_CPU_ONLY: &str =
    "--device: maze and cue-reward run on the CPU (the neuromodulated operation has no GPU path yet)";

pub fn train_maze(args: MazeArgs) -> Result<(), Failure> {
    if args.common.device != "cpu" {
        return Err(usage(RL_CPU_ONLY));
    }
    let threads = set_threads(args.common.threads, ProductThreads::PerRun)?;
    let common = &args.common;
    let base = resumed_config(
        "maze",
        common,
        &[
            ("--preset", args.preset.is_some()),
            ("--model", args.model.is_some()),
            ("--neurons", args.neurons.is_some()),
            ("--size", args.size.is_some()),
            ("--steps", args.steps.is_some()),
            ("--batch", args.batch.is_some()),
            ("--lr", args.lr.is_some()),
            ("--rule", args.rule.is_some()),
            ("--fan-out", args.fan_out),
            ("--alpha-init-std", args.alpha_init_std.is_some()),
        ],
    )?;
    let config = maze_config(&args, base.as_ref().map(|b| b["task"].clone()))?;
    crate::safety::check_memory("maze", &config.memory_estimate())?;
    let task = MazeTask::new(config.clone()).map_err(|e| usage(format!("config: {e}")))?;
    let config_json = serde_json::to_value(&config).expect("serializes");
    let out = train_rl(&task, common, base.as_ref(), threads, config_json)?;
    write_pictures(&task, &out, |ro, path| write_trajectory(&task, ro, path))
}

pub fn train_cue_reward(args: CueRewardArgs) -> Result<(), Failure> {
    if args.common.device != "cpu" {
        return Err(usage(RL_CPU_ONLY));
    }
    let threads = set_threads(args.common.threads, ProductThreads::PerRun)?;
    let common = &args.common;
    let base = resumed_config(
        "cue-reward",
        common,
        &[
            ("--model", args.model.is_some()),
            ("--neurons", args.neurons.is_some()),
            ("--steps", args.steps.is_some()),
            ("--batch", args.batch.is_some()),
            ("--lr", args.lr.is_some()),
            ("--fan-out", args.fan_out),
            ("--alpha-init-std", args.alpha_init_std.is_some()),
            ("--warmup-updates", args.warmup_updates.is_some()),
        ],
    )?;
    let config = cue_reward_config(&args, base.as_ref().map(|b| b["task"].clone()))?;
    crate::safety::check_memory("cue-reward", &config.memory_estimate())?;
    let task = CueRewardTask::new(config.clone()).map_err(|e| usage(format!("config: {e}")))?;
    let config_json = serde_json::to_value(&config).expect("serializes");
    let out = train_rl(&task, common, base.as_ref(), threads, config_json)?;
    write_pictures(&task, &out, |_, _| Ok(()))
}

/// Trains an actor-critic task through the shared plumbing; returns the run directory.
fn train_rl<T: A2cTask>(
    task: &T,
    common: &CommonArgs,
    base: Option<&serde_json::Value>,
    threads: usize,
    config: serde_json::Value,
) -> Result<std::path::PathBuf, Failure> {
    let spec = task.agent_spec();
    let cmd = TrainCommand {
        task,
        model: serde_json::to_value(spec.model).expect("serializes"),
        task_json: config,
        extra: json!({"neurons": spec.neurons}),
    };
    let name = task.task_name();
    let (summary, out) = train_command(cmd, common, base, threads, &["loss", "reward"], |p| {
        format!("loss {:.3}  reward(50) {:.2}", p.loss, p.running[0])
    })?;
    eprintln!(
        "{name}: {} episodes in {:.1} s; {}: loss {:.4}, reward {:.3}. Run directory: {}",
        summary.episodes,
        summary.seconds,
        crate::last_n(&summary, "episodes"),
        summary.final_loss,
        summary.final_metrics[0],
        out.display()
    );
    Ok(out)
}

/// Episodes of the pictures, and the seed of their RNG (the same before and after training, so
/// that both show the same mazes and cues).
const PICTURE_EPISODES: usize = 3;
const PICTURE_SEED: u64 = 1_000_003;

/// Rolls out the initial model (rebuilt from the run's seed) and the last checkpoint on the same
/// episodes; draws `trajectory` of each (`trajectory_before.png`, `trajectory_after.png`) and,
/// for modulated agents, `modulator.svg` of the trained one.
fn write_pictures<T: A2cTask>(
    task: &T,
    out: &Path,
    trajectory: impl Fn(&Rollout<T::Episode>, &Path) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let device = burn::tensor::Device::flex();
    let seed = read_json(&out.join("config.json"))?["seed"]
        .as_u64()
        .unwrap_or(0);
    let initial = task.init_model(&mut ChaCha8Rng::seed_from_u64(seed), &device);
    let (trained, _) = crate::load_run_model(task, out, &device)?;
    let batch = PICTURE_EPISODES.min(task.settings().batch.max(1));
    let roll = |agent| {
        a2c::rollout(
            task,
            agent,
            batch,
            &mut ChaCha8Rng::seed_from_u64(PICTURE_SEED),
        )
        .map_err(|e| Failure(1, e))
    };
    let before = roll(&initial)?;
    let after = roll(&trained)?;
    trajectory(&before, &out.join("trajectory_before.png"))?;
    trajectory(&after, &out.join("trajectory_after.png"))?;
    if !after.modulator.is_empty() {
        write_modulator(task.task_name(), &after, &out.join("modulator.svg"))?;
    }
    Ok(())
}

/// Frames of the trajectory picture: the first `STRIP_FRAMES` steps of episode 0, in rows of
/// `STRIP_COLUMNS`.
const STRIP_FRAMES: usize = 60;
const STRIP_COLUMNS: usize = 12;

/// Draws the first steps of episode 0 of a maze rollout as a strip of frames (PNG): walls dark
/// grey, the reward cell green, the agent red with its last three cells pink; a frame whose
/// step earned the reward has a green border.
pub fn write_trajectory(
    task: &MazeTask,
    ro: &Rollout<MazeEpisode>,
    path: &Path,
) -> Result<(), Failure> {
    let maze = task.maze();
    let l = maze.size();
    let (cell, gap) = (5usize, 3usize);
    let frames = STRIP_FRAMES.min(ro.steps);
    let rows = frames.div_ceil(STRIP_COLUMNS);
    let frame = l * cell + 2 * gap;
    let (width, height) = (STRIP_COLUMNS * frame, rows.max(1) * frame);
    let mut img = vec![255u8; width * height * 3];
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        let k = (y * width + x) * 3;
        img[k..k + 3].copy_from_slice(&c);
    };
    for t in 0..frames {
        let state = &ro.states[t]; // episode 0, step t
        let (fx, fy) = ((t % STRIP_COLUMNS) * frame, (t / STRIP_COLUMNS) * frame);
        let border = if ro.rewards[t] > 0.0 {
            [40, 170, 60]
        } else {
            [225, 225, 225]
        };
        // The frame's border (the maze's cells are drawn over its inside below).
        for y in 1..frame - 1 {
            for x in 1..frame - 1 {
                put(fx + x, fy + y, border);
            }
        }
        let trail: Vec<(usize, usize)> = (t.saturating_sub(3)..t)
            .map(|k| ro.states[k].agent)
            .collect();
        for r in 0..l {
            for c in 0..l {
                let colour = if maze.is_wall(r, c) {
                    [70, 70, 70]
                } else if (r, c) == state.agent {
                    [220, 30, 30]
                } else if (r, c) == state.reward_cell {
                    [40, 170, 60]
                } else if trail.contains(&(r, c)) {
                    [245, 175, 175]
                } else {
                    [255, 255, 255]
                };
                for dy in 0..cell {
                    for dx in 0..cell {
                        put(fx + gap + c * cell + dx, fy + gap + r * cell + dy, colour);
                    }
                }
            }
        }
    }
    std::fs::write(path, png::rgb(width, height, &img))
        .map_err(|e| Failure(1, format!("{}: {e}", path.display())))
}

/// Plots the modulator `M(t)` of the rollout's episodes and episode 0's rewards (scaled to the
/// largest |reward|) over the steps of an episode (SVG).
fn write_modulator<S>(name: &str, ro: &Rollout<S>, path: &Path) -> Result<(), Failure> {
    let t_len = ro.steps;
    let mut series: Vec<plot::Series> = (0..ro.batch)
        .map(|b| plot::Series {
            label: format!("M(t), episode {}", b + 1),
            points: (0..t_len)
                .map(|t| (t as f64, ro.modulator[b * t_len + t] as f64))
                .collect(),
            ..plot::Series::default()
        })
        .collect();
    let top = ro.rewards[..t_len]
        .iter()
        .fold(0f32, |m, r| m.max(r.abs()))
        .max(1e-6);
    series.push(plot::Series {
        label: format!("reward / {top} (episode 1)"),
        points: (0..t_len)
            .map(|t| (t as f64, (ro.rewards[t] / top) as f64))
            .collect(),
        ..plot::Series::default()
    });
    let svg = plot::svg_chart(
        &format!("{name}: modulator over one episode (trained agent)"),
        "step",
        "M(t)",
        &series,
        false,
    );
    std::fs::write(path, svg).map_err(|e| Failure(1, format!("{}: {e}", path.display())))
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
    let (model, trained) = crate::load_run_model(task, run, device)?;
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
