//! The plastic recurrent network: the maths of [`crate::reference`], fused, for every trace rule
//! ([`crate::trace`]). One engine runs forward, backward and the stepper of agents; the rule is
//! its only per-variant code.
//!
//! # Forward, one pass per step
//! At step `t` the pass over row `i` first applies the pending trace update of step `t-1`
//! (`Hebb_t = R(Hebb_{t-1}, y_{t-2}, y_{t-1})`, and `E` when the rule keeps it) and then
//! accumulates `pre_j += (w_ij + alpha_ij Hebb_t,ij) y_{t-1,i}`: the traces are read and written
//! once, `w` and `alpha` read once, for all `B` episodes together. Rows are split across threads
//! (`parallel.rs`); a batch of small episodes runs one episode per thread instead.
//!
//! # Backward, one or two passes per step
//! The traces of every step come back by reversal (invertible rules without clipping: memory
//! `O(B N^2 + T B N)`) or from checkpoints every `K ~ sqrt(T)` steps (memory
//! `O(sqrt(T) B N^2 + T B N)`; `checkpoint.rs`). With `Ĝ = dL/dHebb_{t+1}` masked where
//! the clip was active, `GE = dL/dE_{t+1}` and `P_j = dL/dpre_t,j`:
//! - pass A (column sums over `i`, [`ColumnSums`]): the rule turns them into its share of
//!   `dL/dy'_j` and the gradients of its parameters ([`Rule::backprop`]); then `P`;
//! - pass B (rows): `dL/dy_{t-1,i}`, `dL/dalpha`, `G <- A_j Ĝ_ij + alpha_ij y_i P_j`
//!   (`= dL/dHebb_t`) and `GE <- eta_j Ĝ + d GE` (`= dL/dE_t`).
//!
//! `P_t` needs the complete column sums of step `t`, so each step ends at a barrier; when the
//! trace is reversed, pass A of step `t-1` runs in the same sweep as pass B of step `t` (one
//! pass over `Hebb`, `G`, `w`, `alpha`, `dL/dalpha` per step). `dL/dw = sum_t y_{t-1}^T P_t` is
//! one matrix product at the end.

use crate::checkpoint::{self, max_abs, plan, reversal_holds, Segments, TracePair};
use crate::parallel::{
    block_rows, gather, in_pool, lane_sum, row_blocks, scatter, split_batch, split_rows,
};
use crate::real::Real;
use crate::spec::{AlphaShape, EpisodeSpec, InputMode, Modulation, SpecError, TraceRule};
use crate::trace::{
    through_clip, Activity, Coefficients, ColumnSums, Decaying, Modulator, Oja, Retroactive,
    RowFactor, Rule, RuleGrads, Shares, Simple,
};
use core::ops::Range;
use rayon::prelude::*;

/// The learned parameters of a plastic layer with a fixed rate (decaying Hebb or Oja), borrowed
/// as flat row-major slices.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a, F> {
    /// Fixed weights `w: [N, N]`, `w[i * N + j]` from neuron `i` to neuron `j`.
    pub w: &'a [F],
    /// Plasticity coefficients, shaped as [`EpisodeSpec::alpha`] says.
    pub alpha: &'a [F],
    /// Plasticity rate `eta`.
    pub eta: F,
}

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

/// A spec's trace rule with its parameters.
#[derive(Clone, Copy, Debug)]
enum AnyRule<'a, F> {
    Decaying(Decaying<F>),
    Oja(Oja<F>),
    Simple(Simple<'a, F>),
    Retroactive(Retroactive<'a, F>),
}

/// Runs `$body` with `$r` bound to the concrete rule of an [`AnyRule`] (one monomorphised engine
/// per rule).
macro_rules! with_rule {
    ($rule:expr, $r:ident => $body:expr) => {
        match $rule {
            AnyRule::Decaying($r) => $body,
            AnyRule::Oja($r) => $body,
            AnyRule::Simple($r) => $body,
            AnyRule::Retroactive($r) => $body,
        }
    };
}

impl<'a, F: Real> Params<'a, F> {
    fn rule(&self, spec: &EpisodeSpec) -> Result<AnyRule<'a, F>, SpecError> {
        spec.validate()?;
        if spec.modulation != Modulation::None {
            return Err(SpecError(format!(
                "modulation: {:?} episodes run with ModulatedParams (forward_modulated), not Params",
                spec.modulation
            )));
        }
        check_weights(spec, self.w, self.alpha)?;
        if !self.eta.is_finite() {
            return Err(SpecError(format!(
                "eta must be finite (got {:?})",
                self.eta
            )));
        }
        Ok(match spec.rule {
            TraceRule::Hebb => AnyRule::Decaying(Decaying { eta: self.eta }),
            TraceRule::Oja => AnyRule::Oja(Oja { eta: self.eta }),
        })
    }
}

impl<'a, F: Real> ModulatedParams<'a, F> {
    fn rule(&self, spec: &EpisodeSpec) -> Result<AnyRule<'a, F>, SpecError> {
        spec.validate()?;
        let n = spec.neurons;
        if spec.modulation == Modulation::None {
            return Err(SpecError(
                "modulation: None episodes run with Params (forward), not ModulatedParams".into(),
            ));
        }
        if spec.rule != TraceRule::Hebb {
            return Err(SpecError(format!(
                "rule: neuromodulation replaces the rate of the decaying-Hebb rule; {:?} is not supported",
                spec.rule
            )));
        }
        check_weights(spec, self.w, self.alpha)?;
        spec.check_len("m", self.m.len(), n)?;
        let fan = if spec.modulation.fan_out() { n } else { 0 };
        spec.check_len("fan_w", self.fan_w.len(), fan)?;
        spec.check_len("fan_b", self.fan_b.len(), fan)?;
        if !(self.m_bias.is_finite() && self.eta_e.is_finite()) {
            return Err(SpecError(format!(
                "m_bias and eta_e must be finite (got {:?}, {:?})",
                self.m_bias, self.eta_e
            )));
        }
        let modulator = Modulator {
            m: self.m,
            m_bias: self.m_bias,
            fan_w: self.fan_w,
            fan_b: self.fan_b,
            fan_out: spec.modulation.fan_out(),
        };
        let eta_e = self.eta_e;
        Ok(match spec.modulation {
            Modulation::Retroactive { .. } => {
                AnyRule::Retroactive(Retroactive { modulator, eta_e })
            }
            _ => AnyRule::Simple(Simple { modulator, eta_e }),
        })
    }
}

fn check_weights<F>(spec: &EpisodeSpec, w: &[F], alpha: &[F]) -> Result<(), SpecError> {
    let n = spec.neurons;
    spec.check_len("w", w.len(), n * n)?;
    spec.check_len("alpha", alpha.len(), spec.alpha.len(n))
}

/// What the forward pass returns and the backward pass needs: the episode's activations, its
/// final traces, and the little that the backward cannot recompute.
#[derive(Clone, Debug)]
pub struct Episode<F> {
    spec: EpisodeSpec,
    /// Activations of every step, `ys: [T, B, N]`.
    pub ys: Vec<F>,
    /// The Hebbian trace after the last step, `hebb: [B, N, N]`.
    pub hebb: Vec<F>,
    /// The eligibility trace after the last step, `elig: [B, N, N]` (retroactive modulation;
    /// empty otherwise).
    pub elig: Vec<F>,
    /// The modulator `M(t)` of every step, `modulator: [T, B]` (empty without modulation).
    pub modulator: Vec<F>,
    y0: Vec<F>,
    /// `Hebb_0` when non-zero and the trace is reversed (to verify the reversal).
    h0: Option<Vec<F>>,
    x_clamped: Option<Vec<F>>,
    /// The fixed rate the forward ran with (0 when modulated).
    eta: F,
    /// 0: reverse the trace; otherwise steps between stored checkpoints.
    segment: usize,
    /// `(Hebb_{kK}, E_{kK})` for `k = 0, 1, ...` (`E` empty without eligibility trace).
    checkpoints: Vec<TracePair<F>>,
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

