//! Neuromodulated plasticity (Miconi, Rawal, Clune & Stanley, "Backpropamine", ICLR 2019,
//! section 3), fused: the maths of [`crate::reference::modulated_step`] with the discipline of
//! [`crate::fused`] (every `N x N` buffer streamed a fixed number of times per step, rows split
//! across threads, never `T` copies of a trace).
//!
//! # The step (see [`Modulation`] for the equations)
//! With `y` the presynaptic (previous) and `y'` the new activity of step `t`:
//!
//! ```text
//! y'        = tanh( y (w + alpha * Hebb) + x )
//! M         = tanh( m . y' + m_b ),  eta_j = M  or  v_j M + b_j      (one M per episode)
//! Simple:       Hebb'_ij = clip( Hebb_ij + u_i v_j )      u_i = y_i, v_j = eta_j y'_j
//! Retroactive:  Hebb'_ij = clip( Hebb_ij + eta_j E_ij )
//!               E'_ij    = (1 - eta_E) E_ij + u_i v_j     u_i = y_i, v_j = eta_E y'_j
//! ```
//!
//! # Forward, one pass per step
//! As in [`crate::fused`]: the pass over row `i` at step `t` first applies the pending trace
//! update of step `t-1` (to `Hebb` and, when retroactive, `E`), then accumulates
//! `pre_j += (w_ij + alpha_ij Hebb_ij) y_i`. The modulator of step `t` needs the complete `y_t`,
//! so its update waits for the next step's pass.
//!
//! # Backward: checkpoints, two passes per step
//! Clipping makes the trace update non-invertible (and the paper always clips), so the forward
//! stores `(Hebb, E)` every `K ~ sqrt(T)` steps and the backward recomputes each segment
//! (memory `O(sqrt(T) B N^2 + T B N)`; [`BackwardStrategy::Checkpoint`] sets `K`,
//! [`BackwardStrategy::StoreAll`] is `K = 1`). With `G = dL/dHebb_{t+1}` masked where the clip was
//! active (`Ĝ`), `GE = dL/dE_{t+1}` and `P_j = dL/dpre_t,j`:
//! - pass A (column sums over `i`): `S_j = sum_i Ĝ_ij y_i` (simple) or `sum_i Ĝ_ij E_ij`
//!   (retroactive, `= dL/deta_j`), and for the eligibility trace `SE_j = sum_i GE_ij y_i`,
//!   `SEE_j = sum_i GE_ij E_ij`. They give `dL/deta_j`, hence `dL/dM`, the gradients of the
//!   modulator's weights and its share of `dL/dy'_j`; then `P`;
//! - pass B (rows): `dL/dy_i`, `dL/dalpha`, `G <- Ĝ + alpha_ij y_i P_j` (`= dL/dHebb_t`) and
//!   `GE <- eta_j Ĝ + (1 - eta_E) GE` (`= dL/dE_t`).
//!
//! `dL/dw = sum_t y_{t-1}^T P_t` is one matrix product at the end.

use crate::fused::{
    clip_to, default_segment, gather, in_pool, lane_sum, row_blocks, scatter, split_rows,
    through_clip, AlphaRows,
};
use crate::real::Real;
use crate::spec::{AlphaShape, BackwardStrategy, EpisodeSpec, InputMode, Modulation, SpecError};
use crate::TraceRule;
use core::ops::Range;
use rayon::prelude::*;

/// The learned parameters of a neuromodulated plastic layer, borrowed as flat row-major slices.
#[derive(Clone, Copy, Debug)]
pub struct ModulatedParams<'a, F> {
    /// Fixed weights `w: [N, N]`, `w[i * N + j]` from neuron `i` to neuron `j`.
    pub w: &'a [F],
    /// Plasticity coefficients, shaped as [`EpisodeSpec::alpha`] says.
    pub alpha: &'a [F],
    /// Modulator weights `m: [N]`: `M(t) = tanh(sum_j m_j y_j(t) + m_b)`.
    pub m: &'a [F],
    /// Modulator bias `m_b`.
    pub m_bias: F,
    /// Fan-out weights `v: [N]` (`eta_j = v_j M + b_j`); empty without fan-out.
    pub fan_w: &'a [F],
    /// Fan-out biases `b: [N]`; empty without fan-out.
    pub fan_b: &'a [F],
    /// Rate `eta_E` of the eligibility trace (retroactive only; ignored by simple modulation,
    /// whose gradient for it is 0).
    pub eta_e: F,
}

/// What [`forward`] returns and [`backward`] needs.
#[derive(Clone, Debug)]
pub struct ModulatedEpisode<F> {
    spec: EpisodeSpec,
    /// Activations of every step, `ys: [T, B, N]`.
    pub ys: Vec<F>,
    /// The Hebbian trace after the last step, `hebb: [B, N, N]`.
    pub hebb: Vec<F>,
    /// The eligibility trace after the last step, `elig: [B, N, N]` (retroactive; empty for
    /// simple modulation).
    pub elig: Vec<F>,
    /// The modulator `M(t)` of every step, `modulator: [T, B]`.
    pub modulator: Vec<F>,
    y0: Vec<F>,
    x_clamped: Option<Vec<F>>,
    /// Steps between checkpoints.
    segment: usize,
    /// `(Hebb_{kK}, E_{kK})` for `k = 0, 1, ...` (`E` empty for simple modulation).
    checkpoints: Vec<(Vec<F>, Vec<F>)>,
    /// When the batch was split ([`split_batch`]): each episode's own run (batch 1, without
    /// its final traces, which are in `hebb` and `elig`).
    parts: Vec<ModulatedEpisode<F>>,
}

