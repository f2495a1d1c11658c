//! Plastic and neuromodulated LSTM kernel: golden values of one step, the fused recurrence
//! against a naive f64 reference, finite-difference checks of every gradient, checkpoint
//! segments, errors.

// The reference writes the equations with indices, as in the paper.
#![allow(clippy::needless_range_loop)]

use plasticity_kernels::{
    lstm_backward, lstm_forward, AlphaShape, LstmInit, LstmParams, LstmPlasticity, LstmSpec,
    ModulatorParams,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{assert_close_rel, assert_derivative, central_difference};

const KINDS: [LstmPlasticity; 4] = [
    LstmPlasticity::None,
    LstmPlasticity::Hebb,
    LstmPlasticity::Simple,
    LstmPlasticity::Retroactive,
];
const SHAPES: [AlphaShape; 3] = [
    AlphaShape::PerNeuron,
    AlphaShape::PerConnection,
    AlphaShape::Scalar,
];

/// Owned parameters and initial state of a test case.
#[derive(Clone, Debug)]
struct Case {
    spec: LstmSpec,
    w_h: Vec<f64>,
    alpha: Vec<f64>,
    eta: f64,
    m: Vec<f64>,
    m_bias: f64,
    fan_w: Vec<f64>,
    fan_b: Vec<f64>,
    eta_e: f64,
    xproj: Vec<f64>,
    h0: Vec<f64>,
    c0: Vec<f64>,
    hebb0: Vec<f64>,
    elig0: Vec<f64>,
}

impl Case {
    fn params(&self) -> LstmParams<'_, f64> {
        LstmParams {
            w_h: &self.w_h,
            alpha: &self.alpha,
            eta: self.eta,
            modulator: ModulatorParams {
                m: &self.m,
                m_bias: self.m_bias,
                fan_w: &self.fan_w,
                fan_b: &self.fan_b,
                eta_e: self.eta_e,
            },
        }
    }

    fn init(&self) -> LstmInit<'_, f64> {
        LstmInit {
            h0: &self.h0,
            c0: &self.c0,
            hebb0: (!self.hebb0.is_empty()).then_some(&self.hebb0[..]),
            elig0: (!self.elig0.is_empty()).then_some(&self.elig0[..]),
        }
    }

    /// A random case; `scale` sizes the plasticity (large values make the clip bind).
    fn random(spec: LstmSpec, seed: u64, scale: f64) -> Case {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (h, b, t) = (spec.hidden, spec.batch, spec.steps);
        let mut v =
            |n: usize, s: f64| -> Vec<f64> { (0..n).map(|_| rng.gen_range(-s..s)).collect() };
        let plastic = spec.plasticity.is_plastic();
        let modulated = spec.plasticity.is_modulated();
        let retro = spec.plasticity.has_eligibility();
        let w_h = v(4 * h * h, 0.8);
        let alpha = v(spec.alpha_len(), scale);
        let m = v(if modulated { h } else { 0 }, 1.5);
        let fan_w = v(if modulated { h } else { 0 }, scale);
        let fan_b = v(if modulated { h } else { 0 }, 0.3 * scale);
        let xproj = v(t * b * 4 * h, 1.0);
        let h0 = v(b * h, 0.9);
        let c0 = v(b * h, 1.0);
        let hebb0 = v(if plastic { b * h * h } else { 0 }, 0.5 * spec.clip);
        let elig0 = v(if retro { b * h * h } else { 0 }, 0.5);
        let s = v(3, 1.0);
        Case {
            spec,
            w_h,
            alpha,
            eta: 0.3 + 0.2 * s[0],
            m,
            m_bias: 0.3 * s[1],
            fan_w,
            fan_b,
            eta_e: 0.3 + 0.2 * s[2],
            xproj,
            h0,
            c0,
            hebb0,
            elig0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The naive reference: one sequence, one step, the equations written plainly.
// ---------------------------------------------------------------------------------------------

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn alpha_at(shape: AlphaShape, alpha: &[f64], h: usize, i: usize, j: usize) -> f64 {
    match shape {
        AlphaShape::PerConnection => alpha[i * h + j],
        AlphaShape::PerNeuron => alpha[j],
        AlphaShape::Scalar => alpha[0],
    }
}

/// One step of one sequence: returns `(h', c', Hebb', E')`.
#[allow(clippy::too_many_arguments)]
fn reference_step(
    c: &Case,
    xp: &[f64],
    h: &[f64],
    cell: &[f64],
    hebb: &[f64],
    elig: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = c.spec.hidden;
    let kind = c.spec.plasticity;
    let mut a = vec![0.0; 4 * n];
    for k in 0..4 * n {
        a[k] = xp[k];
        for i in 0..n {
            a[k] += h[i] * c.w_h[i * 4 * n + k];
        }
    }
    if kind.is_plastic() {
        for j in 0..n {
            for i in 0..n {
                a[3 * n + j] += h[i] * alpha_at(c.spec.alpha, &c.alpha, n, i, j) * hebb[i * n + j];
            }
        }
    }
    let ig: Vec<f64> = (0..n).map(|j| sigmoid(a[j])).collect();
    let fg: Vec<f64> = (0..n).map(|j| sigmoid(a[n + j])).collect();
    let og: Vec<f64> = (0..n).map(|j| sigmoid(a[2 * n + j])).collect();
    let g: Vec<f64> = (0..n).map(|j| a[3 * n + j].tanh()).collect();
    let c_new: Vec<f64> = (0..n).map(|j| fg[j] * cell[j] + ig[j] * g[j]).collect();
    let h_new: Vec<f64> = (0..n).map(|j| og[j] * c_new[j].tanh()).collect();
    let clip = |x: f64| x.clamp(-c.spec.clip, c.spec.clip);
    let mut hebb_new = hebb.to_vec();
    let mut elig_new = elig.to_vec();
    let eta: Vec<f64> = if kind.is_modulated() {
        let q: f64 = (0..n).map(|j| c.m[j] * h_new[j]).sum::<f64>() + c.m_bias;
        let m = q.tanh();
        (0..n).map(|j| c.fan_w[j] * m + c.fan_b[j]).collect()
    } else {
        Vec::new()
    };
    for i in 0..n {
        for j in 0..n {
            let k = i * n + j;
            match kind {
                LstmPlasticity::None => {}
                LstmPlasticity::Hebb => {
                    hebb_new[k] = clip((1.0 - c.eta) * hebb[k] + c.eta * h[i] * g[j]);
                }
                LstmPlasticity::Simple => {
                    hebb_new[k] = clip(hebb[k] + eta[j] * h[i] * g[j]);
                }
                LstmPlasticity::Retroactive => {
                    hebb_new[k] = clip(hebb[k] + eta[j] * elig[k]);
                    elig_new[k] = (1.0 - c.eta_e) * elig[k] + c.eta_e * h[i] * g[j];
                }
            }
        }
    }
    (h_new, c_new, hebb_new, elig_new)
}

/// The whole batch through the reference: `(hs [T, B, H], c [B, H], Hebb, E)`.
fn reference_run(c: &Case) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, b, t_len) = (c.spec.hidden, c.spec.batch, c.spec.steps);
    let plastic = c.spec.plasticity.is_plastic();
    let retro = c.spec.plasticity.has_eligibility();
    let mut hs = vec![0.0; t_len * b * n];
    let (mut cs, mut hebbs, mut eligs) = (Vec::new(), Vec::new(), Vec::new());
    for bi in 0..b {
        let mut h = c.h0[bi * n..(bi + 1) * n].to_vec();
        let mut cell = c.c0[bi * n..(bi + 1) * n].to_vec();
        let mut hebb = if plastic {
            c.hebb0[bi * n * n..(bi + 1) * n * n].to_vec()
        } else {
            vec![0.0; n * n]
        };
        let mut elig = if retro {
            c.elig0[bi * n * n..(bi + 1) * n * n].to_vec()
        } else {
            vec![0.0; n * n]
        };
        for t in 0..t_len {
            let xp = &c.xproj[(t * b + bi) * 4 * n..(t * b + bi + 1) * 4 * n];
            let (h2, c2, hb2, e2) = reference_step(c, xp, &h, &cell, &hebb, &elig);
            hs[(t * b + bi) * n..(t * b + bi + 1) * n].copy_from_slice(&h2);
            (h, cell, hebb, elig) = (h2, c2, hb2, e2);
        }
        cs.extend(cell);
        if plastic {
            hebbs.extend(hebb);
        }
        if retro {
            eligs.extend(elig);
        }
    }
    (hs, cs, hebbs, eligs)
}

