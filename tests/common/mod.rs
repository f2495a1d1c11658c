//! Helpers shared by the command-line tests: run the binary, scratch folders, small inputs.
// Each test file uses some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../crates/plasticity/tests/common/shared_data.rs"]
mod shared_data;
// Each test file that reads a shared data set uses it.
#[allow(unused_imports)]
pub use shared_data::shared_data;

/// Runs the `plasticity` binary with `args`.
pub fn plasticity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plasticity"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// A fresh scratch folder for one test (named by the test and the process).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plasticity-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a run printed on stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The words of a command line without paths (`"lm --model plastic"`), to which a test adds
/// the paths as separate arguments (a path may hold spaces).
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs the binary with `args` and asserts that it succeeded (its stderr in the message).
pub fn succeeds(args: &[&str]) -> Output {
    let o = plasticity(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

/// Runs the binary with `args`, asserts that it exited with `code` and that its stderr contains
/// each of `wants`; returns the stderr.
pub fn fails(args: &[&str], code: i32, wants: &[&str]) -> String {
    let o = plasticity(args);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {e}");
    for w in wants {
        assert!(e.contains(w), "{args:?}: expected '{w}' in '{e}'");
    }
    e
}

/// A usage error: exit 2, each of `wants` in stderr and no panic; returns the stderr.
pub fn expect_usage(args: &[&str], wants: &[&str]) -> String {
    let e = fails(args, 2, wants);
    assert!(!e.contains("panicked"), "{args:?}: {e}");
    e
}

/// What a run printed on stdout, as one JSON value.
pub fn stdout_json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `eval <experiment> --run <run> <more> --json`: asserts that it succeeded and that its one
/// JSON object names `experiment`; returns the object.
pub fn eval_json(experiment: &str, run: &str, more: &[&str]) -> serde_json::Value {
    let mut args = vec!["eval", experiment, "--run", run];
    args.extend(more);
    args.push("--json");
    let v = stdout_json(&succeeds(&args));
    assert_eq!(v["experiment"], experiment);
    v
}

/// The `config.json` of a run folder.
pub fn config_json(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap()
}

/// The `metrics.csv` of a run folder.
pub fn metrics(run: &Path) -> String {
    std::fs::read_to_string(run.join("metrics.csv")).unwrap()
}

/// The data rows of a run's `metrics.csv` (its lines less the header).
pub fn metrics_rows(run: &Path) -> usize {
    metrics(run).lines().count() - 1
}

/// The files every training run writes into its folder.
pub const RUN_FILES: [&str; 3] = ["config.json", "metrics.csv", "checkpoint.bin"];

/// Asserts that the run folder `run` holds [`RUN_FILES`] and each of `more`.
pub fn assert_run_files(run: &Path, more: &[&str]) {
    for file in RUN_FILES.iter().chain(more) {
        assert!(run.join(file).exists(), "{file} missing");
    }
}

/// A scratch folder for one test (see [`temp_dir`]) with [`small_config`] in it: the folder,
/// the configuration's path and the run folder `run` inside it (not created), as a path and
/// as an argument.
pub fn pattern_scratch(name: &str) -> (PathBuf, String, PathBuf, String) {
    let dir = temp_dir(name);
    let config = small_config(&dir);
    let run = dir.join("run");
    let run_s = run.to_string_lossy().into_owned();
    (dir, config, run, run_s)
}

/// The arguments of a pattern run of `config` for `episodes` episodes into `run`, then `more`.
pub fn pattern_run<'a>(
    config: &'a str,
    episodes: &'a str,
    run: &'a str,
    more: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "pattern",
        "--config",
        config,
        "--episodes",
        episodes,
        "--out",
        run,
    ];
    args.extend(more);
    args
}

/// A pattern configuration that trains in well under a millisecond per episode.
pub fn small_config(dir: &Path) -> String {
    let path = dir.join("small.json");
    std::fs::write(
        &path,
        r#"{"bits": 16, "patterns": 2, "cycles": 1, "present_steps": 2, "gap_steps": 1, "test_steps": 2}"#,
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

/// A tiny corpus (every line the same 8 words) and a language-model configuration small enough
/// for seconds.
pub fn tiny_lm(dir: &Path) -> (String, String) {
    let line = "a b c d e f g h\n";
    for (f, n) in [
        ("ptb.train.txt", 60),
        ("ptb.valid.txt", 12),
        ("ptb.test.txt", 12),
    ] {
        std::fs::write(dir.join(f), line.repeat(n)).unwrap();
    }
    let cfg = dir.join("tiny.json");
    std::fs::write(
        &cfg,
        r#"{"embedding": 16, "hidden": 16, "batch": 4, "eval_batch": 2, "bptt": 8,
            "learning_rate": 0.01, "lr_decay": 1.0, "max_grad_norm": 1.0, "match_params": false}"#,
    )
    .unwrap();
    (
        dir.to_string_lossy().into_owned(),
        cfg.to_string_lossy().into_owned(),
    )
}

/// A small Omniglot-like tree: both sets, 2 alphabets x 4 characters x 3 drawings of 12x12.
pub fn omniglot_tree(root: &Path) {
    for (s, set) in ["images_background", "images_evaluation"]
        .iter()
        .enumerate()
    {
        for a in 0..2 {
            for c in 0..4 {
                let dir = root.join(format!("{set}/Alpha{a}/character{:02}", c + 1));
                std::fs::create_dir_all(&dir).unwrap();
                for d in 0..3u32 {
                    let mut bytes = Vec::new();
                    {
                        let mut enc = png::Encoder::new(&mut bytes, 12, 12);
                        enc.set_color(png::ColorType::Grayscale);
                        enc.set_depth(png::BitDepth::Eight);
                        let mut w = enc.write_header().unwrap();
                        let key = (s * 8 + a * 4 + c) as u32;
                        let px: Vec<u8> = (0..144u32)
                            .map(|k| {
                                if (k * (key + 3) + d).is_multiple_of(7) {
                                    0
                                } else {
                                    255
                                }
                            })
                            .collect();
                        w.write_image_data(&px).unwrap();
                    }
                    std::fs::write(dir.join(format!("{:04}_{:02}.png", c + 1, d + 1)), bytes)
                        .unwrap();
                }
            }
        }
    }
}
