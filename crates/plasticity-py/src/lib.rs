//! Python bindings of the plastic engine: the extension module `plasticity._engine`, which the
//! PyTorch layer `plasticity.torch.PlasticRNN` (in `python/plasticity/torch.py`) calls from its
//! `torch.autograd.Function`. See `docs/python.md`.
//!
//! [`rnn_forward`] runs the fused kernels of [`plasticity_kernels::rnn`] on numpy arrays over a
//! whole episode (ICML 2018 eq. 1-3; ICLR 2019 eq. 3-5 with neuromodulation) and returns an
//! [`PyEpisode`] handle with the outputs; the handle's `backward` runs the backpropagation
//! through time and returns every gradient. `lstm_forward` and its `LstmRun` handle
//! (`lstm.rs`) do the same for the plastic LSTM (ICLR 2019 section 4.3). Both take the learned
//! parameters as one dict ([`Weights`]).
//!
//! # Memory
//! Inputs are float32 (or, for gradient checks, float64) C-contiguous numpy arrays (`torch.Tensor.numpy()` of a contiguous CPU
//! float32 tensor shares the tensor's memory); the kernels read them in place, no copy. Outputs
//! are numpy arrays that take ownership of the engine's `Vec`s (`PyArray::from_vec`, no copy;
//! `torch.from_numpy` then shares them). The one copy: the activations `ys` and the final traces
//! are copied once out of the [`PyEpisode`], which keeps its own for the backward.
//!
//! # Threads
//! The kernels run with the GIL released (`Python::detach`), on rayon's pool (`RAYON_NUM_THREADS`
//! sets its size; default: one thread per core).
//!
//! # Errors
//! A wrong dtype is a `TypeError`; a wrong shape, a non-contiguous array or an unknown option is
//! a `ValueError` whose message says what was expected. Nothing here panics on bad input.

use numpy::Element;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use plasticity_kernels::{
    backward, forward, AlphaShape, BackwardStrategy, Episode, EpisodeSpec, Grads, InputMode,
    Modulation, ModulatorParams, Real, RuleGrads, RuleParams, SpecError, TraceRule,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

mod lstm;

/// An LSTM recurrence of either float type.
enum AnyRun {
    F32(plasticity_kernels::LstmSequence<f32>),
    F64(plasticity_kernels::LstmSequence<f64>),
}

/// An episode of either float type.
enum AnyEpisode {
    F32(Episode<f32>),
    F64(Episode<f64>),
}

/// Runs `$body` with `$ep` bound to the episode of an [`AnyEpisode`].
macro_rules! with_episode {
    ($any:expr, $ep:ident => $body:expr) => {
        match $any {
            AnyEpisode::F32($ep) => $body,
            AnyEpisode::F64($ep) => $body,
        }
    };
}

/// An episode run forward by [`rnn_forward`]: what its backward needs (activations, final
/// traces, checkpoints). Opaque to Python but for its `backward`, which may run as often as
/// needed (each backward works on a copy, so `retain_graph=True` and `gradcheck` work).
#[pyclass(name = "Episode", module = "plasticity._engine", frozen)]
pub struct PyEpisode {
    episode: AnyEpisode,
}

#[pymethods]
impl PyEpisode {
    /// `(neurons, batch, steps)` of the episode.
    #[getter]
    fn shape(&self) -> (usize, usize, usize) {
        let s = self.spec();
        (s.neurons, s.batch, s.steps)
    }

    /// Bytes the episode keeps for the backward beyond its outputs (checkpoints, initial state).
    #[getter]
    fn saved_bytes(&self) -> usize {
        with_episode!(&self.episode, ep => ep.saved_bytes())
    }

    fn __repr__(&self) -> String {
        let s = self.spec();
        let (reverses, dtype) = match &self.episode {
            AnyEpisode::F32(ep) => (ep.reverses_trace(), "float32"),
            AnyEpisode::F64(ep) => (ep.reverses_trace(), "float64"),
        };
        format!(
            "Episode(neurons={}, batch={}, steps={}, dtype={dtype}, rule={:?}, modulation={:?}, \
             reverses_trace={reverses})",
            s.neurons, s.batch, s.steps, s.rule, s.modulation,
        )
    }

    /// Backpropagation through the episode, from `gy = dL/dy_t: [T, B, N]` (zeros where the
    /// loss does not look), `gh = dL/dHebb_T` and `ge = dL/dE_T` (`[B, N, N]` or None: zero), in
    /// the forward's float type. `weights` must be the dict the forward ran with.
    ///
    /// Returns a dict of gradients: `w: [N, N]`, `alpha` (shaped like `alpha`), `eta` (float:
    /// the rate's, or `eta_E`'s with retroactive modulation), `m: [N]`, `m_bias` (float),
    /// `fan_w, fan_b: [N]` (modulated only), `x: [T, B, N]`, `y0: [B, N]`, `h0: [B, N, N]`,
    /// `e0: [B, N, N]` (retroactive only), and `reversal_rejected` (bool: the trace reversal
    /// failed its check and the traces were recomputed from checkpoints).
    #[pyo3(signature = (gy, weights, *, gh=None, ge=None))]
    fn backward<'py>(
        &self,
        py: Python<'py>,
        gy: &Bound<'py, PyAny>,
        weights: Weights<'py>,
        gh: Option<&Bound<'py, PyAny>>,
        ge: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cot = Cotangents { gy, gh, ge };
        with_episode!(&self.episode, ep => backward_in(py, ep, &cot, &weights))
    }
}

