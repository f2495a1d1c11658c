//! `plasticity bench <workload>`: times full training steps (forward, backward, Adam) of the
//! papers' sizes, with the kernels' memory traffic against this machine's streaming bandwidth.

use super::common::{check_model, parse_device, usage, value_name, Failure, MachineArgs};
use super::images::image_sets;
use super::overlay::merge;
use super::timing::{median, time_steps, StepTimes};
use super::{lm, omniglot, rl};
use clap::{Args, ValueEnum};
use plasticity::runtime;
use plasticity::tasks::cue_reward::{CueRewardConfig, CueRewardTask};
use plasticity::tasks::images::{ImageConfig, ImageTask};
use plasticity::tasks::maze::{MazeConfig, MazeTask};
use plasticity::tasks::pattern::{PatternConfig, PatternTask};
use plasticity::tasks::synthetic::{SyntheticConfig, SyntheticTask};
use plasticity::tasks::{a2c, completion, parse_name, Model};
use plasticity::train::Experiment;
use plasticity::TraceRule;
use serde_json::json;
use std::path::PathBuf;

/// Options of `plasticity bench`.
#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Workload.
    workload: Workload,
    /// pattern, oja, images: plastic, rnn or lstm [default: plastic]; maze-agent, cue-reward:
    /// rnn, plastic, modplast or modul [default: modul]; lm: lstm, plastic or modulated
    /// [default: lstm].
    #[arg(long)]
    model: Option<Model>,
    /// Episodes per update [default: the workload's] (omniglot: the meta-batch).
    #[arg(long)]
    batch: Option<usize>,
    /// Timed updates, each one full training step (after 2 warm-up updates).
    #[arg(long, visible_alias = "episodes", default_value_t = 10)]
    updates: usize,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// omniglot, lm: data folder [default: data/omniglot, data/ptb].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    machine: MachineArgs,
}

/// The benchmark workloads (issue 3): the papers' sizes, full training steps.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// N=1001, T=106, B=1
    Pattern,
    /// pattern with Oja's rule
    Oja,
    /// N=1025, T=201, B=1, clamped input
    Images,
    /// N=100, T=200, B=30, clipped trace, synthetic episodes
    Maze,
    /// the maze task itself: rollout, replay, A2C
    MazeAgent,
    /// N=200, T=120, B=30
    CueReward,
    /// 5-way 1-shot, convolutions + plastic output layer
    Omniglot,
    /// Penn Treebank, small preset, one segment of 20 x 35 tokens per update
    Lm,
}

/// `plasticity bench`.
pub(crate) fn bench(a: BenchArgs) -> Result<(), Failure> {
    let name = value_name(&a.workload);
    let workload = name.as_str();
    let model = a.model.map(Model::name);
    let threads = a.machine.set_threads(workload)?;
    if workload == "omniglot" {
        a.machine.cpu_only("omniglot")?;
        return omniglot::bench_omniglot(
            a.batch.unwrap_or(1),
            a.updates,
            a.json,
            threads,
            a.data_dir,
        );
    }
    if workload == "lm" {
        a.machine.cpu_only("bench lm")?;
        let model = a.model.unwrap_or(Model::Lstm);
        return lm::bench_lm(model, a.batch, a.updates, a.json, threads, a.data_dir);
    }
    bench_plastic(
        workload,
        model,
        a.batch,
        a.updates,
        a.json,
        threads,
        &a.machine.device,
    )
}

/// The shape `(N, T, B)` of the task that `task` built (its error: a usage error) and the
/// timings of `updates` of its training steps.
fn timed<E: Experiment>(
    shape: (usize, usize, usize),
    task: Result<E, String>,
    updates: usize,
    device: &burn::tensor::Device,
) -> Result<((usize, usize, usize), StepTimes), Failure> {
    Ok((shape, time_steps(&task.map_err(usage)?, updates, device)?))
}

