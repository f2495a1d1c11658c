//! The fused convolution stack as a burn operation (`plasticity::ops::conv_stack`): its output and
//! every gradient equal burn's own `Conv2d` + `tanh` layers; the Omniglot network uses it on the
//! CPU; shape errors.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, TensorData};
use plasticity::ops::{conv_stack, conv_stack_supported};
use plasticity::tensors::to_vec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, len: usize, bound: f64) -> Vec<f32> {
    (0..len)
        .map(|_| rng.gen_range(-bound..bound) as f32)
        .collect()
}

/// `channels.len() - 1` random 3x3 stride-2 convolutions (the Omniglot encoder's layers);
/// their parameters require gradients on autodiff devices.
fn convs(channels: &[usize], rng: &mut ChaCha8Rng, device: &Device) -> Vec<Conv2d> {
    let autodiff = *device != Device::flex();
    let tracked = |t: Tensor<4>| if autodiff { t.require_grad() } else { t };
    let tracked1 = |t: Tensor<1>| if autodiff { t.require_grad() } else { t };
    channels
        .windows(2)
        .map(|c| {
            let bound = 1.7 / ((c[0] * 9) as f64).sqrt();
            let mut conv = Conv2dConfig::new([c[0], c[1]], [3, 3])
                .with_stride([2, 2])
                .init(device);
            conv.weight = Param::from_tensor(tracked(Tensor::from_data(
                TensorData::new(random(rng, c[1] * c[0] * 9, bound), [c[1], c[0], 3, 3]),
                device,
            )));
            conv.bias = Some(Param::from_tensor(tracked1(Tensor::from_data(
                TensorData::new(random(rng, c[1], 0.5), [c[1]]),
                device,
            ))));
            conv
        })
        .collect()
}

fn layers(convs: &[Conv2d]) -> Vec<(Tensor<4>, Tensor<1>)> {
    convs
        .iter()
        .map(|c| (c.weight.val(), c.bias.as_ref().unwrap().val()))
        .collect()
}

/// `max |a - b| <= tol x max |b|`.
fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max difference {worst} against max |value| {scale}"
    );
}

/// On the Omniglot shape (6 images of 31x31, 4 layers of 64 channels) and on a smaller stack
/// with a 3x3 output (NCHW order matters there), output and gradients of
/// `L = sum r * output` (`x`, every weight and bias) match burn's `Conv2d` + `tanh` to 1e-4.
#[test]
fn matches_burn_conv2d_stack_with_gradients() {
    let device = Device::flex().autodiff();
    assert!(conv_stack_supported(&device));
    assert!(conv_stack_supported(&Device::flex()));
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (images, side, channels) in [(6, 31, vec![1, 64, 64, 64, 64]), (3, 15, vec![2, 5, 4])] {
        let convs = convs(&channels, &mut rng, &device);
        let x_data = TensorData::new(
            random(&mut rng, images * channels[0] * side * side, 1.0),
            [images, channels[0], side, side],
        );
        let x = Tensor::<4>::from_data(x_data, &device).require_grad();
        let mut burn_out = x.clone();
        for conv in &convs {
            burn_out = conv.forward(burn_out).tanh();
        }
        let fused_out = conv_stack(x.clone(), &layers(&convs)).unwrap();
        assert_eq!(fused_out.dims(), burn_out.dims());
        assert_close(
            &to_vec(fused_out.clone()),
            &to_vec(burn_out.clone()),
            1e-4,
            "output",
        );
        let r = Tensor::<4>::from_data(
            TensorData::new(
                random(&mut rng, burn_out.shape().num_elements(), 1.0),
                burn_out.dims(),
            ),
            &device,
        );
        let g_burn = (burn_out * r.clone()).sum().backward();
        let g_fused = (fused_out * r).sum().backward();
        let grad4 = |t: &Tensor<4>, g| to_vec(t.grad(g).expect("gradient"));
        let grad1 = |t: &Tensor<1>, g| to_vec(t.grad(g).expect("gradient"));
        assert_close(&grad4(&x, &g_fused), &grad4(&x, &g_burn), 1e-4, "dL/dx");
        for (l, conv) in convs.iter().enumerate() {
            let w = conv.weight.val();
            let b = conv.bias.as_ref().unwrap().val();
            assert_close(
                &grad4(&w, &g_fused),
                &grad4(&w, &g_burn),
                1e-4,
                &format!("dL/dW{l}"),
            );
            assert_close(
                &grad1(&b, &g_fused),
                &grad1(&b, &g_burn),
                1e-4,
                &format!("dL/db{l}"),
            );
        }
    }
}

