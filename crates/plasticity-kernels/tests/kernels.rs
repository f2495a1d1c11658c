//! Golden values, finite-difference gradient checks, reversal against stored traces, errors.

use plasticity_kernels::{
    backward, forward, reference, AlphaShape, BackwardStrategy, EpisodeSpec, Grads, InputMode,
    Params, Real, TraceRule,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{
    add_into, assert_close, assert_derivative, central_difference, EpisodeOf, RuleParams,
};

// ---------------------------------------------------------------------------------------------
// Golden values: one step, 3 neurons, computed by hand.
//
// y = [1, 0.5, -1], x = [0, 0.1, 0], alpha = 0.5 everywhere,
// w    = [[0.1, 0.2, 0.0], [0.0, 0.1, 0.3], [0.2, 0.0, 0.1]],
// Hebb = [[0.2, 0, 0], [0, 0, 0], [0, 0, -0.2]].
// pre_0 = (0.1 + 0.5*0.2)*1 + 0*0.5 + 0.2*(-1)               = 0      -> y'_0 = 0
// pre_1 = 0.2*1 + 0.1*0.5 + 0*(-1) + 0.1                       = 0.35   -> y'_1 = tanh(0.35)
// pre_2 = 0*1 + 0.3*0.5 + (0.1 + 0.5*(-0.2))*(-1)              = 0.15   -> y'_2 = tanh(0.15)
// Decaying Hebb, eta = 0.1: Hebb'_ij = 0.9 Hebb_ij + 0.1 y_i y'_j, e.g.
//   Hebb'_00 = 0.18, Hebb'_01 = 0.1 tanh(0.35), Hebb'_22 = -0.18 - 0.1 tanh(0.15).
// Oja, eta = 0.1: Hebb'_ij = Hebb_ij + 0.1 y'_j (y_i - Hebb_ij y'_j), e.g.
//   Hebb'_00 = 0.2, Hebb'_22 = -0.2 + 0.1 t (-1 + 0.2 t) with t = tanh(0.15).
// ---------------------------------------------------------------------------------------------

const T35: f64 = 0.3363755443363322; // tanh(0.35)
const T15: f64 = 0.14888503362331798; // tanh(0.15)

/// (w, alpha, Hebb, y, x)
type Golden = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

fn golden_inputs() -> Golden {
    let w = vec![0.1, 0.2, 0.0, 0.0, 0.1, 0.3, 0.2, 0.0, 0.1];
    let alpha = vec![0.5; 9];
    let hebb = vec![0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.2];
    let y = vec![1.0, 0.5, -1.0];
    let x = vec![0.0, 0.1, 0.0];
    (w, alpha, hebb, y, x)
}

fn golden_expected(rule: TraceRule) -> (Vec<f64>, Vec<f64>) {
    let y_new = vec![0.0, T35, T15];
    // The rules differ in Hebb'_00 and Hebb'_22 only (the other entries of Hebb are 0).
    let (h00, h22) = match rule {
        TraceRule::Hebb => (0.18, -0.18 - 0.1 * T15),
        TraceRule::Oja => (0.2, -0.2 + 0.1 * T15 * (-1.0 + 0.2 * T15)),
    };
    let hebb = vec![
        h00,
        0.1 * T35,
        0.1 * T15, //
        0.0,
        0.05 * T35,
        0.05 * T15, //
        0.0,
        -0.1 * T35,
        h22,
    ];
    (y_new, hebb)
}

/// The fused forward of one episode of `spec` from the golden weights and state, input `x`.
fn golden_forward(spec: &EpisodeSpec, x: &[f64]) -> plasticity_kernels::Episode<f64> {
    let (w, alpha, hebb, y, _) = golden_inputs();
    let p = Params {
        w: &w,
        alpha: &alpha,
        eta: 0.1,
    };
    forward(spec, &p, x, &y, Some(&hebb), None).unwrap()
}

#[test]
fn one_step_matches_hand_computation_for_both_rules() {
    for rule in TraceRule::ALL {
        let (w, alpha, hebb, y, x) = golden_inputs();
        let (want_y, want_h) = golden_expected(rule);
        let (y1, h1) = reference::step(
            rule,
            InputMode::Additive,
            None,
            AlphaShape::PerConnection,
            &w,
            &alpha,
            0.1,
            &y,
            &hebb,
            &x,
        );
        assert_close("reference y'", &y1, &want_y, 1e-15);
        assert_close("reference Hebb'", &h1, &want_h, 1e-15);
        let spec = EpisodeSpec {
            rule,
            ..EpisodeSpec::new(3, 1, 1)
        };
        let ep = golden_forward(&spec, &x);
        assert_close("fused y'", &ep.ys, &want_y, 1e-15);
        assert_close("fused Hebb'", &ep.traces.hebb, &want_h, 1e-15);
    }
}

#[test]
fn clamped_neurons_output_their_input_and_clip_bounds_the_trace() {
    let x = vec![0.7, 0.0, 0.0];
    let spec = EpisodeSpec {
        input: InputMode::Clamped,
        clip: Some(0.19),
        ..EpisodeSpec::new(3, 1, 1)
    };
    let ep = golden_forward(&spec, &x);
    // Neuron 0 is clamped to 0.7; neuron 1 has no input now: pre_1 = 0.25.
    assert_close("clamped y'", &ep.ys, &[0.7, 0.25f64.tanh(), T15], 1e-15);
    // Hebb'_00 = 0.9*0.2 + 0.1*1*0.7 = 0.25, clipped to 0.19.
    assert!(
        (ep.traces.hebb[0] - 0.19).abs() < 1e-15,
        "{}",
        ep.traces.hebb[0]
    );
    assert!(ep.traces.hebb.iter().all(|h| h.abs() <= 0.19));
}

// ---------------------------------------------------------------------------------------------
// Random problems.
// ---------------------------------------------------------------------------------------------

/// A random fixed-rate problem: the rule's parameter is `eta`.
type Problem<F> = common::Problem<F, F>;

fn problem<F: Real>(spec: EpisodeSpec, eta: f64, seed: u64) -> Problem<F> {
    Problem::random(spec, seed, |_| F::of(eta))
}

impl<F: Real> Problem<F> {
    fn params(&self) -> Params<'_, F> {
        Params {
            w: &self.w,
            alpha: &self.alpha,
            eta: self.rule,
        }
    }
}

