//! The pictures of an actor-critic run: the agent's trajectory in one maze episode before and
//! after training, and the modulator over an episode (modulated agents).

use super::common::{load_run_model, read_json, Failure};
use crate::picture::{self, text_style};
use crate::{chart, plot};
use plasticity::tasks::a2c::{self, A2cTask, Rollout};
use plasticity::tasks::maze::{MazeEpisode, MazeTask};
use plasticity::train::Experiment;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Episodes of the pictures, and the seed of their RNG (the same before and after training, so
/// that both show the same mazes and cues).
const PICTURE_EPISODES: usize = 3;
const PICTURE_SEED: u64 = 1_000_003;

/// Rolls out the initial model (rebuilt from the run's seed) and the last checkpoint on the same
/// episodes; draws `trajectory` of each (`trajectory_before.png`, `trajectory_after.png`, with
/// "before training" or "after N updates") and, for modulated agents, `modulator.svg` of the
/// trained one.
pub(crate) fn write_pictures<T: A2cTask>(
    task: &T,
    out: &Path,
    trajectory: impl Fn(&Rollout<T::Episode>, &Path, &str) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let device = burn::tensor::Device::flex();
    let seed = read_json(&out.join("config.json"))?["seed"]
        .as_u64()
        .unwrap_or(0);
    let initial = task.init_model(&mut ChaCha8Rng::seed_from_u64(seed), &device);
    let (trained, updates) = load_run_model(task, out, &device)?;
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
    let trained_for = format!("after {updates} updates");
    trajectory(
        &before,
        &out.join("trajectory_before.png"),
        "before training",
    )?;
    trajectory(&after, &out.join("trajectory_after.png"), &trained_for)?;
    if !after.modulator.is_empty() {
        let path = out.join("modulator.svg");
        write_modulator(task.task_name(), &after, &trained_for, &path)?;
    }
    Ok(())
}

/// Frames of the trajectory picture: the first `STRIP_FRAMES` steps of episode 1, in rows of
/// `STRIP_COLUMNS`.
const STRIP_FRAMES: usize = 60;
const STRIP_COLUMNS: usize = 10;

/// Colours of the maze frames.
const WALL: RGBColor = RGBColor(70, 70, 70);
const AGENT: RGBColor = RGBColor(220, 30, 30);
const TRAIL: RGBColor = RGBColor(245, 175, 175);
const GOAL: RGBColor = RGBColor(40, 170, 60);
const FRAME: RGBColor = RGBColor(225, 225, 225);

/// Pixels of one frame's maze (about; a whole number per cell), of the frame's border, of the
/// step label above it, of the gap between frames and of the title and legend.
const MAZE_PX: usize = 112;
const BORDER: i32 = 4;
const LABEL: i32 = 20;
const GAP: i32 = 10;
const TITLE: i32 = 58;
const LEGEND: i32 = 44;

/// Draws the first steps of episode 1 of a maze rollout as numbered frames (PNG) under a title
/// that says which agent (`when`: "before training", "after 50 updates") and how often it
/// reached the reward, with a legend: walls dark grey, the reward cell green, the agent red with
/// its last three cells pink; a frame whose move reaches the reward has a green border.
pub fn write_trajectory(
    task: &MazeTask,
    ro: &Rollout<MazeEpisode>,
    path: &Path,
    when: &str,
) -> Result<(), Failure> {
    let maze = task.maze();
    let l = maze.size();
    let cell = (MAZE_PX / l).max(6) as i32;
    let frames = STRIP_FRAMES.min(ro.steps);
    let columns = STRIP_COLUMNS.min(frames.max(1));
    let rows = frames.div_ceil(columns).max(1);
    let frame = l as i32 * cell + 2 * BORDER;
    let width = (columns as i32 * (frame + GAP) + GAP).max(560);
    let height = TITLE + rows as i32 * (LABEL + frame + GAP) + LEGEND;
    let reached = ro.rewards[..frames].iter().filter(|&&r| r > 0.0).count();
    let title = format!("maze, {when}: the first {frames} steps of one episode");
    let note = match reached {
        0 => "the agent does not reach the reward in these steps".to_string(),
        1 => "the agent reaches the reward once in these steps".to_string(),
        n => format!("the agent reaches the reward {n} times in these steps"),
    };
    let bytes = picture::png(width as u32, height as u32, |root| {
        root.fill(&WHITE)?;
        let centre = |size, colour| text_style(size, colour, HPos::Center, VPos::Top);
        root.draw(&Text::new(title, (width / 2, 8), centre(19.0, BLACK)))?;
        let grey = RGBColor(90, 90, 90);
        root.draw(&Text::new(note, (width / 2, 33), centre(14.0, grey)))?;
        // A `side x side` square (plotters' bottom-right corner is outside).
        let square = |x: i32, y: i32, side: i32, colour: RGBColor| {
            Rectangle::new([(x, y), (x + side, y + side)], colour.filled())
        };
        for t in 0..frames {
            let state = &ro.states[t]; // episode 1, step t
            let fx = GAP + (t % columns) as i32 * (frame + GAP);
            let fy = TITLE + (t / columns) as i32 * (LABEL + frame + GAP);
            let label = text_style(14.0, BLACK, HPos::Center, VPos::Top);
            root.draw(&Text::new(
                format!("step {}", t + 1),
                (fx + frame / 2, fy),
                label,
            ))?;
            let fy = fy + LABEL;
            let border = if ro.rewards[t] > 0.0 { GOAL } else { FRAME };
            root.draw(&square(fx, fy, frame, border))?;
            // The maze's grid lines: the 1-pixel seams between its cells.
            let inside = frame - 2 * BORDER;
            root.draw(&square(fx + BORDER, fy + BORDER, inside, FRAME))?;
            let trail: Vec<(usize, usize)> = (t.saturating_sub(3)..t)
                .map(|k| ro.states[k].agent)
                .collect();
            for r in 0..l {
                for c in 0..l {
                    let colour = if maze.is_wall(r, c) {
                        WALL
                    } else if (r, c) == state.agent {
                        AGENT
                    } else if (r, c) == state.reward_cell {
                        GOAL
                    } else if trail.contains(&(r, c)) {
                        TRAIL
                    } else {
                        WHITE
                    };
                    let (x, y) = (fx + BORDER + c as i32 * cell, fy + BORDER + r as i32 * cell);
                    root.draw(&square(x, y, cell - 1, colour))?;
                }
            }
        }
        // The legend.
        let entries = [
            (WALL, "wall"),
            (AGENT, "agent"),
            (TRAIL, "its last 3 cells"),
            (
                GOAL,
                "reward cell; green border: this step's move reaches it",
            ),
        ];
        let (mut x, y) = (GAP, height - LEGEND + 12);
        for (colour, text) in entries {
            root.draw(&square(x, y, 16, colour))?;
            let style = text_style(14.0, BLACK, HPos::Left, VPos::Center);
            root.draw(&Text::new(text, (x + 22, y + 8), style))?;
            x += 22 + picture::text_width(text, 14.0) as i32 + 22;
        }
        Ok(())
    })
    .map_err(|e| Failure(1, e))?;
    super::common::write_atomic(path, &bytes)
}

/// Plots the modulator `M(t)` of the rollout's episodes and episode 1's rewards (dots, scaled to
/// the largest |reward|) over the steps of an episode (SVG); `when`: "after 50 updates".
fn write_modulator<S>(name: &str, ro: &Rollout<S>, when: &str, path: &Path) -> Result<(), Failure> {
    let t_len = ro.steps;
    let mut series: Vec<plot::Series> = (0..ro.batch)
        .map(|b| plot::Series {
            label: format!("M(t), episode {}", b + 1),
            points: (0..t_len)
                .map(|t| ((t + 1) as f64, ro.modulator[b * t_len + t] as f64))
                .collect(),
            ..plot::Series::default()
        })
        .collect();
    let top = ro.rewards[..t_len]
        .iter()
        .fold(0f32, |m, r| m.max(r.abs()))
        .max(1e-6);
    // The rewards as dots at the steps that have one.
    series.push(plot::Series {
        label: if top == 1.0 {
            "reward, episode 1".to_string()
        } else {
            format!("reward / {top}, episode 1")
        },
        points: (0..t_len)
            .filter(|&t| ro.rewards[t] != 0.0)
            .map(|t| ((t + 1) as f64, (ro.rewards[t] / top) as f64))
            .collect(),
        dots_only: true,
        ..plot::Series::default()
    });
    let episodes = match ro.batch {
        1 => "one episode".to_string(),
        n => format!("{n} episodes"),
    };
    let drawing = chart::Chart {
        title: format!("{name}: the modulator M(t) over {episodes}, agent {when}"),
        note: "each step as it is (not smoothed)".into(),
        x_label: "step of the episode".into(),
        y_label: "M(t); reward / largest |reward|".into(),
        log_y: false,
        series: &series,
    };
    chart::write(&drawing, path).map_err(|e| Failure(1, e))
}
