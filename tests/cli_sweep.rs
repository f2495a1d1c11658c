//! `plasticity sweep`: the local backend end to end on a tiny grid (folders, manifest, a
//! resumed point, the report against each run's metrics.csv), Ctrl-C, the spec errors, the
//! Slurm array script against its golden file, and a sweep on a real Slurm cluster (skipped,
//! saying why, where none answers: `scripts/slurm-local.sh start` starts one).

mod common;

use common::{expect_usage, metrics, plasticity, stderr, stdout_json, succeeds, temp_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A spec of pattern runs of a tiny configuration (written into `dir`): models plastic and
/// rnn x seeds 0 and 1, `updates` updates each, `more` appended (TOML).
fn tiny_spec(dir: &Path, updates: u64, more: &str) -> PathBuf {
    let config = dir.join("tiny.json");
    std::fs::write(
        &config,
        r#"{"bits": 32, "patterns": 3, "cycles": 1, "present_steps": 2, "gap_steps": 1, "test_steps": 2}"#,
    )
    .unwrap();
    let spec = dir.join("tiny.toml");
    std::fs::write(
        &spec,
        format!(
            "experiment = \"pattern\"\n[options]\nconfig = {:?}\ncheckpoint-every = 2\n[axes]\nmodel = [\"plastic\", \"rnn\"]\nseed = [0, 1]\n[budget]\nupdates = {updates}\n{more}",
            config.display().to_string()
        ),
    )
    .unwrap();
    spec
}

/// A scratch folder for test `name` with [`tiny_spec`] in it: the folder, the spec and the
/// sweep folder `sweep` inside it (not created).
fn scratch(name: &str, updates: u64, more: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let spec = tiny_spec(&dir, updates, more);
    let sweep = dir.join("sweep");
    (dir, spec, sweep)
}

/// `sweep SPEC --out SWEEP` and `more`.
fn sweep_args<'a>(spec: &'a Path, sweep: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["sweep", spec.to_str().unwrap(), "--out", sweep];
    args.extend(more);
    args
}

/// The JSON that a command prints, after asserting it succeeded.
fn json_of(args: &[&str]) -> Value {
    stdout_json(&succeeds(args))
}

