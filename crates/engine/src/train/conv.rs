//! Conv forward and backward for training: im2col + GEMM per image.
//!
//! Layouts: `X [N, C, D, H, W]` (1-D and 2-D convs are lifted to 3-D with unit axes),
//! `W [M, C/g, kd, kh, kw]`, `Y [N, M, od, oh, ow]`, all row-major. For group `g` of an image
//! the im2col matrix is `[C/g · kd·kh·kw, od·oh·ow]` (row = input channel and tap, column =
//! output position), so `Y_g = W_g · col` and the backward products are
//! `dW_g += dY_g · colᵀ` and `dcol = W_gᵀ · dY_g` followed by col2im. A 1×1 stride-1
//! unpadded conv skips im2col: the input planes already are `col`.
//!
//! Two paths. Per image (the default): the batch is split into as many contiguous ranges
//! of images as the pool has threads, one task each with its own scratch; backward unfolds
//! an image's im2col once, uses it for dW, then reuses the buffer for dcol and col2im. dW
//! is a sum over images: each range accumulates into its own copy, and the copies are added
//! in range order — a run with one thread is bit-reproducible and other thread counts differ
//! only by summation order. Batched (output planes under 64 positions with filter matrices
//! over 1 MiB, group 1: ResNet's last stage, where per-image GEMMs would be thin and stream
//! the weights once per image): the whole batch is one `[kg, N·P]` column matrix and each
//! product is one GEMM run on `gemm`'s own parallelism (it splits the output, never the
//! inner dimension), so no cross-thread reduction is needed at all.
//!
//! Every buffer lives in a [`ConvScratch`] the program keeps across steps.

use rayon::prelude::*;

use crate::ops::conv::ConvGeometry;
use crate::ops::padding::Axis;
use crate::train::real::{matmul, matmul_parallel, MatRef, Real};

/// Output planes below this many positions may use the batched column matrix.
///
/// Measured on the mnist-v1 shapes (batch 64, 2 threads, 3×3 convs): the per-image path
/// (one im2col per image, dW and dX fused in one pass) beat the batched one in backward at
/// 14² (23 vs 33 ms) and 4² (22 vs 25 ms), tied at 7²; the batched path's whole-batch im2col
/// costs as much as its GEMM saves while the weights fit in cache. It pays off when the
/// weights do not ([`BATCHED_MIN_WEIGHTS`]) and the planes are small.
const BATCHED_MAX_PLANE: usize = 64;
/// Filter matrices (`M · kg`) of at least this many elements (1 MiB of f32: more than a
/// core's L2 share) are streamed once per image by the per-image path; with small planes
/// (ResNet-18/50's last stage, 7²) the batched path reads them once per batch instead.
const BATCHED_MIN_WEIGHTS: usize = 1 << 18;
/// Largest batched column matrix, in elements.
const BATCHED_MAX_COL: usize = 1 << 25;

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

    /// Small output planes with large filter matrices (ResNet's last stage, 7×7 with 512
    /// channels) make per-image GEMMs thin and weight-bound; there the whole batch becomes
    /// one `[kg, N·P]` column matrix (when it stays under 32 Mi elements).
    fn batched(&self) -> bool {
        self.group == 1
            && self.out_plane < BATCHED_MAX_PLANE
            && self.m * self.kg >= BATCHED_MIN_WEIGHTS
            && self.kg * self.n * self.out_plane <= BATCHED_MAX_COL
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

/// Buffers a conv reuses from step to step (one per program, shared by all its convs): they
/// grow to the largest layer once, so a steady-state step allocates nothing here.
pub(crate) struct ConvScratch<T> {
    /// Per parallel range of images: its im2col / dcol matrix (per-image path); `cols[0]` is
    /// the batch's column matrix in the batched path.
    cols: Vec<Vec<T>>,
    /// Per range: its dW accumulator (per-image path).
    partials: Vec<Vec<T>>,
    /// Batched path: `Y` or `dY` as `[M, N·P]`.
    mat: Vec<T>,
    /// Batched path: `dcol = Wᵀ · dY`, `[kg, N·P]`.
    dcol: Vec<T>,
}

impl<T> Default for ConvScratch<T> {
    fn default() -> Self {
        ConvScratch { cols: Vec::new(), partials: Vec::new(), mat: Vec::new(), dcol: Vec::new() }
    }
}

/// `v` with at least `len` elements (contents unspecified: callers overwrite what they use).
fn at_least<T: Real>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::ZERO);
    }
    &mut v[..len]
}

