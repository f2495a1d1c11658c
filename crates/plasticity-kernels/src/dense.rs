//! A feed-forward layer with plastic connections (ICML 2018 section 4.3: the output layer of the
//! Omniglot network) on the engine's passes: the same trace rules ([`crate::trace`]), plastic
//! product, update, column sums and row passes as the plastic RNN ([`crate::rnn`]), with the
//! layer's input in place of the previous activity and `I != O` allowed.
//!
//! ```text
//! z_t         = x_t (w + alpha * Hebb_t) + c_t                      [B, O]   eq. 1, feed-forward
//! y_t         = f(z_t)                                              softmax, tanh or identity
//! Hebb_{t+1}  = rule(Hebb_t, pre = x_t, post = y_t),  Hebb_0 = 0    eq. 2 (decaying) or 3 (Oja)
//! ```
//!
//! `x_t: [B, I]` is the layer's input at step `t`, `c_t: [B, O]` an optional additive term on the
//! logits (Omniglot: the support step's label times 1000, which clamps the output to the label),
//! `w, alpha: [I, O]` (row `i` = input) and `eta` one scalar. The trace takes the *activated*
//! output `y`, so with a softmax output and the label clamp `Hebb` accumulates feature-label
//! associations. The kernels return the logits `z`; the caller applies `f` for its own use.
//!
//! Memory: the backward recomputes `Hebb_t` from checkpoints every `ceil(sqrt(T))` steps, as the
//! engine does for the traces it does not reverse.

use crate::checkpoint::{default_segment, Segments, TracePair};
use crate::real::Real;
use crate::rnn::{forward_pass, pass_a, pass_b, update_pass, AlphaRows, TraceGrads, Weights};
use crate::spec::{AlphaShape, SpecError, TraceRule};
use crate::trace::{Activity, Decaying, Oja, Rule, Shares, StepBackward};
use core::ops::Range;
use serde::{Deserialize, Serialize};

/// The output activation `f` of a plastic feed-forward layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenseActivation {
    /// Softmax over the outputs (ICML 2018, Omniglot).
    Softmax,
    /// `tanh` of each output.
    Tanh,
    /// No activation.
    Identity,
}

/// What a plastic feed-forward episode computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DenseSpec {
    /// Inputs `I`.
    pub inputs: usize,
    /// Outputs `O`.
    pub outputs: usize,
    /// Episodes `B`.
    pub batch: usize,
    /// Steps `T`.
    pub steps: usize,
    /// Trace rule.
    pub rule: TraceRule,
    /// Output activation (the trace's postsynaptic activity).
    pub activation: DenseActivation,
}

/// Largest number of values of one buffer (`B I O` for the trace): beyond it a size is taken
/// for a mistake rather than allocated.
const MAX_VALUES: usize = 1 << 34;

impl DenseSpec {
    /// Checks the sizes; the message names the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        for (name, v) in [
            ("inputs", self.inputs),
            ("outputs", self.outputs),
            ("batch", self.batch),
            ("steps", self.steps),
        ] {
            if v == 0 {
                return Err(SpecError(format!("{name}: must be positive")));
            }
        }
        let trace = (self.batch as u128) * (self.inputs as u128) * (self.outputs as u128);
        let seq =
            (self.steps as u128) * (self.batch as u128) * (self.inputs.max(self.outputs) as u128);
        if trace.max(seq) > MAX_VALUES as u128 {
            return Err(SpecError(format!(
                "inputs x outputs x batch ({} x {} x {}) or steps: too large",
                self.inputs, self.outputs, self.batch
            )));
        }
        Ok(())
    }

    fn check_len(&self, what: &str, got: usize, want: usize) -> Result<(), SpecError> {
        if got == want {
            Ok(())
        } else {
            Err(SpecError(format!(
                "{what}: expected {want} values, got {got}"
            )))
        }
    }
}