impl<F: Real> RuleParams<F> for F {
    fn forward(p: &Problem<F>) -> plasticity_kernels::Episode<F> {
        forward(&p.spec, &p.params(), &p.x, &p.y0, Some(&p.h0), None).unwrap()
    }

    fn backward(p: &Problem<F>, ep: plasticity_kernels::Episode<F>) -> Grads<F> {
        backward(&p.params(), ep, &p.gy, Some(&p.gh), None).unwrap()
    }
}

/// Central finite difference of the loss along one coordinate picked by `field`.
fn numeric(p: &mut Problem<f64>, field: &str, k: usize) -> f64 {
    central_difference(
        p,
        |p| match field {
            "eta" => &mut p.rule,
            _ => &mut p.buffer_mut(field)[k],
        },
        Problem::loss,
    )
}

fn check_gradients(spec: EpisodeSpec, eta: f64, seed: u64) {
    let mut p = problem::<f64>(spec, eta, seed);
    let g = p.grads();
    let label = format!("{spec:?} eta={eta}");
    let check = |field: &str, analytic: &[f64], p: &mut Problem<f64>| {
        // Every coordinate of small buffers, a spread of them for large ones.
        let stride = (analytic.len() / 40).max(1);
        for k in (0..analytic.len()).step_by(stride) {
            if field == "x" && spec.input == InputMode::Clamped && p.x[k] == 0.0 {
                continue; // x = 0 is the switch point between free and clamped: no derivative.
            }
            let num = numeric(p, field, k);
            assert_derivative(&format!("{label}: d/d{field}[{k}]"), analytic[k], num);
        }
    };
    check("w", &g.w, &mut p);
    check("alpha", &g.plastic.alpha, &mut p);
    check("eta", &[g.plastic.rule.eta], &mut p);
    check("x", &g.x, &mut p);
    check("y0", &g.y0, &mut p);
    check("hebb0", &g.plastic.hebb0, &mut p);
}

