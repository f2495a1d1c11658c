//! The data of the learning curves: `metrics.csv` columns, moving averages, medians over seeds
//! (drawn by [`crate::chart`]).

use std::path::Path;

/// One curve: a label and `(x, value)` points, optionally with a shaded band `(x, low, high)`
/// (e.g. the inter-quartile range over seeds) and the raw points that `points` smooths (drawn
/// faint under it).
#[derive(Default, Debug)]
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// The curve.
    pub points: Vec<(f64, f64)>,
    /// A shaded band under the curve, `(x, low, high)`; empty for none.
    pub band: Vec<(f64, f64, f64)>,
    /// The unsmoothed values, drawn as a faint line; empty for none.
    pub raw: Vec<(f64, f64)>,
    /// Draw the points as dots without a line (events such as rewards).
    pub dots_only: bool,
}

impl Series {
    /// `points` smoothed over `window` points, with the raw points kept (drawn faint) when the
    /// window averages more than one point.
    pub fn smoothed(label: String, points: Vec<(f64, f64)>, window: usize) -> Self {
        let smoothed = smooth(&points, window);
        Series {
            label,
            points: smoothed,
            band: Vec::new(),
            raw: if window > 1 { points } else { Vec::new() },
            dots_only: false,
        }
    }
}

/// What a chart's smoothing is, for the line under its title: "moving average over 270 updates;
/// faint: not smoothed", or "each update, not smoothed" (`unit`: what one point is, plural).
pub fn smoothing_note(window: usize, unit: &str) -> String {
    if window > 1 {
        format!("moving average over {window} {unit}; faint: not smoothed")
    } else {
        format!("each {}, not smoothed", unit.trim_end_matches('s'))
    }
}

/// The moving-average window of a curve of `n` points: about 1.5% of them (at least 1), so that
/// a run of 18,000 updates is averaged over 270 and a run of 50 is drawn as it is.
pub fn auto_window(n: usize) -> usize {
    ((n as f64 * 0.015).round() as usize).max(1)
}

/// The `q`-quantile (0..=1) of `v` by linear interpolation between order statistics.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Median and inter-quartile band over runs (seeds) of the same curve: point `k` is taken
/// from every run that has it; runs are cut to the shortest.
pub fn median_band(label: String, runs: &[Vec<(f64, f64)>]) -> Series {
    let len = runs.iter().map(Vec::len).min().unwrap_or(0);
    let mut points = Vec::with_capacity(len);
    let mut band = Vec::with_capacity(len);
    for k in 0..len {
        let x = runs[0][k].0;
        let ys: Vec<f64> = runs.iter().map(|r| r[k].1).collect();
        points.push((x, quantile(&ys, 0.5)));
        band.push((x, quantile(&ys, 0.25), quantile(&ys, 0.75)));
    }
    Series {
        label,
        points,
        band,
        ..Series::default()
    }
}

