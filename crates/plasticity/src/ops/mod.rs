//! The fused operations of this crate as burn 0.22 operations with hand-written backwards: one
//! glue, one device trait, and a short file per operation.
//!
//! | op | file | kernels |
//! |---|---|---|
//! | plastic episode, plain or neuromodulated ([`plastic_episode`], [`modulated_episode`]) | `episode.rs` | `plasticity_kernels::rnn` |
//! | plastic LSTM recurrence ([`plastic_lstm`]) | `lstm.rs` | `plasticity_kernels::lstm` |
//! | Omniglot convolution stack ([`conv_stack`]) | `conv.rs` | `plasticity_kernels::conv` |
//! | plastic feed-forward layer ([`plastic_dense`]) | `dense.rs` | `plasticity_kernels::dense` |
//!
//! # How an operation runs
//! An op is a list of input tensors in a fixed order (declared once, by name, with
//! `op_tensors!`), a list of outputs, and the spec that says what to run ([`Op`]). Its public
//! function checks the shapes and packs the tensors (`Input`, `run`); then
//!
//! - [`PlasticityOps::run_op`], the one burn backend extension, routes the call to the device;
//! - on an autodiff device, the one [`Backward`] implementation (`OpBackward`) records the op: the forward keeps
//!   what its backward needs, the backward turns `dL/d(first output)` into a gradient for every
//!   input that wants one. The first output carries the gradients; the others (final traces and
//!   states, the modulator) come back detached, as truncated BPTT carries them;
//! - a device runs the op through [`OpKernels`], the one trait a device implements: `Flex` (CPU)
//!   copies the tensors to flat `f32` buffers and runs each op's host kernels ([`HostKernels`]);
//!   `Cube` (GPU, cargo feature `wgpu`) runs plain episodes with burn tensor operations
//!   ([`tensor_episode`](crate::tensor_episode)) on the device and the other ops on the host.
//!   A new device (CUDA) implements [`OpKernels`] once, runs on the host (`host_forward`) the
//!   ops it has no kernels for, as `Cube` does, and joins the `#[backend_extension]` list.
//!
//! This module is the only place that knows burn's backend-extension and autodiff internals
//! (`#[backend_extension]`, `Backward`, `Ops`, node guards): an upgrade of burn touches it alone.

mod conv;
mod dense;
mod device;
mod episode;
mod lstm;
mod rule;

