//! What a device implements to run every op ([`OpKernels`]), and the host path that runs an op's
//! CPU kernels on flat buffers ([`HostKernels`]): all of `Flex`, and what `Cube` does not run on
//! the device.

use super::Op;
use crate::tensors::prim_to_vec;
use burn::backend::{tensor::FloatTensor, Backend, Flex, TensorMetadata};
use burn::tensor::TensorData;
use plasticity_kernels::{conv::ConvSpec, dense::DenseSpec, EpisodeSpec, LstmSpec};
use std::fmt;

/// What [`OpKernels::op_forward`] returns: the op's outputs (in its order) and, when asked,
/// what its backward needs.
pub type OpForward<B> = (Vec<FloatTensor<B>>, Option<<B as OpKernels>::Saved>);

/// The forward and backward of every [`Op`] on one (non-autodiff) backend. The autodiff glue
/// is written once over this trait; a device (CPU, wgpu, CUDA) implements it once.
pub trait OpKernels: Backend {
    /// What a backward keeps from its forward.
    type Saved: Send + fmt::Debug + 'static;

    /// Runs `op` on `inputs` (in the op's order); with `save`, also returns what
    /// [`OpKernels::op_backward`] needs.
    fn op_forward(op: &Op, inputs: Vec<FloatTensor<Self>>, save: bool) -> OpForward<Self>;

    /// From `grad = dL/d(first output)`, a gradient for each input in the op's order: at least
    /// for every input whose `wanted` flag is set (`None` elsewhere is fine).
    fn op_backward(
        saved: Self::Saved,
        grad: FloatTensor<Self>,
        wanted: &[bool],
    ) -> Vec<Option<FloatTensor<Self>>>;
}

/// An op's CPU kernels on flat row-major `f32` buffers, inputs and outputs in the op's order
/// (an empty buffer for an empty input).
pub trait HostKernels {
    /// What the backward needs from the forward.
    type Saved: Send + fmt::Debug + 'static;

    /// Runs the op; returns its outputs and what its backward needs.
    fn forward(&self, inputs: Vec<Vec<f32>>) -> (Vec<TensorData>, Self::Saved);

    /// Gradients for the inputs from `grad = dL/d(first output)` (see
    /// [`OpKernels::op_backward`]).
    fn backward(saved: Self::Saved, grad: Vec<f32>, wanted: &[bool]) -> Vec<Option<TensorData>>;
}

/// The first value of a one-number buffer (0 for an empty one).
pub(crate) fn scalar(v: &[f32]) -> f32 {
    v.first().copied().unwrap_or(0.0)
}

/// A non-empty buffer, or `None` (zeros).
pub(crate) fn given(v: &[f32]) -> Option<&[f32]> {
    (!v.is_empty()).then_some(v)
}

/// `v` with shape `dims`, or an empty `[0, ..]` tensor when `v` is empty.
pub(crate) fn data<const D: usize>(v: Vec<f32>, dims: [usize; D]) -> TensorData {
    let dims = if v.is_empty() { [0; D] } else { dims };
    TensorData::new(v, dims)
}

/// What an op run on the host keeps for its backward.
#[derive(Debug)]
pub enum HostSaved {
    /// A plastic episode.
    Episode(<EpisodeSpec as HostKernels>::Saved),
    /// An LSTM recurrence.
    Lstm(<LstmSpec as HostKernels>::Saved),
    /// A convolution stack.
    ConvStack(<ConvSpec as HostKernels>::Saved),
    /// A plastic feed-forward layer.
    Dense(<DenseSpec as HostKernels>::Saved),
}

