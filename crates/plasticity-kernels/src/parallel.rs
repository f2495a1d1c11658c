//! How the kernels share out work: one rule for splitting a batch into episodes or the rows of
//! its `N x N` buffers into blocks, and the gather/scatter between the two layouts.

use crate::real::Real;
use core::ops::Range;

/// Below this many trace values per step, one thread does the whole step.
pub(crate) const PARALLEL_MIN_VALUES: usize = 1 << 15;

/// Largest `N` whose episodes run one per thread ([`split_batch`]): a few `N x N` buffers of an
/// episode (traces, their gradients, checkpoints) must fit in a core's share of the last-level
/// cache.
pub(crate) const SPLIT_MAX_NEURONS: usize = 400;

/// Whether the episodes of a batch run one by one, each on one thread with all its rows in one
/// block, instead of all together with the rows split across threads. Each episode's traces then
/// stay in the core's caches through all its steps instead of streaming `B N^2` values from
/// memory at every step. It pays when there are at least as many episodes as threads and an
/// episode's buffers fit in cache. Measured on one thread (`examples/kernel_timing`, best of 21
/// rounds on a loaded 2-core VM): retroactive with fan-out, `B = 30`, `N = 100, T = 200`
/// backward 453 -> 322 ms; `N = 200, T = 120` forward 122 -> 85 ms, backward 1175 -> 751 ms;
/// decaying Hebb with clip, `N = 100, B = 30, T = 200`: forward 35 -> 42 ms, backward
/// 155 -> 97 ms.
pub(crate) fn split_batch(batch: usize, neurons: usize) -> bool {
    batch > 1 && batch >= rayon::current_num_threads() && neurons <= SPLIT_MAX_NEURONS
}

/// Runs `f` on a thread of rayon's pool. The kernels make one parallel section per step;
/// called from outside the pool, each would park the caller and wake a worker (tens of
/// microseconds each, hundreds per episode); inside it, the caller takes part in the work.
pub(crate) fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// Splits the rows `0..n` into one block per worker thread (one block for small problems).
pub(crate) fn row_blocks(n: usize, batch: usize) -> Vec<Range<usize>> {
    let threads = if n * n * batch < PARALLEL_MIN_VALUES {
        1
    } else {
        rayon::current_num_threads()
    };
    let k = threads.clamp(1, n);
    (0..k).map(|c| (c * n / k)..((c + 1) * n / k)).collect()
}

/// The rows `M` that `blocks` cover (`N` for a recurrent layer's `[N, N]` buffers; the inputs
/// of a feed-forward layer's `[M, N]` ones).
pub(crate) fn rows_of(blocks: &[Range<usize>]) -> usize {
    blocks.last().map_or(0, |r| r.end)
}

/// Cuts a `[B, N, N]` (or `[B, M, N]`) buffer into, for each row block, the `B` slices of its rows. An empty
/// buffer (a trace the rule does not keep) gives an empty list per block.
pub(crate) fn split_rows<'a, F>(
    buf: &'a mut [F],
    blocks: &[Range<usize>],
    n: usize,
) -> Vec<Vec<&'a mut [F]>> {
    let per_episode = rows_of(blocks) * n;
    let batch = buf.len() / per_episode.max(1);
    let mut out: Vec<Vec<&mut [F]>> = blocks.iter().map(|_| Vec::with_capacity(batch)).collect();
    for hb in buf.chunks_mut(per_episode.max(1)) {
        let mut rest = hb;
        for (k, r) in blocks.iter().enumerate() {
            let (head, tail) = rest.split_at_mut(r.len() * n);
            out[k].push(head);
            rest = tail;
        }
    }
    out
}

/// Cuts an `[N, N]` buffer into the rows of each block (`None` for every block when `whole`
/// is false: the blocks then accumulate into their own row and are summed after).
pub(crate) fn block_rows<'a, F>(
    buf: &'a mut [F],
    blocks: &[Range<usize>],
    n: usize,
    by_rows: bool,
) -> Vec<Option<&'a mut [F]>> {
    if !by_rows {
        return blocks.iter().map(|_| None).collect();
    }
    let mut rest = buf;
    blocks
        .iter()
        .map(|r| {
            let (head, tail) = core::mem::take(&mut rest).split_at_mut(r.len() * n);
            rest = tail;
            Some(head)
        })
        .collect()
}

/// Episode `bi` of a time-major `[T, B, N]` buffer, as `[T, 1, N]`.
pub(crate) fn gather<F: Real>(v: &[F], b: usize, n: usize, bi: usize) -> Vec<F> {
    v.chunks_exact(b * n)
        .flat_map(|step| &step[bi * n..(bi + 1) * n])
        .copied()
        .collect()
}

/// Writes `[T, 1, N]` episode `bi` into a time-major `[T, B, N]` buffer.
pub(crate) fn scatter<F: Real>(part: &[F], out: &mut [F], b: usize, n: usize, bi: usize) {
    for (step, src) in out.chunks_exact_mut(b * n).zip(part.chunks_exact(n)) {
        step[bi * n..(bi + 1) * n].copy_from_slice(src);
    }
}

/// `a += b`, element by element.
pub(crate) fn add_into<F: Real>(a: &mut [F], b: &[F]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += *y);
}

/// Sum in 8 independent lanes (vectorizes; the order is fixed, so results are reproducible).
pub(crate) fn lane_sum<F: Real>(v: &[F]) -> F {
    let mut lanes = [F::zero(); 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().copied().sum::<F>() + rest.iter().copied().sum::<F>()
}
