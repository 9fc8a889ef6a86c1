//! Conv forward and backward for training: im2col + GEMM per image.
//!
//! Layouts: `X [N, C, D, H, W]` (1-D and 2-D convs are lifted to 3-D with unit axes),
//! `W [M, C/g, kd, kh, kw]`, `Y [N, M, od, oh, ow]`, all row-major. For group `g` of an image
//! the im2col matrix is `[C/g · kd·kh·kw, od·oh·ow]` (row = input channel and tap, column =
//! output position), so `Y_g = W_g · col` and the backward products are
//! `dW_g += dY_g · colᵀ` and `dcol = W_gᵀ · dY_g` followed by col2im. A 1×1 stride-1
//! unpadded conv skips im2col: the input planes already are `col`.
//!
//! Two paths. Per image (large output planes): forward and dX run one image per task; dW is
//! a sum over images, so the batch is split into as many contiguous ranges as the pool has
//! threads, each range accumulates into its own copy of dW, and the copies are added in
//! range order — a run with one thread is bit-reproducible and other thread counts differ
//! only by summation order. Batched (output planes under 256 positions, group 1: ResNet's
//! last two stages, where per-image GEMMs would be thin and stream the weights once per
//! image): the whole batch is one `[kg, N·P]` column matrix and each product is one GEMM
//! split into fixed 32-row tiles, so no cross-thread reduction is needed at all.

use rayon::prelude::*;

use crate::ops::conv::ConvGeometry;
use crate::ops::padding::Axis;
use crate::train::real::{matmul, MatRef, Real};

/// Output planes below this many positions use the batched column matrix.
const BATCHED_MAX_PLANE: usize = 256;
/// Largest batched column matrix, in elements.
const BATCHED_MAX_COL: usize = 1 << 25;
/// Rows of one parallel GEMM task in the batched path: fixed, so results do not depend on
/// the thread count.
const ROW_TILE: usize = 32;

/// Per-call sizes derived from a [`ConvGeometry`].
pub(crate) struct ConvDims {
    pub n: usize,
    pub c: usize,
    pub m: usize,
    pub group: usize,
    pub axes: [Axis; 3],
    /// Input plane (`D·H·W`).
    pub in_plane: usize,
    /// Output plane (`od·oh·ow`).
    pub out_plane: usize,
    /// Rows of the im2col matrix of one group: `C/g · kernel volume`.
    pub kg: usize,
    pub pointwise: bool,
}

impl ConvDims {
    pub fn new(g: &ConvGeometry) -> ConvDims {
        let cg = g.c / g.group;
        ConvDims {
            n: g.n,
            c: g.c,
            m: g.m,
            group: g.group,
            axes: g.axes,
            in_plane: g.input_plane(),
            out_plane: g.output_plane(),
            kg: cg * g.kernel_volume(),
            pointwise: g.is_pointwise(),
        }
    }

    /// Small output planes (ResNet's last stages: 14×14, 7×7) make per-image GEMMs thin and
    /// weight-bound; there the whole batch becomes one `[kg, N·P]` column matrix (when it
    /// stays under 32 Mi elements).
    fn batched(&self) -> bool {
        self.group == 1 && self.out_plane < BATCHED_MAX_PLANE && self.kg * self.n * self.out_plane <= BATCHED_MAX_COL
    }

    fn cg(&self) -> usize {
        self.c / self.group
    }

    fn mg(&self) -> usize {
        self.m / self.group
    }
}

/// The im2col matrix of `channels` input planes (`x`, contiguous) into `col`
/// (`[channels · kernel volume, out_plane]`, row `r` at `col[r·rs + off..]`); taps in the
/// padding read 0.
/// The outputs `lo..hi` whose tap `k` lands inside the input along `axis` (they are
/// contiguous); `lo == hi` when none does.
fn valid_outputs(axis: &Axis, k: usize) -> (usize, usize) {
    let offset = (k * axis.dilation) as isize - axis.pad_begin as isize;
    let s = axis.stride as isize;
    // o·s + offset ≥ 0  ⇔  o ≥ ceil(−offset / s)
    let lo = if offset >= 0 { 0 } else { ((-offset + s - 1) / s) as usize };
    // o·s + offset < input  ⇔  o < ceil((input − offset) / s)
    let room = axis.input as isize - offset;
    let hi = if room <= 0 { 0 } else { ((room + s - 1) / s) as usize };
    let hi = hi.min(axis.output);
    (lo.min(hi), hi)
}

