//! Helpers shared by the tests of the burn operations: seeded random leaves, relative
//! differences, gradient checks.
// Each test file uses some of these.
#![allow(dead_code)]

use burn::tensor::{Device, Gradients, Tensor, TensorData};
use plasticity::tensors::{from_vec, to_vec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `len` values uniform in `(-scale, scale)`.
pub fn random(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| scale * (rng.gen::<f32>() * 2.0 - 1.0))
        .collect()
}

/// The largest absolute difference of `a` and `b`, relative to the largest `|b|` (at least
/// `1e-6`).
pub fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// The leaves of one test case, drawn in order from one seeded stream.
pub struct LeafRng<'a> {
    rng: ChaCha8Rng,
    device: &'a Device,
}

impl<'a> LeafRng<'a> {
    /// A stream seeded with `seed`, making tensors on `device`.
    pub fn new(seed: u64, device: &'a Device) -> Self {
        LeafRng {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device,
        }
    }

    /// The next `shape` values, uniform in `(-scale, scale)`, as a tensor.
    pub fn tensor<const D: usize>(&mut self, scale: f32, shape: [usize; D]) -> Tensor<D> {
        let len = shape.iter().product();
        from_vec(random(&mut self.rng, len, scale), shape, self.device)
    }

    /// [`LeafRng::tensor`] as a leaf that requires its gradient.
    pub fn leaf<const D: usize>(&mut self, scale: f32, shape: [usize; D]) -> Tensor<D> {
        self.tensor(scale, shape).require_grad()
    }

    /// A one-element leaf holding `v` (draws nothing).
    pub fn scalar(&self, v: f32) -> Tensor<1> {
        Tensor::from_data(TensorData::new(vec![v], [1]), self.device).require_grad()
    }
}

/// The gradient of `t` in `grads`, flat (`None`: it has none).
pub fn grad<const D: usize>(t: &Tensor<D>, grads: &Gradients) -> Option<Vec<f32>> {
    t.grad(grads).map(to_vec)
}

/// Asserts that the op's gradient `op` with respect to `name` equals burn autodiff's of the
/// reference, `reference`, to `1e-4` relative.
pub fn assert_grad_close(label: &str, name: &str, op: &[f32], reference: &[f32]) {
    let d = max_rel(op, reference);
    assert!(
        d < 1e-4,
        "{label}: d/d{name} differs from burn autodiff by {d:e}"
    );
}

/// Asserts that each named gradient exists, is not all zero and is finite.
pub fn assert_trained(label: &str, named: Vec<(&str, Option<Vec<f32>>)>) {
    for (name, g) in named {
        let g = g.unwrap_or_else(|| panic!("{label}: {name}: no gradient"));
        assert!(
            g.iter().any(|v| *v != 0.0) && g.iter().all(|v| v.is_finite()),
            "{label}: {name}: {g:?}"
        );
    }
}