/// Groups run directories by name without a trailing `-seed<N>`: `(group, runs)` in the
/// order of first appearance.
pub fn group_by_seed(runs: &[std::path::PathBuf]) -> Vec<(String, Vec<std::path::PathBuf>)> {
    let mut groups: Vec<(String, Vec<std::path::PathBuf>)> = Vec::new();
    for r in runs {
        let name = r.file_name().map_or_else(
            || r.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let key = match name.rfind("-seed") {
            Some(k) if name[k + 5..].chars().all(|c| c.is_ascii_digit()) && k + 5 < name.len() => {
                name[..k].to_string()
            }
            _ => name,
        };
        match groups.iter_mut().find(|(g, _)| *g == key) {
            Some((_, v)) => v.push(r.clone()),
            None => groups.push((key, vec![r.clone()])),
        }
    }
    groups
}

/// Reads column `column` of a run's `metrics.csv` against the update column.
pub fn read_metric(run: &Path, column: &str) -> Result<Vec<(f64, f64)>, String> {
    read_columns(run, "update", column)
}

/// Reads column `column` of a run's `metrics.csv` against column `x` (e.g. `update`, or
/// `seconds` to compare runs at equal wall time). Runs written before the update column was
/// named `update` call it `episode`: either name reads it.
pub fn read_columns(run: &Path, x: &str, column: &str) -> Result<Vec<(f64, f64)>, String> {
    let path = run.join("metrics.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| format!("{}: empty file", path.display()))?
        .split(',')
        .collect();
    let col = header.iter().position(|h| *h == column).ok_or_else(|| {
        format!(
            "{}: no column '{column}' (columns: {})",
            path.display(),
            header.join(",")
        )
    })?;
    let old_name = |h: &str| x == "update" && h == "episode";
    let xcol = header
        .iter()
        .position(|h| *h == x || old_name(h))
        .ok_or_else(|| {
            format!(
                "{}: no column '{x}' (columns: {})",
                path.display(),
                header.join(",")
            )
        })?;
    let mut out = Vec::new();
    for (k, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let parse = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        // An empty field: not measured at this update (the language model's per-epoch
        // perplexities).
        if fields.get(col).is_some_and(|v| v.is_empty()) {
            continue;
        }
        match (parse(xcol), parse(col)) {
            (Some(e), Some(v)) => out.push((e, v)),
            _ => {
                return Err(format!(
                    "{}: line {}: cannot read {x} and {column}",
                    path.display(),
                    k + 2
                ))
            }
        }
    }
    Ok(out)
}

/// Curves from a long-format CSV table: a header naming the columns `series`, `x`, `y` and
/// optionally `low` and `high` (a band, both or neither; empty on a row without one), then one
/// row per point; quoted fields may hold commas; blank lines and lines starting with `#` are
/// skipped. One [`Series`] per `series` value, in the order of first appearance, its points in
/// the file's order, drawn as given (not smoothed).
pub fn read_table(path: &Path) -> Result<Vec<Series>, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let mut rows = text
        .lines()
        .enumerate()
        .map(|(k, l)| (k + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (line, header) = rows
        .next()
        .ok_or_else(|| format!("{name}: empty file (expected a header series,x,y[,low,high])"))?;
    let header = csv_fields(header).map_err(|e| format!("{name}: line {line}: {e}"))?;
    let column = |c: &str| header.iter().position(|h| h.trim() == c);
    let need = |c: &str| {
        column(c).ok_or_else(|| {
            format!(
                "{name}: line {line}: no column '{c}' (the header has: {}; expected \
                 series,x,y[,low,high])",
                header.join(",")
            )
        })
    };
    let (label_col, x_col, y_col) = (need("series")?, need("x")?, need("y")?);
    let band_cols = match (column("low"), column("high")) {
        (Some(lo), Some(hi)) => Some((lo, hi)),
        (None, None) => None,
        _ => {
            return Err(format!(
                "{name}: line {line}: a band needs both columns 'low' and 'high'"
            ))
        }
    };
    let mut series: Vec<Series> = Vec::new();
    for (line, row) in rows {
        let at = |e: String| format!("{name}: line {line}: {e}");
        let fields = csv_fields(row).map_err(at)?;
        if fields.len() != header.len() {
            return Err(at(format!(
                "{} fields, the header has {}",
                fields.len(),
                header.len()
            )));
        }
        let number = |c: usize| -> Result<f64, String> {
            let v = fields[c].trim();
            v.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| at(format!("column '{}': '{v}' is not a number", header[c])))
        };
        let (x, y) = (number(x_col)?, number(y_col)?);
        let band = match band_cols {
            Some((lo, hi)) if !(fields[lo].trim().is_empty() && fields[hi].trim().is_empty()) => {
                Some((x, number(lo)?, number(hi)?))
            }
            _ => None,
        };
        let label = &fields[label_col];
        let k = match series.iter().position(|s| &s.label == label) {
            Some(k) => k,
            None => {
                series.push(Series {
                    label: label.clone(),
                    ..Series::default()
                });
                series.len() - 1
            }
        };
        series[k].points.push((x, y));
        series[k].band.extend(band);
    }
    if series.is_empty() {
        return Err(format!(
            "{name}: no rows after the header (no curve to draw)"
        ));
    }
    Ok(series)
}

/// The fields of one CSV line: separated by commas, a field in double quotes may hold commas
/// and `""` for a quote.
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("a field");
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(String::new()),
            _ => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    Ok(fields)
}

/// Moving average over `window` points.
pub fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let w = window.max(1);
    (0..points.len())
        .map(|i| {
            let lo = (i + 1).saturating_sub(w);
            let slice = &points[lo..=i];
            (
                points[i].0,
                slice.iter().map(|p| p.1).sum::<f64>() / slice.len() as f64,
            )
        })
        .collect()
}

/// Most points drawn per curve (about 3 per pixel column of the plot area).
pub const MAX_DRAWN_POINTS: usize = 2000;