impl PyEpisode {
    fn spec(&self) -> EpisodeSpec {
        with_episode!(&self.episode, ep => *ep.spec())
    }
}

/// A float type the bindings run in: `f32` (training) or `f64` (gradient checks).
trait Float: Real + Element {
    /// The numpy name of the type.
    const NAME: &'static str;
    /// Wraps an episode of this type.
    fn wrap(ep: Episode<Self>) -> AnyEpisode;
    /// Wraps an LSTM recurrence of this type.
    fn wrap_lstm(run: plasticity_kernels::LstmSequence<Self>) -> AnyRun;
}

/// `impl Float for $t`, whose episodes are the `$variant` of [`AnyEpisode`] and [`AnyRun`].
macro_rules! impl_float {
    ($t:ty, $name:literal, $variant:ident) => {
        impl Float for $t {
            const NAME: &'static str = $name;
            fn wrap(ep: Episode<$t>) -> AnyEpisode {
                AnyEpisode::$variant(ep)
            }
            fn wrap_lstm(run: plasticity_kernels::LstmSequence<$t>) -> AnyRun {
                AnyRun::$variant(run)
            }
        }
    };
}

impl_float!(f32, "float32", F32);
impl_float!(f64, "float64", F64);

fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

fn spec_error(e: SpecError) -> PyErr {
    value_error(e.0)
}

/// A numpy array of `F` borrowed read-only (no copy), with its name for messages.
struct Input<'py, F: Float> {
    name: &'static str,
    array: PyReadonlyArrayDyn<'py, F>,
}

impl<'py, F: Float> Input<'py, F> {
    /// Borrows `obj` as a C-contiguous numpy array of `F`.
    fn new(name: &'static str, obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let array = obj.extract::<PyReadonlyArrayDyn<'py, F>>().map_err(|_| {
            let what = match obj.getattr("dtype") {
                Ok(dtype) => format!("an array of dtype {dtype}"),
                Err(_) => format!("a {}", type_name(obj)),
            };
            PyTypeError::new_err(format!(
                "{name}: expected a {} numpy array, got {what}",
                F::NAME
            ))
        })?;
        if !array.is_c_contiguous() {
            return Err(value_error(format!(
                "{name}: expected a C-contiguous array (the engine reads it in place); \
                 got strides {:?} for shape {:?}",
                array.strides(),
                array.shape()
            )));
        }
        Ok(Input { name, array })
    }

    /// Borrows an optional array (`None` or absent: `None`).
    fn maybe(name: &'static str, obj: Option<&Bound<'py, PyAny>>) -> PyResult<Option<Self>> {
        obj.filter(|o| !o.is_none())
            .map(|o| Input::new(name, o))
            .transpose()
    }