    /// Steps between the stored checkpoints of the traces (0 when the trace is reversed).
    pub fn segment(&self) -> usize {
        self.segment
    }

    /// Bytes held for the backward beyond the outputs `ys`, `hebb`, `elig` and `modulator`
    /// (checkpoints, stored initial state, clamped inputs).
    pub fn saved_bytes(&self) -> usize {
        let n = self
            .checkpoints
            .iter()
            .map(|(h, e)| h.len() + e.len())
            .sum::<usize>()
            + self.y0.len()
            + self.h0.as_ref().map_or(0, Vec::len)
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

/// Gradients of a loss with respect to everything an episode depends on. The rule's parameters
/// that the episode does not have stay 0 (or empty).
#[derive(Clone, Debug)]
pub struct Grads<F> {
    /// `dL/dw: [N, N]`.
    pub w: Vec<F>,
    /// `dL/dalpha`, shaped like `alpha`.
    pub alpha: Vec<F>,
    /// Gradients of the trace rule's own parameters (`eta`, or the modulator's).
    pub rule: RuleGrads<F>,
    /// `dL/dx: [T, B, N]`.
    pub x: Vec<F>,
    /// `dL/dy0: [B, N]`.
    pub y0: Vec<F>,
    /// `dL/dHebb_0: [B, N, N]`.
    pub hebb0: Vec<F>,
    /// `dL/dE_0: [B, N, N]` (retroactive; empty otherwise).
    pub elig0: Vec<F>,
    /// True when the reversal was rejected and the traces were recomputed from checkpoints.
    pub reversal_rejected: bool,
}

impl<F: Real> Grads<F> {
    fn new(w: Vec<F>, alpha: Vec<F>, rule: RuleGrads<F>) -> Self {
        Grads {
            w,
            alpha,
            rule,
            x: Vec::new(),
            y0: Vec::new(),
            hebb0: Vec::new(),
            elig0: Vec::new(),
            reversal_rejected: false,
        }
    }
}

/// Runs an episode of a fixed-rate rule (decaying Hebb or Oja) forward. Shapes: `x: [T, B, N]`,
/// `y0: [B, N]`, `h0: [B, N, N]` (`None`: zeros). Keeps what the backward needs in the returned
/// [`Episode`].
pub fn forward<F: Real>(
    spec: &EpisodeSpec,
    p: &Params<'_, F>,
    x: &[F],
    y0: &[F],
    h0: Option<&[F]>,
) -> Result<Episode<F>, SpecError> {
    let rule = p.rule(spec)?;
    run_forward(spec, p.w, p.alpha, rule, p.eta, x, y0, h0, None)
}

/// Runs a neuromodulated episode forward. Shapes: `x: [T, B, N]`, `y0: [B, N]`,
/// `h0, e0: [B, N, N]` (`None`: zeros; `e0` is ignored by simple modulation).
pub fn forward_modulated<F: Real>(
    spec: &EpisodeSpec,
    p: &ModulatedParams<'_, F>,
    x: &[F],
    y0: &[F],
    h0: Option<&[F]>,
    e0: Option<&[F]>,
) -> Result<Episode<F>, SpecError> {
    let rule = p.rule(spec)?;
    run_forward(spec, p.w, p.alpha, rule, F::zero(), x, y0, h0, e0)
}

/// Backward pass of a fixed-rate episode. `gy: [T, B, N]` is `dL/dy_t` for every step (zeros
/// where the loss does not look), `gh: [B, N, N]` is `dL/dHebb_T` (`None`: zero). `p` must be
/// the parameters the forward ran with.
pub fn backward<F: Real>(
    p: &Params<'_, F>,
    ep: Episode<F>,
    gy: &[F],
    gh: Option<&[F]>,
) -> Result<Grads<F>, SpecError> {
    let rule = p.rule(&ep.spec)?;
    if ep.eta != p.eta {
        return Err(SpecError("backward: eta differs from the forward's".into()));
    }
    run_backward(p.w, p.alpha, rule, ep, gy, gh, None)
}

/// Backward pass of a modulated episode. `gy: [T, B, N]` is `dL/dy_t` for every step, `gh` is
/// `dL/dHebb_T` and `ge` is `dL/dE_T` (`[B, N, N]`, `None`: zero; `ge` is ignored by simple
/// modulation). `p` must be the parameters the forward ran with.
pub fn backward_modulated<F: Real>(
    p: &ModulatedParams<'_, F>,
    ep: Episode<F>,
    gy: &[F],
    gh: Option<&[F]>,
    ge: Option<&[F]>,
) -> Result<Grads<F>, SpecError> {
    let rule = p.rule(&ep.spec)?;
    run_backward(p.w, p.alpha, rule, ep, gy, gh, ge)
}

/// Checks the sizes of an initial state: `y0: [B, N]`, `h0, e0: [B, N, N]` (`e0` only with an
/// eligibility trace).
fn check_state<F>(
    spec: &EpisodeSpec,
    y0: &[F],
    h0: Option<&[F]>,
    e0: Option<&[F]>,
) -> Result<(), SpecError> {
    let bn = spec.batch * spec.neurons;
    spec.check_len("y0", y0.len(), bn)?;
    if let Some(h) = h0 {
        spec.check_len("hebb0", h.len(), bn * spec.neurons)?;
    }
    match e0 {
        Some(e) if spec.modulation.has_eligibility() => {
            spec.check_len("elig0", e.len(), bn * spec.neurons)
        }
        _ => Ok(()),
    }
}

/// Checks the inputs' sizes, then runs the engine of the spec's rule.
#[allow(clippy::too_many_arguments)]
fn run_forward<F: Real>(
    spec: &EpisodeSpec,
    w: &[F],
    alpha: &[F],
    rule: AnyRule<'_, F>,
    eta: F,
    x: &[F],
    y0: &[F],
    h0: Option<&[F]>,
    e0: Option<&[F]>,
) -> Result<Episode<F>, SpecError> {
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    spec.check_len("x", x.len(), t_len * b * n)?;
    check_state(spec, y0, h0, e0)?;
    let init = Init { x, y0, h0, e0 };
    let mut ep = in_pool(|| {
        with_rule!(rule, r => if split_batch(b, n) {
            forward_split(spec, w, alpha, &r, &init)
        } else {
            forward_steps(spec, w, alpha, &r, &init, &row_blocks(n, b))
        })
    });
    ep.eta = eta;
    ep.parts.iter_mut().for_each(|p| p.eta = eta);
    Ok(ep)
}

/// Checks the gradients' sizes, then runs the backward of the spec's rule.
fn run_backward<F: Real>(
    w: &[F],
    alpha: &[F],
    rule: AnyRule<'_, F>,
    ep: Episode<F>,
    gy: &[F],
    gh: Option<&[F]>,
    ge: Option<&[F]>,
) -> Result<Grads<F>, SpecError> {
    let spec = ep.spec;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    spec.check_len("grad of ys", gy.len(), t_len * b * n)?;
    if let Some(g) = gh {
        spec.check_len("grad of hebb", g.len(), b * n * n)?;
    }
    let ge = ge.filter(|_| spec.modulation.has_eligibility());
    if let Some(g) = ge {
        spec.check_len("grad of elig", g.len(), b * n * n)?;
    }
    let grads = Cotangents { gy, gh, ge };
    Ok(in_pool(|| {
        with_rule!(rule, r => if ep.parts.is_empty() {
            backward_episode(w, alpha, &r, ep, &grads, &row_blocks(n, b))
        } else {
            backward_split(w, alpha, &r, ep, &grads)
        })
    }))
}

/// The inputs and initial state of a forward (sizes checked).
struct Init<'a, F> {
    x: &'a [F],
    y0: &'a [F],
    h0: Option<&'a [F]>,
    e0: Option<&'a [F]>,
}

/// The gradients a backward starts from (sizes checked).
struct Cotangents<'a, F> {
    gy: &'a [F],
    gh: Option<&'a [F]>,
    ge: Option<&'a [F]>,
}

