//! Plastic and neuromodulated LSTM (Miconi, Rawal, Clune & Stanley, "Backpropamine", ICLR 2019,
//! section 4.3): an LSTM whose recurrent input to the cell candidate is plastic, run as one
//! fused recurrence over `T` steps of `B` sequences with a hand-written backward.
//!
//! # The step
//! With `h, c` the previous hidden and cell state of one sequence (`[H]`), `xp = W_x x + b` the
//! input projection of this step (`[4H]`, computed outside, gates in the order `i, f, o, g`) and
//! `W_h: [H, 4H]` the recurrent weights, whose last `H` columns are the fixed part `w` of the
//! candidate's plastic weights:
//!
//! ```text
//! a       = xp + h W_h                                    [4H]
//! a_g,j  += sum_i h_i alpha_ij Hebb_ij                     plastic part of the candidate
//! i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o);  g = tanh(a_g)
//! c'      = f c + i g;   h' = o tanh(c')
//! ```
//!
//! so `u_j = sum_i h_i (w_ij + alpha_ij Hebb_ij)`. The Hebbian increment is `outer(h, g)`
//! (presynaptic: previous hidden state; postsynaptic: the candidate), and the trace changes by
//! one of ([`LstmPlasticity`]):
//!
//! ```text
//! Hebb:        Hebb' = clip( (1 - eta) Hebb + eta h_i g_j )              learned scalar eta
//! Simple:      M = tanh(m . h' + m_b),  eta_j = v_j M + b_j               (one M per sequence)
//!              Hebb' = clip( Hebb + eta_j h_i g_j )
//! Retroactive: Hebb' = clip( Hebb + eta_j E_ij )                          E before this step
//!              E'    = (1 - eta_E) E + eta_E h_i g_j
//! ```
//!
//! with `clip` to `[-c, c]` (`c = 2` in the paper). The modulator reads the *new* hidden state
//! `h'` (as [`crate::Modulation`] does for the plastic RNN). `alpha` is per neuron (`alpha_ij =
//! alpha_j`, the default), per connection, or one scalar ([`AlphaShape`]).
//!
//! # Memory
//! The forward keeps the gates and cell states of every step (`O(T B H)`) and the traces only
//! every `K = ceil(sqrt(T))` steps (clipping makes the update non-invertible); the backward
//! recomputes each segment's traces from its checkpoint, so memory is `O(sqrt(T) B H^2)`, never
//! `T` copies of the trace. Sequences run in parallel (rayon over the batch); `dL/dW_h` is one
//! matrix product at the end.

use crate::checkpoint::default_segment;
use crate::parallel::{in_pool, lane_sum};
use crate::real::Real;
use crate::spec::{AlphaShape, SpecError};
use crate::trace::{clip_to, through_clip};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How the candidate's recurrent weights change within a sequence (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LstmPlasticity {
    /// A standard LSTM: no trace.
    None,
    /// Decaying Hebbian trace with a learned scalar rate `eta`.
    Hebb,
    /// Simple neuromodulation with fan-out: `eta_j = v_j M + b_j`.
    Simple,
    /// Retroactive neuromodulation: the modulator gates an eligibility trace `E`.
    Retroactive,
}

impl LstmPlasticity {
    /// Whether there is a Hebbian trace (and `alpha`).
    pub fn is_plastic(self) -> bool {
        self != LstmPlasticity::None
    }

    /// Whether the rate comes from a modulator (`m, m_b, v, b`).
    pub fn is_modulated(self) -> bool {
        matches!(self, LstmPlasticity::Simple | LstmPlasticity::Retroactive)
    }

    /// Whether there is an eligibility trace `E`.
    pub fn has_eligibility(self) -> bool {
        self == LstmPlasticity::Retroactive
    }
}

/// Sizes and kind of a fused LSTM recurrence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LstmSpec {
    /// Hidden units `H`.
    pub hidden: usize,
    /// Sequences run together, `B`.
    pub batch: usize,
    /// Steps `T`.
    pub steps: usize,
    /// Kind of plasticity.
    pub plasticity: LstmPlasticity,
    /// Shape of `alpha` (ignored without plasticity).
    pub alpha: AlphaShape,
    /// The trace is clipped to `[-clip, clip]` after each update (the paper: 2).
    pub clip: f64,
    /// Steps between checkpoints of the traces; `0` picks `ceil(sqrt(T))`.
    pub segment: usize,
}

impl LstmSpec {
    /// A spec with the paper's defaults: per-neuron `alpha`, clip 2, automatic segments.
    pub fn new(hidden: usize, batch: usize, steps: usize, plasticity: LstmPlasticity) -> Self {
        LstmSpec {
            hidden,
            batch,
            steps,
            plasticity,
            alpha: AlphaShape::PerNeuron,
            clip: 2.0,
            segment: 0,
        }
    }

