//! The same maths as [`crate::reference`], fused: forward and backward kernels that stream `w`,
//! `alpha` and `Hebb` a small, fixed number of times per step, split the rows of every `N x N`
//! buffer across threads, and never keep `T` copies of `Hebb`.
//!
//! # Both trace rules are one per-element affine map
//! With `y` the presynaptic (previous) and `y'` the new activity,
//! `Hebb'_ij = A_j Hebb_ij + u_i v_j`, then optional clipping to `[-c, c]`:
//!
//! | rule | `A_j` | `u_i` | `v_j` |
//! |------|-------|-------|-------|
//! | [`TraceRule::Hebb`] | `1 - eta` | `eta y_i` | `y'_j` |
//! | [`TraceRule::Oja`]  | `1 - eta y'_j^2` | `y_i` | `eta y'_j` |
//!
//! So without clipping both rules are invertible (`Hebb = (Hebb' - u_i v_j) / A_j`) as long as
//! `A_j` stays away from 0; the backward pass then *reverses* the trace step by step and needs
//! no stored trace at all (memory `O(B N^2 + T B N)`). Reversal amplifies rounding by `1 / A`
//! per step, so it is verified at the end (the reconstructed `Hebb_0` must match the stored one)
//! and the backward recomputes with checkpoints if it does not. With clipping (not invertible)
//! the backward recomputes the traces segment by segment from checkpoints stored every
//! `K ~ sqrt(T)` steps (memory `O(sqrt(T) B N^2 + T B N)`).
//!
//! # Forward, one pass per step
//! At step `t` the pass over row `i` first applies the pending update of step `t-1`
//! (`Hebb_t = R(Hebb_{t-1}, y_{t-2}, y_{t-1})`) and then accumulates
//! `pre_j += (w_ij + alpha_ij Hebb_t,ij) y_{t-1,i}`: `Hebb` is read and written once, `w` and
//! `alpha` read once, for all `B` episodes together.
//!
//! # Backward, one or two passes per step
//! With `G = dL/dHebb_{t+1}` (masked where the clip was active) and `P_j = dL/dpre_t,j`:
//! - pass A (column sums): `S1_j = sum_i G_ij y_i`, `S2_j = sum_i G_ij Hebb_t,ij`, which give
//!   the trace rule's share of `dL/dy'_j` and of `dL/deta` (reversing `Hebb` in place first);
//! - pass B: `dL/dy_i`, `dL/dalpha`, and `G <- A_j G_ij + alpha_ij y_i P_j` (= `dL/dHebb_t`).
//!
//! `P_t` needs the complete column sums of step `t`, so each step ends at a barrier; when the
//! trace is reversed, pass A of step `t-1` runs in the same sweep as pass B of step `t` (one
//! pass over `Hebb`, `G`, `w`, `alpha`, `dL/dalpha` per step).
//!
//! `dL/dw = sum_t y_{t-1}^T P_t` is one matrix product at the end.

use crate::real::Real;
use crate::spec::{
    AlphaShape, BackwardStrategy, EpisodeSpec, InputMode, Modulation, SpecError, TraceRule,
};
use core::ops::Range;
use rayon::prelude::*;

/// The learned parameters of a plastic layer, borrowed as flat row-major slices.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a, F> {
    /// Fixed weights `w: [N, N]`, `w[i * N + j]` from neuron `i` to neuron `j`.
    pub w: &'a [F],
    /// Plasticity coefficients, shaped as [`EpisodeSpec::alpha`] says.
    pub alpha: &'a [F],
    /// Plasticity rate `eta`.
    pub eta: F,
}

/// What the forward pass returns and the backward pass needs: the episode's activations, its
/// final trace, and the little that the backward cannot recompute.
#[derive(Clone, Debug)]
pub struct Episode<F> {
    spec: EpisodeSpec,
    /// Activations of every step, `ys: [T, B, N]`.
    pub ys: Vec<F>,
    /// The trace after the last step, `hebb: [B, N, N]`.
    pub hebb: Vec<F>,
    y0: Vec<F>,
    h0: Option<Vec<F>>,
    x_clamped: Option<Vec<F>>,
    eta: F,
    /// 0: reverse the trace; otherwise steps between stored checkpoints.
    segment: usize,
    checkpoints: Vec<Vec<F>>,
    /// When the batch was split ([`split_batch`]): each episode's own run (batch 1).
    parts: Vec<Episode<F>>,
}

impl<F: Real> Episode<F> {
    /// The spec the episode ran with.
    pub fn spec(&self) -> &EpisodeSpec {
        &self.spec
    }

    /// Whether the backward will reverse the trace (`true`) or recompute from checkpoints.
    pub fn reverses_trace(&self) -> bool {
        self.segment == 0
    }

    /// Bytes held for the backward beyond the outputs `ys` and `hebb` (checkpoints, stored
    /// initial state, clamped inputs).
    pub fn saved_bytes(&self) -> usize {
        let n = self.checkpoints.iter().map(Vec::len).sum::<usize>()
            + self.y0.len()
            + self.h0.as_ref().map_or(0, Vec::len)
            + self.x_clamped.as_ref().map_or(0, Vec::len);
        n * core::mem::size_of::<F>() + self.parts.iter().map(Self::saved_bytes).sum::<usize>()
    }
}

/// Gradients of a loss with respect to everything an episode depends on.
#[derive(Clone, Debug)]
pub struct Grads<F> {
    /// `dL/dw: [N, N]`.
    pub w: Vec<F>,
    /// `dL/dalpha`, shaped like `alpha`.
    pub alpha: Vec<F>,
    /// `dL/deta`.
    pub eta: F,
    /// `dL/dx: [T, B, N]`.
    pub x: Vec<F>,
    /// `dL/dy0: [B, N]`.
    pub y0: Vec<F>,
    /// `dL/dHebb_0: [B, N, N]`.
    pub hebb0: Vec<F>,
    /// True when the reversal was rejected and the traces were recomputed from checkpoints.
    pub reversal_rejected: bool,
}

/// Largest amplification of rounding errors `prod_t 1/A` the reversal may face before the
/// forward stores checkpoints instead.
const MAX_REVERSAL_AMPLIFICATION: f64 = 1e3;

