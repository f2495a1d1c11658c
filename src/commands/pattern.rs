//! `plasticity pattern` and `plasticity eval pattern`: binary pattern memorisation and
//! completion (ICML 2018, section 4.1).

use super::common::{
    check_model, saved_run, usage, Alpha, CommonArgs, Failure, ProductThreads, Rule,
};
use super::overlay::Finite;
use super::pipeline::{eval_run, unit, RunSpec, Session};
use clap::Args;
use plasticity::tasks::pattern::{PatternConfig, PatternPreset, PatternTask};
use plasticity::tasks::{completion, Model};
use serde::Serialize;
use serde_json::json;
use std::path::Path;

/// Options of `plasticity pattern`.
#[derive(Args)]
pub(crate) struct PatternArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Defaults to start from [default: paper].
    #[arg(long)]
    preset: Option<PatternPreset>,
    #[command(flatten)]
    options: PatternOptions,
}

/// The options that overlay the pattern configuration (named as its fields).
#[derive(Args, Serialize)]
struct PatternOptions {
    #[command(flatten)]
    #[serde(flatten)]
    net: NetOptions,
    /// Bits per pattern [paper: 1000].
    #[arg(long)]
    bits: Option<usize>,
    /// Patterns per episode [paper: 5].
    #[arg(long)]
    patterns: Option<usize>,
}

/// The options of the pattern and image tasks that overlay their configuration (named as its
/// fields).
#[derive(Args, Serialize)]
pub(crate) struct NetOptions {
    /// Network: plastic, rnn or lstm [default: plastic].
    #[arg(long)]
    pub(crate) model: Option<Model>,
    /// Adam learning rate [pattern: 3e-4; images: 1e-4].
    #[arg(long = "lr", allow_negative_numbers = true, value_parser = Finite)]
    learning_rate: Option<f64>,
    /// Episodes per update [paper: 1].
    #[arg(long)]
    batch: Option<usize>,
    /// Trace rule [paper: hebb].
    #[arg(long)]
    rule: Option<Rule>,
    /// Shape of alpha [paper: per-connection].
    #[arg(long)]
    alpha: Option<Alpha>,
}

/// `plasticity pattern`.
pub(crate) fn train_pattern(args: PatternArgs) -> Result<(), Failure> {
    check_model(args.options.net.model, completion::MODELS)?;
    let s = Session::start(
        "pattern",
        &args.common,
        ProductThreads::PerRun,
        &args.options,
        &[("--preset", args.preset.is_some())],
    )?;
    let preset = args.preset.unwrap_or(PatternPreset::Paper);
    let config = s.config(
        || PatternConfig::preset(preset),
        &args.options,
        PatternConfig::validate,
    )?;
    crate::safety::check_memory("pattern", &config.memory_estimate())?;
    let task = PatternTask::new(config.clone()).map_err(|e| usage(format!("config: {e}")))?;
    let spec = RunSpec {
        out: s.model_out(config.model),
        total: s.updates(1000),
        unit: unit(config.batch),
        task_json: serde_json::to_value(&config).expect("serializes"),
        extra: json!({"steps_per_episode": config.steps()}),
        curves: &["loss", "error"],
    };
    s.run(&task, &spec, config.batch)?;
    Ok(())
}

/// `plasticity eval pattern`: the error over `episodes` fresh episodes.
pub(crate) fn eval_pattern(
    run: &Path,
    episodes: u64,
    seed: u64,
    json_out: bool,
    device: &burn::tensor::Device,
) -> Result<(), Failure> {
    let (_, config): (_, PatternConfig) = saved_run(run, "pattern")?;
    let task = PatternTask::new(config)
        .map_err(|e| usage(format!("{}: {e}", run.join("config.json").display())))?;
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
    Ok(())
}
