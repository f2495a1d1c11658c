//! Neuromodulated plasticity (ICLR 2019): golden values, fused against the reference step,
//! finite-difference gradient checks of every parameter, checkpointing, errors.

use plasticity_kernels::{
    backward, forward, reference, AlphaShape, BackwardStrategy, EpisodeSpec, Grads, InputMode,
    ModulatedParams, Modulation, Modulator, ModulatorParams, Params, Real, TraceRule,
};

mod common;
use common::{
    add_into, assert_close, assert_derivative, central_difference, modulated_params, uniform,
    EpisodeOf, RuleParams,
};

const KINDS: [Modulation; 4] = [
    Modulation::Simple { fan_out: false },
    Modulation::Simple { fan_out: true },
    Modulation::Retroactive { fan_out: false },
    Modulation::Retroactive { fan_out: true },
];

// ---------------------------------------------------------------------------------------------
// Golden values: one step, 3 neurons, computed by hand.
//
// The activity step is the unmodulated one (tests/kernels.rs): y = [1, 0.5, -1],
// x = [0, 0.1, 0], alpha = 0.5, w = [[0.1, 0.2, 0], [0, 0.1, 0.3], [0.2, 0, 0.1]],
// Hebb = [[0.2, 0, 0], [0, 0, 0], [0, 0, -0.2]]  ->  y' = [0, tanh(0.35), tanh(0.15)] = [0, T35, T15].
//
// Modulator: m = [5, 0, 0], m_b = atanh(0.5): M = tanh(5 y'_0 + atanh 0.5) = tanh(atanh 0.5) = 0.5.
// (Computed from the NEW activity y'; from the old one it would be tanh(5 + 0.549) ~ 1.)
// Fan-out: v = [1, 2, -1], b = [0.1, 0, 0.3]  ->  eta = v M + b = [0.6, 1.0, -0.2].
//
// Simple, no fan-out, clip 0.25: Hebb'_ij = clip(Hebb_ij + 0.5 y_i y'_j)
//   row 0 (y_0 = 1):    [0.2 + 0,  0.5 T35,  0.5 T15]
//   row 1 (y_1 = 0.5):  [0,        0.25 T35, 0.25 T15]
//   row 2 (y_2 = -1):   [0,       -0.5 T35, clip(-0.2 - 0.5 T15) = clip(-0.2744) = -0.25]
// Simple, fan-out, no clip: Hebb'_ij = Hebb_ij + eta_j y_i y'_j
//   row 0: [0.2, T35, -0.2 T15]; row 1: [0, 0.5 T35, -0.1 T15]; row 2: [0, -T35, -0.2 + 0.2 T15]
// Retroactive, E = diag(0.4, 0.2, -0.4), eta_E = 0.1, clip 0.3:
//   Hebb'_ij = clip(Hebb_ij + 0.5 E_ij) (the OLD E, eq. 4): diagonal clip(0.4) = 0.3,
//   0.1, clip(-0.4) = -0.3, zero elsewhere;
//   E'_ij = 0.9 E_ij + 0.1 y_i y'_j (eq. 5):
//   row 0: [0.36, 0.1 T35, 0.1 T15]; row 1: [0, 0.18 + 0.05 T35, 0.05 T15];
//   row 2: [0, -0.1 T35, -0.36 - 0.1 T15]
// Retroactive, fan-out, no clip: Hebb'_ij = Hebb_ij + eta_j E_ij: diagonal
//   0.2 + 0.6*0.4 = 0.44, 0 + 1.0*0.2 = 0.2, -0.2 + (-0.2)(-0.4) = -0.12; E' as above.
// ---------------------------------------------------------------------------------------------

const T35: f64 = 0.3363755443363322; // tanh(0.35)
const T15: f64 = 0.14888503362331798; // tanh(0.15)
const ATANH_HALF: f64 = 0.5493061443340549; // atanh(0.5)

