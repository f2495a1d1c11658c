//! Trace rules: the only code that differs between the variants of the plastic network.
//!
//! Every rule changes each entry of the Hebbian trace by an affine map whose coefficients come
//! from the presynaptic activity `y` (step `t-1`) and the new activity `y'` (step `t`), then
//! optionally clips it to `[-c, c]`:
//!
//! ```text
//! Hebb'_ij = clip( A_j Hebb_ij + u_i v_j )                                  no eligibility trace
//! Hebb'_ij = clip( Hebb_ij + eta_j E_ij ),   E'_ij = d E_ij + u_i v_j       retroactive
//! ```
//!
//! | rule | `A_j` | `u_i` | `v_j` | paper |
//! |------|-------|-------|-------|-------|
//! | [`Decaying`] Hebb | `1 - eta` | `eta y_i` | `y'_j` | ICML 2018 eq. 2 |
//! | [`Oja`] | `1 - eta y'_j^2` | `y_i` | `eta y'_j` | ICML 2018 eq. 3 |
//! | [`Simple`] neuromodulation | `1` | `y_i` | `eta_j(t) y'_j` | ICLR 2019 eq. 3 |
//! | [`Retroactive`] neuromodulation | - | `y_i` | `eta_E y'_j` (`d = 1 - eta_E`) | ICLR 2019 eq. 4-5 |
//!
//! with, for the modulated rules, `M(t) = tanh(m . y' + m_b)` and `eta_j(t) = M(t)` or
//! `v_j M(t) + b_j` with fan-out ([`crate::Modulation`]).
//!
//! The engine ([`crate::rnn`]) owns everything else: the matrix-vector product, the streaming of
//! the traces, batches, threads, checkpoints and reversal. A rule gives it the step's
//! [`Coefficients`] (forward) and, in the backward, turns the column sums of the trace gradients
//! ([`ColumnSums`]) into its share of `dL/dy'` and the gradients of its own parameters.

use crate::real::Real;
use crate::spec::{EpisodeSpec, SpecError};

/// Largest amplification of rounding errors `prod_t 1/A` the reversal of a trace may face
/// before the forward stores checkpoints instead.
pub(crate) const MAX_REVERSAL_AMPLIFICATION: f64 = 1e3;

/// The coefficients of one step's trace update, each `[B, N]` unless said otherwise.
#[derive(Clone, Debug)]
pub struct Coefficients<F> {
    /// `A_j` (`1` for the modulated rules).
    pub a: Vec<F>,
    /// `u_i`.
    pub u: Vec<F>,
    /// `v_j`.
    pub v: Vec<F>,
    /// The modulated rates `eta_j(t)` (empty without modulation).
    pub rate: Vec<F>,
    /// `d = 1 - eta_E`, the decay of the eligibility trace (retroactive only).
    pub decay: F,
    /// `r_j`: the trace's share of `dL/dy_i` is `row_scale * sum_j G_ij r_j`, with `G` the
    /// gradient of the trace that `u_i v_j` enters (`Hebb`, or `E` when retroactive).
    pub row: RowFactor,
    /// See [`Coefficients::row`].
    pub row_scale: F,
    /// The modulator `M(t)`, `[B]` (empty without modulation).
    pub modulator: Vec<F>,
}

impl<F: Real> Coefficients<F> {
    /// No coefficients: empty vectors, zero scalars (what a rule without a trace gives, and the
    /// fields a rule leaves unused).
    pub fn none() -> Self {
        Coefficients {
            a: Vec::new(),
            u: Vec::new(),
            v: Vec::new(),
            rate: Vec::new(),
            decay: F::zero(),
            row: RowFactor::Post,
            row_scale: F::zero(),
            modulator: Vec::new(),
        }
    }
}

/// Which vector is `r_j` of [`Coefficients::row`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowFactor {
    /// The postsynaptic activity `y'_j`.
    Post,
    /// `v_j`.
    V,
}

/// Column sums of the backward of one step, each `[B, N]` or empty when the rule does not use
/// it. `Ĝ` is `dL/dHebb_{t+1}` through the clip, `GE = dL/dE_{t+1}`, `y` the presynaptic
/// activity, all sums over the presynaptic index `i`.
#[derive(Clone, Debug)]
pub struct ColumnSums<F> {
    /// `sum_i Ĝ_ij y_i` (rules without eligibility trace).
    pub g_y: Vec<F>,
    /// `sum_i Ĝ_ij Hebb_ij` (rules whose `A_j` depends on something, [`Rule::TRACE_SUM`]).
    pub g_h: Vec<F>,
    /// `sum_i Ĝ_ij E_ij` (retroactive).
    pub g_e: Vec<F>,
    /// `sum_i GE_ij y_i` (retroactive).
    pub ge_y: Vec<F>,
    /// `sum_i GE_ij E_ij` (retroactive).
    pub ge_e: Vec<F>,
}

