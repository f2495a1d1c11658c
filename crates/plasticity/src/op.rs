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
//!
//! The neuromodulated episode, the plastic LSTM and the Omniglot convolution stack
//! ([`conv_stack`]) are further operations with the same copy-in, copy-out pattern (CPU only).

use crate::tensors::{prim_to_vec, swap_bt};
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{
    backend_extension, tensor::FloatTensor, Autodiff, AutodiffBackend, Backend, Dispatch,
    DispatchDevice, Flex, TensorMetadata,
};
use burn::tensor::{Device, Tensor, TensorData};
use plasticity_kernels::conv::{ConvForward, ConvLayer, ConvSpec};
use plasticity_kernels::{
    self as kernels, Episode, EpisodeSpec, LstmPlasticity, LstmSpec, Params, SpecError,
};
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
            mk(vec![g.rule.eta], vec![1]),
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
    if spec.modulation != kernels::Modulation::None {
        return Err(SpecError(
            "modulation: modulated episodes run through modulated_episode".into(),
        ));
    }
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

// ---------------------------------------------------------------------------------------------
// Neuromodulated plasticity (ICLR 2019, "Backpropamine"): a second operation over the kernels of
// `plasticity_kernels::modulated`, with the same copy-in, copy-out pattern.
// ---------------------------------------------------------------------------------------------

/// Backends that can run a neuromodulated plastic episode.
#[backend_extension(Flex, Autodiff)]
pub trait ModulatedOps: Backend {
    /// Runs a whole modulated episode. `w: [N, N]`, `alpha: [N, N] | [1, N] | [1, 1]`,
    /// `m: [N]`, `m_bias: [1]`, `fan_w, fan_b: [N]` (`[0]` without fan-out), `eta_e: [1]`,
    /// `x: [B, T, N]`, `y0: [B, N]`, `hebb0, elig0: [B, N, N]` (`[0, 0, 0]`: zeros).
    /// Returns `(ys: [B, T, N], hebb_T: [B, N, N], elig_T: [B, N, N] | [0, 0, 0],
    /// modulator: [B, T])`; only `ys` carries gradients.
    #[allow(clippy::too_many_arguments)]
    fn modulated_episode(
        w: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        m: FloatTensor<Self>,
        m_bias: FloatTensor<Self>,
        fan_w: FloatTensor<Self>,
        fan_b: FloatTensor<Self>,
        eta_e: FloatTensor<Self>,
        x: FloatTensor<Self>,
        y0: FloatTensor<Self>,
        hebb0: FloatTensor<Self>,
        elig0: FloatTensor<Self>,
        spec: EpisodeSpec,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );
}

/// The parameters of a modulated episode as flat buffers (what the backward needs again).
#[derive(Clone, Debug)]
struct ModulatedBuffers {
    w: Vec<f32>,
    alpha: Vec<f32>,
    m: Vec<f32>,
    m_bias: f32,
    fan_w: Vec<f32>,
    fan_b: Vec<f32>,
    eta_e: f32,
}

impl ModulatedBuffers {
    fn params(&self) -> kernels::ModulatedParams<'_, f32> {
        kernels::ModulatedParams {
            w: &self.w,
            alpha: &self.alpha,
            m: &self.m,
            m_bias: self.m_bias,
            fan_w: &self.fan_w,
            fan_b: &self.fan_b,
            eta_e: self.eta_e,
        }
    }
}

/// Runs the kernels' modulated forward on flat buffers laid out as the op's tensors.
fn run_modulated_forward(
    spec: &EpisodeSpec,
    p: &ModulatedBuffers,
    x_btn: &[f32],
    y0: &[f32],
    hebb0: &[f32],
    elig0: &[f32],
) -> kernels::Episode<f32> {
    let x = swap_bt(x_btn, spec.batch, spec.steps, spec.neurons);
    let hebb0 = (!hebb0.is_empty()).then_some(hebb0);
    let elig0 = (!elig0.is_empty()).then_some(elig0);
    // Shapes were checked by `modulated_episode` before dispatch.
    kernels::rnn::forward_modulated(spec, &p.params(), &x, y0, hebb0, elig0)
        .expect("shapes checked before dispatch")
}

/// `(ys: [B, T, N], hebb_T, elig_T, modulator: [B, T])` as tensor data.
fn modulated_outputs(spec: &EpisodeSpec, ep: &kernels::Episode<f32>) -> [TensorData; 4] {
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let elig_dims = if ep.elig.is_empty() {
        [0, 0, 0]
    } else {
        [b, n, n]
    };
    [
        TensorData::new(swap_bt(&ep.ys, t, b, n), [b, t, n]),
        TensorData::new(ep.hebb.clone(), [b, n, n]),
        TensorData::new(ep.elig.clone(), elig_dims),
        TensorData::new(swap_bt(&ep.modulator, t, b, 1), [b, t]),
    ]
}

