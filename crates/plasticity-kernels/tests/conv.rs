//! The fused convolution stack (`plasticity_kernels::conv`): golden values computed by hand, an
//! f64 reference written as direct convolution loops, finite-difference checks of every
//! gradient, block splitting over threads, shape errors.

use plasticity_kernels::conv::{self, ConvGrads, ConvLayer, ConvReal, ConvSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Weights and biases of every layer, owned.
struct Params<F> {
    weights: Vec<Vec<F>>,
    biases: Vec<Vec<F>>,
}

impl<F: ConvReal> Params<F> {
    fn random(spec: &ConvSpec, rng: &mut ChaCha8Rng) -> Self {
        let ch = &spec.channels;
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for l in 0..spec.layers() {
            let bound = 1.5 / ((ch[l] * 9) as f64).sqrt();
            weights.push(
                (0..spec.weight_len(l))
                    .map(|_| F::of(rng.gen_range(-bound..bound)))
                    .collect(),
            );
            biases.push(
                (0..ch[l + 1])
                    .map(|_| F::of(rng.gen_range(-0.5..0.5)))
                    .collect(),
            );
        }
        Params { weights, biases }
    }

    fn layers(&self) -> Vec<ConvLayer<'_, F>> {
        self.weights
            .iter()
            .zip(&self.biases)
            .map(|(w, b)| ConvLayer { weight: w, bias: b })
            .collect()
    }
}

/// The stack written as direct loops over NCHW tensors, in f64: for each layer
/// `a'[m, o, y, x] = tanh(b[o] + sum_{i, ky, kx} W[o, i, ky, kx] a[m, i, 2y + ky, 2x + kx])`.
fn reference(
    spec: &ConvSpec,
    weights: &[Vec<f64>],
    biases: &[Vec<f64>],
    input: &[f64],
) -> Vec<f64> {
    let sides = spec.sides();
    let ch = &spec.channels;
    let mut a = input.to_vec();
    for l in 0..spec.layers() {
        let (s, so, ci, co) = (sides[l], sides[l + 1], ch[l], ch[l + 1]);
        let mut out = vec![0.0; spec.images * co * so * so];
        for m in 0..spec.images {
            for o in 0..co {
                for y in 0..so {
                    for x in 0..so {
                        let mut z = biases[l][o];
                        for i in 0..ci {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    z += weights[l][((o * ci + i) * 3 + ky) * 3 + kx]
                                        * a[((m * ci + i) * s + 2 * y + ky) * s + 2 * x + kx];
                                }
                            }
                        }
                        out[((m * co + o) * so + y) * so + x] = z.tanh();
                    }
                }
            }
        }
        a = out;
    }
    a
}

/// The stack of `channels.len() - 1` layers on `images` images of side `side`.
fn conv_spec(images: usize, side: usize, channels: &[usize]) -> ConvSpec {
    ConvSpec {
        images,
        side,
        channels: channels.to_vec(),
    }
}