struct Golden {
    w: Vec<f64>,
    alpha: Vec<f64>,
    hebb: Vec<f64>,
    elig: Vec<f64>,
    y: Vec<f64>,
    x: Vec<f64>,
    m: Vec<f64>,
    fan_w: Vec<f64>,
    fan_b: Vec<f64>,
}

fn golden() -> Golden {
    Golden {
        w: vec![0.1, 0.2, 0.0, 0.0, 0.1, 0.3, 0.2, 0.0, 0.1],
        alpha: vec![0.5; 9],
        hebb: vec![0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.2],
        elig: vec![0.4, 0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0, -0.4],
        y: vec![1.0, 0.5, -1.0],
        x: vec![0.0, 0.1, 0.0],
        m: vec![5.0, 0.0, 0.0],
        fan_w: vec![1.0, 2.0, -1.0],
        fan_b: vec![0.1, 0.0, 0.3],
    }
}

/// (clip, expected Hebb', expected E') for each kind.
fn golden_expected(kind: Modulation) -> (Option<f64>, Vec<f64>, Vec<f64>) {
    let elig_retro = vec![
        0.36,
        0.1 * T35,
        0.1 * T15,
        0.0,
        0.18 + 0.05 * T35,
        0.05 * T15,
        0.0,
        -0.1 * T35,
        -0.36 - 0.1 * T15,
    ];
    match kind {
        Modulation::Simple { fan_out: false } => (
            Some(0.25),
            vec![
                0.2,
                0.5 * T35,
                0.5 * T15,
                0.0,
                0.25 * T35,
                0.25 * T15,
                0.0,
                -0.5 * T35,
                -0.25,
            ],
            golden().elig,
        ),
        Modulation::Simple { fan_out: true } => (
            None,
            vec![
                0.2,
                T35,
                -0.2 * T15,
                0.0,
                0.5 * T35,
                -0.1 * T15,
                0.0,
                -T35,
                -0.2 + 0.2 * T15,
            ],
            golden().elig,
        ),
        Modulation::Retroactive { fan_out: false } => (
            Some(0.3),
            vec![0.3, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, -0.3],
            elig_retro,
        ),
        Modulation::Retroactive { fan_out: true } => (
            None,
            vec![0.44, 0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0, -0.12],
            elig_retro,
        ),
        Modulation::None => unreachable!(),
    }
}

