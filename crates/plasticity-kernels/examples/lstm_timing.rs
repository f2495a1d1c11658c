//! Times the fused LSTM recurrence (forward + backward) at the `lm` small preset's sizes:
//! `cargo run --release -p plasticity-kernels --example lstm_timing`.

use plasticity_kernels::{
    lstm_backward, lstm_forward, LstmInit, LstmParams, LstmPlasticity, LstmSpec, ModulatorParams,
};
use std::time::Instant;

fn main() {
    let (h, b, t) = (200, 20, 35);
    for kind in [
        LstmPlasticity::None,
        LstmPlasticity::Hebb,
        LstmPlasticity::Simple,
        LstmPlasticity::Retroactive,
    ] {
        let spec = LstmSpec::new(h, b, t, kind);
        let v = |n: usize, s: f32| -> Vec<f32> {
            (0..n)
                .map(|k| s * (((k * 7919) % 1000) as f32 / 500.0 - 1.0))
                .collect()
        };
        let w_h = v(4 * h * h, 0.07);
        let alpha = v(spec.alpha_len(), 0.07);
        let modw = if kind.is_modulated() { h } else { 0 };
        let (m, fw, fb) = (v(modw, 0.07), v(modw, 1.0), v(modw, 0.0));
        let p = LstmParams {
            w_h: &w_h,
            alpha: &alpha,
            eta: 0.1,
            modulator: ModulatorParams {
                m: &m,
                m_bias: 0.0,
                fan_w: &fw,
                fan_b: &fb,
                eta_e: 0.1,
            },
        };
        let xproj = v(t * b * 4 * h, 1.0);
        let z = vec![0.0; b * h];
        let init = LstmInit {
            h0: &z,
            c0: &z,
            hebb0: None,
            elig0: None,
        };
        let gh = v(t * b * h, 0.01);
        let mut times = Vec::new();
        for _ in 0..7 {
            let t0 = Instant::now();
            let run = lstm_forward(&spec, &p, &xproj, &init).unwrap();
            let t1 = Instant::now();
            let g = lstm_backward(&p, &run, &gh, None, None, None).unwrap();
            let t2 = Instant::now();
            assert!(g.w_h[0].is_finite());
            times.push(((t1 - t0).as_secs_f64() * 1e3, (t2 - t1).as_secs_f64() * 1e3));
        }
        times.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
        let (f, bw) = times[3];
        println!(
            "{kind:?}: forward {f:.1} ms, backward {bw:.1} ms (H={h}, B={b}, T={t}, one layer)"
        );
    }
}