/// Every `k`-th item, `k` the smallest stride that keeps at most `max`, and always the last one:
/// a long run's curve drawn with a few kilobytes instead of megabytes.
pub fn thin<T: Copy>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max.max(2) {
        return items.to_vec();
    }
    let stride = (items.len() - 1).div_ceil(max.max(2) - 1);
    let mut out: Vec<T> = items.iter().step_by(stride).copied().collect();
    if !(items.len() - 1).is_multiple_of(stride) {
        out.push(items[items.len() - 1]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn median_and_quartiles_over_seeds() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        // Sorted 1, 2, 3, 4: the 0.25-quantile sits at position 0.75, between 1 and 2.
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.25), 1.75);
        let runs = vec![
            vec![(1.0, 0.0), (2.0, 10.0), (3.0, 5.0)],
            vec![(1.0, 2.0), (2.0, 20.0)],
            vec![(1.0, 4.0), (2.0, 30.0), (3.0, 7.0)],
        ];
        let s = median_band("m".into(), &runs);
        assert_eq!(s.points, vec![(1.0, 2.0), (2.0, 20.0)]);
        assert_eq!(s.band, vec![(1.0, 1.0, 3.0), (2.0, 15.0, 25.0)]);
        let dirs: Vec<PathBuf> = [
            "runs/maze-modul-seed0",
            "runs/maze-rnn-seed0",
            "runs/maze-modul-seed1",
            "x-seedling",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let groups = group_by_seed(&dirs);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].0, "maze-modul");
        assert_eq!(groups[0].1.len(), 2);
        assert_eq!(groups[2].0, "x-seedling");
    }

    #[test]
    fn reads_a_table_of_curves() {
        let dir = std::env::temp_dir().join(format!("plasticity-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("curves.csv");
        std::fs::write(
            &path,
            "# a comment\nseries,x,y,low,high\n\"a, b\",1,2.5,2,3\nc,1,7,,\n\"a, b\",2,-1e-3,-1,0\n",
        )
        .unwrap();
        let s = read_table(&path).unwrap();
        assert_eq!((s[0].label.as_str(), s[1].label.as_str()), ("a, b", "c"));
        assert_eq!(s[0].points, vec![(1.0, 2.5), (2.0, -0.001)]);
        assert_eq!(s[0].band, vec![(1.0, 2.0, 3.0), (2.0, -1.0, 0.0)]);
        assert_eq!(
            (s[1].points.clone(), s[1].band.len()),
            (vec![(1.0, 7.0)], 0)
        );
        assert_eq!(
            csv_fields("\"say \"\"hi\"\"\",2").unwrap(),
            ["say \"hi\"", "2"]
        );
        assert!(csv_fields("\"open,1").is_err());
        for (text, want) in [
            ("", "empty file"),
            ("series,x\n", "line 1: no column 'y'"),
            ("series,x,y,low\n", "both columns 'low' and 'high'"),
            ("series,x,y\n", "no rows after the header"),
            (
                "series,x,y\n# c\na,1,2\na,1\n",
                "line 4: 2 fields, the header has 3",
            ),
            (
                "series,x,y\na,1,nan\n",
                "line 2: column 'y': 'nan' is not a number",
            ),
            (
                "series,x,y,low,high\na,1,2,1,\n",
                "line 2: column 'high': '' is not",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = read_table(&path).unwrap_err();
            assert!(
                e.contains(want) && e.contains("curves.csv"),
                "{text:?}: {e}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn long_curves_are_thinned_keeping_both_ends() {
        let items: Vec<usize> = (0..10).collect();
        assert_eq!(thin(&items, 20), items);
        assert_eq!(thin(&items, 4), vec![0, 3, 6, 9]);
        assert_eq!(thin(&items, 3), vec![0, 5, 9]);
        let long: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, (i % 7) as f64)).collect();
        let drawn = thin(&long, MAX_DRAWN_POINTS);
        assert!(drawn.len() <= MAX_DRAWN_POINTS, "{}", drawn.len());
        assert_eq!(drawn[0], long[0]);
        assert_eq!(drawn.last(), long.last());
    }

    #[test]
    fn reads_and_smooths_a_metric() {
        let dir = std::env::temp_dir().join(format!("plasticity-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("metrics.csv"),
            "update,loss,error,seconds\n1,4.0,0.5,0.1\n2,2.0,0.25,0.2\n3,0.0,0.0,0.3\n",
        )
        .unwrap();
        let pts = read_metric(&dir, "error").unwrap();
        assert_eq!(pts, vec![(1.0, 0.5), (2.0, 0.25), (3.0, 0.0)]);
        assert_eq!(smooth(&pts, 2)[2], (3.0, 0.125));
        // The raw points are kept (drawn faint) only when the window averages several.
        assert_eq!(Series::smoothed("e".into(), pts.clone(), 2).raw, pts);
        assert!(Series::smoothed("e".into(), pts.clone(), 1).raw.is_empty());
        assert_eq!((auto_window(50), auto_window(18_000)), (1, 270));
        assert!(read_metric(&dir, "reward")
            .unwrap_err()
            .contains("no column 'reward'"));
        // Against wall time.
        let by_time = read_columns(&dir, "seconds", "error").unwrap();
        assert_eq!(by_time, vec![(0.1, 0.5), (0.2, 0.25), (0.3, 0.0)]);
        assert!(read_columns(&dir, "hours", "error")
            .unwrap_err()
            .contains("no column 'hours'"));
        // A run written before the column was named `update`.
        std::fs::write(
            dir.join("metrics.csv"),
            "episode,loss,error,seconds\n1,4.0,0.5,0.1\n2,2.0,0.25,0.2\n",
        )
        .unwrap();
        assert_eq!(read_metric(&dir, "error").unwrap(), pts[..2]);
        std::fs::write(
            dir.join("metrics.csv"),
            "episode,loss,error,seconds\n1,0.3,x,0.1\n",
        )
        .unwrap();
        assert!(read_metric(&dir, "error").unwrap_err().contains("line 2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
