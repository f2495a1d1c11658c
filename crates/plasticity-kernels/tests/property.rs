//! Property test of the one engine against `reference.rs`, the papers' step written out: random
//! trace rule, modulation (with and without fan-out), alpha shape, clip, input mode, batch `B`,
//! steps `T` and neurons `N` (small ones, and a few large enough to split the rows across
//! threads or to run the batch one episode per thread). For each case, in f64:
//! - the engine's activations, final traces and modulator equal the reference's, step by step;
//! - the stepper's equal the engine's forward;
//! - gradients of a random linear loss of the outputs and final traces, for sampled entries of
//!   every parameter, input and initial state, equal central finite differences of the
//!   *reference* (so the engine's backward is checked against the equations, not against itself).
//!
//! The cases come from a fixed seed (ChaCha8), so a failure is reproducible; its message names
//! the case.

use plasticity_kernels::{
    backward, forward, reference, AlphaShape, BackwardStrategy, EpisodeSpec, InputMode,
    ModulatedParams, Modulation, Modulator, Params, Stepper, TraceRule,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{
    assert_close_rel, assert_derivative, central_difference, clamp_some, modulated_params, uniform,
};

#[derive(Clone, Debug)]
struct Case {
    spec: EpisodeSpec,
    w: Vec<f64>,
    alpha: Vec<f64>,
    eta: f64,
    md: Modulator<f64>,
    x: Vec<f64>,
    y0: Vec<f64>,
    h0: Vec<f64>,
    e0: Vec<f64>,
    gy: Vec<f64>,
    gh: Vec<f64>,
    ge: Vec<f64>,
}

/// What a run produces: `ys: [T, B, N]`, `hebb, elig: [B, N, N]`, `modulator: [T, B]`.
struct Outputs {
    ys: Vec<f64>,
    hebb: Vec<f64>,
    elig: Vec<f64>,
    modulator: Vec<f64>,
}

fn random_case(rng: &mut ChaCha8Rng, large: bool) -> Case {
    let modulation = match rng.gen_range(0..5) {
        0 | 1 => Modulation::None,
        2 => Modulation::Simple { fan_out: rng.gen() },
        _ => Modulation::Retroactive { fan_out: rng.gen() },
    };
    let rule = if modulation == Modulation::None && rng.gen() {
        TraceRule::Oja
    } else {
        TraceRule::Hebb
    };
    let alpha = AlphaShape::ALL[rng.gen_range(0..3)];
    let input = if rng.gen_range(0..3) == 0 {
        InputMode::Clamped
    } else {
        InputMode::Additive
    };
    let clip = match rng.gen_range(0..3) {
        0 => Some(rng.gen_range(0.05..0.4)),
        _ => None,
    };
    let backward = match rng.gen_range(0..4) {
        0 => BackwardStrategy::Checkpoint {
            segment: rng.gen_range(0..4),
        },
        1 => BackwardStrategy::StoreAll,
        _ => BackwardStrategy::Auto,
    };
    let (n, b, t) = if large {
        // N^2 B above the row-split threshold, or a batch of mid-sized episodes.
        if rng.gen() {
            (rng.gen_range(182..200), 1, rng.gen_range(1..4))
        } else {
            (
                rng.gen_range(20..40),
                rng.gen_range(2..5),
                rng.gen_range(2..5),
            )
        }
    } else {
        (
            rng.gen_range(1..7),
            rng.gen_range(1..5),
            rng.gen_range(1..8),
        )
    };
    let spec = EpisodeSpec {
        rule,
        clip,
        input,
        alpha,
        backward,
        modulation,
        ..EpisodeSpec::new(n, b, t)
    };
    let mut uniform = |scale: f64, len: usize| -> Vec<f64> { uniform(rng, scale, len) };
    let scale_w = 1.5 / (n as f64).sqrt();
    let fan = if modulation.fan_out() { n } else { 0 };
    let mut x = uniform(1.0, t * b * n);
    if input == InputMode::Clamped {
        clamp_some(&mut x, n);
    }
    Case {
        spec,
        w: uniform(scale_w, n * n),
        alpha: uniform(scale_w, alpha.len(n)),
        eta: uniform(0.4, 1)[0].abs(),
        md: Modulator {
            m: uniform(1.0, n),
            m_bias: uniform(0.5, 1)[0],
            fan_w: uniform(1.0, fan),
            fan_b: uniform(0.3, fan),
            eta_e: uniform(0.5, 1)[0].abs(),
        },
        x,
        y0: uniform(0.5, b * n),
        h0: uniform(0.1, b * n * n),
        e0: uniform(0.3, b * n * n),
        gy: uniform(1.0, t * b * n),
        gh: uniform(1.0, b * n * n),
        ge: uniform(1.0, b * n * n),
    }
}

impl Case {
    fn modulated(&self) -> bool {
        self.spec.modulation != Modulation::None
    }

    fn params(&self) -> Params<'_, f64> {
        Params {
            w: &self.w,
            alpha: &self.alpha,
            eta: self.eta,
        }
    }

    fn modulated_params(&self) -> ModulatedParams<'_, f64> {
        modulated_params(&self.md, &self.w, &self.alpha)
    }

    /// The papers' step, one episode and one step at a time.
    fn reference(&self) -> Outputs {
        let s = &self.spec;
        let (n, b, t_len) = (s.neurons, s.batch, s.steps);
        let nn = n * n;
        let mut out = Outputs {
            ys: vec![0.0; t_len * b * n],
            hebb: Vec::new(),
            elig: Vec::new(),
            modulator: vec![0.0; if self.modulated() { t_len * b } else { 0 }],
        };
        for bi in 0..b {
            let mut y = self.y0[bi * n..(bi + 1) * n].to_vec();
            let mut hebb = self.h0[bi * nn..(bi + 1) * nn].to_vec();
            let mut elig = self.e0[bi * nn..(bi + 1) * nn].to_vec();
            for t in 0..t_len {
                let x = &self.x[(t * b + bi) * n..(t * b + bi + 1) * n];
                if self.modulated() {
                    let (y1, h1, e1, m) = reference::modulated_step(
                        s.modulation,
                        s.input,
                        s.clip,
                        s.alpha,
                        &self.w,
                        &self.alpha,
                        &self.md.m,
                        self.md.m_bias,
                        &self.md.fan_w,
                        &self.md.fan_b,
                        self.md.eta_e,
                        &y,
                        &hebb,
                        &elig,
                        x,
                    );
                    (y, hebb, elig) = (y1, h1, e1);
                    out.modulator[t * b + bi] = m;
                } else {
                    (y, hebb) = reference::step(
                        s.rule,
                        s.input,
                        s.clip,
                        s.alpha,
                        &self.w,
                        &self.alpha,
                        self.eta,
                        &y,
                        &hebb,
                        x,
                    );
                }
                out.ys[(t * b + bi) * n..(t * b + bi + 1) * n].copy_from_slice(&y);
            }
            out.hebb.extend_from_slice(&hebb);
            if s.modulation.has_eligibility() {
                out.elig.extend_from_slice(&elig);
            }
        }
        out
    }

    /// `L = gy . ys + gh . Hebb_T (+ ge . E_T)` of the reference.
    fn reference_loss(&self) -> f64 {
        let o = self.reference();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        dot(&self.gy, &o.ys) + dot(&self.gh, &o.hebb) + dot(&self.ge, &o.elig)
    }

    /// The named buffer (scalars as one-element buffers).
    fn field(&mut self, name: &str) -> &mut [f64] {
        match name {
            "w" => &mut self.w,
            "alpha" => &mut self.alpha,
            "eta" => core::slice::from_mut(&mut self.eta),
            "m" => &mut self.md.m,
            "m_bias" => core::slice::from_mut(&mut self.md.m_bias),
            "fan_w" => &mut self.md.fan_w,
            "fan_b" => &mut self.md.fan_b,
            "eta_e" => core::slice::from_mut(&mut self.md.eta_e),
            "x" => &mut self.x,
            "y0" => &mut self.y0,
            "h0" => &mut self.h0,
            "e0" => &mut self.e0,
            other => panic!("no field {other}"),
        }
    }

    /// Central difference of the reference loss for entry `k` of `name`.
    fn numeric(&self, name: &str, k: usize) -> f64 {
        let mut case = self.clone();
        central_difference(&mut case, |c| &mut c.field(name)[k], Case::reference_loss)
    }
}

