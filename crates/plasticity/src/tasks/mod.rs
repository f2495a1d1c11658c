//! The papers' experiments, each a configuration with the paper's defaults, an episode
//! generator, a metric and its models, plugged into [`crate::train`].

pub mod omniglot;
pub mod pattern;
