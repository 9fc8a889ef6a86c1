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
    let [ad, ah, aw] = axes;
    if *ad == Axis::UNIT {
        let (h_taps, w_taps) = (valid_taps(ah), valid_taps(aw));
        y.par_chunks_mut(op).zip(argmax.par_chunks_mut(op)).enumerate().for_each(|(plane, (yp, ap))| {
            max_plane_2d(ah, aw, &h_taps, &w_taps, &x[plane * ip..][..ip], yp, ap);
        });
        return;
    }
    y.par_chunks_mut(op).zip(argmax.par_chunks_mut(op)).enumerate().for_each(|(plane, (yp, ap))| {
        max_plane(axes, &x[plane * ip..][..ip], yp, ap);
    });
}

/// [`max_forward`] of one plane of any rank.
fn max_plane<T: Real>(axes: &[Axis; 3], xp: &[T], yp: &mut [T], ap: &mut [u32]) {
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
}

/// Per output position along `axis`: the taps `lo..hi` that land inside the input (they are
/// contiguous) and the input coordinate of tap `lo`.
fn valid_taps(axis: &Axis) -> Vec<(usize, usize, usize)> {
    (0..axis.output)
        .map(|o| {
            let mut inside = (0..axis.kernel).filter_map(|k| axis.input_index(o, k).map(|i| (k, i)));
            match inside.next() {
                None => (0, 0, 0),
                Some((lo, first)) => (lo, inside.next_back().map_or(lo, |(k, _)| k) + 1, first),
            }
        })
        .collect()
}

/// [`max_forward`] of one 2-D plane with the taps of each output row and column resolved
/// beforehand ([`valid_taps`]): the same maxima and tie rule (the first maximum in row-major
/// window order) without per-tap bounds tests.
fn max_plane_2d<T: Real>(
    ah: &Axis,
    aw: &Axis,
    h_taps: &[(usize, usize, usize)],
    w_taps: &[(usize, usize, usize)],
    xp: &[T],
    yp: &mut [T],
    ap: &mut [u32],
) {
    let (iw, ow) = (aw.input, aw.output);
    for (&(hlo, hhi, ih0), (yrow, arow)) in h_taps.iter().zip(yp.chunks_exact_mut(ow).zip(ap.chunks_exact_mut(ow))) {
        for ((&(wlo, whi, iw0), y), a) in w_taps.iter().zip(yrow.iter_mut()).zip(arow.iter_mut()) {
            let (kh_n, kw_n) = (hhi.saturating_sub(hlo), whi.saturating_sub(wlo));
            if kh_n == 0 || kw_n == 0 {
                *y = T::from_f64(f64::NEG_INFINITY);
                *a = NO_ARGMAX;
                continue;
            }
            // The first tap, then branchless updates (the comparisons are unpredictable).
            let first = ih0 * iw + iw0;
            let (mut best, mut arg) = (xp[first], first);
            for kh in 0..kh_n {
                let row = (ih0 + kh * ah.dilation) * iw + iw0;
                for kw in (kh == 0) as usize..kw_n {
                    let i = row + kw * aw.dilation;
                    let v = xp[i];
                    let better = v > best;
                    best = if better { v } else { best };
                    arg = if better { i } else { arg };
                }
            }
            *y = best;
            *a = arg as u32;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::padding::Window;

    /// The 2-D fast path picks the same maxima and positions as the generic loop: random
    /// shapes, kernels, strides, dilations, pads, ceil mode, with many ties (small integers)
    /// and NaNs.
    #[test]
    fn max_plane_2d_matches_the_generic_loop() {
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let mut cases = 0;
        while cases < 400 {
            let (h, w) = (1 + next(9) as usize, 1 + next(9) as usize);
            let (k, st, dil, pad) =
                (1 + next(3) as usize, 1 + next(3) as usize, 1 + next(2) as usize, next(3) as usize);
            let window = Window {
                kernel_shape: Some(vec![k, k]),
                strides: Some(vec![st, st]),
                dilations: Some(vec![dil, dil]),
                pads: Some(vec![pad, pad, pad, pad]),
                ceil_mode: next(2) == 1,
                ..Window::default()
            };
            let Ok(axes) = window.axes(&[k, k], &[h, w]) else { continue };
            let Ok(axes) = crate::ops::padding::lift_to_3d(&axes) else { continue };
            let (ip, op) = planes(&axes);
            if op == 0 {
                continue;
            }
            cases += 1;
            let x: Vec<f32> = (0..ip).map(|_| if next(17) == 0 { f32::NAN } else { next(4) as f32 - 2.0 }).collect();
            let (mut y1, mut a1) = (vec![0.0f32; op], vec![0u32; op]);
            let (mut y2, mut a2) = (vec![0.0f32; op], vec![0u32; op]);
            max_plane(&axes, &x, &mut y1, &mut a1);
            let [_, ah, aw] = &axes;
            max_plane_2d(ah, aw, &valid_taps(ah), &valid_taps(aw), &x, &mut y2, &mut a2);
            assert_eq!(a1, a2, "{axes:?}");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y1), bits(&y2), "{axes:?}");
        }
    }
}