// ---------------------------------------------------------------------------------------------
// Golden values: one step, H = 2, B = 1, computed by hand.
//
// h0 = [1, 0], c0 = [0.5, 0]; W_h is zero except its candidate block w = [[0.2, 0], [0, 0]];
// xproj is zero except the candidate's a_g = [0, 0.3]. So a_i = a_f = a_o = 0 and
// i = f = o = sigmoid(0) = 0.5. alpha per neuron = [0.5, 1]; Hebb0 = [[0.4, -0.2], [1, 1]].
// u_j = sum_i h_i (w_ij + alpha_j Hebb_ij) = row 0 only (h_1 = 0):
//   u_0 = 0.2 + 0.5 * 0.4 = 0.4,   u_1 = 0 + 1 * (-0.2) = -0.2
// a_g = [0.4, -0.2 + 0.3] = [0.4, 0.1]  ->  g = [T4, T1] (T4 = tanh 0.4, T1 = tanh 0.1)
// c' = f c0 + i g = [0.25 + 0.5 T4, 0.5 T1];  h' = 0.5 tanh(c')
// Hebb rule, eta = 0.1: Hebb' = 0.9 Hebb + 0.1 h_i g_j
//   row 0: [0.36 + 0.1 T4, -0.18 + 0.1 T1];  row 1: [0.9, 0.9]
//   with clip 0.35: row 0: [clip(0.398) = 0.35, -0.17003]; row 1: [0.35, 0.35]
// Simple: m = [0, 0], m_b = atanh 0.5 -> M = 0.5; v = [1, -2], b = [0.1, 0] -> eta = [0.6, -1]
//   Hebb' = Hebb + eta_j h_i g_j: row 0: [0.4 + 0.6 T4, -0.2 - T1]; row 1: [1, 1]
// Retroactive, E0 = [[0.5, 0], [0, -1]], eta_E = 0.2, same eta:
//   Hebb' = clip(Hebb + eta_j E_ij) = [[0.4 + 0.3, -0.2], [1, 1 + 1]] = [[0.7, -0.2], [1, 2]]
//   E' = 0.8 E + 0.2 h_i g_j: row 0: [0.4 + 0.2 T4, 0.2 T1]; row 1: [0, -0.8]
// ---------------------------------------------------------------------------------------------

