//! The plastic episode on an NVIDIA GPU (feature `cuda`; [`plasticity_cuda`]): once a device
//! is selected ([`select`], the command line's `--device cuda[:INDEX]`), every episode op
//! (`plastic_episode`, `modulated_episode`, `static_episode`, and the layers and tasks built on
//! them) runs its forward and backward on it. The tensors around it stay on burn's CPU backend:
//! each op copies its inputs to the device and its outputs back (this first version's cost,
//! counted by [`Engine::transferred`]); the activities and the traces' checkpoints stay on
//! the device from the forward to the backward. The agents' rollouts (maze, cue-reward) run on
//! the engine's device stepper ([`plasticity_cuda::DeviceStepper`], used by
//! [`crate::tasks::a2c::rollout`]): parameters uploaded once per rollout, the traces on the
//! device, `x` in and `y`, `M` out per step.

use crate::ops::{given, EpisodeInputs};
use plasticity_cuda::{DeviceEpisode, Engine, Forward};
use plasticity_kernels::{EpisodeSpec, Grads};
use std::sync::{Arc, RwLock};

pub use plasticity_cuda::{check, Error};

static SELECTED: RwLock<Option<Arc<Engine>>> = RwLock::new(None);

/// Opens CUDA device `ordinal` (finds the driver and NVRTC, compiles and loads the kernels) and
/// runs every later episode op on it. Returns the engine (its name says the device).
pub fn select(ordinal: usize) -> Result<Arc<Engine>, Error> {
    let engine = Arc::new(Engine::new(ordinal)?);
    *SELECTED.write().expect("CUDA selection") = Some(engine.clone());
    Ok(engine)
}

/// Runs later episode ops on the CPU again.
pub fn deselect() {
    *SELECTED.write().expect("CUDA selection") = None;
}

/// The selected engine, if any.
pub fn selected() -> Option<Arc<Engine>> {
    SELECTED.read().expect("CUDA selection").clone()
}

/// What an episode run on the GPU keeps for its backward.
#[derive(Debug)]
pub struct Saved {
    engine: Arc<Engine>,
    episode: DeviceEpisode,
}

impl Saved {
    /// The spec the episode ran with.
    pub fn spec(&self) -> &EpisodeSpec {
        self.episode.spec()
    }
}

/// The episode op's forward on `engine`: `p` the op's inputs, `x: [T, B, N]`. A driver error
/// in the middle of training has no way back through the op: it stops the program with the
/// driver's message.
pub(crate) fn forward(
    engine: Arc<Engine>,
    spec: &EpisodeSpec,
    p: &EpisodeInputs<Vec<f32>>,
    x: &[f32],
) -> (Forward, Saved) {
    let params = p.rule.rnn(&p.w, spec.modulation);
    let (h0, e0) = (given(&p.hebb0), given(&p.elig0));
    let (out, episode) = engine
        .forward(spec, &params, x, &p.y0, h0, e0)
        .unwrap_or_else(|e| panic!("--device cuda: the episode's forward failed: {e}"));
    (out, Saved { engine, episode })
}

/// The backward of [`forward`] from `gy: [T, B, N]`.
pub(crate) fn backward(saved: Saved, gy: &[f32]) -> Grads<f32> {
    saved
        .engine
        .backward(saved.episode, gy)
        .unwrap_or_else(|e| panic!("--device cuda: the episode's backward failed: {e}"))
}
