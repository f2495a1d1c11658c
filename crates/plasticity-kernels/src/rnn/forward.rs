//! The forward of the engine: all episodes together with rows across threads, or one episode
//! per thread; the per-row update and product kernels.

use super::*;

/// `y_t` from the pre-activation `acc` (without input) and the input `x_t`, all `[B, N]`.
pub(super) fn activate<F: Real>(input: InputMode, acc: &[F], x: &[F], y: &mut [F]) {
    for ((y, &a), &xi) in y.iter_mut().zip(acc).zip(x) {
        *y = match input {
            InputMode::Clamped if xi != F::zero() => xi,
            InputMode::Clamped => a.tanh(),
            InputMode::Additive => (a + xi).tanh(),
        };
    }
}

/// [`forward_steps`] for each episode alone (in parallel, all rows in one block), assembled
/// into one batch.
pub(super) fn forward_split<F: Real, R: Rule<F>>(
    spec: &EpisodeSpec,
    net: &Net<'_, F, R>,
    init: &Init<'_, F>,
) -> Episode<F> {
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let nn = n * n;
    let one = EpisodeSpec { batch: 1, ..*spec };
    let all_rows = 0..n;
    let whole = std::slice::from_ref(&all_rows);
    let mut parts: Vec<Episode<F>> = (0..b)
        .into_par_iter()
        .map(|bi| {
            let xb = gather(init.x, b, n, bi);
            let part = Init {
                x: &xb,
                y0: &init.y0[bi * n..(bi + 1) * n],
                h0: init.h0.map(|h| &h[bi * nn..(bi + 1) * nn]),
                e0: init.e0.map(|e| &e[bi * nn..(bi + 1) * nn]),
            };
            forward_steps(&one, net, &part, whole)
        })
        .collect();
    let mut ys = vec![F::zero(); t_len * b * n];
    let modulated = !parts[0].modulator.is_empty();
    let mut modulator = vec![F::zero(); if modulated { t_len * b } else { 0 }];
    let mut hebb = Vec::with_capacity(b * nn);
    let mut elig = Vec::with_capacity(if R::ELIGIBILITY { b * nn } else { 0 });
    for (bi, part) in parts.iter_mut().enumerate() {
        scatter(&part.ys, &mut ys, b, n, bi);
        if modulated {
            scatter(&part.modulator, &mut modulator, b, 1, bi);
        }
        if part.reverses_trace() {
            // The part's backward starts its reversal from its own final trace.
            hebb.extend_from_slice(&part.traces.hebb);
        } else {
            hebb.append(&mut part.traces.hebb);
        }
        elig.append(&mut part.traces.elig);
    }
    Episode {
        segment: parts[0].segment,
        parts,
        ..outputs(spec, init.y0, ys, Traces { hebb, elig }, modulator)
    }
}

/// An episode of `spec` that ran from `y0` with these outputs; what else the backward needs
/// (stored state, checkpoints, the parts of a split batch) is left for the caller to add.
fn outputs<F: Real>(
    spec: &EpisodeSpec,
    y0: &[F],
    ys: Vec<F>,
    traces: Traces<F>,
    modulator: Vec<F>,
) -> Episode<F> {
    Episode {
        spec: *spec,
        ys,
        traces,
        modulator,
        y0: y0.to_vec(),
        h0: None,
        x_clamped: None,
        eta: F::zero(),
        segment: 0,
        checkpoints: Vec::new(),
        parts: Vec::new(),
    }
}

