//! The backward of the engine: reversal or checkpoints, pass A (column sums), the rule's
//! backprop, pass B (rows), and the row kernels.

use super::*;

/// Where the backward finds the traces of each step.
pub(super) enum Traces<'a, F> {
    /// A buffer holding `Hebb_T`, reversed in place step by step.
    Reverse(&'a mut Vec<F>),
    /// Checkpoints every `K` steps; segments are recomputed forward.
    Segments(&'a [TracePair<F>], usize),
}

/// The backward of an episode that ran as one batch: reversal (verified, with a checkpointed
/// fallback) or checkpoints, as the forward planned.
pub(super) fn backward_episode<F: Real, R: Rule<F>>(
    net: &Net<'_, F, R>,
    mut ep: Episode<F>,
    cot: &Cotangents<'_, F>,
    blocks: &[Range<usize>],
) -> Grads<F> {
    if ep.segment > 0 {
        let traces = Traces::Segments(&ep.checkpoints, ep.segment);
        return backward_steps(net, &ep, cot, traces, blocks);
    }
    let scale = max_abs(&ep.traces.hebb).max(ep.h0.as_deref().map_or(F::zero(), max_abs));
    let mut work = core::mem::take(&mut ep.traces.hebb);
    let grads = backward_steps(net, &ep, cot, Traces::Reverse(&mut work), blocks);
    // `work` now holds the reconstructed Hebb_0: verify it.
    if reversal_holds(&work, ep.h0.as_deref(), scale) {
        return grads;
    }
    let segment = checkpoint::default_segment(ep.spec.steps);
    let checkpoints = recompute_checkpoints(&net.rule, &ep, segment, blocks);
    let traces = Traces::Segments(&checkpoints, segment);
    let mut grads = backward_steps(net, &ep, cot, traces, blocks);
    grads.reversal_rejected = true;
    grads
}

/// [`backward_episode`] for each episode of a split forward (in parallel, all rows in one
/// block); the parameters' gradients are summed in episode order.
pub(super) fn backward_split<F: Real, R: Rule<F>>(
    net: &Net<'_, F, R>,
    mut ep: Episode<F>,
    cot: &Cotangents<'_, F>,
) -> Grads<F> {
    let spec = ep.spec;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let nn = n * n;
    let all_rows = 0..n;
    let whole = std::slice::from_ref(&all_rows);
    let parts: Vec<Grads<F>> = core::mem::take(&mut ep.parts)
        .into_par_iter()
        .enumerate()
        .map(|(bi, part)| {
            let gy = gather(cot.gy, b, n, bi);
            let one = Cotangents {
                gy: &gy,
                gh: cot.gh.map(|g| &g[bi * nn..(bi + 1) * nn]),
                ge: cot.ge.map(|g| &g[bi * nn..(bi + 1) * nn]),
            };
            backward_episode(net, part, &one, whole)
        })
        .collect();
    let mut gw = parts[0].w.clone();
    let mut x = vec![F::zero(); t_len * b * n];
    let mut y0 = Vec::with_capacity(b * n);
    for (bi, g) in parts.iter().enumerate() {
        if bi > 0 {
            crate::parallel::add_into(&mut gw, &g.w);
        }
        scatter(&g.x, &mut x, b, n, bi);
        y0.extend_from_slice(&g.y0);
    }
    let reversal_rejected = parts.iter().any(|g| g.reversal_rejected);
    Grads {
        w: gw,
        plastic: PlasticGrads::concat(parts.into_iter().map(|g| g.plastic)),
        x,
        y0,
        reversal_rejected,
    }
}

/// Recomputes the checkpoints `Hebb_{sK}` from `Hebb_0` and the stored activations (after a
/// rejected reversal; rules without eligibility trace only).
pub(super) fn recompute_checkpoints<F: Real, R: Rule<F>>(
    rule: &R,
    ep: &Episode<F>,
    segment: usize,
    blocks: &[Range<usize>],
) -> Vec<TracePair<F>> {
    let spec = &ep.spec;
    let (n, b) = (spec.neurons, spec.batch);
    let mut h = ep.h0.clone().unwrap_or_else(|| vec![F::zero(); b * n * n]);
    let mut e = Vec::new();
    let clip = spec.clip.map(F::of);
    let mut out = vec![(h.clone(), Vec::new())];
    for t in 1..spec.steps {
        let c = rule.coefficients(&Activity::recurrent(ep.y_pre(t - 1), ep.y_at(t - 1)), n);
        update_pass(&mut h, &mut e, blocks, &c, clip, n);
        if t % segment == 0 {
            out.push((h.clone(), Vec::new()));
        }
    }
    out
}

/// The backward through every step, from `t = T - 1` down to 0.
pub(super) fn backward_steps<F: Real, R: Rule<F>>(
    net: &Net<'_, F, R>,
    ep: &Episode<F>,
    cot: &Cotangents<'_, F>,
    mut traces: Traces<'_, F>,
    blocks: &[Range<usize>],
) -> Grads<F> {
    let spec = &ep.spec;
    let (n, b, t_len) = (spec.neurons, spec.batch, spec.steps);
    let bn = b * n;
    let clip = spec.clip.map(F::of);
    let rule = &net.rule;
    let alpha = AlphaRows::new(spec.alpha, net.alpha, n);
    let mut g = kept_trace(R::PLASTIC, cot.gh, bn * n);
    let mut g_e = kept_trace(R::ELIGIBILITY, cot.ge, bn * n);
    let mut galpha = vec![F::zero(); alpha.grad_len()];
    let mut rule_grads = rule.zero_grads(n);
    let mut gx = vec![F::zero(); t_len * bn];
    let mut phat_all = vec![F::zero(); t_len * bn];
    let mut carry = vec![F::zero(); bn];
    let mut yhat = vec![F::zero(); bn];
    let mut segments = Segments::new();
    let mut pending_sums: Option<ColumnSums<F>> = None;
    for t in (0..t_len).rev() {
        let (ypre, ypost) = (ep.y_pre(t), ep.y_at(t));
        let act = Activity::recurrent(ypre, ypost);
        let c = rule.coefficients(&act, n);
        // (Hebb_t, E_t).
        let (h, e, reverse): (&mut [F], &[F], bool) = match &mut traces {
            Traces::Reverse(buf) => (buf.as_mut_slice(), &[], true),
            Traces::Segments(checkpoints, seg) => {
                let (h, e) = segments.at(t, *seg, checkpoints, |s, h, e| {
                    let cs = rule.coefficients(&Activity::recurrent(ep.y_pre(s), ep.y_at(s)), n);
                    update_pass(h, e, blocks, &cs, clip, n);
                });
                (h.as_mut_slice(), e.as_slice(), false)
            }
        };
        // Pass A: column sums of the trace gradients (already done by the previous step's fused
        // pass when reversing).
        let sums = match pending_sums.take() {
            Some(sums) => sums,
            None if !R::PLASTIC => ColumnSums::zeros::<R>(0),
            None => pass_a::<F, R>(h, e, &g, &g_e, blocks, &c, ypre, clip, reverse, n),
        };
        // dL/dy_t and dL/dpre_t.
        let ext = &cot.gy[t * bn..(t + 1) * bn];
        for ((yh, &a), &b) in yhat.iter_mut().zip(ext).zip(&carry) {
            *yh = a + b;
        }
        let step = StepBackward {
            c: &c,
            sums: &sums,
            act,
            n,
        };
        rule.backprop(&step, Shares::Together(&mut yhat), &mut rule_grads);
        let phat = &mut phat_all[t * bn..(t + 1) * bn];
        let gxt = &mut gx[t * bn..(t + 1) * bn];
        for k in 0..bn {
            let clamped = ep
                .x_clamped
                .as_ref()
                .is_some_and(|x| x[t * bn + k] != F::zero());
            if clamped {
                gxt[k] = yhat[k];
                phat[k] = F::zero();
            } else {
                let ph = yhat[k] * (F::one() - ypost[k] * ypost[k]);
                phat[k] = ph;
                gxt[k] = ph;
            }
        }
        // Pass B: dL/dy_{t-1}, dL/dalpha, G <- dL/dHebb_t, GE <- dL/dE_t; when reversing, fused
        // with pass A of step t-1.
        let prev_c = (reverse && t > 0)
            .then(|| rule.coefficients(&Activity::recurrent(ep.y_pre(t - 1), ypre), n));
        let prev = prev_c.as_ref().map(|c| PrevStep {
            c,
            ypre: ep.y_pre(t - 1),
        });
        let weights = Weights {
            w: net.w,
            alpha: &alpha,
        };
        let grads = TraceGrads {
            g: &mut g,
            g_e: &mut g_e,
            galpha: &mut galpha,
        };
        let (dy_pre, sums) = pass_b::<F, R>(
            h,
            e,
            grads,
            blocks,
            &weights,
            &c,
            (ypre, ypost),
            phat,
            clip,
            prev,
        );
        carry = dy_pre;
        pending_sums = sums;
    }
    // dL/dw = sum_t y_{t-1}^T P_t, one product over [T * B, N] matrices.
    let mut ypre_all = Vec::with_capacity(t_len * bn);
    ypre_all.extend_from_slice(&ep.y0);
    ypre_all.extend_from_slice(&ep.ys[..(t_len - 1) * bn]);
    let mut gw = vec![F::zero(); n * n];
    F::gemm_tn_acc(n, t_len * b, n, &ypre_all, &phat_all, &mut gw);
    if spec.alpha == AlphaShape::Scalar {
        let total: F = galpha.iter().copied().sum();
        galpha = vec![total];
    }
    Grads {
        w: gw,
        plastic: PlasticGrads {
            alpha: galpha,
            rule: rule_grads,
            hebb0: g,
            elig0: g_e,
        },
        x: gx,
        y0: carry,
        reversal_rejected: false,
    }
}

crate::simd::multiversion! {
    /// Pass A of the backward of step `t` (see the module docs). `h, e` hold `Hebb_t, E_t` (`h`
    /// holds `Hebb_{t+1}` and is reversed to `Hebb_t` first when `reverse`); `g, ge` hold
    /// `dL/dHebb_{t+1}, dL/dE_{t+1}`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pass_a [F: Real, R: Rule<F>] [F, R] (
        h: &mut [F],
        e: &[F],
        g: &[F],
        ge: &[F],
        blocks: &[Range<usize>],
        c: &Coefficients<F>,
        ypre: &[F],
        clip: Option<F>,
        reverse: bool,
        n: usize,
    ) -> ColumnSums<F> {
        let (m, batch) = (rows_of(blocks), ypre.len() / rows_of(blocks));
        let hs = split_rows(h, blocks, n);
        let partials: Vec<ColumnSums<F>> = hs
            .into_par_iter()
            .zip(blocks.par_iter())
            .map(|(hs, rows)| {
                pass_a_block::<F, R>(
                        hs,
                        rows,
                        (e, g, ge),
                        c,
                        ypre,
                        (clip, reverse),
                        (m, n, batch),
                    )
            })
            .collect();
        let mut it = partials.into_iter();
        let mut total = it.next().expect("at least one block");
        for p in it {
            total.add(&p);
        }
        total
    }
}

