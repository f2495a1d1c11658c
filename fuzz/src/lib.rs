//! The bodies of the fuzz targets (issue 26): each feeds arbitrary bytes to one of the readers
//! a user's files reach, which must return `Ok` or `Err` and never panic or abort. The fuzz
//! targets in `fuzz_targets/` call them under libFuzzer (`cargo +nightly fuzz run <target>`); the
//! test `tests/fuzz_regressions.rs` of the CLI package runs them on stable over every file in
//! `fuzz/regressions/<target>/` (the crashes found, kept as regression tests) and
//! `fuzz/seeds/<target>/`.
//!
//! Readers that take a folder get the bytes written to a scratch folder of their own (one per
//! process and thread).

use plasticity::data::omniglot::{decode_png, resize_bilinear, Omniglot, OmniglotSet};
use plasticity::data::{cifar, ptb};
use plasticity::tasks::cue_reward::CueRewardTask;
use plasticity::tasks::images::ImageConfig;
use plasticity::tasks::lm::LmConfig;
use plasticity::tasks::maze::MazeTask;
use plasticity::tasks::omniglot::OmniglotConfig;
use plasticity::tasks::pattern::{PatternConfig, PatternFields, PatternTask};
use plasticity::tasks::TaskConfig;
use plasticity::train::{self, Experiment};
use rand::SeedableRng;
use std::path::PathBuf;

/// The body of a fuzz target.
pub type Body = fn(&[u8]);

/// The fuzz targets, by name (the names of `fuzz_targets/*.rs` and of the corpus folders).
pub const TARGETS: &[(&str, Body)] = &[
    ("cifar", cifar_binary),
    ("omniglot_png", omniglot_png),
    ("omniglot_zip", omniglot_zip),
    ("ptb", ptb_text),
    ("config", config_json),
    ("checkpoint", checkpoint),
];

/// A scratch folder for this process and thread (its files are overwritten by each input).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "plasticity-fuzz-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Removes the scratch folders of this process and thread (for the stable regression test).
pub fn remove_scratch() {
    for name in ["zip", "ptb", "checkpoint"] {
        let _ = std::fs::remove_dir_all(scratch(name));
    }
}

/// A CIFAR-10 binary file.
pub fn cifar_binary(data: &[u8]) {
    if let Ok(set) = cifar::decode(data, "fuzz.bin") {
        assert_eq!(set.pixels.len(), set.len() * set.pixels_per_image());
    }
}

/// One Omniglot drawing (PNG), then its resizing as the loader does it.
pub fn omniglot_png(data: &[u8]) {
    if let Ok((pixels, w, h)) = decode_png(data, "fuzz.png") {
        assert_eq!(pixels.len(), w * h);
        if w * h <= 1 << 20 {
            let small = resize_bilinear(&pixels, w, h, 15);
            assert_eq!(small.len(), 15 * 15);
        }
    }
}

/// An Omniglot zip (`images_background.zip`).
pub fn omniglot_zip(data: &[u8]) {
    let dir = scratch("zip");
    std::fs::write(dir.join("images_background.zip"), data).expect("write");
    let _ = Omniglot::load(&dir, &[OmniglotSet::Background], 15);
}

/// The three Penn Treebank files: the bytes split at their first two 0xFF bytes (missing parts
/// are empty files).
pub fn ptb_text(data: &[u8]) {
    let dir = scratch("ptb");
    let mut parts = data.splitn(3, |&b| b == 0xFF);
    for name in ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"] {
        std::fs::write(dir.join(name), parts.next().unwrap_or_default()).expect("write");
    }
    if let Ok(corpus) = ptb::load(&dir) {
        let words = corpus.vocab.len() as u32;
        for ids in [&corpus.train, &corpus.valid, &corpus.test] {
            assert!(ids.iter().all(|&id| id < words));
        }
    }
}

/// Largest memory estimate (bytes) for which a valid configuration also builds its task.
const BUILD_LIMIT: f64 = 64e6;

/// A configuration file: the first byte picks the experiment, the rest is its JSON. A
/// configuration that parses is validated and its memory estimated; a small valid one builds
/// its task (the language model's, pattern's and the agents').
pub fn config_json(data: &[u8]) {
    let Some((&kind, json)) = data.split_first() else {
        return;
    };
    match kind % 6 {
        0 => check_config(json, |c| drop(PatternTask::new(c))),
        1 => check_config::<ImageConfig>(json, drop),
        2 => check_config(json, |c| drop(MazeTask::new(c))),
        3 => check_config(json, |c| drop(CueRewardTask::new(c))),
        4 => check_config::<OmniglotConfig>(json, drop),
        _ => {
            if let Ok(c) = serde_json::from_slice::<LmConfig>(json) {
                if c.validate().is_ok() {
                    let _ = c.memory_estimate(10_000).total();
                }
            }
        }
    }
}

/// Parses `json` as a `C`; a valid one has its memory estimated, and one estimated under
/// [`BUILD_LIMIT`] goes to `build`.
fn check_config<C: TaskConfig>(json: &[u8], build: impl FnOnce(C)) {
    if let Ok(c) = serde_json::from_slice::<C>(json) {
        if c.validate().is_ok() && c.memory_estimate().total() < BUILD_LIMIT {
            build(c);
        }
    }
}

/// The model the checkpoint target loads into: built once per thread and cloned for each input
/// (building one per input grew the fuzzer's memory by about 3.5 KB an input, in burn's
/// initialisation, until libFuzzer's 2 GB limit stopped it after 600,000 inputs).
fn checkpoint_model() -> plasticity::tasks::pattern::PatternModel {
    thread_local! {
        static MODEL: plasticity::tasks::pattern::PatternModel = {
            // The model's size is all that matters here: 8 bits, 9 neurons.
            let task = PatternTask::new(PatternConfig {
                task: PatternFields {
                    bits: 8,
                    ..PatternFields::default()
                },
                ..PatternConfig::default()
            })
            .expect("valid configuration");
            let device = burn::tensor::Device::flex().autodiff();
            task.init_model(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0), &device)
        };
    }
    MODEL.with(Clone::clone)
}

/// A run's `checkpoint.bin`: its episode counter, then the model of a small pattern run.
pub fn checkpoint(data: &[u8]) {
    let dir = scratch("checkpoint");
    std::fs::write(dir.join("checkpoint.bin"), data).expect("write");
    let _ = train::checkpoint_update(&dir);
    let _ = train::load_model(&dir, checkpoint_model());
}
