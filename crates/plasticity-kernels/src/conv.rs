//! A stack of 3x3 stride-2 convolutions without padding, each followed by `tanh`, fused into
//! one forward and one hand-written backward (the image encoder of the Omniglot experiment,
//! ICML 2018 section 4.3: `31 -> 15 -> 7 -> 3 -> 1`).
//!
//! # Layouts
//! The caller's tensors are in burn's layouts: input `[M, C_0, S_0, S_0]` (NCHW), layer `l`'s
//! weight `[C_{l+1}, C_l, 3, 3]` and bias `[C_{l+1}]`, output `[M, C_L, S_L, S_L]`, with
//! `S_{l+1} = (S_l - 3) / 2 + 1`. Inside, activations are pixel-major (NHWC): image `m`,
//! row `y`, column `x`, channel `c` at `((m S + y) S + x) C + c`. Then the patch of output
//! pixel `(y, x)` is three contiguous runs of `3 C` values (input rows `2y..2y+3`, columns
//! `2x..2x+3`, all channels), and one layer is
//!
//! ```text
//! col[p, k]  = a_l[m, 2y + ky, 2x + kx, ci]     p = (m, y, x),  k = (ky 3 + kx) C_l + ci   (im2col)
//! z[p, co]   = sum_k col[p, k] W[co, k] + b[co]  one matrix product [P, K] x [K, C_{l+1}]
//! a_{l+1}    = tanh(z)                           [P, C_{l+1}] is again NHWC
//! ```
//!
//! with `W` the weight permuted to `[C_{l+1}, 3, 3, C_l]` (same `k` order as `col`).
//!
//! # Backward
//! With `g = dL/da_{l+1}: [P, C_{l+1}]`:
//!
//! ```text
//! dz    = g (1 - a_{l+1}^2)
//! dW   += dz^T col          [C_{l+1}, P] x [P, K]
//! db   += sum_p dz[p, .]
//! dcol  = dz W              [P, C_{l+1}] x [C_{l+1}, K]
//! dL/da_l[m, 2y + ky, 2x + kx, ci] += dcol[p, k]                (col2im: scatter-add)
//! ```
//!
//! The forward keeps the activations `a_0 .. a_L` (not the `col` matrices: rebuilding one is
//! a few copies per pixel); every matrix product is one `matrixmultiply` call, except for the
//! first layer's (`k = 9 C_0` at most [`SMALL_K`]: loops over the output channels). Images
//! are split into blocks, at least one per rayon thread and at most [`BLOCK_IMAGES`] images
//! each (forward and backward per block, weight gradients summed over blocks); outputs and
//! input gradients do not depend on the blocks, weight gradients only through rounding.
//! The blocks already keep every rayon thread busy, so run with `MATMUL_NUM_THREADS=1`
//! (matrixmultiply reads it once, before its first product): otherwise each block's products
//! start matrixmultiply's own threads too, more threads than cores (the CLI sets it for
//! `omniglot`; measured in the README, Omniglot, "Two threads").
//! The `im2col` buffers are reused from call to call ([`ConvReal::with_scratch`]). `f32`
//! runs `tanh` as a rational approximation ([`tanh_f32`]), `f64` exactly.
//!
//! Measured on the Omniglot shape (48 images, 64 channels, one loaded core;
//! `cargo run --release -p plasticity-kernels --example conv_bench`): forward ~4-5 ms,
//! backward ~6-7 ms, against ~20 + ~31 ms for burn-flex's `Conv2d` and `tanh`.

use crate::real::Real;
use crate::spec::SpecError;
use rayon::prelude::*;

/// Shapes of a convolution stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Images `M`.
    pub images: usize,
    /// Side `S_0` of the (square) input images.
    pub side: usize,
    /// Channels `[C_0, C_1, .., C_L]`: input channels, then each layer's output channels (so
    /// `L = channels.len() - 1` layers).
    pub channels: Vec<usize>,
}

impl ConvSpec {
    /// Number of layers `L`.
    pub fn layers(&self) -> usize {
        self.channels.len().saturating_sub(1)
    }