impl ModulatedOps for Flex {
    fn modulated_episode(
        w: FlexTensor,
        alpha: FlexTensor,
        m: FlexTensor,
        m_bias: FlexTensor,
        fan_w: FlexTensor,
        fan_b: FlexTensor,
        eta_e: FlexTensor,
        x: FlexTensor,
        y0: FlexTensor,
        hebb0: FlexTensor,
        elig0: FlexTensor,
        spec: EpisodeSpec,
    ) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
        let v = |t: FlexTensor| prim_to_vec::<Flex>(t);
        let p = ModulatedBuffers {
            w: v(w),
            alpha: v(alpha),
            m: v(m),
            m_bias: v(m_bias)[0],
            fan_w: v(fan_w),
            fan_b: v(fan_b),
            eta_e: v(eta_e)[0],
        };
        let ep = run_modulated_forward(&spec, &p, &v(x), &v(y0), &v(hebb0), &v(elig0));
        let [ys, hebb, elig, modulator] = modulated_outputs(&spec, &ep);
        (
            FlexTensor::from_data(ys),
            FlexTensor::from_data(hebb),
            FlexTensor::from_data(elig),
            FlexTensor::from_data(modulator),
        )
    }
}

/// What the modulated backward needs: the kernels' episode record and the parameters.
#[derive(Clone, Debug)]
struct ModulatedState {
    episode: Arc<Mutex<Option<kernels::Episode<f32>>>>,
    params: Arc<ModulatedBuffers>,
}

#[derive(Debug)]
struct ModulatedBackward;

impl<B: Backend> Backward<B, 11> for ModulatedBackward {
    type State = ModulatedState;

    fn backward(self, ops: Ops<ModulatedState, 11>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_w, node_alpha, node_m, node_m_bias, node_fan_w, node_fan_b, node_eta_e, node_x, node_y0, node_hebb0, node_elig0] =
            ops.parents;
        let upstream = grads.consume::<B>(&ops.node);
        let device = TensorMetadata::device(&upstream);
        let gy_btn = prim_to_vec::<B>(upstream);
        let episode = ops
            .state
            .episode
            .lock()
            .expect("episode lock")
            .take()
            .expect("backward runs once");
        let spec = *episode.spec();
        let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
        let gy = swap_bt(&gy_btn, b, t, n);
        let g =
            kernels::rnn::backward_modulated(&ops.state.params.params(), episode, &gy, None, None)
                .expect("shapes checked before dispatch");
        let (fan_len, elig_dims) = (
            g.rule.fan_w.len(),
            if g.elig0.is_empty() {
                vec![0, 0, 0]
            } else {
                vec![b, n, n]
            },
        );
        let results = [
            (node_w, g.w, vec![n, n]),
            (node_alpha, g.alpha, spec.alpha.dims(n).to_vec()),
            (node_m, g.rule.m, vec![n]),
            (node_m_bias, vec![g.rule.m_bias], vec![1]),
            (node_fan_w, g.rule.fan_w, vec![fan_len]),
            (node_fan_b, g.rule.fan_b, vec![fan_len]),
            (node_eta_e, vec![g.rule.eta_e], vec![1]),
            (node_x, swap_bt(&g.x, t, b, n), vec![b, t, n]),
            (node_y0, g.y0, vec![b, n]),
            (node_hebb0, g.hebb0, vec![b, n, n]),
            (node_elig0, g.elig0, elig_dims),
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

impl<B: Backend, C: CheckpointStrategy> ModulatedOps for Autodiff<B, C> {
    fn modulated_episode(
        w: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        m: FloatTensor<Self>,
        m_bias: FloatTensor<Self>,
        fan_w: FloatTensor<Self>,
        fan_b: FloatTensor<Self>,
        eta_e: FloatTensor<Self>,
        x: FloatTensor<Self>,
        y0: FloatTensor<Self>,
        hebb0: FloatTensor<Self>,
        elig0: FloatTensor<Self>,
        spec: EpisodeSpec,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let guards = [
            w.node(),
            alpha.node(),
            m.node(),
            m_bias.node(),
            fan_w.node(),
            fan_b.node(),
            eta_e.node(),
            x.node(),
            y0.node(),
            hebb0.node(),
            elig0.node(),
        ];
        let device = TensorMetadata::device(w.primitive());
        let v = |t: FloatTensor<Self>| prim_to_vec::<B>(t.into_primitive());
        let params = Arc::new(ModulatedBuffers {
            w: v(w),
            alpha: v(alpha),
            m: v(m),
            m_bias: v(m_bias)[0],
            fan_w: v(fan_w),
            fan_b: v(fan_b),
            eta_e: v(eta_e)[0],
        });
        let ep = run_modulated_forward(&spec, &params, &v(x), &v(y0), &v(hebb0), &v(elig0));
        let [ys, hebb, elig, modulator] = modulated_outputs(&spec, &ep);
        let detached =
            |d: TensorData| <Self as AutodiffBackend>::from_inner(B::float_from_data(d, &device));
        let (hebb, elig, modulator) = (detached(hebb), detached(elig), detached(modulator));
        let ys = B::float_from_data(ys, &device);
        let ys = match ModulatedBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                ModulatedState {
                    episode: Arc::new(Mutex::new(Some(ep))),
                    params,
                },
                ys,
            ),
            OpsKind::UnTracked(prep) => prep.finish(ys),
        };
        (ys, hebb, elig, modulator)
    }
}

