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
    block_rows, gather, in_pool, lane_sum, row_blocks, rows_of, scatter, split_batch, split_rows,
};
use crate::real::Real;
use crate::spec::{AlphaShape, EpisodeSpec, InputMode, Modulation, SpecError, TraceRule};
use crate::trace::{
    kept_trace, through_clip, Activity, Coefficients, ColumnSums, Decaying, ModulatorParams,
    NoTrace, Oja, PlasticGrads, Retroactive, RowFactor, Rule, Shares, Simple, StepBackward, Traces,
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
    /// The modulator's parameters, `m, fan_w, fan_b: [N]` (the fan-out ones empty without
    /// fan-out), and the eligibility trace's rate `eta_E`.
    pub modulator: ModulatorParams<'a, F>,
}

/// The learned parameters of an episode, as the spec's `modulation` says: a fixed-rate rule's
/// ([`Params`], also the network without plasticity) or a neuromodulated one's
/// ([`ModulatedParams`]). [`forward`] and [`backward`] take either (`&p` converts).
#[derive(Clone, Copy, Debug)]
pub enum RuleParams<'a, F> {
    /// Decaying Hebb, Oja, or no plasticity (`spec.plastic` false).
    Plain(Params<'a, F>),
    /// Simple or retroactive neuromodulation.
    Modulated(ModulatedParams<'a, F>),
}

impl<'a, F: Copy> From<&Params<'a, F>> for RuleParams<'a, F> {
    fn from(p: &Params<'a, F>) -> Self {
        RuleParams::Plain(*p)
    }
}

impl<'a, F: Copy> From<&ModulatedParams<'a, F>> for RuleParams<'a, F> {
    fn from(p: &ModulatedParams<'a, F>) -> Self {
        RuleParams::Modulated(*p)
    }
}

impl<'a, F: Real> RuleParams<'a, F> {
    /// The parameters of a rule modulated as `modulation` says, from a layer that holds both
    /// kinds: the fixed rate `eta` without modulation, the `modulator` with it (the other one
    /// is left out).
    pub fn new(
        modulation: Modulation,
        w: &'a [F],
        alpha: &'a [F],
        eta: F,
        modulator: ModulatorParams<'a, F>,
    ) -> Self {
        if modulation == Modulation::None {
            RuleParams::Plain(Params { w, alpha, eta })
        } else {
            RuleParams::Modulated(ModulatedParams {
                w,
                alpha,
                modulator,
            })
        }
    }

    /// `w: [N, N]`.
    pub fn w(&self) -> &'a [F] {
        match self {
            RuleParams::Plain(p) => p.w,
            RuleParams::Modulated(p) => p.w,
        }
    }

    /// `alpha`, shaped as the spec says (empty without plasticity).
    pub fn alpha(&self) -> &'a [F] {
        match self {
            RuleParams::Plain(p) => p.alpha,
            RuleParams::Modulated(p) => p.alpha,
        }
    }

    /// The modulator's parameters (empty slices and zeros when plain).
    pub fn modulator(&self) -> ModulatorParams<'a, F> {
        match self {
            RuleParams::Plain(_) => ModulatorParams::default(),
            RuleParams::Modulated(p) => p.modulator,
        }
    }

    /// The fixed rate `eta` (0 when modulated).
    fn eta(&self) -> F {
        match self {
            RuleParams::Plain(p) => p.eta,
            RuleParams::Modulated(_) => F::zero(),
        }
    }

    /// The network these parameters make, its rule checked against `spec`.
    fn net(&self, spec: &EpisodeSpec) -> Result<Net<'a, F, AnyRule<'a, F>>, SpecError> {
        match self {
            RuleParams::Plain(p) => p.net(spec),
            RuleParams::Modulated(p) => p.net(spec),
        }
    }
}

/// A spec's trace rule with its parameters.
#[derive(Clone, Copy, Debug)]
enum AnyRule<'a, F> {
    NoTrace(NoTrace),
    Decaying(Decaying<F>),
    Oja(Oja<F>),
    Simple(Simple<'a, F>),
    Retroactive(Retroactive<'a, F>),
}

/// A plastic network as the engine runs it: the weights and the trace rule with its parameters
/// (`R` a concrete rule, or [`AnyRule`] until [`with_net!`] picks the engine).
#[derive(Clone, Copy, Debug)]
struct Net<'a, F, R> {
    /// Fixed weights `w: [N, N]`.
    w: &'a [F],
    /// Plasticity coefficients, shaped as [`EpisodeSpec::alpha`] says.
    alpha: &'a [F],
    /// The trace rule.
    rule: R,
}