    /// [`Input::new`] of an array that must have the shape `want`.
    fn shaped(name: &'static str, obj: &Bound<'py, PyAny>, want: &[usize]) -> PyResult<Self> {
        let input = Input::new(name, obj)?;
        input.expect(want)?;
        Ok(input)
    }

    /// [`Input::maybe`] of an array that, when given, must have the shape `want`.
    fn maybe_shaped(
        name: &'static str,
        obj: Option<&Bound<'py, PyAny>>,
        want: &[usize],
    ) -> PyResult<Option<Self>> {
        let input = Input::maybe(name, obj)?;
        if let Some(i) = &input {
            i.expect(want)?;
        }
        Ok(input)
    }

    /// Checks the shape against `want`.
    fn expect(&self, want: &[usize]) -> PyResult<()> {
        let got = self.array.shape();
        if got == want {
            Ok(())
        } else {
            Err(value_error(format!(
                "{}: expected shape {:?}, got {:?}",
                self.name, want, got
            )))
        }
    }

    /// The array's memory, row-major.
    fn slice(&self) -> PyResult<&[F]> {
        self.array
            .as_slice()
            .map_err(|e| value_error(format!("{}: {e}", self.name)))
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "object".to_string(), |n| n.to_string())
}

/// The slice of an optional input, if given.
fn slice_opt<'a, F: Float>(input: &'a Option<Input<'_, F>>) -> PyResult<Option<&'a [F]>> {
    input.as_ref().map(Input::slice).transpose()
}

/// The slice of an optional input (empty when absent).
fn slice_or_empty<'a, F: Float>(input: &'a Option<Input<'_, F>>) -> PyResult<&'a [F]> {
    input.as_ref().map_or(Ok(&[][..]), Input::slice)
}

/// The layer's options, as Python passes them.
struct Options<'a> {
    rule: &'a str,
    alpha_shape: &'a str,
    modulation: Option<&'a str>,
    fan_out: bool,
    clip: Option<f64>,
    input_mode: &'a str,
}

impl Options<'_> {
    /// The episode spec of these options with the sizes of this call.
    fn spec(&self, neurons: usize, batch: usize, steps: usize) -> PyResult<EpisodeSpec> {
        let rule = [("hebb", TraceRule::Hebb), ("oja", TraceRule::Oja)];
        let rule = choose("rule", Some(self.rule), &rule.map(|(k, v)| (Some(k), v)))?;
        let alpha = parse_alpha(self.alpha_shape)?;
        let fan_out = self.fan_out;
        let modulation = choose(
            "modulation",
            self.modulation,
            &[
                (None, Modulation::None),
                (Some("simple"), Modulation::Simple { fan_out }),
                (Some("retroactive"), Modulation::Retroactive { fan_out }),
            ],
        )?;
        if fan_out && modulation == Modulation::None {
            return Err(value_error(
                "fan_out: needs a modulation (\"simple\" or \"retroactive\")",
            ));
        }
        let input = [
            ("additive", InputMode::Additive),
            ("clamped", InputMode::Clamped),
        ];
        let input = choose(
            "input_mode",
            Some(self.input_mode),
            &input.map(|(k, v)| (Some(k), v)),
        )?;
        let spec = EpisodeSpec {
            rule,
            clip: self.clip,
            input,
            alpha,
            modulation,
            backward: BackwardStrategy::Auto,
            ..EpisodeSpec::new(neurons, batch, steps)
        };
        spec.validate().map_err(spec_error)?;
        Ok(spec)
    }
}

/// The alpha shape a layer's `alpha` option names.
fn parse_alpha(alpha_shape: &str) -> PyResult<AlphaShape> {
    let shapes = [
        ("per_connection", AlphaShape::PerConnection),
        ("per_neuron", AlphaShape::PerNeuron),
        ("scalar", AlphaShape::Scalar),
    ];
    choose(
        "alpha",
        Some(alpha_shape),
        &shapes.map(|(k, v)| (Some(k), v)),
    )
}

