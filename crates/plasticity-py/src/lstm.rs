//! The plastic LSTM of `plasticity.torch.PlasticLSTM` (ICLR 2019 section 4.3): the kernels of
//! [`plasticity_kernels::lstm`] on numpy arrays, as [`crate::rnn_forward`] does for the plastic
//! network. The input projection `xp = W_x x + b` is computed by torch; the engine runs the
//! gates, the cell and the candidate's plastic recurrence:
//!
//! ```text
//! a       = xp + h W_h;   a_g,j += sum_i h_i alpha_ij Hebb_ij
//! i, f, o = sigmoid(a_i, a_f, a_o);   g = tanh(a_g);   c' = f c + i g;   h' = o tanh(c')
//! Hebb'   = clip((1 - eta) Hebb + eta outer(h, g))                      "hebb"
//! Hebb'   = clip(Hebb + eta_j outer(h, g)),  eta_j = v_j M + b_j         "simple"
//! Hebb'   = clip(Hebb + eta_j E);  E' = (1 - eta_E) E + eta_E outer(h, g) "retroactive"
//! ```
//!
//! with `M = tanh(m . h' + m_b)`.

use crate::{
    alpha_dims, expect_present, owned, parse_alpha, set_modulator_grads, slice_opt, slice_or_empty,
    spec_error, value_error, AnyRun, Float, Input, Modulator, Weights,
};
use numpy::PyUntypedArrayMethods;
use plasticity_kernels::{
    lstm_backward, lstm_forward, LstmInit, LstmParams, LstmPlasticity, LstmSequence, LstmSpec,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A recurrence run forward by [`lstm_forward_py`]; its `backward` may run as often as needed.
#[pyclass(name = "LstmRun", module = "plasticity._engine", frozen)]
pub struct PyLstmRun {
    run: AnyRun,
}

#[pymethods]
impl PyLstmRun {
    /// `(hidden, batch, steps)` of the recurrence.
    #[getter]
    fn shape(&self) -> (usize, usize, usize) {
        let s = match &self.run {
            AnyRun::F32(r) => *r.spec(),
            AnyRun::F64(r) => *r.spec(),
        };
        (s.hidden, s.batch, s.steps)
    }

    /// Backward of the recurrence, from `gh = dL/dh_t: [T, B, H]`, `gc = dL/dc_T: [B, H]`,
    /// `ghebb, gelig = dL/dHebb_T, dL/dE_T: [B, H, H]` (None: zero). The `weights` must be the
    /// forward's. Returns a dict of gradients: `xproj: [T, B, 4H]`, `w_h: [H, 4H]`, `alpha`,
    /// `eta` (float), `m`, `m_bias` (float), `fan_w`, `fan_b`, `h0`, `c0`, `hebb0`, `elig0`
    /// (those the kind has).
    #[pyo3(signature = (gh, weights, *, gc=None, ghebb=None, gelig=None))]
    fn backward<'py>(
        &self,
        py: Python<'py>,
        gh: &Bound<'py, PyAny>,
        weights: LstmWeights<'py>,
        gc: Option<&Bound<'py, PyAny>>,
        ghebb: Option<&Bound<'py, PyAny>>,
        gelig: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cot = Cotangents {
            gh,
            gc,
            ghebb,
            gelig,
        };
        match &self.run {
            AnyRun::F32(r) => backward_in(py, r, &cot, &weights),
            AnyRun::F64(r) => backward_in(py, r, &cot, &weights),
        }
    }
}

/// The LSTM's parameters as Python passes them, one dict (`w` is `w_h`; `alpha` None without
/// plasticity).
pub(crate) type LstmWeights<'py> = Weights<'py, Option<Bound<'py, PyAny>>>;

/// The parameters borrowed from numpy and checked against the spec.
struct Borrowed<'py, F: Float> {
    w_h: Input<'py, F>,
    alpha: Option<Input<'py, F>>,
    eta: F,
    modulator: Modulator<'py, F>,
}

impl<'py, F: Float> Borrowed<'py, F> {
    fn new(p: &LstmWeights<'py>, spec: &LstmSpec) -> PyResult<Self> {
        let h = spec.hidden;
        let w_h = Input::new("w_h", &p.w)?;
        w_h.expect(&[h, 4 * h])?;
        let borrowed = Borrowed {
            w_h,
            alpha: Input::maybe("alpha", p.alpha.as_ref())?,
            eta: F::of(p.eta),
            modulator: p.modulator.borrow()?,
        };
        let kind = format!("plasticity {:?}", spec.plasticity);
        let plastic = spec.plasticity.is_plastic();
        let alpha = alpha_dims(spec.alpha, h);
        expect_present("alpha", &borrowed.alpha, plastic, &alpha, &kind)?;
        let modulated = spec.plasticity.is_modulated();
        borrowed.modulator.check(h, modulated, modulated, &kind)?;
        Ok(borrowed)
    }

