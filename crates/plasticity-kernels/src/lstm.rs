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
//! # On the plastic engine
//! The candidate's plastic recurrence is the plastic network's: its trace rule is one of
//! [`crate::trace`] (pre `h_{t-1}`, post `g`, the modulator reading `h_t`), its product
//! `sum_i (w_ij + alpha_ij Hebb_ij) h_i`, trace updates, column sums and row passes are the
//! engine's ([`crate::rnn`]), and so are its checkpoints (`checkpoint.rs`). This file holds
//! the gates and the cell.
//!
//! # Memory
//! The forward keeps the gates and cell states of every step (`O(T B H)`) and the traces only
//! every `K = ceil(sqrt(T))` steps (clipping makes the update non-invertible); the backward
//! recomputes each segment's traces from its checkpoint, so memory is `O(sqrt(T) B H^2)`, never
//! `T` copies of the trace. Sequences run in parallel (rayon over the batch); `dL/dW_h` is one
//! matrix product at the end.

use crate::checkpoint::{default_segment, Segments};
use crate::parallel::in_pool;
use crate::real::Real;
use crate::rnn::{forward_pass, pass_a, pass_b, update_pass, AlphaRows, TraceGrads, Weights};
use crate::spec::{AlphaShape, SpecError};
use crate::trace::{
    kept_trace, Activity, Coefficients, Decaying, ModulatorParams, PlasticGrads, Retroactive, Rule,
    RuleGrads, Shares, Simple, StepBackward, Traces,
};
use core::ops::Range;
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
    /// The modulator's parameters, `m, fan_w, fan_b: [H]`, and the eligibility trace's rate
    /// `eta_E` (modulated only; [`ModulatorParams::default`] otherwise).
    pub modulator: ModulatorParams<'a, F>,
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
    traces: Traces<F>,
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
    /// Final traces, `hebb, elig: [B, H, H]` (`hebb` empty without plasticity, `elig` but for
    /// retroactive modulation).
    pub traces: Traces<F>,
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
    /// `dL/dalpha`, the trace rule's parameters, `dL/dHebb_0` and `dL/dE_0` (`[B, H, H]`; 0 or
    /// empty when the kind has none).
    pub plastic: PlasticGrads<F>,
    /// `dL/dh0: [B, H]`.
    pub h0: Vec<F>,
    /// `dL/dc0: [B, H]`.
    pub c0: Vec<F>,
}