/// The learned parameters of a plastic feed-forward layer, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct DenseParams<'a, F> {
    /// Fixed weights `w: [I, O]`.
    pub w: &'a [F],
    /// Plasticity coefficients `alpha: [I, O]`.
    pub alpha: &'a [F],
    /// Plasticity rate `eta`.
    pub eta: F,
}

/// What the forward keeps for the backward.
#[derive(Clone, Debug)]
pub struct DenseEpisode<F> {
    spec: DenseSpec,
    /// `x: [T, B, I]`.
    x: Vec<F>,
    /// `z: [T, B, O]`, the logits (offset included).
    z: Vec<F>,
    /// `y = f(z): [T, B, O]`.
    y: Vec<F>,
    /// `Hebb_t` every `segment` steps, each `[B, I, O]`.
    checkpoints: Vec<TracePair<F>>,
    segment: usize,
}

impl<F: Real> DenseEpisode<F> {
    /// What the episode computed.
    pub fn spec(&self) -> &DenseSpec {
        &self.spec
    }

    /// The logits `z: [T, B, O]` (time-major), offset included.
    pub fn logits(&self) -> &[F] {
        &self.z
    }

    /// The outputs `y = f(z): [T, B, O]` (time-major).
    pub fn outputs(&self) -> &[F] {
        &self.y
    }
}

/// Gradients of a loss with respect to a plastic feed-forward episode's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseGrads<F> {
    /// `dL/dw: [I, O]`.
    pub w: Vec<F>,
    /// `dL/dalpha: [I, O]`.
    pub alpha: Vec<F>,
    /// `dL/deta`.
    pub eta: F,
    /// `dL/dx: [T, B, I]`.
    pub x: Vec<F>,
    /// `dL/dc: [T, B, O]` (the logit offset's gradient, which is also `dL/dz` in total).
    pub offset: Vec<F>,
}

/// Runs the rule `$r` the spec names: `Decaying` or `Oja` with rate `$eta`.
macro_rules! with_dense_rule {
    ($rule:expr, $eta:expr, $r:ident => $body:expr) => {
        match $rule {
            TraceRule::Hebb => {
                let $r = Decaying { eta: $eta };
                $body
            }
            TraceRule::Oja => {
                let $r = Oja { eta: $eta };
                $body
            }
        }
    };
}

/// Runs the layer over `T` steps from `Hebb_0 = 0`. `x: [T, B, I]`, `offset: [T, B, O]` or
/// empty (none), time-major.
pub fn dense_forward<F: Real>(
    spec: &DenseSpec,
    p: &DenseParams<'_, F>,
    x: &[F],
    offset: &[F],
) -> Result<DenseEpisode<F>, SpecError> {
    spec.validate()?;
    let (i, o, b, t_len) = (spec.inputs, spec.outputs, spec.batch, spec.steps);
    spec.check_len("w", p.w.len(), i * o)?;
    spec.check_len("alpha", p.alpha.len(), i * o)?;
    spec.check_len("x", x.len(), t_len * b * i)?;
    if !offset.is_empty() {
        spec.check_len("offset", offset.len(), t_len * b * o)?;
    }
    Ok(with_dense_rule!(spec.rule, p.eta, r => forward_rule(spec, p, &r, x, offset)))
}

/// The rows of the layer's `[I, O]` buffers, in one block: the layer is small (Omniglot:
/// 64 x 5), so its episodes run on one thread.
fn whole(spec: &DenseSpec) -> Vec<Range<usize>> {
    core::iter::once(0..spec.inputs).collect()
}

