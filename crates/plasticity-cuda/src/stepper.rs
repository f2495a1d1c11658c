//! The episode one step at a time on the device, for agents whose input at step `t` depends
//! on their output at `t - 1` (the maze and cue-reward rollouts): the GPU counterpart of
//! [`plasticity_kernels::Stepper`], with the same maths and the same results.
//!
//! The parameters go to the device once ([`Engine::stepper`]); `y`, `Hebb` and `E` stay there.
//! Per step: `x_t: [B, N]` in, the forward's kernels (`forward_step`, `modulator` when
//! modulated, `update_trace` in place), `y_t: [B, N]` and `M(t): [B]` out in one copy
//! ([`crate::layout::step_transfers`]).

use crate::engine::{check_len, DeviceParams, Engine, Error};
use crate::layout::RuleParams;
use cudarc::driver::CudaSlice;
use plasticity_kernels::EpisodeSpec;

/// Episodes advanced in place on the device, one step at a time (`spec.steps` is ignored).
#[derive(Debug)]
pub struct DeviceStepper<'a> {
    engine: &'a Engine,
    params: DeviceParams,
    hebb: CudaSlice<f32>,
    elig: CudaSlice<f32>,
    /// `[y | M]` (`B N + B` values) of the last step and of the one before, in turn:
    /// `state[current]` is the last.
    state: [CudaSlice<f32>; 2],
    current: usize,
    /// The step's input `x_t: [B, N]`.
    x: CudaSlice<f32>,
    /// `[y_t | M(t)]` on the host: `y0` before the first step.
    out: Vec<f32>,
}

impl Engine {
    /// Starts episodes on the device from `y0: [B, N]` and `h0, e0: [B, N, N]` (`None`:
    /// zeros; `e0` is only read by retroactive modulation) with the rule's parameters `p`,
    /// uploaded once: they stay fixed while the stepper runs, as in a rollout.
    pub fn stepper(
        &self,
        spec: &EpisodeSpec,
        p: &RuleParams<'_>,
        y0: &[f32],
        h0: Option<&[f32]>,
        e0: Option<&[f32]>,
    ) -> Result<DeviceStepper<'_>, Error> {
        let params = self.upload(spec, p)?;
        let bn = spec.batch * spec.neurons;
        check_len("y0", y0.len(), bn)?;
        let (hebb, elig) = self.initial_traces(&params, h0, e0)?;
        let mut first = self.zeros(bn + spec.batch)?;
        self.up_into(y0, &mut first)?;
        let mut out = y0.to_vec();
        out.resize(bn + spec.batch, 0.0);
        Ok(DeviceStepper {
            engine: self,
            params,
            hebb,
            elig,
            state: [first, self.zeros(bn + spec.batch)?],
            current: 0,
            x: self.zeros(bn)?,
            out,
        })
    }
}

impl DeviceStepper<'_> {
    /// The spec the stepper runs.
    pub fn spec(&self) -> &EpisodeSpec {
        &self.params.spec
    }

    /// One step with input `x: [B, N]`; returns `(y_t: [B, N], M(t): [B])` (`M` empty
    /// without modulation), as [`plasticity_kernels::Stepper::step_modulated`] does.
    pub fn step(&mut self, x: &[f32]) -> Result<(&[f32], &[f32]), Error> {
        let (n, b) = (self.params.spec.neurons, self.params.spec.batch);
        let bn = b * n;
        check_len("x", x.len(), bn)?;
        let (e, p) = (self.engine, &self.params);
        e.up_into(x, &mut self.x)?;
        let [s0, s1] = &mut self.state;
        let (prev, next) = if self.current == 0 {
            (&*s0, s1)
        } else {
            (&*s1, s0)
        };
        {
            let ypre = prev.slice(..bn);
            let (mut y, mut mt) = next.split_at_mut(bn);
            e.forward_step(p, &self.hebb.slice(..), (&ypre, &self.x.slice(..)), &mut y)?;
            let y = y.slice(..);
            if p.args.modulated() {
                e.modulator(p, &y, &mut mt)?;
            }
            if p.args.plastic() {
                let traces = (&mut self.hebb.slice_mut(..), &mut self.elig.slice_mut(..));
                e.update_trace(p, traces, (&ypre, &y), &mt.slice(..))?;
            }
        }
        let len = bn + if p.args.modulated() { b } else { 0 };
        e.down_into(next, &mut self.out[..len])?;
        self.current = 1 - self.current;
        Ok((&self.out[..bn], &self.out[bn..len]))
    }

    /// The activity `y_t: [B, N]` of the last step (`y0` before the first).
    pub fn y(&self) -> &[f32] {
        &self.out[..self.params.spec.batch * self.params.spec.neurons]
    }

    /// The traces after the last step, `(Hebb_t, E_t): [B, N, N]` each (empty when the rule
    /// does not keep it), as [`plasticity_kernels::Stepper::finish`] returns them.
    pub fn traces(&self) -> Result<(Vec<f32>, Vec<f32>), Error> {
        let s = &self.params.spec;
        let bnn = s.batch * s.neurons * s.neurons;
        let args = &self.params.args;
        Ok((
            self.engine
                .down(&self.hebb, if args.plastic() { bnn } else { 0 })?,
            self.engine
                .down(&self.elig, if args.eligibility() { bnn } else { 0 })?,
        ))
    }
}