impl<F: Real> ColumnSums<F> {
    /// Zeros of the sums rule `R` uses, for `len = B N` columns.
    pub(crate) fn zeros<R: Rule<F>>(len: usize) -> Self {
        let z = |used: bool| vec![F::zero(); if used { len } else { 0 }];
        let elig = R::ELIGIBILITY;
        ColumnSums {
            g_y: z(!elig),
            g_h: z(!elig && R::TRACE_SUM),
            g_e: z(elig),
            ge_y: z(elig),
            ge_e: z(elig),
        }
    }

    /// `self += other`.
    pub(crate) fn add(&mut self, other: &Self) {
        for (a, b) in [
            (&mut self.g_y, &other.g_y),
            (&mut self.g_h, &other.g_h),
            (&mut self.g_e, &other.g_e),
            (&mut self.ge_y, &other.ge_y),
            (&mut self.ge_e, &other.ge_e),
        ] {
            crate::parallel::add_into(a, b);
        }
    }
}

/// Gradients of a loss with respect to a rule's own parameters (unused ones stay 0 or empty).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleGrads<F> {
    /// `dL/deta` (decaying Hebb, Oja).
    pub eta: F,
    /// The gradients of the modulator's parameters, shaped as them (modulated rules):
    /// `dL/dm: [N]`, `dL/dm_b`, with fan-out `dL/dv, dL/db: [N]`, and `dL/deta_E`
    /// (retroactive).
    pub modulator: Modulator<F>,
}

impl<F: Real> RuleGrads<F> {
    /// `self += other`.
    pub(crate) fn add(&mut self, other: &Self) {
        self.eta += other.eta;
        self.modulator.add(&other.modulator);
    }
}

/// The traces of a batch of `B` episodes of `N` neurons (the plastic LSTM: `H` hidden units),
/// at one step: the Hebbian trace `hebb: [B, N, N]` and the eligibility trace `elig: [B, N, N]`
/// (empty but with retroactive modulation; both empty without plasticity).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Traces<F> {
    /// The Hebbian trace `Hebb`, row `i` presynaptic.
    pub hebb: Vec<F>,
    /// The eligibility trace `E` (retroactive modulation only).
    pub elig: Vec<F>,
}

/// Gradients of what every plastic recurrence has (the plastic network's [`crate::Grads`], the
/// plastic LSTM's [`crate::LstmGrads`]): the plasticity coefficients, the trace rule's own
/// parameters and the initial traces. With `N` neurons (the LSTM: `H` hidden units) and `B`
/// episodes; what the recurrence does not have stays 0 or empty.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlasticGrads<F> {
    /// `dL/dalpha`, shaped like `alpha`.
    pub alpha: Vec<F>,
    /// Gradients of the trace rule's own parameters (`eta`, or the modulator's).
    pub rule: RuleGrads<F>,
    /// `dL/dHebb_0: [B, N, N]`.
    pub hebb0: Vec<F>,
    /// `dL/dE_0: [B, N, N]` (retroactive; empty otherwise).
    pub elig0: Vec<F>,
}

impl<F: Real> PlasticGrads<F> {
    /// The gradients of a batch run in parts (episodes or sequences, in batch order): the
    /// parameters' gradients summed in that order, the initial traces' gradients one after the
    /// other.
    pub(crate) fn concat(parts: impl IntoIterator<Item = Self>) -> Self {
        parts
            .into_iter()
            .reduce(|mut all, part| {
                crate::parallel::add_into(&mut all.alpha, &part.alpha);
                all.rule.add(&part.rule);
                all.hebb0.extend_from_slice(&part.hebb0);
                all.elig0.extend_from_slice(&part.elig0);
                all
            })
            .unwrap_or_default()
    }
}