/// The forward of all episodes together; `blocks` split the rows across threads.
pub(super) fn forward_steps<F: Real, R: Rule<F>>(
    spec: &EpisodeSpec,
    net: &Net<'_, F, R>,
    init: &Init<'_, F>,
    blocks: &[Range<usize>],
) -> Episode<F> {
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let bn = b * n;
    let rule = &net.rule;
    let segment = plan(spec.backward, t_len, rule.reversible(spec));
    let mut hebb = kept_trace(R::PLASTIC, init.h0, bn * n);
    let mut elig = kept_trace(R::ELIGIBILITY, init.e0, bn * n);
    let h0_saved = init
        .h0
        .filter(|h| R::PLASTIC && segment == 0 && h.iter().any(|v| *v != F::zero()))
        .map(<[F]>::to_vec);
    let mut checkpoints = Vec::new();
    if segment > 0 {
        checkpoints.push((hebb.clone(), elig.clone()));
    }
    let alpha = AlphaRows::new(spec.alpha, net.alpha, n);
    let clip = spec.clip.map(F::of);
    let mut ys = vec![F::zero(); t_len * bn];
    let mut modulator = Vec::new();
    let mut acc = vec![F::zero(); bn];
    let mut pending: Option<Coefficients<F>> = None;
    for t in 0..t_len {
        let (done, rest) = ys.split_at_mut(t * bn);
        let ypre: &[F] = if t == 0 {
            init.y0
        } else {
            &done[(t - 1) * bn..]
        };
        forward_pass::<F, R>(
            &mut hebb,
            &mut elig,
            blocks,
            net.w,
            &alpha,
            ypre,
            pending.as_ref(),
            clip,
            &mut acc,
        );
        if segment > 0 && t > 0 && t % segment == 0 {
            checkpoints.push((hebb.clone(), elig.clone()));
        }
        let yt = &mut rest[..bn];
        activate(spec.input, &acc, &init.x[t * bn..(t + 1) * bn], yt);
        let c = rule.coefficients(&Activity::recurrent(ypre, yt), n);
        modulator.extend_from_slice(&c.modulator);
        pending = Some(c);
    }
    // The update of the last step, pending so far: Hebb_T = R(Hebb_{T-1}, y_{T-2}, y_{T-1}).
    if let Some(c) = &pending {
        update_pass(&mut hebb, &mut elig, blocks, c, clip, n);
    }
    Episode {
        h0: h0_saved,
        x_clamped: (spec.input == InputMode::Clamped).then(|| init.x.to_vec()),
        segment,
        checkpoints,
        ..outputs(spec, init.y0, ys, Traces { hebb, elig }, modulator)
    }
}

crate::simd::multiversion! {
    /// One forward step over all rows: applies the pending trace update (if any) and writes
    /// `acc[b, j] = sum_i (w_ij + alpha_ij Hebb_ij) y_{b,i}` (without input).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_pass [F: Real, R: Rule<F>] [F, R] (
        hebb: &mut [F],
        elig: &mut [F],
        blocks: &[Range<usize>],
        w: &[F],
        alpha: &AlphaRows<'_, F>,
        ypre: &[F],
        update: Option<&Coefficients<F>>,
        clip: Option<F>,
        acc: &mut [F],
    ) {
        let n = alpha.n;
        let (m, batch) = (rows_of(blocks), acc.len() / n);
        let partials: Vec<Vec<F>> = if !R::PLASTIC {
            // The network without plasticity: acc = y w, streaming the rows of w once per step
            // for every episode, summed in the order the plastic product sums (so it gives the
            // plastic network's bits when alpha = 0).
            blocks
                .par_iter()
                .map(|rows| static_block(rows, w, ypre, (m, n, batch)))
                .collect()
        } else {
            trace_blocks(hebb, elig, blocks, n)
                .map(|((hs, es), rows)| {
                    forward_block::<F, R>(
                        hs,
                        es,
                        rows,
                        (w, alpha),
                        ypre,
                        update,
                        clip,
                        (m, n, batch),
                    )
                })
                .collect()
        };
        acc.iter_mut().for_each(|a| *a = F::zero());
        for part in partials {
            acc.iter_mut().zip(part).for_each(|(a, p)| *a += p);
        }
    }
}