    /// Number of values of `alpha` (0 without plasticity).
    pub fn alpha_len(&self) -> usize {
        if self.plasticity.is_plastic() {
            self.alpha.len(self.hidden)
        } else {
            0
        }
    }

    fn check_len(&self, what: &str, got: usize, want: usize) -> Result<(), SpecError> {
        if got == want {
            Ok(())
        } else {
            Err(SpecError(format!(
                "{what}: expected {want} values, got {got} (H={}, B={}, T={}, {:?})",
                self.hidden, self.batch, self.steps, self.plasticity
            )))
        }
    }

    /// Checks the sizes and the clip value.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.hidden == 0 || self.batch == 0 || self.steps == 0 {
            return Err(SpecError(format!(
                "hidden, batch and steps must be positive (got H={}, B={}, T={})",
                self.hidden, self.batch, self.steps
            )));
        }
        if !(self.clip > 0.0 && self.clip.is_finite()) {
            return Err(SpecError(format!(
                "clip must be positive and finite (got {})",
                self.clip
            )));
        }
        Ok(())
    }

    fn segment_len(&self) -> usize {
        if self.segment == 0 {
            default_segment(self.steps)
        } else {
            self.segment
        }
    }

    fn trace_len(&self) -> usize {
        if self.plasticity.is_plastic() {
            self.batch * self.hidden * self.hidden
        } else {
            0
        }
    }
}

/// The learned parameters, borrowed as flat row-major slices. Unused ones are empty (or 0).
#[derive(Clone, Copy, Debug)]
pub struct LstmParams<'a, F> {
    /// Recurrent weights `W_h: [H, 4H]`, gate blocks `i, f, o, g`; the `g` block is `w`.
    pub w_h: &'a [F],
    /// Plasticity coefficients, shaped as [`LstmSpec::alpha`] says (empty without plasticity).
    pub alpha: &'a [F],
    /// Rate of [`LstmPlasticity::Hebb`].
    pub eta: F,
    /// Modulator weights `m: [H]` (modulated only).
    pub m: &'a [F],
    /// Modulator bias `m_b`.
    pub m_bias: F,
    /// Fan-out weights `v: [H]` (modulated only).
    pub fan_w: &'a [F],
    /// Fan-out biases `b: [H]` (modulated only).
    pub fan_b: &'a [F],
    /// Rate `eta_E` of the eligibility trace (retroactive only).
    pub eta_e: F,
}

/// The state a recurrence starts from. Shapes: `h0, c0: [B, H]`, `hebb0, elig0: [B, H, H]`
/// (`None`: zeros; ignored when the spec has no such trace).
#[derive(Clone, Copy, Debug)]
pub struct LstmInit<'a, F> {
    /// Hidden state.
    pub h0: &'a [F],
    /// Cell state.
    pub c0: &'a [F],
    /// Hebbian trace (row `i` presynaptic).
    pub hebb0: Option<&'a [F]>,
    /// Eligibility trace.
    pub elig0: Option<&'a [F]>,
}

/// What one sequence keeps for the backward.
#[derive(Clone, Debug)]
struct SeqStore<F> {
    /// Gate activations `(i, f, o, g)` of every step, `[T, 4H]`.
    gates: Vec<F>,
    /// Cell states after every step, `[T, H]`.
    cs: Vec<F>,
    /// Hidden states after every step, `[T, H]`.
    hs: Vec<F>,
    /// `(Hebb, E)` before steps `0, K, 2K, ...`.
    checkpoints: Vec<(Vec<F>, Vec<F>)>,
    /// Final traces.
    hebb: Vec<F>,
    elig: Vec<F>,
    /// Modulator of every step, `[T]` (modulated only).
    modulator: Vec<F>,
}

/// A forward run: outputs, and what [`lstm_backward`] needs.
#[derive(Clone, Debug)]
pub struct LstmSequence<F> {
    spec: LstmSpec,
    /// Hidden states of every step, `hs: [T, B, H]` (the last step is the final `h`).
    pub hs: Vec<F>,
    /// Final cell state, `[B, H]`.
    pub c: Vec<F>,
    /// Final Hebbian trace, `[B, H, H]` (empty without plasticity).
    pub hebb: Vec<F>,
    /// Final eligibility trace, `[B, H, H]` (retroactive only).
    pub elig: Vec<F>,
    /// Modulator `M(t)`, `[T, B]` (modulated only).
    pub modulator: Vec<F>,
    h0: Vec<F>,
    c0: Vec<F>,
    seqs: Vec<SeqStore<F>>,
}

impl<F: Real> LstmSequence<F> {
    /// The spec the recurrence ran with.
    pub fn spec(&self) -> &LstmSpec {
        &self.spec
    }

