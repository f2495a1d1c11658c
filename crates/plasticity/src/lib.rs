//! Differentiable plasticity on burn 0.22 (Miconi, Clune & Stanley, ICML 2018).
//!
//! - [`op`]: the fused plastic episode as a burn operation with a hand-written backward
//!   (kernels in `plasticity-kernels`).
//! - [`layer`]: [`PlasticNet`], a fully recurrent plastic network as a burn module.
//! - [`dense`]: [`PlasticDense`], a feed-forward layer with plastic connections.
//! - [`data`]: dataset readers (Omniglot).
//! - [`tasks`]: the papers' experiments (configuration with the paper's defaults, episodes,
//!   metrics, models).
//! - [`train`]: the one training loop every experiment shares: Adam, metrics, checkpoints,
//!   resume.

#![warn(missing_docs)]

pub mod data;
pub mod dense;
pub mod layer;
pub mod op;
pub mod tasks;
pub mod tensors;
pub mod train;

pub use dense::{PlasticDense, PlasticDenseConfig};
pub use layer::{PlasticNet, PlasticNetConfig};
pub use op::plastic_episode;
pub use plasticity_kernels::{
    AlphaShape, BackwardStrategy, EpisodeSpec, InputMode, SpecError, TraceRule,
};