/// The weights of the activity step, read by pass B.
pub(crate) struct Weights<'a, F> {
    pub(crate) w: &'a [F],
    pub(crate) alpha: &'a AlphaRows<'a, F>,
}

/// The gradients pass B updates: `g = dL/dHebb`, `g_e = dL/dE` (from step `t+1` to `t`), and
/// `galpha` (accumulated).
pub(crate) struct TraceGrads<'a, F> {
    pub(crate) g: &'a mut [F],
    pub(crate) g_e: &'a mut [F],
    pub(crate) galpha: &'a mut [F],
}

/// The step before the current one, for a pass B that also runs pass A of step `t-1`.
pub(crate) struct PrevStep<'a, F> {
    /// Coefficients of step `t-1`.
    c: &'a Coefficients<F>,
    /// `y_{t-2}` (presynaptic activity of step `t-1`), `[B, N]`.
    ypre: &'a [F],
}

crate::simd::multiversion! {
    /// Pass B of the backward of step `t`. `h` holds `Hebb_t` (and `e` holds `E_t`); the gradients
    /// go from step `t+1` to `t`. Returns `dL/dy_{t-1}` through this step, `[B, N]`.
    ///
    /// With `prev` (trace reversal only), the same sweep also runs pass A of step `t-1`: it reverses
    /// `h` to `Hebb_{t-1}` and returns that step's column sums, saving one pass over `Hebb` and `G`
    /// per step.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pass_b [F: Real, R: Rule<F>] [F, R] (
        h: &mut [F],
        e: &[F],
        grads: TraceGrads<'_, F>,
        blocks: &[Range<usize>],
        weights: &Weights<'_, F>,
        c: &Coefficients<F>,
        activity: (&[F], &[F]),
        phat: &[F],
        clip: Option<F>,
        prev: Option<PrevStep<'_, F>>,
    ) -> (Vec<F>, Option<ColumnSums<F>>) {
        let (ypre, ypost) = activity;
        debug_assert!(
            prev.is_none() || clip.is_none(),
            "reversal never runs with clipping"
        );
        let alpha = weights.alpha;
        let n = alpha.n;
        if !R::PLASTIC {
            // The network without plasticity: dL/dy_{t-1} = P_t w^T, row by row.
            let batch = phat.len() / n;
            let parts: Vec<Vec<F>> = blocks
                .par_iter()
                .map(|rows| static_back_block(rows, weights.w, phat, (n, batch)))
                .collect();
            let mut gy_pre = vec![F::zero(); batch * n];
            for (dy, rows) in parts.into_iter().zip(blocks) {
                for (r, i) in rows.clone().enumerate() {
                    for bi in 0..batch {
                        gy_pre[bi * n + i] = dy[r * batch + bi];
                    }
                }
            }
            return (gy_pre, None);
        }
        let (m, batch) = (rows_of(blocks), ypre.len() / rows_of(blocks));
        let per_connection = alpha.per_connection;
        let hs = split_rows(h, blocks, n);
        let gs = split_rows(grads.g, blocks, n);
        let ges = split_rows(grads.g_e, blocks, n);
        let galpha_rows = block_rows(grads.galpha, blocks, n, per_connection);
        let ctx = PassB {
            e,
            weights,
            c,
            ypre,
            ypost,
            phat,
            clip,
            prev: &prev,
            n,
            m,
            batch,
            per_connection,
        };
        let results: Vec<BlockOut<F>> = gs
            .into_par_iter()
            .zip(hs)
            .zip(ges)
            .zip(galpha_rows)
            .zip(blocks.par_iter())
            .map(|((((gs, hs), ges), ga_rows), rows)| {
                pass_b_block::<F, R>(&ctx, (gs, hs, ges, ga_rows), rows)
            })
            .collect();
        let mut gy_pre = vec![F::zero(); batch * m];
        let mut total: Option<ColumnSums<F>> = None;
        for ((dy, ga_local, sums), rows) in results.into_iter().zip(blocks) {
            for (r, i) in rows.clone().enumerate() {
                for bi in 0..batch {
                    gy_pre[bi * m + i] = dy[r * batch + bi];
                }
            }
            if !per_connection {
                crate::parallel::add_into(grads.galpha, &ga_local);
            }
            match (total.as_mut(), sums) {
                (Some(t), Some(s)) => t.add(&s),
                (None, s) => total = s,
                (Some(_), None) => {}
            }
        }
        (gy_pre, total)
    }
}