    /// Bytes held for the backward (gates, cell states, checkpoints, initial state).
    pub fn saved_bytes(&self) -> usize {
        let n: usize = self
            .seqs
            .iter()
            .map(|s| {
                s.gates.len()
                    + s.cs.len()
                    + s.hs.len()
                    + s.checkpoints
                        .iter()
                        .map(|(h, e)| h.len() + e.len())
                        .sum::<usize>()
            })
            .sum::<usize>()
            + self.h0.len()
            + self.c0.len();
        n * core::mem::size_of::<F>()
    }
}

/// Gradients of a loss with respect to everything a recurrence depends on. Entries of unused
/// parameters are empty (or 0).
#[derive(Clone, Debug)]
pub struct LstmGrads<F> {
    /// `dL/dxp: [T, B, 4H]` (the pre-activation gradients; `dL/dW_x` and `dL/db` follow).
    pub xproj: Vec<F>,
    /// `dL/dW_h: [H, 4H]`.
    pub w_h: Vec<F>,
    /// `dL/dalpha`, shaped like `alpha`.
    pub alpha: Vec<F>,
    /// `dL/deta`.
    pub eta: F,
    /// `dL/dm: [H]`.
    pub m: Vec<F>,
    /// `dL/dm_b`.
    pub m_bias: F,
    /// `dL/dv: [H]`.
    pub fan_w: Vec<F>,
    /// `dL/db: [H]`.
    pub fan_b: Vec<F>,
    /// `dL/deta_E`.
    pub eta_e: F,
    /// `dL/dh0: [B, H]`.
    pub h0: Vec<F>,
    /// `dL/dc0: [B, H]`.
    pub c0: Vec<F>,
    /// `dL/dHebb_0: [B, H, H]`.
    pub hebb0: Vec<F>,
    /// `dL/dE_0: [B, H, H]`.
    pub elig0: Vec<F>,
}

fn check<F: Real>(spec: &LstmSpec, p: &LstmParams<'_, F>) -> Result<(), SpecError> {
    spec.validate()?;
    let h = spec.hidden;
    spec.check_len("w_h", p.w_h.len(), 4 * h * h)?;
    spec.check_len("alpha", p.alpha.len(), spec.alpha_len())?;
    let modw = if spec.plasticity.is_modulated() { h } else { 0 };
    spec.check_len("m", p.m.len(), modw)?;
    spec.check_len("fan_w", p.fan_w.len(), modw)?;
    // Parameter values are not checked: a non-finite one gives a non-finite loss, which the
    // training loop reports.
    spec.check_len("fan_b", p.fan_b.len(), modw)
}

#[inline]
fn sigmoid<F: Real>(x: F) -> F {
    F::one() / (F::one() + (-x).exp())
}

/// `sum_k a_k b_k` in 8 lanes (vectorizes; fixed order).
#[inline]
fn dot<F: Real>(a: &[F], b: &[F]) -> F {
    let mut lanes = [F::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().copied().sum::<F>() + ra.iter().zip(rb).map(|(&x, &y)| x * y).sum::<F>()
}

/// `alpha` as a function of the row: the per-connection row, or the broadcast `[H]` row.
struct Alpha<'a, F> {
    data: &'a [F],
    broadcast: Vec<F>,
    per_connection: bool,
    h: usize,
}

impl<'a, F: Real> Alpha<'a, F> {
    fn new(shape: AlphaShape, data: &'a [F], h: usize) -> Self {
        let broadcast = match (shape, data.is_empty()) {
            (_, true) | (AlphaShape::PerConnection, _) => Vec::new(),
            (AlphaShape::PerNeuron, _) => data.to_vec(),
            (AlphaShape::Scalar, _) => vec![data[0]; h],
        };
        Alpha {
            data,
            broadcast,
            per_connection: shape == AlphaShape::PerConnection,
            h,
        }
    }

    #[inline]
    fn row(&self, i: usize) -> &[F] {
        if self.per_connection {
            &self.data[i * self.h..(i + 1) * self.h]
        } else {
            &self.broadcast
        }
    }
}

/// The modulator and rates from the new hidden state: `(M, eta: [H])`.
fn rates<F: Real>(p: &LstmParams<'_, F>, h_new: &[F]) -> (F, Vec<F>) {
    let m = (dot(p.m, h_new) + p.m_bias).tanh();
    let eta = p
        .fan_w
        .iter()
        .zip(p.fan_b)
        .map(|(&v, &b)| v * m + b)
        .collect();
    (m, eta)
}