/// The activities one step's trace update reads, each `[B, N]`.
#[derive(Clone, Copy, Debug)]
pub struct Activity<'a, F> {
    /// Presynaptic activity `y_i` (the plastic RNN: `y_{t-1}`; the plastic LSTM: `h_{t-1}`).
    pub pre: &'a [F],
    /// Postsynaptic activity `y'_j` (the plastic RNN: `y_t`; the plastic LSTM: the cell
    /// candidate `g_t`).
    pub post: &'a [F],
    /// What the modulator reads (the plastic RNN: `y_t`; the plastic LSTM: `h_t`).
    pub modulated_by: &'a [F],
}

impl<'a, F> Activity<'a, F> {
    /// The plastic RNN's step: the modulator reads the postsynaptic activity.
    pub fn recurrent(pre: &'a [F], post: &'a [F]) -> Self {
        Activity {
            pre,
            post,
            modulated_by: post,
        }
    }
}

/// What the backward of one step's trace update reads ([`Rule::backprop`]): the step's
/// coefficients and activities, and the column sums of pass A.
#[derive(Clone, Copy, Debug)]
pub struct StepBackward<'a, F> {
    /// The coefficients of the step's update.
    pub c: &'a Coefficients<F>,
    /// The column sums of the trace gradients, [`ColumnSums`].
    pub sums: &'a ColumnSums<F>,
    /// The activities the update read, each `[B, N]`.
    pub act: Activity<'a, F>,
    /// `N`, the length of one episode's row of `act.post` (neurons; the LSTM: `H`).
    pub n: usize,
}

/// Where [`Rule::backprop`] adds the trace's share of the gradients of the activities, `[B, N]`.
#[derive(Debug)]
pub enum Shares<'a, F> {
    /// One buffer for both, when the postsynaptic activity is also what the modulator reads
    /// (the plastic RNN's `dL/dy_t`).
    Together(&'a mut [F]),
    /// Separate buffers: `dL/dpost` and `dL/dmodulated_by` (the plastic LSTM's candidate and
    /// hidden state).
    Apart {
        /// Share of `dL/dpost`.
        post: &'a mut [F],
        /// Share of `dL/dmodulated_by`.
        modulated_by: &'a mut [F],
    },
}

impl<F> Shares<'_, F> {
    /// The buffer of the postsynaptic activity's share.
    fn post(&mut self) -> &mut [F] {
        match self {
            Shares::Together(y) => y,
            Shares::Apart { post, .. } => post,
        }
    }
}

/// A trace rule: the per-variant part of the plastic engine (see the module docs).
pub trait Rule<F: Real>: Sync {
    /// Whether the rule keeps a trace at all ([`NoTrace`] does not: the network without
    /// plasticity, whose step is the product `y w` alone).
    const PLASTIC: bool = true;
    /// Whether the rule keeps an eligibility trace `E` beside `Hebb`.
    const ELIGIBILITY: bool;
    /// Whether the backward needs `sum_i Ĝ_ij Hebb_ij` ([`ColumnSums::g_h`]).
    const TRACE_SUM: bool;

    /// Whether the forward may plan to reverse the trace in the backward (no clipping and a
    /// moderate amplification of rounding errors).
    fn reversible(&self, spec: &EpisodeSpec) -> bool;

    /// The coefficients of one step's update.
    fn coefficients(&self, act: &Activity<'_, F>, n: usize) -> Coefficients<F>;

    /// Zero gradients of the rule's parameters for `n` neurons.
    fn zero_grads(&self, n: usize) -> RuleGrads<F>;

    /// The backward through the step's coefficients: adds the rule's share of the activities'
    /// gradients to `shares` and the gradients of its parameters to `grads`.
    fn backprop(&self, step: &StepBackward<'_, F>, shares: Shares<'_, F>, grads: &mut RuleGrads<F>);
}

/// Whether a trace decaying by at least `1 - eta` per step can be reversed over the episode:
/// no clipping, `eta < 1`, and `(1 - eta)^-T` below [`MAX_REVERSAL_AMPLIFICATION`].
fn decay_reversible<F: Real>(spec: &EpisodeSpec, eta: F) -> bool {
    let eta = eta.to_f64().unwrap_or(f64::NAN);
    spec.clip.is_none()
        && eta < 1.0
        && (eta <= 0.0 || -(spec.steps as f64) * (1.0 - eta).ln() < MAX_REVERSAL_AMPLIFICATION.ln())
}

/// A rule with a fixed, learned rate `eta` (ICML 2018): [`Decaying`] Hebb when `OJA` is false,
/// [`Oja`]'s rule when true.
#[derive(Clone, Copy, Debug)]
pub struct FixedRate<F, const OJA: bool> {
    /// The plasticity rate `eta`.
    pub eta: F,
}

/// Decaying Hebb (ICML 2018 eq. 2): `Hebb'_ij = (1 - eta) Hebb_ij + eta y_i y'_j`.
pub type Decaying<F> = FixedRate<F, false>;

/// Oja's rule (ICML 2018 eq. 3): `Hebb'_ij = Hebb_ij + eta y'_j (y_i - Hebb_ij y'_j)`.
pub type Oja<F> = FixedRate<F, true>;

impl<F: Real, const OJA: bool> Rule<F> for FixedRate<F, OJA> {
    const ELIGIBILITY: bool = false;
    const TRACE_SUM: bool = true;

