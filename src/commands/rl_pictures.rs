//! The pictures of an actor-critic run: the agent's trajectory in one maze episode before and
//! after training, and the modulator over an episode (modulated agents).

use super::common::{load_run_model, read_json, Failure};
use crate::{plot, png};
use plasticity::tasks::a2c::{self, A2cTask, Rollout};
use plasticity::tasks::maze::{MazeEpisode, MazeTask};
use plasticity::train::Experiment;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Episodes of the pictures, and the seed of their RNG (the same before and after training, so
/// that both show the same mazes and cues).
const PICTURE_EPISODES: usize = 3;
const PICTURE_SEED: u64 = 1_000_003;

/// Rolls out the initial model (rebuilt from the run's seed) and the last checkpoint on the same
/// episodes; draws `trajectory` of each (`trajectory_before.png`, `trajectory_after.png`) and,
/// for modulated agents, `modulator.svg` of the trained one.
pub(crate) fn write_pictures<T: A2cTask>(
    task: &T,
    out: &Path,
    trajectory: impl Fn(&Rollout<T::Episode>, &Path) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let device = burn::tensor::Device::flex();
    let seed = read_json(&out.join("config.json"))?["seed"]
        .as_u64()
        .unwrap_or(0);
    let initial = task.init_model(&mut ChaCha8Rng::seed_from_u64(seed), &device);
    let (trained, _) = load_run_model(task, out, &device)?;
    let batch = PICTURE_EPISODES.min(task.settings().batch.max(1));
    let roll = |agent| {
        a2c::rollout(
            task,
            agent,
            batch,
            &mut ChaCha8Rng::seed_from_u64(PICTURE_SEED),
        )
        .map_err(|e| Failure(1, e))
    };
    let before = roll(&initial)?;
    let after = roll(&trained)?;
    trajectory(&before, &out.join("trajectory_before.png"))?;
    trajectory(&after, &out.join("trajectory_after.png"))?;
    if !after.modulator.is_empty() {
        write_modulator(task.task_name(), &after, &out.join("modulator.svg"))?;
    }
    Ok(())
}

/// Frames of the trajectory picture: the first `STRIP_FRAMES` steps of episode 0, in rows of
/// `STRIP_COLUMNS`.
const STRIP_FRAMES: usize = 60;
const STRIP_COLUMNS: usize = 12;

/// Draws the first steps of episode 0 of a maze rollout as a strip of frames (PNG): walls dark
/// grey, the reward cell green, the agent red with its last three cells pink; a frame whose
/// step earned the reward has a green border.
pub fn write_trajectory(
    task: &MazeTask,
    ro: &Rollout<MazeEpisode>,
    path: &Path,
) -> Result<(), Failure> {
    let maze = task.maze();
    let l = maze.size();
    let (cell, gap) = (5usize, 3usize);
    let frames = STRIP_FRAMES.min(ro.steps);
    let rows = frames.div_ceil(STRIP_COLUMNS);
    let frame = l * cell + 2 * gap;
    let (width, height) = (STRIP_COLUMNS * frame, rows.max(1) * frame);
    let mut img = vec![255u8; width * height * 3];
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        let k = (y * width + x) * 3;
        img[k..k + 3].copy_from_slice(&c);
    };
    for t in 0..frames {
        let state = &ro.states[t]; // episode 0, step t
        let (fx, fy) = ((t % STRIP_COLUMNS) * frame, (t / STRIP_COLUMNS) * frame);
        let border = if ro.rewards[t] > 0.0 {
            [40, 170, 60]
        } else {
            [225, 225, 225]
        };
        // The frame's border (the maze's cells are drawn over its inside below).
        for y in 1..frame - 1 {
            for x in 1..frame - 1 {
                put(fx + x, fy + y, border);
            }
        }
        let trail: Vec<(usize, usize)> = (t.saturating_sub(3)..t)
            .map(|k| ro.states[k].agent)
            .collect();
        for r in 0..l {
            for c in 0..l {
                let colour = if maze.is_wall(r, c) {
                    [70, 70, 70]
                } else if (r, c) == state.agent {
                    [220, 30, 30]
                } else if (r, c) == state.reward_cell {
                    [40, 170, 60]
                } else if trail.contains(&(r, c)) {
                    [245, 175, 175]
                } else {
                    [255, 255, 255]
                };
                for dy in 0..cell {
                    for dx in 0..cell {
                        put(fx + gap + c * cell + dx, fy + gap + r * cell + dy, colour);
                    }
                }
            }
        }
    }
    std::fs::write(path, png::rgb(width, height, &img))
        .map_err(|e| Failure(1, format!("{}: {e}", path.display())))
}

/// Plots the modulator `M(t)` of the rollout's episodes and episode 0's rewards (scaled to the
/// largest |reward|) over the steps of an episode (SVG).
fn write_modulator<S>(name: &str, ro: &Rollout<S>, path: &Path) -> Result<(), Failure> {
    let t_len = ro.steps;
    let mut series: Vec<plot::Series> = (0..ro.batch)
        .map(|b| plot::Series {
            label: format!("M(t), episode {}", b + 1),
            points: (0..t_len)
                .map(|t| (t as f64, ro.modulator[b * t_len + t] as f64))
                .collect(),
            ..plot::Series::default()
        })
        .collect();
    let top = ro.rewards[..t_len]
        .iter()
        .fold(0f32, |m, r| m.max(r.abs()))
        .max(1e-6);
    series.push(plot::Series {
        label: format!("reward / {top} (episode 1)"),
        points: (0..t_len)
            .map(|t| (t as f64, (ro.rewards[t] / top) as f64))
            .collect(),
        ..plot::Series::default()
    });
    let svg = plot::svg_chart(
        &format!("{name}: modulator over one episode (trained agent)"),
        "step",
        "M(t)",
        &series,
        false,
    );
    std::fs::write(path, svg).map_err(|e| Failure(1, format!("{}: {e}", path.display())))
}