impl<'a, F, R> Net<'a, F, R> {
    fn new(w: &'a [F], alpha: &'a [F], rule: R) -> Self {
        Net { w, alpha, rule }
    }
}

/// Runs `$body` with `$net` bound to the same network with the concrete rule of its [`AnyRule`]
/// (one monomorphised engine per rule).
macro_rules! with_net {
    ($any:expr, $net:ident => $body:expr) => {{
        let any = $any;
        with_rule!(any.rule, rule => {
            let $net = Net::new(any.w, any.alpha, rule);
            $body
        })
    }};
}

/// Runs `$body` with `$r` bound to the concrete rule of an [`AnyRule`] (one monomorphised engine
/// per rule).
macro_rules! with_rule {
    ($rule:expr, $r:ident => $body:expr) => {
        match $rule {
            AnyRule::NoTrace($r) => $body,
            AnyRule::Decaying($r) => $body,
            AnyRule::Oja($r) => $body,
            AnyRule::Simple($r) => $body,
            AnyRule::Retroactive($r) => $body,
        }
    };
}

impl<'a, F: Real> Params<'a, F> {
    /// The network these parameters make, its rule checked against `spec`.
    fn net(&self, spec: &EpisodeSpec) -> Result<Net<'a, F, AnyRule<'a, F>>, SpecError> {
        Ok(Net::new(self.w, self.alpha, self.rule(spec)?))
    }

    fn rule(&self, spec: &EpisodeSpec) -> Result<AnyRule<'a, F>, SpecError> {
        spec.validate()?;
        if spec.modulation != Modulation::None {
            return Err(SpecError(format!(
                "modulation: {:?} episodes run with ModulatedParams, not Params",
                spec.modulation
            )));
        }
        check_weights(spec, self.w, self.alpha)?;
        if !spec.plastic {
            return Ok(AnyRule::NoTrace(NoTrace));
        }
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
    /// The network these parameters make, its rule checked against `spec`.
    fn net(&self, spec: &EpisodeSpec) -> Result<Net<'a, F, AnyRule<'a, F>>, SpecError> {
        Ok(Net::new(self.w, self.alpha, self.rule(spec)?))
    }

    fn rule(&self, spec: &EpisodeSpec) -> Result<AnyRule<'a, F>, SpecError> {
        spec.validate()?;
        let n = spec.neurons;
        if spec.modulation == Modulation::None {
            return Err(SpecError(
                "modulation: None episodes run with Params, not ModulatedParams".into(),
            ));
        }
        if !spec.plastic {
            return Err(SpecError(
                "plastic: a network without plasticity has no modulation".into(),
            ));
        }
        if spec.rule != TraceRule::Hebb {
            return Err(SpecError(format!(
                "rule: neuromodulation replaces the rate of the decaying-Hebb rule; {:?} is not supported",
                spec.rule
            )));
        }
        check_weights(spec, self.w, self.alpha)?;
        let params = self.modulator;
        let fan_out = spec.modulation.fan_out();
        params.check_lens(n, if fan_out { n } else { 0 }, |what, got, want| {
            spec.check_len(what, got, want)
        })?;
        if !(params.m_bias.is_finite() && params.eta_e.is_finite()) {
            return Err(SpecError(format!(
                "m_bias and eta_e must be finite (got {:?}, {:?})",
                params.m_bias, params.eta_e
            )));
        }
        Ok(match spec.modulation {
            Modulation::Retroactive { .. } => AnyRule::Retroactive(Retroactive { params, fan_out }),
            _ => AnyRule::Simple(Simple { params, fan_out }),
        })
    }
}

fn check_weights<F>(spec: &EpisodeSpec, w: &[F], alpha: &[F]) -> Result<(), SpecError> {
    let n = spec.neurons;
    spec.check_len("w", w.len(), n * n)?;
    let alpha_len = if spec.plastic { spec.alpha.len(n) } else { 0 };
    spec.check_len("alpha", alpha.len(), alpha_len)
}

