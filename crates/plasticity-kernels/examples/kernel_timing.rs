//! Times the fused forward and backward alone at the pattern task's size:
//! `cargo run --release -p plasticity-kernels --example kernel_timing -- [N] [B] [T]`.
//! `CLIP=c` clips the trace (the checkpointed backward). `MODULATION=simple|retroactive` times
//! the neuromodulated kernels instead (clip 1, fan-out).
use plasticity_kernels::{
    backward, forward, AlphaShape, EpisodeSpec, ModulatedParams, Modulation, ModulatorParams,
    Params,
};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, b, t) = (
        *args.first().unwrap_or(&1001),
        *args.get(1).unwrap_or(&1),
        *args.get(2).unwrap_or(&106),
    );
    // ALPHA=per-neuron times the kernels without the per-connection alpha streams.
    let per_neuron = std::env::var("ALPHA").is_ok_and(|a| a == "per-neuron");
    let spec = EpisodeSpec {
        alpha: if per_neuron {
            AlphaShape::PerNeuron
        } else {
            AlphaShape::PerConnection
        },
        clip: std::env::var("CLIP").ok().and_then(|c| c.parse().ok()),
        ..EpisodeSpec::new(n, b, t)
    };
    let w: Vec<f32> = (0..n * n)
        .map(|k| ((k * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.02)
        .collect();
    let alpha = w[..spec.alpha.len(n)].to_vec();
    let x: Vec<f32> = (0..t * b * n)
        .map(|k| if k % 3 == 0 { 1.0 } else { -1.0 })
        .collect();
    let (y0, gy) = (vec![0.0f32; b * n], vec![0.01f32; t * b * n]);
    let p = Params {
        w: &w,
        alpha: &alpha,
        eta: 0.01,
    };
    let modulation = match std::env::var("MODULATION").as_deref() {
        Ok("simple") => Modulation::Simple { fan_out: true },
        Ok("retroactive") => Modulation::Retroactive { fan_out: true },
        _ => Modulation::None,
    };
    if modulation != Modulation::None {
        let spec = EpisodeSpec {
            modulation,
            clip: Some(1.0),
            ..spec
        };
        let m: Vec<f32> = w[..n].iter().map(|v| v * 10.0).collect();
        let mp = ModulatedParams {
            w: &w,
            alpha: &alpha,
            modulator: ModulatorParams {
                m: &m,
                m_bias: 0.1,
                fan_w: &m,
                fan_b: &m,
                eta_e: 0.1,
            },
        };
        for round in 0..8 {
            let t0 = Instant::now();
            let ep = forward(&spec, &mp, &x, &y0, None, None).unwrap();
            let t1 = Instant::now();
            let saved = ep.saved_bytes();
            backward(&mp, ep, &gy, None, None).unwrap();
            let t2 = Instant::now();
            println!(
                "round {round}: forward {:.1} ms, backward {:.1} ms ({modulation:?}, checkpoints {:.1} MB)",
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3,
                saved as f64 / 1e6
            );
        }
        return;
    }
    for round in 0..8 {
        let t0 = Instant::now();
        let ep = forward(&spec, &p, &x, &y0, None, None).unwrap();
        let t1 = Instant::now();
        let g = backward(&p, ep, &gy, None, None).unwrap();
        let t2 = Instant::now();
        println!(
            "round {round}: forward {:.1} ms, backward {:.1} ms (rejected reversal: {})",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            g.reversal_rejected
        );
    }
}