impl<F: Real> ModulatedEpisode<F> {
    /// The spec the episode ran with.
    pub fn spec(&self) -> &EpisodeSpec {
        &self.spec
    }

    /// Steps between the stored checkpoints of the traces.
    pub fn segment(&self) -> usize {
        self.segment
    }

    /// Bytes held for the backward beyond the outputs (checkpoints, initial activity, clamped
    /// inputs).
    pub fn saved_bytes(&self) -> usize {
        let n = self
            .checkpoints
            .iter()
            .map(|(h, e)| h.len() + e.len())
            .sum::<usize>()
            + self.y0.len()
            + self.x_clamped.as_ref().map_or(0, Vec::len);
        n * core::mem::size_of::<F>() + self.parts.iter().map(Self::saved_bytes).sum::<usize>()
    }

    /// `y_t: [B, N]`.
    fn y_at(&self, t: usize) -> &[F] {
        let bn = self.spec.batch * self.spec.neurons;
        &self.ys[t * bn..(t + 1) * bn]
    }

    /// The presynaptic activity of step `t`: `y_{t-1}` (`y0` at `t = 0`).
    fn y_pre(&self, t: usize) -> &[F] {
        if t == 0 {
            &self.y0
        } else {
            self.y_at(t - 1)
        }
    }
}

/// Gradients of a loss with respect to everything a modulated episode depends on.
#[derive(Clone, Debug)]
pub struct ModulatedGrads<F> {
    /// `dL/dw: [N, N]`.
    pub w: Vec<F>,
    /// `dL/dalpha`, shaped like `alpha`.
    pub alpha: Vec<F>,
    /// `dL/dm: [N]`.
    pub m: Vec<F>,
    /// `dL/dm_b`.
    pub m_bias: F,
    /// `dL/dv: [N]` (empty without fan-out).
    pub fan_w: Vec<F>,
    /// `dL/db: [N]` (empty without fan-out).
    pub fan_b: Vec<F>,
    /// `dL/deta_E` (0 for simple modulation).
    pub eta_e: F,
    /// `dL/dx: [T, B, N]`.
    pub x: Vec<F>,
    /// `dL/dy0: [B, N]`.
    pub y0: Vec<F>,
    /// `dL/dHebb_0: [B, N, N]`.
    pub hebb0: Vec<F>,
    /// `dL/dE_0: [B, N, N]` (empty for simple modulation).
    pub elig0: Vec<F>,
}

/// Checks the spec and the parameters' sizes.
fn check<F: Real>(spec: &EpisodeSpec, p: &ModulatedParams<'_, F>) -> Result<(), SpecError> {
    spec.validate()?;
    let n = spec.neurons;
    if spec.modulation == Modulation::None {
        return Err(SpecError(
            "modulation: None episodes run through fused::forward".into(),
        ));
    }
    if spec.rule != TraceRule::Hebb {
        return Err(SpecError(format!(
            "rule: neuromodulation replaces the rate of the decaying-Hebb rule; {:?} is not supported",
            spec.rule
        )));
    }
    spec.check_len("w", p.w.len(), n * n)?;
    spec.check_len("alpha", p.alpha.len(), spec.alpha.len(n))?;
    spec.check_len("m", p.m.len(), n)?;
    let fan = if spec.modulation.fan_out() { n } else { 0 };
    spec.check_len("fan_w", p.fan_w.len(), fan)?;
    spec.check_len("fan_b", p.fan_b.len(), fan)?;
    if !(p.m_bias.is_finite() && p.eta_e.is_finite()) {
        return Err(SpecError(format!(
            "m_bias and eta_e must be finite (got {:?}, {:?})",
            p.m_bias, p.eta_e
        )));
    }
    Ok(())
}

/// The modulator and the rates of one step from the new activity `y: [B, N]`: returns
/// `(M: [B], eta: [B, N])`.
fn rates<F: Real>(
    modulation: Modulation,
    p: &ModulatedParams<'_, F>,
    y: &[F],
    n: usize,
) -> (Vec<F>, Vec<F>) {
    let batch = y.len() / n;
    let mut ms = Vec::with_capacity(batch);
    let mut eta = Vec::with_capacity(batch * n);
    for yb in y.chunks_exact(n) {
        let q = yb.iter().zip(p.m).map(|(&a, &b)| a * b).sum::<F>() + p.m_bias;
        let m = q.tanh();
        ms.push(m);
        if modulation.fan_out() {
            eta.extend(p.fan_w.iter().zip(p.fan_b).map(|(&v, &b)| v * m + b));
        } else {
            eta.extend(core::iter::repeat_n(m, n));
        }
    }
    (ms, eta)
}

/// The per-step vectors of the trace update of step `t`, each `[B, N]` (see the module docs).
#[derive(Debug)]
struct StepVecs<F> {
    /// `M(t)`, `[B]`.
    m: Vec<F>,
    /// `eta_j(t)`.
    eta: Vec<F>,
    /// `u_i = y_{t-1, i}`.
    u: Vec<F>,
    /// Simple: `eta_j y_{t,j}`; retroactive: `eta_E y_{t,j}`.
    v: Vec<F>,
    /// `1 - eta_E` (retroactive).
    decay: F,
    retro: bool,
}

impl<F: Real> StepVecs<F> {
    fn new(
        modulation: Modulation,
        p: &ModulatedParams<'_, F>,
        ypre: &[F],
        ypost: &[F],
        n: usize,
    ) -> Self {
        let (m, eta) = rates(modulation, p, ypost, n);
        let retro = modulation.has_eligibility();
        let v = if retro {
            ypost.iter().map(|&y| p.eta_e * y).collect()
        } else {
            ypost.iter().zip(&eta).map(|(&y, &e)| e * y).collect()
        };
        StepVecs {
            m,
            eta,
            u: ypre.to_vec(),
            v,
            decay: F::one() - p.eta_e,
            retro,
        }
    }

