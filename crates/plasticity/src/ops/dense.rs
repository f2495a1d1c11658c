//! The plastic feed-forward layer (ICML 2018 section 4.3, the Omniglot output layer) as one op
//! over `plasticity_kernels::dense`, the engine's passes with the layer's input as presynaptic
//! activity.

use super::device::{data, given, scalar, HostKernels};
use super::{op_tensors, Input, Op};
use crate::tensors::swap_bt;
use burn::tensor::{Tensor, TensorData};
use plasticity_kernels::dense::{self as kernels, DenseEpisode, DenseParams, DenseSpec};
use plasticity_kernels::SpecError;

op_tensors!(
    /// The inputs of a plastic feed-forward episode: `x: [B, T, I]`, the logit offset
    /// `offset: [B, T, O]` (empty: none), `w, alpha: [I, O]`, `eta: [1]`.
    DenseInputs { x, offset, w, alpha, eta }
);

/// Runs a plastic feed-forward layer over `T` steps from a zero trace (see
/// [`plasticity_kernels::dense`] for the equations), with gradients on autodiff devices for
/// `x`, `offset`, `w`, `alpha` and `eta`.
///
/// Shapes: `x: [B, T, I]`, `offset: [B, T, O]` (added to the logits; `None`: zero),
/// `w, alpha: [I, O]`, `eta: [1]`. Returns the logits `z: [B, T, O]` (offset included); the
/// outputs are `spec.activation` of them, which the trace took as postsynaptic activity.
pub fn plastic_dense(
    x: Tensor<3>,
    offset: Option<Tensor<3>>,
    w: Tensor<2>,
    alpha: Tensor<2>,
    eta: Tensor<1>,
    spec: DenseSpec,
) -> Result<Tensor<3>, SpecError> {
    let (i, o, b, t) = (spec.inputs, spec.outputs, spec.batch, spec.steps);
    let inputs = DenseInputs {
        x: Input::new(x, [b, t, i]),
        offset: Input::optional(offset, [b, t, o]),
        w: Input::new(w, [i, o]),
        alpha: Input::new(alpha, [i, o]),
        eta: Input::new(eta, [1]),
    };
    let mut out = inputs.run(Op::Dense(spec))?;
    Ok(Tensor::from_dispatch(out.remove(0)))
}

/// The layer's CPU kernels on host buffers.
impl HostKernels for DenseSpec {
    /// The kernels' record, and the inputs without `x` and `offset`.
    type Saved = (DenseEpisode<f32>, DenseInputs<Vec<f32>>);

    fn forward(&self, inputs: Vec<Vec<f32>>) -> (Vec<TensorData>, Self::Saved) {
        let (i, o, b, t) = (self.inputs, self.outputs, self.batch, self.steps);
        let mut p = DenseInputs::from_vec(inputs);
        let x = swap_bt(&p.x, b, t, i);
        let offset = given(&p.offset).map_or_else(Vec::new, |c| swap_bt(c, b, t, o));
        let params = DenseParams {
            w: &p.w,
            alpha: &p.alpha,
            eta: scalar(&p.eta),
        };
        // Shapes were checked by `run` before dispatch.
        let episode = kernels::dense_forward(self, &params, &x, &offset)
            .expect("shapes checked before dispatch");
        let z = data(swap_bt(episode.logits(), t, b, o), [b, t, o]);
        (p.x, p.offset) = Default::default();
        (vec![z], (episode, p))
    }

    fn backward(saved: Self::Saved, gz: Vec<f32>, _: &[bool]) -> Vec<Option<TensorData>> {
        let (episode, p) = saved;
        let spec = *episode.spec();
        let (i, o, b, t) = (spec.inputs, spec.outputs, spec.batch, spec.steps);
        let params = DenseParams {
            w: &p.w,
            alpha: &p.alpha,
            eta: scalar(&p.eta),
        };
        let gz = swap_bt(&gz, b, t, o);
        let g = kernels::dense_backward(&params, &episode, &gz).expect("checked in the forward");
        let grads = DenseInputs {
            x: data(swap_bt(&g.x, t, b, i), [b, t, i]),
            offset: data(swap_bt(&g.offset, t, b, o), [b, t, o]),
            w: data(g.w, [i, o]),
            alpha: data(g.alpha, [i, o]),
            eta: data(vec![g.eta], [1]),
        };
        grads.into_vec().into_iter().map(Some).collect()
    }
}
