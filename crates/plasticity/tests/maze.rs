//! The maze task and the shared actor-critic: rules, observation, returns, replay
//! consistency for every agent variant (maze, ICML 2018 Oja preset, cue-reward), gradient
//! clipping.

use burn::optim::GradientsParams;
use burn::tensor::activation::softmax;
use burn::tensor::Device;
use plasticity::tasks::a2c::{
    self, returns, A2cSettings, A2cTask, AgentConfig, AgentFields, Environment, Model,
};
use plasticity::tasks::cue_reward::{
    AnswerReward, CueRewardConfig, CueRewardFields, CueRewardTask,
};
use plasticity::tasks::maze::{
    Maze, MazeConfig, MazeEpisode, MazeFields, MazePreset, MazeTask, OBS,
};
use plasticity::tensors::to_vec;
use plasticity::train::{clip_global_norm, Experiment};
use plasticity::TraceRule;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{assert_rejected, options, temp_dir, train_ok, Change};

/// burn seeds its layers' initialisation from one global RNG per device: tests that build
/// agents and check determinism hold this lock so that they do not draw from it concurrently.
static AGENT_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn small(model: Model) -> MazeConfig {
    MazeConfig {
        env: MazeFields {
            size: 7,
            steps: 12,
            ..MazeFields::default()
        },
        neurons: 10,
        model,
        a2c: A2cSettings {
            batch: 3,
            ..A2cSettings::default()
        },
        ..MazeConfig::default()
    }
}

/// The cue-reward task of the default configuration changed by `change`.
fn cue_reward(change: impl FnOnce(&mut CueRewardConfig)) -> CueRewardTask {
    let mut config = CueRewardConfig::default();
    change(&mut config);
    CueRewardTask::new(config).unwrap()
}

#[test]
fn the_maze_has_border_walls_and_walls_at_even_even_cells_except_the_centre() {
    let maze = Maze::new(13);
    for r in 0..13 {
        for c in 0..13 {
            let border = r == 0 || c == 0 || r == 12 || c == 12;
            let even = r % 2 == 0 && c % 2 == 0 && (r, c) != (6, 6);
            assert_eq!(maze.is_wall(r, c), border || even, "({r}, {c})");
        }
    }
    // 11 x 11 interior, minus the 5 x 5 even-even cells, plus the centre: 121 - 25 + 1.
    assert_eq!(maze.free_cells().len(), 97);
    assert!(!maze.is_wall(6, 6));
    assert_eq!(maze.centre(), (6, 6));
}