    fn reversible(&self, spec: &EpisodeSpec) -> bool {
        // Oja: A_j = 1 - eta y'_j^2 >= 1 - eta since |y'| <= 1, the decaying rule's bound holds.
        decay_reversible(spec, self.eta)
    }

    fn coefficients(&self, act: &Activity<'_, F>, _n: usize) -> Coefficients<F> {
        // `u` has the presynaptic activity's length, `A` and `v` the postsynaptic one's (they
        // differ in a feed-forward layer).
        let (ypre, ypost) = (act.pre, act.post);
        let eta = self.eta;
        let (a, u, v) = if OJA {
            (
                ypost.iter().map(|&y| F::one() - eta * y * y).collect(),
                ypre.to_vec(),
                ypost.iter().map(|&y| eta * y).collect(),
            )
        } else {
            (
                vec![F::one() - eta; ypost.len()],
                ypre.iter().map(|&y| eta * y).collect(),
                ypost.to_vec(),
            )
        };
        Coefficients {
            a,
            u,
            v,
            row_scale: eta,
            ..Coefficients::none()
        }
    }

    fn zero_grads(&self, _n: usize) -> RuleGrads<F> {
        RuleGrads::default()
    }

    fn backprop(
        &self,
        step: &StepBackward<'_, F>,
        mut shares: Shares<'_, F>,
        grads: &mut RuleGrads<F>,
    ) {
        let (sums, act) = (step.sums, &step.act);
        // Decaying: d Hebb'/d eta = y_i y'_j - Hebb_ij, d Hebb'/d y'_j = eta y_i.
        // Oja: d Hebb'/d eta = y'_j (y_i - Hebb_ij y'_j), d Hebb'/d y'_j = eta y_i - 2 eta y'_j Hebb_ij.
        let two = F::one() + F::one();
        for (k, yh) in shares.post().iter_mut().enumerate() {
            let y = act.post[k];
            if OJA {
                grads.eta += y * sums.g_y[k] - y * y * sums.g_h[k];
                *yh = *yh + self.eta * sums.g_y[k] + -two * self.eta * y * sums.g_h[k];
            } else {
                grads.eta += y * sums.g_y[k] - sums.g_h[k];
                *yh += self.eta * sums.g_y[k];
            }
        }
    }
}

/// No trace: the same network without plasticity (`alpha = 0`; the papers' baseline). The
/// engine then runs its step as the product `y_t = f(y_{t-1} w + x_t)` alone, with no `N x N`
/// buffer beside `w`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTrace;

impl<F: Real> Rule<F> for NoTrace {
    const PLASTIC: bool = false;
    const ELIGIBILITY: bool = false;
    const TRACE_SUM: bool = false;

    fn reversible(&self, _spec: &EpisodeSpec) -> bool {
        true // nothing to reverse or store
    }

    fn coefficients(&self, _act: &Activity<'_, F>, _n: usize) -> Coefficients<F> {
        Coefficients::none()
    }

    fn zero_grads(&self, _n: usize) -> RuleGrads<F> {
        RuleGrads::default()
    }

    fn backprop(&self, _: &StepBackward<'_, F>, _: Shares<'_, F>, _: &mut RuleGrads<F>) {}
}

/// The neuromodulator's learned parameters (ICLR 2019 section 3), borrowed: the plastic RNN's
/// ([`crate::ModulatedParams`]) and the plastic LSTM's ([`crate::LstmParams`]). `N` is the
/// number of neurons the modulator reads and modulates (the LSTM: `H` hidden units); the
/// default is empty slices and zeros (no modulator).
#[derive(Clone, Copy, Debug, Default)]
pub struct ModulatorParams<'a, F> {
    /// Modulator weights `m: [N]`: `M(t) = tanh(sum_j m_j y_j(t) + m_b)`.
    pub m: &'a [F],
    /// Modulator bias `m_b`.
    pub m_bias: F,
    /// Fan-out weights `v: [N]` (`eta_j(t) = v_j M(t) + b_j`); empty without fan-out.
    pub fan_w: &'a [F],
    /// Fan-out biases `b: [N]`; empty without fan-out.
    pub fan_b: &'a [F],
    /// Rate `eta_E` of the eligibility trace (retroactive only; ignored by simple modulation,
    /// whose gradient for it is 0).
    pub eta_e: F,
}

