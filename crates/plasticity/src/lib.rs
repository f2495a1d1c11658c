//! Differentiable plasticity on burn 0.22 (Miconi, Clune & Stanley, ICML 2018), and its
//! neuromodulation (Miconi et al., ICLR 2019, "Backpropamine").
//!
//! - [`ops`]: the fused plastic episode (plain or neuromodulated), the plastic LSTM and the
//!   Omniglot convolution stack as burn operations with hand-written backwards (kernels in
//!   `plasticity-kernels`), over one autodiff glue and one device trait.
//! - [`layer`]: [`PlasticNet`], a fully recurrent plastic network as a burn module.
//! - [`lstm`]: [`PlasticLstm`], an LSTM layer with a plastic, optionally neuromodulated, cell
//!   candidate (ICLR 2019 section 4.3).
//! - [`dense`]: [`PlasticDense`], a feed-forward layer with plastic connections.
//! - [`data`]: data set readers (CIFAR-10 binary files, embedded image patches, Omniglot).
//! - [`tasks`]: the papers' experiments (configuration with the paper's defaults, episodes,
//!   metrics, models).
//! - [`runtime`]: how the kernels share the machine: threads, the allocator, the memory
//!   traffic of a training step (the roofline).
//! - [`train`]: the one training loop every experiment shares: Adam, metrics, checkpoints,
//!   resume.
//! - [`weights`]: the trained parameters as a safetensors file, for PyTorch and numpy.

#![warn(missing_docs)]

mod check;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
pub mod dense;
pub mod device_check;
pub mod layer;
pub mod lstm;
pub mod ops;
pub mod runtime;
pub mod tasks;
pub mod tensor_episode;
pub mod tensors;
pub mod train;
pub mod weights;

pub use config::PlasticityConfig;
pub use dense::{PlasticDense, PlasticDenseConfig};
pub use layer::{Modulator, PlasticNet, PlasticNetConfig, PlasticState};
pub use lstm::{LstmState, PlasticLstm, PlasticLstmConfig, Plasticity};
pub use ops::{
    modulated_episode, plastic_episode, plastic_lstm, LstmOutput, LstmTensors, ModulatedOutput,
    ModulatedTensors,
};
pub use plasticity_kernels::{
    AlphaShape, BackwardStrategy, EpisodeSpec, InputMode, LstmPlasticity, LstmSpec, Modulation,
    SpecError, TraceRule,
};
