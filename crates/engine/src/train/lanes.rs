//! Training convolutions with the batch as the vector axis ("batch lanes"), for the small
//! planes (ResNet's later stages at MNIST or CIFAR sizes) where im2col + GEMM spends about
//! as long unfolding and packing as multiplying and the direct kernel's spatial strips are
//! mostly padding.
//!
//! Activations are transposed from NCHW to `[C, Hp, Wp, N']`: N' is the batch rounded up to
//! 16 (the extra lanes zero) and the plane carries the conv's zero padding. One vector of 16
//! lanes then holds one pixel of 16 images, and every output position reads its taps at the
//! same offsets, so the plan's direct micro-kernel ([`direct::micro`]: 8 filters × up to 3
//! vectors, per k one broadcast per filter and one load per vector) computes
//! `Y[m, p, n] = Σ_k W[m, k] · X'[base(p) + off(k) + n]` with no im2col matrix, no band
//! copies and no wrapped columns, for any stride. The weight gradient
//! `dW[m, c, i, j] = Σ_{p, n} dY'[m, p, n] · X'[c, src(p, i, j), n]` is a block of 4 × 4
//! dot products along the lanes per call. The input gradient splits the input pixels into
//! stride² classes ([`axis_classes`]); each is a stride-1 conv of the padded `dY'` with the
//! class's taps on the same micro-kernel (one class with every tap at stride 1). Every sum
//! runs in a fixed order whatever the thread count, so results do not depend on it.
//!
//! Measured on mnist-v1 (batch 128, 2 threads, `RESNET_TRAIN_PROFILE=1 resnet train
//! bench`), forward / backward ms per layer against the im2col path: 3×3 at 4×4 (128
//! channels) 6.5 / 13 → 4.3 / 9.3, at 7×7 (64) 4.5 / 9 → 3.5 / 7.1, at 14×14 (32)
//! 4.5 / 9.5 → 4.4 / 7.9; stride-2 3×3 into 4×4 3.7 / 7.6 → 2.9 / 5.3.
//!
//! Activations can also stay on lanes between ops, `[C, H, W, N]` with no padding, when the
//! batch is a whole number of vectors ([`lane_batch`]): the training program keeps a conv's
//! output there when every reader takes lanes (a conv that [`accepts_lanes`], BatchNorm,
//! Relu, Add, GlobalAveragePool), so a stage's convs pay no transposes, only a padding copy
//! of whole rows ([`pad_lanes`]); 1×1 convs then run here too and read their input in
//! place. mnist-v1 at batch 128 on 2 threads: 265 → 201 ms per step (profile above), the
//! convs 218 → 176 ms, BatchNorm 28 → 19 ms.
//!
//! AVX-512 CPUs only, for the shapes [`lanes_applies`] / [`accepts_lanes`] pick; the rest keep
//! the other paths.

use rayon::prelude::*;

use crate::ops::conv::ConvGeometry;
use crate::ops::padding::Axis;
use crate::plan::direct::{self, MR};
use crate::plan::kernels::{self, Isa};

/// Output planes with a side below this use the batch lanes (from 20×20 the direct kernel's
/// strips are full: [`super::conv::direct_applies`]).
const MAX_SIDE: usize = 20;

/// Fewest images: the micro-kernel wants 3 vectors of lanes per call (48 images); with 2
/// (ResNet-18 at batch 32, 2 threads) its 7×7 and 14×14 layers measured 5–20 % slower
/// forward and backward than the im2col path.
const MIN_BATCH: usize = 48;

/// Most filter elements (`M·C·kh·kw`, 1 MiB of f32): every (output row, lane chunk) task
/// streams all filters, which must stay in L2 (mnist-v1's largest layer has 147 Ki). Larger
/// filters go to the im2col path, which reads them once per batch
/// ([`super::conv`]'s batched path).
const MAX_FILTER: usize = 1 << 18;

/// Input channels per K chunk of the forward conv: the chunk's taps around one output row
/// stay in L1/L2 while every filter block passes over them. Measured on the mnist-v1 and
/// ResNet-18 small-plane shapes (2 threads): 8, 16 and 32 within noise of each other, all
/// channels at once 10–30 % slower at 4×4, 14×14 and ResNet-18's 7×7 (512 channels).
const KC_CHANNELS: usize = 32;

/// Lanes per vector.
const LANES: usize = 16;

/// Whether an f32 training conv runs on batch lanes: what [`LaneConv`] computes, wider than
/// 1×1, an output side below [`MAX_SIDE`], at least [`MIN_BATCH`] images and at most
/// [`MAX_FILTER`] filter elements. 1×1 convs are plain GEMMs on the im2col path, which beat
/// transposing their inputs: mnist-v1's stride-2 1×1 layers measured 0.9 → 2.9 ms forward
/// on lanes (batch 128, 2 threads), their whole input transposed for a quarter of its pixels.
pub(crate) fn lanes_applies(g: &ConvGeometry) -> bool {
    let [_, ah, aw] = &g.axes;
    supported(g)
        && ah.kernel * aw.kernel > 1
        && ah.output.min(aw.output) < MAX_SIDE
        && g.n >= MIN_BATCH
        && g.m * g.c * ah.kernel * aw.kernel <= MAX_FILTER
}

/// Whether a batch of `n` images can stay on batch lanes between ops: AVX-512, at least
/// [`MIN_BATCH`] images and a whole number of vectors (so a lane tensor `[C, H, W, N]` holds
/// exactly the NCHW tensor's values, no padding lanes to mask in reductions).
pub(crate) fn lane_batch(n: usize) -> bool {
    kernels::active_isa() == Isa::Avx512 && n >= MIN_BATCH && n.is_multiple_of(LANES)
}

/// Whether a conv whose input is already on lanes runs there: what [`LaneConv`] computes
/// on a [`lane_batch`], with at most [`MAX_FILTER`] filter elements. Unlike
/// [`lanes_applies`] any plane size and 1×1 kernels qualify: with no layout transpose to
/// pay, the lanes beat both other paths on ResNet's small and mid-size layers.
pub(crate) fn accepts_lanes(g: &ConvGeometry) -> bool {
    let [_, ah, aw] = &g.axes;
    supported(g) && lane_batch(g.n) && g.m * g.c * ah.kernel * aw.kernel <= MAX_FILTER
}

/// What [`LaneConv`] computes: 2-D ungrouped convs with dilation 1 and pads below the
/// kernel size, on AVX-512 CPUs.
fn supported(g: &ConvGeometry) -> bool {
    let [ad, ah, aw] = &g.axes;
    kernels::active_isa() == Isa::Avx512
        && *ad == Axis::UNIT
        && g.group == 1
        && g.n * g.c * g.m * ah.output * aw.output > 0
        && [ah, aw].iter().all(|a| a.stride >= 1 && a.dilation == 1 && a.pad_begin < a.kernel && a.pad_end < a.kernel)
}

/// A padded lane layout `[ch, hp, wp, np]` of an NCHW tensor `[n, ch, h, w]` placed at row
/// `top`, column `left`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Padded {
    n: usize,
    ch: usize,
    h: usize,
    w: usize,
    top: usize,
    left: usize,
    hp: usize,
    wp: usize,
    np: usize,
}

impl Padded {
    fn new(
        n: usize,
        ch: usize,
        (h, w): (usize, usize),
        (top, bottom): (usize, usize),
        (left, right): (usize, usize),
    ) -> Padded {
        Padded { n, ch, h, w, top, left, hp: top + h + bottom, wp: left + w + right, np: n.div_ceil(LANES) * LANES }
    }

    fn plane(&self) -> usize {
        self.hp * self.wp * self.np
    }

    fn len(&self) -> usize {
        self.ch * self.plane()
    }
}