#[test]
fn walls_stop_the_agent_and_the_reward_teleports_it() {
    let maze = Maze::new(13);
    let config = MazeFields {
        wall_penalty: 0.5,
        ..MazeFields::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for seed in 0..50 {
        let mut ep = MazeEpisode::new(&maze, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(ep.agent, (6, 6), "starts at the centre");
        assert_ne!(ep.reward_cell, (6, 6), "the reward is never at the centre");
        assert!(!maze.is_wall(ep.reward_cell.0, ep.reward_cell.1));
        ep.agent = (1, 1);
        ep.reward_cell = (1, 3);
        // Up from (1, 1) is the border: stay, pay the penalty.
        assert_eq!(ep.step(&maze, &config, 0, &mut rng), -0.5);
        assert_eq!(ep.agent, (1, 1));
        // Down from (1, 1) is (2, 1): free (column odd).
        assert_eq!(ep.step(&maze, &config, 1, &mut rng), 0.0);
        assert_eq!(ep.agent, (2, 1));
        // Right from (2, 1) is (2, 2): a wall (both even).
        assert_eq!(ep.step(&maze, &config, 3, &mut rng), -0.5);
        assert_eq!(ep.agent, (2, 1));
        // Up, right, right: the reward at (1, 3), then a teleport elsewhere.
        ep.step(&maze, &config, 0, &mut rng);
        assert_eq!(ep.step(&maze, &config, 3, &mut rng), 0.0);
        assert_eq!(ep.agent, (1, 2));
        assert_eq!(ep.step(&maze, &config, 3, &mut rng), 10.0);
        assert_ne!(ep.agent, (1, 3));
        assert!(!maze.is_wall(ep.agent.0, ep.agent.1));
        assert_eq!((ep.prev_reward, ep.prev_action), (10.0, Some(3)));
        // Left back from the teleport target never lands on a wall.
        let before = ep.agent;
        ep.step(&maze, &config, 2, &mut rng);
        assert!(ep.agent == before || !maze.is_wall(ep.agent.0, ep.agent.1));
    }
}

#[test]
fn the_observation_is_walls_reward_action_time_bias() {
    let maze = Maze::new(13);
    let ep = MazeEpisode {
        agent: (1, 1),
        reward_cell: (5, 5),
        prev_reward: 10.0,
        prev_action: Some(3),
    };
    let obs = ep.observation(&maze, 50, 200);
    // Neighbourhood of (1, 1): row 0 all border; (1, 0) border, (1, 1), (1, 2) free;
    // (2, 0) border, (2, 1) free, (2, 2) even-even wall.
    let want: [f32; OBS] = [
        1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0,  // walls
        10.0, // previous reward
        0.0, 0.0, 0.0, 1.0,  // previous action: right
        0.25, // 50 / 200
        1.0,  // bias
    ];
    assert_eq!(obs, want);
    let first = MazeEpisode {
        prev_reward: 0.0,
        prev_action: None,
        ..ep
    };
    // First step: no reward, no action yet.
    assert_eq!(
        first.observation(&maze, 0, 200)[9..],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    );
}

#[test]
fn returns_are_discounted_per_episode() {
    // Episode 0: rewards 0, 10, 0, 0 -> R = 9, 10, 0, 0. Episode 1: 1, 1, 1, 1 ->
    // R_3 = 1, R_2 = 1.9, R_1 = 2.71, R_0 = 3.439.
    let r = returns(&[0.0, 10.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], 4, 0.9);
    let want = [9.0, 10.0, 0.0, 0.0, 3.439, 2.71, 1.9, 1.0];
    for (a, b) in r.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{r:?}");
    }
}

/// Rolls out `task` once, replays it, and checks the replayed policy, determinism, the loss,
/// which parameters get gradients, and global clipping.
fn check_replay<T: A2cTask>(task: &T, label: &str) {
    let _serial = AGENT_INIT.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let spec = task.agent_spec();
    let settings = task.settings();
    let (b, t) = (settings.batch, task.steps());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let agent = task.init_model(&mut rng, &device);
    let ro = a2c::rollout(task, &agent, b, &mut rng).unwrap();
    assert_eq!(ro.obs.len(), b * t * task.observation_size(), "{label}");
    assert_eq!(ro.states.len(), b * t, "{label}");
    assert_eq!(
        ro.modulator.is_empty(),
        matches!(spec.model, Model::Rnn | Model::Plastic),
        "{label}"
    );
    let (logits, _) = a2c::replay(&agent, &ro, &device).unwrap();
    let probs = to_vec(softmax(logits, 2));
    let diff = probs
        .iter()
        .zip(&ro.probs)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-4, "{label}: replayed policy differs by {diff}");
    assert_eq!(probs.len(), b * t * task.actions());
    // Same seed, same rollout.
    let mut rng2 = ChaCha8Rng::seed_from_u64(7);
    let agent2 = task.init_model(&mut rng2, &device);
    let ro2 = a2c::rollout(task, &agent2, b, &mut rng2).unwrap();
    assert_eq!(ro.actions, ro2.actions, "{label}");
    // A training step's loss is finite and reaches every trained parameter.
    let loss = a2c::loss(&agent, &ro, &settings, &device).unwrap();
    let value = loss.clone().into_scalar::<f32>();
    assert!(value.is_finite(), "{label}: loss {value}");
    let mut grads = GradientsParams::from_grads(loss.backward(), &agent);
    assert!(
        grads.get::<2>(agent.net.w.id).is_some(),
        "{label}: no gradient for w"
    );
    assert_eq!(
        grads.get::<2>(agent.net.alpha.id).is_some(),
        spec.model != Model::Rnn,
        "{label}: alpha is trained only by plastic models"
    );
    if let Some(md) = &agent.net.modulator {
        assert!(
            grads.get::<1>(md.m.id).is_some(),
            "{label}: no gradient for m"
        );
    }
    // Global clipping: afterwards the norm is the limit.
    let norm = clip_global_norm(&agent, &mut grads, 1e-3);
    assert!(norm > 1e-3, "{label}: gradient norm {norm}");
    let after = clip_global_norm(&agent, &mut grads, f64::INFINITY);
    assert!(
        (after - 1e-3).abs() < 1e-6,
        "{label}: norm after clipping {after}"
    );
}