fn check_case(case: &Case, label: &str, rng: &mut ChaCha8Rng) {
    let s = &case.spec;
    let (n, b, t_len) = (s.neurons, s.batch, s.steps);
    let retro = s.modulation.has_eligibility();
    let want = case.reference();
    let ep = if case.modulated() {
        forward(
            s,
            &case.modulated_params(),
            &case.x,
            &case.y0,
            Some(&case.h0),
            Some(&case.e0),
        )
    } else {
        forward(s, &case.params(), &case.x, &case.y0, Some(&case.h0), None)
    }
    .unwrap_or_else(|e| panic!("{label}: forward: {e}"));
    assert_close_rel(&format!("{label} ys"), &ep.ys, &want.ys, 1e-12);
    assert_close_rel(
        &format!("{label} Hebb_T"),
        &ep.traces.hebb,
        &want.hebb,
        1e-12,
    );
    assert_close_rel(&format!("{label} E_T"), &ep.traces.elig, &want.elig, 1e-12);
    assert_close_rel(&format!("{label} M"), &ep.modulator, &want.modulator, 1e-12);

    // The stepper runs the same maths one step at a time.
    let one = EpisodeSpec { steps: 1, ..*s };
    let mut st = Stepper::new(&one, &case.y0, Some(&case.h0), Some(&case.e0)).unwrap();
    let bn = b * n;
    for t in 0..t_len {
        let x = &case.x[t * bn..(t + 1) * bn];
        let y = if case.modulated() {
            st.step_modulated(&case.modulated_params(), x).unwrap().0
        } else {
            st.step(&case.params(), x).unwrap()
        };
        assert_close_rel(
            &format!("{label} stepper y step {t}"),
            y,
            &ep.ys[t * bn..(t + 1) * bn],
            1e-12,
        );
    }
    let (_, hebb, elig) = st.finish();
    assert_close_rel(
        &format!("{label} stepper Hebb_T"),
        &hebb,
        &ep.traces.hebb,
        1e-12,
    );
    assert_close_rel(
        &format!("{label} stepper E_T"),
        &elig,
        &ep.traces.elig,
        1e-12,
    );

    let g = if case.modulated() {
        backward(
            &case.modulated_params(),
            ep,
            &case.gy,
            Some(&case.gh),
            Some(&case.ge),
        )
    } else {
        backward(&case.params(), ep, &case.gy, Some(&case.gh), None)
    }
    .unwrap_or_else(|e| panic!("{label}: backward: {e}"));
    let mut fields: Vec<(&str, &[f64])> = vec![
        ("w", &g.w),
        ("alpha", &g.plastic.alpha),
        ("x", &g.x),
        ("y0", &g.y0),
        ("h0", &g.plastic.hebb0),
    ];
    let (eta, m_bias, eta_e) = (
        [g.plastic.rule.eta],
        [g.plastic.rule.modulator.m_bias],
        [g.plastic.rule.modulator.eta_e],
    );
    if case.modulated() {
        fields.extend([
            ("m", &g.plastic.rule.modulator.m[..]),
            ("m_bias", &m_bias[..]),
        ]);
        if s.modulation.fan_out() {
            fields.extend([
                ("fan_w", &g.plastic.rule.modulator.fan_w[..]),
                ("fan_b", &g.plastic.rule.modulator.fan_b[..]),
            ]);
        }
        if retro {
            fields.extend([("eta_e", &eta_e[..]), ("e0", &g.plastic.elig0[..])]);
        }
    } else {
        fields.push(("eta", &eta[..]));
    }
    for (name, analytic) in fields {
        // A few sampled entries per buffer (all of a short one).
        let picks: Vec<usize> = if analytic.len() <= 4 {
            (0..analytic.len()).collect()
        } else {
            (0..4).map(|_| rng.gen_range(0..analytic.len())).collect()
        };
        for k in picks {
            if name == "x" && s.input == InputMode::Clamped && case.x[k] == 0.0 {
                // Moving a zero input off zero clamps the neuron: not differentiable there.
                continue;
            }
            let num = case.numeric(name, k);
            assert_derivative(
                &format!("{label}: dL/d{name}[{k}] engine vs reference finite difference"),
                analytic[k],
                num,
            );
        }
    }
}

/// Checks `cases` random cases (large ones when `large`) drawn from `seed`; each failure names
/// its case, `"{kind} {number} {spec}"`.
fn check_random_cases(seed: u64, cases: usize, large: bool, kind: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for case_no in 0..cases {
        let case = random_case(&mut rng, large);
        let label = format!("{kind} {case_no} {:?}", case.spec);
        check_case(&case, &label, &mut rng);
    }
}

#[test]
fn the_engine_equals_the_reference_on_random_configurations() {
    check_random_cases(2024, 160, false, "case");
}

#[test]
fn the_engine_equals_the_reference_on_random_large_configurations() {
    // Sizes where the rows split across threads (N^2 B >= 2^15) or the batch runs one episode
    // per thread.
    check_random_cases(7, 8, true, "large case");
}