pub use conv::{conv_stack, conv_stack_supported};
pub use dense::plastic_dense;
#[cfg(feature = "cuda")]
pub(crate) use device::given;
pub use device::{HostKernels, HostSaved, OpKernels};
pub use episode::{
    modulated_episode, plastic_episode, static_episode, EpisodeInputs, ModulatedOutput,
    ModulatedTensors,
};
pub use lstm::{plastic_lstm, LstmOutput, LstmState, LstmTensors};
pub use rule::RuleInputs;

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, NodeGuard, Ops, OpsKind},
};
use burn::backend::{
    backend_extension, tensor::FloatTensor, Autodiff, AutodiffBackend, Backend, BackendTensor,
    Dispatch, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind, ExtensionType, Flex,
};
use burn::tensor::{Device, Tensor};
use plasticity_kernels::conv::ConvSpec;
use plasticity_kernels::dense::DenseSpec;
use plasticity_kernels::{EpisodeSpec, LstmSpec, SpecError};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Declares the named tensors of an op (its inputs or its outputs) as a struct generic over what
/// each holds (a tensor, a host buffer, a gradient), so that the op's order is written once. A
/// field `name: Group` holds a nested group of tensors (declared with this macro too), which
/// takes its place in the order.
macro_rules! op_tensors {
    ($(#[$meta:meta])* $name:ident { $($field:ident $(: $group:ident)?),* $(,)? }) => {
        $(#[$meta])*
        pub struct $name<T> {
            $(#[allow(missing_docs)] pub $field: $crate::ops::op_tensors!(@type T $(, $group)?),)*
        }

        impl<T: std::fmt::Debug> std::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))$(.field(stringify!($field), &self.$field))*.finish()
            }
        }

        #[allow(dead_code)] // not every op uses every conversion
        impl<T> $name<T> {
            /// The tensors' names, in the op's order.
            pub(crate) fn names() -> Vec<&'static str> {
                let mut names = Vec::new();
                Self::append_names(&mut names);
                names
            }

            pub(crate) fn append_names(names: &mut Vec<&'static str>) {
                $($crate::ops::op_tensors!(@name names, $field $(, $group)?);)*
            }

            /// The tensors in the op's order.
            pub(crate) fn into_vec(self) -> Vec<T> {
                let mut all = Vec::new();
                self.append_to(&mut all);
                all
            }

            pub(crate) fn append_to(self, all: &mut Vec<T>) {
                $($crate::ops::op_tensors!(@append all, self.$field $(, $group)?);)*
            }

            /// From the op's order (panics on a wrong count: the op's own packing).
            pub(crate) fn from_vec(all: Vec<T>) -> Self {
                let mut all = all.into_iter();
                let out = Self::take_from(&mut all);
                assert!(all.next().is_none(), "{}: too many tensors", stringify!($name));
                out
            }

            pub(crate) fn take_from(all: &mut impl Iterator<Item = T>) -> Self {
                Self { $($field: $crate::ops::op_tensors!(@take all $(, $group)?),)* }
            }
        }

        #[allow(dead_code)] // only an op's inputs run
        impl $name<$crate::ops::Input> {
            /// Runs `op` on these inputs, named and ordered as declared (see `ops::run`).
            pub(crate) fn run(
                self,
                op: $crate::ops::Op,
            ) -> Result<Vec<burn::backend::DispatchTensor>, plasticity_kernels::SpecError> {
                $crate::ops::run(op, Self::names(), self.into_vec())
            }
        }
    };
    (@type $t:ident) => { $t };
    (@type $t:ident, $group:ident) => { $group<$t> };
    (@name $names:ident, $field:ident) => { $names.push(stringify!($field)) };
    (@name $names:ident, $field:ident, $group:ident) => { $group::<()>::append_names($names) };
    (@append $all:ident, $e:expr) => { $all.push($e) };
    (@append $all:ident, $e:expr, $group:ident) => { $e.append_to($all) };
    (@take $all:ident) => { $all.next().expect("an op's own packing has every tensor") };
    (@take $all:ident, $group:ident) => { $group::take_from($all) };
}
pub(crate) use op_tensors;

/// Which operation runs, with its spec: the one non-tensor argument of
/// [`PlasticityOps::run_op`].
#[derive(Clone, Debug)]
pub enum Op {
    /// A plastic episode, plain or neuromodulated (inputs and outputs as `episode.rs` declares).
    Episode(EpisodeSpec),
    /// The recurrence of a (plastic) LSTM layer.
    Lstm(LstmSpec),
    /// A stack of 3x3 stride-2 convolutions with `tanh`.
    ConvStack(ConvSpec),
    /// A plastic feed-forward layer.
    Dense(DenseSpec),
}

impl Op {
    /// Checks the spec's sizes and settings.
    fn validate(&self) -> Result<(), SpecError> {
        match self {
            Op::Episode(spec) => spec.validate(),
            Op::Lstm(spec) => spec.validate(),
            Op::ConvStack(spec) => spec.validate(),
            Op::Dense(spec) => spec.validate(),
        }
    }
}

/// The most inputs an op has (the LSTM's 13); the autodiff record is sized for it.
const MAX_INPUTS: usize = 13;

/// The input tensors of an op, in its order, as they cross burn's dispatch boundary (an
/// extension type holding any number of float tensors; `#[derive(ExtensionType)]` takes only
/// named tensor fields).
#[derive(Debug)]
pub struct OpInputs<B: Backend>(pub Vec<FloatTensor<B>>);

impl<B: Backend> ExtensionType<B> for OpInputs<B> {
    type Target = OpInputs<Dispatch>;

