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
use common::{
    assert_json_round_trip, assert_op_on_episode, assert_trained, grad, random, reference_step,
    EpisodeLeaves, Unused,
};

/// The modulated episode as the paper writes it (ICLR 2019 section 3), with burn ops.
/// Returns `ys: [B, T, N]`.
fn reference(spec: &EpisodeSpec, l: EpisodeLeaves) -> Tensor<3> {
    let md = l.modulator();
    let mut y = l.y0.clone();
    let mut hebb = l.hebb0.clone();
    let mut elig = l.elig0.clone().unwrap();
    let mut ys = Vec::new();
    for s in 0..spec.steps {
        let (y_new, outer) = reference_step(&l, &y, &hebb, s); // eq. 1
                                                               // M(t) = tanh(m . y(t) + m_b): [B, 1]
        let modulator = ((y_new.clone() * md.m.clone().unsqueeze_dim::<2>(0)).sum_dim(1)
            + md.m_bias.clone().reshape([1, 1]))
        .tanh();
        // eta_j(t): [B, N] (fan-out) or [B, 1]
        let eta: Tensor<2> = if spec.modulation.fan_out() {
            modulator * md.fan_w.clone().unsqueeze_dim::<2>(0) + md.fan_b.clone().unsqueeze_dim(0)
        } else {
            modulator
        };
        let eta3: Tensor<3> = eta.unsqueeze_dim(1); // [B, 1, N|1]: per postsynaptic neuron j
        let clip = |h: Tensor<3>| match spec.clip {
            Some(c) => h.clamp(-c as f32, c as f32),
            None => h,
        };
        match spec.modulation {
            Modulation::Simple { .. } => hebb = clip(hebb + eta3 * outer), // eq. 3
            Modulation::Retroactive { .. } => {
                hebb = clip(hebb + eta3 * elig.clone()); // eq. 4, the old E
                let eta_e: Tensor<3> = md.eta_e.clone().reshape([1, 1, 1]);
                elig = elig.clone() - eta_e.clone() * elig + eta_e * outer; // eq. 5
            }
            Modulation::None => unreachable!(),
        }
        y = y_new;
        ys.push(y.clone().unsqueeze_dim::<3>(1));
    }
    Tensor::cat(ys, 1)
}

fn fused(spec: &EpisodeSpec, l: EpisodeLeaves) -> Tensor<3> {
    let md = l.modulator().clone();
    modulated_episode(
        ModulatedTensors {
            w: l.w,
            alpha: l.alpha,
            m: md.m,
            m_bias: md.m_bias,
            fan_out: Some((md.fan_w, md.fan_b)),
            eta_e: md.eta_e,
        },
        l.x,
        l.y0,
        Some(l.hebb0),
        l.elig0,
        *spec,
    )
    .unwrap()
    .ys
}

#[test]
fn gradients_of_the_modulated_op_equal_burn_autodiff_of_the_plain_recurrence() {
    for modulation in [
        Modulation::Simple { fan_out: false },
        Modulation::Simple { fan_out: true },
        Modulation::Retroactive { fan_out: false },
        Modulation::Retroactive { fan_out: true },
    ] {
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
            // What the recurrence does not use: the op reports no or zero gradient.
            let used_by_reference =
                assert_op_on_episode(&spec, Unused::NoneOrZero, fused, reference);
            // w, alpha, the modulator's 5, x, y0, hebb0, elig0 (eta is the fixed-rate rule's).
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
        assert_json_round_trip(&config);
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