/// The value of the option `name` that Python spells `given` (None: Python's None), among
/// `choices` (spelling, value); otherwise a `ValueError` that lists the spellings:
/// `name: expected None, "a" or "b", got "c"`.
pub(crate) fn choose<T: Copy>(
    name: &str,
    given: Option<&str>,
    choices: &[(Option<&str>, T)],
) -> PyResult<T> {
    if let Some(&(_, value)) = choices.iter().find(|(spelling, _)| *spelling == given) {
        return Ok(value);
    }
    let spell = |s: Option<&str>| s.map_or("None".to_string(), |s| format!("{s:?}"));
    let listed: Vec<String> = choices.iter().map(|(s, _)| spell(*s)).collect();
    let expected = match listed.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "nothing".to_string(),
    };
    Err(value_error(format!(
        "{name}: expected {expected}, got {}",
        spell(given)
    )))
}

/// The shape of `alpha` as the Python layer holds it: `[N, N]`, `[N]` or `[1]`.
fn alpha_dims(shape: AlphaShape, n: usize) -> Vec<usize> {
    match shape {
        AlphaShape::PerConnection => vec![n, n],
        AlphaShape::PerNeuron => vec![n],
        AlphaShape::Scalar => vec![1],
    }
}

/// The neuromodulator's parameters as Python passes them (ICLR 2019 section 3): a dict with
/// the keys `m` (`[N]`), `m_bias` (float), `fan_w` and `fan_b` (`[N]`, the fan-out), the arrays
/// or None; absent (None) for a network without modulation.
#[derive(FromPyObject, Default)]
#[pyo3(from_item_all)]
struct ModulatorArgs<'py> {
    m: Option<Bound<'py, PyAny>>,
    m_bias: f64,
    fan_w: Option<Bound<'py, PyAny>>,
    fan_b: Option<Bound<'py, PyAny>>,
}

impl<'py> ModulatorArgs<'py> {
    /// Borrows the arrays from numpy.
    fn borrow<F: Float>(&self) -> PyResult<Modulator<'py, F>> {
        Ok(Modulator {
            m: Input::maybe("m", self.m.as_ref())?,
            m_bias: F::of(self.m_bias),
            fan_w: Input::maybe("fan_w", self.fan_w.as_ref())?,
            fan_b: Input::maybe("fan_b", self.fan_b.as_ref())?,
        })
    }
}

/// The neuromodulator's parameters, borrowed from numpy.
struct Modulator<'py, F: Float> {
    m: Option<Input<'py, F>>,
    m_bias: F,
    fan_w: Option<Input<'py, F>>,
    fan_b: Option<Input<'py, F>>,
}

impl<F: Float> Modulator<'_, F> {
    /// Checks that `m` is there exactly when `modulated` and `fan_w, fan_b` exactly when
    /// `fan_out`, each of shape `[n]`; `kind` names the variant in messages.
    fn check(&self, n: usize, modulated: bool, fan_out: bool, kind: &str) -> PyResult<()> {
        expect_present("m", &self.m, modulated, &[n], kind)?;
        expect_present("fan_w", &self.fan_w, fan_out, &[n], kind)?;
        expect_present("fan_b", &self.fan_b, fan_out, &[n], kind)
    }

    /// The parameters as the engine takes them (empty slices where absent), with the
    /// eligibility trace's rate `eta_e`.
    fn params(&self, eta_e: F) -> PyResult<ModulatorParams<'_, F>> {
        Ok(ModulatorParams {
            m: slice_or_empty(&self.m)?,
            m_bias: self.m_bias,
            fan_w: slice_or_empty(&self.fan_w)?,
            fan_b: slice_or_empty(&self.fan_b)?,
            eta_e,
        })
    }
}

/// Checks that the optional input `name` is there, shaped `dims`, exactly when `wanted` (by the
/// variant `kind`, named in the messages).
fn expect_present<F: Float>(
    name: &str,
    input: &Option<Input<'_, F>>,
    wanted: bool,
    dims: &[usize],
    kind: &str,
) -> PyResult<()> {
    match (input, wanted) {
        (Some(a), true) => a.expect(dims),
        (None, true) => Err(value_error(format!(
            "{name}: expected an array of shape {dims:?} with {kind}, got None"
        ))),
        (Some(_), false) => Err(value_error(format!(
            "{name}: not used with {kind}; pass None"
        ))),
        (None, false) => Ok(()),
    }
}