/// Pass A over one block of rows (see [`pass_a`]); `#[inline(always)]` into its pass, so
/// compiled for each instruction set.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pass_a_block<F: Real, R: Rule<F>>(
    mut hs: Vec<&mut [F]>,
    rows: &Range<usize>,
    (e, g, ge): (&[F], &[F], &[F]),
    c: &Coefficients<F>,
    ypre: &[F],
    (clip, reverse): (Option<F>, bool),
    (m, n, batch): (usize, usize, usize),
) -> ColumnSums<F> {
    let mut sums = ColumnSums::zeros::<R>(batch * n);
    let clip_c = clip.unwrap_or_else(F::infinity);
    for (r, i) in rows.clone().enumerate() {
        for (bi, hb) in hs.iter_mut().enumerate() {
            let hrow = &mut hb[r * n..(r + 1) * n];
            let at = (bi * m + i) * n..(bi * m + i + 1) * n;
            let grow = &g[at.clone()];
            let yi = ypre[bi * m + i];
            let cols = bi * n..(bi + 1) * n;
            if R::ELIGIBILITY {
                // Every row cut to n values: no bounds checks, so the loop vectorizes.
                let (hrow, grow) = (&hrow[..n], &grow[..n]);
                let (erow, gerow) = (&e[at.clone()][..n], &ge[at][..n]);
                let rate = &c.rate[cols.clone()][..n];
                let (s, se, see) = (
                    &mut sums.g_e[cols.clone()][..n],
                    &mut sums.ge_y[cols.clone()][..n],
                    &mut sums.ge_e[cols][..n],
                );
                for j in 0..n {
                    let z = hrow[j] + rate[j] * erow[j];
                    let gv = through_clip(z, clip_c, grow[j]);
                    s[j] += gv * erow[j];
                    se[j] += gerow[j] * yi;
                    see[j] += gerow[j] * erow[j];
                }
                continue;
            }
            let ui = c.u[bi * m + i];
            let (aa, vv) = (&c.a[cols.clone()], &c.v[cols.clone()]);
            let s1 = &mut sums.g_y[cols.clone()];
            if reverse {
                let s2 = &mut sums.g_h[cols];
                for ((((h, &gv), &aj), &vj), (a1, a2)) in hrow
                    .iter_mut()
                    .zip(grow)
                    .zip(aa)
                    .zip(vv)
                    .zip(s1.iter_mut().zip(s2.iter_mut()))
                {
                    let h0 = (*h - ui * vj) / aj;
                    *h = h0;
                    *a1 += gv * yi;
                    *a2 += gv * h0;
                }
            } else if R::TRACE_SUM {
                let s2 = &mut sums.g_h[cols];
                for ((((&h0, &gv), &aj), &vj), (a1, a2)) in hrow
                    .iter()
                    .zip(grow)
                    .zip(aa)
                    .zip(vv)
                    .zip(s1.iter_mut().zip(s2.iter_mut()))
                {
                    let gv = through_clip(aj * h0 + ui * vj, clip_c, gv);
                    *a1 += gv * yi;
                    *a2 += gv * h0;
                }
            } else {
                for ((((&h0, &gv), &aj), &vj), a1) in
                    hrow.iter().zip(grow).zip(aa).zip(vv).zip(s1.iter_mut())
                {
                    let gv = through_clip(aj * h0 + ui * vj, clip_c, gv);
                    *a1 += gv * yi;
                }
            }
        }
    }
    sums
}

