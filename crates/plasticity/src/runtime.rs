//! How the kernels share the machine: threads (rayon's pool and the matrix products' own
//! threads), the allocator, and the memory traffic of a training step against the machine's
//! streaming bandwidth (the roofline of `plasticity bench`).

use std::fmt;
use std::time::Instant;

/// How the kernels' matrix products (`matrixmultiply`, which keeps its own threads) share
/// the cores with rayon's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProductThreads {
    /// As many threads per product as rayon's pool (the physical cores by default): the
    /// recurrent and LSTM kernels run their large products one at a time.
    PerRun,
    /// One thread per product: the kernel already runs its products in parallel, one block of
    /// images per rayon thread (the Omniglot convolutions); threaded products inside them would
    /// put twice as many threads as cores to work.
    One,
}

/// The most threads accepted on any machine (more on a machine with over 16 cores: 16 per
/// core).
pub const MAX_THREADS: usize = 256;

/// Why a thread count was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThreadsError {
    /// Zero threads.
    Zero,
    /// More than `most` threads on a machine of `cores` cores.
    TooMany {
        /// Threads asked for.
        asked: usize,
        /// The most accepted here.
        most: usize,
        /// Cores of this machine.
        cores: usize,
    },
    /// rayon's global pool could not be built (it already was).
    Pool(String),
}

impl fmt::Display for ThreadsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThreadsError::Zero => write!(f, "must be positive"),
            ThreadsError::TooMany { most, cores, .. } => {
                write!(f, "at most {most} (this machine has {cores} cores)")
            }
            ThreadsError::Pool(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ThreadsError {}

/// Sizes rayon's global pool (`threads`; `None`: all cores) and the matrix products' threads
/// (see [`ProductThreads`]; a user's own `MATMUL_NUM_THREADS` wins). Call it once, before any
/// product. Returns rayon's thread count.
pub fn set_threads(
    threads: Option<usize>,
    products: ProductThreads,
) -> Result<usize, ThreadsError> {
    if let Some(t) = threads {
        if t == 0 {
            return Err(ThreadsError::Zero);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let most = MAX_THREADS.max(16 * cores);
        if t > most {
            return Err(ThreadsError::TooMany {
                asked: t,
                most,
                cores,
            });
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(|e| ThreadsError::Pool(e.to_string()))?;
    }
    // matrixmultiply reads MATMUL_NUM_THREADS once, before its first product (default: the
    // physical cores), so this must run before any product.
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        let per_product = match products {
            ProductThreads::One => Some(1),
            ProductThreads::PerRun => threads,
        };
        if let Some(n) = per_product {
            std::env::set_var("MATMUL_NUM_THREADS", n.to_string());
        }
    }
    Ok(rayon::current_num_threads())
}

/// One glibc malloc arena for the whole process. The kernels allocate their per-episode
/// buffers on rayon's threads and burn frees and reuses memory on the main thread; with one
/// arena per thread (glibc's default) those megabyte buffers are mapped, zeroed and unmapped
/// again every episode. Measured with `plasticity bench pattern`: 103-120 -> 90-96 ms per
/// episode, peak memory 78 -> 61 MB. Call it first in `main`, before any other thread exists;
/// elsewhere than glibc it does nothing.
pub fn single_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// The most resident memory this process has used (`VmHWM`), MB; NaN where unknown.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Bytes the fused plastic kernels must stream per training step at least, for `n` neurons,
/// `t` steps and a batch of `b` episodes: each step reads `w` and `alpha` once (shared by the
/// batch) and reads and writes each episode's `Hebb` (forward), then reads `w`, `alpha` and
/// reads and writes `Hebb` and its gradient (reversed backward): `T (2 + 2B + 2 + 4B) N^2`
/// f32 values. A lower bound: recomputation (clipping, Oja) streams more.
pub fn plastic_step_bytes(n: usize, t: usize, b: usize) -> f64 {
    (t * (4 + 6 * b) * n * n * 4) as f64
}

/// Floating-point operations of a plastic training step, for `n` neurons, `t` steps and a
/// batch of `b` episodes, counted from the kernels' loops per trace element and step: the
/// forward's update and product (7), pass B (12) and pass A with the reversal (7): `26 T B N^2`.
/// A lower bound: recomputation from checkpoints (clipping) adds its updates.
pub fn plastic_step_flops(n: usize, t: usize, b: usize) -> f64 {
    26.0 * (t * b * n * n) as f64
}

/// The arithmetic peak of this machine in GFLOP/s on all rayon threads at once: each runs
/// [`plasticity_kernels::simd::fma_gflops_one_thread`] (fused multiply-adds in the instruction
/// set the kernels run with), and the rates are summed.
pub fn fma_peak_gflops() -> f64 {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    (0..threads)
        .into_par_iter()
        .map(|_| plasticity_kernels::simd::fma_gflops_one_thread())
        .sum()
}

/// The working set of a plastic training step in f32 values: `w`, `alpha`, and each
/// episode's `Hebb` and its gradient.
pub fn plastic_working_set(n: usize, b: usize) -> usize {
    (2 + 2 * b) * n * n
}

/// Streaming bandwidth of this machine in GB/s: the triad `a = b + s c` over three arrays of
/// `floats / 3` values each (a working set of `floats` values in all), on all rayon threads;
/// best of 5. Bytes counted: two reads and one write per element.
pub fn triad_gbs(floats: usize) -> f64 {
    use rayon::prelude::*;
    let len = (floats / 3).max(1 << 16);
    let b = vec![1.0f32; len];
    let c = vec![2.0f32; len];
    let mut a = vec![0.0f32; len];
    let chunk = len.div_ceil(4 * rayon::current_num_threads()).max(1 << 12);
    let mut best = f64::INFINITY;
    for rep in 0..6 {
        let t0 = Instant::now();
        a.par_chunks_mut(chunk)
            .zip(b.par_chunks(chunk).zip(c.par_chunks(chunk)))
            .for_each(|(a, (b, c))| {
                for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                    *a = b + 0.5 * c;
                }
            });
        let s = t0.elapsed().as_secs_f64();
        if rep > 0 {
            best = best.min(s);
        }
    }
    std::hint::black_box(&a);
    (3 * len * 4) as f64 / best / 1e9
}

/// The instruction set the CPU kernels run with, chosen at run time from what this CPU has
/// (`baseline`, `avx2+fma`, `avx512`; the environment variable `PLASTICITY_SIMD` caps it).
pub fn instruction_set() -> &'static str {
    plasticity_kernels::simd::instruction_set()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_of_the_pattern_step() {
        // N = 1001, T = 106, B = 1: 106 x (4 + 6) x 1001^2 values of 4 bytes = 4.248e9 bytes.
        let bytes = plastic_step_bytes(1001, 106, 1);
        assert_eq!(bytes, 106.0 * 10.0 * 1001.0 * 1001.0 * 4.0);
        assert_eq!(plastic_working_set(100, 30), 62 * 100 * 100);
        // The maze shape: 26 flops x 200 steps x 30 episodes x 100^2 trace entries.
        assert_eq!(plastic_step_flops(100, 200, 30), 26.0 * 200.0 * 30.0 * 1e4);
    }

    #[test]
    fn the_fma_peak_is_measured() {
        let one = plasticity_kernels::simd::fma_gflops_one_thread();
        assert!(one.is_finite() && one > 0.0, "{one}");
    }

    #[test]
    fn zero_threads_are_refused() {
        assert_eq!(
            set_threads(Some(0), ProductThreads::PerRun),
            Err(ThreadsError::Zero)
        );
    }
}