fn random_vec(len: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn run_f64(spec: &ConvSpec, p: &Params<f64>, x: &[f64], gy: &[f64]) -> (Vec<f64>, ConvGrads<f64>) {
    let layers = p.layers();
    let rec = conv::forward(spec, &layers, x).expect("forward");
    let g = conv::backward(&layers, &rec, gy, true).expect("backward");
    (rec.output(), g)
}

/// One layer, one 3x3 image, one output pixel (`M = 1`, channels `[1, 1]`, side 3):
/// `x = [1 0 0; 0 2 0; 0 0 -1]`, `W = [0.1 0.2 0.3; 0.4 0.5 0.6; 0.7 0.8 0.9]`, `b = 0.05`.
/// `z = 0.1 * 1 + 0.5 * 2 + 0.9 * (-1) + 0.05 = 0.25`, `y = tanh(0.25) = 0.24491866240370913`.
/// With `L = y`: `dz = 1 - y^2 = 1 - 0.059985150... = 0.94001484...`, `dW = dz x`
/// (`0.94001484, 0, 0, 0, 1.88002969, 0, 0, 0, -0.94001484`), `db = dz`, `dx = dz W`.
#[test]
fn golden_single_pixel() {
    let spec = conv_spec(1, 3, &[1, 1]);
    let x = [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, -1.0];
    let w: Vec<f64> = (1..=9).map(|k| k as f64 / 10.0).collect();
    let b = [0.05];
    let layers = [ConvLayer {
        weight: &w,
        bias: &b,
    }];
    let rec = conv::forward(&spec, &layers, &x).unwrap();
    let y = rec.output();
    assert!((y[0] - 0.244_918_662_403_709_13).abs() < 1e-15, "{y:?}");
    let g = conv::backward(&layers, &rec, &[1.0], true).unwrap();
    let dz = 1.0 - 0.244_918_662_403_709_13f64.powi(2);
    assert!((dz - 0.940_014_848).abs() < 1e-9);
    for k in 0..9 {
        assert!((g.weights[0][k] - dz * x[k]).abs() < 1e-14, "dW[{k}]");
        assert!((g.input[k] - dz * w[k]).abs() < 1e-14, "dx[{k}]");
    }
    assert!((g.biases[0][0] - dz).abs() < 1e-14);
}

/// Overlapping windows (side 5 -> 2x2 output, stride 2): with `x = 0.1` everywhere, `W = 1`,
/// `b = 0`, every output is `tanh(9 x 0.1) = tanh(0.9) = 0.71629787019902447`. With
/// `L = sum of the 4 outputs`, `dz = 1 - tanh(0.9)^2 = 0.48691736...` at each output and
/// `dx[i, j] = dz c_i c_j`, where `c = [1, 1, 2, 1, 1]` counts the windows covering row (or
/// column) `i`: row 2 is shared by both window rows, so the centre pixel gets `4 dz`.
/// `dW[k] = sum over the 4 windows of x = 0.4 dz`, `db = 4 dz`.
#[test]
fn golden_overlapping_windows() {
    let spec = conv_spec(1, 5, &[1, 1]);
    let x = vec![0.1f64; 25];
    let w = vec![1.0f64; 9];
    let layers = [ConvLayer {
        weight: &w,
        bias: &[0.0],
    }];
    let rec = conv::forward(&spec, &layers, &x).unwrap();
    for y in rec.output() {
        assert!((y - 0.716_297_870_199_024_5).abs() < 1e-15, "{y}");
    }
    let g = conv::backward(&layers, &rec, &[1.0; 4], true).unwrap();
    let dz = 1.0 - 0.9f64.tanh().powi(2);
    let c = [1.0, 1.0, 2.0, 1.0, 1.0];
    for i in 0..5 {
        for j in 0..5 {
            assert!(
                (g.input[i * 5 + j] - dz * c[i] * c[j]).abs() < 1e-14,
                "dx[{i},{j}]"
            );
        }
    }
    for k in 0..9 {
        assert!((g.weights[0][k] - 0.4 * dz).abs() < 1e-14);
    }
    assert!((g.biases[0][0] - 4.0 * dz).abs() < 1e-14);
}

/// The fused forward equals the direct loops (f64), on a 3-layer stack with several images and
/// channels and on the Omniglot shape (31 -> 15 -> 7 -> 3 -> 1) with fewer channels.
#[test]
fn forward_matches_direct_loops() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for spec in [
        conv_spec(3, 15, &[2, 4, 5, 3]),
        conv_spec(2, 31, &[1, 6, 6, 6, 6]),
        conv_spec(2, 10, &[1, 3]),
    ] {
        let p = Params::<f64>::random(&spec, &mut rng);
        let x = random_vec(spec.input_len(), &mut rng);
        let fused = conv::forward(&spec, &p.layers(), &x).unwrap().output();
        let want = reference(&spec, &p.weights, &p.biases, &x);
        assert!(max_abs_diff(&fused, &want) < 1e-13, "{spec:?}");
    }
}

/// Every gradient (each weight, bias and input value) against central differences of
/// `L = sum r * output` through the direct loops, in f64.
#[test]
fn gradients_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for spec in [conv_spec(3, 15, &[2, 4, 5, 3]), conv_spec(2, 9, &[1, 3, 2])] {
        let p = Params::<f64>::random(&spec, &mut rng);
        let x = random_vec(spec.input_len(), &mut rng);
        let r = random_vec(spec.output_len(), &mut rng);
        let (_, g) = run_f64(&spec, &p, &x, &r);
        let loss = |w: &[Vec<f64>], b: &[Vec<f64>], x: &[f64]| -> f64 {
            reference(&spec, w, b, x)
                .iter()
                .zip(&r)
                .map(|(y, r)| y * r)
                .sum()
        };
        let h = 1e-6;
        let check = |name: &str, analytic: f64, plus: f64, minus: f64| {
            let numeric = (plus - minus) / (2.0 * h);
            assert!(
                (analytic - numeric).abs() < 1e-7 * (1.0 + numeric.abs()),
                "{name}: analytic {analytic}, numeric {numeric} ({spec:?})"
            );
        };
        for l in 0..spec.layers() {
            for k in 0..spec.weight_len(l) {
                let mut w = p.weights.clone();
                w[l][k] += h;
                let plus = loss(&w, &p.biases, &x);
                w[l][k] -= 2.0 * h;
                let minus = loss(&w, &p.biases, &x);
                check(&format!("W{l}[{k}]"), g.weights[l][k], plus, minus);
            }
            for k in 0..spec.channels[l + 1] {
                let mut b = p.biases.clone();
                b[l][k] += h;
                let plus = loss(&p.weights, &b, &x);
                b[l][k] -= 2.0 * h;
                let minus = loss(&p.weights, &b, &x);
                check(&format!("b{l}[{k}]"), g.biases[l][k], plus, minus);
            }
        }
        for k in 0..x.len() {
            let mut xp = x.clone();
            xp[k] += h;
            let plus = loss(&p.weights, &p.biases, &xp);
            xp[k] -= 2.0 * h;
            let minus = loss(&p.weights, &p.biases, &xp);
            check(&format!("x[{k}]"), g.input[k], plus, minus);
        }
    }
}