    fn map_to_dispatch<F>(self, map_kind: F, autodiff: DispatchAutodiffContext) -> Self::Target
    where
        F: Fn(BackendTensor<B>) -> DispatchTensorKind,
    {
        let wrap = |t| DispatchTensor {
            kind: map_kind(BackendTensor::Float(t)),
            autodiff,
        };
        OpInputs(self.0.into_iter().map(wrap).collect())
    }

    fn map_from_dispatch<F>(target: Self::Target, unwrap_kind: F) -> Self
    where
        F: Fn(DispatchTensor) -> BackendTensor<B>,
    {
        OpInputs(
            target
                .0
                .into_iter()
                .map(|t| unwrap_kind(t).float())
                .collect(),
        )
    }

    fn routing_tensor(target: &Self::Target) -> Option<&DispatchTensor> {
        target.0.first()
    }

    fn routing_float_tensor(target: &Self::Target) -> Option<&DispatchTensor> {
        target.0.first()
    }

    fn autodiff_context(target: &Self::Target) -> DispatchAutodiffContext {
        let disabled = DispatchAutodiffContext::Disabled;
        target.0.iter().fold(disabled, |c, t| c.merge(t.autodiff))
    }
}

/// Backends that run the crate's operations: `Flex`, `Cube` (feature `wgpu`) and `Autodiff` over
/// either.
#[backend_extension(Flex, Cube: cfg(feature = "wgpu"), Autodiff)]
pub trait PlasticityOps: Backend {
    /// Runs `op` on its input tensors (in the op's order; an empty tensor stands for an input the
    /// spec does not use, or for a zero initial trace). Returns the op's outputs, in its order;
    /// on autodiff backends only the first carries gradients.
    fn run_op(#[extension_type] inputs: OpInputs<Self>, op: Op) -> Vec<FloatTensor<Self>>;
}

impl PlasticityOps for Flex {
    fn run_op(inputs: OpInputs<Self>, op: Op) -> Vec<FloatTensor<Self>> {
        Self::op_forward(&op, inputs.0, false).0
    }
}

#[cfg(feature = "wgpu")]
impl PlasticityOps for burn::backend::Cube {
    fn run_op(inputs: OpInputs<Self>, op: Op) -> Vec<FloatTensor<Self>> {
        Self::op_forward(&op, inputs.0, false).0
    }
}

/// What a recorded op keeps for its backward: taken (once) by the backward.
struct SavedCell<S>(Arc<Mutex<Option<S>>>);

impl<S> Clone for SavedCell<S> {
    fn clone(&self) -> Self {
        SavedCell(self.0.clone())
    }
}

impl<S> fmt::Debug for SavedCell<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SavedCell")
    }
}

/// The backward of every op: the device's [`OpKernels::op_backward`].
#[derive(Debug)]
struct OpBackward;

impl<B: OpKernels> Backward<B, MAX_INPUTS> for OpBackward {
    type State = SavedCell<(B::Saved, usize)>;