    /// Applies the update to row `i` of episode `bi`: `h` (and `e` when retroactive) are that
    /// row of `Hebb` (and `E`).
    #[inline(always)]
    fn update_row(&self, h: &mut [F], e: &mut [F], bi: usize, i: usize, n: usize, clip: Option<F>) {
        let r = bi * n..(bi + 1) * n;
        let ui = self.u[bi * n + i];
        let v = &self.v[r.clone()];
        if self.retro {
            let eta = &self.eta[r];
            for (((h, e), &et), &vj) in h.iter_mut().zip(e.iter_mut()).zip(eta).zip(v) {
                *h = clip_to(*h + et * *e, clip);
                *e = self.decay * *e + ui * vj;
            }
        } else {
            for (h, &vj) in h.iter_mut().zip(v) {
                *h = clip_to(*h + ui * vj, clip);
            }
        }
    }
}

/// `split_rows` for a buffer that may be empty (the eligibility trace of simple modulation): one
/// (possibly empty) list of row slices per block.
fn split_rows_opt<'a, F>(
    buf: &'a mut [F],
    blocks: &[Range<usize>],
    n: usize,
) -> Vec<Vec<&'a mut [F]>> {
    if buf.is_empty() {
        blocks.iter().map(|_| Vec::new()).collect()
    } else {
        split_rows(buf, blocks, n)
    }
}

/// Runs a modulated episode forward. Shapes: `x: [T, B, N]`, `y0: [B, N]`, `h0, e0: [B, N, N]`
/// (`None`: zeros; `e0` is ignored by simple modulation).
pub fn forward<F: Real>(
    spec: &EpisodeSpec,
    p: &ModulatedParams<'_, F>,
    x: &[F],
    y0: &[F],
    h0: Option<&[F]>,
    e0: Option<&[F]>,
) -> Result<ModulatedEpisode<F>, SpecError> {
    check(spec, p)?;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let bn = b * n;
    spec.check_len("x", x.len(), t_len * bn)?;
    spec.check_len("y0", y0.len(), bn)?;
    if let Some(h) = h0 {
        spec.check_len("hebb0", h.len(), bn * n)?;
    }
    let retro = spec.modulation.has_eligibility();
    if let (Some(e), true) = (e0, retro) {
        spec.check_len("elig0", e.len(), bn * n)?;
    }
    Ok(in_pool(|| {
        if split_batch(spec) {
            forward_split(spec, p, x, y0, h0, e0)
        } else {
            forward_impl(spec, p, x, y0, h0, e0, &row_blocks(n, b))
        }
    }))
}

/// Whether the episodes of a batch run one by one, each on one thread, instead of all
/// together with the rows split across threads. Each episode's traces (`N x N`) then stay in
/// the core's caches through all its steps instead of streaming `B N^2` values from memory at
/// every step. It pays when there are at least as many episodes as threads and an episode's
/// buffers fit in cache: measured on one thread (`examples/kernel_timing`, best of 21 rounds
/// on a loaded 2-core VM), retroactive with fan-out, `B = 30`: `N = 100, T = 200` backward
/// 453 -> 322 ms; `N = 200, T = 120` forward 122 -> 85 ms, backward 1175 -> 751 ms.
fn split_batch(spec: &EpisodeSpec) -> bool {
    spec.batch > 1
        && spec.batch >= rayon::current_num_threads()
        && spec.neurons <= SPLIT_MAX_NEURONS
}

/// Largest `N` for [`split_batch`]: a few `N x N` buffers of an episode (traces, their
/// gradients, checkpoints) must fit in a core's share of the last-level cache.
const SPLIT_MAX_NEURONS: usize = 400;

/// [`forward_impl`] for each episode alone (in parallel), assembled into one batch.
fn forward_split<F: Real>(
    spec: &EpisodeSpec,
    p: &ModulatedParams<'_, F>,
    x: &[F],
    y0: &[F],
    h0: Option<&[F]>,
    e0: Option<&[F]>,
) -> ModulatedEpisode<F> {
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let nn = n * n;
    let one = EpisodeSpec { batch: 1, ..*spec };
    let all_rows = 0..n;
    let whole = std::slice::from_ref(&all_rows);
    let retro = spec.modulation.has_eligibility();
    let mut parts: Vec<ModulatedEpisode<F>> = (0..b)
        .into_par_iter()
        .map(|bi| {
            let xb = gather(x, b, n, bi);
            let h = h0.map(|h| &h[bi * nn..(bi + 1) * nn]);
            let e = e0.filter(|_| retro).map(|e| &e[bi * nn..(bi + 1) * nn]);
            forward_impl(&one, p, &xb, &y0[bi * n..(bi + 1) * n], h, e, whole)
        })
        .collect();
    let mut ys = vec![F::zero(); t_len * b * n];
    let mut modulator = vec![F::zero(); t_len * b];
    let mut hebb = Vec::with_capacity(b * nn);
    let mut elig = Vec::with_capacity(if retro { b * nn } else { 0 });
    for (bi, part) in parts.iter_mut().enumerate() {
        scatter(&part.ys, &mut ys, b, n, bi);
        scatter(&part.modulator, &mut modulator, b, 1, bi);
        hebb.append(&mut part.hebb);
        elig.append(&mut part.elig);
    }
    ModulatedEpisode {
        spec: *spec,
        ys,
        hebb,
        elig,
        modulator,
        y0: y0.to_vec(),
        x_clamped: None,
        segment: parts[0].segment,
        checkpoints: Vec::new(),
        parts,
    }
}