#[test]
fn one_step_matches_hand_computation_for_every_modulation() {
    for kind in KINDS {
        let g = golden();
        let (clip, want_h, want_e) = golden_expected(kind);
        let (fan_w, fan_b): (&[f64], &[f64]) = if kind.fan_out() {
            (&g.fan_w, &g.fan_b)
        } else {
            (&[], &[])
        };
        let want_y = [0.0, T35, T15];
        let (y1, h1, e1, m1) = reference::modulated_step(
            kind,
            InputMode::Additive,
            clip,
            AlphaShape::PerConnection,
            &g.w,
            &g.alpha,
            &g.m,
            ATANH_HALF,
            fan_w,
            fan_b,
            0.1,
            &g.y,
            &g.hebb,
            &g.elig,
            &g.x,
        );
        let label = format!("{kind:?}");
        assert!((m1 - 0.5).abs() < 1e-15, "{label}: M = {m1}");
        assert_close(&format!("{label} reference y'"), &y1, &want_y, 1e-15);
        assert_close(&format!("{label} reference Hebb'"), &h1, &want_h, 1e-15);
        assert_close(&format!("{label} reference E'"), &e1, &want_e, 1e-15);
        let spec = EpisodeSpec {
            modulation: kind,
            clip,
            ..EpisodeSpec::new(3, 1, 1)
        };
        let p = ModulatedParams {
            w: &g.w,
            alpha: &g.alpha,
            modulator: ModulatorParams {
                m: &g.m,
                m_bias: ATANH_HALF,
                fan_w,
                fan_b,
                eta_e: 0.1,
            },
        };
        let ep = forward(&spec, &p, &g.x, &g.y, Some(&g.hebb), Some(&g.elig)).unwrap();
        assert_close(&format!("{label} fused y'"), &ep.ys, &want_y, 1e-15);
        assert_close(
            &format!("{label} fused Hebb'"),
            &ep.traces.hebb,
            &want_h,
            1e-15,
        );
        assert_close(&format!("{label} fused M"), &ep.modulator, &[0.5], 1e-15);
        if kind.has_eligibility() {
            assert_close(
                &format!("{label} fused E'"),
                &ep.traces.elig,
                &want_e,
                1e-15,
            );
        } else {
            assert!(
                ep.traces.elig.is_empty(),
                "simple modulation keeps no eligibility trace"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random problems.
// ---------------------------------------------------------------------------------------------

/// A random modulated problem: the rule's parameters are the modulator's.
type Problem<F> = common::Problem<F, Modulator<F>>;

fn problem<F: Real>(spec: EpisodeSpec, seed: u64) -> Problem<F> {
    Problem::random(spec, seed, |rng| {
        let n = spec.neurons;
        let fan = if spec.modulation.fan_out() { n } else { 0 };
        Modulator {
            m: uniform(rng, 1.0, n),
            m_bias: uniform(rng, 0.5, 1)[0],
            fan_w: uniform(rng, 1.0, fan),
            fan_b: uniform(rng, 0.3, fan),
            eta_e: F::of(0.3),
        }
    })
}

impl<F: Real> Problem<F> {
    fn params(&self) -> ModulatedParams<'_, F> {
        modulated_params(&self.rule, &self.w, &self.alpha)
    }
}

impl<F: Real> RuleParams<F> for Modulator<F> {
    fn forward(p: &Problem<F>) -> plasticity_kernels::Episode<F> {
        let (h0, e0) = (Some(&p.h0[..]), p.e0.as_deref());
        forward(&p.spec, &p.params(), &p.x, &p.y0, h0, e0).unwrap()
    }

    fn backward(p: &Problem<F>, ep: plasticity_kernels::Episode<F>) -> Grads<F> {
        let (gh, ge) = (Some(&p.gh[..]), p.ge.as_deref());
        backward(&p.params(), ep, &p.gy, gh, ge).unwrap()
    }
}

/// Coordinate `k` of the buffer named `field`.
fn field_mut<'a>(p: &'a mut Problem<f64>, field: &str, k: usize) -> &'a mut f64 {
    match field {
        "m" => &mut p.rule.m[k],
        "m_bias" => &mut p.rule.m_bias,
        "fan_w" => &mut p.rule.fan_w[k],
        "fan_b" => &mut p.rule.fan_b[k],
        "eta_e" => &mut p.rule.eta_e,
        _ => &mut p.buffer_mut(field)[k],
    }
}

/// Central finite difference of the loss along one coordinate of `field`.
fn numeric(p: &mut Problem<f64>, field: &str, k: usize) -> f64 {
    central_difference(p, |p| field_mut(p, field, k), Problem::loss)
}

/// Number of entries of the final trace sitting at the clip bound.
fn clipped_entries(p: &Problem<f64>) -> usize {
    let c = p.spec.clip.unwrap_or(f64::INFINITY);
    p.run().traces.hebb.iter().filter(|h| h.abs() >= c).count()
}

fn check_gradients(spec: EpisodeSpec, seed: u64) {
    let mut p = problem::<f64>(spec, seed);
    let g = p.grads();
    let label = format!("{spec:?}");
    if spec.clip.is_some() {
        let clipped = clipped_entries(&p);
        assert!(
            clipped > 0,
            "{label}: the clip never binds, the check would not test it"
        );
    }
    let buffers: [(&str, Vec<f64>); 11] = [
        ("w", g.w.clone()),
        ("alpha", g.plastic.alpha.clone()),
        ("m", g.plastic.rule.modulator.m.clone()),
        ("m_bias", vec![g.plastic.rule.modulator.m_bias]),
        ("fan_w", g.plastic.rule.modulator.fan_w.clone()),
        ("fan_b", g.plastic.rule.modulator.fan_b.clone()),
        ("eta_e", vec![g.plastic.rule.modulator.eta_e]),
        ("x", g.x.clone()),
        ("y0", g.y0.clone()),
        ("hebb0", g.plastic.hebb0.clone()),
        ("elig0", g.plastic.elig0.clone()),
    ];
    for (field, analytic) in buffers {
        let stride = (analytic.len() / 40).max(1);
        for k in (0..analytic.len()).step_by(stride) {
            if field == "x" && spec.input == InputMode::Clamped && p.x[k] == 0.0 {
                continue; // x = 0 switches between free and clamped: no derivative.
            }
            let num = numeric(&mut p, field, k);
            assert_derivative(&format!("{label}: d/d{field}[{k}]"), analytic[k], num);
        }
    }
    // Simple modulation has no eligibility trace: eta_E does not matter.
    if !spec.modulation.has_eligibility() {
        assert_eq!(g.plastic.rule.modulator.eta_e, 0.0);
        assert!(g.plastic.elig0.is_empty());
    }
    if !spec.modulation.fan_out() {
        assert!(
            g.plastic.rule.modulator.fan_w.is_empty() && g.plastic.rule.modulator.fan_b.is_empty()
        );
    }
}

#[test]
fn gradients_match_finite_differences_for_every_modulation_with_and_without_clipping() {
    let mut seed = 200;
    for kind in KINDS {
        for clip in [None, Some(0.15)] {
            seed += 1;
            let spec = EpisodeSpec {
                modulation: kind,
                clip,
                ..EpisodeSpec::new(5, 2, 7)
            };
            check_gradients(spec, seed);
        }
    }
}

#[test]
fn gradients_match_finite_differences_for_clamped_input_and_alpha_shapes() {
    let mut seed = 300;
    for kind in [
        Modulation::Simple { fan_out: true },
        Modulation::Retroactive { fan_out: false },
    ] {
        for (input, alpha) in [
            (InputMode::Clamped, AlphaShape::PerConnection),
            (InputMode::Additive, AlphaShape::PerNeuron),
            (InputMode::Additive, AlphaShape::Scalar),
        ] {
            seed += 1;
            let spec = EpisodeSpec {
                modulation: kind,
                clip: Some(0.2),
                input,
                alpha,
                ..EpisodeSpec::new(4, 2, 6)
            };
            check_gradients(spec, seed);
        }
    }
}

#[test]
fn fused_forward_matches_the_reference_step_by_step() {
    for kind in KINDS {
        for input in InputMode::ALL {
            let (n, b, t_len) = (6, 3, 9);
            let spec = EpisodeSpec {
                modulation: kind,
                input,
                clip: Some(0.3),
                alpha: AlphaShape::PerNeuron,
                ..EpisodeSpec::new(n, b, t_len)
            };
            let p = problem::<f64>(spec, 11);
            let ep = p.run();
            let bn = b * n;
            let e0 = p.e0.as_deref().expect("a modulated problem has E_0");
            for bi in 0..b {
                let mut y = p.y0[bi * n..(bi + 1) * n].to_vec();
                let mut h = p.h0[bi * n * n..(bi + 1) * n * n].to_vec();
                let mut e = e0[bi * n * n..(bi + 1) * n * n].to_vec();
                for t in 0..t_len {
                    let x = &p.x[t * bn + bi * n..t * bn + (bi + 1) * n];
                    let m;
                    (y, h, e, m) = reference::modulated_step(
                        kind,
                        input,
                        spec.clip,
                        spec.alpha,
                        &p.w,
                        &p.alpha,
                        &p.rule.m,
                        p.rule.m_bias,
                        &p.rule.fan_w,
                        &p.rule.fan_b,
                        p.rule.eta_e,
                        &y,
                        &h,
                        &e,
                        x,
                    );
                    let label = format!("{kind:?} {input:?} t={t}");
                    assert_close(
                        &format!("{label} y"),
                        &ep.ys[t * bn + bi * n..t * bn + (bi + 1) * n],
                        &y,
                        1e-12,
                    );
                    assert!((ep.modulator[t * b + bi] - m).abs() < 1e-12, "{label}: M");
                }
                let nn = n * n;
                assert_close("Hebb_T", &ep.traces.hebb[bi * nn..(bi + 1) * nn], &h, 1e-12);
                if kind.has_eligibility() {
                    assert_close("E_T", &ep.traces.elig[bi * nn..(bi + 1) * nn], &e, 1e-12);
                }
            }
        }
    }
}

#[test]
fn every_checkpoint_spacing_gives_the_same_gradients_and_memory_stays_sublinear() {
    for kind in [
        Modulation::Simple { fan_out: false },
        Modulation::Retroactive { fan_out: true },
    ] {
        let base = EpisodeSpec {
            modulation: kind,
            clip: Some(0.2),
            ..EpisodeSpec::new(8, 2, 100)
        };
        let reference = Problem {
            spec: EpisodeSpec {
                backward: BackwardStrategy::StoreAll,
                ..base
            },
            ..problem::<f64>(base, 5)
        };
        let want = reference.grads();
        for backward in [
            BackwardStrategy::Auto,
            BackwardStrategy::Checkpoint { segment: 7 },
        ] {
            let p = Problem {
                spec: EpisodeSpec { backward, ..base },
                ..problem::<f64>(base, 5)
            };
            let ep = p.run();
            // Auto: ceil(sqrt(100)) = 10 steps per segment, 10 checkpoints of (Hebb, E)
            // instead of 100.
            let per_trace = 2 * 8 * 8 * 8;
            let traces = if kind.has_eligibility() { 2 } else { 1 };
            let most = (100 / ep.segment() + 1) * traces * per_trace;
            assert!(ep.saved_bytes() <= most + 2 * 100 * 16 * 8, "{backward:?}");
            assert!(ep.segment() >= 7, "{backward:?}: segment {}", ep.segment());
            let got = p.grads();
            for (what, a, b) in [
                ("w", &got.w, &want.w),
                ("alpha", &got.plastic.alpha, &want.plastic.alpha),
                (
                    "m",
                    &got.plastic.rule.modulator.m,
                    &want.plastic.rule.modulator.m,
                ),
                ("x", &got.x, &want.x),
                ("hebb0", &got.plastic.hebb0, &want.plastic.hebb0),
                ("elig0", &got.plastic.elig0, &want.plastic.elig0),
            ] {
                assert_close(&format!("{kind:?} {backward:?} {what}"), a, b, 1e-12);
            }
            assert!(
                (got.plastic.rule.modulator.m_bias - want.plastic.rule.modulator.m_bias).abs()
                    < 1e-12
            );
            assert!(
                (got.plastic.rule.modulator.eta_e - want.plastic.rule.modulator.eta_e).abs()
                    < 1e-12
            );
        }
    }
}

#[test]
fn large_problems_split_across_threads_give_identical_results() {
    // N^2 B above the threshold where the rows are split across threads: f32 results are
    // reproducible run to run.
    let spec = EpisodeSpec {
        modulation: Modulation::Retroactive { fan_out: true },
        clip: Some(0.5),
        ..EpisodeSpec::new(200, 2, 12)
    };
    let p = problem::<f32>(spec, 12);
    let (a, b) = (p.grads(), p.grads());
    assert_eq!(a.w, b.w);
    assert_eq!(a.plastic.rule.modulator.m, b.plastic.rule.modulator.m);
    assert_eq!(
        a.plastic.rule.modulator.eta_e.to_bits(),
        b.plastic.rule.modulator.eta_e.to_bits()
    );
    assert!(a
        .w
        .iter()
        .chain(&a.plastic.rule.modulator.m)
        .all(|v| v.is_finite()));
}

#[test]
fn wrong_settings_and_sizes_are_errors_naming_the_field() {
    let spec = EpisodeSpec {
        modulation: Modulation::Simple { fan_out: true },
        ..EpisodeSpec::new(3, 1, 2)
    };
    let (w, alpha, m) = (vec![0.0; 9], vec![0.0; 9], vec![0.0; 3]);
    let md = ModulatorParams {
        m: &m,
        m_bias: 0.0,
        fan_w: &m,
        fan_b: &m,
        eta_e: 0.1,
    };
    let p = ModulatedParams {
        w: &w,
        alpha: &alpha,
        modulator: md,
    };
    let (x, y0) = (vec![0.0; 6], vec![0.0; 3]);
    assert!(forward(&spec, &p, &x, &y0, None, None).is_ok());
    // The error of `p` with the modulator's parameters `modulator`.
    let error_with = |modulator| {
        let p = ModulatedParams { modulator, ..p };
        forward(&spec, &p, &x, &y0, None, None).unwrap_err()
    };
    let err = error_with(ModulatorParams { fan_w: &[], ..md });
    assert!(
        err.0.starts_with("fan_w: expected 3 values, got 0"),
        "{err}"
    );
    let err = error_with(ModulatorParams { m: &m[..2], ..md });
    assert!(err.0.starts_with("m: expected 3 values"), "{err}");
    let oja = EpisodeSpec {
        rule: TraceRule::Oja,
        ..spec
    };
    let err = forward(&oja, &p, &x, &y0, None, None).unwrap_err();
    assert!(err.0.starts_with("rule:"), "{err}");
    let none = EpisodeSpec {
        modulation: Modulation::None,
        ..spec
    };
    let err = forward(&none, &p, &x, &y0, None, None).unwrap_err();
    assert!(err.0.starts_with("modulation:"), "{err}");
    // The unmodulated kernels refuse a modulated spec rather than ignore the modulation.
    let plain = Params {
        w: &w,
        alpha: &alpha,
        eta: 0.1,
    };
    let err = forward(&spec, &plain, &x, &y0, None, None).unwrap_err();
    assert!(err.0.starts_with("modulation:"), "{err}");
    let ep = forward(&spec, &p, &x, &y0, None, None).unwrap();
    let err = backward(&p, ep, &[0.0; 4], None, None).unwrap_err();
    assert!(err.0.starts_with("grad of ys"), "{err}");
}

#[test]
fn modulation_settings_read_and_write_as_json() {
    let kinds = [
        (Modulation::None, r#""none""#),
        (
            Modulation::Simple { fan_out: true },
            r#"{"simple":{"fan_out":true}}"#,
        ),
        (
            Modulation::Retroactive { fan_out: false },
            r#"{"retroactive":{"fan_out":false}}"#,
        ),
    ];
    for (kind, json) in kinds {
        assert_eq!(serde_json::to_string(&kind).unwrap(), json);
        assert_eq!(serde_json::from_str::<Modulation>(json).unwrap(), kind);
    }
    // fan_out defaults to false.
    assert_eq!(
        serde_json::from_str::<Modulation>(r#"{"retroactive":{}}"#).unwrap(),
        Modulation::Retroactive { fan_out: false }
    );
}

#[test]
fn stepping_in_place_matches_the_episode_forward() {
    // Small and large problems, every modulation, with and without clipping: the stepper's
    // activities, modulator and final traces equal the whole-episode forward's (bit for bit
    // when both sum the rows in the same blocks; the forward may run the episodes one by one,
    // with one block each, where the stepper splits the rows of a large problem).
    for (n, b, t) in [(7, 3, 9), (200, 2, 5)] {
        for (k, kind) in KINDS.into_iter().enumerate() {
            for clip in [None, Some(0.05)] {
                let spec = EpisodeSpec {
                    modulation: kind,
                    clip,
                    alpha: if k % 2 == 0 {
                        AlphaShape::PerConnection
                    } else {
                        AlphaShape::PerNeuron
                    },
                    ..EpisodeSpec::new(n, b, t)
                };
                let p = problem::<f32>(spec, 40 + k as u64);
                let ep = p.run();
                let one = EpisodeSpec { steps: 1, ..spec };
                let mut st =
                    plasticity_kernels::Stepper::new(&one, &p.y0, Some(&p.h0), p.e0.as_deref())
                        .unwrap();
                let bn = b * n;
                // Bit for bit on the small problem (one block everywhere); to rounding on the
                // large one.
                let tol = if n < 100 { 0.0 } else { 1e-3 };
                let same = |what: &str, a: &[f32], b: &[f32]| {
                    assert_eq!(a.len(), b.len(), "{what}");
                    let d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                    assert!(d <= tol, "{kind:?} {clip:?} n={n}: {what} differs by {d}");
                };
                for s in 0..t {
                    let (y, m) = st
                        .step_modulated(&p.params(), &p.x[s * bn..(s + 1) * bn])
                        .unwrap();
                    same(&format!("y step {s}"), y, &ep.ys[s * bn..(s + 1) * bn]);
                    same(&format!("M step {s}"), m, &ep.modulator[s * b..(s + 1) * b]);
                }
                let (y, hebb, elig) = st.finish();
                same("y_T", &y, &ep.ys[(t - 1) * bn..]);
                same("Hebb_T", &hebb, &ep.traces.hebb);
                same("E_T", &elig, &ep.traces.elig);
            }
        }
    }
    // Wrong sizes are errors, not panics.
    let spec = EpisodeSpec {
        modulation: Modulation::Simple { fan_out: false },
        ..EpisodeSpec::new(4, 1, 1)
    };
    let p = problem::<f32>(spec, 1);
    let mut st = plasticity_kernels::Stepper::new(&spec, &p.y0, None, None).unwrap();
    assert!(st
        .step_modulated(&p.params(), &[0.0; 3])
        .unwrap_err()
        .0
        .contains("x"));
    assert!(
        plasticity_kernels::Stepper::new(&spec, &[0.0f32; 3], None, None)
            .unwrap_err()
            .0
            .contains("y0")
    );
}

#[test]
fn a_batch_gives_the_sum_of_its_episodes_run_one_by_one() {
    // 24 episodes (at least as many as threads: the batch may run episode by episode) against
    // each episode alone (batch 1, all rows together): outputs, final traces and every gradient
    // agree to rounding (f64).
    let (n, b, t) = (9, 24, 7);
    for kind in KINDS {
        let spec = EpisodeSpec {
            modulation: kind,
            clip: Some(0.3),
            ..EpisodeSpec::new(n, b, t)
        };
        let p = problem::<f64>(spec, 77);
        let ep = p.run();
        let grads = p.grads();
        let retro = kind.has_eligibility();
        let mut sum_w = vec![0.0; n * n];
        let mut sum_m = vec![0.0; n];
        let (mut sum_mb, mut sum_eta) = (0.0, 0.0);
        let alone = p.episodes_alone(&format!("{kind:?}"), &ep, &grads);
        for (bi, g1) in alone.iter().enumerate() {
            let e = EpisodeOf { b, n, bi };
            let label = format!("{kind:?} episode {bi}");
            if retro {
                assert_close(
                    &format!("{label} dE0"),
                    &g1.plastic.elig0,
                    &e.trace(&grads.plastic.elig0),
                    1e-10,
                );
            }
            add_into(&mut sum_w, &g1.w);
            add_into(&mut sum_m, &g1.plastic.rule.modulator.m);
            sum_mb += g1.plastic.rule.modulator.m_bias;
            sum_eta += g1.plastic.rule.modulator.eta_e;
        }
        assert_close(&format!("{kind:?} dw"), &grads.w, &sum_w, 1e-10);
        assert_close(
            &format!("{kind:?} dm"),
            &grads.plastic.rule.modulator.m,
            &sum_m,
            1e-10,
        );
        assert_close(
            &format!("{kind:?} dm_b"),
            &[grads.plastic.rule.modulator.m_bias],
            &[sum_mb],
            1e-10,
        );
        assert_close(
            &format!("{kind:?} deta_E"),
            &[grads.plastic.rule.modulator.eta_e],
            &[sum_eta],
            1e-10,
        );
    }
}
