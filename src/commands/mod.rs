//! The commands: one module per experiment (training, evaluation and its pictures), the
//! benchmark, the device check, the plot and the sweeps, over the shared pipeline and helpers.

pub(crate) mod bench;
pub(crate) mod check;
pub(crate) mod common;
pub(crate) mod eval;
pub(crate) mod images;
pub(crate) mod lm;
pub(crate) mod omniglot;
pub(crate) mod overlay;
pub(crate) mod pattern;
pub(crate) mod pipeline;
pub(crate) mod plot;
pub(crate) mod rl;
pub(crate) mod rl_pictures;
pub(crate) mod sweep;
pub(crate) mod sweep_point;
pub(crate) mod sweep_report;
pub(crate) mod sweep_slurm;
pub(crate) mod timing;
