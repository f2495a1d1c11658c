//! The points of a sweep on disk: the manifest, each point's record (`logs/<name>.json`) and
//! log, its state, and [`run_point`], which runs one point as a child process of this binary
//! (a new run, or the resumption of an interrupted one) on either backend.

use super::common::{usage, write_atomic, Failure};
use crate::sweep_spec::Spec;
use plasticity::train::STOP_REQUESTED;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// `manifest.json` of a sweep folder: the spec, the experiment's metric, the folder the runs
/// start in (relative paths of the spec are relative to it) and every point with its command
/// lines.
#[derive(Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The experiment's command.
    pub(crate) experiment: String,
    /// The column of metrics.csv the report compares.
    pub(crate) metric: String,
    /// Where the runs start (the folder `plasticity sweep` ran in).
    pub(crate) cwd: PathBuf,
    /// The spec file's name in the sweep folder (`spec.toml`, `spec.json`).
    pub(crate) spec_file: String,
    /// The spec as JSON.
    pub(crate) spec: Value,
    /// The grid.
    pub(crate) points: Vec<ManifestPoint>,
}

/// One point of the manifest.
#[derive(Serialize, Deserialize)]
pub(crate) struct ManifestPoint {
    /// Its index: the Slurm array task that runs it.
    pub(crate) index: usize,
    /// Its run folder's name in the sweep folder.
    pub(crate) name: String,
    /// Its group (the name without `-seed<N>`).
    pub(crate) group: String,
    /// The axes' values.
    pub(crate) values: Map<String, Value>,
    /// A new run's command line (`--out` and `--threads` are added).
    pub(crate) args: Vec<String>,
    /// The resumption's command line (`--resume` and `--threads` are added).
    pub(crate) resume_args: Vec<String>,
}

impl Manifest {
    /// Reads `DIR/manifest.json`; a folder without one is not a sweep (exit 2).
    pub(crate) fn read(dir: &Path) -> Result<Manifest, Failure> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            usage(format!(
                "{}: {e} ({} is not a sweep folder?)",
                path.display(),
                dir.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
    }

    /// The spec it was made from.
    pub(crate) fn spec(&self) -> Result<Spec, Failure> {
        Spec::from_value(&self.spec).map_err(|e| usage(format!("manifest.json: spec: {e}")))
    }
}

/// Writes `text` on stdout; a closed stdout (`| head`) is not an error.
pub(crate) fn print_out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// What a point's last attempt left in `logs/<name>.json`.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    /// `running`, `done`, `failed` or `interrupted`.
    pub(crate) state: String,
    /// The process running the point (`running`).
    pub(crate) pid: u32,
    /// The machine it runs on.
    pub(crate) host: String,
    /// The run's exit code (128 + the signal for a run killed by one).
    pub(crate) code: Option<i32>,
    /// Wall seconds of this attempt.
    pub(crate) seconds: Option<f64>,
    /// The command line, after the binary.
    pub(crate) command: Vec<String>,
}

/// The state of a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PointState {
    /// Finished (exit 0; also a run stopped at its time budget).
    Done,
    /// Ended with an error (exit 1 or 2): its log says why.
    Failed,
    /// Stopped by a signal or killed: resumed from its checkpoint on the next run.
    Interrupted,
    /// Running now.
    Running,
    /// Waiting in the Slurm queue.
    Queued,
    /// Not started.
    Pending,
}

impl PointState {
    /// Its name in tables and JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            PointState::Done => "done",
            PointState::Failed => "failed",
            PointState::Interrupted => "interrupted",
            PointState::Running => "running",
            PointState::Queued => "queued",
            PointState::Pending => "pending",
        }
    }
}

/// The scheduler's view of a point: running or waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheduled {
    Running,
    Waiting,
}

fn record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.json"))
}

/// The log of a point's runs.
pub(crate) fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.log"))
}

