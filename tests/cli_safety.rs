//! Run safety (issue 26) as a user meets it: a run is never replaced unasked, sizes too large
//! for the machine are refused before anything is allocated, `--resume` tells the truth,
//! divergence and NaN stop a run with a truthful message, SIGINT/SIGTERM checkpoint and exit
//! 130, progress is logged when stderr is a file, and the small usage errors of the issue.

mod common;

use common::{
    config_json, expect_usage, fails, metrics_rows, omniglot_tree, pattern_run, pattern_scratch,
    plasticity, small_config, stderr, succeeds, temp_dir, tiny_lm, RUN_FILES,
};
use std::path::Path;
use std::process::{Command, Stdio};

/// The contents of the run files a refused run must leave alone.
fn run_files(run: &Path) -> Vec<Vec<u8>> {
    RUN_FILES
        .iter()
        .map(|f| std::fs::read(run.join(f)).unwrap())
        .collect()
}

/// Item 1: a second run into a folder that holds a run (given with --out, or the default
/// `runs/<experiment>-<model>-seed<S>`) is refused and the run is untouched; --force replaces it.
#[test]
fn a_new_run_never_replaces_a_run_unless_forced() {
    let (dir, config, run, run_s) = pattern_scratch("overwrite");
    succeeds(&pattern_run(
        &config,
        "20",
        &run_s,
        &["--checkpoint-every", "10"],
    ));
    let before = run_files(&run);
    let e = expect_usage(
        &pattern_run(&config, "50", &run_s, &[]),
        &["holds a run at update 20", "--resume", "--force"],
    );
    assert!(e.contains(&run_s), "{e}");
    assert!(
        before == run_files(&run),
        "the refused run changed the existing one"
    );
    // --force replaces it: a fresh run of 5 episodes, none of the old rows left.
    succeeds(&pattern_run(&config, "5", &run_s, &["--force"]));
    assert_eq!(metrics_rows(&run), 5);
    assert_eq!(config_json(&run)["updates"], 5);
    // The default run directory, from a working directory of our own.
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let run_in_cwd = |episodes: &str| {
        Command::new(env!("CARGO_BIN_EXE_plasticity"))
            .current_dir(&cwd)
            .args(["pattern", "--config", &config, "--episodes", episodes])
            .output()
            .unwrap()
    };
    let o = run_in_cwd("10");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in_cwd("50");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("runs/pattern-plastic-seed0 holds a run at update 10"),
        "{e}"
    );
    assert_eq!(metrics_rows(&cwd.join("runs/pattern-plastic-seed0")), 10);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 2: sizes far beyond any machine's memory are refused before anything is allocated
