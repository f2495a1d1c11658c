//! Readers of the datasets the experiments use. Nothing downloads: files come from a
//! directory the caller names (the CLI's `--data-dir`).

pub mod omniglot;