/// `y_t` from the pre-activation `acc` (without input) and the input `x_t`, all `[B, N]`.
fn activate<F: Real>(input: InputMode, acc: &[F], x: &[F], y: &mut [F]) {
    for ((y, &a), &xi) in y.iter_mut().zip(acc).zip(x) {
        *y = match input {
            InputMode::Clamped if xi != F::zero() => xi,
            InputMode::Clamped => a.tanh(),
            InputMode::Additive => (a + xi).tanh(),
        };
    }
}

/// [`forward_steps`] for each episode alone (in parallel, all rows in one block), assembled
/// into one batch.
fn forward_split<F: Real, R: Rule<F>>(
    spec: &EpisodeSpec,
    w: &[F],
    alpha: &[F],
    rule: &R,
    init: &Init<'_, F>,
) -> Episode<F> {
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let nn = n * n;
    let one = EpisodeSpec { batch: 1, ..*spec };
    let all_rows = 0..n;
    let whole = std::slice::from_ref(&all_rows);
    let mut parts: Vec<Episode<F>> = (0..b)
        .into_par_iter()
        .map(|bi| {
            let xb = gather(init.x, b, n, bi);
            let part = Init {
                x: &xb,
                y0: &init.y0[bi * n..(bi + 1) * n],
                h0: init.h0.map(|h| &h[bi * nn..(bi + 1) * nn]),
                e0: init.e0.map(|e| &e[bi * nn..(bi + 1) * nn]),
            };
            forward_steps(&one, w, alpha, rule, &part, whole)
        })
        .collect();
    let mut ys = vec![F::zero(); t_len * b * n];
    let modulated = !parts[0].modulator.is_empty();
    let mut modulator = vec![F::zero(); if modulated { t_len * b } else { 0 }];
    let mut hebb = Vec::with_capacity(b * nn);
    let mut elig = Vec::with_capacity(if R::ELIGIBILITY { b * nn } else { 0 });
    for (bi, part) in parts.iter_mut().enumerate() {
        scatter(&part.ys, &mut ys, b, n, bi);
        if modulated {
            scatter(&part.modulator, &mut modulator, b, 1, bi);
        }
        if part.reverses_trace() {
            // The part's backward starts its reversal from its own final trace.
            hebb.extend_from_slice(&part.hebb);
        } else {
            hebb.append(&mut part.hebb);
        }
        elig.append(&mut part.elig);
    }
    Episode {
        spec: *spec,
        ys,
        hebb,
        elig,
        modulator,
        y0: init.y0.to_vec(),
        h0: None,
        x_clamped: None,
        eta: F::zero(),
        segment: parts[0].segment,
        checkpoints: Vec::new(),
        parts,
    }
}

/// The forward of all episodes together; `blocks` split the rows across threads.
fn forward_steps<F: Real, R: Rule<F>>(
    spec: &EpisodeSpec,
    w: &[F],
    alpha: &[F],
    rule: &R,
    init: &Init<'_, F>,
    blocks: &[Range<usize>],
) -> Episode<F> {
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let bn = b * n;
    let segment = plan(spec.backward, t_len, rule.reversible(spec));
    let mut hebb = init
        .h0
        .map_or_else(|| vec![F::zero(); bn * n], <[F]>::to_vec);
    let mut elig = match (R::ELIGIBILITY, init.e0) {
        (false, _) => Vec::new(),
        (true, Some(e)) => e.to_vec(),
        (true, None) => vec![F::zero(); bn * n],
    };
    let h0_saved = init
        .h0
        .filter(|h| segment == 0 && h.iter().any(|v| *v != F::zero()))
        .map(<[F]>::to_vec);
    let mut checkpoints = Vec::new();
    if segment > 0 {
        checkpoints.push((hebb.clone(), elig.clone()));
    }
    let alpha = AlphaRows::new(spec.alpha, alpha, n);
    let clip = spec.clip.map(F::of);
    let mut ys = vec![F::zero(); t_len * bn];
    let mut modulator = Vec::new();
    let mut acc = vec![F::zero(); bn];
    let mut pending: Option<Coefficients<F>> = None;
    for t in 0..t_len {
        let (done, rest) = ys.split_at_mut(t * bn);
        let ypre: &[F] = if t == 0 {
            init.y0
        } else {
            &done[(t - 1) * bn..]
        };
        forward_pass::<F, R>(
            &mut hebb,
            &mut elig,
            blocks,
            w,
            &alpha,
            ypre,
            pending.as_ref(),
            clip,
            &mut acc,
        );
        if segment > 0 && t > 0 && t % segment == 0 {
            checkpoints.push((hebb.clone(), elig.clone()));
        }
        let yt = &mut rest[..bn];
        activate(spec.input, &acc, &init.x[t * bn..(t + 1) * bn], yt);
        let c = rule.coefficients(&Activity::recurrent(ypre, yt), n);
        modulator.extend_from_slice(&c.modulator);
        pending = Some(c);
    }
    // The update of the last step, pending so far: Hebb_T = R(Hebb_{T-1}, y_{T-2}, y_{T-1}).
    if let Some(c) = &pending {
        update_pass::<F, R>(&mut hebb, &mut elig, blocks, c, clip, n);
    }
    Episode {
        spec: *spec,
        ys,
        hebb,
        elig,
        modulator,
        y0: init.y0.to_vec(),
        h0: h0_saved,
        x_clamped: (spec.input == InputMode::Clamped).then(|| init.x.to_vec()),
        eta: F::zero(),
        segment,
        checkpoints,
        parts: Vec::new(),
    }
}

/// Runs episodes one step at a time, in place, for agents whose input at step `t` depends on
/// their output at `t - 1` (reinforcement learning): the same maths as [`forward`] with one
/// pass over the traces per step, no per-step allocation of the traces and nothing kept for a
/// backward. `spec.steps` is ignored. The batch is shared out as the forward shares it (one
/// episode per thread, or rows across threads), so both give the same bits.
#[derive(Debug)]
pub struct Stepper<F> {
    spec: EpisodeSpec,
    y: Vec<F>,
    hebb: Vec<F>,
    elig: Vec<F>,
    pending: Option<Coefficients<F>>,
    /// `M(t)` of the last step, `[B]` (empty without modulation).
    modulator: Vec<F>,
    acc: Vec<F>,
    blocks: Vec<Range<usize>>,
    /// When the batch is split: one stepper per episode (batch 1, all rows in one block).
    parts: Vec<Stepper<F>>,
}

impl<F: Real> Stepper<F> {
    /// Starts from `y0: [B, N]`, `h0, e0: [B, N, N]` (`None`: zeros; `e0` is ignored without
    /// retroactive modulation).
    pub fn new(
        spec: &EpisodeSpec,
        y0: &[F],
        h0: Option<&[F]>,
        e0: Option<&[F]>,
    ) -> Result<Self, SpecError> {
        spec.validate()?;
        let (n, b) = (spec.neurons, spec.batch);
        let nn = n * n;
        check_state(spec, y0, h0, e0)?;
        if split_batch(b, n) {
            let one = EpisodeSpec { batch: 1, ..*spec };
            let parts = (0..b)
                .map(|bi| {
                    let part = Init {
                        x: &[],
                        y0: &y0[bi * n..(bi + 1) * n],
                        h0: h0.map(|h| &h[bi * nn..(bi + 1) * nn]),
                        e0: e0.map(|e| &e[bi * nn..(bi + 1) * nn]),
                    };
                    Self::start(&one, &part, core::iter::once(0..n).collect())
                })
                .collect();
            let init = Init {
                x: &[],
                y0,
                h0: None,
                e0: None,
            };
            return Ok(Stepper {
                parts,
                hebb: Vec::new(),
                elig: Vec::new(),
                ..Self::start(spec, &init, Vec::new())
            });
        }
        let init = Init { x: &[], y0, h0, e0 };
        Ok(Self::start(spec, &init, in_pool(|| row_blocks(n, b))))
    }

