//! The plastic engine of differentiable plasticity (Miconi, Clune & Stanley, ICML 2018; Miconi
//! et al., ICLR 2019): fused kernels in plain Rust with no framework, so that their tests build
//! in seconds.
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
//! Neuromodulated plasticity (ICLR 2019, "Backpropamine"; [`Modulation`]) lets the network set
//! its own plasticity rate at each step, directly (simple) or through an eligibility trace
//! (retroactive).
//!
//! # One engine, one rule trait
//! [`trace`] holds the only per-variant code: each trace rule ([`trace::Decaying`],
//! [`trace::Oja`], [`trace::Simple`], [`trace::Retroactive`]) says how a trace entry is updated
//! and differentiated ([`trace::Rule`]). [`rnn`] is the engine every rule runs on: [`forward`]
//! runs a whole episode, [`backward`] its backpropagation through time (gradients for `w`,
//! `alpha`, the rule's parameters, the inputs and the initial state), [`rnn::Stepper`] one step
//! at a time for agents; both take the parameters of the spec's rule ([`RuleParams`]: the
//! fixed-rate rules' [`Params`] or the modulated ones' [`ModulatedParams`]). Memory never grows as `T N^2`: invertible traces are reversed,
//! the others recomputed from `sqrt(T)` checkpoints (`checkpoint`); batches and rows are
//! shared out by one rule (`parallel`).
//!
//! Plastic and neuromodulated LSTMs (ICLR 2019 section 4.3) run in [`lstm::lstm_forward`] and
//! [`lstm::lstm_backward`]: the gates and the cell, with the candidate's plastic recurrence on
//! the engine.
//!
//! A stack of 3x3 stride-2 convolutions with `tanh` (the Omniglot image encoder, ICML 2018
//! section 4.3) runs in [`conv::forward`] and [`conv::backward`] (im2col and one matrix
//! product per layer).

#![warn(missing_docs)]

mod checkpoint;
pub mod conv;
pub mod dense;
pub mod lstm;
mod parallel;
mod real;
pub mod reference;
pub mod rnn;
pub mod simd;
mod spec;
pub mod trace;

pub use lstm::{
    lstm_backward, lstm_forward, LstmGrads, LstmInit, LstmParams, LstmPlasticity, LstmSequence,
    LstmSpec,
};
pub use real::Real;
pub use rnn::{backward, forward, Episode, Grads, ModulatedParams, Params, RuleParams, Stepper};
pub use spec::{
    AlphaShape, BackwardStrategy, EpisodeSpec, InputMode, Modulation, SpecError, TraceRule,
};
pub use trace::{Modulator, ModulatorParams, PlasticGrads, RuleGrads, Traces};
