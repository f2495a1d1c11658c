//! Cue-reward association (ICLR 2019 "Backpropamine", section 4.1): within each episode the
//! agent must discover, from rewards alone, which of four random cues is the target, and then
//! respond whenever it is shown. The association changes every episode, so it has to be
//! learned during the episode: the task that neuromodulated plasticity solves and plain
//! recurrent networks do not.
//!
//! # Rules (as this project reads section 4.1; the layout of a trial is our choice)
//! Each episode draws `cues` distinct random binary cues of `cue_bits` bits and picks one as
//! the target. An episode of `steps` steps is a sequence of trials of [`TRIAL_STEPS`] steps:
//! 1. cue `A` is shown (its bits on the cue inputs),
//! 2. cue `B` is shown (`A != B`, a random pair of the cues: the target is in it half the time),
//! 3. the response signal is on: the agent's action at this step is its answer, `1` (respond)
//!    or `0` (withhold); the reward is `+reward` if it responds exactly when the target was
//!    one of `A`, `B`, and `-reward` otherwise,
//! 4. nothing is shown; the reward of step 3 arrives as the "previous reward" input.
//!
//! Actions at the other steps have no effect and give no reward. Always responding (or never)
//! earns 0 on average; an agent that knows the target earns `+reward` per trial.
//!
//! # Observation (`cue_bits + 6` values)
//! `[0..cue_bits]` the cue shown (zeros when none), then the response signal, the previous
//! step's reward, the previous action one-hot (2), `step / steps`, a bias of 1.
//!
//! # Agent
//! The shared actor-critic of [`super::a2c`]; 200 neurons for every variant by default (the
//! modulator adds `2N + 2` parameters or fewer, under 1% of the recurrent weights).

use super::a2c::{A2cTask, AgentConfig, AgentFields, Environment};
use crate::check::fields;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// Steps per trial: cue, cue, response, feedback.
pub const TRIAL_STEPS: usize = 4;
/// Actions: 0 withhold, 1 respond.
pub const ACTIONS: usize = 2;

/// What an answer earns at the response step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerReward {
    /// `+reward` when the answer is right (respond exactly when the target was shown),
    /// `-reward` otherwise: the wording, and the default.
    Match,
    /// Go/no-go: responding earns `+reward` when the target was shown and `-reward` when it
    /// was not; withholding earns 0. The other reading of the section: the reward then says
    /// whether the target was shown every time the agent responds.
    GoNoGo,
}

/// Configuration of the cue-reward task; defaults from ICLR 2019 section 4.1 where it states
/// them (4 cues of 20 bits, 120-step episodes, 200 neurons, batch 30), the maze's otherwise.
pub type CueRewardConfig = AgentConfig<CueRewardFields>;

/// The cue-reward task's own fields of [`CueRewardConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CueRewardFields {
    /// Cues per episode (one is the target).
    pub cues: usize,
    /// Bits per cue.
    pub cue_bits: usize,
    /// Different cues per trial: 2 (the paper's task: a pair, the target in it half the time)
    /// or 1 (a diagnostic, easier variant: one cue shown at both cue steps, the target a
    /// quarter of the time with 4 cues; the association is then cue -> answer directly).
    pub cues_per_trial: usize,
    /// Keep the trial's cues on the cue inputs during the response step (the sum of the two
    /// cues, or the one cue with `cues_per_trial` 1). A diagnostic, easier variant: the state
    /// just before the reward then holds the cues themselves, so a trace of one-step
    /// coincidences pairs the cues with the reward directly; by default (`false`, this
    /// project's reading of the section) the response step shows only the response signal
    /// and the cues must be carried by the recurrent activity.
    pub cues_at_response: bool,
    /// Curriculum: the first `warmup_updates` training updates draw their episodes from the
    /// easiest version of the task (only 2 cues, one per trial, so the target is shown in half
    /// the trials; go/no-go answers, [`AnswerReward::GoNoGo`]), then the configured task.
    /// Evaluation always uses the configured task. `0`: off.
    pub warmup_updates: u64,
    /// Steps per episode.
    pub steps: usize,
    /// Reward of a right answer (a wrong one gives its negative).
    pub reward: f64,
    /// What an answer earns (see [`AnswerReward`]).
    pub answer_reward: AnswerReward,
}