/// The states of `sweep status DIR --json`, by point name.
fn states(dir: &str) -> Vec<(String, String)> {
    let v = json_of(&["sweep", "status", dir, "--json"]);
    v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["state"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Column `col` of a run's metrics.csv, as numbers.
fn column(run: &Path, col: &str) -> Vec<f64> {
    let text = metrics(run);
    let mut lines = text.lines();
    let k = lines
        .next()
        .unwrap()
        .split(',')
        .position(|h| h == col)
        .unwrap();
    lines
        .map(|l| l.split(',').nth(k).unwrap().parse().unwrap())
        .collect()
}

/// metrics.csv without its `seconds` column (the part a resumed run reproduces exactly).
fn without_seconds(run: &Path) -> Vec<String> {
    metrics(run)
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

/// The `q`-quantile by linear interpolation, computed here independently of the binary.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Asserts that `report --json` (metric `metric`, `last` values averaged) holds the numbers
/// read from each run's metrics.csv.
fn check_report(sweep: &Path, metric: &str, last: usize) {
    let s = sweep.to_str().unwrap();
    let n = last.to_string();
    let r = json_of(&[
        "sweep", "report", s, "--metric", metric, "--last", &n, "--json",
    ]);
    assert_eq!(r["metric"], metric);
    let close = |a: &Value, b: f64| (a.as_f64().unwrap() - b).abs() <= 1e-9 * b.abs().max(1.0);
    for group in ["plastic", "rnn"] {
        let mut finals = Vec::new();
        for seed in 0..2 {
            let name = format!("{group}-seed{seed}");
            let run = sweep.join(&name);
            let values = column(&run, metric);
            let want = values[values.len() - last..].iter().sum::<f64>() / last as f64;
            let got = r["runs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == name.as_str())
                .unwrap();
            assert!(close(&got["final"], want), "{name}: {got} vs {want}");
            assert_eq!(got["updates"], 12);
            assert_eq!(got["state"], "done");
            let wall = *column(&run, "seconds").last().unwrap();
            assert!(close(&got["wall_seconds"], wall), "{got} vs {wall}");
            finals.push(want);
        }
        let g = r["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["group"] == group)
            .unwrap();
        assert_eq!(g["runs"], 2);
        assert!(close(&g["median"], quantile(&finals, 0.5)), "{g}");
        assert!(close(&g["q25"], quantile(&finals, 0.25)), "{g}");
        assert!(close(&g["q75"], quantile(&finals, 0.75)), "{g}");
    }
}

/// Item: the local backend on 2 models x 2 seeds: folders and manifest, a rerun that skips the
/// finished points and resumes the interrupted one (whose metrics then equal an uninterrupted
/// run's), and a report whose numbers are those of each run's metrics.csv.
#[test]
fn a_local_sweep_runs_resumes_and_reports() {
    let (dir, spec, sweep) = scratch("sweep-local", 12, "");
    let sweep_s = sweep.to_str().unwrap();
    let cmd = sweep_args(&spec, sweep_s, &["--jobs", "2", "--threads", "1"]);
    let o = succeeds(&cmd);
    let e = stderr(&o);
    assert!(
        e.contains("4 points: 0 done") && e.contains("4 to start"),
        "{e}"
    );
    // Folders, spec and manifest: points seed by seed, each with its command line.
    assert_eq!(
        std::fs::read_to_string(sweep.join("spec.toml")).unwrap(),
        std::fs::read_to_string(&spec).unwrap()
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(sweep.join("manifest.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = manifest["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["plastic-seed0", "rnn-seed0", "plastic-seed1", "rnn-seed1"]
    );
    for name in &names {
        common::assert_run_files(&sweep.join(name), &[]);
        assert_eq!(common::metrics_rows(&sweep.join(name)), 12);
    }
    assert!(states(sweep_s).iter().all(|(_, s)| s == "done"));
    assert!(sweep.join("report.md").exists() && sweep.join("error.svg").exists());

    // An interrupted point: plastic-seed1 again, stopped after 6 of its 12 updates with a
    // checkpoint and no record (as a kill leaves it).
    let point = &manifest["points"][2];
    let run = sweep.join("plastic-seed1");
    let uninterrupted = without_seconds(&run);
    std::fs::remove_dir_all(&run).unwrap();
    std::fs::remove_file(sweep.join("logs/plastic-seed1.json")).unwrap();
    let mut args: Vec<String> = point["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let k = args.iter().position(|a| a == "--updates").unwrap();
    args[k + 1] = "6".into();
    args.extend(["--out", run.to_str().unwrap(), "--threads", "1"].map(String::from));
    succeeds(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let status = states(sweep_s);
    assert_eq!(status[2], ("plastic-seed1".into(), "interrupted".into()));
    let done: Vec<String> = ["plastic-seed0", "rnn-seed0", "rnn-seed1"]
        .iter()
        .map(|n| metrics(&sweep.join(n)))
        .collect();

    // The same command again: the finished points are skipped, the interrupted one resumed.
    let o = succeeds(&cmd);
    let e = stderr(&o);
    assert!(
        e.contains("3 done") && e.contains("1 to resume, 0 to start"),
        "{e}"
    );
    assert!(e.contains("[1/1] plastic-seed1: done (resumed"), "{e}");
    for (n, before) in ["plastic-seed0", "rnn-seed0", "rnn-seed1"]
        .iter()
        .zip(&done)
    {
        assert_eq!(&metrics(&sweep.join(n)), before, "{n} was run again");
    }
    let log = std::fs::read_to_string(sweep.join("logs/plastic-seed1.log")).unwrap();
    assert!(
        log.contains(&format!("--resume {}", run.display())),
        "{log}"
    );
    assert_eq!(without_seconds(&run), uninterrupted);
    assert!(states(sweep_s).iter().all(|(_, s)| s == "done"));

    // The report's numbers are each run's.
    check_report(&sweep, "error", 1);
    check_report(&sweep, "loss", 3);
    let table = String::from_utf8(succeeds(&["sweep", "report", sweep_s]).stdout).unwrap();
    assert!(table.contains("| plastic | 2 of 2 |") && table.contains("| rnn-seed1 | done | 12 |"));

    // Another spec into the same folder is refused, naming what differs.
    let other = tiny_spec(&dir, 13, "");
    expect_usage(
        &["sweep", other.to_str().unwrap(), "--out", sweep_s],
        &["another spec", "budget differs"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ctrl-C on a local sweep stops the running point after its update with a checkpoint (exit
/// 130), starts no other, and leaves the point to be resumed.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_a_local_sweep_with_resumable_runs() {
    let (dir, spec, sweep) = scratch("sweep-sigint", 100_000_000, "");
    let sweep_s = sweep.to_str().unwrap();
    let args = sweep_args(&spec, sweep_s, &["--threads", "1"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_plasticity"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (without a time limit of our own) until the first point has a few updates on disk.
    let run = sweep.join("plastic-seed0");
    while std::fs::read_to_string(run.join("metrics.csv")).map_or(0, |t| t.lines().count()) <= 3 {
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{e}");
    assert!(e.contains("run the same command again"), "{e}");
    let done = plasticity::train::checkpoint_update(&run).unwrap().unwrap();
    assert_eq!(common::metrics_rows(&run) as u64, done);
    let status: Vec<String> = states(sweep_s).into_iter().map(|(_, s)| s).collect();
    assert_eq!(status, ["interrupted", "pending", "pending", "pending"]);
    let o = succeeds(&[&args[..], &["--dry-run"]].concat());
    let plan = String::from_utf8(o.stdout).unwrap();
    assert!(
        plan.contains(
            "plastic-seed0: resume: plasticity pattern --checkpoint-every 2 --updates 100000000"
        ),
        "{plan}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A bad spec is exit 2 with the field named, and leaves no sweep folder.
#[test]
fn spec_errors_name_the_field() {
    let dir = temp_dir("sweep-errors");
    let out = dir.join("out");
    let cases: [(&str, &[&str]); 8] = [
        ("experiment = \"patern\"\n[axes]\nseed = [0]", &["experiment: unknown experiment 'patern'"]),
        ("experiment = \"pattern\"\n[options]\nbitz = 3\n[axes]\nseed = [0]", &["options.bitz: unknown option of pattern"]),
        ("experiment = \"pattern\"\n[axes]\nmodel = [\"plastic\", \"mlp\"]", &["axes.model", "unknown model 'mlp'"]),
        ("experiment = \"pattern\"\n[axes]\nmodel = [\"modul\"]", &["axes.model", "unknown model 'modul'"]),
        ("experiment = \"pattern\"\n[axes]\nbits = [\"many\"]", &["axes.bits", "invalid value 'many'"]),
        ("experiment = \"pattern\"\n[axes]\nseed = []", &["axes.seed: empty list"]),
        ("experiment = \"lm\"\n[axes]\nseed = [0]\n[budget]\nupdates = 5", &["budget.updates", "epochs"]),
        ("experiment = \"pattern\"\n[axes]\nseed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nbits = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\npatterns = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", &["axes: the grid has 1100 points", "--yes"]),
    ];
    let spec = dir.join("bad.toml");
    for (text, wants) in cases {
        std::fs::write(&spec, text).unwrap();
        let e = expect_usage(
            &[
                "sweep",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            wants,
        );
        assert!(e.contains("bad.toml"), "{e}");
        assert!(!out.exists(), "{text}: a refused sweep made its folder");
    }
    std::fs::write(
        dir.join("bad.json"),
        r#"{"experiment": "maze", "axes": {"fan-out": ["yes"]}}"#,
    )
    .unwrap();
    let json = dir.join("bad.json");
    expect_usage(
        &["sweep", json.to_str().unwrap()],
        &["axes.fan-out: --fan-out is a flag"],
    );
    expect_usage(
        &["sweep", "status", dir.to_str().unwrap()],
        &["not a sweep folder"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The array script of a Slurm sweep, as text (paths replaced by placeholders), against the
/// golden file; `--dry-run` submits nothing and says what it would.
#[test]
fn the_slurm_array_script_matches_its_golden_file() {
    let dir = temp_dir("sweep-golden");
    let slurm = "[slurm]\ncpus-per-task = 2\nmax-parallel = 3\nargs = [\"--time=00:10:00\", \"--mem=1G\"]\n";
    let spec = tiny_spec(&dir, 12, slurm);
    let sweep = dir.join("golden");
    let sweep_s = sweep.to_str().unwrap();
    let o = succeeds(&[
        "sweep",
        spec.to_str().unwrap(),
        "--out",
        sweep_s,
        "--on",
        "slurm",
        "--dry-run",
    ]);
    let e = stderr(&o);
    assert!(
        e.contains("would run: sbatch --parsable --array=0-3%3"),
        "{e}"
    );
    let script = std::fs::read_to_string(sweep.join("slurm/array.sh")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let text = script
        .replace(sweep_s, "{DIR}")
        .replace(env!("CARGO_BIN_EXE_plasticity"), "{BIN}")
        .replace(cwd.to_str().unwrap(), "{CWD}");
    let golden = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sweep_array.sh"),
    )
    .unwrap();
    assert_eq!(text, golden);
    assert!(!sweep.join("slurm/jobs.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Why the Slurm test cannot run here, if it cannot.
fn slurm_missing() -> Option<String> {
    for tool in ["sbatch", "squeue", "sinfo"] {
        match Command::new(tool).arg("--version").output() {
            Err(_) => return Some(format!("{tool} not found (apt-get install slurm-wlm munge)")),
            Ok(o) if !o.status.success() => {
                return Some(format!(
                    "{tool} --version fails (no slurm.conf? scripts/slurm-local.sh start, then export SLURM_CONF): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Ok(_) => {}
        }
    }
    let o = Command::new("sinfo")
        .args(["--noheader", "-o", "%a %t"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() || !text.contains("up") {
        return Some(format!(
            "no Slurm cluster answers (scripts/slurm-local.sh start, then export SLURM_CONF): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    None
}

/// Polls `sweep status` until no point is queued or running (at most 10 minutes: a bound
/// against a stuck cluster, not a timing assertion).
fn wait_for(sweep: &str) -> Vec<(String, String)> {
    for _ in 0..600 {
        let s = states(sweep);
        if s.iter()
            .all(|(_, st)| st != "queued" && st != "running" && st != "pending")
        {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    panic!(
        "the Slurm sweep did not finish within 10 minutes: {:?}",
        states(sweep)
    );
}

/// A tiny sweep on a real Slurm cluster: one job array, status from the queue and the
/// folders, the report, and a lost point resubmitted alone.
#[test]
fn a_slurm_sweep_runs_on_a_real_cluster() {
    if let Some(why) = slurm_missing() {
        eprintln!("skipped: the Slurm sweep test needs a cluster: {why}");
        return;
    }
    let (dir, spec, sweep) = scratch("sweep-slurm", 12, "[slurm]\nmax-parallel = 2\n");
    let sweep_s = sweep.to_str().unwrap();
    let cmd = sweep_args(&spec, sweep_s, &["--on", "slurm"]);
    let o = succeeds(&cmd);
    let job = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(job.parse::<u64>().is_ok(), "job id: {job} ({})", stderr(&o));
    let status = wait_for(sweep_s);
    assert!(status.iter().all(|(_, s)| s == "done"), "{status:?}");
    let v = json_of(&["sweep", "status", sweep_s, "--json"]);
    assert_eq!(v["slurm_jobs"], serde_json::json!([job]));
    check_report(&sweep, "error", 2);
    assert!(sweep.join(format!("logs/slurm-{job}_0.out")).exists());

    // A point lost (a failed or cancelled task): the same command resubmits it alone.
    std::fs::remove_dir_all(sweep.join("rnn-seed1")).unwrap();
    std::fs::remove_file(sweep.join("logs/rnn-seed1.json")).unwrap();
    let o = succeeds(&cmd);
    let e = stderr(&o);
    assert!(e.contains("1 of 4 points (--array=3%2)"), "{e}");
    let status = wait_for(sweep_s);
    assert!(status.iter().all(|(_, s)| s == "done"), "{status:?}");
    check_report(&sweep, "loss", 3);
    let o = plasticity(&cmd);
    assert!(stderr(&o).contains("nothing to submit"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every sweep spec in configs/ is valid (checked as a run would be, without running), and the
/// papers' grids have the expected points.
#[test]
fn the_papers_grids_in_configs_are_valid_specs() {
    let dir = temp_dir("sweep-configs");
    let expected = [
        (
            "sweep-maze.toml",
            45,
            "rnn139-seed8: start: plasticity maze",
        ),
        (
            "sweep-cue-reward.toml",
            40,
            "rnn-seed9: start: plasticity cue-reward",
        ),
        ("sweep-lm.toml", 12, "modul-seed2: start: plasticity lm"),
    ];
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&configs).unwrap() {
        let spec = entry.unwrap().path();
        let file = spec.file_name().unwrap().to_string_lossy().into_owned();
        if !file.starts_with("sweep-") {
            continue;
        }
        let out = dir.join(&file);
        let o = succeeds(&[
            "sweep",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--dry-run",
        ]);
        let plan = String::from_utf8(o.stdout).unwrap();
        if let Some((_, points, last)) = expected.iter().find(|(f, _, _)| *f == file) {
            assert_eq!(plan.lines().count(), *points, "{file}: {plan}");
            assert!(
                plan.lines().last().unwrap().starts_with(last),
                "{file}: {plan}"
            );
        }
        seen.push(file);
    }
    for (file, _, _) in expected {
        assert!(seen.iter().any(|f| f == file), "configs/{file} is missing");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A point whose run fails (here: refused as too large for the machine, exit 2 of its own) is
/// reported by the sweep (exit 1), shown as failed with its reason, and tried again by the next
/// run, while the finished point is skipped.
#[test]
fn a_failing_point_is_reported_and_tried_again() {
    let (dir, spec, sweep) = scratch("sweep-failing", 4, "");
    let text = std::fs::read_to_string(&spec).unwrap();
    let text = text.replace(
        "model = [\"plastic\", \"rnn\"]\nseed = [0, 1]",
        "bits = [8, 1000000000]",
    );
    std::fs::write(&spec, text).unwrap();
    let sweep_s = sweep.to_str().unwrap();
    let args = sweep_args(&spec, sweep_s, &["--threads", "1"]);
    let e = common::fails(&args, 1, &["1 of 2 points failed (bits1000000000)"]);
    assert!(e.contains("[1/2] bits8: done"), "{e}");
    let status = states(sweep_s);
    assert_eq!(
        status,
        [
            ("bits8".into(), "done".into()),
            ("bits1000000000".into(), "failed".into())
        ]
    );
    let table = String::from_utf8(succeeds(&["sweep", "status", sweep_s]).stdout).unwrap();
    assert!(
        table.contains("| 1 | bits1000000000 | failed | - | error: config: bits"),
        "{table}"
    );
    let e = common::fails(
        &args,
        1,
        &["1 done", "1 to start", "[1/1] bits1000000000: failed"],
    );
    assert!(!e.contains("bits8:"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