#[test]
fn gradients_match_finite_differences_for_every_rule_mode_and_alpha_shape() {
    let mut seed = 0;
    for rule in TraceRule::ALL {
        for clip in [None, Some(0.12)] {
            for input in InputMode::ALL {
                for alpha in AlphaShape::ALL {
                    seed += 1;
                    let spec = EpisodeSpec {
                        rule,
                        clip,
                        input,
                        alpha,
                        ..EpisodeSpec::new(5, 2, 7)
                    };
                    check_gradients(spec, 0.3, seed);
                }
            }
        }
    }
}

#[test]
fn gradients_match_finite_differences_for_each_backward_strategy() {
    for backward in [
        BackwardStrategy::Auto,
        BackwardStrategy::Checkpoint { segment: 0 },
        BackwardStrategy::Checkpoint { segment: 3 },
        BackwardStrategy::StoreAll,
    ] {
        for rule in TraceRule::ALL {
            let spec = EpisodeSpec {
                rule,
                backward,
                ..EpisodeSpec::new(4, 3, 10)
            };
            check_gradients(spec, 0.05, 100);
        }
    }
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) as f64;
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

/// A random problem whose recurrent gain is below one (as in trained networks), so that the
/// comparison measures the trace recovery rather than the chaos of a random network.
fn tame_problem(spec: EpisodeSpec, eta: f64, seed: u64) -> Problem<f32> {
    let mut p = problem::<f32>(spec, eta, seed);
    let scale = 1.0 / (spec.neurons as f32).sqrt();
    p.w.iter_mut()
        .chain(p.alpha.iter_mut())
        .for_each(|v| *v *= scale);
    p
}

fn compare_to_store_all(spec: EpisodeSpec, eta: f64, seed: u64, tol: f64) -> bool {
    let p = tame_problem(spec, eta, seed);
    let stored = Problem {
        spec: EpisodeSpec {
            backward: BackwardStrategy::StoreAll,
            ..spec
        },
        ..tame_problem(spec, eta, seed)
    };
    let (a, b) = (p.grads(), stored.grads());
    for (what, x, y) in [
        ("w", &a.w, &b.w),
        ("alpha", &a.plastic.alpha, &b.plastic.alpha),
        ("x", &a.x, &b.x),
        ("y0", &a.y0, &b.y0),
        ("hebb0", &a.plastic.hebb0, &b.plastic.hebb0),
    ] {
        let d = max_rel_diff(x, y);
        assert!(
            d <= tol,
            "{spec:?} eta={eta}: {what} differs from the stored-trace backward by {d:e} (relative)"
        );
    }
    let d = ((a.plastic.rule.eta - b.plastic.rule.eta).abs() / b.plastic.rule.eta.abs().max(1e-30))
        as f64;
    assert!(d <= tol, "{spec:?}: eta gradient differs by {d:e}");
    a.reversal_rejected
}

#[test]
fn reversed_and_recomputed_backward_equal_the_stored_trace_backward() {
    // The pattern task's time scale (T = 106, eta = 0.01) at a test-sized N, in f32.
    for rule in TraceRule::ALL {
        for alpha in [AlphaShape::PerConnection, AlphaShape::PerNeuron] {
            let spec = EpisodeSpec {
                rule,
                alpha,
                ..EpisodeSpec::new(48, 2, 106)
            };
            let p = problem::<f32>(spec, 0.01, 7);
            let ep = p.run();
            assert!(ep.reverses_trace(), "eta = 0.01, T = 106 should reverse");
            assert!(
                !compare_to_store_all(spec, 0.01, 7, 1e-5),
                "reversal rejected at eta = 0.01"
            );
            let ckpt = EpisodeSpec {
                backward: BackwardStrategy::Checkpoint { segment: 0 },
                ..spec
            };
            compare_to_store_all(ckpt, 0.01, 7, 1e-5);
        }
    }
    // Clipping forces checkpoints.
    let spec = EpisodeSpec {
        clip: Some(0.05),
        ..EpisodeSpec::new(32, 3, 60)
    };
    compare_to_store_all(spec, 0.2, 8, 1e-5);
}

