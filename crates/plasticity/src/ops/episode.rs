//! The plastic episode, plain (ICML 2018 eq. 1-3) or neuromodulated (ICLR 2019 eq. 4-6,
//! "Backpropamine"): one op over `plasticity_kernels::rnn`, whose forward and backward return
//! the same `Episode` and `Grads` for every trace rule.

use super::device::{data, given};
use super::rule::RuleInputs;
use super::{op_tensors, HostKernels, Input, Op};
use crate::tensors::swap_bt;
use burn::tensor::{Tensor, TensorData};
use plasticity_kernels::{self as kernels, Episode, EpisodeSpec, Modulation, SpecError};

op_tensors!(
    /// The inputs of an episode. `w: [N, N]`, the rule's parameters ([`RuleInputs`]),
    /// `x: [B, T, N]`, `y0: [B, N]`, `hebb0, elig0: [B, N, N]` (an empty initial trace is zero;
    /// `elig0` is empty unless retroactive).
    EpisodeInputs { w, rule: RuleInputs, x, y0, hebb0, elig0 }
);

op_tensors!(
    /// The outputs of an episode. `ys: [B, T, N]` (carries the gradients), the final traces
    /// `hebb: [B, N, N]` and `elig: [B, N, N]` (empty unless retroactive), the modulator
    /// `modulator: [B, T]` (empty when plain).
    EpisodeOutputs { ys, hebb, elig, modulator }
);

/// Runs a plastic episode with a fixed rate (`spec.modulation` must be
/// [`Modulation::None`]) on any supported device, with gradients on autodiff devices.
///
/// Shapes: `w: [N, N]`, `alpha: [N, N] | [1, N] | [1, 1]` (as `spec.alpha`), `eta: [1]`,
/// `x: [B, T, N]`, `y0: [B, N]`, `hebb0: [B, N, N]` (`None`: zeros, without allocating them).
/// Returns `(ys: [B, T, N], hebb_T: [B, N, N])`; `hebb_T` is detached (no gradient flows back
/// through it).
pub fn plastic_episode(
    w: Tensor<2>,
    alpha: Tensor<2>,
    eta: Tensor<1>,
    x: Tensor<3>,
    y0: Tensor<2>,
    hebb0: Option<Tensor<3>>,
    spec: EpisodeSpec,
) -> Result<(Tensor<3>, Tensor<3>), SpecError> {
    if spec.modulation != Modulation::None {
        return Err(SpecError(
            "modulation: modulated episodes run through modulated_episode".into(),
        ));
    }
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let rule = RuleInputs {
        alpha: Input::new(alpha, spec.alpha.dims(n)),
        eta: Input::new(eta, [1]),
        ..RuleInputs::none()
    };
    let inputs = EpisodeInputs {
        w: Input::new(w, [n, n]),
        rule,
        x: Input::new(x, [b, t, n]),
        y0: Input::new(y0, [b, n]),
        hebb0: Input::optional(hebb0, [b, n, n]),
        elig0: Input::Empty,
    };
    let out = episode(spec, inputs)?;
    Ok((
        Tensor::from_dispatch(out.ys),
        Tensor::from_dispatch(out.hebb),
    ))
}

/// Runs the same network without plasticity (`spec.plastic` must be false; the papers'
/// baseline, `alpha = 0` and no trace) on the engine: `y_t = tanh(y_{t-1} w + x_t)` (or the
/// clamped input mode), with gradients for `w`, `x` and `y0` on autodiff devices.
///
/// Shapes: `w: [N, N]`, `x: [B, T, N]`, `y0: [B, N]`; returns `ys: [B, T, N]`.
pub fn static_episode(
    w: Tensor<2>,
    x: Tensor<3>,
    y0: Tensor<2>,
    spec: EpisodeSpec,
) -> Result<Tensor<3>, SpecError> {
    if spec.plastic || spec.modulation != Modulation::None {
        return Err(SpecError(
            "plastic: static_episode runs the network without plasticity (plastic: false, no modulation)"
                .into(),
        ));
    }
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let inputs = EpisodeInputs {
        w: Input::new(w, [n, n]),
        rule: RuleInputs::none(),
        x: Input::new(x, [b, t, n]),
        y0: Input::new(y0, [b, n]),
        hebb0: Input::Empty,
        elig0: Input::Empty,
    };
    Ok(Tensor::from_dispatch(episode(spec, inputs)?.ys))
}

