//! `plasticity omniglot`, `plasticity eval omniglot`, `plasticity bench omniglot`
//! (ICML 2018, section 4.3).

use super::common::{
    data_dir_or, load_run_model, run_config_error, saved_run, usage, CommonArgs, Failure, Rule,
};
use super::eval::EvalArgs;
use super::overlay::Finite;
use super::pipeline::{config_error, RunSpec, Session};
use super::timing::{median, time_steps};
use clap::Args;
use plasticity::data::omniglot::Omniglot;
use plasticity::runtime;
use plasticity::tasks::omniglot::{
    wilson_interval, ClassSet, FeatureNorm, OmniglotConfig, OmniglotTask, Split,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Default location of the data (`--data-dir`).
pub const DEFAULT_DATA_DIR: &str = "data/omniglot";
/// Default training episodes (updates) of `plasticity omniglot`.
const DEFAULT_EPISODES: u64 = 100_000;

/// Options of `plasticity omniglot`.
#[derive(Args)]
pub struct OmniglotArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Folder with images_background.zip / images_evaluation.zip (or the extracted folders)
    /// [default: data/omniglot].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    options: OmniglotOptions,
}

/// The options that overlay the Omniglot configuration (named as its fields).
#[derive(Args, Serialize)]
struct OmniglotOptions {
    /// Which characters train and which test: paper (all 1,623 characters, 100 random ones
    /// held out, section 4.3) or standard (background set trains, evaluation set tests)
    /// [default: paper].
    #[arg(long)]
    split: Option<Split>,
    /// Seed of the paper split's held-out characters (kept in config.json) [default: 0].
    #[arg(long)]
    split_seed: Option<u64>,
    /// Classes per episode, N-way [paper: 5].
    #[arg(long)]
    ways: Option<usize>,
    /// Labelled drawings per class, K-shot [paper: 1].
    #[arg(long)]
    shots: Option<usize>,
    /// Episodes per update (meta-batch) [paper: 1].
    #[arg(long)]
    meta_batch: Option<usize>,
    /// Adam learning rate [paper: 3e-5].
    #[arg(long = "lr", allow_negative_numbers = true, value_parser = Finite)]
    learning_rate: Option<f64>,
    /// Episodes between learning-rate decays (x lr_decay) [paper: 1000000].
    #[arg(long)]
    lr_decay_every: Option<u64>,
    /// Instead of the step decay, a half cosine from --lr to 0 over this many episodes (set it
    /// to the episodes the run will see) [paper: off].
    #[arg(long = "lr-cosine", value_name = "EPISODES")]
    lr_cosine_episodes: Option<u64>,
    /// Trace rule of the plastic output layer [paper: oja].
    #[arg(long)]
    rule: Option<Rule>,
    /// Channels of every convolution (= features into the plastic layer) [paper: 64].
    #[arg(long)]
    channels: Option<usize>,
    /// Training augmentation (not in the paper): shift every training image by up to this
    /// many pixels per axis, zero filled; evaluation never shifts [paper: 0].
    #[arg(long, value_name = "PIXELS")]
    max_shift: Option<usize>,
    /// Features into the plastic layer (not in the paper): none, or l2 (each image's features
    /// scaled to norm sqrt(C), so the plastic layer compares directions) [paper: none].
    #[arg(long)]
    feature_norm: Option<FeatureNorm>,
    /// Query steps per training episode (not in the paper): each query is its own episode
    /// sharing the support steps, whose features are computed once [paper: 1].
    #[arg(long)]
    queries: Option<usize>,
}

