//! The tensor-op episode (the GPU path, `tensor_episode`) run on the CPU backend against the
//! fused CPU kernels: outputs, final trace and every gradient, for both rules, both input
//! modes, the three alpha shapes, with and without clipping, B = 2, and a `T` that is not a
//! multiple of the checkpoint segment. The GPU then runs this same code (`tests/gpu.rs`
//! compares the two devices directly when a GPU is present).

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::TensorData;
use plasticity::tensor_episode::{backward, forward};
use plasticity::tensors::{prim_to_vec, swap_bt};
use plasticity_kernels::{self as kernels, AlphaShape, EpisodeSpec, InputMode, Params, TraceRule};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| scale * (rng.gen::<f32>() * 2.0 - 1.0))
        .collect()
}

fn flex(v: &[f32], shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v.to_vec(), shape))
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= tol * scale,
        "{what}: max abs error {err} > {tol} x {scale}"
    );
}

#[test]
fn tensor_path_equals_the_cpu_kernels_for_every_setting() {
    let (n, b, t) = (7, 2, 11); // segment ceil(sqrt(11)) = 4: segments 4, 4, 3
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut cases = 0;
    for rule in TraceRule::ALL {
        for input in InputMode::ALL {
            for alpha_shape in AlphaShape::ALL {
                for clip in [None, Some(0.05)] {
                    let mut spec = EpisodeSpec::new(n, b, t);
                    spec.rule = rule;
                    spec.input = input;
                    spec.alpha = alpha_shape;
                    spec.clip = clip;
                    let w = random(&mut rng, n * n, 0.5);
                    let alpha = random(&mut rng, alpha_shape.len(n), 0.8);
                    let eta = 0.3;
                    let mut x = random(&mut rng, t * b * n, 1.0); // [T, B, N]
                    if input == InputMode::Clamped {
                        // Half the neurons free (zero input) at each step.
                        for (k, v) in x.iter_mut().enumerate() {
                            if (k * 7 + k / n) % 2 == 0 {
                                *v = 0.0;
                            }
                        }
                    }
                    let y0 = random(&mut rng, b * n, 0.5);
                    let hebb0 = random(&mut rng, b * n * n, 0.1);
                    let gy = random(&mut rng, t * b * n, 1.0); // [T, B, N]

                    let p = Params {
                        w: &w,
                        alpha: &alpha,
                        eta,
                    };
                    let ep = kernels::forward(&spec, &p, &x, &y0, Some(&hebb0), None).unwrap();
                    let want_ys = swap_bt(&ep.ys, t, b, n);
                    let want_hebb = ep.traces.hebb.clone();
                    let g = kernels::backward(&p, ep, &gy, None, None).unwrap();

                    let x_btn = swap_bt(&x, t, b, n);
                    let (ys, hebb, saved) = forward::<Flex>(
                        flex(&w, vec![n, n]),
                        flex(&alpha, spec.alpha.dims(n).to_vec()),
                        eta,
                        flex(&x_btn, vec![b, t, n]),
                        flex(&y0, vec![b, n]),
                        flex(&hebb0, vec![b, n, n]),
                        spec,
                        true,
                    );
                    let what = format!("{rule:?} {input:?} {alpha_shape:?} clip {clip:?}");
                    let v = |t: FlexTensor| prim_to_vec::<Flex>(t);
                    assert_close(&format!("{what}: ys"), &v(ys), &want_ys, 1e-5);
                    assert_close(&format!("{what}: hebb_T"), &v(hebb), &want_hebb, 1e-5);
                    let gy_btn = swap_bt(&gy, t, b, n);
                    let got = backward::<Flex>(saved.unwrap(), flex(&gy_btn, vec![b, t, n]));
                    assert_close(&format!("{what}: dw"), &v(got.w.unwrap()), &g.w, 1e-4);
                    let plastic = &g.plastic;
                    assert_close(
                        &format!("{what}: dalpha"),
                        &v(got.rule.alpha.unwrap()),
                        &plastic.alpha,
                        1e-4,
                    );
                    assert_close(
                        &format!("{what}: deta"),
                        &v(got.rule.eta.unwrap()),
                        &[plastic.rule.eta],
                        1e-4,
                    );
                    assert_close(
                        &format!("{what}: dx"),
                        &v(got.x.unwrap()),
                        &swap_bt(&g.x, t, b, n),
                        1e-4,
                    );
                    assert_close(&format!("{what}: dy0"), &v(got.y0.unwrap()), &g.y0, 1e-4);
                    assert_close(
                        &format!("{what}: dhebb0"),
                        &v(got.hebb0.unwrap()),
                        &plastic.hebb0,
                        1e-4,
                    );
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 24);
}

#[test]
fn tensor_path_treats_an_empty_initial_trace_as_zeros() {
    let (n, b, t) = (5, 3, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let spec = EpisodeSpec::new(n, b, t);
    let w = random(&mut rng, n * n, 0.5);
    let alpha = random(&mut rng, n * n, 0.5);
    let x = random(&mut rng, b * t * n, 1.0);
    let y0 = vec![0.0; b * n];
    let run = |hebb0: FlexTensor| {
        let (ys, hebb, _) = forward::<Flex>(
            flex(&w, vec![n, n]),
            flex(&alpha, vec![n, n]),
            0.1,
            flex(&x, vec![b, t, n]),
            flex(&y0, vec![b, n]),
            hebb0,
            spec,
            false,
        );
        (prim_to_vec::<Flex>(ys), prim_to_vec::<Flex>(hebb))
    };
    let empty = run(flex(&[], vec![0, 0, 0]));
    let zeros = run(flex(&vec![0.0; b * n * n], vec![b, n, n]));
    assert_eq!(empty, zeros);
    assert!(empty.1.iter().any(|&h| h != 0.0), "the trace moved");
}
