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

/// One neuromodulated plastic step of one episode (ICLR 2019 section 3; see
/// [`Modulation`](crate::Modulation)): returns `(y', Hebb', E', M)` from `y: [N]`,
/// `hebb, elig: [N, N]` (`elig` unused and returned unchanged by simple modulation), `x: [N]`.
///
/// ```text
/// y'_j       = tanh( sum_i (w_ij + alpha_ij Hebb_ij) y_i + x_j )          eq. 1
/// M          = tanh( sum_j m_j y'_j + m_b )
/// eta_j      = M, or v_j M + b_j with fan-out
/// Simple:       Hebb'_ij = clip(Hebb_ij + eta_j y_i y'_j)                 eq. 3
/// Retroactive:  Hebb'_ij = clip(Hebb_ij + eta_j E_ij)                     eq. 4
///               E'_ij    = (1 - eta_E) E_ij + eta_E y_i y'_j              eq. 5
/// ```
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub fn modulated_step<F: Real>(
    modulation: crate::Modulation,
    input: InputMode,
    clip: Option<F>,
    alpha_shape: AlphaShape,
    w: &[F],
    alpha: &[F],
    m: &[F],
    m_bias: F,
    fan_w: &[F],
    fan_b: &[F],
    eta_e: F,
    y: &[F],
    hebb: &[F],
    elig: &[F],
    x: &[F],
) -> (Vec<F>, Vec<F>, Vec<F>, F) {
    let n = y.len();
    // The activity step does not depend on the modulation.
    let (y_new, _) = step(
        TraceRule::Hebb,
        input,
        None,
        alpha_shape,
        w,
        alpha,
        F::zero(),
        y,
        hebb,
        x,
    );
    let modulator = ((0..n).map(|j| m[j] * y_new[j]).sum::<F>() + m_bias).tanh();
    let eta: Vec<F> = (0..n)
        .map(|j| {
            if modulation.fan_out() {
                fan_w[j] * modulator + fan_b[j]
            } else {
                modulator
            }
        })
        .collect();
    let clip_to = |h: F| match clip {
        Some(c) => h.max(-c).min(c),
        None => h,
    };
    let mut hebb_new = hebb.to_vec();
    let mut elig_new = elig.to_vec();
    for i in 0..n {
        for j in 0..n {
            let k = i * n + j;
            match modulation {
                crate::Modulation::None => unreachable!("modulated_step needs a modulation"),
                crate::Modulation::Simple { .. } => {
                    hebb_new[k] = clip_to(hebb[k] + eta[j] * y[i] * y_new[j]);
                }
                crate::Modulation::Retroactive { .. } => {
                    hebb_new[k] = clip_to(hebb[k] + eta[j] * elig[k]);
                    elig_new[k] = (F::one() - eta_e) * elig[k] + eta_e * y[i] * y_new[j];
                }
            }
        }
    }
    (y_new, hebb_new, elig_new, modulator)
}
