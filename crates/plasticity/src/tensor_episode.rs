//! The plastic episode written with burn's backend tensor operations: the path for GPU
//! backends (cargo feature `wgpu`, `--device wgpu`).
//!
//! The maths is the one of `plasticity_kernels` (ICML 2018 eq. 1-3; see `reference.rs` there):
//!
//! ```text
//! y'_j      = tanh( sum_i (w_ij + alpha_ij Hebb_ij) y_i + x_j )       (clamped: y'_j = x_j where x_j != 0)
//! Hebb'_ij  = (1 - eta) Hebb_ij + eta y_i y'_j                         decaying Hebb
//! Hebb'_ij  = Hebb_ij (1 - eta y'_j^2) + eta y_i y'_j                  Oja
//! Hebb'     = clip::<B>(Hebb', -c, c)                                       optional
//! ```
//!
//! Each step is two matrix products (`y W` for the whole batch and `y (alpha * Hebb)` batched
//! over episodes) and a few element-wise operations on `[B, N, N]`, so any burn backend runs it
//! and a GPU runs the `N^2` work in parallel. The backward is hand-written BPTT, like the CPU
//! kernels'; it keeps `Hebb` every `ceil(sqrt(T))` steps and recomputes each segment's traces
//! from the stored outputs `y` (element-wise work only), so memory is `O(sqrt(T) B N^2)`, never
//! `T` copies of the trace.
//!
//! The CPU path does not use this file (the fused kernels are several times faster there); the
//! crate's tests run it on the CPU backend against the kernels, so the GPU runs the same tested
//! code.

use crate::ops::{EpisodeInputs, RuleInputs};
use burn::backend::{
    get_device_settings,
    tensor::{Device, FloatTensor},
    Backend, TensorMetadata,
};
use burn::tensor::{FloatDType, Scalar, Shape, Slice};
use plasticity_kernels::{AlphaShape, EpisodeSpec, InputMode, TraceRule};
use std::fmt;

type F<B> = FloatTensor<B>;

fn sc(v: f32) -> Scalar {
    Scalar::Float(v as f64)
}

fn reshape<B: Backend, const D: usize>(t: F<B>, dims: [usize; D]) -> F<B> {
    B::float_reshape(t, Shape::from(dims))
}

/// `1 - v`, element-wise.
fn one_minus<B: Backend>(v: F<B>) -> F<B> {
    B::float_add_scalar(B::float_neg(v), sc(1.0))
}

/// `[b, 1, n] x [b, n, 1] -> [b, n, n]`: the outer product `a_i c_j` of each episode.
fn outer<B: Backend>(a: F<B>, c: F<B>, b: usize, n: usize) -> F<B> {
    B::float_mul(reshape::<B, _>(a, [b, n, 1]), c)
}

/// Parameters as the step uses them.
struct Params<B: Backend> {
    /// `[N, N]`
    w: F<B>,
    /// `[1, N, N]`, `[1, 1, N]` or `[1, 1, 1]`: broadcasts against `Hebb: [B, N, N]`.
    alpha: F<B>,
    eta: f32,
}

/// What the backward keeps from the forward.
pub struct Saved<B: Backend> {
    spec: EpisodeSpec,
    params: Params<B>,
    /// `y_0 .. y_T`, each `[B, 1, N]`.
    ys: Vec<F<B>>,
    /// Clamped input mode: `1` where `x_t != 0`, each `[B, 1, N]`.
    clamped: Vec<F<B>>,
    /// `Hebb` before steps `0, S, 2S, ...`, each `[B, N, N]`.
    checkpoints: Vec<F<B>>,
    segment: usize,
}

impl<B: Backend> fmt::Debug for Saved<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saved")
            .field("spec", &self.spec)
            .field("checkpoints", &self.checkpoints.len())
            .field("segment", &self.segment)
            .finish()
    }
}

