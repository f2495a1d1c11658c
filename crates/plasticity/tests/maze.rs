//! The maze task: rules, observation, returns, replay consistency, gradient clipping.

use burn::optim::GradientsParams;
use burn::tensor::activation::softmax;
use burn::tensor::Device;
use plasticity::tasks::maze::{
    returns, Maze, MazeConfig, MazeEpisode, MazeModel, MazeTask, ACTIONS, OBS,
};
use plasticity::tensors::to_vec;
use plasticity::train::{clip_global_norm, Experiment};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn small(model: MazeModel) -> MazeConfig {
    MazeConfig {
        size: 7,
        steps: 12,
        batch: 3,
        neurons: 10,
        model,
        ..MazeConfig::default()
    }
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
    let config = MazeConfig {
        wall_penalty: 0.5,
        ..MazeConfig::default()
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

#[test]
fn the_replay_reproduces_the_rollouts_policy_for_every_model() {
    let device = Device::flex().autodiff();
    for model in [
        MazeModel::Rnn,
        MazeModel::Plastic,
        MazeModel::Modplast,
        MazeModel::Modul,
    ] {
        let config = MazeConfig {
            fan_out: model == MazeModel::Modplast,
            // Large weights so that plasticity and modulation change the policy visibly.
            init_std: 0.6,
            ..small(model)
        };
        let task = MazeTask::new(config.clone()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let agent = task.init_model(&mut rng, &device);
        let ro = task.rollout(&agent, config.batch, &mut rng).unwrap();
        assert_eq!(ro.obs.len(), 3 * 12 * OBS);
        assert_eq!(
            ro.modulator.is_empty(),
            matches!(model, MazeModel::Rnn | MazeModel::Plastic)
        );
        let (logits, _) = task.replay(&agent, &ro, &device).unwrap();
        let probs = to_vec(softmax(logits, 2));
        let diff = probs
            .iter()
            .zip(&ro.probs)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-4, "{model:?}: replayed policy differs by {diff}");
        assert_eq!(probs.len(), 3 * 12 * ACTIONS);
        // Same seed, same rollout.
        let mut rng2 = ChaCha8Rng::seed_from_u64(7);
        let agent2 = task.init_model(&mut rng2, &device);
        let ro2 = task.rollout(&agent2, config.batch, &mut rng2).unwrap();
        assert_eq!(ro.actions, ro2.actions);
        // A training step's loss is finite and reaches every trained parameter.
        let loss = task.loss(&agent, &ro, &device).unwrap();
        let value = loss.clone().into_scalar::<f32>();
        assert!(value.is_finite(), "{model:?}: loss {value}");
        let mut grads = GradientsParams::from_grads(loss.backward(), &agent);
        assert!(
            grads.get::<2>(agent.net.w.id).is_some(),
            "{model:?}: no gradient for w"
        );
        assert_eq!(
            grads.get::<2>(agent.net.alpha.id).is_some(),
            model != MazeModel::Rnn,
            "{model:?}: alpha is trained only by plastic models"
        );
        if let Some(md) = &agent.net.modulator {
            assert!(
                grads.get::<1>(md.m.id).is_some(),
                "{model:?}: no gradient for m"
            );
        }
        // Global clipping: afterwards the norm is the limit.
        let norm = clip_global_norm(&agent, &mut grads, 1e-3);
        assert!(norm > 1e-3, "{model:?}: gradient norm {norm}");
        let after = clip_global_norm(&agent, &mut grads, f64::INFINITY);
        assert!(
            (after - 1e-3).abs() < 1e-6,
            "{model:?}: norm after clipping {after}"
        );
    }
}

#[test]
fn invalid_configurations_name_the_field() {
    for (config, field) in [
        (
            MazeConfig {
                size: 12,
                ..MazeConfig::default()
            },
            "size",
        ),
        (
            MazeConfig {
                batch: 0,
                ..MazeConfig::default()
            },
            "batch",
        ),
        (
            MazeConfig {
                gamma: 1.5,
                ..MazeConfig::default()
            },
            "gamma",
        ),
        (
            MazeConfig {
                max_grad_norm: 0.0,
                ..MazeConfig::default()
            },
            "max_grad_norm",
        ),
    ] {
        let err = MazeTask::new(config).unwrap_err();
        assert!(err.starts_with(field), "{err}");
    }
    assert!("lstm"
        .parse::<MazeModel>()
        .unwrap_err()
        .contains("modplast"));
}
