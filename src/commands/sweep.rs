//! `plasticity sweep SPEC`: many seeds and settings as one command. The spec
//! ([`crate::sweep_spec`]) is checked against the experiment's options, the sweep folder gets
//! the spec and a manifest, and every point of the grid becomes an ordinary run folder in it,
//! run as a child process of this binary: here, `--jobs` at a time (the local backend), or as
//! the tasks of one Slurm job array ([`super::sweep_slurm`]). Running the same command again
//! skips finished points and resumes interrupted ones. `sweep status` and `sweep report`
//! ([`super::sweep_report`]) read the folder.

use super::common::{usage, write_atomic, Failure};
use super::sweep_point::{point_state, print_out, run_point, Manifest, ManifestPoint, PointState};
use super::{sweep_report, sweep_slurm};
use crate::sweep_spec::{scalar_text, Spec, MAX_POINTS};
use clap::{Args, CommandFactory, Subcommand, ValueEnum};
use plasticity::tasks::Model;
use plasticity::train::STOP_REQUESTED;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Options of `plasticity sweep`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    /// The sweep's specification: a TOML or JSON file (see docs/cli.md#sweeps).
    #[arg(value_name = "SPEC")]
    spec: Option<PathBuf>,
    /// The sweep folder [default: sweeps/<the spec's file name without extension>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Where the points run: here, or as one Slurm job array.
    #[arg(long, value_enum, default_value = "local")]
    on: Backend,
    /// Points run at once (local).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Threads of each run [local: the cores divided by --jobs; slurm: the spec's
    /// cpus-per-task].
    #[arg(long)]
    threads: Option<usize>,
    /// Run a grid of more than 1000 points.
    #[arg(long)]
    yes: bool,
    /// More sbatch options for this submission, e.g. "--partition=cpu --time=2:00:00".
    #[arg(long, allow_hyphen_values = true, value_name = "ARGS")]
    slurm_args: Option<String>,
    /// Write the sweep folder (and the array script) and say what would run, without running
    /// or submitting anything.
    #[arg(long)]
    dry_run: bool,
}

/// Where a sweep's points run.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// On this machine, --jobs at a time.
    Local,
    /// As the tasks of one Slurm job array (sbatch).
    Slurm,
}