/// The images `[start, end)` of range `r` out of `ranges` (contiguous, sizes differing by at
/// most one).
fn image_range(n: usize, ranges: usize, r: usize) -> (usize, usize) {
    (r * n / ranges, (r + 1) * n / ranges)
}

/// Splits `data` (`n` images of `per_image` elements) into the ranges of [`image_range`].
fn split_ranges<T>(mut data: &mut [T], per_image: usize, n: usize, ranges: usize) -> Vec<&mut [T]> {
    let mut out = Vec::with_capacity(ranges);
    for r in 0..ranges {
        let (start, end) = image_range(n, ranges, r);
        let (head, tail) = std::mem::take(&mut data).split_at_mut((end - start) * per_image);
        out.push(head);
        data = tail;
    }
    out
}

/// How many contiguous image ranges the per-image path runs as parallel tasks: one per
/// thread (each keeps its own scratch), at most one per image.
fn range_count(n: usize) -> usize {
    rayon::current_num_threads().clamp(1, n.max(1))
}

/// `y = conv(x, w) + b`; `y` holds `N · M · out_plane` elements and is overwritten.
pub(crate) fn forward<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    y: &mut [T],
    scratch: &mut ConvScratch<T>,
) {
    let p = d.out_plane;
    if d.n == 0 || d.m == 0 || p == 0 {
        return;
    }
    if d.batched() {
        forward_batched(d, x, w, b, y, scratch)
    } else {
        forward_per_image(d, x, w, b, y, scratch)
    }
}

