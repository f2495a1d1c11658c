//! The one train / eval / bench pipeline every experiment fills in: a [`Session`] resolves the
//! run-level options (threads, a resumed run, seed, run directory), checks them, trains with a
//! progress report and draws the learning curves; [`eval_run`] loads and evaluates the last
//! checkpoint (`timing` times full training steps).

use super::common::{
    check_experiment, data_dir_or, merge_config_file, parse_device, read_json, updates_flag, usage,
    CommonArgs, Failure,
};
use super::overlay;
use crate::{chart, plot, safety};
use plasticity::tasks::{Model, TaskConfig};
use plasticity::train::{self, Experiment, Progress, RunOptions, Summary};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A training command under way: its run options, the resumed run's config.json, the seed and
/// the threads.
pub(crate) struct Session<'a> {
    /// The experiment's name (`pattern`, `maze`...), as in config.json.
    pub(crate) experiment: &'static str,
    /// The options every training command shares.
    pub(crate) common: &'a CommonArgs,
    /// The config.json of the run to resume (`None`: a new run).
    pub(crate) base: Option<serde_json::Value>,
    /// Seed of the run: `--seed`, the resumed run's, or 0.
    pub(crate) seed: u64,
    /// rayon's threads.
    pub(crate) threads: usize,
}

/// What a session trains besides the experiment itself.
pub(crate) struct RunSpec<'a> {
    /// Run directory.
    pub(crate) out: PathBuf,
    /// Updates of the whole run.
    pub(crate) total: u64,
    /// What the progress report calls an update (`episodes`, `updates`).
    pub(crate) unit: &'a str,
    /// The resolved configuration (config.json's `task`).
    pub(crate) task_json: serde_json::Value,
    /// Other fields of config.json (data folder, sizes...).
    pub(crate) extra: serde_json::Value,
    /// Columns of metrics.csv drawn as `learning_curve_<column>.svg`.
    pub(crate) curves: &'a [&'a str],
}

impl<'a> RunSpec<'a> {
    /// A run of `total` updates into `out` of the resolved `config`, drawing the metrics.csv
    /// columns `curves`; the progress report counts `updates`, config.json has no other field.
    pub(crate) fn new(
        out: PathBuf,
        total: u64,
        config: &impl Serialize,
        curves: &'a [&'a str],
    ) -> Self {
        RunSpec {
            out,
            total,
            unit: "updates",
            task_json: serde_json::to_value(config).expect("a configuration serializes"),
            extra: json!({}),
            curves,
        }
    }

    /// The same, with the progress report counting `unit` (`episodes`, `updates`).
    pub(crate) fn counting(self, unit: &'a str) -> Self {
        RunSpec { unit, ..self }
    }

    /// The same, with `extra`'s fields added to config.json.
    pub(crate) fn recording(self, extra: serde_json::Value) -> Self {
        RunSpec { extra, ..self }
    }
}

impl<'a> Session<'a> {
    /// Sizes the threads ([`product_threads`] of the experiment), checks the run-level options
    /// and reads the config.json of the run to resume. A resumed run keeps its configuration:
    /// `--config`, an option of the overlay `options` or one of `more` that was given is an
    /// error.
    pub(crate) fn start<O: Serialize + clap::Args>(
        experiment: &'static str,
        common: &'a CommonArgs,
        options: &O,
        more: &[(&str, bool)],
    ) -> Result<Self, Failure> {
        let threads = common.machine.set_threads(experiment)?;
        let given = more
            .iter()
            .filter(|(_, given)| *given)
            .map(|(name, _)| name.to_string())
            .chain(overlay::given(options));
        let base = resumed_config(experiment, common, given)?;
        let seed = common
            .seed
            .or_else(|| base.as_ref().and_then(|b| b["seed"].as_u64()))
            .unwrap_or(0);
        Ok(Session {
            experiment,
            common,
            base,
            seed,
            threads,
        })
    }