fn forward_rule<F: Real, R: Rule<F>>(
    spec: &DenseSpec,
    p: &DenseParams<'_, F>,
    rule: &R,
    x: &[F],
    offset: &[F],
) -> DenseEpisode<F> {
    let (i, o, b, t_len) = (spec.inputs, spec.outputs, spec.batch, spec.steps);
    let (bi_, bo) = (b * i, b * o);
    let blocks = whole(spec);
    let alpha = AlphaRows::new(AlphaShape::PerConnection, p.alpha, o);
    let segment = default_segment(t_len);
    let mut hebb = vec![F::zero(); b * i * o];
    let mut checkpoints = vec![(hebb.clone(), Vec::new())];
    let mut z = vec![F::zero(); t_len * bo];
    let mut y = vec![F::zero(); t_len * bo];
    let mut pending = None;
    for t in 0..t_len {
        let xt = &x[t * bi_..(t + 1) * bi_];
        let zt = &mut z[t * bo..(t + 1) * bo];
        // Applies the update of step t-1, then z_t = x_t (w + alpha Hebb_t).
        forward_pass::<F, R>(
            &mut hebb,
            &mut [],
            &blocks,
            p.w,
            &alpha,
            xt,
            pending.as_ref(),
            None,
            zt,
        );
        if t > 0 && t % segment == 0 {
            checkpoints.push((hebb.clone(), Vec::new()));
        }
        if !offset.is_empty() {
            for (zv, &c) in zt.iter_mut().zip(&offset[t * bo..(t + 1) * bo]) {
                *zv += c;
            }
        }
        let yt = &mut y[t * bo..(t + 1) * bo];
        activate(spec.activation, zt, yt, o);
        pending = Some(rule.coefficients(&Activity::recurrent(xt, yt), o));
    }
    DenseEpisode {
        spec: *spec,
        x: x.to_vec(),
        z,
        y,
        checkpoints,
        segment,
    }
}

/// `y = f(z)` for each of the `B` rows of `o` outputs.
fn activate<F: Real>(f: DenseActivation, z: &[F], y: &mut [F], o: usize) {
    match f {
        DenseActivation::Softmax => {
            for (zr, yr) in z.chunks_exact(o).zip(y.chunks_exact_mut(o)) {
                let max = zr.iter().copied().fold(F::neg_infinity(), F::max);
                let mut sum = F::zero();
                for (yv, &zv) in yr.iter_mut().zip(zr) {
                    *yv = (zv - max).exp();
                    sum += *yv;
                }
                yr.iter_mut().for_each(|v| *v = *v / sum);
            }
        }
        DenseActivation::Tanh => y.iter_mut().zip(z).for_each(|(yv, &zv)| *yv = zv.tanh()),
        DenseActivation::Identity => y.copy_from_slice(z),
    }
}

/// Adds `J_f(z)^T gy` to `gz`, row by row (`y = f(z)`).
fn activation_backward<F: Real>(f: DenseActivation, y: &[F], gy: &[F], gz: &mut [F], o: usize) {
    match f {
        DenseActivation::Softmax => {
            // dz_j = y_j (gy_j - sum_k gy_k y_k).
            for ((yr, gr), zr) in y
                .chunks_exact(o)
                .zip(gy.chunks_exact(o))
                .zip(gz.chunks_exact_mut(o))
            {
                let dot: F = yr.iter().zip(gr).map(|(&a, &b)| a * b).sum();
                for ((zv, &yv), &gv) in zr.iter_mut().zip(yr).zip(gr) {
                    *zv += yv * (gv - dot);
                }
            }
        }
        DenseActivation::Tanh => {
            for ((zv, &yv), &gv) in gz.iter_mut().zip(y).zip(gy) {
                *zv += gv * (F::one() - yv * yv);
            }
        }
        DenseActivation::Identity => gz.iter_mut().zip(gy).for_each(|(zv, &gv)| *zv += gv),
    }
}