/// The point's record, if it has one.
pub(crate) fn read_record(dir: &Path, name: &str) -> Option<Record> {
    let text = std::fs::read_to_string(record_path(dir, name)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The state of point `p` of the sweep in `dir`, with the scheduler's view `scheduled` (Slurm).
pub(crate) fn point_state(
    dir: &Path,
    p: &ManifestPoint,
    scheduled: Option<Scheduled>,
) -> PointState {
    match scheduled {
        Some(Scheduled::Running) => return PointState::Running,
        Some(Scheduled::Waiting) => return PointState::Queued,
        None => {}
    }
    match read_record(dir, &p.name) {
        Some(r) => match r.state.as_str() {
            "done" => PointState::Done,
            "failed" => PointState::Failed,
            "running" if r.host == hostname() && alive(r.pid) => PointState::Running,
            _ => PointState::Interrupted,
        },
        None if dir.join(&p.name).join("metrics.csv").exists() => PointState::Interrupted,
        None => PointState::Pending,
    }
}

/// The last line of a point's log (why it failed).
pub(crate) fn last_log_line(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(log_path(dir, name))
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// This machine's name.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
}

/// What [`run_point`] did.
pub(crate) struct Ran {
    /// The point's state afterwards.
    pub(crate) state: PointState,
    /// Whether it was already done (nothing ran).
    pub(crate) skipped: bool,
    /// Whether it resumed an interrupted run.
    pub(crate) resumed: bool,
    /// Wall seconds of this attempt.
    pub(crate) seconds: f64,
}

/// Runs point `index` of the sweep in `dir` (an absolute path) with `threads` threads: skips
/// it when done; resumes its run from the checkpoint when it has one (or records it done when
/// the checkpoint already reaches the budget); else starts it (replacing a run that never
/// reached a checkpoint). The run is a child process of this binary, its output appended to
/// `logs/<name>.log`, its outcome in `logs/<name>.json`. With `forward`, the child runs in a
/// process group of its own and a stop request (SIGINT, SIGTERM caught by this process) is
/// passed on to it once; without, the child shares this process's group, so that a terminal's
/// Ctrl-C or Slurm's signals reach it directly.
pub(crate) fn run_point(
    dir: &Path,
    m: &Manifest,
    index: usize,
    threads: usize,
    forward: bool,
) -> Result<Ran, Failure> {
    let p = m.points.get(index).ok_or_else(|| {
        usage(format!(
            "point {index}: the sweep has {} points (0 to {})",
            m.points.len(),
            m.points.len().saturating_sub(1)
        ))
    })?;
    let mut ran = Ran {
        state: PointState::Done,
        skipped: true,
        resumed: false,
        seconds: 0.0,
    };
    if point_state(dir, p, None) == PointState::Done {
        return Ok(ran);
    }
    ran.skipped = false;
    let run = dir.join(&p.name);
    let run_s = run.display().to_string();
    let checkpoint = plasticity::train::checkpoint_update(&run).ok().flatten();
    let mut args = match checkpoint {
        Some(k) => {
            if m.spec()?.budget.updates.is_some_and(|u| k >= u) {
                write_record(dir, p, "done", Some(0), Some(0.0), Vec::new())?;
                return Ok(ran);
            }
            ran.resumed = true;
            let mut a = p.resume_args.clone();
            a.splice(1..1, ["--resume".to_string(), run_s]);
            a
        }
        None => {
            let mut a = p.args.clone();
            a.extend(["--out".to_string(), run_s]);
            if run.join("config.json").exists() {
                a.push("--force".into());
            }
            a
        }
    };
    args.extend(["--threads".to_string(), threads.to_string()]);
    std::fs::create_dir_all(dir.join("logs"))
        .map_err(|e| Failure(1, format!("{}: {e}", dir.join("logs").display())))?;
    let log_file = log_path(dir, &p.name);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_file)
        .map_err(|e| Failure(1, format!("{}: {e}", log_file.display())))?;
    use std::io::Write;
    let _ = writeln!(log, "== plasticity {}", args.join(" "));
    let exe = std::env::current_exe().map_err(|e| Failure(1, format!("this binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args(&args)
        .current_dir(&m.cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| Failure(1, e.to_string()))?)
        .stderr(log);
    if forward {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure(1, format!("{}: cannot start the run: {e}", p.name)))?;
    let mut record = Record {
        state: "running".into(),
        pid: child.id(),
        host: hostname(),
        code: None,
        seconds: None,
        command: args,
    };
    write_atomic(&record_path(dir, &p.name), &to_json(&record))?;
    let mut forwarded = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| Failure(1, e.to_string()))? {
            break status;
        }
        if forward && !forwarded && STOP_REQUESTED.load(Ordering::SeqCst) {
            // SAFETY: sends SIGINT to our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    ran.seconds = started.elapsed().as_secs_f64();
    ran.state = match (status.code(), code) {
        (_, 0) => PointState::Done,
        (None, _) | (_, 130) => PointState::Interrupted,
        _ => PointState::Failed,
    };
    record.state = ran.state.name().into();
    record.code = Some(code);
    record.seconds = Some(ran.seconds);
    write_atomic(&record_path(dir, &p.name), &to_json(&record))?;
    Ok(ran)
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(v).expect("serializes");
    text.push('\n');
    text.into_bytes()
}

/// Writes the record of point `p`.
fn write_record(
    dir: &Path,
    p: &ManifestPoint,
    state: &str,
    code: Option<i32>,
    seconds: Option<f64>,
    command: Vec<String>,
) -> Result<(), Failure> {
    let r = Record {
        state: state.into(),
        pid: std::process::id(),
        host: hostname(),
        code,
        seconds,
        command,
    };
    write_atomic(&record_path(dir, &p.name), &to_json(&r))
}