    /// Sides `[S_0, .., S_L]`, `S_{l+1} = (S_l - 3) / 2 + 1`.
    pub fn sides(&self) -> Vec<usize> {
        let mut s = vec![self.side];
        for _ in 0..self.layers() {
            let last = *s.last().expect("non-empty");
            s.push(last.saturating_sub(3) / 2 + 1);
        }
        s
    }

    /// Length of layer `l`'s weight, `C_{l+1} C_l 9`.
    pub fn weight_len(&self, l: usize) -> usize {
        self.channels[l + 1] * self.channels[l] * 9
    }

    /// Length of the input, `M C_0 S_0^2`.
    pub fn input_len(&self) -> usize {
        self.images * self.channels[0] * self.side * self.side
    }

    /// Length of the output, `M C_L S_L^2`.
    pub fn output_len(&self) -> usize {
        let s = *self.sides().last().expect("non-empty");
        self.images * self.channels[self.layers()] * s * s
    }

    /// Total length of all weights and biases, in the order `W_0, b_0, W_1, b_1, ..`.
    pub fn params_len(&self) -> usize {
        (0..self.layers())
            .map(|l| self.weight_len(l) + self.channels[l + 1])
            .sum()
    }

    /// Checks that there is at least one layer, every size is positive and every layer's input
    /// is at least 3 pixels wide.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.layers() == 0 {
            return Err(SpecError(
                "channels: needs the input channels and at least one layer".into(),
            ));
        }
        if self.images == 0 {
            return Err(SpecError("images: must be positive".into()));
        }
        if let Some(l) = self.channels.iter().position(|&c| c == 0) {
            return Err(SpecError(format!("channels[{l}]: must be positive")));
        }
        let sides = self.sides();
        for (l, &s) in sides.iter().enumerate().take(self.layers()) {
            if s < 3 {
                return Err(SpecError(format!(
                    "side: layer {l} gets {s}x{s} images, a 3x3 convolution needs at least 3x3"
                )));
            }
        }
        Ok(())
    }
}

/// Floats the convolution kernels run in: [`Real`] with a general strided matrix product.
pub trait ConvReal: Real {
    /// `c = a b + beta c` for `a: [m, k]`, `b: [k, n]`, `c: [m, n]` given by (row, column)
    /// strides; `c` is row-major with row stride `n`.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: (&[Self], usize, usize),
        b: (&[Self], usize, usize),
        beta: Self,
        c: &mut [Self],
    );

    /// `v = tanh(v)` element-wise: `f64` exactly (the standard library's), `f32` by
    /// [`tanh_f32`] (a vectorisable rational approximation; the library's `tanhf` took
    /// 13 ms of a 17 ms forward on the Omniglot shape).
    fn tanh_in_place(v: &mut [Self]);

    /// Runs `f` with this thread's reusable buffers (they keep their memory between calls, so
    /// a training loop does not map and fault in fresh pages for every im2col matrix).
    fn with_scratch<R>(f: impl FnOnce(&mut Scratch<Self>) -> R) -> R;
}

/// The buffers of one thread: per layer, the im2col matrix and its gradient (one buffer per
/// layer, so that their lengths do not change from call to call and resizing them neither
/// zeroes nor reallocates), and the gradient of the current layer's activations. At most
/// [`BLOCK_IMAGES`] images' worth each.
#[derive(Debug, Default)]
pub struct Scratch<F> {
    col: Vec<Vec<F>>,
    dcol: Vec<Vec<F>>,
    g: Vec<F>,
    da: Vec<F>,
}

impl<F: Copy + Default> Scratch<F> {
    /// Layer `l`'s im2col buffer and its gradient's, each resized to `len`.
    fn layer(&mut self, l: usize, len: usize) -> (&mut Vec<F>, &mut Vec<F>) {
        while self.col.len() <= l {
            self.col.push(Vec::new());
            self.dcol.push(Vec::new());
        }
        self.col[l].resize(len, F::default());
        (&mut self.col[l], &mut self.dcol[l])
    }
}

