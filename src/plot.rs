//! Learning curves as SVG, from `metrics.csv` files (no plotting dependency).

use std::fmt::Write as _;
use std::path::Path;

/// One curve: a label and `(episode, value)` points, optionally with a shaded band
/// `(episode, low, high)` (e.g. the inter-quartile range over seeds).
#[derive(Default)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub band: Vec<(f64, f64, f64)>,
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

/// Reads column `column` of a run's `metrics.csv` against the episode column.
pub fn read_metric(run: &Path, column: &str) -> Result<Vec<(f64, f64)>, String> {
    read_columns(run, "episode", column)
}

/// Reads column `column` of a run's `metrics.csv` against column `x` (e.g. `episode`, or
/// `seconds` to compare runs at equal wall time).
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
    let xcol = header.iter().position(|h| *h == x).ok_or_else(|| {
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
        // An empty field: not measured at this episode (the language model's per-epoch
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

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

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

/// Draws the curves on one chart and returns the SVG text (at most [`MAX_DRAWN_POINTS`] points
/// per curve and band edge, see [`thin`]; the axes span all points).
pub fn svg_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 70.0, 20.0, 40.0, 50.0);
    let ty = |v: f64| if log_y { v.max(1e-6).log10() } else { v };
    let all = series.iter().flat_map(|s| {
        s.points
            .iter()
            .copied()
            .chain(s.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
    });
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(ty(y));
        y1 = y1.max(ty(y));
    }
    if x0 >= x1 {
        x1 = x0 + 1.0;
    }
    if y0 >= y1 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| top + (1.0 - (ty(y) - y0) / (y1 - y0)) * (h - top - bottom);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text>"#,
        w / 2.0
    );
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        w - left - right,
        h - top - bottom
    );
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let xv = x0 + f * (x1 - x0);
        let yv_t = y0 + f * (y1 - y0);
        let yv = if log_y { 10f64.powf(yv_t) } else { yv_t };
        let (gx, gy) = (px(xv), top + (1.0 - f) * (h - top - bottom));
        let _ = writeln!(
            s,
            r##"<line x1="{gx}" y1="{top}" x2="{gx}" y2="{}" stroke="#ddd"/>"##,
            h - bottom
        );
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{gy}" x2="{}" y2="{gy}" stroke="#ddd"/>"##,
            w - right
        );
        let _ = writeln!(
            s,
            r#"<text x="{gx}" y="{}" text-anchor="middle">{}</text>"#,
            h - bottom + 16.0,
            fmt_num(xv)
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            gy + 4.0,
            fmt_num(yv)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>"#,
        (left + w - right) / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{y_label}</text>"#,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0
    );
    for (k, ser) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let band = thin(&ser.band, MAX_DRAWN_POINTS);
        if !band.is_empty() {
            let outline: Vec<String> = band
                .iter()
                .map(|&(x, _, hi)| format!("{:.1},{:.1}", px(x), py(hi)))
                .chain(
                    band.iter()
                        .rev()
                        .map(|&(x, lo, _)| format!("{:.1},{:.1}", px(x), py(lo))),
                )
                .collect();
            let _ = writeln!(
                s,
                r#"<polygon fill="{color}" fill-opacity="0.2" stroke="none" points="{}"/>"#,
                outline.join(" ")
            );
        }
        let pts: Vec<String> = thin(&ser.points, MAX_DRAWN_POINTS)
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = top + 16.0 + 16.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#,
            w - right - 170.0,
            w - right - 150.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            w - right - 145.0,
            ly + 4.0,
            ser.label
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 10000.0 || v.abs() < 0.01 {
        format!("{v:.1e}")
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
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
        let svg = svg_chart("t", "episode", "reward", &[s], false);
        assert!(svg.contains("<polygon"));
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
        let series = Series {
            label: "long".into(),
            points: long,
            ..Series::default()
        };
        let svg = svg_chart("t", "episode", "y", &[series], false);
        assert!(svg.len() < 100_000, "{} bytes", svg.len());
    }

    #[test]
    fn reads_smooths_and_draws_a_metric() {
        let dir = std::env::temp_dir().join(format!("plasticity-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("metrics.csv"),
            "episode,loss,error,seconds\n1,4.0,0.5,0.1\n2,2.0,0.25,0.2\n3,0.0,0.0,0.3\n",
        )
        .unwrap();
        let pts = read_metric(&dir, "error").unwrap();
        assert_eq!(pts, vec![(1.0, 0.5), (2.0, 0.25), (3.0, 0.0)]);
        assert_eq!(smooth(&pts, 2)[2], (3.0, 0.125));
        assert!(read_metric(&dir, "reward")
            .unwrap_err()
            .contains("no column 'reward'"));
        // Against wall time.
        let by_time = read_columns(&dir, "seconds", "error").unwrap();
        assert_eq!(by_time, vec![(0.1, 0.5), (0.2, 0.25), (0.3, 0.0)]);
        assert!(read_columns(&dir, "hours", "error")
            .unwrap_err()
            .contains("no column 'hours'"));
        let svg = svg_chart(
            "t",
            "episode",
            "error",
            &[Series {
                label: "a".into(),
                points: pts,
                ..Series::default()
            }],
            false,
        );
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
        assert!(!svg.contains("<polygon"));
        std::fs::write(
            dir.join("metrics.csv"),
            "episode,loss,error,seconds\n1,0.3,x,0.1\n",
        )
        .unwrap();
        assert!(read_metric(&dir, "error").unwrap_err().contains("line 2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
