//! Direct convolution of 2-D convs over shifted views of a zero-padded input, with an
//! AVX-512 micro-kernel (and an AVX2 copy of the position kernel, `avx2`): no im2col
//! matrix.
//!
//! With the input zero-padded to `[C, Hp, Wp]`, output position `(oh, ow)` taken on the
//! padded grid as `q = oh·Wp + ow` reads tap `(c, i, j)` at `c·plane + q + i·dH·Wp + j·dW`:
//! for a fixed tap, consecutive `q` read consecutive inputs. So the conv is a GEMM
//! `Y'[M, q] = W[M, K] · B[K, q]` whose row `k = (c, i, j)` of B is the padded input shifted
//! by a per-row offset — read in place, never unfolded. The `Wp − OW` columns per row that
//! wrap around the padding are computed and dropped by the epilogue; at stride 1 a row's
//! right padding doubles as the next row's left padding, so the grid rows are `W +
//! max(pads)` wide (1 dropped column of 57 at 56×56, of 29 at 28×28; `PhaseGrid::new`).
//!
//! One *tile* is (image, band of `R` output rows, chunk of the filters). It pads the
//! `R + (kH−1)·dH` input rows it needs into a per-thread buffer, then for each strip of
//! `16·NV` positions runs the `8 × 16·NV` micro-kernel (8 filters × NV vectors in 24 or 16
//! zmm accumulators; per k: NV vector loads of B, 8 broadcasts of the packed filters) over
//! the filters in blocks of 8 and over K in chunks of 32 channels (the chunk's inputs stay in
//! L1 while every filter block passes over them), and finally writes the valid columns with
//! bias, residual and ReLU. Measured (one thread, ResNet-50 3×3 shapes, this Xeon): 150–180
//! GFLOP/s at 56×56 and 28×28 and 125–140 at 14×14 and 7×7, against 80–123 for the panel
//! im2col + `gemm` path (see BENCHMARKS.md).
//!
//! Strided convs (the 7×7/2 stem, 3×3/2 downsampling) first split the padded band into
//! `sH·sW` phase planes (`PhaseGrid`), on which the same holds: consecutive outputs read
//! consecutive inputs for each tap. Measured (one thread, AMD EPYC, `resnet bench --mode
//! exact --profile`): against the im2col path, the stem 49–60 → 60–69 GFLOP/s and the 3×3/2
//! layers of ResNet-18 62–75 → 70–84 in the first alternated runs, 77–86 and 85–97 in later
//! profiles on a quieter machine (BENCHMARKS.md). The AVX2 narrow-plane kernel broadcasts
//! its inputs, so it reads the padded band unsplit, the positions `stride` apart
//! (`PhaseGrid::unsplit`: a row copy per input row instead of a strided copy per phase).
//!
//! Narrow planes (output rows of at most 14, ResNet's 14×14 and 7×7 layers at 224×224) run
//! a second micro-kernel with the vectors along the filters instead (`DirectConv::run_rows`):
//! the position kernel computes whole 32/48-position strips of the padded grid, 224 positions
//! for 196 outputs at 14×14 and 64 for 49 at 7×7. One thread, single-layer models: 256 ch at
//! 14×14 87–90 → 97–101 GFLOP/s, 512 ch at 7×7 77–78 → 86–100. A 3×3 stride-1 conv padded
//! by one on every side leaves out the products of the taps that read the padding
//! (`micro_rows_3x3`: 9 % of them at 14×14, 18 % at 7×7; on an AMD EPYC (Zen 4), one thread,
//! single-layer models, 2.06 → 1.88 ms at 14×14 × 256, 2.08 → 1.84 at 7×7 × 512, against ONNX
//! Runtime's 1.93 and 1.94, whose kernel skips them too; strided 3×3 convs leave out the
//! padding taps of their first row and column); 3×3 convs take the kernel on planes of whole
//! 14-position row segments as well (28×28 and 56×56: one call per segment,
//! `ROWS_WIDE_ACC`), where the position kernel multiplied the padding and computed the
//! wrap-around column. On AVX2 its copy (32 filters
//! × 3 positions a call, `DirectConv::rows_products_avx2`) takes k×k convs of any row width,
//! in bands of rows (`DirectConv::rows_bands`), and the position kernel only planes past its
//! band budget.
//!
//! 1×1 convs ([`DirectConv::pointwise`]) run a third micro-kernel on wide planes and at any
//! stride (`DirectConv::run_wide`, in `pointwise.rs`: 48-position strips read in place at
//! stride 1 and packed otherwise, their rows fetched a few channels ahead, a last strip of a
//! few positions on filter vectors — 256-bit, or 512-bit where 512-bit FMAs run at full rate
//! —, the epilogue applied in registers) and the narrow-plane kernel on stride-1 planes of up
//! to 49 positions ([`POINTWISE_SMALL_PLANE`]).
//! The plan runs strided ones at stride 1 on an input subsampled to the output grid
//! (`ConvKernel::subsampled`), and hands a conv whose fused Add is its residual's last
//! reader that buffer as the output (`kernels::Residual::InOutput`).
//!
//! The position and narrow-plane kernels run on x86-64 CPUs with AVX-512F or with AVX2 and
//! FMA (`avx2`: 4 × 24 and 32 × 3 register blocks of the same sums); the 1×1 kernels on
//! AVX-512F and, from [`AVX2_POINTWISE_MIN_FILTERS`] filters, their own AVX2 kernel (1×1
//! convs on planes of up to 49 positions keep the wide kernel there); other calls, and every
//! call on other CPUs, run the im2col path.

use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::ops::conv::ConvGeometry;
use crate::ops::padding::Axis;
use crate::plan::kernels::{self, Isa, LineFetch, OutPtr, Residual};

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod bf16;
mod pointwise;

/// Filters per micro-kernel block (rows of the packed filter panel).
pub(crate) const MR: usize = 8;

/// Input channels per K chunk: the chunk's band rows (32 × ~170 floats at 56×56) stay in L1
/// while all filter blocks pass over them. Measured 5–10 % faster than unchunked at 56×56.
const KC_CHANNELS: usize = 32;

/// Largest padded band a tile copies, in floats (512 KiB: within L2 beside the filters).
const BAND_BUDGET: usize = 128 * 1024;

/// First size of the accumulator scratch, in floats (512 KiB): the largest ResNet tile at
/// 224×224 (64 filters × 39 strips × 48 positions at 56×56) is 120 Ki floats.
const ACC_RESERVE: usize = 128 * 1024;

