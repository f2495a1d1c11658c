//! Every kernel source compiles to PTX with NVRTC (which needs no GPU). CI installs NVRTC from
//! PyPI (`nvidia-cuda-nvrtc`) into a throwaway virtual environment and points
//! `PLASTICITY_LIBNVRTC` (or `VIRTUAL_ENV`) at it; without NVRTC the test says so and skips,
//! unless `PLASTICITY_REQUIRE_NVRTC=1` (CI), where a missing NVRTC fails it.

use plasticity_cuda::compile::{compile, nvrtc_version, CompileError, KernelSource, SOURCES};

fn nvrtc_or_skip() -> bool {
    match nvrtc_version() {
        Ok((major, minor)) => {
            eprintln!("NVRTC {major}.{minor}");
            true
        }
        Err(e) if std::env::var("PLASTICITY_REQUIRE_NVRTC").is_ok_and(|v| v == "1") => {
            panic!("PLASTICITY_REQUIRE_NVRTC=1 but NVRTC is unusable: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

#[test]
fn every_kernel_source_compiles_to_ptx_and_defines_its_kernels() {
    if !nvrtc_or_skip() {
        return;
    }
    for src in SOURCES {
        // NVRTC's default architecture, and the ones of the GPUs the project targets
        // (Turing, Ampere, Hopper).
        for arch in [None, Some((7, 5)), Some((8, 0)), Some((9, 0))] {
            let ptx = compile(src, arch)
                .unwrap_or_else(|e| panic!("{} ({arch:?}): {e}", src.name))
                .to_src();
            for k in src.kernels {
                assert!(
                    ptx.contains(&format!(".entry {k}(")),
                    "{} ({arch:?}): no entry {k} in the PTX",
                    src.name
                );
            }
        }
    }
}

#[test]
fn a_kernel_with_a_syntax_error_is_rejected_with_nvrtc_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let broken = KernelSource {
        name: "broken.cu",
        code: "extern \"C\" __global__ void k(float* y) { y[0] = undefined_name; }",
        kernels: &["k"],
    };
    match compile(&broken, None) {
        Err(CompileError::Rejected { source, log }) => {
            assert_eq!(source, "broken.cu");
            assert!(log.contains("undefined_name"), "{log}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}