    fn params(&self) -> PyResult<LstmParams<'_, F>> {
        Ok(LstmParams {
            w_h: self.w_h.slice()?,
            alpha: slice_or_empty(&self.alpha)?,
            eta: self.eta,
            modulator: self.modulator.params(self.eta)?,
        })
    }
}

/// The spec from the layer's options and the sizes of this call.
fn spec_of(
    hidden: usize,
    batch: usize,
    steps: usize,
    plasticity: Option<&str>,
    alpha_shape: &str,
    clip: f64,
) -> PyResult<LstmSpec> {
    let plasticity = crate::choose(
        "plasticity",
        plasticity,
        &[
            (None, LstmPlasticity::None),
            (Some("hebb"), LstmPlasticity::Hebb),
            (Some("simple"), LstmPlasticity::Simple),
            (Some("retroactive"), LstmPlasticity::Retroactive),
        ],
    )?;
    let alpha = parse_alpha(alpha_shape)?;
    let spec = LstmSpec {
        alpha,
        clip,
        ..LstmSpec::new(hidden, batch, steps, plasticity)
    };
    spec.validate().map_err(spec_error)?;
    Ok(spec)
}

/// What [`lstm_forward_py`] returns: the run, `hs`, `c`, `hebb`, `elig`.
type Forward<'py> = (
    PyLstmRun,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
);

/// The state a recurrence starts from, as Python passes it.
pub(crate) struct LstmState<'a, 'py> {
    pub xproj: &'a Bound<'py, PyAny>,
    pub h0: &'a Bound<'py, PyAny>,
    pub c0: &'a Bound<'py, PyAny>,
    pub hebb0: Option<&'a Bound<'py, PyAny>>,
    pub elig0: Option<&'a Bound<'py, PyAny>>,
}

fn forward_in<'py, F: Float>(
    py: Python<'py>,
    state: &LstmState<'_, 'py>,
    weights: &LstmWeights<'py>,
    options: (Option<&str>, &str, f64),
) -> PyResult<Forward<'py>> {
    let xproj = Input::<F>::new("xproj", state.xproj)?;
    let (t, b, h) = match xproj.array.shape() {
        [t, b, h4] if *t > 0 && *b > 0 && *h4 > 0 && h4 % 4 == 0 => (*t, *b, h4 / 4),
        other => {
            return Err(value_error(format!(
                "xproj: expected shape [T, B, 4H] with T, B, H > 0, got {other:?}"
            )))
        }
    };
    let spec = spec_of(h, b, t, options.0, options.1, options.2)?;
    let p = Borrowed::<F>::new(weights, &spec)?;
    let h0 = Input::<F>::shaped("h0", state.h0, &[b, h])?;
    let c0 = Input::<F>::shaped("c0", state.c0, &[b, h])?;
    let hebb0 = Input::<F>::maybe_shaped("hebb0", state.hebb0, &[b, h, h])?;
    let elig0 = Input::<F>::maybe_shaped("elig0", state.elig0, &[b, h, h])?;
    let params = p.params()?;
    let init = LstmInit {
        h0: h0.slice()?,
        c0: c0.slice()?,
        hebb0: slice_opt(&hebb0)?,
        elig0: slice_opt(&elig0)?,
    };
    let xs = xproj.slice()?;
    let run: LstmSequence<F> = py
        .detach(|| lstm_forward(&spec, &params, xs, &init))
        .map_err(spec_error)?;
    let hs = owned(py, run.hs.clone(), &[t, b, h])?;
    let c = owned(py, run.c.clone(), &[b, h])?;
    let trace_dims = |v: &Vec<F>| if v.is_empty() { vec![0] } else { vec![b, h, h] };
    let hebb = owned(py, run.traces.hebb.clone(), &trace_dims(&run.traces.hebb))?;
    let elig = owned(py, run.traces.elig.clone(), &trace_dims(&run.traces.elig))?;
    Ok((
        PyLstmRun {
            run: F::wrap_lstm(run),
        },
        hs,
        c,
        hebb,
        elig,
    ))
}