fn im2col<T: Real>(x: &[T], channels: usize, axes: &[Axis; 3], col: &mut [T], rs: usize, off: usize) {
    let [ad, ah, aw] = axes;
    let in_plane = ad.input * ah.input * aw.input;
    let p = ad.output * ah.output * aw.output;
    let mut row = 0;
    for ch in 0..channels {
        let xc = &x[ch * in_plane..][..in_plane];
        for kd in 0..ad.kernel {
            for kh in 0..ah.kernel {
                for kw in 0..aw.kernel {
                    let dst = &mut col[row * rs + off..][..p];
                    row += 1;
                    let mut i = 0;
                    for od in 0..ad.output {
                        let id = ad.input_index(od, kd);
                        for oh in 0..ah.output {
                            let ih = ah.input_index(oh, kh);
                            let line = &mut dst[i..][..aw.output];
                            i += aw.output;
                            match (id, ih) {
                                (Some(id), Some(ih)) => {
                                    let xr = &xc[(id * ah.input + ih) * aw.input..][..aw.input];
                                    let (lo, hi) = valid_outputs(aw, kw);
                                    line[..lo].fill(T::ZERO);
                                    line[hi..].fill(T::ZERO);
                                    if lo < hi {
                                        let first = aw.input_pos(lo, kw) as usize;
                                        if aw.stride == 1 {
                                            line[lo..hi].copy_from_slice(&xr[first..first + (hi - lo)]);
                                        } else {
                                            for (v, &x) in
                                                line[lo..hi].iter_mut().zip(xr[first..].iter().step_by(aw.stride))
                                            {
                                                *v = x;
                                            }
                                        }
                                    }
                                }
                                _ => line.fill(T::ZERO),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every entry of `col` into the input element it was read
/// from (entries in the padding are dropped).
fn col2im_add<T: Real>(col: &[T], channels: usize, axes: &[Axis; 3], dx: &mut [T], rs: usize, off: usize) {
    let [ad, ah, aw] = axes;
    let in_plane = ad.input * ah.input * aw.input;
    let p = ad.output * ah.output * aw.output;
    let mut row = 0;
    for ch in 0..channels {
        let dxc = &mut dx[ch * in_plane..][..in_plane];
        for kd in 0..ad.kernel {
            for kh in 0..ah.kernel {
                for kw in 0..aw.kernel {
                    let src = &col[row * rs + off..][..p];
                    row += 1;
                    let mut i = 0;
                    for od in 0..ad.output {
                        let id = ad.input_index(od, kd);
                        for oh in 0..ah.output {
                            let ih = ah.input_index(oh, kh);
                            let line = &src[i..][..aw.output];
                            i += aw.output;
                            if let (Some(id), Some(ih)) = (id, ih) {
                                let xr = &mut dxc[(id * ah.input + ih) * aw.input..][..aw.input];
                                let (lo, hi) = valid_outputs(aw, kw);
                                if lo < hi {
                                    let first = aw.input_pos(lo, kw) as usize;
                                    if aw.stride == 1 {
                                        for (x, &v) in xr[first..first + (hi - lo)].iter_mut().zip(&line[lo..hi]) {
                                            *x += v;
                                        }
                                    } else {
                                        for (x, &v) in xr[first..].iter_mut().step_by(aw.stride).zip(&line[lo..hi]) {
                                            *x += v;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y = conv(x, w) + b`; `y` holds `N · M · out_plane` elements and is overwritten.
pub(crate) fn forward<T: Real>(d: &ConvDims, x: &[T], w: &[T], b: Option<&[T]>, y: &mut [T]) {
    let p = d.out_plane;
    if d.n == 0 || d.m == 0 || p == 0 {
        return;
    }
    if d.batched() {
        forward_batched(d, x, w, b, y)
    } else {
        forward_per_image(d, x, w, b, y)
    }
}

/// One image per task (see the module docs).
fn forward_per_image<T: Real>(d: &ConvDims, x: &[T], w: &[T], b: Option<&[T]>, y: &mut [T]) {
    let (cg, mg, kg, p) = (d.cg(), d.mg(), d.kg, d.out_plane);
    y.par_chunks_mut(d.m * p).enumerate().for_each_init(Vec::new, |col: &mut Vec<T>, (img, y_img)| {
        for grp in 0..d.group {
            let x_g = &x[(img * d.c + grp * cg) * d.in_plane..][..cg * d.in_plane];
            let rhs = if d.pointwise {
                x_g
            } else {
                col.resize(kg * p, T::ZERO);
                im2col(x_g, cg, &d.axes, col, p, 0);
                &col[..]
            };
            let w_g = &w[grp * mg * kg..][..mg * kg];
            let y_g = &mut y_img[grp * mg * p..][..mg * p];
            matmul(mg, p, kg, y_g, p, false, MatRef::new(w_g, kg, false), MatRef::new(rhs, p, false), T::ONE);
        }
        if let Some(b) = b {
            for (row, &bv) in y_img.chunks_exact_mut(p).zip(b) {
                row.iter_mut().for_each(|v| *v += bv);
            }
        }
    });
}

/// Adds the gradients of a conv to `dx`, `dw` and `db` (each only when asked for).
pub(crate) fn backward<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
) {
    let p = d.out_plane;
    if d.n == 0 || p == 0 {
        return;
    }
    if d.batched() {
        backward_batched(d, x, w, dy, dx, dw, db)
    } else {
        backward_per_image(d, x, w, dy, dx, dw, db)
    }
}

/// dB and dX one image per task, dW in per-range accumulators (see the module docs).
fn backward_per_image<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
) {
    let (cg, mg, kg, p) = (d.cg(), d.mg(), d.kg, d.out_plane);
    if let Some(db) = db {
        let sums: Vec<T> = (0..d.m)
            .into_par_iter()
            .map(|m| {
                let mut s = 0.0f64;
                for img in 0..d.n {
                    s += dy[(img * d.m + m) * p..][..p].iter().map(|v| v.to_f64()).sum::<f64>();
                }
                T::from_f64(s)
            })
            .collect();
        db.iter_mut().zip(sums).for_each(|(g, s)| *g += s);
    }
    if let Some(dw) = dw {
        let ranges = rayon::current_num_threads().clamp(1, d.n);
        let partials: Vec<Vec<T>> = (0..ranges)
            .into_par_iter()
            .map(|r| {
                let (start, end) = (r * d.n / ranges, (r + 1) * d.n / ranges);
                let mut acc = vec![T::ZERO; d.m * kg];
                let mut col = Vec::new();
                for img in start..end {
                    for grp in 0..d.group {
                        let x_g = &x[(img * d.c + grp * cg) * d.in_plane..][..cg * d.in_plane];
                        let colm = if d.pointwise {
                            x_g
                        } else {
                            col.resize(kg * p, T::ZERO);
                            im2col(x_g, cg, &d.axes, &mut col, p, 0);
                            &col[..]
                        };
                        let dy_g = &dy[(img * d.m + grp * mg) * p..][..mg * p];
                        let acc_g = &mut acc[grp * mg * kg..][..mg * kg];
                        matmul(
                            mg,
                            kg,
                            p,
                            acc_g,
                            kg,
                            true,
                            MatRef::new(dy_g, p, false),
                            MatRef::new(colm, p, true),
                            T::ONE,
                        );
                    }
                }
                acc
            })
            .collect();
        for part in partials {
            dw.iter_mut().zip(part).for_each(|(g, v)| *g += v);
        }
    }
    if let Some(dx) = dx {
        dx.par_chunks_mut(d.c * d.in_plane).enumerate().for_each_init(Vec::new, |dcol: &mut Vec<T>, (img, dx_img)| {
            for grp in 0..d.group {
                let w_g = &w[grp * mg * kg..][..mg * kg];
                let dy_g = &dy[(img * d.m + grp * mg) * p..][..mg * p];
                let dx_g = &mut dx_img[grp * cg * d.in_plane..][..cg * d.in_plane];
                if d.pointwise {
                    matmul(kg, p, mg, dx_g, p, true, MatRef::new(w_g, kg, true), MatRef::new(dy_g, p, false), T::ONE);
                } else {
                    dcol.resize(kg * p, T::ZERO);
                    matmul(kg, p, mg, dcol, p, false, MatRef::new(w_g, kg, true), MatRef::new(dy_g, p, false), T::ONE);
                    col2im_add(dcol, cg, &d.axes, dx_g, p, 0);
                }
            }
        });
    }
}

/// The im2col matrix of the whole batch, `[kg, N·P]`: image `i` owns columns `i·P..(i+1)·P`.
/// One task per input channel (its kernel-volume rows).
fn batch_columns<T: Real>(d: &ConvDims, x: &[T], col: &mut Vec<T>) {
    let (p, cols) = (d.out_plane, d.n * d.out_plane);
    let kv = d.kg / d.c.max(1);
    col.resize(d.kg * cols, T::ZERO);
    if kv == 0 {
        return;
    }
    col.par_chunks_mut(kv * cols).enumerate().for_each(|(ch, rows)| {
        for img in 0..d.n {
            im2col(&x[(img * d.c + ch) * d.in_plane..][..d.in_plane], 1, &d.axes, rows, cols, img * p);
        }
    });
}

/// `dst[rows × n] = a[rows × k] · b[k × n]`, split into fixed row tiles run in parallel.
fn tiled_matmul<T: Real>(rows: usize, n: usize, k: usize, dst: &mut [T], a: MatRef<'_, T>, b: MatRef<'_, T>) {
    if n == 0 {
        return;
    }
    dst[..rows * n].par_chunks_mut(ROW_TILE * n).enumerate().for_each(|(t, tile)| {
        let r0 = t * ROW_TILE;
        let mr = tile.len() / n;
        let a_t = MatRef { data: &a.data[r0 * a.row_stride..], ..a };
        matmul(mr, n, k, tile, n, false, a_t, b, T::ONE);
    });
}

fn forward_batched<T: Real>(d: &ConvDims, x: &[T], w: &[T], b: Option<&[T]>, y: &mut [T]) {
    let (p, cols) = (d.out_plane, d.n * d.out_plane);
    let mut col = Vec::new();
    batch_columns(d, x, &mut col);
    let mut ym = vec![T::ZERO; d.m * cols];
    tiled_matmul(d.m, cols, d.kg, &mut ym, MatRef::new(w, d.kg, false), MatRef::new(&col, cols, false));
    y.par_chunks_mut(d.m * p).enumerate().for_each(|(img, y_img)| {
        for (m, row) in y_img.chunks_exact_mut(p).enumerate() {
            let bias = b.map_or(T::ZERO, |b| b[m]);
            for (v, &s) in row.iter_mut().zip(&ym[m * cols + img * p..][..p]) {
                *v = s + bias;
            }
        }
    });
}

fn backward_batched<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
) {
    let (p, cols, kg) = (d.out_plane, d.n * d.out_plane, d.kg);
    // dY as [M, N·P].
    let mut dym = vec![T::ZERO; d.m * cols];
    dym.par_chunks_mut(cols).enumerate().for_each(|(m, row)| {
        for img in 0..d.n {
            row[img * p..][..p].copy_from_slice(&dy[(img * d.m + m) * p..][..p]);
        }
    });
    if let Some(db) = db {
        let sums: Vec<f64> = dym.par_chunks(cols).map(|row| row.iter().map(|v| v.to_f64()).sum::<f64>()).collect();
        db.iter_mut().zip(sums).for_each(|(g, s)| *g += T::from_f64(s));
    }
    let dym_ref = MatRef::new(&dym, cols, false);
    if let Some(dw) = dw {
        let mut col = Vec::new();
        batch_columns(d, x, &mut col);
        let mut part = vec![T::ZERO; d.m * kg];
        tiled_matmul(d.m, kg, cols, &mut part, dym_ref, MatRef::new(&col, cols, true));
        dw.iter_mut().zip(part).for_each(|(g, v)| *g += v);
    }
    if let Some(dx) = dx {
        let mut dcol = vec![T::ZERO; kg * cols];
        tiled_matmul(kg, cols, d.m, &mut dcol, MatRef::new(w, kg, true), dym_ref);
        dx.par_chunks_mut(d.c * d.in_plane).enumerate().for_each(|(img, dx_img)| {
            col2im_add(&dcol, d.c, &d.axes, dx_img, cols, img * p);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::conv_geometry;
    use crate::ops::padding::Window;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    /// `valid_outputs` is exactly the set of outputs `input_index` maps inside the input.
    #[test]
    fn valid_outputs_match_input_index() {
        for input in 1..9 {
            for kernel in 1..5 {
                for stride in 1..4 {
                    for dilation in 1..3 {
                        for pad_begin in 0..4 {
                            let span = (kernel - 1) * dilation + 1;
                            let padded = input + pad_begin + 2;
                            if padded < span {
                                continue;
                            }
                            let output = (padded - span) / stride + 1;
                            let axis = Axis { input, output, kernel, stride, dilation, pad_begin, pad_end: 2 };
                            for k in 0..kernel {
                                let inside: Vec<usize> =
                                    (0..output).filter(|&o| axis.input_index(o, k).is_some()).collect();
                                let (lo, hi) = valid_outputs(&axis, k);
                                assert_eq!(inside, (lo..hi).collect::<Vec<_>>(), "{axis:?} k {k}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The batched path (small planes) and the per-image path agree on forward and backward.
    #[test]
    fn batched_and_per_image_paths_agree() {
        let mut seed = 1u64;
        for (k, stride, pad) in [(3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0)] {
            let window = Window { strides: Some(vec![stride, stride]), pads: Some(vec![pad; 4]), ..Window::default() };
            let (n, c, m, h) = (3, 4, 5, 6);
            let g = conv_geometry(&window, 1, &[n, c, h, h], &[m, c, k, k], Some(m)).unwrap();
            let d = ConvDims::new(&g);
            assert!(d.batched());
            let per_image = ConvDims::new(&g);
            let x: Vec<f64> = (0..n * c * h * h).map(|_| lcg(&mut seed)).collect();
            let w: Vec<f64> = (0..m * c * k * k).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f64> = (0..m).map(|_| lcg(&mut seed)).collect();
            let len = g.out_shape.iter().product();
            let dy: Vec<f64> = (0..len).map(|_| lcg(&mut seed)).collect();
            let (mut y1, mut y2) = (vec![0.0; len], vec![0.0; len]);
            forward_batched(&d, &x, &w, Some(&b), &mut y1);
            // The per-image body of `forward`, forced.
            forward_per_image(&per_image, &x, &w, Some(&b), &mut y2);
            let (mut dx1, mut dw1, mut db1) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; m]);
            let (mut dx2, mut dw2, mut db2) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; m]);
            backward_batched(&d, &x, &w, &dy, Some(&mut dx1), Some(&mut dw1), Some(&mut db1));
            backward_per_image(&per_image, &x, &w, &dy, Some(&mut dx2), Some(&mut dw2), Some(&mut db2));
            for (a, b) in [(&y1, &y2), (&dx1, &dx2), (&dw1, &dw2), (&db1, &db2)] {
                for (u, v) in a.iter().zip(b.iter()) {
                    assert!((u - v).abs() < 1e-12, "{u} vs {v} (k {k}, stride {stride})");
                }
            }
        }
    }
}
