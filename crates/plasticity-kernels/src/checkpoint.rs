//! How the backward recovers the trace of every step without storing `T` copies of it: reverse
//! an invertible trace step by step (and verify the reversal), or store the traces every
//! `K ~ sqrt(T)` steps and recompute each segment forward from its checkpoint.

use crate::real::Real;
use crate::spec::BackwardStrategy;

/// `ceil(sqrt(T))`, at least 1: the segment length that balances checkpoint memory against the
/// recomputed segment.
pub(crate) fn default_segment(steps: usize) -> usize {
    ((steps as f64).sqrt().ceil() as usize).max(1)
}

/// Steps between checkpoints for a strategy; `0` means "reverse the trace" (only when the rule
/// says it is `reversible`).
pub(crate) fn plan(strategy: BackwardStrategy, steps: usize, reversible: bool) -> usize {
    match strategy {
        BackwardStrategy::Auto if reversible => 0,
        BackwardStrategy::Auto | BackwardStrategy::Checkpoint { segment: 0 } => {
            default_segment(steps)
        }
        BackwardStrategy::Checkpoint { segment } => segment,
        BackwardStrategy::StoreAll => 1,
    }
}

/// One stored pair of traces `(Hebb, E)` (`E` empty when the rule keeps none).
pub(crate) type TracePair<F> = (Vec<F>, Vec<F>);

/// The traces of the segment being back-propagated, recomputed from its checkpoint into buffers
/// kept from segment to segment (no allocation and no fresh pages after the first segment).
#[derive(Debug)]
pub(crate) struct Segments<F> {
    traces: Vec<TracePair<F>>,
    start: usize,
}

impl<F: Real> Segments<F> {
    pub(crate) fn new() -> Self {
        Segments {
            traces: Vec::new(),
            start: usize::MAX,
        }
    }

    /// `(Hebb_t, E_t)`. When `t` lies in another segment than the last call's (the backward runs
    /// `t` downwards), recomputes that segment from `checkpoints[t / segment]` with
    /// `advance(s, hebb, elig)`, which takes the traces of step `s` to those of step `s + 1`.
    pub(crate) fn at(
        &mut self,
        t: usize,
        segment: usize,
        checkpoints: &[TracePair<F>],
        mut advance: impl FnMut(usize, &mut Vec<F>, &mut Vec<F>),
    ) -> &mut TracePair<F> {
        let start = (t / segment) * segment;
        if start != self.start {
            self.start = start;
            let (h0, e0) = &checkpoints[t / segment];
            if self.traces.len() <= t - start {
                self.traces.resize_with(t - start + 1, || {
                    (vec![F::zero(); h0.len()], vec![F::zero(); e0.len()])
                });
            }
            self.traces[0].0.copy_from_slice(h0);
            self.traces[0].1.copy_from_slice(e0);
            for s in start..t {
                let k = s - start;
                let (done, rest) = self.traces.split_at_mut(k + 1);
                let (h, e) = &mut rest[0];
                h.copy_from_slice(&done[k].0);
                e.copy_from_slice(&done[k].1);
                advance(s, h, e);
            }
        }
        &mut self.traces[t - start]
    }
}

/// Whether a reversed trace came back to the stored one: the largest difference between the
/// reconstructed `Hebb_0` and the true one (`None`: zeros), relative to the largest trace value
/// `scale`, is within the float type's [`Real::REVERSAL_TOLERANCE`].
pub(crate) fn reversal_holds<F: Real>(reconstructed: &[F], h0: Option<&[F]>, scale: F) -> bool {
    let err = match h0 {
        Some(h0) => reconstructed
            .iter()
            .zip(h0)
            .map(|(a, b)| (*a - *b).abs())
            .fold(F::zero(), F::max),
        None => max_abs(reconstructed),
    };
    let rel = if scale > F::zero() {
        (err / scale).to_f64().unwrap_or(f64::INFINITY)
    } else {
        0.0
    };
    rel <= F::REVERSAL_TOLERANCE
}

/// `max_k |v_k|`.
pub(crate) fn max_abs<F: Real>(v: &[F]) -> F {
    v.iter().fold(F::zero(), |m, x| m.max(x.abs()))
}
