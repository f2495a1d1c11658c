//! The fused plastic episode as a burn 0.22 operation with a hand-written backward.
//!
//! This file is the only place that knows burn's backend-extension and autodiff internals
//! (`#[backend_extension]`, `Backward`, `Ops`, node guards): an upgrade of burn touches it alone.
//! The backends listed in the macro get an implementation; a GPU kernel goes behind a cargo
//! feature as one more `impl PlasticOps for <backend>` (and the selector in the macro).
//!
//! Inside, tensors are copied to flat `f32` buffers, the kernels of `plasticity-kernels` run,
//! and the results are copied back. The copies are `O(T B N + N^2)` per episode, small next to
//! the `O(T B N^2)` work of the kernels.

use crate::tensors::prim_to_vec;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{
    backend_extension, tensor::FloatTensor, Autodiff, AutodiffBackend, Backend, Dispatch, Flex,
    TensorMetadata,
};
use burn::tensor::{Tensor, TensorData};
use plasticity_kernels::{self as kernels, Episode, EpisodeSpec, Params, SpecError};
use std::sync::{Arc, Mutex};

/// Backends that can run a plastic episode.
#[backend_extension(Flex, Autodiff)]
pub trait PlasticOps: Backend {
    /// Runs a whole episode. `w: [N, N]`, `alpha: [N, N] | [1, N] | [1, 1]`, `eta: [1]`,
    /// `x: [B, T, N]`, `y0: [B, N]`, `hebb0: [B, N, N]`. Returns `(ys: [B, T, N], hebb_T: [B, N, N])`;
    /// the final trace carries no gradient.
    fn plastic_episode(
        w: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        eta: FloatTensor<Self>,
        x: FloatTensor<Self>,
        y0: FloatTensor<Self>,
        hebb0: FloatTensor<Self>,
        spec: EpisodeSpec,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// `[B, T, N] <-> [T, B, N]` (the kernels are time-major).
fn swap_bt(v: &[f32], first: usize, second: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for a in 0..first {
        for b in 0..second {
            out[(b * first + a) * n..(b * first + a + 1) * n]
                .copy_from_slice(&v[(a * second + b) * n..(a * second + b + 1) * n]);
        }
    }
    out
}

/// Runs the kernels' forward on flat buffers laid out as the op's tensors.
fn run_forward(
    spec: &EpisodeSpec,
    w: &[f32],
    alpha: &[f32],
    eta: f32,
    x_btn: &[f32],
    y0: &[f32],
    hebb0: &[f32],
) -> Episode<f32> {
    let x = swap_bt(x_btn, spec.batch, spec.steps, spec.neurons);
    // An empty `hebb0` stands for zeros (see `plastic_episode`).
    let hebb0 = (!hebb0.is_empty()).then_some(hebb0);
    // Shapes were checked by `plastic_episode` before dispatch.
    kernels::forward(spec, &Params { w, alpha, eta }, &x, y0, hebb0)
        .expect("shapes checked before dispatch")
}

fn outputs(spec: &EpisodeSpec, ep: &Episode<f32>) -> (TensorData, TensorData) {
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    (
        TensorData::new(swap_bt(&ep.ys, t, b, n), [b, t, n]),
        TensorData::new(ep.hebb.clone(), [b, n, n]),
    )
}

impl PlasticOps for Flex {
    fn plastic_episode(
        w: FlexTensor,
        alpha: FlexTensor,
        eta: FlexTensor,
        x: FlexTensor,
        y0: FlexTensor,
        hebb0: FlexTensor,
        spec: EpisodeSpec,
    ) -> (FlexTensor, FlexTensor) {
        let v = |t: FlexTensor| prim_to_vec::<Flex>(t);
        let ep = run_forward(&spec, &v(w), &v(alpha), v(eta)[0], &v(x), &v(y0), &v(hebb0));
        let (ys, hebb) = outputs(&spec, &ep);
        (FlexTensor::from_data(ys), FlexTensor::from_data(hebb))
    }
}

/// What the backward needs: the kernels' episode record and the parameters it ran with.
#[derive(Clone, Debug)]
struct PlasticState {
    episode: Arc<Mutex<Option<Episode<f32>>>>,
    w: Arc<Vec<f32>>,
    alpha: Arc<Vec<f32>>,
    eta: f32,
}

#[derive(Debug)]
struct PlasticBackward;

impl<B: Backend> Backward<B, 6> for PlasticBackward {
    type State = PlasticState;

    fn backward(self, ops: Ops<PlasticState, 6>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_w, node_alpha, node_eta, node_x, node_y0, node_hebb0] = ops.parents;
        let upstream = grads.consume::<B>(&ops.node);
        let device = TensorMetadata::device(&upstream);
        let gy_btn = prim_to_vec::<B>(upstream);
        let state = ops.state;
        let episode = state
            .episode
            .lock()
            .expect("episode lock")
            .take()
            .expect("backward runs once");
        let spec = *episode.spec();
        let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
        let gy = swap_bt(&gy_btn, b, t, n);
        let p = Params {
            w: &state.w,
            alpha: &state.alpha,
            eta: state.eta,
        };
        let g = kernels::backward(&p, episode, &gy, None).expect("shapes checked before dispatch");
        let results = [
            (node_w, g.w, vec![n, n]),
            (node_alpha, g.alpha, spec.alpha.dims(n).to_vec()),
            (node_eta, vec![g.eta], vec![1]),
            (node_x, swap_bt(&g.x, t, b, n), vec![b, t, n]),
            (node_y0, g.y0, vec![b, n]),
            (node_hebb0, g.hebb0, vec![b, n, n]),
        ];
        for (node, data, shape) in results {
            if let Some(node) = node {
                grads.register::<B>(
                    node.id,
                    B::float_from_data(TensorData::new(data, shape), &device),
                );
            }
        }
    }
}

impl<B: Backend, C: CheckpointStrategy> PlasticOps for Autodiff<B, C> {
    fn plastic_episode(
        w: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        eta: FloatTensor<Self>,
        x: FloatTensor<Self>,
        y0: FloatTensor<Self>,
        hebb0: FloatTensor<Self>,
        spec: EpisodeSpec,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let guards = [
            w.node(),
            alpha.node(),
            eta.node(),
            x.node(),
            y0.node(),
            hebb0.node(),
        ];
        let device = TensorMetadata::device(w.primitive());
        let v = |t: FloatTensor<Self>| prim_to_vec::<B>(t.into_primitive());
        let (w, alpha, eta) = (Arc::new(v(w)), Arc::new(v(alpha)), v(eta)[0]);
        let ep = run_forward(&spec, &w, &alpha, eta, &v(x), &v(y0), &v(hebb0));
        let (ys, hebb) = outputs(&spec, &ep);
        let ys = B::float_from_data(ys, &device);
        let hebb = <Self as AutodiffBackend>::from_inner(B::float_from_data(hebb, &device));
        let ys = match PlasticBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = PlasticState {
                    episode: Arc::new(Mutex::new(Some(ep))),
                    w,
                    alpha,
                    eta,
                };
                prep.finish(state, ys)
            }
            OpsKind::UnTracked(prep) => prep.finish(ys),
        };
        (ys, hebb)
    }
}

