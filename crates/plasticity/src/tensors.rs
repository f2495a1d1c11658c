//! Small conversions between burn tensors and flat `f32` buffers.

use burn::backend::{tensor::FloatTensor, Backend};
use burn::tensor::{read_sync, Device, Tensor, TensorData};

/// Copies a backend primitive into a `Vec<f32>` (waits for a GPU device to finish).
pub fn prim_to_vec<B: Backend>(t: FloatTensor<B>) -> Vec<f32> {
    read_sync(B::float_into_data(t))
        .expect("reading a tensor back from its device")
        .try_into_vec::<f32>()
        .expect("plastic tensors are f32")
}

/// Copies a tensor into a `Vec<f32>` (row-major).
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// Builds a tensor of the given shape from a row-major `Vec<f32>`.
pub fn from_vec<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// A zero trace `[B, n, n]` for `batch` sequences of `n` neurons where the layer keeps that
/// trace (`kept`), else `None`: a layer's initial `Hebb` or eligibility trace.
pub fn zero_trace(kept: bool, [batch, n]: [usize; 2], device: &Device) -> Option<Tensor<3>> {
    kept.then(|| Tensor::zeros([batch, n, n], device))
}

/// `[first, second, n] -> [second, first, n]`: `[B, T, N] <-> [T, B, N]` (the kernels are
/// time-major, burn tensors batch-major). An empty `v` (an output the op does not have) stays
/// empty.
pub fn swap_bt(v: &[f32], first: usize, second: usize, n: usize) -> Vec<f32> {
    if v.is_empty() {
        return Vec::new();
    }
    let mut out = vec![0.0; v.len()];
    for a in 0..first {
        for b in 0..second {
            out[(b * first + a) * n..(b * first + a + 1) * n]
                .copy_from_slice(&v[(a * second + b) * n..(a * second + b + 1) * n]);
        }
    }
    out
}
