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
use crate::plan::direct::{self, DirectConv, FilterGradScratch};
use crate::plan::kernels::Residual;
use crate::plan::winograd::{self, Winograd};
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

/// Columns a per-image-path product aims for: output planes smaller than this are taken
/// several images at a time (see [`ConvDims::chunk`]). Measured on mnist-v1 (batch 128,
/// one thread): 256 and 512 tie, 1024 is slower (the column matrix leaves L2); against one
/// image per product the 7² and 4² stages run about 15 % faster.
const CHUNK_COLUMNS: usize = 256;

/// Below this many output channels the per-image path computes a 3×3 stride-1 conv's input
/// gradient as a forward conv of `dY` ([`ConvDims::transposed`]) instead of `dcol = Wᵀ·dY`
/// (a GEMM whose inner dimension is the output channels) and col2im. Measured
/// (`resnet train bench`, 2 threads, alternated, fastest step): mnist-v1 at batch 128 about
/// 5 % faster per step (227/234 → 214/219 ms); on ResNet-18 (64–512 channels) no difference
/// showed within the machine's noise, so wide layers keep the fused dW/dX pass, which
/// unfolds each image's im2col once for both.
const TRANSPOSED_MAX_OUT_CHANNELS: usize = 64;

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
    /// [`CHUNK_COLUMNS`] (tests lower it to force one image per product).
    chunk_columns: usize,
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
            chunk_columns: CHUNK_COLUMNS,
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

    /// Images the per-image path takes together as one column matrix `[kg, chunk·P]`:
    /// enough that a product has at least [`CHUNK_COLUMNS`] columns when planes are small
    /// (1 for planes of that size and above).
    fn chunk(&self) -> usize {
        self.chunk_columns.div_ceil(self.out_plane.max(1)).clamp(1, self.n.max(1))
    }

    /// The dims of the input gradient as a forward conv ([`transposed_geometry`]) for the
    /// per-image path: 3×3 stride-1 dilation-1 group-1 2-D convs with pads of at most 2 whose
    /// output rows are as wide as the input rows ([`contiguous_shift`] then applies to both
    /// convs) and fewer than [`TRANSPOSED_MAX_OUT_CHANNELS`] output channels. `None`
    /// otherwise.
    fn transposed(&self) -> Option<ConvDims> {
        let [ad, ah, aw] = &self.axes;
        let fits = self.group == 1
            && self.m < TRANSPOSED_MAX_OUT_CHANNELS
            && *ad == Axis::UNIT
            && aw.output == aw.input
            && [ah, aw]
                .iter()
                .all(|a| a.kernel == 3 && a.stride == 1 && a.dilation == 1 && a.pad_begin <= 2 && a.pad_end <= 2);
        fits.then(|| {
            let g = ConvGeometry { n: self.n, c: self.c, m: self.m, group: 1, axes: self.axes, out_shape: Vec::new() };
            ConvDims { chunk_columns: self.chunk_columns, ..ConvDims::new(&transposed_geometry(&g)) }
        })
    }

    fn cg(&self) -> usize {
        self.c / self.group
    }

    fn mg(&self) -> usize {
        self.m / self.group
    }
}

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

/// Per kernel tap along `axis`: where it reads — the valid outputs `lo..hi` (see
/// [`valid_outputs`]) and the input coordinate output `lo` reads (0 when the span is empty).
fn tap_spans(axis: &Axis) -> Vec<(usize, usize, usize)> {
    (0..axis.kernel)
        .map(|k| {
            let (lo, hi) = valid_outputs(axis, k);
            let first = if lo < hi { axis.input_pos(lo, k) as usize } else { 0 };
            (lo, hi, first)
        })
        .collect()
}

/// For stride 1 along both axes and an output row as wide as the input row (a "same" conv
/// along W): output position `f = j·ow + o` of a tap reads input element `f + delta` of the
/// plane for every valid `(j, o)`, so the rows `hlo..hhi` are one shifted copy. Returns
/// `delta` (given the first valid output row `hlo` and its input row `ih0`, the first valid
/// column `wlo` and its input column `iw0`).
fn contiguous_shift(ah: &Axis, aw: &Axis, (hlo, ih0): (usize, usize), (wlo, iw0): (usize, usize)) -> Option<isize> {
    rows_contiguous(ah, aw).then(|| (ih0 as isize - hlo as isize) * aw.input as isize + iw0 as isize - wlo as isize)
}

/// Stride 1 along both axes and output rows as wide as the input rows: where
/// [`contiguous_shift`] applies.
fn rows_contiguous(ah: &Axis, aw: &Axis) -> bool {
    ah.stride == 1 && aw.stride == 1 && aw.output == aw.input
}

