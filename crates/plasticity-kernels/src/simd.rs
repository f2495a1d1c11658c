//! Run-time CPU feature dispatch: the kernels' loops compiled three times, for the baseline of
//! the target (x86-64: SSE2), for AVX2 + FMA and for AVX-512, and the best the CPU running the
//! binary has chosen once. A binary or wheel built on one machine is then as fast on another as
//! one built with `-C target-cpu=native`, and still runs on a CPU without AVX2.
//!
//! Only the instruction set changes, never the arithmetic: the kernels call no `mul_add` and
//! sum in fixed lanes ([`crate::parallel`]), so every version gives the same bits (tested in
//! `tests/simd.rs`). On aarch64, NEON is part of the baseline and needs no dispatch.
//!
//! The passes of the engine are defined with [`multiversion!`]; the out-of-line row kernel of
//! pass B picks its copy the same way.
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

/// Defines a function whose body is compiled three times, for the baseline, AVX2 + FMA and
/// AVX-512, and which runs the copy for [`active`]. Closures in the body (the per-block work
/// handed to rayon) are compiled with their copy's target features, and so are the
/// `#[inline(always)]` row kernels they call.
///
/// ```text
/// multiversion! {
///     /// Docs.
///     pub(crate) fn name [F: Real, R: Rule<F>] [F, R] (a: &[F], b: usize) -> Out { body }
/// }
/// ```
///
/// The first brackets hold the generic parameters, the second the arguments that name them;
/// every parameter is `name: Type`.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident [$($gen:tt)*] [$($garg:tt)*]
            ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name<$($gen)*>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                fn avx512<$($gen)*>($($arg: $ty),*) $(-> $ret)? $body
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma")]
                fn avx2<$($gen)*>($($arg: $ty),*) $(-> $ret)? $body
                match $crate::simd::active() {
                    // SAFETY: `active` chose the instruction set only where the CPU has it.
                    $crate::simd::Isa::Avx512 => return unsafe { avx512::<$($garg)*>($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::Isa::Avx2 => return unsafe { avx2::<$($garg)*>($($arg),*) },
                    $crate::simd::Isa::Baseline => {}
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;

/// Runs `iters` rounds of 12 independent chains `a <- step(a, x, y)` over vectors of type
/// `$t`; returns the lanes updated per round.
#[cfg(target_arch = "x86_64")]
macro_rules! chains {
    ($iters:expr, $t:ty, $set1:ident, $step:expr) => {
        chains!($iters, $t, $set1, $step; 0 1 2 3 4 5 6 7 8 9 10 11)
    };
    ($iters:expr, $t:ty, $set1:ident, $step:expr; $($chain:literal)+) => {{
        let x = $set1(std::hint::black_box(1.000_001f32));
        let y = $set1(std::hint::black_box(-0.000_001f32));
        let mut a: [$t; 12] = [$set1(1.0); 12];
        for _ in 0..$iters {
            // One expression per chain, not a loop, so the 12 chains stay in registers.
            a = [$($step(a[$chain], x, y)),+];
        }
        std::hint::black_box(&a);
        (12 * core::mem::size_of::<$t>() / 4) as f64
    }};
}

/// The arithmetic peak of one thread in GFLOP/s, measured (not a datasheet figure): 12
/// independent chains of vector fused multiply-adds (2 flops per lane) in the instruction set
/// the kernels run with ([`active`]); with the baseline (no FMA), a multiply and an add. Best of
/// 3 runs of a few milliseconds. The kernels' own loops compile to separate multiplies and
/// adds (no `mul_add`, for reproducible results), so they reach at most half of this peak.
pub fn fma_gflops_one_thread() -> f64 {
    let iters: usize = 200_000;
    let mut best = f64::INFINITY;
    let mut lanes = 0.0;
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        lanes = peak_rounds(iters);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    iters as f64 * lanes * 2.0 / best / 1e9
}

/// `iters` rounds of the peak measurement; returns the lanes updated per round.
fn peak_rounds(iters: usize) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::*;
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
        unsafe fn avx512(iters: usize) -> f64 {
            chains!(iters, __m512, _mm512_set1_ps, _mm512_fmadd_ps)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(iters: usize) -> f64 {
            chains!(iters, __m256, _mm256_set1_ps, _mm256_fmadd_ps)
        }
        fn sse2(iters: usize) -> f64 {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe {
                chains!(iters, __m128, _mm_set1_ps, |a, x, y| _mm_add_ps(
                    _mm_mul_ps(a, x),
                    y
                ))
            }
        }
        // SAFETY: `active` chose each instruction set only where the CPU has it.
        match active() {
            Isa::Avx512 => unsafe { avx512(iters) },
            Isa::Avx2 => unsafe { avx2(iters) },
            Isa::Baseline => sse2(iters),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let x = std::hint::black_box(1.000_001f32);
        let y = std::hint::black_box(-0.000_001f32);
        let mut a = [1.0f32; 48];
        for _ in 0..iters {
            for v in a.iter_mut() {
                *v = *v * x + y;
            }
        }
        std::hint::black_box(&a);
        a.len() as f64
    }
}
