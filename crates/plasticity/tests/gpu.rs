//! GPU against CPU: the episode operation on a wgpu device (the tensor-op path) gives the CPU
//! kernels' outputs and gradients, for both rules, both input modes, the three alpha shapes,
//! with and without clipping, and the batched pattern size (N = 257, B = 4, T = 106).
//!
//! Built only with `--features wgpu`; skipped with a message when no GPU is present (CI has
//! none: there it only checks that the feature compiles). `PLASTICITY_GPU_TEST=1` runs it even
//! where the check below sees no GPU device file.
#![cfg(feature = "wgpu")]

use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use plasticity::tensors::to_vec;
use plasticity::{plastic_episode, AlphaShape, EpisodeSpec, InputMode, TraceRule};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gpu_present() -> bool {
    std::env::var_os("PLASTICITY_GPU_TEST").is_some()
        || std::path::Path::new("/dev/nvidiactl").exists()
        || std::path::Path::new("/dev/kfd").exists()
        || cfg!(target_os = "macos")
}

fn random(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| scale * (rng.gen::<f32>() * 2.0 - 1.0))
        .collect()
}

/// Outputs, final trace and the gradients `[w, alpha, eta, x, y0, hebb0]` of
/// `sum(ys * weights)` on `device`.
fn run(spec: &EpisodeSpec, device: &Device) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let leaf = |v: Vec<f32>, shape: Vec<usize>| TensorData::new(v, shape);
    let alpha_dims = spec.alpha.dims(n).to_vec();
    let alpha_len = spec.alpha.len(n);
    let w = Tensor::<2>::from_data(leaf(random(&mut rng, n * n, 0.1), vec![n, n]), device)
        .require_grad();
    let alpha = Tensor::<2>::from_data(leaf(random(&mut rng, alpha_len, 0.3), alpha_dims), device)
        .require_grad();
    let eta = Tensor::<1>::from_data(leaf(vec![0.1], vec![1]), device).require_grad();
    let mut xv = random(&mut rng, b * t * n, 1.0);
    if spec.input == InputMode::Clamped {
        for (k, v) in xv.iter_mut().enumerate() {
            if k % 3 != 0 {
                *v = 0.0;
            }
        }
    }
    let x = Tensor::<3>::from_data(leaf(xv, vec![b, t, n]), device).require_grad();
    let y0 = Tensor::<2>::from_data(leaf(random(&mut rng, b * n, 0.5), vec![b, n]), device)
        .require_grad();
    let hebb0 = Tensor::<3>::from_data(
        leaf(random(&mut rng, b * n * n, 0.05), vec![b, n, n]),
        device,
    )
    .require_grad();
    let weights = Tensor::<3>::from_data(
        leaf(random(&mut rng, b * t * n, 1.0), vec![b, t, n]),
        device,
    );
    let (ys, hebb) = plastic_episode(
        w.clone(),
        alpha.clone(),
        eta.clone(),
        x.clone(),
        y0.clone(),
        Some(hebb0.clone()),
        *spec,
    )
    .expect("valid shapes");
    let grads = (ys.clone() * weights).sum().backward();
    let g = |t: Option<Tensor<2>>| to_vec(t.expect("gradient"));
    let grads = vec![
        g(w.grad(&grads)),
        g(alpha.grad(&grads)),
        to_vec(eta.grad(&grads).expect("gradient")),
        to_vec(x.grad(&grads).expect("gradient")),
        g(y0.grad(&grads)),
        to_vec(hebb0.grad(&grads).expect("gradient")),
    ];
    (to_vec(ys), to_vec(hebb), grads)
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn gpu_episode_equals_the_cpu_kernels() {
    if !gpu_present() {
        eprintln!("skipped: no GPU on this machine (no /dev/nvidiactl or /dev/kfd)");
        return;
    }
    let cpu = Device::flex().autodiff();
    let gpu = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
    let mut specs = Vec::new();
    for rule in [TraceRule::Hebb, TraceRule::Oja] {
        for input in [InputMode::Additive, InputMode::Clamped] {
            for alpha in [
                AlphaShape::PerConnection,
                AlphaShape::PerNeuron,
                AlphaShape::Scalar,
            ] {
                for clip in [None, Some(0.08)] {
                    specs.push(EpisodeSpec {
                        rule,
                        input,
                        alpha,
                        clip,
                        ..EpisodeSpec::new(9, 3, 13)
                    });
                }
            }
        }
    }
    specs.push(EpisodeSpec::new(257, 4, 106));
    // Tolerances allow for the GPU's matrix products (which may round through TF32) and a
    // different summation order; the worst differences are printed for the record.
    let (mut worst_out, mut worst_grad) = (0.0f32, 0.0f32);
    for spec in &specs {
        let (ys_c, h_c, g_c) = run(spec, &cpu);
        let (ys_g, h_g, g_g) = run(spec, &gpu);
        let d = max_rel(&ys_g, &ys_c).max(max_rel(&h_g, &h_c));
        worst_out = worst_out.max(d);
        assert!(
            d < 5e-3,
            "{spec:?}: outputs or final traces differ by {d:e}"
        );
        for (name, (a, b)) in ["w", "alpha", "eta", "x", "y0", "hebb0"]
            .iter()
            .zip(g_g.iter().zip(&g_c))
        {
            let d = max_rel(a, b);
            worst_grad = worst_grad.max(d);
            assert!(d < 2e-2, "{spec:?}: d/d{name} differs by {d:e}");
        }
    }
    eprintln!(
        "worst relative difference GPU vs CPU: outputs {worst_out:.2e}, gradients {worst_grad:.2e}"
    );
    eprintln!("GPU == CPU for {} settings", specs.len());
}