/// Raw pointer shared by tasks that write disjoint elements of one buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every user writes elements no other task touches, inside a buffer that outlives
// the parallel loop.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the `Send` wrapper, not the field).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// `x` (NCHW, `[l.n, l.ch, l.h, l.w]`) into `dst` as `l`'s padded lanes; padding and the
/// lanes past `l.n` are zero.
fn to_lanes(x: &[f32], l: &Padded, dst: &mut Vec<f32>) {
    assert_eq!(x.len(), l.n * l.ch * l.h * l.w, "to_lanes input length");
    dst.resize(l.len(), 0.0);
    let (hw, row, np) = (l.h * l.w, l.wp * l.np, l.np);
    let block = transpose_block(l.ch, hw);
    dst.par_chunks_mut(block * l.plane()).enumerate().for_each(|(bi, dblock)| {
        for (ci, d) in dblock.chunks_exact_mut(l.plane()).enumerate() {
            d[..l.top * row].fill(0.0);
            d[(l.top + l.h) * row..].fill(0.0);
            for y in 0..l.h {
                let r = &mut d[(l.top + y) * row..][..row];
                r[..l.left * np].fill(0.0);
                r[(l.left + l.w) * np..].fill(0.0);
            }
            // The interior, 16 images × 16 pixels at a time (lanes past `n` come out zero).
            let ch = bi * block + ci;
            let at = |q: usize| ((l.top + q / l.w) * l.wp + l.left + q % l.w) * np;
            // SAFETY: AVX-512F is active (only lane convs call this); image `i < n`'s plane
            // `ch` is `x[(i·C + ch)·hw ..][..hw]`, inside `x` (length asserted above); every
            // store `at(q) + i0 .. + 16` with `q < hw`, `i0 + 16 ≤ np` is inside `d`.
            unsafe { transpose_in(x.as_ptr().add(ch * hw), l.ch * hw, l.n, hw, d.as_mut_ptr(), np, at) };
        }
    });
}

/// `x`, already on lanes (`[l.ch, l.h, l.w, l.n]` with `l.n = l.np`), into `dst` with `l`'s
/// zero padding: whole rows of `w·n` floats copied.
fn pad_lanes(x: &[f32], l: &Padded, dst: &mut Vec<f32>) {
    let src_plane = l.h * l.w * l.np;
    assert!(l.n == l.np && x.len() == l.ch * src_plane, "pad_lanes input length");
    dst.resize(l.len(), 0.0);
    if src_plane == 0 {
        dst.fill(0.0);
        return;
    }
    let (row, np, src_row) = (l.wp * l.np, l.np, l.w * l.np);
    dst.par_chunks_mut(l.plane()).zip(x.par_chunks(src_plane)).for_each(|(d, s)| {
        d[..l.top * row].fill(0.0);
        d[(l.top + l.h) * row..].fill(0.0);
        for (y, s) in s.chunks_exact(src_row).enumerate() {
            let r = &mut d[(l.top + y) * row..][..row];
            r[..l.left * np].fill(0.0);
            r[l.left * np..][..src_row].copy_from_slice(s);
            r[(l.left + l.w) * np..].fill(0.0);
        }
    });
}

/// An NCHW tensor of `shape` on lanes, `[C, H, W, N]` (a [`lane_batch`]), into `dst`.
pub(crate) fn nchw_to_lanes(x: &[f32], shape: [usize; 4], dst: &mut Vec<f32>) {
    let [n, c, h, w] = shape;
    debug_assert!(n.is_multiple_of(LANES));
    to_lanes(x, &Padded::new(n, c, (h, w), (0, 0), (0, 0)), dst);
}

/// A lane tensor `[C, H, W, N]` back to NCHW `shape`: written into `dst`, or added to it
/// when `accumulate`.
pub(crate) fn lanes_to_nchw(src: &[f32], shape: [usize; 4], dst: &mut [f32], accumulate: bool) {
    let [n, c, h, w] = shape;
    debug_assert!(n.is_multiple_of(LANES));
    from_lanes(src, c, Scatter::dense(h, w), n, n, None, dst, accumulate);
}

/// `db[m] += Σ dy[m, ·]` for a lane tensor `dy` of `m` channels (each channel's values are
/// one contiguous block), summed in f64 per 4 Ki block.
pub(crate) fn bias_grad(dy: &[f32], m: usize, db: &mut [f32]) {
    assert!(m > 0 && db.len() == m && dy.len().is_multiple_of(m), "bias_grad lengths");
    let plane = dy.len() / m;
    let sums: Vec<f64> = (0..m)
        .into_par_iter()
        .map(|ch| dy[ch * plane..][..plane].chunks(4096).map(|c| c.iter().sum::<f32>() as f64).sum())
        .collect();
    db.iter_mut().zip(sums).for_each(|(g, s)| *g += s as f32);
}

/// GlobalAveragePool of a lane tensor `x` (`[c, p, n]`) into NCHW `y` (`[n, c]`): each
/// mean summed in f64 in pixel order, as the NCHW kernel does.
pub(crate) fn global_avg_forward(n: usize, c: usize, p: usize, x: &[f32], y: &mut [f32]) {
    assert!(x.len() == c * p * n && y.len() == n * c, "global_avg_forward lengths");
    let sums: Vec<Vec<f64>> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut s = vec![0.0f64; n];
            for px in x[ch * p * n..][..p * n].chunks_exact(n.max(1)) {
                s.iter_mut().zip(px).for_each(|(s, &v)| *s += v as f64);
            }
            s
        })
        .collect();
    for (ch, s) in sums.iter().enumerate() {
        for (img, &v) in s.iter().enumerate() {
            y[img * c + ch] = if p == 0 { f32::NAN } else { (v / p as f64) as f32 };
        }
    }
}

/// GlobalAveragePool backward onto lanes: `dx[ch, q, img] = dy[img, ch] / p` (added to `dx`
/// unless `fresh`).
pub(crate) fn global_avg_backward(n: usize, c: usize, p: usize, dy: &[f32], dx: &mut [f32], fresh: bool) {
    assert!(dx.len() == c * p * n && dy.len() == n * c, "global_avg_backward lengths");
    if p == 0 || n == 0 {
        return;
    }
    let inv = 1.0 / p as f32;
    dx.par_chunks_mut(p * n).enumerate().for_each(|(ch, plane)| {
        let g: Vec<f32> = (0..n).map(|img| dy[img * c + ch] * inv).collect();
        for px in plane.chunks_exact_mut(n) {
            if fresh {
                px.copy_from_slice(&g);
            } else {
                px.iter_mut().zip(&g).for_each(|(d, &g)| *d += g);
            }
        }
    });
}

/// `dst[at(q) + i] = src[i·stride + q]` for images `i < np` (zero for `i ≥ n`) and pixels
/// `q < hw`.
///
/// # Safety
/// AVX-512F available; the reads for `i < n`, `q < hw` and the writes for `i < np` are in
/// bounds; `np` is a multiple of 16.
unsafe fn transpose_in(
    src: *const f32,
    stride: usize,
    n: usize,
    hw: usize,
    dst: *mut f32,
    np: usize,
    at: impl Fn(usize) -> usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: forwarded from the caller.
        unsafe { avx512::transpose_in(src, stride, n, hw, dst, np, at) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (src, stride, n, hw, dst, np, at);
        unreachable!("lanes_applies declines without AVX-512");
    }
}

/// `dst[i·stride + q] = src[q·np + i] (+ bias)`, or added to `dst` when `accumulate`, for
/// images `i < n` and `p` consecutive positions `q`.
///
/// # Safety
/// AVX-512F available; reads `src[q·np + i0 .. + 16]` for `q < p`, `i0 < n` a multiple of
/// 16 (so `np ≥ i0 + 16`) and the writes are in bounds.
#[allow(clippy::too_many_arguments)]
unsafe fn transpose_out(
    src: *const f32,
    np: usize,
    n: usize,
    p: usize,
    dst: *mut f32,
    stride: usize,
    bias: f32,
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: forwarded from the caller.
        unsafe { avx512::transpose_out(src, np, n, p, dst, stride, bias, accumulate) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (src, np, n, p, dst, stride, bias, accumulate);
        unreachable!("lanes_applies declines without AVX-512");
    }
}