/// Runs `f` on every item, in parallel on rayon's pool when it has more than one thread, else
/// on this thread (no hand-over to a worker that then spins idle between calls).
fn map_blocks<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Send + Sync) -> Vec<R> {
    if rayon::current_num_threads() > 1 && items.len() > 1 {
        items.into_par_iter().map(f).collect()
    } else {
        items.into_iter().map(f).collect()
    }
}

/// Most images run as one block (one matrix product per layer): bounds the scratch buffers
/// (`BLOCK_IMAGES x 49 x 576` values for `col` on the Omniglot shape, 3.6 MB in `f32`).
pub const BLOCK_IMAGES: usize = 32;

/// Layers whose patches have at most this many values (`9 C_in`: the first layer, one input
/// channel, `k = 9`) run their forward product and weight gradient as loops vectorised over
/// the output channels: at `k = 9` the packing of `gemm` costs more than the arithmetic.
pub const SMALL_K: usize = 16;

/// `tanh(x)` in `f32` as the ratio of a degree-13 odd polynomial and a degree-6 even one on
/// `x` clamped to `[-7.9053111, 7.9053111]` (beyond it `tanh` rounds to `+-1` in `f32`), the
/// form of Eigen's fast `f32` tanh. Measured against `f64`
/// `tanh` on `[-12, 12]` (`tests/conv.rs`): absolute error at most `5e-7`; the result is in
/// `[-1, 1]`.
#[inline]
pub fn tanh_f32(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let p = x2 * -2.760_768_5e-16 + 2.000_188e-13;
    let p = x2 * p + -8.604_672e-11;
    let p = x2 * p + 5.122_297e-8;
    let p = x2 * p + 1.485_722_4e-5;
    let p = x2 * p + 6.372_619_3e-4;
    let p = x2 * p + 4.893_524_6e-3;
    let p = x * p;
    let q = x2 * 1.198_258_4e-6 + 1.185_347_1e-4;
    let q = x2 * q + 2.268_434_6e-3;
    let q = x2 * q + 4.893_525e-3;
    (p / q).clamp(-1.0, 1.0)
}

/// Panics unless every index of a strided `[rows, cols]` matrix is inside a buffer of `len`.
fn check_strided(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    assert!(
        rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len,
        "strided matrix [{rows}, {cols}] (strides {rs}, {cs}) outside a buffer of {len}"
    );
}

macro_rules! conv_real {
    ($t:ty, $gemm:path, $tanh:expr) => {
        impl ConvReal for $t {
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: (&[$t], usize, usize),
                b: (&[$t], usize, usize),
                beta: $t,
                c: &mut [$t],
            ) {
                check_strided(a.0.len(), m, k, a.1, a.2);
                check_strided(b.0.len(), k, n, b.1, b.2);
                assert!(c.len() >= m * n, "output of the matrix product too short");
                // SAFETY: the strides describe matrices inside the slices checked above; `c`
                // does not alias `a` or `b` (it is borrowed mutably).
                unsafe {
                    $gemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.0.as_ptr(),
                        a.1 as isize,
                        a.2 as isize,
                        b.0.as_ptr(),
                        b.1 as isize,
                        b.2 as isize,
                        beta,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            }

            fn tanh_in_place(v: &mut [$t]) {
                ($tanh)(v)
            }

            fn with_scratch<R>(f: impl FnOnce(&mut Scratch<$t>) -> R) -> R {
                thread_local! {
                    static SCRATCH: core::cell::RefCell<Scratch<$t>> = Default::default();
                }
                SCRATCH.with(|s| f(&mut s.borrow_mut()))
            }
        }
    };
}
conv_real!(f32, matrixmultiply::sgemm, |v: &mut [f32]| v
    .iter_mut()
    .for_each(|x| *x = tanh_f32(*x)));
conv_real!(f64, matrixmultiply::dgemm, |v: &mut [f64]| v
    .iter_mut()
    .for_each(|x| *x = x.tanh()));

/// The parameters of a stack, borrowed in burn's layouts.
#[derive(Clone, Copy, Debug)]
pub struct ConvLayer<'a, F> {
    /// `[C_out, C_in, 3, 3]`.
    pub weight: &'a [F],
    /// `[C_out]`.
    pub bias: &'a [F],
}

