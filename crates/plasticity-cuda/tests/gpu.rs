//! GPU against CPU: every setting of `plasticity_cuda::check` (every trace rule, simple and
//! retroactive modulation with and without fan-out, clip, alpha shape, input mode, the network
//! without plasticity, checkpoint strategies, a batched N = 257, T = 106 episode), outputs and
//! every gradient, on CUDA device 0 against the CPU kernels.
//!
//! Skipped with a message where there is no CUDA device or library (CI); with
//! `PLASTICITY_REQUIRE_CUDA=1` (the device script, bench/cuda-device-check.sh) a missing device
//! fails instead.

use plasticity_cuda::check::{compare, settings, TOLERANCES};
use plasticity_cuda::{Engine, Error};

fn engine_or_skip() -> Option<Engine> {
    match Engine::new(0) {
        Ok(e) => {
            eprintln!("CUDA device 0: {}", e.name());
            Some(e)
        }
        Err(e) if std::env::var("PLASTICITY_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("PLASTICITY_REQUIRE_CUDA=1 but the engine did not start: {e}")
        }
        Err(e) => {
            // Without a device the engine says which library or device is missing; it never
            // panics.
            let text = e.to_string();
            match &e {
                Error::Missing(m) => assert!(text.contains(m.library.names()[0]), "{text}"),
                Error::NoDevice(_) => assert!(text.contains("does not exist"), "{text}"),
                other => panic!("unexpected error without a device: {other}"),
            }
            eprintln!("skipped: {text}");
            None
        }
    }
}

#[test]
fn every_setting_matches_the_cpu_kernels() {
    let Some(engine) = engine_or_skip() else {
        return;
    };
    // `PLASTICITY_CHECK_MAX_NEURONS` keeps the small settings only (the fake driver,
    // tests/fake-driver/run.sh, runs the kernels on the CPU, one OS thread per GPU thread).
    let max = std::env::var("PLASTICITY_CHECK_MAX_NEURONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let diffs: Vec<_> = settings()
        .iter()
        .filter(|s| s.neurons <= max)
        .map(|s| compare(&engine, s).expect("the GPU runs every setting"))
        .collect();
    let mut bad = Vec::new();
    for d in &diffs {
        if !d.ok() {
            bad.push(format!(
                "{:?}: outputs {:?}, gradients {:?}",
                d.spec, d.outputs, d.gradients
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} settings beyond the tolerances {TOLERANCES:?}:\n{}",
        bad.len(),
        diffs.len(),
        bad.join("\n")
    );
}

#[test]
fn a_missing_device_index_is_an_error_not_a_panic() {
    let Some(engine) = engine_or_skip() else {
        return;
    };
    drop(engine);
    match Engine::new(4096) {
        Err(Error::NoDevice(text)) => assert!(text.contains("4096"), "{text}"),
        other => panic!("expected NoDevice, got {other:?}"),
    }
}
