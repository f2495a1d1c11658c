//! Helpers shared by the kernel tests: seeded random buffers, the modulator's parameters,
//! closeness checks and central finite differences.
// Each test file uses some of these.
#![allow(dead_code)]

use plasticity_kernels::{ModulatedParams, ModulatorParams, Real};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// `len` values uniform in `(-scale, scale)`.
pub fn uniform<F: Real>(rng: &mut ChaCha8Rng, scale: f64, len: usize) -> Vec<F> {
    (0..len)
        .map(|_| F::of(scale * (rng.gen::<f64>() * 2.0 - 1.0)))
        .collect()
}

/// Clamped input `x: [T, B, N]`: clamps roughly a third of the neurons at each step; the others
/// are free (`x = 0`).
pub fn clamp_some<F: Real>(x: &mut [F], n: usize) {
    for (k, v) in x.iter_mut().enumerate() {
        if !(k * 7 + k / n).is_multiple_of(3) {
            *v = F::zero();
        }
    }
}

/// Asserts `|got - want| <= tol` entry by entry.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{k}]: got {g}, want {w}");
    }
}

/// Asserts `|got - want| <= tol (1 + |want|)` entry by entry.
pub fn assert_close_rel(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{k}]: got {g}, want {w}"
        );
    }
}

/// The central difference `(L(v + eps) - L(v - eps)) / 2 eps`, `eps = 1e-6`, of `loss` along
/// the coordinate `v` of `p` that `slot` picks; `v` is restored afterwards.
pub fn central_difference<P>(
    p: &mut P,
    slot: impl for<'a> Fn(&'a mut P) -> &'a mut f64,
    loss: impl Fn(&P) -> f64,
) -> f64 {
    let eps = 1e-6;
    let orig = *slot(p);
    *slot(p) = orig + eps;
    let up = loss(p);
    *slot(p) = orig - eps;
    let down = loss(p);
    *slot(p) = orig;
    (up - down) / (2.0 * eps)
}

/// Asserts that an analytic derivative equals its finite difference: `|analytic - numeric| <=
/// 1e-6 (1 + |numeric|)`.
pub fn assert_derivative(what: &str, analytic: f64, numeric: f64) {
    assert!(
        (analytic - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
        "{what}: analytic {analytic} vs numeric {numeric}"
    );
}

/// The modulator's own parameters, owned: `M(t) = tanh(m . y(t) + m_bias)`, the fan-out
/// `fan_w M + fan_b` (empty without), the eligibility rate `eta_e`.
#[derive(Clone, Debug)]
pub struct Modulator<F> {
    /// `m: [N]`.
    pub m: Vec<F>,
    /// `m_bias`.
    pub m_bias: F,
    /// `fan_w: [N]` (empty without fan-out).
    pub fan_w: Vec<F>,
    /// `fan_b: [N]` (empty without fan-out).
    pub fan_b: Vec<F>,
    /// `eta_E`.
    pub eta_e: F,
}

impl<F: Real> Modulator<F> {
    /// The same parameters, borrowed.
    pub fn borrow(&self) -> ModulatorParams<'_, F> {
        ModulatorParams {
            m: &self.m,
            m_bias: self.m_bias,
            fan_w: &self.fan_w,
            fan_b: &self.fan_b,
            eta_e: self.eta_e,
        }
    }

    /// The parameters of a modulated episode with weights `w` and `alpha`.
    pub fn params<'a>(&'a self, w: &'a [F], alpha: &'a [F]) -> ModulatedParams<'a, F> {
        ModulatedParams {
            w,
            alpha,
            modulator: self.borrow(),
        }
    }
}

/// Episode `bi`'s rows `[T, N]` of a time-major `[T, B, N]` buffer.
pub fn rows_of(v: &[f64], b: usize, n: usize, bi: usize) -> Vec<f64> {
    v.chunks(b * n)
        .flat_map(|s| s[bi * n..(bi + 1) * n].to_vec())
        .collect()
}

/// Episode `bi`'s block of a batch-major buffer of `len` values per episode (`[B, N]`,
/// `[B, N, N]`).
pub fn block_of(v: &[f64], len: usize, bi: usize) -> Vec<f64> {
    v[bi * len..(bi + 1) * len].to_vec()
}

/// Episode `bi` of a batch of `b` episodes of `n` neurons, picking its slices of the batch's
/// buffers.
#[derive(Clone, Copy, Debug)]
pub struct EpisodeOf {
    /// Episodes in the batch.
    pub b: usize,
    /// Neurons.
    pub n: usize,
    /// The episode.
    pub bi: usize,
}

impl EpisodeOf {
    /// Its rows `[T, N]` of a time-major `[T, B, N]` buffer.
    pub fn rows(&self, v: &[f64]) -> Vec<f64> {
        rows_of(v, self.b, self.n, self.bi)
    }

    /// Its state `[N]` of a `[B, N]` buffer.
    pub fn state(&self, v: &[f64]) -> Vec<f64> {
        block_of(v, self.n, self.bi)
    }

    /// Its trace `[N, N]` of a `[B, N, N]` buffer.
    pub fn trace(&self, v: &[f64]) -> Vec<f64> {
        block_of(v, self.n * self.n, self.bi)
    }

    /// Asserts that the episode run alone equals its slices of the batched run: the outputs
    /// `ys: [T, N]` and the final trace `Hebb_T` to `1e-12`, the gradients `dx` and `dHebb0`
    /// to `1e-10`. `alone` and `batched` hold `[ys, Hebb_T, dx, dHebb0]`.
    pub fn assert_alone_equals_slice(&self, label: &str, alone: [&[f64]; 4], batched: [&[f64]; 4]) {
        // (name, a trace (else rows), tolerance)
        let checks = [
            ("ys", false, 1e-12),
            ("Hebb_T", true, 1e-12),
            ("dx", false, 1e-10),
            ("dHebb0", true, 1e-10),
        ];
        for ((what, trace, tol), (a, b)) in checks.into_iter().zip(alone.into_iter().zip(batched)) {
            let slice = if trace { self.trace(b) } else { self.rows(b) };
            assert_close(&format!("{label} {what}"), a, &slice, tol);
        }
    }
}

/// `sum += v`, entry by entry.
pub fn add_into(sum: &mut [f64], v: &[f64]) {
    sum.iter_mut().zip(v).for_each(|(a, b)| *a += b);
}
