//! The plastic step as the paper writes it, one episode and one step at a time, storing every
//! trace. It is slow and allocates; it exists to be read and to check the fused kernels.
//!
//! ICML 2018 (Miconi, Clune & Stanley), eq. 1-3:
//!
//! ```text
//! y'_j    = tanh( sum_i (w_ij + alpha_ij Hebb_ij) y_i + x_j )          (eq. 1)
//! Hebb'_ij = (1 - eta) Hebb_ij + eta y_i y'_j                          (eq. 2, decaying Hebb)
//! Hebb'_ij = Hebb_ij + eta y'_j (y_i - Hebb_ij y'_j)                   (eq. 3, Oja)
//! ```
//! then optionally `Hebb' = clip(Hebb', -c, c)`. In clamped input mode a neuron with `x_j != 0`
//! outputs `x_j`.

use crate::real::Real;
use crate::spec::{AlphaShape, InputMode, TraceRule};

/// `alpha_ij` for any [`AlphaShape`].
pub fn alpha_at<F: Real>(shape: AlphaShape, alpha: &[F], n: usize, i: usize, j: usize) -> F {
    match shape {
        AlphaShape::PerConnection => alpha[i * n + j],
        AlphaShape::PerNeuron => alpha[j],
        AlphaShape::Scalar => alpha[0],
    }
}

/// One plastic step of one episode: returns `(y', Hebb')` from `y: [N]`, `hebb: [N, N]`,
/// `x: [N]`.
#[allow(clippy::too_many_arguments)]
pub fn step<F: Real>(
    rule: TraceRule,
    input: InputMode,
    clip: Option<F>,
    alpha_shape: AlphaShape,
    w: &[F],
    alpha: &[F],
    eta: F,
    y: &[F],
    hebb: &[F],
    x: &[F],
) -> (Vec<F>, Vec<F>) {
    let n = y.len();
    // y'_j = tanh(sum_i (w_ij + alpha_ij Hebb_ij) y_i + x_j)
    let y_new: Vec<F> = (0..n)
        .map(|j| {
            let pre = (0..n)
                .map(|i| {
                    (w[i * n + j] + alpha_at(alpha_shape, alpha, n, i, j) * hebb[i * n + j]) * y[i]
                })
                .sum::<F>();
            match input {
                InputMode::Clamped if x[j] != F::zero() => x[j],
                _ => (pre + x[j]).tanh(),
            }
        })
        .collect();
    let mut hebb_new = vec![F::zero(); n * n];
    for i in 0..n {
        for j in 0..n {
            let h = hebb[i * n + j];
            let updated = match rule {
                TraceRule::Hebb => (F::one() - eta) * h + eta * y[i] * y_new[j],
                TraceRule::Oja => h + eta * y_new[j] * (y[i] - h * y_new[j]),
            };
            hebb_new[i * n + j] = match clip {
                Some(c) => updated.max(-c).min(c),
                None => updated,
            };
        }
    }
    (y_new, hebb_new)
}
