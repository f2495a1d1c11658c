//! GPU against CPU: every setting of `plasticity_cuda::check` (every trace rule, simple and
//! retroactive modulation with and without fan-out, clip, alpha shape, input mode, the network
//! without plasticity, checkpoint strategies, a batched N = 257, T = 106 episode), outputs and
//! every gradient, and the device stepper against the CPU `Stepper` (activities and modulator
//! of every step, final traces), on CUDA device 0 against the CPU kernels; the stepper's bytes
//! over the bus per step.
//!
//! Skipped with a message where there is no CUDA device or library (CI); with
//! `PLASTICITY_REQUIRE_CUDA=1` (the device script, bench/cuda-device-check.sh) a missing device
//! fails instead.

use plasticity_cuda::check::{compare, settings, TOLERANCES};
use plasticity_cuda::layout::{step_transfers, Transfers};
use plasticity_cuda::{Engine, Error, RuleParams};
use plasticity_kernels::{EpisodeSpec, ModulatedParams, Modulation, ModulatorParams};

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

#[test]
fn a_stepper_step_moves_x_in_and_y_with_the_modulator_out() {
    let Some(engine) = engine_or_skip() else {
        return;
    };
    let (n, b) = (5, 3);
    let spec = EpisodeSpec {
        modulation: Modulation::Simple { fan_out: true },
        ..EpisodeSpec::new(n, b, 1)
    };
    let w = vec![0.1f32; n * n];
    let v = vec![0.2f32; n];
    let p = RuleParams::Modulated(ModulatedParams {
        w: &w,
        alpha: &w,
        modulator: ModulatorParams {
            m: &v,
            fan_w: &v,
            fan_b: &v,
            ..ModulatorParams::default()
        },
    });
    let mut st = engine
        .stepper(&spec, &p, &vec![0.0; b * n], None, None)
        .unwrap();
    let x = vec![0.5f32; b * n];
    for _ in 0..3 {
        let before = engine.transferred();
        let (y, m) = st.step(&x).unwrap();
        assert_eq!((y.len(), m.len()), (b * n, b));
        let after = engine.transferred();
        let moved = Transfers {
            to_device: after.to_device - before.to_device,
            to_host: after.to_host - before.to_host,
        };
        assert_eq!(moved, step_transfers(&spec));
        assert_eq!(moved.to_host, 4 * (15 + 3));
    }
    // A wrong input size is an error naming `x`, not a panic.
    match st.step(&x[1..]) {
        Err(Error::Spec(text)) => assert!(text.contains("x: expected 15"), "{text}"),
        other => panic!("expected a size error, got {other:?}"),
    }
}
