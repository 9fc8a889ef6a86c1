//! Gemm (`Y = α·op(A)·op(B) + β·C`) and 2-D MatMul forward and backward.
//!
//! Transposes are strides, never copies. Backward:
//! `d op(A) = α·dY·op(B)ᵀ`, `d op(B) = α·op(A)ᵀ·dY` (transposed back when the operand is
//! stored transposed), and `dC = β·dY` summed over the axes C is broadcast along.

use crate::train::real::{matmul, MatRef, Real};

/// Sizes and attributes of one Gemm call (a MatMul is a Gemm with α = 1, no C and no
/// transposes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GemmDims {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f64,
    pub beta: f64,
    /// C's shape as `(rows, cols)` after right-aligning it to `[m, n]` (1 = broadcast).
    pub c: Option<(usize, usize)>,
}

impl GemmDims {
    fn op_a<'a, T>(&self, a: &'a [T]) -> MatRef<'a, T> {
        MatRef::new(a, if self.trans_a { self.m } else { self.k }, self.trans_a)
    }

    fn op_b<'a, T>(&self, b: &'a [T]) -> MatRef<'a, T> {
        MatRef::new(b, if self.trans_b { self.k } else { self.n }, self.trans_b)
    }
}

/// `y = α·op(A)·op(B) + β·C`.
pub(crate) fn forward<T: Real>(d: &GemmDims, a: &[T], b: &[T], c: Option<&[T]>, y: &mut [T]) {
    let accumulate = match (c, d.c) {
        (Some(c), Some((cm, cn))) => {
            let beta = T::from_f64(d.beta);
            for i in 0..d.m {
                for j in 0..d.n {
                    y[i * d.n + j] = beta * c[(if cm == 1 { 0 } else { i }) * cn + (if cn == 1 { 0 } else { j })];
                }
            }
            true
        }
        _ => false,
    };
    matmul(d.m, d.n, d.k, y, d.n, accumulate, d.op_a(a), d.op_b(b), T::from_f64(d.alpha));
}

/// Adds `dA` (stored layout of A).
pub(crate) fn backward_a<T: Real>(d: &GemmDims, b: &[T], dy: &[T], da: &mut [T]) {
    let alpha = T::from_f64(d.alpha);
    let dy_m = MatRef::new(dy, d.n, false);
    if d.trans_a {
        // A is [k, m]: dA = α·op(B)·dYᵀ.
        matmul(d.k, d.m, d.n, da, d.m, true, d.op_b(b), dy_m.t(), alpha);
    } else {
        matmul(d.m, d.k, d.n, da, d.k, true, dy_m, d.op_b(b).t(), alpha);
    }
}

/// Adds `dB` (stored layout of B).
pub(crate) fn backward_b<T: Real>(d: &GemmDims, a: &[T], dy: &[T], db: &mut [T]) {
    let alpha = T::from_f64(d.alpha);
    let dy_m = MatRef::new(dy, d.n, false);
    if d.trans_b {
        // B is [n, k]: dB = α·dYᵀ·op(A).
        matmul(d.n, d.k, d.m, db, d.k, true, dy_m.t(), d.op_a(a), alpha);
    } else {
        matmul(d.k, d.n, d.m, db, d.n, true, d.op_a(a).t(), dy_m, alpha);
    }
}

/// Adds `dC = β·dY`, summed over C's broadcast axes.
pub(crate) fn backward_c<T: Real>(d: &GemmDims, dy: &[T], dc: &mut [T]) {
    let Some((cm, cn)) = d.c else { return };
    let mut acc = vec![0.0f64; dc.len()];
    for i in 0..d.m {
        for j in 0..d.n {
            acc[(if cm == 1 { 0 } else { i }) * cn + (if cn == 1 { 0 } else { j })] += dy[i * d.n + j].to_f64();
        }
    }
    for (g, s) in dc.iter_mut().zip(acc) {
        *g += T::from_f64(d.beta * s);
    }
}