fn check<F: Real>(spec: &LstmSpec, p: &LstmParams<'_, F>) -> Result<(), SpecError> {
    spec.validate()?;
    let h = spec.hidden;
    spec.check_len("w_h", p.w_h.len(), 4 * h * h)?;
    spec.check_len("alpha", p.alpha.len(), spec.alpha_len())?;
    // The modulated LSTM always fans out. Parameter values are not checked: a non-finite one
    // gives a non-finite loss, which the training loop reports.
    let modw = if spec.plasticity.is_modulated() { h } else { 0 };
    p.modulator.check_lens(modw, modw, |what, got, want| {
        spec.check_len(what, got, want)
    })
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

/// The candidate's trace rule with its parameters (see the module docs).
enum LstmRule<'a, F> {
    None,
    Decaying(Decaying<F>),
    Simple(Simple<'a, F>),
    Retroactive(Retroactive<'a, F>),
}

impl<'a, F: Real> LstmRule<'a, F> {
    fn of(kind: LstmPlasticity, p: &LstmParams<'a, F>) -> Self {
        let (params, fan_out) = (p.modulator, true);
        match kind {
            LstmPlasticity::None => LstmRule::None,
            LstmPlasticity::Hebb => LstmRule::Decaying(Decaying { eta: p.eta }),
            LstmPlasticity::Simple => LstmRule::Simple(Simple { params, fan_out }),
            LstmPlasticity::Retroactive => LstmRule::Retroactive(Retroactive { params, fan_out }),
        }
    }
}

/// Runs `$body` with `$r: Option<&R>` for the concrete rule of an [`LstmRule`] (`None`, typed as
/// the decaying rule, without plasticity).
macro_rules! with_lstm_rule {
    ($rule:expr, $r:ident => $body:expr) => {
        match $rule {
            LstmRule::None => {
                let $r: Option<&Decaying<_>> = None;
                $body
            }
            LstmRule::Decaying(x) => {
                let $r = Some(&x);
                $body
            }
            LstmRule::Simple(x) => {
                let $r = Some(&x);
                $body
            }
            LstmRule::Retroactive(x) => {
                let $r = Some(&x);
                $body
            }
        }
    };
}

/// The candidate block of `W_h` (`w`, the fixed part of the plastic weights), as `[H, H]`.
fn candidate_weights<F: Real>(w_h: &[F], h: usize) -> Vec<F> {
    w_h.chunks_exact(4 * h)
        .flat_map(|row| row[3 * h..].iter().copied())
        .collect()
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
    let w_g = candidate_weights(p.w_h, h);
    let seqs: Vec<SeqStore<F>> = in_pool(|| {
        with_lstm_rule!(LstmRule::of(spec.plasticity, p), r => (0..b)
            .into_par_iter()
            .map(|bi| forward_seq(spec, p, &w_g, r, xproj, init, bi))
            .collect())
    });
    let mut out = LstmSequence {
        spec: *spec,
        hs: vec![F::zero(); t_len * b * h],
        c: Vec::with_capacity(b * h),
        traces: Traces {
            hebb: Vec::with_capacity(tl),
            elig: Vec::new(),
        },
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
        out.traces.hebb.extend_from_slice(&s.traces.hebb);
        out.traces.elig.extend_from_slice(&s.traces.elig);
    }
    if spec.plasticity.is_modulated() {
        out.modulator = (0..t_len)
            .flat_map(|t| seqs.iter().map(move |s| s.modulator[t]))
            .collect();
    }
    out.seqs = seqs;
    Ok(out)
}

/// The activities the trace update of step `t` reads: `h_{t-1}`, the candidate `g_t`, `h_t`.
fn activity<'a, F: Real>(st: &'a SeqStore<F>, h0: &'a [F], h: usize, t: usize) -> Activity<'a, F> {
    let pre = if t == 0 {
        h0
    } else {
        &st.hs[(t - 1) * h..t * h]
    };
    Activity {
        pre,
        post: &st.gates[t * 4 * h + 3 * h..(t + 1) * 4 * h],
        modulated_by: &st.hs[t * h..(t + 1) * h],
    }
}

/// Sequence `bi`'s part of an optional `[B, len]` buffer.
fn episode_of<F>(x: Option<&[F]>, bi: usize, len: usize) -> Option<&[F]> {
    x.map(|x| &x[bi * len..(bi + 1) * len])
}

/// What the forward and the backward of sequence `bi` both set up.
struct SeqFrame<'a, F> {
    /// Whether the candidate's recurrence is plastic (the sequence has a trace rule).
    plastic: bool,
    /// Columns of `W_h` in the fixed product: the gates' `3H` with plasticity (the candidate's
    /// product is then the engine's), all `4H` without.
    fixed: usize,
    /// Steps between checkpoints of the traces.
    seg: usize,
    /// The rows of `alpha`.
    alpha: AlphaRows<'a, F>,
    /// The trace's clip `c`.
    clip: Option<F>,
    /// All `H` rows as one block (the engine's passes run over blocks of rows).
    rows: Range<usize>,
    /// The sequence's initial hidden state, `[H]`.
    h0: &'a [F],
    /// The sequence's initial cell state, `[H]`.
    c0: &'a [F],
}

impl<'a, F: Real> SeqFrame<'a, F> {
    /// Sequence `bi`'s frame, with `h0, c0: [B, H]` the batch's initial state.
    fn new(
        spec: &LstmSpec,
        alpha: &'a [F],
        plastic: bool,
        state0: [&'a [F]; 2],
        bi: usize,
    ) -> Self {
        let h = spec.hidden;
        let [h0, c0] = state0.map(|x| &x[bi * h..(bi + 1) * h]);
        SeqFrame {
            plastic,
            fixed: if plastic { 3 * h } else { 4 * h },
            seg: spec.segment_len(),
            alpha: AlphaRows::new(spec.alpha, alpha, h),
            clip: Some(F::of(spec.clip)),
            rows: 0..h,
            h0,
            c0,
        }
    }

    /// The rows as the engine's blocks.
    fn whole(&self) -> &[Range<usize>] {
        core::slice::from_ref(&self.rows)
    }
}

crate::simd::multiversion! {
    /// The forward of sequence `bi`; `w_g` is the candidate block of `W_h` (`[H, H]`) and `rule`
    /// the candidate's trace rule (`None`: a standard LSTM).
    fn forward_seq [F: Real, R: Rule<F>] [F, R] (
        spec: &LstmSpec,
        p: &LstmParams<'_, F>,
        w_g: &[F],
        rule: Option<&R>,
        xproj: &[F],
        init: &LstmInit<'_, F>,
        bi: usize,
    ) -> SeqStore<F> {
        let (h, b, t_len) = (spec.hidden, spec.batch, spec.steps);
        let (hh, h4) = (h * h, 4 * h);
        let fr = SeqFrame::new(spec, p.alpha, rule.is_some(), [init.h0, init.c0], bi);
        let (plastic, clip, whole) = (fr.plastic, fr.clip, fr.whole());
        let mut hebb = kept_trace(plastic, episode_of(init.hebb0, bi, hh), hh);
        let mut elig = kept_trace(
            plastic && R::ELIGIBILITY,
            episode_of(init.elig0, bi, hh),
            hh,
        );
        let mut st = SeqStore {
            gates: vec![F::zero(); t_len * h4],
            cs: vec![F::zero(); t_len * h],
            hs: vec![F::zero(); t_len * h],
            checkpoints: Vec::new(),
            traces: Traces::default(),
            modulator: Vec::new(),
        };
        let mut a = vec![F::zero(); h4];
        let mut acc = vec![F::zero(); h];
        let mut pending: Option<Coefficients<F>> = None;
        let (h0, c0, fixed) = (fr.h0, fr.c0, fr.fixed);
        for t in 0..t_len {
            let hp = if t == 0 {
                h0
            } else {
                &st.hs[(t - 1) * h..t * h]
            };
            a.copy_from_slice(&xproj[(t * b + bi) * h4..(t * b + bi + 1) * h4]);
            for (i, &hi) in hp.iter().enumerate() {
                if hi != F::zero() {
                    for (x, &wv) in a[..fixed].iter_mut().zip(&p.w_h[i * h4..i * h4 + fixed]) {
                        *x += hi * wv;
                    }
                }
            }
            if plastic {
                // Hebb_t (the pending update of step t-1) and sum_i (w_ij + alpha_ij Hebb_ij) h_i.
                forward_pass::<F, R>(
                    &mut hebb,
                    &mut elig,
                    whole,
                    w_g,
                    &fr.alpha,
                    hp,
                    pending.as_ref(),
                    clip,
                    &mut acc,
                );
                if t % fr.seg == 0 {
                    st.checkpoints.push((hebb.clone(), elig.clone()));
                }
                for (x, &u) in a[3 * h..].iter_mut().zip(&acc) {
                    *x += u;
                }
            }
            let gates = &mut st.gates[t * h4..(t + 1) * h4];
            for k in 0..3 * h {
                gates[k] = sigmoid(a[k]);
            }
            for k in 3 * h..h4 {
                gates[k] = a[k].tanh();
            }
            let (cs_done, cs_rest) = st.cs.split_at_mut(t * h);
            let cp: &[F] = if t == 0 { c0 } else { &cs_done[(t - 1) * h..] };
            let (hn, cn) = (&mut st.hs[t * h..(t + 1) * h], &mut cs_rest[..h]);
            for j in 0..h {
                let (gi, gf, go, gg) = (gates[j], gates[h + j], gates[2 * h + j], gates[3 * h + j]);
                cn[j] = gf * cp[j] + gi * gg;
                hn[j] = go * cn[j].tanh();
            }
            if let Some(r) = rule {
                let c = r.coefficients(&activity(&st, h0, h, t), h);
                st.modulator.extend_from_slice(&c.modulator);
                pending = Some(c);
            }
        }
        if let Some(c) = &pending {
            update_pass(&mut hebb, &mut elig, whole, c, clip, h);
        }
        st.traces = Traces { hebb, elig };
        st
    }
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
    let w_g = candidate_weights(p.w_h, h);
    let cot = SeqCotangents {
        gh,
        gc,
        ghebb,
        gelig,
    };
    let per: Vec<LstmGrads<F>> = in_pool(|| {
        with_lstm_rule!(LstmRule::of(spec.plasticity, p), r => (0..b)
            .into_par_iter()
            .map(|bi| backward_seq(&spec, p, &w_g, r, run, &cot, bi))
            .collect())
    });
    let mut xg = vec![F::zero(); t_len * b * h4];
    let mut h0 = Vec::with_capacity(b * h);
    let mut c0 = Vec::with_capacity(b * h);
    for (bi, sg) in per.iter().enumerate() {
        for t in 0..t_len {
            xg[(t * b + bi) * h4..(t * b + bi + 1) * h4]
                .copy_from_slice(&sg.xproj[t * h4..(t + 1) * h4]);
        }
        h0.extend_from_slice(&sg.h0);
        c0.extend_from_slice(&sg.c0);
    }
    let mut plastic = PlasticGrads::concat(per.into_iter().map(|sg| sg.plastic));
    // dL/dW_h = sum_t h_{t-1}^T dL/da_t, one product over [T * B, H] x [T * B, 4H].
    let bh = b * h;
    let mut hpre = Vec::with_capacity(t_len * bh);
    hpre.extend_from_slice(&run.h0);
    hpre.extend_from_slice(&run.hs[..(t_len - 1) * bh]);
    let mut w_h = vec![F::zero(); h * h4];
    F::gemm_tn_acc(h, t_len * b, h4, &hpre, &xg, &mut w_h);
    if spec.plasticity.is_plastic() && spec.alpha == AlphaShape::Scalar {
        plastic.alpha = vec![plastic.alpha.iter().copied().sum()];
    }
    Ok(LstmGrads {
        xproj: xg,
        w_h,
        plastic,
        h0,
        c0,
    })
}

/// The gradients a backward starts from (sizes checked; see [`lstm_backward`]).
struct SeqCotangents<'a, F> {
    gh: &'a [F],
    gc: Option<&'a [F]>,
    ghebb: Option<&'a [F]>,
    gelig: Option<&'a [F]>,
}

// Index loops over j keep the equations readable (several [H] vectors at once).
crate::simd::multiversion! {
    /// The backward of sequence `bi` (see the module docs for the step): its gradients, but for
    /// `dL/dW_h` (left empty; one product over the batch gives it).
    #[allow(clippy::needless_range_loop)]
    fn backward_seq [F: Real, R: Rule<F>] [F, R] (
        spec: &LstmSpec,
        p: &LstmParams<'_, F>,
        w_g: &[F],
        rule: Option<&R>,
        run: &LstmSequence<F>,
        cot: &SeqCotangents<'_, F>,
        bi: usize,
    ) -> LstmGrads<F> {
        let (h, b, t_len) = (spec.hidden, spec.batch, spec.steps);
        let (hh, h4) = (h * h, 4 * h);
        let fr = SeqFrame::new(spec, p.alpha, rule.is_some(), [&run.h0, &run.c0], bi);
        let (plastic, clip, whole) = (fr.plastic, fr.clip, fr.whole());
        let (h0, c0, fixed) = (fr.h0, fr.c0, fr.fixed);
        let st = &run.seqs[bi];
        let (one, zero) = (F::one(), F::zero());
        let start = |x: Option<&[F]>, used: bool| kept_trace(used, episode_of(x, bi, hh), hh);
        // G = dL/dHebb_{t+1}, GE = dL/dE_{t+1}.
        let mut g = start(cot.ghebb, plastic);
        let mut ge = start(cot.gelig, plastic && R::ELIGIBILITY);
        let mut galpha = vec![zero; if plastic { fr.alpha.grad_len() } else { 0 }];
        let mut rule_grads = rule.map_or_else(RuleGrads::default, |r| r.zero_grads(h));
        let mut gx = vec![zero; t_len * h4];
        let mut dh_carry = vec![zero; h];
        let mut dc = cot
            .gc
            .map_or_else(|| vec![zero; h], |x| x[bi * h..(bi + 1) * h].to_vec());
        let mut segments = Segments::new();
        let mut dhp = vec![zero; h];
        let mut dh = vec![zero; h];
        let mut dg_trace = vec![zero; h];
        for t in (0..t_len).rev() {
            let cp = if t == 0 {
                c0
            } else {
                &st.cs[(t - 1) * h..t * h]
            };
            let gates = &st.gates[t * h4..(t + 1) * h4];
            let cn = &st.cs[t * h..(t + 1) * h];
            dh.copy_from_slice(&cot.gh[(t * b + bi) * h..(t * b + bi + 1) * h]);
            dh.iter_mut().zip(&dh_carry).for_each(|(x, &y)| *x += y);
            dg_trace.iter_mut().for_each(|x| *x = zero);
            // (Hebb_t, E_t) from the segment's checkpoint, and the trace rule's share of dL/dg_t
            // (and, through the modulator, of dL/dh_t).
            let traces = rule.map(|r| {
                let (hb, el) = segments.at(t, fr.seg, &st.checkpoints, |s, hb, el| {
                    let c = r.coefficients(&activity(st, h0, h, s), h);
                    update_pass(hb, el, whole, &c, clip, h);
                });
                let act = activity(st, h0, h, t);
                let c = r.coefficients(&act, h);
                let sums = pass_a::<F, R>(hb, el, &g, &ge, whole, &c, act.pre, clip, false, h);
                let shares = Shares::Apart {
                    post: &mut dg_trace,
                    modulated_by: &mut dh,
                };
                let step = StepBackward {
                    c: &c,
                    sums: &sums,
                    act,
                    n: h,
                };
                r.backprop(&step, shares, &mut rule_grads);
                (hb, el, c)
            });
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
            // dL/dh_{t-1} through the fixed gates' weights.
            for i in 0..h {
                dhp[i] = dot(&p.w_h[i * h4..i * h4 + fixed], &da[..fixed]);
            }
            if let Some((hb, el, c)) = traces {
                // The candidate's plastic recurrence: dL/dh_{t-1}, dL/dalpha, G <- dL/dHebb_t,
                // GE <- dL/dE_t (pass B of the plastic network, with P = dL/da_g).
                let grads = TraceGrads {
                    g: &mut g,
                    g_e: &mut ge,
                    galpha: &mut galpha,
                };
                let weights = Weights {
                    w: w_g,
                    alpha: &fr.alpha,
                };
                let act = activity(st, h0, h, t);
                let (dy_pre, _) = pass_b::<F, R>(
                    hb,
                    el,
                    grads,
                    whole,
                    &weights,
                    &c,
                    (act.pre, act.post),
                    &da[3 * h..],
                    clip,
                    None,
                );
                dhp.iter_mut().zip(&dy_pre).for_each(|(x, &y)| *x += y);
            }
            dh_carry.copy_from_slice(&dhp);
        }
        LstmGrads {
            xproj: gx,
            w_h: Vec::new(),
            plastic: PlasticGrads {
                alpha: galpha,
                rule: rule_grads,
                hebb0: g,
                elig0: ge,
            },
            h0: dh_carry,
            c0: dc,
        }
    }
}