/// The learned tensors of a neuromodulated plastic layer (ICLR 2019 section 3; see
/// [`plasticity_kernels::Modulation`] for the equations).
#[derive(Clone, Debug)]
pub struct ModulatedTensors {
    /// Fixed weights `w: [N, N]`.
    pub w: Tensor<2>,
    /// Plasticity coefficients `alpha: [N, N] | [1, N] | [1, 1]` (as `spec.alpha`).
    pub alpha: Tensor<2>,
    /// Modulator weights `m: [N]`: `M(t) = tanh(sum_j m_j y_j(t) + m_b)`.
    pub m: Tensor<1>,
    /// Modulator bias `m_b: [1]`.
    pub m_bias: Tensor<1>,
    /// Fan-out `(v, b)`, each `[N]`: `eta_j = v_j M + b_j` (required with fan-out, ignored
    /// without).
    pub fan_out: Option<(Tensor<1>, Tensor<1>)>,
    /// Eligibility-trace rate `eta_E: [1]` (retroactive modulation; simple modulation ignores it
    /// and gives it a zero gradient).
    pub eta_e: Tensor<1>,
}

/// What a modulated episode returns.
#[derive(Clone, Debug)]
pub struct ModulatedOutput {
    /// Activity of every step, `ys: [B, T, N]` (carries the gradients).
    pub ys: Tensor<3>,
    /// The Hebbian trace after the last step, `[B, N, N]` (detached).
    pub hebb: Tensor<3>,
    /// The eligibility trace after the last step, `[B, N, N]` (retroactive; detached).
    pub elig: Option<Tensor<3>>,
    /// The modulator `M(t)` of every step, `[B, T]` (detached).
    pub modulator: Tensor<2>,
}

/// Runs a neuromodulated plastic episode (`spec.modulation` must not be
/// [`Modulation::None`]) on any supported device, with gradients on autodiff devices for every
/// parameter, `x`, `y0`, `hebb0` and `elig0`.
///
/// Shapes: as [`ModulatedTensors`], `x: [B, T, N]`, `y0: [B, N]`, `hebb0, elig0: [B, N, N]`
/// (`None`: zeros, without allocating them; `elig0` is ignored by simple modulation).
pub fn modulated_episode(
    p: ModulatedTensors,
    x: Tensor<3>,
    y0: Tensor<2>,
    hebb0: Option<Tensor<3>>,
    elig0: Option<Tensor<3>>,
    spec: EpisodeSpec,
) -> Result<ModulatedOutput, SpecError> {
    let modulation = spec.modulation;
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    if modulation == Modulation::None {
        return Err(SpecError(
            "modulation: None episodes run through plastic_episode".into(),
        ));
    }
    let (fan_w, fan_b) = match (modulation.fan_out(), p.fan_out) {
        (true, Some((v, bias))) => (Input::new(v, [n]), Input::new(bias, [n])),
        (true, None) => {
            let missing = "fan_out: the modulation fans out but no (v, b) tensors were given";
            (
                Input::Missing(missing.into()),
                Input::Missing(missing.into()),
            )
        }
        (false, _) => (Input::Empty, Input::Empty),
    };
    let retro = modulation.has_eligibility();
    let rule = RuleInputs {
        alpha: Input::new(p.alpha, spec.alpha.dims(n)),
        eta: Input::Empty,
        m: Input::new(p.m, [n]),
        m_bias: Input::new(p.m_bias, [1]),
        fan_w,
        fan_b,
        eta_e: Input::new(p.eta_e, [1]),
    };
    let inputs = EpisodeInputs {
        w: Input::new(p.w, [n, n]),
        rule,
        x: Input::new(x, [b, t, n]),
        y0: Input::new(y0, [b, n]),
        hebb0: Input::optional(hebb0, [b, n, n]),
        elig0: Input::optional(elig0.filter(|_| retro), [b, n, n]),
    };
    let out = episode(spec, inputs)?;
    Ok(ModulatedOutput {
        ys: Tensor::from_dispatch(out.ys),
        hebb: Tensor::from_dispatch(out.hebb),
        elig: retro.then(|| Tensor::from_dispatch(out.elig)),
        modulator: Tensor::from_dispatch(out.modulator),
    })
}

fn episode(
    spec: EpisodeSpec,
    inputs: EpisodeInputs<Input>,
) -> Result<EpisodeOutputs<burn::backend::DispatchTensor>, SpecError> {
    let outputs = inputs.run(Op::Episode(spec))?;
    Ok(EpisodeOutputs::from_vec(outputs))
}