/// Below this many trace values per step, one thread does the whole step.
const PARALLEL_MIN_VALUES: usize = 1 << 15;

/// Runs an episode forward. Shapes: `x: [T, B, N]`, `y0: [B, N]`, `h0: [B, N, N]` (`None`:
/// zeros). Keeps what the backward needs in the returned [`Episode`].
pub fn forward<F: Real>(
    spec: &EpisodeSpec,
    p: &Params<'_, F>,
    x: &[F],
    y0: &[F],
    h0: Option<&[F]>,
) -> Result<Episode<F>, SpecError> {
    in_pool(|| {
        if split_batch(spec) {
            forward_split(spec, p, x, y0, h0)
        } else {
            forward_impl(spec, p, x, y0, h0)
        }
    })
}

/// Whether the episodes of a batch run one by one, each on one thread (see
/// `modulated::split_batch`): at least as many episodes as threads, and episodes small enough
/// (`N^2` under [`PARALLEL_MIN_VALUES`]) that each runs its rows as one block. Measured at the
/// maze's shape (`N = 100, B = 30, T = 200`, clip 1, one thread, best of 21 rounds on a loaded
/// VM): forward 35 -> 42 ms, backward 155 -> 97 ms.
fn split_batch(spec: &EpisodeSpec) -> bool {
    spec.batch > 1
        && spec.batch >= rayon::current_num_threads()
        && spec.neurons * spec.neurons < PARALLEL_MIN_VALUES
}

/// Episode `bi` of a time-major `[T, B, N]` buffer, as `[T, 1, N]`.
pub(crate) fn gather<F: Real>(v: &[F], b: usize, n: usize, bi: usize) -> Vec<F> {
    v.chunks_exact(b * n)
        .flat_map(|step| &step[bi * n..(bi + 1) * n])
        .copied()
        .collect()
}

/// Writes `[T, 1, N]` episode `bi` into a time-major `[T, B, N]` buffer.
pub(crate) fn scatter<F: Real>(part: &[F], out: &mut [F], b: usize, n: usize, bi: usize) {
    for (step, src) in out.chunks_exact_mut(b * n).zip(part.chunks_exact(n)) {
        step[bi * n..(bi + 1) * n].copy_from_slice(src);
    }
}