/// The neuromodulator's parameters, owned: the values that [`ModulatorParams`] borrows (see it
/// for the equations), or the gradients of a loss with respect to them, which have their shapes
/// ([`RuleGrads::modulator`]). `N` is the number of neurons the modulator reads and modulates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Modulator<F> {
    /// Modulator weights `m: [N]`.
    pub m: Vec<F>,
    /// Modulator bias `m_b`.
    pub m_bias: F,
    /// Fan-out weights `v: [N]`; empty without fan-out.
    pub fan_w: Vec<F>,
    /// Fan-out biases `b: [N]`; empty without fan-out.
    pub fan_b: Vec<F>,
    /// Rate `eta_E` of the eligibility trace (retroactive only).
    pub eta_e: F,
}

impl<F: Real> Modulator<F> {
    /// The same values, borrowed.
    pub fn params(&self) -> ModulatorParams<'_, F> {
        ModulatorParams {
            m: &self.m,
            m_bias: self.m_bias,
            fan_w: &self.fan_w,
            fan_b: &self.fan_b,
            eta_e: self.eta_e,
        }
    }

    /// `self += other`.
    pub(crate) fn add(&mut self, other: &Self) {
        self.m_bias += other.m_bias;
        self.eta_e += other.eta_e;
        crate::parallel::add_into(&mut self.m, &other.m);
        crate::parallel::add_into(&mut self.fan_w, &other.fan_w);
        crate::parallel::add_into(&mut self.fan_b, &other.fan_b);
    }
}

impl<F> ModulatorParams<'_, F> {
    /// Checks the sizes of the vectors with `check_len(what, got, want)`: `m: [n]`,
    /// `fan_w, fan_b: [fan]` (`fan` is `n` with fan-out, else 0).
    pub(crate) fn check_lens(
        &self,
        n: usize,
        fan: usize,
        check_len: impl Fn(&str, usize, usize) -> Result<(), SpecError>,
    ) -> Result<(), SpecError> {
        check_len("m", self.m.len(), n)?;
        check_len("fan_w", self.fan_w.len(), fan)?;
        check_len("fan_b", self.fan_b.len(), fan)
    }
}

/// Neuromodulated plasticity (ICLR 2019 section 3): [`Simple`] when `RETRO` is false,
/// [`Retroactive`] when true. The modulator `M(t) = tanh(sum_j m_j y_j(t) + m_b)` reads the new
/// activity and sets the rates `eta_j(t) = M(t)`, or `v_j M(t) + b_j` with fan-out.
#[derive(Clone, Copy, Debug)]
pub struct Modulated<'a, F, const RETRO: bool> {
    /// The modulator's parameters (and `eta_E`).
    pub params: ModulatorParams<'a, F>,
    /// Whether the modulator fans out to one rate per neuron.
    pub fan_out: bool,
}

impl<F: Real, const RETRO: bool> Modulated<'_, F, RETRO> {
    /// The modulator and the rates of one step from the new activity `y: [B, N]`: returns
    /// `(M: [B], eta: [B, N])`.
    pub fn rates(&self, y: &[F], n: usize) -> (Vec<F>, Vec<F>) {
        let md = &self.params;
        let batch = y.len() / n;
        let mut ms = Vec::with_capacity(batch);
        let mut eta = Vec::with_capacity(batch * n);
        for yb in y.chunks_exact(n) {
            let q = yb.iter().zip(md.m).map(|(&a, &b)| a * b).sum::<F>() + md.m_bias;
            let m = q.tanh();
            ms.push(m);
            if self.fan_out {
                eta.extend(md.fan_w.iter().zip(md.fan_b).map(|(&v, &b)| v * m + b));
            } else {
                eta.extend(core::iter::repeat_n(m, n));
            }
        }
        (ms, eta)
    }
}

