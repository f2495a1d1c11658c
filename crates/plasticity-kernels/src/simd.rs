//! Run-time CPU feature dispatch: the kernels' loops compiled twice, for the baseline of the
//! target (x86-64: SSE2) and for AVX2 + FMA, and the second chosen when the CPU running the
//! binary has those features. A binary or wheel built on one machine is then as fast on
//! another as one built with `-C target-cpu=native`, and still runs on a CPU without AVX2.
//!
//! Only the instruction set changes, never the arithmetic: the kernels call no `mul_add` and
//! sum in fixed lanes ([`crate::parallel`]), so both versions give the same bits (tested).
//! AVX-512 is not used: the kernels' lanes are 8 `f32` wide (one AVX2 register). On aarch64,
//! NEON is part of the baseline and needs no dispatch.
//!
//! `PLASTICITY_SIMD=baseline` in the environment forces the baseline version (to measure what
//! the dispatch gains, side by side in one binary).

use std::sync::atomic::{AtomicU8, Ordering};

/// 0: not decided yet; 1: AVX2 + FMA; 2: baseline.
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Whether the AVX2 + FMA versions run: the CPU has both, `PLASTICITY_SIMD` is not `baseline`
/// and [`force_baseline`] was not called. Decided once.
pub fn avx2_active() -> bool {
    match CHOICE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let forced_off = std::env::var("PLASTICITY_SIMD").is_ok_and(|v| v == "baseline");
            let active = !forced_off && cpu_has_avx2_fma();
            CHOICE.store(if active { 1 } else { 2 }, Ordering::Relaxed);
            active
        }
    }
}

/// Whether this CPU has AVX2 and FMA.
fn cpu_has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs the kernels in their baseline version from now on (`true`), or in the best this CPU
/// has (`false`): for tests and benchmarks that compare the two in one process.
pub fn force_baseline(baseline: bool) {
    let best = !baseline && cpu_has_avx2_fma();
    CHOICE.store(if best { 1 } else { 2 }, Ordering::Relaxed);
}

/// The instruction set the kernels run with on this CPU, in words (for logs and benchmarks).
pub fn instruction_set() -> &'static str {
    if avx2_active() {
        "avx2+fma (run-time dispatch)"
    } else if cfg!(target_arch = "aarch64") {
        "neon (baseline)"
    } else {
        "baseline"
    }
}

/// Runs `f` compiled for the best instruction set this CPU has. `f` (a kernel's loop over its
/// rows or episodes) is inlined into an AVX2 + FMA copy and into a baseline copy; functions it
/// calls are compiled with it when they are `#[inline]`, so the row kernels inside are.
#[inline(always)]
pub(crate) fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if avx2_active() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: `avx2_active` checked that the CPU has AVX2 and FMA.
        return unsafe { avx2(f) };
    }
    f()
}
