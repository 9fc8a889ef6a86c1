//! MaxPool, AveragePool and GlobalAveragePool forward and backward, one `[n, c]` plane per
//! task. Window geometry (pads, strides, dilations, ceil mode) comes resolved from
//! [`crate::ops::padding`], lifted to 3-D, exactly as the reference kernels use it.
//!
//! MaxPool saves the position of each window's maximum (first one in row-major window order
//! on ties, as the reference kernel picks); backward adds `dy` there. A window that holds only
//! padding has no maximum and passes no gradient.

use rayon::prelude::*;

use crate::ops::padding::Axis;
use crate::train::real::Real;

/// Where no input element won (a window entirely in padding).
pub(crate) const NO_ARGMAX: u32 = u32::MAX;

fn planes(axes: &[Axis; 3]) -> (usize, usize) {
    let [ad, ah, aw] = axes;
    (ad.input * ah.input * aw.input, ad.output * ah.output * aw.output)
}

/// Calls `f(output_index, tap_input_index)` for every tap inside the input, in row-major
/// window order, for each output position of one plane.
#[inline]
fn for_each_tap(axes: &[Axis; 3], mut f: impl FnMut(usize, usize)) {
    let [ad, ah, aw] = axes;
    let mut o = 0;
    for od in 0..ad.output {
        for oh in 0..ah.output {
            for ow in 0..aw.output {
                for kd in 0..ad.kernel {
                    let Some(id) = ad.input_index(od, kd) else { continue };
                    for kh in 0..ah.kernel {
                        let Some(ih) = ah.input_index(oh, kh) else { continue };
                        for kw in 0..aw.kernel {
                            let Some(iw) = aw.input_index(ow, kw) else { continue };
                            f(o, (id * ah.input + ih) * aw.input + iw);
                        }
                    }
                }
                o += 1;
            }
        }
    }
}

/// MaxPool forward: fills `y` and the in-plane index of each maximum.
pub(crate) fn max_forward<T: Real>(axes: &[Axis; 3], x: &[T], y: &mut [T], argmax: &mut [u32]) {
    let (ip, op) = planes(axes);
    if op == 0 || ip == 0 {
        return;
    }
    y.par_chunks_mut(op).zip(argmax.par_chunks_mut(op)).enumerate().for_each(|(plane, (yp, ap))| {
        let xp = &x[plane * ip..][..ip];
        ap.fill(NO_ARGMAX);
        for_each_tap(axes, |o, i| {
            let v = xp[i];
            if ap[o] == NO_ARGMAX || v > yp[o] {
                yp[o] = v;
                ap[o] = i as u32;
            }
        });
        for (v, &a) in yp.iter_mut().zip(ap.iter()) {
            if a == NO_ARGMAX {
                *v = T::from_f64(f64::NEG_INFINITY);
            }
        }
    });
}

/// MaxPool backward: `dx[argmax] += dy` (`fresh`: `dx` holds no gradient yet; each plane is
/// zeroed just before its scatter, while it is in cache).
pub(crate) fn max_backward<T: Real>(axes: &[Axis; 3], argmax: &[u32], dy: &[T], dx: &mut [T], fresh: bool) {
    let (ip, op) = planes(axes);
    if op == 0 || ip == 0 {
        if fresh {
            dx.fill(T::ZERO);
        }
        return;
    }
    dx.par_chunks_mut(ip).enumerate().for_each(|(plane, dxp)| {
        if fresh {
            dxp.fill(T::ZERO);
        }
        for (&a, &g) in argmax[plane * op..][..op].iter().zip(&dy[plane * op..][..op]) {
            if a != NO_ARGMAX {
                dxp[a as usize] += g;
            }
        }
    });
}

/// The divisor of each output position of an AveragePool plane (a product of per-axis tap
/// counts, as the reference kernel computes it).
pub(crate) fn avg_divisors(axes: &[Axis; 3], count_include_pad: bool) -> Vec<f64> {
    let count = |a: &Axis, o: usize| -> usize {
        (0..a.kernel)
            .filter(|&k| if count_include_pad { a.in_padded_extent(o, k) } else { a.input_index(o, k).is_some() })
            .count()
    };
    let [ad, ah, aw] = axes;
    let mut out = Vec::with_capacity(ad.output * ah.output * aw.output);
    for od in 0..ad.output {
        for oh in 0..ah.output {
            for ow in 0..aw.output {
                out.push((count(ad, od) * count(ah, oh) * count(aw, ow)) as f64);
            }
        }
    }
    out
}

/// AveragePool forward.
pub(crate) fn avg_forward<T: Real>(axes: &[Axis; 3], divisors: &[f64], x: &[T], y: &mut [T]) {
    let (ip, op) = planes(axes);
    if op == 0 {
        return;
    }
    y.par_chunks_mut(op).enumerate().for_each(|(plane, yp)| {
        let xp = &x[plane * ip..][..ip];
        yp.fill(T::ZERO);
        for_each_tap(axes, |o, i| yp[o] += xp[i]);
        for (v, &dv) in yp.iter_mut().zip(divisors) {
            *v = T::from_f64(v.to_f64() / dv);
        }
    });
}

/// AveragePool backward: each tap gets `dy / divisor`.
pub(crate) fn avg_backward<T: Real>(axes: &[Axis; 3], divisors: &[f64], dy: &[T], dx: &mut [T]) {
    let (ip, op) = planes(axes);
    if ip == 0 || op == 0 {
        return;
    }
    dx.par_chunks_mut(ip).enumerate().for_each(|(plane, dxp)| {
        let g: Vec<T> =
            dy[plane * op..][..op].iter().zip(divisors).map(|(&g, &d)| T::from_f64(g.to_f64() / d)).collect();
        for_each_tap(axes, |o, i| dxp[i] += g[o]);
    });
}

/// GlobalAveragePool forward: `y[plane] = mean(x[plane])`.
pub(crate) fn global_avg_forward<T: Real>(plane: usize, x: &[T], y: &mut [T]) {
    if plane == 0 {
        y.fill(T::from_f64(f64::NAN));
        return;
    }
    y.par_iter_mut().enumerate().for_each(|(i, v)| {
        *v = T::from_f64(x[i * plane..][..plane].iter().map(|v| v.to_f64()).sum::<f64>() / plane as f64);
    });
}

/// GlobalAveragePool backward: every element of a plane gets `dy / plane` (`fresh`: `dx` is
/// overwritten).
pub(crate) fn global_avg_backward<T: Real>(plane: usize, dy: &[T], dx: &mut [T], fresh: bool) {
    if plane == 0 {
        return;
    }
    let inv = T::from_f64(1.0 / plane as f64);
    dx.par_chunks_mut(plane).zip(dy.par_iter()).for_each(|(p, &g)| {
        let g = g * inv;
        if fresh {
            p.fill(g);
        } else {
            p.iter_mut().for_each(|v| *v += g);
        }
    });
}