/// What the forward pass returns and the backward pass needs: the episode's activations, its
/// final traces, and the little that the backward cannot recompute.
#[derive(Clone, Debug)]
pub struct Episode<F> {
    spec: EpisodeSpec,
    /// Activations of every step, `ys: [T, B, N]`.
    pub ys: Vec<F>,
    /// The traces after the last step, `hebb, elig: [B, N, N]` (`elig` empty but with
    /// retroactive modulation).
    pub traces: Traces<F>,
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

    /// Bytes held for the backward beyond the outputs `ys`, `traces` and `modulator`
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
    /// `dL/dalpha`, the trace rule's parameters, `dL/dHebb_0` and `dL/dE_0`.
    pub plastic: PlasticGrads<F>,
    /// `dL/dx: [T, B, N]`.
    pub x: Vec<F>,
    /// `dL/dy0: [B, N]`.
    pub y0: Vec<F>,
    /// True when the reversal was rejected and the traces were recomputed from checkpoints.
    pub reversal_rejected: bool,
}

/// Runs an episode forward (ICML 2018 eq. 1-3, or ICLR 2019 eq. 3-5 with a modulation), with
/// the parameters `p` of the spec's rule ([`RuleParams`]: `&Params` or `&ModulatedParams`).
/// Shapes: `x: [T, B, N]`, `y0: [B, N]`, `h0, e0: [B, N, N]` (`None`: zeros; `e0` is read only
/// with an eligibility trace, retroactive modulation). Keeps what the backward needs in the
/// returned [`Episode`].
pub fn forward<'a, F: Real>(
    spec: &EpisodeSpec,
    p: impl Into<RuleParams<'a, F>>,
    x: &[F],
    y0: &[F],
    h0: Option<&[F]>,
    e0: Option<&[F]>,
) -> Result<Episode<F>, SpecError> {
    let p = p.into();
    let net = p.net(spec)?;
    run_forward(spec, net, p.eta(), x, y0, h0, e0)
}

/// Backward pass of an episode. `gy: [T, B, N]` is `dL/dy_t` for every step (zeros where the
/// loss does not look), `gh` is `dL/dHebb_T` and `ge` is `dL/dE_T` (`[B, N, N]`, `None`: zero;
/// `ge` is read only with an eligibility trace). `p` must be the parameters the forward ran
/// with.
pub fn backward<'a, F: Real>(
    p: impl Into<RuleParams<'a, F>>,
    ep: Episode<F>,
    gy: &[F],
    gh: Option<&[F]>,
    ge: Option<&[F]>,
) -> Result<Grads<F>, SpecError> {
    let p = p.into();
    let net = p.net(&ep.spec)?;
    if ep.eta != p.eta() {
        return Err(SpecError("backward: eta differs from the forward's".into()));
    }
    run_backward(net, ep, gy, gh, ge)
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
fn run_forward<F: Real>(
    spec: &EpisodeSpec,
    net: Net<'_, F, AnyRule<'_, F>>,
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
        // Without a trace, the whole batch's product is one matrix product per step.
        with_net!(net, net => if spec.plastic && split_batch(b, n) {
            forward_split(spec, &net, &init)
        } else {
            forward_steps(spec, &net, &init, &row_blocks(n, b))
        })
    });
    ep.eta = eta;
    ep.parts.iter_mut().for_each(|p| p.eta = eta);
    Ok(ep)
}

/// Checks the gradients' sizes, then runs the backward of the spec's rule.
fn run_backward<F: Real>(
    net: Net<'_, F, AnyRule<'_, F>>,
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
        with_net!(net, net => if ep.parts.is_empty() {
            backward_episode(&net, ep, &grads, &row_blocks(n, b))
        } else {
            backward_split(&net, ep, &grads)
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
            self.data.len()
        } else {
            self.n
        }
    }
}

// After the macros, so that the engine's files can use `with_net!`.
mod backward;
mod forward;
mod stepper;

use backward::{backward_episode, backward_split};
pub(crate) use backward::{pass_a, pass_b, TraceGrads, Weights};
use forward::{activate, forward_split, forward_steps};
pub(crate) use forward::{forward_pass, update_pass};
pub use stepper::Stepper;