    fn backward(
        self,
        ops: Ops<Self::State, MAX_INPUTS>,
        grads: &mut Gradients,
        _: &mut Checkpointer,
    ) {
        let upstream = grads.consume::<B>(&ops.node);
        let (saved, inputs) = ops
            .state
            .0
            .lock()
            .expect("op state lock")
            .take()
            .expect("backward runs once");
        let parents = &ops.parents[..inputs];
        let wanted: Vec<bool> = parents.iter().map(Option::is_some).collect();
        let g = B::op_backward(saved, upstream, &wanted);
        for (node, grad) in parents.iter().zip(g) {
            if let Some(node) = node {
                let grad = grad.expect("the op gives a gradient for every input that wants one");
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: OpKernels, C: CheckpointStrategy> PlasticityOps for Autodiff<B, C> {
    fn run_op(inputs: OpInputs<Self>, op: Op) -> Vec<FloatTensor<Self>> {
        let inputs = inputs.0;
        let count = inputs.len();
        assert!(count <= MAX_INPUTS, "an op has at most {MAX_INPUTS} inputs");
        let (primitives, mut guards): (Vec<_>, Vec<NodeGuard>) =
            inputs.into_iter().map(|t| t.into_parts()).unzip();
        // The record has room for MAX_INPUTS parents: constants (never tracked) fill the rest.
        let filler = || Self::from_inner(primitives[0].clone()).node();
        guards.resize_with(MAX_INPUTS, filler);
        let guards: [NodeGuard; MAX_INPUTS] = guards.try_into().expect("MAX_INPUTS guards");
        let prep = OpBackward.prepare::<C>(guards).compute_bound().stateful();
        let tracked = matches!(prep, OpsKind::Tracked(_));
        let (outputs, saved) = B::op_forward(&op, primitives, tracked);
        let mut outputs = outputs.into_iter();
        let first = outputs.next().expect("an op has an output");
        let first = match prep {
            OpsKind::Tracked(prep) => {
                let saved = saved.expect("the forward saved its state");
                prep.finish(SavedCell(Arc::new(Mutex::new(Some((saved, count))))), first)
            }
            OpsKind::UnTracked(prep) => prep.finish(first),
        };
        std::iter::once(first)
            .chain(outputs.map(Self::from_inner))
            .collect()
    }
}

/// One input of an op as its public function packs it.
#[allow(clippy::large_enum_variant)] // a dozen short-lived values per call
pub(crate) enum Input {
    /// A tensor and the shape it must have.
    Tensor {
        tensor: DispatchTensor,
        device: Device,
        shape: Vec<usize>,
        want: Vec<usize>,
    },
    /// Not used by the spec, or a zero initial trace: an empty tensor (never requiring a
    /// gradient) goes in its place.
    Empty,
    /// Required by the spec but not given: the error to report (after the shape errors).
    Missing(String),
}

impl Input {
    /// `tensor`, which must have shape `want`.
    pub(crate) fn new<const D: usize>(tensor: Tensor<D>, want: impl Into<Vec<usize>>) -> Self {
        Input::Tensor {
            device: tensor.device(),
            shape: tensor.dims().to_vec(),
            tensor: tensor.into_dispatch(),
            want: want.into(),
        }
    }

    /// `tensor` of shape `want` when given, [`Input::Empty`] otherwise.
    pub(crate) fn optional<const D: usize>(
        tensor: Option<Tensor<D>>,
        want: impl Into<Vec<usize>>,
    ) -> Self {
        tensor.map_or(Input::Empty, |t| Input::new(t, want))
    }
}

/// Checks `got` against `want` with the error every op reports.
fn check_shape(what: &str, got: &[usize], want: &[usize]) -> Result<(), SpecError> {
    if got == want {
        Ok(())
    } else {
        Err(SpecError(format!(
            "{what}: expected shape {want:?}, got {got:?}"
        )))
    }
}

/// Checks the spec, then every input's shape (in the op's order, named by `names`), then that
/// every input the spec needs is given; fills the empty ones and runs `op` on the device of the
/// first input (which must be a tensor). Returns the outputs.
pub(crate) fn run(
    op: Op,
    names: Vec<&str>,
    inputs: Vec<Input>,
) -> Result<Vec<DispatchTensor>, SpecError> {
    op.validate()?;
    let mut device = None;
    for (name, input) in names.iter().zip(&inputs) {
        if let Input::Tensor { shape, want, .. } = input {
            check_shape(name, shape, want)?;
        }
    }
    if let Some(Input::Missing(error)) = inputs.iter().find(|i| matches!(i, Input::Missing(_))) {
        return Err(SpecError(error.clone()));
    }
    let tensors: Vec<DispatchTensor> = inputs
        .into_iter()
        .map(|input| match input {
            Input::Tensor {
                tensor, device: d, ..
            } => {
                device.get_or_insert(d);
                tensor
            }
            Input::Missing(_) => unreachable!("reported above"),
            Input::Empty => {
                let device = device.as_ref().expect("an op's first input is a tensor");
                Tensor::<1>::zeros([0], device).into_dispatch()
            }
        })
        .collect();
    Ok(Dispatch::run_op(OpInputs(tensors), op))
}
