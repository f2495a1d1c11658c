//! The plastic feed-forward layer (`dense.rs`) against the equations written out in the test
//! (ICML 2018 eq. 1-3 with the layer's input as presynaptic activity), in f64: logits step by
//! step, and the gradients of every input (w, alpha, eta, x, offset) against central finite
//! differences of that reference, for both rules, the three activations, and `T` long enough
//! for the backward to recompute its traces from checkpoints.

use plasticity_kernels::dense::{
    dense_backward, dense_forward, DenseActivation, DenseParams, DenseSpec,
};
use plasticity_kernels::TraceRule;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Case {
    spec: DenseSpec,
    w: Vec<f64>,
    alpha: Vec<f64>,
    eta: f64,
    x: Vec<f64>,
    offset: Vec<f64>,
    gz: Vec<f64>,
}

/// The layer as the paper's equations, time-major, one episode after another: returns the
/// logits `z: [T, B, O]`.
fn reference(c: &Case) -> Vec<f64> {
    let s = &c.spec;
    let (i_n, o_n, b_n, t_n) = (s.inputs, s.outputs, s.batch, s.steps);
    let mut z = vec![0.0; t_n * b_n * o_n];
    for b in 0..b_n {
        let mut hebb = vec![0.0; i_n * o_n];
        for t in 0..t_n {
            let x = &c.x[(t * b_n + b) * i_n..(t * b_n + b + 1) * i_n];
            let mut zt = vec![0.0; o_n];
            for (j, zj) in zt.iter_mut().enumerate() {
                for (i, &xi) in x.iter().enumerate() {
                    let k = i * o_n + j;
                    *zj += (c.w[k] + c.alpha[k] * hebb[k]) * xi;
                }
                if !c.offset.is_empty() {
                    *zj += c.offset[(t * b_n + b) * o_n + j];
                }
            }
            let y: Vec<f64> = match s.activation {
                DenseActivation::Softmax => {
                    let e: Vec<f64> = zt.iter().map(|v| v.exp()).collect();
                    let sum: f64 = e.iter().sum();
                    e.iter().map(|v| v / sum).collect()
                }
                DenseActivation::Tanh => zt.iter().map(|v| v.tanh()).collect(),
                DenseActivation::Identity => zt.clone(),
            };
            for (i, &xi) in x.iter().enumerate() {
                for (j, &yj) in y.iter().enumerate() {
                    let h = &mut hebb[i * o_n + j];
                    *h = match s.rule {
                        // eq. 2: (1 - eta) Hebb + eta x_i y_j
                        TraceRule::Hebb => (1.0 - c.eta) * *h + c.eta * xi * yj,
                        // eq. 3: Hebb + eta y_j (x_i - Hebb y_j)
                        TraceRule::Oja => *h + c.eta * yj * (xi - *h * yj),
                    };
                }
            }
            z[(t * b_n + b) * o_n..(t * b_n + b + 1) * o_n].copy_from_slice(&zt);
        }
    }
    z
}

fn loss(c: &Case) -> f64 {
    reference(c).iter().zip(&c.gz).map(|(a, b)| a * b).sum()
}

fn case(rng: &mut ChaCha8Rng, rule: TraceRule, activation: DenseActivation, steps: usize) -> Case {
    let (inputs, outputs, batch) = (
        rng.gen_range(1..6),
        rng.gen_range(1..5),
        rng.gen_range(1..4),
    );
    let spec = DenseSpec {
        inputs,
        outputs,
        batch,
        steps,
        rule,
        activation,
    };
    let mut v = |n: usize, s: f64| -> Vec<f64> { (0..n).map(|_| rng.gen_range(-s..s)).collect() };
    let (io, tb) = (inputs * outputs, steps * batch);
    Case {
        w: v(io, 0.8),
        alpha: v(io, 0.8),
        eta: 0.0,
        x: v(tb * inputs, 1.0),
        offset: v(tb * outputs, 0.5),
        gz: v(tb * outputs, 1.0),
        spec,
    }
}

#[test]
fn dense_layer_matches_the_equations_and_their_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut checked = 0;
    for rule in TraceRule::ALL {
        for activation in [
            DenseActivation::Softmax,
            DenseActivation::Tanh,
            DenseActivation::Identity,
        ] {
            for steps in [1, 2, 7] {
                let mut c = case(&mut rng, rule, activation, steps);
                c.eta = rng.gen_range(0.05..0.6);
                if steps == 2 {
                    c.offset.clear(); // no offset
                }
                let name = format!("{rule:?} {activation:?} T={steps} {:?}", c.spec);
                let p = DenseParams {
                    w: &c.w,
                    alpha: &c.alpha,
                    eta: c.eta,
                };
                let ep = dense_forward(&c.spec, &p, &c.x, &c.offset).expect("valid case");
                for (a, b) in ep.logits().iter().zip(reference(&c)) {
                    assert!((a - b).abs() < 1e-12, "{name}: logits {a} vs {b}");
                }
                let g = dense_backward(&p, &ep, &c.gz).expect("valid case");
                let h = 1e-6;
                let mut check = |what: &str, analytic: f64, set: &dyn Fn(&mut Case, f64)| {
                    let (mut plus, mut minus) = (clone(&c), clone(&c));
                    set(&mut plus, h);
                    set(&mut minus, -h);
                    let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                    let tol = 1e-6 * (1.0 + fd.abs());
                    assert!(
                        (analytic - fd).abs() < tol,
                        "{name}: d{what}: kernel {analytic}, finite differences {fd}"
                    );
                    checked += 1;
                };
                for k in 0..c.w.len() {
                    check("w", g.w[k], &|c, d| c.w[k] += d);
                    check("alpha", g.alpha[k], &|c, d| c.alpha[k] += d);
                }
                check("eta", g.eta, &|c, d| c.eta += d);
                for k in 0..c.x.len() {
                    check("x", g.x[k], &|c, d| c.x[k] += d);
                }
                for k in 0..c.offset.len() {
                    check("offset", g.offset[k], &|c, d| c.offset[k] += d);
                }
            }
        }
    }
    assert!(checked > 300, "only {checked} derivatives checked");
}

fn clone(c: &Case) -> Case {
    Case {
        spec: c.spec,
        w: c.w.clone(),
        alpha: c.alpha.clone(),
        eta: c.eta,
        x: c.x.clone(),
        offset: c.offset.clone(),
        gz: c.gz.clone(),
    }
}

#[test]
fn dense_layer_rejects_bad_sizes_with_a_message() {
    let spec = DenseSpec {
        inputs: 3,
        outputs: 2,
        batch: 1,
        steps: 2,
        rule: TraceRule::Oja,
        activation: DenseActivation::Softmax,
    };
    let w = vec![0.0f32; 6];
    let p = DenseParams {
        w: &w,
        alpha: &w,
        eta: 0.1,
    };
    let err = dense_forward(&spec, &p, &[0.0; 5], &[]).unwrap_err();
    assert!(err.0.contains("x: expected 6 values, got 5"), "{}", err.0);
    let err = dense_forward(&DenseSpec { inputs: 0, ..spec }, &p, &[], &[]).unwrap_err();
    assert!(err.0.contains("inputs: must be positive"), "{}", err.0);
    let huge = DenseSpec {
        inputs: 1 << 20,
        outputs: 1 << 20,
        ..spec
    };
    assert!(dense_forward(&huge, &p, &[], &[]).is_err());
}
