//! `plasticity`: the command line of the differentiable-plasticity experiments.
//! Commands and outputs follow `CONVENTIONS.md` (run directory, `eval --json`, exit codes).

mod omniglot;
mod plot;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use plasticity::tasks::pattern::{ModelKind, PatternConfig, PatternTask};
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
    /// One-shot classification of Omniglot characters with a plastic output layer (ICML 2018, section 4.3).
    Omniglot(Box<omniglot::OmniglotArgs>),
    /// Evaluate the last checkpoint of a run on fresh episodes.
    Eval {
        /// Experiment of the run (pattern, omniglot).
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
        /// omniglot: data folder [default: the run's].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Time full training episodes (forward, backward, optimizer step).
    Bench {
        /// Workload (pattern, omniglot).
        workload: String,
        /// Episodes per update (omniglot: the meta-batch).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed episodes (after 2 warm-up episodes).
        #[arg(long, default_value_t = 10)]
        episodes: usize,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// omniglot: data folder [default: data/omniglot].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
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
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
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
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

pub(crate) fn set_threads(threads: Option<usize>) -> Result<usize, Failure> {
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

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Pattern(args) => train_pattern(*args),
        Command::Omniglot(args) => omniglot::train_omniglot(*args),
        Command::Eval {
            experiment,
            run,
            episodes,
            seed,
            json,
            threads,
            ways,
            shots,
            data_dir,
        } => {
            set_threads(threads)?;
            if experiment == "omniglot" {
                let o = omniglot::EvalOptions {
                    episodes,
                    seed,
                    json,
                    ways,
                    shots,
                    data_dir,
                };
                return omniglot::eval_omniglot(&run, o);
            }
            if ways.is_some() || shots.is_some() || data_dir.is_some() {
                return Err(usage(format!(
                    "--ways, --shots, --data-dir: not options of eval {experiment}"
                )));
            }
            eval(&experiment, &run, episodes.unwrap_or(100), seed, json)
        }
        Command::Bench {
            workload,
            batch,
            episodes,
            json,
            threads,
            data_dir,
        } => {
            let threads = set_threads(threads)?;
            if workload == "omniglot" {
                return omniglot::bench_omniglot(batch, episodes, json, threads, data_dir);
            }
            bench(&workload, batch, episodes, json, threads)
        }
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

pub(crate) fn progress_bar(total: u64, done: u64) -> ProgressBar {
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
    let device = burn::tensor::Device::flex().autodiff();
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
) -> Result<(), Failure> {
    if experiment != "pattern" {
        return Err(usage(format!(
            "eval: unknown experiment '{experiment}' (available: pattern, omniglot)"
        )));
    }
    let saved = read_json(&run.join("config.json"))?;
    let config: PatternConfig = serde_json::from_value(saved["task"].clone())
        .map_err(|e| usage(format!("{}: task: {e}", run.join("config.json").display())))?;
    let task = PatternTask::new(config)
        .map_err(|e| usage(format!("{}: {e}", run.join("config.json").display())))?;
    let device = burn::tensor::Device::flex().autodiff();
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

fn bench(
    workload: &str,
    batch: usize,
    episodes: usize,
    json_out: bool,
    threads: usize,
) -> Result<(), Failure> {
    if workload != "pattern" {
        return Err(usage(format!(
            "bench: unknown workload '{workload}' (available: pattern, omniglot)"
        )));
    }
    if episodes == 0 || batch == 0 {
        return Err(usage("bench: --episodes and --batch must be positive"));
    }
    let config = PatternConfig {
        batch,
        ..PatternConfig::default()
    };
    let task = PatternTask::new(config.clone()).map_err(usage)?;
    let device = burn::tensor::Device::flex().autodiff();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let mut model = task.init_model(&mut rng, &device);
    let (adam, lr) = task.optimizer();
    let mut optim = adam.init();
    // Per episode: total, then its parts (episode generation + forward, backward, Adam step).
    let mut times = Vec::new();
    let mut parts: [Vec<f64>; 3] = Default::default();
    for k in 0..episodes + 2 {
        let t0 = Instant::now();
        let (loss, _) = task
            .train_episode(&model, &mut rng, &device)
            .map_err(usage)?;
        let t1 = Instant::now();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        let t2 = Instant::now();
        model = optim.step(lr, model, grads);
        let t3 = Instant::now();
        if k >= 2 {
            times.push((t3 - t0).as_secs_f64() * 1e3);
            for (part, (a, b)) in parts.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3)]) {
                part.push((b - a).as_secs_f64() * 1e3);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [forward_ms, backward_ms, optimizer_ms] = parts.map(|mut p| median(&mut p));
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let rss = peak_rss_mb();
    let n = config.neurons();
    if json_out {
        println!(
            "{}",
            json!({"workload": "pattern", "ms_per_episode": median, "peak_rss_mb": rss, "threads": threads,
                   "batch": batch, "neurons": n, "steps": config.steps(), "episodes_timed": episodes,
                   "min_ms": times[0], "max_ms": times[times.len() - 1],
                   "forward_ms": forward_ms, "backward_ms": backward_ms, "optimizer_ms": optimizer_ms})
        );
    } else {
        println!(
            "| workload | N | T | B | threads | ms/episode (median of {episodes}) | min | max | forward | backward | Adam | peak RSS MB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| pattern | {n} | {} | {batch} | {threads} | {median:.1} | {:.1} | {:.1} | {forward_ms:.1} | {backward_ms:.1} | {optimizer_ms:.1} | {rss:.0} |",
            config.steps(),
            times[0],
            times[times.len() - 1]
        );
    }
    Ok(())
}