/// Reads and resizes the data the configuration needs, reporting the time on stderr.
fn load_data(dir: &Path, config: &OmniglotConfig, quiet: bool) -> Result<Arc<Omniglot>, Failure> {
    let started = Instant::now();
    let data = Omniglot::load(dir, &config.sets(), config.side).map_err(usage)?;
    if !quiet {
        eprintln!(
            "omniglot: {} characters, {} drawings from {} ({:.1} s)",
            data.characters.len(),
            data.drawings(),
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(Arc::new(data))
}

/// Held-out episodes run per forward pass in evaluation.
const EVAL_BATCH: usize = 100;

/// `plasticity omniglot`.
pub fn train_omniglot(args: OmniglotArgs) -> Result<(), Failure> {
    let common = &args.common;
    let s = Session::start("omniglot", common, &args.options, &[])?;
    let config = s.task_config(OmniglotConfig::default, &args.options)?;
    let data_dir = s.data_dir(args.data_dir.as_ref(), DEFAULT_DATA_DIR);
    let split_name = serde_json::to_value(config.split).expect("serializes");
    let out = s.out(&format!(
        "omniglot-{}-{}way{}shot-seed{}",
        split_name.as_str().unwrap_or("split"),
        config.ways,
        config.shots,
        s.seed
    ));
    let total = s.updates(DEFAULT_EPISODES);
    s.check_updates_run(&out, total, "updates")?;
    let data = load_data(&data_dir, &config, false)?;
    let task = OmniglotTask::new(config.clone(), data).map_err(config_error)?;
    let spec = RunSpec::new(out, total, &config, &["loss", "accuracy"]).recording(json!({
        "data_dir": data_dir,
        "train_classes": task.split.train.len(),
        "test_classes": task.split.test.len(),
    }));
    s.run(&task, &spec, config.meta_batch)?;
    eprintln!(
        "held-out accuracy: plasticity eval omniglot --run {}",
        spec.out.display()
    );
    Ok(())
}

/// `plasticity eval omniglot`: accuracy on `--episodes` fresh episodes of the held-out (or
/// training) classes, with its 95% Wilson interval.
pub fn eval_omniglot(o: &EvalArgs) -> Result<(), Failure> {
    let (saved, config): (_, OmniglotConfig) = saved_run(&o.run, "omniglot")?;
    let episodes = o.episodes.unwrap_or(1000);
    if episodes == 0 {
        return Err(usage("--episodes: must be positive"));
    }
    let ways = o.ways.unwrap_or(config.ways);
    let shots = o.shots.unwrap_or(config.shots);
    if ways == 0 || shots == 0 {
        return Err(usage("--ways, --shots: must be positive"));
    }
    let set = o.classes.unwrap_or(ClassSet::Test);
    let data_dir = data_dir_or(o.data_dir.as_ref(), Some(&saved), DEFAULT_DATA_DIR);
    let data = load_data(&data_dir, &config, o.json)?;
    let task = OmniglotTask::new(config.clone(), data).map_err(run_config_error(&o.run))?;
    let device = burn::tensor::Device::flex().autodiff();
    let (model, trained) = load_run_model(&task, &o.run, &device)?;
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let (correct, n) = task
        .accuracy(&model, set, episodes, ways, shots, EVAL_BATCH, &mut rng)
        .map_err(|e| usage(format!("eval omniglot: {e}")))?;
    let accuracy = correct as f64 / n as f64;
    let (lo, hi) = wilson_interval(correct, n);
    let split = serde_json::to_value(config.split).expect("serializes");
    if o.json {
        println!(
            "{}",
            json!({"experiment": "omniglot", "episodes": n, "accuracy": accuracy, "ci95": [lo, hi],
                   "ci95_method": "wilson", "correct": correct, "ways": ways, "shots": shots,
                   "split": split, "test_classes": task.split.test.len(),
                   "classes": set, "class_count": task.split.classes(set).len(),
                   "trained_updates": trained, "seed": o.seed})
        );
    } else {
        println!(
            "omniglot: accuracy {accuracy:.4} (95% Wilson interval {lo:.4}-{hi:.4}) on {n} {ways}-way {shots}-shot episodes of the {} {} classes ({} split; model trained {trained} updates; {:.1} s)",
            task.split.classes(set).len(),
            match set {
                ClassSet::Test => "held-out",
                ClassSet::Train => "training (unshifted)",
            },
            split.as_str().unwrap_or("?"),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub fn bench_omniglot(
    batch: usize,
    episodes: usize,
    json_out: bool,
    threads: usize,
    data_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    if episodes == 0 || batch == 0 {
        return Err(usage("bench: --updates and --batch must be positive"));
    }
    let config = OmniglotConfig {
        meta_batch: batch,
        ..OmniglotConfig::default()
    };
    let dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let started = Instant::now();
    let data = load_data(&dir, &config, true)?;
    let load_s = started.elapsed().as_secs_f64();
    let task = OmniglotTask::new(config.clone(), data).map_err(usage)?;
    let device = burn::tensor::Device::flex().autodiff();
    // Per update: total, then its parts (episodes + forward, backward, Adam step).
    let times = time_steps(&task, episodes, &device)?;
    let [forward_ms, backward_ms, optimizer_ms] = times.parts.clone().map(|p| median(&p));
    let update_ms = median(&times.total);
    let per_episode = update_ms / batch as f64;
    let rss = runtime::peak_rss_mb();
    if json_out {
        println!(
            "{}",
            json!({"workload": "omniglot", "ms_per_episode": per_episode, "ms_per_update": update_ms,
                   "peak_rss_mb": rss, "threads": threads, "meta_batch": batch,
                   "ways": config.ways, "shots": config.shots, "updates_timed": episodes,
                   "forward_ms": forward_ms, "backward_ms": backward_ms, "optimizer_ms": optimizer_ms,
                   "data_load_s": load_s})
        );
    } else {
        println!(
            "| workload | meta-batch | threads | ms/episode | ms/update (median of {episodes}) | forward | backward | Adam | data load s | peak RSS MB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| omniglot {}-way {}-shot | {batch} | {threads} | {per_episode:.2} | {update_ms:.1} | {forward_ms:.1} | {backward_ms:.1} | {optimizer_ms:.1} | {load_s:.1} | {rss:.0} |",
            config.ways, config.shots
        );
    }
    Ok(())
}