/// Applies one trace update in place: `hp` presynaptic (`[H]`), `g` the candidate, `eta` the
/// modulated rates (empty for [`LstmPlasticity::Hebb`]).
#[allow(clippy::too_many_arguments)]
fn update_trace<F: Real>(
    kind: LstmPlasticity,
    p: &LstmParams<'_, F>,
    hebb: &mut [F],
    elig: &mut [F],
    hp: &[F],
    g: &[F],
    eta: &[F],
    clip: F,
) {
    let h = hp.len();
    let c = Some(clip);
    for i in 0..h {
        let hi = hp[i];
        let hrow = &mut hebb[i * h..(i + 1) * h];
        match kind {
            LstmPlasticity::None => {}
            LstmPlasticity::Hebb => {
                let (keep, rate) = (F::one() - p.eta, p.eta * hi);
                for (x, &gj) in hrow.iter_mut().zip(g) {
                    *x = clip_to(keep * *x + rate * gj, c);
                }
            }
            LstmPlasticity::Simple => {
                for ((x, &gj), &ej) in hrow.iter_mut().zip(g).zip(eta) {
                    *x = clip_to(*x + hi * ej * gj, c);
                }
            }
            LstmPlasticity::Retroactive => {
                let erow = &mut elig[i * h..(i + 1) * h];
                let (keep, rate) = (F::one() - p.eta_e, p.eta_e * hi);
                for (((x, e), &gj), &ej) in hrow.iter_mut().zip(erow.iter_mut()).zip(g).zip(eta) {
                    *x = clip_to(*x + ej * *e, c);
                    *e = keep * *e + rate * gj;
                }
            }
        }
    }
}

/// Runs the recurrence forward. `xproj: [T, B, 4H]` (time-major, gates `i, f, o, g`).
pub fn lstm_forward<F: Real>(
    spec: &LstmSpec,
    p: &LstmParams<'_, F>,
    xproj: &[F],
    init: &LstmInit<'_, F>,
) -> Result<LstmSequence<F>, SpecError> {
    check(spec, p)?;
    let (h, b, t_len) = (spec.hidden, spec.batch, spec.steps);
    spec.check_len("xproj", xproj.len(), t_len * b * 4 * h)?;
    spec.check_len("h0", init.h0.len(), b * h)?;
    spec.check_len("c0", init.c0.len(), b * h)?;
    let tl = spec.trace_len();
    if let (Some(x), true) = (init.hebb0, tl > 0) {
        spec.check_len("hebb0", x.len(), tl)?;
    }
    if let (Some(x), true) = (init.elig0, spec.plasticity.has_eligibility()) {
        spec.check_len("elig0", x.len(), tl)?;
    }
    let seqs: Vec<SeqStore<F>> = in_pool(|| {
        (0..b)
            .into_par_iter()
            .map(|bi| forward_seq(spec, p, xproj, init, bi))
            .collect()
    });
    let mut out = LstmSequence {
        spec: *spec,
        hs: vec![F::zero(); t_len * b * h],
        c: Vec::with_capacity(b * h),
        hebb: Vec::with_capacity(tl),
        elig: Vec::new(),
        modulator: Vec::new(),
        h0: init.h0.to_vec(),
        c0: init.c0.to_vec(),
        seqs: Vec::new(),
    };
    for (bi, s) in seqs.iter().enumerate() {
        for t in 0..t_len {
            out.hs[(t * b + bi) * h..(t * b + bi + 1) * h]
                .copy_from_slice(&s.hs[t * h..(t + 1) * h]);
        }
        out.c.extend_from_slice(&s.cs[(t_len - 1) * h..]);
        out.hebb.extend_from_slice(&s.hebb);
        out.elig.extend_from_slice(&s.elig);
    }
    if spec.plasticity.is_modulated() {
        out.modulator = (0..t_len)
            .flat_map(|t| seqs.iter().map(move |s| s.modulator[t]))
            .collect();
    }
    out.seqs = seqs;
    Ok(out)
}