/// Runs `op` on the host: copies the inputs from backend `B`, runs the op's [`HostKernels`],
/// copies the outputs back. The copies are `O(inputs + outputs)`, small next to the kernels' work.
pub fn host_forward<B: Backend>(
    op: &Op,
    inputs: Vec<FloatTensor<B>>,
    save: bool,
) -> (Vec<FloatTensor<B>>, Option<HostSaved>) {
    let device = TensorMetadata::device(&inputs[0]);
    let buffers: Vec<Vec<f32>> = inputs.into_iter().map(prim_to_vec::<B>).collect();
    /// `spec`'s forward, its record wrapped by `saved`.
    fn forward<K: HostKernels>(
        spec: &K,
        buffers: Vec<Vec<f32>>,
        saved: fn(K::Saved) -> HostSaved,
    ) -> (Vec<TensorData>, HostSaved) {
        let (outputs, record) = spec.forward(buffers);
        (outputs, saved(record))
    }
    let (outputs, saved) = match op {
        Op::Episode(spec) => forward(spec, buffers, HostSaved::Episode),
        Op::Lstm(spec) => forward(spec, buffers, HostSaved::Lstm),
        Op::ConvStack(spec) => forward(spec, buffers, HostSaved::ConvStack),
        Op::Dense(spec) => forward(spec, buffers, HostSaved::Dense),
    };
    let outputs = outputs
        .into_iter()
        .map(|data| B::float_from_data(data, &device))
        .collect();
    (outputs, save.then_some(saved))
}

/// The backward of [`host_forward`].
pub fn host_backward<B: Backend>(
    saved: HostSaved,
    grad: FloatTensor<B>,
    wanted: &[bool],
) -> Vec<Option<FloatTensor<B>>> {
    let device = TensorMetadata::device(&grad);
    let grad = prim_to_vec::<B>(grad);
    let grads = match saved {
        HostSaved::Episode(s) => EpisodeSpec::backward(s, grad, wanted),
        HostSaved::Lstm(s) => LstmSpec::backward(s, grad, wanted),
        HostSaved::ConvStack(s) => ConvSpec::backward(s, grad, wanted),
        HostSaved::Dense(s) => DenseSpec::backward(s, grad, wanted),
    };
    grads
        .into_iter()
        .map(|g| g.map(|data| B::float_from_data(data, &device)))
        .collect()
}

impl OpKernels for Flex {
    type Saved = HostSaved;

    fn op_forward(op: &Op, inputs: Vec<FloatTensor<Self>>, save: bool) -> OpForward<Self> {
        host_forward::<Self>(op, inputs, save)
    }

    fn op_backward(
        saved: HostSaved,
        grad: FloatTensor<Self>,
        wanted: &[bool],
    ) -> Vec<Option<FloatTensor<Self>>> {
        host_backward::<Self>(saved, grad, wanted)
    }
}

/// What an op run on `Cube` keeps for its backward.
#[cfg(feature = "wgpu")]
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one value per recorded op
pub enum CubeSaved {
    /// A plain episode run with tensor operations on the device.
    Episode(crate::tensor_episode::Saved<burn::backend::Cube>),
    /// Any other op, run on the host.
    Host(HostSaved),
}

/// GPU (feature `wgpu`): plain episodes stay on the device
/// ([`tensor_episode`](crate::tensor_episode)); the other ops run on the host.
#[cfg(feature = "wgpu")]
impl OpKernels for burn::backend::Cube {
    type Saved = CubeSaved;

    fn op_forward(op: &Op, inputs: Vec<FloatTensor<Self>>, save: bool) -> OpForward<Self> {
        match op {
            Op::Episode(spec)
                if spec.plastic && spec.modulation == plasticity_kernels::Modulation::None =>
            {
                let (outputs, saved) = super::episode::tensor_forward::<Self>(*spec, inputs, save);
                (outputs, saved.map(CubeSaved::Episode))
            }
            _ => {
                let (outputs, saved) = host_forward::<Self>(op, inputs, save);
                (outputs, saved.map(CubeSaved::Host))
            }
        }
    }

    fn op_backward(
        saved: CubeSaved,
        grad: FloatTensor<Self>,
        wanted: &[bool],
    ) -> Vec<Option<FloatTensor<Self>>> {
        match saved {
            CubeSaved::Episode(s) => super::episode::tensor_backward::<Self>(s, grad),
            CubeSaved::Host(s) => host_backward::<Self>(s, grad, wanted),
        }
    }
}