impl Default for CueRewardFields {
    fn default() -> Self {
        CueRewardFields {
            cues: 4,
            cue_bits: 20,
            cues_per_trial: 2,
            cues_at_response: false,
            warmup_updates: 0,
            steps: 120,
            reward: 1.0,
            answer_reward: AnswerReward::Match,
        }
    }
}

impl CueRewardFields {
    /// Values in an observation.
    pub fn observation_size(&self) -> usize {
        self.cue_bits + 6
    }
}

impl AgentFields for CueRewardFields {
    /// ICLR 2019 section 4.1: 200 neurons.
    fn paper() -> CueRewardConfig {
        AgentConfig::new(CueRewardFields::default(), 200)
    }

    fn observations(&self) -> [usize; 2] {
        [self.steps, self.observation_size()]
    }

    fn validate(&self) -> Result<(), String> {
        if self.cues < 2 {
            return Err(format!("cues: must be at least 2 (got {})", self.cues));
        }
        if !(1..=2).contains(&self.cues_per_trial) {
            return Err(format!(
                "cues_per_trial: must be 1 or 2 (got {})",
                self.cues_per_trial
            ));
        }
        if self.cue_bits < 2 || self.cue_bits > 62 {
            return Err(format!(
                "cue_bits: must be in 2..=62 (got {})",
                self.cue_bits
            ));
        }
        if (1u64 << self.cue_bits) < 2 * self.cues as u64 {
            return Err(format!(
                "cue_bits: {} bits are too few for {} distinct cues",
                self.cue_bits, self.cues
            ));
        }
        if self.steps < TRIAL_STEPS {
            return Err(format!(
                "steps: must be at least {TRIAL_STEPS} (one trial; got {})",
                self.steps
            ));
        }
        fields!(self, positive: [reward]);
        Ok(())
    }
}

/// One episode: its cues, target, current pair and the previous step's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct CueEpisode {
    /// The cues `[cues][cue_bits]` (2 cues in the curriculum's warm-up episodes), values 0
    /// or 1, pairwise distinct.
    pub cues: Vec<Vec<f32>>,
    /// Index of the target cue.
    pub target: usize,
    /// The pair of cues of the current trial (the same cue twice with one cue per trial).
    pub pair: (usize, usize),
    /// Different cues per trial in this episode (1 or 2).
    pub cues_per_trial: usize,
    /// What an answer earns in this episode.
    pub answer_reward: AnswerReward,
    /// Reward of the previous step.
    pub prev_reward: f32,
    /// Action of the previous step (`None` at the first step).
    pub prev_action: Option<usize>,
}

impl CueEpisode {
    /// Whether the target is in the current trial's pair.
    pub fn target_shown(&self) -> bool {
        self.pair.0 == self.target || self.pair.1 == self.target
    }
}

/// The cue-reward experiment.
#[derive(Clone, Debug)]
pub struct CueRewardTask {
    /// Configuration.
    pub config: CueRewardConfig,
    /// Whether new episodes are the curriculum's easy version (set by the training loop
    /// through [`A2cTask::before_update`]; `false` otherwise, e.g. for evaluation).
    warming_up: Cell<bool>,
}

impl CueRewardTask {
    /// A task; fails with a message naming the field when the configuration is invalid.
    pub fn new(config: CueRewardConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(CueRewardTask {
            config,
            warming_up: Cell::new(false),
        })
    }

    /// Whether new episodes are the curriculum's easy version (2 cues, one per trial).
    pub fn warming_up(&self) -> bool {
        self.warming_up.get()
    }

    /// The cues of a trial among the first `k`: two different ones, or one shown twice
    /// (`per_trial` 1).
    fn draw_pair(k: usize, per_trial: usize, rng: &mut ChaCha8Rng) -> (usize, usize) {
        let a = rng.gen_range(0..k);
        if per_trial == 1 {
            return (a, a);
        }
        let b = (a + rng.gen_range(1..k)) % k;
        (a, b)
    }
}

impl Environment for CueRewardTask {
    type Episode = CueEpisode;

    fn observation_size(&self) -> usize {
        self.config.env.observation_size()
    }

    fn actions(&self) -> usize {
        ACTIONS
    }

    fn steps(&self) -> usize {
        self.config.env.steps
    }

