//! Conv forward and backward for training: im2col + GEMM per image.
//!
//! Layouts: `X [N, C, D, H, W]` (1-D and 2-D convs are lifted to 3-D with unit axes),
//! `W [M, C/g, kd, kh, kw]`, `Y [N, M, od, oh, ow]`, all row-major. For group `g` of an image
//! the im2col matrix is `[C/g · kd·kh·kw, od·oh·ow]` (row = input channel and tap, column =
//! output position), so `Y_g = W_g · col` and the backward products are
//! `dW_g += dY_g · colᵀ` and `dcol = W_gᵀ · dY_g` followed by col2im. A 1×1 stride-1
//! unpadded conv skips im2col: the input planes already are `col`.
//!
//! Parallelism: forward and dX run one image per task. dW is a sum over images: the batch is
//! split into as many contiguous ranges as the pool has threads, each range accumulates into
//! its own copy of dW, and the copies are added in range order — so a run with one thread is
//! bit-reproducible and other thread counts differ only by summation order.

use rayon::prelude::*;

use crate::ops::conv::ConvGeometry;
use crate::ops::padding::Axis;
use crate::train::real::{matmul, MatRef, Real};

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

    fn cg(&self) -> usize {
        self.c / self.group
    }

    fn mg(&self) -> usize {
        self.m / self.group
    }
}

/// The im2col matrix of `channels` input planes (`x`, contiguous) into `col`
/// (`[channels · kernel volume, out_plane]`); taps in the padding read 0.
fn im2col<T: Real>(x: &[T], channels: usize, axes: &[Axis; 3], col: &mut [T]) {
    let [ad, ah, aw] = axes;
    let in_plane = ad.input * ah.input * aw.input;
    let p = ad.output * ah.output * aw.output;
    let mut row = 0;
    for ch in 0..channels {
        let xc = &x[ch * in_plane..][..in_plane];
        for kd in 0..ad.kernel {
            for kh in 0..ah.kernel {
                for kw in 0..aw.kernel {
                    let dst = &mut col[row * p..][..p];
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
                                    for (ow, v) in line.iter_mut().enumerate() {
                                        *v = aw.input_index(ow, kw).map_or(T::ZERO, |iw| xr[iw]);
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
fn col2im_add<T: Real>(col: &[T], channels: usize, axes: &[Axis; 3], dx: &mut [T]) {
    let [ad, ah, aw] = axes;
    let in_plane = ad.input * ah.input * aw.input;
    let p = ad.output * ah.output * aw.output;
    let mut row = 0;
    for ch in 0..channels {
        let dxc = &mut dx[ch * in_plane..][..in_plane];
        for kd in 0..ad.kernel {
            for kh in 0..ah.kernel {
                for kw in 0..aw.kernel {
                    let src = &col[row * p..][..p];
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
                                for (ow, &v) in line.iter().enumerate() {
                                    if let Some(iw) = aw.input_index(ow, kw) {
                                        xr[iw] += v;
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
    let (cg, mg, kg, p) = (d.cg(), d.mg(), d.kg, d.out_plane);
    if d.n == 0 || d.m == 0 || p == 0 {
        return;
    }
    y.par_chunks_mut(d.m * p).enumerate().for_each_init(Vec::new, |col: &mut Vec<T>, (img, y_img)| {
        for grp in 0..d.group {
            let x_g = &x[(img * d.c + grp * cg) * d.in_plane..][..cg * d.in_plane];
            let rhs = if d.pointwise {
                x_g
            } else {
                col.resize(kg * p, T::ZERO);
                im2col(x_g, cg, &d.axes, col);
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
    let (cg, mg, kg, p) = (d.cg(), d.mg(), d.kg, d.out_plane);
    if d.n == 0 || p == 0 {
        return;
    }
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
                            im2col(x_g, cg, &d.axes, &mut col);
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
                    col2im_add(dcol, cg, &d.axes, dx_g);
                }
            }
        });
    }
}
