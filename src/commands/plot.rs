//! `plasticity plot`: the smoothed learning curves of several runs in one chart (SVG, or PNG
//! when the file name ends in `.png`), and their final values as a table; or, with `--table`,
//! the curves of a CSV file drawn as given.

use super::common::{usage, Failure};
use crate::{chart, plot};
use clap::Args;
use std::path::{Path, PathBuf};

/// Options of `plasticity plot`.
#[derive(Args)]
pub(crate) struct PlotArgs {
    /// Run directories.
    runs: Vec<PathBuf>,
    /// Metric column of metrics.csv.
    #[arg(long, default_value = "error")]
    metric: String,
    /// Moving-average window, in rows of metrics.csv (default: about 1.5% of the longest
    /// run's rows, at least 1).
    #[arg(long)]
    smooth: Option<usize>,
    /// Output file: SVG, or PNG when the name ends in `.png`.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Logarithmic y axis.
    #[arg(long)]
    log: bool,
    /// Column of metrics.csv for the x axis: `update`, or `seconds` to compare runs at equal
    /// wall time (e.g. different meta-batches). (`episode`: the old name of `update`.)
    #[arg(long, default_value = "update")]
    x: String,
    /// Group runs whose names differ only in a trailing `-seed<N>`: one median curve with
    /// its inter-quartile band per group.
    #[arg(long)]
    seeds: bool,
    /// Draw the curves of a long-format CSV file instead of runs, as given (not smoothed):
    /// columns `series,x,y` and optionally `low,high` (a shaded band), one row per point;
    /// lines starting with `#` are comments.
    #[arg(long, value_name = "FILE.csv", conflicts_with_all = ["runs", "metric", "smooth", "x", "seeds"])]
    table: Option<PathBuf>,
    /// The chart's title (with --table) [default: the file's name].
    #[arg(long)]
    title: Option<String>,
    /// The smaller line under the title (with --table) [default: where the curves come from,
    /// not smoothed].
    #[arg(long)]
    note: Option<String>,
    /// What the x axis counts (with --table) [default: x].
    #[arg(long)]
    x_label: Option<String>,
    /// What the y axis measures (with --table) [default: y].
    #[arg(long)]
    y_label: Option<String>,
    /// Draw the curve of this `series` as dots without a line (events such as rewards; with
    /// --table); repeatable.
    #[arg(long, value_name = "SERIES")]
    dots: Vec<String>,
}