/// `Hebb'` before clipping (eq. 2 or 3), from `Hebb: [B, N, N]`, `y: [B, 1, N]` (presynaptic,
/// previous step) and `y': [B, 1, N]`.
fn update_raw<B: Backend>(spec: &EpisodeSpec, eta: f32, hebb: F<B>, y: F<B>, y_new: F<B>) -> F<B> {
    let (b, n) = (spec.batch, spec.neurons);
    let coincidence = B::float_mul_scalar(outer::<B>(y, y_new.clone(), b, n), sc(eta));
    let decay = match spec.rule {
        TraceRule::Hebb => B::float_mul_scalar(hebb, sc(1.0 - eta)),
        // Hebb_ij (1 - eta y'_j^2)
        TraceRule::Oja => B::float_mul(
            hebb,
            one_minus::<B>(B::float_mul_scalar(
                B::float_mul(y_new.clone(), y_new),
                sc(eta),
            )),
        ),
    };
    B::float_add(decay, coincidence)
}

fn clip<B: Backend>(spec: &EpisodeSpec, raw: F<B>) -> F<B> {
    match spec.clip {
        Some(c) => B::float_clamp(raw, sc(-c as f32), sc(c as f32)),
        None => raw,
    }
}

/// Runs an episode. `w: [N, N]`, `alpha` as `spec.alpha.dims(N)`, `x: [B, T, N]`,
/// `y0: [B, N]`, `hebb0: [B, N, N]` or empty (zeros). Returns `(ys: [B, T, N], Hebb_T)` and,
/// when `save` is set, what [`backward`] needs.
#[allow(clippy::too_many_arguments)]
pub fn forward<B: Backend>(
    w: F<B>,
    alpha: F<B>,
    eta: f32,
    x: F<B>,
    y0: F<B>,
    hebb0: F<B>,
    spec: EpisodeSpec,
    save: bool,
) -> (F<B>, F<B>, Option<Saved<B>>) {
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let device: Device<B> = TensorMetadata::device(&w);
    let alpha = match spec.alpha {
        AlphaShape::PerConnection => reshape::<B, _>(alpha, [1, n, n]),
        AlphaShape::PerNeuron => reshape::<B, _>(alpha, [1, 1, n]),
        AlphaShape::Scalar => reshape::<B, _>(alpha, [1, 1, 1]),
    };
    let params: Params<B> = Params { w, alpha, eta };
    let mut hebb = if TensorMetadata::shape(&hebb0).num_elements() == 0 {
        let dtype: FloatDType = get_device_settings::<B>(&device).float_dtype;
        B::float_zeros(Shape::from([b, n, n]), &device, dtype)
    } else {
        hebb0
    };
    let segment = (t_len as f64).sqrt().ceil().max(1.0) as usize;
    let mut y = reshape::<B, _>(y0, [b, 1, n]);
    let mut ys = vec![y.clone()];
    let mut clamped = Vec::new();
    let mut checkpoints = Vec::new();
    for t in 0..t_len {
        if save && t % segment == 0 {
            checkpoints.push(hebb.clone());
        }
        let x_t = B::float_slice(
            x.clone(),
            &[Slice::from(0..b), Slice::from(t..t + 1), Slice::from(0..n)],
        );
        // pre_j = sum_i (w_ij + alpha_ij Hebb_ij) y_i   (eq. 1)
        let fixed = reshape::<B, _>(
            B::float_matmul(reshape::<B, _>(y.clone(), [b, n]), params.w.clone()),
            [b, 1, n],
        );
        let plastic = B::float_matmul(y.clone(), B::float_mul(params.alpha.clone(), hebb.clone()));
        let pre = B::float_add(fixed, plastic);
        let y_new = match spec.input {
            InputMode::Additive => B::float_tanh(B::float_add(pre, x_t)),
            InputMode::Clamped => {
                let bool_dtype = get_device_settings::<B>(&device).bool_dtype;
                let float_dtype = get_device_settings::<B>(&device).float_dtype;
                let m = B::bool_into_float(
                    B::float_not_equal_elem(x_t.clone(), sc(0.0), bool_dtype),
                    float_dtype,
                );
                let free = B::float_mul(one_minus::<B>(m.clone()), B::float_tanh(pre));
                if save {
                    clamped.push(m.clone());
                }
                B::float_add(B::float_mul(m, x_t), free)
            }
        };
        hebb = clip::<B>(
            &spec,
            update_raw::<B>(&spec, eta, hebb, y.clone(), y_new.clone()),
        );
        y = y_new;
        ys.push(y.clone());
    }
    let out = B::float_cat(ys[1..].to_vec(), 1);
    let saved = save.then_some(Saved {
        spec,
        params,
        ys,
        clamped,
        checkpoints,
        segment,
    });
    (out, hebb, saved)
}