/// The forward of all episodes together; `blocks` split the rows across threads.
fn forward_impl<F: Real>(
    spec: &EpisodeSpec,
    p: &ModulatedParams<'_, F>,
    x: &[F],
    y0: &[F],
    h0: Option<&[F]>,
    e0: Option<&[F]>,
    blocks: &[Range<usize>],
) -> ModulatedEpisode<F> {
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let bn = b * n;
    let retro = spec.modulation.has_eligibility();
    let segment = match spec.backward {
        BackwardStrategy::Auto | BackwardStrategy::Checkpoint { segment: 0 } => {
            default_segment(t_len)
        }
        BackwardStrategy::Checkpoint { segment } => segment,
        BackwardStrategy::StoreAll => 1,
    };
    let mut hebb = h0.map_or_else(|| vec![F::zero(); bn * n], <[F]>::to_vec);
    let mut elig = match (retro, e0) {
        (false, _) => Vec::new(),
        (true, Some(e)) => e.to_vec(),
        (true, None) => vec![F::zero(); bn * n],
    };
    let mut checkpoints = vec![(hebb.clone(), elig.clone())];
    let alpha = AlphaRows::new(spec.alpha, p.alpha, n);
    let clip = spec.clip.map(F::of);
    let mut ys = vec![F::zero(); t_len * bn];
    let mut modulator = Vec::with_capacity(t_len * b);
    let mut acc = vec![F::zero(); bn];
    let mut pending: Option<StepVecs<F>> = None;
    for t in 0..t_len {
        let (done, rest) = ys.split_at_mut(t * bn);
        let ypre: &[F] = if t == 0 { y0 } else { &done[(t - 1) * bn..] };
        forward_pass(
            &mut hebb,
            &mut elig,
            blocks,
            p.w,
            &alpha,
            ypre,
            pending.as_ref(),
            clip,
            b,
            n,
            &mut acc,
        );
        if t > 0 && t % segment == 0 {
            checkpoints.push((hebb.clone(), elig.clone()));
        }
        let xt = &x[t * bn..(t + 1) * bn];
        let yt = &mut rest[..bn];
        for ((y, &a), &xi) in yt.iter_mut().zip(&acc).zip(xt) {
            *y = match spec.input {
                InputMode::Clamped if xi != F::zero() => xi,
                InputMode::Clamped => a.tanh(),
                InputMode::Additive => (a + xi).tanh(),
            };
        }
        let sv = StepVecs::new(spec.modulation, p, ypre, yt, n);
        modulator.extend_from_slice(&sv.m);
        pending = Some(sv);
    }
    // The update of the last step, pending so far.
    if let Some(sv) = &pending {
        update_pass(&mut hebb, &mut elig, blocks, sv, clip, n);
    }
    ModulatedEpisode {
        spec: *spec,
        ys,
        hebb,
        elig,
        modulator,
        y0: y0.to_vec(),
        x_clamped: (spec.input == InputMode::Clamped).then(|| x.to_vec()),
        segment,
        checkpoints,
        parts: Vec::new(),
    }
}

/// Runs modulated episodes one step at a time, in place (see [`crate::fused::Stepper`]): the
/// maths of [`forward`], one pass over the traces per step, nothing kept for a backward.
#[derive(Debug)]
pub struct Stepper<F> {
    spec: EpisodeSpec,
    y: Vec<F>,
    hebb: Vec<F>,
    elig: Vec<F>,
    pending: Option<StepVecs<F>>,
    acc: Vec<F>,
}

impl<F: Real> Stepper<F> {
    /// Starts from `y0: [B, N]`, `h0, e0: [B, N, N]` (`None`: zeros; `e0` is ignored by simple
    /// modulation).
    pub fn new(
        spec: &EpisodeSpec,
        y0: &[F],
        h0: Option<&[F]>,
        e0: Option<&[F]>,
    ) -> Result<Self, SpecError> {
        spec.validate()?;
        if spec.modulation == Modulation::None {
            return Err(SpecError(
                "modulation: None episodes step through fused::Stepper".into(),
            ));
        }
        let bn = spec.batch * spec.neurons;
        let len = bn * spec.neurons;
        spec.check_len("y0", y0.len(), bn)?;
        if let Some(h) = h0 {
            spec.check_len("hebb0", h.len(), len)?;
        }
        let retro = spec.modulation.has_eligibility();
        if let (Some(e), true) = (e0, retro) {
            spec.check_len("elig0", e.len(), len)?;
        }
        Ok(Stepper {
            spec: *spec,
            y: y0.to_vec(),
            hebb: h0.map_or_else(|| vec![F::zero(); len], <[F]>::to_vec),
            elig: match (retro, e0) {
                (false, _) => Vec::new(),
                (true, Some(e)) => e.to_vec(),
                (true, None) => vec![F::zero(); len],
            },
            pending: None,
            acc: vec![F::zero(); bn],
        })
    }

