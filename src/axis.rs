//! Chart axes with their own round ticks, as plotters coordinates.

use plotters::coord::ranged1d::{
    KeyPointHint, KeyPointWeight, NoDefaultFormatting, Ranged, ValueFormatter,
};
use std::ops::Range;

/// An axis with its own round ticks: linear, or logarithmic with ticks at 1, 2, 5 (or 1..9) times
/// the powers of ten.
#[derive(Clone)]
pub struct Axis {
    range: Range<f64>,
    log: bool,
    ticks: Vec<f64>,
    /// Decimals of every label of a linear axis (all alike); `None` on a log axis (each tick
    /// its own).
    decimals: Option<usize>,
}

impl Axis {
    /// `[lo, hi]` widened by `pad` of its span on each side (not below 0 when `lo >= 0`), with
    /// at most about `target` ticks at multiples of 1, 2, 2.5 or 5 times a power of ten
    /// (integers when `integer`).
    pub fn linear(lo: f64, hi: f64, pad: f64, target: f64, integer: bool) -> Self {
        let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
        let (mut a, b) = (lo - pad * span, hi + pad * span);
        if lo >= 0.0 && a < 0.0 {
            a = 0.0;
        }
        let b = if b > a { b } else { a + 1.0 };
        let step = nice_step((b - a) / target, integer);
        let ticks = multiples(a, b, step);
        let decimals = (0..9)
            .find(|&d| {
                let s = step * 10f64.powi(d as i32);
                (s - s.round()).abs() < 1e-6 * s.max(1.0)
            })
            .unwrap_or(9);
        Axis {
            range: a..b,
            log: false,
            ticks,
            decimals: Some(decimals),
        }
    }

    /// A log axis over the positive `[lo, hi]`, widened by 10% each way.
    pub fn log(lo: f64, hi: f64) -> Self {
        let lo = if lo > 0.0 && lo.is_finite() { lo } else { 1e-3 };
        let hi = if hi > lo { hi } else { lo * 10.0 };
        let (a, b) = (lo / 1.1, hi * 1.1);
        let decade = |mantissas: &[f64]| -> Vec<f64> {
            let mut out = Vec::new();
            for e in a.log10().floor() as i32..=b.log10().ceil() as i32 {
                for m in mantissas {
                    let v = m * 10f64.powi(e);
                    if v >= a && v <= b {
                        out.push(v);
                    }
                }
            }
            out
        };
        let mut ticks = decade(&[1.0]);
        if ticks.len() > 8 {
            let every = ticks.len().div_ceil(8);
            ticks = ticks.into_iter().step_by(every).collect();
        }
        if ticks.len() < 3 {
            ticks = decade(&[1.0, 2.0, 5.0]);
        }
        if ticks.len() < 3 {
            ticks = decade(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        }
        if ticks.len() < 3 {
            ticks = multiples(a, b, nice_step((b - a) / 5.0, false));
        }
        Axis {
            range: a..b,
            log: true,
            ticks,
            decimals: None,
        }
    }

    /// The label of tick `v`: fixed decimals on a linear axis, the fewest that show the value
    /// on a log axis; powers of ten beyond a million.
    pub fn label(&self, v: f64) -> String {
        let v = if v.abs() < 1e-12 { 0.0 } else { v };
        if v.abs() >= 1e6 {
            let e = v.abs().log10().floor() as i32;
            let m = (v / 10f64.powi(e) * 100.0).round() / 100.0;
            return format!("{m}e{e}");
        }
        let d = self.decimals.unwrap_or_else(|| {
            (0..9)
                .find(|&d| {
                    let s = v * 10f64.powi(d as i32);
                    (s - s.round()).abs() < 1e-6 * s.abs().max(1.0)
                })
                .unwrap_or(9)
        });
        format!("{v:.d$}")
    }

    /// The lowest value on the axis.
    pub fn start(&self) -> f64 {
        self.range.start
    }

    fn coordinate(&self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).ln()
        } else {
            v
        }
    }
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten at least `raw` (integers at least 1 when
/// `integer`).
fn nice_step(raw: f64, integer: bool) -> f64 {
    let raw = if raw > 0.0 && raw.is_finite() {
        raw
    } else {
        1.0
    };
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9) && (!integer || *s < 1.0 || s.fract() == 0.0))
        .unwrap_or(10.0 * magnitude);
    if integer {
        step.max(1.0)
    } else {
        step
    }
}

/// The multiples of `step` in `[a, b]`.
fn multiples(a: f64, b: f64, step: f64) -> Vec<f64> {
    let (first, last) = (
        (a / step - 1e-9).ceil() as i64,
        (b / step + 1e-9).floor() as i64,
    );
    (first..=last).map(|k| k as f64 * step).collect()
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (
            self.coordinate(self.range.start),
            self.coordinate(self.range.end),
        );
        let f = (self.coordinate(*value) - a) / (b - a);
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        match hint.weight() {
            KeyPointWeight::Bold => self.ticks.clone(),
            KeyPointWeight::Any => Vec::new(),
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, value: &f64) -> String {
        self.label(*value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(axis: &Axis) -> Vec<String> {
        axis.ticks.iter().map(|&t| axis.label(t)).collect()
    }

    #[test]
    fn ticks_are_round_and_alike() {
        // A metric between 0.12 and 0.17: ticks every 0.01, two decimals each.
        let y = Axis::linear(0.126, 0.161, 0.0, 6.0, false);
        assert_eq!(labels(&y), ["0.13", "0.14", "0.15", "0.16"]);
        // Five updates: whole numbers only, never "5.75".
        let x = Axis::linear(1.0, 6.0, 0.0, 8.0, true);
        assert_eq!(labels(&x), ["1", "2", "3", "4", "5", "6"]);
        // 18,000 updates: every 2,500 (plain integers, no "1.3e4" beside "4476").
        let x = Axis::linear(1.0, 18_000.0, 0.0, 8.0, true);
        assert_eq!(labels(&x)[..3], ["2500", "5000", "7500"]);
        // A loss from 0.02 to 60 on a log axis: the powers of ten.
        let y = Axis::log(0.02, 60.0);
        assert_eq!(labels(&y), ["0.1", "1", "10"]);
        // Perplexity from 120 to 400 (less than a decade): 1 to 9 times the powers of ten.
        let y = Axis::log(120.0, 400.0);
        assert_eq!(labels(&y), ["200", "300", "400"]);
    }
}