/// The learned tensors of a neuromodulated plastic layer (ICLR 2019 section 3; see
/// [`plasticity_kernels::Modulation`] for the equations).
#[derive(Clone, Debug)]
pub struct ModulatedTensors {
    /// Fixed weights `w: [N, N]`.
    pub w: Tensor<2>,
    /// Plasticity coefficients `alpha: [N, N] | [1, N] | [1, 1]` (as `spec.alpha`).
    pub alpha: Tensor<2>,
    /// Modulator weights `m: [N]`: `M(t) = tanh(sum_j m_j y_j(t) + m_b)`.
    pub m: Tensor<1>,
    /// Modulator bias `m_b: [1]`.
    pub m_bias: Tensor<1>,
    /// Fan-out `(v, b)`, each `[N]`: `eta_j = v_j M + b_j` (required with fan-out, ignored
    /// without).
    pub fan_out: Option<(Tensor<1>, Tensor<1>)>,
    /// Eligibility-trace rate `eta_E: [1]` (retroactive modulation; simple modulation ignores it
    /// and gives it a zero gradient).
    pub eta_e: Tensor<1>,
}

/// What a modulated episode returns.
#[derive(Clone, Debug)]
pub struct ModulatedOutput {
    /// Activity of every step, `ys: [B, T, N]` (carries the gradients).
    pub ys: Tensor<3>,
    /// The Hebbian trace after the last step, `[B, N, N]` (detached).
    pub hebb: Tensor<3>,
    /// The eligibility trace after the last step, `[B, N, N]` (retroactive; detached).
    pub elig: Option<Tensor<3>>,
    /// The modulator `M(t)` of every step, `[B, T]` (detached).
    pub modulator: Tensor<2>,
}

/// Runs a neuromodulated plastic episode (`spec.modulation` must not be
/// [`Modulation::None`](plasticity_kernels::Modulation::None)) on any supported device, with
/// gradients on autodiff devices for every parameter, `x`, `y0`, `hebb0` and `elig0`.
///
/// Shapes: as [`ModulatedTensors`], `x: [B, T, N]`, `y0: [B, N]`, `hebb0, elig0: [B, N, N]`
/// (`None`: zeros, without allocating them; `elig0` is ignored by simple modulation).
pub fn modulated_episode(
    p: ModulatedTensors,
    x: Tensor<3>,
    y0: Tensor<2>,
    hebb0: Option<Tensor<3>>,
    elig0: Option<Tensor<3>>,
    spec: EpisodeSpec,
) -> Result<ModulatedOutput, SpecError> {
    spec.validate()?;
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let modulation = spec.modulation;
    if modulation == kernels::Modulation::None {
        return Err(SpecError(
            "modulation: None episodes run through plastic_episode".into(),
        ));
    }
    let check = |what: &str, got: Vec<usize>, want: Vec<usize>| {
        if got == want {
            Ok(())
        } else {
            Err(SpecError(format!(
                "{what}: expected shape {want:?}, got {got:?}"
            )))
        }
    };
    check("w", p.w.dims().to_vec(), vec![n, n])?;
    check(
        "alpha",
        p.alpha.dims().to_vec(),
        spec.alpha.dims(n).to_vec(),
    )?;
    check("m", p.m.dims().to_vec(), vec![n])?;
    check("m_bias", p.m_bias.dims().to_vec(), vec![1])?;
    check("eta_e", p.eta_e.dims().to_vec(), vec![1])?;
    check("x", x.dims().to_vec(), vec![b, t, n])?;
    check("y0", y0.dims().to_vec(), vec![b, n])?;
    if let Some(h) = &hebb0 {
        check("hebb0", h.dims().to_vec(), vec![b, n, n])?;
    }
    let retro = modulation.has_eligibility();
    if let (Some(e), true) = (&elig0, retro) {
        check("elig0", e.dims().to_vec(), vec![b, n, n])?;
    }
    let device = p.w.device();
    let empty1 = || Tensor::<1>::zeros([0], &device);
    let (fan_w, fan_b) = match (modulation.fan_out(), p.fan_out) {
        (true, Some((v, bias))) => {
            check("fan_out weights", v.dims().to_vec(), vec![n])?;
            check("fan_out biases", bias.dims().to_vec(), vec![n])?;
            (v, bias)
        }
        (true, None) => {
            return Err(SpecError(
                "fan_out: the modulation fans out but no (v, b) tensors were given".into(),
            ))
        }
        (false, _) => (empty1(), empty1()),
    };
    // Empty tensors (never requiring grad) stand for zero initial traces.
    let empty3 = || Tensor::<3>::zeros([0, 0, 0], &device);
    let hebb0 = hebb0.unwrap_or_else(empty3);
    let elig0 = match elig0 {
        Some(e) if retro => e,
        _ => empty3(),
    };
    let (ys, hebb, elig, modulator) = Dispatch::modulated_episode(
        p.w.into_dispatch(),
        p.alpha.into_dispatch(),
        p.m.into_dispatch(),
        p.m_bias.into_dispatch(),
        fan_w.into_dispatch(),
        fan_b.into_dispatch(),
        p.eta_e.into_dispatch(),
        x.into_dispatch(),
        y0.into_dispatch(),
        hebb0.into_dispatch(),
        elig0.into_dispatch(),
        spec,
    );
    Ok(ModulatedOutput {
        ys: Tensor::from_dispatch(ys),
        hebb: Tensor::from_dispatch(hebb),
        elig: retro.then(|| Tensor::from_dispatch(elig)),
        modulator: Tensor::from_dispatch(modulator),
    })
}