/// The backward of [`dense_forward`]: from `gz = dL/dz: [T, B, O]` (time-major), the gradients
/// of every input.
pub fn dense_backward<F: Real>(
    p: &DenseParams<'_, F>,
    ep: &DenseEpisode<F>,
    gz: &[F],
) -> Result<DenseGrads<F>, SpecError> {
    let spec = ep.spec;
    spec.check_len("w", p.w.len(), spec.inputs * spec.outputs)?;
    spec.check_len("alpha", p.alpha.len(), spec.inputs * spec.outputs)?;
    spec.check_len("gz", gz.len(), spec.steps * spec.batch * spec.outputs)?;
    Ok(with_dense_rule!(spec.rule, p.eta, r => backward_rule(p, &r, ep, gz)))
}

fn backward_rule<F: Real, R: Rule<F>>(
    p: &DenseParams<'_, F>,
    rule: &R,
    ep: &DenseEpisode<F>,
    gz: &[F],
) -> DenseGrads<F> {
    let spec = &ep.spec;
    let (i, o, b, t_len) = (spec.inputs, spec.outputs, spec.batch, spec.steps);
    let (bi_, bo) = (b * i, b * o);
    let blocks = whole(spec);
    let alpha = AlphaRows::new(AlphaShape::PerConnection, p.alpha, o);
    let x_at = |t: usize| &ep.x[t * bi_..(t + 1) * bi_];
    let y_at = |t: usize| &ep.y[t * bo..(t + 1) * bo];
    // dL/dHebb_{t+1} (zero past the last step: Hebb_T is not used).
    let mut g = vec![F::zero(); b * i * o];
    let mut galpha = vec![F::zero(); i * o];
    let mut rule_grads = rule.zero_grads(o);
    let mut gx = vec![F::zero(); t_len * bi_];
    let mut pz_all = vec![F::zero(); t_len * bo];
    let mut gy_trace = vec![F::zero(); bo];
    let mut segments = Segments::new();
    for t in (0..t_len).rev() {
        let (xt, yt) = (x_at(t), y_at(t));
        let act = Activity::recurrent(xt, yt);
        let c = rule.coefficients(&act, o);
        let (h, _) = segments.at(t, ep.segment, &ep.checkpoints, |s, h, e| {
            let cs = rule.coefficients(&Activity::recurrent(x_at(s), y_at(s)), o);
            update_pass(h, e, &blocks, &cs, None, o);
        });
        // The trace's share of dL/dy_t (through Hebb_{t+1} = rule(Hebb_t, x_t, y_t)).
        let sums = pass_a::<F, R>(h, &[], &g, &[], &blocks, &c, xt, None, false, o);
        gy_trace.iter_mut().for_each(|v| *v = F::zero());
        let step = StepBackward {
            c: &c,
            sums: &sums,
            act,
            n: o,
        };
        rule.backprop(&step, Shares::Together(&mut gy_trace), &mut rule_grads);
        // P_t = dL/dz_t: the loss's share and the trace's, through f.
        let pz = &mut pz_all[t * bo..(t + 1) * bo];
        pz.copy_from_slice(&gz[t * bo..(t + 1) * bo]);
        activation_backward(spec.activation, yt, &gy_trace, pz, o);
        // dL/dx_t, dL/dalpha, and g <- dL/dHebb_t.
        let grads = TraceGrads {
            g: &mut g,
            g_e: &mut [],
            galpha: &mut galpha,
        };
        let weights = Weights {
            w: p.w,
            alpha: &alpha,
        };
        let (gxt, _) = pass_b::<F, R>(
            h,
            &[],
            grads,
            &blocks,
            &weights,
            &c,
            (xt, yt),
            pz,
            None,
            None,
        );
        gx[t * bi_..(t + 1) * bi_].copy_from_slice(&gxt);
    }
    // dL/dw = sum_t x_t^T P_t, one product over [T * B, I] and [T * B, O].
    let mut gw = vec![F::zero(); i * o];
    F::gemm_tn_acc(i, t_len * b, o, &ep.x, &pz_all, &mut gw);
    DenseGrads {
        w: gw,
        alpha: galpha,
        eta: rule_grads.eta,
        x: gx,
        offset: pz_all,
    }
}
