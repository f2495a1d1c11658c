//! `plasticity`: the command line of the differentiable-plasticity experiments.
//! Commands and outputs follow `CONVENTIONS.md` (run directory, `eval --json`, exit codes).

mod lm;
mod omniglot;
mod plot;
mod png;
mod rl;
mod safety;

use clap::{Args, Parser, Subcommand};
use plasticity::data::{cifar, embedded, ImageSet, Split};
use plasticity::tasks::a2c::AgentModel;
use plasticity::tasks::cue_reward::{CueRewardConfig, CueRewardTask};
use plasticity::tasks::images::{ImageConfig, ImageTask};
use plasticity::tasks::maze::{MazeConfig, MazeTask};
use plasticity::tasks::pattern::{PatternConfig, PatternTask};
use plasticity::tasks::synthetic::{SyntheticConfig, SyntheticTask};
use plasticity::tasks::ModelKind;
use plasticity::train::{self, Experiment, Progress, RunOptions, Summary, TrainError};
use plasticity::{AlphaShape, TraceRule};
use serde::de::DeserializeOwned;
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
    /// Natural-image memorisation and half-image completion (ICML 2018, section 4.2).
    Images(Box<ImagesArgs>),
    /// Grid-maze exploration with neuromodulated plasticity, advantage actor-critic (ICLR 2019,
    /// section 4.2; ICML 2018, section 4.4).
    Maze(Box<rl::MazeArgs>),
    /// Cue-reward association with neuromodulated plasticity, advantage actor-critic (ICLR 2019,
    /// section 4.1).
    CueReward(Box<rl::CueRewardArgs>),
    /// One-shot classification of Omniglot characters with a plastic output layer (ICML 2018,
    /// section 4.3).
    Omniglot(Box<omniglot::OmniglotArgs>),
    /// Word-level language modelling on Penn Treebank with LSTMs, plastic LSTMs and
    /// neuromodulated plastic LSTMs (ICLR 2019, section 4.3).
    Lm(Box<lm::LmArgs>),
    /// Evaluate the last checkpoint of a run on fresh episodes.
    Eval {
        /// Experiment of the run (pattern, images, maze, cue-reward, omniglot, lm).
        experiment: String,
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
        /// omniglot: classes the episodes are drawn from, test (held-out) | train (the
        /// training classes, unshifted: the generalisation gap) [default: test].
        #[arg(long)]
        classes: Option<String>,
        /// Data directory for experiments that read data (default: the run's).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Device: cpu | wgpu[:INDEX] (a GPU; needs a build with `--features wgpu`).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Time full training episodes (forward, backward, optimizer step).
    Bench {
        /// Workload: pattern (N=1001, T=106, B=1) | oja (pattern with Oja's rule) | images
        /// (N=1025, T=201, B=1, clamped input) | maze (N=100, T=200, B=30, clipped trace,
        /// synthetic episodes) | maze-agent (the maze task itself: rollout, replay, A2C) |
        /// cue-reward (N=200, T=120, B=30) | omniglot (5-way 1-shot, convolutions + plastic
        /// output layer) | lm (Penn Treebank, small preset, one segment of 20 x 35 tokens per
        /// update).
        workload: String,
        /// pattern, oja, images: plastic | rnn | lstm [default: plastic]; maze-agent, cue-reward:
        /// rnn | plastic | modplast | modul [default: modul]; lm: lstm | plastic | modulated
        /// [default: lstm].
        #[arg(long)]
        model: Option<String>,
        /// Episodes per update [default: the workload's] (omniglot: the meta-batch).
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
        /// omniglot, lm: data folder [default: data/omniglot, data/ptb].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Device: cpu | wgpu[:INDEX] (a GPU; needs a build with `--features wgpu`).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Compare the plastic episode on a device (a GPU) with the CPU kernels: outputs and every
    /// gradient, for every trace rule, input mode, alpha shape and clipping setting.
    Check {
        /// Device to check: wgpu[:INDEX] (or cpu, which compares the CPU with itself)
        /// [default: wgpu in a build with `--features wgpu`].
        #[arg(long)]
        device: Option<String>,
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
        /// Column of metrics.csv for the x axis: `episode` (updates), or `seconds` to compare
        /// runs at equal wall time (e.g. different meta-batches).
        #[arg(long, default_value = "episode")]
        x: String,
        /// Group runs whose names differ only in a trailing `-seed<N>`: one median curve with
        /// its inter-quartile band per group.
        #[arg(long)]
        seeds: bool,
    },
}

/// Options every training command shares.
#[derive(Args, Clone)]
pub(crate) struct CommonArgs {
    /// Training episodes (updates) [default: pattern 1000, omniglot 100000].
    #[arg(long)]
    pub(crate) episodes: Option<u64>,
    /// Seed of the run (initialisation and episodes) [default: 0].
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Run directory [default: `runs/<experiment>-<model>-seed<S>`].
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// JSON configuration file (fields of the experiment's configuration); options override it.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint (its config.json is used).
    #[arg(long, value_name = "DIR")]
    pub(crate) resume: Option<PathBuf>,
    /// Episodes between checkpoints.
    #[arg(long, default_value_t = 50)]
    pub(crate) checkpoint_every: u64,
    /// Wall-clock budget in minutes (counting time before a resume): the run checkpoints and
    /// stops after the episode that reaches it.
    #[arg(long, value_name = "MINUTES")]
    pub(crate) time_limit: Option<f64>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Device: cpu | wgpu[:INDEX] (a GPU; needs a build with `--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
    /// Replace the run in --out if the folder holds one (without it, a new run never
    /// overwrites a run: exit 2).
    #[arg(long)]
    pub(crate) force: bool,
    /// Seconds between progress lines when stderr is not a terminal (a log file, nohup); a
    /// terminal shows a progress bar instead.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub(crate) progress_every: f64,
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
struct ImagesArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// plastic | rnn | lstm [default: plastic].
    #[arg(long)]
    model: Option<String>,
    /// Directory of CIFAR-10 binary files (data_batch_*.bin for training, test_batch.bin for
    /// evaluation) [default: the embedded public-domain/CC0 patches].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Adam learning rate [paper: 1e-4].
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

/// An error with its exit code (2: usage, configuration or data; 1: other).
pub(crate) struct Failure(u8, String);

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

pub(crate) fn usage(msg: impl Into<String>) -> Failure {
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(msg) = negative_number_message(&e) {
                eprintln!("error: {msg}");
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(safety::INTERRUPTED, msg)) => {
            eprintln!("{msg}");
            ExitCode::from(safety::INTERRUPTED)
        }
        Err(Failure(code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

/// clap reads a negative value such as `--episodes -5` as an unknown option `-5`; say instead
/// that the option's value must be >= 0.
fn negative_number_message(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let ContextValue::String(arg) = e.get(ContextKind::InvalidArg)? else {
        return None;
    };
    arg.parse::<f64>().ok()?;
    let args: Vec<String> = std::env::args().collect();
    let k = args.iter().position(|a| a == arg)?;
    let option = args[..k]
        .last()
        .filter(|o| o.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "the value".into());
    Some(format!(
        "{option} {arg}: must be >= 0 (this option takes no negative value)"
    ))
}

/// How the kernels' matrix products (`matrixmultiply`, which keeps its own threads) share
/// the cores with rayon's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ProductThreads {
    /// As many threads per product as `--threads` (the physical cores by default): the
    /// recurrent and LSTM kernels run their large products one at a time.
    PerRun,
    /// One thread per product: the kernel already runs its products in parallel, one block of
    /// images per rayon thread (the convolutions); threaded products inside them would put
    /// twice as many threads as cores to work (measured: README, Omniglot, "Two threads").
    One,
}

impl ProductThreads {
    /// The setting for an experiment or benchmark workload named on the command line: `One`
    /// for `omniglot` (the convolutions), else `PerRun`.
    fn of(experiment: &str) -> Self {
        if experiment == "omniglot" {
            ProductThreads::One
        } else {
            ProductThreads::PerRun
        }
    }
}

/// The most `--threads` accepted on any machine (more on a machine with over 16 cores: 16 per
/// core).
const MAX_THREADS: usize = 256;

/// Sizes rayon's global pool (`--threads`; default: all cores) and the matrix products'
/// threads (see [`ProductThreads`]; a user's own `MATMUL_NUM_THREADS` wins). Returns rayon's
/// thread count.
pub(crate) fn set_threads(
    threads: Option<usize>,
    products: ProductThreads,
) -> Result<usize, Failure> {
    if let Some(t) = threads {
        if t == 0 {
            return Err(usage("--threads: must be positive"));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let most = MAX_THREADS.max(16 * cores);
        if t > most {
            return Err(usage(format!(
                "--threads {t}: at most {most} (this machine has {cores} cores)"
            )));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(|e| Failure(1, e.to_string()))?;
    }
    // matrixmultiply reads MATMUL_NUM_THREADS once, before its first product (default: the
    // physical cores), so this must run before any product.
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        let per_product = match products {
            ProductThreads::One => Some(1),
            ProductThreads::PerRun => threads,
        };
        if let Some(n) = per_product {
            std::env::set_var("MATMUL_NUM_THREADS", n.to_string());
        }
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
            let device = burn::tensor::Device::wgpu(kind).autodiff();
            probe_device(&device).map_err(|e| {
                usage(format!(
                    "--device {name}: the GPU could not be used ({e}); is a Vulkan, Metal or DX12 driver installed?"
                ))
            })?;
            Ok(device)
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

/// Runs one tiny operation on `device`. burn's wgpu runtime panics (on its own thread, then on
/// ours) when no adapter is found: turn that into an error, without the panic messages.
#[cfg(feature = "wgpu")]
fn probe_device(device: &burn::tensor::Device) -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| {
        burn::tensor::Tensor::<1>::zeros([1], device)
            .into_data()
            .try_to_vec::<f32>()
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    });
    std::panic::set_hook(hook);
    match result {
        Ok(r) => r,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the device failed to start".into())),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Pattern(args) => train_pattern(*args),
        Command::Images(args) => train_images(*args),
        Command::Maze(args) => rl::train_maze(*args),
        Command::CueReward(args) => rl::train_cue_reward(*args),
        Command::Omniglot(args) => {
            if args.common.device != "cpu" {
                return Err(usage("--device: omniglot runs on the CPU"));
            }
            omniglot::train_omniglot(*args)
        }
        Command::Lm(args) => lm::train_lm(*args),
        Command::Eval {
            experiment,
            run,
            episodes,
            seed,
            json,
            threads,
            ways,
            shots,
            classes,
            data_dir,
            device,
        } => {
            set_threads(threads, ProductThreads::of(&experiment))?;
            if experiment == "omniglot" {
                if device != "cpu" {
                    return Err(usage("--device: omniglot runs on the CPU"));
                }
                let o = omniglot::EvalOptions {
                    episodes,
                    seed,
                    json,
                    ways,
                    shots,
                    data_dir,
                    classes,
                };
                return omniglot::eval_omniglot(&run, o);
            }
            if experiment == "lm" {
                if device != "cpu" {
                    return Err(usage("--device: eval lm runs on the CPU"));
                }
                if ways.is_some() || shots.is_some() || classes.is_some() || episodes.is_some() {
                    return Err(usage(
                        "--episodes, --ways, --shots, --classes: not options of eval lm (it reads the whole test set)",
                    ));
                }
                return lm::eval_lm(&run, data_dir, json);
            }
            if ways.is_some() || shots.is_some() || classes.is_some() {
                return Err(usage(format!(
                    "--ways, --shots, --classes: not options of eval {experiment}"
                )));
            }
            if episodes == Some(0) {
                return Err(usage("--episodes: must be positive (0 evaluates nothing)"));
            }
            if (experiment == "maze" || experiment == "cue-reward") && device != "cpu" {
                return Err(usage(rl::RL_CPU_ONLY));
            }
            let device = parse_device(&device)?;
            eval(
                &experiment,
                &run,
                episodes.unwrap_or(100),
                seed,
                json,
                data_dir,
                &device,
            )
        }
        Command::Bench {
            workload,
            model,
            batch,
            episodes,
            json,
            threads,
            device,
            data_dir,
        } => {
            let threads = set_threads(threads, ProductThreads::of(&workload))?;
            if workload == "omniglot" {
                if device != "cpu" {
                    return Err(usage("--device: omniglot runs on the CPU"));
                }
                return omniglot::bench_omniglot(
                    batch.unwrap_or(1),
                    episodes,
                    json,
                    threads,
                    data_dir,
                );
            }
            if workload == "lm" {
                if device != "cpu" {
                    return Err(usage("--device: bench lm runs on the CPU"));
                }
                return lm::bench_lm(
                    model.as_deref().unwrap_or("lstm"),
                    batch,
                    episodes,
                    json,
                    threads,
                    data_dir,
                );
            }
            bench(
                &workload,
                model.as_deref(),
                batch,
                episodes,
                json,
                threads,
                &device,
            )
        }
        Command::Check { device } => match device {
            Some(d) => check_device(&d),
            None if cfg!(feature = "wgpu") => check_device("wgpu"),
            None => Err(usage(
                "check: this binary was built without GPU support, so there is no GPU to check; build it with `cargo build --release --features wgpu` (--device cpu compares the CPU kernels with themselves)",
            )),
        },
        Command::Plot {
            runs,
            metric,
            smooth,
            out,
            log,
            x,
            seeds,
        } => {
            if runs.is_empty() {
                return Err(usage("plot: give at least one run directory"));
            }
            let mut series = Vec::new();
            if seeds {
                for (group, dirs) in plot::group_by_seed(&runs) {
                    let curves = dirs
                        .iter()
                        .map(|r| {
                            plot::read_columns(r, &x, &metric)
                                .map(|p| plot::smooth(&p, smooth))
                                .map_err(usage)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let label = format!("{group} (median, IQR of {})", dirs.len());
                    series.push(plot::median_band(label, &curves));
                }
            } else {
                for r in &runs {
                    let pts = plot::read_columns(r, &x, &metric).map_err(usage)?;
                    let label = r.file_name().map_or_else(
                        || r.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    series.push(plot::Series {
                        label,
                        points: plot::smooth(&pts, smooth),
                        ..plot::Series::default()
                    });
                }
            }
            let title = format!("{metric} ({smooth}-episode moving average)");
            std::fs::write(&out, plot::svg_chart(&title, &x, &metric, &series, log))
                .map_err(|e| Failure(1, format!("{}: {e}", out.display())))?;
            // The final values as a table (stdout), ready for a README.
            println!("| run | {x} | {metric}, mean of the last {smooth} episodes |");
            println!("|---|---|---|");
            for ser in &series {
                match (ser.points.last(), ser.band.last()) {
                    (Some(&(x, y)), Some(&(_, lo, hi))) => println!(
                        "| {} | {x} | {y:.3} (median) [{lo:.3}, {hi:.3}] |",
                        ser.label
                    ),
                    (Some(&(x, y)), None) => println!("| {} | {x} | {y:.3} |", ser.label),
                    _ => println!("| {} | 0 | - |", ser.label),
                }
            }
            Ok(())
        }
    }
}

/// A setting's name for people: its lower-case, hyphenated Debug name (`PerConnection` ->
/// `per-connection`), as the options and config.json spell them.
fn label<T: std::fmt::Debug>(v: &T) -> String {
    let mut out = String::new();
    for (k, ch) in format!("{v:?}").chars().enumerate() {
        if ch.is_uppercase() {
            if k > 0 {
                out.push('-');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
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
            "| {} | {} | {} | {} | {} | {} | {} | {:.1e} | {worst:.1e} | {} |",
            label(&s.rule),
            label(&s.input),
            label(&s.alpha),
            s.clip.map_or("none".to_string(), |c| c.to_string()),
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

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| usage(format!("{}: invalid JSON: {e}", path.display())))
}

pub(crate) fn parse_enum<T: serde::de::DeserializeOwned>(
    option: &str,
    value: &str,
) -> Result<T, Failure> {
    serde_json::from_value(json!(value))
        .map_err(|_| usage(format!("{option}: invalid value '{value}'")))
}

/// Overrides the fields of configuration `c` with those of the JSON object in `path` (a
/// run's config.json, which holds the configuration under "task", is accepted as it is).
pub(crate) fn merge_config_file<T>(c: T, path: &Path) -> Result<T, Failure>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
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
    serde_json::from_value(merged).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// `--time-limit` must be a positive number of minutes.
pub(crate) fn check_time_limit(common: &CommonArgs) -> Result<(), Failure> {
    match common.time_limit {
        Some(m) if !(m.is_finite() && m > 0.0) => Err(usage(format!(
            "--time-limit: must be a positive number of minutes (got {m})"
        ))),
        _ => Ok(()),
    }
}

/// The saved config.json of the run to resume (`None` for a new run). A resumed run keeps its
/// configuration: any option in `changed` that was given is an error.
pub(crate) fn resumed_config(
    experiment: &str,
    common: &CommonArgs,
    changed: &[(&str, bool)],
) -> Result<Option<serde_json::Value>, Failure> {
    let Some(dir) = &common.resume else {
        return Ok(None);
    };
    let given =
        std::iter::once(("--config", common.config.is_some())).chain(changed.iter().copied());
    for (name, given) in given {
        if given {
            return Err(usage(format!(
                "{name}: --resume continues a run with its saved config.json; start a new run to change it"
            )));
        }
    }
    let path = dir.join("config.json");
    let saved = read_json(&path)?;
    check_experiment(&saved, &path, experiment)?;
    Ok(Some(saved))
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
        c = merge_config_file(c, path)?;
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

/// A training command's run: the experiment, its resolved configuration (`task`) and the
/// run-level fields of config.json besides seed, episodes and threads.
pub(crate) struct TrainCommand<'a, E: Experiment> {
    task: &'a E,
    /// Model name, for the default run directory (`plastic`, `rnn`, `modul`...).
    model: serde_json::Value,
    task_json: serde_json::Value,
    extra: serde_json::Value,
}

/// Trains with a progress bar, the run directory of `CONVENTIONS.md` and learning curves of
/// `curves`; `message` formats the bar's running metrics. Returns the summary and the run
/// directory.
pub(crate) fn train_command<E: Experiment>(
    cmd: TrainCommand<'_, E>,
    common: &CommonArgs,
    base: Option<&serde_json::Value>,
    threads: usize,
    curves: &[&str],
    message: impl Fn(&Progress) -> String,
) -> Result<(Summary, PathBuf), Failure> {
    let name = cmd.task.name();
    let seed = common
        .seed
        .or_else(|| base.and_then(|b| b["seed"].as_u64()))
        .unwrap_or(0);
    let episodes = common
        .episodes
        .or_else(|| base.and_then(|b| b["episodes"].as_u64()))
        .unwrap_or(1000);
    let model_name = cmd.model;
    let out = common
        .resume
        .clone()
        .or_else(|| common.out.clone())
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "runs/{name}-{}-seed{seed}",
                model_name.as_str().unwrap_or("model")
            ))
        });
    let mut resolved = json!({
        "experiment": name,
        "seed": seed,
        "episodes": episodes,
        "threads": threads,
        "time_limit_minutes": common.time_limit,
        "task": cmd.task_json,
    });
    if let Some(extra) = cmd.extra.as_object() {
        for (k, v) in extra {
            resolved[k] = v.clone();
        }
    }
    check_time_limit(common)?;
    check_positive_episodes(common)?;
    safety::check_progress_every(common)?;
    safety::check_run_dir(
        common,
        &safety::RunPlan {
            out: &out,
            base,
            total: episodes,
            requested: common.episodes.map(|e| format!("--episodes {e}")),
            option: "--episodes",
            unit: "episodes",
        },
    )?;
    let opts = RunOptions {
        episodes,
        seed,
        out: out.clone(),
        resume: common.resume.is_some(),
        checkpoint_every: common.checkpoint_every,
        time_limit: common.time_limit.map(|m| m * 60.0),
    };
    let device = parse_device(&common.device)?;
    let mut reporter = safety::Reporter::new(name, "episodes", episodes, common.progress_every);
    safety::catch_interrupts();
    let summary = train::train(cmd.task, &resolved, &opts, &device, &mut |p| {
        reporter.update(p, message(p))
    });
    reporter.finish();
    let summary = summary?;
    write_learning_curve(&out, name, curves)?;
    if summary.stopped_by_signal {
        return Err(safety::interrupted(
            name, &summary, episodes, "episodes", &out,
        ));
    }
    report_time_limit(&summary, episodes, &out);
    Ok((summary, out))
}

/// `--episodes 0` would train nothing.
pub(crate) fn check_positive_episodes(common: &CommonArgs) -> Result<(), Failure> {
    if common.episodes == Some(0) {
        return Err(usage("--episodes: must be positive (0 trains nothing)"));
    }
    Ok(())
}

/// "the last 50 episodes" of an end-of-run summary, or as many as were averaged.
pub(crate) fn last_n(summary: &Summary, unit: &str) -> String {
    match summary.averaged {
        1 => format!("last {}", unit.trim_end_matches('s')),
        n => format!("last {n} {unit}"),
    }
}

fn train_pattern(args: PatternArgs) -> Result<(), Failure> {
    let threads = set_threads(args.common.threads, ProductThreads::PerRun)?;
    let common = &args.common;
    let base = resumed_config(
        "pattern",
        common,
        &[
            ("--model", args.model.is_some()),
            ("--preset", args.preset.is_some()),
            ("--bits", args.bits.is_some()),
            ("--patterns", args.patterns.is_some()),
            ("--lr", args.lr.is_some()),
            ("--batch", args.batch.is_some()),
            ("--rule", args.rule.is_some()),
            ("--alpha", args.alpha.is_some()),
        ],
    )?;
    let config = pattern_config(&args, base.as_ref().map(|b| b["task"].clone()))?;
    safety::check_memory("pattern", &config.memory_estimate())?;
    let task = PatternTask::new(config.clone()).map_err(|e| usage(format!("config: {e}")))?;
    let cmd = TrainCommand {
        task: &task,
        model: serde_json::to_value(config.model).expect("serializes"),
        task_json: serde_json::to_value(&config).expect("serializes"),
        extra: json!({"steps_per_episode": config.steps()}),
    };
    let (summary, out) = train_command(
        cmd,
        common,
        base.as_ref(),
        threads,
        &["loss", "error"],
        |p| format!("loss {:.3}  error(50) {:.4}", p.loss, p.running[0]),
    )?;
    eprintln!(
        "pattern: {} episodes in {:.1} s; {}: loss {:.4}, error {:.4}. Run directory: {}",
        summary.episodes,
        summary.seconds,
        last_n(&summary, "episodes"),
        summary.final_loss,
        summary.final_metrics[0],
        out.display()
    );
    Ok(())
}

/// Training and test images: CIFAR-10 binary files in `data_dir`, or the embedded patches.
fn image_sets(data_dir: Option<&Path>) -> Result<(ImageSet, ImageSet), Failure> {
    match data_dir {
        Some(dir) => Ok((
            cifar::read_dir(dir, Split::Train).map_err(usage)?,
            cifar::read_dir(dir, Split::Test).map_err(usage)?,
        )),
        None => Ok((
            embedded::images(Split::Train),
            embedded::images(Split::Test),
        )),
    }
}

/// Resolves the image configuration: defaults (or the resumed run's), config file, options.
fn images_config(
    args: &ImagesArgs,
    base: Option<serde_json::Value>,
) -> Result<ImageConfig, Failure> {
    let mut c = match base {
        Some(v) => serde_json::from_value(v).map_err(|e| usage(format!("config: {e}")))?,
        None => ImageConfig::default(),
    };
    if let Some(path) = &args.common.config {
        c = merge_config_file(c, path)?;
    }
    if let Some(m) = &args.model {
        c.model = m
            .parse::<ModelKind>()
            .map_err(|e| usage(format!("--model: {e}")))?;
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

/// The data directory recorded in a run's config.json (`None`: embedded images).
fn saved_data_dir(saved: &serde_json::Value) -> Option<PathBuf> {
    saved["data_dir"].as_str().map(PathBuf::from)
}

fn train_images(args: ImagesArgs) -> Result<(), Failure> {
    let threads = set_threads(args.common.threads, ProductThreads::PerRun)?;
    let common = &args.common;
    let base = resumed_config(
        "images",
        common,
        &[
            ("--model", args.model.is_some()),
            ("--data-dir", args.data_dir.is_some()),
            ("--lr", args.lr.is_some()),
            ("--batch", args.batch.is_some()),
            ("--rule", args.rule.is_some()),
            ("--alpha", args.alpha.is_some()),
        ],
    )?;
    let config = images_config(&args, base.as_ref().map(|b| b["task"].clone()))?;
    safety::check_memory("images", &config.memory_estimate())?;
    let data_dir = match &base {
        Some(b) => saved_data_dir(b),
        None => args.data_dir.clone(),
    };
    let (train_set, test_set) = image_sets(data_dir.as_deref())?;
    let (n_train, n_test) = (train_set.len(), test_set.len());
    let task = ImageTask::new(config.clone(), train_set, test_set).map_err(usage)?;
    let data_json = data_dir.as_ref().map(|d| d.display().to_string());
    let cmd = TrainCommand {
        task: &task,
        model: serde_json::to_value(config.model).expect("serializes"),
        task_json: serde_json::to_value(&config).expect("serializes"),
        extra: json!({
            "steps_per_episode": config.steps(),
            "data_dir": data_json,
            "train_images": n_train,
            "test_images": n_test,
        }),
    };
    let (summary, out) = train_command(
        cmd,
        common,
        base.as_ref(),
        threads,
        &["loss", "erased_loss"],
        |p| format!("loss {:.2}  erased_loss(50) {:.2}", p.loss, p.running[0]),
    )?;
    let device = parse_device(&common.device)?;
    let (model, _) = load_run_model(&task, &out, &device)?;
    write_reconstructions(&task, &model, &out.join("reconstructions.png"), 6, &device)?;
    eprintln!(
        "images: {} episodes in {:.1} s; {}: loss {:.3}, erased_loss {:.3} (training images). Run directory: {}",
        summary.episodes,
        summary.seconds,
        last_n(&summary, "episodes"),
        summary.final_loss,
        summary.final_metrics[0],
        out.display()
    );
    Ok(())
}

/// Draws `rows` test episodes into a PNG: the three shown images, the test image with its
/// erased half (grey), the reconstruction, the truth.
fn write_reconstructions(
    task: &ImageTask,
    model: &<ImageTask as Experiment>::Model,
    path: &Path,
    rows: usize,
    device: &burn::tensor::Device,
) -> Result<(), Failure> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(2018);
    let mut cells: Vec<Vec<f32>> = Vec::new();
    let columns = task.config.images + 3;
    for _ in 0..rows {
        let (ep, _, recon, _) = task
            .run_episodes(model, Split::Test, 1, &mut rng, device)
            .map_err(usage)?;
        let p = ep.dims[2];
        cells.extend(ep.shown.chunks(p).map(<[f32]>::to_vec));
        cells.push(
            ep.targets
                .iter()
                .zip(&ep.erased)
                .map(|(&v, &e)| if e { 0.0 } else { v })
                .collect(),
        );
        cells.push(recon);
        cells.push(ep.targets.clone());
    }
    let side = task.config.side;
    let (scale, gap) = (3, 4);
    let cell = side * scale;
    let width = columns * cell + (columns + 1) * gap;
    let height = rows * cell + (rows + 1) * gap;
    let mut img = vec![255u8; width * height];
    for (k, pixels) in cells.iter().enumerate() {
        let (r, c) = (k / columns, k % columns);
        let (x0, y0) = (gap + c * (cell + gap), gap + r * (cell + gap));
        for y in 0..cell {
            for x in 0..cell {
                let v = pixels[(y / scale) * side + x / scale].clamp(-1.0, 1.0);
                img[(y0 + y) * width + x0 + x] = ((v + 1.0) * 127.5).round() as u8;
            }
        }
    }
    std::fs::write(path, png::grey(width, height, &img))
        .map_err(|e| Failure(1, format!("{}: {e}", path.display())))
}

pub(crate) fn write_learning_curve(
    run: &Path,
    experiment: &str,
    metrics: &[&str],
) -> Result<(), Failure> {
    for m in metrics {
        let pts = plot::read_metric(run, m).map_err(|e| Failure(1, e))?;
        let series = [plot::Series {
            label: format!("{m} (mean of 20)"),
            points: plot::smooth(&pts, 20),
            ..plot::Series::default()
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

/// Builds the model of `task` and loads the last checkpoint of `run` into it.
pub(crate) fn load_run_model<E: Experiment>(
    task: &E,
    run: &Path,
    device: &burn::tensor::Device,
) -> Result<(E::Model, u64), Failure> {
    let mut init_rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let model = task.init_model(&mut init_rng, device);
    Ok(train::load_model(run, model)?)
}

/// A run's config.json and its "task" configuration.
pub(crate) fn saved_run<C: DeserializeOwned>(
    run: &Path,
    experiment: &str,
) -> Result<(serde_json::Value, C), Failure> {
    let path = run.join("config.json");
    let saved = read_json(&path)?;
    check_experiment(&saved, &path, experiment)?;
    let config = serde_json::from_value(saved["task"].clone())
        .map_err(|e| usage(format!("{}: task: {e}", path.display())))?;
    Ok((saved, config))
}

/// A run's config.json must be one of `experiment` (not a maze run given to `eval images`).
pub(crate) fn check_experiment(
    saved: &serde_json::Value,
    path: &Path,
    experiment: &str,
) -> Result<(), Failure> {
    match saved["experiment"].as_str() {
        Some(e) if e != experiment => Err(usage(format!(
            "{}: this is a run of experiment {e}, not {experiment} (use `plasticity {e}` or `plasticity eval {e}`)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Evaluates the last checkpoint of `run`: the metric means over `episodes` evaluation
/// batches, the episodes the model was trained for, and the seconds it took.
fn eval_run<E: Experiment>(
    task: &E,
    run: &Path,
    episodes: u64,
    seed: u64,
    device: &burn::tensor::Device,
) -> Result<(Vec<f64>, u64, f64), Failure> {
    let (model, trained) = load_run_model(task, run, device)?;
    let started = Instant::now();
    let (means, _) = train::evaluate(task, &model, episodes, seed, device)?;
    Ok((means, trained, started.elapsed().as_secs_f64()))
}

fn eval(
    experiment: &str,
    run: &Path,
    episodes: u64,
    seed: u64,
    json_out: bool,
    data_dir: Option<PathBuf>,
    device: &burn::tensor::Device,
) -> Result<(), Failure> {
    let bad_config = |e: String| usage(format!("{}: {e}", run.join("config.json").display()));
    match experiment {
        "pattern" => {
            let (_, config): (_, PatternConfig) = saved_run(run, "pattern")?;
            let task = PatternTask::new(config).map_err(bad_config)?;
            let (means, trained, secs) = eval_run(&task, run, episodes, seed, device)?;
            if json_out {
                println!(
                    "{}",
                    json!({"experiment": "pattern", "episodes": episodes, "error": means[0], "trained_episodes": trained, "seed": seed})
                );
            } else {
                println!(
                    "pattern: error {:.5} over {episodes} fresh episodes (model trained {trained} episodes; {secs:.1} s)",
                    means[0],
                );
            }
        }
        "images" => {
            let (saved, config): (_, ImageConfig) = saved_run(run, "images")?;
            let data_dir = data_dir.or_else(|| saved_data_dir(&saved));
            let (train_set, test_set) = image_sets(data_dir.as_deref())?;
            let task = ImageTask::new(config, train_set, test_set).map_err(bad_config)?;
            let (means, trained, secs) = eval_run(&task, run, episodes, seed, device)?;
            let data = data_dir.map_or("embedded".into(), |d| d.display().to_string());
            if json_out {
                println!(
                    "{}",
                    json!({"experiment": "images", "episodes": episodes, "loss": means[0], "trained_episodes": trained, "seed": seed, "data": data})
                );
            } else {
                println!(
                    "images: held-out erased-half loss {:.3} over {episodes} episodes on test images ({data}; model trained {trained} episodes; {secs:.1} s)",
                    means[0],
                );
            }
        }
        "maze" | "cue-reward" => rl::eval_rl(experiment, run, episodes, seed, json_out, device)?,
        _ => {
            return Err(usage(format!(
            "eval: unknown experiment '{experiment}' (available: pattern, images, maze, cue-reward, omniglot, lm)"
        )))
        }
    }
    Ok(())
}

pub(crate) fn peak_rss_mb() -> f64 {
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
pub(crate) struct StepTimes {
    /// Per step, after 2 warm-up steps: total, and its parts (episode generation + forward,
    /// backward, Adam step), in ms.
    pub(crate) total: Vec<f64>,
    pub(crate) parts: [Vec<f64>; 3],
    /// Most device memory the allocator held (GPU only), MB.
    device_mb: Option<f64>,
}

pub(crate) fn time_steps<E: Experiment>(
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

/// Median of a non-empty list of timings.
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
images (N=1025, T=201, B=1, clamped), maze (N=100, T=200, B=30, clipped trace, synthetic \
episodes), maze-agent (the maze task: rollout, replay, A2C), cue-reward (N=200, T=120, B=30), \
omniglot (5-way 1-shot, convolutions + plastic output layer), lm (Penn Treebank, small preset)";

fn bench(
    workload: &str,
    model_name: Option<&str>,
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
    let rl = matches!(workload, "maze-agent" | "cue-reward");
    if rl && device_name != "cpu" {
        return Err(usage(rl::RL_CPU_ONLY));
    }
    let model_name = model_name.unwrap_or(if rl { "modul" } else { "plastic" });
    let agent = || {
        model_name
            .parse::<AgentModel>()
            .map_err(|e| usage(format!("--model: {e}")))
    };
    let model = if rl {
        ModelKind::Plastic // unused by the actor-critic workloads
    } else {
        model_name
            .parse::<ModelKind>()
            .map_err(|e| usage(format!("--model: {e}")))?
    };
    let pattern = |rule| PatternConfig {
        batch: batch.unwrap_or(1),
        rule,
        model,
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
        "images" => {
            // The embedded images: the timing does not depend on the pictures.
            let c = ImageConfig {
                batch: batch.unwrap_or(1),
                model,
                ..ImageConfig::default()
            };
            let shape = (c.neurons(), c.steps(), c.batch);
            let (train_set, test_set) = image_sets(None)?;
            let task = ImageTask::new(c, train_set, test_set).map_err(usage)?;
            (shape, time_steps(&task, episodes, &device)?)
        }
        "maze" => {
            let c = synthetic(SyntheticConfig::maze());
            let shape = (c.net.neurons, c.steps, c.batch);
            let task = SyntheticTask::new(c).map_err(usage)?;
            (shape, time_steps(&task, episodes, &device)?)
        }
        "maze-agent" => {
            let c = MazeConfig {
                model: agent()?,
                batch: batch.unwrap_or(MazeConfig::default().batch),
                ..MazeConfig::default()
            };
            let shape = (c.neurons(), c.steps, c.batch);
            let task = MazeTask::new(c).map_err(usage)?;
            (shape, time_steps(&task, episodes, &device)?)
        }
        "cue-reward" => {
            let c = CueRewardConfig {
                model: agent()?,
                batch: batch.unwrap_or(CueRewardConfig::default().batch),
                ..CueRewardConfig::default()
            };
            let shape = (c.neurons, c.steps, c.batch);
            let task = CueRewardTask::new(c).map_err(usage)?;
            (shape, time_steps(&task, episodes, &device)?)
        }
        _ => {
            return Err(usage(format!(
                "bench: unknown workload '{workload}' (available: {WORKLOADS})"
            )))
        }
    };
    let (n, t, b) = shape;
    let [forward_ms, backward_ms, optimizer_ms] = times.parts.clone().map(|p| median(&p));
    let ms = median(&times.total);
    let min = times.total.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.total.iter().copied().fold(0.0, f64::max);
    let rss = peak_rss_mb();
    // Roofline (CPU): the kernels' minimal traffic over the step's time, against the triad over
    // a working set of the same size (w, alpha, each episode's Hebb and its gradient).
    // Only the plastic kernels have that traffic: not the non-plastic RNN or the LSTM.
    let plastic = !matches!(model_name, "rnn" | "lstm");
    let achieved_gbs = plastic.then(|| model_bytes(n, t, b) / (ms / 1e3) / 1e9);
    let stream_gbs = (plastic && device_name == "cpu").then(|| triad_gbs((2 + 2 * b) * n * n));
    let fraction = stream_gbs.zip(achieved_gbs).map(|(s, a)| a / s);
    if json_out {
        println!(
            "{}",
            json!({"workload": workload, "model": model_name, "ms_per_episode": ms, "peak_rss_mb": rss, "threads": threads,
                   "device": device_name, "device_memory_mb": times.device_mb,
                   "model_bytes_per_step": plastic.then(|| model_bytes(n, t, b)), "achieved_gbs": achieved_gbs,
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
            "| {workload} | {device_name} | {n} | {t} | {b} | {threads} | {ms:.1} | {min:.1} | {max:.1} | {forward_ms:.1} | {backward_ms:.1} | {optimizer_ms:.1} | {rss:.0} | {} | {} | {} | {} |",
            opt(times.device_mb, &|m| format!("{m:.0}")),
            opt(achieved_gbs, &|g| format!("{g:.1}")),
            opt(stream_gbs, &|g| format!("{g:.1}")),
            opt(fraction, &|f| format!("{:.0}%", 100.0 * f)),
        );
    }
    Ok(())
}

/// Says on stderr that a run stopped at `--time-limit`, and how to continue it.
pub(crate) fn report_time_limit(summary: &Summary, episodes: u64, out: &Path) {
    if summary.stopped_by_time_limit {
        eprintln!(
            "stopped at the time limit after {} of {episodes} episodes ({:.1} min); the checkpoint is saved: continue with --resume {} --time-limit MINUTES (a larger total)",
            summary.episodes,
            summary.seconds / 60.0,
            out.display()
        );
    }
}
