//! Run safety (issue 26): a new run never replaces an existing one unasked, a resumed run's
//! options are checked against what can take effect, a configuration too large for the machine
//! is refused before anything is allocated, SIGINT/SIGTERM stop a run cleanly with a
//! checkpoint, and progress is logged as lines when stderr is not a terminal.

use crate::commands::common::{usage, CommonArgs, Failure};
use indicatif::{ProgressBar, ProgressStyle};
use plasticity::tasks::MemoryEstimate;
use plasticity::train::{self, Progress, Summary};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Exit code of a run stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report Ctrl-C).
pub(crate) const INTERRUPTED: u8 = 130;

/// Pictures and curves a run writes next to its `train::RUN_FILES`; `--force` removes them
/// with the run so that none of the replaced run's outputs remains.
const RUN_PICTURES: &[&str] = &[
    "perplexity.svg",
    "modulator.svg",
    "reconstructions.png",
    "trajectory_before.png",
    "trajectory_after.png",
];

/// What a training command is about to do with its run directory.
pub(crate) struct RunPlan<'a> {
    /// Run directory.
    pub(crate) out: &'a Path,
    /// The resumed run's config.json (`None`: a new run).
    pub(crate) base: Option<&'a serde_json::Value>,
    /// Updates the run will reach.
    pub(crate) total: u64,
    /// How the total was asked for, for messages: `--updates 30`, `--epochs 2 (40 updates)`,
    /// or `None` when it comes from the run's config.json.
    pub(crate) requested: Option<String>,
    /// The option that sets the total (`--updates`, `--epochs`).
    pub(crate) option: &'a str,
    /// What an update is called (`episodes`, `updates`).
    pub(crate) unit: &'a str,
}

/// Checks the run directory before anything is allocated or written. A new run refuses a
/// folder that holds a run, unless `--force`, which removes that run's files. A resumed run
/// refuses `--out` (another folder), `--force`, a `--seed` other than the run's, and a total
/// that is not beyond the checkpoint.
pub(crate) fn check_run_dir(common: &CommonArgs, plan: &RunPlan<'_>) -> Result<(), Failure> {
    let out = plan.out;
    let Some(base) = plan.base else {
        if let Some(what) = train::describe_run(out) {
            if !common.force {
                return Err(usage(format!(
                    "{} holds {what}: --resume {} to continue it, another --out, or --force to replace it",
                    out.display(),
                    out.display()
                )));
            }
            remove_run(out)?;
        }
        return Ok(());
    };
    if common.force {
        return Err(usage(
            "--force: not with --resume (--force replaces a run, --resume continues it)",
        ));
    }
    if let Some(o) = &common.out {
        if o != out {
            return Err(usage(format!(
                "--out: --resume continues the run in its own folder ({}); copy that folder first to continue it elsewhere",
                out.display()
            )));
        }
    }
    if let (Some(given), Some(saved)) = (common.seed, base["seed"].as_u64()) {
        if given != saved {
            return Err(usage(format!(
                "--seed {given}: the run was trained with seed {saved} and --resume continues it with that seed (start a new run for another seed)"
            )));
        }
    }
    let done = train::checkpoint_update(out)?.ok_or_else(|| {
        usage(format!(
            "{}: no checkpoint to resume from (the run stopped before its first checkpoint); start it again with --force",
            out.join("checkpoint.bin").display()
        ))
    })?;
    let unit = plan.unit;
    if plan.total < done {
        let asked = plan
            .requested
            .clone()
            .unwrap_or_else(|| format!("the run's {} {unit}", plan.total));
        return Err(usage(format!(
            "{asked}: the run has already trained {done} {unit} (its last checkpoint); give more to extend it"
        )));
    }
    if plan.total == done {
        return Err(usage(format!(
            "--resume: the run is complete ({done} of {} {unit}); give {} with more to extend it",
            plan.total, plan.option
        )));
    }
    Ok(())
}

/// Removes the files of the run in `dir` (for `--force`), not the folder or other files.
fn remove_run(dir: &Path) -> Result<(), Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| usage(format!("{}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        let ours = train::RUN_FILES.iter().any(|f| {
            *f == name || (name.ends_with(".tmp") && f.rsplit_once('.').map(|p| p.0) == Some(stem))
        }) || RUN_PICTURES.contains(&name.as_str())
            || (name.starts_with("learning_curve_") && name.ends_with(".svg"));
        if ours {
            let path = entry.path();
            std::fs::remove_file(&path)
                .map_err(|e| Failure(1, format!("--force: {}: {e}", path.display())))?;
        }
    }
    Ok(())
}

/// Bytes of memory this machine has: physical memory plus swap (`/proc/meminfo`); `None`
/// where that cannot be read.
fn machine_memory() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |key: &str| -> Option<f64> {
        info.lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
            .map(|kb| kb * 1024.0)
    };
    Some(field("MemTotal:")? + field("SwapTotal:").unwrap_or(0.0))
}