    /// The configuration: the resumed run's `task` or `fresh()`, then the fields of
    /// `--config`, then the options given in `options`; then `validate`d (an error is a usage
    /// error, `config: ...`).
    pub(crate) fn config<C, O>(
        &self,
        fresh: impl FnOnce() -> C,
        options: &O,
        validate: impl FnOnce(&C) -> Result<(), String>,
    ) -> Result<C, Failure>
    where
        C: Serialize + DeserializeOwned,
        O: Serialize,
    {
        let mut c = match &self.base {
            Some(b) => serde_json::from_value(b["task"].clone()).map_err(config_error)?,
            None => fresh(),
        };
        if let Some(path) = &self.common.config {
            c = merge_config_file(c, path)?;
        }
        let c = overlay::apply(c, options)?;
        validate(&c).map_err(config_error)?;
        Ok(c)
    }

    /// A task's configuration (see [`Session::config`]) checked by the task's own `validate`,
    /// then against the machine's memory (exit 2 when the run could not fit).
    pub(crate) fn task_config<C: TaskConfig, O: Serialize>(
        &self,
        fresh: impl FnOnce() -> C,
        options: &O,
    ) -> Result<C, Failure> {
        let c = self.config(fresh, options, C::validate)?;
        safety::check_memory(self.experiment, &c.memory_estimate())?;
        Ok(c)
    }

    /// A field of the resumed run's config.json.
    pub(crate) fn saved(&self, key: &str) -> Option<&serde_json::Value> {
        self.base.as_ref().and_then(|b| b.get(key))
    }

    /// Updates of the run: `--updates`, the resumed run's, or `default`.
    pub(crate) fn updates(&self, default: u64) -> u64 {
        self.common
            .updates
            .or_else(|| {
                // "episodes" in runs written before it was named "updates".
                (self.saved("updates").or_else(|| self.saved("episodes")))?.as_u64()
            })
            .unwrap_or(default)
    }

    /// The data folder: `--data-dir`, the resumed run's, or `default`.
    pub(crate) fn data_dir(&self, given: Option<&PathBuf>, default: &str) -> PathBuf {
        data_dir_or(given, self.base.as_ref(), default)
    }

    /// Run directory: the resumed run's, `--out`, or `runs/<default_name>`.
    pub(crate) fn out(&self, default_name: &str) -> PathBuf {
        self.common
            .resume
            .clone()
            .or_else(|| self.common.out.clone())
            .unwrap_or_else(|| PathBuf::from(format!("runs/{default_name}")))
    }

    /// Run directory of a run of `model`: the resumed run's, `--out`, or
    /// `runs/<experiment>-<model>-seed<S>`.
    pub(crate) fn model_out(&self, model: Model) -> PathBuf {
        self.out(&format!(
            "{}-{}-seed{}",
            self.experiment,
            model.name(),
            self.seed
        ))
    }