/// [`forward_impl`] for each episode alone (in parallel), assembled into one batch.
fn forward_split<F: Real>(
    spec: &EpisodeSpec,
    p: &Params<'_, F>,
    x: &[F],
    y0: &[F],
    h0: Option<&[F]>,
) -> Result<Episode<F>, SpecError> {
    spec.validate()?;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let nn = n * n;
    spec.check_len("x", x.len(), t_len * b * n)?;
    spec.check_len("y0", y0.len(), b * n)?;
    if let Some(h) = h0 {
        spec.check_len("hebb0", h.len(), b * nn)?;
    }
    let one = EpisodeSpec { batch: 1, ..*spec };
    let parts = (0..b)
        .into_par_iter()
        .map(|bi| {
            let h = h0.map(|h| &h[bi * nn..(bi + 1) * nn]);
            forward_impl(&one, p, &gather(x, b, n, bi), &y0[bi * n..(bi + 1) * n], h)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut ys = vec![F::zero(); t_len * b * n];
    let mut hebb = Vec::with_capacity(b * nn);
    for (bi, part) in parts.iter().enumerate() {
        scatter(&part.ys, &mut ys, b, n, bi);
        hebb.extend_from_slice(&part.hebb);
    }
    Ok(Episode {
        spec: *spec,
        ys,
        hebb,
        y0: y0.to_vec(),
        h0: None,
        x_clamped: None,
        eta: p.eta,
        segment: parts[0].segment,
        checkpoints: Vec::new(),
        parts,
    })
}

/// Runs `f` on a thread of rayon's pool. The kernels make one parallel section per step;
/// called from outside the pool, each would park the caller and wake a worker (tens of
/// microseconds each, hundreds per episode); inside it, the caller takes part in the work.
pub(crate) fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

fn forward_impl<F: Real>(
    spec: &EpisodeSpec,
    p: &Params<'_, F>,
    x: &[F],
    y0: &[F],
    h0: Option<&[F]>,
) -> Result<Episode<F>, SpecError> {
    spec.validate()?;
    if spec.modulation != Modulation::None {
        return Err(SpecError(format!(
            "modulation: {:?} episodes run through modulated::forward, not fused::forward",
            spec.modulation
        )));
    }
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let bn = b * n;
    spec.check_len("w", p.w.len(), n * n)?;
    spec.check_len("alpha", p.alpha.len(), spec.alpha.len(n))?;
    spec.check_len("x", x.len(), t_len * bn)?;
    spec.check_len("y0", y0.len(), bn)?;
    if let Some(h) = h0 {
        spec.check_len("hebb0", h.len(), bn * n)?;
    }
    if !p.eta.is_finite() {
        return Err(SpecError(format!("eta must be finite (got {:?})", p.eta)));
    }
    let segment = match spec.backward {
        BackwardStrategy::Auto if reversible(spec, p.eta) => 0,
        BackwardStrategy::Auto | BackwardStrategy::Checkpoint { segment: 0 } => {
            default_segment(t_len)
        }
        BackwardStrategy::Checkpoint { segment } => segment,
        BackwardStrategy::StoreAll => 1,
    };
    let mut hebb = match h0 {
        Some(h) => h.to_vec(),
        None => vec![F::zero(); bn * n],
    };
    let h0_saved = h0
        .filter(|h| h.iter().any(|v| *v != F::zero()))
        .map(<[F]>::to_vec);
    let mut checkpoints = Vec::new();
    if segment > 0 {
        checkpoints.push(hebb.clone());
    }
    let alpha_row = AlphaRows::new(spec.alpha, p.alpha, n);
    let clip = spec.clip.map(F::of);
    let blocks = row_blocks(n, b);
    let mut ys = vec![F::zero(); t_len * bn];
    let mut acc = vec![F::zero(); bn];
    for t in 0..t_len {
        let (done, rest) = ys.split_at_mut(t * bn);
        let ypre: &[F] = if t == 0 { y0 } else { &done[(t - 1) * bn..] };
        let update = (t > 0).then(|| {
            let ypre2 = if t == 1 {
                y0
            } else {
                &done[(t - 2) * bn..(t - 1) * bn]
            };
            RuleVecs::new(spec.rule, p.eta, ypre2, ypre, n)
        });
        forward_pass(
            &mut hebb,
            &blocks,
            p.w,
            &alpha_row,
            ypre,
            update.as_ref(),
            clip,
            b,
            n,
            &mut acc,
        );
        let xt = &x[t * bn..(t + 1) * bn];
        let yt = &mut rest[..bn];
        for ((y, &a), &xi) in yt.iter_mut().zip(&acc).zip(xt) {
            *y = match spec.input {
                InputMode::Clamped if xi != F::zero() => xi,
                InputMode::Clamped => a.tanh(),
                InputMode::Additive => (a + xi).tanh(),
            };
        }
        if segment > 0 && t > 0 && t % segment == 0 {
            checkpoints.push(hebb.clone());
        }
    }
    // The update of the last step, pending so far: Hebb_T = R(Hebb_{T-1}, y_{T-2}, y_{T-1}).
    let ylast_pre = if t_len == 1 {
        y0
    } else {
        &ys[(t_len - 2) * bn..(t_len - 1) * bn]
    };
    let vecs = RuleVecs::new(spec.rule, p.eta, ylast_pre, &ys[(t_len - 1) * bn..], n);
    update_pass(&mut hebb, &blocks, &vecs, clip, n);
    Ok(Episode {
        spec: *spec,
        ys,
        hebb,
        y0: y0.to_vec(),
        h0: h0_saved,
        x_clamped: (spec.input == InputMode::Clamped).then(|| x.to_vec()),
        eta: p.eta,
        segment,
        checkpoints,
        parts: Vec::new(),
    })
}

/// Runs episodes one step at a time, in place, for agents whose input at step `t` depends on
/// their output at `t - 1` (reinforcement learning): the same maths as [`forward`] with one
/// pass over `Hebb` per step, no per-step allocation of the traces and nothing kept for a
/// backward. `spec.steps` is ignored.
#[derive(Debug)]
pub struct Stepper<F> {
    spec: EpisodeSpec,
    y: Vec<F>,
    hebb: Vec<F>,
    pending: Option<RuleVecs<F>>,
    acc: Vec<F>,
}

impl<F: Real> Stepper<F> {
    /// Starts from `y0: [B, N]` and `h0: [B, N, N]` (`None`: zeros).
    pub fn new(spec: &EpisodeSpec, y0: &[F], h0: Option<&[F]>) -> Result<Self, SpecError> {
        spec.validate()?;
        if spec.modulation != Modulation::None {
            return Err(SpecError(
                "modulation: modulated episodes step through modulated::Stepper".into(),
            ));
        }
        let bn = spec.batch * spec.neurons;
        spec.check_len("y0", y0.len(), bn)?;
        if let Some(h) = h0 {
            spec.check_len("hebb0", h.len(), bn * spec.neurons)?;
        }
        Ok(Stepper {
            spec: *spec,
            y: y0.to_vec(),
            hebb: h0.map_or_else(|| vec![F::zero(); bn * spec.neurons], <[F]>::to_vec),
            pending: None,
            acc: vec![F::zero(); bn],
        })
    }

    /// One step with input `x: [B, N]`; returns `y_t: [B, N]`.
    pub fn step(&mut self, p: &Params<'_, F>, x: &[F]) -> Result<&[F], SpecError> {
        let (n, b) = (self.spec.neurons, self.spec.batch);
        self.spec.check_len("w", p.w.len(), n * n)?;
        self.spec
            .check_len("alpha", p.alpha.len(), self.spec.alpha.len(n))?;
        self.spec.check_len("x", x.len(), b * n)?;
        if !p.eta.is_finite() {
            return Err(SpecError(format!("eta must be finite (got {:?})", p.eta)));
        }
        let spec = self.spec;
        let (hebb, pending, acc, y) = (&mut self.hebb, &self.pending, &mut self.acc, &self.y);
        in_pool(|| {
            let alpha = AlphaRows::new(spec.alpha, p.alpha, n);
            let blocks = row_blocks(n, b);
            let clip = spec.clip.map(F::of);
            forward_pass(
                hebb,
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
        self.pending = Some(RuleVecs::new(spec.rule, p.eta, &self.y, &ynew, n));
        self.y = ynew;
        Ok(&self.y)
    }

    /// The activity `y_t: [B, N]` of the last step (`y0` before the first).
    pub fn y(&self) -> &[F] {
        &self.y
    }

    /// Applies the pending update of the last step and returns `(y_T, Hebb_T)`, as
    /// [`forward`] would after the same steps.
    pub fn finish(mut self) -> (Vec<F>, Vec<F>) {
        if let Some(u) = self.pending.take() {
            let (n, b) = (self.spec.neurons, self.spec.batch);
            let clip = self.spec.clip.map(F::of);
            let hebb = &mut self.hebb;
            in_pool(|| update_pass(hebb, &row_blocks(n, b), &u, clip, n));
        }
        (self.y, self.hebb)
    }
}

/// Backward pass of an episode. `gy: [T, B, N]` is `dL/dy_t` for every step (zeros where the
/// loss does not look), `gh: [B, N, N]` is `dL/dHebb_T` (`None`: zero). `p` must be the
/// parameters the forward ran with.
pub fn backward<F: Real>(
    p: &Params<'_, F>,
    ep: Episode<F>,
    gy: &[F],
    gh: Option<&[F]>,
) -> Result<Grads<F>, SpecError> {
    in_pool(|| backward_impl(p, ep, gy, gh))
}

fn backward_impl<F: Real>(
    p: &Params<'_, F>,
    mut ep: Episode<F>,
    gy: &[F],
    gh: Option<&[F]>,
) -> Result<Grads<F>, SpecError> {
    let spec = ep.spec;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    spec.check_len("w", p.w.len(), n * n)?;
    spec.check_len("alpha", p.alpha.len(), spec.alpha.len(n))?;
    spec.check_len("grad of ys", gy.len(), t_len * b * n)?;
    if let Some(g) = gh {
        spec.check_len("grad of hebb", g.len(), b * n * n)?;
    }
    if ep.eta != p.eta {
        return Err(SpecError("backward: eta differs from the forward's".into()));
    }
    if !ep.parts.is_empty() {
        return backward_split(p, ep, gy, gh);
    }
    if ep.segment > 0 {
        return Ok(backward_core(
            p,
            &ep,
            gy,
            gh,
            Traces::Segments(&ep.checkpoints, ep.segment),
        ));
    }
    let scale = max_abs(&ep.hebb).max(ep.h0.as_deref().map_or(F::zero(), max_abs));
    let mut work = core::mem::take(&mut ep.hebb);
    let grads = backward_core(p, &ep, gy, gh, Traces::Reverse(&mut work));
    // `work` now holds the reconstructed Hebb_0: verify it.
    let err = match &ep.h0 {
        Some(h0) => work
            .iter()
            .zip(h0)
            .map(|(a, b)| (*a - *b).abs())
            .fold(F::zero(), F::max),
        None => max_abs(&work),
    };
    let rel = if scale > F::zero() {
        (err / scale).to_f64().unwrap_or(f64::INFINITY)
    } else {
        0.0
    };
    if rel <= F::REVERSAL_TOLERANCE {
        return Ok(grads);
    }
    let segment = default_segment(t_len);
    let checkpoints = recompute_checkpoints(&ep, p, segment);
    let mut grads = backward_core(p, &ep, gy, gh, Traces::Segments(&checkpoints, segment));
    grads.reversal_rejected = true;
    Ok(grads)
}

/// [`backward_impl`] for each episode of a split forward (in parallel); the parameters'
/// gradients are summed in episode order.
fn backward_split<F: Real>(
    p: &Params<'_, F>,
    mut ep: Episode<F>,
    gy: &[F],
    gh: Option<&[F]>,
) -> Result<Grads<F>, SpecError> {
    let (n, b, t_len) = (ep.spec.neurons, ep.spec.batch, ep.spec.steps);
    let nn = n * n;
    let parts = core::mem::take(&mut ep.parts)
        .into_par_iter()
        .enumerate()
        .map(|(bi, part)| {
            let h = gh.map(|g| &g[bi * nn..(bi + 1) * nn]);
            backward_impl(p, part, &gather(gy, b, n, bi), h)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = Grads {
        w: vec![F::zero(); nn],
        alpha: vec![F::zero(); parts[0].alpha.len()],
        eta: F::zero(),
        x: vec![F::zero(); t_len * b * n],
        y0: Vec::with_capacity(b * n),
        hebb0: Vec::with_capacity(b * nn),
        reversal_rejected: false,
    };
    for (bi, g) in parts.into_iter().enumerate() {
        total.w.iter_mut().zip(&g.w).for_each(|(a, v)| *a += *v);
        total
            .alpha
            .iter_mut()
            .zip(&g.alpha)
            .for_each(|(a, v)| *a += *v);
        total.eta += g.eta;
        scatter(&g.x, &mut total.x, b, n, bi);
        total.y0.extend_from_slice(&g.y0);
        total.hebb0.extend_from_slice(&g.hebb0);
        total.reversal_rejected |= g.reversal_rejected;
    }
    Ok(total)
}

/// Whether the forward should plan a reversed backward: no clipping, `A > 0`, and the bound on
/// the amplification of rounding errors `(1 - eta)^-T` is moderate.
fn reversible<F: Real>(spec: &EpisodeSpec, eta: F) -> bool {
    let eta = eta.to_f64().unwrap_or(f64::NAN);
    spec.clip.is_none()
        && eta < 1.0
        && (eta <= 0.0 || -(spec.steps as f64) * (1.0 - eta).ln() < MAX_REVERSAL_AMPLIFICATION.ln())
}

pub(crate) fn default_segment(steps: usize) -> usize {
    ((steps as f64).sqrt().ceil() as usize).max(1)
}

fn max_abs<F: Real>(v: &[F]) -> F {
    v.iter().fold(F::zero(), |m, x| m.max(x.abs()))
}

/// The per-step vectors of the affine trace update `Hebb'_ij = A_j Hebb_ij + u_i v_j`, each
/// `[B, N]`, plus what the backward needs of the rule's derivatives.
#[derive(Debug)]
struct RuleVecs<F> {
    a: Vec<F>,
    u: Vec<F>,
    v: Vec<F>,
}

impl<F: Real> RuleVecs<F> {
    /// `ypre`: `y_{t-1}` (presynaptic), `ypost`: `y_t`, both `[B, N]`.
    fn new(rule: TraceRule, eta: F, ypre: &[F], ypost: &[F], n: usize) -> Self {
        let len = ypost.len().min(ypre.len());
        let (ypre, ypost) = (&ypre[..len], &ypost[..len]);
        debug_assert_eq!(len % n, 0);
        match rule {
            TraceRule::Hebb => RuleVecs {
                a: vec![F::one() - eta; len],
                u: ypre.iter().map(|&y| eta * y).collect(),
                v: ypost.to_vec(),
            },
            TraceRule::Oja => RuleVecs {
                a: ypost.iter().map(|&y| F::one() - eta * y * y).collect(),
                u: ypre.to_vec(),
                v: ypost.iter().map(|&y| eta * y).collect(),
            },
        }
    }
}

/// Rows of `alpha`: the row of a per-connection matrix, or one broadcast row of `N` values.
pub(crate) struct AlphaRows<'a, F> {
    data: &'a [F],
    broadcast: Vec<F>,
    pub(crate) per_connection: bool,
    n: usize,
}

impl<'a, F: Real> AlphaRows<'a, F> {
    pub(crate) fn new(shape: AlphaShape, alpha: &'a [F], n: usize) -> Self {
        let broadcast = match shape {
            AlphaShape::PerConnection => Vec::new(),
            AlphaShape::PerNeuron => alpha.to_vec(),
            AlphaShape::Scalar => vec![alpha[0]; n],
        };
        AlphaRows {
            data: alpha,
            broadcast,
            per_connection: shape == AlphaShape::PerConnection,
            n,
        }
    }

    #[inline]
    pub(crate) fn row(&self, i: usize) -> &[F] {
        if self.per_connection {
            &self.data[i * self.n..(i + 1) * self.n]
        } else {
            &self.broadcast
        }
    }
}

/// Splits the rows `0..n` into one block per worker thread (one block for small problems).
pub(crate) fn row_blocks(n: usize, batch: usize) -> Vec<Range<usize>> {
    let threads = if n * n * batch < PARALLEL_MIN_VALUES {
        1
    } else {
        rayon::current_num_threads()
    };
    let k = threads.clamp(1, n);
    (0..k).map(|c| (c * n / k)..((c + 1) * n / k)).collect()
}

/// Cuts a `[B, N, N]` buffer into, for each row block, the `B` slices of its rows.
pub(crate) fn split_rows<'a, F>(
    buf: &'a mut [F],
    blocks: &[Range<usize>],
    n: usize,
) -> Vec<Vec<&'a mut [F]>> {
    let batch = buf.len() / (n * n);
    let mut out: Vec<Vec<&mut [F]>> = blocks.iter().map(|_| Vec::with_capacity(batch)).collect();
    for hb in buf.chunks_mut(n * n) {
        let mut rest = hb;
        for (k, r) in blocks.iter().enumerate() {
            let (head, tail) = rest.split_at_mut(r.len() * n);
            out[k].push(head);
            rest = tail;
        }
    }
    out
}

/// Sum in 8 independent lanes (vectorizes; the order is fixed, so results are reproducible).
pub(crate) fn lane_sum<F: Real>(v: &[F]) -> F {
    let mut lanes = [F::zero(); 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().copied().sum::<F>() + rest.iter().copied().sum::<F>()
}

/// Per-thread scratch rows for the row sums of pass B (a running float sum would not
/// vectorize: the terms are written out per column and summed in lanes after).
struct RowScratch<F> {
    rule: Vec<F>,
    matvec: Vec<F>,
}

/// Pass B over one row `i` of one episode: updates `g` (to `dL/dHebb_t`) and `ga`
/// (`dL/dalpha`), returns the two row sums `(sum_j G_ij y'_j, sum_j (w_ij + alpha_ij Hebb_ij) P_j)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pass_b_row<F: Real, const CLIP: bool>(
    g: &mut [F],
    h: &[F],
    w: &[F],
    alpha: &[F],
    a: &[F],
    v: &[F],
    ypost: &[F],
    p: &[F],
    ga: &mut [F],
    yi: F,
    ui: F,
    clip_c: F,
    scratch: &mut RowScratch<F>,
) -> (F, F) {
    let n = g.len();
    let (h, w, alpha, a, v, ypost, p, ga) = (
        &h[..n],
        &w[..n],
        &alpha[..n],
        &a[..n],
        &v[..n],
        &ypost[..n],
        &p[..n],
        &mut ga[..n],
    );
    let (t1, t2) = (&mut scratch.rule[..n], &mut scratch.matvec[..n]);
    for k in 0..n {
        let hv = h[k];
        let g1 = if CLIP {
            through_clip(a[k] * hv + ui * v[k], clip_c, g[k])
        } else {
            g[k]
        };
        let q = yi * p[k];
        t1[k] = g1 * ypost[k];
        t2[k] = (w[k] + alpha[k] * hv) * p[k];
        g[k] = a[k] * g1 + alpha[k] * q;
        ga[k] += q * hv;
    }
    (lane_sum(t1), lane_sum(t2))
}

/// The gradient `g` through the clip of the pre-clip value `Z`: zero where the clip was active
/// (`|Z| >= c`). `g` is loaded before the test, so the choice is a select and the loops around
/// it vectorize (a load inside a branch kept them scalar: the modulated backward was 2.3x slower).
#[inline(always)]
pub(crate) fn through_clip<F: Real>(z: F, clip_c: F, g: F) -> F {
    if z.abs() >= clip_c {
        F::zero()
    } else {
        g
    }
}

#[inline(always)]
pub(crate) fn clip_to<F: Real>(h: F, clip: Option<F>) -> F {
    match clip {
        Some(c) => h.max(-c).min(c),
        None => h,
    }
}

/// One forward step over all rows: applies the pending trace update (if any) and returns
/// `acc[b, j] = sum_i (w_ij + alpha_ij Hebb_ij) y_{b,i}` (without input).
#[allow(clippy::too_many_arguments)]
fn forward_pass<F: Real>(
    hebb: &mut [F],
    blocks: &[Range<usize>],
    w: &[F],
    alpha: &AlphaRows<'_, F>,
    ypre: &[F],
    update: Option<&RuleVecs<F>>,
    clip: Option<F>,
    batch: usize,
    n: usize,
    acc: &mut [F],
) {
    let jobs = split_rows(hebb, blocks, n);
    let partials: Vec<Vec<F>> = jobs
        .into_par_iter()
        .zip(blocks.par_iter())
        .map(|(mut hs, rows)| {
            let mut part = vec![F::zero(); batch * n];
            for (r, i) in rows.clone().enumerate() {
                let wrow = &w[i * n..(i + 1) * n];
                let arow = alpha.row(i);
                for (bi, hb) in hs.iter_mut().enumerate() {
                    let hrow = &mut hb[r * n..(r + 1) * n];
                    let yi = ypre[bi * n + i];
                    let accb = &mut part[bi * n..(bi + 1) * n];
                    match update {
                        None => {
                            for (((a, &h), &wj), &aj) in
                                accb.iter_mut().zip(&*hrow).zip(wrow).zip(arow)
                            {
                                *a += (wj + aj * h) * yi;
                            }
                        }
                        Some(u) => {
                            let ui = u.u[bi * n + i];
                            let (aa, vv) = (&u.a[bi * n..(bi + 1) * n], &u.v[bi * n..(bi + 1) * n]);
                            for (((((a, h), &wj), &aj), &aa), &vj) in accb
                                .iter_mut()
                                .zip(hrow.iter_mut())
                                .zip(wrow)
                                .zip(arow)
                                .zip(aa)
                                .zip(vv)
                            {
                                let hn = clip_to(aa * *h + ui * vj, clip);
                                *h = hn;
                                *a += (wj + aj * hn) * yi;
                            }
                        }
                    }
                }
            }
            part
        })
        .collect();
    acc.iter_mut().for_each(|a| *a = F::zero());
    for part in partials {
        for (a, p) in acc.iter_mut().zip(part) {
            *a += p;
        }
    }
}

/// Applies one trace update to every row (no matrix-vector product).
fn update_pass<F: Real>(
    hebb: &mut [F],
    blocks: &[Range<usize>],
    u: &RuleVecs<F>,
    clip: Option<F>,
    n: usize,
) {
    let jobs = split_rows(hebb, blocks, n);
    jobs.into_par_iter()
        .zip(blocks.par_iter())
        .for_each(|(mut hs, rows)| {
            for (r, i) in rows.clone().enumerate() {
                for (bi, hb) in hs.iter_mut().enumerate() {
                    let hrow = &mut hb[r * n..(r + 1) * n];
                    let ui = u.u[bi * n + i];
                    let (aa, vv) = (&u.a[bi * n..(bi + 1) * n], &u.v[bi * n..(bi + 1) * n]);
                    for ((h, &aa), &vj) in hrow.iter_mut().zip(aa).zip(vv) {
                        *h = clip_to(aa * *h + ui * vj, clip);
                    }
                }
            }
        });
}

/// Where the backward finds `Hebb_t`.
enum Traces<'a, F> {
    /// A buffer holding `Hebb_T`, reversed in place step by step.
    Reverse(&'a mut Vec<F>),
    /// Checkpoints `Hebb_{sK}` every `K` steps; segments are recomputed forward.
    Segments(&'a [Vec<F>], usize),
}

/// Recomputes the checkpoints `Hebb_{sK}` from `Hebb_0` and the stored activations.
fn recompute_checkpoints<F: Real>(
    ep: &Episode<F>,
    p: &Params<'_, F>,
    segment: usize,
) -> Vec<Vec<F>> {
    let spec = &ep.spec;
    let (n, b) = (spec.neurons, spec.batch);
    let mut h = ep.h0.clone().unwrap_or_else(|| vec![F::zero(); b * n * n]);
    let blocks = row_blocks(n, b);
    let clip = spec.clip.map(F::of);
    let mut out = vec![h.clone()];
    for t in 1..spec.steps {
        let (ypre, ypost) = (ep.y_pre(t - 1), ep.y_at(t - 1));
        update_pass(
            &mut h,
            &blocks,
            &RuleVecs::new(spec.rule, p.eta, ypre, ypost, n),
            clip,
            n,
        );
        if t % segment == 0 {
            out.push(h.clone());
        }
    }
    out
}

impl<F: Real> Episode<F> {
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

fn backward_core<F: Real>(
    p: &Params<'_, F>,
    ep: &Episode<F>,
    gy: &[F],
    gh: Option<&[F]>,
    mut traces: Traces<'_, F>,
) -> Grads<F> {
    let spec = &ep.spec;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let bn = b * n;
    let blocks = row_blocks(n, b);
    let clip = spec.clip.map(F::of);
    let alpha = AlphaRows::new(spec.alpha, p.alpha, n);
    let mut g = match gh {
        Some(g) => g.to_vec(),
        None => vec![F::zero(); bn * n],
    };
    // Per-neuron and scalar alpha accumulate one value per postsynaptic neuron.
    let mut galpha = vec![F::zero(); if alpha.per_connection { n * n } else { n }];
    let mut geta = F::zero();
    let mut gx = vec![F::zero(); t_len * bn];
    let mut phat_all = vec![F::zero(); t_len * bn];
    let mut carry = vec![F::zero(); bn];
    let mut segment_traces: Vec<Vec<F>> = Vec::new();
    let mut segment_start = usize::MAX;
    let mut pending_sums: Option<ColumnSums<F>> = None;
    for t in (0..t_len).rev() {
        let (ypre, ypost) = (ep.y_pre(t), ep.y_at(t));
        let vecs = RuleVecs::new(spec.rule, p.eta, ypre, ypost, n);
        // Hebb_t, in `h`.
        let (h, reverse): (&mut [F], bool) = match &mut traces {
            Traces::Reverse(buf) => (buf.as_mut_slice(), true),
            Traces::Segments(checkpoints, seg) => {
                let start = (t / *seg) * *seg;
                if start != segment_start {
                    // Recompute the segment into buffers kept from segment to segment: no
                    // allocation, and no fresh pages (N = 200 traces are mmap-sized).
                    segment_start = start;
                    let h0 = &checkpoints[t / *seg];
                    if segment_traces.len() <= t - start {
                        segment_traces.resize_with(t - start + 1, || vec![F::zero(); h0.len()]);
                    }
                    segment_traces[0].copy_from_slice(h0);
                    for s in start..t {
                        let k = s - start;
                        let (done, rest) = segment_traces.split_at_mut(k + 1);
                        rest[0].copy_from_slice(&done[k]);
                        let rv = RuleVecs::new(spec.rule, p.eta, ep.y_pre(s), ep.y_at(s), n);
                        update_pass(&mut rest[0], &blocks, &rv, clip, n);
                    }
                }
                (segment_traces[t - start].as_mut_slice(), false)
            }
        };
        // Pass A: column sums of G (= dL/dHebb_{t+1}, masked) against y_{t-1} and Hebb_t
        // (already done by the previous step's fused pass when reversing).
        let (s1, s2) = match pending_sums.take() {
            Some(sums) => sums,
            None => pass_a(h, &g, &blocks, &vecs, ypre, clip, reverse, b, n),
        };
        // dL/dy_t and dL/dpre_t.
        let ext = &gy[t * bn..(t + 1) * bn];
        let phat = &mut phat_all[t * bn..(t + 1) * bn];
        let gxt = &mut gx[t * bn..(t + 1) * bn];
        for k in 0..bn {
            let (d_rule, e_rule) = match spec.rule {
                TraceRule::Hebb => (F::zero(), F::one()),
                TraceRule::Oja => (
                    -(F::one() + F::one()) * p.eta * ypost[k],
                    ypost[k] * ypost[k],
                ),
            };
            geta += ypost[k] * s1[k] - e_rule * s2[k];
            let yhat = ext[k] + carry[k] + p.eta * s1[k] + d_rule * s2[k];
            let clamped = ep
                .x_clamped
                .as_ref()
                .is_some_and(|x| x[t * bn + k] != F::zero());
            if clamped {
                gxt[k] = yhat;
                phat[k] = F::zero();
            } else {
                let ph = yhat * (F::one() - ypost[k] * ypost[k]);
                phat[k] = ph;
                gxt[k] = ph;
            }
        }
        // Pass B: dL/dy_{t-1}, dL/dalpha, and G <- dL/dHebb_t; when reversing, fused with
        // pass A of step t-1.
        let prev_vecs =
            (reverse && t > 0).then(|| RuleVecs::new(spec.rule, p.eta, ep.y_pre(t - 1), ypre, n));
        let prev = prev_vecs.as_ref().map(|vecs| PrevStep {
            vecs,
            ypre: ep.y_pre(t - 1),
        });
        let (dy_pre, sums) = pass_b(
            h,
            &mut g,
            &mut galpha,
            &blocks,
            p.w,
            &alpha,
            &vecs,
            ypre,
            ypost,
            phat,
            p.eta,
            clip,
            b,
            n,
            prev,
        );
        carry = dy_pre;
        pending_sums = sums;
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
    Grads {
        w: gw,
        alpha: galpha,
        eta: geta,
        x: gx,
        y0: carry,
        hebb0: g,
        reversal_rejected: false,
    }
}

/// Pass A of the backward of step `t` (see the module docs). Reverses `h` from `Hebb_{t+1}` to
/// `Hebb_t` first when `reverse`. Returns `(S1, S2)`, each `[B, N]`.
#[allow(clippy::too_many_arguments)]
fn pass_a<F: Real>(
    h: &mut [F],
    g: &[F],
    blocks: &[Range<usize>],
    u: &RuleVecs<F>,
    ypre: &[F],
    clip: Option<F>,
    reverse: bool,
    batch: usize,
    n: usize,
) -> (Vec<F>, Vec<F>) {
    let hs = split_rows(h, blocks, n);
    let partials: Vec<(Vec<F>, Vec<F>)> = hs
        .into_par_iter()
        .zip(blocks.par_iter())
        .map(|(mut hs, rows)| {
            let mut s1 = vec![F::zero(); batch * n];
            let mut s2 = vec![F::zero(); batch * n];
            let clip_c = clip.unwrap_or_else(F::infinity);
            for (r, i) in rows.clone().enumerate() {
                for (bi, hb) in hs.iter_mut().enumerate() {
                    let hrow = &mut hb[r * n..(r + 1) * n];
                    let grow = &g[(bi * n + i) * n..(bi * n + i + 1) * n];
                    let (yi, ui) = (ypre[bi * n + i], u.u[bi * n + i]);
                    let range = bi * n..(bi + 1) * n;
                    let (aa, vv) = (&u.a[range.clone()], &u.v[range.clone()]);
                    let (s1b, s2b) = (&mut s1[range.clone()], &mut s2[range.clone()]);
                    if reverse {
                        for ((((h, &gv), &aj_rev), &vj), (a1, a2)) in hrow
                            .iter_mut()
                            .zip(grow)
                            .zip(aa)
                            .zip(vv)
                            .zip(s1b.iter_mut().zip(s2b.iter_mut()))
                        {
                            let h0 = (*h - ui * vj) / aj_rev;
                            *h = h0;
                            *a1 += gv * yi;
                            *a2 += gv * h0;
                        }
                    } else {
                        for ((((&h0, &gv), &aj), &vj), (a1, a2)) in hrow
                            .iter()
                            .zip(grow)
                            .zip(aa)
                            .zip(vv)
                            .zip(s1b.iter_mut().zip(s2b.iter_mut()))
                        {
                            let gv = if (aj * h0 + ui * vj).abs() >= clip_c {
                                F::zero()
                            } else {
                                gv
                            };
                            *a1 += gv * yi;
                            *a2 += gv * h0;
                        }
                    }
                }
            }
            (s1, s2)
        })
        .collect();
    let mut it = partials.into_iter();
    let (mut s1, mut s2) = it.next().expect("at least one block");
    for (p1, p2) in it {
        s1.iter_mut().zip(p1).for_each(|(a, b)| *a += b);
        s2.iter_mut().zip(p2).for_each(|(a, b)| *a += b);
    }
    (s1, s2)
}

/// Pass A's column sums `(S1, S2)`, each `[B, N]`.
type ColumnSums<F> = (Vec<F>, Vec<F>);

/// The step before the current one, for a pass B that also runs pass A of step `t-1`.
struct PrevStep<'a, F> {
    /// Rule vectors of step `t-1`.
    vecs: &'a RuleVecs<F>,
    /// `y_{t-2}` (presynaptic activity of step `t-1`), `[B, N]`.
    ypre: &'a [F],
}

/// Pass B of the backward of step `t`. `h` holds `Hebb_t`, `g` holds `dL/dHebb_{t+1}` on entry
/// and `dL/dHebb_t` on exit. Returns `dL/dy_{t-1}` through this step, `[B, N]`.
///
/// With `prev` (trace reversal only), the same sweep also runs pass A of step `t-1`: it reverses
/// `h` to `Hebb_{t-1}` and returns that step's column sums `(S1, S2)`, saving one pass over
/// `Hebb` and `G` per step.
#[allow(clippy::too_many_arguments)]
fn pass_b<F: Real>(
    h: &mut [F],
    g: &mut [F],
    galpha: &mut [F],
    blocks: &[Range<usize>],
    w: &[F],
    alpha: &AlphaRows<'_, F>,
    u: &RuleVecs<F>,
    ypre: &[F],
    ypost: &[F],
    phat: &[F],
    eta: F,
    clip: Option<F>,
    batch: usize,
    n: usize,
    prev: Option<PrevStep<'_, F>>,
) -> (Vec<F>, Option<ColumnSums<F>>) {
    debug_assert!(
        prev.is_none() || clip.is_none(),
        "reversal never runs with clipping"
    );
    let hs = split_rows(h, blocks, n);
    let gs = split_rows(g, blocks, n);
    let per_connection = alpha.per_connection;
    // Per-connection dL/dalpha is cut by rows like the traces; otherwise each block sums its
    // own [N] row and the blocks are added up after.
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
    type BlockOut<F> = (Vec<F>, Vec<F>, Vec<F>, Vec<F>);
    let results: Vec<BlockOut<F>> = gs
        .into_par_iter()
        .zip(hs)
        .zip(galpha_rows)
        .zip(blocks.par_iter())
        .map(|(((mut gs, mut hs), mut ga_rows), rows)| {
            let mut dy = vec![F::zero(); rows.len() * batch];
            let mut ga_local = if per_connection {
                Vec::new()
            } else {
                vec![F::zero(); n]
            };
            let sums_len = if prev.is_some() { batch * n } else { 0 };
            let (mut s1, mut s2) = (vec![F::zero(); sums_len], vec![F::zero(); sums_len]);
            let clip_c = clip.unwrap_or_else(F::infinity);
            // One row kernel per clip setting (the clip test compiles away without clipping).
            let row_b = if clip.is_some() {
                pass_b_row::<F, true>
            } else {
                pass_b_row::<F, false>
            };
            let mut scratch = RowScratch {
                rule: vec![F::zero(); n],
                matvec: vec![F::zero(); n],
            };
            for (r, i) in rows.clone().enumerate() {
                let wrow = &w[i * n..(i + 1) * n];
                let arow = alpha.row(i);
                for (bi, (gb, hb)) in gs.iter_mut().zip(hs.iter_mut()).enumerate() {
                    let grow = &mut gb[r * n..(r + 1) * n];
                    let hrow = &mut hb[r * n..(r + 1) * n];
                    let range = bi * n..(bi + 1) * n;
                    let (aa, vv, yp, ph) = (
                        &u.a[range.clone()],
                        &u.v[range.clone()],
                        &ypost[range.clone()],
                        &phat[range.clone()],
                    );
                    let (yi, ui) = (ypre[bi * n + i], u.u[bi * n + i]);
                    let garow: &mut [F] = match ga_rows.as_deref_mut() {
                        Some(rows_ga) => &mut rows_ga[r * n..(r + 1) * n],
                        None => &mut ga_local,
                    };
                    let (rule_part, matvec_part) = match &prev {
                        Some(pv) => {
                            let row = PrevRow {
                                a: &pv.vecs.a[range.clone()],
                                v: &pv.vecs.v[range.clone()],
                                ui: pv.vecs.u[bi * n + i],
                                yi: pv.ypre[bi * n + i],
                            };
                            let (s1b, s2b) = (&mut s1[range.clone()], &mut s2[range]);
                            pass_ba_row(
                                grow,
                                hrow,
                                wrow,
                                arow,
                                aa,
                                yp,
                                ph,
                                garow,
                                yi,
                                &row,
                                s1b,
                                s2b,
                                &mut scratch,
                            )
                        }
                        None => row_b(
                            grow,
                            hrow,
                            wrow,
                            arow,
                            aa,
                            vv,
                            yp,
                            ph,
                            garow,
                            yi,
                            ui,
                            clip_c,
                            &mut scratch,
                        ),
                    };
                    dy[r * batch + bi] = eta * rule_part + matvec_part;
                }
            }
            (dy, ga_local, s1, s2)
        })
        .collect();
    let mut gy_pre = vec![F::zero(); batch * n];
    let mut sums = prev
        .as_ref()
        .map(|_| (vec![F::zero(); batch * n], vec![F::zero(); batch * n]));
    for ((dy, ga_local, s1, s2), rows) in results.into_iter().zip(blocks) {
        for (r, i) in rows.clone().enumerate() {
            for bi in 0..batch {
                gy_pre[bi * n + i] = dy[r * batch + bi];
            }
        }
        if !per_connection {
            galpha.iter_mut().zip(ga_local).for_each(|(a, b)| *a += b);
        }
        if let Some((t1, t2)) = sums.as_mut() {
            t1.iter_mut().zip(s1).for_each(|(a, b)| *a += b);
            t2.iter_mut().zip(s2).for_each(|(a, b)| *a += b);
        }
    }
    (gy_pre, sums)
}

/// What pass A of step `t-1` needs of one row `i` of one episode.
struct PrevRow<'a, F> {
    /// `A_j` of step `t-1`.
    a: &'a [F],
    /// `v_j` of step `t-1`.
    v: &'a [F],
    /// `u_i` of step `t-1`.
    ui: F,
    /// `y_{t-2, i}`.
    yi: F,
}

/// Pass B of step `t` fused with pass A of step `t-1` over one row (trace reversal, no clip).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pass_ba_row<F: Real>(
    g: &mut [F],
    h: &mut [F],
    w: &[F],
    alpha: &[F],
    a: &[F],
    ypost: &[F],
    p: &[F],
    ga: &mut [F],
    yi: F,
    prev: &PrevRow<'_, F>,
    s1: &mut [F],
    s2: &mut [F],
    scratch: &mut RowScratch<F>,
) -> (F, F) {
    let n = g.len();
    let (h, w, alpha, a, ypost, p, ga) = (
        &mut h[..n],
        &w[..n],
        &alpha[..n],
        &a[..n],
        &ypost[..n],
        &p[..n],
        &mut ga[..n],
    );
    let (pa, pv, s1, s2) = (&prev.a[..n], &prev.v[..n], &mut s1[..n], &mut s2[..n]);
    let (t1, t2) = (&mut scratch.rule[..n], &mut scratch.matvec[..n]);
    let (pui, pyi) = (prev.ui, prev.yi);
    for k in 0..n {
        let hv = h[k];
        let g1 = g[k];
        let q = yi * p[k];
        t1[k] = g1 * ypost[k];
        t2[k] = (w[k] + alpha[k] * hv) * p[k];
        let g0 = a[k] * g1 + alpha[k] * q;
        g[k] = g0;
        ga[k] += q * hv;
        // Pass A of step t-1: Hebb_{t-1} = (Hebb_t - u_i v_j) / A_j, column sums against dL/dHebb_t.
        let hp = (hv - pui * pv[k]) / pa[k];
        h[k] = hp;
        s1[k] += g0 * pyi;
        s2[k] += g0 * hp;
    }
    (lane_sum(t1), lane_sum(t2))
}