#[test]
fn the_replay_reproduces_the_rollouts_policy_for_every_model() {
    for model in [Model::Rnn, Model::Plastic, Model::Modplast, Model::Modul] {
        let mut config = small(model);
        config.fan_out = model == Model::Modplast;
        // Large weights so that plasticity and modulation change the policy visibly.
        config.plasticity.init_std = 0.6;
        check_replay(&MazeTask::new(config).unwrap(), &format!("maze {model:?}"));
        let mut config = CueRewardConfig {
            env: CueRewardFields {
                cues: 3,
                cue_bits: 6,
                steps: 10,
                ..CueRewardFields::default()
            },
            ..CueRewardConfig::default()
        };
        config.a2c.batch = 3;
        config.neurons = 10;
        config.plasticity.init_std = 0.6;
        config.fan_out = model == Model::Modul;
        config.model = model;
        check_replay(
            &CueRewardTask::new(config).unwrap(),
            &format!("cue-reward {model:?}"),
        );
    }
    // The ICML 2018 preset: Oja's rule, unclipped, batch 1.
    let icml = MazeConfig::preset(MazePreset::Icml2018);
    assert_eq!(
        (
            icml.env.size,
            icml.a2c.batch,
            icml.plasticity.rule,
            icml.plasticity.clip
        ),
        (9, 1, TraceRule::Oja, None)
    );
    let mut config = MazeConfig {
        env: MazeFields {
            steps: 12,
            ..icml.env
        },
        ..icml
    };
    config.neurons = 10;
    config.plasticity.init_std = 0.6;
    check_replay(&MazeTask::new(config).unwrap(), "maze icml2018 Oja");
}

#[test]
fn cue_reward_trials_show_two_cues_then_ask_and_reward_the_right_answer() {
    let task = CueRewardTask::new(CueRewardConfig::default()).unwrap();
    let bits = 20;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut shown = 0;
    for _ in 0..200 {
        let mut ep = task.reset(&mut rng);
        assert_eq!(ep.cues.len(), 4);
        for (i, a) in ep.cues.iter().enumerate() {
            assert!(a.iter().all(|&v| v == 0.0 || v == 1.0));
            assert!(ep.cues[i + 1..].iter().all(|b| b != a), "cues are distinct");
        }
        assert_ne!(ep.pair.0, ep.pair.1);
        let mut obs = vec![0.0; task.observation_size()];
        assert_eq!(obs.len(), 26);
        // Steps 0 and 1 show the pair's cues; no response signal, no reward.
        for t in 0..2 {
            task.observe(&ep, t, &mut obs);
            let cue = if t == 0 { ep.pair.0 } else { ep.pair.1 };
            assert_eq!(&obs[..bits], &ep.cues[cue][..]);
            assert_eq!(obs[bits], 0.0);
            assert_eq!(obs[bits + 5], 1.0, "bias");
            assert_eq!(
                task.step(&mut ep, t, 1, &mut rng),
                0.0,
                "no reward at a cue"
            );
        }
        // Step 2 asks: no cue, the response signal; responding pays +1 iff the target was shown.
        task.observe(&ep, 2, &mut obs);
        assert!(obs[..bits].iter().all(|&v| v == 0.0));
        assert_eq!(obs[bits], 1.0);
        assert_eq!(
            &obs[bits + 2..bits + 4],
            &[0.0, 1.0],
            "previous action: respond"
        );
        let target_shown = ep.pair.0 == ep.target || ep.pair.1 == ep.target;
        shown += target_shown as usize;
        let action = rng.gen_range(0..2);
        let r = task.step(&mut ep, 2, action, &mut rng);
        assert_eq!(
            r,
            if (action == 1) == target_shown {
                1.0
            } else {
                -1.0
            }
        );
        // Step 3: the reward arrives as an input; the next trial draws a new pair.
        task.observe(&ep, 3, &mut obs);
        assert_eq!(obs[bits + 1], r);
        assert!(obs[..=bits].iter().all(|&v| v == 0.0));
        assert_eq!(task.step(&mut ep, 3, 0, &mut rng), 0.0);
        assert_ne!(ep.pair.0, ep.pair.1);
        task.observe(&ep, 4, &mut obs);
        assert_eq!(&obs[..bits], &ep.cues[ep.pair.0][..]);
        assert!((obs[bits + 4] - 4.0 / 120.0).abs() < 1e-7, "time input");
    }
    // The target is in the pair half the time (100 of 200 expected; 5 sigma = 35).
    assert!((65..=135).contains(&shown), "target shown {shown} of 200");
    // One cue per trial: shown at both cue steps, the target a quarter of the time.
    let one = cue_reward(|c| c.env.cues_per_trial = 1);
    let mut shown = 0;
    for _ in 0..400 {
        let ep = one.reset(&mut rng);
        assert_eq!(ep.pair.0, ep.pair.1);
        shown += ep.target_shown() as usize;
    }
    // 100 of 400 expected; 5 sigma = 43.
    assert!((57..=143).contains(&shown), "target shown {shown} of 400");
    // Cues at the response step: the sum of the pair (or the single cue), with the response
    // signal; off by default (checked above: zeros).
    for per_trial in [1, 2] {
        let held = cue_reward(|c| {
            c.env.cues_per_trial = per_trial;
            c.env.cues_at_response = true;
        });
        let ep = held.reset(&mut rng);
        let mut obs = vec![0.0; held.observation_size()];
        held.observe(&ep, 2, &mut obs);
        let bits = held.config.env.cue_bits;
        let (a, b) = ep.pair;
        for (k, &got) in obs[..bits].iter().enumerate() {
            let want = if per_trial == 1 {
                ep.cues[a][k]
            } else {
                ep.cues[a][k] + ep.cues[b][k]
            };
            assert_eq!(got, want, "bit {k}, {per_trial} cue(s) per trial");
        }
        assert_eq!(obs[bits], 1.0, "response signal");
        held.observe(&ep, 3, &mut obs);
        assert!(
            obs[..bits].iter().all(|&v| v == 0.0),
            "feedback step shows no cue"
        );
    }
    // Go/no-go: responding earns +1 when the target was shown, -1 when not; withholding 0.
    let go = cue_reward(|c| c.env.answer_reward = AnswerReward::GoNoGo);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let mut ep = go.reset(&mut rng);
        let shown = ep.target_shown();
        let action = rng.gen_range(0..2);
        let want = match (action, shown) {
            (0, _) => 0.0,
            (_, true) => 1.0,
            _ => -1.0,
        };
        assert_eq!(go.step(&mut ep, 2, action, &mut rng), want);
        seen.insert((action, shown));
    }
    assert_eq!(seen.len(), 4, "every answer and target case occurs");
}