/// A number of bytes for people: `1.2 GB`, `37.3 TB`.
pub(crate) fn human_bytes(bytes: f64) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = bytes;
    let mut k = 0;
    while v >= 1000.0 && k + 1 < units.len() {
        v /= 1000.0;
        k += 1;
    }
    if k == 0 {
        format!("{v:.0} bytes")
    } else {
        format!("{v:.1} {}", units[k])
    }
}

/// Refuses a configuration whose memory estimate (a lower bound) exceeds the machine's memory
/// and swap, naming the field that sets the largest part and the bytes needed.
pub(crate) fn check_memory(experiment: &str, estimate: &MemoryEstimate) -> Result<(), Failure> {
    let Some(have) = machine_memory() else {
        return Ok(());
    };
    let need = estimate.total();
    if need <= have {
        return Ok(());
    }
    let (what, part) = estimate
        .largest()
        .cloned()
        .unwrap_or_else(|| ("the configuration".into(), need));
    Err(usage(format!(
        "config: {what} needs at least {} ({need:.3e} bytes) of memory, {} in all for this {experiment} configuration; this machine has {} (memory and swap): make it smaller",
        human_bytes(part),
        human_bytes(need),
        human_bytes(have)
    )))
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    // The first signal asks the loop to stop after the current update; a second one ends the
    // process at once (every write is atomic, so nothing is damaged).
    if SIGNALS.fetch_add(1, Ordering::SeqCst) > 0 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(INTERRUPTED as libc::c_int) };
    }
    train::STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// From now on SIGINT and SIGTERM ask the training loop to finish its update, checkpoint and
/// stop ([`train::STOP_REQUESTED`]); a second signal exits at once with code 130.
pub(crate) fn catch_interrupts() {
    #[cfg(unix)]
    // SAFETY: the handler only touches atomics and calls _exit, both async-signal-safe.
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// The error that ends a run stopped by a signal: where it stopped and how to resume it.
pub(crate) fn interrupted(
    experiment: &str,
    summary: &Summary,
    total: u64,
    unit: &str,
    out: &Path,
) -> Failure {
    Failure(
        INTERRUPTED,
        format!(
            "interrupted: stopped after {} of {total} {unit} with a checkpoint; continue with: plasticity {experiment} --resume {}",
            summary.updates,
            out.display()
        ),
    )
}

/// Progress of a run: a bar on a terminal; otherwise (a log file, `nohup`) a line every
/// `every` seconds, and after the first and the last update, with the update, the running
/// metrics, the rate and the time left.
pub(crate) struct Reporter {
    bar: Option<ProgressBar>,
    name: String,
    unit: String,
    every: f64,
    started: Instant,
    last_line: Option<Instant>,
    first_done: Option<u64>,
}

impl Reporter {
    /// A reporter for `total` updates called `unit` of experiment `name`, lines every `every`
    /// seconds when stderr is not a terminal.
    pub(crate) fn new(name: &str, unit: &str, total: u64, every: f64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{bar:40}} {{pos}}/{{len}} {unit}  {{msg}}  [{{elapsed_precise}} < {{eta_precise}}]"
                ))
                .expect("valid template"),
            );
            bar
        });
        Reporter {
            bar,
            name: name.into(),
            unit: unit.into(),
            every,
            started: Instant::now(),
            last_line: None,
            first_done: None,
        }
    }

    /// Reports update `p` with the running metrics `message`.
    pub(crate) fn update(&mut self, p: &Progress, message: String) {
        let first = *self.first_done.get_or_insert(p.update.saturating_sub(1));
        if let Some(bar) = &self.bar {
            bar.set_position(p.update);
            bar.set_message(message);
            return;
        }
        let due = self
            .last_line
            .is_none_or(|t| t.elapsed().as_secs_f64() >= self.every)
            || p.update == p.total;
        if !due {
            return;
        }
        self.last_line = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64();
        let rate = (p.update - first) as f64 / secs.max(1e-9);
        let left = p.total.saturating_sub(p.update) as f64 / rate.max(1e-12);
        eprintln!(
            "{}: {} {}/{} ({:.1}%)  {message}  {rate:.3} {}/s  elapsed {}  ETA {}",
            self.name,
            self.unit.trim_end_matches('s'),
            p.update,
            p.total,
            100.0 * p.update as f64 / p.total.max(1) as f64,
            self.unit,
            clock(secs),
            clock(left),
        );
    }

    /// Clears the bar.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `1h02m03s`, `4m05s`, `6s`.
fn clock(secs: f64) -> String {
    if !secs.is_finite() {
        return "-".into();
    }
    let s = secs.round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// `--progress-every` must be a finite number of seconds >= 0.
pub(crate) fn check_progress_every(common: &CommonArgs) -> Result<(), Failure> {
    let s = common.progress_every;
    if s.is_finite() && s >= 0.0 {
        Ok(())
    } else {
        Err(usage(format!(
            "--progress-every: must be a number of seconds >= 0 (got {s})"
        )))
    }
}