    /// One step with input `x: [B, N]`; returns `(y_t: [B, N], M(t): [B])`.
    pub fn step(&mut self, p: &ModulatedParams<'_, F>, x: &[F]) -> Result<(&[F], &[F]), SpecError> {
        check(&self.spec, p)?;
        let (n, b) = (self.spec.neurons, self.spec.batch);
        self.spec.check_len("x", x.len(), b * n)?;
        let spec = self.spec;
        let (hebb, elig, pending, acc, y) = (
            &mut self.hebb,
            &mut self.elig,
            &self.pending,
            &mut self.acc,
            &self.y,
        );
        in_pool(|| {
            let alpha = AlphaRows::new(spec.alpha, p.alpha, n);
            let blocks = row_blocks(n, b);
            let clip = spec.clip.map(F::of);
            forward_pass(
                hebb,
                elig,
                &blocks,
                p.w,
                &alpha,
                y,
                pending.as_ref(),
                clip,
                b,
                n,
                acc,
            );
        });
        let ynew: Vec<F> = self
            .acc
            .iter()
            .zip(x)
            .map(|(&a, &xi)| match spec.input {
                InputMode::Clamped if xi != F::zero() => xi,
                InputMode::Clamped => a.tanh(),
                InputMode::Additive => (a + xi).tanh(),
            })
            .collect();
        let sv = StepVecs::new(spec.modulation, p, &self.y, &ynew, n);
        self.y = ynew;
        let sv = self.pending.insert(sv);
        Ok((&self.y, &sv.m))
    }

    /// Applies the pending update of the last step and returns `(y_T, Hebb_T, E_T)`, as
    /// [`forward`] would after the same steps (`E_T` empty for simple modulation).
    pub fn finish(mut self) -> (Vec<F>, Vec<F>, Vec<F>) {
        if let Some(u) = self.pending.take() {
            let (n, b) = (self.spec.neurons, self.spec.batch);
            let clip = self.spec.clip.map(F::of);
            let (hebb, elig) = (&mut self.hebb, &mut self.elig);
            in_pool(|| update_pass(hebb, elig, &row_blocks(n, b), &u, clip, n));
        }
        (self.y, self.hebb, self.elig)
    }
}

/// One forward step over all rows: applies the pending trace update (if any) and returns
/// `acc[b, j] = sum_i (w_ij + alpha_ij Hebb_ij) y_{b,i}` (without input).
#[allow(clippy::too_many_arguments)]
fn forward_pass<F: Real>(
    hebb: &mut [F],
    elig: &mut [F],
    blocks: &[Range<usize>],
    w: &[F],
    alpha: &AlphaRows<'_, F>,
    ypre: &[F],
    update: Option<&StepVecs<F>>,
    clip: Option<F>,
    batch: usize,
    n: usize,
    acc: &mut [F],
) {
    let hs = split_rows(hebb, blocks, n);
    let es = split_rows_opt(elig, blocks, n);
    let partials: Vec<Vec<F>> = hs
        .into_par_iter()
        .zip(es)
        .zip(blocks.par_iter())
        .map(|((mut hs, mut es), rows)| {
            let mut part = vec![F::zero(); batch * n];
            for (r, i) in rows.clone().enumerate() {
                let wrow = &w[i * n..(i + 1) * n];
                let arow = alpha.row(i);
                for (bi, hb) in hs.iter_mut().enumerate() {
                    let hrow = &mut hb[r * n..(r + 1) * n];
                    if let Some(u) = update {
                        let erow: &mut [F] = match es.get_mut(bi) {
                            Some(eb) => &mut eb[r * n..(r + 1) * n],
                            None => &mut [],
                        };
                        u.update_row(hrow, erow, bi, i, n, clip);
                    }
                    let yi = ypre[bi * n + i];
                    let accb = &mut part[bi * n..(bi + 1) * n];
                    for (((a, &h), &wj), &aj) in accb.iter_mut().zip(&*hrow).zip(wrow).zip(arow) {
                        *a += (wj + aj * h) * yi;
                    }
                }
            }
            part
        })
        .collect();
    acc.iter_mut().for_each(|a| *a = F::zero());
    for part in partials {
        acc.iter_mut().zip(part).for_each(|(a, p)| *a += p);
    }
}

/// Applies one trace update to every row.
fn update_pass<F: Real>(
    hebb: &mut [F],
    elig: &mut [F],
    blocks: &[Range<usize>],
    u: &StepVecs<F>,
    clip: Option<F>,
    n: usize,
) {
    let hs = split_rows(hebb, blocks, n);
    let es = split_rows_opt(elig, blocks, n);
    hs.into_par_iter()
        .zip(es)
        .zip(blocks.par_iter())
        .for_each(|((mut hs, mut es), rows)| {
            for (r, i) in rows.clone().enumerate() {
                for (bi, hb) in hs.iter_mut().enumerate() {
                    let hrow = &mut hb[r * n..(r + 1) * n];
                    let erow: &mut [F] = match es.get_mut(bi) {
                        Some(eb) => &mut eb[r * n..(r + 1) * n],
                        None => &mut [],
                    };
                    u.update_row(hrow, erow, bi, i, n, clip);
                }
            }
        });
}

/// Backward pass of a modulated episode. `gy: [T, B, N]` is `dL/dy_t` for every step, `gh` is
/// `dL/dHebb_T` and `ge` is `dL/dE_T` (`[B, N, N]`, `None`: zero; `ge` is ignored by simple
/// modulation). `p` must be the parameters the forward ran with.
pub fn backward<F: Real>(
    p: &ModulatedParams<'_, F>,
    ep: ModulatedEpisode<F>,
    gy: &[F],
    gh: Option<&[F]>,
    ge: Option<&[F]>,
) -> Result<ModulatedGrads<F>, SpecError> {
    let spec = ep.spec;
    check(&spec, p)?;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    spec.check_len("grad of ys", gy.len(), t_len * b * n)?;
    if let Some(g) = gh {
        spec.check_len("grad of hebb", g.len(), b * n * n)?;
    }
    if let (Some(g), true) = (ge, spec.modulation.has_eligibility()) {
        spec.check_len("grad of elig", g.len(), b * n * n)?;
    }
    Ok(in_pool(|| {
        if ep.parts.is_empty() {
            backward_core(p, &ep, gy, gh, ge, &row_blocks(n, b))
        } else {
            backward_split(p, &ep, gy, gh, ge)
        }
    }))
}

