//! The float types training computes in: `f32` for training, `f64` for gradient checks.
//!
//! [`Real`] is sealed: the kernels rely on the `gemm` crate, which has fast paths for exactly
//! these two types, and on conversions to and from the graph's `f32` initializers.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// `f32` or `f64`: the element type of a [`crate::train::TrainProgram`].
pub trait Real:
    sealed::Sealed
    + Copy
    + Send
    + Sync
    + 'static
    + Default
    + Debug
    + Display
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    /// The type's name, for messages (`"f32"`).
    const NAME: &'static str;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    fn sqrt(self) -> Self;
    fn exp(self) -> Self;
    fn max(self, other: Self) -> Self;
    /// `self` where `keep`, else `+0.0` — a bitwise AND with a mask, which vectorises where a
    /// select of two floats did not (a masked channel sum over L1-resident data measured 4×
    /// slower with the select, 2× with the mask, against the unmasked sum).
    fn keep_if(self, keep: bool) -> Self;

    /// `s` as `f32`s when `Self` is `f32` (for the f32-only kernels, e.g. Winograd).
    fn as_f32(s: &[Self]) -> Option<&[f32]> {
        // SAFETY: the same type, so the same layout and length.
        (std::any::TypeId::of::<Self>() == std::any::TypeId::of::<f32>())
            .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) })
    }

    /// [`Self::as_f32`] for a mutable slice.
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        // SAFETY: the same type, so the same layout and length; `s` is borrowed for the result.
        (std::any::TypeId::of::<Self>() == std::any::TypeId::of::<f32>())
            .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len()) })
    }
}

macro_rules! impl_real {
    ($t:ty, $bits:ty, $name:literal) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAME: &'static str = $name;
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f32(x: f32) -> Self {
                x as $t
            }
            #[inline]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn keep_if(self, keep: bool) -> Self {
                <$t>::from_bits(self.to_bits() & (keep as $bits).wrapping_neg())
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
        }
    };
}

impl_real!(f32, u32, "f32");
impl_real!(f64, u64, "f64");

/// A row-major or strided matrix operand: `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows × cols` matrix (its transpose when `transposed`: then `data` holds
    /// a `cols × rows` row-major matrix).
    pub fn new(data: &'a [T], cols_stored: usize, transposed: bool) -> Self {
        if transposed {
            MatRef { data, row_stride: 1, col_stride: cols_stored }
        } else {
            MatRef { data, row_stride: cols_stored, col_stride: 1 }
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        MatRef { data: self.data, row_stride: self.col_stride, col_stride: self.row_stride }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst[m×n] (row stride dst_rs) = (accumulate ? dst : 0) + alpha · a[m×k] · b[k×n]`, single
/// threaded (the callers parallelise over images or rows). Panics if an operand does not hold
/// the matrix it is said to, which would be a bug in a kernel, not bad input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    alpha: T,
) {
    gemm_call(m, n, k, dst, dst_rs, accumulate, a, b, alpha, gemm::Parallelism::None)
}

/// [`matmul`] spread over the current rayon pool by `gemm` itself, for one large product
/// (call it outside parallel loops). `gemm` splits the output into blocks and never the
/// inner dimension, so the result does not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_parallel<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
) {
    let threads = rayon::current_num_threads();
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    gemm_call(m, n, k, dst, dst_rs, accumulate, a, b, T::ONE, par)
}

#[allow(clippy::too_many_arguments)]
fn gemm_call<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    alpha: T,
    parallelism: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * dst_rs + n <= dst.len() && dst_rs >= n, "gemm destination out of bounds");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..][..n].fill(T::ZERO);
            }
        }
        return;
    }
    assert!(a.fits(m, k) && b.fits(k, n), "gemm operand out of bounds");
    // SAFETY: the asserts above keep every element the call touches inside the slices; `dst`
    // is borrowed mutably, so it does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            T::ONE,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}