/// Channels per task of the layout transposes: enough that one image's share is at least
/// 2 KiB of contiguous memory, while leaving work for every thread.
fn transpose_block(channels: usize, plane: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (512usize.div_ceil(plane.max(1))).clamp(1, channels.div_ceil(2 * threads).max(1))
}

/// Where a lane buffer's `[rows, gh·gw, np]` grid lands in an NCHW tensor of planes
/// `h × w`: grid position `(y, x)` is pixel `(y·sy + y0, x·sx + x0)`.
#[derive(Debug, Clone, Copy)]
struct Scatter {
    gh: usize,
    gw: usize,
    h: usize,
    w: usize,
    sy: usize,
    sx: usize,
    y0: usize,
    x0: usize,
}

impl Scatter {
    /// The whole plane, position for position.
    fn dense(h: usize, w: usize) -> Scatter {
        Scatter { gh: h, gw: w, h, w, sy: 1, sx: 1, y0: 0, x0: 0 }
    }

    /// Whether every grid position lands inside the plane.
    fn inside(&self) -> bool {
        self.gh == 0
            || self.gw == 0
            || ((self.gh - 1) * self.sy + self.y0 < self.h && (self.gw - 1) * self.sx + self.x0 < self.w)
    }
}

/// `dst[img, r, pixel(q)] = src[r, q, img] (+ bias[r])`, or added to `dst` when
/// `accumulate`, for `rows` rows and the grid positions `q` of `at` (`src` is
/// `[≥rows, gh·gw, np]`, `dst` is `[n, rows, h·w]`).
#[allow(clippy::too_many_arguments)]
fn from_lanes(
    src: &[f32],
    rows: usize,
    at: Scatter,
    n: usize,
    np: usize,
    bias: Option<&[f32]>,
    dst: &mut [f32],
    accumulate: bool,
) {
    let (p, hw) = (at.gh * at.gw, at.h * at.w);
    assert!(src.len() >= rows * p * np && dst.len() == n * rows * hw, "from_lanes lengths");
    assert!(at.inside(), "from_lanes grid");
    let out = SharedMut(dst.as_mut_ptr());
    let block = transpose_block(rows, hw);
    let dense = (at.gh, at.gw, at.sy, at.sx, at.y0, at.x0) == (at.h, at.w, 1, 1, 0, 0);
    (0..rows.div_ceil(block)).into_par_iter().for_each(|bi| {
        let (r0, r1) = (bi * block, ((bi + 1) * block).min(rows));
        if dense {
            for r in r0..r1 {
                let b = bias.map_or(0.0, |b| b[r]);
                // SAFETY: AVX-512F is active (only lane convs call this); row `r` of `src`
                // holds `p·np` floats (length asserted above); plane `r` of every image is
                // `hw = p` floats at `(img·rows + r)·hw`, this task's rows only.
                unsafe {
                    transpose_out(
                        src.as_ptr().add(r * p * np),
                        np,
                        n,
                        p,
                        out.ptr().add(r * hw),
                        rows * hw,
                        b,
                        accumulate,
                    )
                };
            }
            return;
        }
        for img in 0..n {
            // SAFETY: planes `r0..r1` of image `img` (inside `dst`, checked above): each
            // task writes its own block of planes.
            let planes =
                unsafe { std::slice::from_raw_parts_mut(out.ptr().add((img * rows + r0) * hw), (r1 - r0) * hw) };
            for (r, d) in (r0..r1).zip(planes.chunks_exact_mut(hw)) {
                let b = bias.map_or(0.0, |b| b[r]);
                let block = &src[r * p * np..][..p * np];
                for y in 0..at.gh {
                    let row = &mut d[(y * at.sy + at.y0) * at.w + at.x0..];
                    let lanes = &block[y * at.gw * np + img..];
                    if accumulate {
                        for x in 0..at.gw {
                            row[x * at.sx] += lanes[x * np];
                        }
                    } else {
                        for x in 0..at.gw {
                            row[x * at.sx] = lanes[x * np] + b;
                        }
                    }
                }
            }
        }
    });
}

/// `dst[r, pixel(q), ..] = src[r, q, ..] (+ bias[r])`, or added to `dst` when
/// `accumulate`, for `rows` rows and the grid positions `q` of `at`: [`from_lanes`] for a
/// destination on lanes (`src` is `[≥rows, gh·gw, np]`, `dst` is `[rows, h·w, np]`).
fn to_lane_grid(
    src: &[f32],
    rows: usize,
    at: Scatter,
    np: usize,
    bias: Option<&[f32]>,
    dst: &mut [f32],
    accumulate: bool,
) {
    let (p, hw) = (at.gh * at.gw, at.h * at.w);
    assert!(src.len() >= rows * p * np && dst.len() == rows * hw * np, "to_lane_grid lengths");
    assert!(at.inside(), "to_lane_grid grid");
    if rows == 0 || hw * np == 0 {
        return;
    }
    dst.par_chunks_mut(hw * np).enumerate().for_each(|(r, plane)| {
        let b = bias.map_or(0.0, |b| b[r]);
        let block = &src[r * p * np..][..p * np];
        for y in 0..at.gh {
            for x in 0..at.gw {
                let d = &mut plane[((y * at.sy + at.y0) * at.w + x * at.sx + at.x0) * np..][..np];
                let s = &block[(y * at.gw + x) * np..][..np];
                if accumulate {
                    d.iter_mut().zip(s).for_each(|(d, &s)| *d += s);
                } else {
                    d.iter_mut().zip(s).for_each(|(d, &s)| *d = s + b);
                }
            }
        }
    });
}

/// Packs `rows` filters of `k` taps for the micro-kernel: `packed[(b·k + kk)·MR + r] =
/// value(b·MR + r, kk)`, zero for rows past `rows`.
fn pack(rows: usize, k: usize, packed: &mut Vec<f32>, value: impl Fn(usize, usize) -> f32 + Sync) {
    packed.resize(rows.div_ceil(MR) * k * MR, 0.0);
    packed.par_chunks_mut(k * MR).enumerate().for_each(|(b, block)| {
        for (kk, taps) in block.chunks_exact_mut(MR).enumerate() {
            for (r, v) in taps.iter_mut().enumerate() {
                let row = b * MR + r;
                *v = if row < rows { value(row, kk) } else { 0.0 };
            }
        }
    });
}

/// Lane vectors per micro-kernel call: `nvec` vectors cut into runs of 3 (2 where that
/// evens them out), as `(first vector, count)`.
fn lane_chunks(nvec: usize) -> Vec<(usize, usize)> {
    let count = nvec.div_ceil(3);
    let mut out = Vec::with_capacity(count);
    let mut v0 = 0;
    for i in 0..count {
        let nv = (nvec - v0).div_ceil(count - i);
        out.push((v0, nv));
        v0 += nv;
    }
    out
}