#[test]
fn the_cue_reward_warm_up_trains_on_two_cues_one_per_trial_then_on_the_task() {
    let task = cue_reward(|c| c.env.warmup_updates = 3);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // A fresh task (evaluation) draws the configured episodes.
    assert!(!task.warming_up());
    let ep = task.reset(&mut rng);
    assert_eq!((ep.cues.len(), ep.cues_per_trial), (4, 2));
    for (update, easy) in [(0, true), (2, true), (3, false), (1000, false), (1, true)] {
        A2cTask::before_update(&task, update);
        assert_eq!(task.warming_up(), easy, "update {update}");
        let mut targets = [0usize; 4];
        let mut shown = 0;
        for _ in 0..50 {
            let mut ep = task.reset(&mut rng);
            targets[ep.target] += 1;
            for t in 0..task.config.env.steps {
                if t % 4 == 0 {
                    if easy {
                        assert_eq!(ep.pair.0, ep.pair.1, "one cue per trial");
                        assert!(ep.pair.0 < 2);
                    } else {
                        assert_ne!(ep.pair.0, ep.pair.1, "two different cues");
                    }
                    shown += ep.target_shown() as usize;
                }
                task.step(&mut ep, t, 1, &mut rng);
            }
            assert_eq!(ep.cues.len(), if easy { 2 } else { 4 });
            let answers = if easy {
                AnswerReward::GoNoGo
            } else {
                AnswerReward::Match
            };
            assert_eq!(ep.answer_reward, answers);
        }
        // Easy: only 2 targets; half the 1,500 trials show the target either way (5 sigma: 97).
        assert_eq!(targets[2] + targets[3] == 0, easy, "{targets:?}");
        assert!((653..=847).contains(&shown), "target shown {shown} of 1500");
    }
}

