//! `plasticity lm`, `plasticity eval lm`, `plasticity bench lm`: word-level language modelling
//! on Penn Treebank with LSTMs, plastic LSTMs and neuromodulated plastic LSTMs (ICLR 2019,
//! section 4.3).

use super::common::{
    check_model, data_dir_or, load_run_model, run_config_error, saved_run, updates_flag, usage,
    Alpha, CommonArgs, Failure,
};
use super::eval::EvalArgs;
use super::overlay::Finite;
use super::pipeline::{config_error, last_n, RunSpec, Session};
use super::timing::{median, time_steps};
use crate::{chart, plot, safety};
use clap::Args;
use plasticity::data::ptb::{self, Corpus};
use plasticity::runtime;
use plasticity::tasks::lm::{self, LmConfig, LmPreset, LmTask};
use plasticity::tasks::Model;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Default location of the data (`--data-dir`).
pub const DEFAULT_DATA_DIR: &str = "data/ptb";

#[derive(Args)]
pub struct LmArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Recurrent layers [default: lstm].
    #[arg(long)]
    pub model: Option<Model>,
    /// Sizes and schedule: small (2 layers of 200 units, 2.65M parameters: a small CPU) or
    /// paper (3 layers, 1150 units, 24M parameters: section 4.3's size) [default: small].
    #[arg(long)]
    pub preset: Option<LmPreset>,
    /// Folder with ptb.train.txt, ptb.valid.txt, ptb.test.txt [default: data/ptb].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Training epochs [small: 6, paper: 100]. The run's length, not its configuration: a
    /// resumed run takes it to train longer.
    #[arg(long)]
    pub epochs: Option<u64>,
    #[command(flatten)]
    options: LmOptions,
}

/// The options that overlay the language model's configuration (named as its fields).
#[derive(Args, Serialize)]
struct LmOptions {
    /// Adam learning rate [small: 2e-3, paper: 1e-3].
    #[arg(long = "lr", allow_negative_numbers = true, value_parser = Finite)]
    learning_rate: Option<f64>,
    /// Parallel training sequences [small: 20, paper: 80].
    #[arg(long)]
    batch: Option<usize>,
    /// Steps of truncated backpropagation through time [small: 35, paper: 70].
    #[arg(long)]
    bptt: Option<usize>,
    /// Shape of alpha [paper: per-neuron].
    #[arg(long)]
    alpha: Option<Alpha>,
}

/// Resolves the configuration: preset (or a resumed run's), then `--config`, then options.
fn lm_config(args: &LmArgs, s: &Session<'_>) -> Result<LmConfig, Failure> {
    let model = args.model.unwrap_or(Model::Lstm);
    check_model(Some(model), lm::MODELS)?;
    let preset = args.preset.unwrap_or(LmPreset::Small);
    let fresh = || LmConfig::preset(preset, model);
    // Validated below, with --epochs (the run's length, which a resume may change).
    let mut c = s.config(fresh, &args.options, |_| Ok(()))?;
    if let Some(v) = args.epochs {
        c.epochs = v;
    }
    c.validate().map_err(config_error)?;
    Ok(c)
}