    fn reset(&self, rng: &mut ChaCha8Rng) -> CueEpisode {
        let c = &self.config.env;
        let (count, per_trial, answer_reward) = if self.warming_up.get() {
            (2, 1, AnswerReward::GoNoGo)
        } else {
            (c.cues, c.cues_per_trial, c.answer_reward)
        };
        let mut cues: Vec<Vec<f32>> = Vec::with_capacity(count);
        while cues.len() < count {
            let cue: Vec<f32> = (0..c.cue_bits)
                .map(|_| if rng.gen::<bool>() { 1.0 } else { 0.0 })
                .collect();
            if !cues.contains(&cue) {
                cues.push(cue);
            }
        }
        cues.shuffle(rng);
        let target = rng.gen_range(0..count);
        let pair = Self::draw_pair(count, per_trial, rng);
        CueEpisode {
            cues,
            target,
            pair,
            cues_per_trial: per_trial,
            answer_reward,
            prev_reward: 0.0,
            prev_action: None,
        }
    }

    fn observe(&self, ep: &CueEpisode, t: usize, out: &mut [f32]) {
        let bits = self.config.env.cue_bits;
        out.fill(0.0);
        match t % TRIAL_STEPS {
            0 => out[..bits].copy_from_slice(&ep.cues[ep.pair.0]),
            1 => out[..bits].copy_from_slice(&ep.cues[ep.pair.1]),
            2 => {
                out[bits] = 1.0;
                if self.config.env.cues_at_response {
                    let (a, b) = ep.pair;
                    for (k, o) in out[..bits].iter_mut().enumerate() {
                        *o = if a == b {
                            ep.cues[a][k]
                        } else {
                            ep.cues[a][k] + ep.cues[b][k]
                        };
                    }
                }
            }
            _ => {}
        }
        out[bits + 1] = ep.prev_reward;
        if let Some(a) = ep.prev_action {
            out[bits + 2 + a] = 1.0;
        }
        out[bits + 4] = t as f32 / self.config.env.steps as f32;
        out[bits + 5] = 1.0;
    }

    fn step(&self, ep: &mut CueEpisode, t: usize, action: usize, rng: &mut ChaCha8Rng) -> f32 {
        let reward = match t % TRIAL_STEPS {
            2 => {
                let sign = match ep.answer_reward {
                    AnswerReward::Match if (action == 1) == ep.target_shown() => 1.0,
                    AnswerReward::Match => -1.0,
                    AnswerReward::GoNoGo if action == 0 => 0.0,
                    AnswerReward::GoNoGo if ep.target_shown() => 1.0,
                    AnswerReward::GoNoGo => -1.0,
                };
                sign * self.config.env.reward as f32
            }
            3 => {
                ep.pair = Self::draw_pair(ep.cues.len(), ep.cues_per_trial, rng);
                0.0
            }
            _ => 0.0,
        };
        ep.prev_reward = reward;
        ep.prev_action = Some(action);
        reward
    }
}

impl A2cTask for CueRewardTask {
    fn task_name(&self) -> &'static str {
        "cue-reward"
    }

    fn config(&self) -> &AgentConfig<impl AgentFields> {
        &self.config
    }

    fn before_update(&self, update: u64) {
        self.warming_up.set(update < self.config.env.warmup_updates);
    }
}

/// How the agent answers, over rollouts: the mean probability of responding at the
/// response steps when the target was in the trial's cues and when it was not, with the
/// number of trials of each. An agent that has not found the target answers alike in both
/// (the difference is 0); one that knows it responds when shown and withholds otherwise
/// (difference 1).
pub fn response_rates(rollouts: &[super::a2c::Rollout<CueEpisode>]) -> ResponseRates {
    let mut sum = [0.0f64; 2];
    let mut count = [0usize; 2];
    for ro in rollouts {
        for b in 0..ro.batch {
            for t in (2..ro.steps).step_by(TRIAL_STEPS) {
                let k = b * ro.steps + t;
                let shown = usize::from(ro.states[k].target_shown());
                sum[shown] += ro.probs[k * ACTIONS + 1] as f64;
                count[shown] += 1;
            }
        }
    }
    let mean = |i: usize| sum[i] / count[i].max(1) as f64;
    ResponseRates {
        shown: mean(1),
        not_shown: mean(0),
        trials_shown: count[1],
        trials_not_shown: count[0],
    }
}

/// The agent's answers at the response steps of rollouts (see [`response_rates`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResponseRates {
    /// Mean probability of responding when the target was in the trial's cues.
    pub shown: f64,
    /// Mean probability of responding when it was not.
    pub not_shown: f64,
    /// Trials with the target shown.
    pub trials_shown: usize,
    /// Trials without it.
    pub trials_not_shown: usize,
}