// ---------------------------------------------------------------------------------------------
// Plastic and neuromodulated LSTM (ICLR 2019 section 4.3): a third operation over the kernels of
// `plasticity_kernels::lstm`, with the same copy-in, copy-out pattern.
// ---------------------------------------------------------------------------------------------

/// Backends that can run the recurrence of a (plastic) LSTM layer.
#[backend_extension(Flex, Autodiff)]
pub trait LstmOps: Backend {
    /// Runs `T` steps of `B` sequences. `w_h: [H, 4H]`, `alpha: [H, H] | [1, H] | [1, 1]`
    /// (`[0, 0]` without plasticity), `eta, m_bias, eta_e: [1]`, `m, fan_w, fan_b: [H]` (`[0]`
    /// unmodulated), `xproj: [B, T, 4H]`, `h0, c0: [B, H]`, `hebb0, elig0: [B, H, H]`
    /// (`[0, 0, 0]`: zeros). Returns `(hs: [B, T, H], c_T: [B, H], hebb_T, elig_T: [B, H, H] |
    /// [0, 0, 0], modulator: [B, T] | [0, 0])`; only `hs` carries gradients.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn plastic_lstm(
        w_h: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        eta: FloatTensor<Self>,
        m: FloatTensor<Self>,
        m_bias: FloatTensor<Self>,
        fan_w: FloatTensor<Self>,
        fan_b: FloatTensor<Self>,
        eta_e: FloatTensor<Self>,
        xproj: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        hebb0: FloatTensor<Self>,
        elig0: FloatTensor<Self>,
        spec: LstmSpec,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );
}

/// The parameters of an LSTM recurrence as flat buffers (what the backward needs again).
#[derive(Clone, Debug)]
struct LstmBuffers {
    w_h: Vec<f32>,
    alpha: Vec<f32>,
    eta: f32,
    m: Vec<f32>,
    m_bias: f32,
    fan_w: Vec<f32>,
    fan_b: Vec<f32>,
    eta_e: f32,
}

impl LstmBuffers {
    fn params(&self) -> kernels::LstmParams<'_, f32> {
        kernels::LstmParams {
            w_h: &self.w_h,
            alpha: &self.alpha,
            eta: self.eta,
            m: &self.m,
            m_bias: self.m_bias,
            fan_w: &self.fan_w,
            fan_b: &self.fan_b,
            eta_e: self.eta_e,
        }
    }
}

/// Runs the kernels' LSTM forward on flat buffers laid out as the op's tensors and returns it
/// with its outputs as tensor data (layout of [`LstmOps::plastic_lstm`]).
fn run_lstm_forward(
    spec: &LstmSpec,
    p: &LstmBuffers,
    xproj_btk: &[f32],
    h0: &[f32],
    c0: &[f32],
    hebb0: &[f32],
    elig0: &[f32],
) -> (kernels::LstmSequence<f32>, [TensorData; 5]) {
    let (h, b, t) = (spec.hidden, spec.batch, spec.steps);
    let xproj = swap_bt(xproj_btk, b, t, 4 * h);
    let init = kernels::LstmInit {
        h0,
        c0,
        hebb0: (!hebb0.is_empty()).then_some(hebb0),
        elig0: (!elig0.is_empty()).then_some(elig0),
    };
    // Shapes were checked by `plastic_lstm` before dispatch.
    let run = kernels::lstm_forward(spec, &p.params(), &xproj, &init)
        .expect("shapes checked before dispatch");
    let trace_dims = |v: &[f32]| if v.is_empty() { [0, 0, 0] } else { [b, h, h] };
    let mod_dims = if run.modulator.is_empty() {
        [0, 0]
    } else {
        [b, t]
    };
    let data = [
        TensorData::new(swap_bt(&run.hs, t, b, h), [b, t, h]),
        TensorData::new(run.c.clone(), [b, h]),
        TensorData::new(run.hebb.clone(), trace_dims(&run.hebb)),
        TensorData::new(run.elig.clone(), trace_dims(&run.elig)),
        TensorData::new(
            if run.modulator.is_empty() {
                Vec::new()
            } else {
                swap_bt(&run.modulator, t, b, 1)
            },
            mod_dims,
        ),
    ];
    (run, data)
}