/// `out[r, (y, x), lanes] = Σ_kk packed[r, kk] · src[(y·sy·wp + x·sx)·np + offs[kk] + lanes]`
/// for `rows` filters over an `oh × ow` output: one task per (output row, lane chunk,
/// filter chunk); inside it, per chunk of [`KC_CHANNELS`] input channels, the chunk's taps
/// around the row stay in L1/L2 while every filter block passes over them. `out` holds at
/// least `[rows rounded up to MR, oh·ow, np]`; `l` gives `wp` and `np`.
#[allow(clippy::too_many_arguments)]
fn conv_lanes(
    packed: &[f32],
    rows: usize,
    k: usize,
    offs: &[isize],
    src: &[f32],
    l: &Padded,
    (oh, ow): (usize, usize),
    (sy, sx): (usize, usize),
    out: &mut [f32],
) {
    let (np, p) = (l.np, oh * ow);
    let blocks = rows.div_ceil(MR);
    assert!(packed.len() >= blocks * k * MR && offs.len() == k && k > 0, "conv_lanes filters");
    assert!(out.len() >= blocks * MR * p * np, "conv_lanes output length");
    if p == 0 {
        return;
    }
    let max_off = offs.iter().copied().max().unwrap_or(0);
    assert!(
        offs.iter().all(|&o| o >= 0)
            && ((oh - 1) * sy * l.wp + (ow - 1) * sx) * np + max_off as usize + np <= src.len(),
        "conv_lanes reads past its input"
    );
    let chunks = lane_chunks(np / LANES);
    let tiles = oh * chunks.len();
    let split = kernels::filter_split(tiles, rayon::current_num_threads(), blocks);
    let dst = SharedMut(out.as_mut_ptr());
    // Taps per input channel: the K chunks hold whole channels.
    let kc = (KC_CHANNELS * (k / l.ch).max(1)).min(k);
    kernels::for_each_task(tiles * split, |t| {
        let (tile, part) = (t / split, t % split);
        let (y, (v0, nv)) = (tile / chunks.len(), chunks[tile % chunks.len()]);
        let (b0, b1) = (part * blocks / split, (part + 1) * blocks / split);
        for k0 in (0..k).step_by(kc) {
            let kn = kc.min(k - k0);
            for x in 0..ow {
                let base = (y * sy * l.wp + x * sx) * np + v0 * LANES;
                let q = y * ow + x;
                for b in b0..b1 {
                    let a = packed[(b * k + k0) * MR..][..kn * MR].as_ptr();
                    // SAFETY: AVX-512F is active (`lanes_applies`); `a` holds `kn·MR` floats;
                    // every read `base + offs[kk] .. + 16·nv` ends within `src` (asserted
                    // above for the last position, `v0 + nv ≤ np/16`); the MR output rows
                    // `(b·MR + r)·p·np + q·np + v0·16 .. + 16·nv` lie inside `out` and belong
                    // to this task's filter block, row and lanes alone.
                    unsafe {
                        direct::micro(
                            nv,
                            16 * nv,
                            kn,
                            a,
                            src.as_ptr().add(base),
                            offs[k0..].as_ptr(),
                            dst.ptr().add((b * MR * p + q) * np + v0 * LANES),
                            p * np,
                            k0 > 0,
                        );
                    }
                }
            }
        }
    });
}

/// The input gradient's pixel classes: along an axis of stride `s`, the input pixels
/// `s·u + r` for each residue `r < s`. Tap `i` of the filters reaches pixel `s·u + r` from
/// output `u + δ_i` exactly when `r + pad_begin − i` is a multiple of `s`, `δ_i` being that
/// quotient; so a class (a residue per axis) gets its gradient as a stride-1 conv of `dY`
/// with the class's taps (all of them at stride 1, about `k/s` per axis at stride `s`).
///
/// The classes of one axis: for each residue `r < stride`, its `(tap, δ)` list and count of
/// pixels `ceil((input − r) / stride)`.
fn axis_classes(a: &Axis) -> Vec<(Vec<(usize, isize)>, usize)> {
    (0..a.stride)
        .map(|r| {
            let taps = (0..a.kernel)
                .filter(|&i| (r + a.pad_begin).abs_diff(i) % a.stride == 0)
                .map(|i| (i, (r as isize + a.pad_begin as isize - i as isize) / a.stride as isize))
                .collect();
            (taps, a.input.saturating_sub(r).div_ceil(a.stride))
        })
        .collect()
}

/// Padding `(before, after)` of `dY` along one axis so that every class reads inside it.
fn grad_pads(a: &Axis) -> (usize, usize) {
    let (mut before, mut after) = (0isize, 0isize);
    for (taps, count) in axis_classes(a) {
        for (_, d) in taps {
            if count > 0 {
                before = before.max(-d);
                after = after.max(count as isize - 1 + d - (a.output as isize - 1));
            }
        }
    }
    (before as usize, after as usize)
}

/// One conv node on batch lanes ([`lanes_applies`]), kept across steps: the packed filters,
/// the padded lanes of its input (kept from forward for the weight gradient) and the
/// scratch of its backward pass. Filters are repacked every step.
#[derive(Debug, Clone, Default)]
pub(crate) struct LaneConv {
    shape: [usize; 4],
    /// The forward's filters, `[M/MR][C·kh·kw][MR]`.
    packed: Vec<f32>,
    offs: Vec<isize>,
    /// `X'` from the last forward and its layout.
    xp: Vec<f32>,
    x_layout: Option<Padded>,
    /// The forward's input was on lanes with no padding: `xp` is unused, backward reads
    /// the caller's `x`.
    x_borrowed: bool,
    /// `dY'`, padded for the input gradient's classes.
    dyp: Vec<f32>,
    /// Output lanes: `Y'` in forward, a class of `dX'` in backward.
    out: Vec<f32>,
    /// Per input-gradient class ([`axis_classes`]), its packed filters.
    class_filters: Vec<Vec<f32>>,
    /// The weight gradient's partial sums, one `dw` per chunk of output rows.
    dw_parts: Vec<f32>,
}

impl LaneConv {
    pub(crate) fn new(g: &ConvGeometry) -> LaneConv {
        let [_, ah, aw] = &g.axes;
        LaneConv { shape: [g.m, g.c, ah.kernel, aw.kernel], ..LaneConv::default() }
    }

    /// Whether this node's buffers fit the call (the filter shape of the first call).
    pub(crate) fn fits(&self, g: &ConvGeometry) -> bool {
        let [_, ah, aw] = &g.axes;
        self.shape == [g.m, g.c, ah.kernel, aw.kernel]
    }

    fn input_layout(g: &ConvGeometry) -> Padded {
        let [_, ah, aw] = &g.axes;
        Padded::new(g.n, g.c, (ah.input, aw.input), (ah.pad_begin, ah.pad_end), (aw.pad_begin, aw.pad_end))
    }

    /// `dY` padded so that every input-gradient class reads inside it ([`grad_pads`]).
    fn grad_layout(g: &ConvGeometry) -> Padded {
        let [_, ah, aw] = &g.axes;
        Padded::new(g.n, g.m, (ah.output, aw.output), grad_pads(ah), grad_pads(aw))
    }