/// Without autodiff (`Device::flex()`) the operation gives the same output.
#[test]
fn runs_without_autodiff() {
    let device = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let convs = convs(&[1, 8, 8], &mut rng, &device);
    let x = Tensor::<4>::from_data(
        TensorData::new(random(&mut rng, 2 * 81, 1.0), [2, 1, 9, 9]),
        &device,
    );
    let mut burn_out = x.clone();
    for conv in &convs {
        burn_out = conv.forward(burn_out).tanh();
    }
    let fused = conv_stack(x, &layers(&convs)).unwrap();
    assert_close(&to_vec(fused), &to_vec(burn_out), 1e-5, "output");
}

/// Wrong shapes are errors naming the tensor.
#[test]
fn shape_errors_name_the_tensor() {
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let convs = convs(&[1, 4, 4], &mut rng, &device);
    let x = |s: [usize; 4]| Tensor::<4>::zeros(s, &device);
    let err = |r: Result<Tensor<4>, plasticity::SpecError>| r.unwrap_err().0;
    assert!(err(conv_stack(x([1, 1, 9, 8]), &layers(&convs))).contains("square"));
    assert!(err(conv_stack(x([1, 2, 9, 9]), &layers(&convs))).contains("weight 0"));
    assert!(err(conv_stack(x([1, 1, 5, 5]), &layers(&convs))).contains("side"));
    let mut bad = layers(&convs);
    bad[1].1 = Tensor::zeros([3], &device);
    assert!(err(conv_stack(x([1, 1, 9, 9]), &bad)).contains("bias 1"));
}

/// `OmniglotNet` on the CPU (fused convolutions) gives the outputs, logits and parameter
/// gradients of the same network written with burn's `Conv2d` layers and its plastic layer.
#[test]
fn omniglot_net_uses_it_and_matches_the_burn_layers() {
    use plasticity::dense::{DenseActivation, PlasticDenseConfig};
    use plasticity::tasks::omniglot::{FeatureNorm, OmniglotNet};
    use plasticity::TraceRule;
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let (b, t, side, ways, c) = (2, 6, 15, 5, 16);
    let net = OmniglotNet {
        convs: convs(&[1, c, c, c], &mut rng, &device),
        plastic: PlasticDenseConfig {
            inputs: c,
            outputs: ways,
            rule: TraceRule::Oja,
            activation: DenseActivation::Softmax,
            eta: 0.1,
            learn_eta: true,
            init_std: 0.1,
            alpha_mean: 0.5,
        }
        .init(&mut rng, &device),
        feature_norm: FeatureNorm::None,
    };
    let images = Tensor::<3>::from_data(
        TensorData::new(
            (0..b * t * side * side)
                .map(|_| rng.gen_range(0.0f32..1.0))
                .collect::<Vec<f32>>(),
            [b, t, side * side],
        ),
        &device,
    );
    let mut clamp = vec![0.0f32; b * t * ways];
    for k in 0..b * (t - 1) {
        clamp[(k / (t - 1) * t + k % (t - 1)) * ways + k % ways] = 10.0;
    }
    let clamp = Tensor::<3>::from_data(TensorData::new(clamp, [b, t, ways]), &device);
    let (y, logits) = net.forward_with_logits(images.clone(), clamp.clone(), side);
    let mut x = images.reshape([b * t, 1, side, side]);
    for conv in &net.convs {
        x = conv.forward(x).tanh();
    }
    let (y_ref, logits_ref) =
        net.plastic
            .forward_with_logits(x.reshape([b, t, c]), Some(clamp), ways);
    assert_close(&to_vec(y.clone()), &to_vec(y_ref.clone()), 1e-4, "outputs");
    assert_close(&to_vec(logits), &to_vec(logits_ref), 1e-4, "logits");
    // A weighted sum of the query outputs (their plain sum is 1 for every input). Gradients
    // measured: max |dL/dW| 0.02-0.05 per layer, 0.17 for the plastic w.
    let r = Tensor::<3>::from_data(
        TensorData::new(random(&mut rng, b * ways, 1.0), [b, 1, ways]),
        &device,
    );
    let g = (y.slice([0..b, t - 1..t, 0..ways]) * r.clone())
        .sum()
        .backward();
    let g_ref = (y_ref.slice([0..b, t - 1..t, 0..ways]) * r)
        .sum()
        .backward();
    for (l, conv) in net.convs.iter().enumerate() {
        let w = conv.weight.val();
        let grad = |g| to_vec(w.grad(g).expect("gradient"));
        assert_close(&grad(&g), &grad(&g_ref), 1e-4, &format!("dL/dW{l}"));
    }
    let w = net.plastic.w.val();
    let grad = |g| to_vec(w.grad(g).expect("gradient"));
    assert_close(&grad(&g), &grad(&g_ref), 1e-4, "dL/dw (plastic)");
}