/// What an episode's backward needs: the CPU engine's record and the inputs without `x` and
/// the initial state, or (feature `cuda`, after `--device cuda`) the GPU's record.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one value per recorded op
pub enum EpisodeSaved {
    /// The CPU engine ran the episode.
    Cpu(Episode<f32>, EpisodeInputs<Vec<f32>>),
    /// The CUDA engine ran it ([`crate::cuda`]).
    #[cfg(feature = "cuda")]
    Cuda(Box<crate::cuda::Saved>),
}

/// The op's outputs from an engine's `ys: [T, B, N]`, final traces and modulator `[T, B]`.
fn episode_outputs(
    spec: &EpisodeSpec,
    ys: &[f32],
    hebb: Vec<f32>,
    elig: Vec<f32>,
    modulator: &[f32],
) -> Vec<TensorData> {
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let outputs = EpisodeOutputs {
        ys: data(swap_bt(ys, t, b, n), [b, t, n]),
        hebb: data(hebb, [b, n, n]),
        elig: data(elig, [b, n, n]),
        modulator: data(swap_bt(modulator, t, b, 1), [b, t]),
    };
    outputs.into_vec()
}

/// The op's gradients, in its inputs' order, from an engine's.
fn episode_grads(spec: &EpisodeSpec, g: kernels::Grads<f32>) -> Vec<Option<TensorData>> {
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let grads = EpisodeInputs {
        w: data(g.w, [n, n]),
        rule: RuleInputs::grads(g.plastic.alpha, g.plastic.rule, spec.alpha.dims(n)),
        x: data(swap_bt(&g.x, t, b, n), [b, t, n]),
        y0: data(g.y0, [b, n]),
        hebb0: data(g.plastic.hebb0, [b, n, n]),
        elig0: data(g.plastic.elig0, [b, n, n]),
    };
    grads.into_vec().into_iter().map(Some).collect()
}

/// The episode's host kernels: `plasticity_kernels::rnn` on host buffers, or the CUDA engine
/// when one is selected ([`crate::cuda::select`]).
impl HostKernels for EpisodeSpec {
    type Saved = EpisodeSaved;

    fn forward(&self, inputs: Vec<Vec<f32>>) -> (Vec<TensorData>, Self::Saved) {
        let (n, b, t) = (self.neurons, self.batch, self.steps);
        let mut p = EpisodeInputs::from_vec(inputs);
        let x = swap_bt(&p.x, b, t, n);
        #[cfg(feature = "cuda")]
        if let Some(engine) = crate::cuda::selected() {
            let (out, saved) = crate::cuda::forward(engine, self, &p, &x);
            let outputs = episode_outputs(
                self,
                &out.ys,
                out.traces.hebb,
                out.traces.elig,
                &out.modulator,
            );
            return (outputs, EpisodeSaved::Cuda(Box::new(saved)));
        }
        let (w, y0, h0, e0) = (&p.w, &p.y0, given(&p.hebb0), given(&p.elig0));
        // Shapes were checked by `run` before dispatch.
        let params = p.rule.rnn(w, self.modulation);
        let episode =
            kernels::forward(self, params, &x, y0, h0, e0).expect("shapes checked before dispatch");
        let outputs = episode_outputs(
            self,
            &episode.ys,
            episode.traces.hebb.clone(),
            episode.traces.elig.clone(),
            &episode.modulator,
        );
        (p.x, p.y0, p.hebb0, p.elig0) = Default::default();
        (outputs, EpisodeSaved::Cpu(episode, p))
    }

    fn backward(saved: Self::Saved, gy: Vec<f32>, _: &[bool]) -> Vec<Option<TensorData>> {
        let (episode, p) = match saved {
            EpisodeSaved::Cpu(episode, p) => (episode, p),
            #[cfg(feature = "cuda")]
            EpisodeSaved::Cuda(s) => {
                let spec = *s.spec();
                let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
                let g = crate::cuda::backward(*s, &swap_bt(&gy, b, t, n));
                return episode_grads(&spec, g);
            }
        };
        let spec = *episode.spec();
        let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
        let gy = swap_bt(&gy, b, t, n);
        let params = p.rule.rnn(&p.w, spec.modulation);
        let g = kernels::backward(params, episode, &gy, None, None)
            .expect("shapes checked before dispatch");
        episode_grads(&spec, g)
    }
}

