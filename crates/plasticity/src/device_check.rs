//! Compares the episode operation on a device (a GPU) with the CPU kernels: outputs, final
//! trace and every gradient, for both rules, both input modes, the three alpha shapes, with and
//! without clipping, and one batched pattern-sized episode (N = 257, B = 4, T = 106).
//!
//! Used by `tests/gpu.rs` and by `plasticity check --device wgpu`, so a user can check a GPU
//! before trusting its numbers.

use crate::ops::plastic_episode;
use crate::tensors::to_vec;
use burn::tensor::{Device, Tensor, TensorData};
use plasticity_kernels::{EpisodeSpec, InputMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Largest relative differences (max abs difference over the CPU value's max magnitude) of one
/// setting.
#[derive(Clone, Debug)]
pub struct Difference {
    /// The setting.
    pub spec: EpisodeSpec,
    /// Outputs `ys` and the final trace.
    pub outputs: f32,
    /// Gradients of `[w, alpha, eta, x, y0, hebb0]`.
    pub gradients: [f32; 6],
}

/// The settings compared: every rule, input mode, alpha shape and clip setting at
/// `N = 9, B = 3, T = 13`, then `N = 257, B = 4, T = 106`.
pub fn settings() -> Vec<EpisodeSpec> {
    let mut specs = EpisodeSpec::new(9, 3, 13).fixed_rate_grid(0.08);
    specs.push(EpisodeSpec::new(257, 4, 106));
    specs
}

fn random(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| scale * (rng.gen::<f32>() * 2.0 - 1.0))
        .collect()
}

/// Outputs, final trace and the gradients `[w, alpha, eta, x, y0, hebb0]` of
/// `sum(ys * weights)` on `device` (an autodiff device), from fixed random inputs.
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
    let g2 = |t: Option<Tensor<2>>| t.map_or_else(Vec::new, to_vec);
    let grads = vec![
        g2(w.grad(&grads)),
        g2(alpha.grad(&grads)),
        eta.grad(&grads).map_or_else(Vec::new, to_vec),
        x.grad(&grads).map_or_else(Vec::new, to_vec),
        g2(y0.grad(&grads)),
        hebb0.grad(&grads).map_or_else(Vec::new, to_vec),
    ];
    (to_vec(ys), to_vec(hebb), grads)
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Runs every setting of [`settings`] on `device` and on the CPU; returns the differences.
pub fn compare_with_cpu(device: &Device) -> Vec<Difference> {
    let cpu = Device::flex().autodiff();
    settings()
        .into_iter()
        .map(|spec| {
            let (ys_c, h_c, g_c) = run(&spec, &cpu);
            let (ys_d, h_d, g_d) = run(&spec, device);
            let mut gradients = [0.0; 6];
            for (k, (a, b)) in g_d.iter().zip(&g_c).enumerate() {
                gradients[k] = max_rel(a, b);
            }
            Difference {
                spec,
                outputs: max_rel(&ys_d, &ys_c).max(max_rel(&h_d, &h_c)),
                gradients,
            }
        })
        .collect()
}

/// Tolerances of [`compare_with_cpu`]: outputs, gradients. They allow for a GPU's matrix
/// products (which may round through TF32) and another summation order.
pub const TOLERANCES: (f32, f32) = (5e-3, 2e-2);