thread_local! {
    /// Per-thread scratch: the padded band, the tap offsets, and the accumulator tile. They
    /// grow to the largest layer once and are reused (no allocation in a steady-state run).
    static SCRATCH: RefCell<(Vec<f32>, Vec<isize>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// A 2-D conv with its filters packed for the micro-kernels.
#[derive(Debug, Clone)]
pub struct DirectConv {
    m: usize,
    c: usize,
    kh: usize,
    kw: usize,
    /// A 1×1 conv ([`DirectConv::pointwise`]): it runs the wide-plane kernel
    /// ([`DirectConv::run_wide`]) or, at stride 1 on narrow planes, the narrow-plane kernel
    /// reading its input in place ([`DirectConv::pointwise_applies`]), never the position
    /// kernel.
    pointwise: bool,
    /// `[K chunk][M.div_ceil(MR)][k in chunk][MR]`, K = C·kH·kW in (c, i, j) order, chunks of
    /// [`KC_CHANNELS`] channels: the tile loops read it front to back (one DRAM stream for
    /// the large late-layer filters, which batch 1 reads once per run). Rows past M are zero.
    packed: Vec<f32>,
    /// The same filters for the narrow-plane kernel ([`DirectConv::run_rows`]):
    /// `[K chunk][M.div_ceil(NC)][k in chunk][NC]`, rows past M zero, packed from `packed` by
    /// the first call that needs them (ResNet's 14×14 and 7×7 layers, on AVX-512 its 3×3
    /// ones at 28×28 and 56×56 too; the others never hold a second copy). Only the plan's
    /// kernels have the cell (training repacks every step and keeps to the position kernel).
    by_channel: Option<OnceLock<Vec<f32>>>,
    /// The filters as `[M, C·kH·kW]` again, unpacked by the first call the kernel does not
    /// apply to (only when tests lower the ISA cap): the plan keeps no other copy.
    unpacked: OnceLock<Vec<f32>>,
    /// A pointwise kernel's filters as bfloat16 channel pairs ([`bf16::pack_filters`]) when
    /// the plan runs its wide-plane calls in bfloat16 ([`DirectConv::use_bf16`]).
    bf16: Option<Vec<u32>>,
    /// The bf16 filters regrouped for the narrow-plane kernel (`[block of NC][pair][NC]`),
    /// by its first call.
    bf16_rows: OnceLock<Vec<u32>>,
    /// The narrowest instruction set the kernel runs on: AVX2 (+FMA) for the plan's kernels
    /// (the [`avx2`] micro-kernels below AVX-512), AVX-512 for training's
    /// ([`DirectConv::with_shape`]: its batch-lane and gradient paths are tuned for it), which
    /// below it keeps the im2col path.
    min_isa: Isa,
}

/// Packs `w` (`[m, k]` row-major) into `out` as K chunks of `kc` columns (`kn` in the last),
/// in each the panels of `width` rows, in each the chunk's `kn` columns of `width` values:
/// `out[(k0·panels + p·kn + q)·width + r] = w[(p·width + r)·k + k0 + q]`. Rows past `m` are
/// left as they are (zeros in a new buffer). Chunk by chunk, in parallel for large filters,
/// each panel written column by column: element by element, with the index divided out of
/// each position, packing ResNet-50's filters took 60 ms of compiling.
fn pack_panels(w: &[f32], m: usize, k: usize, width: usize, kc: usize, out: &mut [f32]) {
    let panels = m.div_ceil(width);
    assert_eq!(out.len(), panels * k * width, "packed length");
    let kc = kc.max(1);
    let chunk = |(ci, dst): (usize, &mut [f32])| {
        let (k0, kn) = (ci * kc, dst.len() / (panels * width));
        for (p, panel) in dst.chunks_exact_mut(kn * width).enumerate() {
            let rows = width.min(m - p * width);
            let src = &w[p * width * k + k0..];
            // Column by column: the writes sequential, the `rows` reads each a row's stream.
            for (q, col) in panel.chunks_exact_mut(width).enumerate() {
                for (r, d) in col[..rows].iter_mut().enumerate() {
                    *d = src[r * k + q];
                }
            }
        }
    };
    if out.len() >= 1 << 16 {
        out.par_chunks_mut(panels * kc * width).enumerate().for_each(chunk);
    } else {
        out.chunks_mut(panels * kc * width).enumerate().for_each(chunk);
    }
}

/// Largest padded plane (all channels and phases, in floats) the narrow-plane kernel copies
/// per tile: 2 MiB. Only one K chunk's rows (32 channels) need to stay in L1/L2 while the
/// filter blocks pass over them, so the whole band may exceed L2; the position kernel's
/// smaller [`BAND_BUDGET`] left a 512-channel 3×3/2 conv from 14×14 one-row bands of 48
/// computed positions for 7 outputs (24 GFLOP/s).
const ROWS_BAND_BUDGET: usize = 512 * 1024;

/// Largest output plane on which a 1×1 stride-1 conv runs the narrow-plane kernel (reading
/// its input in place) instead of the wide one (`DirectConv::run_wide`), where 49 outputs
/// would be a 48-position strip and a 1-position one. The narrow-plane kernel once also took
/// 14×14 planes with at least as many input channels as filters (ResNet-50's 256 ← 1024,
/// measured against `gemm` before the wide kernel existed); against the wide kernel, on an
/// Intel Xeon (Emerald Rapids), Keras ResNet-50, `resnet bench --profile`, alternated three
/// times: equal on one thread (3.63–3.71 vs 3.68–3.90 ms for the five convs), 2.47–2.52 →
/// 2.13–2.18 ms on two threads and 17.6–17.7 → 16.0–16.1 ms at batch 8 on two.
pub const POINTWISE_SMALL_PLANE: usize = 49;

/// Largest output plane on which a 1×1 stride-1 conv with at least four input channels per
/// filter (ResNet-50's 256 ← 1024 at 14×14) runs the narrow-plane kernel on AVX-512 CPUs
/// whose 512-bit FMAs run at half rate (AMD Zen 4): there the wide kernel's 48-position
/// strips took longer. On an AMD EPYC (Zen 4), Keras ResNet-50's five 256 ← 1024 steps,
/// `resnet bench --profile` alternated twice: 4.80–4.89 → 4.67 ms on one thread,
/// 2.62–2.63 → 2.38 on two (Xeon, with full-rate FMAs, measured the other way round:
/// [`POINTWISE_SMALL_PLANE`]); 1024 ← 256 there 2.46 → 2.57 and 128 ← 512 at 28×28 1.42 →
/// 1.63 on two threads, so those keep the wide kernel. The model, `scripts/ab_bench.py
/// --rounds 4`: fast on two threads 0.993 (minima 0.983), exact on one 0.996 (0.995), exact
/// batch 8 on two 0.990 (0.998).
pub const POINTWISE_DEEP_PLANE: usize = 196;

/// Fewest filters for which a 1×1 conv runs the AVX2 pointwise kernel
/// ([`DirectConv::pointwise`] on CPUs without AVX-512); narrower ones keep the im2col +
/// `gemm` path. Packing a strip costs the same whatever the filter count, and over 64
/// filters it did not pay: Keras ResNet-50 fast on one thread of an AMD EPYC (Zen 3),
/// `resnet bench --profile` alternated twice, 64 ← 256 at 56×56 2.70–2.77 ms against `gemm`'s
/// 2.43–2.44, 64 ← 64 0.36–0.38 against 0.33; from 128 filters up it is as fast or faster.
pub const AVX2_POINTWISE_MIN_FILTERS: usize = 128;

/// Output channels per block of the narrow-plane kernel: two 16-float vectors.
const NC: usize = 32;

/// Widest output row the narrow-plane kernel takes, and most positions per micro-kernel
/// call (14 × 2 accumulators): rows of at most half this width go two to a call.
const ROW_SEGMENT: usize = 14;

/// Most accumulators, in floats, of an AVX-512 narrow-plane tile over a plane wider than
/// [`ROW_SEGMENT`] (all filters, rounded up to [`NC`], × positions; 1 MiB): 3×3 convs
/// (dilation 1, any stride) on planes whose rows are whole segments (28 and 56 wide) run the
/// narrow-plane kernel there too, one call per segment, which leaves out the taps that read
/// the padding and computes no wrap-around column. ResNet's 64 filters at 56×56 take
/// 200 Ki floats, 128 at 28×28 100 Ki. On an AMD EPYC (Zen 4), single-layer models against
/// the position kernel: 2.17 → 2.06 ms at 56×56 (one thread), 1.09 → 1.05 (two); 2.14 →
/// 1.99 at 28×28, 1.08 → 1.00 (ONNX Runtime, one thread: 1.99 and 1.96). Strided, in
/// ResNet-18 (`resnet bench --profile`, alternated twice): 128 ← 64 / 2 to 28×28 1.17 →
/// 1.05–1.06 ms; the stride-2 convs to 14×14 and 7×7, which had the narrow-plane kernel
/// already, now leave out their padding taps too: 1.08 → 1.03–1.04 and 1.13–1.17 →
/// 1.04–1.07.
const ROWS_WIDE_ACC: usize = 256 * 1024;

/// Most accumulators, in floats, of one filter block of an AVX2 narrow-plane tile (each
/// sweep passes over them, 512 KiB): planes with more are cut into bands of rows (the
/// 7×7/2 stem's 112×112: 4 bands). On AVX2 the narrow-plane kernel takes every k×k conv
/// whose padded plane fits [`ROWS_BAND_BUDGET`], the position kernel the larger ones (and
/// training's). One thread, single-conv models, `scripts/ab_bench.py --rounds 4` against
/// the position kernel: 3×3 64 ch at 56×56 0.94×, 128 at 28×28 0.96×, 3×3/2 128 from
/// 56×56 0.88× (two threads 0.96×, 0.96×, 0.93×); the stem 0.93× (whole-plane tiles,
/// 3.2 MB of accumulators, were only as fast as the position kernel; bands of 64 Ki floats
/// measured the same as 128 Ki).
const AVX2_ROWS_ACC: usize = 128 * 1024;

/// Taps per sweep of the AVX2 narrow-plane kernel (`avx2::micro_rows`) over a plane: 16
/// channels of a 3×3 conv (18 KiB of filters).
const AVX2_SWEEP_TAPS: usize = 144;

/// The sweeps of an AVX2 narrow-plane tile (`DirectConv::rows_products_avx2`) over K
/// (`k` taps in chunks of `kc`, the `by_channel` layout) and its `nb` blocks from `first`:
/// per chunk, per block, runs of `sub` taps.
#[derive(Debug, Clone, Copy)]
struct Sweeps {
    k: usize,
    kc: usize,
    nb: usize,
    sub: usize,
    first: usize,
}

impl Sweeps {
    /// `(chunk start, block within the tile, first tap within the chunk, taps)` in order.
    fn iter(self) -> impl Iterator<Item = (usize, usize, usize, usize)> + Clone {
        (0..self.k).step_by(self.kc).flat_map(move |k0| {
            let kn = self.kc.min(self.k - k0);
            (0..self.nb)
                .flat_map(move |bi| (0..kn).step_by(self.sub).map(move |s0| (k0, bi, s0, self.sub.min(kn - s0))))
        })
    }
}

thread_local! {
    /// [`DirectConv::tiling`]'s results by shape ([`kernels::memoized`]).
    static TILINGS: kernels::Memo<10, Tiling> = const { RefCell::new(Vec::new()) };
}

/// How one call is cut into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tiling {
    /// Output rows per band.
    rows: usize,
    /// Vectors (of 16 positions) per strip: 2 or 3.
    nv: usize,
    /// Filter chunks per band (a multiple of MR filters each).
    msplit: usize,
}

impl DirectConv {
    /// Packs `w` (`[M, C, kH, kW]` row-major) when this CPU runs the micro-kernel.
    /// `None`: neither AVX-512 nor AVX2 with FMA (or not x86-64) — the caller keeps the
    /// im2col path.
    pub fn new(w: &[f32], w_shape: &[usize]) -> Option<DirectConv> {
        let &[m, c, kh, kw] = w_shape else { return None };
        if w.len() != m * c * kh * kw {
            return None;
        }
        let mut d = DirectConv::alloc(m, c, kh, kw, Isa::Avx2)?;
        d.by_channel = Some(OnceLock::new());
        d.set_filters(w);
        Some(d)
    }

    /// The kernels of a 1×1 conv (`w` is `[M, C]` row-major): the wide-plane one
    /// (`DirectConv::run_wide`, any stride) and, at stride 1 on AVX-512, the narrow-plane
    /// one (`DirectConv::run_pointwise`). `None` without AVX2, or on AVX2 (no AVX-512) for
    /// fewer than [`AVX2_POINTWISE_MIN_FILTERS`] filters.
    pub fn pointwise(w: &[f32], m: usize, c: usize) -> Option<DirectConv> {
        if w.len() != m * c || (kernels::active_isa() < Isa::Avx512 && m < AVX2_POINTWISE_MIN_FILTERS) {
            return None;
        }
        let mut d = DirectConv::alloc(m, c, 1, 1, Isa::Avx2)?;
        if kernels::active_isa() == Isa::Avx512 {
            // Its last few positions of a plane pick 256- or 512-bit filter vectors by this
            // probe (timed once per process, ~1 ms): timed here, at compile, rather than
            // inside the first run's tasks while other threads compute beside it.
            kernels::fma512_full_rate();
        }
        d.pointwise = true;
        d.by_channel = Some(OnceLock::new());
        d.set_filters(w);
        Some(d)
    }

    /// Whether this is a [`DirectConv::pointwise`] kernel.
    pub fn is_pointwise(&self) -> bool {
        self.pointwise
    }

    /// A kernel for `[M, C, kH, kW]` filters, to be given them with
    /// [`DirectConv::set_filters`] (training repacks every step without allocating).
    /// Training's kernels run on AVX-512 only.
    pub(crate) fn with_shape(m: usize, c: usize, kh: usize, kw: usize) -> Option<DirectConv> {
        DirectConv::alloc(m, c, kh, kw, Isa::Avx512)
    }

    /// A kernel of `[M, C, kH, kW]` zero filters for CPUs with `min_isa` or wider.
    fn alloc(m: usize, c: usize, kh: usize, kw: usize, min_isa: Isa) -> Option<DirectConv> {
        if kernels::active_isa() < min_isa || min_isa < Isa::Avx2 || m == 0 || c * kh * kw == 0 {
            return None;
        }
        Some(DirectConv {
            min_isa,
            pointwise: false,
            m,
            c,
            kh,
            kw,
            packed: vec![0.0; m.div_ceil(MR) * c * kh * kw * MR],
            by_channel: None,
            unpacked: OnceLock::new(),
            bf16: None,
            bf16_rows: OnceLock::new(),
        })
    }

    /// Whether the filters are `[m, c, kh, kw]`.
    pub(crate) fn has_shape(&self, m: usize, c: usize, kh: usize, kw: usize) -> bool {
        (self.m, self.c, self.kh, self.kw) == (m, c, kh, kw)
    }

    /// Packs `w` (`[M, C, kH, kW]` row-major, the shape given at construction).
    pub(crate) fn set_filters(&mut self, w: &[f32]) {
        let k = self.c * self.kh * self.kw;
        assert_eq!(w.len(), self.m * k, "filter length");
        pack_panels(w, self.m, k, MR, KC_CHANNELS * self.kh * self.kw, &mut self.packed);
        if self.by_channel.is_some() {
            self.by_channel = Some(OnceLock::new());
        }
        self.unpacked = OnceLock::new();
        if self.bf16.is_some() {
            self.bf16 = Some(bf16::pack_filters(w, self.m, k));
            self.bf16_rows = OnceLock::new();
        }
    }

    /// Runs this pointwise kernel's calls in bfloat16 ([`bf16`]): the filters and the inputs
    /// rounded to bfloat16, the sums in float32 — the wide-plane kernel's strips (a last
    /// partial one too) and the narrow-plane kernel's planes. `false` (and
    /// nothing changes) for a kernel that is not pointwise or on a CPU without AVX-512 BF16.
    /// `w`: the filters as given to [`DirectConv::pointwise`] when the caller still has them
    /// (else they are unpacked from the float32 panels first).
    pub(crate) fn use_bf16(&mut self, w: Option<&[f32]>) -> bool {
        if !self.pointwise || !bf16::supported() {
            return false;
        }
        if self.bf16.is_none() {
            let packed = match w {
                Some(w) if w.len() == self.m * self.c => bf16::pack_filters(w, self.m, self.c),
                _ => bf16::pack_filters(&self.unpack(), self.m, self.c),
            };
            self.bf16 = Some(packed);
        }
        true
    }

    /// Whether [`DirectConv::use_bf16`] is on.
    pub(crate) fn runs_bf16(&self) -> bool {
        self.bf16.is_some()
    }

    /// Filter `row`'s element `q` (of `C·kH·kW`) in `packed`.
    fn packed_at(&self, row: usize, q: usize) -> f32 {
        let k = self.c * self.kh * self.kw;
        let kc = KC_CHANNELS * self.kh * self.kw;
        let (k0, kn) = (q / kc * kc, kc.min(k - q / kc * kc));
        self.packed[(k0 * self.m.div_ceil(MR) + row / MR * kn + q - k0) * MR + row % MR]
    }

    /// The filters as given to [`DirectConv::set_filters`] (`[M, C, kH, kW]` row-major).
    pub(crate) fn unpack(&self) -> Vec<f32> {
        let k = self.c * self.kh * self.kw;
        let (blocks, kc) = (self.m.div_ceil(MR), KC_CHANNELS * self.kh * self.kw);
        let mut w = vec![0.0; self.m * k];
        // In `packed`'s order (sequential reads): chunk, filter block, tap, filter.
        for k0 in (0..k).step_by(kc.max(1)) {
            let kn = kc.min(k - k0);
            let chunk = &self.packed[k0 * blocks * MR..][..blocks * kn * MR];
            for (b, block) in chunk.chunks_exact(kn * MR).enumerate() {
                for (q, taps) in block.chunks_exact(MR).enumerate() {
                    for (r, &v) in taps.iter().enumerate().take(self.m - b * MR) {
                        w[(b * MR + r) * k + k0 + q] = v;
                    }
                }
            }
        }
        debug_assert!((0..w.len()).step_by(97).all(|i| w[i] == self.packed_at(i / k, i % k)));
        w
    }

    /// [`DirectConv::unpack`], kept after the first call.
    pub(crate) fn unpacked(&self) -> &[f32] {
        self.unpacked.get_or_init(|| self.unpack())
    }

    /// Taps per K chunk of the narrow-plane kernel: [`KC_CHANNELS`] channels' (their band rows
    /// stay in L1), or all of K for pointwise kernels, which read their input in place and
    /// so write each accumulator once instead of once per chunk.
    fn rows_chunk(&self) -> usize {
        if self.pointwise {
            self.c.max(1)
        } else {
            KC_CHANNELS * self.kh * self.kw
        }
    }

    /// The filters in the narrow-plane kernel's layout, repacked once from `packed`.
    fn by_channel(&self) -> Option<&[f32]> {
        let cell = self.by_channel.as_ref()?;
        Some(cell.get_or_init(|| {
            let k = self.c * self.kh * self.kw;
            let (kc_in, kc_out) = (KC_CHANNELS * self.kh * self.kw, self.rows_chunk());
            let (blocks, panels) = (self.m.div_ceil(MR), self.m.div_ceil(NC));
            let mut out = vec![0.0; panels * k * NC];
            // Straight from `packed`: column `q` of panel `p` is the `NC / MR` blocks' `MR`
            // filters at that column, which lie together in `packed` (blocks past M's stay
            // zeros). Through `unpack` and `pack_panels` this took 80 ms of Keras ResNet-50's
            // first run. On the calling thread: the first call may be one of a step's tasks,
            // where a rayon join could pick up another caller's plan run while it waits.
            out.chunks_mut(panels * kc_out * NC).enumerate().for_each(|(ci, dst)| {
                let (k0, kn) = (ci * kc_out, dst.len() / (panels * NC));
                dst.chunks_mut(kn * NC).enumerate().for_each(|(p, panel)| {
                    for (q, col) in panel.chunks_exact_mut(NC).enumerate() {
                        let qa = k0 + q;
                        let i0 = qa / kc_in * kc_in;
                        let inn = kc_in.min(k - i0);
                        for (j, lanes) in col.chunks_exact_mut(MR).enumerate() {
                            let b = p * (NC / MR) + j;
                            if b >= blocks {
                                break;
                            }
                            lanes.copy_from_slice(&self.packed[(i0 * blocks + b * inn + qa - i0) * MR..][..MR]);
                        }
                    }
                });
            });
            debug_assert!((0..self.m * k).step_by(89).all(|i| {
                let (row, q) = (i / k, i % k);
                let (k0, kn) = (q / kc_out * kc_out, kc_out.min(k - q / kc_out * kc_out));
                out[(k0 * panels + row / NC * kn + q - k0) * NC + row % NC] == self.packed_at(row, q)
            }));
            out
        }))
    }

    /// Whether this call is a 2-D conv of the packed filters (any stride and dilation) and
    /// the CPU still allows the kernel's instruction set (tests lower the cap at run time).
    pub(crate) fn applies(&self, g: &ConvGeometry) -> bool {
        let [ad, ah, aw] = &g.axes;
        !self.pointwise
            && ad.input == 1
            && ad.kernel == 1
            && ad.output == 1
            && ad.pad_begin + ad.pad_end == 0
            && g.group == 1
            && g.m == self.m
            && g.c == self.c
            && ah.kernel == self.kh
            && aw.kernel == self.kw
            && [ah, aw].iter().all(|a| {
                let (padded, extent) = (a.input + a.pad_begin + a.pad_end, (a.kernel - 1) * a.dilation + 1);
                a.stride >= 1 && a.dilation >= 1 && padded >= extent && a.output == (padded - extent) / a.stride + 1
            })
            && kernels::active_isa() >= self.min_isa
    }

    /// Picks band height, strip width and filter split for an output of `oh` rows on the
    /// grid `q`, `n` images, `threads` workers.
    fn tiling(&self, n: usize, oh: usize, q: &PhaseGrid, threads: usize) -> Tiling {
        let (halo, wp) = (q.halo, q.width);
        let isa = kernels::active_isa();
        let mut best: Option<(f64, Tiling)> = None;
        for rows in 1..=oh {
            // Every phase plane's band rows plus the widest strip's overrun.
            // Strided convs with many channels budget one K chunk's band (the chunk is what
            // stays in cache while the filter blocks pass over it): a 128-channel 3×3/2 conv
            // from 56×56 took bands of 6 rows, 192 positions computed for 168 outputs
            // (resnet50-v2, 1 thread: 2.80 → 2.51 ms; 2 threads 1.62 → 1.38). With 64
            // channels the whole-band budget still measured as fast or faster (2 bands of 14
            // rows rather than one split between the threads).
            let chans = if q.phases > 1 && self.c > 2 * KC_CHANNELS { KC_CHANNELS } else { self.c };
            let band_floats = chans * q.phases * ((rows + halo) * wp + 48 + q.overrun);
            // The accumulator tile stays in L2 too (the 7×7/2 stem's band of 3 channels
            // would otherwise take ~90 rows: a 2.6 MB accumulator).
            let acc_floats = self.m.next_multiple_of(MR) * (rows * wp).next_multiple_of(48);
            // On AVX2 CPUs (512 KiB L2 on Zen 3) that chunk's band stays within half of L2:
            // the 128-channel 3×3/2 conv from 56×56 took the whole plane as one band, 456 KiB
            // per chunk beside a 416 KiB accumulator tile (one thread, `scripts/ab_bench.py
            // --rounds 6`: 0.905× the time, minima 0.916; the 256-channel one from 28×28,
            // whose band fits, unchanged).
            let budget = if chans < self.c && isa != Isa::Avx512 { BAND_BUDGET / 2 } else { BAND_BUDGET };
            if rows > 1 && (band_floats > budget || acc_floats > ACC_RESERVE) {
                break;
            }
            let bands = oh.div_ceil(rows);
            let last = oh - (bands - 1) * rows;
            // Strided convs with fewer images than threads: a band per thread rather than
            // one band whose filters the threads split. Each filter chunk of a band fills its
            // phase planes (a strided copy of every channel) and holds the whole band in its
            // core's L2. On an Intel Xeon, two threads, runs alternated in one process:
            // resnet50-v2's 128-channel 3×3/2 conv from 56×56 (one band of 28 rows split by
            // filters before) 1.33 → 1.17 ms, the model 0.994 exact and 0.988 fast (an A/A
            // pair 0.999); the 28×28 stride-1 convs, whose fill is a plain copy, measured
            // 1.05 the other way.
            if q.phases > 1 && n < threads && rows > oh.div_ceil(threads.div_ceil(n)) {
                break;
            }
            for nv in [2, 3] {
                // Positions computed; each band re-reads its halo rows.
                let band = |r: usize| strips_cost(r * wp, nv, isa) + (halo * wp * q.phases) as f64 * 0.25;
                // The time of the busiest thread: with few tiles, bands of unequal height
                // leave a thread idle (56 rows cut 32 + 24 on 2 threads: 3×3 64-channel layers
                // of ResNet-50 scaled ×1.68).
                let full = n * (bands - 1);
                let cost = busiest(band(rows), full, band(last), n, threads, self.m.div_ceil(MR));
                let t = Tiling { rows, nv, msplit: 1 };
                if best.is_none_or(|(c, b)| cost < c || (cost == c && b.rows < rows)) {
                    best = Some((cost, t));
                }
            }
        }
        let mut t = best.expect("oh >= 1").1;
        let tiles = n * oh.div_ceil(t.rows);
        t.msplit = kernels::filter_split(tiles, threads, self.m.div_ceil(MR));
        t
    }

    /// `y = relu?(conv(x) + bias + residual)` for a call [`DirectConv::applies`] to (the
    /// residual may be `y`'s contents, [`Residual::InOutput`]); with `accumulate` (training's
    /// input gradients) `y += conv(x)` instead (no bias, residual or ReLU then).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        g: &ConvGeometry,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        accumulate: bool,
        y: &mut [f32],
    ) {
        debug_assert!(!accumulate || (bias.is_none() && residual.is_none() && !relu));
        let [_, ah, aw] = &g.axes;
        let (oh, ow) = (ah.output, aw.output);
        if g.n * oh * ow == 0 {
            return;
        }
        let threads = kernels::threads();
        let q = PhaseGrid::new(ah, aw);
        // The AVX2 narrow-plane kernel broadcasts its inputs: no phase split.
        let rq = if kernels::active_isa() == Isa::Avx2 { PhaseGrid::unsplit(ah, aw) } else { q };
        if !accumulate && self.rows_apply(g, &rq) {
            self.run_rows(g, &rq, x, bias, residual, relu, y);
            return;
        }
        let key =
            [self.m, self.c, g.n, oh, q.width, q.halo, q.overrun, q.phases, threads, kernels::active_isa() as usize];
        let t = TILINGS.with(|c| kernels::memoized(c, key, || self.tiling(g.n, oh, &q, threads)));
        let bands = oh.div_ceil(t.rows);
        let blocks = self.m.div_ceil(MR);
        let chunk = blocks.div_ceil(t.msplit);
        let msplit = blocks.div_ceil(chunk);
        let tiles = g.n * bands * msplit;
        assert_eq!(y.len(), g.n * self.m * oh * ow, "output length");
        assert_eq!(x.len(), g.n * self.c * ah.input * aw.input, "input length");
        let out = OutPtr(y.as_mut_ptr());
        let tile = |ti: usize| {
            let mi = ti % msplit;
            let band = (ti / msplit) % bands;
            let img = ti / msplit / bands;
            let b0 = mi * chunk;
            let b1 = (b0 + chunk).min(blocks);
            self.tile(g, t, img, band, b0..b1, x, bias, residual, relu, accumulate, out);
        };
        kernels::for_each_task(tiles, tile);
    }

    /// Whether this pointwise kernel takes the call: a 1×1 stride-1 unpadded 2-D conv of its
    /// shape on a plane of at most [`POINTWISE_SMALL_PLANE`] positions, on AVX-512.
    pub(crate) fn pointwise_applies(&self, g: &ConvGeometry) -> bool {
        let [ad, ah, aw] = &g.axes;
        self.pointwise
            && *ad == Axis::UNIT
            && g.group == 1
            && g.m == self.m
            && g.c == self.c
            && [ah, aw].iter().all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin + a.pad_end == 0)
            && (ah.output * aw.output <= POINTWISE_SMALL_PLANE
                || ah.output * aw.output <= POINTWISE_DEEP_PLANE
                    && self.c >= 4 * self.m
                    && !kernels::fma512_full_rate())
            && kernels::active_isa() == Isa::Avx512
            && kernels::avx2_fma()
    }

    /// `y = relu?(conv(x, w) + bias + residual)` for a call
    /// [`DirectConv::pointwise_applies`] to.
    pub(crate) fn run_pointwise(
        &self,
        g: &ConvGeometry,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        y: &mut [f32],
    ) {
        let [_, ah, aw] = &g.axes;
        if g.n * ah.output * aw.output == 0 {
            return;
        }
        if self.run_pointwise_bf16(g, x, bias, residual, relu, y) {
            return;
        }
        self.by_channel();
        self.run_rows(g, &PhaseGrid::new(ah, aw), x, bias, residual, relu, y);
    }

    /// For a 3×3 conv at dilation 1 (any stride and padding): whether the plane's first row,
    /// last row, first column and last column read the padding with kernel row 0, row 2,
    /// column 0 and column 2 — the taps [`micro_rows_3x3`] leaves out there. `None` for other
    /// convs.
    fn padding_taps_3x3(&self, g: &ConvGeometry) -> Option<[bool; 4]> {
        let [_, ah, aw] = &g.axes;
        let three = |a: &Axis| a.kernel == 3 && a.dilation == 1 && a.output > 0;
        if self.pointwise || !three(ah) || !three(aw) {
            return None;
        }
        // Tap 0 of output 0 reads `−pad_begin`; tap 2 of the last output `(n−1)·s + 2 − pad_begin`.
        let edges = |a: &Axis| [a.pad_begin >= 1, (a.output - 1) * a.stride + 2 >= a.input + a.pad_begin];
        let ([top, bottom], [left, right]) = (edges(ah), edges(aw));
        Some([top, bottom, left, right])
    }

    /// Whether [`DirectConv::run_rows`] takes this call: the plan's k×k kernel (it has the
    /// by-channel filters), a whole padded plane within the band budget, and AVX-512 with
    /// output rows of at most [`ROW_SEGMENT`] positions (or, for 3×3 convs, rows of whole
    /// segments within [`ROWS_WIDE_ACC`]), or AVX2 (`avx2::micro_rows`, any width).
    fn rows_apply(&self, g: &ConvGeometry, q: &PhaseGrid) -> bool {
        let [_, ah, aw] = &g.axes;
        let plane = q.phases * (q.band_rows(ah.output) * q.width + ROW_SEGMENT + q.overrun);
        !self.pointwise
            && self.by_channel.is_some()
            && self.c * plane <= ROWS_BAND_BUDGET
            && match kernels::active_isa() {
                Isa::Avx512 => {
                    aw.output <= ROW_SEGMENT
                        || self.padding_taps_3x3(g).is_some()
                            && aw.output.is_multiple_of(ROW_SEGMENT)
                            && self.m.next_multiple_of(NC) * ah.output * aw.output <= ROWS_WIDE_ACC
                }
                Isa::Avx2 => true,
                Isa::Portable => false,
            }
    }

    /// The narrow-plane kernel: vectors along the output channels instead of the positions.
    /// The position kernel computes whole strips of the padded grid, so at 7×7 it computes
    /// 64 positions for 49 outputs (14×14: 224 for 196); this one computes each output row
    /// segment exactly (`micro_rows`: one row of up to 14 positions or two of up to 7, × 32
    /// filters per call, broadcasting the inputs). One tile is (image, chunk of 32-filter
    /// blocks) over the whole plane. Pointwise kernels read the input planes in place, in runs
    /// of up to 14 consecutive positions. On AVX2 (k×k convs only) each call is 32 filters ×
    /// 3 positions instead ([`DirectConv::rows_products_avx2`]) and a tile is a band of rows
    /// ([`DirectConv::rows_bands`]). Either way the epilogue transposes the `[position][filter]`
    /// sums in 8 × 8 blocks on AVX2 (`avx2::rows_epilogue`: on an Intel Xeon it took 0.984 of
    /// a 256-channel 3×3 conv's time at 14×14 against the scalar copy and row epilogue, Keras
    /// ResNet-50 0.992 on one thread and 0.991 on two, runs alternated in one process) and in
    /// 16 × 16 blocks on AVX-512 (`avx512::rows_epilogue`, the same bits: on a Zen 4,
    /// `scripts/ab_bench.py` minima ResNet-18 0.989 and Keras ResNet-50 0.997 on one thread,
    /// 0.997 at batch 8 on two).
    #[allow(clippy::too_many_arguments)]
    fn run_rows(
        &self,
        g: &ConvGeometry,
        q: &PhaseGrid,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        y: &mut [f32],
    ) {
        let [_, ah, aw] = &g.axes;
        let (oh, ow) = (ah.output, aw.output);
        let blocks = self.m.div_ceil(NC);
        let threads = kernels::threads();
        let bands = self.rows_bands(g, q, threads);
        let rows = oh.div_ceil(bands);
        let bands = oh.div_ceil(rows);
        let split = kernels::filter_split(g.n * bands, threads, blocks);
        let chunk = blocks.div_ceil(split);
        let split = blocks.div_ceil(chunk);
        assert_eq!(y.len(), g.n * self.m * oh * ow, "output length");
        assert_eq!(x.len(), g.n * self.c * ah.input * aw.input, "input length");
        let out = OutPtr(y.as_mut_ptr());
        kernels::for_each_task(g.n * bands * split, |ti| {
            let (img, band, b0) = (ti / split / bands, ti / split % bands, ti % split * chunk);
            let r = band * rows..((band + 1) * rows).min(oh);
            self.rows_tile(g, q, img, r, b0..(b0 + chunk).min(blocks), x, bias, residual, relu, out);
        });
    }

    /// Bands of output rows a narrow-plane call is cut into (per image): on AVX2 enough that
    /// one block's accumulators stay within [`AVX2_ROWS_ACC`] (on AVX-512 the whole plane's
    /// do, `rows_apply`), and, when there are fewer images than threads, one per thread
    /// where the padded input plane is larger than the filters (each thread then pads only
    /// its band, where a filter split pads the whole plane in every thread; on AVX-512 for
    /// strided convs: on a Zen 4 the phase fill took ~7.5 % of a 128-channel 3×3/2 conv from
    /// 56×56 on two threads, which bands took from 1.11–1.25 to 1.07–1.10 ms, ORT 1.04).
    fn rows_bands(&self, g: &ConvGeometry, q: &PhaseGrid, threads: usize) -> usize {
        let [_, ah, aw] = &g.axes;
        let (oh, ow) = (ah.output, aw.output);
        let avx2 = kernels::active_isa() == Isa::Avx2;
        let mut bands = if avx2 { (oh * ow * NC).div_ceil(AVX2_ROWS_ACC) } else { 1 };
        let padded = self.c * q.phases * q.band_rows(oh) * q.width;
        // On AVX-512 strided convs only (their phase planes take the longer fill): 64 ← 64 at
        // 56×56 measured within noise either way.
        if g.n < threads && padded > self.m * self.c * self.kh * self.kw && (avx2 || q.phases > 1) {
            bands = bands.max(threads / g.n);
        }
        bands.clamp(1, oh)
    }

    #[allow(clippy::too_many_arguments)]
    fn rows_tile(
        &self,
        g: &ConvGeometry,
        q: &PhaseGrid,
        img: usize,
        rows: std::ops::Range<usize>,
        blocks: std::ops::Range<usize>,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        out: OutPtr,
    ) {
        let [_, ah, aw] = &g.axes;
        let (oh, ow) = (ah.output, aw.output);
        // This tile's output rows (a band of the plane on AVX2, else all of them): `plane`
        // positions from `p0` of the `full` plane's.
        let (full, p0) = (oh * ow, rows.start * ow);
        let plane = rows.len() * ow;
        let band_rows = q.band_rows(rows.len());
        let ps = band_rows * q.width + ROW_SEGMENT + q.overrun;
        let cs = q.phases * ps;
        let k = self.c * self.kh * self.kw;
        let nb = blocks.end - blocks.start;
        // Packed before the parallel loop for pointwise kernels (`run_pointwise`).
        let by_channel = self.by_channel().expect("rows_apply");
        let x_img = &x[img * self.c * ah.input * aw.input..][..self.c * ah.input * aw.input];
        // Rows per micro-kernel call: two when they fit in ROW_SEGMENT positions (each
        // filter vector is loaded once per call, so wider calls reuse it more: a 7×7×512
        // layer measured 81 GFLOP/s one row per call).
        let pair = 2 * ow <= ROW_SEGMENT;
        let step = if pair { 2 } else { 1 };
        // A 3×3 conv leaves out the taps that read the padding (`micro_rows_3x3`).
        let pads = self.padding_taps_3x3(g);
        SCRATCH.with(|s| {
            let (buf, offs, acc) = &mut *s.borrow_mut();
            if offs.len() < k {
                offs.resize(k.max(8 * 1024), 0);
            }
            if acc.len() < nb * plane * NC {
                acc.resize((nb * plane * NC).max(ACC_RESERVE), 0.0);
            }
            let src = if self.pointwise {
                for (ch, o) in offs[..k].iter_mut().enumerate() {
                    *o = (ch * full) as isize;
                }
                x_img[p0..].as_ptr()
            } else {
                if buf.len() < self.c * cs {
                    buf.resize((self.c * cs).max(BAND_BUDGET + 8 * 1024), 0.0);
                }
                if q.phases == 1 {
                    fill_band(buf, x_img, self.c, cs, cs, rows.start * q.step.0, band_rows, q.width, ah, aw);
                } else {
                    fill_phase_band(buf, x_img, self.c, ps, rows.start, band_rows, q, ah, aw);
                }
                for ch in 0..self.c {
                    for i in 0..self.kh {
                        for j in 0..self.kw {
                            offs[(ch * self.kh + i) * self.kw + j] = (ch * cs + q.tap_offset(i, j, ps)) as isize;
                        }
                    }
                }
                buf.as_ptr()
            };
            let runs = plane.div_ceil(ROW_SEGMENT);
            let kc = self.rows_chunk();
            let all = self.m.div_ceil(NC);
            let chunk_at = |k0: usize, b: usize| (k0 * all + b * kc.min(k - k0)) * NC;
            let avx2 = cfg!(target_arch = "x86_64") && kernels::active_isa() == Isa::Avx2;
            if avx2 {
                if offs.len() < k + plane {
                    offs.resize(k + plane, 0);
                }
                // 1×1 convs run the narrow-plane kernel on AVX-512 only (`pointwise_applies`).
                debug_assert!(!self.pointwise);
                let (offs, at) = offs.split_at_mut(k);
                // Position `p`'s offset in the band from the first (row-major across row ends).
                for (p, o) in at[..plane].iter_mut().enumerate() {
                    *o = (p / ow * q.step.0 * q.width + p % ow * q.step.1) as isize;
                }
                let per = self.kh * self.kw;
                let sweeps = Sweeps { k, kc, nb, sub: (AVX2_SWEEP_TAPS / per).max(1) * per, first: blocks.start };
                #[cfg(target_arch = "x86_64")]
                self.rows_products_avx2(by_channel, sweeps, src, offs, &at[..plane], &mut acc[..nb * plane * NC]);
            } else {
                for k0 in (0..k).step_by(kc) {
                    let kn = kc.min(k - k0);
                    for bi in 0..nb {
                        let a = &by_channel[chunk_at(k0, blocks.start + bi)..][..kn * NC];
                        // The filters this tile multiplies next, fetched into L2 over the calls
                        // that reuse `a` (the first call streams `a` from memory; the others ran
                        // from cache with memory idle): call `i` prefetches lines `i·kn ..`.
                        // (Its start and taps; NC floats, two cache lines, per tap.)
                        let next = if bi + 1 < nb {
                            Some((chunk_at(k0, blocks.start + bi + 1), kn))
                        } else {
                            (k0 + kc < k).then(|| (chunk_at(k0 + kc, blocks.start), kc.min(k - k0 - kc)))
                        };
                        let pf = |call: usize| {
                            next.map_or(LineFetch::NONE, |(at, taps)| {
                                LineFetch::share(by_channel.as_ptr().wrapping_add(at), 2 * taps, call, kn, 1)
                            })
                        };
                        if self.pointwise {
                            for run in 0..runs {
                                let (p0, p1) = (plane * run / runs, plane * (run + 1) / runs);
                                let dst = &mut acc[(bi * plane + p0) * NC..][..(p1 - p0) * NC];
                                // SAFETY: AVX-512F as below; reads `x_img[ch·plane + p]` for
                                // p0 ≤ p < p1 ≤ plane; `dst` holds (p1 − p0)·NC floats.
                                unsafe {
                                    micro_rows(
                                        p1 - p0,
                                        1,
                                        p1 - p0,
                                        kn,
                                        a.as_ptr(),
                                        pf(run),
                                        src.add(p0),
                                        offs[k0..k0 + kn].as_ptr(),
                                        dst.as_mut_ptr(),
                                        k0 > 0,
                                    );
                                }
                            }
                            continue;
                        }
                        // Calls: a pair of rows, one row, or a segment of a row wider than
                        // ROW_SEGMENT (equal segments, 14 wide at 28 and 56).
                        let segs = ow.div_ceil(ROW_SEGMENT);
                        for r in (0..rows.len()).step_by(step) {
                            let first = rows.start + r;
                            let rows = step.min(rows.len() - r);
                            for sg in 0..segs {
                                let (c0, c1) = (ow * sg / segs, ow * (sg + 1) / segs);
                                let width = c1 - c0;
                                let call = r / step * segs + sg;
                                let dst = &mut acc[(bi * plane + r * ow + c0) * NC..][..rows * width * NC];
                                let edges = pads.map(|[t, b, l, rt]| {
                                    [t && first == 0, b && first + rows == oh, l && c0 == 0, rt && c1 == ow]
                                });
                                // SAFETY: `rows_apply`: AVX-512F. Each read is
                                // `buf[offs[kk] + (r + i)·Wq + col]` with i < rows, col < OW ≤ Wq:
                                // within the tap's phase plane (`ps` covers `(OH + halo)·Wq + overrun`);
                                // `dst` holds rows·width·NC floats (positions are row-major); the
                                // taps left out with `edges` read the band's zero padding
                                // (`padding_taps_3x3`).
                                unsafe {
                                    micro_rows_3x3(
                                        width,
                                        rows,
                                        edges,
                                        q.width,
                                        kn,
                                        a.as_ptr(),
                                        pf(call),
                                        src.add(r * q.width + c0),
                                        offs[k0..k0 + kn].as_ptr(),
                                        dst.as_mut_ptr(),
                                        k0 > 0,
                                    );
                                }
                            }
                        }
                    }
                }
            }
            // The ISA `rows_apply` checked: AVX-512F, or AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            let epilogue512 = kernels::active_isa() == Isa::Avx512;
            #[cfg(target_arch = "x86_64")]
            for (bi, b) in blocks.clone().enumerate() {
                let (m0, res) = (b * NC, residual.base(out.0));
                let off = (img * self.m + m0) * full + p0;
                let (sums, filters) = (acc[bi * plane * NC..].as_ptr(), NC.min(self.m - m0));
                let (y, res, bias) =
                    (out.0.wrapping_add(off), res.map(|r| r.wrapping_add(off)), bias.map(|v| v[m0..].as_ptr()));
                // SAFETY: AVX-512F where `epilogue512`, else AVX2 and FMA (`rows_apply`); the
                // block's `plane × NC` sums lie in `acc`; output planes `m0 .. m0 + filters`
                // of image `img` (this tile's only) lie in `y`, and in the residual (checked
                // the same length by the plan) or `y` itself; `bias` holds M values.
                unsafe {
                    if epilogue512 {
                        avx512::rows_epilogue(sums, plane, full, filters, y, res, bias, relu)
                    } else {
                        avx2::rows_epilogue(sums, plane, full, filters, y, res, bias, relu)
                    }
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("rows_apply declines off x86-64");
        });
    }

    /// The products of an AVX2 narrow-plane tile into `acc` (`[block][p][NC]`): 32 filters ×
    /// 3 positions per call (`avx2::micro_rows`), the positions in row-major order across row
    /// ends (`at[p]`: 196 = 65·3 + 1 at 14×14, 49 = 16·3 + 1 at 7×7, no padded-grid column
    /// computed), in sweeps of [`Sweeps::sub`] taps whose filters (18 KiB) and input rows stay
    /// in L1 while every call of the plane passes over them, with the partial sums in `acc`
    /// between sweeps and the next sweep's filters fetched into L2 over the calls.
    #[cfg(target_arch = "x86_64")]
    fn rows_products_avx2(
        &self,
        by_channel: &[f32],
        sw: Sweeps,
        src: *const f32,
        offs: &[isize],
        at: &[isize],
        acc: &mut [f32],
    ) {
        let plane = at.len();
        let calls = plane.div_ceil(3);
        let all = self.m.div_ceil(NC);
        let chunk_at = |k0: usize, b: usize| (k0 * all + b * sw.kc.min(sw.k - k0)) * NC;
        let mut next = sw.iter().skip(1);
        for (k0, bi, s0, sn) in sw.iter() {
            let a = by_channel[chunk_at(k0, sw.first + bi) + s0 * NC..][..sn * NC].as_ptr();
            let fetch = next.next().map(|(k1, b1, t1, n1)| {
                let lines = 2 * n1;
                (by_channel.as_ptr().wrapping_add(chunk_at(k1, sw.first + b1) + t1 * NC), lines, lines.div_ceil(calls))
            });
            let kk = &offs[k0 + s0..k0 + s0 + sn];
            for call in 0..calls {
                let p = 3 * call;
                let n = 3.min(plane - p);
                let o = at[p];
                let pos = [0, at[(p + 1).min(plane - 1)] - o, at[(p + 2).min(plane - 1)] - o];
                let pf = fetch.map_or(LineFetch::NONE, |(ptr, lines, per)| LineFetch::share(ptr, lines, call, per, 1));
                let dst = &mut acc[(bi * plane + p) * NC..][..n * NC];
                // SAFETY: the caller runs this on AVX2 + FMA (`rows_apply`); `a` holds `sn`
                // taps of 32 filters; each read is `src[offs[kk] + at[p']]` for a position
                // p' < plane: `buf[offs[kk] + row·step·Wq + col·step]` within the channel's
                // band (`ps` covers the band's rows, a read past a row's end lands in the
                // next row's zeros or the band's `ROW_SEGMENT + overrun` tail); `dst` holds
                // n·NC floats.
                unsafe {
                    avx2::micro_rows(
                        n,
                        sn,
                        a,
                        pf,
                        src.wrapping_offset(o),
                        pos,
                        kk.as_ptr(),
                        dst.as_mut_ptr(),
                        k0 + s0 > 0,
                    )
                };
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        g: &ConvGeometry,
        t: Tiling,
        img: usize,
        band: usize,
        blocks: std::ops::Range<usize>,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        accumulate: bool,
        out: OutPtr,
    ) {
        let [_, ah, aw] = &g.axes;
        let (oh, ow) = (ah.output, aw.output);
        let (ih, iw) = (ah.input, aw.input);
        let q = PhaseGrid::new(ah, aw);
        let wp = q.width;
        let nr = 16 * t.nv;
        let r0 = band * t.rows;
        let rows = t.rows.min(oh - r0);
        let band_rows = rows + q.halo;
        let positions = rows * wp;
        let strips = positions.div_ceil(nr);
        // Per channel and phase: the band's rows, then zeros the last strip may read past them.
        let ps = band_rows * wp + nr + q.overrun;
        let cs = q.phases * ps;
        let k = self.c * self.kh * self.kw;
        let mrows = (blocks.end - blocks.start) * MR;
        let plane = oh * ow;
        let x_img = &x[img * self.c * ih * iw..][..self.c * ih * iw];
        SCRATCH.with(|s| {
            let (buf, offs, acc) = &mut *s.borrow_mut();
            // Grown generously on first use (every ResNet layer at 224×224 fits), so a worker
            // that meets a bigger layer late — tiles go to whichever thread is free — does not
            // allocate in a steady-state run.
            if buf.len() < self.c * cs {
                buf.resize((self.c * cs).max(BAND_BUDGET + 8 * 1024), 0.0);
            }
            if offs.len() < k {
                offs.resize(k.max(8 * 1024), 0);
            }
            if acc.len() < mrows * strips * nr {
                acc.resize((mrows * strips * nr).max(ACC_RESERVE), 0.0);
            }
            if q.phases == 1 {
                fill_band(buf, x_img, self.c, cs, cs, r0, band_rows, q.width, ah, aw);
            } else {
                fill_phase_band(buf, x_img, self.c, ps, r0, band_rows, &q, ah, aw);
            }
            for ch in 0..self.c {
                for i in 0..self.kh {
                    for j in 0..self.kw {
                        offs[(ch * self.kh + i) * self.kw + j] = (ch * cs + q.tap_offset(i, j, ps)) as isize;
                    }
                }
            }
            let kc = KC_CHANNELS * self.kh * self.kw;
            let nb = blocks.end - blocks.start;
            let micro_at = |acc: &mut [f32], k0: usize, kn: usize, bi: usize, s: usize| {
                let a = &self.packed[(k0 * self.m.div_ceil(MR) + (blocks.start + bi) * kn) * MR..][..kn * MR];
                let dst = &mut acc[(bi * strips + s) * MR * nr..][..MR * nr];
                // SAFETY: `applies`: AVX2 and FMA at least. Every offset of `offs[k0..k0+kn]` plus
                // `s·nr + nr` stays within `buf[..c·cs]`: an offset is `ch·cs + phase·ps`
                // plus at most `halo·Wq + overrun` ([`PhaseGrid::tap_offset`]) and
                // `s·nr + nr < rows·Wq + nr`, which each phase plane's trailing
                // `nr + overrun` zeros cover.
                unsafe {
                    micro(
                        t.nv,
                        nr.min(positions - s * nr),
                        kn,
                        a.as_ptr(),
                        buf.as_ptr().add(s * nr),
                        offs[k0..k0 + kn].as_ptr(),
                        dst.as_mut_ptr(),
                        nr,
                        k0 > 0,
                    );
                }
            };
            // K chunk, filter block, strip: the block's filter chunk stays in L1 while it
            // passes over every strip of the band (the band's chunk, 32 channels, in L1/L2),
            // and the filters are read front to back once per band. Measured against strip,
            // K chunk, filter block: equal at 56×56 and 28×28, 5–30 % faster at 14×14 and 7×7.
            // The last K chunk writes the outputs itself when every vector spans at most two
            // grid rows (training's accumulating calls keep the separate epilogue).
            let fused = !accumulate && wp >= vector_positions();
            let last = (k - 1) / kc * kc;
            for k0 in (0..k).step_by(kc) {
                let kn = kc.min(k - k0);
                for bi in 0..nb {
                    let b = blocks.start + bi;
                    for s in 0..strips {
                        if !(fused && k0 == last) {
                            micro_at(acc, k0, kn, bi, s);
                            continue;
                        }
                        let a = &self.packed[(k0 * self.m.div_ceil(MR) + b * kn) * MR..][..kn * MR];
                        let src = &acc[(bi * strips + s) * MR * nr..][..MR * nr];
                        let off = (img * self.m + b * MR) * plane + r0 * ow;
                        let so = StripOut {
                            // Offsets within the band's output rows of this image and block;
                            // every valid position lies in `y` (and `residual`, the output's
                            // layout, or `y` itself: each read before it is written) and
                            // belongs to this tile.
                            y: out.0.wrapping_add(off),
                            res: residual.base(out.0).map(|r| r.wrapping_add(off)),
                            bias: bias.map(|v| v[b * MR..].as_ptr()),
                            rows: MR.min(self.m - b * MR),
                            plane,
                            wp,
                            ow,
                            q0: s * nr,
                            positions,
                            relu,
                        };
                        // SAFETY: as `micro_at` for the packed filters and the band; `src`
                        // holds this strip's earlier sums (read when `k0 > 0`); the valid
                        // outputs of this strip (columns < OW of band rows < `rows`) of the
                        // block's filters are this tile's, `wp ≥ vector_positions()`.
                        unsafe {
                            micro_store(
                                t.nv,
                                kn,
                                a.as_ptr(),
                                buf.as_ptr().add(s * nr),
                                offs[k0..k0 + kn].as_ptr(),
                                (k0 > 0).then_some((src.as_ptr(), nr)),
                                &so,
                            );
                        }
                    }
                }
            }
            if fused {
                return;
            }
            for s in 0..strips {
                self.epilogue(
                    acc, t, s, strips, positions, wp, ow, plane, img, r0, &blocks, bias, residual, relu, accumulate,
                    out,
                );
            }
        });
    }
}

/// Where a call's padded input lies for the micro-kernel. A stride `s` splits the padded
/// input `Xp` into `sH·sW` phase planes `P[(r, c)][u][v] = Xp[sH·u + r][sW·v + c]`: output
/// `(oh, ow)` reads tap `(i, j)` from phase `(i·dH mod sH, j·dW mod sW)` at row
/// `oh + ⌊i·dH / sH⌋`, column `ow + ⌊j·dW / sW⌋`. So on a grid of width `Wq = ⌈Wp / sW⌉`
/// consecutive outputs read consecutive inputs for a fixed tap, as at stride 1, and the
/// micro-kernel runs every real tap (no zero taps, unlike a space-to-depth rewrite). With
/// stride 1 there is one phase: the padded input itself, on rows of `W + max(pads)` whose
/// zeros neighbouring rows share ([`fill_band`]).
#[derive(Debug, Clone, Copy)]
struct PhaseGrid {
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    /// `Wq`: positions per grid row (output columns past `OW` are computed and dropped).
    width: usize,
    /// Phase rows a band reads below its last output row: `⌊(kH−1)·dH / sH⌋`.
    halo: usize,
    /// Phase columns the last tap reads past a position: `⌊(kW−1)·dW / sW⌋`.
    overrun: usize,
    phases: usize,
    /// Grid steps between neighbouring output positions (rows, columns): (1, 1) on a grid
    /// split by phase, the strides on an unsplit one ([`PhaseGrid::unsplit`]).
    step: (usize, usize),
}

impl PhaseGrid {
    fn new(ah: &Axis, aw: &Axis) -> PhaseGrid {
        let (sh, sw) = (ah.stride.max(1), aw.stride.max(1));
        // At stride 1 neighbouring rows share their zero columns (`fill_band`): a grid row
        // of `W + max(pads)` positions instead of `W + pads`, so at 56×56 with pads 1 one
        // computed-and-dropped column per row instead of two (28×28: 1 of 29 instead of 2
        // of 30) — as long as a row of outputs still fits.
        let shared = aw.input + aw.pad_begin.max(aw.pad_end);
        let width = if sh == 1 && sw == 1 && shared >= aw.output {
            shared
        } else {
            (aw.input + aw.pad_begin + aw.pad_end).div_ceil(sw)
        };
        PhaseGrid {
            sh,
            sw,
            dh: ah.dilation,
            dw: aw.dilation,
            width,
            halo: (ah.kernel - 1) * ah.dilation / sh,
            overrun: (aw.kernel - 1) * aw.dilation / sw,
            phases: sh * sw,
            step: (1, 1),
        }
    }

    /// The padded input as it is, strided or not: one plane per channel whose rows are the
    /// padded input rows, the output positions `stride` apart. For kernels that broadcast
    /// each input value (the AVX2 narrow-plane kernel) rather than load positions as
    /// vectors, which need the phase split of [`PhaseGrid::new`] at stride 2 — a strided
    /// copy per input row, where this grid's band is a row copy. At stride 1 the same grid as
    /// `new`. Rows are `W + max(pads)` wide when the output positions fit and a read past a
    /// row's end lands in the next row's left padding, else the full padded width.
    fn unsplit(ah: &Axis, aw: &Axis) -> PhaseGrid {
        let shared = aw.input + aw.pad_begin.max(aw.pad_end);
        let last = aw.output.saturating_sub(1) * aw.stride;
        let reach = last + (aw.kernel - 1) * aw.dilation;
        let width =
            if last < shared && reach < shared + aw.pad_begin { shared } else { aw.input + aw.pad_begin + aw.pad_end };
        PhaseGrid {
            sh: 1,
            sw: 1,
            dh: ah.dilation,
            dw: aw.dilation,
            width,
            halo: (ah.kernel - 1) * ah.dilation,
            overrun: (aw.kernel - 1) * aw.dilation,
            phases: 1,
            step: (ah.stride.max(1), aw.stride.max(1)),
        }
    }

    /// Grid rows a band of `rows` output rows reads (each phase's, on a split grid).
    fn band_rows(&self, rows: usize) -> usize {
        rows.saturating_sub(1) * self.step.0 + self.halo + 1
    }

    /// Offset of tap `(i, j)` within one channel's band (phase planes of `ps` floats).
    fn tap_offset(&self, i: usize, j: usize, ps: usize) -> usize {
        let (a, b) = (i * self.dh, j * self.dw);
        ((a % self.sh) * self.sw + b % self.sw) * ps + (a / self.sh) * self.width + b / self.sw
    }
}

/// The load of the busiest of `threads` workers given `big` tiles costing `a` and `small`
/// costing `b`, each cut into [`kernels::filter_split`] filter chunks when the tiles are few
/// (`blocks` filter blocks at most), big ones first, handed out as the plan's team does
/// ([`kernels::busiest_load`]). With many tiles, or more workers than this tracks, the even
/// share.
fn busiest(a: f64, big: usize, b: f64, small: usize, threads: usize, blocks: usize) -> f64 {
    let tiles = big + small;
    let total = a * big as f64 + b * small as f64;
    if threads <= 1 || tiles >= 4 * threads || threads > kernels::MAX_WORKERS {
        return total / threads.max(1) as f64;
    }
    let split = kernels::filter_split(tiles, threads, blocks);
    let part = |cost: f64| cost / split as f64;
    kernels::busiest_load(threads, tiles * split, |t| if t < big * split { part(a) } else { part(b) })
}

/// The band of one image on a strided [`PhaseGrid`]: phase `(r, c)` of channel `ch` at
/// `buf[(ch·phases + r·sW + c)·ps..][..ps]`, `band_rows` rows of `Wq` (phase row `r0 + u` is
/// padded row `sH·(r0 + u) + r`), then zeros up to `ps`.
#[allow(clippy::too_many_arguments)]
fn fill_phase_band(
    buf: &mut [f32],
    x_img: &[f32],
    c: usize,
    ps: usize,
    r0: usize,
    band_rows: usize,
    q: &PhaseGrid,
    ah: &Axis,
    aw: &Axis,
) {
    let (ih, iw, wq) = (ah.input, aw.input, q.width);
    #[cfg(target_arch = "x86_64")]
    if q.sw == 2 && wq <= avx512::FILL_WIDTH && kernels::active_isa() == Isa::Avx512 {
        assert!(buf.len() >= c * q.phases * ps && ps >= band_rows * wq, "phase band layout");
        assert!(x_img.len() >= c * ih * iw, "input image");
        // SAFETY: AVX-512F is active; the layout as just asserted.
        unsafe { avx512::fill_phase_band2(buf, x_img, c, ps, r0, band_rows, q.sh, wq, ah, aw) };
        return;
    }
    fill_phase_band_scalar(buf, x_img, c, ps, r0, band_rows, q, ah, aw);
}

/// [`fill_phase_band`] element by element (a strided copy per phase row).
#[allow(clippy::too_many_arguments)]
fn fill_phase_band_scalar(
    buf: &mut [f32],
    x_img: &[f32],
    c: usize,
    ps: usize,
    r0: usize,
    band_rows: usize,
    q: &PhaseGrid,
    ah: &Axis,
    aw: &Axis,
) {
    let (ih, iw, wq) = (ah.input, aw.input, q.width);
    for ch in 0..c {
        let xc = &x_img[ch * ih * iw..][..ih * iw];
        for pr in 0..q.sh {
            for pc in 0..q.sw {
                let dst = &mut buf[(ch * q.phases + pr * q.sw + pc) * ps..][..ps];
                let (rows_part, tail) = dst.split_at_mut(band_rows * wq);
                // Grid columns v whose padded column sW·v + pc is an input column.
                let pl = aw.pad_begin;
                let lo = if pl > pc { (pl - pc).div_ceil(q.sw) } else { 0 }.min(wq);
                let hi = if iw + pl > pc { (iw + pl - pc).div_ceil(q.sw) } else { 0 }.clamp(lo, wq);
                for (u, row) in rows_part.chunks_exact_mut(wq).enumerate() {
                    match (q.sh * (r0 + u) + pr).checked_sub(ah.pad_begin).filter(|&r| r < ih) {
                        Some(r) => {
                            let line = &xc[r * iw..][..iw];
                            row[..lo].fill(0.0);
                            if hi > lo {
                                let first = q.sw * lo + pc - pl;
                                strided_copy(&mut row[lo..hi], &line[first..], q.sw);
                            }
                            row[hi..].fill(0.0);
                        }
                        None => row.fill(0.0),
                    }
                }
                tail.fill(0.0);
            }
        }
    }
}

kernels::multiversion! {
    /// `dst[k] = src[k·stride]`: one phase row of a strided band. Stride 2 (the stem and the
    /// 3×3/2 convs) as pairs, which the compiler turns into vector shuffles (the indexed
    /// loop was scalar with a bounds check per element: 2 % of a ResNet-18 run).
    fn strided_copy(dst: &mut [f32], src: &[f32], stride: usize) {
        assert!(stride >= 1 && (dst.is_empty() || (dst.len() - 1) * stride < src.len()), "strided source");
        if stride == 2 {
            // The last element may be the first of an incomplete pair.
            let pairs = dst.len().min(src.len() / 2);
            for (d, p) in dst[..pairs].iter_mut().zip(src.chunks_exact(2)) {
                *d = p[0];
            }
            if pairs < dst.len() {
                dst[pairs] = src[2 * pairs];
            }
            return;
        }
        for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
            *d = *s;
        }
    }
}

/// The padded band of one image: channel `ch` at `buf[ch·stride..][..len]`, `band_rows`
/// rows of `wq` (padded row `r0 + i` is input row `r0 + i − pad_begin`, its first input
/// column at `i·wq + pad_begin`), zeros elsewhere up to `len`. With `wq` the padded width
/// each row carries its own padding; with `wq = W + max(pads)` ([`PhaseGrid::new`]) a row's
/// right padding is the next row's left padding.
#[allow(clippy::too_many_arguments)]
fn fill_band(
    buf: &mut [f32],
    x_img: &[f32],
    c: usize,
    stride: usize,
    len: usize,
    r0: usize,
    band_rows: usize,
    wq: usize,
    ah: &Axis,
    aw: &Axis,
) {
    let (ih, iw, pb) = (ah.input, aw.input, aw.pad_begin);
    assert!(wq >= iw + pb.max(aw.pad_end) && len + wq >= band_rows * wq + pb + iw, "band layout");
    #[cfg(target_arch = "x86_64")]
    if wq <= avx512::FILL_WIDTH && kernels::active_isa() == Isa::Avx512 {
        assert!(c == 0 || buf.len() >= (c - 1) * stride + len, "band buffer");
        assert!(x_img.len() >= c * ih * iw, "input image");
        // SAFETY: AVX-512F is active; the layout as just asserted.
        unsafe { avx512::fill_band(buf, x_img, c, stride, len, r0, band_rows, wq, ah, aw) };
        return;
    }
    fill_band_scalar(buf, x_img, c, stride, len, r0, band_rows, wq, ah, aw);
}

/// [`fill_band`] with a `memset` and a `memcpy` per row.
#[allow(clippy::too_many_arguments)]
fn fill_band_scalar(
    buf: &mut [f32],
    x_img: &[f32],
    c: usize,
    stride: usize,
    len: usize,
    r0: usize,
    band_rows: usize,
    wq: usize,
    ah: &Axis,
    aw: &Axis,
) {
    let (ih, iw, pb) = (ah.input, aw.input, aw.pad_begin);
    for ch in 0..c {
        let dst = &mut buf[ch * stride..][..len];
        let xc = &x_img[ch * ih * iw..][..ih * iw];
        // Zeros from the end of the last copied row to the start of the next one: the
        // padding (shared between neighbouring rows when `wq` is narrower than the padded
        // width) and rows outside the image.
        let mut end = 0;
        for i in 0..band_rows {
            if let Some(r) = (r0 + i).checked_sub(ah.pad_begin).filter(|&r| r < ih) {
                let start = i * wq + pb;
                dst[end..start].fill(0.0);
                dst[start..start + iw].copy_from_slice(&xc[r * iw..][..iw]);
                end = start + iw;
            }
        }
        dst[end..].fill(0.0);
    }
}

/// Positions (summed over a group of whole-plane images) per filter-gradient GEMM.
const GRAD_POSITIONS: usize = 2048;

/// Per-range scratch of [`filter_grad`]: partial dW sums, kept by the caller across steps.
#[derive(Debug, Clone, Default)]
pub(crate) struct FilterGradScratch {
    partials: Vec<Vec<f32>>,
}

thread_local! {
    /// Per-thread scratch of [`filter_grad`]: the padded band and dY on the padded grid.
    static GRAD_SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `dw += Σ_images Σ_(oh,ow) dY[m, oh, ow] · X[c, oh + i·dH − padH, ow + j·dW − padW]`
/// (`dw` is `[M, C, kH, kW]`) for a stride-1 2-D ungrouped conv,
/// over the same shifted views as the forward kernel instead of an im2col matrix: with dY
/// laid onto the padded grid (zeros in the wrap-around columns), tap `(i, j)`'s slice
/// `dW[:, :, i, j]` is the GEMM `dY' [M, Q] · B_ijᵀ [Q, C]` where `B_ij` is the padded band
/// shifted by the tap's offset (row stride: the band's channel stride) — one `gemm` call per
/// tap and band. Images (in bands) are split into one range per thread, each with its
/// partial sums, added in range order (deterministic for a given thread count).
pub(crate) fn filter_grad(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32], scratch: &mut FilterGradScratch) {
    let [_, ah, aw] = &g.axes;
    let (kh, kw, c, m) = (ah.kernel, aw.kernel, g.c, g.m);
    let k = c * kh * kw;
    assert_eq!(dw.len(), m * k, "filter gradient length");
    assert_eq!(x.len(), g.n * c * ah.input * aw.input, "input length");
    assert_eq!(dy.len(), g.n * m * ah.output * aw.output, "output gradient length");
    let (oh, wp) = (ah.output, aw.input + aw.pad_begin + aw.pad_end);
    let halo = (kh - 1) * ah.dilation;
    let mut rows = oh;
    while rows > 1 && c * ((rows + halo) * wp + (kw - 1) * aw.dilation) > BAND_BUDGET {
        rows = rows.div_ceil(2);
    }
    let bands = oh.div_ceil(rows);
    // Whole planes: several images per GEMM (about GRAD_POSITIONS positions), so the small
    // late-layer planes still give long reductions.
    let ps = (oh + halo) * wp + (kw - 1) * aw.dilation;
    let group = if bands == 1 { GRAD_POSITIONS.div_ceil(ps).max(1) } else { 1 };
    let ranges = rayon::current_num_threads().clamp(1, (g.n * bands).max(1));
    if scratch.partials.len() < ranges {
        scratch.partials.resize_with(ranges, Vec::new);
    }
    scratch.partials[..ranges].par_iter_mut().enumerate().for_each(|(r, part)| {
        part.clear();
        part.resize(m * k, 0.0);
        if bands == 1 {
            let (i0, i1) = (g.n * r / ranges, g.n * (r + 1) / ranges);
            for img in (i0..i1).step_by(group) {
                grad_tile(g, rows, img, group.min(i1 - img), 0, x, dy, part);
            }
        } else {
            let tiles = g.n * bands;
            for t in tiles * r / ranges..tiles * (r + 1) / ranges {
                grad_tile(g, rows, t / bands, 1, t % bands, x, dy, part);
            }
        }
    });
    // The partial sums are per tap `[kH·kW][M, C]` (contiguous GEMM outputs); dw is
    // `[M, C, kH, kW]`.
    let taps = kh * kw;
    for (i, v) in dw.iter_mut().enumerate() {
        let (mc, t) = (i / taps, i % taps);
        *v += scratch.partials[..ranges].iter().fold(0.0, |acc, p| acc + p[t * m * c + mc]);
    }
}

/// Images `img..img + count` (band `band` of each; `count > 1` only with whole planes) of
/// [`filter_grad`], added to `part` (`[M, K]`). Each image's band occupies `ps` floats of a
/// channel's row and `ps` positions of dY's padded grid (zeros past its valid columns).
#[allow(clippy::too_many_arguments)]
fn grad_tile(
    g: &ConvGeometry,
    rows: usize,
    img: usize,
    count: usize,
    band: usize,
    x: &[f32],
    dy: &[f32],
    part: &mut [f32],
) {
    let [_, ah, aw] = &g.axes;
    let (kh, kw, c, m) = (ah.kernel, aw.kernel, g.c, g.m);
    let (oh, ow) = (ah.output, aw.output);
    let wp = aw.input + aw.pad_begin + aw.pad_end;
    let (dh, dwl) = (ah.dilation, aw.dilation);
    let r0 = band * rows;
    let rows = rows.min(oh - r0);
    let band_rows = rows + (kh - 1) * dh;
    // Per image: its band rows, then the zeros the last tap reads past them.
    let ps = band_rows * wp + (kw - 1) * dwl;
    // Channel stride; the GEMM's reduction ends at the last image's last valid position, so
    // every tap's reads stay within `buf[..C·cs]`.
    let cs = count * ps;
    let q = (count - 1) * ps + rows * wp;
    let in_img = c * ah.input * aw.input;
    GRAD_SCRATCH.with(|s| {
        let (buf, dyp) = &mut *s.borrow_mut();
        if buf.len() < c * cs {
            buf.resize((c * cs).max(BAND_BUDGET + 8 * 1024), 0.0);
        }
        if dyp.len() < m * cs {
            dyp.resize((m * cs).max(ACC_RESERVE), 0.0);
        }
        for i in 0..count {
            let x_img = &x[(img + i) * in_img..][..in_img];
            // Channel ch of image i at buf[ch·cs + i·ps..][..ps].
            fill_band(&mut buf[i * ps..], x_img, c, cs, ps, r0, band_rows, wp, ah, aw);
            let dy_img = &dy[(img + i) * m * oh * ow..][..m * oh * ow];
            // dY on the padded grid: band row r at r·Wp, zeros in the wrap-around columns and
            // past the band's rows.
            for mi in 0..m {
                let dst = &mut dyp[mi * cs + i * ps..][..ps];
                let src = &dy_img[mi * oh * ow + r0 * ow..][..rows * ow];
                for (r, row) in dst[..rows * wp].chunks_exact_mut(wp).enumerate() {
                    row[..ow].copy_from_slice(&src[r * ow..][..ow]);
                    row[ow..].fill(0.0);
                }
                dst[rows * wp..].fill(0.0);
            }
        }
        for i in 0..kh {
            for j in 0..kw {
                let off = i * dh * wp + j * dwl;
                // SAFETY: dst `part[(i·kW + j)·M·C + mi·C + ci]` for mi < M, ci < C lies in
                // `part` (M·K); lhs element (mi, p) is `dyp[mi·cs + p]`, p < Q ≤ cs; rhs
                // element (p, ci) is `buf[ci·cs + off + p]` with `off + p < off + Q ≤ cs`
                // (off ≤ (kH−1)·dH·Wp + (kW−1)·dW and the last image's valid positions end
                // `band_rows·Wp + (kW−1)·dW − off` before its `ps` does).
                unsafe {
                    gemm::gemm(
                        m,
                        c,
                        q,
                        part.as_mut_ptr().add((i * kw + j) * m * c),
                        1,
                        c as isize,
                        true,
                        dyp.as_ptr(),
                        1,
                        cs as isize,
                        buf.as_ptr().add(off),
                        cs as isize,
                        1,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        }
    });
}

impl DirectConv {
    /// Writes strip `s`'s valid columns of every filter of `blocks`, row segment by row
    /// segment, with bias, residual and ReLU.
    #[allow(clippy::too_many_arguments)]
    fn epilogue(
        &self,
        acc: &[f32],
        t: Tiling,
        s: usize,
        strips: usize,
        positions: usize,
        wp: usize,
        ow: usize,
        plane: usize,
        img: usize,
        r0: usize,
        blocks: &std::ops::Range<usize>,
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        accumulate: bool,
        out: OutPtr,
    ) {
        let nr = 16 * t.nv;
        let q0 = s * nr;
        let q1 = (q0 + nr).min(positions);
        for (bi, b) in blocks.clone().enumerate() {
            for r in 0..MR {
                let m = b * MR + r;
                if m >= self.m {
                    break;
                }
                let src = &acc[((bi * strips + s) * MR + r) * nr..][..nr];
                let bias = bias.map_or(0.0, |b| b[m]);
                let mut q = q0;
                while q < q1 {
                    let col = q % wp;
                    let row_end = (q - col + wp).min(q1);
                    if col < ow {
                        let end = (q - col + ow).min(q1);
                        let off = (img * self.m + m) * plane + (r0 + q / wp) * ow + col;
                        let len = end - q;
                        // SAFETY: output row `m` of image `img`, band row `r0 + q/wp`, columns
                        // `col..col+len` (< OW): this tile's filters and band only, disjoint
                        // from every other tile.
                        let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add(off), len) };
                        // An addend in `y` is copied out first (a segment is at most a strip).
                        let mut held = [0.0f32; pointwise::STRIP];
                        let res = match residual {
                            Residual::None => None,
                            Residual::Tensor(res) => Some(&res[off..][..len]),
                            Residual::InOutput => {
                                held[..len].copy_from_slice(dst);
                                Some(&held[..len])
                            }
                        };
                        store_segment(dst, &src[q - q0..][..len], bias, res, relu, accumulate);
                    }
                    q = row_end;
                }
            }
        }
    }
}

/// `acc[p·NC + j] (+)= Σ_kk b[offs[kk] + pos(p)] · a[kk·NC + j]` for the `rows·width`
/// positions of `rows` (1 or 2) grid rows `width` (≤ [`ROW_SEGMENT`] / rows) wide and
/// `j < NC`: `pos(p) = p` in the first row, `p − width + wq` in the second (the next grid
/// row). The narrow-plane micro-kernel.
///
/// # Safety
/// AVX-512F available; `a` holds `k·NC` floats; `b.offset(offs[i] + pos(p))` is readable
/// for every `i < k` and position `p`; `acc .. + rows·width·NC` is writable (and readable
/// when `accumulate`) and aliases none of the inputs. Each step also takes a
/// `LineFetch::step` of `pf` (a hint: any address).
#[allow(clippy::too_many_arguments)]
unsafe fn micro_rows(
    width: usize,
    rows: usize,
    wq: usize,
    k: usize,
    a: *const f32,
    pf: LineFetch,
    b: *const f32,
    offs: *const isize,
    acc: *mut f32,
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let gap = wq - width;
        macro_rules! dispatch {
            ($(($w:literal, $r:literal)),*) => {
                match (width, rows) {
                    // SAFETY: forwarded from the caller.
                    $(($w, $r) => unsafe { avx512::micro_rows::<{ $w * $r }, $w>(k, a, pf, b, gap, offs, acc, accumulate) },)*
                    _ => unreachable!("rows of 1 to ROW_SEGMENT positions, two only up to half that"),
                }
            };
        }
        dispatch!(
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 1),
            (5, 1),
            (6, 1),
            (7, 1),
            (8, 1),
            (9, 1),
            (10, 1),
            (11, 1),
            (12, 1),
            (13, 1),
            (14, 1),
            (1, 2),
            (2, 2),
            (3, 2),
            (4, 2),
            (5, 2),
            (6, 2),
            (7, 2)
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (width, rows, wq, k, a, pf, b, offs, acc, accumulate);
        unreachable!("rows_apply declines off x86-64");
    }
}

/// [`micro_rows`] for a 3×3 conv at dilation 1: the products of taps that read the
/// padding are left out instead of multiplying zeros (a same-padded conv at 14×14 9 % of a
/// layer's products, at 7×7 18 %, at 28×28 5 %). `top`: the call's first row is the plane's
/// first and reads the padding with kernel row 0; `bottom`: its last row is the plane's last
/// and reads it with kernel row 2; `left` / `right`: its rows start / end at the plane's
/// first / last column, which read it with kernel column 0 / 2. `k` is a multiple of 9
/// (whole channels, taps in (channel, row, column) order). It has copies for whole rows
/// 8–14 wide (padded left and right), pairs of rows 4–7 wide (padded left and right, or
/// left only: stride 2 from an even width) and 14-wide row segments; other calls, and
/// those without `edges` (not a same-shaped 3×3 conv: `padding_taps_3x3`), run
/// [`micro_rows`], which multiplies the zeros.
///
/// # Safety
/// As [`micro_rows`]; with `edges`, the skipped taps' inputs are the padding (zeros).
#[allow(clippy::too_many_arguments)]
unsafe fn micro_rows_3x3(
    width: usize,
    rows: usize,
    edges: Option<[bool; 4]>,
    wq: usize,
    k: usize,
    a: *const f32,
    pf: LineFetch,
    b: *const f32,
    offs: *const isize,
    acc: *mut f32,
    accumulate: bool,
) {
    // SAFETY: the caller's contract, which is `micro_rows`'.
    let plain = || unsafe { micro_rows(width, rows, wq, k, a, pf, b, offs, acc, accumulate) };
    let Some([top, bottom, left, right]) = edges else {
        return plain();
    };
    debug_assert!(k.is_multiple_of(9));
    #[cfg(target_arch = "x86_64")]
    {
        let gap = wq - width;
        macro_rules! dispatch {
            ($(($w:literal, $r:literal, $l:literal, $rt:literal)),*) => {
                match (width, rows, left, right, top, bottom) {
                    $(
                        // SAFETY (each arm): forwarded from the caller.
                        ($w, $r, $l, $rt, false, false) => unsafe { avx512::micro_rows_3x3::<{ $w * $r }, $w, false, false, $l, $rt>(k, a, pf, b, gap, offs, acc, accumulate) },
                        ($w, $r, $l, $rt, true, false) => unsafe { avx512::micro_rows_3x3::<{ $w * $r }, $w, true, false, $l, $rt>(k, a, pf, b, gap, offs, acc, accumulate) },
                        ($w, $r, $l, $rt, false, true) => unsafe { avx512::micro_rows_3x3::<{ $w * $r }, $w, false, true, $l, $rt>(k, a, pf, b, gap, offs, acc, accumulate) },
                        ($w, $r, $l, $rt, true, true) => unsafe { avx512::micro_rows_3x3::<{ $w * $r }, $w, true, true, $l, $rt>(k, a, pf, b, gap, offs, acc, accumulate) },
                    )*
                    _ => plain(),
                }
            };
        }
        dispatch!(
            (8, 1, true, true),
            (9, 1, true, true),
            (10, 1, true, true),
            (11, 1, true, true),
            (12, 1, true, true),
            (13, 1, true, true),
            (14, 1, true, true),
            (4, 2, true, true),
            (5, 2, true, true),
            (6, 2, true, true),
            (7, 2, true, true),
            (7, 2, true, false),
            (14, 1, true, false),
            (14, 1, false, false),
            (14, 1, false, true)
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (top, bottom, left, right);
        plain()
    }
}

/// One valid row segment of an accumulator strip into the output, in one pass:
/// `dst += src` with `accumulate`, else `dst = relu?(src + bias + res)` (sums in that order,
/// as [`kernels::conv_epilogue_row`]). Segments are short (at most one 32/48-position strip),
/// so the tail is a masked vector, not a scalar loop: copying and then running the epilogue
/// as a second call with scalar tails took a quarter of the 7×7/2 stem's time.
fn store_segment(dst: &mut [f32], src: &[f32], bias: f32, res: Option<&[f32]>, relu: bool, accumulate: bool) {
    assert!(src.len() >= dst.len() && res.is_none_or(|r| r.len() >= dst.len()), "segment lengths");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: a `DirectConv` runs only where AVX2 and FMA do (`applies`), AVX-512F where
        // `active_isa` says so; lengths checked above.
        unsafe {
            if kernels::active_isa() == Isa::Avx512 {
                avx512::store_segment(dst, src, bias, res, relu, accumulate)
            } else {
                avx2::store_segment(dst, src, bias, res, relu, accumulate)
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dst, src, bias, res, relu, accumulate);
        unreachable!("DirectConv::new declines off x86-64");
    }
}

/// The AVX2 position kernel's register blocks (`avx2::micro`) that cover the first `need`
/// positions of a `16·nv`-position strip: `(first position, vectors)`, `vectors` 0 for none.
/// A strip's last positions past the band are not computed: the last strip of a 14×14 plane
/// (15 × 14 grid positions, strips of 48) needs 18 of its 48, one 3-vector block, not two.
const fn avx2_blocks(nv: usize, need: usize) -> [(usize, usize); 2] {
    let vectors = need.div_ceil(8);
    let vectors = if vectors < 2 * nv { vectors } else { 2 * nv };
    match vectors {
        0 => [(0, 0), (0, 0)],
        1..=3 => [(0, vectors), (0, 0)],
        4 => [(0, 2), (16, 2)],
        5 => [(0, 3), (24, 2)],
        _ => [(0, 3), (24, 3)],
    }
}

/// The relative time of the position kernel over one band of `positions` grid positions in
/// strips of `16·nv`: positions computed, 3-vector blocks ~5 % faster per position than
/// 2-vector ones (fewer broadcasts per FMA) and 1-vector ones far slower (4 broadcasts and a
/// load per 4 FMAs). The AVX2 kernel computes a last strip's needed vectors only
/// ([`avx2_blocks`]), the AVX-512 one whole strips.
fn strips_cost(positions: usize, nv: usize, isa: Isa) -> f64 {
    let nr = 16 * nv;
    let per_vector = |v: usize| match v {
        3 => 0.95,
        2 => 1.0,
        _ => 1.6,
    };
    if isa == Isa::Avx512 {
        return (positions.div_ceil(nr) * nr) as f64 * per_vector(nv);
    }
    let blocks = |need: usize| avx2_blocks(nv, need).iter().map(|&(_, v)| (8 * v) as f64 * per_vector(v)).sum::<f64>();
    (positions / nr) as f64 * blocks(nr) + blocks(positions % nr)
}

/// `acc[r·acc_rs + j] (+)= Σ_kk a[kk·MR + r] · b[offs[kk] + j]` for `r < MR`, `j < 16·nv`
/// (`nv` of 1, 2 or 3 vectors): the position micro-kernel, dispatched on the strip width and
/// the instruction set ([`avx2`] below AVX-512). Only the first `need` positions (`1 ..=
/// 16·nv`) are wanted: the AVX2 kernel computes them rounded up to its 8-float vectors and
/// leaves the rest of `acc`'s rows as they were (the AVX-512 kernel computes all).
/// Also the batch-lane convolution's kernel in training (`train::lanes`), where `acc` rows
/// are output channel rows of a larger matrix.
///
/// # Safety
/// AVX2 and FMA available; `a` holds `k·MR` floats; `b.offset(offs[i]) .. + 16·nv` is readable
/// for every `i < k`; `acc.add(r·acc_rs) .. + 16·nv` is writable (and readable when
/// `accumulate`) for every `r < MR`, and aliases none of the inputs.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn micro(
    nv: usize,
    need: usize,
    k: usize,
    a: *const f32,
    b: *const f32,
    offs: *const isize,
    acc: *mut f32,
    acc_rs: usize,
    accumulate: bool,
) {
    debug_assert!((1..=3).contains(&nv) && acc_rs >= 16 * nv && (1..=16 * nv).contains(&need));
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: forwarded from the caller.
        unsafe {
            match (nv, kernels::active_isa() == Isa::Avx512) {
                (3, true) => avx512::micro::<3>(k, a, b, offs, acc, acc_rs, accumulate),
                (2, true) => avx512::micro::<2>(k, a, b, offs, acc, acc_rs, accumulate),
                (_, true) => avx512::micro::<1>(k, a, b, offs, acc, acc_rs, accumulate),
                (3, false) => avx2::micro::<3>(need, k, a, b, offs, acc, acc_rs, accumulate),
                (2, false) => avx2::micro::<2>(need, k, a, b, offs, acc, acc_rs, accumulate),
                (_, false) => avx2::micro::<1>(need, k, a, b, offs, acc, acc_rs, accumulate),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (nv, need, k, a, b, offs, acc, acc_rs, accumulate);
        unreachable!("DirectConv::new declines off x86-64");
    }
}

/// Positions per vector of the active position kernel: 16 with AVX-512, 8 with AVX2. The
/// fused epilogue ([`micro_store`]) takes grids at least this wide, so that a vector spans
/// at most two grid rows.
fn vector_positions() -> usize {
    if kernels::active_isa() == Isa::Avx512 {
        16
    } else {
        8
    }
}

/// Where [`micro_store`] writes one strip of one filter block: output rows `y + r·plane`
/// (`r < rows`) of a band whose grid rows are `wp` positions wide of which the first `ow`
/// are outputs (row stride `ow`); the strip covers grid positions `q0 .. q0 + 16·nv` of the
/// band's `positions`.
pub(crate) struct StripOut {
    y: *mut f32,
    res: Option<*const f32>,
    bias: Option<*const f32>,
    rows: usize,
    plane: usize,
    wp: usize,
    ow: usize,
    q0: usize,
    positions: usize,
    relu: bool,
}

/// [`micro`] for the last K chunk of a strip: the accumulators (plus `acc`'s, the earlier
/// chunks' sums, when given) go through bias, residual and ReLU straight into the output
/// rows — masked stores of the valid columns, at most two grid rows per vector — instead of
/// the accumulator tile and a second pass ([`DirectConv::epilogue`], which took ~20 % of
/// the 7×7/2 stem's time).
///
/// # Safety
/// As [`micro`] for `a`, `b`, `offs` (and `acc` when given, read only); `out.wp ≥`
/// [`vector_positions`]; for
/// every valid position `q0 ≤ q < min(q0 + 16·nv, positions)` with `q mod wp < ow` and
/// `r < rows`, `y + r·plane + (q / wp)·ow + q mod wp` is writable (and the same offset of
/// `res` readable) and aliases none of the inputs; `bias` holds `rows` values.
pub(crate) unsafe fn micro_store(
    nv: usize,
    k: usize,
    a: *const f32,
    b: *const f32,
    offs: *const isize,
    acc: Option<(*const f32, usize)>,
    out: &StripOut,
) {
    debug_assert!((1..=3).contains(&nv) && out.wp >= vector_positions() && out.rows <= MR);
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: forwarded from the caller.
        unsafe {
            match (nv, kernels::active_isa() == Isa::Avx512) {
                (3, true) => avx512::micro_store::<3>(k, a, b, offs, acc, out),
                (2, true) => avx512::micro_store::<2>(k, a, b, offs, acc, out),
                (_, true) => avx512::micro_store::<1>(k, a, b, offs, acc, out),
                (3, false) => avx2::micro_store::<3>(k, a, b, offs, acc, out),
                (2, false) => avx2::micro_store::<2>(k, a, b, offs, acc, out),
                (_, false) => avx2::micro_store::<1>(k, a, b, offs, acc, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (nv, k, a, b, offs, acc, out);
        unreachable!("DirectConv::new declines off x86-64");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{LineFetch, MR, NC};
    use crate::plan::kernels;

    /// Software prefetch distance along the packed filters, in floats (2 KiB): the late
    /// layers' filters (9.4 MB at 7×7×512) come from L3 once per run, faster than the
    /// hardware prefetcher fetches them — the 7×7 layers went from 87 to 106–111 GFLOP/s
    /// (one thread; 128, 256, 512 and 1024 floats measured, 512 best).
    const PF_DIST: usize = 512;

    /// Widest band row [`fill_band`] and [`fill_phase_band2`] take (their per-vector masks
    /// are made once per call, on the stack).
    pub(super) const FILL_WIDTH: usize = 1024;

    /// The lanes of 16 floats from `start` that lie in `0..end`.
    fn lanes(start: isize, end: isize) -> __mmask16 {
        kernels::lane_mask16(-start, end - start)
    }

    /// [`super::fill_band`] in vectors: each band row written whole, 16 floats at a time, by
    /// a load masked to the input row's columns (zeros elsewhere: the padding), in place of a
    /// `memset` and a `memcpy` per row. The same values.
    ///
    /// # Safety
    /// AVX-512F available; `wq ≤ FILL_WIDTH`; `buf` holds `(c − 1)·stride + len` floats and
    /// `x_img` `c` planes of the input.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn fill_band(
        buf: &mut [f32],
        x_img: &[f32],
        c: usize,
        stride: usize,
        len: usize,
        r0: usize,
        band_rows: usize,
        wq: usize,
        ah: &crate::ops::padding::Axis,
        aw: &crate::ops::padding::Axis,
    ) {
        let (ih, iw, pb) = (ah.input, aw.input, aw.pad_begin as isize);
        let vectors = wq.div_ceil(16);
        let mut loads = [0 as __mmask16; FILL_WIDTH / 16];
        for (v, m) in loads.iter_mut().enumerate().take(vectors) {
            *m = lanes(16 * v as isize - pb, iw as isize);
        }
        for ch in 0..c {
            let dst = buf[ch * stride..][..len].as_mut_ptr();
            let xc = x_img[ch * ih * iw..].as_ptr();
            for i in 0..band_rows {
                // The last row of a grid whose rows share their padding may end at `len`.
                let row = dst.wrapping_add(i * wq);
                let width = ((i + 1) * wq).min(len).saturating_sub(i * wq);
                match (r0 + i).checked_sub(ah.pad_begin).filter(|&r| r < ih) {
                    Some(r) => {
                        let line = xc.wrapping_add(r * iw).wrapping_offset(-pb);
                        for (v, &m) in loads[..width.div_ceil(16)].iter().enumerate() {
                            let store = lanes(0, (width - 16 * v) as isize);
                            // SAFETY: the load reads only lanes within input row `r` of this
                            // channel; the store only `row[16v ..][..width − 16v]`, in `buf`.
                            unsafe {
                                let x = _mm512_maskz_loadu_ps(m, line.wrapping_add(16 * v));
                                _mm512_mask_storeu_ps(row.add(16 * v), store, x);
                            }
                        }
                    }
                    // SAFETY: `row ..+ width` lies in this channel's `len` floats.
                    None => unsafe { std::ptr::write_bytes(row, 0, width) },
                }
            }
            let done = (band_rows * wq).min(len);
            // SAFETY: `done ≤ len`.
            unsafe { std::ptr::write_bytes(dst.add(done), 0, len - done) };
        }
    }

    /// [`super::fill_phase_band`] for a column stride of 2, in vectors: 32 input columns at
    /// a time (loads masked to the row: the padding) split into both column phases' 16 grid
    /// columns by two-source permutes, where the scalar path read each input row once per
    /// phase and copied every other element. The same values.
    ///
    /// # Safety
    /// AVX-512F available; `wq ≤ FILL_WIDTH`; `ps ≥ band_rows·wq`; `buf` holds
    /// `c·2·sh·ps` floats and `x_img` `c` planes of the input.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn fill_phase_band2(
        buf: &mut [f32],
        x_img: &[f32],
        c: usize,
        ps: usize,
        r0: usize,
        band_rows: usize,
        sh: usize,
        wq: usize,
        ah: &crate::ops::padding::Axis,
        aw: &crate::ops::padding::Axis,
    ) {
        let (ih, iw, pl) = (ah.input, aw.input, aw.pad_begin as isize);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let vectors = wq.div_ceil(16);
        // Grid columns `16v ..` of phase `pc` are padded columns `2·16v + pc ..`, input
        // columns `32v − pl ..`: two loads of 16.
        let mut loads = [(0 as __mmask16, 0 as __mmask16, 0 as __mmask16); FILL_WIDTH / 16];
        for (v, m) in loads.iter_mut().enumerate().take(vectors) {
            let base = 32 * v as isize - pl;
            *m = (lanes(base, iw as isize), lanes(base + 16, iw as isize), lanes(0, (wq - 16 * v) as isize));
        }
        let phases = 2 * sh;
        for ch in 0..c {
            let xc = x_img[ch * ih * iw..].as_ptr();
            for pr in 0..sh {
                let d0 = buf[(ch * phases + pr * 2) * ps..][..2 * ps].as_mut_ptr();
                let d1 = d0.wrapping_add(ps);
                for u in 0..band_rows {
                    let (r0w, r1w) = (d0.wrapping_add(u * wq), d1.wrapping_add(u * wq));
                    match (sh * (r0 + u) + pr).checked_sub(ah.pad_begin).filter(|&r| r < ih) {
                        Some(r) => {
                            let line = xc.wrapping_add(r * iw).wrapping_offset(-pl);
                            for (v, &(ma, mb, store)) in loads[..vectors].iter().enumerate() {
                                // SAFETY: the loads read only lanes within input row `r` of
                                // this channel; the stores `wq` floats a row, within the
                                // phases' `ps ≥ band_rows·wq`.
                                unsafe {
                                    let a = _mm512_maskz_loadu_ps(ma, line.wrapping_add(32 * v));
                                    let b = _mm512_maskz_loadu_ps(mb, line.wrapping_add(32 * v + 16));
                                    _mm512_mask_storeu_ps(r0w.add(16 * v), store, _mm512_permutex2var_ps(a, even, b));
                                    _mm512_mask_storeu_ps(r1w.add(16 * v), store, _mm512_permutex2var_ps(a, odd, b));
                                }
                            }
                        }
                        // SAFETY: as the stores above.
                        None => unsafe {
                            std::ptr::write_bytes(r0w, 0, wq);
                            std::ptr::write_bytes(r1w, 0, wq);
                        },
                    }
                }
                // SAFETY: each phase's rows end at `band_rows·wq ≤ ps`.
                unsafe {
                    std::ptr::write_bytes(d0.add(band_rows * wq), 0, ps - band_rows * wq);
                    std::ptr::write_bytes(d1.add(band_rows * wq), 0, ps - band_rows * wq);
                }
            }
        }
    }

    /// The narrow-plane kernels' `MP × NC` accumulators: `acc`'s (`[p][NC]`) when
    /// `accumulate`, else zeros.
    ///
    /// # Safety
    /// AVX-512F available; `acc` holds `MP·NC` floats when `accumulate`.
    #[inline(always)]
    unsafe fn rows_acc<const MP: usize>(acc: *const f32, accumulate: bool) -> [[__m512; 2]; MP] {
        let mut c = [[_mm512_setzero_ps(); 2]; MP];
        if accumulate {
            for (p, row) in c.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    // SAFETY: the caller's contract.
                    *v = unsafe { _mm512_loadu_ps(acc.add(p * NC + 16 * j)) };
                }
            }
        }
        c
    }

    /// Stores [`rows_acc`]'s accumulators back into `acc`.
    ///
    /// # Safety
    /// AVX-512F available; `acc` holds `MP·NC` floats.
    #[inline(always)]
    unsafe fn store_rows_acc<const MP: usize>(c: &[[__m512; 2]; MP], acc: *mut f32) {
        for (p, row) in c.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                // SAFETY: the caller's contract.
                unsafe { _mm512_storeu_ps(acc.add(p * NC + 16 * j), *v) };
            }
        }
    }

    /// [`super::micro_rows_3x3`] for `MP` positions, the first `SPLIT` in one output row and
    /// the rest (if any) `gap` floats further on, in the next: [`micro_rows`] without the
    /// products of the taps that read the padding (`TOP`: the first row is the plane's
    /// first, which skips the taps of kernel row 0; `BOTTOM`: the call's last row is the
    /// plane's last, which skips kernel row 2; `LEFT`: each row's first position is the
    /// plane's first column, which skips kernel column 0; `RIGHT`: each row's last position
    /// is the plane's last column, which skips kernel column 2).
    ///
    /// # Safety
    /// As [`super::micro_rows_3x3`].
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn micro_rows_3x3<
        const MP: usize,
        const SPLIT: usize,
        const TOP: bool,
        const BOTTOM: bool,
        const LEFT: bool,
        const RIGHT: bool,
    >(
        k: usize,
        a: *const f32,
        mut pf: LineFetch,
        b: *const f32,
        gap: usize,
        offs: *const isize,
        acc: *mut f32,
        accumulate: bool,
    ) {
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            let mut c = rows_acc::<MP>(acc, accumulate);
            let mut ap = a;
            let mut kk = 0;
            while kk < k {
                // One input channel: its nine taps, each a compile-time set of positions (the
                // channel's line prefetches first, so that the taps are one straight run).
                for _ in 0..9 {
                    pf.step();
                }
                macro_rules! taps {
                    ($(($i:literal, $j:literal)),*) => {$(
                        _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(4 * PF_DIST).cast());
                        tap::<MP, SPLIT, TOP, BOTTOM, LEFT, RIGHT, $i, $j>(&mut c, ap, b.offset(*offs.add(kk + 3 * $i + $j)), gap);
                        ap = ap.add(NC);
                    )*};
                }
                taps!((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2));
                kk += 9;
            }
            store_rows_acc(&c, acc);
        }
    }

    /// Tap `(I, J)` of [`micro_rows_3x3`]: `c[p] += b[pos(p)] · a` for the positions whose
    /// tap reads the input, not the padding.
    ///
    /// # Safety
    /// AVX-512F available; `a` holds `NC` floats; `b` (the tap's first position) is readable
    /// at every position's offset.
    #[inline(always)]
    unsafe fn tap<
        const MP: usize,
        const SPLIT: usize,
        const TOP: bool,
        const BOTTOM: bool,
        const LEFT: bool,
        const RIGHT: bool,
        const I: usize,
        const J: usize,
    >(
        c: &mut [[__m512; 2]; MP],
        a: *const f32,
        b: *const f32,
        gap: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            let w0 = _mm512_loadu_ps(a);
            let w1 = _mm512_loadu_ps(a.add(16));
            // Each row's columns whose tap lies inside the input: a range, so that the loops
            // unroll without branches.
            let (lo, hi) = (usize::from(J == 0 && LEFT), if J == 2 && RIGHT { SPLIT - 1 } else { SPLIT });
            let first = !(I == 0 && TOP || I == 2 && BOTTOM && MP == SPLIT);
            let second = MP > SPLIT && !(I == 2 && BOTTOM);
            if first {
                for (p, row) in c[lo..hi].iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*b.add(lo + p));
                    row[0] = _mm512_fmadd_ps(xv, w0, row[0]);
                    row[1] = _mm512_fmadd_ps(xv, w1, row[1]);
                }
            }
            if second {
                for (p, row) in c[SPLIT + lo..SPLIT + hi].iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*b.add(SPLIT + lo + p + gap));
                    row[0] = _mm512_fmadd_ps(xv, w0, row[0]);
                    row[1] = _mm512_fmadd_ps(xv, w1, row[1]);
                }
            }
        }
    }

    /// [`super::micro_rows`] for `MP` positions, the first `SPLIT` in one grid row and the
    /// rest `gap` floats further on (the next row).
    ///
    /// # Safety
    /// As [`super::micro_rows`].
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn micro_rows<const MP: usize, const SPLIT: usize>(
        k: usize,
        a: *const f32,
        mut pf: LineFetch,
        b: *const f32,
        gap: usize,
        offs: *const isize,
        acc: *mut f32,
        accumulate: bool,
    ) {
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            let mut c = rows_acc::<MP>(acc, accumulate);
            let mut ap = a;
            for kk in 0..k {
                _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(4 * PF_DIST).cast());
                pf.step();
                let w0 = _mm512_loadu_ps(ap);
                let w1 = _mm512_loadu_ps(ap.add(16));
                let bp = b.offset(*offs.add(kk));
                for (p, row) in c.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(if p < SPLIT { *bp.add(p) } else { *bp.add(p + gap) });
                    row[0] = _mm512_fmadd_ps(xv, w0, row[0]);
                    row[1] = _mm512_fmadd_ps(xv, w1, row[1]);
                }
                ap = ap.add(NC);
            }
            store_rows_acc(&c, acc);
        }
    }

    /// [`super::store_segment`].
    ///
    /// # Safety
    /// AVX-512F available; `src` (and `res`) at least as long as `dst`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn store_segment(
        dst: &mut [f32],
        src: &[f32],
        bias: f32,
        res: Option<&[f32]>,
        relu: bool,
        accumulate: bool,
    ) {
        let n = dst.len();
        let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
        let r = res.map(<[f32]>::as_ptr);
        let (bv, zero) = (_mm512_set1_ps(bias), _mm512_setzero_ps());
        let mut i = 0;
        while i < n {
            let m: __mmask16 = if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 };
            // SAFETY: lanes of `m` lie below `n`; the caller's lengths cover them.
            unsafe {
                let mut v = _mm512_maskz_loadu_ps(m, s.add(i));
                if accumulate {
                    v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, d.add(i)), v);
                } else {
                    v = _mm512_add_ps(v, bv);
                    if let Some(r) = r {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, r.add(i)));
                    }
                    if relu {
                        v = _mm512_max_ps(v, zero);
                    }
                }
                _mm512_mask_storeu_ps(d.add(i), m, v);
            }
            i += 16;
        }
    }

    /// `Σ_kk a[kk][r] · b[offs[kk] + j]` for `r < MR`, `j < 16·NV`, plus `acc[r·acc_rs + j]`
    /// when `init`: the micro-kernel's accumulators.
    ///
    /// # Safety
    /// As [`super::micro`].
    #[inline(always)]
    unsafe fn products<const NV: usize>(
        k: usize,
        a: *const f32,
        b: *const f32,
        offs: *const isize,
        init: Option<(*const f32, usize)>,
    ) -> [[__m512; NV]; MR] {
        let mut c = [[_mm512_setzero_ps(); NV]; MR];
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            if let Some((acc, acc_rs)) = init {
                for (r, row) in c.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(acc.add(r * acc_rs + 16 * j));
                    }
                }
            }
            let mut ap = a;
            for kk in 0..k {
                // A hint only: prefetching past the end of `a` does not fault.
                _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(PF_DIST).cast());
                rank1(&mut c, ap, b.offset(*offs.add(kk)));
                ap = ap.add(MR);
            }
        }
        c
    }

    /// `c[r][j] += a[r] · b[16j ..]` for `r < MR`, `j < NV`: one tap of the 8 × 16·NV
    /// micro-kernels (this module's and the pointwise one's).
    ///
    /// # Safety
    /// AVX-512F available; `a` holds `MR` floats, `b` `16·NV`.
    #[inline(always)]
    pub(in crate::plan::direct) unsafe fn rank1<const NV: usize>(
        c: &mut [[__m512; NV]; MR],
        a: *const f32,
        b: *const f32,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            let mut bv = [_mm512_setzero_ps(); NV];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(b.add(16 * j));
            }
            for (r, row) in c.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r));
                for (v, bj) in row.iter_mut().zip(&bv) {
                    *v = _mm512_fmadd_ps(av, *bj, *v);
                }
            }
        }
    }

    /// `acc[r·acc_rs + j] (+)= Σ_kk a[kk][r] · b[offs[kk] + j]` for `r < MR`, `j < 16·NV`.
    ///
    /// # Safety
    /// As [`super::micro`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn micro<const NV: usize>(
        k: usize,
        a: *const f32,
        b: *const f32,
        offs: *const isize,
        acc: *mut f32,
        acc_rs: usize,
        accumulate: bool,
    ) {
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            let c = products::<NV>(k, a, b, offs, accumulate.then_some((acc.cast_const(), acc_rs)));
            for (r, row) in c.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    _mm512_storeu_ps(acc.add(r * acc_rs + 16 * j), *v);
                }
            }
        }
    }

    /// The 16 × 16 transpose of `r` (row `i` of the result is lane `i` of every input):
    /// pairs of rows interleaved, then pairs of pairs, then 128-bit lanes gathered twice.
    #[inline(always)]
    fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // SAFETY: register operations only; the callers run with AVX-512F available.
        unsafe {
            let t: [__m512; 16] = std::array::from_fn(|i| {
                let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_ps(a, b)
                } else {
                    _mm512_unpackhi_ps(a, b)
                }
            });
            // Group g (rows 4g .. 4g + 4): u[4g + k] holds column 4L + k of those rows in
            // 128-bit lane L.
            let u: [__m512; 16] = std::array::from_fn(|i| {
                let (g, k) = (i / 4, i % 4);
                let (a, b) = (_mm512_castps_pd(t[4 * g + k / 2]), _mm512_castps_pd(t[4 * g + k / 2 + 2]));
                _mm512_castpd_ps(if k % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
            });
            let mut out = [_mm512_setzero_ps(); 16];
            for k in 0..4 {
                let (even_lo, odd_lo) =
                    (_mm512_shuffle_f32x4::<0x88>(u[k], u[4 + k]), _mm512_shuffle_f32x4::<0xDD>(u[k], u[4 + k]));
                let (even_hi, odd_hi) = (
                    _mm512_shuffle_f32x4::<0x88>(u[8 + k], u[12 + k]),
                    _mm512_shuffle_f32x4::<0xDD>(u[8 + k], u[12 + k]),
                );
                out[k] = _mm512_shuffle_f32x4::<0x88>(even_lo, even_hi);
                out[8 + k] = _mm512_shuffle_f32x4::<0xDD>(even_lo, even_hi);
                out[4 + k] = _mm512_shuffle_f32x4::<0x88>(odd_lo, odd_hi);
                out[12 + k] = _mm512_shuffle_f32x4::<0xDD>(odd_lo, odd_hi);
            }
            out
        }
    }

    /// [`super::avx2::rows_epilogue`] in 16 × 16 blocks: the same operations on the same
    /// values in the same order (so the same bits), half the transposes' shuffles per float
    /// and one store per output row and 16 positions.
    ///
    /// # Safety
    /// As [`super::avx2::rows_epilogue`], with AVX-512F available.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn rows_epilogue(
        acc: *const f32,
        plane: usize,
        ys: usize,
        rows: usize,
        y: *mut f32,
        res: Option<*const f32>,
        bias: Option<*const f32>,
        relu: bool,
    ) {
        // SAFETY (whole body): as the caller guarantees; the sums are read at the plane's
        // positions only (NC filters each, so `f0 + 16 ≤ NC` is in), the bias and the
        // residual and output rows through masks of the block's `fr` filters and the `n`
        // positions left.
        unsafe {
            let zero = _mm512_setzero_ps();
            let prefix = |n: usize| -> __mmask16 {
                if n >= 16 {
                    0xffff
                } else {
                    (1u16 << n) - 1
                }
            };
            for p0 in (0..plane).step_by(16) {
                let n = 16.min(plane - p0);
                let m = prefix(n);
                for f0 in (0..rows).step_by(16) {
                    let fr = 16.min(rows - f0);
                    // Past the plane's end the last position again (its lanes are not stored):
                    // a fixed count of loads, so the 16 rows stay in registers.
                    let mut r: [__m512; 16] =
                        std::array::from_fn(|i| _mm512_loadu_ps(acc.add((p0 + i.min(n - 1)) * NC + f0)));
                    if relu || res.is_some() {
                        // The bias (and, with nothing added after it, the ReLU) on each
                        // position's vector of filters before the transpose.
                        let bv = bias.map_or(zero, |b| _mm512_maskz_loadu_ps(prefix(fr), b.add(f0)));
                        for v in &mut r {
                            *v = _mm512_add_ps(*v, bv);
                            if relu && res.is_none() {
                                *v = _mm512_max_ps(*v, zero);
                            }
                        }
                        for (j, &v) in transpose16(r).iter().enumerate().take(fr) {
                            let at = (f0 + j) * ys + p0;
                            let x = match res {
                                None => v,
                                Some(rp) => {
                                    let x = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, rp.add(at)));
                                    if relu {
                                        _mm512_max_ps(x, zero)
                                    } else {
                                        x
                                    }
                                }
                            };
                            _mm512_mask_storeu_ps(y.add(at), m, x);
                        }
                    } else {
                        for (j, &v) in transpose16(r).iter().enumerate().take(fr) {
                            // A zero bias is not added (`conv_epilogue_row`: −0 stays −0).
                            let b = bias.map_or(0.0, |b| *b.add(f0 + j));
                            let x = if b != 0.0 { _mm512_add_ps(v, _mm512_set1_ps(b)) } else { v };
                            _mm512_mask_storeu_ps(y.add((f0 + j) * ys + p0), m, x);
                        }
                    }
                }
            }
        }
    }

    /// [`micro`] for a band's last K chunk, storing `relu?(sum + bias + residual)` into the
    /// output rows instead of the accumulator tile (see [`super::micro_store`]).
    ///
    /// # Safety
    /// As [`super::micro_store`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn micro_store<const NV: usize>(
        k: usize,
        a: *const f32,
        b: *const f32,
        offs: *const isize,
        acc: Option<(*const f32, usize)>,
        out: &super::StripOut,
    ) {
        // SAFETY (whole body): pointers and extents as the caller guarantees; the masked
        // stores and loads touch only the lanes of valid outputs.
        unsafe {
            let c = products::<NV>(k, a, b, offs, acc);
            let zero = _mm512_setzero_ps();
            let lanes = kernels::lane_mask16;
            let (wp, ow) = (out.wp as isize, out.ow as isize);
            for j in 0..NV {
                // Positions q0 + 16j + i: grid row `a`, columns c0 + i (i < wp − c0), then
                // row a + 1, columns c0 + i − wp (wp ≥ 16: at most two rows per vector).
                let q = (out.q0 + 16 * j) as isize;
                let left = out.positions as isize - q;
                let (row, c0) = (q / wp, q % wp);
                let m1 = lanes(0, (ow - c0).min(wp - c0).min(left));
                let m2 = lanes(wp - c0, (wp - c0 + ow).min(left));
                let o1 = row * ow + c0;
                let o2 = (row + 1) * ow + c0 - wp;
                for (r, v) in c.iter().enumerate().take(out.rows) {
                    let bias = out.bias.map_or(zero, |p| _mm512_set1_ps(*p.add(r)));
                    let base = (r * out.plane) as isize;
                    for (o, m) in [(o1, m1), (o2, m2)] {
                        if m == 0 {
                            continue;
                        }
                        let at = base + o;
                        let mut x = _mm512_add_ps(v[j], bias);
                        if let Some(res) = out.res {
                            x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, res.wrapping_offset(at)));
                        }
                        if out.relu {
                            x = _mm512_max_ps(x, zero);
                        }
                        _mm512_mask_storeu_ps(out.y.wrapping_offset(at), m, x);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{avx2_blocks, busiest, pack_panels, strips_cost, DirectConv, PhaseGrid, Sweeps, NC};
    use crate::ops::padding::Axis;
    use crate::plan::kernels::{self, Isa};

    fn conv_axis(input: usize, kernel: usize, stride: usize, pad_begin: usize, pad_end: usize) -> Axis {
        let output = (input + pad_begin + pad_end - kernel) / stride + 1;
        Axis { input, output, kernel, stride, dilation: 1, pad_begin, pad_end }
    }

    /// The AVX-512 band fills (stride 1: each row whole by masked loads; column stride 2:
    /// both column phases of a row at once) write the scalar fills' bits everywhere in the
    /// band, over widths across several vectors, paddings 0–3 on either side, bands above,
    /// inside and below the image and both row strides, into buffers full of garbage.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_band_fills_write_what_the_scalar_ones_do() {
        if kernels::active_isa() != Isa::Avx512 {
            return; // Only the scalar fills run here.
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (c, ih) = (3, 9);
        for iw in [1, 5, 14, 16, 17, 31, 33, 56, 70] {
            let x: Vec<f32> = (0..c * ih * iw).map(|i| i as f32 * 0.5 - 7.0).collect();
            for (pb, pe) in [(0, 0), (1, 1), (0, 1), (2, 1), (3, 3), (1, 2)] {
                if iw + pb + pe < 3 {
                    continue; // No 3-wide window fits.
                }
                for stride in [1, 2] {
                    let (ah, aw) = (conv_axis(ih, 3, stride, pb, pb), conv_axis(iw, 3, stride, pb, pe));
                    let q = PhaseGrid::new(&ah, &aw);
                    for (r0, band_rows) in [(0, 1), (0, 4), (2, 5), (3, ih + 2 * pb), (ih, 3)] {
                        let fill = |vector: bool| {
                            let ps = band_rows * q.width + 9;
                            let mut buf = vec![f32::NAN; c * q.phases * (ps + 3)];
                            if q.phases == 1 {
                                let wq = q.width;
                                // The shortest band `fill_band` admits, and a longer one.
                                for len in [(band_rows - 1) * wq + pb + iw, band_rows * wq + 7] {
                                    let args = (&x[..], c, len + 3, len, r0, band_rows, wq, &ah, &aw);
                                    if vector {
                                        // SAFETY: AVX-512F checked above; `buf` holds c·(len + 3).
                                        unsafe {
                                            super::avx512::fill_band(
                                                &mut buf, args.0, args.1, args.2, args.3, args.4, args.5, args.6,
                                                args.7, args.8,
                                            )
                                        };
                                    } else {
                                        super::fill_band_scalar(
                                            &mut buf, args.0, args.1, args.2, args.3, args.4, args.5, args.6, args.7,
                                            args.8,
                                        );
                                    }
                                }
                            } else {
                                if vector {
                                    // SAFETY: AVX-512F checked above; `buf` holds c·4·ps.
                                    unsafe {
                                        super::avx512::fill_phase_band2(
                                            &mut buf, &x, c, ps, r0, band_rows, q.sh, q.width, &ah, &aw,
                                        )
                                    };
                                } else {
                                    super::fill_phase_band_scalar(&mut buf, &x, c, ps, r0, band_rows, &q, &ah, &aw);
                                }
                            }
                            buf
                        };
                        assert_eq!(
                            bits(&fill(true)),
                            bits(&fill(false)),
                            "width {iw}, pads {pb}/{pe}, stride {stride}, rows {r0} + {band_rows}"
                        );
                    }
                }
            }
        }
    }

    /// The narrow-plane kernel's vector epilogues (AVX2's 8 × 8 blocks and, where the CPU has
    /// it, AVX-512's 16 × 16) write the bits of a scalar copy of each filter's sums followed
    /// by `conv_epilogue_row` — with and without bias, ReLU, a residual tensor or the
    /// residual in the output — for planes with 8 × 8 and 16 × 16 tails and blocks of fewer
    /// than 32 and than 16 filters, and leave the floats between the output rows alone.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn rows_epilogue_gives_the_bits_of_the_scalar_epilogue() {
        if !kernels::avx2_fma() {
            return; // No AVX2: the narrow-plane kernel does not run here.
        }
        let noise = |i: usize, salt: u32| {
            let h = (i as u32 ^ salt).wrapping_mul(2_654_435_761).rotate_left(13).wrapping_mul(40_503);
            if h.is_multiple_of(17) {
                -0.0
            } else {
                (h >> 8) as f32 / (1 << 23) as f32 - 1.0
            }
        };
        for plane in [13, 49, 196, 56 * 4] {
            for rows in [NC, 20, 7] {
                let ys = plane + 3;
                let acc: Vec<f32> = (0..plane * NC).map(|i| noise(i, 1)).collect();
                let bias: Vec<f32> = (0..rows).map(|i| noise(i, 2)).collect();
                let res: Vec<f32> = (0..rows * ys).map(|i| noise(i, 3)).collect();
                for residual in 0..3 {
                    for relu in [false, true] {
                        for bias in [None, Some(&bias[..])] {
                            // Residual 2: the addend in the output itself.
                            let start: Vec<f32> = if residual == 2 { res.clone() } else { vec![f32::NAN; rows * ys] };
                            let mut want = start.clone();
                            for f in 0..rows {
                                let b = bias.map_or(0.0, |b| b[f]);
                                let row = &mut want[f * ys..][..plane];
                                if residual == 2 {
                                    for (p, o) in row.iter_mut().enumerate() {
                                        let v = acc[p * NC + f] + b + *o;
                                        *o = if relu { v.max(0.0) } else { v };
                                    }
                                    continue;
                                }
                                for (p, o) in row.iter_mut().enumerate() {
                                    *o = acc[p * NC + f];
                                }
                                let r = (residual == 1).then(|| &res[f * ys..][..plane]);
                                kernels::conv_epilogue_row(row, b, r, relu);
                            }
                            for wide in [false, true] {
                                if wide && !std::arch::is_x86_feature_detected!("avx512f") {
                                    continue;
                                }
                                let mut got = start.clone();
                                let y = got.as_mut_ptr();
                                let r = match residual {
                                    0 => None,
                                    1 => Some(res.as_ptr()),
                                    _ => Some(y.cast_const()),
                                };
                                let (a, b) = (acc.as_ptr(), bias.map(<[f32]>::as_ptr));
                                // SAFETY: AVX2 and FMA (checked), AVX-512F for `wide`
                                // (checked); `acc` holds plane × NC sums, `y` and the residual
                                // `rows` rows of `ys ≥ plane` floats, `bias` rows.
                                unsafe {
                                    if wide {
                                        super::avx512::rows_epilogue(a, plane, ys, rows, y, r, b, relu)
                                    } else {
                                        super::avx2::rows_epilogue(a, plane, ys, rows, y, r, b, relu)
                                    }
                                };
                                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                                assert_eq!(
                                    bits(&got),
                                    bits(&want),
                                    "plane {plane}, {rows} filters, residual {residual}, relu {relu}, bias {}, \
                                     512-bit {wide}",
                                    bias.is_some()
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// A strided conv of one image on two threads takes a band per thread, never one band
    /// whose filters the threads split (each split would fill the whole band's phase
    /// planes); with as many images as threads, or one thread, the band stays whole.
    #[test]
    fn a_strided_band_is_cut_per_thread_not_split_by_filters() {
        let (m, c) = (128, 128);
        let Some(d) = DirectConv::new(&vec![0.5; m * c * 9], &[m, c, 3, 3]) else {
            return; // No AVX2: the direct kernel does not exist here.
        };
        let axis =
            |stride| Axis { input: 56, output: 56 / stride, kernel: 3, stride, dilation: 1, pad_begin: 1, pad_end: 1 };
        let q = PhaseGrid::new(&axis(2), &axis(2));
        let t = d.tiling(1, 28, &q, 2);
        assert!(t.rows <= 14 && t.msplit == 1, "{t:?}");
        // As many images as threads, or one thread: the rule leaves the band whole (the 28
        // rows the cost model picks for this conv).
        for (n, threads) in [(2, 2), (1, 1)] {
            let t = d.tiling(n, 28, &q, threads);
            assert_eq!((t.rows, t.msplit), (28, 1), "{n} images, {threads} threads: {t:?}");
        }
    }

    #[test]
    fn sweeps_cover_every_tap_of_every_block_once_in_chunk_order() {
        // 70 channels of a 3×3 conv: chunks of 288 taps (the last 54), sweeps of 144.
        let sw = Sweeps { k: 630, kc: 288, nb: 3, sub: 144, first: 5 };
        let all: Vec<_> = sw.iter().collect();
        for bi in 0..3 {
            let mut next = 0;
            for &(k0, _, s0, sn) in all.iter().filter(|s| s.1 == bi) {
                assert_eq!(k0 + s0, next, "block {bi}: sweeps in order, none skipped");
                assert!((1..=144).contains(&sn) && s0 + sn <= 288.min(630 - k0), "{k0} {s0} {sn}");
                next += sn;
            }
            assert_eq!(next, 630, "block {bi}: all of K");
        }
        // Within a chunk every block runs before the next chunk starts.
        assert!(all.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(all.first(), Some(&(0, 0, 0, 144)));
        assert_eq!(all.last(), Some(&(576, 2, 0, 54)));
    }

    #[test]
    fn avx2_blocks_cover_the_needed_positions_within_the_strip() {
        for nv in 1..=3 {
            let nr = 16 * nv;
            // A whole strip keeps the full layout: two blocks of `nv` vectors (one of 2 for 16).
            let full = avx2_blocks(nv, nr);
            assert_eq!(full.iter().map(|b| b.1).sum::<usize>(), 2 * nv, "nv {nv}");
            for need in 1..=nr {
                let blocks = avx2_blocks(nv, need);
                // Contiguous from 0, at most 3 vectors each, the needed positions rounded up
                // to a vector, inside the strip.
                let mut end = 0;
                for (j0, v) in blocks.into_iter().filter(|b| b.1 > 0) {
                    assert!(j0 == end && v <= 3, "nv {nv} need {need}: {blocks:?}");
                    end += 8 * v;
                }
                assert_eq!(end, need.next_multiple_of(8), "nv {nv} need {need}: {blocks:?}");
                assert!(end <= nr);
            }
        }
    }

    #[test]
    fn strip_cost_counts_what_each_kernel_computes() {
        // 14×14 at stride 1: 15 × 14 grid positions. AVX-512 computes 5 strips of 48 (or 7 of
        // 32), AVX2 4 strips of 48 and one 3-vector block for the last 18.
        assert_eq!(strips_cost(210, 3, Isa::Avx512), 240.0 * 0.95);
        assert_eq!(strips_cost(210, 2, Isa::Avx512), 224.0);
        assert_eq!(strips_cost(210, 3, Isa::Avx2), 216.0 * 0.95);
        // 7×7: 8 × 7 positions; 32 + 24 on AVX2 beats 48 + a slow 1-vector block.
        assert!(strips_cost(56, 2, Isa::Avx2) < strips_cost(56, 3, Isa::Avx2));
        assert_eq!(strips_cost(56, 2, Isa::Avx2), 32.0 + 24.0 * 0.95);
    }

    #[test]
    fn pack_panels_places_every_filter_value_and_leaves_rows_past_m() {
        // Small (sequential) and large (parallel, ≥ 2^16 floats) cases; `m` not a multiple
        // of the panel width, `k` not a multiple of the chunk.
        for (m, k, width, kc) in
            [(5usize, 7usize, 8usize, 3usize), (17, 64, 8, 32), (40, 9 * 70, 32, 288), (130, 600, 8, 288)]
        {
            let w: Vec<f32> = (0..m * k).map(|i| i as f32 + 0.5).collect();
            let panels = m.div_ceil(width);
            let mut out = vec![-1.0f32; panels * k * width];
            pack_panels(&w, m, k, width, kc, &mut out);
            for row in 0..panels * width {
                for q in 0..k {
                    let (k0, kn) = (q / kc * kc, kc.min(k - q / kc * kc));
                    let at = (k0 * panels + row / width * kn + q - k0) * width + row % width;
                    let want = if row < m { w[row * k + q] } else { -1.0 };
                    assert_eq!(out[at], want, "m {m} k {k} width {width} kc {kc}: row {row} q {q}");
                }
            }
        }
    }

    #[test]
    fn busiest_worker_load_sees_unequal_bands_and_filter_splits() {
        // 56 rows as 32 + 24 on 2 workers: one carries 32; as 28 + 28: 28.
        assert_eq!(busiest(32.0, 1, 24.0, 1, 2, 8), 32.0);
        assert_eq!(busiest(28.0, 1, 28.0, 1, 2, 8), 28.0);
        // 4 bands (3 of 17 rows, 1 of 10) on 2 workers: 17 + 17 | 17 + 10.
        assert_eq!(busiest(17.0, 3, 10.0, 1, 2, 8), 34.0);
        // 7 tiles on 2 workers: each cut in 2 filter chunks, 14 tasks in two ranges of 7:
        // 7 × 8.5 against 5 × 8.5 + 2 × 5 (the small tile's chunks are the second range's).
        assert_eq!(busiest(17.0, 6, 10.0, 1, 2, 8), 59.5);
        // One tile on 2 workers is cut in 2 filter chunks; one worker: everything.
        assert_eq!(busiest(10.0, 0, 10.0, 1, 2, 8), 5.0);
        assert_eq!(busiest(10.0, 3, 4.0, 1, 1, 8), 34.0);
        // Many tiles: the even share.
        assert_eq!(busiest(10.0, 7, 10.0, 1, 2, 8), 40.0);
    }
}