const T4: f64 = 0.3799489622552249; // tanh(0.4)
const T1: f64 = 0.09966799462495582; // tanh(0.1)
const ATANH_HALF: f64 = 0.5493061443340548;

fn golden_case(kind: LstmPlasticity, clip: f64) -> Case {
    let mut w_h = vec![0.0; 16];
    w_h[6] = 0.2; // row 0, column 3H + 0
    let mut xproj = vec![0.0; 8];
    xproj[7] = 0.3;
    let modulated = kind.is_modulated();
    Case {
        spec: LstmSpec {
            clip,
            ..LstmSpec::new(2, 1, 1, kind)
        },
        w_h,
        alpha: if kind.is_plastic() {
            vec![0.5, 1.0]
        } else {
            vec![]
        },
        eta: 0.1,
        m: if modulated { vec![0.0, 0.0] } else { vec![] },
        m_bias: ATANH_HALF,
        fan_w: if modulated { vec![1.0, -2.0] } else { vec![] },
        fan_b: if modulated { vec![0.1, 0.0] } else { vec![] },
        eta_e: 0.2,
        xproj,
        h0: vec![1.0, 0.0],
        c0: vec![0.5, 0.0],
        hebb0: if kind.is_plastic() {
            vec![0.4, -0.2, 1.0, 1.0]
        } else {
            vec![]
        },
        elig0: if kind.has_eligibility() {
            vec![0.5, 0.0, 0.0, -1.0]
        } else {
            vec![]
        },
    }
}