/// Runs the plastic LSTM forward over `T` steps of `B` sequences, in float32 or float64 (the
/// dtype of `xproj`). Shapes (C-contiguous, time-major): `xproj: [T, B, 4H]` (the input
/// projection, gates `i, f, o, g`), `h0, c0: [B, H]`, `hebb0, elig0: [B, H, H]` or None;
/// `weights` a dict of `w: [H, 4H]` (`w_h`), `alpha: [H, H] | [H] | [1]` (None without
/// plasticity), `eta` (float: the Hebbian rate or the eligibility trace's `eta_E`) and
/// `modulator`, a dict of `m, fan_w, fan_b: [H]` and `m_bias` (modulated; None otherwise).
/// Returns `(run, hs: [T, B, H], c: [B, H], hebb, elig)` (`[B, H, H]`, or empty).
#[pyfunction]
#[pyo3(name = "lstm_forward", signature = (
    xproj, h0, c0, weights, *, hebb0=None, elig0=None, plasticity=None, alpha_shape="per_neuron",
    clip=2.0
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn lstm_forward_py<'py>(
    py: Python<'py>,
    xproj: &Bound<'py, PyAny>,
    h0: &Bound<'py, PyAny>,
    c0: &Bound<'py, PyAny>,
    weights: LstmWeights<'py>,
    hebb0: Option<&Bound<'py, PyAny>>,
    elig0: Option<&Bound<'py, PyAny>>,
    plasticity: Option<&str>,
    alpha_shape: &str,
    clip: f64,
) -> PyResult<Forward<'py>> {
    let state = LstmState {
        xproj,
        h0,
        c0,
        hebb0,
        elig0,
    };
    let options = (plasticity, alpha_shape, clip);
    if crate::is_f64(xproj) {
        forward_in::<f64>(py, &state, &weights, options)
    } else {
        forward_in::<f32>(py, &state, &weights, options)
    }
}

/// The gradients a backward starts from, as Python passes them.
struct Cotangents<'a, 'py> {
    gh: &'a Bound<'py, PyAny>,
    gc: Option<&'a Bound<'py, PyAny>>,
    ghebb: Option<&'a Bound<'py, PyAny>>,
    gelig: Option<&'a Bound<'py, PyAny>>,
}

fn backward_in<'py, F: Float>(
    py: Python<'py>,
    run: &LstmSequence<F>,
    cot: &Cotangents<'_, 'py>,
    weights: &LstmWeights<'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = *run.spec();
    let (h, b, t) = (spec.hidden, spec.batch, spec.steps);
    let p = Borrowed::<F>::new(weights, &spec)?;
    let gh = Input::<F>::shaped("gh", cot.gh, &[t, b, h])?;
    let gc = Input::<F>::maybe_shaped("gc", cot.gc, &[b, h])?;
    let ghebb = Input::<F>::maybe_shaped("ghebb", cot.ghebb, &[b, h, h])?;
    let gelig = Input::<F>::maybe_shaped("gelig", cot.gelig, &[b, h, h])?;
    let params = p.params()?;
    let (ghs, gcs) = (gh.slice()?, slice_opt(&gc)?);
    let (gheb, gel) = (slice_opt(&ghebb)?, slice_opt(&gelig)?);
    let grads = py
        .detach(|| lstm_backward(&params, run, ghs, gcs, gheb, gel))
        .map_err(spec_error)?;
    let out = PyDict::new(py);
    out.set_item("xproj", owned(py, grads.xproj, &[t, b, 4 * h])?)?;
    out.set_item("w_h", owned(py, grads.w_h, &[h, 4 * h])?)?;
    if spec.plasticity.is_plastic() {
        let dims = p
            .alpha
            .as_ref()
            .map_or(vec![0], |a| a.array.shape().to_vec());
        out.set_item("alpha", owned(py, grads.plastic.alpha, &dims)?)?;
        let eta = if spec.plasticity == LstmPlasticity::Retroactive {
            grads.plastic.rule.modulator.eta_e
        } else {
            grads.plastic.rule.eta
        };
        out.set_item("eta", eta.to_f64())?;
        if grads.plastic.hebb0.len() == b * h * h {
            out.set_item("hebb0", owned(py, grads.plastic.hebb0, &[b, h, h])?)?;
        }
    }
    let modulated = spec.plasticity.is_modulated();
    set_modulator_grads(&out, grads.plastic.rule, h, modulated, modulated)?;
    if spec.plasticity.has_eligibility() && grads.plastic.elig0.len() == b * h * h {
        out.set_item("elig0", owned(py, grads.plastic.elig0, &[b, h, h])?)?;
    }
    out.set_item("h0", owned(py, grads.h0, &[b, h])?)?;
    out.set_item("c0", owned(py, grads.c0, &[b, h])?)?;
    Ok(out)
}
