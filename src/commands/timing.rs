//! Timing of full training steps (episode generation and forward, backward, Adam step) for
//! `plasticity bench`.

use super::common::Failure;
use plasticity::train::Experiment;
use std::time::Instant;

/// Timings of full training steps of one workload.
pub(crate) struct StepTimes {
    /// Per step, after 2 warm-up steps: total, and its parts (episode generation + forward,
    /// backward, Adam step), in ms.
    pub(crate) total: Vec<f64>,
    pub(crate) parts: [Vec<f64>; 3],
    /// Most device memory the allocator held (GPU only), MB.
    pub(crate) device_mb: Option<f64>,
}

/// Times `updates` full training steps of `task` on `device`, after 2 warm-up steps. A failed
/// step (a GPU driver error) is a failure (exit 1), as in a training run.
pub(crate) fn time_steps<E: Experiment>(
    task: &E,
    updates: usize,
    device: &burn::tensor::Device,
) -> Result<StepTimes, Failure> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let mut model = task.init_model(&mut rng, device);
    let (adam, lr) = task.optimizer();
    let mut optim = adam.init();
    let mut times = StepTimes {
        total: Vec::new(),
        parts: Default::default(),
        device_mb: None,
    };
    // On a GPU the work is asynchronous: wait for it at the end of each part.
    let sync = || {
        device
            .sync()
            .map_err(|e| Failure(1, format!("device: {e:?}")))
    };
    let note_memory = |times: &mut StepTimes| {
        if let Some(u) = device.memory_pool_usage() {
            let mb = u.bytes_reserved as f64 / 1e6;
            times.device_mb = Some(times.device_mb.map_or(mb, |m: f64| m.max(mb)));
        }
    };
    for k in 0..updates + 2 {
        let t0 = Instant::now();
        let (loss, _) = task
            .train_batch(&model, &mut rng, device)
            .map_err(|e| Failure(1, format!("update {} failed: {e}", k + 1)))?;
        sync()?;
        note_memory(&mut times);
        let t1 = Instant::now();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        sync()?;
        note_memory(&mut times);
        let t2 = Instant::now();
        model = optim.step(lr, model, grads);
        sync()?;
        let t3 = Instant::now();
        if k >= 2 {
            times.total.push((t3 - t0).as_secs_f64() * 1e3);
            for (part, (a, b)) in times.parts.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3)]) {
                part.push((b - a).as_secs_f64() * 1e3);
            }
        }
    }
    Ok(times)
}

/// Median of a non-empty list of timings.
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
