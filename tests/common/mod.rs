//! Helpers shared by the command-line tests: run the binary, scratch folders, small inputs.
// Each test file uses some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