#[derive(Subcommand)]
enum SweepAction {
    /// Each point's state: done, running, queued, failed, interrupted or pending.
    Status {
        /// The sweep folder.
        dir: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The table (median and inter-quartile range per group, every run's final metric and
    /// wall time) and the plot, into the sweep folder and on stdout.
    Report(sweep_report::ReportArgs),
    /// Runs one point (what each Slurm array task does).
    #[command(hide = true)]
    RunPoint {
        /// The sweep folder.
        dir: PathBuf,
        /// The point's index.
        index: usize,
        /// Threads of the run [default: $SLURM_CPUS_PER_TASK, else 1].
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// The experiments a sweep can run and the metric its report compares.
const EXPERIMENTS: &[(&str, &str)] = &[
    ("pattern", "error"),
    ("images", "erased_loss"),
    ("maze", "reward"),
    ("cue-reward", "reward"),
    ("omniglot", "accuracy"),
    ("lm", "perplexity"),
];

/// `plasticity sweep`.
pub(crate) fn sweep(args: SweepArgs) -> Result<(), Failure> {
    match args.action {
        Some(SweepAction::Status { dir, json }) => return sweep_report::status(&dir, json),
        Some(SweepAction::Report(r)) => return sweep_report::report(&r),
        Some(SweepAction::RunPoint {
            dir,
            index,
            threads,
        }) => return run_one(&dir, index, threads),
        None => {}
    }
    let Some(spec_path) = &args.spec else {
        return Err(usage(
            "sweep: give a spec file (plasticity sweep SPEC), or status DIR, or report DIR",
        ));
    };
    let (spec, text, toml) = read_spec(spec_path)?;
    check_spec(&spec).map_err(|m| usage(format!("{}: {m}", spec_path.display())))?;
    let size = spec.grid_size();
    if size > MAX_POINTS && !args.yes {
        return Err(usage(format!(
            "{}: axes: the grid has {size} points (more than {MAX_POINTS}): check the axes, or add --yes to run it",
            spec_path.display()
        )));
    }
    if args.jobs == 0 || args.threads == Some(0) {
        return Err(usage("--jobs and --threads: must be at least 1"));
    }
    let dir = args.out.clone().unwrap_or_else(|| {
        let stem = spec_path
            .file_stem()
            .map_or_else(|| "sweep".into(), |s| s.to_string_lossy().into_owned());
        Path::new("sweeps").join(stem)
    });
    let dir = std::path::absolute(&dir).map_err(|e| usage(format!("--out: {e}")))?;
    let m = prepare(&dir, &spec, &text, toml)?;
    match args.on {
        Backend::Local => run_local(&dir, &m, &args),
        Backend::Slurm => {
            sweep_slurm::submit(&dir, &m, &spec, args.slurm_args.as_deref(), args.dry_run)
        }
    }
}

/// Reads and parses the spec file: TOML unless its name ends in `.json`.
fn read_spec(path: &Path) -> Result<(Spec, String, bool), Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let toml = path.extension().is_none_or(|e| e != "json");
    let spec = Spec::parse(&text, toml).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    Ok((spec, text, toml))
}

/// Checks the spec against the experiment's command: the experiment, every option's name and
/// kind (a flag takes true or false), the models the experiment has, and every point's
/// command line as the command would parse it. The message names the field.
fn check_spec(spec: &Spec) -> Result<(), String> {
    let names: Vec<&str> = EXPERIMENTS.iter().map(|(e, _)| *e).collect();
    let cli = crate::Cli::command();
    let sub = cli
        .find_subcommand(&spec.experiment)
        .filter(|_| names.contains(&spec.experiment.as_str()))
        .ok_or_else(|| {
            format!(
                "experiment: unknown experiment '{}' (expected {})",
                spec.experiment,
                names.join(", ")
            )
        })?;
    match (spec.experiment.as_str(), &spec.budget) {
        ("lm", b) if b.updates.is_some() => {
            return Err(
                "budget.updates: the language model counts epochs: give budget.epochs".into(),
            )
        }
        (e, b) if e != "lm" && b.epochs.is_some() => {
            return Err(format!(
                "budget.epochs: {e} counts updates: give budget.updates"
            ))
        }
        _ => {}
    }
    let fields = spec.option_fields();
    for (name, field, value) in &fields {
        let arg = sub
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(name.as_str())
                    || a.get_all_aliases()
                        .is_some_and(|v| v.contains(&name.as_str()))
            })
            .ok_or_else(|| {
                format!(
                    "{field}: unknown option of {} (see plasticity {} --help)",
                    spec.experiment, spec.experiment
                )
            })?;
        let flag = !arg.get_action().takes_values();
        if flag != value.is_boolean() {
            return Err(if flag {
                format!("{field}: --{name} is a flag: true or false (got {value})")
            } else {
                format!("{field}: --{name} takes a value, not {value}")
            });
        }
        if name == "model" {
            let allowed = models(&spec.experiment);
            let text = scalar_text(value);
            if let Ok(m) = <Model as ValueEnum>::from_str(&text, false) {
                m.check(allowed).map_err(|e| format!("{field}: {e}"))?;
            }
        }
    }
    for p in spec.points() {
        let argv = spec.run_args(&p);
        let parsed = <crate::Cli as clap::Parser>::try_parse_from(
            std::iter::once("plasticity".to_string())
                .chain(argv)
                .chain(["--out".to_string(), "x".to_string()]),
        );
        if let Err(e) = parsed {
            use clap::error::{ContextKind, ContextValue};
            let option = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(a)) => a
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("--")
                    .to_string(),
                _ => String::new(),
            };
            let field = fields
                .iter()
                .find(|(n, _, _)| *n == option)
                .map_or_else(|| format!("point {}", p.name), |(_, f, _)| f.clone());
            let msg = crate::invalid_value_message(&e).unwrap_or_else(|| {
                let text = e.render().to_string();
                text.lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_string()
            });
            return Err(format!("{field}: {msg}"));
        }
    }
    Ok(())
}

/// The models of an experiment.
fn models(experiment: &str) -> &'static [Model] {
    use plasticity::tasks::{a2c, completion, lm};
    match experiment {
        "maze" | "cue-reward" => a2c::MODELS,
        "lm" => lm::MODELS,
        _ => completion::MODELS,
    }
}

