//! The engine one step at a time, in place, for agents.

use super::*;

/// Runs episodes one step at a time, in place, for agents whose input at step `t` depends on
/// their output at `t - 1` (reinforcement learning): the same maths as [`forward`] with one
/// pass over the traces per step, no per-step allocation of the traces and nothing kept for a
/// backward. `spec.steps` is ignored. The batch is shared out as the forward shares it (one
/// episode per thread, or rows across threads), so both give the same bits.
#[derive(Debug)]
pub struct Stepper<F> {
    spec: EpisodeSpec,
    y: Vec<F>,
    hebb: Vec<F>,
    elig: Vec<F>,
    pending: Option<Coefficients<F>>,
    /// `M(t)` of the last step, `[B]` (empty without modulation).
    modulator: Vec<F>,
    acc: Vec<F>,
    blocks: Vec<Range<usize>>,
    /// When the batch is split: one stepper per episode (batch 1, all rows in one block).
    parts: Vec<Stepper<F>>,
}

impl<F: Real> Stepper<F> {
    /// Starts from `y0: [B, N]`, `h0, e0: [B, N, N]` (`None`: zeros; `e0` is ignored without
    /// retroactive modulation).
    pub fn new(
        spec: &EpisodeSpec,
        y0: &[F],
        h0: Option<&[F]>,
        e0: Option<&[F]>,
    ) -> Result<Self, SpecError> {
        spec.validate()?;
        let (n, b) = (spec.neurons, spec.batch);
        let nn = n * n;
        check_state(spec, y0, h0, e0)?;
        if split_batch(b, n) {
            let one = EpisodeSpec { batch: 1, ..*spec };
            let parts = (0..b)
                .map(|bi| {
                    let part = Init {
                        x: &[],
                        y0: &y0[bi * n..(bi + 1) * n],
                        h0: h0.map(|h| &h[bi * nn..(bi + 1) * nn]),
                        e0: e0.map(|e| &e[bi * nn..(bi + 1) * nn]),
                    };
                    Self::start(&one, &part, core::iter::once(0..n).collect())
                })
                .collect();
            let init = Init {
                x: &[],
                y0,
                h0: None,
                e0: None,
            };
            return Ok(Stepper {
                parts,
                hebb: Vec::new(),
                elig: Vec::new(),
                ..Self::start(spec, &init, Vec::new())
            });
        }
        let init = Init { x: &[], y0, h0, e0 };
        Ok(Self::start(spec, &init, in_pool(|| row_blocks(n, b))))
    }

    fn start(spec: &EpisodeSpec, init: &Init<'_, F>, blocks: Vec<Range<usize>>) -> Self {
        let len = if spec.plastic {
            init.y0.len() * spec.neurons
        } else {
            0
        };
        Stepper {
            spec: *spec,
            y: init.y0.to_vec(),
            hebb: kept_trace(spec.plastic, init.h0, len),
            elig: kept_trace(spec.modulation.has_eligibility(), init.e0, len),
            pending: None,
            modulator: Vec::new(),
            acc: vec![F::zero(); init.y0.len()],
            blocks,
            parts: Vec::new(),
        }
    }

    /// One step of a fixed-rate rule with input `x: [B, N]`; returns `y_t: [B, N]`.
    pub fn step(&mut self, p: &Params<'_, F>, x: &[F]) -> Result<&[F], SpecError> {
        self.advance(p.net(&self.spec)?, x)?;
        Ok(&self.y)
    }

    /// One modulated step with input `x: [B, N]`; returns `(y_t: [B, N], M(t): [B])`.
    pub fn step_modulated(
        &mut self,
        p: &ModulatedParams<'_, F>,
        x: &[F],
    ) -> Result<(&[F], &[F]), SpecError> {
        self.advance(p.net(&self.spec)?, x)?;
        Ok((&self.y, &self.modulator))
    }

    fn advance(&mut self, net: Net<'_, F, AnyRule<'_, F>>, x: &[F]) -> Result<(), SpecError> {
        let (n, b) = (self.spec.neurons, self.spec.batch);
        self.spec.check_len("x", x.len(), b * n)?;
        in_pool(|| with_net!(net, net => self.advance_rule(&net, x)));
        Ok(())
    }

    fn advance_rule<R: Rule<F>>(&mut self, net: &Net<'_, F, R>, x: &[F]) {
        let spec = self.spec;
        let n = spec.neurons;
        if !self.parts.is_empty() {
            self.parts
                .par_iter_mut()
                .zip(x.par_chunks(n))
                .for_each(|(part, xb)| part.advance_rule(net, xb));
            self.y.clear();
            self.modulator.clear();
            for part in &self.parts {
                self.y.extend_from_slice(&part.y);
                self.modulator.extend_from_slice(&part.modulator);
            }
            return;
        }
        let alpha = AlphaRows::new(spec.alpha, net.alpha, n);
        let clip = spec.clip.map(F::of);
        forward_pass::<F, R>(
            &mut self.hebb,
            &mut self.elig,
            &self.blocks,
            net.w,
            &alpha,
            &self.y,
            self.pending.as_ref(),
            clip,
            &mut self.acc,
        );
        let mut ynew = vec![F::zero(); self.y.len()];
        activate(spec.input, &self.acc, x, &mut ynew);
        let c = net
            .rule
            .coefficients(&Activity::recurrent(&self.y, &ynew), n);
        self.modulator.clone_from(&c.modulator);
        self.pending = Some(c);
        self.y = ynew;
    }

    /// The activity `y_t: [B, N]` of the last step (`y0` before the first).
    pub fn y(&self) -> &[F] {
        &self.y
    }

    /// Applies the pending update of the last step and returns `(y_T, Hebb_T, E_T)`, as the
    /// forward would after the same steps (`E_T` empty without retroactive modulation).
    pub fn finish(mut self) -> (Vec<F>, Vec<F>, Vec<F>) {
        for part in core::mem::take(&mut self.parts) {
            let (_, hebb, elig) = part.finish();
            self.hebb.extend_from_slice(&hebb);
            self.elig.extend_from_slice(&elig);
        }
        if let Some(c) = self.pending.take() {
            let n = self.spec.neurons;
            let clip = self.spec.clip.map(F::of);
            let (hebb, elig, blocks) = (&mut self.hebb, &mut self.elig, &self.blocks);
            in_pool(|| update_pass(hebb, elig, blocks, &c, clip, n));
        }
        (self.y, self.hebb, self.elig)
    }
}
