//! The episode ops through burn's autodiff with the CUDA engine selected
//! (`plasticity::cuda::select`, what `--device cuda` does) give the CPU kernels' outputs and
//! gradients: a plastic (decaying Hebb, clipped) and a retroactive fan-out episode, clamped
//! input, per-neuron alpha; and the agents' rollouts on the device stepper give the CPU
//! stepper's actions, rewards, policy and modulator (every agent model, with and without
//! fan-out). The kernels themselves are compared setting by setting in
//! crates/plasticity-cuda/tests/gpu.rs. Built with `--features cuda`; skipped with a message
//! without a CUDA device (`PLASTICITY_REQUIRE_CUDA=1` fails instead).
#![cfg(feature = "cuda")]

use burn::tensor::{Device, Tensor, TensorData};
use plasticity::tasks::a2c::{self, A2cSettings, A2cTask, Model};
use plasticity::tasks::cue_reward::{CueRewardConfig, CueRewardFields, CueRewardTask};
use plasticity::train::Experiment;
use plasticity::{
    modulated_episode, plastic_episode, AlphaShape, EpisodeSpec, InputMode, ModulatedTensors,
    Modulation,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The selected engine is process-wide: each test holds this lock while it selects one (and
/// while it runs the CPU side), and burn's layer initialisation draws from one global RNG.
static SELECTION: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Selects CUDA device 0; `false` (with a message) without a device, unless
/// `PLASTICITY_REQUIRE_CUDA=1`.
fn select_or_skip() -> bool {
    match plasticity::cuda::select(0) {
        Ok(engine) => {
            eprintln!("CUDA device 0: {}", engine.name());
            true
        }
        Err(e) if std::env::var("PLASTICITY_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("PLASTICITY_REQUIRE_CUDA=1 but the engine did not start: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

fn tensor<const D: usize>(dims: [usize; D], scale: f32, seed: usize, device: &Device) -> Tensor<D> {
    let len: usize = dims.iter().product();
    let v: Vec<f32> = (0..len)
        .map(|k| scale * ((((k + seed) * 7919) % 101) as f32 / 50.0 - 1.0))
        .collect();
    Tensor::from_data(TensorData::new(v, dims), device).require_grad()
}

fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 values")
}

fn grad<const D: usize>(t: &Tensor<D>, grads: &burn::tensor::Gradients) -> Vec<f32> {
    vals(t.grad(grads).expect("a gradient"))
}

/// Outputs and gradients of `sum(ys * k)` for the two episodes.
fn run(device: &Device) -> Vec<Vec<f32>> {
    let (n, b, t) = (12, 2, 9);
    let mut out = Vec::new();
    let spec = EpisodeSpec {
        clip: Some(0.1),
        input: InputMode::Clamped,
        alpha: AlphaShape::PerNeuron,
        ..EpisodeSpec::new(n, b, t)
    };
    let w = tensor([n, n], 0.3, 1, device);
    let alpha = tensor([1, n], 0.5, 2, device);
    let eta = Tensor::<1>::from_data(TensorData::new(vec![0.2f32], [1]), device).require_grad();
    let x = tensor([b, t, n], 1.0, 3, device);
    let y0 = tensor([b, n], 0.5, 4, device);
    let h0 = Some(tensor([b, n, n], 0.05, 12, device));
    let params = (w.clone(), alpha.clone(), eta.clone());
    let (ys, hebb) = plastic_episode(
        params.0,
        params.1,
        params.2,
        x.clone(),
        y0.clone(),
        h0,
        spec,
    )
    .unwrap();
    let weights = tensor([b, t, n], 1.0, 5, device);
    let grads = (ys.clone() * weights.clone()).sum().backward();
    out.push(vals(ys));
    out.push(vals(hebb));
    out.push(grad(&w, &grads));
    out.push(grad(&alpha, &grads));
    out.push(grad(&eta, &grads));
    out.push(grad(&x, &grads));
    out.push(grad(&y0, &grads));
    let spec = EpisodeSpec {
        modulation: Modulation::Retroactive { fan_out: true },
        clip: Some(0.3),
        ..EpisodeSpec::new(n, b, t)
    };
    let p = ModulatedTensors {
        w: tensor([n, n], 0.3, 6, device),
        alpha: tensor([n, n], 0.5, 7, device),
        m: tensor([n], 0.5, 8, device),
        m_bias: tensor([1], 0.1, 9, device),
        fan_out: Some((tensor([n], 0.5, 10, device), tensor([n], 0.1, 11, device))),
        eta_e: Tensor::<1>::from_data(TensorData::new(vec![0.3f32], [1]), device).require_grad(),
    };
    let o = modulated_episode(p.clone(), x.clone(), y0.clone(), None, None, spec).unwrap();
    let grads = (o.ys.clone() * weights).sum().backward();
    out.push(vals(o.ys));
    out.push(vals(o.hebb));
    out.push(vals(o.elig.expect("retroactive")));
    out.push(vals(o.modulator));
    let (v, bias) = p.fan_out.clone().unwrap();
    out.push(grad(&p.w, &grads));
    out.push(grad(&p.alpha, &grads));
    out.push(grad(&x, &grads));
    out.push(grad(&y0, &grads));
    out.push(grad(&p.m, &grads));
    out.push(grad(&p.m_bias, &grads));
    out.push(grad(&v, &grads));
    out.push(grad(&bias, &grads));
    out.push(grad(&p.eta_e, &grads));
    out
}

#[test]
fn the_episode_ops_on_cuda_equal_the_cpu_kernels() {
    let device = Device::flex().autodiff();
    let _serial = SELECTION.lock().unwrap_or_else(|e| e.into_inner());
    let cpu = run(&device);
    if !select_or_skip() {
        return;
    }
    let gpu = run(&device);
    plasticity::cuda::deselect();
    assert_eq!(gpu.len(), cpu.len());
    for (k, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
        assert_eq!(g.len(), c.len(), "value {k}: length");
        let scale = c.iter().fold(0.01f32, |m, v| m.max(v.abs()));
        for (a, b) in g.iter().zip(c) {
            assert!((a - b).abs() <= 1e-3 * scale, "value {k}: {a} vs {b}");
        }
    }
}

/// A cue-reward rollout of `model` (3 episodes of 12 steps, N = 12) from seed 5.
fn rollout(model: Model, fan_out: bool) -> a2c::Rollout<impl Clone> {
    let task = CueRewardTask::new(CueRewardConfig {
        model,
        fan_out,
        neurons: 12,
        env: CueRewardFields {
            steps: 12,
            ..CueRewardFields::default()
        },
        a2c: A2cSettings {
            batch: 3,
            ..A2cSettings::default()
        },
        ..CueRewardConfig::default()
    })
    .unwrap();
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let agent = task.init_model(&mut rng, &device);
    a2c::rollout(&task, &agent, task.settings().batch, &mut rng).unwrap()
}

#[test]
fn rollouts_on_the_device_stepper_equal_the_cpu_stepper() {
    let _serial = SELECTION.lock().unwrap_or_else(|e| e.into_inner());
    let agents = [
        (Model::Rnn, false),
        (Model::Plastic, false),
        (Model::Modplast, true),
        (Model::Modul, false),
        (Model::Modul, true),
    ];
    let cpu: Vec<_> = agents.iter().map(|&(m, f)| rollout(m, f)).collect();
    if !select_or_skip() {
        return;
    }
    let gpu: Vec<_> = agents.iter().map(|&(m, f)| rollout(m, f)).collect();
    plasticity::cuda::deselect();
    for (((model, fan_out), c), g) in agents.iter().zip(&cpu).zip(&gpu) {
        let label = format!("{model:?}, fan-out {fan_out}");
        // The same actions: the policy agreed closely enough for every sample.
        assert_eq!(g.actions, c.actions, "{label}: actions");
        assert_eq!(g.rewards, c.rewards, "{label}: rewards");
        assert_eq!(g.modulator.len(), c.modulator.len(), "{label}");
        assert_eq!(
            c.modulator.is_empty(),
            matches!(model, Model::Rnn | Model::Plastic),
            "{label}"
        );
        for (what, got, want) in [
            ("probs", &g.probs, &c.probs),
            ("modulator", &g.modulator, &c.modulator),
        ] {
            assert_eq!(got.len(), want.len(), "{label}: {what}");
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() <= 1e-4, "{label}: {what}: {a} vs {b}");
            }
        }
    }
}