/// The forward of sequence `bi`.
fn forward_seq<F: Real>(
    spec: &LstmSpec,
    p: &LstmParams<'_, F>,
    xproj: &[F],
    init: &LstmInit<'_, F>,
    bi: usize,
) -> SeqStore<F> {
    let (h, b, t_len) = (spec.hidden, spec.batch, spec.steps);
    let kind = spec.plasticity;
    let (hh, h4) = (h * h, 4 * h);
    let plastic = kind.is_plastic();
    let mut hebb = match (plastic, init.hebb0) {
        (false, _) => Vec::new(),
        (true, Some(x)) => x[bi * hh..(bi + 1) * hh].to_vec(),
        (true, None) => vec![F::zero(); hh],
    };
    let mut elig = match (kind.has_eligibility(), init.elig0) {
        (false, _) => Vec::new(),
        (true, Some(x)) => x[bi * hh..(bi + 1) * hh].to_vec(),
        (true, None) => vec![F::zero(); hh],
    };
    let seg = spec.segment_len();
    let alpha = Alpha::new(spec.alpha, p.alpha, h);
    let clip = F::of(spec.clip);
    let mut st = SeqStore {
        gates: vec![F::zero(); t_len * h4],
        cs: vec![F::zero(); t_len * h],
        hs: vec![F::zero(); t_len * h],
        checkpoints: Vec::new(),
        hebb: Vec::new(),
        elig: Vec::new(),
        modulator: Vec::new(),
    };
    let mut a = vec![F::zero(); h4];
    let mut u = vec![F::zero(); h];
    let h0 = &init.h0[bi * h..(bi + 1) * h];
    let c0 = &init.c0[bi * h..(bi + 1) * h];
    for t in 0..t_len {
        if plastic && t % seg == 0 {
            st.checkpoints.push((hebb.clone(), elig.clone()));
        }
        let hp = if t == 0 {
            h0
        } else {
            &st.hs[(t - 1) * h..t * h]
        };
        a.copy_from_slice(&xproj[(t * b + bi) * h4..(t * b + bi + 1) * h4]);
        for (i, &hi) in hp.iter().enumerate() {
            if hi != F::zero() {
                for (x, &wv) in a.iter_mut().zip(&p.w_h[i * h4..(i + 1) * h4]) {
                    *x += hi * wv;
                }
            }
        }
        if plastic {
            u.iter_mut().for_each(|x| *x = F::zero());
            for (i, &hi) in hp.iter().enumerate() {
                let ar = alpha.row(i);
                for ((x, &al), &hv) in u.iter_mut().zip(ar).zip(&hebb[i * h..(i + 1) * h]) {
                    *x += hi * al * hv;
                }
            }
            for (x, &uj) in a[3 * h..].iter_mut().zip(&u) {
                *x += uj;
            }
        }
        let gates = &mut st.gates[t * h4..(t + 1) * h4];
        for k in 0..3 * h {
            gates[k] = sigmoid(a[k]);
        }
        for k in 3 * h..h4 {
            gates[k] = a[k].tanh();
        }
        let (hs_done, hs_rest) = st.hs.split_at_mut(t * h);
        let (cs_done, cs_rest) = st.cs.split_at_mut(t * h);
        let (hp, cp) = if t == 0 {
            (h0, c0)
        } else {
            (&hs_done[(t - 1) * h..], &cs_done[(t - 1) * h..])
        };
        let (hn, cn) = (&mut hs_rest[..h], &mut cs_rest[..h]);
        for j in 0..h {
            let (gi, gf, go, gg) = (gates[j], gates[h + j], gates[2 * h + j], gates[3 * h + j]);
            cn[j] = gf * cp[j] + gi * gg;
            hn[j] = go * cn[j].tanh();
        }
        if plastic {
            let eta = if kind.is_modulated() {
                let (m, eta) = rates(p, hn);
                st.modulator.push(m);
                eta
            } else {
                Vec::new()
            };
            update_trace(
                kind,
                p,
                &mut hebb,
                &mut elig,
                hp,
                &gates[3 * h..],
                &eta,
                clip,
            );
        }
    }
    st.hebb = hebb;
    st.elig = elig;
    st
}

/// Per-sequence gradients of the small parameters.
#[derive(Clone, Debug)]
struct SmallGrads<F> {
    alpha: Vec<F>,
    eta: F,
    m: Vec<F>,
    m_bias: F,
    fan_w: Vec<F>,
    fan_b: Vec<F>,
    eta_e: F,
}

/// What the backward of one sequence returns.
struct SeqGrads<F> {
    /// `dL/dxp` of this sequence, `[T, 4H]`.
    xproj: Vec<F>,
    small: SmallGrads<F>,
    h0: Vec<F>,
    c0: Vec<F>,
    hebb0: Vec<F>,
    elig0: Vec<F>,
}