/// Draws column `metric` of the `runs` against column `x` into `out` (see [`PlotArgs`]);
/// returns the curves, the smoothing window and what a row is called.
pub(crate) fn draw(
    runs: &[PathBuf],
    metric: &str,
    smooth: Option<usize>,
    out: &Path,
    log: bool,
    x: &str,
    seeds: bool,
) -> Result<(Vec<plot::Series>, usize, &'static str), Failure> {
    if runs.is_empty() {
        return Err(usage("plot: give at least one run directory"));
    }
    let x = if x == "episode" { "update" } else { x }; // the old name
    let curves = runs
        .iter()
        .map(|r| plot::read_columns(r, x, metric).map_err(usage))
        .collect::<Result<Vec<_>, _>>()?;
    let longest = curves.iter().map(Vec::len).max().unwrap_or(0);
    let smooth = smooth.unwrap_or_else(|| plot::auto_window(longest)).max(1);
    let mut series = Vec::new();
    if seeds {
        for (group, dirs) in plot::group_by_seed(runs) {
            let smoothed: Vec<_> = dirs
                .iter()
                .filter_map(|d| runs.iter().position(|r| r == d))
                .map(|k| plot::smooth(&curves[k], smooth))
                .collect();
            let label = format!("{group} (median, IQR of {})", dirs.len());
            series.push(plot::median_band(label, &smoothed));
        }
    } else {
        for (r, pts) in runs.iter().zip(curves) {
            let label = r.file_name().map_or_else(
                || r.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            series.push(plot::Series::smoothed(label, pts, smooth));
        }
    }
    let (x_label, rows) = match x {
        "update" => ("update", "updates"),
        "seconds" => ("wall time (seconds)", "points"),
        other => (other, "points"),
    };
    let note = if seeds {
        let average = if smooth > 1 {
            format!("moving average over {smooth} {rows}; ")
        } else {
            String::new()
        };
        format!("{average}median over seeds; band: inter-quartile range")
    } else {
        plot::smoothing_note(smooth, rows)
    };
    let drawing = chart::Chart {
        title: format!(
            "{metric} against {}",
            x_label.trim_end_matches(" (seconds)")
        ),
        note,
        x_label: x_label.to_string(),
        y_label: metric.to_string(),
        log_y: log,
        series: &series,
    };
    chart::write(&drawing, out).map_err(|e| Failure(1, e))?;
    Ok((series, smooth, rows))
}

/// `plasticity plot --table FILE`: the file's curves drawn as given; returns them.
fn draw_table(a: &PlotArgs, table: &Path) -> Result<Vec<plot::Series>, Failure> {
    let mut series = plot::read_table(table).map_err(usage)?;
    for name in &a.dots {
        let s = series
            .iter_mut()
            .find(|s| &s.label == name)
            .ok_or_else(|| {
                usage(format!(
                    "--dots {name}: {} has no series of that name",
                    table.display()
                ))
            })?;
        s.dots_only = true;
    }
    let stem = table.file_stem().map(|s| s.to_string_lossy().into_owned());
    let drawing = chart::Chart {
        title: a.title.clone().or(stem).unwrap_or_default(),
        note: a
            .note
            .clone()
            .unwrap_or_else(|| format!("{}, drawn as given (not smoothed)", table.display())),
        x_label: a.x_label.clone().unwrap_or_else(|| "x".into()),
        y_label: a.y_label.clone().unwrap_or_else(|| "y".into()),
        log_y: a.log,
        series: &series,
    };
    chart::write(&drawing, &a.out).map_err(|e| Failure(1, e))?;
    Ok(series)
}

/// `plasticity plot`.
pub(crate) fn plot_runs(a: PlotArgs) -> Result<(), Failure> {
    if let Some(table) = &a.table {
        let series = draw_table(&a, table)?;
        let (x, y) = (a.x_label.as_deref(), a.y_label.as_deref());
        let header = format!(
            "| series | {} | {} (last point) |",
            x.unwrap_or("x"),
            y.unwrap_or("y")
        );
        print_last(&series, &header, "");
        return Ok(());
    }
    let table_only = [&a.title, &a.note, &a.x_label, &a.y_label];
    if table_only.iter().any(|o| o.is_some()) || !a.dots.is_empty() {
        return Err(usage(
            "plot: --title, --note, --x-label, --y-label and --dots go with --table (a run's \
             chart is titled by its metric)",
        ));
    }
    let (series, smooth, rows) = draw(&a.runs, &a.metric, a.smooth, &a.out, a.log, &a.x, a.seeds)?;
    let (metric, x) = (a.metric, a.x);
    print_last(
        &series,
        &format!("| run | {x} | {metric}, mean of the last {smooth} {rows} |"),
        " (median)",
    );
    Ok(())
}

/// The curves' last values as a table on stdout (ready for a README) under `header`; a band's
/// centre is followed by `centre` (e.g. " (median)") and the band.
fn print_last(series: &[plot::Series], header: &str, centre: &str) {
    println!("{header}");
    println!("|---|---|---|");
    for ser in series {
        match (ser.points.last(), ser.band.last()) {
            (Some(&(x, y)), Some(&(_, lo, hi))) => println!(
                "| {} | {x} | {y:.3}{centre} [{lo:.3}, {hi:.3}] |",
                ser.label
            ),
            (Some(&(x, y)), None) => println!("| {} | {x} | {y:.3} |", ser.label),
            _ => println!("| {} | 0 | - |", ser.label),
        }
    }
}