/// (no run folder), naming the field and the bytes needed.
#[test]
fn sizes_too_large_for_the_machine_are_refused_before_allocating() {
    let dir = temp_dir("huge");
    let out = dir.join("run");
    let out_s = out.to_str().unwrap();
    let bits = dir.join("bits.json");
    std::fs::write(&bits, r#"{"bits": 1000000000}"#).unwrap();
    let rnn = dir.join("rnn.json");
    std::fs::write(&rnn, r#"{"model": "rnn", "rnn_neurons": 1000000000}"#).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["pattern", "--config", bits.to_str().unwrap()],
            "bits = 1000000000",
        ),
        (
            vec!["pattern", "--config", rnn.to_str().unwrap()],
            "rnn_neurons = 1000000000",
        ),
        (vec!["pattern", "--bits", "100000000"], "bits = 100000000"),
        (vec!["maze", "--size", "10000001"], "size = 10000001"),
        (vec!["maze", "--neurons", "1000000"], "neurons = 1000000"),
        (
            vec!["cue-reward", "--neurons", "10000000"],
            "neurons = 10000000",
        ),
    ];
    for (mut args, field) in cases {
        args.extend(["--out", out_s]);
        expect_usage(&args, &[field, "bytes", "of memory", "this machine has"]);
        assert!(!out.exists(), "{args:?} created the run folder");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 3: --resume refuses what cannot take effect (another seed, fewer or as many episodes
/// as done, --out, --force) without touching config.json; a larger --episodes extends the
/// run and config.json records it.
#[test]
fn resume_refuses_what_cannot_take_effect_and_records_what_ran() {
    let (dir, config, run, run_s) = pattern_scratch("resume");
    succeeds(&pattern_run(&config, "20", &run_s, &["--seed", "3"]));
    let saved = std::fs::read(run.join("config.json")).unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--seed", "5"], vec!["--seed 5", "trained with seed 3"]),
        (
            vec!["--episodes", "10"],
            vec!["--episodes 10", "already trained 20 episodes"],
        ),
        (vec![], vec!["complete (20 of 20 episodes)", "--episodes"]),
        (
            vec!["--episodes", "30", "--out", "elsewhere"],
            vec!["--out", "its own folder"],
        ),
        (vec!["--episodes", "30", "--force"], vec!["--force"]),
    ];
    for (extra, wants) in cases {
        let mut args = vec!["pattern", "--resume", &run_s];
        args.extend(extra);
        expect_usage(&args, &wants);
        assert_eq!(
            std::fs::read(run.join("config.json")).unwrap(),
            saved,
            "{args:?} rewrote config.json"
        );
    }
    assert!(!Path::new("elsewhere").exists());
    // The same seed is accepted; a larger total extends the run and is recorded.
    succeeds(&[
        "pattern",
        "--resume",
        &run_s,
        "--seed",
        "3",
        "--episodes",
        "30",
    ]);
    assert_eq!(metrics_rows(&run), 30);
    let c = config_json(&run);
    assert_eq!(
        (c["updates"].as_u64(), c["seed"].as_u64()),
        (Some(30), Some(3))
    );
    // A run written before `updates` was so named (config.json `episodes`, metrics.csv
    // `episode`): its length is read, and a resume renames both.
    let config_text = std::fs::read_to_string(run.join("config.json")).unwrap();
    let old_config = config_text.replace("\"updates\"", "\"episodes\"");
    assert_ne!(old_config, config_text);
    std::fs::write(run.join("config.json"), old_config).unwrap();
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    std::fs::write(
        run.join("metrics.csv"),
        metrics.replacen("update,", "episode,", 1),
    )
    .unwrap();
    expect_usage(
        &["pattern", "--resume", &run_s],
        &["complete (30 of 30 episodes)"],
    );
    succeeds(&["pattern", "--resume", &run_s, "--episodes", "32"]);
    assert_eq!(metrics_rows(&run), 32);
    assert_eq!(config_json(&run)["updates"], 32);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(
        metrics.starts_with("update,loss,error,seconds\n"),
        "{metrics}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 4: a language model whose loss explodes (finite, but its perplexity infinite) is
/// stopped at once, not trained to the end.
#[test]
fn a_diverging_language_model_is_stopped() {
    let dir = temp_dir("lm");
    let (data, cfg) = tiny_lm(&dir);
    let run = dir.join("run");
    let e = fails(
        &[
            "lm",
            "--data-dir",
            &data,
            "--config",
            &cfg,
            "--lr",
            "1e9",
            "--epochs",
            "5",
            "--threads",
            "1",
            "--out",
            run.to_str().unwrap(),
        ],
        1,
        &[
            "training diverged at update",
            "No checkpoint had been written yet",
        ],
    );
    let total = config_json(&run)["updates"].as_u64().unwrap() as usize;
    assert!(metrics_rows(&run) < total, "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 5: the NaN message names the checkpoint that exists, or says there is none; eta out of
/// [0, 1] is a configuration error.
#[test]
fn the_nan_message_says_what_is_kept_and_eta_is_range_checked() {
    let (dir, config, run, run_s) = pattern_scratch("nan");
    let base = pattern_run(&config, "100", &run_s, &["--lr", "1e30"]);
    let e = fails(&base, 1, &["loss is NaN or infinite at update"]);
    assert!(
        e.contains("No checkpoint had been written yet") && !e.contains("is kept"),
        "{e}"
    );
    assert!(!run.join("checkpoint.bin").exists());
    // With a checkpoint after every episode, the message names the one that is kept.
    let mut args = base.clone();
    args.extend(["--checkpoint-every", "1", "--force"]);
    let e = fails(&args, 1, &[]);
    let kept = plasticity::train::checkpoint_update(&run).unwrap().unwrap();
    assert!(
        e.contains(&format!("The last good checkpoint (update {kept}) is kept")),
        "{e}"
    );
    for eta in ["-5", "1.5"] {
        let file = dir.join("eta.json");
        std::fs::write(&file, format!(r#"{{"eta": {eta}}}"#)).unwrap();
        for (experiment, want) in [
            ("pattern", format!("eta: must be in [0, 1] (got {eta})")),
            ("maze", "eta: must be in [0, 1]".to_string()),
        ] {
            let args = [
                experiment,
                "--config",
                file.to_str().unwrap(),
                "--out",
                &run_s,
                "--force",
            ];
            expect_usage(&args, &[&want]);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 6: SIGINT and SIGTERM finish the update, write a checkpoint, say how to resume and exit
/// 130; the resumed run continues from there, even past stale temporary files.
#[cfg(unix)]
#[test]
fn sigint_and_sigterm_checkpoint_and_exit_130() {
    let dir = temp_dir("signal");
    let config = small_config(&dir);
    for (signal, name) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term")] {
        let run = dir.join(name);
        let run_s = run.to_str().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_plasticity"))
            .args([
                "pattern",
                "--config",
                &config,
                "--episodes",
                "100000000",
                "--checkpoint-every",
                "1000000",
                "--threads",
                "1",
                "--out",
                run_s,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait (without a time limit of our own) until a few episodes are on disk.
        loop {
            let rows = std::fs::read_to_string(run.join("metrics.csv"))
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if rows > 3 {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "the run ended early");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SAFETY: sends a signal to our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let o = child.wait_with_output().unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(130), "{name}: {e}");
        assert!(
            e.contains("interrupted") && e.contains(&format!("--resume {run_s}")),
            "{e}"
        );
        let done = plasticity::train::checkpoint_update(&run).unwrap().unwrap();
        assert_eq!(metrics_rows(&run) as u64, done, "{name}: {e}");
        assert!((3..100_000_000).contains(&done), "{done}");
        // Stale temporary files (a full disk, a kill during a write) do not block the resume.
        std::fs::create_dir_all(run.join("checkpoint.tmp/stale")).unwrap();
        std::fs::write(run.join("metrics.tmp"), b"garbage").unwrap();
        std::fs::write(run.join("config.tmp"), b"garbage").unwrap();
        let more = (done + 5).to_string();
        succeeds(&["pattern", "--resume", run_s, "--episodes", &more]);
        assert_eq!(metrics_rows(&run) as u64, done + 5);
        assert!(!run.join("checkpoint.tmp").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 7: with stderr in a file, progress lines (episode, metric, rate, ETA) at the
/// `--progress-every` interval (0: every episode).
#[test]
fn progress_lines_are_written_when_stderr_is_not_a_terminal() {
    let (dir, config, _, run_s) = pattern_scratch("progress");
    let args = pattern_run(&config, "5", &run_s, &["--progress-every", "0"]);
    let e = stderr(&succeeds(&args));
    for k in 1..=5 {
        let line = e
            .lines()
            .find(|l| l.starts_with(&format!("pattern: episode {k}/5 ")))
            .unwrap_or_else(|| panic!("no progress line for episode {k}: {e}"));
        for part in ["error(50)", "episodes/s", "ETA"] {
            assert!(line.contains(part), "{line}");
        }
    }
    // The default interval still reports the first and the last episode.
    let args = pattern_run(&config, "5", &run_s, &["--force"]);
    let e = stderr(&plasticity(&args));
    assert!(
        e.contains("pattern: episode 1/5 ") && e.contains("pattern: episode 5/5 "),
        "{e}"
    );
    expect_usage(
        &["pattern", "--progress-every", "nan", "--out", &run_s],
        &["--progress-every"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The issue's "unclear" cases: each is a clear usage error or a truthful message now.
#[test]
fn the_unclear_cases_have_clear_messages() {
    let (dir, config, run, run_s) = pattern_scratch("unclear");
    // --episodes 0 trains nothing and writes no run.
    expect_usage(
        &pattern_run(&config, "0", &run_s, &[]),
        &["--episodes: must be positive"],
    );
    assert!(!run.exists());
    // The summary counts the episodes it averaged.
    let e = stderr(&succeeds(&pattern_run(&config, "20", &run_s, &[])));
    assert!(e.contains("last 20 episodes: loss"), "{e}");
    assert!(!e.contains("last 50"), "{e}");
    expect_usage(
        &["eval", "pattern", "--run", &run_s, "--episodes", "0"],
        &["--episodes: must be positive"],
    );
    // A run of another experiment.
    expect_usage(
        &["eval", "images", "--run", &run_s],
        &["this is a run of experiment pattern, not images"],
    );
    expect_usage(
        &["images", "--resume", &run_s],
        &["this is a run of experiment pattern, not images"],
    );
    // The lists of valid names.
    let e = expect_usage(&["eval", "nothing", "--run", &run_s], &["omniglot, lm"]);
    assert!(e.contains("cue-reward"), "{e}");
    let e = expect_usage(&["bench", "nothing"], &["omniglot (", "lm ("]);
    assert!(e.contains("cue-reward"), "{e}");
    expect_usage(
        &["pattern", "--threads", "100000", "--out", &run_s],
        &["--threads 100000: at most"],
    );
    expect_usage(
        &["cue-reward", "--steps", "122", "--out", &run_s],
        &["steps: must be a whole number of 4-step trials (got 122; 120 or 124)"],
    );
    // Negative numbers.
    for (args, want) in [
        (
            vec!["pattern", "--episodes", "-5"],
            "--episodes -5: must be >= 0",
        ),
        (vec!["maze", "--size", "-7"], "--size -7: must be >= 0"),
        (
            vec!["eval", "pattern", "--run", &run_s, "--episodes", "-1"],
            "--episodes -1: must be >= 0",
        ),
    ] {
        let e = expect_usage(&args, &[want]);
        assert!(!e.contains("unexpected argument"), "{e}");
    }
    // No Debug formatting: `check` names settings as options do; `lm` names its model.
    let o = succeeds(&["check", "--device", "cpu"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("| hebb | additive | per-connection | 0.08 |"),
        "{out}"
    );
    assert!(
        !out.contains("Some(") && !out.contains("PerConnection"),
        "{out}"
    );
    let data = dir.join("omniglot");
    omniglot_tree(&data);
    let e = expect_usage(
        &[
            "omniglot",
            "--data-dir",
            data.to_str().unwrap(),
            "--split",
            "standard",
            "--ways",
            "9",
            "--out",
            &run_s,
            "--force",
        ],
        &["the standard split has only 8 training classes"],
    );
    assert!(!e.contains("Standard"), "{e}");
    let lm_dir = dir.join("lm");
    std::fs::create_dir_all(&lm_dir).unwrap();
    let (data, cfg) = tiny_lm(&lm_dir);
    let e = stderr(&succeeds(&[
        "lm",
        "--data-dir",
        &data,
        "--config",
        &cfg,
        "--epochs",
        "1",
        "--threads",
        "1",
        "--out",
        lm_dir.join("run").to_str().unwrap(),
    ]));
    assert!(e.contains("lm: lstm model"), "{e}");
    assert!(!e.contains("Lstm"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `check` in a build without the GPU feature says so instead of naming an option not given.
#[cfg(not(feature = "wgpu"))]
#[test]
fn check_without_gpu_support_says_so() {
    let e = expect_usage(
        &["check"],
        &["built without GPU support", "--features wgpu"],
    );
    assert!(!e.contains("--device wgpu:"), "{e}");
}