/// Checks that the task of `base` refuses, naming the field, each bad agent field (the
/// network's and the actor-critic's, which every actor-critic task shares) and each of the
/// environment's `env_cases`.
fn assert_agent_rejected<E: AgentFields + Clone, T>(
    base: &AgentConfig<E>,
    new: impl Fn(AgentConfig<E>) -> Result<T, String>,
    env_cases: &[(Change<AgentConfig<E>>, &str)],
) {
    let agent_cases: [(Change<AgentConfig<E>>, &str); 6] = [
        (|c| c.a2c.batch = 0, "batch"),
        (|c| c.a2c.gamma = 1.5, "gamma"),
        (|c| c.a2c.max_grad_norm = 0.0, "max_grad_norm"),
        (|c| c.a2c.learning_rate = f64::NAN, "learning_rate"),
        (|c| c.plasticity.rule = TraceRule::Oja, "rule"),
        (|c| c.plasticity.clip = Some(-1.0), "clip"),
    ];
    assert_rejected(base, &new, &agent_cases);
    assert_rejected(base, new, env_cases);
}

#[test]
fn invalid_configurations_name_the_field() {
    assert_agent_rejected(
        &MazeConfig::default(),
        MazeTask::new,
        &[(|c| c.env.size = 12, "size")],
    );
    assert_agent_rejected(
        &CueRewardConfig::default(),
        CueRewardTask::new,
        &[
            (|c| c.env.cues = 1, "cues"),
            (|c| c.env.cue_bits = 1, "cue_bits"),
            (|c| c.env.cues_per_trial = 3, "cues_per_trial"),
            (|c| c.env.steps = 3, "steps"),
        ],
    );
    assert!(Model::Lstm
        .check(a2c::MODELS)
        .unwrap_err()
        .contains("modplast"));
    assert_rejected(
        &MazeConfig::default(),
        MazeTask::new,
        &[(|c| c.model = Model::Lstm, "model: unknown model 'lstm'")],
    );
}

#[test]
fn the_rnn_agent_is_the_non_plastic_network() {
    // The equality with the plastic network at alpha = 0 is tested in tests/op.rs.
    let _serial = AGENT_INIT.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (model, plastic) in [
        (Model::Rnn, false),
        (Model::Plastic, true),
        (Model::Modul, true),
    ] {
        let agent = MazeTask::new(small(model))
            .unwrap()
            .init_model(&mut rng, &device);
        assert_eq!(agent.net.config().plastic, plastic, "{model:?}");
        let alpha = to_vec(agent.net.alpha.val());
        assert_eq!(alpha.iter().any(|&a| a != 0.0), plastic, "{model:?}: alpha");
    }
}

/// A cue-reward task small enough for a test to learn: 8-bit cues, 40-step episodes (10
/// trials), batch 10, learning rate 1e-3, `neurons` neurons of `model`.
fn learnable_cue_reward(model: Model, neurons: usize) -> CueRewardConfig {
    let mut config = CueRewardConfig {
        env: CueRewardFields {
            cue_bits: 8,
            steps: 40,
            ..CueRewardFields::default()
        },
        model,
        neurons,
        ..CueRewardConfig::default()
    };
    config.a2c.batch = 10;
    config.a2c.learning_rate = 1e-3;
    config
}

/// The curriculum's easy version (2 cues, one per trial, go/no-go) needs a new association in
/// every episode: simple neuromodulation learns it within 5,000 updates, the non-plastic
/// network does not (README, cue-reward: 12,000 updates at 0).
#[test]
fn the_warm_up_association_is_learned_with_neuromodulation_not_without_plasticity() {
    let _guard = AGENT_INIT.lock().unwrap_or_else(|e| e.into_inner());
    for (model, learns) in [(Model::Modplast, true), (Model::Rnn, false)] {
        // 10 trials: about +4.5 for an agent that answers right after the first.
        let mut config = learnable_cue_reward(model, 50);
        config.env.warmup_updates = u64::MAX;
        let task = CueRewardTask::new(config).unwrap();
        let reward = train_final_reward(&task, &format!("warmup-{model:?}"), 5000);
        eprintln!("{model:?}: reward {reward}");
        if learns {
            assert!(
                reward > 2.0,
                "{model:?}: reward of the last 50 updates {reward} (chance 0)"
            );
        } else {
            assert!(
                reward < 1.0,
                "{model:?}: reward of the last 50 updates {reward}"
            );
        }
    }
}

/// Trains `task` for `updates` updates from seed 0 in a temporary run directory (removed
/// afterwards); returns the mean reward of the last updates (`train`'s final metric).
fn train_final_reward<T: A2cTask>(task: &T, name: &str, updates: u64) -> f64 {
    let out = temp_dir(name);
    let opts = plasticity::train::RunOptions {
        checkpoint_every: updates + 1,
        ..options(out.clone(), updates, 0)
    };
    let summary = train_ok(task, &opts, &Device::flex().autodiff());
    let _ = std::fs::remove_dir_all(&out);
    summary.final_metrics[0]
}

