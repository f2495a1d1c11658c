//! Fused kernels of differentiable plasticity (Miconi, Clune & Stanley, ICML 2018), in plain
//! Rust with no framework, so that their tests build in seconds.
//!
//! A plastic recurrent network of `N` neurons keeps, for each of `B` episodes, its activity
//! `y: [B, N]` and a Hebbian trace `Hebb: [B, N, N]` (row `i` presynaptic, column `j`
//! postsynaptic). Each step (eq. 1-3 of the paper; [`reference`](mod@reference) has it on one screen):
//!
//! ```text
//! y'    = tanh( y (w + alpha * Hebb) + x )
//! Hebb' = (1 - eta) Hebb + eta outer(y, y')            TraceRule::Hebb
//! Hebb' = Hebb + eta y'_j (y_i - Hebb_ij y'_j)         TraceRule::Oja
//! Hebb' = clip(Hebb', -c, c)                           optional
//! ```
//!
//! [`fused::forward`] runs a whole episode and [`fused::backward`] its backpropagation through
//! time, with gradients for `w`, `alpha`, `eta`, the inputs and the initial state, in memory
//! `O(B N^2 + T B N)` (see [`fused`] for how).
//!
//! Neuromodulated plasticity (ICLR 2019, "Backpropamine"; [`Modulation`]), where the network
//! sets its own plasticity rate at each step, runs in [`modulated::forward`] and
//! [`modulated::backward`] (checkpointed backward, memory `O(sqrt(T) B N^2 + T B N)`).
//!
//! Plastic and neuromodulated LSTMs (ICLR 2019 section 4.3) run in [`lstm::lstm_forward`] and
//! [`lstm::lstm_backward`].
//!
//! A stack of 3x3 stride-2 convolutions with `tanh` (the Omniglot image encoder, ICML 2018
//! section 4.3) runs in [`conv::forward`] and [`conv::backward`] (im2col and one matrix
//! product per layer).

#![warn(missing_docs)]

pub mod conv;
pub mod fused;
pub mod lstm;
pub mod modulated;
mod real;
pub mod reference;
mod spec;

pub use fused::{backward, forward, Episode, Grads, Params};
pub use lstm::{
    lstm_backward, lstm_forward, LstmGrads, LstmInit, LstmParams, LstmPlasticity, LstmSequence,
    LstmSpec,
};
pub use modulated::{ModulatedEpisode, ModulatedGrads, ModulatedParams};
pub use real::Real;
pub use spec::{
    AlphaShape, BackwardStrategy, EpisodeSpec, InputMode, Modulation, SpecError, TraceRule,
};