/// [`backward_core`] for each episode of a split forward (in parallel); the parameters'
/// gradients are summed in episode order.
fn backward_split<F: Real>(
    p: &ModulatedParams<'_, F>,
    ep: &ModulatedEpisode<F>,
    gy: &[F],
    gh: Option<&[F]>,
    ge: Option<&[F]>,
) -> ModulatedGrads<F> {
    let spec = &ep.spec;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let nn = n * n;
    let all_rows = 0..n;
    let whole = std::slice::from_ref(&all_rows);
    let retro = spec.modulation.has_eligibility();
    let parts: Vec<ModulatedGrads<F>> = ep
        .parts
        .par_iter()
        .enumerate()
        .map(|(bi, part)| {
            let gyb = gather(gy, b, n, bi);
            let h = gh.map(|g| &g[bi * nn..(bi + 1) * nn]);
            let e = ge.filter(|_| retro).map(|g| &g[bi * nn..(bi + 1) * nn]);
            backward_core(p, part, &gyb, h, e, whole)
        })
        .collect();
    let mut it = parts.into_iter();
    let first = it.next().expect("a split batch has episodes");
    let mut x = vec![F::zero(); t_len * b * n];
    scatter(&first.x, &mut x, b, n, 0);
    let mut total = ModulatedGrads {
        x: Vec::new(),
        y0: Vec::with_capacity(b * n),
        hebb0: Vec::with_capacity(b * nn),
        elig0: Vec::with_capacity(if retro { b * nn } else { 0 }),
        ..first
    };
    total.y0.extend_from_slice(&first.y0);
    total.hebb0.extend_from_slice(&first.hebb0);
    total.elig0.extend_from_slice(&first.elig0);
    for (k, g) in it.enumerate() {
        let add = |a: &mut Vec<F>, b: &[F]| a.iter_mut().zip(b).for_each(|(x, y)| *x += *y);
        add(&mut total.w, &g.w);
        add(&mut total.alpha, &g.alpha);
        add(&mut total.m, &g.m);
        add(&mut total.fan_w, &g.fan_w);
        add(&mut total.fan_b, &g.fan_b);
        total.m_bias += g.m_bias;
        total.eta_e += g.eta_e;
        scatter(&g.x, &mut x, b, n, k + 1);
        total.y0.extend_from_slice(&g.y0);
        total.hebb0.extend_from_slice(&g.hebb0);
        total.elig0.extend_from_slice(&g.elig0);
    }
    total.x = x;
    total
}

