//! `plasticity lm`, `eval lm`, `bench lm` as a user runs them: run directory, JSON outputs,
//! resume, exit codes and messages.

mod common;

use common::{plasticity, stderr, temp_dir, tiny_lm as tiny};
use std::path::Path;

#[test]
fn lm_trains_evaluates_and_resumes() {
    let dir = temp_dir("run");
    let (data, cfg) = tiny(&dir);
    let run = dir.join("run");
    let run_s = run.to_string_lossy().into_owned();
    let o = plasticity(&[
        "lm",
        "--model",
        "plastic",
        "--data-dir",
        &data,
        "--config",
        &cfg,
        "--epochs",
        "3",
        "--out",
        &run_s,
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("parameters"), "{}", stderr(&o));
    for f in [
        "config.json",
        "metrics.csv",
        "checkpoint.bin",
        "learning_curve_loss.svg",
        "perplexity.svg",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["experiment"], "lm");
    assert_eq!(config["epochs"], 3);
    assert_eq!(config["task"]["model"], "plastic");
    assert_eq!(config["task"]["alpha"], "per-neuron");
    let spe = config["segments_per_epoch"].as_u64().unwrap();
    assert_eq!(config["episodes"].as_u64().unwrap(), 3 * spe);
    // eval --json: exactly one JSON object with the test perplexity.
    let o = plasticity(&["eval", "lm", "--run", &run_s, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["experiment"], "lm");
    let ppl = v["perplexity"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl < 9.0, "{v}");
    assert_eq!(v["trained_updates"].as_u64().unwrap(), 3 * spe);
    // Resume with more epochs continues from the checkpoint.
    let o = plasticity(&["lm", "--resume", &run_s, "--epochs", "4", "--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(rows as u64, 1 + 4 * spe);
    // Changing the model of a resumed run is refused.
    let o = plasticity(&["lm", "--resume", &run_s, "--model", "lstm"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn lm_rejects_bad_input_with_exit_2_and_a_message() {
    let dir = temp_dir("bad");
    let (data, cfg) = tiny(&dir);
    let out = dir.join("run").to_string_lossy().into_owned();
    let base = ["--data-dir", &data, "--config", &cfg, "--out", &out];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--episodes", "3"],
            "--episodes: the language model counts epochs",
        ),
        (vec!["--model", "gru"], "--model: unknown model 'gru'"),
        (vec!["--preset", "huge"], "--preset: unknown preset 'huge'"),
        (vec!["--retroactive"], "unexpected argument '--retroactive'"),
        (
            vec!["--alpha", "diagonal"],
            "--alpha: invalid value 'diagonal'",
        ),
        (vec!["--bptt", "0"], "bptt: must be positive"),
        (vec!["--batch", "1000"], "batch: the training stream"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["lm"];
        args.extend_from_slice(&base);
        args.extend(extra.iter().copied());
        let o = plasticity(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
    // An unknown word in the validation file names the file and the line.
    std::fs::write(dir.join("ptb.valid.txt"), "a b\nb zebra\n").unwrap();
    let mut args = vec!["lm"];
    args.extend_from_slice(&base);
    let o = plasticity(&args);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("ptb.valid.txt") && e.contains("line 2: word 'zebra'"),
        "{e}"
    );
    let o = plasticity(&["eval", "lm", "--run", "/nonexistent-run", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
}

#[test]
fn bench_lm_reports_tokens_per_second_on_the_real_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ptb");
    if !dir.join("ptb.train.txt").exists() {
        eprintln!("skipped: no Penn Treebank at {}", dir.display());
        return;
    }
    let d = dir.to_string_lossy().into_owned();
    let o = plasticity(&[
        "bench",
        "lm",
        "--model",
        "modplast",
        "--batch",
        "2",
        "--episodes",
        "1",
        "--json",
        "--threads",
        "1",
        "--data-dir",
        &d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["workload"], "lm");
    assert!(v["tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["ms_per_episode"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["threads"], 1);
}
