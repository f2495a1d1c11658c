//! `plasticity`: the command line of the differentiable-plasticity experiments.
//! Commands and outputs follow `CONVENTIONS.md` (run directory, `eval --json`, exit codes).

mod plot;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use plasticity::tasks::maze::{MazeConfig, MazeModel, MazeTask};
use plasticity::tasks::pattern::{ModelKind, PatternConfig, PatternTask};
use plasticity::tasks::synthetic::{SyntheticConfig, SyntheticTask};
use plasticity::train::{self, Experiment, RunOptions, TrainError};
use plasticity::{AlphaShape, TraceRule};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "plasticity",
    version,
    about = "Differentiable plasticity (Miconi et al., ICML 2018; ICLR 2019): train, evaluate and benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Binary pattern memorisation and completion (ICML 2018, section 4.1).
    Pattern(Box<PatternArgs>),
    /// Grid maze exploration with reinforcement learning (A2C), plastic and neuromodulated
    /// agents (ICLR 2019, section 4.2).
    Maze(Box<MazeArgs>),
    /// Evaluate the last checkpoint of a run on fresh episodes.
    Eval {
        /// Experiment of the run (pattern, maze).
        experiment: String,
        /// Run directory.
        #[arg(long)]
        run: PathBuf,
        /// Evaluation episodes.
        #[arg(long, default_value_t = 100)]
        episodes: u64,
        /// Seed of the evaluation episodes (distinct from training by default).
        #[arg(long, default_value_t = 1_000_003)]
        seed: u64,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Device: cpu | wgpu[:INDEX] (a GPU; needs a build with `--features wgpu`).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Time full training episodes (forward, backward, optimizer step).
    Bench {
        /// Workload: pattern (N=1001, T=106, B=1) | oja (pattern with Oja's rule) | images
        /// (N=1025, T=201, B=1, clamped input) | maze (N=100, T=200, B=30, clipped trace).
        workload: String,
        /// Episodes per update [default: the workload's].
        #[arg(long)]
        batch: Option<usize>,
        /// Timed episodes (after 2 warm-up episodes).
        #[arg(long, default_value_t = 10)]
        episodes: usize,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Device: cpu | wgpu[:INDEX] (a GPU; needs a build with `--features wgpu`).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Compare the plastic episode on a device (a GPU) with the CPU kernels: outputs and every
    /// gradient, for every trace rule, input mode, alpha shape and clipping setting.
    Check {
        /// Device to check: wgpu[:INDEX] (or cpu, which compares the CPU with itself).
        #[arg(long, default_value = "wgpu")]
        device: String,
    },
    /// Draw the smoothed learning curves of several runs into one SVG.
    Plot {
        /// Run directories.
        runs: Vec<PathBuf>,
        /// Metric column of metrics.csv.
        #[arg(long, default_value = "error")]
        metric: String,
        /// Moving-average window (episodes).
        #[arg(long, default_value_t = 20)]
        smooth: usize,
        /// Output SVG file.
        #[arg(long)]
        out: PathBuf,
        /// Logarithmic y axis.
        #[arg(long)]
        log: bool,
    },
}

/// Options every training command shares.
#[derive(Args, Clone)]
struct CommonArgs {
    /// Training episodes (updates) [default: 1000].
    #[arg(long)]
    episodes: Option<u64>,
    /// Seed of the run (initialisation and episodes) [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory [default: `runs/<experiment>-<model>-seed<S>`].
    #[arg(long)]
    out: Option<PathBuf>,
    /// JSON configuration file (fields of the experiment's configuration); options override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint (its config.json is used).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Episodes between checkpoints.
    #[arg(long, default_value_t = 50)]
    checkpoint_every: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Device: cpu | wgpu[:INDEX] (a GPU; needs a build with `--features wgpu`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct PatternArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// plastic | rnn | lstm [default: plastic].
    #[arg(long)]
    model: Option<String>,
    /// paper (1000 bits, 5 patterns, section 4.1) | comparison50 (50 bits, 2 patterns: the
    /// paper's comparison with RNN and LSTM) [default: paper].
    #[arg(long)]
    preset: Option<String>,
    /// Bits per pattern [paper: 1000].
    #[arg(long)]
    bits: Option<usize>,
    /// Patterns per episode [paper: 5].
    #[arg(long)]
    patterns: Option<usize>,
    /// Adam learning rate [paper: 3e-4].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Episodes per update [paper: 1].
    #[arg(long)]
    batch: Option<usize>,
    /// Trace rule: hebb | oja [paper: hebb].
    #[arg(long)]
    rule: Option<String>,
    /// Shape of alpha: per-connection | per-neuron | scalar [paper: per-connection].
    #[arg(long)]
    alpha: Option<String>,
}

#[derive(Args)]
struct MazeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// rnn | plastic | modplast (simple neuromodulation) | modul (retroactive neuromodulation)
    /// [default: modul].
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
    /// Fan the modulator out to one plasticity rate per neuron.
    #[arg(long)]
    fan_out: bool,
}

/// An error with its exit code (2: usage, configuration or data; 1: other).
struct Failure(u8, String);

impl From<TrainError> for Failure {
    fn from(e: TrainError) -> Self {
        let code = if matches!(e, TrainError::Usage(_)) {
            2
        } else {
            1
        };
        Failure(code, e.to_string())
    }
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure(2, msg.into())
}

/// One glibc malloc arena for the whole process. The kernels allocate their per-episode
/// buffers on rayon's threads and burn frees and reuses memory on the main thread; with one
/// arena per thread (glibc's default) those megabyte buffers are mapped, zeroed and unmapped
/// again every episode. Measured with `plasticity bench pattern`: 103-120 -> 90-96 ms per
/// episode, peak memory 78 -> 61 MB.
fn single_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    single_malloc_arena();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

fn set_threads(threads: Option<usize>) -> Result<usize, Failure> {
    if let Some(t) = threads {
        if t == 0 {
            return Err(usage("--threads: must be positive"));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(|e| Failure(1, e.to_string()))?;
    }
    Ok(rayon::current_num_threads())
}

/// The autodiff device named by `--device`: `cpu` (burn's Flex backend with the fused
/// kernels) or `wgpu[:INDEX]` (a GPU through burn's wgpu / CubeCL runtime: the default adapter,
/// or the INDEX-th discrete GPU; needs a build with `--features wgpu`).
fn parse_device(name: &str) -> Result<burn::tensor::Device, Failure> {
    let (kind, index) = match name.split_once(':') {
        Some((kind, i)) => (
            kind,
            Some(i.parse::<usize>().map_err(|_| {
                usage(format!(
                    "--device {name}: the index after ':' must be a number"
                ))
            })?),
        ),
        None => (name, None),
    };
    match kind {
        "cpu" => Ok(burn::tensor::Device::flex().autodiff()),
        #[cfg(feature = "wgpu")]
        "wgpu" | "gpu" => {
            use burn::tensor::DeviceKind;
            let kind = index.map_or(DeviceKind::DefaultDevice, DeviceKind::DiscreteGpu);
            Ok(burn::tensor::Device::wgpu(kind).autodiff())
        }
        #[cfg(not(feature = "wgpu"))]
        "wgpu" | "gpu" => {
            let _ = index;
            Err(usage(format!(
                "--device {name}: this binary was built without GPU support; build it with `cargo build --release --features wgpu`"
            )))
        }
        _ => Err(usage(format!(
            "--device {name}: unknown device (expected cpu or wgpu[:INDEX])"
        ))),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Pattern(args) => train_pattern(*args),
        Command::Maze(args) => train_maze(*args),
        Command::Eval {
            experiment,
            run,
            episodes,
            seed,
            json,
            threads,
            device,
        } => {
            set_threads(threads)?;
            if experiment == "maze" && device != "cpu" {
                return Err(usage(MAZE_CPU_ONLY));
            }
            let device = parse_device(&device)?;
            if experiment == "maze" {
                return eval_maze(&run, episodes, seed, json, &device);
            }
            eval(&experiment, &run, episodes, seed, json, &device)
        }
        Command::Bench {
            workload,
            batch,
            episodes,
            json,
            threads,
            device,
        } => {
            let threads = set_threads(threads)?;
            bench(&workload, batch, episodes, json, threads, &device)
        }
        Command::Check { device } => check_device(&device),
        Command::Plot {
            runs,
            metric,
            smooth,
            out,
            log,
        } => {
            if runs.is_empty() {
                return Err(usage("plot: give at least one run directory"));
            }
            let mut series = Vec::new();
            for r in &runs {
                let pts = plot::read_metric(r, &metric).map_err(usage)?;
                let label = r.file_name().map_or_else(
                    || r.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                series.push(plot::Series {
                    label,
                    points: plot::smooth(&pts, smooth),
                });
            }
            let title = format!("{metric} ({smooth}-episode moving average)");
            std::fs::write(
                &out,
                plot::svg_chart(&title, "episode", &metric, &series, log),
            )
            .map_err(|e| Failure(1, format!("{}: {e}", out.display())))
        }
    }
}

fn check_device(name: &str) -> Result<(), Failure> {
    use plasticity::device_check::{compare_with_cpu, TOLERANCES};
    let device = parse_device(name)?;
    let (tol_out, tol_grad) = TOLERANCES;
    let diffs = compare_with_cpu(&device);
    println!("| rule | input | alpha | clip | N | B | T | outputs | worst gradient | ok |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = 0;
    for d in &diffs {
        let s = &d.spec;
        let worst = d.gradients.iter().copied().fold(0.0, f32::max);
        let ok = d.outputs < tol_out && worst < tol_grad;
        failed += usize::from(!ok);
        println!(
            "| {:?} | {:?} | {:?} | {:?} | {} | {} | {} | {:.1e} | {worst:.1e} | {} |",
            s.rule,
            s.input,
            s.alpha,
            s.clip,
            s.neurons,
            s.batch,
            s.steps,
            d.outputs,
            if ok { "yes" } else { "NO" }
        );
    }
    if failed > 0 {
        return Err(Failure(
            1,
            format!("{failed} of {} settings differ from the CPU beyond the tolerances ({tol_out:e} outputs, {tol_grad:e} gradients)", diffs.len()),
        ));
    }
    eprintln!(
        "{name}: all {} settings agree with the CPU kernels",
        diffs.len()
    );
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Value, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| usage(format!("{}: invalid JSON: {e}", path.display())))
}

fn parse_enum<T: serde::de::DeserializeOwned>(option: &str, value: &str) -> Result<T, Failure> {
    serde_json::from_value(json!(value))
        .map_err(|_| usage(format!("{option}: invalid value '{value}'")))
}

/// Resolves the pattern configuration: preset, then config file, then options.
fn pattern_config(
    args: &PatternArgs,
    base: Option<serde_json::Value>,
) -> Result<PatternConfig, Failure> {
    let mut c = match base {
        Some(v) => serde_json::from_value(v).map_err(|e| usage(format!("config: {e}")))?,
        None => match args.preset.as_deref().unwrap_or("paper") {
            "paper" => PatternConfig::default(),
            "comparison50" => PatternConfig::comparison50(),
            other => {
                return Err(usage(format!(
                    "--preset: unknown preset '{other}' (expected paper or comparison50)"
                )))
            }
        },
    };
    if let Some(path) = &args.common.config {
        let mut merged = serde_json::to_value(&c).expect("config serializes");
        let mut file = read_json(path)?;
        // A run's config.json holds the configuration under "task": accept it as it is.
        if let Some(task) = file.get("task").filter(|t| t.is_object()) {
            file = task.clone();
        }
        let obj = file
            .as_object()
            .ok_or_else(|| usage(format!("{}: expected a JSON object", path.display())))?;
        for (k, v) in obj {
            merged[k] = v.clone();
        }
        c = serde_json::from_value(merged)
            .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    }
    if let Some(m) = &args.model {
        c.model = m
            .parse::<ModelKind>()
            .map_err(|e| usage(format!("--model: {e}")))?;
    }
    if let Some(v) = args.bits {
        c.bits = v;
    }
    if let Some(v) = args.patterns {
        c.patterns = v;
    }
    if let Some(v) = args.lr {
        c.learning_rate = v;
    }
    if let Some(v) = args.batch {
        c.batch = v;
    }
    if let Some(v) = &args.rule {
        c.rule = parse_enum::<TraceRule>("--rule", v)?;
    }
    if let Some(v) = &args.alpha {
        c.alpha = parse_enum::<AlphaShape>("--alpha", v)?;
    }
    c.validate().map_err(|e| usage(format!("config: {e}")))?;
    Ok(c)
}

fn progress_bar(total: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} episodes  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    bar.set_position(done);
    bar
}

fn train_pattern(args: PatternArgs) -> Result<(), Failure> {
    let threads = set_threads(args.common.threads)?;
    let common = &args.common;
    let (base, resume) = match &common.resume {
        Some(dir) => {
            let changed = [
                ("--config", common.config.is_some()),
                ("--model", args.model.is_some()),
                ("--preset", args.preset.is_some()),
                ("--bits", args.bits.is_some()),
                ("--patterns", args.patterns.is_some()),
                ("--lr", args.lr.is_some()),
                ("--batch", args.batch.is_some()),
                ("--rule", args.rule.is_some()),
                ("--alpha", args.alpha.is_some()),
            ];
            if let Some((name, _)) = changed.iter().find(|(_, given)| *given) {
                return Err(usage(format!(
                    "{name}: --resume continues a run with its saved config.json; start a new run to change it"
                )));
            }
            let saved = read_json(&dir.join("config.json"))?;
            (Some(saved), Some(dir.clone()))
        }
        None => (None, None),
    };
    let saved_task = base.as_ref().map(|b| b["task"].clone());
    let config = pattern_config(&args, saved_task)?;
    let seed = common
        .seed
        .or_else(|| base.as_ref().and_then(|b| b["seed"].as_u64()))
        .unwrap_or(0);
    let episodes = common
        .episodes
        .or_else(|| base.as_ref().and_then(|b| b["episodes"].as_u64()))
        .unwrap_or(1000);
    let model_name = serde_json::to_value(config.model).expect("serializes");
    let out = resume
        .clone()
        .or_else(|| common.out.clone())
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "runs/pattern-{}-seed{seed}",
                model_name.as_str().unwrap_or("model")
            ))
        });
    let task = PatternTask::new(config.clone()).map_err(|e| usage(format!("config: {e}")))?;
    let resolved = json!({
        "experiment": "pattern",
        "seed": seed,
        "episodes": episodes,
        "threads": threads,
        "steps_per_episode": config.steps(),
        "task": config,
    });
    let opts = RunOptions {
        episodes,
        seed,
        out: out.clone(),
        resume: resume.is_some(),
        checkpoint_every: common.checkpoint_every,
    };
    let device = parse_device(&common.device)?;
    let bar = progress_bar(episodes, 0);
    let mut first = true;
    let summary = train::train(&task, &resolved, &opts, &device, &mut |p| {
        if first {
            bar.set_position(p.episode.saturating_sub(1));
            first = false;
        }
        bar.set_position(p.episode);
        bar.set_message(format!("loss {:.3}  error(50) {:.4}", p.loss, p.running[0]));
    });
    bar.finish_and_clear();
    let summary = summary?;
    write_learning_curve(&out, "pattern", &["loss", "error"])?;
    eprintln!(
        "pattern: {} episodes in {:.1} s; last 50 episodes: loss {:.4}, error {:.4}. Run directory: {}",
        summary.episodes,
        summary.seconds,
        summary.final_loss,
        summary.final_metrics[0],
        out.display()
    );
    Ok(())
}