/// Pass B of the network without plasticity over one block of rows:
/// `dy[r, b] = sum_j w_ij P_bj` for its rows `i`, summed in lanes as the plastic row kernel
/// sums its product term.
#[inline(always)]
fn static_back_block<F: Real>(
    rows: &Range<usize>,
    w: &[F],
    phat: &[F],
    (n, batch): (usize, usize),
) -> Vec<F> {
    let mut dy = vec![F::zero(); rows.len() * batch];
    let mut terms = vec![F::zero(); n];
    for (r, i) in rows.clone().enumerate() {
        let wrow = &w[i * n..(i + 1) * n];
        for (bi, p) in phat.chunks_exact(n).enumerate() {
            for ((t, &wj), &pj) in terms.iter_mut().zip(wrow).zip(p) {
                *t = wj * pj;
            }
            dy[r * batch + bi] = lane_sum(&terms);
        }
    }
    dy
}

/// What pass B's blocks share (see [`pass_b`]).
struct PassB<'a, F> {
    e: &'a [F],
    weights: &'a Weights<'a, F>,
    c: &'a Coefficients<F>,
    ypre: &'a [F],
    ypost: &'a [F],
    phat: &'a [F],
    clip: Option<F>,
    prev: &'a Option<PrevStep<'a, F>>,
    n: usize,
    m: usize,
    batch: usize,
    per_connection: bool,
}