/// Puts the gradients of the modulator's parameters into `out`: `m: [n]` and `m_bias`
/// (float) when `modulated`, `fan_w, fan_b: [n]` when `fan_out`.
fn set_modulator_grads<F: Float>(
    out: &Bound<'_, PyDict>,
    rule: RuleGrads<F>,
    n: usize,
    modulated: bool,
    fan_out: bool,
) -> PyResult<()> {
    let py = out.py();
    if modulated {
        out.set_item("m", owned(py, rule.modulator.m, &[n])?)?;
        out.set_item("m_bias", rule.modulator.m_bias.to_f64())?;
    }
    if fan_out {
        out.set_item("fan_w", owned(py, rule.modulator.fan_w, &[n])?)?;
        out.set_item("fan_b", owned(py, rule.modulator.fan_b, &[n])?)?;
    }
    Ok(())
}

/// [`ModulatorArgs`] of a value that may be None (without modulation).
fn modulator_or_default<'py>(obj: &Bound<'py, PyAny>) -> PyResult<ModulatorArgs<'py>> {
    if obj.is_none() {
        Ok(ModulatorArgs::default())
    } else {
        obj.extract()
    }
}

/// The learned parameters as Python passes them, one dict with these keys: the recurrent
/// weights `w` (the LSTM's `w_h`), `alpha` (`A`: required by the plastic network, optional for
/// the LSTM), the rate `eta` and the `modulator` (None without modulation).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub(crate) struct Weights<'py, A = Bound<'py, PyAny>> {
    pub(crate) w: Bound<'py, PyAny>,
    pub(crate) alpha: A,
    pub(crate) eta: f64,
    #[pyo3(from_py_with = modulator_or_default)]
    pub(crate) modulator: ModulatorArgs<'py>,
}

/// The learned parameters, borrowed from numpy.
struct Borrowed<'py, F: Float> {
    w: Input<'py, F>,
    alpha: Input<'py, F>,
    eta: F,
    modulator: Modulator<'py, F>,
}

impl<'py, F: Float> Borrowed<'py, F> {
    /// Borrows `w: [N, N]`, `alpha` and the modulator's `m, fan_w, fan_b: [N]`; returns `N`.
    fn new(p: &Weights<'py>) -> PyResult<(Self, usize)> {
        let w = Input::new("w", &p.w)?;
        let n = match w.array.shape() {
            [a, b] if a == b && *a > 0 => *a,
            other => {
                return Err(value_error(format!(
                    "w: expected a square matrix [N, N] with N > 0, got shape {other:?}"
                )))
            }
        };
        let borrowed = Borrowed {
            w,
            alpha: Input::new("alpha", &p.alpha)?,
            eta: F::of(p.eta),
            modulator: p.modulator.borrow()?,
        };
        Ok((borrowed, n))
    }

    /// Checks the shapes against the spec.
    fn check(&self, spec: &EpisodeSpec) -> PyResult<()> {
        let n = spec.neurons;
        self.alpha.expect(&alpha_dims(spec.alpha, n))?;
        self.modulator.check(
            n,
            spec.modulation != Modulation::None,
            spec.modulation.fan_out(),
            &format!("modulation {:?}", spec.modulation),
        )
    }

    /// The slices as the engine takes them.
    /// With a modulation, `eta` is the eligibility trace's rate `eta_E`.
    fn slices(&self) -> PyResult<Slices<'_, F>> {
        Ok(Slices {
            w: self.w.slice()?,
            alpha: self.alpha.slice()?,
            eta: self.eta,
            modulator: self.modulator.params(self.eta)?,
        })
    }
}

/// The learned parameters as flat slices (`Send`: they cross into the kernels' threads).
struct Slices<'a, F> {
    w: &'a [F],
    alpha: &'a [F],
    eta: F,
    modulator: ModulatorParams<'a, F>,
}

impl<'a, F: Float> Slices<'a, F> {
    /// The parameters of the rule of an episode modulated as `modulation` says.
    fn rule(&self, modulation: Modulation) -> RuleParams<'a, F> {
        RuleParams::new(modulation, self.w, self.alpha, self.eta, self.modulator)
    }
}

