//! `plasticity pattern` and `plasticity eval pattern`: binary pattern memorisation and
//! completion (ICML 2018, section 4.1).

use super::common::{check_model, run_config_error, saved_run, Alpha, CommonArgs, Failure, Rule};
use super::eval::eval_run;
use super::eval::EvalArgs;
use super::overlay::Finite;
use super::pipeline::{config_error, unit, Session};
use clap::Args;
use plasticity::tasks::pattern::{PatternConfig, PatternPreset, PatternTask};
use plasticity::tasks::{completion, Model};
use serde::Serialize;
use serde_json::json;

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
    let fixed = [("--preset", args.preset.is_some())];
    let s = Session::start("pattern", &args.common, &args.options, &fixed)?;
    let preset = args.preset.unwrap_or(PatternPreset::Paper);
    let config = s.task_config(|| PatternConfig::preset(preset), &args.options)?;
    let task = PatternTask::new(config.clone()).map_err(config_error)?;
    let spec = s
        .model_run(config.model, &config, &["loss", "error"])
        .counting(unit(config.batch))
        .recording(json!({"steps_per_episode": config.steps()}));
    s.run(&task, &spec, config.batch)?;
    Ok(())
}

/// `plasticity eval pattern`: the error over `--episodes` fresh episodes.
pub(crate) fn eval_pattern(a: &EvalArgs, device: &burn::tensor::Device) -> Result<(), Failure> {
    let (_, config): (_, PatternConfig) = saved_run(&a.run, "pattern")?;
    let task = PatternTask::new(config).map_err(run_config_error(&a.run))?;
    let batch = task.config.batch;
    let ev = eval_run(&task, a, (100, batch), device)?;
    if a.json {
        println!(
            "{}",
            ev.json("pattern", a.seed, json!({"error": ev.means[0]}))
        );
    } else {
        println!(
            "pattern: error {:.5} over {} fresh episodes (model trained {} updates of {batch} episodes; {:.1} s)",
            ev.means[0], ev.episodes, ev.trained_updates, ev.seconds,
        );
    }
    Ok(())
}
