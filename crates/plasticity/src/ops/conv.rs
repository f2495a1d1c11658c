//! A stack of 3x3 stride-2 convolutions with `tanh` (the Omniglot image encoder, ICML 2018
//! section 4.3): one op over `plasticity_kernels::conv`, its parameters packed in one tensor.

use super::{op_tensors, HostKernels, Input, Op};
use burn::backend::DispatchDevice;
use burn::tensor::{Device, Tensor, TensorData};
use plasticity_kernels::conv::{self as kernels, ConvForward, ConvLayer, ConvSpec};
use plasticity_kernels::SpecError;

op_tensors!(
    /// The inputs of a convolution stack. `x: [M, C_0, S_0, S_0]`; `params`: every layer's
    /// weight `[C_{l+1}, C_l, 3, 3]` and bias `[C_{l+1}]` flattened and concatenated
    /// (`W_0, b_0, W_1, b_1, ..`).
    ConvInputs { x, params }
);

/// Runs a stack of 3x3 stride-2 convolutions without padding, each followed by `tanh`, as one
/// operation with a hand-written backward ([`plasticity_kernels::conv`]): the same function as
/// `conv.forward(x).tanh()` for each `burn::nn::conv::Conv2d` in turn (stride 2, no padding, no
/// dilation, one group), with gradients for `x` and every weight and bias on autodiff devices.
///
/// Shapes: `x: [M, C_0, S_0, S_0]`, `layers[l] = (weight: [C_{l+1}, C_l, 3, 3], bias:
/// [C_{l+1}])`; returns `[M, C_L, S_L, S_L]`, `S_{l+1} = (S_l - 3) / 2 + 1`. CPU (`Flex`)
/// devices only: see [`conv_stack_supported`].
pub fn conv_stack(x: Tensor<4>, layers: &[(Tensor<4>, Tensor<1>)]) -> Result<Tensor<4>, SpecError> {
    let [m, c0, s, s2] = x.dims();
    if s != s2 {
        return Err(SpecError(format!("x: images must be square, got {s}x{s2}")));
    }
    let mut channels = vec![c0];
    for (l, (w, b)) in layers.iter().enumerate() {
        let [co, ci, kh, kw] = w.dims();
        let cin = *channels.last().expect("non-empty");
        if ci != cin || kh != 3 || kw != 3 {
            return Err(SpecError(format!(
                "weight {l}: expected shape [C, {cin}, 3, 3], got {:?}",
                w.dims()
            )));
        }
        if b.dims() != [co] {
            return Err(SpecError(format!(
                "bias {l}: expected shape [{co}], got {:?}",
                b.dims()
            )));
        }
        channels.push(co);
    }
    let spec = ConvSpec {
        images: m,
        side: s,
        channels,
    };
    spec.validate()?; // before packing: `run` checks it again, cheaply
    let flat: Vec<Tensor<1>> = layers
        .iter()
        .flat_map(|(w, b)| [w.clone().flatten(0, 3), b.clone()])
        .collect();
    let params = Tensor::cat(flat, 0);
    let inputs = ConvInputs {
        x: Input::new(x, [m, c0, s, s]),
        params: Input::new(params, [spec.params_len()]),
    };
    let mut out = inputs.run(Op::ConvStack(spec))?;
    Ok(Tensor::from_dispatch(out.remove(0)))
}

/// Whether [`conv_stack`] runs on `device`: the CPU (`Flex`) backend, with or without autodiff.
pub fn conv_stack_supported(device: &Device) -> bool {
    #[allow(unreachable_patterns)]
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => matches!(&**inner, DispatchDevice::Flex(_)),
        _ => false,
    }
}

/// The convolution stack's CPU kernels: `plasticity_kernels::conv` on host buffers.
impl HostKernels for ConvSpec {
    /// The forward's activations and the packed parameters.
    type Saved = (ConvForward<f32>, Vec<f32>);

    fn forward(&self, inputs: Vec<Vec<f32>>) -> (Vec<TensorData>, Self::Saved) {
        let spec = self;
        let ConvInputs { x, params } = ConvInputs::from_vec(inputs);
        // Shapes were checked by `conv_stack` before dispatch.
        let layers = ConvLayer::split(spec, &params).expect("shapes checked before dispatch");
        let record = kernels::forward(spec, &layers, &x).expect("shapes checked before dispatch");
        let (side, last) = (spec.sides()[spec.layers()], spec.channels[spec.layers()]);
        let out = TensorData::new(record.output(), [spec.images, last, side, side]);
        (vec![out], (record, params))
    }

    fn backward(saved: Self::Saved, gy: Vec<f32>, wanted: &[bool]) -> Vec<Option<TensorData>> {
        let (record, params) = saved;
        let spec = record.spec().clone();
        let want_x = wanted[0];
        let layers = ConvLayer::split(&spec, &params).expect("checked in the forward");
        let g = kernels::backward(&layers, &record, &gy, want_x)
            .expect("shapes checked before dispatch");
        let x_shape = [spec.images, spec.channels[0], spec.side, spec.side];
        let mut flat = Vec::with_capacity(spec.params_len());
        for (w, b) in g.weights.iter().zip(&g.biases) {
            flat.extend_from_slice(w);
            flat.extend_from_slice(b);
        }
        let len = flat.len();
        let grads = ConvInputs {
            x: want_x.then(|| TensorData::new(g.input, x_shape)),
            params: Some(TensorData::new(flat, [len])),
        };
        grads.into_vec()
    }
}
