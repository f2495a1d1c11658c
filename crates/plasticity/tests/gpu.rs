//! GPU against CPU: the episode operation on a wgpu device (the tensor-op path) gives the CPU
//! kernels' outputs and gradients (`plasticity::device_check`: both rules, both input modes,
//! the three alpha shapes, with and without clipping, and a batched N = 257, T = 106 episode).
//!
//! Built only with `--features wgpu`; skipped with a message when no GPU is present (CI has
//! none: there it only checks that the feature compiles). `PLASTICITY_GPU_TEST=1` runs it even
//! where the check below sees no GPU device file (for example on a software Vulkan driver).
//! `plasticity check --device wgpu` runs the same comparison from the command line.
#![cfg(feature = "wgpu")]

use burn::tensor::{Device, DeviceKind};
use plasticity::device_check::{compare_with_cpu, TOLERANCES};

fn gpu_present() -> bool {
    std::env::var_os("PLASTICITY_GPU_TEST").is_some()
        || std::path::Path::new("/dev/nvidiactl").exists()
        || std::path::Path::new("/dev/kfd").exists()
        || cfg!(target_os = "macos")
}

#[test]
fn gpu_episode_equals_the_cpu_kernels() {
    if !gpu_present() {
        eprintln!("skipped: no GPU on this machine (no /dev/nvidiactl or /dev/kfd)");
        return;
    }
    let gpu = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
    let diffs = compare_with_cpu(&gpu);
    let (tol_out, tol_grad) = TOLERANCES;
    for d in &diffs {
        assert!(
            d.outputs < tol_out,
            "{:?}: outputs differ by {:e}",
            d.spec,
            d.outputs
        );
        for (name, g) in ["w", "alpha", "eta", "x", "y0", "hebb0"]
            .iter()
            .zip(d.gradients)
        {
            assert!(g < tol_grad, "{:?}: d/d{name} differs by {g:e}", d.spec);
        }
    }
    let worst_out = diffs.iter().map(|d| d.outputs).fold(0.0, f32::max);
    let worst_grad = diffs.iter().flat_map(|d| d.gradients).fold(0.0, f32::max);
    eprintln!(
        "{} settings; worst relative difference GPU vs CPU: outputs {worst_out:.2e}, gradients {worst_grad:.2e}",
        diffs.len()
    );
}