/// [`forward_pass`] over one block of rows: returns its share of `acc`, `[B, N]`;
/// `#[inline(always)]` into its pass, so compiled for each instruction set.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_block<F: Real, R: Rule<F>>(
    mut hs: Vec<&mut [F]>,
    mut es: Vec<&mut [F]>,
    rows: &Range<usize>,
    (w, alpha): (&[F], &AlphaRows<'_, F>),
    ypre: &[F],
    update: Option<&Coefficients<F>>,
    clip: Option<F>,
    (m, n, batch): (usize, usize, usize),
) -> Vec<F> {
    let mut part = vec![F::zero(); batch * n];
    for (r, i) in rows.clone().enumerate() {
        let wrow = &w[i * n..(i + 1) * n];
        let arow = alpha.row(i);
        for (bi, hb) in hs.iter_mut().enumerate() {
            let hrow = &mut hb[r * n..(r + 1) * n];
            let yi = ypre[bi * m + i];
            let accb = &mut part[bi * n..(bi + 1) * n];
            match update {
                Some(c) if R::ELIGIBILITY => {
                    let erow = &mut es[bi][r * n..(r + 1) * n];
                    update_row_eligibility(hrow, erow, c, (bi, i), (m, n), clip);
                }
                Some(c) => {
                    // The update fused with the product: one pass over the row.
                    let ui = c.u[bi * m + i];
                    let cols = bi * n..(bi + 1) * n;
                    let (aa, vv) = (&c.a[cols.clone()], &c.v[cols]);
                    let row = (wrow, arow, aa, vv);
                    match clip {
                        Some(cl) => update_product_row::<F, true>(accb, hrow, row, ui, yi, cl),
                        None => update_product_row::<F, false>(accb, hrow, row, ui, yi, F::zero()),
                    }
                    continue;
                }
                None => {}
            }
            for (((a, &h), &wj), &aj) in accb.iter_mut().zip(&*hrow).zip(wrow).zip(arow) {
                *a += (wj + aj * h) * yi;
            }
        }
    }
    part
}

/// The product of the network without plasticity over one block of rows: its share of
/// `acc = y w`, `[B, N]`.
#[inline(always)]
fn static_block<F: Real>(
    rows: &Range<usize>,
    w: &[F],
    ypre: &[F],
    (m, n, batch): (usize, usize, usize),
) -> Vec<F> {
    let mut part = vec![F::zero(); batch * n];
    for i in rows.clone() {
        let wrow = &w[i * n..(i + 1) * n];
        for (bi, accb) in part.chunks_exact_mut(n).enumerate() {
            let yi = ypre[bi * m + i];
            for (a, &wj) in accb.iter_mut().zip(wrow) {
                *a += wj * yi;
            }
        }
    }
    part
}

/// `clip(x, -c, c)` when `CLIP` (a constant, so a loop calling it is specialised per setting
/// instead of testing the setting at every element).
#[inline(always)]
pub(super) fn clip_if<F: Real, const CLIP: bool>(x: F, c: F) -> F {
    if CLIP {
        x.max(-c).min(c)
    } else {
        x
    }
}

/// The update of a rule without eligibility trace fused with the product, over one row:
/// `h_j <- clip(A_j h_j + u_i v_j)`, `acc_j += (w_ij + alpha_ij h_j) y_i`; `row` is
/// `(w_i., alpha_i., A, v)`.
#[inline(always)]
pub(super) fn update_product_row<F: Real, const CLIP: bool>(
    acc: &mut [F],
    h: &mut [F],
    (w, alpha, a, v): (&[F], &[F], &[F], &[F]),
    ui: F,
    yi: F,
    c: F,
) {
    for (((((acc, h), &wj), &aj), &aa), &vj) in acc
        .iter_mut()
        .zip(h.iter_mut())
        .zip(w)
        .zip(alpha)
        .zip(a)
        .zip(v)
    {
        let hn = clip_if::<F, CLIP>(aa * *h + ui * vj, c);
        *h = hn;
        *acc += (wj + aj * hn) * yi;
    }
}

/// The update of a rule without eligibility trace over one row: `h_j <- clip(A_j h_j + u_i v_j)`.
#[inline(always)]
pub(super) fn update_row<F: Real, const CLIP: bool>(h: &mut [F], a: &[F], v: &[F], ui: F, c: F) {
    for ((h, &aa), &vj) in h.iter_mut().zip(a).zip(v) {
        *h = clip_if::<F, CLIP>(aa * *h + ui * vj, c);
    }
}