/// A numpy array that owns `values` (no copy), shaped `dims`.
fn owned<'py, F: Float>(
    py: Python<'py>,
    values: Vec<F>,
    dims: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, values).reshape(dims)?.into_any())
}

/// Whether `obj` is a float64 numpy array (the episode then runs in `f64`).
fn is_f64(obj: &Bound<'_, PyAny>) -> bool {
    obj.extract::<PyReadonlyArrayDyn<'_, f64>>().is_ok()
}

/// What [`rnn_forward`] returns: the episode, `ys`, `hebb`, `elig`.
type Forward<'py> = (
    PyEpisode,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
);

/// The state a forward starts from, as Python passes it.
struct State<'a, 'py> {
    x: &'a Bound<'py, PyAny>,
    y0: &'a Bound<'py, PyAny>,
    h0: Option<&'a Bound<'py, PyAny>>,
    e0: Option<&'a Bound<'py, PyAny>>,
}

fn forward_in<'py, F: Float>(
    py: Python<'py>,
    state: &State<'_, 'py>,
    weights: &Weights<'py>,
    options: &Options<'_>,
) -> PyResult<Forward<'py>> {
    let (p, n) = Borrowed::<F>::new(weights)?;
    let x = Input::<F>::new("x", state.x)?;
    let (t, b) = match x.array.shape() {
        [t, b, k] if *k == n && *t > 0 && *b > 0 => (*t, *b),
        other => {
            return Err(value_error(format!(
                "x: expected shape [T, B, N] = [steps, batch, {n}] with T, B > 0, got {other:?}"
            )))
        }
    };
    let spec = options.spec(n, b, t)?;
    p.check(&spec)?;
    let y0 = Input::<F>::shaped("y0", state.y0, &[b, n])?;
    let h0 = Input::<F>::maybe_shaped("h0", state.h0, &[b, n, n])?;
    let e0 = Input::<F>::maybe_shaped("e0", state.e0, &[b, n, n])?;
    if e0.is_some() && !spec.modulation.has_eligibility() {
        return Err(value_error(
            "e0: only retroactive modulation keeps an eligibility trace; pass None",
        ));
    }
    let s = p.slices()?;
    let (xs, y0s) = (x.slice()?, y0.slice()?);
    let (h0s, e0s) = (slice_opt(&h0)?, slice_opt(&e0)?);
    let episode = py
        .detach(|| forward(&spec, s.rule(spec.modulation), xs, y0s, h0s, e0s))
        .map_err(spec_error)?;
    let ys = owned(py, episode.ys.clone(), &[t, b, n])?;
    let hebb = owned(py, episode.traces.hebb.clone(), &[b, n, n])?;
    let elig_dims = if episode.traces.elig.is_empty() {
        vec![0]
    } else {
        vec![b, n, n]
    };
    let elig = owned(py, episode.traces.elig.clone(), &elig_dims)?;
    Ok((
        PyEpisode {
            episode: F::wrap(episode),
        },
        ys,
        hebb,
        elig,
    ))
}

/// Runs a plastic episode forward (ICML 2018 eq. 1-3, or ICLR 2019 eq. 3-5 with a
/// modulation), all `B` episodes of the batch together, in float32 or float64 (the dtype of
/// `x`; every array must have it).
///
/// Shapes (C-contiguous, time-major): `x: [T, B, N]`, `y0: [B, N]`, `h0, e0: [B, N, N]` or
/// None (zeros); `weights` a dict of `w: [N, N]`, `alpha: [N, N] | [N] | [1]` (per connection,
/// per postsynaptic neuron, scalar), `eta` (float: the trace's rate for decaying Hebb and Oja,
/// or the eligibility trace's rate `eta_E` when retroactive; simple modulation ignores it) and
/// `modulator`, a dict of `m, fan_w, fan_b: [N]` (arrays or None) and `m_bias` (float), or None
/// without modulation. Returns `(episode, ys: [T, B, N], hebb: [B, N, N], elig)`, `elig`
/// the final eligibility trace `[B, N, N]` (retroactive) or an empty array.
#[pyfunction]
#[pyo3(signature = (
    x, y0, weights, *, h0=None, e0=None, rule="hebb",
    alpha_shape="per_connection", modulation=None, fan_out=false, clip=None, input_mode="additive"
))]
#[allow(clippy::too_many_arguments)]
fn rnn_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y0: &Bound<'py, PyAny>,
    weights: Weights<'py>,
    h0: Option<&Bound<'py, PyAny>>,
    e0: Option<&Bound<'py, PyAny>>,
    rule: &str,
    alpha_shape: &str,
    modulation: Option<&str>,
    fan_out: bool,
    clip: Option<f64>,
    input_mode: &str,
) -> PyResult<Forward<'py>> {
    let state = State { x, y0, h0, e0 };
    let options = Options {
        rule,
        alpha_shape,
        modulation,
        fan_out,
        clip,
        input_mode,
    };
    if is_f64(x) {
        forward_in::<f64>(py, &state, &weights, &options)
    } else {
        forward_in::<f32>(py, &state, &weights, &options)
    }
}