/// Runs a plastic episode on any supported device, with gradients on autodiff devices.
///
/// Shapes: `w: [N, N]`, `alpha: [N, N] | [1, N] | [1, 1]` (as `spec.alpha`), `eta: [1]`,
/// `x: [B, T, N]`, `y0: [B, N]`, `hebb0: [B, N, N]` (`None`: zeros, without allocating them).
/// Returns `(ys: [B, T, N], hebb_T: [B, N, N])`; `hebb_T` is detached (no gradient flows back
/// through it).
pub fn plastic_episode(
    w: Tensor<2>,
    alpha: Tensor<2>,
    eta: Tensor<1>,
    x: Tensor<3>,
    y0: Tensor<2>,
    hebb0: Option<Tensor<3>>,
    spec: EpisodeSpec,
) -> Result<(Tensor<3>, Tensor<3>), SpecError> {
    spec.validate()?;
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let check = |what: &str, got: Vec<usize>, want: Vec<usize>| {
        if got == want {
            Ok(())
        } else {
            Err(SpecError(format!(
                "{what}: expected shape {want:?}, got {got:?}"
            )))
        }
    };
    check("w", w.dims().to_vec(), vec![n, n])?;
    check("alpha", alpha.dims().to_vec(), spec.alpha.dims(n).to_vec())?;
    check("eta", eta.dims().to_vec(), vec![1])?;
    check("x", x.dims().to_vec(), vec![b, t, n])?;
    check("y0", y0.dims().to_vec(), vec![b, n])?;
    if let Some(h) = &hebb0 {
        check("hebb0", h.dims().to_vec(), vec![b, n, n])?;
    }
    // The operation needs a tensor: an empty one (never requiring grad) stands for zeros.
    let hebb0 = hebb0.unwrap_or_else(|| Tensor::zeros([0, 0, 0], &w.device()));
    let (ys, hebb) = Dispatch::plastic_episode(
        w.into_dispatch(),
        alpha.into_dispatch(),
        eta.into_dispatch(),
        x.into_dispatch(),
        y0.into_dispatch(),
        hebb0.into_dispatch(),
        spec,
    );
    Ok((Tensor::from_dispatch(ys), Tensor::from_dispatch(hebb)))
}
