//! The floating-point types the kernels run in: `f32` for training, `f64` for gradient checks.

use core::fmt::Debug;
use core::iter::Sum;
use core::ops::{AddAssign, MulAssign, SubAssign};

/// A float the kernels can compute in (`f32` or `f64`).
pub trait Real:
    num_traits::Float
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + Default
    + Debug
    + Send
    + Sync
    + 'static
{
    /// Relative error of a reversed trace (reconstructed `Hebb_0` against the stored one) above
    /// which the reversal is rejected and the backward recomputes with checkpoints. Measured:
    /// gradients differ from the stored-trace backward by about a third of this error.
    const REVERSAL_TOLERANCE: f64;

    /// `c[m,n] += a[k,m]^T b[k,n]`, all row-major and contiguous (`a`: `[k, m]`, `b`: `[k, n]`).
    fn gemm_tn_acc(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], c: &mut [Self]);

    /// Converts from `f64` (constants, configuration values).
    fn of(x: f64) -> Self {
        <Self as num_traits::NumCast>::from(x).expect("f64 converts to every Real")
    }
}

/// `Real` for a float type whose `matrixmultiply` product is `$gemm`.
macro_rules! real_impl {
    ($t:ty, $tolerance:expr, $gemm:path) => {
        impl Real for $t {
            const REVERSAL_TOLERANCE: f64 = $tolerance;
            fn gemm_tn_acc(m: usize, k: usize, n: usize, a: &[$t], b: &[$t], c: &mut [$t]) {
                assert!(a.len() >= k * m && b.len() >= k * n && c.len() >= m * n);
                // SAFETY: the strides describe a^T ([m,k] with row stride 1, column stride m),
                // b and c within the slices checked above.
                unsafe {
                    $gemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        1,
                        m as isize,
                        b.as_ptr(),
                        n as isize,
                        1,
                        1.0,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            }
        }
    };
}

real_impl!(f32, 2e-5, matrixmultiply::sgemm);
real_impl!(f64, 1e-12, matrixmultiply::dgemm);
