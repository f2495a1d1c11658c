//! `plasticity lm`, `eval lm`, `bench lm` as a user runs them: run directory, JSON outputs,
//! resume, exit codes and messages.

mod common;

use common::{
    assert_run_files, config_json, eval_json, expect_usage, fails, metrics, shared_data, stderr,
    stdout_json, succeeds, temp_dir, tiny_lm as tiny, words,
};

#[test]
fn lm_trains_evaluates_and_resumes() {
    let dir = temp_dir("run");
    let (data, cfg) = tiny(&dir);
    let run = dir.join("run");
    let run_s = run.to_string_lossy().into_owned();
    let mut args = words("lm --model plastic --epochs 3 --threads 1");
    args.extend(["--data-dir", &data, "--config", &cfg, "--out", &run_s]);
    let o = succeeds(&args);
    assert!(stderr(&o).contains("parameters"), "{}", stderr(&o));
    assert_run_files(&run, &["learning_curve_loss.svg", "perplexity.svg"]);
    let config = config_json(&run);
    assert_eq!(config["experiment"], "lm");
    assert_eq!(config["epochs"], 3);
    assert_eq!(config["task"]["model"], "plastic");
    assert_eq!(config["task"]["alpha"], "per-neuron");
    let spe = config["segments_per_epoch"].as_u64().unwrap();
    assert_eq!(config["updates"].as_u64().unwrap(), 3 * spe);
    // eval --json: exactly one JSON object with the test perplexity.
    let v = eval_json("lm", &run_s, &[]);
    let ppl = v["perplexity"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl < 9.0, "{v}");
    assert_eq!(v["trained_updates"].as_u64().unwrap(), 3 * spe);
    // Resume with more epochs continues from the checkpoint.
    succeeds(&["lm", "--resume", &run_s, "--epochs", "4", "--threads", "1"]);
    let rows = metrics(&run).lines().count();
    assert_eq!(rows as u64, 1 + 4 * spe);
    // Changing the model of a resumed run is refused.
    fails(&["lm", "--resume", &run_s, "--model", "lstm"], 2, &[]);
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
        expect_usage(&args, &[want]);
    }
    // An unknown word in the validation file names the file and the line.
    std::fs::write(dir.join("ptb.valid.txt"), "a b\nb zebra\n").unwrap();
    let mut args = vec!["lm"];
    args.extend_from_slice(&base);
    fails(&args, 2, &["ptb.valid.txt", "line 2: word 'zebra'"]);
    fails(
        &["eval", "lm", "--run", "/nonexistent-run", "--json"],
        2,
        &["config.json"],
    );
}

#[test]
fn bench_lm_reports_tokens_per_second_on_the_real_corpus() {
    let Some(dir) = shared_data("ptb", "ptb.train.txt") else {
        return;
    };
    let d = dir.to_string_lossy().into_owned();
    let mut args = words("bench lm --model modplast --batch 2 --updates 1 --json --threads 1");
    args.extend(["--data-dir", &d]);
    let o = succeeds(&args);
    let v = stdout_json(&o);
    assert_eq!(v["workload"], "lm");
    assert!(v["tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["ms_per_update"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["threads"], 1);
}