/// `dst[i] = src[i + start]`, zero where `i + start` falls outside `src`.
fn shifted_copy<T: Real>(dst: &mut [T], src: &[T], start: isize) {
    let len = dst.len() as isize;
    let lo = (-start).clamp(0, len) as usize;
    let hi = (src.len() as isize - start).clamp(lo as isize, len) as usize;
    dst[..lo].fill(T::ZERO);
    dst[hi..].fill(T::ZERO);
    dst[lo..hi].copy_from_slice(&src[(lo as isize + start) as usize..][..hi - lo]);
}

/// The im2col matrix of `channels` input planes (`x`, contiguous) into `col`
/// (`[channels · kernel volume, out_plane]`, row `r` at `col[r·rs + off..]`); taps in the
/// padding read 0.
fn im2col<T: Real>(x: &[T], channels: usize, axes: &[Axis; 3], col: &mut [T], rs: usize, off: usize) {
    let [ad, ah, aw] = axes;
    let in_plane = ad.input * ah.input * aw.input;
    let (oh_n, ow_n) = (ah.output, aw.output);
    let p = ad.output * oh_n * ow_n;
    let (h_spans, w_spans) = (tap_spans(ah), tap_spans(aw));
    let mut row = 0;
    for ch in 0..channels {
        let xc = &x[ch * in_plane..][..in_plane];
        for kd in 0..ad.kernel {
            for &(hlo, hhi, ih0) in &h_spans {
                for &(wlo, whi, iw0) in &w_spans {
                    let dst = &mut col[row * rs + off..][..p];
                    row += 1;
                    for (od, block) in dst.chunks_exact_mut(oh_n * ow_n).enumerate() {
                        let Some(id) = ad.input_index(od, kd) else {
                            block.fill(T::ZERO);
                            continue;
                        };
                        if hlo >= hhi || wlo >= whi {
                            block.fill(T::ZERO);
                            continue;
                        }
                        block[..hlo * ow_n].fill(T::ZERO);
                        block[hhi * ow_n..].fill(T::ZERO);
                        let xd = &xc[id * ah.input * aw.input..][..ah.input * aw.input];
                        if let Some(delta) = contiguous_shift(ah, aw, (hlo, ih0), (wlo, iw0)) {
                            // One copy for rows hlo..hhi, then zeros in the padding columns.
                            let rows = &mut block[hlo * ow_n..hhi * ow_n];
                            shifted_copy(rows, xd, (hlo * ow_n) as isize + delta);
                            for line in rows.chunks_exact_mut(ow_n) {
                                line[..wlo].fill(T::ZERO);
                                line[whi..].fill(T::ZERO);
                            }
                            continue;
                        }
                        for (j, line) in block[hlo * ow_n..hhi * ow_n].chunks_exact_mut(ow_n).enumerate() {
                            let ih = ih0 + j * ah.stride;
                            let xr = &xd[ih * aw.input..][..aw.input];
                            line[..wlo].fill(T::ZERO);
                            line[whi..].fill(T::ZERO);
                            if aw.stride == 1 {
                                line[wlo..whi].copy_from_slice(&xr[iw0..iw0 + (whi - wlo)]);
                            } else {
                                for (v, &x) in line[wlo..whi].iter_mut().zip(xr[iw0..].iter().step_by(aw.stride)) {
                                    *v = x;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Zeroes the entries of `col` (laid out as [`im2col`]'s) that lie in the padding columns of
/// the rows a [`contiguous_shift`] tap reads, so that [`col2im_add`] may add them along with
/// their valid neighbours: every row's first `len` entries (whole output planes, e.g. several
/// images' columns). Nothing to do for other geometries.
fn zero_padding_columns<T: Real>(col: &mut [T], channels: usize, axes: &[Axis; 3], rs: usize, len: usize) {
    let [ad, ah, aw] = axes;
    if !rows_contiguous(ah, aw) {
        return;
    }
    let ow_n = aw.output;
    let (h_spans, w_spans) = (tap_spans(ah), tap_spans(aw));
    let mut row = 0;
    for _ in 0..channels * ad.kernel {
        for &(hlo, hhi, _) in &h_spans {
            for &(wlo, whi, _) in &w_spans {
                let block = &mut col[row * rs..][..len];
                row += 1;
                if hlo >= hhi || wlo >= whi || (wlo == 0 && whi == ow_n) {
                    continue;
                }
                for plane in block.chunks_exact_mut(ah.output * ow_n) {
                    for line in plane[hlo * ow_n..hhi * ow_n].chunks_exact_mut(ow_n) {
                        line[..wlo].fill(T::ZERO);
                        line[whi..].fill(T::ZERO);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every entry of `col` into the input element it was read
/// from (entries in the padding are dropped). [`zero_padding_columns`] must have run on `col`
/// (the rows of stride-1 same-width convs are added as one run, padding columns included).
fn col2im_add<T: Real>(col: &[T], channels: usize, axes: &[Axis; 3], dx: &mut [T], rs: usize, off: usize) {
    let [ad, ah, aw] = axes;
    let in_plane = ad.input * ah.input * aw.input;
    let (oh_n, ow_n) = (ah.output, aw.output);
    let p = ad.output * oh_n * ow_n;
    let (h_spans, w_spans) = (tap_spans(ah), tap_spans(aw));
    let mut row = 0;
    for ch in 0..channels {
        let dxc = &mut dx[ch * in_plane..][..in_plane];
        for kd in 0..ad.kernel {
            for &(hlo, hhi, ih0) in &h_spans {
                for &(wlo, whi, iw0) in &w_spans {
                    let src = &col[row * rs + off..][..p];
                    row += 1;
                    if hlo >= hhi || wlo >= whi {
                        continue;
                    }
                    for (od, block) in src.chunks_exact(oh_n * ow_n).enumerate() {
                        let Some(id) = ad.input_index(od, kd) else { continue };
                        let xd = &mut dxc[id * ah.input * aw.input..][..ah.input * aw.input];
                        if let Some(delta) = contiguous_shift(ah, aw, (hlo, ih0), (wlo, iw0)) {
                            // One contiguous add from the first valid entry to the last: the
                            // padding columns between them hold zeros.
                            let (f0, f1) = (hlo * ow_n + wlo, (hhi - 1) * ow_n + whi);
                            let dst = &mut xd[(f0 as isize + delta) as usize..][..f1 - f0];
                            dst.iter_mut().zip(&block[f0..f1]).for_each(|(x, &v)| *x += v);
                            continue;
                        }
                        for (j, line) in block[hlo * ow_n..hhi * ow_n].chunks_exact(ow_n).enumerate() {
                            let ih = ih0 + j * ah.stride;
                            let xr = &mut xd[ih * aw.input..][..aw.input];
                            if aw.stride == 1 {
                                for (x, &v) in xr[iw0..iw0 + (whi - wlo)].iter_mut().zip(&line[wlo..whi]) {
                                    *x += v;
                                }
                            } else {
                                for (x, &v) in xr[iw0..].iter_mut().step_by(aw.stride).zip(&line[wlo..whi]) {
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

/// Fewest input and output channels for which training runs a conv as Winograd. Measured
/// (`RESNET_TRAIN_PROFILE=1 resnet train bench`, 2 threads, forward ms exact → Winograd):
/// mnist-v1 at batch 128, 16 channels on 28×28 4.4 → 5.7, 32 on 14×14 4.1 → 4.5; ResNet-18
/// at batch 32, 64 on 56×56 40 → 31, 128 on 28×28 33 → 22, 256 on 14×14 31 → 31.
const TRAIN_MIN_CHANNELS: usize = 64;
/// Smallest output side for Winograd in training: on mnist-v1's 7×7 (64 channels, tiles
/// 77 % used) and 4×4 (128 channels) layers it measured 3.3 → 3.6 and 4.4 → 4.8 ms.
const TRAIN_MIN_SIDE: usize = 14;
/// Most input × output channels for which training runs a conv as Winograd: 256 × 256
/// (ResNet's 512×512 convs have 7×7 outputs, below [`TRAIN_MIN_SIDE`] anyway).
const TRAIN_MAX_CHANNEL_PRODUCT: usize = 256 * 256;

/// Whether a conv trains through the plan's direct kernels ([`DirectTrain`]; f32 programs on
/// AVX-512 CPUs): 2-D, stride 1, ungrouped, wider than 1×1, output planes of at least
/// 20×20. Smaller planes stay on the im2col path: there the direct forward streams the
/// filters once per image where im2col batches the images into one GEMM (ResNet-18 b32,
/// 2 threads, per 3×3 layer forward + backward: 56×56 103 → 72 ms, 28×28 73 → 67 ms, but
/// 14×14 66 → 71 ms and 7×7 68 → 96 ms).
pub(crate) fn direct_applies(g: &ConvGeometry) -> bool {
    let [ad, ah, aw] = &g.axes;
    *ad == Axis::UNIT
        && g.group == 1
        && ah.kernel * aw.kernel > 1
        && [ah, aw].iter().all(|a| a.stride == 1 && a.output >= 20)
}

/// Whether an f32 call with this geometry runs its forward and input gradient as Winograd:
/// group 1, 3×3 with stride and dilation 1 and pads of at most 2 over a 2-D plane, at
/// least [`TRAIN_MIN_CHANNELS`] channels, at most [`TRAIN_MAX_CHANNEL_PRODUCT`], an
/// output of at least [`TRAIN_MIN_SIDE`] a side and
/// at least [`winograd::MIN_TILES`] output tiles.
pub(crate) fn winograd_applies(g: &ConvGeometry) -> bool {
    let [ad, ah, aw] = &g.axes;
    let tiles = g.n * ah.output.div_ceil(4) * aw.output.div_ceil(4);
    g.group == 1
        && g.c.min(g.m) >= TRAIN_MIN_CHANNELS.max(winograd::MIN_CHANNELS)
        && ah.output.min(aw.output) >= TRAIN_MIN_SIDE
        && g.c * g.m <= TRAIN_MAX_CHANNEL_PRODUCT
        && *ad == Axis::UNIT
        && [ah, aw]
            .iter()
            .all(|a| a.kernel == 3 && a.stride == 1 && a.dilation == 1 && a.pad_begin <= 2 && a.pad_end <= 2)
        && tiles >= winograd::MIN_TILES
}

/// The geometry of the input gradient of a conv [`winograd_applies`] to, as a forward conv:
/// `dY [N, M, oh, ow]` convolved with the transposed, rotated filters (`[C, M, 3, 3]`),
/// padded by `2 − pad`, gives `dX [N, C, h, w]`.
fn transposed_geometry(g: &ConvGeometry) -> ConvGeometry {
    let flip = |a: &Axis| Axis {
        input: a.output,
        output: a.input,
        kernel: 3,
        stride: 1,
        dilation: 1,
        pad_begin: 2 - a.pad_begin,
        pad_end: 2 - a.pad_end,
    };
    let [ad, ah, aw] = &g.axes;
    ConvGeometry {
        n: g.n,
        c: g.m,
        m: g.c,
        group: 1,
        axes: [*ad, flip(ah), flip(aw)],
        out_shape: vec![g.n, g.c, ah.input, aw.input],
    }
}

/// The direct kernels of one conv node ([`direct_applies`]), kept across steps: the forward
/// conv, for 3×3 stride-1 convs (pads ≤ 2) the input gradient as the forward conv of dY
/// with the rotated, transposed filters, and the weight gradient's scratch
/// ([`direct::filter_grad`]). Filters are repacked every step.
#[derive(Debug, Clone)]
pub(crate) struct DirectTrain {
    forward: DirectConv,
    input_grad: Option<DirectConv>,
    w_t: Vec<f32>,
    filter_grad: FilterGradScratch,
}

impl DirectTrain {
    /// `None` on CPUs without the direct kernel.
    pub(crate) fn new(g: &ConvGeometry) -> Option<DirectTrain> {
        let [_, ah, aw] = &g.axes;
        let forward = DirectConv::with_shape(g.m, g.c, ah.kernel, aw.kernel)?;
        let input_grad = if Self::input_grad_applies(g) { DirectConv::with_shape(g.c, g.m, 3, 3) } else { None };
        Some(DirectTrain { forward, input_grad, w_t: Vec::new(), filter_grad: FilterGradScratch::default() })
    }

    fn input_grad_applies(g: &ConvGeometry) -> bool {
        let [_, ah, aw] = &g.axes;
        [ah, aw].iter().all(|a| a.kernel == 3 && a.dilation == 1 && a.pad_begin <= 2 && a.pad_end <= 2)
    }

    /// Whether this node's kernels fit the call (the shapes of the first call).
    pub(crate) fn fits(&self, g: &ConvGeometry) -> bool {
        let [_, ah, aw] = &g.axes;
        self.forward.has_shape(g.m, g.c, ah.kernel, aw.kernel)
    }

    /// `y = conv(x, w) + b` for a geometry [`direct_applies`] to.
    pub(crate) fn forward(&mut self, g: &ConvGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
        debug_assert!(direct_applies(g) && self.fits(g));
        self.forward.set_filters(w);
        self.forward.run(g, x, b, Residual::None, false, false, y);
    }

    /// `dw += ∂loss/∂w` from the forward input `x` and `dy` ([`direct::filter_grad`]).
    pub(crate) fn filter_grad(&mut self, g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
        direct::filter_grad(g, x, dy, dw, &mut self.filter_grad);
    }

    /// Whether [`DirectTrain::input_grad`] computes dX.
    pub(crate) fn has_input_grad(&self) -> bool {
        self.input_grad.is_some()
    }

    /// `dx = conv(dy, rot180(wᵀ))`, or added to `dx` unless `fresh`.
    pub(crate) fn input_grad(&mut self, g: &ConvGeometry, w: &[f32], dy: &[f32], dx: &mut [f32], fresh: bool) {
        let k = self.input_grad.as_mut().expect("has_input_grad");
        rotate_transpose(w, g.m, g.c, &mut self.w_t);
        k.set_filters(&self.w_t[..w.len()]);
        k.run(&transposed_geometry(g), dy, None, Residual::None, false, !fresh, dx);
    }
}

/// The Winograd kernels of one conv node (see the module docs), kept across steps.
#[derive(Debug, Clone)]
pub(crate) struct FastConv {
    forward: Winograd,
    input_grad: Winograd,
    /// The input-gradient conv's filters ([`rotate_transpose`]).
    w_t: Vec<f32>,
}

impl FastConv {
    pub(crate) fn new(g: &ConvGeometry) -> FastConv {
        FastConv {
            forward: Winograd::with_channels(g.c, g.m),
            input_grad: Winograd::with_channels(g.m, g.c),
            w_t: Vec::new(),
        }
    }

    /// Whether this node's kernels fit the call (the channel counts of the first call).
    pub(crate) fn fits(&self, g: &ConvGeometry) -> bool {
        self.forward.input_channels() == g.c && self.forward.output_channels() == g.m
    }

    /// `y = conv(x, w) + b` for a geometry [`winograd_applies`] to.
    pub(crate) fn forward(&mut self, g: &ConvGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
        debug_assert!(winograd_applies(g) && self.fits(g));
        self.forward.set_filters(w);
        self.forward.run(g, x, b, None, false, false, y);
    }

    /// `dx = conv(dy, rot180(wᵀ))`, or added to `dx` unless `fresh`.
    pub(crate) fn input_grad(&mut self, g: &ConvGeometry, w: &[f32], dy: &[f32], dx: &mut [f32], fresh: bool) {
        debug_assert!(winograd_applies(g) && self.fits(g));
        rotate_transpose(w, g.m, g.c, &mut self.w_t);
        self.input_grad.set_filters(&self.w_t[..w.len()]);
        self.input_grad.run(&transposed_geometry(g), dy, None, None, false, !fresh, dx);
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
    /// Per range: `Y` or `dY` of a chunk of images as `[M/g, chunk·P]` (per-image path with
    /// small planes).
    mats: Vec<Vec<T>>,
    /// Batched path: `Y` or `dY` as `[M, N·P]`.
    mat: Vec<T>,
    /// Batched path: `dcol = Wᵀ · dY`, `[kg, N·P]`.
    dcol: Vec<T>,
    /// The rotated, transposed filters of the input-gradient conv ([`rotate_transpose`]).
    w_t: Vec<T>,
}

impl<T> Default for ConvScratch<T> {
    fn default() -> Self {
        ConvScratch {
            cols: Vec::new(),
            partials: Vec::new(),
            mats: Vec::new(),
            mat: Vec::new(),
            dcol: Vec::new(),
            w_t: Vec::new(),
        }
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
        forward_per_image(d, x, w, b, y, false, scratch)
    }
}

/// One range of images per task (see the module docs); with `accumulate` the product (and
/// bias) is added to `y`.
fn forward_per_image<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    y: &mut [T],
    accumulate: bool,
    scratch: &mut ConvScratch<T>,
) {
    let (cg, mg, kg, p) = (d.cg(), d.mg(), d.kg, d.out_plane);
    let ranges = range_count(d.n);
    let chunk = d.chunk();
    scratch.cols.resize_with(ranges.max(scratch.cols.len()), Vec::new);
    scratch.mats.resize_with(ranges.max(scratch.mats.len()), Vec::new);
    let parts = split_ranges(y, d.m * p, d.n, ranges);
    parts
        .into_par_iter()
        .zip(scratch.cols[..ranges].par_iter_mut())
        .zip(scratch.mats[..ranges].par_iter_mut())
        .enumerate()
        .for_each(|(r, ((y_r, col), mat))| {
            let (start, end) = image_range(d.n, ranges, r);
            let mut img = start;
            while img < end {
                let cs = chunk.min(end - img);
                let y_c = &mut y_r[(img - start) * d.m * p..][..cs * d.m * p];
                let cols = cs * p;
                for grp in 0..d.group {
                    let w_g = MatRef::new(&w[grp * mg * kg..][..mg * kg], kg, false);
                    let x_g = |i: usize| &x[((img + i) * d.c + grp * cg) * d.in_plane..][..cg * d.in_plane];
                    if cs == 1 {
                        let rhs: &[T] = if d.pointwise {
                            x_g(0)
                        } else {
                            let col = at_least(col, kg * p);
                            im2col(x_g(0), cg, &d.axes, col, p, 0);
                            col
                        };
                        let y_g = &mut y_c[grp * mg * p..][..mg * p];
                        matmul(mg, p, kg, y_g, p, accumulate, w_g, MatRef::new(rhs, p, false), T::ONE);
                    } else {
                        let col = at_least(col, kg * cols);
                        for i in 0..cs {
                            im2col(x_g(i), cg, &d.axes, col, cols, i * p);
                        }
                        let mat = at_least(mat, mg * cols);
                        matmul(mg, cols, kg, mat, cols, false, w_g, MatRef::new(col, cols, false), T::ONE);
                        for (i, y_img) in y_c.chunks_exact_mut(d.m * p).enumerate() {
                            for (m, row) in y_img[grp * mg * p..][..mg * p].chunks_exact_mut(p).enumerate() {
                                let src = &mat[m * cols + i * p..][..p];
                                if accumulate {
                                    row.iter_mut().zip(src).for_each(|(y, &v)| *y += v);
                                } else {
                                    row.copy_from_slice(src);
                                }
                            }
                        }
                    }
                }
                if let Some(b) = b {
                    for y_img in y_c.chunks_exact_mut(d.m * p) {
                        for (row, &bv) in y_img.chunks_exact_mut(p).zip(b) {
                            row.iter_mut().for_each(|v| *v += bv);
                        }
                    }
                }
                img += cs;
            }
        });
}

/// Adds the gradients of a conv to `dx`, `dw` and `db` (each only when asked for); with
/// `dx_fresh` `dx` holds no gradient yet and is overwritten (each image's part zeroed just
/// before its col2im, while in cache, or written by the product directly).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: Real>(
    d: &ConvDims,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dx_fresh: bool,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
    scratch: &mut ConvScratch<T>,
) {
    let p = d.out_plane;
    if d.n == 0 || p == 0 {
        if let (Some(dx), true) = (dx, dx_fresh) {
            dx.fill(T::ZERO);
        }
        return;
    }
    if dx.is_none() && dw.is_none() {
        if let Some(db) = db {
            bias_grad(d, dy, db);
        }
        return;
    }
    if d.batched() {
        backward_batched(d, x, w, dy, dx, dx_fresh, dw, db, scratch)
    } else if let (true, Some(tg)) = (dx.is_some(), d.transposed()) {
        // dW (and dB) per image, then dX as a forward conv of dY: a GEMM over C_out·9 rows
        // instead of one over C_out producing C_in·9 rows for col2im.
        let dx = dx.expect("checked");
        if dw.is_some() || db.is_some() {
            backward_per_image(d, x, w, dy, None, false, dw, db, scratch);
        }
        let mut w_t = std::mem::take(&mut scratch.w_t);
        rotate_transpose(w, d.m, d.c, &mut w_t);
        forward_per_image(&tg, dy, &w_t, None, dx, !dx_fresh, scratch);
        scratch.w_t = w_t;
    } else {
        backward_per_image(d, x, w, dy, dx, dx_fresh, dw, db, scratch)
    }
}

/// `w_t[c, m, 2 − kh, 2 − kw] = w[m, c, kh, kw]` for 3×3 filters `w` (`[M, C, 3, 3]`): the
/// filters of the conv that computes a stride-1 conv's input gradient.
fn rotate_transpose<T: Real>(w: &[T], m: usize, c: usize, w_t: &mut Vec<T>) {
    let w_t = at_least(w_t, w.len());
    for (mi, filters) in w.chunks_exact(c * 9).enumerate() {
        for (ci, g) in filters.chunks_exact(9).enumerate() {
            let dst = &mut w_t[(ci * m + mi) * 9..][..9];
            for k in 0..9 {
                dst[k] = g[8 - k];
            }
        }
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
    dx_fresh: bool,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
    scratch: &mut ConvScratch<T>,
) {
    let (cg, mg, kg, p) = (d.cg(), d.mg(), d.kg, d.out_plane);
    if let Some(db) = db {
        bias_grad(d, dy, db);
    }
    let ranges = range_count(d.n);
    let chunk = d.chunk();
    let want_dw = dw.is_some();
    scratch.cols.resize_with(ranges.max(scratch.cols.len()), Vec::new);
    scratch.mats.resize_with(ranges.max(scratch.mats.len()), Vec::new);
    scratch.partials.resize_with(ranges.max(scratch.partials.len()), Vec::new);
    let dx_parts: Vec<Option<&mut [T]>> = match dx {
        Some(dx) => split_ranges(dx, d.c * d.in_plane, d.n, ranges).into_iter().map(Some).collect(),
        None => (0..ranges).map(|_| None).collect(),
    };
    dx_parts
        .into_par_iter()
        .zip(scratch.cols[..ranges].par_iter_mut())
        .zip(scratch.mats[..ranges].par_iter_mut())
        .zip(scratch.partials[..ranges].par_iter_mut())
        .enumerate()
        .for_each(|(r, (((mut dx_r, col), mat), acc))| {
            let (start, end) = image_range(d.n, ranges, r);
            let mut acc = if want_dw {
                let acc = at_least(acc, d.m * kg);
                acc.fill(T::ZERO);
                Some(acc)
            } else {
                None
            };
            let mut img = start;
            while img < end {
                let cs = chunk.min(end - img);
                let cols = cs * p;
                for grp in 0..d.group {
                    let x_g = |i: usize| &x[((img + i) * d.c + grp * cg) * d.in_plane..][..cg * d.in_plane];
                    let w_g = &w[grp * mg * kg..][..mg * kg];
                    // dY of the chunk as [mg, cs·P]: the image's own planes when cs is 1.
                    let dym: &[T] = if cs == 1 {
                        &dy[(img * d.m + grp * mg) * p..][..mg * p]
                    } else {
                        let mat = at_least(mat, mg * cols);
                        for i in 0..cs {
                            let dy_g = &dy[((img + i) * d.m + grp * mg) * p..][..mg * p];
                            for (m, row) in dy_g.chunks_exact(p).enumerate() {
                                mat[m * cols + i * p..][..p].copy_from_slice(row);
                            }
                        }
                        mat
                    };
                    if let Some(acc) = acc.as_deref_mut() {
                        let colm: &[T] = if cs == 1 && d.pointwise {
                            x_g(0)
                        } else {
                            let col = at_least(col, kg * cols);
                            for i in 0..cs {
                                im2col(x_g(i), cg, &d.axes, col, cols, i * p);
                            }
                            col
                        };
                        let acc_g = &mut acc[grp * mg * kg..][..mg * kg];
                        let (a, b) = (MatRef::new(dym, cols, false), MatRef::new(colm, cols, true));
                        matmul(mg, kg, cols, acc_g, kg, true, a, b, T::ONE);
                    }
                    if let Some(dx_r) = dx_r.as_deref_mut() {
                        let (a, b) = (MatRef::new(w_g, kg, true), MatRef::new(dym, cols, false));
                        let dx_at = |i: usize| ((img + i - start) * d.c + grp * cg) * d.in_plane;
                        if cs == 1 && d.pointwise {
                            let dx_g = &mut dx_r[dx_at(0)..][..cg * d.in_plane];
                            matmul(kg, p, mg, dx_g, p, !dx_fresh, a, b, T::ONE);
                        } else {
                            let dcol = at_least(col, kg * cols);
                            matmul(kg, cols, mg, dcol, cols, false, a, b, T::ONE);
                            zero_padding_columns(dcol, cg, &d.axes, cols, cols);
                            for i in 0..cs {
                                let dx_g = &mut dx_r[dx_at(i)..][..cg * d.in_plane];
                                if dx_fresh {
                                    dx_g.fill(T::ZERO);
                                }
                                col2im_add(dcol, cg, &d.axes, dx_g, cols, i * p);
                            }
                        }
                    }
                }
                img += cs;
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
    dx_fresh: bool,
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
        let kv = kg / d.c.max(1);
        if kv > 0 {
            dcol.par_chunks_mut(kv * cols).for_each(|rows| zero_padding_columns(rows, 1, &d.axes, cols, cols));
        }
        let dcol: &[T] = dcol;
        dx.par_chunks_mut(d.c * d.in_plane).enumerate().for_each(|(img, dx_img)| {
            if dx_fresh {
                dx_img.fill(T::ZERO);
            }
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

    /// The input gradient of 3×3 stride-1 convs as a forward conv of `dY`
    /// ([`ConvDims::transposed`], what [`backward`] runs) equals col2im of `Wᵀ·dY`, with
    /// symmetric and asymmetric pads, overwriting and accumulating, chunked or not.
    #[test]
    fn transposed_input_gradient_matches_col2im() {
        let mut seed = 3u64;
        for pads in [[1, 1, 1, 1], [0, 0, 2, 2], [2, 2, 0, 0], [1, 0, 1, 2]] {
            let window = Window { pads: Some(pads.to_vec()), ..Window::default() };
            let (n, c, m, h) = (3, 4, 6, 7);
            let g = conv_geometry(&window, 1, &[n, c, h, h], &[m, c, 3, 3], None).unwrap();
            if g.axes[2].output != h {
                continue;
            }
            for chunk_columns in [1, CHUNK_COLUMNS] {
                let d = ConvDims { chunk_columns, ..ConvDims::new(&g) };
                assert!(d.transposed().is_some(), "pads {pads:?}");
                let x: Vec<f64> = (0..n * c * h * h).map(|_| lcg(&mut seed)).collect();
                let w: Vec<f64> = (0..m * c * 9).map(|_| lcg(&mut seed)).collect();
                let dy: Vec<f64> = (0..g.out_shape.iter().product()).map(|_| lcg(&mut seed)).collect();
                for fresh in [true, false] {
                    let start = if fresh { f64::NAN } else { 0.5 };
                    let (mut want, mut got) = (vec![start; x.len()], vec![start; x.len()]);
                    let mut s = ConvScratch::default();
                    backward_per_image(&d, &x, &w, &dy, Some(&mut want), fresh, None, None, &mut s);
                    backward(&d, &x, &w, &dy, Some(&mut got), fresh, None, None, &mut s);
                    for (a, b) in want.iter().zip(&got) {
                        assert!((a - b).abs() < 1e-12, "pads {pads:?} fresh {fresh}: {a} vs {b}");
                    }
                }
            }
        }
    }

    /// The batched path (small planes), the per-image path with images chunked into one
    /// product and the per-image path with one image per product agree on forward and
    /// backward (grouped convs: the two per-image variants).
    #[test]
    fn batched_and_per_image_paths_agree() {
        type Grads = [Vec<f64>; 4];
        let mut seed = 1u64;
        for (k, stride, pad, group) in
            [(3, 1, 1, 1), (3, 2, 1, 1), (1, 1, 0, 1), (1, 2, 0, 1), (3, 1, 1, 2), (1, 2, 0, 2)]
        {
            let window = Window { strides: Some(vec![stride, stride]), pads: Some(vec![pad; 4]), ..Window::default() };
            let (n, c, m, h) = (3, 4, 6, 6);
            let g = conv_geometry(&window, group, &[n, c, h, h], &[m, c / group, k, k], Some(m)).unwrap();
            let chunked = ConvDims::new(&g);
            assert_eq!(chunked.chunk(), n, "the default chunks the whole small batch");
            let single = ConvDims { chunk_columns: 1, ..ConvDims::new(&g) };
            assert_eq!(single.chunk(), 1);
            let x: Vec<f64> = (0..n * c * h * h).map(|_| lcg(&mut seed)).collect();
            let w: Vec<f64> = (0..m * (c / group) * k * k).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f64> = (0..m).map(|_| lcg(&mut seed)).collect();
            let len = g.out_shape.iter().product();
            let dy: Vec<f64> = (0..len).map(|_| lcg(&mut seed)).collect();
            // `fresh` overwrites dX: start it from garbage then; else it accumulates onto 1.
            let run = |d: &ConvDims, batched: bool, fresh: bool| -> Grads {
                let mut y = vec![0.0; len];
                let (mut dx, mut dw, mut db) =
                    (vec![if fresh { f64::NAN } else { 1.0 }; x.len()], vec![0.0; w.len()], vec![0.0; m]);
                let mut s = ConvScratch::default();
                let (gx, gw, gb) = (Some(&mut dx[..]), Some(&mut dw[..]), Some(&mut db[..]));
                if batched {
                    forward_batched(d, &x, &w, Some(&b), &mut y, &mut s);
                    backward_batched(d, &x, &w, &dy, gx, fresh, gw, gb, &mut s);
                } else {
                    forward_per_image(d, &x, &w, Some(&b), &mut y, false, &mut s);
                    backward_per_image(d, &x, &w, &dy, gx, fresh, gw, gb, &mut s);
                }
                [y, dx, dw, db]
            };
            let reference = run(&single, false, false);
            let mut others = vec![run(&chunked, false, false)];
            if group == 1 {
                others.push(run(&chunked, true, false));
            }
            for (d, batched) in [(&single, false), (&chunked, false), (&chunked, true)] {
                if batched && group != 1 {
                    continue;
                }
                let mut fresh = run(d, batched, true);
                fresh[1].iter_mut().for_each(|v| *v += 1.0);
                others.push(fresh);
            }
            for other in &others {
                for (a, b) in reference.iter().zip(other) {
                    assert_eq!(a.len(), b.len());
                    for (u, v) in a.iter().zip(b.iter()) {
                        assert!((u - v).abs() < 1e-12, "{u} vs {v} (k {k}, stride {stride}, group {group})");
                    }
                }
            }
        }
    }
}
