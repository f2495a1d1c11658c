//! Differentiable plasticity on burn 0.22 (Miconi, Clune & Stanley, ICML 2018), and its
//! neuromodulation (Miconi et al., ICLR 2019, "Backpropamine").
//!
//! - [`op`]: the fused plastic episode (and its neuromodulated variant) as burn operations with
//!   hand-written backwards (kernels in `plasticity-kernels`).
//! - [`layer`]: [`PlasticNet`], a fully recurrent plastic network as a burn module.
//! - [`dense`]: [`PlasticDense`], a feed-forward layer with plastic connections.
//! - [`data`]: data set readers (CIFAR-10 binary files, embedded image patches, Omniglot).
//! - [`tasks`]: the papers' experiments (configuration with the paper's defaults, episodes,
//!   metrics, models).
//! - [`train`]: the one training loop every experiment shares: Adam, metrics, checkpoints,
//!   resume.

#![warn(missing_docs)]

pub mod data;
pub mod dense;
pub mod device_check;
pub mod layer;
pub mod op;
pub mod tasks;
pub mod tensor_episode;
pub mod tensors;
pub mod train;

pub use dense::{PlasticDense, PlasticDenseConfig};
pub use layer::{Modulator, PlasticNet, PlasticNetConfig, PlasticState};
pub use op::{modulated_episode, plastic_episode, ModulatedOutput, ModulatedTensors};
pub use plasticity_kernels::{
    AlphaShape, BackwardStrategy, EpisodeSpec, InputMode, Modulation, SpecError, TraceRule,
};
