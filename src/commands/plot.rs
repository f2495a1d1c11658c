//! `plasticity plot`: the smoothed learning curves of several runs in one chart (SVG, or PNG
//! when the file name ends in `.png`), and their final values as a table.

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
    #[arg(long)]
    out: PathBuf,
    /// Logarithmic y axis.
    #[arg(long)]
    log: bool,
    /// Column of metrics.csv for the x axis: `episode` (updates), or `seconds` to compare
    /// runs at equal wall time (e.g. different meta-batches).
    #[arg(long, default_value = "episode")]
    x: String,
    /// Group runs whose names differ only in a trailing `-seed<N>`: one median curve with
    /// its inter-quartile band per group.
    #[arg(long)]
    seeds: bool,
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
        "episode" => ("update", "updates"),
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

/// `plasticity plot`.
pub(crate) fn plot_runs(a: PlotArgs) -> Result<(), Failure> {
    let (series, smooth, rows) = draw(&a.runs, &a.metric, a.smooth, &a.out, a.log, &a.x, a.seeds)?;
    let (metric, x) = (a.metric, a.x);
    // The final values as a table (stdout), ready for a README.
    println!("| run | {x} | {metric}, mean of the last {smooth} {rows} |");
    println!("|---|---|---|");
    for ser in &series {
        match (ser.points.last(), ser.band.last()) {
            (Some(&(x, y)), Some(&(_, lo, hi))) => println!(
                "| {} | {x} | {y:.3} (median) [{lo:.3}, {hi:.3}] |",
                ser.label
            ),
            (Some(&(x, y)), None) => println!("| {} | {x} | {y:.3} |", ser.label),
            _ => println!("| {} | 0 | - |", ser.label),
        }
    }
    Ok(())
}