impl LstmOps for Flex {
    fn plastic_lstm(
        w_h: FlexTensor,
        alpha: FlexTensor,
        eta: FlexTensor,
        m: FlexTensor,
        m_bias: FlexTensor,
        fan_w: FlexTensor,
        fan_b: FlexTensor,
        eta_e: FlexTensor,
        xproj: FlexTensor,
        h0: FlexTensor,
        c0: FlexTensor,
        hebb0: FlexTensor,
        elig0: FlexTensor,
        spec: LstmSpec,
    ) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
        let v = |t: FlexTensor| prim_to_vec::<Flex>(t);
        let p = LstmBuffers {
            w_h: v(w_h),
            alpha: v(alpha),
            eta: v(eta)[0],
            m: v(m),
            m_bias: v(m_bias)[0],
            fan_w: v(fan_w),
            fan_b: v(fan_b),
            eta_e: v(eta_e)[0],
        };
        let (_, data) =
            run_lstm_forward(&spec, &p, &v(xproj), &v(h0), &v(c0), &v(hebb0), &v(elig0));
        let [hs, c, hebb, elig, modulator] = data.map(FlexTensor::from_data);
        (hs, c, hebb, elig, modulator)
    }
}

/// What the LSTM backward needs: the kernels' record and the parameters.
#[derive(Clone, Debug)]
struct LstmState {
    run: Arc<Mutex<Option<kernels::LstmSequence<f32>>>>,
    params: Arc<LstmBuffers>,
}

#[derive(Debug)]
struct LstmBackward;

impl<B: Backend> Backward<B, 13> for LstmBackward {
    type State = LstmState;