/// Backward of a recurrence. `gh: [T, B, H]` is `dL/dh_t` for every step (the final `h` is the
/// last step), `gc: [B, H]` is `dL/dc_T`, `ghebb, gelig: [B, H, H]` are `dL/dHebb_T`, `dL/dE_T`
/// (`None`: zero). `p` must be the parameters the forward ran with.
pub fn lstm_backward<F: Real>(
    p: &LstmParams<'_, F>,
    run: &LstmSequence<F>,
    gh: &[F],
    gc: Option<&[F]>,
    ghebb: Option<&[F]>,
    gelig: Option<&[F]>,
) -> Result<LstmGrads<F>, SpecError> {
    let spec = run.spec;
    check(&spec, p)?;
    let (h, b, t_len) = (spec.hidden, spec.batch, spec.steps);
    let h4 = 4 * h;
    spec.check_len("grad of hs", gh.len(), t_len * b * h)?;
    if let Some(g) = gc {
        spec.check_len("grad of c", g.len(), b * h)?;
    }
    let tl = spec.trace_len();
    if let (Some(g), true) = (ghebb, tl > 0) {
        spec.check_len("grad of hebb", g.len(), tl)?;
    }
    if let (Some(g), true) = (gelig, spec.plasticity.has_eligibility()) {
        spec.check_len("grad of elig", g.len(), tl)?;
    }
    let per: Vec<SeqGrads<F>> = in_pool(|| {
        (0..b)
            .into_par_iter()
            .map(|bi| backward_seq(&spec, p, run, gh, gc, ghebb, gelig, bi))
            .collect()
    });
    let mut xg = vec![F::zero(); t_len * b * h4];
    let mut out = LstmGrads {
        xproj: Vec::new(),
        w_h: vec![F::zero(); h * h4],
        alpha: Vec::new(),
        eta: F::zero(),
        m: Vec::new(),
        m_bias: F::zero(),
        fan_w: Vec::new(),
        fan_b: Vec::new(),
        eta_e: F::zero(),
        h0: Vec::with_capacity(b * h),
        c0: Vec::with_capacity(b * h),
        hebb0: Vec::with_capacity(tl),
        elig0: Vec::new(),
    };
    let mut small: Option<SmallGrads<F>> = None;
    for (bi, sg) in per.into_iter().enumerate() {
        for t in 0..t_len {
            xg[(t * b + bi) * h4..(t * b + bi + 1) * h4]
                .copy_from_slice(&sg.xproj[t * h4..(t + 1) * h4]);
        }
        out.h0.extend_from_slice(&sg.h0);
        out.c0.extend_from_slice(&sg.c0);
        out.hebb0.extend_from_slice(&sg.hebb0);
        out.elig0.extend_from_slice(&sg.elig0);
        small = Some(match small {
            None => sg.small,
            Some(mut acc) => {
                let add = |a: &mut Vec<F>, b: &[F]| a.iter_mut().zip(b).for_each(|(x, &y)| *x += y);
                add(&mut acc.alpha, &sg.small.alpha);
                add(&mut acc.m, &sg.small.m);
                add(&mut acc.fan_w, &sg.small.fan_w);
                add(&mut acc.fan_b, &sg.small.fan_b);
                acc.eta += sg.small.eta;
                acc.m_bias += sg.small.m_bias;
                acc.eta_e += sg.small.eta_e;
                acc
            }
        });
    }
    let small = small.expect("batch is positive");
    // dL/dW_h = sum_t h_{t-1}^T dL/da_t, one product over [T * B, H] x [T * B, 4H].
    let bh = b * h;
    let mut hpre = Vec::with_capacity(t_len * bh);
    hpre.extend_from_slice(&run.h0);
    hpre.extend_from_slice(&run.hs[..(t_len - 1) * bh]);
    F::gemm_tn_acc(h, t_len * b, h4, &hpre, &xg, &mut out.w_h);
    out.xproj = xg;
    out.alpha = if spec.plasticity.is_plastic() && spec.alpha == AlphaShape::Scalar {
        vec![small.alpha.iter().copied().sum()]
    } else {
        small.alpha
    };
    out.eta = small.eta;
    out.m = small.m;
    out.m_bias = small.m_bias;
    out.fan_w = small.fan_w;
    out.fan_b = small.fan_b;
    out.eta_e = small.eta_e;
    Ok(out)
}