/// What one block of pass B returns: `dL/dy_{t-1}` of its rows (`[rows, B]`), its share of a
/// per-neuron `dL/dalpha`, and, fused with pass A of step `t-1`, its column sums.
type BlockOut<F> = (Vec<F>, Vec<F>, Option<ColumnSums<F>>);

/// The block's buffers: trace gradients `G`, traces, eligibility gradients, `dL/dalpha` rows.
type BlockBuffers<'b, F> = (
    Vec<&'b mut [F]>,
    Vec<&'b mut [F]>,
    Vec<&'b mut [F]>,
    Option<&'b mut [F]>,
);

/// Pass B over one block of rows; `#[inline(always)]` into its pass, so compiled for each
/// instruction set.
#[inline(always)]
fn pass_b_block<F: Real, R: Rule<F>>(
    ctx: &PassB<'_, F>,
    (mut gs, mut hs, mut ges, mut ga_rows): BlockBuffers<'_, F>,
    rows: &Range<usize>,
) -> BlockOut<F> {
    let PassB {
        e,
        weights,
        c,
        ypre,
        ypost,
        phat,
        clip,
        prev,
        n,
        m,
        batch,
        per_connection,
    } = *ctx;
    let alpha = weights.alpha;
    let mut dy = vec![F::zero(); rows.len() * batch];
    let mut ga_local = if per_connection {
        Vec::new()
    } else {
        vec![F::zero(); n]
    };
    let mut sums = prev.as_ref().map(|_| ColumnSums::zeros::<R>(batch * n));
    let clip_c = clip.unwrap_or_else(F::infinity);
    // One row kernel per clip setting, called through a pointer: kept out of line, it
    // compiles to a tighter loop than inlined here (maze shape: backward 106 -> 86 ms).
    let row_b: RowKernel<F> = if clip.is_some() {
        pass_b_row::<F, true>
    } else {
        pass_b_row::<F, false>
    };
    let mut scratch = RowScratch {
        rule: vec![F::zero(); n],
        matvec: vec![F::zero(); n],
    };
    for (r, i) in rows.clone().enumerate() {
        let wrow = &weights.w[i * n..(i + 1) * n];
        let arow = alpha.row(i);
        for (bi, (gb, hb)) in gs.iter_mut().zip(hs.iter_mut()).enumerate() {
            let cols = bi * n..(bi + 1) * n;
            let row = Row {
                w: wrow,
                alpha: arow,
                a: &c.a[cols.clone()],
                v: &c.v[cols.clone()],
                r: match c.row {
                    RowFactor::Post => &ypost[cols.clone()],
                    RowFactor::V => &c.v[cols.clone()],
                },
                p: &phat[cols.clone()],
                yi: ypre[bi * m + i],
                ui: c.u[bi * m + i],
            };
            let grow = &mut gb[r * n..(r + 1) * n];
            let hrow = &mut hb[r * n..(r + 1) * n];
            let garow: &mut [F] = match ga_rows.as_deref_mut() {
                Some(rows_ga) => &mut rows_ga[r * n..(r + 1) * n],
                None => &mut ga_local,
            };
            let (rule_part, matvec_part) = if R::ELIGIBILITY {
                let at = (bi * m + i) * n..(bi * m + i + 1) * n;
                let eligibility = Eligibility {
                    e: &e[at],
                    ge: &mut ges[bi][r * n..(r + 1) * n],
                    rate: &c.rate[cols],
                    decay: c.decay,
                };
                pass_b_row_eligibility(grow, hrow, garow, &row, eligibility, clip_c, &mut scratch)
            } else if let (Some(pv), Some(s)) = (&prev, sums.as_mut()) {
                let before = PrevRow {
                    a: &pv.c.a[cols.clone()],
                    v: &pv.c.v[cols.clone()],
                    ui: pv.c.u[bi * m + i],
                    yi: pv.ypre[bi * m + i],
                };
                let (s1, s2) = (&mut s.g_y[cols.clone()], &mut s.g_h[cols]);
                pass_ba_row(grow, hrow, garow, &row, &before, s1, s2, &mut scratch)
            } else {
                row_b(grow, hrow, garow, &row, clip_c, &mut scratch)
            };
            dy[r * batch + bi] = c.row_scale * rule_part + matvec_part;
        }
    }
    (dy, ga_local, sums)
}