/// The sweep folder: made with the spec and the manifest, or, when it holds a sweep already,
/// checked to be of the same spec (its manifest is kept).
fn prepare(dir: &Path, spec: &Spec, text: &str, toml: bool) -> Result<Manifest, Failure> {
    if dir.join("manifest.json").exists() {
        let m = Manifest::read(dir)?;
        let saved = m.spec()?;
        if saved != *spec {
            let which = differing_field(&saved, spec);
            return Err(usage(format!(
                "{} holds a sweep of another spec ({which} differs: see {}): run it with its own spec, or give another --out",
                dir.display(),
                dir.join(&m.spec_file).display()
            )));
        }
        return Ok(m);
    }
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(usage(format!(
            "--out {}: the folder is not empty and holds no sweep (no manifest.json): give another --out",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir.join("logs"))
        .map_err(|e| Failure(1, format!("{}: {e}", dir.display())))?;
    let spec_file = if toml { "spec.toml" } else { "spec.json" };
    write_atomic(&dir.join(spec_file), text.as_bytes())?;
    let cwd = std::env::current_dir().map_err(|e| Failure(1, format!("current folder: {e}")))?;
    let metric = EXPERIMENTS
        .iter()
        .find(|(e, _)| *e == spec.experiment)
        .map_or("loss", |(_, m)| m);
    let m = Manifest {
        experiment: spec.experiment.clone(),
        metric: metric.to_string(),
        cwd,
        spec_file: spec_file.to_string(),
        spec: spec.to_value(),
        points: spec
            .points()
            .into_iter()
            .map(|p| ManifestPoint {
                index: p.index,
                args: spec.run_args(&p),
                resume_args: spec.resume_args(&p),
                values: p.values.iter().cloned().collect(),
                name: p.name,
                group: p.group,
            })
            .collect(),
    };
    let mut json = serde_json::to_string_pretty(&m).expect("serializes");
    json.push('\n');
    write_atomic(&dir.join("manifest.json"), json.as_bytes())?;
    Ok(m)
}

/// The first top-level field in which two specs differ.
fn differing_field(a: &Spec, b: &Spec) -> &'static str {
    if a.experiment != b.experiment {
        "experiment"
    } else if a.options != b.options {
        "options"
    } else if a.axes != b.axes {
        "axes"
    } else if a.budget != b.budget {
        "budget"
    } else {
        "slurm"
    }
}

/// `sweep run-point DIR INDEX`: one point, its child in this process's group (Slurm's
/// signals reach it directly).
fn run_one(dir: &Path, index: usize, threads: Option<usize>) -> Result<(), Failure> {
    let dir = std::path::absolute(dir).map_err(|e| usage(format!("{}: {e}", dir.display())))?;
    let m = Manifest::read(&dir)?;
    let threads = threads
        .or_else(|| std::env::var("SLURM_CPUS_PER_TASK").ok()?.parse().ok())
        .unwrap_or(1);
    crate::safety::catch_interrupts();
    let ran = run_point(&dir, &m, index, threads, false)?;
    let name = &m.points[index].name;
    match ran.state {
        PointState::Done => {
            eprintln!("{name}: done");
            Ok(())
        }
        PointState::Interrupted => Err(Failure(
            crate::safety::INTERRUPTED,
            format!("{name}: interrupted (resumed by the next submission)"),
        )),
        _ => Err(Failure(
            1,
            format!(
                "{name}: failed; see {}",
                super::sweep_point::log_path(&dir, name).display()
            ),
        )),
    }
}

/// The local backend: the points that are not done, `--jobs` at a time, in the grid's order
/// (seed by seed), then the report. Ctrl-C (SIGINT, SIGTERM) stops the children after their
/// current update, with checkpoints: running the command again resumes them.
fn run_local(dir: &Path, m: &Manifest, args: &SweepArgs) -> Result<(), Failure> {
    let states: Vec<PointState> = m.points.iter().map(|p| point_state(dir, p, None)).collect();
    let todo: Vec<usize> = (0..m.points.len())
        .filter(|&k| !matches!(states[k], PointState::Done | PointState::Running))
        .collect();
    let count = |s: PointState| states.iter().filter(|&&x| x == s).count();
    let resume = todo
        .iter()
        .filter(|&&k| dir.join(&m.points[k].name).join("checkpoint.bin").exists())
        .count();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or((cores / args.jobs).max(1));
    eprintln!(
        "sweep {}: {} points: {} done, {} running elsewhere, {resume} to resume, {} to start; {} at a time, {threads} threads each",
        dir.display(),
        m.points.len(),
        count(PointState::Done),
        count(PointState::Running),
        todo.len() - resume,
        args.jobs
    );
    if args.dry_run {
        for &k in &todo {
            let p = &m.points[k];
            let run = dir.join(&p.name);
            let (how, args) = if run.join("checkpoint.bin").exists() {
                ("resume", &p.resume_args)
            } else {
                ("start", &p.args)
            };
            print_out(&format!(
                "{}: {how}: plasticity {}\n",
                p.name,
                args.join(" ")
            ));
        }
        return Ok(());
    }
    crate::safety::catch_interrupts();
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(todo.len()) {
            s.spawn(|| loop {
                if STOP_REQUESTED.load(Ordering::SeqCst) {
                    break;
                }
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&index) = todo.get(k) else { break };
                let name = &m.points[index].name;
                match run_point(dir, m, index, threads, true) {
                    Ok(ran) => {
                        let how = if ran.resumed { "resumed, " } else { "" };
                        let line = match ran.state {
                            PointState::Failed => {
                                failed.lock().unwrap().push(name.clone());
                                format!("failed: {}", super::sweep_point::last_log_line(dir, name))
                            }
                            st => format!("{} ({how}{:.1} s)", st.name(), ran.seconds),
                        };
                        eprintln!("[{}/{}] {name}: {line}", k + 1, todo.len());
                    }
                    Err(e) => {
                        *error.lock().unwrap() = Some(e);
                        STOP_REQUESTED.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap() {
        return Err(e);
    }
    if STOP_REQUESTED.load(Ordering::SeqCst) {
        return Err(Failure(
            crate::safety::INTERRUPTED,
            format!(
                "interrupted: the running points stopped with checkpoints; run the same command again to continue (finished points are skipped, interrupted ones resumed); state: plasticity sweep status {}",
                dir.display()
            ),
        ));
    }
    sweep_report::report(&sweep_report::ReportArgs::of(dir))?;
    let failed = failed.into_inner().unwrap();
    if !failed.is_empty() {
        return Err(Failure(
            1,
            format!(
                "{} of {} points failed ({}): their logs are in {}",
                failed.len(),
                m.points.len(),
                failed.join(", "),
                dir.join("logs").display()
            ),
        ));
    }
    Ok(())
}