/// The gradients a backward starts from, as Python passes them.
struct Cotangents<'a, 'py> {
    gy: &'a Bound<'py, PyAny>,
    gh: Option<&'a Bound<'py, PyAny>>,
    ge: Option<&'a Bound<'py, PyAny>>,
}

fn backward_in<'py, F: Float>(
    py: Python<'py>,
    ep: &Episode<F>,
    cot: &Cotangents<'_, 'py>,
    weights: &Weights<'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = *ep.spec();
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let (p, wn) = Borrowed::<F>::new(weights)?;
    if wn != n {
        return Err(value_error(format!(
            "w: expected shape [{n}, {n}] (the forward's), got [{wn}, {wn}]"
        )));
    }
    p.check(&spec)?;
    let gy = Input::<F>::shaped("gy", cot.gy, &[t, b, n])?;
    let gh = Input::<F>::maybe_shaped("gh", cot.gh, &[b, n, n])?;
    let ge = Input::<F>::maybe_shaped("ge", cot.ge, &[b, n, n])?;
    let s = p.slices()?;
    let (gys, ghs, ges) = (gy.slice()?, slice_opt(&gh)?, slice_opt(&ge)?);
    let grads: Grads<F> = py
        .detach(|| {
            // The backward consumes the episode: it works on a copy, so that the handle serves
            // again (retain_graph, gradcheck).
            let ep = ep.clone();
            backward(s.rule(spec.modulation), ep, gys, ghs, ges)
        })
        .map_err(spec_error)?;
    let modulated = spec.modulation != Modulation::None;
    let out = PyDict::new(py);
    out.set_item("w", owned(py, grads.w, &[n, n])?)?;
    out.set_item(
        "alpha",
        owned(py, grads.plastic.alpha, &alpha_dims(spec.alpha, n))?,
    )?;
    let eta = if modulated {
        grads.plastic.rule.modulator.eta_e
    } else {
        grads.plastic.rule.eta
    };
    out.set_item("eta", eta.to_f64())?;
    set_modulator_grads(
        &out,
        grads.plastic.rule,
        n,
        modulated,
        spec.modulation.fan_out(),
    )?;
    out.set_item("x", owned(py, grads.x, &[t, b, n])?)?;
    out.set_item("y0", owned(py, grads.y0, &[b, n])?)?;
    if grads.plastic.hebb0.len() == b * n * n {
        out.set_item("h0", owned(py, grads.plastic.hebb0, &[b, n, n])?)?;
    }
    if spec.modulation.has_eligibility() && grads.plastic.elig0.len() == b * n * n {
        out.set_item("e0", owned(py, grads.plastic.elig0, &[b, n, n])?)?;
    }
    out.set_item("reversal_rejected", grads.reversal_rejected)?;
    Ok(out)
}

/// The plastic engine of `plasticity` (Rust), for `plasticity.torch`.
#[pymodule]
fn _engine(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PyEpisode>()?;
    module.add_function(wrap_pyfunction!(rnn_forward, module)?)?;
    module.add_class::<lstm::PyLstmRun>()?;
    module.add_function(wrap_pyfunction!(lstm::lstm_forward_py, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