/// One range of images per task (see the module docs).
fn forward_per_image<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    y: &mut [T],
    scratch: &mut ConvScratch<T>,
) {
    let (cg, mg, kg, p) = (d.cg(), d.mg(), d.kg, d.out_plane);
    let ranges = range_count(d.n);
    scratch.cols.resize_with(ranges.max(scratch.cols.len()), Vec::new);
    let parts = split_ranges(y, d.m * p, d.n, ranges);
    parts.into_par_iter().zip(scratch.cols[..ranges].par_iter_mut()).enumerate().for_each(|(r, (y_r, col))| {
        let (start, _) = image_range(d.n, ranges, r);
        for (i, y_img) in y_r.chunks_exact_mut(d.m * p).enumerate() {
            let img = start + i;
            for grp in 0..d.group {
                let x_g = &x[(img * d.c + grp * cg) * d.in_plane..][..cg * d.in_plane];
                let rhs: &[T] = if d.pointwise {
                    x_g
                } else {
                    let col = at_least(col, kg * p);
                    im2col(x_g, cg, &d.axes, col, p, 0);
                    col
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
        }
    });
}

/// Adds the gradients of a conv to `dx`, `dw` and `db` (each only when asked for).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
    scratch: &mut ConvScratch<T>,
) {
    let p = d.out_plane;
    if d.n == 0 || p == 0 {
        return;
    }
    if d.batched() {
        backward_batched(d, x, w, dy, dx, dw, db, scratch)
    } else {
        backward_per_image(d, x, w, dy, dx, dw, db, scratch)
    }
}

/// `db[m] += Σ dy` over every image's plane `m`, in f64, one channel per task.
fn bias_grad<T: Real>(d: &ConvDims, dy: &[T], db: &mut [T]) {
    let p = d.out_plane;
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

/// dB per channel; dW and dX one range of images per task, in one pass over the images
/// (the image's im2col is unfolded once, used for dW, then the same buffer takes dcol for
/// dX); each range accumulates dW into its own partial, added in range order.
#[allow(clippy::too_many_arguments)]
fn backward_per_image<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
    scratch: &mut ConvScratch<T>,
) {
    let (cg, mg, kg, p) = (d.cg(), d.mg(), d.kg, d.out_plane);
    if let Some(db) = db {
        bias_grad(d, dy, db);
    }
    let ranges = range_count(d.n);
    let want_dw = dw.is_some();
    scratch.cols.resize_with(ranges.max(scratch.cols.len()), Vec::new);
    scratch.partials.resize_with(ranges.max(scratch.partials.len()), Vec::new);
    let dx_parts: Vec<Option<&mut [T]>> = match dx {
        Some(dx) => split_ranges(dx, d.c * d.in_plane, d.n, ranges).into_iter().map(Some).collect(),
        None => (0..ranges).map(|_| None).collect(),
    };
    dx_parts
        .into_par_iter()
        .zip(scratch.cols[..ranges].par_iter_mut())
        .zip(scratch.partials[..ranges].par_iter_mut())
        .enumerate()
        .for_each(|(r, ((mut dx_r, col), acc))| {
            let (start, end) = image_range(d.n, ranges, r);
            let acc = if want_dw {
                let acc = at_least(acc, d.m * kg);
                acc.fill(T::ZERO);
                Some(acc)
            } else {
                None
            };
            let mut acc = acc;
            for img in start..end {
                for grp in 0..d.group {
                    let x_g = &x[(img * d.c + grp * cg) * d.in_plane..][..cg * d.in_plane];
                    let dy_g = &dy[(img * d.m + grp * mg) * p..][..mg * p];
                    let w_g = &w[grp * mg * kg..][..mg * kg];
                    if let Some(acc) = acc.as_deref_mut() {
                        let colm: &[T] = if d.pointwise {
                            x_g
                        } else {
                            let col = at_least(col, kg * p);
                            im2col(x_g, cg, &d.axes, col, p, 0);
                            col
                        };
                        let acc_g = &mut acc[grp * mg * kg..][..mg * kg];
                        let (a, b) = (MatRef::new(dy_g, p, false), MatRef::new(colm, p, true));
                        matmul(mg, kg, p, acc_g, kg, true, a, b, T::ONE);
                    }
                    if let Some(dx_r) = dx_r.as_deref_mut() {
                        let dx_g = &mut dx_r[((img - start) * d.c + grp * cg) * d.in_plane..][..cg * d.in_plane];
                        let (a, b) = (MatRef::new(w_g, kg, true), MatRef::new(dy_g, p, false));
                        if d.pointwise {
                            matmul(kg, p, mg, dx_g, p, true, a, b, T::ONE);
                        } else {
                            let dcol = at_least(col, kg * p);
                            matmul(kg, p, mg, dcol, p, false, a, b, T::ONE);
                            col2im_add(dcol, cg, &d.axes, dx_g, p, 0);
                        }
                    }
                }
            }
        });
    if let Some(dw) = dw {
        for part in &scratch.partials[..ranges] {
            dw.iter_mut().zip(part).for_each(|(g, &v)| *g += v);
        }
    }
}

/// The im2col matrix of the whole batch, `[kg, N·P]`: image `i` owns columns `i·P..(i+1)·P`.
/// One task per input channel (its kernel-volume rows).
fn batch_columns<T: Real>(d: &ConvDims, x: &[T], col: &mut [T]) {
    let (p, cols) = (d.out_plane, d.n * d.out_plane);
    let kv = d.kg / d.c.max(1);
    if kv == 0 {
        return;
    }
    col.par_chunks_mut(kv * cols).enumerate().for_each(|(ch, rows)| {
        for img in 0..d.n {
            im2col(&x[(img * d.c + ch) * d.in_plane..][..d.in_plane], 1, &d.axes, rows, cols, img * p);
        }
    });
}

/// One GEMM over the batch: `Y[M, N·P] = W · col`, then scattered to `[N, M, P]` with the
/// bias. The product runs on `gemm`'s own parallelism (one large product).
fn forward_batched<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    y: &mut [T],
    scratch: &mut ConvScratch<T>,
) {
    let (p, cols) = (d.out_plane, d.n * d.out_plane);
    if scratch.cols.is_empty() {
        scratch.cols.push(Vec::new());
    }
    let col = at_least(&mut scratch.cols[0], d.kg * cols);
    batch_columns(d, x, col);
    let ym = at_least(&mut scratch.mat, d.m * cols);
    matmul_parallel(d.m, cols, d.kg, ym, cols, false, MatRef::new(w, d.kg, false), MatRef::new(col, cols, false));
    let ym: &[T] = ym;
    y.par_chunks_mut(d.m * p).enumerate().for_each(|(img, y_img)| {
        for (m, row) in y_img.chunks_exact_mut(p).enumerate() {
            let bias = b.map_or(T::ZERO, |b| b[m]);
            for (v, &s) in row.iter_mut().zip(&ym[m * cols + img * p..][..p]) {
                *v = s + bias;
            }
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn backward_batched<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
    scratch: &mut ConvScratch<T>,
) {
    let (p, cols, kg) = (d.out_plane, d.n * d.out_plane, d.kg);
    // dY as [M, N·P].
    let dym = at_least(&mut scratch.mat, d.m * cols);
    dym.par_chunks_mut(cols).enumerate().for_each(|(m, row)| {
        for img in 0..d.n {
            row[img * p..][..p].copy_from_slice(&dy[(img * d.m + m) * p..][..p]);
        }
    });
    let dym: &[T] = dym;
    if let Some(db) = db {
        let sums: Vec<f64> = dym.par_chunks(cols).map(|row| row.iter().map(|v| v.to_f64()).sum::<f64>()).collect();
        db.iter_mut().zip(sums).for_each(|(g, s)| *g += T::from_f64(s));
    }
    let dym_ref = MatRef::new(dym, cols, false);
    if let Some(dw) = dw {
        if scratch.cols.is_empty() {
            scratch.cols.push(Vec::new());
        }
        let col = at_least(&mut scratch.cols[0], kg * cols);
        batch_columns(d, x, col);
        matmul_parallel(d.m, kg, cols, dw, kg, true, dym_ref, MatRef::new(col, cols, true));
    }
    if let Some(dx) = dx {
        let dcol = at_least(&mut scratch.dcol, kg * cols);
        matmul_parallel(kg, cols, d.m, dcol, cols, false, MatRef::new(w, kg, true), dym_ref);
        let dcol: &[T] = dcol;
        dx.par_chunks_mut(d.c * d.in_plane).enumerate().for_each(|(img, dx_img)| {
            col2im_add(dcol, d.c, &d.axes, dx_img, cols, img * p);
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
            let per_image = ConvDims::new(&g);
            let x: Vec<f64> = (0..n * c * h * h).map(|_| lcg(&mut seed)).collect();
            let w: Vec<f64> = (0..m * c * k * k).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f64> = (0..m).map(|_| lcg(&mut seed)).collect();
            let len = g.out_shape.iter().product();
            let dy: Vec<f64> = (0..len).map(|_| lcg(&mut seed)).collect();
            let (mut y1, mut y2) = (vec![0.0; len], vec![0.0; len]);
            forward_batched(&d, &x, &w, Some(&b), &mut y1, &mut ConvScratch::default());
            // The per-image body of `forward`, forced.
            forward_per_image(&per_image, &x, &w, Some(&b), &mut y2, &mut ConvScratch::default());
            let (mut dx1, mut dw1, mut db1) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; m]);
            let (mut dx2, mut dw2, mut db2) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; m]);
            backward_batched(
                &d,
                &x,
                &w,
                &dy,
                Some(&mut dx1),
                Some(&mut dw1),
                Some(&mut db1),
                &mut ConvScratch::default(),
            );
            backward_per_image(
                &per_image,
                &x,
                &w,
                &dy,
                Some(&mut dx2),
                Some(&mut dw2),
                Some(&mut db2),
                &mut ConvScratch::default(),
            );
            for (a, b) in [(&y1, &y2), (&dx1, &dx2), (&dw1, &dw2), (&db1, &db2)] {
                for (u, v) in a.iter().zip(b.iter()) {
                    assert!((u - v).abs() < 1e-12, "{u} vs {v} (k {k}, stride {stride})");
                }
            }
        }
    }
}
