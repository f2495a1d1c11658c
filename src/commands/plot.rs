//! `plasticity plot`: the smoothed learning curves of several runs in one SVG, and their final
//! values as a table.

use super::common::{usage, Failure};
use crate::plot;
use clap::Args;
use std::path::PathBuf;

/// Options of `plasticity plot`.
#[derive(Args)]
pub(crate) struct PlotArgs {
    /// Run directories.
    runs: Vec<PathBuf>,
    /// Metric column of metrics.csv.
    #[arg(long, default_value = "error")]
    metric: String,
    /// Moving-average window (episodes).
    #[arg(long, default_value_t = 20)]
    smooth: usize,
    /// Output SVG file.
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

/// `plasticity plot`.
pub(crate) fn plot_runs(a: PlotArgs) -> Result<(), Failure> {
    let PlotArgs {
        runs,
        metric,
        smooth,
        out,
        log,
        x,
        seeds,
    } = a;
    if runs.is_empty() {
        return Err(usage("plot: give at least one run directory"));
    }
    let mut series = Vec::new();
    if seeds {
        for (group, dirs) in plot::group_by_seed(&runs) {
            let curves = dirs
                .iter()
                .map(|r| {
                    plot::read_columns(r, &x, &metric)
                        .map(|p| plot::smooth(&p, smooth))
                        .map_err(usage)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let label = format!("{group} (median, IQR of {})", dirs.len());
            series.push(plot::median_band(label, &curves));
        }
    } else {
        for r in &runs {
            let pts = plot::read_columns(r, &x, &metric).map_err(usage)?;
            let label = r.file_name().map_or_else(
                || r.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            series.push(plot::Series {
                label,
                points: plot::smooth(&pts, smooth),
                ..plot::Series::default()
            });
        }
    }
    let title = format!("{metric} ({smooth}-episode moving average)");
    std::fs::write(&out, plot::svg_chart(&title, &x, &metric, &series, log))
        .map_err(|e| Failure(1, format!("{}: {e}", out.display())))?;
    // The final values as a table (stdout), ready for a README.
    println!("| run | {x} | {metric}, mean of the last {smooth} episodes |");
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