impl<'a, F> ConvLayer<'a, F> {
    /// Splits all weights and biases concatenated in the order `W_0, b_0, W_1, b_1, ..` (each
    /// flattened in burn's layout; [`ConvSpec::params_len`] values) into layers.
    pub fn split(spec: &ConvSpec, flat: &'a [F]) -> Result<Vec<Self>, SpecError> {
        if flat.len() != spec.params_len() {
            return Err(SpecError(format!(
                "params: expected {} weight and bias values, got {}",
                spec.params_len(),
                flat.len()
            )));
        }
        let mut rest = flat;
        let mut layers = Vec::with_capacity(spec.layers());
        for l in 0..spec.layers() {
            let (weight, r) = rest.split_at(spec.weight_len(l));
            let (bias, r) = r.split_at(spec.channels[l + 1]);
            layers.push(ConvLayer { weight, bias });
            rest = r;
        }
        Ok(layers)
    }
}

/// What the forward keeps for the backward: per block of images, the activations
/// `a_0 .. a_L` (NHWC).
#[derive(Clone, Debug)]
pub struct ConvForward<F> {
    spec: ConvSpec,
    /// `blocks[j][l]`: activations of layer `l` (`l = 0` the input) of block `j`'s images.
    blocks: Vec<Vec<Vec<F>>>,
    /// First image of each block (and `M` at the end).
    starts: Vec<usize>,
}

impl<F: ConvReal> ConvForward<F> {
    /// The shapes it was run with.
    pub fn spec(&self) -> &ConvSpec {
        &self.spec
    }

    /// The output `tanh(z_L)`, `[M, C_L, S_L, S_L]` (NCHW).
    pub fn output(&self) -> Vec<F> {
        let l = self.spec.layers();
        let s = self.spec.sides()[l];
        let c = self.spec.channels[l];
        let mut out = Vec::with_capacity(self.spec.output_len());
        for block in &self.blocks {
            out.extend(nhwc_to_nchw(&block[l], s, c));
        }
        out
    }
}

/// Gradients of a stack, in burn's layouts.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGrads<F> {
    /// `dL/dW_l`, each `[C_{l+1}, C_l, 3, 3]`.
    pub weights: Vec<Vec<F>>,
    /// `dL/db_l`, each `[C_{l+1}]`.
    pub biases: Vec<Vec<F>>,
    /// `dL/dinput: [M, C_0, S_0, S_0]`, empty unless asked for.
    pub input: Vec<F>,
}

/// `[n, s, s, c]` to `[n, c, s, s]`.
fn nhwc_to_nchw<F: Copy + Default>(v: &[F], s: usize, c: usize) -> Vec<F> {
    let px = s * s;
    let n = v.len() / (px * c).max(1);
    let mut out = vec![F::default(); v.len()];
    for m in 0..n {
        for p in 0..px {
            for ch in 0..c {
                out[(m * c + ch) * px + p] = v[(m * px + p) * c + ch];
            }
        }
    }
    out
}

/// `[n, c, s, s]` to `[n, s, s, c]`.
fn nchw_to_nhwc<F: Copy + Default>(v: &[F], s: usize, c: usize) -> Vec<F> {
    let mut out = Vec::new();
    nchw_to_nhwc_into(v, s, c, &mut out);
    out
}

/// [`nchw_to_nhwc`] into `out` (resized).
fn nchw_to_nhwc_into<F: Copy + Default>(v: &[F], s: usize, c: usize, out: &mut Vec<F>) {
    let px = s * s;
    let n = v.len() / (px * c).max(1);
    out.clear();
    out.resize(v.len(), F::default());
    for m in 0..n {
        for ch in 0..c {
            for p in 0..px {
                out[(m * px + p) * c + ch] = v[(m * c + ch) * px + p];
            }
        }
    }
}