/// BPTT through the episode, from `gy = dL/dys: [B, T, N]` (the final trace carries no
/// gradient). Returns the gradients of the op's inputs, each shaped as its input: `w: [N, N]`,
/// the rule's `alpha` (as `spec.alpha.dims(N)`) and `eta: [1]`, `x: [B, T, N]`, `y0: [B, N]`,
/// `hebb0: [B, N, N]`; None for the inputs this path has not (the modulator's, `elig0`).
///
/// With `G = dL/dHebb_{t+1}` (zero where the clip was active) and `P = dL/dpre_t`:
///
/// ```text
/// dL/dHebb_t = A * G + alpha * (y_{t-1} outer P)        A = 1 - eta (Hebb), 1 - eta y_t^2 (Oja)
/// dL/dy_t   += eta sum_i G_ij y_{t-1,i}  (- 2 eta y_t,j sum_i G_ij Hebb_ij for Oja)
/// dL/dy_{t-1} = (w + alpha * Hebb_t) P + eta G y_t (+ the next step's terms)
/// dL/dw += y_{t-1} outer P,  dL/dalpha += (y_{t-1} outer P) * Hebb_t,
/// dL/deta += sum G * (y_{t-1} outer y_t - Hebb_t)      (Oja: - Hebb_t y_t^2)
/// ```
pub fn backward<B: Backend>(saved: Saved<B>, gy: F<B>) -> EpisodeInputs<Option<F<B>>> {
    let (spec, params, ys) = (saved.spec, saved.params, saved.ys);
    let (clamped, checkpoints, segment) = (saved.clamped, saved.checkpoints, saved.segment);
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let eta = params.eta;
    let device: Device<B> = TensorMetadata::device(&params.w);
    let settings = get_device_settings::<B>(&device);
    let zeros = |dims: Vec<usize>| B::float_zeros(Shape::from(dims), &device, settings.float_dtype);
    let mut g_hebb = zeros(vec![b, n, n]);
    let mut g_carry = zeros(vec![b, 1, n]);
    let mut alpha_field = zeros(vec![b, n, n]);
    let mut eta_field = zeros(vec![b, n, n]);
    let mut gz_steps: Vec<Option<F<B>>> = vec![None; t_len];
    let mut gx_steps: Vec<Option<F<B>>> = vec![None; t_len];
    let w_t = B::float_transpose(params.w.clone());
    for (seg, start) in (0..t_len).step_by(segment).enumerate().rev() {
        let end = (start + segment).min(t_len);
        // Recompute Hebb_start .. Hebb_{end-1} from the checkpoint and the stored outputs.
        let mut hs = vec![checkpoints[seg].clone()];
        for t in start..end - 1 {
            let h = hs.last().expect("one trace").clone();
            hs.push(clip::<B>(
                &spec,
                update_raw::<B>(&spec, eta, h, ys[t].clone(), ys[t + 1].clone()),
            ));
        }
        for t in (start..end).rev() {
            let h = hs.pop().expect("one trace per step");
            let (y_prev, y) = (ys[t].clone(), ys[t + 1].clone());
            let mut g_next = g_hebb;
            if let Some(c) = spec.clip {
                let raw = update_raw::<B>(&spec, eta, h.clone(), y_prev.clone(), y.clone());
                let inside = B::bool_into_float(
                    B::float_lower_elem(B::float_abs(raw), sc(c as f32), settings.bool_dtype),
                    settings.float_dtype,
                );
                g_next = B::float_mul(g_next, inside);
            }
            let gy_t = B::float_slice(
                gy.clone(),
                &[Slice::from(0..b), Slice::from(t..t + 1), Slice::from(0..n)],
            );
            let mut g_y = B::float_add(gy_t, g_carry);
            // The trace update: Hebb' = A * Hebb + eta y_{t-1} outer y_t.
            g_y = B::float_add(
                g_y,
                B::float_mul_scalar(B::float_matmul(y_prev.clone(), g_next.clone()), sc(eta)),
            );
            let g_prev_update = reshape::<B, _>(
                B::float_mul_scalar(
                    B::float_matmul(g_next.clone(), reshape::<B, _>(y.clone(), [b, n, 1])),
                    sc(eta),
                ),
                [b, 1, n],
            );
            let coincidence = outer::<B>(y_prev.clone(), y.clone(), b, n);
            let y_sq = B::float_mul(y.clone(), y.clone());
            let (g_hebb_update, d_eta) = match spec.rule {
                TraceRule::Hebb => (
                    B::float_mul_scalar(g_next.clone(), sc(1.0 - eta)),
                    B::float_sub(coincidence, h.clone()),
                ),
                TraceRule::Oja => {
                    let g_h = B::float_sum_dim(B::float_mul(g_next.clone(), h.clone()), 1);
                    g_y = B::float_sub(
                        g_y,
                        B::float_mul_scalar(B::float_mul(g_h, y.clone()), sc(2.0 * eta)),
                    );
                    let a = one_minus::<B>(B::float_mul_scalar(y_sq.clone(), sc(eta)));
                    (
                        B::float_mul(g_next.clone(), a),
                        B::float_sub(coincidence, B::float_mul(h.clone(), y_sq.clone())),
                    )
                }
            };
            eta_field = B::float_add(eta_field, B::float_mul(g_next, d_eta));
            // The step: y_t = tanh(pre + x) (or x where clamped).
            let g_pre_free = B::float_mul(g_y.clone(), one_minus::<B>(y_sq));
            let (g_pre, g_x) = match spec.input {
                InputMode::Additive => (g_pre_free.clone(), g_pre_free),
                InputMode::Clamped => {
                    // As the CPU kernels: a free neuron's input gradient is its additive one.
                    let m = clamped[t].clone();
                    let g_pre = B::float_mul(g_pre_free, one_minus::<B>(m.clone()));
                    (g_pre.clone(), B::float_add(B::float_mul(g_y, m), g_pre))
                }
            };
            // pre_j = sum_i (w_ij + alpha_ij Hebb_ij) y_{t-1,i}
            let g_outer = outer::<B>(y_prev, g_pre.clone(), b, n);
            alpha_field = B::float_add(alpha_field, B::float_mul(g_outer.clone(), h.clone()));
            g_hebb = B::float_add(g_hebb_update, B::float_mul(params.alpha.clone(), g_outer));
            let g_prev_fixed = reshape::<B, _>(
                B::float_matmul(reshape::<B, _>(g_pre.clone(), [b, n]), w_t.clone()),
                [b, 1, n],
            );
            let g_prev_plastic = reshape::<B, _>(
                B::float_matmul(
                    B::float_mul(params.alpha.clone(), h),
                    reshape::<B, _>(g_pre.clone(), [b, n, 1]),
                ),
                [b, 1, n],
            );
            g_carry = B::float_add(g_prev_update, B::float_add(g_prev_fixed, g_prev_plastic));
            gz_steps[t] = Some(g_pre);
            gx_steps[t] = Some(g_x);
        }
    }
    let all = |v: Vec<Option<F<B>>>| -> Vec<F<B>> {
        v.into_iter()
            .map(|g| g.expect("every step visited"))
            .collect()
    };
    let g_pre = reshape::<B, _>(B::float_cat(all(gz_steps), 1), [b * t_len, n]);
    let y_prev = reshape::<B, _>(B::float_cat(ys[..t_len].to_vec(), 1), [b * t_len, n]);
    let g_w = B::float_matmul(B::float_transpose(y_prev), g_pre);
    let g_alpha = match spec.alpha {
        AlphaShape::PerConnection => reshape::<B, _>(B::float_sum_dim(alpha_field, 0), [n, n]),
        AlphaShape::PerNeuron => reshape::<B, _>(
            B::float_sum_dim(B::float_sum_dim(alpha_field, 0), 1),
            [1, n],
        ),
        AlphaShape::Scalar => reshape::<B, _>(B::float_sum(alpha_field), [1, 1]),
    };
    let rule = RuleInputs {
        alpha: Some(g_alpha),
        eta: Some(reshape::<B, _>(B::float_sum(eta_field), [1])),
        m: None,
        m_bias: None,
        fan_w: None,
        fan_b: None,
        eta_e: None,
    };
    EpisodeInputs {
        w: Some(g_w),
        rule,
        x: Some(B::float_cat(all(gx_steps), 1)),
        y0: Some(reshape::<B, _>(g_carry, [b, n])),
        hebb0: Some(g_hebb),
        elig0: None,
    }
}