    fn backward(self, ops: Ops<LstmState, 13>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_w_h, node_alpha, node_eta, node_m, node_m_bias, node_fan_w, node_fan_b, node_eta_e, node_xproj, node_h0, node_c0, node_hebb0, node_elig0] =
            ops.parents;
        let upstream = grads.consume::<B>(&ops.node);
        let device = TensorMetadata::device(&upstream);
        let gh_bth = prim_to_vec::<B>(upstream);
        let run = ops
            .state
            .run
            .lock()
            .expect("lstm lock")
            .take()
            .expect("backward runs once");
        let spec = *run.spec();
        let (h, b, t) = (spec.hidden, spec.batch, spec.steps);
        let gh = swap_bt(&gh_bth, b, t, h);
        let g = kernels::lstm_backward(&ops.state.params.params(), &run, &gh, None, None, None)
            .expect("shapes checked before dispatch");
        drop(run);
        let trace_dims = |v: &[f32]| {
            if v.is_empty() {
                vec![0, 0, 0]
            } else {
                vec![b, h, h]
            }
        };
        let alpha_dims = if g.alpha.is_empty() {
            vec![0, 0]
        } else {
            spec.alpha.dims(h).to_vec()
        };
        let (hebb_dims, elig_dims) = (trace_dims(&g.hebb0), trace_dims(&g.elig0));
        let (m_len, fan_len) = (g.rule.m.len(), g.rule.fan_w.len());
        let results = [
            (node_w_h, g.w_h, vec![h, 4 * h]),
            (node_alpha, g.alpha, alpha_dims),
            (node_eta, vec![g.rule.eta], vec![1]),
            (node_m, g.rule.m, vec![m_len]),
            (node_m_bias, vec![g.rule.m_bias], vec![1]),
            (node_fan_w, g.rule.fan_w, vec![fan_len]),
            (node_fan_b, g.rule.fan_b, vec![fan_len]),
            (node_eta_e, vec![g.rule.eta_e], vec![1]),
            (
                node_xproj,
                swap_bt(&g.xproj, t, b, 4 * h),
                vec![b, t, 4 * h],
            ),
            (node_h0, g.h0, vec![b, h]),
            (node_c0, g.c0, vec![b, h]),
            (node_hebb0, g.hebb0, hebb_dims),
            (node_elig0, g.elig0, elig_dims),
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

impl<B: Backend, C: CheckpointStrategy> LstmOps for Autodiff<B, C> {
    fn plastic_lstm(
        w_h: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        eta: FloatTensor<Self>,
        m: FloatTensor<Self>,
        m_bias: FloatTensor<Self>,
        fan_w: FloatTensor<Self>,
        fan_b: FloatTensor<Self>,
        eta_e: FloatTensor<Self>,
        xproj: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        hebb0: FloatTensor<Self>,
        elig0: FloatTensor<Self>,
        spec: LstmSpec,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let guards = [
            w_h.node(),
            alpha.node(),
            eta.node(),
            m.node(),
            m_bias.node(),
            fan_w.node(),
            fan_b.node(),
            eta_e.node(),
            xproj.node(),
            h0.node(),
            c0.node(),
            hebb0.node(),
            elig0.node(),
        ];
        let device = TensorMetadata::device(w_h.primitive());
        let v = |t: FloatTensor<Self>| prim_to_vec::<B>(t.into_primitive());
        let params = Arc::new(LstmBuffers {
            w_h: v(w_h),
            alpha: v(alpha),
            eta: v(eta)[0],
            m: v(m),
            m_bias: v(m_bias)[0],
            fan_w: v(fan_w),
            fan_b: v(fan_b),
            eta_e: v(eta_e)[0],
        });
        let (run, [hs, c, hebb, elig, modulator]) = run_lstm_forward(
            &spec,
            &params,
            &v(xproj),
            &v(h0),
            &v(c0),
            &v(hebb0),
            &v(elig0),
        );
        let detached =
            |d: TensorData| <Self as AutodiffBackend>::from_inner(B::float_from_data(d, &device));
        let hs = B::float_from_data(hs, &device);
        let hs = match LstmBackward.prepare::<C>(guards).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(
                LstmState {
                    run: Arc::new(Mutex::new(Some(run))),
                    params,
                },
                hs,
            ),
            OpsKind::UnTracked(prep) => prep.finish(hs),
        };
        (
            hs,
            detached(c),
            detached(hebb),
            detached(elig),
            detached(modulator),
        )
    }
}

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

/// What [`plastic_lstm`] returns.
#[derive(Clone, Debug)]
pub struct LstmOutput {
    /// Hidden states of every step, `hs: [B, T, H]` (carries the gradients).
    pub hs: Tensor<3>,
    /// Final cell state, `[B, H]` (detached).
    pub c: Tensor<2>,
    /// Final Hebbian trace, `[B, H, H]` (plastic kinds; detached).
    pub hebb: Option<Tensor<3>>,
    /// Final eligibility trace, `[B, H, H]` (retroactive; detached).
    pub elig: Option<Tensor<3>>,
    /// Modulator `M(t)`, `[B, T]` (modulated kinds; detached).
    pub modulator: Option<Tensor<2>>,
}

/// Runs the recurrence of a (plastic) LSTM layer over `T` steps, with gradients on autodiff
/// devices for every parameter, `xproj` and the initial state. The returned final state is
/// detached: truncated backpropagation through time carries it to the next segment without a
/// gradient, as the paper does.
///
/// Shapes: as [`LstmTensors`], `xproj = x W_x + b: [B, T, 4H]`, `h0, c0: [B, H]`,
/// `hebb0, elig0: [B, H, H]` (`None`: zeros, without allocating them).
pub fn plastic_lstm(
    p: LstmTensors,
    xproj: Tensor<3>,
    h0: Tensor<2>,
    c0: Tensor<2>,
    hebb0: Option<Tensor<3>>,
    elig0: Option<Tensor<3>>,
    spec: LstmSpec,
) -> Result<LstmOutput, SpecError> {
    spec.validate()?;
    let (h, b, t) = (spec.hidden, spec.batch, spec.steps);
    let kind = spec.plasticity;
    let check = |what: &str, got: Vec<usize>, want: Vec<usize>| {
        if got == want {
            Ok(())
        } else {
            Err(SpecError(format!(
                "{what}: expected shape {want:?}, got {got:?}"
            )))
        }
    };
    let missing = |what: &str| SpecError(format!("{what}: required by {kind:?}, not given"));
    check("w_h", p.w_h.dims().to_vec(), vec![h, 4 * h])?;
    check("xproj", xproj.dims().to_vec(), vec![b, t, 4 * h])?;
    check("h0", h0.dims().to_vec(), vec![b, h])?;
    check("c0", c0.dims().to_vec(), vec![b, h])?;
    let device = p.w_h.device();
    let zeros1 = |n: usize| Tensor::<1>::zeros([n], &device);
    let alpha = if kind.is_plastic() {
        let a = p.alpha.ok_or_else(|| missing("alpha"))?;
        check("alpha", a.dims().to_vec(), spec.alpha.dims(h).to_vec())?;
        a
    } else {
        Tensor::zeros([0, 0], &device)
    };
    let eta = if kind == LstmPlasticity::Hebb {
        let e = p.eta.ok_or_else(|| missing("eta"))?;
        check("eta", e.dims().to_vec(), vec![1])?;
        e
    } else {
        zeros1(1)
    };
    let (m, m_bias, fan_w, fan_b) = if kind.is_modulated() {
        let (m, mb, v, fb) = p.modulator.ok_or_else(|| missing("modulator"))?;
        check("m", m.dims().to_vec(), vec![h])?;
        check("m_bias", mb.dims().to_vec(), vec![1])?;
        check("fan_w", v.dims().to_vec(), vec![h])?;
        check("fan_b", fb.dims().to_vec(), vec![h])?;
        (m, mb, v, fb)
    } else {
        (zeros1(0), zeros1(1), zeros1(0), zeros1(0))
    };
    let eta_e = if kind.has_eligibility() {
        let e = p.eta_e.ok_or_else(|| missing("eta_e"))?;
        check("eta_e", e.dims().to_vec(), vec![1])?;
        e
    } else {
        zeros1(1)
    };
    let empty3 = || Tensor::<3>::zeros([0, 0, 0], &device);
    let hebb0 = match hebb0 {
        Some(x) if kind.is_plastic() => {
            check("hebb0", x.dims().to_vec(), vec![b, h, h])?;
            x
        }
        _ => empty3(),
    };
    let elig0 = match elig0 {
        Some(x) if kind.has_eligibility() => {
            check("elig0", x.dims().to_vec(), vec![b, h, h])?;
            x
        }
        _ => empty3(),
    };
    let (hs, c, hebb, elig, modulator) = Dispatch::plastic_lstm(
        p.w_h.into_dispatch(),
        alpha.into_dispatch(),
        eta.into_dispatch(),
        m.into_dispatch(),
        m_bias.into_dispatch(),
        fan_w.into_dispatch(),
        fan_b.into_dispatch(),
        eta_e.into_dispatch(),
        xproj.into_dispatch(),
        h0.into_dispatch(),
        c0.into_dispatch(),
        hebb0.into_dispatch(),
        elig0.into_dispatch(),
        spec,
    );
    Ok(LstmOutput {
        hs: Tensor::from_dispatch(hs),
        c: Tensor::from_dispatch(c),
        hebb: kind.is_plastic().then(|| Tensor::from_dispatch(hebb)),
        elig: kind.has_eligibility().then(|| Tensor::from_dispatch(elig)),
        modulator: kind
            .is_modulated()
            .then(|| Tensor::from_dispatch(modulator)),
    })
}

// ---------------------------------------------------------------------------------------------
// Convolution stack (the Omniglot image encoder, ICML 2018 section 4.3): a fourth operation over
// `plasticity_kernels::conv`, with the same copy-in, copy-out pattern.
// ---------------------------------------------------------------------------------------------

/// Backends that can run a stack of 3x3 stride-2 convolutions with `tanh`.
#[backend_extension(Flex, Autodiff)]
pub trait ConvStackOps: Backend {
    /// `x: [M, C_0, S_0, S_0]`, `params`: every layer's weight `[C_{l+1}, C_l, 3, 3]` and bias
    /// `[C_{l+1}]` flattened and concatenated (`W_0, b_0, W_1, b_1, ..`). Returns
    /// `[M, C_L, S_L, S_L]`.
    fn conv_stack(
        x: FloatTensor<Self>,
        params: FloatTensor<Self>,
        spec: ConvSpec,
    ) -> FloatTensor<Self>;
}

/// The output shape `[M, C_L, S_L, S_L]` of a stack.
fn conv_output_shape(spec: &ConvSpec) -> [usize; 4] {
    let s = spec.sides()[spec.layers()];
    [spec.images, spec.channels[spec.layers()], s, s]
}

/// Runs the kernels' forward on flat buffers.
fn run_conv_forward(spec: &ConvSpec, params: &[f32], x: &[f32]) -> ConvForward<f32> {
    // Shapes were checked by `conv_stack` before dispatch.
    let layers = ConvLayer::split(spec, params).expect("shapes checked before dispatch");
    kernels::conv::forward(spec, &layers, x).expect("shapes checked before dispatch")
}

impl ConvStackOps for Flex {
    fn conv_stack(x: FlexTensor, params: FlexTensor, spec: ConvSpec) -> FlexTensor {
        let record = run_conv_forward(&spec, &prim_to_vec::<Flex>(params), &prim_to_vec::<Flex>(x));
        FlexTensor::from_data(TensorData::new(record.output(), conv_output_shape(&spec)))
    }
}

/// What the convolution backward needs: the forward's activations and the parameters.
#[derive(Clone, Debug)]
struct ConvState {
    record: Arc<Mutex<Option<ConvForward<f32>>>>,
    params: Arc<Vec<f32>>,
}

#[derive(Debug)]
struct ConvBackward;

impl<B: Backend> Backward<B, 2> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_params] = ops.parents;
        let upstream = grads.consume::<B>(&ops.node);
        let device = TensorMetadata::device(&upstream);
        let gy = prim_to_vec::<B>(upstream);
        let record = ops
            .state
            .record
            .lock()
            .expect("conv record lock")
            .take()
            .expect("backward runs once");
        let spec = record.spec().clone();
        let layers = ConvLayer::split(&spec, &ops.state.params).expect("checked in the forward");
        let g = kernels::conv::backward(&layers, &record, &gy, node_x.is_some())
            .expect("shapes checked before dispatch");
        if let Some(node) = node_x {
            let shape = [spec.images, spec.channels[0], spec.side, spec.side];
            grads.register::<B>(
                node.id,
                B::float_from_data(TensorData::new(g.input, shape), &device),
            );
        }
        if let Some(node) = node_params {
            let mut flat = Vec::with_capacity(spec.params_len());
            for (w, b) in g.weights.iter().zip(&g.biases) {
                flat.extend_from_slice(w);
                flat.extend_from_slice(b);
            }
            let len = flat.len();
            grads.register::<B>(
                node.id,
                B::float_from_data(TensorData::new(flat, [len]), &device),
            );
        }
    }
}