    /// A run of `model` (see [`RunSpec::new`]) in its default folder ([`Session::model_out`]),
    /// of `--updates` updates (the resumed run's, or 1000).
    pub(crate) fn model_run<'c>(
        &self,
        model: Model,
        config: &impl Serialize,
        curves: &'c [&'c str],
    ) -> RunSpec<'c> {
        RunSpec::new(self.model_out(model), self.updates(1000), config, curves)
    }

    /// Checks the run-level options and the run directory before anything is allocated or
    /// written, for a run of `total` updates set by `--updates` (see [`safety::check_run_dir`]).
    pub(crate) fn check_updates_run(
        &self,
        out: &Path,
        total: u64,
        unit: &str,
    ) -> Result<(), Failure> {
        check_positive_updates(self.common)?;
        self.check_run(&safety::RunPlan {
            out,
            base: self.base.as_ref(),
            total,
            requested: self
                .common
                .updates
                .map(|e| format!("{} {e}", updates_flag())),
            option: updates_flag(),
            unit,
        })
    }

    /// Checks the run-level options and the run directory of `plan`.
    pub(crate) fn check_run(&self, plan: &safety::RunPlan<'_>) -> Result<(), Failure> {
        check_time_limit(self.common)?;
        safety::check_progress_every(self.common)?;
        safety::check_run_dir(self.common, plan)
    }

    /// Trains `task` into `spec.out` with a progress report whose running metrics `message`
    /// formats, then draws the learning curves. A run stopped by a signal is an error (exit
    /// 130, saying how to resume it); one stopped at `--time-limit` says how to continue.
    pub(crate) fn train<E: Experiment>(
        &self,
        task: &E,
        spec: &RunSpec<'_>,
        mut message: impl FnMut(&Progress) -> String,
    ) -> Result<Summary, Failure> {
        let name = self.experiment;
        let mut resolved = json!({
            "experiment": name,
            "seed": self.seed,
            "updates": spec.total,
            "threads": self.threads,
            "time_limit_minutes": self.common.time_limit,
            "task": spec.task_json,
        });
        if let Some(extra) = spec.extra.as_object() {
            for (k, v) in extra {
                resolved[k] = v.clone();
            }
        }
        let opts = RunOptions {
            updates: spec.total,
            seed: self.seed,
            out: spec.out.clone(),
            resume: self.common.resume.is_some(),
            checkpoint_every: self.common.checkpoint_every,
            time_limit: self.common.time_limit.map(|m| m * 60.0),
        };
        let device = parse_device(&self.common.machine.device)?;
        let mut reporter =
            safety::Reporter::new(name, spec.unit, spec.total, self.common.progress_every);
        safety::catch_interrupts();
        let summary = train::train(task, &resolved, &opts, &device, &mut |p| {
            let m = message(p);
            reporter.update(p, m)
        });
        reporter.finish();
        let summary = summary?;
        write_learning_curve(&spec.out, name, spec.unit, spec.curves)?;
        Ok(summary)
    }

    /// Checks the run's options and folder, trains `task` into `spec.out` (see
    /// [`Session::train`]; progress lines show the loss and the running mean of the task's
    /// first metric) and ends the run (see [`Session::finish`]; `batch`: episodes per update).
    pub(crate) fn run<E: Experiment>(
        &self,
        task: &E,
        spec: &RunSpec<'_>,
        batch: usize,
    ) -> Result<Summary, Failure> {
        self.check_updates_run(&spec.out, spec.total, spec.unit)?;
        let metric = task.metric_names()[0];
        let summary = self.train(task, spec, |p| {
            let (loss, value) = (significant(p.loss), significant(p.running[0]));
            format!("loss {loss}  {metric}(50) {value}")
        })?;
        let (loss, value) = (summary.final_loss, summary.final_metrics[0]);
        let metrics = format!(
            "loss {}, {metric} {}",
            significant(loss),
            significant(value)
        );
        self.finish(&summary, spec, batch, &metrics)?;
        Ok(summary)
    }

    /// Ends a run (see [`Session::check_stopped`]) and prints its last line on stderr: updates
    /// (and the episodes of each, `batch`), time, the running `metrics` and the run directory.
    pub(crate) fn finish(
        &self,
        summary: &Summary,
        spec: &RunSpec<'_>,
        batch: usize,
        metrics: &str,
    ) -> Result<(), Failure> {
        self.check_stopped(summary, spec)?;
        self.report(summary, spec, batch, metrics);
        Ok(())
    }

    fn report(&self, summary: &Summary, spec: &RunSpec<'_>, batch: usize, metrics: &str) {
        let done = match (spec.unit, batch) {
            ("updates", b) if b > 1 => format!("{} updates x {b} episodes", summary.updates),
            (unit, _) => format!("{} {unit}", summary.updates),
        };
        eprintln!(
            "{}: {done} in {:.1} s; {}: {metrics}. Run directory: {}",
            self.experiment,
            summary.seconds,
            last_n(summary, spec.unit),
            spec.out.display()
        );
    }

    /// A run stopped by a signal is an error (exit 130, saying how to resume it); one stopped
    /// at `--time-limit` says how to continue.
    pub(crate) fn check_stopped(
        &self,
        summary: &Summary,
        spec: &RunSpec<'_>,
    ) -> Result<(), Failure> {
        if summary.stopped_by_signal {
            return Err(safety::interrupted(
                self.experiment,
                summary,
                spec.total,
                spec.unit,
                &spec.out,
            ));
        }
        if summary.stopped_by_time_limit {
            eprintln!(
                "stopped at the time limit after {} of {} {} ({:.1} min); the checkpoint is saved: continue with --resume {} --time-limit MINUTES (a larger total)",
                summary.updates,
                spec.total,
                spec.unit,
                summary.seconds / 60.0,
                spec.out.display()
            );
        }
        Ok(())
    }
}

