//! The Slurm backend of `plasticity sweep`: one job array (`sbatch --array=LIST%M`) whose task
//! K runs point K through this binary (`plasticity sweep run-point DIR K`), and the
//! scheduler's view of the points (`squeue`). The sweep folder must be on a file system the
//! nodes share, and so must this binary.

use super::common::{write_atomic, Failure};
use super::sweep_point::{point_state, print_out, Manifest, PointState, Scheduled};
use crate::sweep_spec::Spec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// One submission, in `slurm/jobs.json`.
#[derive(Serialize, Deserialize)]
pub(crate) struct Submission {
    /// Slurm's job id of the array.
    pub(crate) job: String,
    /// The points it runs (its array task ids).
    pub(crate) points: Vec<usize>,
}

/// The submissions of the sweep in `dir` (none for a local sweep).
pub(crate) fn submissions(dir: &Path) -> Vec<Submission> {
    std::fs::read_to_string(dir.join("slurm").join("jobs.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// `text` quoted for sh.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The array script: Slurm options from the spec, then the point of the task.
pub(crate) fn array_script(dir: &Path, m: &Manifest, spec: &Spec, bin: &Path) -> String {
    let name = dir
        .file_name()
        .map_or_else(|| "sweep".into(), |n| n.to_string_lossy().into_owned());
    let mut s = String::new();
    s.push_str("#!/bin/sh\n");
    s.push_str(
        "# A sweep's job array, written by `plasticity sweep --on slurm` and submitted with\n",
    );
    s.push_str("# sbatch --array=POINTS%MAX: array task K runs point K of manifest.json (a new run, or the\n");
    s.push_str("# resumption of an interrupted one) through the same binary.\n");
    s.push_str(&format!("#SBATCH --job-name=sweep-{name}\n"));
    s.push_str(&format!(
        "#SBATCH --output={}/logs/slurm-%A_%a.out\n",
        dir.display()
    ));
    s.push_str(&format!(
        "#SBATCH --cpus-per-task={}\n",
        spec.slurm.cpus_per_task
    ));
    for a in &spec.slurm.args {
        s.push_str(&format!("#SBATCH {a}\n"));
    }
    s.push_str(&format!(
        "cd {} || exit 1\n",
        quote(&m.cwd.display().to_string())
    ));
    s.push_str(&format!(
        "exec {} sweep run-point {} \"$SLURM_ARRAY_TASK_ID\" --threads {}\n",
        quote(&bin.display().to_string()),
        quote(&dir.display().to_string()),
        spec.slurm.cpus_per_task
    ));
    s
}

/// Point indices as Slurm's array list: `0-3,5,7-8`.
pub(crate) fn array_list(points: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut k = 0;
    while k < points.len() {
        let mut end = k;
        while end + 1 < points.len() && points[end + 1] == points[end] + 1 {
            end += 1;
        }
        parts.push(if end == k {
            points[k].to_string()
        } else {
            format!("{}-{}", points[k], points[end])
        });
        k = end + 1;
    }
    parts.join(",")
}

/// Submits the points that are not done, running or queued as one job array (with
/// `dry_run`, writes the script and prints the sbatch command only).
pub(crate) fn submit(
    dir: &Path,
    m: &Manifest,
    spec: &Spec,
    extra: Option<&str>,
    dry_run: bool,
) -> Result<(), Failure> {
    let queue = match scheduled(dir) {
        Ok(q) => q,
        Err(e) => return Err(Failure(1, format!("cannot read the Slurm queue: {e}"))),
    };
    let points: Vec<usize> = m
        .points
        .iter()
        .filter(|p| {
            !matches!(
                point_state(dir, p, queue.get(&p.index).copied()),
                PointState::Done | PointState::Running | PointState::Queued
            )
        })
        .map(|p| p.index)
        .collect();
    let bin = std::env::current_exe().map_err(|e| Failure(1, format!("this binary: {e}")))?;
    let script = dir.join("slurm").join("array.sh");
    std::fs::create_dir_all(dir.join("slurm"))
        .map_err(|e| Failure(1, format!("{}: {e}", dir.display())))?;
    write_atomic(&script, array_script(dir, m, spec, &bin).as_bytes())?;
    if points.is_empty() {
        eprintln!(
            "sweep {}: nothing to submit: every point is done, running or queued (plasticity sweep status {})",
            dir.display(),
            dir.display()
        );
        return Ok(());
    }
    let max = spec.slurm.max_parallel.map_or(points.len(), |m| m as usize);
    let mut args = vec![
        "--parsable".to_string(),
        format!("--array={}%{max}", array_list(&points)),
    ];
    args.extend(extra.unwrap_or("").split_whitespace().map(str::to_string));
    args.push(script.display().to_string());
    if dry_run {
        eprintln!(
            "sweep {}: {} of {} points to submit; would run: sbatch {}",
            dir.display(),
            points.len(),
            m.points.len(),
            args.join(" ")
        );
        return Ok(());
    }
    let out = Command::new("sbatch").args(&args).output().map_err(|e| {
        Failure(
            1,
            format!("sbatch: {e} (is this a Slurm login node? --dry-run writes the array script without submitting)"),
        )
    })?;
    if !out.status.success() {
        let e = String::from_utf8_lossy(&out.stderr);
        return Err(Failure(
            1,
            format!("sbatch {}: {}", args.join(" "), e.trim()),
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job = stdout.trim().split(';').next().unwrap_or("").to_string();
    if job.is_empty() {
        return Err(Failure(1, "sbatch printed no job id".into()));
    }
    let mut jobs = submissions(dir);
    jobs.push(Submission {
        job: job.clone(),
        points: points.clone(),
    });
    let json = serde_json::to_string_pretty(&jobs).expect("serializes") + "\n";
    write_atomic(&dir.join("slurm").join("jobs.json"), json.as_bytes())?;
    print_out(&format!("{job}\n"));
    eprintln!(
        "sweep {}: submitted job {job}: {} of {} points (--array={}%{max}); follow it with: plasticity sweep status {}",
        dir.display(),
        points.len(),
        m.points.len(),
        array_list(&points),
        dir.display()
    );
    Ok(())
}

/// The scheduler's view of the sweep's points: running or waiting, by point index (only
/// tasks of this sweep's submissions; a later submission's task wins). Empty for a sweep never
/// submitted; an error when `squeue` fails.
pub(crate) fn scheduled(dir: &Path) -> Result<HashMap<usize, Scheduled>, String> {
    let jobs = submissions(dir);
    let mut view = HashMap::new();
    if jobs.is_empty() {
        return Ok(view);
    }
    let out = Command::new("squeue")
        .args(["--noheader", "--array", "--format=%F|%K|%T"])
        .output()
        .map_err(|e| format!("squeue: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "squeue: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for job in &jobs {
        for line in text.lines() {
            let f: Vec<&str> = line.trim().split('|').collect();
            let [id, task, state] = f[..] else { continue };
            let Ok(task) = task.parse::<usize>() else {
                continue;
            };
            if id != job.job || !job.points.contains(&task) {
                continue;
            }
            let s = match state {
                "RUNNING" | "COMPLETING" | "CONFIGURING" | "STAGE_OUT" => Scheduled::Running,
                "PENDING" | "REQUEUED" | "SUSPENDED" | "RESIZING" => Scheduled::Waiting,
                _ => continue,
            };
            view.insert(task, s);
        }
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    #[test]
    fn array_lists_are_ranges() {
        assert_eq!(super::array_list(&[0, 1, 2, 3, 5, 7, 8]), "0-3,5,7-8");
        assert_eq!(super::array_list(&[4]), "4");
    }
}
