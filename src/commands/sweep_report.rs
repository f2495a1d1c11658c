//! `plasticity sweep status DIR` (each point's state, from the run folders and, for a Slurm
//! sweep, the queue) and `plasticity sweep report DIR` (the final metric of every run, its
//! median and inter-quartile range per group, wall times, and the plot of the groups).

use super::common::{usage, write_atomic, Failure};
use super::sweep_point::{last_log_line, point_state, print_out, Manifest, PointState};
use super::sweep_slurm;
use crate::plot;
use clap::Args;
use serde_json::{json, Value};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Options of `plasticity sweep report`.
#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The sweep folder.
    dir: PathBuf,
    /// Column of metrics.csv to compare [default: the experiment's: error, erased_loss,
    /// reward, accuracy or perplexity].
    #[arg(long)]
    metric: Option<String>,
    /// A run's final value: the mean of its last N values [default: about 1.5% of its rows,
    /// at least 1, as `plot`].
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Moving-average window of the plot, in rows [default: as `plot`].
    #[arg(long)]
    smooth: Option<usize>,
    /// One JSON object on stdout instead of the tables.
    #[arg(long)]
    json: bool,
}

impl ReportArgs {
    /// The default report of the sweep in `dir`.
    pub(crate) fn of(dir: &Path) -> ReportArgs {
        ReportArgs {
            dir: dir.to_path_buf(),
            metric: None,
            last: None,
            smooth: None,
            json: false,
        }
    }
}

/// The states of the sweep's points, and a note when the scheduler could not be asked.
fn states(dir: &Path, m: &Manifest) -> (Vec<PointState>, Option<String>) {
    let (queue, note) = match sweep_slurm::scheduled(dir) {
        Ok(q) => (q, None),
        Err(e) => (Default::default(), Some(e)),
    };
    let states = m
        .points
        .iter()
        .map(|p| point_state(dir, p, queue.get(&p.index).copied()))
        .collect();
    (states, note)
}

/// "4 points: 3 done, 1 failed".
/// The first line of `sweep status` and `sweep report`: the folder, the experiment and how
/// many points are in each state.
fn heading(dir: &Path, m: &Manifest, states: &[PointState]) -> String {
    format!(
        "sweep {}: {}, {}",
        dir.display(),
        m.experiment,
        summary(states)
    )
}

fn summary(states: &[PointState]) -> String {
    let mut parts = Vec::new();
    for s in [
        PointState::Done,
        PointState::Running,
        PointState::Queued,
        PointState::Interrupted,
        PointState::Failed,
        PointState::Pending,
    ] {
        let n = states.iter().filter(|&&x| x == s).count();
        if n > 0 {
            parts.push(format!("{n} {}", s.name()));
        }
    }
    format!("{} points: {}", states.len(), parts.join(", "))
}

/// `plasticity sweep status DIR`.
pub(crate) fn status(dir: &Path, json_out: bool) -> Result<(), Failure> {
    let m = Manifest::read(dir)?;
    let (states, note) = states(dir, &m);
    let jobs: Vec<String> = sweep_slurm::submissions(dir)
        .into_iter()
        .map(|s| s.job)
        .collect();
    if json_out {
        let points: Vec<Value> = m
            .points
            .iter()
            .zip(&states)
            .map(|(p, s)| {
                json!({"index": p.index, "name": p.name, "group": p.group, "state": s.name(),
                       "updates": last_row(&dir.join(&p.name)).map(|r| r.0)})
            })
            .collect();
        print_out(&format!(
            "{}\n",
            json!({"experiment": m.experiment, "points": points, "slurm_jobs": jobs,
                   "scheduler_error": note, "summary": summary(&states)})
        ));
        return Ok(());
    }
    let mut text = format!("{}\n", heading(dir, &m, &states));
    if !jobs.is_empty() {
        let _ = writeln!(text, "Slurm jobs: {}", jobs.join(", "));
    }
    if let Some(n) = note {
        let _ = writeln!(
            text,
            "(the scheduler did not answer: {n}; states from the run folders)"
        );
    }
    let _ = writeln!(text, "| point | run | state | updates | note |");
    let _ = writeln!(text, "|---|---|---|---|---|");
    for (p, s) in m.points.iter().zip(&states) {
        let updates = last_row(&dir.join(&p.name)).map_or("-".into(), |r| r.0.to_string());
        let note = match s {
            PointState::Failed => last_log_line(dir, &p.name),
            _ => String::new(),
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {updates} | {note} |",
            p.index,
            p.name,
            s.name()
        );
    }
    print_out(&text);
    Ok(())
}

/// A run's last update and its `seconds` (wall time, counting time before a resume).
fn last_row(run: &Path) -> Option<(u64, f64)> {
    let rows = plot::read_columns(run, "update", "seconds").ok()?;
    rows.last().map(|&(e, s)| (e as u64, s))
}

/// One run of the report.
struct RunResult {
    name: String,
    group: String,
    state: PointState,
    /// Last update, wall seconds, final value and how many values it averages.
    measured: Option<(u64, f64, f64, usize)>,
}