    fn start(spec: &EpisodeSpec, init: &Init<'_, F>, blocks: Vec<Range<usize>>) -> Self {
        let len = init.y0.len() * spec.neurons;
        Stepper {
            spec: *spec,
            y: init.y0.to_vec(),
            hebb: init.h0.map_or_else(|| vec![F::zero(); len], <[F]>::to_vec),
            elig: match (spec.modulation.has_eligibility(), init.e0) {
                (false, _) => Vec::new(),
                (true, Some(e)) => e.to_vec(),
                (true, None) => vec![F::zero(); len],
            },
            pending: None,
            modulator: Vec::new(),
            acc: vec![F::zero(); init.y0.len()],
            blocks,
            parts: Vec::new(),
        }
    }

    /// One step of a fixed-rate rule with input `x: [B, N]`; returns `y_t: [B, N]`.
    pub fn step(&mut self, p: &Params<'_, F>, x: &[F]) -> Result<&[F], SpecError> {
        let rule = p.rule(&self.spec)?;
        self.advance(p.w, p.alpha, rule, x)?;
        Ok(&self.y)
    }

    /// One modulated step with input `x: [B, N]`; returns `(y_t: [B, N], M(t): [B])`.
    pub fn step_modulated(
        &mut self,
        p: &ModulatedParams<'_, F>,
        x: &[F],
    ) -> Result<(&[F], &[F]), SpecError> {
        let rule = p.rule(&self.spec)?;
        self.advance(p.w, p.alpha, rule, x)?;
        Ok((&self.y, &self.modulator))
    }

    fn advance(
        &mut self,
        w: &[F],
        alpha: &[F],
        rule: AnyRule<'_, F>,
        x: &[F],
    ) -> Result<(), SpecError> {
        let (n, b) = (self.spec.neurons, self.spec.batch);
        self.spec.check_len("x", x.len(), b * n)?;
        in_pool(|| with_rule!(rule, r => self.advance_rule(w, alpha, &r, x)));
        Ok(())
    }

    fn advance_rule<R: Rule<F>>(&mut self, w: &[F], alpha: &[F], rule: &R, x: &[F]) {
        let spec = self.spec;
        let n = spec.neurons;
        if !self.parts.is_empty() {
            self.parts
                .par_iter_mut()
                .zip(x.par_chunks(n))
                .for_each(|(part, xb)| part.advance_rule(w, alpha, rule, xb));
            self.y.clear();
            self.modulator.clear();
            for part in &self.parts {
                self.y.extend_from_slice(&part.y);
                self.modulator.extend_from_slice(&part.modulator);
            }
            return;
        }
        let alpha = AlphaRows::new(spec.alpha, alpha, n);
        let clip = spec.clip.map(F::of);
        forward_pass::<F, R>(
            &mut self.hebb,
            &mut self.elig,
            &self.blocks,
            w,
            &alpha,
            &self.y,
            self.pending.as_ref(),
            clip,
            &mut self.acc,
        );
        let mut ynew = vec![F::zero(); self.y.len()];
        activate(spec.input, &self.acc, x, &mut ynew);
        let c = rule.coefficients(&Activity::recurrent(&self.y, &ynew), n);
        self.modulator.clone_from(&c.modulator);
        self.pending = Some(c);
        self.y = ynew;
    }

    /// The activity `y_t: [B, N]` of the last step (`y0` before the first).
    pub fn y(&self) -> &[F] {
        &self.y
    }

    /// Applies the pending update of the last step and returns `(y_T, Hebb_T, E_T)`, as the
    /// forward would after the same steps (`E_T` empty without retroactive modulation).
    pub fn finish(mut self) -> (Vec<F>, Vec<F>, Vec<F>) {
        for part in core::mem::take(&mut self.parts) {
            let (_, hebb, elig) = part.finish();
            self.hebb.extend_from_slice(&hebb);
            self.elig.extend_from_slice(&elig);
        }
        if let Some(c) = self.pending.take() {
            let n = self.spec.neurons;
            let clip = self.spec.clip.map(F::of);
            let (hebb, elig, blocks) = (&mut self.hebb, &mut self.elig, &self.blocks);
            in_pool(|| {
                if elig.is_empty() {
                    update_rows::<F, false>(hebb, elig, blocks, &c, clip, n)
                } else {
                    update_rows::<F, true>(hebb, elig, blocks, &c, clip, n)
                }
            });
        }
        (self.y, self.hebb, self.elig)
    }
}

/// Rows of `alpha`: the row of a per-connection matrix, or one broadcast row of `N` values
/// (empty `alpha`, as in a network without plasticity, gives empty rows).
#[derive(Debug)]
pub(crate) struct AlphaRows<'a, F> {
    data: &'a [F],
    broadcast: Vec<F>,
    pub(crate) per_connection: bool,
    n: usize,
}

