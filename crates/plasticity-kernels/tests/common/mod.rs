//! Helpers shared by the kernel tests: seeded random buffers, the modulated parameters,
//! closeness checks and central finite differences.
// Each test file uses some of these.
#![allow(dead_code)]

use plasticity_kernels::{
    Episode, EpisodeSpec, Grads, InputMode, ModulatedParams, Modulation, Modulator, Real,
};
use rand::{Rng, SeedableRng};
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

/// The parameters of a modulated episode with weights `w` and `alpha` and modulator `md`.
pub fn modulated_params<'a, F: Real>(
    md: &'a Modulator<F>,
    w: &'a [F],
    alpha: &'a [F],
) -> ModulatedParams<'a, F> {
    ModulatedParams {
        w,
        alpha,
        modulator: md.params(),
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

/// A random episode of the plastic network and the loss `L = sum gy ys + sum gh Hebb_T +
/// sum ge E_T`: the parameters, the inputs, the initial state and the loss's weights (the
/// gradients a backward starts from). `R` is the trace rule's own parameters: the fixed rate
/// `eta`, or a [`Modulator`].
#[derive(Clone, Debug)]
pub struct Problem<F, R> {
    /// The episode's spec.
    pub spec: EpisodeSpec,
    /// `w: [N, N]`.
    pub w: Vec<F>,
    /// `alpha`, shaped as the spec says.
    pub alpha: Vec<F>,
    /// The rule's own parameters.
    pub rule: R,
    /// `x: [T, B, N]` (with clamped input, about a third of the neurons clamped at each step).
    pub x: Vec<F>,
    /// `y0: [B, N]`.
    pub y0: Vec<F>,
    /// `Hebb_0: [B, N, N]`.
    pub h0: Vec<F>,
    /// `E_0: [B, N, N]` (modulated episodes).
    pub e0: Option<Vec<F>>,
    /// `gy: [T, B, N]`.
    pub gy: Vec<F>,
    /// `gh: [B, N, N]`.
    pub gh: Vec<F>,
    /// `ge: [B, N, N]` (modulated episodes).
    pub ge: Option<Vec<F>>,
}

/// How a [`Problem`]'s episode runs with the rule's own parameters `Self` (the fixed rate, or a
/// [`Modulator`]); the test file of each kind of rule implements it.
pub trait RuleParams<F: Real>: Sized {
    /// The forward of the problem's episode.
    fn forward(p: &Problem<F, Self>) -> Episode<F>;
    /// The backward of the problem's episode `ep` from the loss's weights.
    fn backward(p: &Problem<F, Self>, ep: Episode<F>) -> Grads<F>;
}

impl<F: Real, R> Problem<F, R> {
    /// A problem for `spec` drawn from `seed`, each buffer uniform in `(-s, s)`: `w` (s = 0.6),
    /// `alpha` (0.8), the rule's parameters by `rule`, `x` (1), `y0` (0.5), `Hebb_0` (0.1),
    /// `E_0` (0.3), `gy`, `gh`, `ge` (1).
    pub fn random(spec: EpisodeSpec, seed: u64, rule: impl FnOnce(&mut ChaCha8Rng) -> R) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
        let modulated = spec.modulation != Modulation::None;
        let w = uniform(&mut rng, 0.6, n * n);
        let alpha = uniform(&mut rng, 0.8, spec.alpha.len(n));
        let rule = rule(&mut rng);
        let mut draw = |scale: f64, len: usize| -> Vec<F> { uniform(&mut rng, scale, len) };
        let mut x = draw(1.0, t * b * n);
        if spec.input == InputMode::Clamped {
            clamp_some(&mut x, n);
        }
        Problem {
            spec,
            w,
            alpha,
            rule,
            x,
            y0: draw(0.5, b * n),
            h0: draw(0.1, b * n * n),
            e0: modulated.then(|| draw(0.3, b * n * n)),
            gy: draw(1.0, t * b * n),
            gh: draw(1.0, b * n * n),
            ge: modulated.then(|| draw(1.0, b * n * n)),
        }
    }

    /// The buffer named `field` among those of every problem: `w`, `alpha`, `x`, `y0`, `hebb0`,
    /// `elig0`.
    pub fn buffer_mut(&mut self, field: &str) -> &mut Vec<F> {
        match field {
            "w" => &mut self.w,
            "alpha" => &mut self.alpha,
            "x" => &mut self.x,
            "y0" => &mut self.y0,
            "hebb0" => &mut self.h0,
            "elig0" => self.e0.as_mut().expect("E_0 of a modulated problem"),
            _ => unreachable!("unknown field {field}"),
        }
    }
}

impl<F: Real, R: RuleParams<F>> Problem<F, R> {
    /// The episode forward.
    pub fn run(&self) -> Episode<F> {
        R::forward(self)
    }

    /// `L = sum gy ys + sum gh Hebb_T + sum ge E_T` of the episode.
    pub fn loss(&self) -> F {
        let ep = self.run();
        let dot = |a: &[F], b: &[F]| a.iter().zip(b).map(|(x, y)| *x * *y).sum::<F>();
        let elig = self
            .ge
            .as_ref()
            .map_or(F::zero(), |ge| dot(&ep.traces.elig, ge));
        dot(&ep.ys, &self.gy) + dot(&ep.traces.hebb, &self.gh) + elig
    }

    /// The gradients of the loss.
    pub fn grads(&self) -> Grads<F> {
        R::backward(self, self.run())
    }
}

impl<R: Clone + RuleParams<f64>> Problem<f64, R> {
    /// Runs each episode of the batch alone (its episode and gradients), asserts that it
    /// equals its slices of the batched run `ep`, `grads`
    /// ([`EpisodeOf::assert_alone_equals_slice`], labelled `"{label} episode {bi}"`), and
    /// returns the episodes' gradients.
    pub fn episodes_alone(
        &self,
        label: &str,
        ep: &Episode<f64>,
        grads: &Grads<f64>,
    ) -> Vec<Grads<f64>> {
        let (b, n) = (self.spec.batch, self.spec.neurons);
        (0..b)
            .map(|bi| {
                let q = self.episode(bi);
                let (e1, g1) = (q.run(), q.grads());
                EpisodeOf { b, n, bi }.assert_alone_equals_slice(
                    &format!("{label} episode {bi}"),
                    [&e1.ys, &e1.traces.hebb, &g1.x, &g1.plastic.hebb0],
                    [&ep.ys, &ep.traces.hebb, &grads.x, &grads.plastic.hebb0],
                );
                g1
            })
            .collect()
    }

    /// Episode `bi` alone: the same parameters, its slices of the batch's buffers.
    fn episode(&self, bi: usize) -> Self {
        let e = EpisodeOf {
            b: self.spec.batch,
            n: self.spec.neurons,
            bi,
        };
        Problem {
            spec: EpisodeSpec {
                batch: 1,
                ..self.spec
            },
            w: self.w.clone(),
            alpha: self.alpha.clone(),
            rule: self.rule.clone(),
            x: e.rows(&self.x),
            y0: e.state(&self.y0),
            h0: e.trace(&self.h0),
            e0: self.e0.as_ref().map(|v| e.trace(v)),
            gy: e.rows(&self.gy),
            gh: e.trace(&self.gh),
            ge: self.ge.as_ref().map(|v| e.trace(v)),
        }
    }
}