#[test]
fn one_step_matches_hand_computation() {
    let c_new = [0.25 + 0.5 * T4, 0.5 * T1];
    let h_new = [0.5 * c_new[0].tanh(), 0.5 * c_new[1].tanh()];
    let cases: [(LstmPlasticity, f64, Vec<f64>, Vec<f64>); 4] = [
        (
            LstmPlasticity::Hebb,
            2.0,
            vec![0.36 + 0.1 * T4, -0.18 + 0.1 * T1, 0.9, 0.9],
            vec![],
        ),
        (
            LstmPlasticity::Hebb,
            0.35,
            vec![0.35, -0.18 + 0.1 * T1, 0.35, 0.35],
            vec![],
        ),
        (
            LstmPlasticity::Simple,
            2.0,
            vec![0.4 + 0.6 * T4, -0.2 - T1, 1.0, 1.0],
            vec![],
        ),
        (
            LstmPlasticity::Retroactive,
            2.0,
            vec![0.7, -0.2, 1.0, 2.0],
            vec![0.4 + 0.2 * T4, 0.2 * T1, 0.0, -0.8],
        ),
    ];
    for (kind, clip, want_hebb, want_elig) in cases {
        let c = golden_case(kind, clip);
        let label = format!("{kind:?} clip {clip}");
        let run = lstm_forward(&c.spec, &c.params(), &c.xproj, &c.init()).unwrap();
        assert_close_rel(&format!("{label} h'"), &run.hs, &h_new, 1e-15);
        assert_close_rel(&format!("{label} c'"), &run.c, &c_new, 1e-15);
        assert_close_rel(
            &format!("{label} Hebb'"),
            &run.traces.hebb,
            &want_hebb,
            1e-15,
        );
        assert_close_rel(&format!("{label} E'"), &run.traces.elig, &want_elig, 1e-15);
        if kind.is_modulated() {
            assert_close_rel(&format!("{label} M"), &run.modulator, &[0.5], 1e-15);
        }
        let (rh, rc, rhebb, relig) = reference_run(&c);
        assert_close_rel(&format!("{label} reference h'"), &rh, &h_new, 1e-15);
        assert_close_rel(&format!("{label} reference c'"), &rc, &c_new, 1e-15);
        assert_close_rel(
            &format!("{label} reference Hebb'"),
            &rhebb,
            &want_hebb,
            1e-15,
        );
        assert_close_rel(&format!("{label} reference E'"), &relig, &want_elig, 1e-15);
    }
    // Without plasticity the candidate sees only w: a_g = [0.2, 0.3].
    let c = golden_case(LstmPlasticity::None, 2.0);
    let run = lstm_forward(&c.spec, &c.params(), &c.xproj, &c.init()).unwrap();
    let c_plain = [0.25 + 0.5 * 0.2f64.tanh(), 0.5 * 0.3f64.tanh()];
    assert_close_rel("plain c'", &run.c, &c_plain, 1e-15);
    assert!(run.traces.hebb.is_empty() && run.traces.elig.is_empty());
}