/// What pass B reads of one row `i` of one episode.
pub(super) struct Row<'a, F> {
    /// `w_i.`.
    w: &'a [F],
    /// `alpha_i.`.
    alpha: &'a [F],
    /// `A_j`.
    a: &'a [F],
    /// `v_j`.
    v: &'a [F],
    /// `r_j` ([`Coefficients::row`]).
    r: &'a [F],
    /// `P_j = dL/dpre_j`.
    p: &'a [F],
    /// `y_{t-1, i}`.
    yi: F,
    /// `u_i`.
    ui: F,
}

impl<'a, F: Copy> Row<'a, F> {
    /// The row with every slice cut to `n` values (their length): the row kernels' loops over
    /// `0..n` then need no bounds checks, so they vectorize.
    #[inline(always)]
    fn cut(&self, n: usize) -> Self {
        Row {
            w: &self.w[..n],
            alpha: &self.alpha[..n],
            a: &self.a[..n],
            v: &self.v[..n],
            r: &self.r[..n],
            p: &self.p[..n],
            ..*self
        }
    }
}

/// What pass B reads and updates of the eligibility trace of one row.
pub(super) struct Eligibility<'a, F> {
    /// `E_t`, row `i`.
    e: &'a [F],
    /// `dL/dE`, row `i` (from `t+1` to `t`).
    ge: &'a mut [F],
    /// `eta_j(t)`.
    rate: &'a [F],
    /// `d = 1 - eta_E`.
    decay: F,
}