/// The backward of sequence `bi` (see the module docs for the step).
// Index loops over j keep the equations readable (several [H] vectors at once).
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn backward_seq<F: Real>(
    spec: &LstmSpec,
    p: &LstmParams<'_, F>,
    run: &LstmSequence<F>,
    gh: &[F],
    gc: Option<&[F]>,
    ghebb: Option<&[F]>,
    gelig: Option<&[F]>,
    bi: usize,
) -> SeqGrads<F> {
    let (h, b, t_len) = (spec.hidden, spec.batch, spec.steps);
    let (hh, h4) = (h * h, 4 * h);
    let kind = spec.plasticity;
    let plastic = kind.is_plastic();
    let modulated = kind.is_modulated();
    let retro = kind.has_eligibility();
    let st = &run.seqs[bi];
    let clip = F::of(spec.clip);
    let alpha = Alpha::new(spec.alpha, p.alpha, h);
    let one = F::one();
    let zero = F::zero();
    let h0 = &run.h0[bi * h..(bi + 1) * h];
    let c0 = &run.c0[bi * h..(bi + 1) * h];
    // G = dL/dHebb_{t+1}, GE = dL/dE_{t+1}.
    let mut g = match (plastic, ghebb) {
        (false, _) => Vec::new(),
        (true, Some(x)) => x[bi * hh..(bi + 1) * hh].to_vec(),
        (true, None) => vec![zero; hh],
    };
    let mut ge = match (retro, gelig) {
        (false, _) => Vec::new(),
        (true, Some(x)) => x[bi * hh..(bi + 1) * hh].to_vec(),
        (true, None) => vec![zero; hh],
    };
    let mut small = SmallGrads {
        alpha: vec![
            zero;
            if plastic {
                if alpha.per_connection {
                    hh
                } else {
                    h
                }
            } else {
                0
            }
        ],
        eta: zero,
        m: vec![zero; if modulated { h } else { 0 }],
        m_bias: zero,
        fan_w: vec![zero; if modulated { h } else { 0 }],
        fan_b: vec![zero; if modulated { h } else { 0 }],
        eta_e: zero,
    };
    let mut gx = vec![zero; t_len * h4];
    let mut dh_carry = vec![zero; h];
    let mut dc = gc.map_or_else(|| vec![zero; h], |x| x[bi * h..(bi + 1) * h].to_vec());
    let seg = spec.segment_len();
    let mut traces: Vec<(Vec<F>, Vec<F>)> = Vec::new();
    let mut seg_start = usize::MAX;
    let (mut s, mut se, mut see) = (vec![zero; h], vec![zero; h], vec![zero; h]);
    let mut dhp = vec![zero; h];
    let mut scratch = vec![zero; h];
    let mut dh = vec![zero; h];
    let hs_at = |t: usize| -> &[F] { &st.hs[t * h..(t + 1) * h] };
    let hpre_at = |t: usize| -> &[F] {
        if t == 0 {
            h0
        } else {
            &st.hs[(t - 1) * h..t * h]
        }
    };
    let eta_at = |t: usize| -> (F, Vec<F>) {
        if modulated {
            rates(p, hs_at(t))
        } else {
            (zero, Vec::new())
        }
    };
    for t in (0..t_len).rev() {
        let hp = hpre_at(t);
        let cp = if t == 0 {
            c0
        } else {
            &st.cs[(t - 1) * h..t * h]
        };
        let gates = &st.gates[t * h4..(t + 1) * h4];
        let gg = &gates[3 * h..];
        let cn = &st.cs[t * h..(t + 1) * h];
        // (Hebb_t, E_t) recomputed from the segment's checkpoint.
        if plastic {
            let start = (t / seg) * seg;
            if start != seg_start {
                seg_start = start;
                traces.clear();
                let (mut hb, mut el) = st.checkpoints[t / seg].clone();
                for s_ in start..t {
                    traces.push((hb.clone(), el.clone()));
                    let (_, eta) = eta_at(s_);
                    let gs = &st.gates[s_ * h4 + 3 * h..(s_ + 1) * h4];
                    update_trace(kind, p, &mut hb, &mut el, hpre_at(s_), gs, &eta, clip);
                }
                traces.push((hb, el));
            }
        }
        let (m_t, eta) = eta_at(t);
        dh.copy_from_slice(&gh[(t * b + bi) * h..(t * b + bi + 1) * h]);
        dh.iter_mut().zip(&dh_carry).for_each(|(x, &y)| *x += y);
        // dg_j from the trace update (filled by pass A).
        let mut dg_trace = vec![zero; h];
        if plastic {
            let (hb, el) = &traces[t - seg_start];
            // Pass A: column sums over i.
            s.iter_mut().for_each(|x| *x = zero);
            se.iter_mut().for_each(|x| *x = zero);
            see.iter_mut().for_each(|x| *x = zero);
            let mut deta = zero;
            for i in 0..h {
                let hi = hp[i];
                let r = i * h..(i + 1) * h;
                let (hrow, grow) = (&hb[r.clone()], &g[r.clone()]);
                match kind {
                    LstmPlasticity::None => {}
                    LstmPlasticity::Hebb => {
                        let (keep, rate) = (one - p.eta, p.eta * hi);
                        for j in 0..h {
                            let z = keep * hrow[j] + rate * gg[j];
                            let gv = through_clip(z, clip, grow[j]);
                            s[j] += gv * hi;
                            scratch[j] = gv * (hi * gg[j] - hrow[j]);
                        }
                        deta += lane_sum(&scratch);
                    }
                    LstmPlasticity::Simple => {
                        for j in 0..h {
                            let z = hrow[j] + hi * eta[j] * gg[j];
                            let gv = through_clip(z, clip, grow[j]);
                            s[j] += gv * hi;
                        }
                    }
                    LstmPlasticity::Retroactive => {
                        let (erow, gerow) = (&el[r.clone()], &ge[r]);
                        for j in 0..h {
                            let z = hrow[j] + eta[j] * erow[j];
                            let gv = through_clip(z, clip, grow[j]);
                            s[j] += gv * erow[j];
                            se[j] += gerow[j] * hi;
                            see[j] += gerow[j] * erow[j];
                        }
                    }
                }
            }
            match kind {
                LstmPlasticity::None => {}
                LstmPlasticity::Hebb => {
                    small.eta += deta;
                    for j in 0..h {
                        dg_trace[j] = p.eta * s[j];
                    }
                }
                LstmPlasticity::Simple | LstmPlasticity::Retroactive => {
                    // dL/deta_j, then the modulator.
                    let mut dm = zero;
                    for j in 0..h {
                        let geta = if retro { s[j] } else { gg[j] * s[j] };
                        dm += p.fan_w[j] * geta;
                        small.fan_w[j] += m_t * geta;
                        small.fan_b[j] += geta;
                        if retro {
                            dg_trace[j] = p.eta_e * se[j];
                            small.eta_e += gg[j] * se[j] - see[j];
                        } else {
                            dg_trace[j] = eta[j] * s[j];
                        }
                    }
                    let dq = dm * (one - m_t * m_t);
                    small.m_bias += dq;
                    for j in 0..h {
                        small.m[j] += dq * hs_at(t)[j];
                        dh[j] += dq * p.m[j];
                    }
                }
            }
        }
        // The cell.
        let da = &mut gx[t * h4..(t + 1) * h4];
        for j in 0..h {
            let (gi, gf, go, gv) = (gates[j], gates[h + j], gates[2 * h + j], gates[3 * h + j]);
            let tc = cn[j].tanh();
            let d_o = dh[j] * tc;
            let dcj = dc[j] + dh[j] * go * (one - tc * tc);
            let d_i = dcj * gv;
            let d_g = dcj * gi + dg_trace[j];
            let d_f = dcj * cp[j];
            dc[j] = dcj * gf;
            da[j] = d_i * gi * (one - gi);
            da[h + j] = d_f * gf * (one - gf);
            da[2 * h + j] = d_o * go * (one - go);
            da[3 * h + j] = d_g * (one - gv * gv);
        }
        // dL/dh_{t-1} through W_h.
        for i in 0..h {
            dhp[i] = dot(&p.w_h[i * h4..(i + 1) * h4], da);
        }
        if plastic {
            // Pass B: rows. G <- dL/dHebb_t, GE <- dL/dE_t, dL/dalpha, dL/dh_{t-1}.
            let (hb, el) = &traces[t - seg_start];
            let dag = &da[3 * h..];
            let mut ga_local = vec![zero; if alpha.per_connection { 0 } else { h }];
            for i in 0..h {
                let hi = hp[i];
                let r = i * h..(i + 1) * h;
                let hrow = &hb[r.clone()];
                let arow = alpha.row(i);
                let grow = &mut g[r.clone()];
                let garow: &mut [F] = if alpha.per_connection {
                    &mut small.alpha[r.clone()]
                } else {
                    &mut ga_local
                };
                // scratch_j: this row's contributions to dL/dh_i.
                match kind {
                    LstmPlasticity::None => {}
                    LstmPlasticity::Hebb => {
                        let (keep, rate) = (one - p.eta, p.eta * hi);
                        for j in 0..h {
                            let z = keep * hrow[j] + rate * gg[j];
                            let gv = through_clip(z, clip, grow[j]);
                            let q = hi * dag[j];
                            scratch[j] = p.eta * gv * gg[j] + arow[j] * hrow[j] * dag[j];
                            garow[j] += q * hrow[j];
                            grow[j] = keep * gv + arow[j] * q;
                        }
                    }
                    LstmPlasticity::Simple => {
                        for j in 0..h {
                            let z = hrow[j] + hi * eta[j] * gg[j];
                            let gv = through_clip(z, clip, grow[j]);
                            let q = hi * dag[j];
                            scratch[j] = gv * eta[j] * gg[j] + arow[j] * hrow[j] * dag[j];
                            garow[j] += q * hrow[j];
                            grow[j] = gv + arow[j] * q;
                        }
                    }
                    LstmPlasticity::Retroactive => {
                        let erow = &el[r.clone()];
                        let gerow = &mut ge[r];
                        let keep_e = one - p.eta_e;
                        for j in 0..h {
                            let z = hrow[j] + eta[j] * erow[j];
                            let gv = through_clip(z, clip, grow[j]);
                            let q = hi * dag[j];
                            scratch[j] = p.eta_e * gerow[j] * gg[j] + arow[j] * hrow[j] * dag[j];
                            gerow[j] = eta[j] * gv + keep_e * gerow[j];
                            garow[j] += q * hrow[j];
                            grow[j] = gv + arow[j] * q;
                        }
                    }
                }
                dhp[i] += lane_sum(&scratch);
            }
            if !alpha.per_connection {
                small
                    .alpha
                    .iter_mut()
                    .zip(&ga_local)
                    .for_each(|(x, &y)| *x += y);
            }
        }
        dh_carry.copy_from_slice(&dhp);
    }
    SeqGrads {
        xproj: gx,
        small,
        h0: dh_carry,
        c0: dc,
        hebb0: g,
        elig0: ge,
    }
}