    /// `y = conv(x, w) + b` for a geometry [`lanes_applies`] or (input on lanes)
    /// [`accepts_lanes`] to; `x` and `y` are NCHW or, where `x_lanes` / `y_lanes`, on lanes
    /// (`[C, H, W, N]`, a [`lane_batch`]). Keeps `x`'s padded lanes for backward, unless `x`
    /// is on lanes and needs no padding: then backward reads the caller's `x`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &mut self,
        g: &ConvGeometry,
        x: &[f32],
        x_lanes: bool,
        w: &[f32],
        b: Option<&[f32]>,
        y: &mut [f32],
        y_lanes: bool,
    ) {
        debug_assert!(supported(g) && self.fits(g));
        debug_assert!(!(x_lanes || y_lanes) || g.n.is_multiple_of(LANES));
        let [m, c, kh, kw] = self.shape;
        let k = c * kh * kw;
        assert_eq!(w.len(), m * k, "filter length");
        let l = Self::input_layout(g);
        let borrowed = x_lanes && (l.hp, l.wp) == (l.h, l.w);
        if borrowed {
            assert_eq!(x.len(), l.len(), "lane input length");
        } else if x_lanes {
            pad_lanes(x, &l, &mut self.xp);
        } else {
            to_lanes(x, &l, &mut self.xp);
        }
        self.x_layout = Some(l);
        self.x_borrowed = borrowed;
        pack(m, k, &mut self.packed, |row, kk| w[row * k + kk]);
        self.offs.clear();
        for ch in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    self.offs.push((ch * l.plane() + (i * l.wp + j) * l.np) as isize);
                }
            }
        }
        let [_, ah, aw] = &g.axes;
        let (oh, ow) = (ah.output, aw.output);
        let src: &[f32] = if borrowed { x } else { &self.xp };
        let strides = (ah.stride, aw.stride);
        if y_lanes && b.is_none() && m.is_multiple_of(MR) {
            // The kernel's output layout is `y`'s: written in place.
            conv_lanes(&self.packed, m, k, &self.offs, src, &l, (oh, ow), strides, y);
            return;
        }
        self.out.resize(m.div_ceil(MR) * MR * oh * ow * l.np, 0.0);
        conv_lanes(&self.packed, m, k, &self.offs, src, &l, (oh, ow), strides, &mut self.out);
        if y_lanes {
            to_lane_grid(&self.out, m, Scatter::dense(oh, ow), l.np, b, y, false);
        } else {
            from_lanes(&self.out, m, Scatter::dense(oh, ow), g.n, l.np, b, y, false);
        }
    }

    /// `dw += ∂loss/∂w` and `dx = ∂loss/∂x` (added to `dx` unless `dx_fresh`) from `dy`,
    /// after [`LaneConv::forward`] of the same geometry with the same `x`; `dy` and `dx` are
    /// NCHW or, where `dy_lanes` / `dx_lanes`, on lanes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &mut self,
        g: &ConvGeometry,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dy_lanes: bool,
        dx: Option<&mut [f32]>,
        dx_lanes: bool,
        dx_fresh: bool,
        dw: Option<&mut [f32]>,
    ) {
        let xl = self.x_layout.expect("LaneConv::backward runs after its forward");
        assert_eq!(xl, Self::input_layout(g), "LaneConv::backward geometry differs from the forward's");
        let [m, c, kh, kw] = self.shape;
        let [_, ah, aw] = &g.axes;
        let dl = Self::grad_layout(g);
        let dy_borrowed = dy_lanes && (dl.hp, dl.wp) == (dl.h, dl.w);
        if dy_borrowed {
            assert_eq!(dy.len(), dl.len(), "lane gradient length");
        } else if dy_lanes {
            pad_lanes(dy, &dl, &mut self.dyp);
        } else {
            to_lanes(dy, &dl, &mut self.dyp);
        }
        let dsrc: &[f32] = if dy_borrowed { dy } else { &self.dyp };
        if let Some(dw) = dw {
            let xsrc: &[f32] = if self.x_borrowed { x } else { &self.xp };
            assert!(xsrc.len() >= xl.len(), "LaneConv::backward input length");
            filter_grad(xsrc, &xl, dsrc, &dl, g, &mut self.dw_parts, dw);
        }
        let Some(dx) = dx else { return };
        let (hc, wc) = (axis_classes(ah), axis_classes(aw));
        let whole = hc.len() * wc.len() == 1;
        self.class_filters.resize_with(hc.len() * wc.len(), Vec::new);
        for (class, packed) in self.class_filters.iter_mut().enumerate() {
            let (ry, rx) = (class / wc.len(), class % wc.len());
            let ((th, gh), (tw, gw)) = (&hc[ry], &wc[rx]);
            let at =
                Scatter { gh: *gh, gw: *gw, h: ah.input, w: aw.input, sy: ah.stride, sx: aw.stride, y0: ry, x0: rx };
            let taps = th.len() * tw.len();
            if taps == 0 || at.gh * at.gw == 0 {
                // No filter tap reaches these pixels (a 1×2 conv of stride 2, say): no gradient.
                if dx_fresh {
                    zero_pixels(c, at, g.n, dx_lanes, dx);
                }
                continue;
            }
            let k = m * taps;
            // Row `ci`, tap `kk = (mi, i, j)` in the class's order: `w[mi, ci, i, j]`. Loops,
            // not a per-element closure: its divisions took about 1 ms per 4×4 layer.
            packed.resize(c.div_ceil(MR) * k * MR, 0.0);
            packed.par_chunks_mut(k * MR).enumerate().for_each(|(b, block)| {
                let mut taps_out = block.chunks_exact_mut(MR);
                for mi in 0..m {
                    for &(i, _) in th {
                        for &(j, _) in tw {
                            let dst = taps_out.next().expect("k = m · taps rows of MR");
                            for (r, v) in dst.iter_mut().enumerate() {
                                let ci = b * MR + r;
                                *v = if ci < c { w[((mi * c + ci) * kh + i) * kw + j] } else { 0.0 };
                            }
                        }
                    }
                }
            });
            self.offs.clear();
            for mi in 0..m {
                for &(_, di) in th {
                    for &(_, dj) in tw {
                        let (row, col) = (di + dl.top as isize, dj + dl.left as isize);
                        debug_assert!(row >= 0 && col >= 0);
                        self.offs.push((mi * dl.plane()) as isize + (row * dl.wp as isize + col) * dl.np as isize);
                    }
                }
            }
            let grid = (at.gh, at.gw);
            if dx_lanes && dx_fresh && whole && c.is_multiple_of(MR) {
                // One class covering every pixel in the kernel's layout: written in place.
                conv_lanes(packed, c, k, &self.offs, dsrc, &dl, grid, (1, 1), dx);
                continue;
            }
            self.out.resize(c.div_ceil(MR) * MR * at.gh * at.gw * dl.np, 0.0);
            conv_lanes(packed, c, k, &self.offs, dsrc, &dl, grid, (1, 1), &mut self.out);
            if dx_lanes {
                to_lane_grid(&self.out, c, at, dl.np, None, dx, !dx_fresh);
            } else {
                from_lanes(&self.out, c, at, g.n, dl.np, None, dx, !dx_fresh);
            }
        }
    }
}

/// Zeroes the pixels of `at` in every plane of `dx` (`[n, rows, h·w]`, or on lanes
/// `[rows, h·w, n]`).
fn zero_pixels(rows: usize, at: Scatter, n: usize, lanes: bool, dx: &mut [f32]) {
    let (plane, width) = if lanes { (at.h * at.w * n, n) } else { (at.h * at.w, 1) };
    for plane in dx.chunks_exact_mut(plane).take(if lanes { rows } else { n * rows }) {
        for y in 0..at.gh {
            for x in 0..at.gw {
                plane[((y * at.sy + at.y0) * at.w + x * at.sx + at.x0) * width..][..width].fill(0.0);
            }
        }
    }
}

/// Bytes of `X'` rows (every channel) one weight-gradient task keeps in L2 while all taps,
/// filter blocks and channel blocks pass over them.
const DW_TASK_BYTES: usize = 512 * 1024;

