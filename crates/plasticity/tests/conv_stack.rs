//! The fused convolution stack as a burn operation (`plasticity::op::conv_stack`): its output and
//! every gradient equal burn's own `Conv2d` + `tanh` layers; the Omniglot network uses it on the
//! CPU; shape errors.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, TensorData};
use plasticity::op::{conv_stack, conv_stack_supported};
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
    use plasticity::tasks::omniglot::OmniglotNet;
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