/// A two-convolution Omniglot network (`c` channels, `ways` outputs, Oja rule, eta 0.3,
/// `w`/`alpha` spread 0.3 around `alpha` mean 0.5) for 7x7 images.
fn small_net(
    c: usize,
    ways: usize,
    feature_norm: plasticity::tasks::omniglot::FeatureNorm,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> plasticity::tasks::omniglot::OmniglotNet {
    use plasticity::dense::{DenseActivation, PlasticDenseConfig};
    use plasticity::TraceRule;
    plasticity::tasks::omniglot::OmniglotNet {
        convs: convs(&[1, c, c], rng, device),
        plastic: PlasticDenseConfig {
            inputs: c,
            outputs: ways,
            rule: TraceRule::Oja,
            activation: DenseActivation::Softmax,
            eta: 0.3,
            learn_eta: true,
            init_std: 0.3,
            alpha_mean: 0.5,
        }
        .init(rng, device),
        feature_norm,
    }
}

/// `--feature-norm l2`: the plastic layer sees each image's features scaled to norm
/// `sqrt(C)` (checked against a by-hand normalisation of the convolutions' output), and the
/// gradients through the normalisation match central finite differences for a convolution
/// weight, the plastic `w` and `alpha`.
#[test]
fn l2_feature_norm_matches_by_hand_values_and_finite_differences() {
    use plasticity::tasks::omniglot::{FeatureNorm, OmniglotNet};
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let (b, t, side, ways, c) = (2, 4, 7, 3, 6);
    let mut net = small_net(c, ways, FeatureNorm::L2, &mut rng, &device);
    let pixels: Vec<f32> = (0..b * t * side * side)
        .map(|_| rng.gen_range(0.0f32..1.0))
        .collect();
    let images = Tensor::<3>::from_data(TensorData::new(pixels, [b, t, side * side]), &device);
    let mut clamp = vec![0.0f32; b * t * ways];
    for k in 0..b * (t - 1) {
        clamp[(k / (t - 1) * t + k % (t - 1)) * ways + k % ways] = 10.0;
    }
    let clamp = Tensor::<3>::from_data(TensorData::new(clamp, [b, t, ways]), &device);
    // By hand: conv features, each row scaled to norm sqrt(C).
    let mut x = images.clone().reshape([b * t, 1, side, side]);
    for conv in &net.convs {
        x = conv.forward(x).tanh();
    }
    let mut feats = to_vec(x);
    for row in feats.chunks_mut(c) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        for v in row.iter_mut() {
            *v *= (c as f32).sqrt() / norm;
        }
    }
    let feats = Tensor::<3>::from_data(TensorData::new(feats, [b, t, c]), &device);
    let (y_ref, _) = net
        .plastic
        .forward_with_logits(feats, Some(clamp.clone()), ways);
    let (y, _) = net.forward_with_logits(images.clone(), clamp.clone(), side);
    assert_close(
        &to_vec(y.clone()),
        &to_vec(y_ref),
        1e-5,
        "outputs with l2 features",
    );
    // Gradients of L = sum(r * query outputs) against central differences.
    let r = Tensor::<3>::from_data(
        TensorData::new(random(&mut rng, b * ways, 1.0), [b, 1, ways]),
        &device,
    );
    let loss = |net: &OmniglotNet| -> f64 {
        let (y, _) = net.forward_with_logits(images.clone(), clamp.clone(), side);
        let v = to_vec((y.slice([0..b, t - 1..t, 0..ways]) * r.clone()).sum());
        v[0] as f64
    };
    let g = (y.slice([0..b, t - 1..t, 0..ways]) * r.clone())
        .sum()
        .backward();
    let conv_grad = to_vec(net.convs[0].weight.val().grad(&g).expect("gradient"));
    let w_grad = to_vec(net.plastic.w.val().grad(&g).expect("gradient"));
    let alpha_grad = to_vec(net.plastic.alpha.val().grad(&g).expect("gradient"));
    let eps = 1e-2f32;
    let check = |analytic: f32, plus: f64, minus: f64, what: &str| {
        let numeric = (plus - minus) / (2.0 * eps as f64);
        assert!(
            (numeric - analytic as f64).abs() <= 2e-3 + 0.03 * numeric.abs(),
            "{what}: finite difference {numeric}, backward {analytic}"
        );
    };
    let mut checked = 0;
    for k in [0usize, 5, 11, 17, 29, 40, 53] {
        let base = to_vec(net.convs[0].weight.val());
        let dims = net.convs[0].weight.val().dims();
        let mut at = |v: f32| {
            let mut p = base.clone();
            p[k] += v;
            net.convs[0].weight =
                Param::from_tensor(Tensor::<4>::from_data(TensorData::new(p, dims), &device));
            loss(&net)
        };
        let (plus, minus) = (at(eps), at(-eps));
        at(0.0);
        check(conv_grad[k], plus, minus, &format!("dL/dW0[{k}]"));
        checked += 1;
    }
    for (name, grads) in [("w", &w_grad), ("alpha", &alpha_grad)] {
        for k in [0usize, 4, 9, 13, 17] {
            let param = if name == "w" {
                &net.plastic.w
            } else {
                &net.plastic.alpha
            };
            let base = to_vec(param.val());
            let mut at = |v: f32| {
                let mut p = base.clone();
                p[k] += v;
                let tensor = Param::from_tensor(Tensor::<2>::from_data(
                    TensorData::new(p, [c, ways]),
                    &device,
                ));
                if name == "w" {
                    net.plastic.w = tensor;
                } else {
                    net.plastic.alpha = tensor;
                }
                loss(&net)
            };
            let (plus, minus) = (at(eps), at(-eps));
            at(0.0);
            check(grads[k], plus, minus, &format!("dL/d{name}[{k}]"));
            checked += 1;
        }
    }
    assert_eq!(checked, 17);
    assert!(
        conv_grad.iter().any(|v| v.abs() > 1e-4),
        "conv gradient is not all zero"
    );
}

