//! The `plasticity` command as a user runs it: outputs, exit codes, error messages.

mod common;

use common::{omniglot_tree, plasticity, small_config, stderr, temp_dir};

#[test]
fn bad_options_and_configs_exit_2_with_a_message_naming_the_problem() {
    let dir = temp_dir("bad");
    let out = dir.join("run").to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["pattern", "--bits", "0", "--out", &out],
            "bits: must be positive",
        ),
        (
            vec!["pattern", "--lr", "-0.1", "--out", &out],
            "learning_rate: must be positive",
        ),
        (
            vec!["pattern", "--model", "mlp", "--out", &out],
            "--model: unknown model 'mlp'",
        ),
        (
            vec!["pattern", "--rule", "stdp", "--out", &out],
            "--rule: invalid value 'stdp'",
        ),
        (
            vec!["pattern", "--preset", "huge", "--out", &out],
            "--preset: unknown preset 'huge'",
        ),
        (
            vec!["pattern", "--threads", "0", "--out", &out],
            "--threads: must be positive",
        ),
        (
            vec!["eval", "no-such-task", "--run", &out],
            "unknown experiment 'no-such-task'",
        ),
        (
            vec!["bench", "no-such-workload"],
            "unknown workload 'no-such-workload'",
        ),
        (
            vec!["pattern", "--device", "tpu", "--out", &out],
            "--device tpu: unknown device",
        ),
        (
            vec!["bench", "pattern", "--device", "wgpu:x"],
            "the index after ':' must be a number",
        ),
    ];
    for (args, message) in cases {
        let o = plasticity(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(message),
            "{args:?}: expected '{message}' in '{}'",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("panicked"), "{args:?}");
    }
    let bad_json = dir.join("bad.json");
    std::fs::write(&bad_json, "{ bits: ").unwrap();
    let o = plasticity(&[
        "pattern",
        "--config",
        bad_json.to_str().unwrap(),
        "--out",
        &out,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad.json: invalid JSON"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&bad_json, r#"{"bitz": 8}"#).unwrap();
    let o = plasticity(&[
        "pattern",
        "--config",
        bad_json.to_str().unwrap(),
        "--out",
        &out,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown field `bitz`"),
        "{}",
        stderr(&o)
    );
    let o = plasticity(&[
        "eval",
        "pattern",
        "--run",
        dir.join("missing").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_writes_the_run_directory_then_eval_and_resume_use_it() {
    let dir = temp_dir("run");
    let config = small_config(&dir);
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let o = plasticity(&[
        "pattern",
        "--config",
        &config,
        "--episodes",
        "20",
        "--seed",
        "3",
        "--out",
        run_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for file in [
        "config.json",
        "metrics.csv",
        "checkpoint.bin",
        "learning_curve_error.svg",
        "learning_curve_loss.svg",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config_json["seed"], 3);
    assert_eq!(config_json["task"]["bits"], 16);
    assert_eq!(config_json["task"]["learning_rate"], 3e-4);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().next(), Some("episode,loss,error,seconds"));
    assert_eq!(metrics.lines().count(), 21);

    let o = plasticity(&[
        "eval",
        "pattern",
        "--run",
        run_s,
        "--episodes",
        "5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "exactly one JSON object: {stdout}"
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["experiment"], "pattern");
    assert_eq!(v["episodes"], 5);
    let error = v["error"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&error));

    let o = plasticity(&["pattern", "--resume", run_s, "--bits", "8"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--bits: --resume continues a run with its saved config.json"),
        "{}",
        stderr(&o)
    );
    let o = plasticity(&["pattern", "--resume", run_s, "--episodes", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 31);

    // A corrupt checkpoint: clear error, exit 2, for eval and for resume.
    std::fs::write(run.join("checkpoint.bin"), b"PLSTCKP1garbage").unwrap();
    for args in [
        vec!["eval", "pattern", "--run", run_s],
        vec!["pattern", "--resume", run_s, "--episodes", "40"],
    ] {
        let o = plasticity(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("checkpoint.bin: corrupt or truncated checkpoint"),
            "{}",
            stderr(&o)
        );
    }

    let svg = dir.join("curves.svg");

    let o = plasticity(&["plot", run_s, run_s, "--out", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(&svg)
            .unwrap()
            .matches("<polyline")
            .count()
            == 2
    );
    // One table row per run with its final value; --seeds groups the two copies of the run into
    // one median curve with its band.
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(table.lines().count(), 4, "{table}");
    let o = plasticity(&[
        "plot",
        run_s,
        run_s,
        "--seeds",
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(text.matches("<polyline").count(), 1);
    assert_eq!(text.matches("<polygon").count(), 1);
    assert!(String::from_utf8_lossy(&o.stdout).contains("(median, IQR of 2)"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_json_reports_time_and_memory() {
    let o = plasticity(&["bench", "pattern", "--json", "--episodes", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["workload"], "pattern");
    assert!(v["ms_per_episode"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_mb"].as_f64().unwrap() > 0.0);
    assert!(v["threads"].as_u64().unwrap() >= 1);
}

#[test]
fn maze_trains_resumes_and_evaluates() {
    let dir = temp_dir("maze");
    let out = dir.join("run").to_string_lossy().into_owned();
    let tiny = [
        "--size",
        "7",
        "--steps",
        "10",
        "--batch",
        "2",
        "--neurons",
        "8",
        "--threads",
        "1",
    ];
    let mut args = vec![
        "maze",
        "--model",
        "modplast",
        "--episodes",
        "2",
        "--out",
        &out,
    ];
    args.extend(tiny);
    let o = plasticity(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap();
    assert!(
        metrics.starts_with("episode,loss,reward,seconds\n"),
        "{metrics}"
    );
    assert_eq!(metrics.lines().count(), 3);
    let config = std::fs::read_to_string(dir.join("run/config.json")).unwrap();
    assert!(config.contains(r#""model": "modplast""#), "{config}");
    // The trajectory pictures (10 numbered frames of a 7x7 maze, 16-pixel cells, in one row of
    // 10, under a title, above a legend) and the modulator plot.
    for name in ["trajectory_before.png", "trajectory_after.png"] {
        let file = std::fs::File::open(dir.join("run").join(name)).unwrap();
        let reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .unwrap();
        let info = reader.info();
        assert_eq!(info.color_type, png::ColorType::Rgb, "{name}");
        let frame = 7 * 16 + 2 * 4;
        assert_eq!(
            (info.width, info.height),
            (10 * (frame + 10) + 10, 58 + 20 + frame + 10 + 44),
            "{name}"
        );
    }
    let svg = std::fs::read_to_string(dir.join("run/modulator.svg")).unwrap();
    assert!(svg.contains("M(t), episode 1"), "{svg}");
    let o = plasticity(&[
        "maze",
        "--resume",
        &out,
        "--episodes",
        "3",
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 4);
    let o = plasticity(&["eval", "maze", "--run", &out, "--episodes", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["experiment"], "maze");
    assert!(v["reward"].as_f64().is_some_and(f64::is_finite), "{v}");
    for (bad, message) in [
        (
            vec!["maze", "--size", "8", "--out", &out],
            "size: must be odd",
        ),
        (
            vec!["maze", "--model", "lstm", "--out", &out],
            "--model: unknown model",
        ),
    ] {
        let o = plasticity(&bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(stderr(&o).contains(message), "{bad:?}: {}", stderr(&o));
    }
}

#[test]
fn cue_reward_trains_evaluates_and_checks_its_options() {
    let dir = temp_dir("cue");
    let out = dir.join("run").to_string_lossy().into_owned();
    let o = plasticity(&[
        "cue-reward",
        "--model",
        "modul",
        "--episodes",
        "2",
        "--steps",
        "8",
        "--batch",
        "2",
        "--neurons",
        "8",
        "--warmup-updates",
        "1",
        "--threads",
        "1",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap();
    assert!(
        metrics.starts_with("episode,loss,reward,seconds\n"),
        "{metrics}"
    );
    assert!(dir.join("run/modulator.svg").exists());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["task"]["alpha_init_std"], 0.01, "{config}");
    assert_eq!(config["task"]["warmup_updates"], 1, "{config}");
    let o = plasticity(&[
        "eval",
        "cue-reward",
        "--run",
        &out,
        "--episodes",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["experiment"], "cue-reward");
    // Rewards are +-1 per trial, 2 trials per episode.
    let r = v["reward"].as_f64().unwrap();
    assert!((-2.0..=2.0).contains(&r), "{v}");
    // How it answers: probabilities of responding, and their difference.
    let shown = v["respond_if_shown"].as_f64().unwrap();
    let not_shown = v["respond_if_not_shown"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&shown) && (0.0..=1.0).contains(&not_shown),
        "{v}"
    );
    let d = v["discrimination"].as_f64().unwrap();
    assert!((d - (shown - not_shown)).abs() < 1e-12, "{v}");
    for (bad, message) in [
        (vec!["cue-reward", "--steps", "3", "--out", &out], "steps"),
        (
            vec!["cue-reward", "--time-limit", "0", "--out", &out],
            "--time-limit",
        ),
        (
            vec!["cue-reward", "--device", "wgpu", "--out", &out],
            "--device",
        ),
        (vec!["maze", "--preset", "icml", "--out", &out], "--preset"),
        (
            vec!["maze", "--alpha-init-std", "nan", "--out", &out],
            "alpha_init_std",
        ),
        (
            vec!["cue-reward", "--alpha-init-std", "inf", "--out", &out],
            "alpha_init_std",
        ),
        (
            vec![
                "maze", "--preset", "icml2018", "--model", "modul", "--rule", "oja",
            ],
            "rule",
        ),
    ] {
        let o = plasticity(&bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(stderr(&o).contains(message), "{bad:?}: {}", stderr(&o));
    }
}

#[test]
fn images_runs_on_the_embedded_default_then_eval_and_resume_use_it() {
    let dir = temp_dir("images");
    let config = dir.join("small.json");
    std::fs::write(
        &config,
        r#"{"cycles": 1, "present_steps": 2, "gap_steps": 1, "test_steps": 1}"#,
    )
    .unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let config_s = config.to_str().unwrap();
    let o = plasticity(&[
        "images",
        "--config",
        config_s,
        "--episodes",
        "4",
        "--out",
        run_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for file in [
        "config.json",
        "metrics.csv",
        "checkpoint.bin",
        "learning_curve_loss.svg",
        "learning_curve_erased_loss.svg",
        "reconstructions.png",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let png = std::fs::read(run.join("reconstructions.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config_json["data_dir"], serde_json::Value::Null);
    assert_eq!(config_json["task"]["learning_rate"], 1e-4);
    assert_eq!(config_json["steps_per_episode"], 10);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().next(),
        Some("episode,loss,erased_loss,seconds")
    );

    let o = plasticity(&[
        "eval",
        "images",
        "--run",
        run_s,
        "--episodes",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["experiment"], "images");
    assert_eq!(v["episodes"], 3);
    assert!(v["loss"].as_f64().unwrap() > 0.0);

    let o = plasticity(&["images", "--resume", run_s, "--data-dir", "/tmp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--data-dir: --resume"),
        "{}",
        stderr(&o)
    );
    let o = plasticity(&["images", "--resume", run_s, "--episodes", "6"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 7);

    // Bad data: a truncated CIFAR-10 file is named in the error, exit 2.
    let data = dir.join("cifar");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("data_batch_1.bin"), vec![0u8; 3073 * 3 + 5]).unwrap();
    std::fs::write(data.join("test_batch.bin"), vec![0u8; 3073 * 3]).unwrap();
    let o = plasticity(&[
        "images",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        dir.join("run2").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("data_batch_1.bin") && stderr(&o).contains("3073"),
        "{}",
        stderr(&o)
    );
    let o = plasticity(&["images", "--model", "gru", "--out", run_s]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn omniglot_trains_evaluates_resumes_and_rejects_bad_input() {
    let dir = temp_dir("omniglot");
    let data = dir.join("data");
    omniglot_tree(&data);
    let data_s = data.to_string_lossy().into_owned();
    let run = dir.join("run");
    let run_s = run.to_string_lossy().into_owned();
    let common = [
        "--data-dir",
        &data_s,
        "--split",
        "standard",
        "--meta-batch",
        "2",
        "--threads",
        "1",
        "--checkpoint-every",
        "2",
    ];
    let mut args = vec![
        "omniglot",
        "--episodes",
        "4",
        "--out",
        &run_s,
        "--max-shift",
        "1",
        "--channels",
        "8",
        "--feature-norm",
        "l2",
    ];
    args.extend(common);
    let o = plasticity(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in [
        "config.json",
        "metrics.csv",
        "checkpoint.bin",
        "learning_curve_accuracy.svg",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(
        metrics.starts_with("episode,loss,accuracy,seconds\n"),
        "{metrics}"
    );
    assert_eq!(metrics.lines().count(), 5);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["task"]["split"], "standard");
    assert_eq!(config["task"]["ways"], 5);
    assert_eq!(config["task"]["max_shift"], 1);
    assert_eq!(config["task"]["channels"], 8);
    assert_eq!(config["task"]["feature_norm"], "l2");
    assert_eq!(config["test_classes"], 8);
    // Evaluation on held-out classes, one JSON object.
    let o = plasticity(&[
        "eval",
        "omniglot",
        "--run",
        &run_s,
        "--episodes",
        "30",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["experiment"], "omniglot");
    assert_eq!(v["episodes"], 30);
    let acc = v["accuracy"].as_f64().unwrap();
    let ci = v["ci95"].as_array().unwrap();
    let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(lo <= acc && acc <= hi && lo >= 0.0 && hi <= 1.0, "{v}");
    assert_eq!(v["classes"], "test");
    // The same on the training classes (the background set's 8), then a bad set name.
    let o = plasticity(&[
        "eval",
        "omniglot",
        "--run",
        &run_s,
        "--episodes",
        "10",
        "--classes",
        "train",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["classes"].as_str(), v["class_count"].as_u64()),
        (Some("train"), Some(8))
    );
    let o = plasticity(&["eval", "omniglot", "--run", &run_s, "--classes", "all"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--classes"), "{}", stderr(&o));
    // 3-way 2-shot episodes on the same model; 20-way needs 20 outputs.
    let o = plasticity(&[
        "eval",
        "omniglot",
        "--run",
        &run_s,
        "--episodes",
        "10",
        "--ways",
        "3",
        "--shots",
        "2",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = plasticity(&["eval", "omniglot", "--run", &run_s, "--ways", "20"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ways"), "{}", stderr(&o));
    // Resume to 6 updates.
    let o = plasticity(&[
        "omniglot",
        "--resume",
        &run_s,
        "--episodes",
        "6",
        "--threads",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 7);
    // Bad input: exit 2, message naming the problem.
    let out2 = dir.join("run2").to_string_lossy().into_owned();
    let missing = dir.join("missing").to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["omniglot", "--data-dir", &missing, "--out", &out2],
            "not found",
        ),
        (
            vec![
                "omniglot",
                "--data-dir",
                &data_s,
                "--split",
                "random",
                "--out",
                &out2,
            ],
            "--split: unknown split",
        ),
        (
            vec![
                "omniglot",
                "--data-dir",
                &data_s,
                "--feature-norm",
                "cosine",
                "--out",
                &out2,
            ],
            "--feature-norm: invalid value 'cosine'",
        ),
        (
            vec!["omniglot", "--data-dir", &data_s, "--out", &out2],
            "test_classes",
        ),
        (
            vec![
                "omniglot",
                "--data-dir",
                &data_s,
                "--split",
                "standard",
                "--shots",
                "3",
                "--out",
                &out2,
            ],
            "shots",
        ),
        (
            vec![
                "omniglot",
                "--data-dir",
                &data_s,
                "--ways",
                "0",
                "--out",
                &out2,
            ],
            "ways: must be positive",
        ),
        (
            vec![
                "omniglot",
                "--data-dir",
                &data_s,
                "--split",
                "standard",
                "--max-shift",
                "16",
                "--out",
                &out2,
            ],
            "max_shift: must be less than half",
        ),
    ];
    for (args, message) in cases {
        let o = plasticity(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(message),
            "{args:?}: expected '{message}' in '{}'",
            stderr(&o)
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The configuration files the README's commands use are valid configurations.
#[test]
fn the_shipped_configuration_files_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        if name.starts_with("cue-reward") {
            let c: plasticity::tasks::cue_reward::CueRewardConfig =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(c.warmup_updates > 0, "{name}");
            seen += 1;
        } else {
            panic!("{name}: no check for this configuration file");
        }
    }
    assert!(seen >= 2, "{seen} files in {}", dir.display());
}
