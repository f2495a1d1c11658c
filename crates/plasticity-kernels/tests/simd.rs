//! Run-time CPU feature dispatch (`simd.rs`) changes the instruction set, never the result: the
//! AVX2 and AVX-512 versions of every kernel give the same bits as the baseline version (f32, shapes large
//! enough to vectorise, every rule, clip and the batch split). A test binary of its own, since
//! it switches the dispatch for the whole process. On a CPU without them the runs take the
//! baseline path and the test still checks determinism.

use plasticity_kernels::dense::{
    dense_backward, dense_forward, DenseActivation, DenseParams, DenseSpec,
};
use plasticity_kernels::{
    backward, forward, simd, EpisodeSpec, Grads, ModulatedParams, Modulation, ModulatorParams,
    Params, RuleParams, TraceRule,
};

/// Deterministic values in `[-s, s)`.
fn values(n: usize, seed: u64, s: f32) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * s
        })
        .collect()
}

/// Runs an episode of `spec` from `y0 = 0` on inputs drawn with `seeds[0]` and its backward from
/// `dL/dy` drawn with `seeds[1]`; appends `ys`, `dL/dw`, `dL/dalpha` and `dL/dx` to `out` and
/// returns the gradients.
fn run_episode<'a>(
    spec: &EpisodeSpec,
    p: impl Into<RuleParams<'a, f32>>,
    seeds: [u64; 2],
    out: &mut Vec<f32>,
) -> Grads<f32> {
    let p = p.into();
    let len = spec.steps * spec.batch * spec.neurons;
    let y0 = vec![0.0; spec.batch * spec.neurons];
    let ep = forward(spec, p, &values(len, seeds[0], 1.0), &y0, None, None).expect("valid");
    out.extend_from_slice(&ep.ys);
    let g = backward(p, ep, &values(len, seeds[1], 1.0), None, None).expect("valid");
    out.extend(g.w.iter().chain(&g.plastic.alpha).chain(&g.x));
    g
}

/// Every output and gradient of a set of episodes, concatenated.
fn run_all() -> Vec<f32> {
    let mut out = Vec::new();
    // Plain rules: reversed (no clip) and checkpointed (clip), batch 1 (rows split) and batch 4
    // (one episode per thread).
    for (rule, clip, batch) in [
        (TraceRule::Hebb, None, 1),
        (TraceRule::Oja, None, 1),
        (TraceRule::Hebb, Some(0.5), 4),
        (TraceRule::Oja, Some(0.5), 4),
    ] {
        let (n, t) = (67, 9);
        let spec = EpisodeSpec {
            rule,
            clip,
            ..EpisodeSpec::new(n, batch, t)
        };
        let (w, alpha) = (values(n * n, 1, 0.2), values(n * n, 2, 0.2));
        let p = Params {
            w: &w,
            alpha: &alpha,
            eta: 0.1,
        };
        let g = run_episode(&spec, &p, [3, 4], &mut out);
        out.push(g.plastic.rule.eta);
    }
    // Retroactive neuromodulation with fan-out.
    let (n, t, batch) = (67, 9, 3);
    let spec = EpisodeSpec {
        modulation: Modulation::Retroactive { fan_out: true },
        ..EpisodeSpec::new(n, batch, t)
    };
    let (w, alpha, m) = (
        values(n * n, 5, 0.2),
        values(n * n, 6, 0.2),
        values(n, 7, 0.5),
    );
    let (fan_w, fan_b) = (values(n, 8, 0.5), values(n, 9, 0.1));
    let p = ModulatedParams {
        w: &w,
        alpha: &alpha,
        modulator: ModulatorParams {
            m: &m,
            m_bias: 0.1,
            fan_w: &fan_w,
            fan_b: &fan_b,
            eta_e: 0.2,
        },
    };
    let g = run_episode(&spec, &p, [10, 11], &mut out);
    out.extend(&g.plastic.rule.modulator.m);
    // The plastic feed-forward layer.
    let spec = DenseSpec {
        inputs: 64,
        outputs: 20,
        batch: 8,
        steps: 6,
        rule: TraceRule::Oja,
        activation: DenseActivation::Softmax,
    };
    let (w, alpha) = (values(64 * 20, 12, 0.3), values(64 * 20, 13, 0.3));
    let p = DenseParams {
        w: &w,
        alpha: &alpha,
        eta: 0.3,
    };
    let ep = dense_forward(&spec, &p, &values(6 * 8 * 64, 14, 1.0), &[]).expect("valid");
    out.extend_from_slice(ep.logits());
    let g = dense_backward(&p, &ep, &values(6 * 8 * 20, 15, 1.0)).expect("valid");
    out.extend(g.w.iter().chain(&g.alpha).chain(&g.x).chain([&g.eta]));
    out
}

#[test]
fn every_instruction_set_gives_the_same_bits() {
    use simd::Isa;
    simd::force(Isa::Baseline);
    assert_eq!(simd::active(), Isa::Baseline);
    let baseline = run_all();
    assert!(baseline.iter().all(|v| v.is_finite()));
    for isa in [Isa::Avx2, Isa::Avx512] {
        simd::force(isa);
        // On a CPU without `isa`, the best it has runs (possibly the baseline again).
        println!(
            "kernels capped at {}: run with {}",
            isa.name(),
            simd::instruction_set()
        );
        let other = run_all();
        assert_eq!(baseline.len(), other.len());
        let differing = baseline
            .iter()
            .zip(&other)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differing,
            0,
            "{}: {differing} of {} values differ from the baseline's",
            simd::instruction_set(),
            other.len()
        );
    }
}
