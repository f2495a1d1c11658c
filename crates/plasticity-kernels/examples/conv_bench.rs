//! Times the fused convolution stack alone on the Omniglot shape (48 images of 31x31, 4 layers
//! of 64 channels), one thread: `cargo run --release -p plasticity-kernels --example
//! conv_bench -- [repeats]`. Prints median ms of the forward and of the backward, of the
//! whole stack and of each layer alone.
use plasticity_kernels::conv::{self, ConvLayer, ConvSpec};
use std::time::Instant;

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("one thread");
    let repeats: usize = std::env::args()
        .nth(1)
        .map_or(50, |s| s.parse().expect("repeats"));
    println!("48 images, 64 channels, 1 thread, medians of {repeats}:");
    let full = ConvSpec {
        images: 48,
        side: 31,
        channels: vec![1, 64, 64, 64, 64],
    };
    let single = |side: usize, cin: usize| ConvSpec {
        images: 48,
        side,
        channels: vec![cin, 64],
    };
    for (what, spec) in [
        ("whole stack", full),
        ("layer 1 alone (31 -> 15, 1 -> 64 channels)", single(31, 1)),
        ("layer 2 alone (15 -> 7)", single(15, 64)),
        ("layer 3 alone (7 -> 3)", single(7, 64)),
        ("layer 4 alone (3 -> 1)", single(3, 64)),
    ] {
        let (f, b) = time(&spec, repeats);
        println!("{what}: forward {f:.2} ms, backward {b:.2} ms");
    }
}

/// Median ms of the forward and of the backward (no input gradient) of `spec`.
fn time(spec: &ConvSpec, repeats: usize) -> (f64, f64) {
    // Deterministic values in [-0.5, 0.5) without an RNG dependency.
    let fill = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|k| ((k * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    };
    let params: Vec<(Vec<f32>, Vec<f32>)> = (0..spec.layers())
        .map(|l| {
            (
                fill(spec.weight_len(l), l)
                    .iter()
                    .map(|w| w * 0.2)
                    .collect(),
                fill(64, l + 9),
            )
        })
        .collect();
    let layers: Vec<ConvLayer<'_, f32>> = params
        .iter()
        .map(|(w, b)| ConvLayer { weight: w, bias: b })
        .collect();
    let x = fill(spec.input_len(), 99);
    let gy = fill(spec.output_len(), 7);
    let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let t0 = Instant::now();
        let rec = conv::forward(spec, &layers, &x).expect("forward");
        let t1 = Instant::now();
        let g = conv::backward(&layers, &rec, &gy, false).expect("backward");
        let t2 = Instant::now();
        std::hint::black_box(g);
        fwd.push((t1 - t0).as_secs_f64() * 1e3);
        bwd.push((t2 - t1).as_secs_f64() * 1e3);
    }
    fwd.sort_by(f64::total_cmp);
    bwd.sort_by(f64::total_cmp);
    (fwd[repeats / 2], bwd[repeats / 2])
}