#[test]
fn large_eta_does_not_reverse_and_stays_exact() {
    // (1 - 0.3)^-100 is astronomically large: the forward must plan checkpoints.
    let spec = EpisodeSpec::new(16, 2, 100);
    let p = problem::<f32>(spec, 0.3, 9);
    let ep = p.run();
    assert!(!ep.reverses_trace());
    compare_to_store_all(spec, 0.3, 9, 1e-5);
    // Near the planning threshold the reversal may be tried and rejected: either way the
    // gradients must equal the stored-trace ones.
    compare_to_store_all(EpisodeSpec::new(16, 2, 106), 0.06, 10, 1e-5);
}

#[test]
fn fused_forward_matches_the_reference_step_by_step() {
    for rule in TraceRule::ALL {
        for input in InputMode::ALL {
            let spec = EpisodeSpec {
                rule,
                input,
                clip: Some(0.3),
                alpha: AlphaShape::PerNeuron,
                ..EpisodeSpec::new(6, 3, 9)
            };
            let p = problem::<f64>(spec, 0.2, 11);
            let ep = p.run();
            let (n, bn) = (6, 18);
            for b in 0..3 {
                let mut y = p.y0[b * n..(b + 1) * n].to_vec();
                let mut h = p.h0[b * n * n..(b + 1) * n * n].to_vec();
                for t in 0..9 {
                    let x = &p.x[t * bn + b * n..t * bn + (b + 1) * n];
                    (y, h) = reference::step(
                        rule,
                        input,
                        Some(0.3),
                        spec.alpha,
                        &p.w,
                        &p.alpha,
                        0.2,
                        &y,
                        &h,
                        x,
                    );
                    assert_close("y", &ep.ys[t * bn + b * n..t * bn + (b + 1) * n], &y, 1e-12);
                }
                assert_close(
                    "Hebb_T",
                    &ep.traces.hebb[b * n * n..(b + 1) * n * n],
                    &h,
                    1e-12,
                );
            }
        }
    }
}

#[test]
fn same_inputs_give_bitwise_identical_results() {
    let spec = EpisodeSpec::new(300, 2, 20);
    let p = problem::<f32>(spec, 0.01, 12);
    let (a, b) = (p.grads(), p.grads());
    assert_eq!(a.w, b.w);
    assert_eq!(a.plastic.alpha, b.plastic.alpha);
    assert_eq!(a.plastic.rule.eta.to_bits(), b.plastic.rule.eta.to_bits());
}

#[test]
fn wrong_shapes_and_sizes_are_errors_naming_the_buffer() {
    let spec = EpisodeSpec::new(3, 1, 2);
    let w = vec![0.0f32; 9];
    let alpha = vec![0.0f32; 9];
    let p = Params {
        w: &w,
        alpha: &alpha,
        eta: 0.01,
    };
    let err = forward(&spec, &p, &[0.0; 5], &[0.0; 3], None, None).unwrap_err();
    assert!(err.0.starts_with("x: expected 6 values, got 5"), "{err}");
    let err = forward(
        &spec,
        &Params {
            alpha: &alpha[..3],
            ..p
        },
        &[0.0; 6],
        &[0.0; 3],
        None,
        None,
    )
    .unwrap_err();
    assert!(err.0.starts_with("alpha: expected 9 values"), "{err}");
    let err = forward(&EpisodeSpec::new(0, 1, 2), &p, &[], &[], None, None).unwrap_err();
    assert!(err.0.contains("must be positive"), "{err}");
    let err = forward(
        &EpisodeSpec {
            clip: Some(-1.0),
            ..spec
        },
        &p,
        &[0.0; 6],
        &[0.0; 3],
        None,
        None,
    )
    .unwrap_err();
    assert!(err.0.contains("clip"), "{err}");
    let err = forward(
        &spec,
        &Params { eta: f32::NAN, ..p },
        &[0.0; 6],
        &[0.0; 3],
        None,
        None,
    )
    .unwrap_err();
    assert!(err.0.contains("eta"), "{err}");
    let ep = forward(&spec, &p, &[0.0; 6], &[0.0; 3], None, None).unwrap();
    let err = backward(&p, ep, &[0.0; 4], None, None).unwrap_err();
    assert!(err.0.starts_with("grad of ys"), "{err}");
}