impl<'a, F: Real> AlphaRows<'a, F> {
    pub(crate) fn new(shape: AlphaShape, alpha: &'a [F], n: usize) -> Self {
        let broadcast = match (shape, alpha.is_empty()) {
            (_, true) | (AlphaShape::PerConnection, _) => Vec::new(),
            (AlphaShape::PerNeuron, _) => alpha.to_vec(),
            (AlphaShape::Scalar, _) => vec![alpha[0]; n],
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

    /// Length of `dL/dalpha` while it accumulates: `[N, N]` per connection, otherwise one value
    /// per postsynaptic neuron (summed to one value for a scalar at the end).
    pub(crate) fn grad_len(&self) -> usize {
        if self.per_connection {
            self.n * self.n
        } else {
            self.n
        }
    }
}

/// One forward step over all rows: applies the pending trace update (if any) and writes
/// `acc[b, j] = sum_i (w_ij + alpha_ij Hebb_ij) y_{b,i}` (without input).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_pass<F: Real, R: Rule<F>>(
    hebb: &mut [F],
    elig: &mut [F],
    blocks: &[Range<usize>],
    w: &[F],
    alpha: &AlphaRows<'_, F>,
    ypre: &[F],
    update: Option<&Coefficients<F>>,
    clip: Option<F>,
    acc: &mut [F],
) {
    let n = alpha.n;
    let batch = acc.len() / n;
    let hs = split_rows(hebb, blocks, n);
    let es = split_rows(elig, blocks, n);
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
                    let yi = ypre[bi * n + i];
                    let accb = &mut part[bi * n..(bi + 1) * n];
                    match update {
                        Some(c) if R::ELIGIBILITY => {
                            let erow = &mut es[bi][r * n..(r + 1) * n];
                            update_row_eligibility(hrow, erow, c, bi, i, n, clip);
                        }
                        Some(c) => {
                            // The update fused with the product: one pass over the row.
                            let ui = c.u[bi * n + i];
                            let cols = bi * n..(bi + 1) * n;
                            let (aa, vv) = (&c.a[cols.clone()], &c.v[cols]);
                            let row = (wrow, arow, aa, vv);
                            match clip {
                                Some(cl) => {
                                    update_product_row::<F, true>(accb, hrow, row, ui, yi, cl)
                                }
                                None => update_product_row::<F, false>(
                                    accb,
                                    hrow,
                                    row,
                                    ui,
                                    yi,
                                    F::zero(),
                                ),
                            }
                            continue;
                        }
                        None => {}
                    }
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

/// `clip(x, -c, c)` when `CLIP` (a constant, so a loop calling it is specialised per setting
/// instead of testing the setting at every element).
#[inline(always)]
fn clip_if<F: Real, const CLIP: bool>(x: F, c: F) -> F {
    if CLIP {
        x.max(-c).min(c)
    } else {
        x
    }
}

/// The update of a rule without eligibility trace fused with the product, over one row:
/// `h_j <- clip(A_j h_j + u_i v_j)`, `acc_j += (w_ij + alpha_ij h_j) y_i`; `row` is
/// `(w_i., alpha_i., A, v)`.
#[inline(always)]
fn update_product_row<F: Real, const CLIP: bool>(
    acc: &mut [F],
    h: &mut [F],
    (w, alpha, a, v): (&[F], &[F], &[F], &[F]),
    ui: F,
    yi: F,
    c: F,
) {
    for (((((acc, h), &wj), &aj), &aa), &vj) in acc
        .iter_mut()
        .zip(h.iter_mut())
        .zip(w)
        .zip(alpha)
        .zip(a)
        .zip(v)
    {
        let hn = clip_if::<F, CLIP>(aa * *h + ui * vj, c);
        *h = hn;
        *acc += (wj + aj * hn) * yi;
    }
}

/// The update of a rule without eligibility trace over one row: `h_j <- clip(A_j h_j + u_i v_j)`.
#[inline(always)]
fn update_row<F: Real, const CLIP: bool>(h: &mut [F], a: &[F], v: &[F], ui: F, c: F) {
    for ((h, &aa), &vj) in h.iter_mut().zip(a).zip(v) {
        *h = clip_if::<F, CLIP>(aa * *h + ui * vj, c);
    }
}

/// The retroactive update of row `i` of episode `bi`:
/// `Hebb_ij <- clip(Hebb_ij + eta_j E_ij)`, `E_ij <- d E_ij + u_i v_j`.
#[inline(always)]
fn update_row_eligibility<F: Real>(
    h: &mut [F],
    e: &mut [F],
    c: &Coefficients<F>,
    bi: usize,
    i: usize,
    n: usize,
    clip: Option<F>,
) {
    let cols = bi * n..(bi + 1) * n;
    let ui = c.u[bi * n + i];
    let (rate, v) = (&c.rate[cols.clone()], &c.v[cols]);
    match clip {
        Some(cl) => eligibility_row::<F, true>(h, e, rate, v, c.decay, ui, cl),
        None => eligibility_row::<F, false>(h, e, rate, v, c.decay, ui, F::zero()),
    }
}

/// [`update_row_eligibility`] for one clip setting.
#[inline(always)]
fn eligibility_row<F: Real, const CLIP: bool>(
    h: &mut [F],
    e: &mut [F],
    rate: &[F],
    v: &[F],
    decay: F,
    ui: F,
    c: F,
) {
    for (((h, e), &et), &vj) in h.iter_mut().zip(e.iter_mut()).zip(rate).zip(v) {
        *h = clip_if::<F, CLIP>(*h + et * *e, c);
        *e = decay * *e + ui * vj;
    }
}

/// Applies one trace update to every row (no matrix-vector product).
pub(crate) fn update_pass<F: Real, R: Rule<F>>(
    hebb: &mut [F],
    elig: &mut [F],
    blocks: &[Range<usize>],
    c: &Coefficients<F>,
    clip: Option<F>,
    n: usize,
) {
    if R::ELIGIBILITY {
        update_rows::<F, true>(hebb, elig, blocks, c, clip, n)
    } else {
        update_rows::<F, false>(hebb, elig, blocks, c, clip, n)
    }
}

/// [`update_pass`] by whether there is an eligibility trace.
pub(crate) fn update_rows<F: Real, const ELIG: bool>(
    hebb: &mut [F],
    elig: &mut [F],
    blocks: &[Range<usize>],
    c: &Coefficients<F>,
    clip: Option<F>,
    n: usize,
) {
    let hs = split_rows(hebb, blocks, n);
    let es = split_rows(elig, blocks, n);
    hs.into_par_iter()
        .zip(es)
        .zip(blocks.par_iter())
        .for_each(|((mut hs, mut es), rows)| {
            for (r, i) in rows.clone().enumerate() {
                for (bi, hb) in hs.iter_mut().enumerate() {
                    let hrow = &mut hb[r * n..(r + 1) * n];
                    if ELIG {
                        let erow = &mut es[bi][r * n..(r + 1) * n];
                        update_row_eligibility(hrow, erow, c, bi, i, n, clip);
                    } else {
                        let ui = c.u[bi * n + i];
                        let cols = bi * n..(bi + 1) * n;
                        let (aa, vv) = (&c.a[cols.clone()], &c.v[cols]);
                        match clip {
                            Some(cl) => update_row::<F, true>(hrow, aa, vv, ui, cl),
                            None => update_row::<F, false>(hrow, aa, vv, ui, F::zero()),
                        }
                    }
                }
            }
        });
}

/// Where the backward finds the traces of each step.
enum Traces<'a, F> {
    /// A buffer holding `Hebb_T`, reversed in place step by step.
    Reverse(&'a mut Vec<F>),
    /// Checkpoints every `K` steps; segments are recomputed forward.
    Segments(&'a [TracePair<F>], usize),
}

/// The backward of an episode that ran as one batch: reversal (verified, with a checkpointed
/// fallback) or checkpoints, as the forward planned.
fn backward_episode<F: Real, R: Rule<F>>(
    w: &[F],
    alpha: &[F],
    rule: &R,
    mut ep: Episode<F>,
    cot: &Cotangents<'_, F>,
    blocks: &[Range<usize>],
) -> Grads<F> {
    if ep.segment > 0 {
        let traces = Traces::Segments(&ep.checkpoints, ep.segment);
        return backward_steps(w, alpha, rule, &ep, cot, traces, blocks);
    }
    let scale = max_abs(&ep.hebb).max(ep.h0.as_deref().map_or(F::zero(), max_abs));
    let mut work = core::mem::take(&mut ep.hebb);
    let grads = backward_steps(w, alpha, rule, &ep, cot, Traces::Reverse(&mut work), blocks);
    // `work` now holds the reconstructed Hebb_0: verify it.
    if reversal_holds(&work, ep.h0.as_deref(), scale) {
        return grads;
    }
    let segment = checkpoint::default_segment(ep.spec.steps);
    let checkpoints = recompute_checkpoints(rule, &ep, segment, blocks);
    let traces = Traces::Segments(&checkpoints, segment);
    let mut grads = backward_steps(w, alpha, rule, &ep, cot, traces, blocks);
    grads.reversal_rejected = true;
    grads
}

/// [`backward_episode`] for each episode of a split forward (in parallel, all rows in one
/// block); the parameters' gradients are summed in episode order.
fn backward_split<F: Real, R: Rule<F>>(
    w: &[F],
    alpha: &[F],
    rule: &R,
    mut ep: Episode<F>,
    cot: &Cotangents<'_, F>,
) -> Grads<F> {
    let spec = ep.spec;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let nn = n * n;
    let all_rows = 0..n;
    let whole = std::slice::from_ref(&all_rows);
    let parts: Vec<Grads<F>> = core::mem::take(&mut ep.parts)
        .into_par_iter()
        .enumerate()
        .map(|(bi, part)| {
            let gy = gather(cot.gy, b, n, bi);
            let one = Cotangents {
                gy: &gy,
                gh: cot.gh.map(|g| &g[bi * nn..(bi + 1) * nn]),
                ge: cot.ge.map(|g| &g[bi * nn..(bi + 1) * nn]),
            };
            backward_episode(w, alpha, rule, part, &one, whole)
        })
        .collect();
    let mut it = parts.into_iter();
    let first = it.next().expect("a split batch has episodes");
    let (mut gw, mut galpha, mut rule_grads) =
        (first.w.clone(), first.alpha.clone(), first.rule.clone());
    let mut x = vec![F::zero(); t_len * b * n];
    let mut y0 = Vec::with_capacity(b * n);
    let mut hebb0 = Vec::with_capacity(b * nn);
    let mut elig0 = Vec::with_capacity(if R::ELIGIBILITY { b * nn } else { 0 });
    let mut rejected = false;
    for (bi, g) in core::iter::once(first).chain(it).enumerate() {
        if bi > 0 {
            crate::parallel::add_into(&mut gw, &g.w);
            crate::parallel::add_into(&mut galpha, &g.alpha);
            rule_grads.add(&g.rule);
        }
        scatter(&g.x, &mut x, b, n, bi);
        y0.extend_from_slice(&g.y0);
        hebb0.extend_from_slice(&g.hebb0);
        elig0.extend_from_slice(&g.elig0);
        rejected |= g.reversal_rejected;
    }
    Grads::new(gw, galpha, rule_grads).with_state(x, y0, hebb0, elig0, rejected)
}

impl<F> Grads<F> {
    fn with_state(
        mut self,
        x: Vec<F>,
        y0: Vec<F>,
        hebb0: Vec<F>,
        elig0: Vec<F>,
        reversal_rejected: bool,
    ) -> Self {
        self.x = x;
        self.y0 = y0;
        self.hebb0 = hebb0;
        self.elig0 = elig0;
        self.reversal_rejected = reversal_rejected;
        self
    }
}

/// Recomputes the checkpoints `Hebb_{sK}` from `Hebb_0` and the stored activations (after a
/// rejected reversal; rules without eligibility trace only).
fn recompute_checkpoints<F: Real, R: Rule<F>>(
    rule: &R,
    ep: &Episode<F>,
    segment: usize,
    blocks: &[Range<usize>],
) -> Vec<TracePair<F>> {
    let spec = &ep.spec;
    let (n, b) = (spec.neurons, spec.batch);
    let mut h = ep.h0.clone().unwrap_or_else(|| vec![F::zero(); b * n * n]);
    let mut e = Vec::new();
    let clip = spec.clip.map(F::of);
    let mut out = vec![(h.clone(), Vec::new())];
    for t in 1..spec.steps {
        let c = rule.coefficients(&Activity::recurrent(ep.y_pre(t - 1), ep.y_at(t - 1)), n);
        update_pass::<F, R>(&mut h, &mut e, blocks, &c, clip, n);
        if t % segment == 0 {
            out.push((h.clone(), Vec::new()));
        }
    }
    out
}

/// The backward through every step, from `t = T - 1` down to 0.
fn backward_steps<F: Real, R: Rule<F>>(
    w: &[F],
    alpha: &[F],
    rule: &R,
    ep: &Episode<F>,
    cot: &Cotangents<'_, F>,
    mut traces: Traces<'_, F>,
    blocks: &[Range<usize>],
) -> Grads<F> {
    let spec = &ep.spec;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let bn = b * n;
    let clip = spec.clip.map(F::of);
    let alpha = AlphaRows::new(spec.alpha, alpha, n);
    let mut g = cot
        .gh
        .map_or_else(|| vec![F::zero(); bn * n], <[F]>::to_vec);
    let mut g_e = match (R::ELIGIBILITY, cot.ge) {
        (false, _) => Vec::new(),
        (true, Some(e)) => e.to_vec(),
        (true, None) => vec![F::zero(); bn * n],
    };
    let mut galpha = vec![F::zero(); alpha.grad_len()];
    let mut rule_grads = rule.zero_grads(n);
    let mut gx = vec![F::zero(); t_len * bn];
    let mut phat_all = vec![F::zero(); t_len * bn];
    let mut carry = vec![F::zero(); bn];
    let mut yhat = vec![F::zero(); bn];
    let mut segments = Segments::new();
    let mut pending_sums: Option<ColumnSums<F>> = None;
    for t in (0..t_len).rev() {
        let (ypre, ypost) = (ep.y_pre(t), ep.y_at(t));
        let act = Activity::recurrent(ypre, ypost);
        let c = rule.coefficients(&act, n);
        // (Hebb_t, E_t).
        let (h, e, reverse): (&mut [F], &[F], bool) = match &mut traces {
            Traces::Reverse(buf) => (buf.as_mut_slice(), &[], true),
            Traces::Segments(checkpoints, seg) => {
                let (h, e) = segments.at(t, *seg, checkpoints, |s, h, e| {
                    let cs = rule.coefficients(&Activity::recurrent(ep.y_pre(s), ep.y_at(s)), n);
                    update_pass::<F, R>(h, e, blocks, &cs, clip, n);
                });
                (h.as_mut_slice(), e.as_slice(), false)
            }
        };
        // Pass A: column sums of the trace gradients (already done by the previous step's fused
        // pass when reversing).
        let sums = match pending_sums.take() {
            Some(sums) => sums,
            None => pass_a::<F, R>(h, e, &g, &g_e, blocks, &c, ypre, clip, reverse, n),
        };
        // dL/dy_t and dL/dpre_t.
        let ext = &cot.gy[t * bn..(t + 1) * bn];
        for ((yh, &a), &b) in yhat.iter_mut().zip(ext).zip(&carry) {
            *yh = a + b;
        }
        rule.backprop(
            &c,
            &sums,
            &act,
            n,
            Shares::Together(&mut yhat),
            &mut rule_grads,
        );
        let phat = &mut phat_all[t * bn..(t + 1) * bn];
        let gxt = &mut gx[t * bn..(t + 1) * bn];
        for k in 0..bn {
            let clamped = ep
                .x_clamped
                .as_ref()
                .is_some_and(|x| x[t * bn + k] != F::zero());
            if clamped {
                gxt[k] = yhat[k];
                phat[k] = F::zero();
            } else {
                let ph = yhat[k] * (F::one() - ypost[k] * ypost[k]);
                phat[k] = ph;
                gxt[k] = ph;
            }
        }
        // Pass B: dL/dy_{t-1}, dL/dalpha, G <- dL/dHebb_t, GE <- dL/dE_t; when reversing, fused
        // with pass A of step t-1.
        let prev_c = (reverse && t > 0)
            .then(|| rule.coefficients(&Activity::recurrent(ep.y_pre(t - 1), ypre), n));
        let prev = prev_c.as_ref().map(|c| PrevStep {
            c,
            ypre: ep.y_pre(t - 1),
        });
        let weights = Weights { w, alpha: &alpha };
        let grads = TraceGrads {
            g: &mut g,
            g_e: &mut g_e,
            galpha: &mut galpha,
        };
        let (dy_pre, sums) = pass_b::<F, R>(
            h,
            e,
            grads,
            blocks,
            &weights,
            &c,
            (ypre, ypost),
            phat,
            clip,
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
    Grads::new(gw, galpha, rule_grads).with_state(gx, carry, g, g_e, false)
}

/// Pass A of the backward of step `t` (see the module docs). `h, e` hold `Hebb_t, E_t` (`h`
/// holds `Hebb_{t+1}` and is reversed to `Hebb_t` first when `reverse`); `g, ge` hold
/// `dL/dHebb_{t+1}, dL/dE_{t+1}`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pass_a<F: Real, R: Rule<F>>(
    h: &mut [F],
    e: &[F],
    g: &[F],
    ge: &[F],
    blocks: &[Range<usize>],
    c: &Coefficients<F>,
    ypre: &[F],
    clip: Option<F>,
    reverse: bool,
    n: usize,
) -> ColumnSums<F> {
    let batch = ypre.len() / n;
    let hs = split_rows(h, blocks, n);
    let partials: Vec<ColumnSums<F>> = hs
        .into_par_iter()
        .zip(blocks.par_iter())
        .map(|(mut hs, rows)| {
            let mut sums = ColumnSums::zeros::<R>(batch * n);
            let clip_c = clip.unwrap_or_else(F::infinity);
            for (r, i) in rows.clone().enumerate() {
                for (bi, hb) in hs.iter_mut().enumerate() {
                    let hrow = &mut hb[r * n..(r + 1) * n];
                    let at = (bi * n + i) * n..(bi * n + i + 1) * n;
                    let grow = &g[at.clone()];
                    let yi = ypre[bi * n + i];
                    let cols = bi * n..(bi + 1) * n;
                    if R::ELIGIBILITY {
                        // Every row cut to n values: no bounds checks, so the loop vectorizes.
                        let (hrow, grow) = (&hrow[..n], &grow[..n]);
                        let (erow, gerow) = (&e[at.clone()][..n], &ge[at][..n]);
                        let rate = &c.rate[cols.clone()][..n];
                        let (s, se, see) = (
                            &mut sums.g_e[cols.clone()][..n],
                            &mut sums.ge_y[cols.clone()][..n],
                            &mut sums.ge_e[cols][..n],
                        );
                        for j in 0..n {
                            let z = hrow[j] + rate[j] * erow[j];
                            let gv = through_clip(z, clip_c, grow[j]);
                            s[j] += gv * erow[j];
                            se[j] += gerow[j] * yi;
                            see[j] += gerow[j] * erow[j];
                        }
                        continue;
                    }
                    let ui = c.u[bi * n + i];
                    let (aa, vv) = (&c.a[cols.clone()], &c.v[cols.clone()]);
                    let s1 = &mut sums.g_y[cols.clone()];
                    if reverse {
                        let s2 = &mut sums.g_h[cols];
                        for ((((h, &gv), &aj), &vj), (a1, a2)) in hrow
                            .iter_mut()
                            .zip(grow)
                            .zip(aa)
                            .zip(vv)
                            .zip(s1.iter_mut().zip(s2.iter_mut()))
                        {
                            let h0 = (*h - ui * vj) / aj;
                            *h = h0;
                            *a1 += gv * yi;
                            *a2 += gv * h0;
                        }
                    } else if R::TRACE_SUM {
                        let s2 = &mut sums.g_h[cols];
                        for ((((&h0, &gv), &aj), &vj), (a1, a2)) in hrow
                            .iter()
                            .zip(grow)
                            .zip(aa)
                            .zip(vv)
                            .zip(s1.iter_mut().zip(s2.iter_mut()))
                        {
                            let gv = through_clip(aj * h0 + ui * vj, clip_c, gv);
                            *a1 += gv * yi;
                            *a2 += gv * h0;
                        }
                    } else {
                        for ((((&h0, &gv), &aj), &vj), a1) in
                            hrow.iter().zip(grow).zip(aa).zip(vv).zip(s1.iter_mut())
                        {
                            let gv = through_clip(aj * h0 + ui * vj, clip_c, gv);
                            *a1 += gv * yi;
                        }
                    }
                }
            }
            sums
        })
        .collect();
    let mut it = partials.into_iter();
    let mut total = it.next().expect("at least one block");
    for p in it {
        total.add(&p);
    }
    total
}

/// The weights of the activity step, read by pass B.
pub(crate) struct Weights<'a, F> {
    pub(crate) w: &'a [F],
    pub(crate) alpha: &'a AlphaRows<'a, F>,
}

/// The gradients pass B updates: `g = dL/dHebb`, `g_e = dL/dE` (from step `t+1` to `t`), and
/// `galpha` (accumulated).
pub(crate) struct TraceGrads<'a, F> {
    pub(crate) g: &'a mut [F],
    pub(crate) g_e: &'a mut [F],
    pub(crate) galpha: &'a mut [F],
}

/// The step before the current one, for a pass B that also runs pass A of step `t-1`.
pub(crate) struct PrevStep<'a, F> {
    /// Coefficients of step `t-1`.
    c: &'a Coefficients<F>,
    /// `y_{t-2}` (presynaptic activity of step `t-1`), `[B, N]`.
    ypre: &'a [F],
}

/// Pass B of the backward of step `t`. `h` holds `Hebb_t` (and `e` holds `E_t`); the gradients
/// go from step `t+1` to `t`. Returns `dL/dy_{t-1}` through this step, `[B, N]`.
///
/// With `prev` (trace reversal only), the same sweep also runs pass A of step `t-1`: it reverses
/// `h` to `Hebb_{t-1}` and returns that step's column sums, saving one pass over `Hebb` and `G`
/// per step.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pass_b<F: Real, R: Rule<F>>(
    h: &mut [F],
    e: &[F],
    grads: TraceGrads<'_, F>,
    blocks: &[Range<usize>],
    weights: &Weights<'_, F>,
    c: &Coefficients<F>,
    (ypre, ypost): (&[F], &[F]),
    phat: &[F],
    clip: Option<F>,
    prev: Option<PrevStep<'_, F>>,
) -> (Vec<F>, Option<ColumnSums<F>>) {
    debug_assert!(
        prev.is_none() || clip.is_none(),
        "reversal never runs with clipping"
    );
    let alpha = weights.alpha;
    let n = alpha.n;
    let batch = ypre.len() / n;
    let per_connection = alpha.per_connection;
    let hs = split_rows(h, blocks, n);
    let gs = split_rows(grads.g, blocks, n);
    let ges = split_rows(grads.g_e, blocks, n);
    let galpha_rows = block_rows(grads.galpha, blocks, n, per_connection);
    type BlockOut<F> = (Vec<F>, Vec<F>, Option<ColumnSums<F>>);
    let results: Vec<BlockOut<F>> = gs
        .into_par_iter()
        .zip(hs)
        .zip(ges)
        .zip(galpha_rows)
        .zip(blocks.par_iter())
        .map(|((((mut gs, mut hs), mut ges), mut ga_rows), rows)| {
            let mut dy = vec![F::zero(); rows.len() * batch];
            let mut ga_local = if per_connection {
                Vec::new()
            } else {
                vec![F::zero(); n]
            };
            let mut sums = prev.as_ref().map(|_| ColumnSums::zeros::<R>(batch * n));
            let clip_c = clip.unwrap_or_else(F::infinity);
            // One row kernel per clip setting, called through a pointer: kept out of line, it
            // compiles to a tighter loop than inlined here (maze shape: backward 106 -> 86 ms).
            let row_b: RowKernel<F> = if clip.is_some() {
                pass_b_row::<F, true>
            } else {
                pass_b_row::<F, false>
            };
            let mut scratch = RowScratch {
                rule: vec![F::zero(); n],
                matvec: vec![F::zero(); n],
            };
            for (r, i) in rows.clone().enumerate() {
                let wrow = &weights.w[i * n..(i + 1) * n];
                let arow = alpha.row(i);
                for (bi, (gb, hb)) in gs.iter_mut().zip(hs.iter_mut()).enumerate() {
                    let cols = bi * n..(bi + 1) * n;
                    let row = Row {
                        w: wrow,
                        alpha: arow,
                        a: &c.a[cols.clone()],
                        v: &c.v[cols.clone()],
                        r: match c.row {
                            RowFactor::Post => &ypost[cols.clone()],
                            RowFactor::V => &c.v[cols.clone()],
                        },
                        p: &phat[cols.clone()],
                        yi: ypre[bi * n + i],
                        ui: c.u[bi * n + i],
                    };
                    let grow = &mut gb[r * n..(r + 1) * n];
                    let hrow = &mut hb[r * n..(r + 1) * n];
                    let garow: &mut [F] = match ga_rows.as_deref_mut() {
                        Some(rows_ga) => &mut rows_ga[r * n..(r + 1) * n],
                        None => &mut ga_local,
                    };
                    let (rule_part, matvec_part) = if R::ELIGIBILITY {
                        let at = (bi * n + i) * n..(bi * n + i + 1) * n;
                        let eligibility = Eligibility {
                            e: &e[at],
                            ge: &mut ges[bi][r * n..(r + 1) * n],
                            rate: &c.rate[cols],
                            decay: c.decay,
                        };
                        pass_b_row_eligibility(
                            grow,
                            hrow,
                            garow,
                            &row,
                            eligibility,
                            clip_c,
                            &mut scratch,
                        )
                    } else if let (Some(pv), Some(s)) = (&prev, sums.as_mut()) {
                        let before = PrevRow {
                            a: &pv.c.a[cols.clone()],
                            v: &pv.c.v[cols.clone()],
                            ui: pv.c.u[bi * n + i],
                            yi: pv.ypre[bi * n + i],
                        };
                        let (s1, s2) = (&mut s.g_y[cols.clone()], &mut s.g_h[cols]);
                        pass_ba_row(grow, hrow, garow, &row, &before, s1, s2, &mut scratch)
                    } else {
                        row_b(grow, hrow, garow, &row, clip_c, &mut scratch)
                    };
                    dy[r * batch + bi] = c.row_scale * rule_part + matvec_part;
                }
            }
            (dy, ga_local, sums)
        })
        .collect();
    let mut gy_pre = vec![F::zero(); batch * n];
    let mut total: Option<ColumnSums<F>> = None;
    for ((dy, ga_local, sums), rows) in results.into_iter().zip(blocks) {
        for (r, i) in rows.clone().enumerate() {
            for bi in 0..batch {
                gy_pre[bi * n + i] = dy[r * batch + bi];
            }
        }
        if !per_connection {
            crate::parallel::add_into(grads.galpha, &ga_local);
        }
        match (total.as_mut(), sums) {
            (Some(t), Some(s)) => t.add(&s),
            (None, s) => total = s,
            (Some(_), None) => {}
        }
    }
    (gy_pre, total)
}