/// What pass A of step `t-1` needs of one row `i` of one episode.
pub(super) struct PrevRow<'a, F> {
    /// `A_j` of step `t-1`.
    a: &'a [F],
    /// `v_j` of step `t-1`.
    v: &'a [F],
    /// `u_i` of step `t-1`.
    ui: F,
    /// `y_{t-2, i}`.
    yi: F,
}

/// Per-thread scratch rows for the row sums of pass B (a running float sum would not
/// vectorize: the terms are written out per column and summed in lanes after).
pub(super) struct RowScratch<F> {
    rule: Vec<F>,
    matvec: Vec<F>,
}

/// A pass-B row kernel ([`pass_b_row`] for one clip setting).
pub(super) type RowKernel<F> =
    fn(&mut [F], &[F], &mut [F], &Row<'_, F>, F, &mut RowScratch<F>) -> (F, F);

crate::simd::multiversion! {
    /// Pass B over one row `i` of one episode of a rule without eligibility trace: updates `g` (to
    /// `dL/dHebb_t`) and `ga` (`dL/dalpha`), returns the two row sums
    /// `(sum_j Ĝ_ij r_j, sum_j (w_ij + alpha_ij Hebb_ij) P_j)`. Called through a pointer
    /// ([`RowKernel`]), out of line: it compiles to a tighter loop than inlined into the block
    /// (maze shape: backward 106 -> 86 ms); with its own copy per instruction set.
    pub(super) fn pass_b_row [F: Real, const CLIP: bool] [F, CLIP] (
        g: &mut [F],
        h: &[F],
        ga: &mut [F],
        row: &Row<'_, F>,
        clip_c: F,
        scratch: &mut RowScratch<F>,
    ) -> (F, F) {
        let n = g.len();
        let (h, ga) = (&h[..n], &mut ga[..n]);
        let Row { w, alpha, a, v, r, p, yi, ui } = row.cut(n);
        let (t1, t2) = (&mut scratch.rule[..n], &mut scratch.matvec[..n]);
        for k in 0..n {
            let hv = h[k];
            let g1 = if CLIP {
                through_clip(a[k] * hv + ui * v[k], clip_c, g[k])
            } else {
                g[k]
            };
            let q = yi * p[k];
            t1[k] = g1 * r[k];
            t2[k] = (w[k] + alpha[k] * hv) * p[k];
            g[k] = a[k] * g1 + alpha[k] * q;
            ga[k] += q * hv;
        }
        (lane_sum(t1), lane_sum(t2))
    }
}

/// Pass B over one row of the retroactive rule: also takes `dL/dE` from step `t+1` to `t`.
#[inline(always)]
pub(super) fn pass_b_row_eligibility<F: Real>(
    g: &mut [F],
    h: &[F],
    ga: &mut [F],
    row: &Row<'_, F>,
    el: Eligibility<'_, F>,
    clip_c: F,
    scratch: &mut RowScratch<F>,
) -> (F, F) {
    let n = g.len();
    let (h, ga) = (&h[..n], &mut ga[..n]);
    let Row {
        w, alpha, r, p, yi, ..
    } = row.cut(n);
    let (e, ge, rate) = (&el.e[..n], &mut el.ge[..n], &el.rate[..n]);
    let (t1, t2) = (&mut scratch.rule[..n], &mut scratch.matvec[..n]);
    for j in 0..n {
        let z = h[j] + rate[j] * e[j];
        let gv = through_clip(z, clip_c, g[j]);
        // d/dy_i of E'_ij = ... + y_i v_j.
        t1[j] = ge[j] * r[j];
        ge[j] = rate[j] * gv + el.decay * ge[j];
        let q = yi * p[j];
        t2[j] = (w[j] + alpha[j] * h[j]) * p[j];
        ga[j] += q * h[j];
        g[j] = gv + alpha[j] * q;
    }
    (lane_sum(t1), lane_sum(t2))
}

/// Pass B of step `t` fused with pass A of step `t-1` over one row (trace reversal, no clip).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn pass_ba_row<F: Real>(
    g: &mut [F],
    h: &mut [F],
    ga: &mut [F],
    row: &Row<'_, F>,
    prev: &PrevRow<'_, F>,
    s1: &mut [F],
    s2: &mut [F],
    scratch: &mut RowScratch<F>,
) -> (F, F) {
    let n = g.len();
    let (h, ga) = (&mut h[..n], &mut ga[..n]);
    let Row {
        w,
        alpha,
        a,
        r,
        p,
        yi,
        ..
    } = row.cut(n);
    let (pa, pv, s1, s2) = (&prev.a[..n], &prev.v[..n], &mut s1[..n], &mut s2[..n]);
    let (t1, t2) = (&mut scratch.rule[..n], &mut scratch.matvec[..n]);
    let (pui, pyi) = (prev.ui, prev.yi);
    for k in 0..n {
        let hv = h[k];
        let g1 = g[k];
        let q = yi * p[k];
        t1[k] = g1 * r[k];
        t2[k] = (w[k] + alpha[k] * hv) * p[k];
        let g0 = a[k] * g1 + alpha[k] * q;
        g[k] = g0;
        ga[k] += q * hv;
        // Pass A of step t-1: Hebb_{t-1} = (Hebb_t - u_i v_j) / A_j, column sums against dL/dHebb_t.
        let hp = (hv - pui * pv[k]) / pa[k];
        h[k] = hp;
        s1[k] += g0 * pyi;
        s2[k] += g0 * hp;
    }
    (lane_sum(t1), lane_sum(t2))
}
