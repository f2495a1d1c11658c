//! The recurrence of a plastic and neuromodulated LSTM (ICLR 2019 section 4.3): one op over
//! `plasticity_kernels::lstm` (see there for the equations).

use super::device::{data, given};
use super::rule::RuleInputs;
use super::{op_tensors, HostKernels, Input, Op};
use crate::tensors::swap_bt;
use burn::tensor::{Tensor, TensorData};
use plasticity_kernels::{self as kernels, LstmPlasticity, LstmSequence, LstmSpec, SpecError};

op_tensors!(
    /// The inputs of an LSTM recurrence. `w_h: [H, 4H]`, the rule's parameters
    /// ([`RuleInputs`], `N = H`: `alpha` for plastic kinds, `eta` for Hebb, the modulator for
    /// modulated kinds, `eta_e` for retroactive), `xproj: [B, T, 4H]`, `h0, c0: [B, H]`,
    /// `hebb0, elig0: [B, H, H]` (an empty initial trace is zero).
    LstmInputs { w_h, rule: RuleInputs, xproj, h0, c0, hebb0, elig0 }
);

op_tensors!(
    /// The outputs of an LSTM recurrence. `hs: [B, T, H]` (carries the gradients), `c: [B, H]`,
    /// `hebb, elig: [B, H, H]`, `modulator: [B, T]` (each empty where the kind has none).
    LstmOutputs { hs, c, hebb, elig, modulator }
);

/// The learned tensors of a (plastic) LSTM recurrence; see [`plasticity_kernels::lstm`] for the
/// equations. Tensors a spec does not use are `None`.
#[derive(Clone, Debug)]
pub struct LstmTensors {
    /// Recurrent weights `W_h: [H, 4H]`, gate blocks `i, f, o, g` (the `g` block is `w`).
    pub w_h: Tensor<2>,
    /// Plasticity coefficients `alpha: [H, H] | [1, H] | [1, 1]` (plastic kinds).
    pub alpha: Option<Tensor<2>>,
    /// Trace rate `eta: [1]` ([`LstmPlasticity::Hebb`]).
    pub eta: Option<Tensor<1>>,
    /// Modulator `(m: [H], m_b: [1], v: [H], b: [H])` (modulated kinds).
    pub modulator: Option<(Tensor<1>, Tensor<1>, Tensor<1>, Tensor<1>)>,
    /// Eligibility-trace rate `eta_E: [1]` ([`LstmPlasticity::Retroactive`]).
    pub eta_e: Option<Tensor<1>>,
}

/// State of a batch of sequences: where a segment starts (it may carry gradients, e.g. a
/// learned initial state) and where it ends ([`plastic_lstm`] returns it detached: no gradient
/// crosses from one segment to the next).
#[derive(Clone, Debug)]
pub struct LstmState {
    /// Hidden state `h: [B, H]`.
    pub h: Tensor<2>,
    /// Cell state `c: [B, H]`.
    pub c: Tensor<2>,
    /// Hebbian trace `[B, H, H]` (plastic layers).
    pub hebb: Option<Tensor<3>>,
    /// Eligibility trace `[B, H, H]` (retroactive modulation).
    pub elig: Option<Tensor<3>>,
}

impl LstmState {
    /// The same state with no link to the graph that computed it.
    pub fn detach(self) -> Self {
        LstmState {
            h: self.h.detach(),
            c: self.c.detach(),
            hebb: self.hebb.map(Tensor::detach),
            elig: self.elig.map(Tensor::detach),
        }
    }
}

/// What [`plastic_lstm`] returns.
#[derive(Clone, Debug)]
pub struct LstmOutput {
    /// Hidden states of every step, `hs: [B, T, H]` (carries the gradients).
    pub hs: Tensor<3>,
    /// The state after the last step (detached; `hebb` for plastic kinds, `elig` for
    /// retroactive modulation).
    pub state: LstmState,
    /// Modulator `M(t)`, `[B, T]` (modulated kinds; detached).
    pub modulator: Option<Tensor<2>>,
}

