//! Run-time CPU feature dispatch: the kernels' loops compiled three times, for the baseline of
//! the target (x86-64: SSE2), for AVX2 + FMA and for AVX-512, and the best the CPU running the
//! binary has chosen once. A binary or wheel built on one machine is then as fast on another as
//! one built with `-C target-cpu=native`, and still runs on a CPU without AVX2.
//!
//! Only the instruction set changes, never the arithmetic: the kernels call no `mul_add` and
//! sum in fixed lanes ([`crate::parallel`]), so every version gives the same bits (tested in
//! `tests/simd.rs`). On aarch64, NEON is part of the baseline and needs no dispatch.
//!
//! `PLASTICITY_SIMD=baseline|avx2|avx512` in the environment caps the instruction set (to
//! measure what the dispatch gains, side by side in one binary); [`force`] does the same in a
//! program.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction set the kernels can run with, from the least to the most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The target's baseline (x86-64: SSE2; aarch64: NEON).
    Baseline = 1,
    /// AVX2 and FMA (x86-64).
    Avx2 = 2,
    /// AVX-512 F/BW/VL/DQ with AVX2 and FMA (x86-64).
    Avx512 = 3,
}

impl Isa {
    /// The instruction set in words.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline if cfg!(target_arch = "aarch64") => "neon (baseline)",
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512",
        }
    }

    fn from_u8(v: u8) -> Option<Isa> {
        match v {
            1 => Some(Isa::Baseline),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Avx512),
            _ => None,
        }
    }
}

/// The chosen instruction set (`0`: not decided yet).
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// The best instruction set this CPU has.
pub fn best() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
            return Isa::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

/// The instruction set the kernels run with: the CPU's best, capped by `PLASTICITY_SIMD` or
/// [`force`]. Decided once.
pub fn active() -> Isa {
    if let Some(isa) = Isa::from_u8(CHOICE.load(Ordering::Relaxed)) {
        return isa;
    }
    let cap = match std::env::var("PLASTICITY_SIMD").as_deref() {
        Ok("baseline") => Isa::Baseline,
        Ok("avx2") => Isa::Avx2,
        _ => Isa::Avx512,
    };
    let isa = best().min(cap);
    CHOICE.store(isa as u8, Ordering::Relaxed);
    isa
}

/// Runs the kernels with at most `cap` from now on (the CPU's best when it has less).
pub fn force(cap: Isa) {
    CHOICE.store(best().min(cap) as u8, Ordering::Relaxed);
}

/// The instruction set the kernels run with on this CPU, in words (for logs and benchmarks).
pub fn instruction_set() -> &'static str {
    active().name()
}

/// Runs `f` compiled for the instruction set the kernels run with. `f` (a kernel's loop over
/// its rows or episodes) is inlined into one copy per instruction set; the functions it calls
/// are compiled with it when they are `#[inline(always)]` (a closure that only calls such a
/// function is always inlined; a large closure body may not be, so the passes keep their
/// per-block work in named `#[inline(always)]` functions).
#[inline(always)]
pub(crate) fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match active() {
        Isa::Avx512 => {
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
            unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: `active` chose AVX-512 only where the CPU has it.
            return unsafe { avx512(f) };
        }
        Isa::Avx2 => {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: `active` chose AVX2 only where the CPU has it and FMA.
            return unsafe { avx2(f) };
        }
        Isa::Baseline => {}
    }
    f()
}