#[test]
fn fused_matches_reference_for_every_kind_shape_and_segment() {
    for (k, kind) in KINDS.into_iter().enumerate() {
        for (s, shape) in SHAPES.into_iter().enumerate() {
            for segment in [0, 1, 3, 7] {
                let spec = LstmSpec {
                    alpha: shape,
                    segment,
                    clip: 0.4,
                    ..LstmSpec::new(5, 3, 7, kind)
                };
                let c = Case::random(spec, (10 * k + s) as u64, 1.0);
                let run = lstm_forward(&c.spec, &c.params(), &c.xproj, &c.init()).unwrap();
                let (rh, rc, rhebb, relig) = reference_run(&c);
                let label = format!("{kind:?} {shape:?} segment {segment}");
                assert_close_rel(&format!("{label} hs"), &run.hs, &rh, 1e-12);
                assert_close_rel(&format!("{label} c"), &run.c, &rc, 1e-12);
                assert_close_rel(&format!("{label} Hebb"), &run.traces.hebb, &rhebb, 1e-12);
                assert_close_rel(&format!("{label} E"), &run.traces.elig, &relig, 1e-12);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Finite differences: L = r_h . hs + r_c . c_T + r_H . Hebb_T + r_E . E_T.
// ---------------------------------------------------------------------------------------------

struct Weights {
    hs: Vec<f64>,
    c: Vec<f64>,
    hebb: Vec<f64>,
    elig: Vec<f64>,
}

fn loss(c: &Case, r: &Weights) -> f64 {
    let run = lstm_forward(&c.spec, &c.params(), &c.xproj, &c.init()).unwrap();
    let d = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    d(&run.hs, &r.hs)
        + d(&run.c, &r.c)
        + d(&run.traces.hebb, &r.hebb)
        + d(&run.traces.elig, &r.elig)
}

/// Checks `analytic` against central differences of every entry of the field `get`.
fn check_field(
    label: &str,
    base: &Case,
    r: &Weights,
    analytic: &[f64],
    get: fn(&mut Case) -> &mut [f64],
) {
    let mut c = base.clone();
    let n = get(&mut c).len();
    assert_eq!(n, analytic.len(), "{label}: gradient length");
    for k in 0..n {
        let fd = central_difference(&mut c, |c| &mut get(c)[k], |c| loss(c, r));
        assert_derivative(&format!("{label}[{k}]"), analytic[k], fd);
    }
}

/// Checks every gradient of a case; returns how many trace entries the clip holds at the end.
fn check_gradients(c: &Case, seed: u64) -> usize {
    let run = lstm_forward(&c.spec, &c.params(), &c.xproj, &c.init()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let r = Weights {
        hs: v(run.hs.len()),
        c: v(run.c.len()),
        hebb: v(run.traces.hebb.len()),
        elig: v(run.traces.elig.len()),
    };
    let clipped = run
        .traces
        .hebb
        .iter()
        .filter(|x| x.abs() >= c.spec.clip - 1e-12)
        .count();
    let opt = |x: &[f64]| (!x.is_empty()).then_some(x.to_vec());
    let (rh, re) = (opt(&r.hebb), opt(&r.elig));
    let g = lstm_backward(
        &c.params(),
        &run,
        &r.hs,
        Some(&r.c),
        rh.as_deref(),
        re.as_deref(),
    )
    .unwrap();
    let label = format!(
        "{:?} {:?} clip {}",
        c.spec.plasticity, c.spec.alpha, c.spec.clip
    );
    check_field(&format!("{label} xproj"), c, &r, &g.xproj, |c| &mut c.xproj);
    check_field(&format!("{label} w_h"), c, &r, &g.w_h, |c| &mut c.w_h);
    check_field(&format!("{label} alpha"), c, &r, &g.plastic.alpha, |c| {
        &mut c.alpha
    });
    check_field(
        &format!("{label} m"),
        c,
        &r,
        &g.plastic.rule.modulator.m,
        |c| &mut c.m,
    );
    check_field(
        &format!("{label} fan_w"),
        c,
        &r,
        &g.plastic.rule.modulator.fan_w,
        |c| &mut c.fan_w,
    );
    check_field(
        &format!("{label} fan_b"),
        c,
        &r,
        &g.plastic.rule.modulator.fan_b,
        |c| &mut c.fan_b,
    );
    check_field(&format!("{label} h0"), c, &r, &g.h0, |c| &mut c.h0);
    check_field(&format!("{label} c0"), c, &r, &g.c0, |c| &mut c.c0);
    check_field(&format!("{label} hebb0"), c, &r, &g.plastic.hebb0, |c| {
        &mut c.hebb0
    });
    check_field(&format!("{label} elig0"), c, &r, &g.plastic.elig0, |c| {
        &mut c.elig0
    });
    let kind = c.spec.plasticity;
    type Field = fn(&mut Case) -> &mut [f64];
    let scalars: [(&str, f64, bool, Field); 3] = [
        (
            "eta",
            g.plastic.rule.eta,
            kind == LstmPlasticity::Hebb,
            |c| std::slice::from_mut(&mut c.eta),
        ),
        (
            "m_bias",
            g.plastic.rule.modulator.m_bias,
            kind.is_modulated(),
            |c| std::slice::from_mut(&mut c.m_bias),
        ),
        (
            "eta_e",
            g.plastic.rule.modulator.eta_e,
            kind.has_eligibility(),
            |c| std::slice::from_mut(&mut c.eta_e),
        ),
    ];
    for (name, a, used, field) in scalars {
        if !used {
            assert_eq!(a, 0.0, "{label} {name}: unused, gradient must be 0");
            continue;
        }
        check_field(&format!("{label} {name}"), c, &r, &[a], field);
    }
    clipped
}

#[test]
fn every_gradient_matches_finite_differences() {
    for (k, kind) in KINDS.into_iter().enumerate() {
        let shapes: &[AlphaShape] = if kind.is_plastic() {
            &SHAPES
        } else {
            &SHAPES[..1]
        };
        for (s, &shape) in shapes.iter().enumerate() {
            // Unclipped in practice (clip 2, small plasticity), then with a small clip that binds
            // (the decaying Hebb trace stays within |h_i g_j|, about 0.05 here).
            let small_clip = if kind == LstmPlasticity::Hebb {
                0.03
            } else {
                0.1
            };
            for (clip, scale) in [(2.0, 0.5), (small_clip, 2.0)] {
                let spec = LstmSpec {
                    alpha: shape,
                    segment: 2,
                    clip,
                    ..LstmSpec::new(3, 2, 6, kind)
                };
                let c = Case::random(spec, 100 + (10 * k + s) as u64, scale);
                let clipped = check_gradients(&c, 7);
                if kind.is_plastic() && clip < 1.0 {
                    assert!(clipped > 0, "{kind:?} {shape:?}: the clip never bound");
                }
            }
        }
    }
}

#[test]
fn f32_matches_f64() {
    let spec = LstmSpec::new(6, 2, 9, LstmPlasticity::Retroactive);
    let c = Case::random(spec, 3, 1.0);
    let run = lstm_forward(&c.spec, &c.params(), &c.xproj, &c.init()).unwrap();
    let f = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let (w_h, alpha, m, fw, fb) = (f(&c.w_h), f(&c.alpha), f(&c.m), f(&c.fan_w), f(&c.fan_b));
    let p = LstmParams {
        w_h: &w_h,
        alpha: &alpha,
        eta: c.eta as f32,
        modulator: ModulatorParams {
            m: &m,
            m_bias: c.m_bias as f32,
            fan_w: &fw,
            fan_b: &fb,
            eta_e: c.eta_e as f32,
        },
    };
    let (xp, h0, c0, hb, el) = (f(&c.xproj), f(&c.h0), f(&c.c0), f(&c.hebb0), f(&c.elig0));
    let init = LstmInit {
        h0: &h0,
        c0: &c0,
        hebb0: Some(&hb),
        elig0: Some(&el),
    };
    let run32 = lstm_forward(&spec, &p, &xp, &init).unwrap();
    for (a, b) in run32.hs.iter().zip(&run.hs) {
        assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
    }
    let gh = vec![1.0f32; run32.hs.len()];
    let g32 = lstm_backward(&p, &run32, &gh, None, None, None).unwrap();
    let g64 = lstm_backward(
        &c.params(),
        &run,
        &vec![1.0; run.hs.len()],
        None,
        None,
        None,
    )
    .unwrap();
    for (a, b) in g32.w_h.iter().zip(&g64.w_h) {
        assert!((*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let spec = LstmSpec::new(3, 2, 4, LstmPlasticity::Simple);
    let c = Case::random(spec, 1, 1.0);
    let mut bad = c.clone();
    bad.w_h.pop();
    let e = lstm_forward(&bad.spec, &bad.params(), &bad.xproj, &bad.init()).unwrap_err();
    assert!(e.to_string().contains("w_h"), "{e}");
    let mut bad = c.clone();
    bad.m.clear();
    let e = lstm_forward(&bad.spec, &bad.params(), &bad.xproj, &bad.init()).unwrap_err();
    assert!(e.to_string().contains("m:"), "{e}");
    let mut bad = c.clone();
    bad.xproj.push(0.0);
    let e = lstm_forward(&bad.spec, &bad.params(), &bad.xproj, &bad.init()).unwrap_err();
    assert!(e.to_string().contains("xproj"), "{e}");
    let mut bad = c.clone();
    bad.spec.clip = -1.0;
    let e = lstm_forward(&bad.spec, &bad.params(), &bad.xproj, &bad.init()).unwrap_err();
    assert!(e.to_string().contains("clip"), "{e}");
    let run = lstm_forward(&c.spec, &c.params(), &c.xproj, &c.init()).unwrap();
    let e = lstm_backward(&c.params(), &run, &[0.0; 3], None, None, None).unwrap_err();
    assert!(e.to_string().contains("grad of hs"), "{e}");
}
