//! Grid maze exploration (ICML 2018 section 4.4; ICLR 2019 section 4.2): an agent must find an
//! invisible reward in a maze, remember where it is, and return to it again and again after
//! being teleported.
//!
//! # Rules
//! An `L x L` maze (odd `L`): walls on the border and at every cell whose two coordinates are
//! even, except the centre. The reward sits on a random free cell other than the centre; the
//! agent starts at the centre. Actions: up, down, left, right; bumping into a wall keeps the
//! agent in place (reward `-wall_penalty`). Reaching the reward cell gives `reward` and teleports
//! the agent to a random free cell other than the reward cell. An episode has `steps` steps; a
//! batch runs `batch` independent episodes (each with its own reward cell).
//!
//! # Observation (`OBS` = 16 values)
//! `[0..9]` the 3x3 neighbourhood's walls (1: wall) row by row from the top-left, `[9]` the
//! previous step's reward, `[10..14]` the previous action one-hot (zeros at the first step),
//! `[14]` `step / steps`, `[15]` a bias of 1.
//!
//! # Agent and training
//! The shared advantage actor-critic of [`super::a2c`], with the variants of [`Model`].
//!
//! # Presets
//! `paper` (the default): ICLR 2019 section 4.2, 13x13, batch 30, Hebbian trace clipped to
//! [-1, 1]. `icml2018`: the ICML 2018 setting (section 4.4), a 9x9 maze, batch 1, Oja's rule
//! (unclipped), to compare `--model plastic` with `--model rnn`.

use super::a2c::{A2cTask, AgentConfig, AgentFields, Environment, Model};
use crate::check::fields;
use plasticity_kernels::TraceRule;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Values in an observation.
pub const OBS: usize = 16;
/// Actions: up, down, left, right.
pub const ACTIONS: usize = 4;

/// Named sets of defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum MazePreset {
    /// ICLR 2019 section 4.2 (the default).
    Paper,
    /// ICML 2018 section 4.4: 9x9, batch 1, Oja's rule.
    Icml2018,
}

/// Configuration of the maze task; the defaults are the paper's (ICLR 2019 section 4.2).
pub type MazeConfig = AgentConfig<MazeFields>;

/// The maze's own fields of [`MazeConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MazeFields {
    /// Side `L` of the maze (odd, at least 5).
    pub size: usize,
    /// Steps per episode.
    pub steps: usize,
    /// Reward for reaching the reward cell.
    pub reward: f64,
    /// Penalty for bumping into a wall.
    pub wall_penalty: f64,
}

impl Default for MazeFields {
    fn default() -> Self {
        MazeFields {
            size: 13,
            steps: 200,
            reward: 10.0,
            wall_penalty: 0.0,
        }
    }
}

impl AgentFields for MazeFields {
    /// ICLR 2019 section 4.2: the paper's parameter-matched network size (`neurons: 0`).
    fn paper() -> MazeConfig {
        AgentConfig::new(MazeFields::default(), 0)
    }

    fn observations(&self) -> [usize; 2] {
        [self.steps, OBS]
    }

    /// The maze's cells: a wall flag and, for the free ones, coordinates (about 13 bytes a
    /// cell).
    fn add_memory(&self, m: &mut super::MemoryEstimate) {
        let size = self.size;
        m.add(
            format!("size = {size} ({size} x {size} cells)"),
            13.0 * size as f64 * size as f64,
        );
    }

    /// `0`: the paper's parameter-matched size: 100, or 101 for `plastic`.
    fn neurons(neurons: usize, model: Model) -> usize {
        match (neurons, model) {
            (0, Model::Plastic) => 101,
            (0, _) => 100,
            (n, _) => n,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.size < 5 || self.size.is_multiple_of(2) {
            return Err(format!(
                "size: must be odd and at least 5 (got {})",
                self.size
            ));
        }
        fields!(self, count: [steps], non_negative: [reward, wall_penalty]);
        Ok(())
    }
}

impl MazeConfig {
    /// The defaults of `preset`.
    pub fn preset(preset: MazePreset) -> Self {
        match preset {
            MazePreset::Paper => MazeConfig::default(),
            MazePreset::Icml2018 => {
                let mut c = MazeConfig::default();
                c.env.size = 9;
                c.a2c.batch = 1;
                c.model = Model::Plastic;
                c.plasticity.rule = TraceRule::Oja;
                c.plasticity.clip = None;
                c
            }
        }
    }
}

/// The maze's walls.
#[derive(Clone, Debug, PartialEq)]
pub struct Maze {
    size: usize,
    walls: Vec<bool>,
    free: Vec<(usize, usize)>,
}

impl Maze {
    /// The `size x size` maze of the rules above (`size` odd).
    pub fn new(size: usize) -> Self {
        let c = size / 2;
        let wall = |r: usize, col: usize| {
            let border = r == 0 || col == 0 || r == size - 1 || col == size - 1;
            border || (r.is_multiple_of(2) && col.is_multiple_of(2) && (r, col) != (c, c))
        };
        let walls: Vec<bool> = (0..size * size).map(|k| wall(k / size, k % size)).collect();
        let free = (0..size * size)
            .filter(|&k| !walls[k])
            .map(|k| (k / size, k % size))
            .collect();
        Maze { size, walls, free }
    }