/// `[co, ci, 3, 3]` to `[co, 3, 3, ci]` (the `k` order of `col`).
fn permute_weight<F: Copy + Default>(w: &[F], co: usize, ci: usize) -> Vec<F> {
    let mut out = vec![F::default(); w.len()];
    for o in 0..co {
        for i in 0..ci {
            for t in 0..9 {
                out[(o * 9 + t) * ci + i] = w[(o * ci + i) * 9 + t];
            }
        }
    }
    out
}

/// Every layer's weight, permuted for im2col ([`permute_weight`]); `ch`: the spec's channels.
fn permuted_weights<F: Copy + Default>(ch: &[usize], layers: &[ConvLayer<'_, F>]) -> Vec<Vec<F>> {
    layers
        .iter()
        .enumerate()
        .map(|(l, p)| permute_weight(p.weight, ch[l + 1], ch[l]))
        .collect()
}

/// `[co, 3, 3, ci]` back to `[co, ci, 3, 3]`.
fn unpermute_weight<F: Copy + Default>(w: &[F], co: usize, ci: usize) -> Vec<F> {
    let mut out = vec![F::default(); w.len()];
    for o in 0..co {
        for i in 0..ci {
            for t in 0..9 {
                out[(o * ci + i) * 9 + t] = w[(o * 9 + t) * ci + i];
            }
        }
    }
    out
}

/// `[r, c]` to `[c, r]`.
fn transpose<F: Copy + Default>(v: &[F], r: usize, c: usize) -> Vec<F> {
    let mut out = vec![F::default(); v.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = v[i * c + j];
        }
    }
    out
}

/// The pairing of im2col: for each 3x3 stride-2 window of `n` NHWC images `[n, s, s, c]` and
/// each of its rows `ky`, `f(col, image)` with the offsets of the `3 c` values the row
/// holds in `col: [n so so, 9 c]` and in the images (contiguous in both).
#[inline(always)]
fn for_each_window_row(n: usize, s: usize, c: usize, mut f: impl FnMut(usize, usize)) {
    let so = (s - 3) / 2 + 1;
    let (run, k) = (3 * c, 9 * c);
    for m in 0..n {
        for y in 0..so {
            for x in 0..so {
                let row = ((m * so + y) * so + x) * k;
                for ky in 0..3 {
                    f(row + ky * run, ((m * s + 2 * y + ky) * s + 2 * x) * c);
                }
            }
        }
    }
}

/// im2col of `n` NHWC images `a: [n, s, s, c]` into `col: [n so so, 9 c]`.
fn im2col<F: Copy>(a: &[F], n: usize, s: usize, c: usize, col: &mut [F]) {
    let run = 3 * c;
    for_each_window_row(n, s, c, |dst, src| {
        col[dst..dst + run].copy_from_slice(&a[src..src + run]);
    });
}

/// col2im: `da[m, 2y + ky, 2x + kx, ci] += dcol[p, k]` (`da` zeroed by the caller).
fn col2im<F: Copy + core::ops::AddAssign>(dcol: &[F], n: usize, s: usize, c: usize, da: &mut [F]) {
    let run = 3 * c;
    for_each_window_row(n, s, c, |src, dst| {
        for (d, &g) in da[dst..dst + run].iter_mut().zip(&dcol[src..src + run]) {
            *d += g;
        }
    });
}

