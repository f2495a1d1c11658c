//! The pattern task and the shared training loop: episodes, learning, determinism, resume,
//! NaN handling, corrupt checkpoints, invalid configurations.

use burn::module::{Module, Param};
use burn::optim::AdamConfig;
use burn::tensor::{Device, Tensor};
use plasticity::tasks::parse_name;
use plasticity::tasks::pattern::{generate, PatternConfig, PatternFields, PatternTask};
use plasticity::tasks::Model;
use plasticity::tensors::from_vec;
use plasticity::train::{self, Experiment, RunOptions, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod common;
use common::{
    assert_rejected, load_trained, metrics_without_time, options, resumed, small_completion,
    temp_dir, train_ok, try_train,
};

/// A small version of the task that a test can learn in seconds.
fn small() -> PatternConfig {
    let patterns = PatternFields {
        bits: 64,
        patterns: 2,
        ..PatternFields::default()
    };
    small_completion(patterns, 3)
}

/// The rows of a run's `metrics.csv` (episode, loss, error) without its header.
fn losses(run: &std::path::Path) -> Vec<String> {
    metrics_without_time(run).split_off(1)
}

#[test]
fn episodes_follow_the_paper_layout() {
    let c = PatternConfig::default();
    assert_eq!(c.steps(), 106);
    assert_eq!(c.neurons(), 1001);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let ep = generate(&c, 2, &mut rng);
    let [b, t, bits] = ep.dims;
    assert_eq!((b, t, bits), (2, 106, 1000));
    for e in 0..b {
        let x = &ep.inputs[e * t * bits..(e + 1) * t * bits];
        let step = |s: usize| &x[s * bits..(s + 1) * bits];
        // Each pattern: exactly half +1 and half -1, shown 6 steps, then 4 steps of zeros.
        for k in 0..10 {
            let first = step(k * 10);
            assert_eq!(first.iter().filter(|v| **v == 1.0).count(), 500);
            assert_eq!(first.iter().filter(|v| **v == -1.0).count(), 500);
            for s in 1..6 {
                assert_eq!(step(k * 10 + s), first);
            }
            for s in 6..10 {
                assert!(step(k * 10 + s).iter().all(|v| *v == 0.0));
            }
        }
        // Each cycle shows each pattern once.
        let cycle = |c: usize| {
            let mut v: Vec<Vec<f32>> = (0..5).map(|k| step(c * 50 + k * 10).to_vec()).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v
        };
        assert_eq!(cycle(0), cycle(1));
        // Test steps: the target with exactly half of its bits zeroed.
        let target = &ep.targets[e * bits..(e + 1) * bits];
        assert!(cycle(0).iter().any(|p| p == target));
        let test = step(100);
        assert_eq!(test.iter().filter(|v| **v == 0.0).count(), 500);
        assert!(test.iter().zip(target).all(|(x, y)| *x == 0.0 || x == y));
        for s in 101..106 {
            assert_eq!(step(s), test);
        }
    }
}

#[test]
fn a_small_pattern_task_is_learned() {
    let task = PatternTask::new(small()).unwrap();
    let dir = temp_dir("learn");
    let device = Device::flex().autodiff();
    let summary = train_ok(&task, &options(dir.clone(), 1500, 1), &device);
    // Chance is 0.5 on the 32 erased bits (0.25 over all 64 bits); measured: 0.019.
    assert!(
        summary.final_metrics[0] < 0.04,
        "error over the last 50 episodes: {}",
        summary.final_metrics[0]
    );
    let (model, trained) = load_trained(&task, &dir, &device);
    assert_eq!(trained, 1500);
    let (eval, _) = train::evaluate(&task, &model, 50, 77, &device).unwrap();
    assert!(eval[0] < 0.04, "held-out error {}", eval[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn same_seed_same_losses_and_resume_continues_identically() {
    let task = PatternTask::new(small()).unwrap();
    let device = Device::flex().autodiff();
    let (a, b, c) = (temp_dir("det-a"), temp_dir("det-b"), temp_dir("det-c"));
    for dir in [&a, &b] {
        train_ok(&task, &options(dir.clone(), 30, 4), &device);
    }
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(losses(&a).len(), 30);
    // Interrupted at 20 (the last checkpoint), then resumed to 30.
    train_ok(&task, &options(c.clone(), 20, 4), &device);
    train_ok(&task, &resumed(options(c.clone(), 30, 4)), &device);
    assert_eq!(losses(&a), losses(&c));
    // A different seed gives different losses.
    let d = temp_dir("det-d");
    train_ok(&task, &options(d.clone(), 5, 5), &device);
    assert_ne!(losses(&a)[..5], losses(&d)[..]);
    // A time limit stops the run after the episode that reaches it, with a checkpoint there;
    // resuming without a limit continues identically.
    let e = temp_dir("det-e");
    let limited = RunOptions {
        time_limit: Some(0.0),
        ..options(e.clone(), 30, 4)
    };
    let s = train_ok(&task, &limited, &device);
    assert!(s.stopped_by_time_limit);
    assert_eq!(s.updates, 1);
    assert_eq!(losses(&e).len(), 1);
    let s = train_ok(&task, &resumed(options(e.clone(), 30, 4)), &device);
    assert!(!s.stopped_by_time_limit);
    assert_eq!(s.updates, 30);
    assert_eq!(losses(&a), losses(&e));
    for dir in [a, b, c, d, e] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn baselines_train_on_the_same_episodes() {
    for model in [Model::Rnn, Model::Lstm] {
        let config = PatternConfig {
            task: PatternFields {
                rnn_neurons: 80,
                ..small().task
            },
            model,
            lstm_cells: 16,
            ..small()
        };
        let task = PatternTask::new(config).unwrap();
        let dir = temp_dir("baseline");
        let device = Device::flex().autodiff();
        let summary = train_ok(&task, &options(dir.clone(), 3, 1), &device);
        assert!(summary.final_loss.is_finite());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn invalid_configurations_are_rejected_naming_the_field() {
    assert_rejected(
        &PatternConfig::default(),
        PatternTask::new,
        &[
            (|c| c.task.bits = 0, "bits: must be positive"),
            (|c| c.task.bits = 31, "bits: must be even"),
            (
                |c| c.learning_rate = -1e-3,
                "learning_rate: must be positive",
            ),
            (|c| c.task.patterns = 0, "patterns: must be positive"),
            (|c| c.task.degraded_fraction = 1.5, "degraded_fraction"),
            (|c| c.plasticity.eta = f64::NAN, "eta: must be finite"),
            (
                |c| {
                    c.model = Model::Rnn;
                    c.task.rnn_neurons = 10;
                },
                "rnn_neurons",
            ),
        ],
    );
    let err = serde_json::from_str::<PatternConfig>(r#"{"bitz": 3}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `bitz`"), "{err}");
    assert!(parse_name::<Model>("model", "mlp")
        .unwrap_err()
        .contains("unknown model 'mlp'"));
}

#[test]
fn corrupt_or_truncated_checkpoints_give_clear_errors() {
    let task = PatternTask::new(small()).unwrap();
    let dir = temp_dir("corrupt");
    let device = Device::flex().autodiff();
    train_ok(&task, &options(dir.clone(), 2, 1), &device);
    let path = dir.join("checkpoint.bin");
    let bytes = std::fs::read(&path).unwrap();
    let model = || task.init_model(&mut ChaCha8Rng::seed_from_u64(0), &device);
    // A sound checkpoint of another model (the plastic network's record into the RNN).
    let rnn = PatternTask::new(PatternConfig {
        model: Model::Rnn,
        ..small()
    })
    .unwrap();
    let err = train::load_model(
        &dir,
        rnn.init_model(&mut ChaCha8Rng::seed_from_u64(0), &device),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("checkpoint.bin") && err.contains("does not fit this model"),
        "{err}"
    );
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = train::load_model(&dir, model()).unwrap_err().to_string();
    assert!(
        err.contains("checkpoint.bin") && err.contains("truncated"),
        "{err}"
    );
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    std::fs::write(&path, &flipped).unwrap();
    let err = train::load_model(&dir, model()).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");
    std::fs::write(&path, b"hello").unwrap();
    let err = train::load_model(&dir, model()).unwrap_err().to_string();
    assert!(err.contains("not a plasticity checkpoint"), "{err}");
    assert!(matches!(
        try_train(&task, &resumed(options(dir.clone(), 4, 1)), &device),
        Err(TrainError::Usage(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An experiment whose update 7 goes wrong: its loss becomes NaN, or (`error`) its
/// `train_batch` fails.
#[derive(Module, Debug)]
struct Scalar {
    v: Param<Tensor<1>>,
}

struct BadAtSeven {
    error: bool,
}

impl Experiment for BadAtSeven {
    type Model = Scalar;
    fn name(&self) -> &'static str {
        "nan"
    }
    fn init_model(&self, _: &mut ChaCha8Rng, device: &Device) -> Scalar {
        Scalar {
            v: Param::from_tensor(from_vec(vec![1.0], [1], device)),
        }
    }
    fn optimizer(&self) -> (AdamConfig, f64) {
        (AdamConfig::new(), 0.1)
    }
    fn train_batch(
        &self,
        m: &Scalar,
        _: &mut ChaCha8Rng,
        _: &Device,
    ) -> Result<(Tensor<1>, Vec<f64>), String> {
        let loss = m.v.val().powf_scalar(2.0);
        CALLS.with(|c| c.set(c.get() + 1));
        if CALLS.with(|c| c.get()) == 7 && self.error {
            Err("the device went away".into())
        } else if CALLS.with(|c| c.get()) == 7 {
            Ok((loss.div_scalar(0.0).mul_scalar(0.0), vec![]))
        } else {
            Ok((loss, vec![]))
        }
    }
    fn eval_batch(&self, _: &Scalar, _: &mut ChaCha8Rng, _: &Device) -> Result<Vec<f64>, String> {
        Ok(vec![])
    }
}

thread_local! {
    static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs [`BadAtSeven`] for 20 updates with a checkpoint every 5: the run stops at update 7,
/// and the checkpoint of update 5 is kept and loads. Returns the error.
fn bad_update_at_seven(error: bool) -> TrainError {
    let dir = temp_dir(if error { "failed-update" } else { "nan" });
    let device = Device::flex().autodiff();
    let opts = RunOptions {
        checkpoint_every: 5,
        ..options(dir.clone(), 20, 0)
    };
    CALLS.with(|c| c.set(0));
    let bad = BadAtSeven { error };
    let err = try_train(&bad, &opts, &device).unwrap_err();
    let (_, update) = load_trained(&bad, &dir, &device);
    assert_eq!(update, 5);
    std::fs::remove_dir_all(&dir).unwrap();
    err
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let err = bad_update_at_seven(false);
    assert!(
        matches!(
            err,
            TrainError::NonFinite {
                update: 7,
                checkpoint: 5
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("update 7") && err.to_string().contains("(update 5) is kept"));
}

#[test]
fn a_failed_update_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let err = bad_update_at_seven(true);
    let message = err.to_string();
    assert!(
        matches!(&err, TrainError::Failed { update: 7, reason, checkpoint: 5 } if reason == "the device went away"),
        "{message}"
    );
    assert_eq!(
        message,
        "update 7 failed: the device went away; stopped. The last good checkpoint (update 5) is kept"
    );
}

/// Trains `task` as `opts` says and loads the model of the run's checkpoint, with its update.
fn train_and_load(
    task: &PatternTask,
    config: &serde_json::Value,
    opts: &RunOptions,
    device: &Device,
) -> (<PatternTask as Experiment>::Model, u64) {
    train::train(task, config, opts, device, &mut |_| {}).unwrap();
    load_trained(task, &opts.out, device)
}

/// Bytes of a safetensors `F32` tensor as values.
fn f32_values(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn weights_safetensors_holds_the_named_parameters_and_the_config() {
    use plasticity::weights::{named_params, WEIGHTS_FILE};
    use safetensors::{Dtype, SafeTensors};
    let task = PatternTask::new(small()).unwrap();
    let dir = temp_dir("weights");
    let device = Device::flex().autodiff();
    let config = serde_json::json!({"bits": 64, "note": "weights test", "seed": 3});
    let (model, update) = train_and_load(&task, &config, &options(dir.clone(), 12, 3), &device);
    assert_eq!(update, 12);
    let check = |expected_update: &str| {
        let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = file.names();
        names.sort();
        assert_eq!(names, ["Plastic.alpha", "Plastic.eta", "Plastic.w"]);
        let params = named_params(&model);
        assert_eq!(params.len(), 3);
        let mut elements = 0;
        for p in &params {
            let t = file.tensor(&p.name).unwrap();
            assert_eq!(t.dtype(), Dtype::F32, "{}", p.name);
            assert_eq!(t.shape(), p.shape.as_slice(), "{}", p.name);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&f32_values(t.data())), bits(&p.values), "{}", p.name);
            elements += p.values.len();
        }
        assert_eq!(elements, model.num_params());
        assert_eq!(file.tensor("Plastic.w").unwrap().shape(), [65, 65]); // 64 bits + bias
        assert_eq!(file.tensor("Plastic.eta").unwrap().shape(), [1]);
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().as_ref().unwrap();
        let in_file: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
        let config_json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(in_file, config_json);
        assert_eq!(in_file, config);
        assert_eq!(meta["update"], expected_update);
        assert_eq!(meta["experiment"], "pattern");
    };
    check("12");
    // A run from before weights.safetensors (only checkpoint.bin) resumes, and its next
    // checkpoint writes the file.
    std::fs::remove_file(dir.join(WEIGHTS_FILE)).unwrap();
    let (model, update) = train_and_load(
        &task,
        &config,
        &resumed(options(dir.clone(), 15, 3)),
        &device,
    );
    assert_eq!(update, 15);
    let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let w = named_params(&model)
        .into_iter()
        .find(|p| p.name == "Plastic.w")
        .unwrap();
    assert_eq!(
        f32_values(file.tensor("Plastic.w").unwrap().data()),
        w.values
    );
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(header.metadata().as_ref().unwrap()["update"], "15");
    std::fs::remove_dir_all(&dir).unwrap();
}