/// Resolves the maze configuration: defaults (or the resumed run's), config file, options.
fn maze_config(args: &MazeArgs, base: Option<serde_json::Value>) -> Result<MazeConfig, Failure> {
    let mut c: MazeConfig = match base {
        Some(v) => serde_json::from_value(v).map_err(|e| usage(format!("config: {e}")))?,
        None => MazeConfig::default(),
    };
    if let Some(path) = &args.common.config {
        let mut merged = serde_json::to_value(&c).expect("config serializes");
        let mut file = read_json(path)?;
        if let Some(task) = file.get("task").filter(|t| t.is_object()) {
            file = task.clone();
        }
        let obj = file
            .as_object()
            .ok_or_else(|| usage(format!("{}: expected a JSON object", path.display())))?;
        for (k, v) in obj {
            merged[k] = v.clone();
        }
        c = serde_json::from_value(merged)
            .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    }
    if let Some(m) = &args.model {
        c.model = m
            .parse::<MazeModel>()
            .map_err(|e| usage(format!("--model: {e}")))?;
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
    if args.fan_out {
        c.fan_out = true;
    }
    c.validate().map_err(|e| usage(format!("config: {e}")))?;
    Ok(c)
}

/// The modulated episode operation has a CPU implementation only.
const MAZE_CPU_ONLY: &str =
    "--device: maze runs on the CPU (the neuromodulated operation has no GPU path yet)";

fn train_maze(args: MazeArgs) -> Result<(), Failure> {
    if args.common.device != "cpu" {
        return Err(usage(MAZE_CPU_ONLY));
    }
    let threads = set_threads(args.common.threads)?;
    let common = &args.common;
    let (base, resume) = match &common.resume {
        Some(dir) => {
            let changed = [
                ("--config", common.config.is_some()),
                ("--model", args.model.is_some()),
                ("--neurons", args.neurons.is_some()),
                ("--size", args.size.is_some()),
                ("--steps", args.steps.is_some()),
                ("--batch", args.batch.is_some()),
                ("--lr", args.lr.is_some()),
                ("--fan-out", args.fan_out),
            ];
            if let Some((name, _)) = changed.iter().find(|(_, given)| *given) {
                return Err(usage(format!(
                    "{name}: --resume continues a run with its saved config.json; start a new run to change it"
                )));
            }
            let saved = read_json(&dir.join("config.json"))?;
            (Some(saved), Some(dir.clone()))
        }
        None => (None, None),
    };
    let config = maze_config(&args, base.as_ref().map(|b| b["task"].clone()))?;
    let seed = common
        .seed
        .or_else(|| base.as_ref().and_then(|b| b["seed"].as_u64()))
        .unwrap_or(0);
    let episodes = common
        .episodes
        .or_else(|| base.as_ref().and_then(|b| b["episodes"].as_u64()))
        .unwrap_or(1000);
    let model_name = serde_json::to_value(config.model).expect("serializes");
    let out = resume
        .clone()
        .or_else(|| common.out.clone())
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "runs/maze-{}-seed{seed}",
                model_name.as_str().unwrap_or("model")
            ))
        });
    let task = MazeTask::new(config.clone()).map_err(|e| usage(format!("config: {e}")))?;
    let resolved = json!({
        "experiment": "maze",
        "seed": seed,
        "episodes": episodes,
        "threads": threads,
        "neurons": config.neurons(),
        "task": config,
    });
    let opts = RunOptions {
        episodes,
        seed,
        out: out.clone(),
        resume: resume.is_some(),
        checkpoint_every: common.checkpoint_every,
    };
    let device = parse_device(&common.device)?;
    let bar = progress_bar(episodes, 0);
    let mut first = true;
    let summary = train::train(&task, &resolved, &opts, &device, &mut |p| {
        if first {
            bar.set_position(p.episode.saturating_sub(1));
            first = false;
        }
        bar.set_position(p.episode);
        bar.set_message(format!(
            "loss {:.3}  reward(50) {:.2}",
            p.loss, p.running[0]
        ));
    });
    bar.finish_and_clear();
    let summary = summary?;
    write_learning_curve(&out, "maze", &["loss", "reward"])?;
    eprintln!(
        "maze: {} episodes in {:.1} s; last 50 episodes: loss {:.4}, reward {:.3}. Run directory: {}",
        summary.episodes,
        summary.seconds,
        summary.final_loss,
        summary.final_metrics[0],
        out.display()
    );
    Ok(())
}

