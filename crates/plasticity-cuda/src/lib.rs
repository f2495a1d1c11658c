//! The plastic episode on NVIDIA GPUs (issue 27): the maths of `plasticity-kernels`' engine
//! as CUDA C kernels (`src/kernels/*.cu`), compiled to PTX by NVRTC at run time and run
//! through the CUDA driver, both loaded at run time by cudarc. Building needs no CUDA
//! installation; running needs `libcuda` (the NVIDIA driver) and `libnvrtc` (the CUDA toolkit
//! or `pip install nvidia-cuda-nvrtc`), which [`discovery`] finds before cudarc opens them.
//!
//! - [`discovery`]: where the libraries are, and a clear error when one is missing;
//! - [`compile`]: the kernel sources and their compilation (CI compiles every source with
//!   NVRTC, which needs no GPU: `tests/ptx.rs`);
//! - [`layout`]: host-side logic covered by CPU tests (the rule's scalars, launch geometry,
//!   checkpoints, bytes over the bus, the host's final sums);
//! - [`engine`]: forward and backward of an episode on one device;
//! - [`stepper`]: the episode one step at a time on the device (the agents' rollouts);
//! - [`check`]: the GPU against the CPU kernels (episode and stepper) for every setting.
//!
//! Design notes: docs/engine.md ("The CUDA engine").

pub mod check;
pub mod compile;
pub mod discovery;
pub mod engine;
pub mod layout;
pub mod stepper;

pub use engine::{DeviceEpisode, Engine, Error, Forward};
pub use layout::RuleParams;
pub use stepper::DeviceStepper;