/// `dw[m, c, i, j] += Σ_{y, x, lanes} dy'[m, y + top, x + left, lanes] · x'[c, y·sh + i,
/// x·sw + j, lanes]` over the `oh × ow` outputs, by chunks of output rows: one task per
/// chunk (and block of filters, where chunks are few) computes every tap over those rows
/// into its own partial `dw`, so the `X'` rows they read stay in L2 across the 9 taps (one
/// task per tap streamed the whole `X'` from memory per tap: 120–130 → 150–170 GFLOP/s at
/// 28×28 and 14×14 on 2 threads, the same within noise at 7×7 and 4×4: the ignored
/// `filter_grad_speed` test, alternated with the old code). The partials are added in chunk order, so the sums do not depend on the thread
/// count.
#[allow(clippy::too_many_arguments)]
fn filter_grad(
    xp: &[f32],
    xl: &Padded,
    dyp: &[f32],
    dl: &Padded,
    g: &ConvGeometry,
    partials: &mut Vec<f32>,
    dw: &mut [f32],
) {
    let [_, ah, aw] = &g.axes;
    let ((oh, ow), (kh, kw), (sh, sw)) = ((ah.output, aw.output), (ah.kernel, aw.kernel), (ah.stride, aw.stride));
    let (m, c, np) = (dl.ch, xl.ch, xl.np);
    assert!(
        dl.np == np && dw.len() == m * c * kh * kw && xp.len() >= xl.len() && dyp.len() >= dl.len(),
        "filter_grad operands"
    );
    if oh * ow == 0 {
        return;
    }
    assert!(
        dl.top + oh <= dl.hp && dl.left + ow <= dl.wp && (oh - 1) * sh + kh <= xl.hp && (ow - 1) * sw + kw <= xl.wp,
        "filter_grad window"
    );
    let taps = kh * kw;
    let x_row = c * xl.wp * np * 4;
    // Output rows per task: their input rows, `(rows − 1)·sh + kh` of every channel, fit the budget.
    let rows = ((DW_TASK_BYTES / x_row.max(1)).saturating_sub(kh) / sh + 1).clamp(1, oh);
    let chunks = oh.div_ceil(rows);
    let (cols, len, a_rx, b_rx) = if sw == 1 { (1, ow * np, 0, 0) } else { (ow, np, np, sw * np) };
    let (a_ry, b_ry) = (dl.wp * np, sh * xl.wp * np);
    // Few chunks (small planes): filter blocks split too, each task writing its own rows of
    // its chunk's partial (the same sums whatever the split).
    let threads = rayon::current_num_threads().max(1);
    let per_task =
        if chunks >= 4 * threads { m } else { (m * chunks).div_ceil(4 * threads).next_multiple_of(4).min(m) };
    // Every element of every partial is written below (no zeroing between steps).
    partials.resize(chunks * m * c * taps, 0.0);
    partials.par_chunks_mut(m * c * taps).enumerate().for_each(|(ci, whole)| {
        whole.par_chunks_mut(per_task * c * taps).enumerate().for_each(|(gi, part)| {
            let (y0, y1) = (ci * rows, ((ci + 1) * rows).min(oh));
            let walk = Walk { rows: y1 - y0, cols, len, a_ry, a_rx, b_ry, b_rx };
            let (mg0, mg1) = (gi * per_task, ((gi + 1) * per_task).min(m));
            let a0 = (dl.top * dl.wp + dl.left) * np + y0 * a_ry;
            for c0 in (0..c).step_by(4) {
                let cn = (c - c0).min(4);
                for tap in 0..taps {
                    let (i, j) = (tap / kw, tap % kw);
                    let b = xp[c0 * xl.plane() + (i * xl.wp + j) * np + y0 * b_ry..].as_ptr();
                    for m0 in (mg0..mg1).step_by(4) {
                        let mn = (mg1 - m0).min(4);
                        let a = dyp[m0 * dl.plane() + a0..].as_ptr();
                        if (mn, cn) == (4, 4) {
                            // SAFETY: AVX-512F is active; rows `m0..m0+4` of dY' and channels
                            // `c0..c0+4` of X' are read along `walk` from output row `y0`,
                            // inside the buffers by the window assert above.
                            let s = unsafe { dots::<4, 4>(a, dl.plane(), b, xl.plane(), &walk) };
                            for (r, row) in s.iter().enumerate() {
                                for (q, &v) in row.iter().enumerate() {
                                    part[((m0 - mg0 + r) * c + c0 + q) * taps + tap] = v;
                                }
                            }
                        } else {
                            for r in 0..mn {
                                for q in 0..cn {
                                    let (ar, bq) = (a.wrapping_add(r * dl.plane()), b.wrapping_add(q * xl.plane()));
                                    // SAFETY: as above, one row and one channel.
                                    let s = unsafe { dots::<1, 1>(ar, 0, bq, 0, &walk) };
                                    part[((m0 - mg0 + r) * c + c0 + q) * taps + tap] = s[0][0];
                                }
                            }
                        }
                    }
                }
            }
        });
    });
    for part in partials.chunks_exact(m * c * taps) {
        dw.iter_mut().zip(part).for_each(|(d, &p)| *d += p);
    }
}

/// The positions a block of dot products runs over: `rows × cols` runs of `len` floats
/// (a multiple of 16), run `(y, x)` at `y·a_ry + x·a_rx` in the first operand and
/// `y·b_ry + x·b_rx` in the second.
struct Walk {
    rows: usize,
    cols: usize,
    len: usize,
    a_ry: usize,
    a_rx: usize,
    b_ry: usize,
    b_rx: usize,
}