/// Checks the parameter count and lengths against `spec`.
fn check_layers<F>(spec: &ConvSpec, layers: &[ConvLayer<'_, F>]) -> Result<(), SpecError> {
    if layers.len() != spec.layers() {
        return Err(SpecError(format!(
            "layers: spec has {}, got {} weight/bias pairs",
            spec.layers(),
            layers.len()
        )));
    }
    for (l, p) in layers.iter().enumerate() {
        if p.weight.len() != spec.weight_len(l) {
            return Err(SpecError(format!(
                "weight {l}: expected {} values ([{}, {}, 3, 3]), got {}",
                spec.weight_len(l),
                spec.channels[l + 1],
                spec.channels[l],
                p.weight.len()
            )));
        }
        if p.bias.len() != spec.channels[l + 1] {
            return Err(SpecError(format!(
                "bias {l}: expected {} values, got {}",
                spec.channels[l + 1],
                p.bias.len()
            )));
        }
    }
    Ok(())
}

/// First image of each block (and `images` at the end): at least one block per rayon thread,
/// at most [`BLOCK_IMAGES`] images per block, at most one block per image.
fn block_starts(images: usize) -> Vec<usize> {
    let blocks = rayon::current_num_threads()
        .max(images.div_ceil(BLOCK_IMAGES))
        .clamp(1, images);
    (0..=blocks).map(|j| j * images / blocks).collect()
}

crate::simd::multiversion! {
    /// Runs the stack on `input: [M, C_0, S_0, S_0]` (NCHW); `layers` in burn's layouts. The
    /// output is [`ConvForward::output`]; the record is what [`backward`] needs.
    pub fn forward [F: ConvReal] [F] (
        spec: &ConvSpec,
        layers: &[ConvLayer<'_, F>],
        input: &[F],
    ) -> Result<ConvForward<F>, SpecError> {
        spec.validate()?;
        check_layers(spec, layers)?;
        if input.len() != spec.input_len() {
            return Err(SpecError(format!(
                "input: expected {} values ([{}, {}, {s}, {s}]), got {}",
                spec.input_len(),
                spec.images,
                spec.channels[0],
                input.len(),
                s = spec.side,
            )));
        }
        let ch = &spec.channels;
        let sides = spec.sides();
        let weights = permuted_weights(ch, layers);
        let starts = block_starts(spec.images);
        let per_image = ch[0] * spec.side * spec.side;
        let blocks: Vec<Vec<Vec<F>>> = map_blocks(starts.windows(2).collect(), |r| {
            let n = r[1] - r[0];
            let x = &input[r[0] * per_image..r[1] * per_image];
            let mut acts = vec![nchw_to_nhwc(x, spec.side, ch[0])];
            F::with_scratch(|scratch| {
                for (l, p) in layers.iter().enumerate() {
                    let (s, so, ci, co) = (sides[l], sides[l + 1], ch[l], ch[l + 1]);
                    let (rows, k) = (n * so * so, 9 * ci);
                    let (col, _) = scratch.layer(l, rows * k);
                    im2col(&acts[l], n, s, ci, col);
                    let mut z = vec![F::zero(); rows * co];
                    for row in z.chunks_exact_mut(co) {
                        row.copy_from_slice(p.bias);
                    }
                    // z[p, co] += col[p, k] W[co, k].
                    if k <= SMALL_K {
                        let wt = transpose(&weights[l], co, k); // [k, co]
                        for (zrow, crow) in z.chunks_exact_mut(co).zip(col.chunks_exact(k)) {
                            for (&c, wrow) in crow.iter().zip(wt.chunks_exact(co)) {
                                for (zz, &w) in zrow.iter_mut().zip(wrow) {
                                    *zz += c * w;
                                }
                            }
                        }
                    } else {
                        // b = W^T: strides (1, k).
                        let (a, b) = ((&col[..], k, 1), (&weights[l][..], 1, k));
                        F::gemm(rows, k, co, a, b, F::one(), &mut z);
                    }
                    F::tanh_in_place(&mut z);
                    acts.push(z);
                }
            });
            acts
        });
        Ok(ConvForward {
            spec: spec.clone(),
            blocks,
            starts,
        })
    }
}

crate::simd::multiversion! {
    /// Backpropagates `grad_output = dL/doutput: [M, C_L, S_L, S_L]` (NCHW) through the stack run
    /// by `record`; `input_grad` also computes `dL/dinput`.
    pub fn backward [F: ConvReal] [F] (
        layers: &[ConvLayer<'_, F>],
        record: &ConvForward<F>,
        grad_output: &[F],
        input_grad: bool,
    ) -> Result<ConvGrads<F>, SpecError> {
        let spec = &record.spec;
        check_layers(spec, layers)?;
        if grad_output.len() != spec.output_len() {
            return Err(SpecError(format!(
                "grad_output: expected {} values, got {}",
                spec.output_len(),
                grad_output.len()
            )));
        }
        let ch = &spec.channels;
        let sides = spec.sides();
        let nl = spec.layers();
        let weights = permuted_weights(ch, layers);
        let out_per_image = ch[nl] * sides[nl] * sides[nl];
        let parts: Vec<ConvGrads<F>> = map_blocks(
            record.starts.windows(2).zip(&record.blocks).collect(),
            |(r, acts)| {
                let n = r[1] - r[0];
                let go = &grad_output[r[0] * out_per_image..r[1] * out_per_image];
                let mut dw: Vec<Vec<F>> = (0..nl)
                    .map(|l| vec![F::zero(); spec.weight_len(l)])
                    .collect();
                let mut db: Vec<Vec<F>> = (0..nl).map(|l| vec![F::zero(); ch[l + 1]]).collect();
                let dx = F::with_scratch(|scratch| {
                    let mut g = core::mem::take(&mut scratch.g);
                    let mut da = core::mem::take(&mut scratch.da);
                    nchw_to_nhwc_into(go, sides[nl], ch[nl], &mut g);
                    for l in (0..nl).rev() {
                        let (s, so, ci, co) = (sides[l], sides[l + 1], ch[l], ch[l + 1]);
                        let (rows, k) = (n * so * so, 9 * ci);
                        let (col, dcol) = scratch.layer(l, rows * k);
                        // dz = g (1 - a^2), in place.
                        for (d, &a) in g.iter_mut().zip(&acts[l + 1]) {
                            *d *= F::one() - a * a;
                        }
                        for row in g.chunks_exact(co) {
                            for (b, &d) in db[l].iter_mut().zip(row) {
                                *b += d;
                            }
                        }
                        im2col(&acts[l], n, s, ci, col);
                        // dW[co, k] += dz^T col: a = dz^T, strides (1, co).
                        if k <= SMALL_K {
                            let mut dwt = vec![F::zero(); k * co]; // [k, co]
                            for (grow, crow) in g.chunks_exact(co).zip(col.chunks_exact(k)) {
                                for (&c, drow) in crow.iter().zip(dwt.chunks_exact_mut(co)) {
                                    for (d, &gv) in drow.iter_mut().zip(grow) {
                                        *d += c * gv;
                                    }
                                }
                            }
                            for (d, v) in dw[l].iter_mut().zip(transpose(&dwt, k, co)) {
                                *d += v;
                            }
                        } else {
                            F::gemm(co, rows, k, (&g, 1, co), (col, k, 1), F::one(), &mut dw[l]);
                        }
                        if l == 0 && !input_grad {
                            g.clear();
                            break;
                        }
                        dcol.resize(rows * k, F::zero());
                        F::gemm(
                            rows,
                            co,
                            k,
                            (&g, co, 1),
                            (&weights[l], k, 1),
                            F::zero(),
                            dcol,
                        );
                        da.clear();
                        da.resize(n * s * s * ci, F::zero());
                        col2im(dcol, n, s, ci, &mut da);
                        core::mem::swap(&mut g, &mut da);
                    }
                    let dx = if input_grad {
                        nhwc_to_nchw(&g, spec.side, ch[0])
                    } else {
                        Vec::new()
                    };
                    (scratch.g, scratch.da) = (g, da);
                    dx
                });
                ConvGrads {
                    weights: dw,
                    biases: db,
                    input: dx,
                }
            },
        );
        let mut dw: Vec<Vec<F>> = (0..nl)
            .map(|l| vec![F::zero(); spec.weight_len(l)])
            .collect();
        let mut db: Vec<Vec<F>> = (0..nl).map(|l| vec![F::zero(); ch[l + 1]]).collect();
        let mut input = Vec::new();
        for part in parts {
            for (acc, part) in dw
                .iter_mut()
                .zip(&part.weights)
                .chain(db.iter_mut().zip(&part.biases))
            {
                for (a, &p) in acc.iter_mut().zip(part) {
                    *a += p;
                }
            }
            input.extend(part.input);
        }
        let weights = dw
            .iter()
            .enumerate()
            .map(|(l, w)| unpermute_weight(w, ch[l + 1], ch[l]))
            .collect();
        Ok(ConvGrads {
            weights,
            biases: db,
            input,
        })
    }
}