// Index loops over j keep the equations readable (several [B, N] vectors at once).
#[allow(clippy::needless_range_loop)]
fn backward_core<F: Real>(
    p: &ModulatedParams<'_, F>,
    ep: &ModulatedEpisode<F>,
    gy: &[F],
    gh: Option<&[F]>,
    ge: Option<&[F]>,
    blocks: &[Range<usize>],
) -> ModulatedGrads<F> {
    let spec = &ep.spec;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let bn = b * n;
    let retro = spec.modulation.has_eligibility();
    let fan = spec.modulation.fan_out();
    let clip = spec.clip.map(F::of);
    let alpha = AlphaRows::new(spec.alpha, p.alpha, n);
    let mut g = gh.map_or_else(|| vec![F::zero(); bn * n], <[F]>::to_vec);
    let mut g_e = match (retro, ge) {
        (false, _) => Vec::new(),
        (true, Some(e)) => e.to_vec(),
        (true, None) => vec![F::zero(); bn * n],
    };
    let mut galpha = vec![F::zero(); if alpha.per_connection { n * n } else { n }];
    let mut gm = vec![F::zero(); n];
    let mut gm_bias = F::zero();
    let (mut gfan_w, mut gfan_b) = if fan {
        (vec![F::zero(); n], vec![F::zero(); n])
    } else {
        (Vec::new(), Vec::new())
    };
    let mut geta_e = F::zero();
    let mut gx = vec![F::zero(); t_len * bn];
    let mut phat_all = vec![F::zero(); t_len * bn];
    let mut carry = vec![F::zero(); bn];
    let seg = ep.segment;
    let mut segment_traces: Vec<(Vec<F>, Vec<F>)> = Vec::new();
    let mut segment_start = usize::MAX;
    let one = F::one();
    for t in (0..t_len).rev() {
        let (ypre, ypost) = (ep.y_pre(t), ep.y_at(t));
        let sv = StepVecs::new(spec.modulation, p, ypre, ypost, n);
        // (Hebb_t, E_t), recomputed from the segment's checkpoint.
        let start = (t / seg) * seg;
        if start != segment_start {
            // Recompute the segment into buffers kept from segment to segment (no allocation
            // and no fresh pages after the first segment).
            segment_start = start;
            let (h0, e0) = &ep.checkpoints[t / seg];
            if segment_traces.len() <= t - start {
                segment_traces.resize_with(t - start + 1, || {
                    (vec![F::zero(); h0.len()], vec![F::zero(); e0.len()])
                });
            }
            segment_traces[0].0.copy_from_slice(h0);
            segment_traces[0].1.copy_from_slice(e0);
            for s in start..t {
                let k = s - start;
                let (done, rest) = segment_traces.split_at_mut(k + 1);
                let (h, e) = &mut rest[0];
                h.copy_from_slice(&done[k].0);
                e.copy_from_slice(&done[k].1);
                let rv = StepVecs::new(spec.modulation, p, ep.y_pre(s), ep.y_at(s), n);
                update_pass(h, e, blocks, &rv, clip, n);
            }
        }
        let (h, e) = &segment_traces[t - start];
        // Pass A: column sums.
        let sums = pass_a(h, e, &g, &g_e, blocks, &sv, clip, b, n);
        // dL/deta_j, the modulator, dL/dy_t and dL/dpre_t.
        let ext = &gy[t * bn..(t + 1) * bn];
        let phat = &mut phat_all[t * bn..(t + 1) * bn];
        let gxt = &mut gx[t * bn..(t + 1) * bn];
        for bi in 0..b {
            let m_t = sv.m[bi];
            let mut g_mod = F::zero();
            for j in 0..n {
                let k = bi * n + j;
                // dL/deta_j: simple sum_i Ĝ_ij y_i y'_j; retroactive sum_i Ĝ_ij E_ij.
                let geta = if retro {
                    sums.s[k]
                } else {
                    ypost[k] * sums.s[k]
                };
                if fan {
                    g_mod += p.fan_w[j] * geta;
                    gfan_w[j] += m_t * geta;
                    gfan_b[j] += geta;
                } else {
                    g_mod += geta;
                }
            }
            let gq = g_mod * (one - m_t * m_t);
            gm_bias += gq;
            for j in 0..n {
                let k = bi * n + j;
                gm[j] += gq * ypost[k];
                let trace_part = if retro {
                    geta_e += ypost[k] * sums.se[k] - sums.see[k];
                    p.eta_e * sums.se[k]
                } else {
                    sv.eta[k] * sums.s[k]
                };
                let yhat = ext[k] + carry[k] + gq * p.m[j] + trace_part;
                let clamped = ep
                    .x_clamped
                    .as_ref()
                    .is_some_and(|x| x[t * bn + k] != F::zero());
                if clamped {
                    gxt[k] = yhat;
                    phat[k] = F::zero();
                } else {
                    let ph = yhat * (one - ypost[k] * ypost[k]);
                    phat[k] = ph;
                    gxt[k] = ph;
                }
            }
        }
        // Pass B: dL/dy_{t-1}, dL/dalpha, G <- dL/dHebb_t, GE <- dL/dE_t.
        carry = pass_b(
            h,
            e,
            &mut g,
            &mut g_e,
            &mut galpha,
            blocks,
            p,
            &alpha,
            &sv,
            phat,
            clip,
            b,
            n,
        );
    }
    // dL/dw = sum_t y_{t-1}^T P_t, one product over [T * B, N] matrices.
    let mut ypre_all = Vec::with_capacity(t_len * bn);
    ypre_all.extend_from_slice(&ep.y0);
    ypre_all.extend_from_slice(&ep.ys[..(t_len - 1) * bn]);
    let mut gw = vec![F::zero(); n * n];
    F::gemm_tn_acc(n, t_len * b, n, &ypre_all, &phat_all, &mut gw);
    if spec.alpha == AlphaShape::Scalar {
        let total: F = galpha.iter().copied().sum();
        galpha = vec![total];
    }
    ModulatedGrads {
        w: gw,
        alpha: galpha,
        m: gm,
        m_bias: gm_bias,
        fan_w: gfan_w,
        fan_b: gfan_b,
        eta_e: geta_e,
        x: gx,
        y0: carry,
        hebb0: g,
        elig0: g_e,
    }
}

/// Pass A's column sums, each `[B, N]`: `s` (simple: `sum_i Ĝ_ij y_i`; retroactive:
/// `sum_i Ĝ_ij E_ij`), and for the eligibility trace `se = sum_i GE_ij y_i`,
/// `see = sum_i GE_ij E_ij` (empty for simple modulation).
struct ColumnSums<F> {
    s: Vec<F>,
    se: Vec<F>,
    see: Vec<F>,
}

