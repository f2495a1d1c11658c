//! Line charts (learning curves, the modulator) drawn with plotters, as SVG or PNG: a title and
//! a note under it, labelled axes with round ticks (a log axis says so), the curves with their
//! bands and faint raw values, and the legend below the plot, outside the curves.

use crate::axis::Axis;
use crate::picture::{self, FAMILY};
use crate::plot::{thin, Series, MAX_DRAWN_POINTS};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// The curves' colours (matplotlib's first six).
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

/// Width of a chart, and height of its plot with the axes (the legend adds rows below).
const SIZE: (u32, u32) = (800, 460);
/// Curves of at most this many points show them as dots.
const FEW_POINTS: usize = 30;
/// Height of one legend row.
const LEGEND_ROW: u32 = 22;

/// What one chart shows.
pub struct Chart<'a> {
    /// The first line at the top.
    pub title: String,
    /// A smaller second line (what is smoothed, over how many points); empty for none.
    pub note: String,
    /// What the x axis counts (e.g. `update`).
    pub x_label: String,
    /// What the y axis measures; a log axis adds "(log scale)".
    pub y_label: String,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// The curves, in the legend's order.
    pub series: &'a [Series],
}

/// A chart as SVG text (at most [`MAX_DRAWN_POINTS`] points per curve, see [`thin`]).
pub fn svg(chart: &Chart) -> Result<String, String> {
    let size = dimensions(chart);
    let mut text = String::new();
    {
        let root =
            picture::LinesAsLines(SVGBackend::with_string(&mut text, size)).into_drawing_area();
        draw(&root, chart).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(text)
}

/// A chart as a PNG file's bytes.
pub fn png(chart: &Chart) -> Result<Vec<u8>, String> {
    let (w, h) = dimensions(chart);
    picture::png(w, h, |root| draw(root, chart))
}

/// Writes the chart to `path`: PNG when its name ends in `.png`, else SVG.
pub fn write(chart: &Chart, path: &Path) -> Result<(), String> {
    let is_png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let bytes = if is_png {
        png(chart)?
    } else {
        svg(chart)?.into_bytes()
    };
    plasticity::train::write_atomic(path, &bytes).map_err(|e| e.to_string())
}

/// The chart's size: [`SIZE`] and the legend's rows.
fn dimensions(chart: &Chart) -> (u32, u32) {
    let rows = legend_rows(chart).len() as u32;
    (SIZE.0, SIZE.1 + rows * LEGEND_ROW)
}

/// The legend's entries `(series index, x offset)` in rows that fit the chart's width.
fn legend_rows(chart: &Chart) -> Vec<Vec<(usize, u32)>> {
    let mut rows: Vec<Vec<(usize, u32)>> = Vec::new();
    let mut x = 0;
    for (k, s) in chart.series.iter().enumerate() {
        let width = 30 + picture::text_width(&s.label, 14.0) + 24;
        if rows.is_empty() || (x + width > SIZE.0 - 80 && x > 0) {
            rows.push(Vec::new());
            x = 0;
        }
        rows.last_mut().expect("a row").push((k, x));
        x += width;
    }
    rows
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    c: &Chart,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    picture::ensure_font();
    root.fill(&WHITE)?;
    let (w, h) = root.dim_in_pixel();
    let centre = |size: f64| {
        TextStyle::from((FAMILY, size).into_font()).pos(Pos::new(HPos::Center, VPos::Top))
    };
    root.draw(&Text::new(c.title.clone(), (w as i32 / 2, 8), centre(19.0)))?;
    let mut top = 34;
    if !c.note.is_empty() {
        let style = centre(14.0).color(&RGBColor(90, 90, 90));
        root.draw(&Text::new(c.note.clone(), (w as i32 / 2, 32), style))?;
        top += 18;
    }
    let rows = legend_rows(c);
    let legend_h = rows.len() as u32 * LEGEND_ROW;
    let plot_area = root.margin(top, legend_h + 4, 8, 24);

    // The axes span what is drawn (the raw values as thinned, see `thin`).
    let all = c.series.iter().flat_map(|s| {
        let raw = thin(&s.raw, MAX_DRAWN_POINTS);
        s.points
            .iter()
            .copied()
            .chain(raw)
            .chain(s.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
    });
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    let mut integer_x = true;
    for (x, y) in all.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        (x0, x1) = (x0.min(x), x1.max(x));
        integer_x &= x.fract() == 0.0;
        if !c.log_y || y > 0.0 {
            (y0, y1) = (y0.min(y), y1.max(y));
        }
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 1.0, 2.0); // nothing to draw: an empty frame
    }
    if x0 > 0.0 && x0 <= 0.05 * x1 {
        x0 = 0.0; // updates or steps from 1: the axis from 0
    }
    let x_axis = Axis::linear(x0, x1, 0.0, 8.0, integer_x);
    let y_axis = if c.log_y {
        Axis::log(y0, y1)
    } else {
        Axis::linear(y0, y1, 0.05, 6.0, false)
    };
    let y_desc = if c.log_y {
        format!("{} (log scale)", c.y_label)
    } else {
        c.y_label.clone()
    };
    let (xf, yf) = (x_axis.clone(), y_axis.clone());
    let floor = y_axis.start();
    let mut chart = ChartBuilder::on(&plot_area)
        .x_label_area_size(48)
        .y_label_area_size(74)
        .build_cartesian_2d(x_axis, y_axis)?;
    chart
        .configure_mesh()
        .x_desc(c.x_label.clone())
        .y_desc(y_desc)
        .axis_desc_style((FAMILY, 16))
        .label_style((FAMILY, 14))
        .x_labels(12)
        .y_labels(10)
        .x_label_formatter(&|v| xf.label(*v))
        .y_label_formatter(&|v| yf.label(*v))
        .bold_line_style(BLACK.mix(0.12))
        .max_light_lines(0)
        .draw()?;
    let clamp = |(x, y): (f64, f64)| (x, if c.log_y { y.max(floor) } else { y });
    let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    for (k, s) in c.series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        if !s.band.is_empty() {
            let band = thin(&s.band, MAX_DRAWN_POINTS);
            let outline: Vec<(f64, f64)> = band
                .iter()
                .map(|&(x, _, hi)| clamp((x, hi)))
                .chain(band.iter().rev().map(|&(x, lo, _)| clamp((x, lo))))
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(
                outline,
                colour.mix(0.2).filled(),
            )))?;
        }
        if !s.raw.is_empty() {
            // Fainter when thinned: a long noisy run would otherwise be a solid band.
            let alpha = if s.raw.len() > MAX_DRAWN_POINTS {
                0.12
            } else {
                0.25
            };
            let raw = thin(&s.raw, MAX_DRAWN_POINTS)
                .into_iter()
                .filter(finite)
                .map(clamp);
            chart.draw_series(LineSeries::new(raw, colour.mix(alpha).stroke_width(1)))?;
        }
        let points: Vec<(f64, f64)> = thin(&s.points, MAX_DRAWN_POINTS)
            .into_iter()
            .filter(finite)
            .map(clamp)
            .collect();
        if !s.dots_only {
            chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
        }
        // A short curve (per-epoch values, a few updates) shows its points.
        if s.dots_only || points.len() <= FEW_POINTS {
            let dots = points
                .into_iter()
                .map(|p| Circle::new(p, 3, colour.filled()));
            chart.draw_series(dots)?;
        }
    }
    // The legend, below the plot: a colour bar (a dot for dots) and the label of each curve.
    let legend_top = h - legend_h;
    for (r, row) in rows.iter().enumerate() {
        let y = (legend_top + r as u32 * LEGEND_ROW) as i32;
        for &(k, x) in row {
            let x = 82 + x as i32;
            let colour = PALETTE[k % PALETTE.len()];
            if c.series[k].dots_only {
                root.draw(&Circle::new((x + 12, y + 10), 4, colour.filled()))?;
            } else {
                root.draw(&Rectangle::new(
                    [(x, y + 8), (x + 24, y + 12)],
                    colour.filled(),
                ))?;
            }
            let style =
                TextStyle::from((FAMILY, 14.0).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(
                c.series[k].label.clone(),
                (x + 30, y + 10),
                style,
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_bands_and_legend_are_drawn() {
        let runs = vec![
            vec![(1.0, 0.0), (2.0, 10.0), (3.0, 5.0)],
            vec![(1.0, 4.0), (2.0, 30.0), (3.0, 7.0)],
        ];
        let band = crate::plot::median_band("median of 2".into(), &runs);
        let raw: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, (i % 7) as f64)).collect();
        let long = Series::smoothed("long run".into(), raw, 1500);
        let series = [band, long];
        let chart = Chart {
            title: "t".into(),
            note: "a note".into(),
            x_label: "update".into(),
            y_label: "reward".into(),
            log_y: false,
            series: &series,
        };
        let svg = svg(&chart).unwrap();
        // One polygon (the band), one polyline per curve and one for the raw values; the
        // axes and the grid are plain lines.
        assert_eq!(svg.matches("<polygon").count(), 1);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("median of 2") && svg.contains("a note"));
        assert!(svg.len() < 200_000, "{} bytes", svg.len());
        let png = png(&chart).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn flat_empty_and_nan_curves_draw_a_frame() {
        let flat = Series::smoothed("flat".into(), vec![(1.0, 0.0), (2.0, 0.0)], 1);
        let nan = Series::smoothed("nan".into(), vec![(1.0, f64::NAN), (2.0, 3.0)], 1);
        let series = [flat, nan, Series::default()];
        for log_y in [false, true] {
            let chart = Chart {
                title: "t".into(),
                note: String::new(),
                x_label: "update".into(),
                y_label: "loss".into(),
                log_y,
                series: &series,
            };
            assert!(svg(&chart).unwrap().contains("(log scale)") == log_y);
        }
    }
}