/// The retroactive update of row `i` of episode `bi`:
/// `Hebb_ij <- clip(Hebb_ij + eta_j E_ij)`, `E_ij <- d E_ij + u_i v_j`.
#[inline(always)]
pub(super) fn update_row_eligibility<F: Real>(
    h: &mut [F],
    e: &mut [F],
    c: &Coefficients<F>,
    (bi, i): (usize, usize),
    (m, n): (usize, usize),
    clip: Option<F>,
) {
    let cols = bi * n..(bi + 1) * n;
    let ui = c.u[bi * m + i];
    let (rate, v) = (&c.rate[cols.clone()], &c.v[cols]);
    match clip {
        Some(cl) => eligibility_row::<F, true>(h, e, rate, v, c.decay, ui, cl),
        None => eligibility_row::<F, false>(h, e, rate, v, c.decay, ui, F::zero()),
    }
}

/// [`update_row_eligibility`] for one clip setting.
#[inline(always)]
pub(super) fn eligibility_row<F: Real, const CLIP: bool>(
    h: &mut [F],
    e: &mut [F],
    rate: &[F],
    v: &[F],
    decay: F,
    ui: F,
    c: F,
) {
    for (((h, e), &et), &vj) in h.iter_mut().zip(e.iter_mut()).zip(rate).zip(v) {
        *h = clip_if::<F, CLIP>(*h + et * *e, c);
        *e = decay * *e + ui * vj;
    }
}

crate::simd::multiversion! {
    /// Applies one trace update to every row (no matrix-vector product); `elig` is empty when
    /// the rule keeps no eligibility trace.
    pub(crate) fn update_pass [F: Real] [F] (
        hebb: &mut [F],
        elig: &mut [F],
        blocks: &[Range<usize>],
        c: &Coefficients<F>,
        clip: Option<F>,
        n: usize,
    ) {
        let m = rows_of(blocks);
        let eligibility = !elig.is_empty();
        trace_blocks(hebb, elig, blocks, n).for_each(|((hs, es), rows)| {
            if eligibility {
                update_block::<F, true>(hs, es, rows, c, clip, (m, n))
            } else {
                update_block::<F, false>(hs, es, rows, c, clip, (m, n))
            }
        });
    }
}

/// The rows of both traces cut by `blocks` ([`split_rows`]), each block with its rows, as one
/// parallel iterator (the passes' bodies stay in their instruction-set copies).
#[allow(clippy::type_complexity)]
fn trace_blocks<'a, F: Send>(
    hebb: &'a mut [F],
    elig: &'a mut [F],
    blocks: &'a [Range<usize>],
    n: usize,
) -> impl IndexedParallelIterator<Item = ((Vec<&'a mut [F]>, Vec<&'a mut [F]>), &'a Range<usize>)> {
    split_rows(hebb, blocks, n)
        .into_par_iter()
        .zip(split_rows(elig, blocks, n))
        .zip(blocks.par_iter())
}

/// [`update_pass`] over one block of rows; `#[inline(always)]` into its pass, so compiled for
/// each instruction set.
#[inline(always)]
fn update_block<F: Real, const ELIG: bool>(
    mut hs: Vec<&mut [F]>,
    mut es: Vec<&mut [F]>,
    rows: &Range<usize>,
    c: &Coefficients<F>,
    clip: Option<F>,
    (m, n): (usize, usize),
) {
    for (r, i) in rows.clone().enumerate() {
        for (bi, hb) in hs.iter_mut().enumerate() {
            let hrow = &mut hb[r * n..(r + 1) * n];
            if ELIG {
                let erow = &mut es[bi][r * n..(r + 1) * n];
                update_row_eligibility(hrow, erow, c, (bi, i), (m, n), clip);
            } else {
                let ui = c.u[bi * m + i];
                let cols = bi * n..(bi + 1) * n;
                let (aa, vv) = (&c.a[cols.clone()], &c.v[cols]);
                match clip {
                    Some(cl) => update_row::<F, true>(hrow, aa, vv, ui, cl),
                    None => update_row::<F, false>(hrow, aa, vv, ui, F::zero()),
                }
            }
        }
    }
}
