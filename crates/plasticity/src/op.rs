//! The fused plastic episode as a burn 0.22 operation with a hand-written backward.
//!
//! This file is the only place that knows burn's backend-extension and autodiff internals
//! (`#[backend_extension]`, `Backward`, `Ops`, node guards): an upgrade of burn touches it alone.
//! The autodiff operation is written once, over [`EpisodeKernels`] (a forward that can save
//! what its backward needs, and that backward); each backend implements it:
//!
//! - `Flex` (CPU): tensors are copied to flat `f32` buffers, the fused kernels of
//!   `plasticity-kernels` run, and the results are copied back. The copies are
//!   `O(T B N + N^2)` per episode, small next to the `O(T B N^2)` work of the kernels.
//! - `Cube` (GPU, cargo feature `wgpu`): [`tensor_episode`](crate::tensor_episode), the same
//!   maths as burn backend tensor operations, so the data stays on the device.

use crate::tensors::prim_to_vec;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{
    backend_extension, tensor::FloatTensor, Autodiff, AutodiffBackend, Backend, Dispatch, Flex,
};
use burn::tensor::{Tensor, TensorData};
use plasticity_kernels::{self as kernels, Episode, EpisodeSpec, Params, SpecError};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Backends that can run a plastic episode.
#[backend_extension(Flex, Cube: cfg(feature = "wgpu"), Autodiff)]
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

/// The forward and hand-written backward of an episode on one (non-autodiff) backend: the CPU
/// kernels on `Flex`, [`tensor_episode`](crate::tensor_episode) on GPU backends. The autodiff
/// operation is written once over this trait.
pub trait EpisodeKernels: Backend {
    /// What the backward keeps from the forward.
    type Saved: Send + fmt::Debug + 'static;

    /// Runs the episode (shapes as [`PlasticOps::plastic_episode`]); with `save`, also returns
    /// what [`EpisodeKernels::episode_backward`] needs.
    #[allow(clippy::too_many_arguments)]
    fn episode_forward(
        w: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        eta: FloatTensor<Self>,
        x: FloatTensor<Self>,
        y0: FloatTensor<Self>,
        hebb0: FloatTensor<Self>,
        spec: EpisodeSpec,
        save: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, Option<Self::Saved>);

    /// Gradients for `[w, alpha, eta, x, y0, hebb0]` from `gy = dL/dys: [B, T, N]`.
    fn episode_backward(saved: Self::Saved, gy: FloatTensor<Self>) -> [FloatTensor<Self>; 6];
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

/// What the CPU backward needs: the kernels' episode record and the parameters it ran with.
#[derive(Debug)]
pub struct CpuSaved {
    episode: Episode<f32>,
    w: Vec<f32>,
    alpha: Vec<f32>,
    eta: f32,
}

impl EpisodeKernels for Flex {
    type Saved = CpuSaved;

    fn episode_forward(
        w: FlexTensor,
        alpha: FlexTensor,
        eta: FlexTensor,
        x: FlexTensor,
        y0: FlexTensor,
        hebb0: FlexTensor,
        spec: EpisodeSpec,
        save: bool,
    ) -> (FlexTensor, FlexTensor, Option<CpuSaved>) {
        let v = |t: FlexTensor| prim_to_vec::<Flex>(t);
        let (w, alpha, eta) = (v(w), v(alpha), v(eta)[0]);
        let episode = run_forward(&spec, &w, &alpha, eta, &v(x), &v(y0), &v(hebb0));
        let (ys, hebb) = outputs(&spec, &episode);
        let saved = save.then_some(CpuSaved {
            episode,
            w,
            alpha,
            eta,
        });
        (
            FlexTensor::from_data(ys),
            FlexTensor::from_data(hebb),
            saved,
        )
    }

    fn episode_backward(saved: CpuSaved, gy: FlexTensor) -> [FlexTensor; 6] {
        let spec = *saved.episode.spec();
        let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
        let gy = swap_bt(&prim_to_vec::<Flex>(gy), b, t, n);
        let p = Params {
            w: &saved.w,
            alpha: &saved.alpha,
            eta: saved.eta,
        };
        let g = kernels::backward(&p, saved.episode, &gy, None)
            .expect("shapes checked before dispatch");
        let mk =
            |data: Vec<f32>, shape: Vec<usize>| FlexTensor::from_data(TensorData::new(data, shape));
        [
            mk(g.w, vec![n, n]),
            mk(g.alpha, spec.alpha.dims(n).to_vec()),
            mk(vec![g.eta], vec![1]),
            mk(swap_bt(&g.x, t, b, n), vec![b, t, n]),
            mk(g.y0, vec![b, n]),
            mk(g.hebb0, vec![b, n, n]),
        ]
    }
}

#[cfg(feature = "wgpu")]
impl EpisodeKernels for burn::backend::Cube {
    type Saved = crate::tensor_episode::Saved<Self>;

    fn episode_forward(
        w: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        eta: FloatTensor<Self>,
        x: FloatTensor<Self>,
        y0: FloatTensor<Self>,
        hebb0: FloatTensor<Self>,
        spec: EpisodeSpec,
        save: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, Option<Self::Saved>) {
        // `eta` is one number: read it once per episode rather than broadcasting a tensor.
        let eta = prim_to_vec::<Self>(eta)[0];
        crate::tensor_episode::forward::<Self>(w, alpha, eta, x, y0, hebb0, spec, save)
    }

    fn episode_backward(saved: Self::Saved, gy: FloatTensor<Self>) -> [FloatTensor<Self>; 6] {
        let g = crate::tensor_episode::backward::<Self>(saved, gy);
        [g.w, g.alpha, g.eta, g.x, g.y0, g.hebb0]
    }
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
        let (ys, hebb, _) = Self::episode_forward(w, alpha, eta, x, y0, hebb0, spec, false);
        (ys, hebb)
    }
}

#[cfg(feature = "wgpu")]
impl PlasticOps for burn::backend::Cube {
    fn plastic_episode(
        w: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        eta: FloatTensor<Self>,
        x: FloatTensor<Self>,
        y0: FloatTensor<Self>,
        hebb0: FloatTensor<Self>,
        spec: EpisodeSpec,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (ys, hebb, _) = Self::episode_forward(w, alpha, eta, x, y0, hebb0, spec, false);
        (ys, hebb)
    }
}

/// The backward's state: taken (once) by the backward.
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

#[derive(Debug)]
struct PlasticBackward;

impl<B: EpisodeKernels> Backward<B, 6> for PlasticBackward {
    type State = SavedCell<B::Saved>;

    fn backward(self, ops: Ops<Self::State, 6>, grads: &mut Gradients, _: &mut Checkpointer) {
        let upstream = grads.consume::<B>(&ops.node);
        let saved = ops
            .state
            .0
            .lock()
            .expect("episode lock")
            .take()
            .expect("backward runs once");
        let g = B::episode_backward(saved, upstream);
        for (node, grad) in ops.parents.into_iter().zip(g) {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: EpisodeKernels, C: CheckpointStrategy> PlasticOps for Autodiff<B, C> {
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
        let p = |t: FloatTensor<Self>| t.into_primitive();
        let (ys, hebb, saved) =
            B::episode_forward(p(w), p(alpha), p(eta), p(x), p(y0), p(hebb0), spec, true);
        let hebb = <Self as AutodiffBackend>::from_inner(hebb);
        let ys = match PlasticBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let saved = saved.expect("the forward saved its state");
                prep.finish(SavedCell(Arc::new(Mutex::new(Some(saved)))), ys)
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