/// The cue-reward task with the same cues and target in every episode: the association can
/// be stored in the fixed weights, so any agent should learn it. A learning check of the
/// environment, the returns and the actor-critic loss together.
struct FixedTarget(CueRewardTask);

impl Environment for FixedTarget {
    type Episode = <CueRewardTask as Environment>::Episode;
    fn observation_size(&self) -> usize {
        self.0.observation_size()
    }
    fn actions(&self) -> usize {
        self.0.actions()
    }
    fn steps(&self) -> usize {
        self.0.steps()
    }
    fn reset(&self, rng: &mut ChaCha8Rng) -> Self::Episode {
        let mut ep = self.0.reset(&mut ChaCha8Rng::seed_from_u64(7));
        ep.pair = self.0.reset(rng).pair;
        ep
    }
    fn observe(&self, ep: &Self::Episode, t: usize, out: &mut [f32]) {
        self.0.observe(ep, t, out)
    }
    fn step(&self, ep: &mut Self::Episode, t: usize, action: usize, rng: &mut ChaCha8Rng) -> f32 {
        self.0.step(ep, t, action, rng)
    }
}

impl A2cTask for FixedTarget {
    fn task_name(&self) -> &'static str {
        "cue-reward-fixed"
    }
    fn config(&self) -> &a2c::AgentConfig<impl a2c::AgentFields> {
        self.0.config()
    }
}

#[test]
fn a_fixed_cue_reward_association_is_learned() {
    let _guard = AGENT_INIT.lock().unwrap_or_else(|e| e.into_inner());
    for model in [Model::Rnn, Model::Modul] {
        // 10 trials: +10 for an agent that always answers right.
        let config = learnable_cue_reward(model, 32);
        let task = FixedTarget(CueRewardTask::new(config).unwrap());
        let reward = train_final_reward(&task, &format!("fixed-{model:?}"), 600);
        eprintln!("{model:?}: reward {reward}");
        assert!(
            reward > 6.0,
            "{model:?}: mean reward of the last 50 updates {reward} (chance 0, perfect 10)"
        );
    }
}

#[test]
fn response_rates_split_the_answers_by_whether_the_target_was_shown() {
    use plasticity::tasks::cue_reward::{response_rates, TRIAL_STEPS};
    let task = cue_reward(|c| c.env.steps = 40);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (batch, steps) = (6, 40);
    let mut states = Vec::new();
    let mut probs = Vec::new();
    let mut shown = 0;
    for _ in 0..batch {
        let mut ep = task.reset(&mut rng);
        for t in 0..steps {
            states.push(ep.clone());
            // Respond with 0.9 when the target is shown at a response step, 0.2 when not;
            // 0.5 at the other steps (which must not count).
            let p = match (t % TRIAL_STEPS == 2, ep.target_shown()) {
                (true, true) => 0.9,
                (true, false) => 0.2,
                _ => 0.5,
            };
            shown += usize::from(t % TRIAL_STEPS == 2 && ep.target_shown());
            probs.extend([1.0 - p, p]);
            task.step(&mut ep, t, 0, &mut rng);
        }
    }
    let ro = a2c::Rollout {
        obs: Vec::new(),
        actions: vec![0; batch * steps],
        rewards: vec![0.0; batch * steps],
        probs,
        modulator: Vec::new(),
        states,
        batch,
        steps,
    };
    let r = response_rates(std::slice::from_ref(&ro));
    // Pooled over two rollouts: the same rates, twice the trials.
    let two = response_rates(&[ro.clone(), ro]);
    assert!(
        (two.shown - 0.9).abs() < 1e-6 && (two.not_shown - 0.2).abs() < 1e-6,
        "{two:?}"
    );
    assert_eq!(two.trials_shown, 2 * shown);
    assert!((r.shown - 0.9).abs() < 1e-6, "{r:?}");
    assert!((r.not_shown - 0.2).abs() < 1e-6, "{r:?}");
    assert_eq!(r.trials_shown, shown);
    assert_eq!(
        r.trials_shown + r.trials_not_shown,
        batch * steps / TRIAL_STEPS
    );
    assert!(shown > 0 && shown < batch * steps / TRIAL_STEPS);
}
