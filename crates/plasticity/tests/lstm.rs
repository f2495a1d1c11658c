//! The plastic LSTM burn operation against the same recurrence written with plain burn tensor
//! ops (whose gradients burn's autodiff computes), and the `PlasticLstm` layer.

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use plasticity::tensors::{from_vec, to_vec};
use plasticity::{
    plastic_lstm, AlphaShape, LstmPlasticity, LstmSpec, LstmState, LstmTensors, PlasticLstmConfig,
    Plasticity,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod common;
use common::{
    assert_json_round_trip, assert_op_matches_reference, assert_trained, grad, max_rel,
    named_grads, random, LeafRng, Unused,
};

#[derive(Clone)]
struct Leaves {
    w_h: Tensor<2>,
    alpha: Tensor<2>,
    eta: Tensor<1>,
    m: Tensor<1>,
    m_bias: Tensor<1>,
    fan_w: Tensor<1>,
    fan_b: Tensor<1>,
    eta_e: Tensor<1>,
    xproj: Tensor<3>,
    h0: Tensor<2>,
    c0: Tensor<2>,
    hebb0: Tensor<3>,
    elig0: Tensor<3>,
}

fn leaves(spec: &LstmSpec, seed: u64, plastic_scale: f32, device: &Device) -> (Leaves, Tensor<3>) {
    let mut r = LeafRng::new(seed, device);
    let (h, b, t) = (spec.hidden, spec.batch, spec.steps);
    let l = Leaves {
        w_h: r.leaf(0.5, [h, 4 * h]),
        alpha: r.leaf(plastic_scale, spec.alpha.dims(h)),
        eta: r.scalar(0.3),
        m: r.leaf(1.0, [h]),
        m_bias: r.leaf(0.5, [1]),
        fan_w: r.leaf(plastic_scale, [h]),
        fan_b: r.leaf(0.3, [h]),
        eta_e: r.scalar(0.4),
        xproj: r.leaf(1.0, [b, t, 4 * h]),
        h0: r.leaf(0.5, [b, h]),
        c0: r.leaf(0.5, [b, h]),
        hebb0: r.leaf(0.2, [b, h, h]),
        elig0: r.leaf(0.3, [b, h, h]),
    };
    (l, r.tensor(1.0, [b, t, h]))
}

/// The recurrence as the module docs write it, with burn ops. Returns `hs: [B, T, H]`.
fn reference(spec: &LstmSpec, l: Leaves) -> Tensor<3> {
    let (n, b, t) = (spec.hidden, spec.batch, spec.steps);
    let kind = spec.plasticity;
    let clip = spec.clip as f32;
    let alpha3: Tensor<3> = l.alpha.unsqueeze_dim(0);
    let (mut h, mut c, mut hebb, mut elig) = (l.h0, l.c0, l.hebb0, l.elig0);
    let mut hs = Vec::new();
    for s in 0..t {
        let xp = l
            .xproj
            .clone()
            .slice([0..b, s..s + 1, 0..4 * n])
            .reshape([b, 4 * n]);
        let a = xp + h.clone().matmul(l.w_h.clone());
        let gate = |k: usize| a.clone().slice([0..b, k * n..(k + 1) * n]);
        let mut a_g = gate(3);
        if kind.is_plastic() {
            let u = h
                .clone()
                .unsqueeze_dim::<3>(1)
                .matmul(alpha3.clone() * hebb.clone())
                .reshape([b, n]);
            a_g = a_g + u;
        }
        let (i, f, o, g) = (
            sigmoid(gate(0)),
            sigmoid(gate(1)),
            sigmoid(gate(2)),
            a_g.tanh(),
        );
        c = f * c + i * g.clone();
        let h_new = o * c.clone().tanh();
        let outer = h.clone().unsqueeze_dim::<3>(2) * g.unsqueeze_dim::<3>(1);
        let rates = || {
            let m = ((h_new.clone() * l.m.clone().unsqueeze_dim::<2>(0)).sum_dim(1)
                + l.m_bias.clone().reshape([1, 1]))
            .tanh();
            let eta = m * l.fan_w.clone().unsqueeze_dim::<2>(0) + l.fan_b.clone().unsqueeze_dim(0);
            eta.unsqueeze_dim::<3>(1) // [B, 1, H]: per postsynaptic neuron j
        };
        match kind {
            LstmPlasticity::None => {}
            LstmPlasticity::Hebb => {
                let eta: Tensor<3> = l.eta.clone().reshape([1, 1, 1]);
                hebb = (hebb.clone() - eta.clone() * hebb + eta * outer).clamp(-clip, clip);
            }
            LstmPlasticity::Simple => hebb = (hebb + rates() * outer).clamp(-clip, clip),
            LstmPlasticity::Retroactive => {
                hebb = (hebb + rates() * elig.clone()).clamp(-clip, clip);
                let eta_e: Tensor<3> = l.eta_e.clone().reshape([1, 1, 1]);
                elig = elig.clone() - eta_e.clone() * elig + eta_e * outer;
            }
        }
        h = h_new;
        hs.push(h.clone().unsqueeze_dim::<3>(1));
    }
    Tensor::cat(hs, 1)
}

fn fused(spec: &LstmSpec, l: Leaves) -> Tensor<3> {
    let kind = spec.plasticity;
    plastic_lstm(
        LstmTensors {
            w_h: l.w_h,
            alpha: kind.is_plastic().then_some(l.alpha),
            eta: (kind == LstmPlasticity::Hebb).then_some(l.eta),
            modulator: kind
                .is_modulated()
                .then_some((l.m, l.m_bias, l.fan_w, l.fan_b)),
            eta_e: kind.has_eligibility().then_some(l.eta_e),
        },
        l.xproj,
        LstmState {
            h: l.h0,
            c: l.c0,
            hebb: Some(l.hebb0),
            elig: Some(l.elig0),
        },
        *spec,
    )
    .unwrap()
    .hs
}

#[test]
fn gradients_of_the_lstm_op_equal_burn_autodiff_of_the_plain_recurrence() {
    let device = Device::flex().autodiff();
    let kinds = [
        LstmPlasticity::None,
        LstmPlasticity::Hebb,
        LstmPlasticity::Simple,
        LstmPlasticity::Retroactive,
    ];
    for kind in kinds {
        for (alpha, clip, scale) in [
            (AlphaShape::PerNeuron, 2.0, 0.5),
            (AlphaShape::PerConnection, 0.15, 2.0),
            (AlphaShape::Scalar, 0.15, 2.0),
        ] {
            let spec = LstmSpec {
                alpha,
                clip,
                ..LstmSpec::new(5, 3, 7, kind)
            };
            // What the recurrence does not use: no gradient on either side.
            let used = assert_op_matches_reference(
                &format!("{spec:?}"),
                Unused::None,
                |use_fused: bool| {
                    let (l, weights) = leaves(&spec, 42, scale, &device);
                    let hs = if use_fused {
                        fused(&spec, l.clone())
                    } else {
                        reference(&spec, l.clone())
                    };
                    let grads = (hs.clone() * weights).sum().backward();
                    let named = named_grads!(&grads, l; w_h, alpha, eta, m, m_bias, fan_w, fan_b,
                        eta_e, xproj, h0, c0, hebb0, elig0);
                    (to_vec(hs), named)
                },
            );
            let expected = match kind {
                LstmPlasticity::None => 4,         // w_h, xproj, h0, c0
                LstmPlasticity::Hebb => 7,         // + alpha, eta, hebb0
                LstmPlasticity::Simple => 10,      // + alpha, m, m_b, v, b, hebb0
                LstmPlasticity::Retroactive => 12, // + eta_e, elig0
            };
            assert_eq!(used, expected, "{spec:?}");
        }
    }
}

#[test]
fn a_plastic_lstm_layer_counts_its_parameters_carries_its_state_and_trains_every_parameter() {
    let device = Device::flex().autodiff();
    for plasticity in [
        Plasticity::None,
        Plasticity::Plastic,
        Plasticity::Modulated { retroactive: false },
        Plasticity::Modulated { retroactive: true },
    ] {
        let config = PlasticLstmConfig::new(3, 4, plasticity);
        assert_json_round_trip(&config);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let layer = config.init(&mut rng, &device);
        assert_eq!(layer.num_params(), config.num_params(), "{plasticity:?}");
        let x = from_vec(random(&mut rng, 2 * 5 * 3, 1.0), [2, 5, 3], &device);
        // Two segments with the state carried equal one long run (forward values).
        let (hs_all, _) = layer.forward(x.clone(), None).unwrap();
        let (hs1, st) = layer
            .forward(x.clone().slice([0..2, 0..2, 0..3]), None)
            .unwrap();
        let (hs2, st2) = layer
            .forward(x.clone().slice([0..2, 2..5, 0..3]), Some(st))
            .unwrap();
        let joined = to_vec(Tensor::cat(vec![hs1, hs2.clone()], 1));
        assert!(max_rel(&joined, &to_vec(hs_all)) < 1e-6, "{plasticity:?}");
        let k = plasticity.kernel();
        assert_eq!(st2.hebb.is_some(), k.is_plastic());
        assert_eq!(st2.elig.is_some(), k.has_eligibility());
        let grads = hs2.sum().backward();
        let mut named = vec![
            ("w_h", grad(&layer.w_h.val(), &grads)),
            ("W_x", grad(&layer.input.weight.val(), &grads)),
        ];
        for (name, p) in [
            ("eta", &layer.eta),
            ("m", &layer.m),
            ("m_bias", &layer.m_bias),
            ("fan_w", &layer.fan_w),
            ("fan_b", &layer.fan_b),
            ("eta_e", &layer.eta_e),
        ] {
            if let Some(p) = p {
                named.push((name, grad(&p.val(), &grads)));
            }
        }
        if let Some(a) = &layer.alpha {
            named.push(("alpha", grad(&a.val(), &grads)));
        }
        assert_trained(&format!("{plasticity:?}"), named);
    }
}

#[test]
fn the_lstm_op_rejects_bad_shapes_and_missing_parameters() {
    let device = Device::flex();
    let spec = LstmSpec::new(4, 2, 3, LstmPlasticity::Simple);
    let t = LstmTensors {
        w_h: Tensor::zeros([4, 16], &device),
        alpha: Some(Tensor::zeros([1, 4], &device)),
        eta: None,
        modulator: None,
        eta_e: None,
    };
    let x = Tensor::<3>::zeros([2, 3, 16], &device);
    let z = || Tensor::<2>::zeros([2, 4], &device);
    let zero = || LstmState {
        h: z(),
        c: z(),
        hebb: None,
        elig: None,
    };
    let err = plastic_lstm(t.clone(), x.clone(), zero(), spec).unwrap_err();
    assert!(err.0.starts_with("modulator:"), "{err}");
    let err =
        plastic_lstm(t.clone(), Tensor::zeros([2, 3, 15], &device), zero(), spec).unwrap_err();
    assert!(err.0.starts_with("xproj:"), "{err}");
    let layer = PlasticLstmConfig::new(3, 4, Plasticity::None)
        .init(&mut ChaCha8Rng::seed_from_u64(0), &device);
    let err = layer
        .forward(Tensor::zeros([1, 2, 5], &device), None)
        .unwrap_err();
    assert!(err.0.starts_with("input:"), "{err}");
}