/// A configuration error (exit 2): `config: <message>`.
pub(crate) fn config_error(message: impl std::fmt::Display) -> Failure {
    usage(format!("config: {message}"))
}

/// `x` with four significant digits (at most six decimals): `61.21`, `0.1234`, `1234`.
pub(crate) fn significant(x: f64) -> String {
    let magnitude = if x == 0.0 || !x.is_finite() {
        0
    } else {
        x.abs().log10().floor() as i32
    };
    format!("{x:.*}", (3 - magnitude).clamp(0, 6) as usize)
}

/// `--time-limit` must be a positive number of minutes.
fn check_time_limit(common: &CommonArgs) -> Result<(), Failure> {
    match common.time_limit {
        Some(m) if !(m.is_finite() && m > 0.0) => Err(usage(format!(
            "--time-limit: must be a positive number of minutes (got {m})"
        ))),
        _ => Ok(()),
    }
}

/// `--updates 0` would train nothing.
fn check_positive_updates(common: &CommonArgs) -> Result<(), Failure> {
    if common.updates == Some(0) {
        return Err(usage(format!(
            "{}: must be positive (0 trains nothing)",
            updates_flag()
        )));
    }
    Ok(())
}

/// The saved config.json of the run to resume (`None` for a new run). A resumed run keeps its
/// configuration: `--config` or any option in `given` is an error.
fn resumed_config(
    experiment: &str,
    common: &CommonArgs,
    given: impl Iterator<Item = String>,
) -> Result<Option<serde_json::Value>, Failure> {
    let Some(dir) = &common.resume else {
        return Ok(None);
    };
    let config = common.config.is_some().then(|| "--config".to_string());
    if let Some(name) = config.into_iter().chain(given).next() {
        return Err(usage(format!(
            "{name}: --resume continues a run with its saved config.json; start a new run to change it"
        )));
    }
    let path = dir.join("config.json");
    let saved = read_json(&path)?;
    check_experiment(&saved, &path, experiment)?;
    Ok(Some(saved))
}

/// What a run of `batch` episodes per update counts: `episodes` when an update is one
/// episode, else `updates`.
pub(crate) fn unit(batch: usize) -> &'static str {
    if batch == 1 {
        "episodes"
    } else {
        "updates"
    }
}

/// "the last 50 episodes" of an end-of-run summary, or as many as were averaged.
pub(crate) fn last_n(summary: &Summary, unit: &str) -> String {
    match summary.averaged {
        1 => format!("last {}", unit.trim_end_matches('s')),
        n => format!("last {n} {unit}"),
    }
}

/// Draws `learning_curve_<metric>.svg` of each metric against the updates (`unit`: what the
/// run calls them): a moving average over about 1.5% of the run over the faint raw values;
/// the loss on a log axis when its smoothed curve is positive and spans more than a factor of
/// ten.
fn write_learning_curve(
    run: &Path,
    experiment: &str,
    unit: &str,
    metrics: &[&str],
) -> Result<(), Failure> {
    for m in metrics {
        let pts = plot::read_metric(run, m).map_err(|e| Failure(1, e))?;
        let window = plot::auto_window(pts.len());
        let series = [plot::Series::smoothed(m.to_string(), pts, window)];
        // A log axis for a positive loss whose smoothed curve spans more than a factor of ten.
        let (lo, hi) = series[0]
            .points
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), p| {
                (lo.min(p.1), hi.max(p.1))
            });
        let log_y = *m == "loss" && lo > 0.0 && hi >= 10.0 * lo;
        let drawing = chart::Chart {
            title: format!("{experiment}: {m} during training"),
            note: plot::smoothing_note(window, unit),
            x_label: unit.trim_end_matches('s').to_string(),
            y_label: m.to_string(),
            log_y,
            series: &series,
        };
        let path = run.join(format!("learning_curve_{m}.svg"));
        chart::write(&drawing, &path).map_err(|e| Failure(1, e))?;
    }
    Ok(())
}