#[test]
fn stepping_in_place_matches_the_episode_forward() {
    // Both rules, clipping, clamped input, alpha shapes, one and several threads: the stepper's
    // activities and final trace equal the whole-episode forward's bit for bit.
    let mut case = 0u64;
    for (n, b, t) in [(6, 2, 8), (200, 2, 4)] {
        for rule in TraceRule::ALL {
            for (clip, input, alpha) in [
                (None, InputMode::Additive, AlphaShape::PerConnection),
                (Some(0.05), InputMode::Additive, AlphaShape::Scalar),
                (None, InputMode::Clamped, AlphaShape::PerNeuron),
            ] {
                case += 1;
                let spec = EpisodeSpec {
                    rule,
                    clip,
                    input,
                    alpha,
                    ..EpisodeSpec::new(n, b, t)
                };
                let p = problem::<f32>(spec, 0.3, case);
                let ep = p.run();
                let one = EpisodeSpec { steps: 1, ..spec };
                let mut st =
                    plasticity_kernels::Stepper::new(&one, &p.y0, Some(&p.h0), None).unwrap();
                let bn = b * n;
                for s in 0..t {
                    let y = st.step(&p.params(), &p.x[s * bn..(s + 1) * bn]).unwrap();
                    assert_eq!(y, &ep.ys[s * bn..(s + 1) * bn], "{spec:?}: y step {s}");
                }
                assert_eq!(st.y(), &ep.ys[(t - 1) * bn..]);
                let (_, hebb, _) = st.finish();
                assert_eq!(hebb, ep.traces.hebb, "{spec:?}: Hebb_T");
            }
        }
    }
    let spec = EpisodeSpec::new(4, 1, 1);
    let p = problem::<f32>(spec, 0.1, 0);
    let mut st = plasticity_kernels::Stepper::new(&spec, &p.y0, None, None).unwrap();
    assert!(st.step(&p.params(), &[0.0; 5]).unwrap_err().0.contains("x"));
    let modulated = EpisodeSpec {
        modulation: plasticity_kernels::Modulation::Simple { fan_out: false },
        ..spec
    };
    // The fixed-rate parameters refuse a modulated spec rather than ignore the modulation.
    let mut st = plasticity_kernels::Stepper::new(&modulated, &p.y0, None, None).unwrap();
    assert!(st
        .step(&p.params(), &[0.0; 4])
        .unwrap_err()
        .0
        .contains("modulation"));
}

#[test]
fn a_batch_gives_the_sum_of_its_episodes_run_one_by_one() {
    // 24 episodes (at least as many as threads: the batch may run episode by episode) against
    // each episode alone (batch 1): outputs, final trace and every gradient agree to rounding,
    // for the reversed and the checkpointed backward.
    let (n, b, t) = (9, 24, 7);
    for (rule, clip) in [(TraceRule::Hebb, None), (TraceRule::Oja, Some(0.3))] {
        let spec = EpisodeSpec {
            rule,
            clip,
            ..EpisodeSpec::new(n, b, t)
        };
        let p = problem::<f64>(spec, 0.2, 31);
        let ep = p.run();
        let grads = p.grads();
        let nn = n * n;
        let (mut sum_w, mut sum_alpha, mut sum_eta) =
            (vec![0.0; nn], vec![0.0; p.alpha.len()], 0.0);
        let label = format!("{rule:?} {clip:?}");
        let alone = p.episodes_alone(&label, &ep, &grads);
        for (bi, g1) in alone.iter().enumerate() {
            let e = EpisodeOf { b, n, bi };
            let label = format!("{label} episode {bi}");
            assert_close(&format!("{label} dy0"), &g1.y0, &e.state(&grads.y0), 1e-10);
            add_into(&mut sum_w, &g1.w);
            add_into(&mut sum_alpha, &g1.plastic.alpha);
            sum_eta += g1.plastic.rule.eta;
        }
        assert_close("dw", &grads.w, &sum_w, 1e-10);
        assert_close("dalpha", &grads.plastic.alpha, &sum_alpha, 1e-10);
        assert_close("deta", &[grads.plastic.rule.eta], &[sum_eta], 1e-10);
    }
}