/// A plain episode with burn tensor operations on the device (the GPU path;
/// [`tensor_episode`](crate::tensor_episode)). Runs on any backend; the CPU tests below check it.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) fn tensor_forward<B: burn::backend::Backend>(
    spec: EpisodeSpec,
    inputs: Vec<burn::backend::tensor::FloatTensor<B>>,
    save: bool,
) -> (
    Vec<burn::backend::tensor::FloatTensor<B>>,
    Option<crate::tensor_episode::Saved<B>>,
) {
    let p = EpisodeInputs::from_vec(inputs);
    let RuleInputs { alpha, eta, m, .. } = p.rule;
    // `eta` is one number: read it once per episode rather than broadcasting a tensor.
    let eta = crate::tensors::prim_to_vec::<B>(eta)[0];
    let (ys, hebb, saved) =
        crate::tensor_episode::forward::<B>(p.w, alpha, eta, p.x, p.y0, p.hebb0, spec, save);
    // No eligibility trace nor modulator: the empty input `m` stands for both.
    (vec![ys, hebb, m.clone(), m], saved)
}

/// The backward of [`tensor_forward`].
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) fn tensor_backward<B: burn::backend::Backend>(
    saved: crate::tensor_episode::Saved<B>,
    gy: burn::backend::tensor::FloatTensor<B>,
) -> Vec<Option<burn::backend::tensor::FloatTensor<B>>> {
    crate::tensor_episode::backward::<B>(saved, gy).into_vec()
}

#[cfg(test)]
mod tests {
    //! The GPU path's packing (`tensor_forward`, `tensor_backward`) run on the CPU backend
    //! against the host path: the same outputs, and the same gradient in the same place for
    //! every input it differentiates (`tests/tensor_episode.rs` checks its maths).
    use super::*;
    use crate::ops::device::{host_backward, host_forward};
    use crate::tensors::prim_to_vec;
    use burn::backend::{flex::FlexTensor, Flex};

    fn tensor(shape: &[usize], scale: f32) -> FlexTensor {
        let len = shape.iter().product::<usize>();
        let v = (0..len).map(|k| scale * (((k * 37 + len) % 17) as f32 / 8.0 - 1.0));
        FlexTensor::from_data(TensorData::new(v.collect::<Vec<f32>>(), shape.to_vec()))
    }

    fn assert_close(what: &str, got: FlexTensor, want: FlexTensor) {
        let (got, want) = (prim_to_vec::<Flex>(got), prim_to_vec::<Flex>(want));
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn the_tensor_path_packs_outputs_and_gradients_as_the_host_path() {
        let (n, b, t) = (3, 2, 5);
        let spec = EpisodeSpec::new(n, b, t);
        let empty = || tensor(&[0], 1.0);
        let inputs = || {
            let rule = RuleInputs {
                alpha: tensor(&[n, n], 0.5),
                eta: FlexTensor::from_data(TensorData::new(vec![0.3f32], [1])),
                m: empty(),
                m_bias: empty(),
                fan_w: empty(),
                fan_b: empty(),
                eta_e: empty(),
            };
            let all = EpisodeInputs {
                w: tensor(&[n, n], 0.5),
                rule,
                x: tensor(&[b, t, n], 1.0),
                y0: tensor(&[b, n], 0.5),
                hebb0: tensor(&[b, n, n], 0.1),
                elig0: empty(),
            };
            all.into_vec()
        };
        let (host, host_saved) = host_forward::<Flex>(&Op::Episode(spec), inputs(), true);
        let (device, device_saved) = tensor_forward::<Flex>(spec, inputs(), true);
        let names = EpisodeOutputs::<()>::names();
        for (k, (got, want)) in device.into_iter().zip(host).take(2).enumerate() {
            assert_close(names[k], got, want);
        }
        let gy = tensor(&[b, t, n], 1.0);
        let wanted = vec![true; EpisodeInputs::<()>::names().len()];
        let host = host_backward::<Flex>(host_saved.unwrap(), gy.clone(), &wanted);
        let device = tensor_backward::<Flex>(device_saved.unwrap(), gy);
        let names = EpisodeInputs::<()>::names();
        let mut compared = Vec::new();
        for (k, (got, want)) in device.into_iter().zip(host).enumerate() {
            if let Some(got) = got {
                assert_close(
                    names[k],
                    got,
                    want.expect("the host path has every gradient"),
                );
                compared.push(names[k]);
            }
        }
        assert_eq!(compared, ["w", "alpha", "eta", "x", "y0", "hebb0"]);
    }
}
