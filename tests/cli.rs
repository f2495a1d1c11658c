//! The `plasticity` command as a user runs it: outputs, exit codes, error messages.

mod common;

use common::{
    assert_run_files, config_json, eval_json, expect_usage, fails, metrics, omniglot_tree,
    pattern_run, pattern_scratch, stdout_json, succeeds, temp_dir,
};

#[test]
fn bad_options_and_configs_exit_2_with_a_message_naming_the_problem() {
    let dir = temp_dir("bad");
    let out = dir.join("run").to_string_lossy().into_owned();
    // `pattern <option> <value> --out <out>`.
    for (option, value, message) in [
        ("--bits", "0", "bits: must be positive"),
        ("--lr", "-0.1", "learning_rate: must be positive"),
        ("--model", "mlp", "--model: unknown model 'mlp'"),
        ("--rule", "stdp", "--rule: invalid value 'stdp'"),
        ("--preset", "huge", "--preset: unknown preset 'huge'"),
        ("--threads", "0", "--threads: must be positive"),
        ("--device", "tpu", "--device tpu: unknown device"),
    ] {
        expect_usage(&["pattern", option, value, "--out", &out], &[message]);
    }
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["eval", "no-such-task", "--run", &out],
            "unknown experiment 'no-such-task'",
        ),
        (
            vec!["bench", "no-such-workload"],
            "unknown workload 'no-such-workload'",
        ),
        (
            vec!["bench", "pattern", "--device", "wgpu:x"],
            "the index after ':' must be a number",
        ),
    ];
    for (args, message) in cases {
        expect_usage(&args, &[message]);
    }
    let bad_json = dir.join("bad.json");
    let bad_json_s = bad_json.to_str().unwrap();
    for (text, message) in [
        ("{ bits: ", "bad.json: invalid JSON"),
        (r#"{"bitz": 8}"#, "unknown field `bitz`"),
    ] {
        std::fs::write(&bad_json, text).unwrap();
        fails(
            &["pattern", "--config", bad_json_s, "--out", &out],
            2,
            &[message],
        );
    }
    let missing = dir.join("missing");
    fails(
        &["eval", "pattern", "--run", missing.to_str().unwrap()],
        2,
        &["config.json"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_writes_the_run_directory_then_eval_and_resume_use_it() {
    let (dir, config, run, run_s) = pattern_scratch("run");
    succeeds(&pattern_run(&config, "20", &run_s, &["--seed", "3"]));
    assert_run_files(
        &run,
        &["learning_curve_error.svg", "learning_curve_loss.svg"],
    );
    let config_json = config_json(&run);
    assert_eq!(config_json["seed"], 3);
    assert_eq!(config_json["task"]["bits"], 16);
    assert_eq!(config_json["task"]["learning_rate"], 3e-4);
    let metrics_csv = metrics(&run);
    assert_eq!(
        metrics_csv.lines().next(),
        Some("update,loss,error,seconds")
    );
    assert_eq!(metrics_csv.lines().count(), 21);

    let o = succeeds(&[
        "eval",
        "pattern",
        "--run",
        &run_s,
        "--episodes",
        "5",
        "--json",
    ]);
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

    fails(
        &["pattern", "--resume", &run_s, "--bits", "8"],
        2,
        &["--bits: --resume continues a run with its saved config.json"],
    );
    succeeds(&["pattern", "--resume", &run_s, "--episodes", "30"]);
    assert_eq!(metrics(&run).lines().count(), 31);

    // A corrupt checkpoint: clear error, exit 2, for eval and for resume.
    std::fs::write(run.join("checkpoint.bin"), b"PLSTCKP1garbage").unwrap();
    for args in [
        vec!["eval", "pattern", "--run", &run_s],
        vec!["pattern", "--resume", &run_s, "--episodes", "40"],
    ] {
        fails(
            &args,
            2,
            &["checkpoint.bin: corrupt or truncated checkpoint"],
        );
    }

    let svg = dir.join("curves.svg");

    let o = succeeds(&["plot", &run_s, &run_s, "--out", svg.to_str().unwrap()]);
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
    let o = succeeds(&[
        "plot",
        &run_s,
        &run_s,
        "--seeds",
        "--out",
        svg.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(text.matches("<polyline").count(), 1);
    assert_eq!(text.matches("<polygon").count(), 1);
    assert!(String::from_utf8_lossy(&o.stdout).contains("(median, IQR of 2)"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_json_reports_time_and_memory() {
    let o = succeeds(&["bench", "pattern", "--json", "--episodes", "1"]);
    let v = stdout_json(&o);
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
    succeeds(&args);
    let run = dir.join("run");
    let metrics_csv = metrics(&run);
    assert!(
        metrics_csv.starts_with("update,loss,reward,seconds\n"),
        "{metrics_csv}"
    );
    assert_eq!(metrics_csv.lines().count(), 3);
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config.contains(r#""model": "modplast""#), "{config}");
    // The trajectory pictures (10 numbered frames of a 7x7 maze, 16-pixel cells, in one row of
    // 10, under a title, above a legend) and the modulator plot.
    for name in ["trajectory_before.png", "trajectory_after.png"] {
        let file = std::fs::File::open(run.join(name)).unwrap();
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
    let svg = std::fs::read_to_string(run.join("modulator.svg")).unwrap();
    assert!(svg.contains("M(t), episode 1"), "{svg}");
    succeeds(&[
        "maze",
        "--resume",
        &out,
        "--episodes",
        "3",
        "--threads",
        "1",
    ]);
    assert_eq!(metrics(&run).lines().count(), 4);
    let v = eval_json("maze", &out, &["--episodes", "1"]);
    assert!(v["reward"].as_f64().is_some_and(f64::is_finite), "{v}");
    // One episode asked, one whole batch of 2 run; the checkpoint's 3 updates.
    assert_eq!(
        (v["episodes"].as_u64(), v["trained_updates"].as_u64()),
        (Some(2), Some(3)),
        "{v}"
    );
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
        fails(&bad, 2, &[message]);
    }
}

#[test]
fn cue_reward_trains_evaluates_and_checks_its_options() {
    let dir = temp_dir("cue");
    let out = dir.join("run").to_string_lossy().into_owned();
    succeeds(&[
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
    let run = dir.join("run");
    let metrics_csv = metrics(&run);
    assert!(
        metrics_csv.starts_with("update,loss,reward,seconds\n"),
        "{metrics_csv}"
    );
    assert!(run.join("modulator.svg").exists());
    let config = config_json(&run);
    assert_eq!(config["task"]["alpha_init_std"], 0.01, "{config}");
    assert_eq!(config["task"]["warmup_updates"], 1, "{config}");
    let v = eval_json("cue-reward", &out, &["--episodes", "2"]);
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
        fails(&bad, 2, &[message]);
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
    succeeds(&[
        "images",
        "--config",
        config_s,
        "--episodes",
        "4",
        "--out",
        run_s,
    ]);
    assert_run_files(
        &run,
        &[
            "learning_curve_loss.svg",
            "learning_curve_erased_loss.svg",
            "reconstructions.png",
        ],
    );
    let png = std::fs::read(run.join("reconstructions.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let config_json = config_json(&run);
    assert_eq!(config_json["data_dir"], serde_json::Value::Null);
    assert_eq!(config_json["task"]["learning_rate"], 1e-4);
    assert_eq!(config_json["steps_per_episode"], 10);
    assert_eq!(
        metrics(&run).lines().next(),
        Some("update,loss,erased_loss,seconds")
    );

    let v = eval_json("images", run_s, &["--episodes", "3"]);
    assert_eq!(v["episodes"], 3);
    assert!(v["loss"].as_f64().unwrap() > 0.0);

    fails(
        &["images", "--resume", run_s, "--data-dir", "/tmp"],
        2,
        &["--data-dir: --resume"],
    );
    succeeds(&["images", "--resume", run_s, "--episodes", "6"]);
    assert_eq!(metrics(&run).lines().count(), 7);

    // Bad data: a truncated CIFAR-10 file is named in the error, exit 2.
    let data = dir.join("cifar");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("data_batch_1.bin"), vec![0u8; 3073 * 3 + 5]).unwrap();
    std::fs::write(data.join("test_batch.bin"), vec![0u8; 3073 * 3]).unwrap();
    fails(
        &[
            "images",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            dir.join("run2").to_str().unwrap(),
        ],
        2,
        &["data_batch_1.bin", "3073"],
    );
    fails(&["images", "--model", "gru", "--out", run_s], 2, &[]);
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
    succeeds(&args);
    assert_run_files(&run, &["learning_curve_accuracy.svg"]);
    let metrics_csv = metrics(&run);
    assert!(
        metrics_csv.starts_with("update,loss,accuracy,seconds\n"),
        "{metrics_csv}"
    );
    assert_eq!(metrics_csv.lines().count(), 5);
    let config = config_json(&run);
    assert_eq!(config["task"]["split"], "standard");
    assert_eq!(config["task"]["ways"], 5);
    assert_eq!(config["task"]["max_shift"], 1);
    assert_eq!(config["task"]["channels"], 8);
    assert_eq!(config["task"]["feature_norm"], "l2");
    assert_eq!(config["test_classes"], 8);
    // Evaluation on held-out classes, one JSON object.
    let v = eval_json("omniglot", &run_s, &["--episodes", "30"]);
    assert_eq!(v["episodes"], 30);
    let acc = v["accuracy"].as_f64().unwrap();
    let ci = v["ci95"].as_array().unwrap();
    let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(lo <= acc && acc <= hi && lo >= 0.0 && hi <= 1.0, "{v}");
    assert_eq!(v["classes"], "test");
    // The same on the training classes (the background set's 8), then a bad set name.
    let v = eval_json(
        "omniglot",
        &run_s,
        &["--episodes", "10", "--classes", "train"],
    );
    assert_eq!(
        (v["classes"].as_str(), v["class_count"].as_u64()),
        (Some("train"), Some(8))
    );
    fails(
        &["eval", "omniglot", "--run", &run_s, "--classes", "all"],
        2,
        &["--classes"],
    );
    // 3-way 2-shot episodes on the same model; 20-way needs 20 outputs.
    eval_json(
        "omniglot",
        &run_s,
        &["--episodes", "10", "--ways", "3", "--shots", "2"],
    );
    fails(
        &["eval", "omniglot", "--run", &run_s, "--ways", "20"],
        2,
        &["ways"],
    );
    // Resume to 6 updates.
    succeeds(&[
        "omniglot",
        "--resume",
        &run_s,
        "--episodes",
        "6",
        "--threads",
        "1",
    ]);
    assert_eq!(metrics(&run).lines().count(), 7);
    // Bad input: exit 2, message naming the problem.
    let out2 = dir.join("run2").to_string_lossy().into_owned();
    let missing = dir.join("missing").to_string_lossy().into_owned();
    // Each case: `omniglot --data-dir <data> <options> --out <out2>`.
    let cases: [(&str, &[&str], &str); 7] = [
        (&missing, &[], "not found"),
        (&data_s, &["--split", "random"], "--split: unknown split"),
        (
            &data_s,
            &["--feature-norm", "cosine"],
            "--feature-norm: invalid value 'cosine'",
        ),
        (&data_s, &[], "test_classes"),
        (&data_s, &["--split", "standard", "--shots", "3"], "shots"),
        (&data_s, &["--ways", "0"], "ways: must be positive"),
        (
            &data_s,
            &["--split", "standard", "--max-shift", "16"],
            "max_shift: must be less than half",
        ),
    ];
    for (data_dir, options, message) in cases {
        let mut args = vec!["omniglot", "--data-dir", data_dir];
        args.extend(options);
        args.extend(["--out", &out2]);
        fails(&args, 2, &[message]);
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
            assert!(c.env.warmup_updates > 0, "{name}");
            seen += 1;
        } else if name.starts_with("sweep-") {
            // Sweep specs: checked by tests/cli_sweep.rs (every configs/sweep-*).
        } else {
            panic!("{name}: no check for this configuration file");
        }
    }
    assert!(seen >= 2, "{seen} files in {}", dir.display());
}

#[test]
fn device_cuda_without_the_feature_or_a_device_is_a_usage_error() {
    // Device 7 exists on no machine this runs on: a build with `--features cuda` says which
    // library or device is missing, a build without says how to get the feature; exit 2 both.
    let args = ["bench", "pattern", "--device", "cuda:7", "--episodes", "1"];
    if cfg!(feature = "cuda") {
        fails(&args, 2, &["--device cuda:7"]);
    } else {
        expect_usage(&args, &["--device cuda:7", "built without --features cuda"]);
    }
    expect_usage(
        &["bench", "pattern", "--device", "cuda:x"],
        &["the index after ':' must be a number"],
    );
}

#[test]
fn plot_table_draws_a_csv_of_curves_and_rejects_bad_ones() {
    let dir = temp_dir("plot-table");
    let csv = dir.join("curves.csv");
    let svg = dir.join("curves.svg");
    let (csv_s, svg_s) = (csv.to_str().unwrap(), svg.to_str().unwrap());
    // Two curves of 50 points, the first with a band; a label with a comma, quoted.
    let mut text = String::from("# made by the test\nseries,x,y,low,high\n");
    for k in 1..=50 {
        let y = 1.0 / k as f64;
        text += &format!("\"plastic, 3 seeds\",{k},{y},{},{}\n", y * 0.9, y * 1.1);
    }
    for k in 1..=50 {
        text += &format!("rnn,{k},{},,\n", 2.0 / k as f64);
    }
    std::fs::write(&csv, text).unwrap();
    let o = succeeds(&[
        "plot",
        "--table",
        csv_s,
        "--out",
        svg_s,
        "--title",
        "a title",
        "--x-label",
        "update",
        "--y-label",
        "error",
        "--log",
    ]);
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(drawn.matches("<polyline").count(), 2, "two curves");
    assert_eq!(drawn.matches("<polygon").count(), 1, "one band");
    for want in [
        "a title",
        "plastic, 3 seeds",
        "error (log scale)",
        "not smoothed",
    ] {
        assert!(drawn.contains(want), "{want}");
    }
    // The last points as a table.
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(table.contains("| rnn | 50 | 0.040 |"), "{table}");
    assert!(table.contains("| plastic, 3 seeds | 50 | 0.020 [0.018, 0.022] |"));
    // --dots: the named curve as dots, no line.
    succeeds(&["plot", "--table", csv_s, "--out", svg_s, "--dots", "rnn"]);
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(drawn.matches("<polyline").count(), 1);
    assert!(drawn.matches("<circle").count() >= 50);
    expect_usage(
        &["plot", "--table", csv_s, "--out", svg_s, "--dots", "lstm"],
        &["--dots lstm", "curves.csv has no series of that name"],
    );
    // Bad tables: exit 2 naming the file and the line.
    let bad = dir.join("bad.csv");
    let bad_s = bad.to_str().unwrap();
    for (content, want) in [
        ("", "bad.csv: empty file"),
        ("series,x\nrnn,1\n", "bad.csv: line 1: no column 'y'"),
        (
            "series,x,y\nrnn,1,0.5\nrnn,2\n",
            "bad.csv: line 3: 2 fields, the header has 3",
        ),
        (
            "series,x,y\nrnn,1,0.5\nrnn,two,0.4\n",
            "line 3: column 'x': 'two' is not a number",
        ),
        ("series,x,y\n", "bad.csv: no rows after the header"),
    ] {
        std::fs::write(&bad, content).unwrap();
        expect_usage(&["plot", "--table", bad_s, "--out", svg_s], &[want]);
    }
    expect_usage(
        &[
            "plot",
            "--table",
            &dir.join("absent.csv").to_string_lossy(),
            "--out",
            svg_s,
        ],
        &["absent.csv"],
    );
    // --table draws a file, not runs; --title needs --table.
    expect_usage(
        &["plot", "--table", csv_s, "runs/x", "--out", svg_s],
        &["cannot be used"],
    );
    expect_usage(
        &["plot", "runs/x", "--title", "t", "--out", svg_s],
        &["--table"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
