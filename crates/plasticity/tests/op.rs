//! The burn operation against the same recurrence written with plain burn tensor ops (whose
//! gradients burn's autodiff computes), including a burn layer before and after it.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use plasticity::tensors::{from_vec, to_vec};
use plasticity::PlasticityConfig;
use plasticity::{
    plastic_episode, AlphaShape, BackwardStrategy, EpisodeSpec, InputMode, TraceRule,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{
    assert_op_on_episode, assert_trained, grad, max_rel, random, reference_step, EpisodeLeaves,
    Unused,
};

/// The episode as the paper writes it, with burn ops: `y = tanh(y (w + alpha Hebb) + x)`, then
/// the trace rule, then clipping. `x: [B, T, N]`. Returns `ys: [B, T, N]`.
fn reference(spec: &EpisodeSpec, l: EpisodeLeaves) -> Tensor<3> {
    let eta3: Tensor<3> = l.eta.clone().reshape([1, 1, 1]);
    let mut y = l.y0.clone();
    let mut hebb = l.hebb0.clone();
    let mut ys = Vec::new();
    for s in 0..spec.steps {
        let (y_new, outer) = reference_step(&l, &y, &hebb, s);
        hebb = match spec.rule {
            TraceRule::Hebb => hebb.clone() - eta3.clone() * hebb + eta3.clone() * outer,
            TraceRule::Oja => {
                let post = y_new.clone().unsqueeze_dim::<3>(1);
                hebb.clone() + eta3.clone() * (outer - hebb * post.clone() * post)
            }
        };
        if let Some(c) = spec.clip {
            hebb = hebb.clamp(-c as f32, c as f32);
        }
        y = y_new;
        ys.push(y.clone().unsqueeze_dim::<3>(1));
    }
    Tensor::cat(ys, 1)
}

/// The episode through the op. Returns `ys: [B, T, N]`.
fn fused(spec: &EpisodeSpec, l: EpisodeLeaves) -> Tensor<3> {
    plastic_episode(l.w, l.alpha, l.eta, l.x, l.y0, Some(l.hebb0), *spec)
        .unwrap()
        .0
}

#[test]
fn gradients_of_the_op_equal_burn_autodiff_of_the_plain_recurrence() {
    for rule in TraceRule::ALL {
        for alpha in AlphaShape::ALL {
            for clip in [None, Some(0.15)] {
                let spec = EpisodeSpec {
                    rule,
                    alpha,
                    clip,
                    ..EpisodeSpec::new(6, 3, 8)
                };
                let used = assert_op_on_episode(&spec, Unused::None, fused, reference);
                // w, alpha, eta, x, y0, hebb0.
                assert_eq!(used, 6, "{spec:?}");
            }
        }
    }
}

#[test]
fn burn_layers_before_and_after_the_op_receive_gradients() {
    let device = Device::flex().autodiff();
    let (n, b, t, d_in) = (5, 2, 4, 3);
    let spec = EpisodeSpec {
        input: InputMode::Additive,
        backward: BackwardStrategy::Auto,
        ..EpisodeSpec::new(n, b, t)
    };
    let encoder: Linear = LinearConfig::new(d_in, n).init(&device);
    let decoder: Linear = LinearConfig::new(n, 1).init(&device);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let input = from_vec(random(&mut rng, b * t * d_in, 1.0), [b, t, d_in], &device);
    let w = Param::from_tensor(from_vec(random(&mut rng, n * n, 0.3), [n, n], &device));
    let alpha = Param::from_tensor(from_vec(random(&mut rng, n * n, 0.3), [n, n], &device));
    let eta = Param::from_tensor(from_vec(vec![0.1], [1], &device));
    let x = encoder.forward(input);
    let (ys, hebb) = plastic_episode(
        w.val(),
        alpha.val(),
        eta.val(),
        x,
        Tensor::zeros([b, n], &device),
        None,
        spec,
    )
    .unwrap();
    assert!(!hebb.is_require_grad(), "the final trace is detached");
    let loss = decoder.forward(ys).sum();
    let grads = loss.backward();
    assert_trained(
        "burn layers around the op",
        vec![
            ("encoder weight", grad(&encoder.weight.val(), &grads)),
            ("decoder weight", grad(&decoder.weight.val(), &grads)),
            ("w", grad(&w.val(), &grads)),
            ("alpha", grad(&alpha.val(), &grads)),
            ("eta", grad(&eta.val(), &grads)),
        ],
    );
}

#[test]
fn the_op_runs_without_autodiff_and_rejects_wrong_shapes() {
    let device = Device::flex();
    let spec = EpisodeSpec::new(4, 1, 3);
    let z2 = |r, c| Tensor::<2>::zeros([r, c], &device);
    let (ys, hebb) = plastic_episode(
        z2(4, 4),
        z2(4, 4),
        Tensor::zeros([1], &device),
        Tensor::ones([1, 3, 4], &device),
        z2(1, 4),
        None,
        spec,
    )
    .unwrap();
    assert_eq!(ys.dims(), [1, 3, 4]);
    assert_eq!(hebb.dims(), [1, 4, 4]);
    // tanh(1) with zero weights at every step.
    assert!(to_vec(ys).iter().all(|v| (v - 1f32.tanh()).abs() < 1e-6));
    let err = plastic_episode(
        z2(4, 4),
        z2(1, 4),
        Tensor::zeros([1], &device),
        Tensor::ones([1, 3, 4], &device),
        z2(1, 4),
        Some(Tensor::zeros([1, 4, 4], &device)),
        spec,
    )
    .unwrap_err();
    assert_eq!(err.0, "alpha: expected shape [4, 4], got [1, 4]");
}

#[test]
fn the_non_plastic_network_equals_the_plastic_one_with_zero_alpha() {
    use burn::optim::GradientsParams;
    use plasticity::PlasticNetConfig;
    let device = Device::flex().autodiff();
    let (n, b, t) = (7, 3, 9);
    for input in InputMode::ALL {
        for with_state in [false, true] {
            let label = format!("{input:?}, initial state: {with_state}");
            let config = PlasticNetConfig {
                neurons: n,
                plastic: false,
                input,
                plasticity: PlasticityConfig {
                    init_std: 0.6,
                    ..PlasticityConfig::default()
                },
                ..PlasticNetConfig::default()
            };
            let fixed = config.init(&mut ChaCha8Rng::seed_from_u64(5), &device);
            let mut twin = PlasticNetConfig {
                plastic: true,
                ..config.clone()
            }
            .init(&mut ChaCha8Rng::seed_from_u64(5), &device);
            assert_eq!(
                to_vec(fixed.w.val()),
                to_vec(twin.w.val()),
                "{label}: same w"
            );
            assert!(to_vec(fixed.alpha.val()).iter().all(|&a| a == 0.0));
            twin.alpha = Param::from_tensor(Tensor::zeros([n, n], &device));
            let mut rng = ChaCha8Rng::seed_from_u64(6);
            let mut xs = random(&mut rng, b * t * n, 1.0);
            if input == InputMode::Clamped {
                // Clamp about half of the neurons at every step.
                for v in xs.iter_mut() {
                    if rng.gen::<bool>() {
                        *v = 0.0;
                    }
                }
            }
            let r = from_vec(random(&mut rng, b * t * n, 1.0), [b, t, n], &device);
            let x = from_vec(xs, [b, t, n], &device);
            let state = |net: &plasticity::PlasticNet| {
                with_state.then(|| {
                    let mut s = net.zero_state(b, &device);
                    s.y = from_vec(
                        random(&mut ChaCha8Rng::seed_from_u64(7), b * n, 0.9),
                        [b, n],
                        &device,
                    );
                    s
                })
            };
            let (fast, fast_end) = fixed.forward(x.clone(), state(&fixed)).unwrap();
            let (slow, slow_end) = twin.forward(x, state(&twin)).unwrap();
            assert!(
                fast_end.hebb.is_none() && slow_end.hebb.is_some(),
                "{label}"
            );
            let (fv, sv) = (to_vec(fast.clone()), to_vec(slow.clone()));
            let diff = max_rel(&fv, &sv);
            assert!(diff < 1e-5, "{label}: activities differ by {diff}");
            let end_diff = max_rel(&to_vec(fast_end.y), &to_vec(slow_end.y));
            assert!(end_diff < 1e-5, "{label}: final y differs by {end_diff}");
            let grads = |ys: Tensor<3>, net: &plasticity::PlasticNet| {
                GradientsParams::from_grads((ys * r.clone()).sum().backward(), net)
            };
            let (gf, gs) = (grads(fast, &fixed), grads(slow, &twin));
            assert!(
                gf.get::<2>(fixed.alpha.id).is_none(),
                "{label}: alpha is not trained"
            );
            assert!(
                gf.get::<1>(fixed.eta.id).is_none(),
                "{label}: eta is not trained"
            );
            let w_of = |g: &GradientsParams, net: &plasticity::PlasticNet| {
                to_vec(g.get::<2>(net.w.id).expect("gradient for w"))
            };
            let (wf, ws) = (w_of(&gf, &fixed), w_of(&gs, &twin));
            let scale = ws.iter().fold(0f32, |m, v| m.max(v.abs()));
            let gdiff = max_rel(&wf, &ws);
            assert!(
                scale > 1e-3 && gdiff < 1e-4,
                "{label}: dL/dw differs by {gdiff} (scale {scale})"
            );
        }
    }
}

#[test]
fn alpha_init_std_scales_alpha_and_keeps_w_and_the_random_stream() {
    use plasticity::PlasticNetConfig;
    use rand::Rng;
    let device = Device::flex();
    let base = PlasticNetConfig {
        neurons: 6,
        plasticity: PlasticityConfig {
            init_std: 0.5,
            ..PlasticityConfig::default()
        },
        ..PlasticNetConfig::default()
    };
    let mut small = base.clone();
    small.plasticity.alpha_init_std = Some(0.05);
    let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(3), ChaCha8Rng::seed_from_u64(3));
    let (a, b) = (base.init(&mut r1, &device), small.init(&mut r2, &device));
    assert_eq!(to_vec(a.w.val()), to_vec(b.w.val()));
    for (x, y) in to_vec(a.alpha.val()).iter().zip(to_vec(b.alpha.val())) {
        assert!((x * 0.1 - y).abs() <= 1e-6 * x.abs().max(1.0), "{x} {y}");
    }
    assert!(to_vec(a.alpha.val()).iter().any(|&x| x.abs() > 0.1));
    assert_eq!(r1.gen::<u64>(), r2.gen::<u64>(), "same draws after init");
    let mut bad = base;
    bad.plasticity.alpha_init_std = Some(f64::NAN);
    assert!(bad.validate().unwrap_err().contains("alpha_init_std"));
}