/// f32 agrees with f64 on the Omniglot shape (64 channels), and without `input_grad` the
/// parameter gradients are the same and the input gradient is empty.
#[test]
fn f32_matches_f64_on_omniglot_shape() {
    let spec = conv_spec(6, 31, &[1, 64, 64, 64, 64]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let p = Params::<f64>::random(&spec, &mut rng);
    let x: Vec<f64> = (0..spec.input_len())
        .map(|_| rng.gen_range(0.0..1.0))
        .collect();
    let r = random_vec(spec.output_len(), &mut rng);
    let (y64, g64) = run_f64(&spec, &p, &x, &r);
    let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let p32 = Params {
        weights: p.weights.iter().map(|w| f(w)).collect(),
        biases: p.biases.iter().map(|b| f(b)).collect(),
    };
    let layers = p32.layers();
    let rec = conv::forward(&spec, &layers, &f(&x)).unwrap();
    let g32 = conv::backward(&layers, &rec, &f(&r), false).unwrap();
    let close = |a: &[f32], b: &[f64], what: &str| {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (k, (&u, &v)) in a.iter().zip(b).enumerate() {
            assert!(
                (u as f64 - v).abs() < 1e-4 * scale.max(1e-3),
                "{what}[{k}]: {u} vs {v}"
            );
        }
    };
    close(&rec.output(), &y64, "output");
    for l in 0..4 {
        close(&g32.weights[l], &g64.weights[l], &format!("dW{l}"));
        close(&g32.biases[l], &g64.biases[l], &format!("db{l}"));
    }
    assert!(g32.input.is_empty());
}

/// Splitting the images over 1, 2 or 5 threads (blocks) gives the same outputs and gradients
/// (up to the rounding of summing the blocks' weight gradients).
#[test]
fn blocks_over_threads_agree() {
    let spec = conv_spec(7, 15, &[1, 8, 8, 4]);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let p = Params::<f64>::random(&spec, &mut rng);
    let x = random_vec(spec.input_len(), &mut rng);
    let r = random_vec(spec.output_len(), &mut rng);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run_f64(&spec, &p, &x, &r))
    };
    let (y1, g1) = run(1);
    for threads in [2, 5] {
        let (y, g) = run(threads);
        assert_eq!(y, y1, "outputs with {threads} threads");
        assert_eq!(g.input, g1.input, "input gradient with {threads} threads");
        for l in 0..spec.layers() {
            assert!(max_abs_diff(&g.weights[l], &g1.weights[l]) < 1e-12);
            assert!(max_abs_diff(&g.biases[l], &g1.biases[l]) < 1e-12);
        }
    }
}

/// Wrong shapes are errors naming what is wrong, never panics.
#[test]
fn shape_errors() {
    let spec = conv_spec(1, 7, &[1, 2, 2]);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let p = Params::<f64>::random(&spec, &mut rng);
    let x = vec![0.0; spec.input_len()];
    let err = |r: Result<conv::ConvForward<f64>, plasticity_kernels::SpecError>| r.unwrap_err().0;
    assert!(err(conv::forward(&spec, &p.layers(), &x[1..])).contains("input"));
    assert!(err(conv::forward(&spec, &p.layers()[..1], &x)).contains("layers"));
    let mut bad = Params::<f64>::random(&spec, &mut rng);
    bad.biases[1].push(0.0);
    assert!(err(conv::forward(&spec, &bad.layers(), &x)).contains("bias 1"));
    let too_small = conv_spec(1, 5, &[1, 2, 2]);
    assert!(err(conv::forward(&too_small, &p.layers(), &x)).contains("side"));
    let rec = conv::forward(&spec, &p.layers(), &x).unwrap();
    let e = conv::backward(&p.layers(), &rec, &[0.0; 3], false).unwrap_err();
    assert!(e.0.contains("grad_output"));
}

/// The `f32` tanh of the forward: within 5e-7 of `f64` `tanh` on a grid of `[-12, 12]`, odd,
/// exactly 0 at 0, inside `[-1, 1]`.
#[test]
fn f32_tanh_is_accurate() {
    let mut worst = 0.0f64;
    for k in -1_200_000..=1_200_000 {
        let x = k as f64 * 1e-5;
        let y = conv::tanh_f32(x as f32);
        assert!(y.abs() <= 1.0);
        assert_eq!(y, -conv::tanh_f32(-(x as f32)));
        worst = worst.max((y as f64 - (x as f32 as f64).tanh()).abs());
    }
    assert!(worst < 5e-7, "max error {worst}");
    assert_eq!(conv::tanh_f32(0.0), 0.0);
    assert_eq!(conv::tanh_f32(1e4), 1.0);
}