/// `OmniglotNet::query_outputs` with several queries gives, for every query, what the
/// network gives for the episode made of the shared support steps followed by that query
/// alone (outputs and logits), and its gradients are those of the sum over these episodes.
#[test]
fn several_queries_equal_separate_episodes() {
    use plasticity::tasks::omniglot::FeatureNorm;
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let (b, support, q, side, ways, c) = (2, 3, 4, 7, 3, 5);
    let t = support + q;
    let net = small_net(c, ways, FeatureNorm::None, &mut rng, &device);
    let px = side * side;
    let pixels: Vec<f32> = (0..b * t * px)
        .map(|_| rng.gen_range(0.0f32..1.0))
        .collect();
    let mut clamp = vec![0.0f32; b * t * ways];
    for e in 0..b {
        for s in 0..support {
            clamp[(e * t + s) * ways + (s + e) % ways] = 10.0;
        }
    }
    let images = Tensor::<3>::from_data(TensorData::new(pixels.clone(), [b, t, px]), &device);
    let offsets = Tensor::<3>::from_data(TensorData::new(clamp.clone(), [b, t, ways]), &device);
    let (y, logits) = net.query_outputs(images, offsets, side, q);
    assert_eq!(y.dims(), [b * q, ways]);
    let (y_all, logits_all) = (to_vec(y.clone()), to_vec(logits));
    let r = random(&mut rng, b * q * ways, 1.0);
    let g = (y * Tensor::<2>::from_data(TensorData::new(r.clone(), [b * q, ways]), &device))
        .sum()
        .backward();
    let mut ref_grads: Option<Vec<f32>> = None;
    for e in 0..b {
        for k in 0..q {
            // The episode: support steps of episode e, then its query k.
            let mut img = Vec::new();
            let mut off = Vec::new();
            for s in (0..support).chain([support + k]) {
                img.extend_from_slice(&pixels[(e * t + s) * px..][..px]);
                off.extend_from_slice(&clamp[(e * t + s) * ways..][..ways]);
            }
            let img = Tensor::<3>::from_data(TensorData::new(img, [1, support + 1, px]), &device);
            let off = Tensor::<3>::from_data(TensorData::new(off, [1, support + 1, ways]), &device);
            let (y1, l1) = net.forward_with_logits(img, off, side);
            let last = |x: Tensor<3>| to_vec(x.slice([0..1, support..support + 1, 0..ways]));
            let row = e * q + k;
            assert_close(
                &last(y1.clone()),
                &y_all[row * ways..][..ways],
                1e-6,
                "outputs",
            );
            assert_close(&last(l1), &logits_all[row * ways..][..ways], 1e-5, "logits");
            let rk = Tensor::<3>::from_data(
                TensorData::new(r[row * ways..][..ways].to_vec(), [1, 1, ways]),
                &device,
            );
            let gk = (y1.slice([0..1, support..support + 1, 0..ways]) * rk)
                .sum()
                .backward();
            let grad = to_vec(net.convs[0].weight.val().grad(&gk).expect("gradient"));
            ref_grads = Some(match ref_grads {
                None => grad,
                Some(acc) => acc.iter().zip(&grad).map(|(a, b)| a + b).collect(),
            });
        }
    }
    let grad = to_vec(net.convs[0].weight.val().grad(&g).expect("gradient"));
    assert_close(&grad, &ref_grads.unwrap(), 1e-4, "dL/dW0 over all queries");
    assert!(grad.iter().any(|v| v.abs() > 1e-4));
}
