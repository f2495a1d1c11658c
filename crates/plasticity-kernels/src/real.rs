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

    /// `c[m,n] += a[m,k] b[k,n]` with `c` row-major and contiguous, and `a`, `b` read through
    /// their (row, column) strides (so either may be a transposed view).
    fn gemm_acc(
        mkn: (usize, usize, usize),
        a: (&[Self], isize, isize),
        b: (&[Self], isize, isize),
        c: &mut [Self],
    );

    /// `c[m,n] += a[k,m]^T b[k,n]`, all row-major and contiguous (`a`: `[k, m]`, `b`: `[k, n]`).
    fn gemm_tn_acc(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], c: &mut [Self]) {
        Self::gemm_acc((m, k, n), (a, 1, m as isize), (b, n as isize, 1), c);
    }

    /// Converts from `f64` (constants, configuration values).
    fn of(x: f64) -> Self {
        <Self as num_traits::NumCast>::from(x).expect("f64 converts to every Real")
    }
}

/// The last index a strided `[rows, cols]` view reads, plus one (0 for an empty view).
fn extent(rows: usize, cols: usize, rs: isize, cs: isize) -> usize {
    if rows == 0 || cols == 0 {
        return 0;
    }
    (rows - 1) * rs.unsigned_abs() + (cols - 1) * cs.unsigned_abs() + 1
}

impl Real for f32 {
    const REVERSAL_TOLERANCE: f64 = 2e-5;
    fn gemm_acc(
        (m, k, n): (usize, usize, usize),
        (a, rsa, csa): (&[f32], isize, isize),
        (b, rsb, csb): (&[f32], isize, isize),
        c: &mut [f32],
    ) {
        assert!(rsa >= 0 && csa >= 0 && rsb >= 0 && csb >= 0);
        assert!(a.len() >= extent(m, k, rsa, csa) && b.len() >= extent(k, n, rsb, csb));
        assert!(c.len() >= m * n);
        // SAFETY: every index the strides describe lies within the slices checked above.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                1.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    }
}

impl Real for f64 {
    const REVERSAL_TOLERANCE: f64 = 1e-12;
    fn gemm_acc(
        (m, k, n): (usize, usize, usize),
        (a, rsa, csa): (&[f64], isize, isize),
        (b, rsb, csb): (&[f64], isize, isize),
        c: &mut [f64],
    ) {
        assert!(rsa >= 0 && csa >= 0 && rsb >= 0 && csb >= 0);
        assert!(a.len() >= extent(m, k, rsa, csa) && b.len() >= extent(k, n, rsb, csb));
        assert!(c.len() >= m * n);
        // SAFETY: as for f32.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                1.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    }
}
