//! Relu, Add (same shape or numpy broadcasting) and Dropout, forward and backward.
//!
//! Dropout masks are a pure function of `(seed, node, step counter, element index)`: forward
//! and backward regenerate the same mask, it does not depend on the thread count, and a
//! `loss` evaluated before a `step` sees the mask that step will use (what finite
//! differences need).

use rayon::prelude::*;

use crate::ops::binary::broadcast_index_map;
use crate::train::real::Real;

/// Elements per parallel task of the elementwise loops: small enough to spread a ResNet
/// activation over every core, large enough that task overhead is noise.
const CHUNK: usize = 1 << 14;

/// `y = max(x, 0)`.
pub(crate) fn relu_forward<T: Real>(x: &[T], y: &mut [T]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = x.keep_if(x > T::ZERO));
    });
}

/// ReLU backward: `dx (+)= dy` where `x > 0`, else 0 (`fresh`: `dx` holds no gradient yet
/// and is overwritten instead of added to — no zeroing pass).
pub(crate) fn relu_backward<T: Real>(x: &[T], dy: &[T], dx: &mut [T], fresh: bool) {
    dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).zip(dy.par_chunks(CHUNK)).for_each(|((dx, x), dy)| {
        // A mask, not a branch: the sign of an activation is a coin flip, and a mispredicted
        // branch per element made this pass 5× slower than the forward one.
        if fresh {
            for ((g, &x), &d) in dx.iter_mut().zip(x).zip(dy) {
                *g = d.keep_if(x > T::ZERO);
            }
        } else {
            for ((g, &x), &d) in dx.iter_mut().zip(x).zip(dy) {
                *g += d.keep_if(x > T::ZERO);
            }
        }
    });
}

/// `dy = 0` where `y ≤ 0`: the ReLU backward of a fused BatchNormalization or Add + Relu, in
/// place (`y` is the fused output `max(v, 0)`, positive exactly where `v` is).
pub(crate) fn relu_mask_in_place<T: Real>(y: &[T], dy: &mut [T]) {
    dy.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(|(dy, y)| {
        dy.iter_mut().zip(y).for_each(|(d, &y)| *d = d.keep_if(y > T::ZERO));
    });
}

/// `y = a + b` for equal shapes (`max(a + b, 0)` with `relu`: an Add fused with the Relu
/// after it).
pub(crate) fn add_forward<T: Real>(a: &[T], b: &[T], relu: bool, y: &mut [T]) {
    y.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(b.par_chunks(CHUNK)).for_each(|((y, a), b)| {
        if relu {
            for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                let v = a + b;
                *y = v.keep_if(v > T::ZERO);
            }
        } else {
            for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                *y = a + b;
            }
        }
    });
}

/// `y = max(y, 0)` in place.
pub(crate) fn relu_in_place<T: Real>(y: &mut [T]) {
    y.par_chunks_mut(CHUNK).for_each(|y| y.iter_mut().for_each(|v| *v = v.keep_if(*v > T::ZERO)));
}

/// `dx += dy` (the gradient of an operand of Add that has the output's shape, and of the
/// view ops).
pub(crate) fn accumulate<T: Real>(dy: &[T], dx: &mut [T], fresh: bool) {
    dx.par_chunks_mut(CHUNK).zip(dy.par_chunks(CHUNK)).for_each(|(dx, dy)| {
        if fresh {
            dx.copy_from_slice(dy);
        } else {
            dx.iter_mut().zip(dy).for_each(|(g, &d)| *g += d);
        }
    });
}

/// `y = a + b` with numpy broadcasting to `out_shape`.
pub(crate) fn add_broadcast_forward<T: Real>(
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out_shape: &[usize],
    y: &mut [T],
) {
    let (ia, ib) = (broadcast_index_map(a_shape, out_shape), broadcast_index_map(b_shape, out_shape));
    for ((y, &i), &j) in y.iter_mut().zip(&ia).zip(&ib) {
        *y = a[i] + b[j];
    }
}

/// The gradient of a broadcast operand: `dx[map[i]] += dy[i]`, summed in output order.
pub(crate) fn broadcast_backward<T: Real>(x_shape: &[usize], out_shape: &[usize], dy: &[T], dx: &mut [T]) {
    let map = broadcast_index_map(x_shape, out_shape);
    for (&i, &g) in map.iter().zip(dy) {
        dx[i] += g;
    }
}

/// splitmix64: a fast, well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The per-call key of a dropout mask.
pub(crate) fn dropout_key(seed: u64, node: usize, counter: u64) -> u64 {
    mix(mix(seed ^ mix(node as u64)) ^ counter)
}

/// Whether element `i` is kept: probability `1 − ratio`.
#[inline]
fn keep(key: u64, i: usize, ratio: f64) -> bool {
    let u = (mix(key ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)) >> 11) as f64 / (1u64 << 53) as f64;
    u >= ratio
}

/// `y = x · mask / (1 − ratio)`.
pub(crate) fn dropout_forward<T: Real>(key: u64, ratio: f64, x: &[T], y: &mut [T]) {
    let scale = T::from_f64(1.0 / (1.0 - ratio));
    y.par_chunks_mut(CHUNK).enumerate().for_each(|(c, y)| {
        let base = c * CHUNK;
        for (j, v) in y.iter_mut().enumerate() {
            let i = base + j;
            *v = if keep(key, i, ratio) { x[i] * scale } else { T::ZERO };
        }
    });
}

/// `dx += dy · mask / (1 − ratio)`.
pub(crate) fn dropout_backward<T: Real>(key: u64, ratio: f64, dy: &[T], dx: &mut [T]) {
    let scale = T::from_f64(1.0 / (1.0 - ratio));
    dx.par_chunks_mut(CHUNK).enumerate().for_each(|(c, dx)| {
        let base = c * CHUNK;
        for (j, g) in dx.iter_mut().enumerate() {
            let i = base + j;
            if keep(key, i, ratio) {
                *g += dy[i] * scale;
            }
        }
    });
}
