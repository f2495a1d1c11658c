//! The neuromodulated burn operation against the same recurrence written with plain burn tensor
//! ops (whose gradients burn's autodiff computes), and the modulated `PlasticNet`.

use burn::tensor::{Device, Tensor};
use plasticity::tensors::{from_vec, to_vec};
use plasticity::PlasticityConfig;
use plasticity::{
    modulated_episode, AlphaShape, EpisodeSpec, ModulatedTensors, Modulation, PlasticNetConfig,
    TraceRule,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod common;
use common::{assert_grad_close, assert_trained, grad, max_rel, random, LeafRng};

#[derive(Clone)]
struct Leaves {
    w: Tensor<2>,
    alpha: Tensor<2>,
    m: Tensor<1>,
    m_bias: Tensor<1>,
    fan_w: Tensor<1>,
    fan_b: Tensor<1>,
    eta_e: Tensor<1>,
    x: Tensor<3>,
    y0: Tensor<2>,
    hebb0: Tensor<3>,
    elig0: Tensor<3>,
}

fn leaves(spec: &EpisodeSpec, seed: u64, device: &Device) -> (Leaves, Tensor<3>) {
    let mut r = LeafRng::new(seed, device);
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let l = Leaves {
        w: r.leaf(0.4, [n, n]),
        alpha: r.leaf(0.5, spec.alpha.dims(n)),
        m: r.leaf(1.0, [n]),
        m_bias: r.leaf(0.5, [1]),
        fan_w: r.leaf(1.0, [n]),
        fan_b: r.leaf(0.3, [n]),
        eta_e: r.scalar(0.3),
        x: r.leaf(1.0, [b, t, n]),
        y0: r.leaf(0.5, [b, n]),
        hebb0: r.leaf(0.1, [b, n, n]),
        elig0: r.leaf(0.3, [b, n, n]),
    };
    (l, r.tensor(1.0, [b, t, n]))
}

/// The modulated episode as the paper writes it (ICLR 2019 section 3), with burn ops.
/// Returns `ys: [B, T, N]`.
fn reference(spec: &EpisodeSpec, l: Leaves) -> Tensor<3> {
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let alpha3: Tensor<3> = l.alpha.unsqueeze_dim(0);
    let mut y = l.y0;
    let mut hebb = l.hebb0;
    let mut elig = l.elig0;
    let mut ys = Vec::new();
    for s in 0..t {
        let xs = l.x.clone().slice([0..b, s..s + 1, 0..n]).reshape([b, n]);
        let weights = l.w.clone().unsqueeze_dim::<3>(0) + alpha3.clone() * hebb.clone();
        let pre = y
            .clone()
            .unsqueeze_dim::<3>(1)
            .matmul(weights)
            .reshape([b, n]);
        let y_new = (pre + xs).tanh(); // eq. 1
                                       // M(t) = tanh(m . y(t) + m_b): [B, 1]
        let modulator = ((y_new.clone() * l.m.clone().unsqueeze_dim::<2>(0)).sum_dim(1)
            + l.m_bias.clone().reshape([1, 1]))
        .tanh();
        // eta_j(t): [B, N] (fan-out) or [B, 1]
        let eta: Tensor<2> = if spec.modulation.fan_out() {
            modulator * l.fan_w.clone().unsqueeze_dim::<2>(0) + l.fan_b.clone().unsqueeze_dim(0)
        } else {
            modulator
        };
        let eta3: Tensor<3> = eta.unsqueeze_dim(1); // [B, 1, N|1]: per postsynaptic neuron j
        let outer = y.clone().unsqueeze_dim::<3>(2) * y_new.clone().unsqueeze_dim::<3>(1);
        let clip = |h: Tensor<3>| match spec.clip {
            Some(c) => h.clamp(-c as f32, c as f32),
            None => h,
        };
        match spec.modulation {
            Modulation::Simple { .. } => hebb = clip(hebb + eta3 * outer), // eq. 3
            Modulation::Retroactive { .. } => {
                hebb = clip(hebb + eta3 * elig.clone()); // eq. 4, the old E
                let eta_e: Tensor<3> = l.eta_e.clone().reshape([1, 1, 1]);
                elig = elig.clone() - eta_e.clone() * elig + eta_e * outer; // eq. 5
            }
            Modulation::None => unreachable!(),
        }
        y = y_new;
        ys.push(y.clone().unsqueeze_dim::<3>(1));
    }
    Tensor::cat(ys, 1)
}

fn fused(spec: &EpisodeSpec, l: Leaves) -> Tensor<3> {
    modulated_episode(
        ModulatedTensors {
            w: l.w,
            alpha: l.alpha,
            m: l.m,
            m_bias: l.m_bias,
            fan_out: Some((l.fan_w, l.fan_b)),
            eta_e: l.eta_e,
        },
        l.x,
        l.y0,
        Some(l.hebb0),
        Some(l.elig0),
        *spec,
    )
    .unwrap()
    .ys
}

#[test]
fn gradients_of_the_modulated_op_equal_burn_autodiff_of_the_plain_recurrence() {
    let device = Device::flex().autodiff();
    let kinds = [
        Modulation::Simple { fan_out: false },
        Modulation::Simple { fan_out: true },
        Modulation::Retroactive { fan_out: false },
        Modulation::Retroactive { fan_out: true },
    ];
    for modulation in kinds {
        for (alpha, clip) in [
            (AlphaShape::PerConnection, None),
            (AlphaShape::PerConnection, Some(0.15)),
            (AlphaShape::PerNeuron, Some(0.15)),
        ] {
            let spec = EpisodeSpec {
                modulation,
                alpha,
                clip,
                ..EpisodeSpec::new(6, 3, 8)
            };
            let run = |use_fused: bool| {
                let (l, weights) = leaves(&spec, 42, &device);
                let ys = if use_fused {
                    fused(&spec, l.clone())
                } else {
                    reference(&spec, l.clone())
                };
                let grads = (ys.clone() * weights).sum().backward();
                (
                    to_vec(ys),
                    vec![
                        ("w", grad(&l.w, &grads)),
                        ("alpha", grad(&l.alpha, &grads)),
                        ("m", grad(&l.m, &grads)),
                        ("m_bias", grad(&l.m_bias, &grads)),
                        ("fan_w", grad(&l.fan_w, &grads)),
                        ("fan_b", grad(&l.fan_b, &grads)),
                        ("eta_e", grad(&l.eta_e, &grads)),
                        ("x", grad(&l.x, &grads)),
                        ("y0", grad(&l.y0, &grads)),
                        ("hebb0", grad(&l.hebb0, &grads)),
                        ("elig0", grad(&l.elig0, &grads)),
                    ],
                )
            };
            let (ys_f, g_f) = run(true);
            let (ys_r, g_r) = run(false);
            assert!(max_rel(&ys_f, &ys_r) < 1e-5, "{spec:?}: outputs differ");
            for ((name, a), (_, b)) in g_f.iter().zip(&g_r) {
                match (a, b) {
                    (Some(a), Some(b)) => assert_grad_close(&format!("{spec:?}"), name, a, b),
                    // What the recurrence does not use: the op reports no or zero gradient.
                    (a, None) => assert!(
                        a.as_ref().is_none_or(|a| a.iter().all(|v| *v == 0.0)),
                        "{spec:?}: d/d{name} should be zero"
                    ),
                    (None, Some(_)) => panic!("{spec:?}: d/d{name} missing from the op"),
                }
            }
            let used_by_reference = g_r.iter().filter(|(_, g)| g.is_some()).count();
            let expected = 11
                - if modulation.fan_out() { 0 } else { 2 }
                - if modulation.has_eligibility() { 0 } else { 2 };
            assert_eq!(used_by_reference, expected, "{spec:?}");
        }
    }
}

#[test]
fn a_modulated_plastic_net_trains_its_modulator_and_old_configs_still_load() {
    let device = Device::flex().autodiff();
    // A configuration written before modulation existed loads with modulation `none`.
    let old: PlasticNetConfig = serde_json::from_str(r#"{"neurons": 5, "eta": 0.1}"#).unwrap();
    assert_eq!(old.modulation, Modulation::None);
    for modulation in [
        Modulation::Simple { fan_out: true },
        Modulation::Retroactive { fan_out: false },
    ] {
        let config = PlasticNetConfig {
            neurons: 5,
            modulation,
            plasticity: PlasticityConfig {
                clip: Some(1.0),
                init_std: 0.3,
                ..PlasticityConfig::default()
            },
            ..PlasticNetConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<PlasticNetConfig>(&json).unwrap(),
            config
        );
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let net = config.init(&mut rng, &device);
        let md = net
            .modulator
            .as_ref()
            .expect("a modulated net has a modulator");
        assert_eq!(md.fan_w.is_some(), modulation.fan_out());
        let x = from_vec(random(&mut rng, 2 * 4 * 5, 1.0), [2, 4, 5], &device);
        let (ys, state, m) = net.forward_with_modulator(x, None).unwrap();
        assert_eq!(m.expect("modulator trace").dims(), [2, 4]);
        assert_eq!(state.elig.is_some(), modulation.has_eligibility());
        let grads = ys.sum().backward();
        let mut named = vec![
            ("w", grad(&net.w.val(), &grads)),
            ("m", grad(&md.m.val(), &grads)),
            ("m_bias", grad(&md.m_bias.val(), &grads)),
        ];
        if let Some(v) = &md.fan_w {
            named.push(("fan_w", grad(&v.val(), &grads)));
        }
        if modulation.has_eligibility() {
            named.push(("eta (eligibility rate)", grad(&net.eta.val(), &grads)));
        }
        assert_trained(&format!("{modulation:?}"), named);
    }
    let bad = PlasticNetConfig {
        plasticity: PlasticityConfig {
            rule: TraceRule::Oja,
            ..PlasticityConfig::default()
        },
        modulation: Modulation::Simple { fan_out: false },
        ..PlasticNetConfig::default()
    };
    assert!(bad.validate().unwrap_err().starts_with("modulation:"));
}

#[test]
fn the_modulated_op_rejects_missing_fan_out_and_the_plain_op_rejects_modulation() {
    let device = Device::flex();
    let spec = EpisodeSpec {
        modulation: Modulation::Simple { fan_out: true },
        ..EpisodeSpec::new(4, 1, 3)
    };
    let z = |len| Tensor::<1>::zeros([len], &device);
    let tensors = ModulatedTensors {
        w: Tensor::zeros([4, 4], &device),
        alpha: Tensor::zeros([4, 4], &device),
        m: z(4),
        m_bias: z(1),
        fan_out: None,
        eta_e: z(1),
    };
    let x = Tensor::<3>::ones([1, 3, 4], &device);
    let y0 = Tensor::<2>::zeros([1, 4], &device);
    let err =
        modulated_episode(tensors.clone(), x.clone(), y0.clone(), None, None, spec).unwrap_err();
    assert!(err.0.starts_with("fan_out:"), "{err}");
    // Without fan-out it runs; zero weights give tanh(1) at every step and M = tanh(0) = 0.
    let simple = EpisodeSpec {
        modulation: Modulation::Simple { fan_out: false },
        ..spec
    };
    let out =
        modulated_episode(tensors.clone(), x.clone(), y0.clone(), None, None, simple).unwrap();
    assert!(to_vec(out.ys)
        .iter()
        .all(|v| (v - 1f32.tanh()).abs() < 1e-6));
    assert!(to_vec(out.modulator).iter().all(|v| *v == 0.0));
    assert!(out.elig.is_none());
    let err = plasticity::plastic_episode(tensors.w, tensors.alpha, z(1), x, y0, None, simple)
        .unwrap_err();
    assert!(err.0.starts_with("modulation:"), "{err}");
}