/// `plasticity sweep report DIR`.
pub(crate) fn report(a: &ReportArgs) -> Result<(), Failure> {
    let dir = &a.dir;
    let m = Manifest::read(dir)?;
    let metric = a.metric.clone().unwrap_or_else(|| m.metric.clone());
    let (states, _) = states(dir, &m);
    let mut runs = Vec::new();
    for (p, &state) in m.points.iter().zip(&states) {
        let run = dir.join(&p.name);
        let measured = match (plot::read_metric(&run, &metric), last_row(&run)) {
            (Ok(values), Some((updates, secs))) if !values.is_empty() => {
                let n = a
                    .last
                    .unwrap_or_else(|| plot::auto_window(values.len()))
                    .max(1);
                let tail = &values[values.len().saturating_sub(n)..];
                let mean = tail.iter().map(|v| v.1).sum::<f64>() / tail.len() as f64;
                Some((updates, secs, mean, tail.len()))
            }
            (Err(e), _) if run.join("metrics.csv").exists() => return Err(usage(e)),
            _ => None,
        };
        runs.push(RunResult {
            name: p.name.clone(),
            group: p.group.clone(),
            state,
            measured,
        });
    }
    let mut groups: Vec<(String, Vec<&RunResult>)> = Vec::new();
    for r in &runs {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, v)) => v.push(r),
            None => groups.push((r.group.clone(), vec![r])),
        }
    }
    // The plot: every measured run, grouped by seed (median and inter-quartile band).
    let measured: Vec<PathBuf> = runs
        .iter()
        .filter(|r| r.measured.is_some())
        .map(|r| dir.join(&r.name))
        .collect();
    let plot_file = dir.join(format!("{metric}.svg"));
    let plotted = !measured.is_empty();
    if plotted {
        let log = metric.contains("perplexity");
        super::plot::draw(
            &measured, &metric, a.smooth, &plot_file, log, "update", true,
        )?;
    }
    let mut group_json = Vec::new();
    let mut text = format!(
        "{}; a run's {metric}: the mean of its last values (about 1.5% of its rows, or --last)\n\n",
        heading(dir, &m, &states)
    );
    let _ = writeln!(
        text,
        "| group | runs | {metric}: median | inter-quartile range | each run | wall time (median) |"
    );
    let _ = writeln!(text, "|---|---|---|---|---|---|");
    for (g, members) in &groups {
        let finals: Vec<f64> = members
            .iter()
            .filter_map(|r| r.measured.map(|x| x.2))
            .collect();
        let walls: Vec<f64> = members
            .iter()
            .filter_map(|r| r.measured.map(|x| x.1))
            .collect();
        let stats = (!finals.is_empty()).then(|| {
            (
                plot::quantile(&finals, 0.5),
                plot::quantile(&finals, 0.25),
                plot::quantile(&finals, 0.75),
                plot::quantile(&walls, 0.5),
            )
        });
        let each: Vec<String> = finals.iter().map(|v| format!("{v:.4}")).collect();
        match stats {
            Some((med, q1, q3, wall)) => {
                let _ = writeln!(
                    text,
                    "| {g} | {} of {} | {med:.4} | [{q1:.4}, {q3:.4}] | {} | {} |",
                    finals.len(),
                    members.len(),
                    each.join(", "),
                    duration(wall)
                );
            }
            None => {
                let _ = writeln!(text, "| {g} | 0 of {} | - | - | - | - |", members.len());
            }
        }
        group_json.push(json!({
            "group": g, "runs": finals.len(), "points": members.len(), "values": finals,
            "median": stats.map(|s| s.0), "q25": stats.map(|s| s.1), "q75": stats.map(|s| s.2),
            "wall_seconds_median": stats.map(|s| s.3),
        }));
    }
    let _ = writeln!(text, "\n| run | state | updates | {metric} | wall time |");
    let _ = writeln!(text, "|---|---|---|---|---|");
    let mut run_json = Vec::new();
    for r in &runs {
        match r.measured {
            Some((updates, secs, v, _)) => {
                let _ = writeln!(
                    text,
                    "| {} | {} | {updates} | {v:.4} | {} |",
                    r.name,
                    r.state.name(),
                    duration(secs)
                );
            }
            None => {
                let _ = writeln!(text, "| {} | {} | - | - | - |", r.name, r.state.name());
            }
        }
        run_json.push(json!({
            "name": r.name, "group": r.group, "state": r.state.name(),
            "updates": r.measured.map(|x| x.0), "wall_seconds": r.measured.map(|x| x.1),
            "final": r.measured.map(|x| x.2), "averaged": r.measured.map(|x| x.3),
        }));
    }
    if plotted {
        let _ = writeln!(text, "\nplot: {}", plot_file.display());
    }
    let report = json!({
        "experiment": m.experiment, "metric": metric, "summary": summary(&states),
        "groups": group_json, "runs": run_json,
        "plot": plotted.then(|| plot_file.display().to_string()),
    });
    write_atomic(&dir.join("report.md"), text.as_bytes())?;
    let pretty = serde_json::to_string_pretty(&report).expect("serializes") + "\n";
    write_atomic(&dir.join("report.json"), pretty.as_bytes())?;
    if a.json {
        print_out(&format!("{report}\n"));
    } else {
        print_out(&text);
    }
    Ok(())
}

/// `42.0 s`, `12.5 min`, `2.3 h`.
fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.1} s")
    } else if secs < 7200.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}