/// Simple neuromodulation (ICLR 2019 eq. 3): `Hebb'_ij = clip(Hebb_ij + eta_j(t) y_i y'_j)`.
pub type Simple<'a, F> = Modulated<'a, F, false>;

/// Retroactive neuromodulation (ICLR 2019 eq. 4-5): `Hebb'_ij = clip(Hebb_ij + eta_j(t) E_ij)`,
/// `E'_ij = (1 - eta_E) E_ij + eta_E y_i y'_j` (`E` before this step's coincidence gates `Hebb`).
pub type Retroactive<'a, F> = Modulated<'a, F, true>;

impl<F: Real, const RETRO: bool> Rule<F> for Modulated<'_, F, RETRO> {
    const ELIGIBILITY: bool = RETRO;
    const TRACE_SUM: bool = false;

    fn reversible(&self, _spec: &EpisodeSpec) -> bool {
        // The paper always clips modulated traces; the backward recomputes from checkpoints.
        false
    }

    fn coefficients(&self, act: &Activity<'_, F>, n: usize) -> Coefficients<F> {
        let (ypre, ypost) = (act.pre, act.post);
        let (m, rate) = self.rates(act.modulated_by, n);
        let eta_e = self.params.eta_e;
        let v: Vec<F> = if RETRO {
            ypost.iter().map(|&y| eta_e * y).collect()
        } else {
            ypost.iter().zip(&rate).map(|(&y, &e)| e * y).collect()
        };
        Coefficients {
            a: vec![F::one(); ypost.len()],
            u: ypre.to_vec(),
            row: RowFactor::V,
            v,
            rate,
            decay: F::one() - eta_e,
            row_scale: F::one(),
            modulator: m,
        }
    }

    fn zero_grads(&self, n: usize) -> RuleGrads<F> {
        let fan = if self.fan_out { n } else { 0 };
        let modulator = Modulator {
            m: vec![F::zero(); n],
            fan_w: vec![F::zero(); fan],
            fan_b: vec![F::zero(); fan],
            ..Modulator::default()
        };
        RuleGrads {
            modulator,
            ..RuleGrads::default()
        }
    }

    // Index loops over j keep the equations readable (several [B, N] vectors at once).
    #[allow(clippy::needless_range_loop)]
    fn backprop(
        &self,
        step: &StepBackward<'_, F>,
        mut shares: Shares<'_, F>,
        grads: &mut RuleGrads<F>,
    ) {
        let StepBackward { c, sums, act, n } = *step;
        let (ypost, read) = (act.post, act.modulated_by);
        let md = &self.params;
        let grads = &mut grads.modulator;
        let one = F::one();
        for (bi, m_t) in c.modulator.iter().copied().enumerate() {
            // dL/deta_j: simple sum_i Ĝ_ij y_i y'_j; retroactive sum_i Ĝ_ij E_ij. Then dL/dM.
            let mut g_mod = F::zero();
            for j in 0..n {
                let k = bi * n + j;
                let geta = if RETRO {
                    sums.g_e[k]
                } else {
                    ypost[k] * sums.g_y[k]
                };
                if self.fan_out {
                    g_mod += md.fan_w[j] * geta;
                    grads.fan_w[j] += m_t * geta;
                    grads.fan_b[j] += geta;
                } else {
                    g_mod += geta;
                }
            }
            let gq = g_mod * (one - m_t * m_t);
            grads.m_bias += gq;
            for j in 0..n {
                let k = bi * n + j;
                grads.m[j] += gq * read[k];
                let trace_part = if RETRO {
                    grads.eta_e += ypost[k] * sums.ge_y[k] - sums.ge_e[k];
                    md.eta_e * sums.ge_y[k]
                } else {
                    c.rate[k] * sums.g_y[k]
                };
                match &mut shares {
                    Shares::Together(y) => y[k] = y[k] + gq * md.m[j] + trace_part,
                    Shares::Apart { post, modulated_by } => {
                        modulated_by[k] += gq * md.m[j];
                        post[k] += trace_part;
                    }
                }
            }
        }
    }
}

/// A trace buffer of `len` values: the `given` one, zeros without one, or empty when the rule
/// does not keep this trace (`kept` false).
pub(crate) fn kept_trace<F: Real>(kept: bool, given: Option<&[F]>, len: usize) -> Vec<F> {
    match (kept, given) {
        (false, _) => Vec::new(),
        (true, Some(x)) => x.to_vec(),
        (true, None) => vec![F::zero(); len],
    }
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