fn bench_plastic(
    workload: &str,
    model_name: Option<&str>,
    batch: Option<usize>,
    updates: usize,
    json_out: bool,
    threads: usize,
    device_name: &str,
) -> Result<(), Failure> {
    if updates == 0 || batch == Some(0) {
        return Err(usage("bench: --updates and --batch must be positive"));
    }
    let rl = matches!(workload, "maze-agent" | "cue-reward");
    let device = if rl {
        rl::agent_device(device_name)?
    } else {
        parse_device(device_name)?
    };
    let model_name = model_name.unwrap_or(if rl { "modul" } else { "plastic" });
    let model =
        parse_name::<Model>("model", model_name).map_err(|e| usage(format!("--model: {e}")))?;
    check_model(
        Some(model),
        if rl { a2c::MODELS } else { completion::MODELS },
    )?;
    // The workload's configuration with the model and, where given, the batch.
    let mut fields = serde_json::Map::new();
    fields.insert("model".into(), json!(model));
    if let Some(b) = batch {
        fields.insert("batch".into(), json!(b));
    }
    if workload == "oja" {
        fields.insert("rule".into(), json!(TraceRule::Oja));
    }
    let fields = &fields;
    let (shape, times) = match workload {
        "pattern" | "oja" => {
            let c = merge(PatternConfig::default(), fields, "bench")?;
            let shape = (c.neurons(), c.steps(), c.batch);
            timed(shape, PatternTask::new(c), updates, &device)?
        }
        "images" => {
            // The embedded images: the timing does not depend on the pictures.
            let c = merge(ImageConfig::default(), fields, "bench")?;
            let (train_set, test_set) = image_sets(None)?;
            let shape = (c.neurons(), c.steps(), c.batch);
            timed(
                shape,
                ImageTask::new(c, train_set, test_set),
                updates,
                &device,
            )?
        }
        "maze" => {
            let mut c = SyntheticConfig::maze();
            c.batch = batch.unwrap_or(c.batch);
            let shape = (c.net.neurons, c.steps, c.batch);
            timed(shape, SyntheticTask::new(c), updates, &device)?
        }
        "maze-agent" => {
            let c = merge(MazeConfig::default(), fields, "bench")?;
            let shape = (c.neurons(), c.env.steps, c.a2c.batch);
            timed(shape, MazeTask::new(c), updates, &device)?
        }
        "cue-reward" => {
            let c = merge(CueRewardConfig::default(), fields, "bench")?;
            let shape = (c.neurons, c.env.steps, c.a2c.batch);
            timed(shape, CueRewardTask::new(c), updates, &device)?
        }
        _ => return Err(usage(format!("bench: unknown workload '{workload}'"))),
    };
    let (n, t, b) = shape;
    let [forward_ms, backward_ms, optimizer_ms] = times.parts.clone().map(|p| median(&p));
    let ms = median(&times.total);
    let min = times.total.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.total.iter().copied().fold(0.0, f64::max);
    let rss = runtime::peak_rss_mb();
    // Roofline (CPU): the kernels' minimal traffic over the step's time, against the triad over
    // a working set of the same size (w, alpha, each episode's Hebb and its gradient).
    // Only the plastic kernels have that traffic: not the non-plastic RNN or the LSTM.
    let plastic = !matches!(model, Model::Rnn | Model::Lstm);
    let achieved_gbs = plastic.then(|| runtime::plastic_step_bytes(n, t, b) / (ms / 1e3) / 1e9);
    let stream_gbs = (plastic && device_name == "cpu")
        .then(|| runtime::triad_gbs(runtime::plastic_working_set(n, b)));
    let fraction = stream_gbs.zip(achieved_gbs).map(|(s, a)| a / s);
    // Arithmetic (CPU): the kernels' flops over the step's time, against the measured FMA peak
    // (the bound of the small-N shapes, whose traces sit in cache).
    let achieved_gflops = plastic.then(|| runtime::plastic_step_flops(n, t, b) / (ms / 1e3) / 1e9);
    let peak_gflops = (plastic && device_name == "cpu").then(runtime::fma_peak_gflops);
    let of_peak = peak_gflops.zip(achieved_gflops).map(|(p, a)| a / p);
    // The instruction set the CPU kernels chose at run time (`PLASTICITY_SIMD` caps it).
    let isa = runtime::instruction_set();
    if json_out {
        println!(
            "{}",
            json!({"workload": workload, "model": model_name, "ms_per_update": ms, "ms_per_episode": ms / b as f64, "peak_rss_mb": rss, "threads": threads,
                   "device": device_name, "instruction_set": isa, "device_memory_mb": times.device_mb,
                   "model_bytes_per_step": plastic.then(|| runtime::plastic_step_bytes(n, t, b)), "achieved_gbs": achieved_gbs,
                   "stream_gbs": stream_gbs, "roofline_fraction": fraction,
                   "achieved_gflops": achieved_gflops, "fma_peak_gflops": peak_gflops, "of_fma_peak": of_peak,
                   "batch": b, "neurons": n, "steps": t, "updates_timed": updates,
                   "min_ms": min, "max_ms": max,
                   "forward_ms": forward_ms, "backward_ms": backward_ms, "optimizer_ms": optimizer_ms})
        );
    } else {
        println!(
            "| workload | device | N | T | B | threads | ms/update (median of {updates}) | min | max | forward | backward | Adam | peak RSS MB | device MB | GB/s | triad GB/s | of roofline | GFLOP/s | FMA peak GFLOP/s | of peak |"
        );
        println!(
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_string(), f);
        println!(
            "| {workload} | {device_name} ({isa}) | {n} | {t} | {b} | {threads} | {ms:.1} | {min:.1} | {max:.1} | {forward_ms:.1} | {backward_ms:.1} | {optimizer_ms:.1} | {rss:.0} | {} | {} | {} | {} | {} | {} | {} |",
            opt(times.device_mb, &|m| format!("{m:.0}")),
            opt(achieved_gbs, &|g| format!("{g:.1}")),
            opt(stream_gbs, &|g| format!("{g:.1}")),
            opt(fraction, &|f| format!("{:.0}%", 100.0 * f)),
            opt(achieved_gflops, &|g| format!("{g:.1}")),
            opt(peak_gflops, &|g| format!("{g:.0}")),
            opt(of_peak, &|f| format!("{:.0}%", 100.0 * f)),
        );
    }
    Ok(())
}