// ---------------------------------------------------------------------------------------------
// The network without plasticity (`EpisodeSpec::plastic = false`, rule `NoTrace`): the same
// activations and gradients (of w, x, y0) as the plastic episode with alpha = 0 (to rounding:
// the plastic network runs a batch one episode per thread and sums dL/dw episode by episode),
// with no trace.
// ---------------------------------------------------------------------------------------------

#[test]
fn network_without_plasticity_equals_the_plastic_one_with_alpha_zero() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (input, batch, n) in [
        (InputMode::Additive, 1, 5),
        (InputMode::Clamped, 3, 7),
        (InputMode::Additive, 4, 40),
    ] {
        let t = 6;
        let mut v =
            |len: usize| -> Vec<f64> { (0..len).map(|_| rng.gen_range(-0.9..0.9)).collect() };
        let (w, x, y0, gy) = (v(n * n), v(t * batch * n), v(batch * n), v(t * batch * n));
        let x = match input {
            // Clamped: about half the inputs zero (free neurons).
            InputMode::Clamped => x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect(),
            InputMode::Additive => x,
        };
        let plastic = EpisodeSpec {
            input,
            ..EpisodeSpec::new(n, batch, t)
        };
        let fixed = EpisodeSpec {
            plastic: false,
            ..plastic
        };
        let zeros = vec![0.0; n * n];
        let with_zero_alpha = Params {
            w: &w,
            alpha: &zeros,
            eta: 0.3,
        };
        let without = Params {
            w: &w,
            alpha: &[],
            eta: 0.0,
        };
        let a = forward(&plastic, &with_zero_alpha, &x, &y0, None, None).unwrap();
        let b = forward(&fixed, &without, &x, &y0, None, None).unwrap();
        let close = |what: &str, p: &[f64], q: &[f64]| {
            assert_eq!(p.len(), q.len(), "{what}: lengths");
            for (k, (u, v)) in p.iter().zip(q).enumerate() {
                assert!(
                    (u - v).abs() < 1e-12,
                    "{input:?} B={batch} N={n}: {what}[{k}] {u} vs {v}"
                );
            }
        };
        close("ys", &a.ys, &b.ys);
        assert!(b.traces.hebb.is_empty(), "no trace is kept");
        let ga = backward(&with_zero_alpha, a, &gy, None, None).unwrap();
        let gb = backward(&without, b, &gy, None, None).unwrap();
        close("dL/dw", &ga.w, &gb.w);
        close("dL/dx", &ga.x, &gb.x);
        close("dL/dy0", &ga.y0, &gb.y0);
        assert_eq!(gb.plastic.rule.eta, 0.0);
        // The stepper gives the forward's activations.
        let mut stepper = plasticity_kernels::Stepper::new(&fixed, &y0, None, None).unwrap();
        for s in 0..t {
            let y = stepper
                .step(&without, &x[s * batch * n..(s + 1) * batch * n])
                .unwrap();
            let fwd = forward(&fixed, &without, &x, &y0, None, None).unwrap();
            close("stepper", y, &fwd.ys[s * batch * n..(s + 1) * batch * n]);
        }
    }
    // A plastic alpha handed to a network without plasticity is a size error, not ignored.
    let spec = EpisodeSpec {
        plastic: false,
        ..EpisodeSpec::new(2, 1, 1)
    };
    let p = Params {
        w: &[0.0f64; 4],
        alpha: &[0.0; 4],
        eta: 0.1,
    };
    let err = forward(&spec, &p, &[0.0; 2], &[0.0; 2], None, None).unwrap_err();
    assert!(err.0.contains("alpha: expected 0 values"), "{}", err.0);
}
