//! `plasticity pattern` and `plasticity eval pattern`: binary pattern memorisation and
//! completion (ICML 2018, section 4.1).

use super::common::{parse_enum, saved_run, usage, CommonArgs, Failure, ProductThreads};
use super::pipeline::{eval_run, last_n, RunSpec, Session};
use clap::Args;
use plasticity::tasks::pattern::{PatternConfig, PatternTask};
use plasticity::tasks::ModelKind;
use plasticity::{AlphaShape, TraceRule};
use serde_json::json;
use std::path::Path;

/// Options of `plasticity pattern`.
#[derive(Args)]
pub(crate) struct PatternArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
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

/// Resolves the pattern configuration: preset (or the resumed run's), config file, options.
fn pattern_config(args: &PatternArgs, s: &Session<'_>) -> Result<PatternConfig, Failure> {
    let mut c = s.config(|| match args.preset.as_deref().unwrap_or("paper") {
        "paper" => Ok(PatternConfig::default()),
        "comparison50" => Ok(PatternConfig::comparison50()),
        other => Err(usage(format!(
            "--preset: unknown preset '{other}' (expected paper or comparison50)"
        ))),
    })?;
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

/// `plasticity pattern`.
pub(crate) fn train_pattern(args: PatternArgs) -> Result<(), Failure> {
    let s = Session::start(
        "pattern",
        &args.common,
        ProductThreads::PerRun,
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
    let config = pattern_config(&args, &s)?;
    crate::safety::check_memory("pattern", &config.memory_estimate())?;
    let task = PatternTask::new(config.clone()).map_err(|e| usage(format!("config: {e}")))?;
    let model = serde_json::to_value(config.model).expect("serializes");
    let spec = RunSpec {
        out: s.out(&format!(
            "pattern-{}-seed{}",
            model.as_str().unwrap_or("model"),
            s.seed
        )),
        total: s.episodes(1000),
        unit: "episodes",
        task_json: serde_json::to_value(&config).expect("serializes"),
        extra: json!({"steps_per_episode": config.steps()}),
        curves: &["loss", "error"],
    };
    s.check_episodes_run(&spec.out, spec.total, spec.unit)?;
    let summary = s.train(&task, &spec, |p| {
        format!("loss {:.3}  error(50) {:.4}", p.loss, p.running[0])
    })?;
    s.finish(&summary, &spec)?;
    eprintln!(
        "pattern: {} episodes in {:.1} s; {}: loss {:.4}, error {:.4}. Run directory: {}",
        summary.episodes,
        summary.seconds,
        last_n(&summary, "episodes"),
        summary.final_loss,
        summary.final_metrics[0],
        spec.out.display()
    );
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