/// `out[r][s] = Σ_{runs (y, x), v < len} a[r·a_cs + y·a_ry + x·a_rx + v] ·
/// b[s·b_cs + y·b_ry + x·b_rx + v]` over `walk`: `R × S` dot products along lanes, each
/// summed as 16 lane sums added at the end.
///
/// # Safety
/// AVX-512F available; every read above is inside its buffer.
unsafe fn dots<const R: usize, const S: usize>(
    a: *const f32,
    a_cs: usize,
    b: *const f32,
    b_cs: usize,
    walk: &Walk,
) -> [[f32; S]; R] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: forwarded from the caller.
        unsafe { avx512::dots::<R, S>(a, a_cs, b, b_cs, walk) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (a, a_cs, b, b_cs, walk);
        unreachable!("lanes_applies declines without AVX-512");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Walk;

    /// The 16 × 16 transpose of `r` (row `i` lane `j` → row `j` lane `i`): interleaves of
    /// singles, then of pairs, then two rounds of 128-bit block shuffles.
    #[target_feature(enable = "avx512f")]
    pub(super) fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        let mut t = [_mm512_setzero_ps(); 16];
        for k in 0..8 {
            t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
            t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
        }
        let pd = |a: __m512, b: __m512, hi: bool| {
            let (a, b) = (_mm512_castps_pd(a), _mm512_castps_pd(b));
            _mm512_castpd_ps(if hi { _mm512_unpackhi_pd(a, b) } else { _mm512_unpacklo_pd(a, b) })
        };
        let mut u = [_mm512_setzero_ps(); 16];
        for k in 0..4 {
            u[4 * k] = pd(t[4 * k], t[4 * k + 2], false);
            u[4 * k + 1] = pd(t[4 * k], t[4 * k + 2], true);
            u[4 * k + 2] = pd(t[4 * k + 1], t[4 * k + 3], false);
            u[4 * k + 3] = pd(t[4 * k + 1], t[4 * k + 3], true);
        }
        let mut v = [_mm512_setzero_ps(); 16];
        for h in 0..2 {
            for k in 0..4 {
                let (a, b) = (u[8 * h + k], u[8 * h + k + 4]);
                v[8 * h + k] = _mm512_shuffle_f32x4::<0x88>(a, b);
                v[8 * h + k + 4] = _mm512_shuffle_f32x4::<0xdd>(a, b);
            }
        }
        let mut out = [_mm512_setzero_ps(); 16];
        for k in 0..8 {
            out[k] = _mm512_shuffle_f32x4::<0x88>(v[k], v[k + 8]);
            out[k + 8] = _mm512_shuffle_f32x4::<0xdd>(v[k], v[k + 8]);
        }
        out
    }

    /// See [`super::transpose_in`].
    ///
    /// # Safety
    /// As [`super::transpose_in`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_in(
        src: *const f32,
        stride: usize,
        n: usize,
        hw: usize,
        dst: *mut f32,
        np: usize,
        at: impl Fn(usize) -> usize,
    ) {
        // SAFETY (whole body): extents as the caller guarantees; masked loads read only the
        // first `qn` pixels.
        unsafe {
            for i0 in (0..np).step_by(16) {
                for q0 in (0..hw).step_by(16) {
                    let qn = (hw - q0).min(16);
                    let mask: __mmask16 = if qn == 16 { !0 } else { (1u16 << qn) - 1 };
                    let mut rows = [_mm512_setzero_ps(); 16];
                    for (i, row) in rows.iter_mut().enumerate().take(n.saturating_sub(i0).min(16)) {
                        *row = _mm512_maskz_loadu_ps(mask, src.add((i0 + i) * stride + q0));
                    }
                    let cols = transpose16(rows);
                    for (q, col) in cols.iter().enumerate().take(qn) {
                        _mm512_storeu_ps(dst.add(at(q0 + q) + i0), *col);
                    }
                }
            }
        }
    }

    /// See [`super::transpose_out`].
    ///
    /// # Safety
    /// As [`super::transpose_out`].
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn transpose_out(
        src: *const f32,
        np: usize,
        n: usize,
        p: usize,
        dst: *mut f32,
        stride: usize,
        bias: f32,
        accumulate: bool,
    ) {
        let b = _mm512_set1_ps(bias);
        // SAFETY (whole body): extents as the caller guarantees; masked loads and stores
        // touch only the first `qn` positions of each image.
        unsafe {
            for i0 in (0..n).step_by(16) {
                for q0 in (0..p).step_by(16) {
                    let qn = (p - q0).min(16);
                    let mask: __mmask16 = if qn == 16 { !0 } else { (1u16 << qn) - 1 };
                    let mut cols = [_mm512_setzero_ps(); 16];
                    for (q, col) in cols.iter_mut().enumerate().take(qn) {
                        *col = _mm512_loadu_ps(src.add((q0 + q) * np + i0));
                    }
                    let rows = transpose16(cols);
                    for (i, row) in rows.iter().enumerate().take((n - i0).min(16)) {
                        let d = dst.add((i0 + i) * stride + q0);
                        let v = if accumulate {
                            _mm512_add_ps(_mm512_maskz_loadu_ps(mask, d), *row)
                        } else {
                            _mm512_add_ps(*row, b)
                        };
                        _mm512_mask_storeu_ps(d, mask, v);
                    }
                }
            }
        }
    }

    /// See [`super::dots`].
    ///
    /// # Safety
    /// As [`super::dots`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dots<const R: usize, const S: usize>(
        a: *const f32,
        a_cs: usize,
        b: *const f32,
        b_cs: usize,
        walk: &Walk,
    ) -> [[f32; S]; R] {
        debug_assert!(walk.len.is_multiple_of(16));
        let mut acc = [[_mm512_setzero_ps(); S]; R];
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            for y in 0..walk.rows {
                for x in 0..walk.cols {
                    let (ay, by) = (a.add(y * walk.a_ry + x * walk.a_rx), b.add(y * walk.b_ry + x * walk.b_rx));
                    for v in (0..walk.len).step_by(16) {
                        let mut av = [_mm512_setzero_ps(); R];
                        for (r, x) in av.iter_mut().enumerate() {
                            *x = _mm512_loadu_ps(ay.add(r * a_cs + v));
                        }
                        for s in 0..S {
                            let bv = _mm512_loadu_ps(by.add(s * b_cs + v));
                            for (row, a) in acc.iter_mut().zip(&av) {
                                row[s] = _mm512_fmadd_ps(*a, bv, row[s]);
                            }
                        }
                    }
                }
            }
        }
        let mut out = [[0.0; S]; R];
        if R * S == 16 {
            // One transposing reduction (45 shuffles and adds) instead of 16 horizontal sums.
            let mut v = [_mm512_setzero_ps(); 16];
            for (i, x) in acc.iter().flatten().enumerate() {
                v[i] = *x;
            }
            let mut sums = [0.0f32; 16];
            // SAFETY: `sums` is 16 floats.
            unsafe { _mm512_storeu_ps(sums.as_mut_ptr(), reduce16(v)) };
            for (i, o) in out.iter_mut().flatten().enumerate() {
                *o = sums[i];
            }
        } else {
            // Stored whole and summed in scalar code: `_mm512_reduce_add_ps` needs 256-bit
            // ops, which without AVX-512VL name only zmm0–15 and made 16 accumulators spill
            // inside the loop.
            for (o, a) in out.iter_mut().zip(&acc) {
                for (v, x) in o.iter_mut().zip(a) {
                    let mut l = [0.0f32; 16];
                    // SAFETY: `l` is 16 floats.
                    unsafe { _mm512_storeu_ps(l.as_mut_ptr(), *x) };
                    *v = l.iter().sum();
                }
            }
        }
        out
    }

    /// Lane `i` of the result is the sum of the 16 lanes of `v[i]`: pairs are interleaved
    /// and added within 128-bit blocks (two rounds), then the blocks across registers.
    #[target_feature(enable = "avx512f")]
    fn reduce16(v: [__m512; 16]) -> __m512 {
        // Round 1: w[k] block j = [Σ v2k(j0,j2), Σ v2k+1(j0,j2), Σ v2k(j1,j3), Σ v2k+1(j1,j3)].
        let mut w = [_mm512_setzero_ps(); 8];
        for (k, o) in w.iter_mut().enumerate() {
            let (a, b) = (v[2 * k], v[2 * k + 1]);
            *o = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
        }
        // Round 2: x[k] block j = the block-j sums of v4k … v4k+3.
        let mut x = [_mm512_setzero_ps(); 4];
        for (k, o) in x.iter_mut().enumerate() {
            let (a, b) = (_mm512_castps_pd(w[2 * k]), _mm512_castps_pd(w[2 * k + 1]));
            *o = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
        }
        // Across blocks: z0 = [x0 b0+b1, x0 b2+b3, x1 b0+b1, x1 b2+b3], z1 likewise for x2, x3;
        // then block i of the result = all four blocks of x[i].
        let z0 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(x[0], x[1]),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(x[0], x[1]),
        );
        let z1 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(x[2], x[3]),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(x[2], x[3]),
        );
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(z0, z1), _mm512_shuffle_f32x4::<0b11_01_11_01>(z0, z1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::ConvGeometry;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn axis(input: usize, kernel: usize, stride: usize, (pad_begin, pad_end): (usize, usize)) -> Axis {
        let output = (input + pad_begin + pad_end - kernel) / stride + 1;
        Axis { input, output, kernel, stride, dilation: 1, pad_begin, pad_end }
    }

    /// Forward, dX and dW of the plain definition, in f64.
    fn reference(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let [_, ah, aw] = &g.axes;
        let (h, wd, oh, ow, kh, kw) = (ah.input, aw.input, ah.output, aw.output, ah.kernel, aw.kernel);
        let mut y = vec![0.0; g.n * g.m * oh * ow];
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        for n in 0..g.n {
            for m in 0..g.m {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let yi = ((n * g.m + m) * oh + oy) * ow + ox;
                        for c in 0..g.c {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let (iy, ix) = (ah.input_pos(oy, i), aw.input_pos(ox, j));
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((n * g.c + c) * h + iy as usize) * wd + ix as usize;
                                    let wi = ((m * g.c + c) * kh + i) * kw + j;
                                    y[yi] += x[xi] as f64 * w[wi] as f64;
                                    dx[xi] += dy[yi] as f64 * w[wi] as f64;
                                    dw[wi] += dy[yi] as f64 * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, dx, dw)
    }

    fn close(what: &str, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what} length");
        let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1e-6);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((*g as f64 - w).abs() <= 2e-5 * scale, "{what}[{i}]: {g} vs {w} (scale {scale})");
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn transpose16_transposes() {
        use std::arch::x86_64::*;
        if kernels::active_isa() != Isa::Avx512 {
            eprintln!("no AVX-512 on this CPU: the batch-lane conv does not run here");
            return;
        }
        let m: Vec<f32> = (0..256).map(|v| v as f32).collect();
        let mut out = [0.0f32; 256];
        // SAFETY: AVX-512F checked above; every load and store is 16 floats inside `m` / `out`.
        unsafe {
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(m.as_ptr().add(16 * i));
            }
            for (j, v) in avx512::transpose16(r).iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * j), *v);
            }
        }
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(out[16 * j + i], m[16 * i + j], "({i}, {j})");
            }
        }
    }

    /// Not a test: times [`filter_grad`] alone on mnist-v1's 3×3 shapes (batch 128, 2
    /// threads, best of 12) and prints GFLOP/s. `cargo test --release -p resnet-engine --lib
    /// filter_grad_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn filter_grad_speed() {
        if kernels::active_isa() != Isa::Avx512 {
            eprintln!("no AVX-512 on this CPU: the batch-lane conv does not run here");
            return;
        }
        let mut seed = 1u64;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (c, side) in [(16, 28), (32, 14), (64, 7), (128, 4)] {
            let g = ConvGeometry {
                n: 128,
                c,
                m: c,
                group: 1,
                axes: [Axis::UNIT, axis(side, 3, 1, (1, 1)), axis(side, 3, 1, (1, 1))],
                out_shape: Vec::new(),
            };
            let (xl, dl) = (LaneConv::input_layout(&g), LaneConv::grad_layout(&g));
            let xp: Vec<f32> = (0..xl.len()).map(|_| lcg(&mut seed)).collect();
            let dyp: Vec<f32> = (0..dl.len()).map(|_| lcg(&mut seed)).collect();
            let (mut dw, mut parts) = (vec![0.0f32; c * c * 9], Vec::new());
            let best = (0..12)
                .map(|_| {
                    let t = std::time::Instant::now();
                    pool.install(|| filter_grad(&xp, &xl, &dyp, &dl, &g, &mut parts, &mut dw));
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min);
            let flops = 2.0 * (128 * c * c * 9 * side * side) as f64;
            eprintln!("{c} ch {side}×{side}: {:.3} ms, {:.0} GFLOP/s", best * 1e3, flops / best / 1e9);
        }
    }

    #[test]
    fn lane_chunks_cover_the_vectors_in_runs_of_at_most_three() {
        for nvec in 1..20 {
            let chunks = lane_chunks(nvec);
            assert_eq!(chunks.iter().map(|c| c.1).sum::<usize>(), nvec);
            assert!(chunks.iter().all(|&(_, nv)| (1..=3).contains(&nv)));
            assert!(chunks.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        }
        assert_eq!(lane_chunks(8), vec![(0, 3), (3, 3), (6, 2)]);
        assert_eq!(lane_chunks(4), vec![(0, 2), (2, 2)]);
    }

    #[test]
    fn lanes_match_the_definition_on_random_shapes() {
        if kernels::active_isa() != Isa::Avx512 {
            eprintln!("no AVX-512 on this CPU: the batch-lane conv does not run here");
            return;
        }
        let mut seed = 7u64;
        // (n, c, m, h, w, kh, kw, strides, pads h, pads w): batches off the 16 lanes,
        // filter and channel counts off the 8- and 4-blocks, 1×1, 3×1 and 3×3, asymmetric
        // and no padding, stride 2 (3×3 with even and odd inputs, 1×1 whose odd pixels get
        // no gradient) and mixed strides; whole vectors of images also run on lanes.
        let cases = [
            (16, 4, 8, 4, 4, 3, 3, (1, 1), (1, 1), (1, 1)),
            (100, 4, 8, 4, 3, 3, 3, (1, 1), (1, 1), (1, 1)),
            (17, 5, 11, 5, 3, 3, 3, (1, 1), (1, 1), (0, 2)),
            (33, 8, 16, 7, 7, 3, 3, (1, 1), (1, 1), (1, 1)),
            (20, 6, 9, 4, 6, 1, 3, (1, 1), (0, 0), (1, 1)),
            (48, 3, 13, 6, 5, 3, 1, (1, 1), (2, 0), (0, 0)),
            (64, 9, 4, 2, 2, 3, 3, (1, 1), (1, 1), (1, 1)),
            (18, 8, 16, 8, 8, 3, 3, (2, 2), (1, 1), (1, 1)),
            (16, 5, 12, 7, 9, 3, 3, (2, 2), (1, 1), (1, 1)),
            (19, 8, 16, 8, 7, 1, 2, (2, 2), (0, 0), (0, 0)),
            (16, 4, 8, 9, 6, 3, 3, (3, 1), (1, 0), (2, 1)),
            (32, 8, 16, 5, 5, 3, 3, (1, 1), (1, 1), (1, 1)),
            (16, 8, 8, 6, 7, 1, 1, (2, 2), (0, 0), (0, 0)),
            (16, 16, 8, 3, 3, 1, 1, (1, 1), (0, 0), (0, 0)),
            // Planes wide enough that the weight gradient splits the output rows into chunks
            // (one row per chunk; two at stride 2).
            (64, 32, 8, 24, 24, 3, 3, (1, 1), (1, 1), (1, 1)),
            (48, 16, 12, 31, 29, 3, 3, (2, 2), (1, 1), (1, 1)),
        ];
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for &(n, c, m, h, w, kh, kw, (sh, sw), ph, pw) in &cases {
                let g = ConvGeometry {
                    n,
                    c,
                    m,
                    group: 1,
                    axes: [Axis::UNIT, axis(h, kh, sh, ph), axis(w, kw, sw, pw)],
                    out_shape: Vec::new(),
                };
                assert!(supported(&g), "case {:?}", (n, c, m, h, w, kh, kw));
                let [_, ah, aw] = &g.axes;
                let p = ah.output * aw.output;
                let x: Vec<f32> = (0..n * c * h * w).map(|_| lcg(&mut seed)).collect();
                let wt: Vec<f32> = (0..m * c * kh * kw).map(|_| lcg(&mut seed)).collect();
                let bias: Vec<f32> = (0..m).map(|_| lcg(&mut seed)).collect();
                let dy: Vec<f32> = (0..n * m * p).map(|_| lcg(&mut seed)).collect();
                let (y_ref, dx_ref, dw_ref) = reference(&g, &x, &wt, &dy);
                let mut lc = LaneConv::new(&g);
                let mut y = vec![f32::NAN; n * m * p];
                let mut dx = vec![f32::NAN; x.len()];
                let mut dw = vec![0.5f32; wt.len()];
                pool.install(|| {
                    lc.forward(&g, &x, false, &wt, Some(&bias), &mut y, false);
                    lc.backward(&g, &x, &wt, &dy, false, Some(&mut dx), false, true, Some(&mut dw));
                });
                let y_ref: Vec<f64> = y_ref.iter().enumerate().map(|(i, v)| v + bias[i / p % m] as f64).collect();
                close("y", &y, &y_ref);
                close("dx", &dx, &dx_ref);
                close("dw", &dw, &dw_ref.iter().map(|v| v + 0.5).collect::<Vec<_>>());
                // Accumulating dX adds to what is there.
                let before = dx.clone();
                pool.install(|| lc.backward(&g, &x, &wt, &dy, false, Some(&mut dx), false, false, None));
                let twice: Vec<f64> = before.iter().zip(&dx_ref).map(|(b, r)| *b as f64 + r).collect();
                close("dx accumulated", &dx, &twice);

                // Whole batches of lanes: input, output and gradients on lanes, no bias (the
                // kernel writes `y` and, at stride 1, `dx` in place when the rows fill its
                // blocks).
                if n % LANES != 0 {
                    continue;
                }
                let (xs, ys) = ([n, c, h, w], [n, m, ah.output, aw.output]);
                let (mut xl, mut dyl) = (Vec::new(), Vec::new());
                nchw_to_lanes(&x, xs, &mut xl);
                nchw_to_lanes(&dy, ys, &mut dyl);
                let mut lc = LaneConv::new(&g);
                let (mut yl, mut dxl, mut dw) =
                    (vec![f32::NAN; y.len()], vec![f32::NAN; x.len()], vec![0.0f32; wt.len()]);
                pool.install(|| {
                    lc.forward(&g, &xl, true, &wt, None, &mut yl, true);
                    lc.backward(&g, &xl, &wt, &dyl, true, Some(&mut dxl), true, true, Some(&mut dw));
                });
                let (mut y2, mut dx2) = (vec![0.0f32; y.len()], vec![0.0f32; x.len()]);
                lanes_to_nchw(&yl, ys, &mut y2, false);
                lanes_to_nchw(&dxl, xs, &mut dx2, false);
                let y_nobias: Vec<f64> = y_ref.iter().enumerate().map(|(i, v)| v - bias[i / p % m] as f64).collect();
                close("lanes y", &y2, &y_nobias);
                close("lanes dx", &dx2, &dx_ref);
                close("lanes dw", &dw, &dw_ref);
                pool.install(|| lc.backward(&g, &xl, &wt, &dyl, true, Some(&mut dxl), true, false, None));
                lanes_to_nchw(&dxl, xs, &mut dx2, false);
                close("lanes dx accumulated", &dx2, &dx_ref.iter().map(|r| 2.0 * r).collect::<Vec<_>>());
                // Mixed: NCHW in, lanes out, and back.
                let mut y3 = vec![f32::NAN; y.len()];
                pool.install(|| lc.forward(&g, &x, false, &wt, Some(&bias), &mut yl, true));
                lanes_to_nchw(&yl, ys, &mut y3, false);
                close("nchw → lanes y", &y3, &y_ref);
                pool.install(|| lc.forward(&g, &xl, true, &wt, Some(&bias), &mut y3, false));
                close("lanes → nchw y", &y3, &y_ref);
            }
        }
    }
}