/// Runs the recurrence of a (plastic) LSTM layer over `T` steps, with gradients on autodiff
/// devices for every parameter, `xproj` and the initial state. The returned final state is
/// detached: truncated backpropagation through time carries it to the next segment without a
/// gradient, as the paper does.
///
/// Shapes: as [`LstmTensors`], `xproj = x W_x + b: [B, T, 4H]`, the initial `state` as
/// [`LstmState`] (traces `None`: zeros, without allocating them).
pub fn plastic_lstm(
    p: LstmTensors,
    xproj: Tensor<3>,
    state: LstmState,
    spec: LstmSpec,
) -> Result<LstmOutput, SpecError> {
    let kind = spec.plasticity;
    let (h, b, t) = (spec.hidden, spec.batch, spec.steps);
    let uses = |used: bool, what: &str, tensor: Option<Input>| match (used, tensor) {
        (false, _) => Input::Empty,
        (true, Some(input)) => input,
        (true, None) => Input::Missing(format!("{what}: required by {kind:?}, not given")),
    };
    let modulated = kind.is_modulated();
    let (m, m_bias, fan_w, fan_b) = match p.modulator {
        Some((m, mb, v, fb)) => (Some(m), Some(mb), Some(v), Some(fb)),
        None => (None, None, None, None),
    };
    let rule = RuleInputs {
        alpha: uses(
            kind.is_plastic(),
            "alpha",
            p.alpha.map(|a| Input::new(a, spec.alpha.dims(h))),
        ),
        eta: uses(
            kind == LstmPlasticity::Hebb,
            "eta",
            p.eta.map(|e| Input::new(e, [1])),
        ),
        m: uses(modulated, "modulator", m.map(|m| Input::new(m, [h]))),
        m_bias: uses(modulated, "modulator", m_bias.map(|mb| Input::new(mb, [1]))),
        fan_w: uses(modulated, "modulator", fan_w.map(|v| Input::new(v, [h]))),
        fan_b: uses(modulated, "modulator", fan_b.map(|fb| Input::new(fb, [h]))),
        eta_e: uses(
            kind.has_eligibility(),
            "eta_e",
            p.eta_e.map(|e| Input::new(e, [1])),
        ),
    };
    let inputs = LstmInputs {
        w_h: Input::new(p.w_h, [h, 4 * h]),
        rule,
        xproj: Input::new(xproj, [b, t, 4 * h]),
        h0: Input::new(state.h, [b, h]),
        c0: Input::new(state.c, [b, h]),
        hebb0: Input::optional(state.hebb.filter(|_| kind.is_plastic()), [b, h, h]),
        elig0: Input::optional(state.elig.filter(|_| kind.has_eligibility()), [b, h, h]),
    };
    let outputs = inputs.run(Op::Lstm(spec))?;
    let out = LstmOutputs::from_vec(outputs);
    let hs: Tensor<3> = Tensor::from_dispatch(out.hs);
    let h_last = hs.clone().slice([0..b, t - 1..t, 0..h]).reshape([b, h]);
    Ok(LstmOutput {
        hs,
        state: LstmState {
            h: h_last.detach(),
            c: Tensor::from_dispatch(out.c),
            hebb: kind.is_plastic().then(|| Tensor::from_dispatch(out.hebb)),
            elig: kind
                .has_eligibility()
                .then(|| Tensor::from_dispatch(out.elig)),
        },
        modulator: kind
            .is_modulated()
            .then(|| Tensor::from_dispatch(out.modulator)),
    })
}

/// The LSTM's CPU kernels: `plasticity_kernels::lstm` on host buffers.
impl HostKernels for LstmSpec {
    /// The kernels' record, and the inputs without `xproj` and the initial state.
    type Saved = (LstmSequence<f32>, LstmInputs<Vec<f32>>);

    fn forward(&self, inputs: Vec<Vec<f32>>) -> (Vec<TensorData>, Self::Saved) {
        let (h, b, t) = (self.hidden, self.batch, self.steps);
        let mut p = LstmInputs::from_vec(inputs);
        let init = kernels::LstmInit {
            h0: &p.h0,
            c0: &p.c0,
            hebb0: given(&p.hebb0),
            elig0: given(&p.elig0),
        };
        let xproj = swap_bt(&p.xproj, b, t, 4 * h);
        // Shapes were checked by `run` before dispatch.
        let run = kernels::lstm_forward(self, &p.rule.lstm(&p.w_h), &xproj, &init)
            .expect("shapes checked before dispatch");
        let outputs = LstmOutputs {
            hs: data(swap_bt(&run.hs, t, b, h), [b, t, h]),
            c: data(run.c.clone(), [b, h]),
            hebb: data(run.traces.hebb.clone(), [b, h, h]),
            elig: data(run.traces.elig.clone(), [b, h, h]),
            modulator: data(swap_bt(&run.modulator, t, b, 1), [b, t]),
        };
        (p.xproj, p.h0, p.c0, p.hebb0, p.elig0) = Default::default();
        (outputs.into_vec(), (run, p))
    }

    fn backward(saved: Self::Saved, gh: Vec<f32>, _: &[bool]) -> Vec<Option<TensorData>> {
        let (run, p) = saved;
        let spec = *run.spec();
        let (h, b, t) = (spec.hidden, spec.batch, spec.steps);
        let gh = swap_bt(&gh, b, t, h);
        let g = kernels::lstm_backward(&p.rule.lstm(&p.w_h), &run, &gh, None, None, None)
            .expect("shapes checked before dispatch");
        drop(run);
        let grads = LstmInputs {
            w_h: data(g.w_h, [h, 4 * h]),
            rule: RuleInputs::grads(g.plastic.alpha, g.plastic.rule, spec.alpha.dims(h)),
            xproj: data(swap_bt(&g.xproj, t, b, 4 * h), [b, t, 4 * h]),
            h0: data(g.h0, [b, h]),
            c0: data(g.c0, [b, h]),
            hebb0: data(g.plastic.hebb0, [b, h, h]),
            elig0: data(g.plastic.elig0, [b, h, h]),
        };
        grads.into_vec().into_iter().map(Some).collect()
    }
}