/// What pass B reads of one row `i` of one episode.
struct Row<'a, F> {
    /// `w_i.`.
    w: &'a [F],
    /// `alpha_i.`.
    alpha: &'a [F],
    /// `A_j`.
    a: &'a [F],
    /// `v_j`.
    v: &'a [F],
    /// `r_j` ([`Coefficients::row`]).
    r: &'a [F],
    /// `P_j = dL/dpre_j`.
    p: &'a [F],
    /// `y_{t-1, i}`.
    yi: F,
    /// `u_i`.
    ui: F,
}

/// What pass B reads and updates of the eligibility trace of one row.
struct Eligibility<'a, F> {
    /// `E_t`, row `i`.
    e: &'a [F],
    /// `dL/dE`, row `i` (from `t+1` to `t`).
    ge: &'a mut [F],
    /// `eta_j(t)`.
    rate: &'a [F],
    /// `d = 1 - eta_E`.
    decay: F,
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

/// Per-thread scratch rows for the row sums of pass B (a running float sum would not
/// vectorize: the terms are written out per column and summed in lanes after).
struct RowScratch<F> {
    rule: Vec<F>,
    matvec: Vec<F>,
}

/// A pass-B row kernel ([`pass_b_row`] for one clip setting).
type RowKernel<F> = fn(&mut [F], &[F], &mut [F], &Row<'_, F>, F, &mut RowScratch<F>) -> (F, F);

/// Pass B over one row `i` of one episode of a rule without eligibility trace: updates `g` (to
/// `dL/dHebb_t`) and `ga` (`dL/dalpha`), returns the two row sums
/// `(sum_j Ĝ_ij r_j, sum_j (w_ij + alpha_ij Hebb_ij) P_j)`.
#[inline(always)]
fn pass_b_row<F: Real, const CLIP: bool>(
    g: &mut [F],
    h: &[F],
    ga: &mut [F],
    row: &Row<'_, F>,
    clip_c: F,
    scratch: &mut RowScratch<F>,
) -> (F, F) {
    let n = g.len();
    let (h, w, alpha, a, v, r, p, ga) = (
        &h[..n],
        &row.w[..n],
        &row.alpha[..n],
        &row.a[..n],
        &row.v[..n],
        &row.r[..n],
        &row.p[..n],
        &mut ga[..n],
    );
    let (yi, ui) = (row.yi, row.ui);
    let (t1, t2) = (&mut scratch.rule[..n], &mut scratch.matvec[..n]);
    for k in 0..n {
        let hv = h[k];
        let g1 = if CLIP {
            through_clip(a[k] * hv + ui * v[k], clip_c, g[k])
        } else {
            g[k]
        };
        let q = yi * p[k];
        t1[k] = g1 * r[k];
        t2[k] = (w[k] + alpha[k] * hv) * p[k];
        g[k] = a[k] * g1 + alpha[k] * q;
        ga[k] += q * hv;
    }
    (lane_sum(t1), lane_sum(t2))
}

/// Pass B over one row of the retroactive rule: also takes `dL/dE` from step `t+1` to `t`.
#[inline(always)]
fn pass_b_row_eligibility<F: Real>(
    g: &mut [F],
    h: &[F],
    ga: &mut [F],
    row: &Row<'_, F>,
    el: Eligibility<'_, F>,
    clip_c: F,
    scratch: &mut RowScratch<F>,
) -> (F, F) {
    let n = g.len();
    let (h, w, alpha, r, p, ga) = (
        &h[..n],
        &row.w[..n],
        &row.alpha[..n],
        &row.r[..n],
        &row.p[..n],
        &mut ga[..n],
    );
    let (e, ge, rate) = (&el.e[..n], &mut el.ge[..n], &el.rate[..n]);
    let yi = row.yi;
    let (t1, t2) = (&mut scratch.rule[..n], &mut scratch.matvec[..n]);
    for j in 0..n {
        let z = h[j] + rate[j] * e[j];
        let gv = through_clip(z, clip_c, g[j]);
        // d/dy_i of E'_ij = ... + y_i v_j.
        t1[j] = ge[j] * r[j];
        ge[j] = rate[j] * gv + el.decay * ge[j];
        let q = yi * p[j];
        t2[j] = (w[j] + alpha[j] * h[j]) * p[j];
        ga[j] += q * h[j];
        g[j] = gv + alpha[j] * q;
    }
    (lane_sum(t1), lane_sum(t2))
}

/// Pass B of step `t` fused with pass A of step `t-1` over one row (trace reversal, no clip).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pass_ba_row<F: Real>(
    g: &mut [F],
    h: &mut [F],
    ga: &mut [F],
    row: &Row<'_, F>,
    prev: &PrevRow<'_, F>,
    s1: &mut [F],
    s2: &mut [F],
    scratch: &mut RowScratch<F>,
) -> (F, F) {
    let n = g.len();
    let (h, w, alpha, a, r, p, ga) = (
        &mut h[..n],
        &row.w[..n],
        &row.alpha[..n],
        &row.a[..n],
        &row.r[..n],
        &row.p[..n],
        &mut ga[..n],
    );
    let (pa, pv, s1, s2) = (&prev.a[..n], &prev.v[..n], &mut s1[..n], &mut s2[..n]);
    let (t1, t2) = (&mut scratch.rule[..n], &mut scratch.matvec[..n]);
    let (yi, pui, pyi) = (row.yi, prev.ui, prev.yi);
    for k in 0..n {
        let hv = h[k];
        let g1 = g[k];
        let q = yi * p[k];
        t1[k] = g1 * r[k];
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