impl<B: Backend, C: CheckpointStrategy> ConvStackOps for Autodiff<B, C> {
    fn conv_stack(
        x: FloatTensor<Self>,
        params: FloatTensor<Self>,
        spec: ConvSpec,
    ) -> FloatTensor<Self> {
        let guards = [x.node(), params.node()];
        let device = TensorMetadata::device(x.primitive());
        let v = |t: FloatTensor<Self>| prim_to_vec::<B>(t.into_primitive());
        let params = Arc::new(v(params));
        let record = run_conv_forward(&spec, &params, &v(x));
        let out = B::float_from_data(
            TensorData::new(record.output(), conv_output_shape(&spec)),
            &device,
        );
        match ConvBackward.prepare::<C>(guards).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(
                ConvState {
                    record: Arc::new(Mutex::new(Some(record))),
                    params,
                },
                out,
            ),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// Runs a stack of 3x3 stride-2 convolutions without padding, each followed by `tanh`, as one
/// operation with a hand-written backward ([`plasticity_kernels::conv`]): the same function as
/// `conv.forward(x).tanh()` for each `burn::nn::conv::Conv2d` in turn (stride 2, no padding, no
/// dilation, one group), with gradients for `x` and every weight and bias on autodiff devices.
///
/// Shapes: `x: [M, C_0, S_0, S_0]`, `layers[l] = (weight: [C_{l+1}, C_l, 3, 3], bias:
/// [C_{l+1}])`; returns `[M, C_L, S_L, S_L]`, `S_{l+1} = (S_l - 3) / 2 + 1`. CPU (`Flex`)
/// devices only: see [`conv_stack_supported`].
pub fn conv_stack(x: Tensor<4>, layers: &[(Tensor<4>, Tensor<1>)]) -> Result<Tensor<4>, SpecError> {
    let [m, c0, s, s2] = x.dims();
    if s != s2 {
        return Err(SpecError(format!("x: images must be square, got {s}x{s2}")));
    }
    let mut channels = vec![c0];
    for (l, (w, b)) in layers.iter().enumerate() {
        let [co, ci, kh, kw] = w.dims();
        let cin = *channels.last().expect("non-empty");
        if ci != cin || kh != 3 || kw != 3 {
            return Err(SpecError(format!(
                "weight {l}: expected shape [C, {cin}, 3, 3], got {:?}",
                w.dims()
            )));
        }
        if b.dims() != [co] {
            return Err(SpecError(format!(
                "bias {l}: expected shape [{co}], got {:?}",
                b.dims()
            )));
        }
        channels.push(co);
    }
    let spec = ConvSpec {
        images: m,
        side: s,
        channels,
    };
    spec.validate()?;
    let flat: Vec<Tensor<1>> = layers
        .iter()
        .flat_map(|(w, b)| [w.clone().flatten(0, 3), b.clone()])
        .collect();
    let params = Tensor::cat(flat, 0);
    let out = Dispatch::conv_stack(x.into_dispatch(), params.into_dispatch(), spec);
    Ok(Tensor::from_dispatch(out))
}

/// Whether [`conv_stack`] runs on `device`: the CPU (`Flex`) backend, with or without autodiff.
pub fn conv_stack_supported(device: &Device) -> bool {
    #[allow(unreachable_patterns)]
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => matches!(&**inner, DispatchDevice::Flex(_)),
        _ => false,
    }
}