fn eval_maze(
    run: &Path,
    episodes: u64,
    seed: u64,
    json_out: bool,
    device: &burn::tensor::Device,
) -> Result<(), Failure> {
    let path = run.join("config.json");
    let saved = read_json(&path)?;
    let config: MazeConfig = serde_json::from_value(saved["task"].clone())
        .map_err(|e| usage(format!("{}: task: {e}", path.display())))?;
    let task = MazeTask::new(config).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let device = device.clone();
    let mut init_rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let model = task.init_model(&mut init_rng, &device);
    let (model, trained) = train::load_model(run, model)?;
    let started = Instant::now();
    let (means, _) = train::evaluate(&task, &model, episodes, seed, &device)?;
    if json_out {
        println!(
            "{}",
            json!({"experiment": "maze", "episodes": episodes, "reward": means[0], "trained_episodes": trained, "seed": seed})
        );
    } else {
        println!(
            "maze: reward {:.3} per episode over {episodes} fresh batches (model trained {trained} episodes; {:.1} s)",
            means[0],
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn write_learning_curve(run: &Path, experiment: &str, metrics: &[&str]) -> Result<(), Failure> {
    for m in metrics {
        let pts = plot::read_metric(run, m).map_err(|e| Failure(1, e))?;
        let series = [plot::Series {
            label: format!("{m} (mean of 20)"),
            points: plot::smooth(&pts, 20),
        }];
        let svg = plot::svg_chart(
            &format!("{experiment}: {m}"),
            "episode",
            m,
            &series,
            *m == "loss",
        );
        let path = run.join(format!("learning_curve_{m}.svg"));
        std::fs::write(&path, svg).map_err(|e| Failure(1, format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

fn eval(
    experiment: &str,
    run: &Path,
    episodes: u64,
    seed: u64,
    json_out: bool,
    device: &burn::tensor::Device,
) -> Result<(), Failure> {
    if experiment != "pattern" {
        return Err(usage(format!(
            "eval: unknown experiment '{experiment}' (available: pattern, maze)"
        )));
    }
    let saved = read_json(&run.join("config.json"))?;
    let config: PatternConfig = serde_json::from_value(saved["task"].clone())
        .map_err(|e| usage(format!("{}: task: {e}", run.join("config.json").display())))?;
    let task = PatternTask::new(config)
        .map_err(|e| usage(format!("{}: {e}", run.join("config.json").display())))?;
    let device = device.clone();
    let mut init_rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let model = task.init_model(&mut init_rng, &device);
    let (model, trained) = train::load_model(run, model)?;
    let started = Instant::now();
    let (means, _) = train::evaluate(&task, &model, episodes, seed, &device)?;
    if json_out {
        println!(
            "{}",
            json!({"experiment": "pattern", "episodes": episodes, "error": means[0], "trained_episodes": trained, "seed": seed})
        );
    } else {
        println!(
            "pattern: error {:.5} over {episodes} fresh episodes (model trained {trained} episodes; {:.1} s)",
            means[0],
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Timings of full training steps of one workload.
struct StepTimes {
    /// Per step, after 2 warm-up steps: total, and its parts (episode generation + forward,
    /// backward, Adam step), in ms.
    total: Vec<f64>,
    parts: [Vec<f64>; 3],
    /// Most device memory the allocator held (GPU only), MB.
    device_mb: Option<f64>,
}

fn time_steps<E: Experiment>(
    task: &E,
    episodes: usize,
    device: &burn::tensor::Device,
) -> Result<StepTimes, Failure> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let mut model = task.init_model(&mut rng, device);
    let (adam, lr) = task.optimizer();
    let mut optim = adam.init();
    let mut times = StepTimes {
        total: Vec::new(),
        parts: Default::default(),
        device_mb: None,
    };
    // On a GPU the work is asynchronous: wait for it at the end of each part.
    let sync = || {
        device
            .sync()
            .map_err(|e| Failure(1, format!("device: {e:?}")))
    };
    let note_memory = |times: &mut StepTimes| {
        if let Some(u) = device.memory_pool_usage() {
            let mb = u.bytes_reserved as f64 / 1e6;
            times.device_mb = Some(times.device_mb.map_or(mb, |m: f64| m.max(mb)));
        }
    };
    for k in 0..episodes + 2 {
        let t0 = Instant::now();
        let (loss, _) = task
            .train_episode(&model, &mut rng, device)
            .map_err(usage)?;
        sync()?;
        note_memory(&mut times);
        let t1 = Instant::now();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        sync()?;
        note_memory(&mut times);
        let t2 = Instant::now();
        model = optim.step(lr, model, grads);
        sync()?;
        let t3 = Instant::now();
        if k >= 2 {
            times.total.push((t3 - t0).as_secs_f64() * 1e3);
            for (part, (a, b)) in times.parts.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3)]) {
                part.push((b - a).as_secs_f64() * 1e3);
            }
        }
    }
    Ok(times)
}

/// Streaming bandwidth of this machine in GB/s: the triad `a = b + s c` over three arrays of
/// `floats / 3` values each (the workload's working set in all), on all rayon threads; best of 5.
/// Bytes counted: two reads and one write per element.
fn triad_gbs(floats: usize) -> f64 {
    use rayon::prelude::*;
    let len = (floats / 3).max(1 << 16);
    let b = vec![1.0f32; len];
    let c = vec![2.0f32; len];
    let mut a = vec![0.0f32; len];
    let chunk = len.div_ceil(4 * rayon::current_num_threads()).max(1 << 12);
    let mut best = f64::INFINITY;
    for rep in 0..6 {
        let t0 = Instant::now();
        a.par_chunks_mut(chunk)
            .zip(b.par_chunks(chunk).zip(c.par_chunks(chunk)))
            .for_each(|(a, (b, c))| {
                for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                    *a = b + 0.5 * c;
                }
            });
        let s = t0.elapsed().as_secs_f64();
        if rep > 0 {
            best = best.min(s);
        }
    }
    std::hint::black_box(&a);
    (3 * len * 4) as f64 / best / 1e9
}

/// Bytes the fused kernels must stream per training step at least: each step reads `w` and
/// `alpha` once (shared by the batch) and reads and writes each episode's `Hebb` (forward), then
/// reads `w`, `alpha` and reads and writes `Hebb` and its gradient (reversed backward):
/// `T (2 + 2B + 2 + 4B) N^2` f32 values. A lower bound: recomputation (clipping, Oja) streams more.
fn model_bytes(n: usize, t: usize, b: usize) -> f64 {
    (t * (4 + 6 * b) * n * n * 4) as f64
}

/// The benchmark workloads (issue 3): the papers' sizes, full training steps.
const WORKLOADS: &str = "pattern (N=1001, T=106, B=1), oja (pattern with Oja's rule), \
images (N=1025, T=201, B=1, clamped), maze (N=100, T=200, B=30, clipped trace)";

fn bench(
    workload: &str,
    batch: Option<usize>,
    episodes: usize,
    json_out: bool,
    threads: usize,
    device_name: &str,
) -> Result<(), Failure> {
    if episodes == 0 || batch == Some(0) {
        return Err(usage("bench: --episodes and --batch must be positive"));
    }
    let device = parse_device(device_name)?;
    let pattern = |rule| PatternConfig {
        batch: batch.unwrap_or(1),
        rule,
        ..PatternConfig::default()
    };
    let synthetic = |mut c: SyntheticConfig| {
        c.batch = batch.unwrap_or(c.batch);
        c
    };
    // (N, T, B, rule and options) and the timings.
    let (shape, times) = match workload {
        "pattern" | "oja" => {
            let rule = if workload == "oja" {
                TraceRule::Oja
            } else {
                TraceRule::Hebb
            };
            let c = pattern(rule);
            let shape = (c.neurons(), c.steps(), c.batch);
            let task = PatternTask::new(c).map_err(usage)?;
            (shape, time_steps(&task, episodes, &device)?)
        }
        "images" | "maze" => {
            let c = synthetic(if workload == "images" {
                SyntheticConfig::images()
            } else {
                SyntheticConfig::maze()
            });
            let shape = (c.net.neurons, c.steps, c.batch);
            let task = SyntheticTask::new(c).map_err(usage)?;
            (shape, time_steps(&task, episodes, &device)?)
        }
        _ => {
            return Err(usage(format!(
                "bench: unknown workload '{workload}' (available: {WORKLOADS})"
            )))
        }
    };
    let (n, t, b) = shape;
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [forward_ms, backward_ms, optimizer_ms] = times.parts.clone().map(|p| median(&p));
    let ms = median(&times.total);
    let min = times.total.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.total.iter().copied().fold(0.0, f64::max);
    let rss = peak_rss_mb();
    // Roofline (CPU): the kernels' minimal traffic over the step's time, against the triad over
    // a working set of the same size (w, alpha, each episode's Hebb and its gradient).
    let achieved_gbs = model_bytes(n, t, b) / (ms / 1e3) / 1e9;
    let stream_gbs = (device_name == "cpu").then(|| triad_gbs((2 + 2 * b) * n * n));
    let fraction = stream_gbs.map(|s| achieved_gbs / s);
    if json_out {
        println!(
            "{}",
            json!({"workload": workload, "ms_per_episode": ms, "peak_rss_mb": rss, "threads": threads,
                   "device": device_name, "device_memory_mb": times.device_mb,
                   "model_bytes_per_step": model_bytes(n, t, b), "achieved_gbs": achieved_gbs,
                   "stream_gbs": stream_gbs, "roofline_fraction": fraction,
                   "batch": b, "neurons": n, "steps": t, "episodes_timed": episodes,
                   "min_ms": min, "max_ms": max,
                   "forward_ms": forward_ms, "backward_ms": backward_ms, "optimizer_ms": optimizer_ms})
        );
    } else {
        println!(
            "| workload | device | N | T | B | threads | ms/step (median of {episodes}) | min | max | forward | backward | Adam | peak RSS MB | device MB | GB/s | triad GB/s | of roofline |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_string(), f);
        println!(
            "| {workload} | {device_name} | {n} | {t} | {b} | {threads} | {ms:.1} | {min:.1} | {max:.1} | {forward_ms:.1} | {backward_ms:.1} | {optimizer_ms:.1} | {rss:.0} | {} | {achieved_gbs:.1} | {} | {} |",
            opt(times.device_mb, &|m| format!("{m:.0}")),
            opt(stream_gbs, &|g| format!("{g:.1}")),
            opt(fraction, &|f| format!("{:.0}%", 100.0 * f)),
        );
    }
    Ok(())
}