/// Pass A of the backward of step `t` (see the module docs). `h, e` hold `Hebb_t, E_t`; `g, ge`
/// hold `dL/dHebb_{t+1}, dL/dE_{t+1}`.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn pass_a<F: Real>(
    h: &[F],
    e: &[F],
    g: &[F],
    ge: &[F],
    blocks: &[Range<usize>],
    sv: &StepVecs<F>,
    clip: Option<F>,
    batch: usize,
    n: usize,
) -> ColumnSums<F> {
    let retro = sv.retro;
    let clip_c = clip.unwrap_or_else(F::infinity);
    let partials: Vec<ColumnSums<F>> = blocks
        .par_iter()
        .map(|rows| {
            let extra = if retro { batch * n } else { 0 };
            let mut out = ColumnSums {
                s: vec![F::zero(); batch * n],
                se: vec![F::zero(); extra],
                see: vec![F::zero(); extra],
            };
            for i in rows.clone() {
                for bi in 0..batch {
                    let row = (bi * n + i) * n..(bi * n + i + 1) * n;
                    let r = bi * n..(bi + 1) * n;
                    let (hrow, grow) = (&h[row.clone()], &g[row.clone()]);
                    let yi = sv.u[bi * n + i];
                    let s = &mut out.s[r.clone()];
                    if retro {
                        let (erow, gerow) = (&e[row.clone()], &ge[row]);
                        let eta = &sv.eta[r.clone()];
                        let (se, see) = (&mut out.se[r.clone()], &mut out.see[r]);
                        for j in 0..n {
                            let z = hrow[j] + eta[j] * erow[j];
                            let gv = through_clip(z, clip_c, grow[j]);
                            s[j] += gv * erow[j];
                            se[j] += gerow[j] * yi;
                            see[j] += gerow[j] * erow[j];
                        }
                    } else {
                        let v = &sv.v[r];
                        for j in 0..n {
                            let z = hrow[j] + yi * v[j];
                            let gv = through_clip(z, clip_c, grow[j]);
                            s[j] += gv * yi;
                        }
                    }
                }
            }
            out
        })
        .collect();
    let mut it = partials.into_iter();
    let mut total = it.next().expect("at least one block");
    for p in it {
        for (a, b) in [
            (&mut total.s, p.s),
            (&mut total.se, p.se),
            (&mut total.see, p.see),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }
    total
}

/// Pass B of the backward of step `t`: updates `g` to `dL/dHebb_t`, `ge` to `dL/dE_t`, adds to
/// `galpha`, and returns `dL/dy_{t-1}` through this step, `[B, N]`.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn pass_b<F: Real>(
    h: &[F],
    e: &[F],
    g: &mut [F],
    ge: &mut [F],
    galpha: &mut [F],
    blocks: &[Range<usize>],
    p: &ModulatedParams<'_, F>,
    alpha: &AlphaRows<'_, F>,
    sv: &StepVecs<F>,
    phat: &[F],
    clip: Option<F>,
    batch: usize,
    n: usize,
) -> Vec<F> {
    let retro = sv.retro;
    let clip_c = clip.unwrap_or_else(F::infinity);
    let per_connection = alpha.per_connection;
    let gs = split_rows(g, blocks, n);
    let ges = split_rows_opt(ge, blocks, n);
    let galpha_rows: Vec<Option<&mut [F]>> = if per_connection {
        let mut rest = &mut *galpha;
        blocks
            .iter()
            .map(|r| {
                let (head, tail) = core::mem::take(&mut rest).split_at_mut(r.len() * n);
                rest = tail;
                Some(head)
            })
            .collect()
    } else {
        blocks.iter().map(|_| None).collect()
    };
    let results: Vec<(Vec<F>, Vec<F>)> = gs
        .into_par_iter()
        .zip(ges)
        .zip(galpha_rows)
        .zip(blocks.par_iter())
        .map(|(((mut gs, mut ges), mut ga_rows), rows)| {
            let mut dy = vec![F::zero(); rows.len() * batch];
            let (mut t1, mut t2) = (vec![F::zero(); n], vec![F::zero(); n]);
            let mut ga_local = if per_connection {
                Vec::new()
            } else {
                vec![F::zero(); n]
            };
            for (r, i) in rows.clone().enumerate() {
                let wrow = &p.w[i * n..(i + 1) * n];
                let arow = alpha.row(i);
                for (bi, gb) in gs.iter_mut().enumerate() {
                    let row = (bi * n + i) * n..(bi * n + i + 1) * n;
                    let rb = bi * n..(bi + 1) * n;
                    let grow = &mut gb[r * n..(r + 1) * n];
                    let hrow = &h[row.clone()];
                    let ph = &phat[rb.clone()];
                    let yi = sv.u[bi * n + i];
                    let garow: &mut [F] = match ga_rows.as_deref_mut() {
                        Some(rows_ga) => &mut rows_ga[r * n..(r + 1) * n],
                        None => &mut ga_local,
                    };
                    // Row sums go through per-column scratch rows and 8-lane sums (a running
                    // float sum would not vectorize).
                    let (t1, t2) = (&mut t1[..n], &mut t2[..n]);
                    let (grow, hrow, wrow, arow, ph, garow) = (
                        &mut grow[..n],
                        &hrow[..n],
                        &wrow[..n],
                        &arow[..n],
                        &ph[..n],
                        &mut garow[..n],
                    );
                    if retro {
                        let erow = &e[row][..n];
                        let gerow = &mut ges[bi][r * n..(r + 1) * n];
                        let (eta, v) = (&sv.eta[rb.clone()][..n], &sv.v[rb][..n]);
                        for j in 0..n {
                            let z = hrow[j] + eta[j] * erow[j];
                            let gv = through_clip(z, clip_c, grow[j]);
                            // d/dy_i of E'_ij = ... + y_i eta_E y'_j.
                            t1[j] = gerow[j] * v[j];
                            gerow[j] = eta[j] * gv + sv.decay * gerow[j];
                            let q = yi * ph[j];
                            t2[j] = (wrow[j] + arow[j] * hrow[j]) * ph[j];
                            garow[j] += q * hrow[j];
                            grow[j] = gv + arow[j] * q;
                        }
                    } else {
                        let v = &sv.v[rb][..n];
                        for j in 0..n {
                            let z = hrow[j] + yi * v[j];
                            let gv = through_clip(z, clip_c, grow[j]);
                            // d/dy_i of Hebb'_ij = ... + y_i eta_j y'_j.
                            t1[j] = gv * v[j];
                            let q = yi * ph[j];
                            t2[j] = (wrow[j] + arow[j] * hrow[j]) * ph[j];
                            garow[j] += q * hrow[j];
                            grow[j] = gv + arow[j] * q;
                        }
                    }
                    dy[r * batch + bi] = lane_sum(t1) + lane_sum(t2);
                }
            }
            (dy, ga_local)
        })
        .collect();
    let mut gy_pre = vec![F::zero(); batch * n];
    for ((dy, ga_local), rows) in results.into_iter().zip(blocks) {
        for (r, i) in rows.clone().enumerate() {
            for bi in 0..batch {
                gy_pre[bi * n + i] = dy[r * batch + bi];
            }
        }
        if !per_connection {
            galpha.iter_mut().zip(ga_local).for_each(|(a, b)| *a += b);
        }
    }
    gy_pre
}