    /// Side of the maze.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether `(row, col)` is a wall.
    pub fn is_wall(&self, row: usize, col: usize) -> bool {
        self.walls[row * self.size + col]
    }

    /// The free cells, row by row.
    pub fn free_cells(&self) -> &[(usize, usize)] {
        &self.free
    }

    /// The centre, where the agent starts.
    pub fn centre(&self) -> (usize, usize) {
        (self.size / 2, self.size / 2)
    }

    /// A random free cell other than `not`.
    fn random_free(&self, not: (usize, usize), rng: &mut impl Rng) -> (usize, usize) {
        loop {
            let cell = self.free[rng.gen_range(0..self.free.len())];
            if cell != not {
                return cell;
            }
        }
    }
}

/// One episode's state in the maze.
#[derive(Clone, Debug, PartialEq)]
pub struct MazeEpisode {
    /// The agent's cell `(row, col)`.
    pub agent: (usize, usize),
    /// The reward cell.
    pub reward_cell: (usize, usize),
    /// Reward of the previous step.
    pub prev_reward: f32,
    /// Action of the previous step (`None` at the first step).
    pub prev_action: Option<usize>,
}

impl MazeEpisode {
    /// A new episode: the reward on a random free cell other than the centre, the agent at the
    /// centre.
    pub fn new(maze: &Maze, rng: &mut impl Rng) -> Self {
        MazeEpisode {
            agent: maze.centre(),
            reward_cell: maze.random_free(maze.centre(), rng),
            prev_reward: 0.0,
            prev_action: None,
        }
    }

    /// Takes `action` (0 up, 1 down, 2 left, 3 right) and returns the reward.
    pub fn step(
        &mut self,
        maze: &Maze,
        config: &MazeFields,
        action: usize,
        rng: &mut impl Rng,
    ) -> f32 {
        let (r, c) = self.agent;
        let target = match action {
            0 => (r - 1, c),
            1 => (r + 1, c),
            2 => (r, c - 1),
            3 => (r, c + 1),
            _ => panic!("action {action} out of range"),
        };
        let mut reward = 0.0;
        if maze.is_wall(target.0, target.1) {
            reward -= config.wall_penalty as f32;
        } else {
            self.agent = target;
        }
        if self.agent == self.reward_cell {
            reward += config.reward as f32;
            self.agent = maze.random_free(self.reward_cell, rng);
        }
        self.prev_reward = reward;
        self.prev_action = Some(action);
        reward
    }

    /// The observation at step `t` of `steps` (layout in the module docs).
    pub fn observation(&self, maze: &Maze, t: usize, steps: usize) -> [f32; OBS] {
        let mut obs = [0.0; OBS];
        let (r, c) = self.agent;
        for dr in 0..3 {
            for dc in 0..3 {
                obs[dr * 3 + dc] = maze.is_wall(r + dr - 1, c + dc - 1) as u8 as f32;
            }
        }
        obs[9] = self.prev_reward;
        if let Some(a) = self.prev_action {
            obs[10 + a] = 1.0;
        }
        obs[14] = t as f32 / steps as f32;
        obs[15] = 1.0;
        obs
    }
}

/// The maze experiment.
#[derive(Clone, Debug)]
pub struct MazeTask {
    /// Configuration.
    pub config: MazeConfig,
    maze: Maze,
}

impl MazeTask {
    /// A task; fails with a message naming the field when the configuration is invalid.
    pub fn new(config: MazeConfig) -> Result<Self, String> {
        config.validate()?;
        let maze = Maze::new(config.env.size);
        Ok(MazeTask { config, maze })
    }

    /// The maze.
    pub fn maze(&self) -> &Maze {
        &self.maze
    }
}

impl Environment for MazeTask {
    type Episode = MazeEpisode;

    fn observation_size(&self) -> usize {
        OBS
    }

    fn actions(&self) -> usize {
        ACTIONS
    }

    fn steps(&self) -> usize {
        self.config.env.steps
    }

    fn reset(&self, rng: &mut ChaCha8Rng) -> MazeEpisode {
        MazeEpisode::new(&self.maze, rng)
    }

    fn observe(&self, episode: &MazeEpisode, t: usize, out: &mut [f32]) {
        out.copy_from_slice(&episode.observation(&self.maze, t, self.config.env.steps));
    }

    fn step(
        &self,
        episode: &mut MazeEpisode,
        _t: usize,
        action: usize,
        rng: &mut ChaCha8Rng,
    ) -> f32 {
        episode.step(&self.maze, &self.config.env, action, rng)
    }
}

impl A2cTask for MazeTask {
    fn task_name(&self) -> &'static str {
        "maze"
    }

    fn config(&self) -> &AgentConfig<impl AgentFields> {
        &self.config
    }
}