/// Reads the corpus, reporting its size on stderr.
fn load_corpus(dir: &Path, quiet: bool) -> Result<Arc<Corpus>, Failure> {
    let started = Instant::now();
    let corpus = ptb::load(dir).map_err(|e| usage(e.to_string()))?;
    if !quiet {
        eprintln!(
            "lm: {} words in the vocabulary; {} / {} / {} training / validation / test tokens from {} ({:.1} s)",
            corpus.vocab.len(),
            corpus.train.len(),
            corpus.valid.len(),
            corpus.test.len(),
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(Arc::new(corpus))
}

/// `plasticity lm`.
pub fn train_lm(args: LmArgs) -> Result<(), Failure> {
    let common = &args.common;
    if common.updates.is_some() {
        return Err(usage(format!(
            "{}: the language model counts epochs; use --epochs",
            updates_flag()
        )));
    }
    common.machine.cpu_only("lm")?;
    let s = Session::start(
        "lm",
        common,
        &args.options,
        &[
            ("--model", args.model.is_some()),
            ("--preset", args.preset.is_some()),
        ],
    )?;
    let config = lm_config(&args, &s)?;
    let data_dir = s.data_dir(args.data_dir.as_ref(), DEFAULT_DATA_DIR);
    let preset_name = serde_json::to_value(config.preset).expect("serializes");
    let out = s.out(&format!(
        "lm-{}-{}-seed{}",
        config.model.name(),
        preset_name.as_str().unwrap_or("preset"),
        s.seed
    ));
    let corpus = load_corpus(&data_dir, false)?;
    safety::check_memory("lm", &config.memory_estimate(corpus.vocab.len()))?;
    let task = LmTask::new(config.clone(), corpus).map_err(config_error)?;
    let total = task.total_updates();
    s.check_run(&safety::RunPlan {
        out: &out,
        base: s.base.as_ref(),
        total,
        requested: args
            .epochs
            .map(|e| format!("--epochs {e} ({total} updates)")),
        option: "--epochs",
        unit: "updates",
    })?;
    let (baseline, own) = task.param_counts();
    eprintln!(
        "lm: {} model, layers of {:?} units: {} parameters ({} embedding + {} recurrent); the LSTM baseline has {} ({:+.3}%)",
        config.model.name(),
        own.layer_units,
        own.total,
        own.embedding,
        own.recurrent,
        baseline.total,
        100.0 * (own.total as f64 - baseline.total as f64) / baseline.total as f64
    );
    let spe = task.segments_per_epoch();
    let spec = RunSpec::new(out, total, &config, &["loss"]).recording(json!({
        "epochs": config.epochs,
        "segments_per_epoch": spe,
        "data_dir": data_dir,
        "vocabulary": task.corpus.vocab.len(),
        "parameters": own,
        "lstm_parameters": baseline.total,
    }));
    let mut last_valid = f64::NAN;
    let summary = s.train(&task, &spec, |p| {
        if p.update % spe == 0 {
            last_valid = p.running[1];
        }
        format!(
            "epoch {}  train ppl(50) {:.1}  valid ppl {:.1}",
            p.update / spe + 1,
            p.running[2],
            last_valid
        )
    })?;
    write_perplexity_curve(&spec.out)?;
    s.check_stopped(&summary, &spec)?;
    eprintln!(
        "lm: {} updates ({:.2} epochs) in {:.1} s; {}: training perplexity {:.2}. Run directory: {}",
        summary.updates,
        summary.updates as f64 / spe as f64,
        summary.seconds,
        last_n(&summary, "updates"),
        summary.final_metrics[2],
        spec.out.display()
    );
    eprintln!(
        "test perplexity of the last checkpoint: plasticity eval lm --run {}",
        spec.out.display()
    );
    Ok(())
}

/// `perplexity.svg`: validation and test perplexity at the end of each epoch.
fn write_perplexity_curve(run: &Path) -> Result<(), Failure> {
    let mut series = Vec::new();
    for (column, label) in [("valid_perplexity", "validation"), ("perplexity", "test")] {
        let points = plot::read_metric(run, column).map_err(|e| Failure(1, e))?;
        if points.is_empty() {
            return Ok(()); // no epoch finished
        }
        series.push(plot::Series {
            label: label.into(),
            points,
            ..plot::Series::default()
        });
    }
    let drawing = chart::Chart {
        title: "lm: perplexity at the end of each epoch".into(),
        note: "one point per epoch, not smoothed".into(),
        x_label: "update".into(),
        y_label: "perplexity".into(),
        log_y: true,
        series: &series,
    };
    chart::write(&drawing, &run.join("perplexity.svg")).map_err(|e| Failure(1, e))
}

/// `plasticity eval lm`: test and validation perplexity of the run's last checkpoint.
pub fn eval_lm(a: &EvalArgs) -> Result<(), Failure> {
    let (saved, config): (_, LmConfig) = saved_run(&a.run, "lm")?;
    let data_dir = data_dir_or(a.data_dir.as_ref(), Some(&saved), DEFAULT_DATA_DIR);
    let corpus = load_corpus(&data_dir, a.json)?;
    let task = LmTask::new(config.clone(), corpus).map_err(run_config_error(&a.run))?;
    let device = burn::tensor::Device::flex().autodiff();
    let (model, trained) = load_run_model(&task, &a.run, &device)?;
    let started = Instant::now();
    let test = task.perplexity(&model, &task.corpus.test).map_err(usage)?;
    let valid = task.perplexity(&model, &task.corpus.valid).map_err(usage)?;
    let epochs = trained as f64 / task.segments_per_epoch() as f64;
    let model_name = config.model.name();
    if a.json {
        println!(
            "{}",
            json!({"experiment": "lm", "episodes": 1, "perplexity": test, "valid_perplexity": valid,
                   "test_tokens": task.corpus.test.len(), "model": model_name,
                   "parameters": task.param_counts().1.total,
                   "trained_updates": trained, "trained_epochs": epochs})
        );
    } else {
        println!(
            "lm: test perplexity {test:.2}, validation perplexity {valid:.2} ({} model, {:.2} epochs; {:.1} s)",
            model_name,
            epochs,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub fn bench_lm(
    model: Model,
    batch: Option<usize>,
    episodes: usize,
    json_out: bool,
    threads: usize,
    data_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    if episodes == 0 {
        return Err(usage("bench: --updates must be positive"));
    }
    check_model(Some(model), lm::MODELS)?;
    let mut config = LmConfig::preset(LmPreset::Small, model);
    if let Some(b) = batch {
        config.batch = b;
    }
    config.validate().map_err(config_error)?;
    let dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let corpus = load_corpus(&dir, true)?;
    let task = LmTask::new(config.clone(), corpus).map_err(usage)?;
    let device = burn::tensor::Device::flex().autodiff();
    // Per update (one segment of batch x bptt tokens): total, then forward, backward, Adam.
    let times = time_steps(&task, episodes, &device)?;
    let [forward_ms, backward_ms, optimizer_ms] = times.parts.clone().map(|p| median(&p));
    let update_ms = median(&times.total);
    let tokens = (config.batch * config.bptt) as f64;
    let tokens_per_s = tokens / (update_ms / 1e3);
    let epoch_min = task.segments_per_epoch() as f64 * update_ms / 6e4;
    let params = task.param_counts().1.total;
    let rss = runtime::peak_rss_mb();
    let model_name = model.name();
    if json_out {
        println!(
            "{}",
            json!({"workload": "lm", "model": model_name, "preset": "small", "ms_per_update": update_ms, "tokens_per_s": tokens_per_s,
                   "epoch_minutes": epoch_min, "peak_rss_mb": rss, "threads": threads,
                   "batch": config.batch, "bptt": config.bptt, "parameters": params,
                   "updates_timed": episodes, "forward_ms": forward_ms,
                   "backward_ms": backward_ms, "optimizer_ms": optimizer_ms})
        );
    } else {
        println!(
            "| workload | model | batch x bptt | threads | tokens/s | ms/update (median of {episodes}) | forward | backward | Adam | epoch (min) | peak RSS MB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| lm small ({params} parameters) | {} | {} x {} | {threads} | {tokens_per_s:.0} | {update_ms:.1} | {forward_ms:.1} | {backward_ms:.1} | {optimizer_ms:.1} | {epoch_min:.1} | {rss:.0} |",
            model_name,
            config.batch,
            config.bptt
        );
    }
    Ok(())
}
