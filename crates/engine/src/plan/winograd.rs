//! Winograd F(4×4, 3×3) convolution for [`super::Mode::Fast`]: stride-1, dilation-1,
//! group-1 3×3 convolutions with any padding, 2.25 multiplications per output and filter tap
//! instead of 9. F(2×2, 3×3) (4 multiplications, a 4×4 transform, `U` 16/9 of the direct
//! filters' size) is there on request ([`super::PlanOptions::winograd_tile`]); everything
//! below is written for F(4×4) and holds for F(2×2) with 16 points and 2×2 tiles.
//!
//! With the 6×6 transforms Bᵀ (input), G (filter) and Aᵀ (output) of Lavin & Gray (2015),
//! one 4×4 output tile of output channel `o` is `Aᵀ [Σ_c (G g_{o,c} Gᵀ) ⊙ (Bᵀ d_c B)] A` where
//! `d_c` is the 6×6 input patch of channel `c` under the tile (zeros outside the image, which
//! is how any padding is handled). The sum over `c` at each of the 36 positions ξ is a matrix
//! product, so a block of tiles costs 36 GEMMs `M_ξ [OC × tiles] = U_ξ [OC × IC] · V_ξ [IC × tiles]`.
//!
//! - `U` (the filter transform, computed once in f64: at compile time, or for a kernel made
//!   with [`Winograd::deferred`] at the first call that runs as Winograd) is packed in panels
//!   of 32 output channels, `[36][OC/32][IC][32]`: each GEMM panel streams contiguously.
//! - The output tiles of all images are numbered image by image in row-major order and cut
//!   into blocks (`block_tiles`: the block's transformed input `V`, `[36][IC][tiles]`,
//!   within half of L2, or within the size of `U` when that is larger). Each task transforms
//!   its block's input, then, per round of output channels (`round_channels`: the round's
//!   GEMM output `M`, `[36][tiles][channels]`, within 256 KiB), runs the 36 GEMMs and the
//!   output transform with the fused bias / residual / ReLU epilogue, writing its tiles of
//!   `Y` — `M` never leaves L2 between the steps.
//! - The GEMMs `M_ξ = V_ξᵀ U_ξ` run on an AVX-512 micro-kernel: up to 14 tiles × one panel
//!   per call, the panel's two filter vectors loaded once per input channel and the tiles'
//!   inputs broadcast, so the output channels are the vectorized dimension however few
//!   tiles a block has (16 at 14×14, batch 1). On AVX2 the same sums run as 3 tiles × the
//!   panel (4 vectors) per call, in passes of 64 input channels (`avx2::panel_product`);
//!   other CPUs call `gemm` per panel.
//! - Tasks are (block × output-channel chunk) and run on the plan's rayon pool, one round
//!   of equal blocks per thread; when the blocks are fewer than the threads the output
//!   channels are split as well, in whole panels (F(4×4) on AVX-512 and AVX2: the threads
//!   first transform each block's input together, a share of its input channels each, into
//!   one `V` that every channel chunk reads).
//! - On AVX-512 both transforms are vector code with one lane per tile (input: each input
//!   row under up to 16 tiles loaded as masked vectors — the padding is the mask — and split
//!   into the tiles' 6 columns by two-source permutes) or per output channel (output: each
//!   tile's 4 output rows transposed in registers so that a channel's 4 pixels are one
//!   masked store, with the epilogue). Other ISAs run plain loops compiled for AVX2+FMA and
//!   the baseline: the input transform splits each row by column phase (`x mod 4`) so that
//!   every step is element-wise over the tiles, the output transform is element-wise over
//!   the output channels and the store scalar.
//! - Which calls run as Winograd: see [`MIN_CHANNELS`], [`MAX_CHANNEL_PRODUCT`] (compile
//!   time) and [`MIN_TILES`] (per call; smaller calls run the exact kernel).
//!
//! Accuracy: the transforms multiply by up to 8 and the filter transform by fractions, so the
//! rounding error grows over exact fp32: a conv stays within 1e-4 of max|y| of the reference
//! (measured ≤ 1.2e-5, `tests/winograd.rs`); Keras ResNet-50's logits on the 200 sample images
//! within 2.6e-6 of max|logit| of exact mode (`crates/resnet/tests/fast_mode.rs`, batches of 8
//! and of 2).

use std::cell::RefCell;
use std::sync::OnceLock;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::ops::conv::ConvGeometry;
use crate::plan::kernels::{self, multiversion, OutPtr};

/// Fewest input and output channels for which [`super::Mode::Fast`] uses Winograd: below
/// this the transforms cost more than the multiplications they save.
pub const MIN_CHANNELS: usize = 16;

/// Most input × output channels for which [`super::Mode::Fast`] uses Winograd (ResNet's
/// 512×512 convs at 7×7 included). `U` is 4× the size of the direct filters (16/9× for
/// F(2×2)), which are kept too: 113 MB of F(4×4) and 50 MB of F(2×2) for ResNet-50's three
/// 512×512 convs, each made only when a call needs it (the plan's `winograd_filters`: at
/// 224×224 a 7×7 plane is 4 tiles of 4×4 and 16 of 2×2, so F(2×2) runs at batches 1–3 and
/// F(4×4) from batch 4 on; on CPUs with two 512-bit FMAs a cycle no F(2×2) there:
/// `PlanOptions::winograd_small_f2`). Single-layer models, one thread, `resnet bench` medians,
/// 7×7×512, on an Intel Xeon: batch 1 F(2×2) 1.10–1.16 ms, exact 1.36–1.49, F(4×4)
/// 1.61–1.72 (in a whole ResNet-50 run there F(2×2) and exact took the same time, its `U`
/// streaming from memory); batch 4 F(2×2) 4.24–4.41, F(4×4) 2.44–2.61, exact 5.41–5.58;
/// batch 8 F(2×2) 11.05–11.43, F(4×4) 4.98–5.34, exact 10.9–11.3. On an AMD EPYC (Zen 4),
/// batch 1: F(2×2) 1.69–1.75 ms, exact 2.37–2.58, F(4×4) 2.41–2.48.
pub const MAX_CHANNEL_PRODUCT: usize = 512 * 512;

/// Fewest output tiles (all images together) for which a call runs as Winograd. `U` is 4×
/// the size of the direct filters and streams from memory once per block, so with few
/// tiles Winograd is memory-bound and slower than the direct product. Measured on Keras
/// ResNet-50 at batch 1 (`winograd_profile_resnet50`, min of 15 interleaved runs) with the
/// panel micro-kernel: 16 tiles (14×14, 256 ch) 1.6–1.8× the exact speed on 1 thread and
/// 1.4–1.5× on 2; with `gemm` for the products (before) the same layer measured 0.9×.
pub const MIN_TILES: usize = 16;

/// Budget of one block's transformed input `V`, in bytes (half of a 1 MiB L2; see
/// [`block_tiles`]).
const BLOCK_BYTES: usize = 1 << 19;

/// Output channels per filter panel: `U` is packed in panels of this many channels (two
/// AVX-512 vectors, the micro-kernel's width), the last one zero-padded.
const PANEL: usize = 32;

/// Most tiles per micro-kernel call: `2·ROWS` accumulators and the panel's two filter
/// vectors fill the 32 vector registers.
const ROWS: usize = 14;

/// F(4×4) planes of fewer tiles per row than this transform their input by gathers across
/// tile rows (`avx512::gathered_tiles16`) instead of row loads, which fill `tw` of 16 lanes.
/// Single-layer models, fast mode, one thread, 5 alternated rounds (median / min): 256
/// channels at 14×14 (4 tiles per row) 0.76 / 0.78 of the row loads' time, but 128 at 28×28
/// (7 per row) 1.15 / 1.10.
const GATHER_BELOW: usize = 5;

/// Budget of one round's GEMM output `M` (`[36][tiles][channels]`), in bytes: a task runs
/// its output channels in rounds so that `M` is still in L2 when the output transform reads it.
const ROUND_BYTES: usize = 1 << 18;

/// The filter transform `G` of F(2×2, 3×3) (4×3).
const G2: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];

/// The filter transform `G` (6×3).
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

thread_local! {
    /// Per-thread scratch (V, M, strips); grows once to the largest block and is reused.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The `V` of a call whose threads share its blocks (see [`Winograd::run`]), held by
    /// the calling thread; grows once.
    static SHARED_V: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A block's `V` as bfloat16 channel pairs (`Mode::Bf16`); grows once.
    static V_BF16: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// A 3×3 convolution's filters in the Winograd domain.
#[derive(Clone)]
pub struct Winograd {
    ic: usize,
    oc: usize,
    /// Output tile side: 4 for F(4×4, 3×3), 2 for F(2×2, 3×3).
    tile: usize,
    /// Calls with fewer output tiles run the exact kernel.
    min_tiles: usize,
    /// `U[ξ][c][o] = (G g_{o,c} Gᵀ)[ξ]` in panels of [`PANEL`] output channels: row-major
    /// `[points, panels, IC, PANEL]`, the last panel's missing channels zero. Unset in a
    /// [`Winograd::deferred`] kernel until [`Winograd::prepare`].
    u: OnceLock<Vec<f32>>,
    /// `Mode::Bf16` ([`Winograd::use_bf16`]): `U` as bfloat16 input-channel pairs,
    /// `[points, panels, ⌈IC/2⌉, PANEL]` words `U[2p] | U[2p+1] << 16`, made from `U` by the
    /// first call; the products then run on bfloat16 `U` and `V` with float32 sums.
    bf16: Option<OnceLock<Vec<u32>>>,
}

impl std::fmt::Debug for Winograd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Winograd").field("ic", &self.ic).field("oc", &self.oc).field("tile", &self.tile).finish()
    }
}

/// A run of consecutive tiles of one tile row: image, tile row, first tile column, count,
/// and its first column in the block.
#[derive(Clone, Copy)]
struct Segment {
    img: usize,
    ty: usize,
    tx0: usize,
    len: usize,
    col: usize,
}

/// The tile rows cut by the block `[t0, t0 + nb)` of tiles numbered `(img, ty, tx)` row-major.
fn segments(t0: usize, nb: usize, th: usize, tw: usize) -> impl Iterator<Item = Segment> {
    let mut t = t0;
    std::iter::from_fn(move || {
        if t >= t0 + nb {
            return None;
        }
        let (img, rem) = (t / (th * tw), t % (th * tw));
        let (ty, tx0) = (rem / tw, rem % tw);
        let len = (tw - tx0).min(t0 + nb - t);
        let s = Segment { img, ty, tx0, len, col: t - t0 };
        t += len;
        Some(s)
    })
}

impl Winograd {
    /// Transforms filters `w` (`[OC, IC, 3, 3]` row-major) for F(4×4, 3×3).
    pub fn new(w: &[f32], oc: usize, ic: usize, min_tiles: usize) -> Winograd {
        Winograd::with_tile(w, oc, ic, min_tiles, 4)
    }

    /// Transforms filters `w` (`[OC, IC, 3, 3]` row-major) for F(`tile`×`tile`, 3×3), `tile`
    /// 2 or 4; `min_tiles` counts tiles of that side.
    pub fn with_tile(w: &[f32], oc: usize, ic: usize, min_tiles: usize, tile: usize) -> Winograd {
        assert!(tile == 2 || tile == 4, "F(2×2) or F(4×4)");
        assert_eq!(w.len(), oc * ic * 9, "filters are [OC, IC, 3, 3]");
        let mut wg = Winograd::empty(ic, oc, tile, min_tiles);
        wg.set_filters(w);
        wg
    }

    /// Like [`Self::with_tile`] without `U` yet: [`Self::prepare`] makes it, given the
    /// filters, before the first call that runs as Winograd. For kernels that only some
    /// calls use (ResNet's 7×7 layers: F(4×4) from batch 4 on), so that a plan never run
    /// with such calls never holds their `U` (4× the filters' size for F(4×4)).
    pub fn deferred(oc: usize, ic: usize, min_tiles: usize, tile: usize) -> Winograd {
        assert!(tile == 2 || tile == 4, "F(2×2) or F(4×4)");
        Winograd { ic, oc, tile, min_tiles, u: OnceLock::new(), bf16: None }
    }

    /// Makes `U` from `filters()` (`[OC, IC, 3, 3]` row-major) unless it is made: once, on
    /// the calling thread (it may be a task of the plan's pool); a concurrent call waits.
    pub fn prepare(&self, filters: impl FnOnce() -> Vec<f32>) {
        self.u.get_or_init(|| {
            let w = filters();
            assert_eq!(w.len(), self.oc * self.ic * 9, "filters are [OC, IC, 3, 3]");
            let mut u = vec![0.0; self.u_len()];
            transform_filters(&mut u, self.g(), self.ic, self.oc, &w, false);
            u
        });
    }

    /// A kernel with `U` zero.
    fn empty(ic: usize, oc: usize, tile: usize, min_tiles: usize) -> Winograd {
        let wg = Winograd { ic, oc, tile, min_tiles, u: OnceLock::new(), bf16: None };
        wg.u.set(vec![0.0; wg.u_len()]).expect("new");
        wg
    }

    /// Floats in `U`.
    fn u_len(&self) -> usize {
        self.points() * self.oc.next_multiple_of(PANEL) * self.ic
    }

    fn u(&self) -> &[f32] {
        self.u.get().expect("a deferred Winograd kernel runs after prepare()")
    }

    /// Whether `U` is made (a [`Self::deferred`] kernel before [`Self::prepare`]: no).
    pub fn transformed(&self) -> bool {
        self.u.get().is_some()
    }

    /// The filter transform's `G` for this tile.
    fn g(&self) -> &'static [[f64; 3]] {
        if self.tile == 2 {
            &G2
        } else {
            &G
        }
    }

    /// Output tile side (4: F(4×4, 3×3), 2: F(2×2, 3×3)).
    pub fn tile(&self) -> usize {
        self.tile
    }

    /// Points of one transformed tile: `(tile + 2)²`.
    fn points(&self) -> usize {
        (self.tile + 2) * (self.tile + 2)
    }

    /// A kernel for `ic` input and `oc` output channels whose filters are set later (and
    /// may change between calls: training), with [`Self::set_filters`]. Every call with a
    /// supported geometry runs.
    pub(crate) fn with_channels(ic: usize, oc: usize) -> Winograd {
        Winograd::empty(ic, oc, 4, 0)
    }

    /// Transforms filters `w` (`[OC, IC, 3, 3]` row-major) into this kernel's `U`.
    pub(crate) fn set_filters(&mut self, w: &[f32]) {
        let (ic, oc) = (self.ic, self.oc);
        assert_eq!(w.len(), oc * ic * 9, "filters are [OC, IC, 3, 3]");
        let (len, g) = (self.u_len(), self.g());
        if self.u.get().is_none() {
            self.u.set(vec![0.0; len]).expect("unset");
        }
        let u = self.u.get_mut().expect("set");
        transform_filters(u, g, ic, oc, w, true);
        if self.bf16.is_some() {
            self.bf16 = Some(OnceLock::new());
        }
    }

    /// Runs an F(2×2) kernel's 16 products in bfloat16 on AVX-512 BF16 CPUs
    /// ([`super::Mode::Bf16`]): `U` and each block's `V` rounded to bfloat16 channel pairs,
    /// `vdpbf16ps`, float32 sums; the transforms stay float32. F(4×4) kernels stay float32:
    /// with its transforms (entries up to 5 in Bᵀ, 8 in Aᵀ) the rounding came to 3.7e-2 of
    /// max|y| per conv on average and 8.7e-2 at worst (random convs, `tests/winograd.rs`'s
    /// cases), against 4.0e-3 and 6.8e-3 for F(2×2). Keras ResNet-50 at batch 1, one thread:
    /// F(2×2) in bf16 39.3 ms against 41.2, F(4×4) too 35.0 (logits 2.2e-2 of max|logit|
    /// from exact mode against 1.2e-2).
    pub fn use_bf16(&mut self) {
        if super::direct::bf16::supported() && self.tile == 2 {
            self.bf16 = Some(OnceLock::new());
        }
    }

    /// Whether [`Self::use_bf16`] is on.
    pub fn runs_bf16(&self) -> bool {
        self.bf16.is_some()
    }

    /// The bfloat16 `U` ([`Self::use_bf16`]), made on first use.
    fn u_bf16(&self) -> Option<&[u32]> {
        let (points, panels, ic) = (self.points(), self.oc.div_ceil(PANEL), self.ic);
        self.bf16.as_ref().map(|cell| {
            cell.get_or_init(|| {
                let (u, pairs) = (self.u(), ic.div_ceil(2));
                let round = super::direct::bf16::round_bf16;
                let mut out = vec![0u32; points * panels * pairs * PANEL];
                for (src, dst) in u.chunks_exact(ic * PANEL).zip(out.chunks_exact_mut(pairs * PANEL)) {
                    for c in 0..ic {
                        for j in 0..PANEL {
                            dst[c / 2 * PANEL + j] |= u32::from(round(src[c * PANEL + j])) << (16 * (c % 2));
                        }
                    }
                }
                out
            })
            .as_slice()
        })
    }

    pub fn input_channels(&self) -> usize {
        self.ic
    }

    pub fn output_channels(&self) -> usize {
        self.oc
    }

    /// Whether this call runs as Winograd: a 2-D (or 3-D with a unit depth) 3×3 stride-1
    /// dilation-1 group-1 convolution with this kernel's channel counts and at least
    /// `min_tiles` output tiles ([`MIN_TILES`] unless [`super::PlanOptions`] says otherwise).
    pub(crate) fn applies(&self, g: &ConvGeometry) -> bool {
        let [_, ah, aw] = &g.axes;
        g.n * ah.output.div_ceil(self.tile) * aw.output.div_ceil(self.tile) >= self.min_tiles && self.supports(g)
    }

    /// [`Self::applies`] without the tile count: the geometry [`Self::run`] computes.
    pub(crate) fn supports(&self, g: &ConvGeometry) -> bool {
        let [ad, ah, aw] = &g.axes;
        g.group == 1
            && g.c == self.ic
            && g.m == self.oc
            && ad.kernel == 1
            && ad.stride == 1
            && ad.pad_begin == 0
            && ad.pad_end == 0
            && [ah, aw].iter().all(|a| a.kernel == 3 && a.stride == 1 && a.dilation == 1)
    }

    /// Computes `y = relu?(conv(x) + bias + residual)` for a geometry [`Self::applies`] to
    /// (with `accumulate`: `y = relu?(y + conv(x) + bias + residual)`); `y` has the output's
    /// length.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        g: &ConvGeometry,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        relu: bool,
        accumulate: bool,
        y: &mut [f32],
    ) {
        debug_assert!(self.supports(g));
        let [ad, ah, aw] = &g.axes;
        let (oh, ow) = (ah.output, aw.output);
        if g.n * self.oc * ad.output * oh * ow == 0 {
            return;
        }
        let (th, tw) = (oh.div_ceil(self.tile), ow.div_ceil(self.tile));
        let total = g.n * th * tw;
        let threads = kernels::threads();
        // Blocks: within the cache budget, a multiple of the threads (one round of equal
        // tasks), but no smaller than 16 tiles.
        let mut blocks = total.div_ceil(block_tiles(self.points(), self.ic, self.oc));
        if threads > 1 {
            blocks = blocks.next_multiple_of(threads).min(total.div_ceil(16)).max(1);
        }
        let bt = total.div_ceil(blocks);
        let blocks = total.div_ceil(bt);
        // Fewer blocks than threads (late layers at batch 1): split the output channels too,
        // in whole panels (F(4×4) on AVX-512 and AVX2: the input transform shared, see
        // below; else each chunk repeats it).
        let osplit = if blocks < threads { threads.div_ceil(blocks).min(self.oc.div_ceil(PANEL)).max(1) } else { 1 };
        let ochunk = self.oc.div_ceil(osplit).next_multiple_of(PANEL);
        let osplit = self.oc.div_ceil(ochunk);
        let tasks = blocks * osplit;
        let out = OutPtr(y.as_mut_ptr());
        assert!(self.transformed(), "a deferred Winograd kernel runs after prepare()");
        let task = |t: usize, shared: Option<OutPtr>| {
            let (b, oi) = (t / osplit, t % osplit);
            let t0 = b * bt;
            let nb = bt.min(total - t0);
            let o0 = oi * ochunk;
            let ow_ = ochunk.min(self.oc - o0);
            let v = shared.map(|v| v.at(b * self.points() * self.ic * bt) as *const f32);
            self.task(g, (th, tw), t0, nb, o0, ow_, x, bias, residual, (relu, accumulate), out, v);
        };
        // The output channels are split: rather than each chunk transforming its block's
        // input again, the threads transform it once, a share of the input channels each,
        // into one `V` per block that every chunk then reads. Keras ResNet-50's 256 × 256
        // layers at 14×14 (16 tiles: one block), batch 1, two threads, `resnet bench
        // --profile`, six alternated pairs on the quiet host: 3.29–3.57 → 3.01–3.29 ms for
        // the six (whole model: minima 0.99×, medians within the host's noise). F(2×2)
        // (ResNet's 7×7 layers at batches 1–3) keeps its own transforms: its small transform
        // is not what those layers wait for (they stream `U`), and reading a `V` another
        // core wrote measured 0–12 % slower there.
        // The same on AVX2 (Zen 3, fast, batch 1, two threads, `scripts/ab_bench.py
        // --rounds 6`, medians (minima) against each chunk transforming its block: the
        // 256 × 256 conv at 14×14 alone 0.755 (0.842), Keras ResNet-50 0.977 (0.974),
        // resnet50-v2 0.945 (0.974)).
        #[cfg(target_arch = "x86_64")]
        if osplit > 1 && self.tile == 4 {
            // Which transform the threads share (`None`: none; AVX-512's indexes `x` in i32).
            let wide = match kernels::active_isa() {
                kernels::Isa::Avx512 => (x.len() <= i32::MAX as usize).then_some(true),
                kernels::Isa::Avx2 => Some(false),
                kernels::Isa::Portable => None,
            };
            if let Some(wide) = wide {
                self.run_shared(g, (th, tw), (blocks, bt), x, wide, &task, tasks);
                return;
            }
        }
        kernels::for_each_task(tasks, |t| task(t, None));
    }

    /// [`Self::run`]'s tasks over blocks whose input transform all threads share: first
    /// the transforms (block × share of the input channels) into one `V` per block, then
    /// `tasks` × `task(t, V)`. `wide`: AVX-512 is active and `x` within i32 offsets (the
    /// transforms of [`Self::transform_wide`]); else AVX2 is ([`Self::transform_avx2`]).
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    fn run_shared(
        &self,
        g: &ConvGeometry,
        (th, tw): (usize, usize),
        (blocks, bt): (usize, usize),
        x: &[f32],
        wide: bool,
        task: &(impl Fn(usize, Option<OutPtr>) + Sync),
        tasks: usize,
    ) {
        let total = g.n * th * tw;
        let threads = kernels::threads();
        SHARED_V.with(|cell| {
            // Held by an enclosing call on this thread (another plan's run stolen while this
            // one waited): that call's buffer stays put, this one uses its own.
            let mut own = Vec::new();
            let mut held = cell.try_borrow_mut();
            let buf = match held.as_mut() {
                Ok(b) => &mut **b,
                Err(_) => &mut own,
            };
            // Every block's `V`, block `b` from `b·points·ic·bt`: one per tile in all.
            let len = self.points() * self.ic * total;
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            let v = OutPtr(buf.as_mut_ptr());
            let parts = threads.min(self.ic.div_ceil(8));
            kernels::for_each_task(blocks * parts, |t| {
                let (b, pi) = (t / parts, t % parts);
                let (c0, c1) = (self.ic * pi / parts, self.ic * (pi + 1) / parts);
                let (t0, vb) = (b * bt, v.at(b * self.points() * self.ic * bt));
                // SAFETY: AVX-512F with `x` within i32 offsets (`wide`) or AVX2 is active
                // (checked by `run`); block `b`'s `V`, `points·ic·nb` floats from `b·points·ic·bt`, lies
                // in `buf` (`len` covers every block), and this task writes only its
                // channels `c0..c1` of it.
                unsafe {
                    if wide {
                        self.transform_wide(g, (th, tw), t0, bt.min(total - t0), x, vb, c0..c1)
                    } else {
                        self.transform_avx2(g, (th, tw), t0, bt.min(total - t0), x, vb, c0..c1)
                    }
                };
            });
            kernels::for_each_task(tasks, |t| task(t, Some(v)));
        });
    }

    /// The input transform of the block of `nb` tiles from `t0`, input channels `chans`, on
    /// AVX-512: `v[ξ·ic·nb + c·nb + k]` for tile `t0 + k`. F(4×4) tile rows narrower than
    /// [`GATHER_BELOW`] tiles fill whole vectors by gathering across rows.
    ///
    /// # Safety
    /// AVX-512F is active; `x.len() ≤ i32::MAX`; `v` points to `points·ic·nb` writable
    /// floats of which no other thread touches channels `chans` meanwhile.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn transform_wide(
        &self,
        g: &ConvGeometry,
        (th, tw): (usize, usize),
        t0: usize,
        nb: usize,
        x: &[f32],
        v: *mut f32,
        chans: std::ops::Range<usize>,
    ) {
        let [_, ah, aw] = &g.axes;
        let (ic, ts) = (self.ic, self.tile);
        let (h, w) = (ah.input, aw.input);
        let plane = h * w;
        assert!(chans.end <= ic && x.len() >= g.n * ic * plane, "channels and input extent");
        if ts == 4 && tw < GATHER_BELOW {
            for g0 in (0..nb).step_by(16) {
                let nt = (nb - g0).min(16);
                let (mut base, mut iy, mut ix) = ([0i32; 16], [0i32; 16], [0i32; 16]);
                for l in 0..nt {
                    let t = t0 + g0 + l;
                    let (img, rem) = (t / (th * tw), t % (th * tw));
                    base[l] = (img * ic * plane) as i32;
                    iy[l] = (ts * (rem / tw)) as i32 - ah.pad_begin as i32;
                    ix[l] = (ts * (rem % tw)) as i32 - aw.pad_begin as i32;
                }
                for c in chans.clone() {
                    // SAFETY: AVX-512F is active; each lane's tile corner (with the plane of
                    // channel `c` of its image) lies in `x` (offsets within `x.len()` ≤
                    // i32::MAX); points of tiles `g0..g0+nt` of channel `c` at `v[ξ·ic·nb +
                    // c·nb + g0 + k]`, inside `v`'s `points·ic·nb` (the caller's contract).
                    unsafe {
                        let xc = x.as_ptr().add(c * plane);
                        avx512::gathered_tiles16(xc, (&base, &iy, &ix), (h, w), nt, v.add(c * nb + g0), ic * nb);
                    }
                }
            }
            return;
        }
        let transform = if ts == 4 { avx512::input_tiles16 } else { avx512::input_tiles16_f2 };
        for seg in segments(t0, nb, th, tw) {
            let iy0 = (ts * seg.ty) as isize - ah.pad_begin as isize;
            let ix0 = (ts * seg.tx0) as isize - aw.pad_begin as isize;
            for c in chans.clone() {
                let xc = &x[(seg.img * ic + c) * plane..][..plane];
                for k0 in (0..seg.len).step_by(16) {
                    let nt = (seg.len - k0).min(16);
                    // SAFETY: AVX-512F is active; tiles `k0..k0+nt` of the segment have their
                    // points at `v[ξ·ic·nb + c·nb + seg.col + k0 + k]` (`seg.col + k0 + nt ≤
                    // nb`), inside `v`'s `points·ic·nb` (the caller's contract).
                    unsafe {
                        transform(xc, h, w, iy0, ix0 + (ts * k0) as isize, nt, v.add(c * nb + seg.col + k0), ic * nb)
                    };
                }
            }
        }
    }

    /// The F(4×4) input transform of the block of `nb` tiles from `t0`, input channels
    /// `chans`, on AVX2: 8 tiles per vector ([`avx2::input_tiles8`]), `v[ξ·ic·nb + c·nb + k]`
    /// for tile `t0 + k`.
    ///
    /// # Safety
    /// AVX2 is active; `v` points to `points·ic·nb` writable floats of which no other thread
    /// touches channels `chans` meanwhile.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn transform_avx2(
        &self,
        g: &ConvGeometry,
        (th, tw): (usize, usize),
        t0: usize,
        nb: usize,
        x: &[f32],
        v: *mut f32,
        chans: std::ops::Range<usize>,
    ) {
        let [_, ah, aw] = &g.axes;
        let ic = self.ic;
        let (h, w) = (ah.input, aw.input);
        let plane = h * w;
        assert!(self.tile == 4 && chans.end <= ic, "F(4×4), channels within the input's");
        let corner = |sg: &Segment| {
            ((4 * sg.ty) as isize - ah.pad_begin as isize, (4 * sg.tx0) as isize - aw.pad_begin as isize)
        };
        let mut segs = segments(t0, nb, th, tw).peekable();
        while let Some(seg) = segs.next() {
            let (iy0, ix0) = corner(&seg);
            // A segment of 4 tiles and the next one of at most 4 (planes 4 tiles wide):
            // both in the lanes of one vector.
            let pair = if seg.len == 4 { segs.next_if(|n| n.len <= 4) } else { None };
            for c in chans.clone() {
                let xc = &x[(seg.img * ic + c) * plane..][..plane];
                if let Some(nx) = pair {
                    let (iy1, ix1) = corner(&nx);
                    let xb = &x[(nx.img * ic + c) * plane..][..plane];
                    // SAFETY: AVX2 is active; the two segments' `4 + nx.len` tiles are
                    // consecutive in the block (`nx.col = seg.col + 4`) and have their
                    // points at `v[ξ·ic·nb + c·nb + seg.col + k]`, inside `v`'s `points·ic·nb`
                    // (the caller's contract).
                    unsafe {
                        avx2::input_tiles4x2(
                            (h, w),
                            (xc, iy0, ix0),
                            (xb, iy1, ix1),
                            nx.len,
                            v.add(c * nb + seg.col),
                            ic * nb,
                        )
                    };
                    continue;
                }
                for k0 in (0..seg.len).step_by(8) {
                    // SAFETY: AVX2 is active; tiles `k0..k0+nt` of the segment have their
                    // points at `v[ξ·ic·nb + c·nb + seg.col + k0 + k]` (`seg.col + k0 + nt ≤
                    // nb`), inside `v`'s `points·ic·nb` (the caller's contract).
                    unsafe {
                        let (ix, nt) = (ix0 + 4 * k0 as isize, (seg.len - k0).min(8));
                        avx2::input_tiles8(xc, h, w, iy0, ix, nt, v.add(c * nb + seg.col + k0), ic * nb)
                    };
                }
            }
        }
    }

    /// The input transform of the block of `nb` tiles from `t0`, all input channels:
    /// `v[ξ·ic·nb + c·nb + k]` for tile `t0 + k` ([`Self::transform_wide`] on AVX-512; on
    /// AVX2 `avx2::input_tiles8` for F(4×4) and `avx2::input_tiles4_f2` for F(2×2); other
    /// ISAs split each row by column phase in `strip`).
    #[allow(clippy::too_many_arguments)]
    fn transform_input(
        &self,
        g: &ConvGeometry,
        (th, tw): (usize, usize),
        t0: usize,
        nb: usize,
        x: &[f32],
        v: &mut [f32],
        strip: &mut [f32],
        wide: bool,
    ) {
        let (ic, ts) = (self.ic, self.tile);
        assert!(v.len() >= self.points() * ic * nb, "V extent");
        #[cfg(target_arch = "x86_64")]
        if wide && x.len() <= i32::MAX as usize {
            // SAFETY: AVX-512F is active (`wide`), `x` within i32 offsets, `v` holds the
            // block's `points·ic·nb` floats (checked above) and is this thread's alone.
            unsafe { self.transform_wide(g, (th, tw), t0, nb, x, v.as_mut_ptr(), 0..ic) };
            return;
        }
        let _ = wide;
        // F(4×4) on AVX2: 8 tiles per vector (`avx2::input_tiles8`).
        #[cfg(target_arch = "x86_64")]
        if ts == 4 && kernels::active_isa() >= kernels::Isa::Avx2 {
            // SAFETY: AVX2 is active; `v` holds the block's `points·ic·nb` floats (checked
            // above) and is this thread's alone.
            unsafe { self.transform_avx2(g, (th, tw), t0, nb, x, v.as_mut_ptr(), 0..ic) };
            return;
        }
        let [_, ah, aw] = &g.axes;
        let (h, w) = (ah.input, aw.input);
        let plane = h * w;
        #[cfg(target_arch = "x86_64")]
        let f2_avx2 = ts == 2 && kernels::active_isa() >= kernels::Isa::Avx2;
        for seg in segments(t0, nb, th, tw) {
            let iy0 = (ts * seg.ty) as isize - ah.pad_begin as isize;
            let ix0 = (ts * seg.tx0) as isize - aw.pad_begin as isize;
            for c in 0..ic {
                let xc = &x[(seg.img * ic + c) * plane..][..plane];
                let vc = &mut v[c * nb + seg.col..];
                #[cfg(target_arch = "x86_64")]
                if f2_avx2 {
                    assert!(vc.len() > 15 * ic * nb + seg.len - 1, "V extent");
                    // SAFETY: AVX2 is active; the segment's tiles' 16 points at `vc[ξ·ic·nb +
                    // k]`, `k < seg.len`, lie in `vc` (checked above).
                    unsafe { avx2::input_tiles4_f2(xc, h, w, iy0, ix0, seg.len, vc.as_mut_ptr(), ic * nb) };
                    continue;
                }
                if ts == 4 {
                    input_tiles(xc, h, w, iy0, ix0, seg.len, strip, vc, ic * nb);
                } else {
                    input_tiles_f2(xc, h, w, iy0, ix0, seg.len, vc, ic * nb);
                }
            }
        }
    }

    /// One block of `nb` tiles from tile `t0`, output channels `o0..o0+ocw` (`o0` at a panel
    /// boundary): the block's input transform, then per round of output channels the 36
    /// GEMMs and the output transform.
    #[allow(clippy::too_many_arguments)]
    fn task(
        &self,
        g: &ConvGeometry,
        (th, tw): (usize, usize),
        t0: usize,
        nb: usize,
        o0: usize,
        ocw: usize,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        (relu, accumulate): (bool, bool),
        out: OutPtr,
        shared: Option<*const f32>,
    ) {
        debug_assert_eq!(o0 % PANEL, 0);
        let [_, ah, aw] = &g.axes;
        let (ic, oc, ts, points) = (self.ic, self.oc, self.tile, self.points());
        let panels = oc.div_ceil(PANEL);
        let u = self.u();
        let (oh, ow) = (ah.output, aw.output);
        let strip_len = 48 * (nb.min(tw) + 1);
        let rc = round_channels(points, nb).min(ocw.next_multiple_of(PANEL));
        let (v_len, m_len) = (points * ic * nb, points * rc * nb);
        // With a shared `V` (transformed by all threads, see `run`) none of its own.
        let own_v = if shared.is_some() { 0 } else { v_len };
        let need = own_v + m_len + strip_len + 40 * rc;
        let isa = kernels::active_isa();
        #[cfg(target_arch = "x86_64")]
        let wide = isa == kernels::Isa::Avx512;
        #[cfg(not(target_arch = "x86_64"))]
        let wide = false;
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < need {
                s.resize(need, 0.0);
            }
            let (v, rest) = s.split_at_mut(own_v);
            let (m, rest) = rest.split_at_mut(m_len);
            let (strip, rest) = rest.split_at_mut(strip_len);
            let tmp = &mut rest[..40 * rc];
            let v: &[f32] = match shared {
                // SAFETY: `run` passes block `t0`'s `V` of `points·ic·nb` floats, fully written
                // by the transform tasks that finished before this one started, and not
                // written again while the product tasks read it.
                Some(p) => unsafe { std::slice::from_raw_parts(p, v_len) },
                None => {
                    self.transform_input(g, (th, tw), t0, nb, x, v, strip, wide);
                    v
                }
            };

            // bf16 (AVX-512 BF16 only): this block's `V` as channel pairs, `ld` words a pair.
            let u16 = if wide { self.u_bf16() } else { None };
            let (pairs, ld) = (ic.div_ceil(2), nb.next_multiple_of(16));
            let mut v16_buf = V_BF16.with(|c| c.take());
            let v16 = if u16.is_some() {
                let words = points * pairs * ld;
                if v16_buf.len() < words + 16 {
                    v16_buf.resize(words + 16, 0);
                }
                let skip = v16_buf.as_ptr().align_offset(64).min(16);
                let v16 = &mut v16_buf[skip..skip + words];
                for (xi, dst) in v16.chunks_exact_mut(pairs * ld).enumerate() {
                    // SAFETY: `u_bf16` is set only where AVX-512 BF16 is; `V_ξ` is `ic` rows
                    // of `nb` floats; each `dst` is 64-byte aligned (`pairs·ld` words a
                    // multiple of 16 from an aligned start).
                    unsafe {
                        super::direct::bf16::pack_rows(v[xi * ic * nb..].as_ptr(), nb, ic, nb, ld, dst);
                    }
                }
                &v16_buf[skip..skip + words]
            } else {
                &v16_buf[..0]
            };

            let out_plane = oh * ow;
            for r0 in (0..ocw).step_by(rc) {
                // This round's channels `o0 + r0 ..` (`rw` of them), `M` rows padded to panels.
                let rw = rc.min(ocw - r0);
                let rp = rw.next_multiple_of(PANEL);
                let p0 = (o0 + r0) / PANEL;
                // M_ξ [nb × rp] = V_ξᵀ [nb × IC] · U_ξ [IC × rp], one panel of channels at a time.
                let np = rp / PANEL;
                // Rows of a `U` panel: input channels, or their pairs in bf16.
                let k = if u16.is_some() { pairs } else { ic };
                let panel_at = |xi: usize, p: usize| ((xi * panels + p0 + p) * k) * PANEL;
                for xi in 0..points {
                    for p in 0..np {
                        let at = panel_at(xi, p);
                        // The panel this round multiplies next, fetched into L2 meanwhile.
                        let next = if p + 1 < np {
                            Some(panel_at(xi, p + 1))
                        } else {
                            (xi + 1 < points).then(|| panel_at(xi + 1, 0))
                        };
                        let mp = &mut m[xi * nb * rp + p * PANEL..][..(nb - 1) * rp + PANEL];
                        match u16 {
                            Some(u16) => panel_product_bf16(
                                pairs,
                                &u16[at..][..k * PANEL],
                                next.map(|n| &u16[n..][..k * PANEL]),
                                &v16[xi * pairs * ld..][..pairs * ld],
                                ld,
                                nb,
                                mp,
                                rp,
                            ),
                            None => panel_product(
                                isa,
                                ic,
                                &u[at..][..k * PANEL],
                                next.map(|n| &u[n..][..k * PANEL]),
                                &v[xi * ic * nb..][..ic * nb],
                                nb,
                                mp,
                                rp,
                            ),
                        }
                    }
                }

                // Output transform + epilogue, one tile at a time, vectorized over the channels.
                let ob = o0 + r0;
                for seg in segments(t0, nb, th, tw) {
                    for k in 0..seg.len {
                        let col = seg.col + k;
                        let (oy0, ox0) = (ts * seg.ty, ts * (seg.tx0 + k));
                        let (rows, cols) = ((oh - oy0).min(ts), (ow - ox0).min(ts));
                        let base = (seg.img * oc + ob) * out_plane + oy0 * ow + ox0;
                        assert!(m.len() >= (points - 1) * nb * rp + col * rp + rp, "M extent");
                        #[cfg(target_arch = "x86_64")]
                        if wide {
                            let transform = if ts == 4 { avx512::output_tile16 } else { avx512::output_tile16_f2 };
                            for g0 in (0..rw).step_by(16) {
                                // SAFETY: AVX-512F is active; channels `g0..g0+16` of this
                                // tile's points lie in `m` (rows padded to `rp`, a multiple
                                // of 32, checked above); the tile's `rows × cols` pixels of
                                // channels `ob+g0 ..` (at most `rw`) lie in `y` and belong to
                                // this task only; `residual` has the output's layout.
                                unsafe {
                                    transform(
                                        m[col * rp + g0..].as_ptr(),
                                        nb * rp,
                                        (rw - g0).min(16),
                                        out.0.add(base + g0 * out_plane),
                                        (out_plane, ow, rows, cols),
                                        bias.map(|b| b[ob + g0..].as_ptr()),
                                        residual.map(|r| r[base + g0 * out_plane..].as_ptr()),
                                        relu,
                                        accumulate,
                                    )
                                };
                            }
                            continue;
                        }
                        #[cfg(target_arch = "x86_64")]
                        if kernels::active_isa() >= kernels::Isa::Avx2 {
                            let transform = if ts == 4 { avx2::output_tile8 } else { avx2::output_tile8_f2 };
                            for g0 in (0..rw).step_by(8) {
                                // SAFETY: AVX2 is active; channels `g0..g0+8` of this tile's
                                // points lie in `m` (rows padded to `rp`, a multiple of 32,
                                // checked above); the tile's `rows × cols` pixels of channels
                                // `ob+g0 ..` (at most `rw`) lie in `y` and belong to this task
                                // only; `residual` has the output's layout.
                                unsafe {
                                    transform(
                                        m[col * rp + g0..].as_ptr(),
                                        nb * rp,
                                        (rw - g0).min(8),
                                        out.0.add(base + g0 * out_plane),
                                        (out_plane, ow, rows, cols),
                                        bias.map(|b| b[ob + g0..].as_ptr()),
                                        residual.map(|r| r[base + g0 * out_plane..].as_ptr()),
                                        relu,
                                        accumulate,
                                    )
                                };
                            }
                            continue;
                        }
                        let (bias, residual) = (bias.map(|b| &b[ob..ob + rw]), residual.map(|r| &r[base..]));
                        if ts == 2 {
                            // SAFETY: as for `store_tile` below.
                            unsafe {
                                output_store_f2(
                                    &m[col * rp..],
                                    nb * rp,
                                    rw,
                                    out.0.add(base),
                                    (out_plane, ow, rows, cols),
                                    bias,
                                    residual,
                                    relu,
                                    accumulate,
                                )
                            };
                            continue;
                        }
                        output_tile(&m[col * rp..], nb * rp, rw, tmp);
                        // SAFETY: the `rows × cols` pixels of this tile in output channels
                        // `ob..ob+rw` lie inside `y` and belong to this task only.
                        unsafe {
                            store_tile(
                                &tmp[..16 * rw],
                                rw,
                                out.0.add(base),
                                out_plane,
                                ow,
                                rows,
                                cols,
                                bias,
                                residual,
                                relu,
                                accumulate,
                            );
                        }
                    }
                }
            }
            V_BF16.with(|c| {
                // Kept for the next call (one taken by a nested call meanwhile is dropped).
                if c.borrow().len() < v16_buf.len() {
                    c.replace(v16_buf);
                }
            });
        });
    }
}

/// `m[t·ms + j] = Σ_c v[c·nb + t] · u[c·PANEL + j]` for tiles `t < nb` and the panel's
/// channels `j < PANEL`: one panel of one `M_ξ`. `u` is the panel (`[k, PANEL]`), `v` is
/// `V_ξ` (`[k, nb]`). The AVX-512 micro-kernel takes up to [`ROWS`] tiles per call, the
/// filters streaming once per call and the inputs broadcast; the AVX2 one
/// ([`avx2::panel_product`]) 3 tiles × the panel per call, over passes of channels whose
/// `U` rows stay in L1; other CPUs call `gemm`. Both micro-kernels sum channel by channel,
/// one FMA each, from zero: the same bits. `next` (the panel the caller multiplies next) is
/// prefetched into L2 over the calls, so that memory keeps streaming `U` while the later
/// calls run from cache (with 16 tiles, two calls per panel, the second used to leave memory
/// idle).
#[allow(clippy::too_many_arguments)]
fn panel_product(
    isa: kernels::Isa,
    k: usize,
    u: &[f32],
    next: Option<&[f32]>,
    v: &[f32],
    nb: usize,
    m: &mut [f32],
    ms: usize,
) {
    assert!(k >= 1 && nb >= 1 && ms >= PANEL, "non-empty product");
    assert!(u.len() >= k * PANEL && v.len() >= k * nb && m.len() >= (nb - 1) * ms + PANEL, "panel extents");
    #[cfg(target_arch = "x86_64")]
    if isa == kernels::Isa::Avx2 {
        // SAFETY: AVX2 and FMA are active; extents checked above.
        unsafe { avx2::panel_product(k, u.as_ptr(), next.map(<[f32]>::as_ptr), v.as_ptr(), nb, m.as_mut_ptr(), ms) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa == kernels::Isa::Avx512 {
        let groups = nb.div_ceil(ROWS);
        let (base, extra) = (nb / groups, nb % groups);
        // Cache lines of `next` (2 per channel) spread over the calls' channel steps: one
        // per step over the first two calls, two per step when there is one call.
        let per_step = if groups == 1 { 2 } else { 1 };
        let mut t = 0;
        for gi in 0..groups {
            let rows = base + usize::from(gi < extra);
            let pf = next.map_or(kernels::LineFetch::NONE, |n| {
                kernels::LineFetch::share(n.as_ptr(), 2 * k, gi, k * per_step, per_step)
            });
            macro_rules! dispatch {
                ($($r:literal),*) => {
                    match rows {
                        // SAFETY: AVX-512F is active; `u` holds k panels rows, `v` rows `t..t+rows`
                        // of k rows of stride nb, `m` rows `t..t+rows` of stride ms (checked above).
                        $($r => unsafe {
                            avx512::panel_rows::<$r>(k, u.as_ptr(), pf, v.as_ptr().add(t), nb, m.as_mut_ptr().add(t * ms), ms)
                        },)*
                        _ => unreachable!("1 to ROWS rows"),
                    }
                };
            }
            dispatch!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14);
            t += rows;
        }
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (isa, next);
    // SAFETY: dst `PANEL × nb` column-major with column stride `ms`, lhs `PANEL × k`
    // column-major (column stride PANEL), rhs `k × nb` row-major: all within the slices
    // (checked above).
    unsafe {
        gemm::gemm(
            PANEL,
            nb,
            k,
            m.as_mut_ptr(),
            ms as isize,
            1,
            false,
            u.as_ptr(),
            PANEL as isize,
            1,
            v.as_ptr(),
            1,
            nb as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// [`panel_product`] in bfloat16 (`Mode::Bf16`): `u` is the panel as `[pairs, PANEL]` words
/// of input-channel pairs, `v` is `V_ξ` as `[pairs, ld]` words; the products run on the
/// bf16 narrow-plane micro-kernel (up to [`ROWS`] tiles × the panel per call) and are
/// copied into `m`.
#[allow(clippy::too_many_arguments)]
fn panel_product_bf16(
    pairs: usize,
    u: &[u32],
    next: Option<&[u32]>,
    v: &[u32],
    ld: usize,
    nb: usize,
    m: &mut [f32],
    ms: usize,
) {
    assert!(pairs >= 1 && nb >= 1 && nb <= ld && ms >= PANEL, "non-empty product");
    assert!(u.len() >= pairs * PANEL && v.len() >= pairs * ld && m.len() >= (nb - 1) * ms + PANEL, "panel extents");
    let groups = nb.div_ceil(ROWS);
    let (base, extra) = (nb / groups, nb % groups);
    let per_step = if groups == 1 { 2 } else { 1 };
    let mut tile = [[0f32; PANEL]; ROWS];
    let mut t = 0;
    for gi in 0..groups {
        let rows = base + usize::from(gi < extra);
        let pf = next.map_or(kernels::LineFetch::NONE, |n| {
            kernels::LineFetch::share(n.as_ptr().cast(), 2 * pairs, gi, pairs * per_step, per_step)
        });
        // SAFETY: `u_bf16` exists only where AVX-512 BF16 does; `u` holds `pairs` rows of
        // PANEL words, `v` `pairs` rows of `ld ≥ t + rows` words (checked above).
        unsafe { super::direct::bf16::micro_rows(rows, pairs, u.as_ptr(), v[t..].as_ptr(), ld, pf, &mut tile) };
        for (r, row) in tile.iter().enumerate().take(rows) {
            m[(t + r) * ms..][..PANEL].copy_from_slice(row);
        }
        t += rows;
    }
}

/// The F(4×4) input transform for CPUs with AVX2 but no AVX-512: 8 tiles per vector, each
/// input row's 34 columns split by column phase with lane-wise 4 × 4 transposes (the AVX-512
/// copy's 16-lane permutes cut to 8 lanes), `Bᵀ d B` with the portable copy's operations in
/// its order, so the same bits. The portable copy splits the phases a float at a time and
/// runs its transforms over each row's tiles (14 at 56×56: one vector and a scalar tail).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::PANEL;
    use crate::plan::kernels::{lane_mask8, store_prefix4, store_prefix8, LineFetch};

    /// `$f::<RES, ACC, RELU>(args)` for the call's `(residual, accumulate, relu)` flags: the
    /// output transforms' epilogues are fixed at compile time, chosen once per call.
    macro_rules! with_epilogue {
        ($f:ident, $flags:expr, $($arg:expr),* $(,)?) => {
            match $flags {
                (false, false, false) => $f::<false, false, false>($($arg),*),
                (false, false, true) => $f::<false, false, true>($($arg),*),
                (false, true, false) => $f::<false, true, false>($($arg),*),
                (false, true, true) => $f::<false, true, true>($($arg),*),
                (true, false, false) => $f::<true, false, false>($($arg),*),
                (true, false, true) => $f::<true, false, true>($($arg),*),
                (true, true, false) => $f::<true, true, false>($($arg),*),
                (true, true, true) => $f::<true, true, true>($($arg),*),
            }
        };
    }

    /// Channels per pass of [`panel_product`]: the pass's `U` rows (64 × 128 bytes) stay in
    /// L1 while every group of tiles passes over them; the sums wait in `m` between passes.
    /// Passes of 32 or 128 channels measured no faster (single 3×3 convs and ResNet-18 fast,
    /// `scripts/ab_bench.py --rounds 4`, Zen 3).
    const PANEL_PASS: usize = 64;

    /// [`super::panel_product`] on AVX2: `m[t·ms + j] = Σ_c v[c·nb + t] · u[c·PANEL + j]`,
    /// in passes of [`PANEL_PASS`] channels, each over the tiles in groups of up to 3
    /// ([`rows3`], [`rows`]). Each pass fetches its rows of `next` into L2, one line per
    /// channel step spread over all its groups: two lines a step in the first group alone
    /// left memory idle most of the pass (Zen 3, fast, one thread, `scripts/ab_bench.py
    /// --rounds 5`, medians (minima) of spreading: Keras ResNet-50 0.941 (0.940), ResNet-18
    /// 0.937 (0.913), the 512 × 512 conv at 7×7 0.926 (0.938); two threads Keras 0.980
    /// (0.956), resnet50-v2 0.996 (0.967)). Software prefetches of the pass's own rows into
    /// L1 measured slower (single 3×3 convs 0.94–1.0× the time without them).
    ///
    /// # Safety
    /// AVX2 and FMA available; `u` holds `k·PANEL` floats, `v` `k·nb`; `m + t·ms + j` is
    /// writable for `t < nb`, `j < PANEL`, and aliases neither.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn panel_product(
        k: usize,
        u: *const f32,
        next: Option<*const f32>,
        v: *const f32,
        nb: usize,
        m: *mut f32,
        ms: usize,
    ) {
        let groups = nb.div_ceil(3);
        let (base, extra) = (nb / groups, nb % groups);
        let mut c0 = 0;
        // SAFETY (whole body): extents as the caller guarantees.
        unsafe {
            while c0 < k {
                let kc = PANEL_PASS.min(k - c0);
                let mut t = 0;
                // The pass's rows of `next` (two lines a channel), one line per channel step
                // spread over the groups.
                let per_call = (2 * kc).div_ceil(groups);
                for gi in 0..groups {
                    let n = base + usize::from(gi < extra);
                    let pf = match next {
                        Some(p) => LineFetch::share(
                            p.wrapping_add(c0 * PANEL),
                            2 * kc,
                            gi,
                            per_call,
                            1 + usize::from(per_call > kc),
                        ),
                        None => LineFetch::NONE,
                    };
                    let (up, vp, mp) = (u.add(c0 * PANEL), v.add(c0 * nb + t), m.add(t * ms));
                    match n {
                        3 => rows3(kc, up, pf, vp, nb, mp, ms, c0 > 0),
                        2 => rows::<2>(kc, up, pf, vp, nb, mp, ms, c0 > 0),
                        _ => rows::<1>(kc, up, pf, vp, nb, mp, ms, c0 > 0),
                    }
                    t += n;
                }
                c0 += kc;
            }
        }
    }

    /// The accumulators of `R` tiles × the panel: `m`'s rows (`ms` apart) when
    /// `accumulate`, else zeros.
    ///
    /// # Safety
    /// AVX available; `m + r·ms .. + PANEL` readable for `r < R` when `accumulate`.
    #[inline(always)]
    unsafe fn load_rows<const R: usize>(m: *const f32, ms: usize, accumulate: bool) -> [[__m256; 4]; R] {
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        if accumulate {
            for (r, a) in acc.iter_mut().enumerate() {
                for (j, x) in a.iter_mut().enumerate() {
                    // SAFETY: the caller's contract.
                    *x = unsafe { _mm256_loadu_ps(m.add(r * ms + 8 * j)) };
                }
            }
        }
        acc
    }

    /// Stores `R` tiles × the panel at `m`, rows `ms` apart.
    ///
    /// # Safety
    /// AVX available; `m + r·ms .. + PANEL` writable for `r < R`.
    #[inline(always)]
    unsafe fn store_rows<const R: usize>(acc: &[[__m256; 4]; R], m: *mut f32, ms: usize) {
        for (r, a) in acc.iter().enumerate() {
            for (j, x) in a.iter().enumerate() {
                // SAFETY: the caller's contract.
                unsafe { _mm256_storeu_ps(m.add(r * ms + 8 * j), *x) };
            }
        }
    }

    /// `m[r·ms + j] (+)= Σ_{c<k} v[c·vs + r] · u[c·PANEL + j]` for `r < R` (1 or 2), `j <
    /// PANEL`, from intrinsics. Each channel step takes a [`LineFetch::step`] of `pf`.
    ///
    /// # Safety
    /// AVX2 and FMA available; `u .. + k·PANEL`, `v + c·vs + r` readable, `m + r·ms ..
    /// + PANEL` writable (and readable when `accumulate`).
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows<const R: usize>(
        k: usize,
        u: *const f32,
        mut pf: LineFetch,
        v: *const f32,
        vs: usize,
        m: *mut f32,
        ms: usize,
        accumulate: bool,
    ) {
        // SAFETY (whole body): extents as the caller guarantees; prefetches are hints.
        unsafe {
            let mut acc = load_rows::<R>(m, ms, accumulate);
            let (mut up, mut vp) = (u, v);
            for _ in 0..k {
                pf.step();
                let x: [__m256; R] = std::array::from_fn(|r| _mm256_broadcast_ss(&*vp.add(r)));
                for j in 0..4 {
                    let w = _mm256_loadu_ps(up.add(8 * j));
                    for (a, x) in acc.iter_mut().zip(&x) {
                        a[j] = _mm256_fmadd_ps(*x, w, a[j]);
                    }
                }
                up = up.add(PANEL);
                vp = vp.add(vs);
            }
            store_rows(&acc, m, ms);
        }
    }

    /// [`rows`] for 3 tiles, each channel step in inline assembly (`kernels::fma_3x4`): its
    /// 12 accumulators, 3 broadcasts and one `U` vector take all 16 ymm registers (the
    /// broadcasts first, then each vector with its 3 FMAs), which LLVM, given intrinsics,
    /// spills.
    ///
    /// # Safety
    /// As [`rows`].
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows3(
        k: usize,
        u: *const f32,
        mut pf: LineFetch,
        v: *const f32,
        vs: usize,
        m: *mut f32,
        ms: usize,
        accumulate: bool,
    ) {
        // SAFETY (whole body): extents as the caller guarantees; prefetches are hints.
        unsafe {
            let mut c = load_rows::<3>(m, ms, accumulate);
            let (mut up, mut vp) = (u, v);
            for _ in 0..k {
                pf.step();
                crate::plan::kernels::fma_3x4!(c, vp, 4isize, 8isize, up);
                up = up.add(PANEL);
                vp = vp.add(vs);
            }
            store_rows(&c, m, ms);
        }
    }

    /// `Bᵀ a` of [`super::bt`] on vectors, the same operations in the same order (no FMA).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn bt([a0, a1, a2, a3, a4, a5]: [__m256; 6]) -> [__m256; 6] {
        let (two, four, five) = (_mm256_set1_ps(2.0), _mm256_set1_ps(4.0), _mm256_set1_ps(5.0));
        let (add, sub, mul) = (_mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps);
        [
            add(sub(mul(four, a0), mul(five, a2)), a4),
            add(add(mul(_mm256_set1_ps(-4.0), add(a1, a2)), a3), a4),
            add(sub(mul(four, sub(a1, a2)), a3), a4),
            add(sub(mul(two, sub(a3, a1)), a2), a4),
            add(sub(mul(two, sub(a1, a3)), a2), a4),
            add(sub(mul(four, a1), mul(five, a3)), a5),
        ]
    }

    /// Lanes `l` of an 8-float vector whose column `ix0 + 8q + l` lies in `0..w` and whose
    /// index `8q + l` is below `need`, for the 5 vectors of a row, and whether all 8 are.
    #[target_feature(enable = "avx2")]
    fn row_masks(ix0: isize, w: usize, need: isize) -> [(__m256i, bool); 5] {
        let jlo = (-ix0).clamp(0, need);
        let jhi = (w as isize - ix0).clamp(jlo, need);
        std::array::from_fn(|q| {
            let q = 8 * q as isize;
            // SAFETY: AVX2 is enabled here.
            let (m, n) = unsafe { lane_mask8(jlo - q, jhi - q) };
            (m, n == 8)
        })
    }

    /// `Aᵀ m` of F(4×4) on vectors, the portable copy's operations in its order.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn at([m0, m1, m2, m3, m4, m5]: [__m256; 6]) -> [__m256; 4] {
        let (s12, d12) = (_mm256_add_ps(m1, m2), _mm256_sub_ps(m1, m2));
        let (s34, d34) = (_mm256_add_ps(m3, m4), _mm256_sub_ps(m3, m4));
        let (add, mul) = (_mm256_add_ps, _mm256_mul_ps);
        [
            add(add(m0, s12), s34),
            add(d12, mul(_mm256_set1_ps(2.0), d34)),
            add(s12, mul(_mm256_set1_ps(4.0), s34)),
            add(add(d12, mul(_mm256_set1_ps(8.0), d34)), m5),
        ]
    }

    /// The F(4×4) output transform and epilogue of one tile for `nch ≤ 8` channels, one lane
    /// per channel (the AVX-512 copy's `output_tile16` on 8 lanes): `m + ξ·mstride` holds
    /// point ξ of the channels; pixel `(a, b)` of channel `o` becomes `relu?(res + bias[o] +
    /// residual[o·plane + a·ow + b] (+ y))` at `y[o·plane + a·ow + b]` for `a < rows`, `b <
    /// cols`, in the portable `store_tile`'s order. Each output row is transposed in registers
    /// (4×4 within each 128-bit lane), so a channel's 4 pixels are one store.
    ///
    /// # Safety
    /// AVX2 available; `m + ξ·mstride + l` readable for `ξ < 36`, `l < 8`; `bias + o` readable
    /// and `y + o·plane + a·ow + b` writable (and, with `residual` or `accumulate`, readable
    /// there) for `o < nch`, `a < rows ≤ 4`, `b < cols ≤ 4`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn output_tile8(
        m: *const f32,
        mstride: usize,
        nch: usize,
        y: *mut f32,
        geometry: (usize, usize, usize, usize),
        bias: Option<*const f32>,
        residual: Option<*const f32>,
        relu: bool,
        accumulate: bool,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            with_epilogue!(
                output_tile8_with,
                (residual.is_some(), accumulate, relu),
                m,
                mstride,
                nch,
                y,
                geometry,
                bias,
                residual
            )
        }
    }

    /// [`output_tile8`] with its epilogue fixed at compile time: `RES` (a residual, read from
    /// `residual`), `ACC` (`accumulate`), `RELU`. The bias is added to each pixel's vector
    /// of channels before the transposes (and the ReLU too when nothing is added after it):
    /// the same operations on the same values as one broadcast per channel and row after
    /// them, 4 vector operations a row instead of up to 16.
    ///
    /// # Safety
    /// As [`output_tile8`]; `residual` is `Some` when `RES`.
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn output_tile8_with<const RES: bool, const ACC: bool, const RELU: bool>(
        m: *const f32,
        mstride: usize,
        nch: usize,
        y: *mut f32,
        (plane, ow, rows, cols): (usize, usize, usize, usize),
        bias: Option<*const f32>,
        residual: Option<*const f32>,
    ) {
        debug_assert!((1..=8).contains(&nch) && rows <= 4 && cols <= 4 && residual.is_some() == RES);
        // SAFETY (whole body): extents as the caller guarantees; masked-off lanes are not
        // accessed.
        unsafe {
            let cmask = _mm256_castsi256_si128(lane_mask8(0, cols as isize).0);
            let zero = _mm256_setzero_ps();
            // Lane `o`: channel `o`'s bias (0 without one, as the scalar epilogue adds).
            let bv = match bias {
                Some(b) if nch == 8 => _mm256_loadu_ps(b),
                Some(b) => _mm256_maskload_ps(b, lane_mask8(0, nch as isize).0),
                None => zero,
            };
            let res = residual.unwrap_or(y);
            let p: [__m256; 36] = std::array::from_fn(|xi| _mm256_loadu_ps(m.add(xi * mstride)));
            // mid[j][a] = (Aᵀ m)[a][j], then res[a][b] = (mid Aᵀᵀ)[a][b].
            let mid: [[__m256; 4]; 6] = std::array::from_fn(|j| at(std::array::from_fn(|i| p[i * 6 + j])));
            let mid_rows: [[__m256; 6]; 4] = std::array::from_fn(|a| std::array::from_fn(|j| mid[j][a]));
            for (a, ma) in mid_rows.into_iter().take(rows).enumerate() {
                let r = at(ma).map(|v| {
                    let v = _mm256_add_ps(v, bv);
                    if RELU && !RES && !ACC {
                        _mm256_max_ps(v, zero)
                    } else {
                        v
                    }
                });
                let (t0, t1) = (_mm256_unpacklo_ps(r[0], r[1]), _mm256_unpackhi_ps(r[0], r[1]));
                let (t2, t3) = (_mm256_unpacklo_ps(r[2], r[3]), _mm256_unpackhi_ps(r[2], r[3]));
                let (pd, ps) = (_mm256_castps_pd, _mm256_castpd_ps);
                // tq[q], 128-bit lane L: pixels b = 0..4 of row a of channel 4L + q.
                let tq = [
                    ps(_mm256_unpacklo_pd(pd(t0), pd(t2))),
                    ps(_mm256_unpackhi_pd(pd(t0), pd(t2))),
                    ps(_mm256_unpacklo_pd(pd(t1), pd(t3))),
                    ps(_mm256_unpackhi_pd(pd(t1), pd(t3))),
                ];
                for (q, t) in tq.into_iter().enumerate() {
                    for (l, mut v) in [_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t)].into_iter().enumerate()
                    {
                        let o = 4 * l + q;
                        if nch < 8 && o >= nch {
                            continue;
                        }
                        let off = o * plane + a * ow;
                        let load = |p: *const f32| if cols == 4 { _mm_loadu_ps(p) } else { _mm_maskload_ps(p, cmask) };
                        if RES {
                            v = _mm_add_ps(v, load(res.add(off)));
                        }
                        if ACC {
                            v = _mm_add_ps(v, load(y.add(off)));
                        }
                        if RELU && (RES || ACC) {
                            v = _mm_max_ps(v, _mm_setzero_ps());
                        }
                        store_prefix4(y.add(off), v, cols);
                    }
                }
            }
        }
    }

    /// `Bᵀ a` of F(2×2) ([`super::bt2`]) on vectors, its operations in its order.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn bt2([a0, a1, a2, a3]: [__m128; 4]) -> [__m128; 4] {
        [_mm_sub_ps(a0, a2), _mm_add_ps(a1, a2), _mm_sub_ps(a2, a1), _mm_sub_ps(a1, a3)]
    }

    /// `Aᵀ m` of F(2×2) ([`super::at2`]) on vectors, its operations in its order.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn at2([m0, m1, m2, m3]: [__m256; 4]) -> [__m256; 2] {
        [_mm256_add_ps(_mm256_add_ps(m0, m1), m2), _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3)]
    }

    /// The F(2×2) input transform of the portable `input_tiles_f2` (the same operations in
    /// its order, so the same bits), 4 tiles per vector: `V[ξ·vstride + k]` of the `nt`
    /// tiles whose 4×4 patches start at row `iy0` and columns `ix0 + 2k` of the plane `xc`
    /// (`[h, w]`; zeros outside it). Each patch row is read as masked 4-column chunks and
    /// split by column phase with shuffles.
    ///
    /// # Safety
    /// AVX2 available; `v + ξ·vstride + k` writable for `ξ < 16`, `k < nt`.
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn input_tiles4_f2(
        xc: &[f32],
        h: usize,
        w: usize,
        iy0: isize,
        ix0: isize,
        nt: usize,
        v: *mut f32,
        vstride: usize,
    ) {
        assert!(xc.len() >= h * w, "plane extent");
        for k0 in (0..nt).step_by(4) {
            let n = (nt - k0).min(4);
            let x0 = ix0 + 2 * k0 as isize;
            // Chunks at columns x0, x0 + 4, x0 + 2, x0 + 6 and their lanes inside the row.
            let starts = [x0, x0 + 4, x0 + 2, x0 + 6];
            let masks: [(__m128i, bool); 4] = std::array::from_fn(|i| {
                // SAFETY: AVX2 is enabled here.
                let (m, count) = unsafe { lane_mask8(-starts[i], w as isize - starts[i]) };
                let lo = (-starts[i]).clamp(0, 8);
                (_mm256_castsi256_si128(m), lo == 0 && count >= 4)
            });
            // d[r][s]: column s of the tiles' row r (zeros outside the plane).
            let mut d = [[_mm_setzero_ps(); 4]; 4];
            for (r, dr) in d.iter_mut().enumerate() {
                let iy = iy0 + r as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let row = xc.as_ptr().wrapping_add(iy as usize * w);
                let q: [__m128; 4] = std::array::from_fn(|i| {
                    let (m, full) = masks[i];
                    let at = row.wrapping_offset(starts[i]);
                    // SAFETY: the mask's lanes lie inside the row; the others are neither
                    // read nor faulted on.
                    unsafe {
                        if full {
                            _mm_loadu_ps(at)
                        } else {
                            _mm_maskload_ps(at, m)
                        }
                    }
                });
                *dr = [
                    _mm_shuffle_ps::<0x88>(q[0], q[1]),
                    _mm_shuffle_ps::<0xdd>(q[0], q[1]),
                    _mm_shuffle_ps::<0x88>(q[2], q[3]),
                    _mm_shuffle_ps::<0xdd>(q[2], q[3]),
                ];
            }
            // t[s][i] = (Bᵀ d)[i][s], then V[i·4 + j] = (t B)[i][j].
            let t: [[__m128; 4]; 4] = std::array::from_fn(|s| bt2(std::array::from_fn(|r| d[r][s])));
            let rows: [[__m128; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|s| t[s][i]));
            for (i, ti) in rows.into_iter().enumerate() {
                for (j, vv) in bt2(ti).into_iter().enumerate() {
                    let at = v.wrapping_add((i * 4 + j) * vstride + k0);
                    // SAFETY: point i·4 + j of tiles k0..k0+n, writable by the caller's contract.
                    unsafe { store_prefix4(at, vv, n) };
                }
            }
        }
    }

    /// The F(2×2) output transform and epilogue of one tile for `nch ≤ 8` channels, one lane
    /// per channel: `m + ξ·mstride` holds point ξ of the channels; pixel `(a, b)` of channel
    /// `o` becomes `relu?(res + bias[o] + residual[o·plane + a·ow + b] (+ y))` at
    /// `y[o·plane + a·ow + b]` for `a < rows`, `b < cols`, in the portable `output_store_f2`'s
    /// order (so the same bits). Each output row's two pixels are paired per channel in
    /// registers, so a channel's row is one 8-byte store.
    ///
    /// # Safety
    /// AVX2 available; `m + ξ·mstride + l` readable for `ξ < 16`, `l < 8`; `bias + o` readable
    /// and `y + o·plane + a·ow + b` writable (and, with `residual` or `accumulate`, readable
    /// there) for `o < nch`, `a < rows ≤ 2`, `b < cols ≤ 2`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn output_tile8_f2(
        m: *const f32,
        mstride: usize,
        nch: usize,
        y: *mut f32,
        geometry: (usize, usize, usize, usize),
        bias: Option<*const f32>,
        residual: Option<*const f32>,
        relu: bool,
        accumulate: bool,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            with_epilogue!(
                output_tile8_f2_with,
                (residual.is_some(), accumulate, relu),
                m,
                mstride,
                nch,
                y,
                geometry,
                bias,
                residual
            )
        }
    }

    /// [`output_tile8_f2`] with its epilogue fixed at compile time, the bias (and the ReLU
    /// when nothing is added after it) on each pixel's vector of channels before the
    /// unpacks, as [`output_tile8_with`].
    ///
    /// # Safety
    /// As [`output_tile8_f2`]; `residual` is `Some` when `RES`.
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn output_tile8_f2_with<const RES: bool, const ACC: bool, const RELU: bool>(
        m: *const f32,
        mstride: usize,
        nch: usize,
        y: *mut f32,
        (plane, ow, rows, cols): (usize, usize, usize, usize),
        bias: Option<*const f32>,
        residual: Option<*const f32>,
    ) {
        debug_assert!((1..=8).contains(&nch) && rows <= 2 && cols <= 2 && residual.is_some() == RES);
        // SAFETY (whole body): extents as the caller guarantees.
        unsafe {
            let zero = _mm256_setzero_ps();
            let bv = match bias {
                Some(b) if nch == 8 => _mm256_loadu_ps(b),
                Some(b) => _mm256_maskload_ps(b, lane_mask8(0, nch as isize).0),
                None => zero,
            };
            let res = residual.unwrap_or(y);
            let p: [__m256; 16] = std::array::from_fn(|xi| _mm256_loadu_ps(m.add(xi * mstride)));
            let mid: [[__m256; 2]; 4] = std::array::from_fn(|j| at2(std::array::from_fn(|i| p[i * 4 + j])));
            let mid_rows: [[__m256; 4]; 2] = std::array::from_fn(|a| std::array::from_fn(|j| mid[j][a]));
            for (a, ma) in mid_rows.into_iter().take(rows).enumerate() {
                let r = at2(ma).map(|v| {
                    let v = _mm256_add_ps(v, bv);
                    if RELU && !RES && !ACC {
                        _mm256_max_ps(v, zero)
                    } else {
                        v
                    }
                });
                // Lanes (2o, 2o + 1) of `pairs[h]`, 128-bit lane L: pixels 0 and 1 of channel
                // 4L + 2h + o.
                let pairs = [_mm256_unpacklo_ps(r[0], r[1]), _mm256_unpackhi_ps(r[0], r[1])];
                for (hh, t) in pairs.into_iter().enumerate() {
                    for (l, half) in [_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t)].into_iter().enumerate()
                    {
                        for e in 0..2 {
                            let o = 4 * l + 2 * hh + e;
                            if nch < 8 && o >= nch {
                                continue;
                            }
                            let off = o * plane + a * ow;
                            // Channel o's two pixels in lanes 0 and 1.
                            let mut x = if e == 0 { half } else { _mm_movehl_ps(half, half) };
                            let load = |at: *const f32| {
                                if cols == 2 {
                                    _mm_castpd_ps(_mm_load_sd(at.cast()))
                                } else {
                                    _mm_load_ss(at)
                                }
                            };
                            if RES {
                                x = _mm_add_ps(x, load(res.add(off)));
                            }
                            if ACC {
                                x = _mm_add_ps(x, load(y.add(off)));
                            }
                            if RELU && (RES || ACC) {
                                x = _mm_max_ps(x, _mm_setzero_ps());
                            }
                            if cols == 2 {
                                _mm_store_sd(y.add(off).cast(), _mm_castps_pd(x));
                            } else {
                                _mm_store_ss(y.add(off), x);
                            }
                        }
                    }
                }
            }
        }
    }

    /// `V[ξ·vstride + k]` of the `nt ≤ 8` tiles whose 6×6 patches start at row `iy0` and
    /// columns `ix0 + 4k` of the plane `xc` (`[h, w]`; zeros outside it).
    ///
    /// # Safety
    /// AVX2 available; `1 ≤ nt ≤ 8`; `v + ξ·vstride + k` writable for `ξ < 36`, `k < nt`.
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn input_tiles8(
        xc: &[f32],
        h: usize,
        w: usize,
        iy0: isize,
        ix0: isize,
        nt: usize,
        v: *mut f32,
        vstride: usize,
    ) {
        let d = patch_columns8(xc, h, w, iy0, ix0, nt);
        // SAFETY: the caller's contract.
        unsafe { transform_store8(d, nt, v, vstride) };
    }

    /// [`input_tiles8`] for two tile rows of up to 4 tiles each (planes 4 tiles wide, 14×14:
    /// one row would fill half of each vector): tiles `k < 4` of `a` = `(xc, iy0, ix0)` in
    /// lanes `k`, tiles `k < n1` of `b` in lanes `4 + k`, so `V[ξ·vstride + k]` of `4 + n1`
    /// consecutive tiles. Lane by lane the same operations, so the same bits.
    ///
    /// # Safety
    /// AVX2 available; `1 ≤ n1 ≤ 4`; `v + ξ·vstride + k` writable for `ξ < 36`, `k < 4 + n1`.
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn input_tiles4x2(
        (h, w): (usize, usize),
        a: (&[f32], isize, isize),
        b: (&[f32], isize, isize),
        n1: usize,
        v: *mut f32,
        vstride: usize,
    ) {
        assert!((1..=4).contains(&n1), "second row's tiles");
        let da = patch_columns8(a.0, h, w, a.1, a.2, 4);
        let db = patch_columns8(b.0, h, w, b.1, b.2, n1);
        let d = std::array::from_fn(|r| std::array::from_fn(|s| _mm256_permute2f128_ps::<0x20>(da[r][s], db[r][s])));
        // SAFETY: the caller's contract.
        unsafe { transform_store8(d, 4 + n1, v, vstride) };
    }

    /// `d[r][s]`: column `s` of row `r` of the 6×6 patches of [`input_tiles8`]'s tiles, tile
    /// `k` in lane `k` (zeros past `nt`).
    #[target_feature(enable = "avx2")]
    fn patch_columns8(xc: &[f32], h: usize, w: usize, iy0: isize, ix0: isize, nt: usize) -> [[__m256; 6]; 6] {
        assert!((1..=8).contains(&nt) && xc.len() >= h * w, "tiles and plane extent");
        let masks = row_masks(ix0, w, 4 * nt as isize + 2);
        // Tiles (0, 2, 4, 6, 1, 3, 5, 7) of the lane-wise transposes back in order, and the
        // lanes shifted down by one (columns 4 and 5: the next tile's 0 and 1).
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let next = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
        // d[r][s]: column s of the tiles' row r.
        let mut d = [[_mm256_setzero_ps(); 6]; 6];
        for (r, dr) in d.iter_mut().enumerate() {
            let iy = iy0 + r as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            let row = xc[iy as usize * w..].as_ptr().wrapping_offset(ix0);
            // SAFETY: lanes of each mask lie inside the row (`row_masks`), the others are
            // neither read nor faulted on.
            let q: [__m256; 5] = std::array::from_fn(|i| {
                let (m, full) = masks[i];
                let at = row.wrapping_add(8 * i);
                unsafe {
                    if full {
                        _mm256_loadu_ps(at)
                    } else {
                        _mm256_maskload_ps(at, m)
                    }
                }
            });
            let t0 = _mm256_unpacklo_ps(q[0], q[1]);
            let t1 = _mm256_unpackhi_ps(q[0], q[1]);
            let t2 = _mm256_unpacklo_ps(q[2], q[3]);
            let t3 = _mm256_unpackhi_ps(q[2], q[3]);
            let (pd, ps) = (_mm256_castps_pd, _mm256_castpd_ps);
            let phases = [
                ps(_mm256_unpacklo_pd(pd(t0), pd(t2))),
                ps(_mm256_unpackhi_pd(pd(t0), pd(t2))),
                ps(_mm256_unpacklo_pd(pd(t1), pd(t3))),
                ps(_mm256_unpackhi_pd(pd(t1), pd(t3))),
            ];
            for (ds, p) in dr.iter_mut().zip(phases) {
                *ds = _mm256_permutevar8x32_ps(p, order);
            }
            // Column 32 + s of the row (lane 0 of q[4] is column 32, lane 1 column 33).
            let tail = |s: i32| _mm256_permutevar8x32_ps(q[4], _mm256_set1_epi32(s));
            dr[4] = _mm256_blend_ps::<0x80>(_mm256_permutevar8x32_ps(dr[0], next), tail(0));
            dr[5] = _mm256_blend_ps::<0x80>(_mm256_permutevar8x32_ps(dr[1], next), tail(1));
        }
        d
    }

    /// `Bᵀ d B` of the patches `d` ([`patch_columns8`]), stored as `V[ξ·vstride + k]` for
    /// lanes `k < nt`.
    ///
    /// # Safety
    /// AVX2 available; `1 ≤ nt ≤ 8`; `v + ξ·vstride + k` writable for `ξ < 36`, `k < nt`.
    #[target_feature(enable = "avx2")]
    unsafe fn transform_store8(d: [[__m256; 6]; 6], nt: usize, v: *mut f32, vstride: usize) {
        // t[s][i] = (Bᵀ d)[i][s], then V[i·6 + j] = (t B)[i][j].
        let t: [[__m256; 6]; 6] = std::array::from_fn(|s| bt(std::array::from_fn(|r| d[r][s])));
        let rows: [[__m256; 6]; 6] = std::array::from_fn(|i| std::array::from_fn(|s| t[s][i]));
        for (i, ti) in rows.into_iter().enumerate() {
            let vi = bt(ti);
            for (j, vv) in vi.into_iter().enumerate() {
                let at = v.wrapping_add((i * 6 + j) * vstride);
                // SAFETY: point i·6 + j of tiles 0..nt, writable by the caller's contract
                // (plain stores: a masked one is microcoded on AMD, see `store_prefix8`).
                unsafe { store_prefix8(at, vv, nt) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::PANEL;
    use crate::plan::kernels::LineFetch;

    /// Floats ahead of the current filter row that the micro-kernel prefetches (16 rows).
    const PF_DIST: usize = 16 * PANEL;

    /// `Bᵀ a` of [`super::bt`] on vectors, with the same operations in the same order (no
    /// FMA): the transforms give the portable copy's bits. With FMAs here the rounding moved
    /// enough for a gradient of `train_torch_golden`'s Winograd run (BatchNorm's backward
    /// cancels) to leave its 1e-4 bound (4.6e-3 against 3.0e-4).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn bt([a0, a1, a2, a3, a4, a5]: [__m512; 6]) -> [__m512; 6] {
        let (two, four, five) = (_mm512_set1_ps(2.0), _mm512_set1_ps(4.0), _mm512_set1_ps(5.0));
        let (add, sub, mul) = (_mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps);
        [
            add(sub(mul(four, a0), mul(five, a2)), a4),
            add(add(mul(_mm512_set1_ps(-4.0), add(a1, a2)), a3), a4),
            add(sub(mul(four, sub(a1, a2)), a3), a4),
            add(sub(mul(two, sub(a3, a1)), a2), a4),
            add(sub(mul(two, sub(a1, a3)), a2), a4),
            add(sub(mul(four, a1), mul(five, a3)), a5),
        ]
    }

    /// The vector of 16 lane indices `f(0), …, f(15)`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn lane_indices(f: impl Fn(i32) -> i32) -> __m512i {
        let lanes: [i32; 16] = std::array::from_fn(|k| f(k as i32));
        // SAFETY: 64 readable bytes; `loadu` has no alignment requirement.
        unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) }
    }

    /// Masks of `Q` vectors covering columns `ix0 + j`, `j < need`, of a row of width `w`:
    /// lane `l` of vector `q` is set when column `ix0 + 16q + l` lies inside the row.
    fn row_masks<const Q: usize>(ix0: isize, w: usize, need: isize) -> [__mmask16; Q] {
        let jlo = (-ix0).clamp(0, need);
        let jhi = (w as isize - ix0).clamp(jlo, need);
        std::array::from_fn(|q| {
            let q = q as isize;
            let (lo, hi) = ((jlo - 16 * q).clamp(0, 16), (jhi - 16 * q).clamp(0, 16));
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
        })
    }

    /// Row `iy` of the plane `xc` (`[h, w]`) from column `ix0` as `Q` vectors, zeros outside
    /// the row (the padding) or when the row is outside the plane.
    #[target_feature(enable = "avx512f")]
    fn load_row<const Q: usize>(
        xc: &[f32],
        h: usize,
        w: usize,
        iy: isize,
        ix0: isize,
        masks: &[__mmask16; Q],
    ) -> [__m512; Q] {
        if iy < 0 || iy >= h as isize {
            return [_mm512_setzero_ps(); Q];
        }
        assert!(xc.len() >= h * w, "plane extent");
        let row = xc[iy as usize * w..].as_ptr().wrapping_offset(ix0);
        // SAFETY: the row lies in `xc`; lanes outside it are masked off (no access).
        std::array::from_fn(|i| unsafe { _mm512_maskz_loadu_ps(masks[i], row.wrapping_add(16 * i)) })
    }

    /// The epilogue of one masked output store: `dst[l] = relu?(v[l] + res[l] (+ dst[l]))`
    /// for the lanes `l` in `mask`.
    ///
    /// # Safety
    /// `dst + l` (and `res + l`) valid for the lanes in `mask`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_epilogue(
        v: __m512,
        mask: __mmask16,
        dst: *mut f32,
        res: Option<*const f32>,
        relu: bool,
        accumulate: bool,
    ) {
        // SAFETY: as the caller guarantees; masked-off lanes are not accessed.
        unsafe {
            let mut u = v;
            if let Some(r) = res {
                u = _mm512_add_ps(u, _mm512_maskz_loadu_ps(mask, r));
            }
            if accumulate {
                u = _mm512_add_ps(u, _mm512_maskz_loadu_ps(mask, dst));
            }
            if relu {
                u = _mm512_max_ps(u, _mm512_setzero_ps());
            }
            _mm512_mask_storeu_ps(dst, mask, u);
        }
    }

    /// [`super::input_tiles`] for at most 16 tiles, one vector lane per tile: each of the 6
    /// input rows under the tiles is loaded as 5 masked vectors (zeros outside the row,
    /// which is the padding) and split into its 6 tile columns with two-source permutes
    /// (column `s` of tile `k` is float `4k + s`), then both transforms run on whole vectors
    /// and the 36 points are stored, masked to `nt` lanes.
    ///
    /// # Safety
    /// AVX-512F available; `1 ≤ nt ≤ 16`; `v + ξ·vstride + k` writable for `ξ < 36`, `k < nt`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn input_tiles16(
        xc: &[f32],
        h: usize,
        w: usize,
        iy0: isize,
        ix0: isize,
        nt: usize,
        v: *mut f32,
        vstride: usize,
    ) {
        debug_assert!((1..=16).contains(&nt) && xc.len() >= h * w);
        // Columns ix0 + j for j < 4·nt + 2.
        let masks = row_masks::<5>(ix0, w, 4 * nt as isize + 2);
        // Lane k (of each half) takes float 4·(k mod 8) + s of the two sources.
        let idx: [__m512i; 4] = std::array::from_fn(|s| {
            let s = s as i32;
            lane_indices(|k| 4 * (k % 8) + s)
        });
        let split = |a: __m512, b: __m512, c: __m512, d: __m512, i: __m512i| {
            _mm512_mask_blend_ps(0xFF00, _mm512_permutex2var_ps(a, i, b), _mm512_permutex2var_ps(c, i, d))
        };
        let shift = |a: __m512, b: __m512| {
            _mm512_castsi512_ps(_mm512_alignr_epi32::<4>(_mm512_castps_si512(b), _mm512_castps_si512(a)))
        };
        // d[r][s]: column s of the tiles' row r.
        let mut d = [[_mm512_setzero_ps(); 6]; 6];
        for (r, dr) in d.iter_mut().enumerate() {
            let iy = iy0 + r as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            let q = load_row(xc, h, w, iy, ix0, &masks);
            for (ds, ix) in dr.iter_mut().zip(&idx) {
                *ds = split(q[0], q[1], q[2], q[3], *ix);
            }
            let (s0, s1, s2, s3) = (shift(q[0], q[1]), shift(q[1], q[2]), shift(q[2], q[3]), shift(q[3], q[4]));
            dr[4] = split(s0, s1, s2, s3, idx[0]);
            dr[5] = split(s0, s1, s2, s3, idx[1]);
        }
        // SAFETY: the caller's contract.
        unsafe { store_points6(d, nt, v, vstride) };
    }

    /// `V[i·6 + j] = (Bᵀ d B)[i][j]` of the tiles in `d`'s first `nt` lanes (`d[r][s]`: column
    /// `s` of the tiles' row `r`), stored at `v + (i·6 + j)·vstride`.
    ///
    /// # Safety
    /// AVX-512F available; `1 ≤ nt ≤ 16`; `v + ξ·vstride + k` writable for `ξ < 36`, `k < nt`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_points6(d: [[__m512; 6]; 6], nt: usize, v: *mut f32, vstride: usize) {
        // t[s][i] = (Bᵀ d)[i][s], then V[i·6 + j] = (t B)[i][j].
        let t: [[__m512; 6]; 6] = std::array::from_fn(|s| bt(std::array::from_fn(|r| d[r][s])));
        let rows: [[__m512; 6]; 6] = std::array::from_fn(|i| std::array::from_fn(|s| t[s][i]));
        let lanes = ((1u32 << nt) - 1) as u16;
        for (i, ti) in rows.into_iter().enumerate() {
            let vi = bt(ti);
            for (j, vv) in vi.into_iter().enumerate() {
                // SAFETY: point i·6 + j of tiles 0..nt, writable by the caller's contract.
                unsafe { _mm512_mask_storeu_ps(v.add((i * 6 + j) * vstride), lanes, vv) };
            }
        }
    }

    /// The 16 tiles' input pixels `d[r][s]` (lane `k`: pixel `(r, s)` of tile `k`, whose top
    /// left corner is at plane offset `base[k]`, row `iy[k]`, column `ix[k]` of a `[h, w]`
    /// plane; zeros outside it, the padding, and in lanes past `nt`), by masked gathers:
    /// the tiles of a block on narrow planes span several tile rows (14×14: 4 of 16 lanes
    /// per row for the row loads of [`input_tiles16`]).
    ///
    /// # Safety
    /// AVX-512F available; `1 ≤ nt ≤ 16`; `x + base[k] + r·w + c` readable for every lane
    /// `k < nt` and in-plane `(r, c)`; all offsets fit in `i32`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn gather_tiles(
        x: *const f32,
        (base, iy, ix): (__m512i, __m512i, __m512i),
        h: usize,
        w: usize,
        nt: usize,
    ) -> [[__m512; 6]; 6] {
        let lanes = ((1u32 << nt) - 1) as u16;
        let (hv, wv, zero) = (_mm512_set1_epi32(h as i32), _mm512_set1_epi32(w as i32), _mm512_setzero_si512());
        std::array::from_fn(|r| {
            let row = _mm512_add_epi32(iy, _mm512_set1_epi32(r as i32));
            let inside = _mm512_mask_cmpge_epi32_mask(lanes, row, zero) & _mm512_cmplt_epi32_mask(row, hv);
            let start = _mm512_add_epi32(base, _mm512_mullo_epi32(row, wv));
            std::array::from_fn(|s| {
                let col = _mm512_add_epi32(ix, _mm512_set1_epi32(s as i32));
                let m = _mm512_mask_cmpge_epi32_mask(inside, col, zero) & _mm512_cmplt_epi32_mask(col, wv);
                // SAFETY: masked-off lanes are not read; the others are in-plane pixels.
                unsafe { _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, _mm512_add_epi32(start, col), x.cast()) }
            })
        })
    }

    /// [`input_tiles16`] for 16 tiles anywhere in the input, gathered by [`gather_tiles`]:
    /// the same points, bit for bit. (F(2×2)'s 4×4 tiles measured slower gathered than
    /// row-loaded, 4 of 16 lanes and all, at 7×7.)
    ///
    /// # Safety
    /// As [`gather_tiles`] and [`store_points6`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gathered_tiles16(
        x: *const f32,
        (base, iy, ix): (&[i32; 16], &[i32; 16], &[i32; 16]),
        (h, w): (usize, usize),
        nt: usize,
        v: *mut f32,
        vstride: usize,
    ) {
        // SAFETY (whole body): the caller's contract; the arrays hold 64 bytes each.
        unsafe {
            let load = |a: &[i32; 16]| _mm512_loadu_si512(a.as_ptr().cast());
            let d = gather_tiles(x, (load(base), load(iy), load(ix)), h, w, nt);
            store_points6(d, nt, v, vstride);
        }
    }

    /// `Aᵀ a` of [`super::output_tile`] on vectors, in the portable copy's order (no FMA).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn at([m0, m1, m2, m3, m4, m5]: [__m512; 6]) -> [__m512; 4] {
        let (s12, d12) = (_mm512_add_ps(m1, m2), _mm512_sub_ps(m1, m2));
        let (s34, d34) = (_mm512_add_ps(m3, m4), _mm512_sub_ps(m3, m4));
        let (add, mul) = (_mm512_add_ps, _mm512_mul_ps);
        [
            add(add(m0, s12), s34),
            add(d12, mul(_mm512_set1_ps(2.0), d34)),
            add(s12, mul(_mm512_set1_ps(4.0), s34)),
            add(add(d12, mul(_mm512_set1_ps(8.0), d34)), m5),
        ]
    }

    /// Output transform and epilogue of one tile for `nch ≤ 16` channels, one vector lane
    /// per channel: `m + ξ·mstride` holds point ξ of the 16 channels; pixel `(a, b)` of
    /// channel `o` becomes `relu?(res + bias[o] + residual[o·plane + a·ow + b] (+ y))` at
    /// `y[o·plane + a·ow + b]` for `a < rows`, `b < cols`. Each output row is transposed in
    /// registers (4×4 within each 128-bit lane) so that a channel's 4 pixels are one masked
    /// store.
    ///
    /// # Safety
    /// AVX-512F available; `m + ξ·mstride + l` readable for `ξ < 36`, `l < 16`; `bias + o`
    /// readable and `y + o·plane + a·ow + b` writable (and, with `residual`, readable there)
    /// for `o < nch`, `a < rows ≤ 4`, `b < cols ≤ 4`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn output_tile16(
        m: *const f32,
        mstride: usize,
        nch: usize,
        y: *mut f32,
        (plane, ow, rows, cols): (usize, usize, usize, usize),
        bias: Option<*const f32>,
        residual: Option<*const f32>,
        relu: bool,
        accumulate: bool,
    ) {
        debug_assert!((1..=16).contains(&nch) && rows <= 4 && cols <= 4);
        // SAFETY (whole body): extents as the caller guarantees; masked-off lanes of the
        // shifted row pointers are not accessed.
        unsafe {
            let p: [__m512; 36] = std::array::from_fn(|xi| _mm512_loadu_ps(m.add(xi * mstride)));
            // mid[j][a] = (Aᵀ m)[a][j], then res[a][b] = (mid Aᵀᵀ)[a][b].
            let mid: [[__m512; 4]; 6] = std::array::from_fn(|j| at(std::array::from_fn(|i| p[i * 6 + j])));
            let mid_rows: [[__m512; 6]; 4] = std::array::from_fn(|a| std::array::from_fn(|j| mid[j][a]));
            let chans = ((1u32 << nch) - 1) as u16;
            // bq[q]: lanes 4L..4L+3 hold bias[4L + q] (the channel of lane L after the transpose).
            let bq: [__m512; 4] = match bias {
                Some(b) => {
                    let bv = _mm512_maskz_loadu_ps(chans, b);
                    std::array::from_fn(|q| {
                        let q = q as i32;
                        let idx = lane_indices(|k| 4 * (k / 4) + q);
                        _mm512_permutexvar_ps(idx, bv)
                    })
                }
                None => [_mm512_setzero_ps(); 4],
            };
            let cmask = (1u16 << cols) - 1;
            for (a, ma) in mid_rows.into_iter().take(rows).enumerate() {
                let r = at(ma);
                let (t0, t1) = (_mm512_unpacklo_ps(r[0], r[1]), _mm512_unpackhi_ps(r[0], r[1]));
                let (t2, t3) = (_mm512_unpacklo_ps(r[2], r[3]), _mm512_unpackhi_ps(r[2], r[3]));
                let pd = _mm512_castps_pd;
                let ps = _mm512_castpd_ps;
                // tq[q], 128-bit lane L: pixels b = 0..4 of row a of channel 4L + q.
                let tq = [
                    ps(_mm512_unpacklo_pd(pd(t0), pd(t2))),
                    ps(_mm512_unpackhi_pd(pd(t0), pd(t2))),
                    ps(_mm512_unpacklo_pd(pd(t1), pd(t3))),
                    ps(_mm512_unpackhi_pd(pd(t1), pd(t3))),
                ];
                for (q, t) in tq.into_iter().enumerate() {
                    let v = _mm512_add_ps(t, bq[q]);
                    for l in 0..4 {
                        let o = 4 * l + q;
                        if o >= nch {
                            break;
                        }
                        // Lanes 4l.. land on this channel's row: pointers shifted back by 4l.
                        let off = o * plane + a * ow;
                        let res = residual.map(|r| r.add(off).wrapping_sub(4 * l));
                        store_epilogue(v, cmask << (4 * l), y.add(off).wrapping_sub(4 * l), res, relu, accumulate);
                    }
                }
            }
        }
    }

    /// [`input_tiles16`] for F(2×2, 3×3): 4 input rows of 3 masked vectors; column `s` of
    /// tile `k` is float `2k + s`.
    ///
    /// # Safety
    /// AVX-512F available; `1 ≤ nt ≤ 16`; `v + ξ·vstride + k` writable for `ξ < 16`, `k < nt`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn input_tiles16_f2(
        xc: &[f32],
        h: usize,
        w: usize,
        iy0: isize,
        ix0: isize,
        nt: usize,
        v: *mut f32,
        vstride: usize,
    ) {
        debug_assert!((1..=16).contains(&nt) && xc.len() >= h * w);
        let masks = row_masks::<3>(ix0, w, 2 * nt as isize + 2);
        // Lane k takes float 2k + s of the two sources.
        let idx: [__m512i; 2] = std::array::from_fn(|s| {
            let s = s as i32;
            lane_indices(|k| 2 * k + s)
        });
        let shift = |a: __m512, b: __m512| {
            _mm512_castsi512_ps(_mm512_alignr_epi32::<2>(_mm512_castps_si512(b), _mm512_castps_si512(a)))
        };
        // d[r][s]: column s of the tiles' row r.
        let mut d = [[_mm512_setzero_ps(); 4]; 4];
        for (r, dr) in d.iter_mut().enumerate() {
            let iy = iy0 + r as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            let q = load_row(xc, h, w, iy, ix0, &masks);
            let (s0, s1) = (shift(q[0], q[1]), shift(q[1], q[2]));
            *dr = [
                _mm512_permutex2var_ps(q[0], idx[0], q[1]),
                _mm512_permutex2var_ps(q[0], idx[1], q[1]),
                _mm512_permutex2var_ps(s0, idx[0], s1),
                _mm512_permutex2var_ps(s0, idx[1], s1),
            ];
        }
        let bt2 = |[a0, a1, a2, a3]: [__m512; 4]| {
            [_mm512_sub_ps(a0, a2), _mm512_add_ps(a1, a2), _mm512_sub_ps(a2, a1), _mm512_sub_ps(a1, a3)]
        };
        let t: [[__m512; 4]; 4] = std::array::from_fn(|s| bt2(std::array::from_fn(|r| d[r][s])));
        let rows: [[__m512; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|s| t[s][i]));
        let lanes = ((1u32 << nt) - 1) as u16;
        for (i, ti) in rows.into_iter().enumerate() {
            for (j, vv) in bt2(ti).into_iter().enumerate() {
                // SAFETY: point i·4 + j of tiles 0..nt, writable by the caller's contract.
                unsafe { _mm512_mask_storeu_ps(v.add((i * 4 + j) * vstride), lanes, vv) };
            }
        }
    }

    /// [`output_tile16`] for F(2×2, 3×3): 16 points, 2×2 pixels; each output row's two
    /// pixel vectors are interleaved so that a channel's 2 pixels are adjacent.
    ///
    /// # Safety
    /// As [`output_tile16`] with `ξ < 16`, `rows, cols ≤ 2`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn output_tile16_f2(
        m: *const f32,
        mstride: usize,
        nch: usize,
        y: *mut f32,
        (plane, ow, rows, cols): (usize, usize, usize, usize),
        bias: Option<*const f32>,
        residual: Option<*const f32>,
        relu: bool,
        accumulate: bool,
    ) {
        debug_assert!((1..=16).contains(&nch) && rows <= 2 && cols <= 2);
        // SAFETY (whole body): extents as the caller guarantees; masked-off lanes of the
        // shifted row pointers are not accessed.
        unsafe {
            let p: [__m512; 16] = std::array::from_fn(|xi| _mm512_loadu_ps(m.add(xi * mstride)));
            let at2 = |[m0, m1, m2, m3]: [__m512; 4]| {
                [_mm512_add_ps(_mm512_add_ps(m0, m1), m2), _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3)]
            };
            let mid: [[__m512; 2]; 4] = std::array::from_fn(|j| at2(std::array::from_fn(|i| p[i * 4 + j])));
            let mid_rows: [[__m512; 4]; 2] = std::array::from_fn(|a| std::array::from_fn(|j| mid[j][a]));
            let chans = ((1u32 << nch) - 1) as u16;
            // After the interleave, element e of 128-bit lane L of half h is channel
            // 4L + 2h + e/2: bh[h] holds those channels' biases.
            let bh: [__m512; 2] = match bias {
                Some(b) => {
                    let bv = _mm512_maskz_loadu_ps(chans, b);
                    std::array::from_fn(|h| {
                        let h = 2 * h as i32;
                        let idx = lane_indices(|k| 4 * (k / 4) + (k % 4) / 2 + h);
                        _mm512_permutexvar_ps(idx, bv)
                    })
                }
                None => [_mm512_setzero_ps(); 2],
            };
            let cmask = (1u16 << cols) - 1;
            for (a, ma) in mid_rows.into_iter().take(rows).enumerate() {
                let r = at2(ma);
                let halves = [_mm512_unpacklo_ps(r[0], r[1]), _mm512_unpackhi_ps(r[0], r[1])];
                for (hh, t) in halves.into_iter().enumerate() {
                    let v = _mm512_add_ps(t, bh[hh]);
                    for l in 0..4 {
                        for e in 0..2 {
                            let o = 4 * l + 2 * hh + e;
                            if o >= nch {
                                continue;
                            }
                            let (first, off) = (4 * l + 2 * e, o * plane + a * ow);
                            let res = residual.map(|r| r.add(off).wrapping_sub(first));
                            store_epilogue(v, cmask << first, y.add(off).wrapping_sub(first), res, relu, accumulate);
                        }
                    }
                }
            }
        }
    }

    /// [`super::panel_product`] for `R` tiles: `m[r·ms + j] = Σ_c v[c·vs + r] · u[c·PANEL + j]`.
    ///
    /// Each channel step also takes a [`LineFetch::step`] of `pf`.
    ///
    /// # Safety
    /// AVX-512F available; `u` holds `k·PANEL` floats, `v + c·vs + r` is readable and
    /// `m + r·ms + j` writable for `c < k`, `r < R`, `j < PANEL`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn panel_rows<const R: usize>(
        k: usize,
        u: *const f32,
        mut pf: LineFetch,
        v: *const f32,
        vs: usize,
        m: *mut f32,
        ms: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        // SAFETY (whole body): pointers and extents as the caller guarantees; prefetches
        // may point past the end (`wrapping_add`, no access).
        unsafe {
            let (mut up, mut vp) = (u, v);
            for _ in 0..k {
                _mm_prefetch::<_MM_HINT_T0>(up.wrapping_add(PF_DIST).cast());
                _mm_prefetch::<_MM_HINT_T0>(up.wrapping_add(PF_DIST + 16).cast());
                pf.step();
                let w0 = _mm512_loadu_ps(up);
                let w1 = _mm512_loadu_ps(up.add(16));
                for (r, a) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*vp.add(r));
                    a[0] = _mm512_fmadd_ps(x, w0, a[0]);
                    a[1] = _mm512_fmadd_ps(x, w1, a[1]);
                }
                up = up.add(PANEL);
                vp = vp.add(vs);
            }
            for (r, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(m.add(r * ms), a[0]);
                _mm512_storeu_ps(m.add(r * ms + 16), a[1]);
            }
        }
    }
}

/// `U[ξ][c][o] = (G g Gᵀ)[ξ]` with `g` the 3×3 filter `(o, c)` of `w` (`[OC, IC, 3, 3]`), in
/// f64, into `u` (`[a², panels, IC, PANEL]` for the `a×3` transform `G`, see
/// [`Winograd::u`]). One task per row `i` of the a×a transform (its `a` `U_ξ`, contiguous).
fn transform_filters(u: &mut [f32], gm: &[[f64; 3]], ic: usize, oc: usize, w: &[f32], parallel: bool) {
    let panels = oc.div_ceil(PANEL);
    assert_eq!(u.len(), gm.len() * gm.len() * panels * ic * PANEL, "U extent");
    assert_eq!(w.len(), oc * ic * 9, "filters are [OC, IC, 3, 3]");
    let row = gm.len() * panels * ic * PANEL;
    if parallel {
        u.par_chunks_mut(row).zip(gm.par_iter()).for_each(|(ui, gi)| transform_row(ui, gi, gm, w, ic, oc));
    } else {
        u.chunks_mut(row).zip(gm).for_each(|(ui, gi)| transform_row(ui, gi, gm, w, ic, oc));
    }
}

multiversion! {
    /// Row `i` of the filter transform (`gi` = row `i` of `G`) for every panel: per input
    /// channel and panel, `t_j[o] = Σ_k G_ik g_{o,c}[k][j]` (3 values per filter), then
    /// `U_(i,jj)[c][o] = Σ_j t_j[o] G_jj,j`, element-wise over the panel's channels (the
    /// missing channels of the last panel get zeros).
    #[allow(clippy::needless_range_loop)]
    fn transform_row(ui: &mut [f32], gi: &[f64; 3], gm: &[[f64; 3]], w: &[f32], ic: usize, oc: usize) {
        let panels = oc.div_ceil(PANEL);
        for p in 0..panels {
            let (o0, on) = (p * PANEL, PANEL.min(oc - p * PANEL));
            for c in 0..ic {
                let mut t = [[0.0f64; PANEL]; 3];
                for o in 0..on {
                    let g = &w[((o0 + o) * ic + c) * 9..][..9];
                    for j in 0..3 {
                        t[j][o] = gi[0] * g[j] as f64 + gi[1] * g[3 + j] as f64 + gi[2] * g[6 + j] as f64;
                    }
                }
                for (jj, gj) in gm.iter().enumerate() {
                    let dst = &mut ui[((jj * panels + p) * ic + c) * PANEL..][..PANEL];
                    for o in 0..PANEL {
                        dst[o] = (t[0][o] * gj[0] + t[1][o] * gj[1] + t[2][o] * gj[2]) as f32;
                    }
                }
            }
        }
    }
}

/// Tiles per block, 16 to 256: the block's `V` within [`BLOCK_BYTES`] or, when the filters
/// `U` are larger, within the size of `U` — each block streams all of `U` once, so with
/// large filters fewer, larger blocks (spilling to L3) beat L2-sized ones. Measured on
/// ResNet-50's 28×28×128 layer (49 tiles, U 2.4 MB): one block 1.0 ms, two 1.4 ms.
fn block_tiles(points: usize, ic: usize, oc: usize) -> usize {
    let per_tile = points * ic * 4;
    let budget = BLOCK_BYTES.max(points * ic * oc * 4);
    (budget / per_tile).clamp(16, 256)
}

/// Output channels per round of a task with `nb` tiles: `M` within [`ROUND_BYTES`], whole
/// panels, at least one.
fn round_channels(points: usize, nb: usize) -> usize {
    (ROUND_BYTES / (points * nb * 4) / PANEL).max(1) * PANEL
}

/// `Bᵀ a` for one column of six values: the input transform's matrix, applied to the columns
/// of a 6×6 patch and then to the rows of the result.
#[inline(always)]
fn bt([a0, a1, a2, a3, a4, a5]: [f32; 6]) -> [f32; 6] {
    [
        4.0 * a0 - 5.0 * a2 + a4,
        -4.0 * (a1 + a2) + a3 + a4,
        4.0 * (a1 - a2) - a3 + a4,
        2.0 * (a3 - a1) - a2 + a4,
        2.0 * (a1 - a3) - a2 + a4,
        4.0 * a1 - 5.0 * a3 + a5,
    ]
}

multiversion! {
    /// Input transform of `nt` consecutive tiles of one channel plane `xc` (`[h, w]`) whose
    /// 6×6 patches start at row `iy0` and columns `ix0, ix0+4, …` (negative or past the end:
    /// zeros). Writes `Bᵀ d B` of tile `k` to `v[ξ·vstride + k]`. `strip` holds
    /// `48·(nt + 1)` floats.
    ///
    /// Each input row is first split by column phase (`x mod 4`) into 4 arrays of `nt + 1`,
    /// so column `s` of tile `k` is `phase[s % 4][k + s / 4]`: every transform step is then
    /// element-wise over contiguous tiles and vectorizes.
    fn input_tiles(
        xc: &[f32],
        h: usize,
        w: usize,
        iy0: isize,
        ix0: isize,
        nt: usize,
        strip: &mut [f32],
        v: &mut [f32],
        vstride: usize,
    ) {
        let np = nt + 1;
        let rw = 4 * np; // one row: 4 phases of np
        let (d, t) = strip.split_at_mut(6 * rw);
        // Gather the 6 input rows under the tiles, zero-filled outside the image.
        for r in 0..6 {
            let row = &mut d[r * rw..][..rw];
            let iy = iy0 + r as isize;
            if iy < 0 || iy >= h as isize {
                row.fill(0.0);
                continue;
            }
            let src = &xc[iy as usize * w..][..w];
            let (p0, rest) = row.split_at_mut(np);
            let (p1, rest) = rest.split_at_mut(np);
            let (p2, p3) = rest.split_at_mut(np);
            // Tiles whose 4 columns 4k..4k+4 (from ix0) all lie inside the row: plain copies.
            let lo = if ix0 >= 0 { 0 } else { ((-ix0) as usize).div_ceil(4) }.min(np);
            let hi = if (w as isize) < ix0 + 4 { lo } else { (((w as isize - ix0) / 4) as usize).clamp(lo, np) };
            for k in lo..hi {
                let q = &src[(ix0 + 4 * k as isize) as usize..][..4];
                p0[k] = q[0];
                p1[k] = q[1];
                p2[k] = q[2];
                p3[k] = q[3];
            }
            let at = |x: isize| if x >= 0 && x < w as isize { src[x as usize] } else { 0.0 };
            for k in (0..lo).chain(hi..np) {
                let x = ix0 + 4 * k as isize;
                p0[k] = at(x);
                p1[k] = at(x + 1);
                p2[k] = at(x + 2);
                p3[k] = at(x + 3);
            }
        }
        // Column transform t = Bᵀ d, element-wise over the 4 phases of every row.
        {
            let r = |i: usize| &d[i * rw..][..rw];
            let (d0, d1, d2, d3, d4, d5) = (r(0), r(1), r(2), r(3), r(4), r(5));
            let (t0, rest) = t.split_at_mut(rw);
            let (t1, rest) = rest.split_at_mut(rw);
            let (t2, rest) = rest.split_at_mut(rw);
            let (t3, rest) = rest.split_at_mut(rw);
            let (t4, t5) = rest.split_at_mut(rw);
            let t5 = &mut t5[..rw];
            for j in 0..rw {
                [t0[j], t1[j], t2[j], t3[j], t4[j], t5[j]] = bt([d0[j], d1[j], d2[j], d3[j], d4[j], d5[j]]);
            }
        }
        // Row transform (t B) per tile, element-wise over the tiles.
        for i in 0..6 {
            let ti = &t[i * rw..][..rw];
            let (s0, s1, s2, s3) = (&ti[..nt], &ti[np..np + nt], &ti[2 * np..2 * np + nt], &ti[3 * np..3 * np + nt]);
            let (s4, s5) = (&ti[1..1 + nt], &ti[np + 1..np + 1 + nt]);
            let base = i * 6 * vstride;
            let (v0, rest) = v[base..].split_at_mut(vstride);
            let (v1, rest) = rest.split_at_mut(vstride);
            let (v2, rest) = rest.split_at_mut(vstride);
            let (v3, rest) = rest.split_at_mut(vstride);
            let (v4, rest) = rest.split_at_mut(vstride);
            let (v0, v1, v2, v3, v4, v5) = (&mut v0[..nt], &mut v1[..nt], &mut v2[..nt], &mut v3[..nt], &mut v4[..nt], &mut rest[..nt]);
            for k in 0..nt {
                [v0[k], v1[k], v2[k], v3[k], v4[k], v5[k]] = bt([s0[k], s1[k], s2[k], s3[k], s4[k], s5[k]]);
            }
        }
    }
}

multiversion! {
    /// Output transform `Aᵀ m A` of one tile for `ocw` channels: `m[ξ·mstride + o]` is point
    /// ξ of channel `o`; writes pixel `(a, b)` of channel `o` to `tmp[(a·4 + b)·ocw + o]`
    /// (`tmp` holds 40·ocw: 16·ocw results, then 24·ocw intermediate).
    fn output_tile(m: &[f32], mstride: usize, ocw: usize, tmp: &mut [f32]) {
        let (res, mid) = tmp.split_at_mut(16 * ocw);
        // mid[a][j] = Σ_i Aᵀ[a][i] m[i][j]   (4 × 6 rows of ocw)
        for j in 0..6 {
            let r = |i: usize| &m[(i * 6 + j) * mstride..][..ocw];
            let (m0, m1, m2, m3, m4, m5) = (r(0), r(1), r(2), r(3), r(4), r(5));
            let (q0, rest) = mid.split_at_mut(6 * ocw);
            let (q1, rest) = rest.split_at_mut(6 * ocw);
            let (q2, q3) = rest.split_at_mut(6 * ocw);
            let (q0, q1, q2, q3) =
                (&mut q0[j * ocw..][..ocw], &mut q1[j * ocw..][..ocw], &mut q2[j * ocw..][..ocw], &mut q3[j * ocw..][..ocw]);
            for k in 0..ocw {
                let (s12, d12) = (m1[k] + m2[k], m1[k] - m2[k]);
                let (s34, d34) = (m3[k] + m4[k], m3[k] - m4[k]);
                q0[k] = m0[k] + s12 + s34;
                q1[k] = d12 + 2.0 * d34;
                q2[k] = s12 + 4.0 * s34;
                q3[k] = d12 + 8.0 * d34 + m5[k];
            }
        }
        // res[a][b] = Σ_j mid[a][j] Aᵀ[b][j]
        for a in 0..4 {
            let r = |j: usize| &mid[(a * 6 + j) * ocw..][..ocw];
            let (m0, m1, m2, m3, m4, m5) = (r(0), r(1), r(2), r(3), r(4), r(5));
            let (p0, rest) = res[a * 4 * ocw..].split_at_mut(ocw);
            let (p1, rest) = rest.split_at_mut(ocw);
            let (p2, rest) = rest.split_at_mut(ocw);
            let p3 = &mut rest[..ocw];
            for k in 0..ocw {
                let (s12, d12) = (m1[k] + m2[k], m1[k] - m2[k]);
                let (s34, d34) = (m3[k] + m4[k], m3[k] - m4[k]);
                p0[k] = m0[k] + s12 + s34;
                p1[k] = d12 + 2.0 * d34;
                p2[k] = s12 + 4.0 * s34;
                p3[k] = d12 + 8.0 * d34 + m5[k];
            }
        }
    }
}

/// `Bᵀ a` of F(2×2, 3×3) for one column of four values.
#[inline(always)]
fn bt2([a0, a1, a2, a3]: [f32; 4]) -> [f32; 4] {
    [a0 - a2, a1 + a2, a2 - a1, a1 - a3]
}

/// `Aᵀ m` of F(2×2, 3×3) for one column of four values.
#[inline(always)]
fn at2([m0, m1, m2, m3]: [f32; 4]) -> [f32; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

multiversion! {
    /// F(2×2, 3×3) input transform of `nt` consecutive tiles of one channel plane `xc`
    /// (`[h, w]`) whose 4×4 patches start at row `iy0` and columns `ix0, ix0+2, …` (outside
    /// the plane: zeros): `Bᵀ d B` of tile `k` to `v[ξ·vstride + k]`.
    fn input_tiles_f2(xc: &[f32], h: usize, w: usize, iy0: isize, ix0: isize, nt: usize, v: &mut [f32], vstride: usize) {
        let at = |y: isize, x: isize| {
            if y >= 0 && y < h as isize && x >= 0 && x < w as isize {
                xc[y as usize * w + x as usize]
            } else {
                0.0
            }
        };
        for k in 0..nt {
            let x0 = ix0 + 2 * k as isize;
            let d: [[f32; 4]; 4] = std::array::from_fn(|r| std::array::from_fn(|s| at(iy0 + r as isize, x0 + s as isize)));
            // t[s] = Bᵀ (column s), then V[i·4 + j] = (row i of t) B.
            let t: [[f32; 4]; 4] = std::array::from_fn(|s| bt2(std::array::from_fn(|r| d[r][s])));
            for i in 0..4 {
                for (j, vv) in bt2(std::array::from_fn(|s| t[s][i])).into_iter().enumerate() {
                    v[(i * 4 + j) * vstride + k] = vv;
                }
            }
        }
    }
}

/// F(2×2, 3×3) output transform and epilogue of one tile for `ocw` channels: `m[ξ·mstride + o]`
/// is point ξ of channel `o`; pixel `(a, b)` of channel `o` becomes
/// `relu?(res + bias[o] + residual[o·plane + a·ow + b] (+ y))` at `y[o·plane + a·ow + b]` for
/// `a < rows`, `b < cols`.
///
/// # Safety
/// `y` (and `residual`, when given) must hold every such index.
#[allow(clippy::too_many_arguments)]
unsafe fn output_store_f2(
    m: &[f32],
    mstride: usize,
    ocw: usize,
    y: *mut f32,
    (plane, ow, rows, cols): (usize, usize, usize, usize),
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    relu: bool,
    accumulate: bool,
) {
    for o in 0..ocw {
        let p: [f32; 16] = std::array::from_fn(|xi| m[xi * mstride + o]);
        let mid: [[f32; 2]; 4] = std::array::from_fn(|j| at2(std::array::from_fn(|i| p[i * 4 + j])));
        let mid_rows: [[f32; 4]; 2] = std::array::from_fn(|a| std::array::from_fn(|j| mid[j][a]));
        let b0 = bias.map_or(0.0, |b| b[o]);
        for (a, ma) in mid_rows.into_iter().take(rows).enumerate() {
            let res = at2(ma);
            for (b, &r) in res.iter().enumerate().take(cols) {
                let off = o * plane + a * ow + b;
                let mut v = r + b0;
                if let Some(rs) = residual {
                    v += rs[off];
                }
                if accumulate {
                    // SAFETY: in bounds by the caller's contract.
                    v += unsafe { *y.add(off) };
                }
                if relu {
                    v = v.max(0.0);
                }
                // SAFETY: in bounds by the caller's contract.
                unsafe { *y.add(off) = v };
            }
        }
    }
}

/// Writes one output tile with the epilogue: pixel `(a, b)` of channel `o` is
/// `relu?(res[(a·4 + b)·ocw + o] + bias[o] + residual[o·plane + a·ow + b])` (plus the
/// current `y[o·plane + a·ow + b]` with `accumulate`), stored at `y[o·plane + a·ow + b]` for
/// `a < rows`, `b < cols`.
///
/// # Safety
/// `y` (and `residual`, when given) must hold every such index.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn store_tile(
    res: &[f32],
    ocw: usize,
    y: *mut f32,
    plane: usize,
    ow: usize,
    rows: usize,
    cols: usize,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    relu: bool,
    accumulate: bool,
) {
    for a in 0..rows {
        for o in 0..ocw {
            let b0 = bias.map_or(0.0, |b| b[o]);
            let off = o * plane + a * ow;
            for b in 0..cols {
                let mut v = res[(a * 4 + b) * ocw + o] + b0;
                if let Some(r) = residual {
                    v += r[off + b];
                }
                if accumulate {
                    // SAFETY: in bounds by the caller's contract.
                    v += unsafe { *y.add(off + b) };
                }
                if relu {
                    v = v.max(0.0);
                }
                // SAFETY: in bounds by the caller's contract.
                unsafe { *y.add(off + b) = v };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The float32 panel product on each instruction set this CPU has: the AVX2 and AVX-512
    /// micro-kernels give exactly the sequential FMA chain over the channels (so each
    /// other's bits), across the AVX2 kernel's 64-channel passes and its 1–3 tile groups;
    /// `gemm` (other CPUs) agrees within rounding.
    #[test]
    fn panel_product_is_the_channel_by_channel_fma_chain() {
        let val = |i: usize, s: usize| ((i * 7919 + s * 104729) % 2001) as f32 / 1000.0 - 1.0;
        let top = kernels::active_isa();
        for (ic, nb) in [(1usize, 1usize), (7, 2), (63, 16), (64, 5), (65, 4), (130, 17), (200, 49), (33, 3)] {
            let u: Vec<f32> = (0..ic * PANEL).map(|i| val(i, 1)).collect();
            let v: Vec<f32> = (0..ic * nb).map(|i| val(i, 2)).collect();
            let ms = PANEL + 8;
            for isa in [kernels::Isa::Portable, kernels::Isa::Avx2, kernels::Isa::Avx512] {
                if isa > top {
                    continue;
                }
                for next in [None, Some(&u[..])] {
                    let mut m = vec![f32::NAN; (nb - 1) * ms + PANEL];
                    panel_product(isa, ic, &u, next, &v, nb, &mut m, ms);
                    for t in 0..nb {
                        for j in 0..PANEL {
                            let chain = (0..ic).fold(0f32, |a, c| v[c * nb + t].mul_add(u[c * PANEL + j], a));
                            let got = m[t * ms + j];
                            if isa == kernels::Isa::Portable {
                                assert!((got - chain).abs() <= 1e-5 * (1.0 + chain.abs()), "{isa:?} ic {ic} nb {nb}");
                            } else {
                                assert_eq!(got.to_bits(), chain.to_bits(), "{isa:?} ic {ic} nb {nb} tile {t} ch {j}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The bf16 panel product against the sum, in f64, of the bfloat16 values it multiplies:
    /// odd channel counts (a zero channel pads the last pair), 1 to 30 tiles (one to three
    /// micro-kernel calls), with and without a next panel to prefetch. On CPUs without
    /// AVX-512 BF16 the kernel is never switched on; F(4×4) kernels never are.
    #[test]
    fn bf16_panel_product_sums_the_rounded_products() {
        use crate::plan::direct::bf16::{bf16_to_f32, round_bf16, supported};
        // F(2×2) kernels switch to bf16 where the CPU can; F(4×4) ones never.
        let (mut f2, mut f4) = (Winograd::deferred(16, 16, 1, 2), Winograd::with_channels(16, 16));
        f2.use_bf16();
        f4.use_bf16();
        assert_eq!((f2.runs_bf16(), f4.runs_bf16()), (supported(), false));
        if !supported() {
            return;
        }
        let val = |i: usize, s: usize| ((i * 7919 + s * 104729) % 2001) as f32 / 1000.0 - 1.0;
        for (ic, nb) in [(1usize, 1usize), (7, 14), (16, 15), (33, 30), (64, 3)] {
            let pairs = ic.div_ceil(2);
            let ld = nb.next_multiple_of(16);
            let u: Vec<f32> = (0..ic * PANEL).map(|i| val(i, 1)).collect();
            let v: Vec<f32> = (0..ic * nb).map(|i| val(i, 2)).collect();
            let mut u16 = vec![0u32; pairs * PANEL];
            for c in 0..ic {
                for j in 0..PANEL {
                    u16[c / 2 * PANEL + j] |= u32::from(round_bf16(u[c * PANEL + j])) << (16 * (c % 2));
                }
            }
            let mut v16 = vec![0u32; pairs * ld + 16];
            let skip = v16.as_ptr().align_offset(64);
            // SAFETY: `supported()`; `v` is `ic` rows of `nb` floats; the slice is aligned.
            unsafe { crate::plan::direct::bf16::pack_rows(v.as_ptr(), nb, ic, nb, ld, &mut v16[skip..]) };
            for next in [None, Some(&u16[..])] {
                let ms = PANEL + 8;
                let mut m = vec![f32::NAN; (nb - 1) * ms + PANEL];
                panel_product_bf16(pairs, &u16, next, &v16[skip..], ld, nb, &mut m, ms);
                for t in 0..nb {
                    for j in 0..PANEL {
                        let want: f64 = (0..ic)
                            .map(|c| {
                                let r = |x: f32| f64::from(bf16_to_f32(round_bf16(x)));
                                r(u[c * PANEL + j]) * r(v[c * nb + t])
                            })
                            .sum();
                        let got = f64::from(m[t * ms + j]);
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "ic {ic} nb {nb} tile {t} ch {j}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// A call that shares its input transforms while its thread's `SHARED_V` is held (an
    /// enclosing call on the same worker) uses a buffer of its own: the same bits as one
    /// thread, and the held buffer untouched.
    #[test]
    fn a_shared_transform_with_the_thread_buffer_held_uses_its_own() {
        use crate::ops::padding::Window;
        let (ic, oc, hw) = (64usize, 96usize, 9usize);
        let x: Vec<f32> = (0..ic * hw * hw).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let w: Vec<f32> = (0..oc * ic * 9).map(|i| ((i * 53 % 97) as f32 - 48.0) / 480.0).collect();
        let window = Window { pads: Some(vec![1; 4]), ..Window::default() };
        let g = crate::ops::conv::conv_geometry(&window, 1, &[1, ic, hw, hw], &[oc, ic, 3, 3], None).unwrap();
        let wg = Winograd::with_tile(&w, oc, ic, 1, 4);
        let run = |threads: usize, hold: bool| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut y = vec![0f32; oc * hw * hw];
            pool.install(|| {
                SHARED_V.with(|cell| {
                    let held = hold.then(|| {
                        let mut b = cell.borrow_mut();
                        b.clear();
                        b.resize(8, 7.0);
                        b
                    });
                    wg.run(&g, &x, None, None, false, false, &mut y);
                    if let Some(b) = held {
                        assert_eq!(*b, [7.0; 8], "the held buffer is left alone");
                    }
                })
            });
            y
        };
        let one = run(1, false);
        assert_eq!(run(2, false), one);
        assert_eq!(run(2, true), one);
    }

    /// The gathered input transform gives the row-loaded one's bits, tile for tile, at the
    /// plane's padded borders too.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn gathered_input_tiles_equal_row_loaded_ones() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let (h, w) = (13usize, 11usize);
        let x: Vec<f32> = (0..h * w).map(|i| ((i * 7919) % 211) as f32 / 37.0 - 2.5).collect();
        for (iy0, ix0, nt) in [(-1isize, -1isize, 3usize), (3, -1, 3), (7, 3, 2), (11, -2, 4), (-3, 5, 1)] {
            let (mut rows, mut gathered) = (vec![0.0f32; 36 * 16], vec![0.0f32; 36 * 16]);
            let mut corners = ([0i32; 16], [0i32; 16], [0i32; 16]);
            for k in 0..nt {
                corners.1[k] = iy0 as i32;
                corners.2[k] = (ix0 + 4 * k as isize) as i32;
            }
            // SAFETY: AVX-512F checked; 36 points × 16 lanes of room; corners inside `x`'s
            // reach (reads outside the plane are masked).
            unsafe {
                avx512::input_tiles16(&x, h, w, iy0, ix0, nt, rows.as_mut_ptr(), 16);
                avx512::gathered_tiles16(
                    x.as_ptr(),
                    (&corners.0, &corners.1, &corners.2),
                    (h, w),
                    nt,
                    gathered.as_mut_ptr(),
                    16,
                );
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&rows), bits(&gathered), "tiles at ({iy0}, {ix0}), {nt} of them");
            assert!(rows.iter().any(|&v| v != 0.0), "non-trivial points");
        }
    }

    /// The float bits of `v`.
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    /// Runs an input transform and its portable copy (`points` points, `lanes` tiles of
    /// room, called as `(x, h, w, iy0, ix0, nt, v)`) on tiles inside the plane and over
    /// its padding on every side, 1 to `lanes` of them per call, and asserts the same bits.
    #[cfg(target_arch = "x86_64")]
    fn inputs_agree(
        points: usize,
        lanes: usize,
        sizes: &[(usize, usize)],
        want: impl Fn(&[f32], usize, usize, isize, isize, usize, &mut [f32]),
        got: impl Fn(&[f32], usize, usize, isize, isize, usize, &mut [f32]),
    ) {
        for &(h, w) in sizes {
            let x: Vec<f32> = (0..h * w).map(|i| ((i * 7919) % 211) as f32 / 37.0 - 2.5).collect();
            for (iy0, ix0) in [
                (-1isize, -1isize),
                (3, -1),
                (5, -1),
                (h as isize / 2, 3),
                (h as isize - 3, -2),
                (-3, 5),
                (2, w as isize - 9),
            ] {
                for nt in 1..=lanes {
                    let (mut a, mut b) = (vec![0.0f32; points * lanes], vec![0.0f32; points * lanes]);
                    want(&x, h, w, iy0, ix0, nt, &mut a);
                    got(&x, h, w, iy0, ix0, nt, &mut b);
                    assert_eq!(bits(&b), bits(&a), "{h}×{w}: {nt} tiles at ({iy0}, {ix0})");
                    assert!(a.iter().any(|&v| v != 0.0), "non-trivial points");
                }
            }
        }
    }

    /// An output transform + epilogue, called as `(m, ms, nch, y, (plane, ow, rows, cols),
    /// bias, residual, relu, accumulate)`.
    type OutputTile<'a> = &'a dyn Fn(
        &[f32],
        usize,
        usize,
        &mut [f32],
        (usize, usize, usize, usize),
        Option<&[f32]>,
        Option<&[f32]>,
        bool,
        bool,
    );

    /// Runs an output transform and its portable copy (`points` points) over 1 to 8
    /// channels, the tile shapes `shapes` and every epilogue option, and asserts the same
    /// bits.
    #[cfg(target_arch = "x86_64")]
    fn outputs_agree(points: usize, shapes: &[(usize, usize)], ow: usize, want: OutputTile, got: OutputTile) {
        let (ms, plane) = (8usize, 40usize);
        let m: Vec<f32> = (0..points * ms).map(|i| ((i * 7919) % 211) as f32 / 37.0 - 2.5).collect();
        let bias: Vec<f32> = (0..8).map(|i| i as f32 * 0.37 - 1.1).collect();
        let res: Vec<f32> = (0..8 * plane).map(|i| ((i * 31) % 17) as f32 / 9.0 - 0.9).collect();
        let start: Vec<f32> = (0..8 * plane).map(|i| ((i * 13) % 11) as f32 / 7.0 - 0.7).collect();
        for nch in 1..=8usize {
            for &(rows, cols) in shapes {
                for opts in 0..16u32 {
                    let (with_bias, with_res, relu, acc) = (opts & 1 != 0, opts & 2 != 0, opts & 4 != 0, opts & 8 != 0);
                    let (b, r) = (with_bias.then_some(&bias[..]), with_res.then_some(&res[..]));
                    let (mut a, mut g) = (start.clone(), start.clone());
                    want(&m, ms, nch, &mut a, (plane, ow, rows, cols), b, r, relu, acc);
                    got(&m, ms, nch, &mut g, (plane, ow, rows, cols), b, r, relu, acc);
                    assert_eq!(bits(&g), bits(&a), "{nch} channels, {rows}×{cols}, options {opts:04b}");
                }
            }
        }
    }

    /// The AVX2 F(4×4) input transform against the portable one, bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_input_tiles_equal_the_portable_ones() {
        if !crate::plan::kernels::avx2_fma() {
            return;
        }
        inputs_agree(
            36,
            8,
            &[(13, 11), (30, 37)],
            |x, h, w, iy0, ix0, nt, v| input_tiles(x, h, w, iy0, ix0, nt, &mut vec![0.0; 12 * 4 * (nt + 1)], v, 8),
            // SAFETY: AVX2 checked; 36 points × 8 lanes of room.
            |x, h, w, iy0, ix0, nt, v| unsafe { avx2::input_tiles8(x, h, w, iy0, ix0, nt, v.as_mut_ptr(), 8) },
        );
    }

    /// The AVX2 F(4×4) input transform of two 4-tile rows in one vector (from two planes, at
    /// the borders and inside) against two portable calls, bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_two_row_input_tiles_equal_the_portable_ones() {
        if !crate::plan::kernels::avx2_fma() {
            return;
        }
        for (h, w) in [(14usize, 14usize), (13, 11)] {
            let x: Vec<f32> = (0..h * w).map(|i| ((i * 7919) % 211) as f32 / 37.0 - 2.5).collect();
            let x2: Vec<f32> = (0..h * w).map(|i| ((i * 104729) % 197) as f32 / 29.0 - 3.1).collect();
            let last = h as isize - 3;
            for ((iy0, ix0), (iy1, ix1)) in
                [((-1isize, -1isize), (3isize, -1isize)), ((7, 3), (last, -1)), ((last, -1), (-1, 3))]
            {
                for n1 in 1..=4usize {
                    let (mut want, mut got) = (vec![0.0f32; 36 * 8], vec![0.0f32; 36 * 8]);
                    let mut strip = vec![0.0f32; 12 * 4 * 5];
                    input_tiles(&x, h, w, iy0, ix0, 4, &mut strip, &mut want, 8);
                    input_tiles(&x2, h, w, iy1, ix1, n1, &mut strip, &mut want[4..], 8);
                    // SAFETY: AVX2 checked; 36 points × 8 lanes of room.
                    unsafe { avx2::input_tiles4x2((h, w), (&x, iy0, ix0), (&x2, iy1, ix1), n1, got.as_mut_ptr(), 8) };
                    assert_eq!(bits(&got), bits(&want), "{h}×{w}: ({iy0}, {ix0}) and {n1} at ({iy1}, {ix1})");
                }
            }
        }
    }

    /// The AVX2 F(2×2) input transform against the portable one, bit for bit (a 7×7
    /// plane's tile rows among the cases, 4-tile vectors and a partial one).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_f2_input_tiles_equal_the_portable_ones() {
        if !crate::plan::kernels::avx2_fma() {
            return;
        }
        inputs_agree(
            16,
            9,
            &[(7, 7), (13, 11), (30, 37)],
            |x, h, w, iy0, ix0, nt, v| input_tiles_f2(x, h, w, iy0, ix0, nt, v, 9),
            // SAFETY: AVX2 checked; 16 points × 9 lanes of room.
            |x, h, w, iy0, ix0, nt, v| unsafe { avx2::input_tiles4_f2(x, h, w, iy0, ix0, nt, v.as_mut_ptr(), 9) },
        );
    }

    /// The AVX2 F(4×4) output transform and epilogue against the portable `output_tile` +
    /// `store_tile`, bit for bit: 1 to 8 channels, partial tiles, every epilogue option.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_output_tiles_equal_the_portable_ones() {
        if !crate::plan::kernels::avx2_fma() {
            return;
        }
        outputs_agree(
            36,
            &[(4, 4), (3, 2), (1, 4), (4, 1)],
            6,
            &|m, ms, nch, y, shape, b, r, relu, acc| {
                let mut tmp = vec![0.0f32; 40 * nch];
                output_tile(m, ms, nch, &mut tmp);
                let (plane, ow, rows, cols) = shape;
                // SAFETY: every pixel index lies in `y` and `r` (channels < 8 of `plane`
                // floats, rows < 4 of `ow`).
                unsafe { store_tile(&tmp[..16 * nch], nch, y.as_mut_ptr(), plane, ow, rows, cols, b, r, relu, acc) };
            },
            // SAFETY: AVX2 checked; pixels as above, points of 8 lanes in `m`.
            &|m, ms, nch, y, shape, b, r, relu, acc| unsafe {
                avx2::output_tile8(
                    m.as_ptr(),
                    ms,
                    nch,
                    y.as_mut_ptr(),
                    shape,
                    b.map(<[f32]>::as_ptr),
                    r.map(<[f32]>::as_ptr),
                    relu,
                    acc,
                )
            },
        );
    }

    /// The AVX2 F(2×2) output transform and epilogue against the portable
    /// `output_store_f2`, bit for bit: 1 to 8 channels, partial tiles, every epilogue option.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_f2_output_tiles_equal_the_portable_ones() {
        if !crate::plan::kernels::avx2_fma() {
            return;
        }
        outputs_agree(
            16,
            &[(2, 2), (2, 1), (1, 2), (1, 1)],
            7,
            // SAFETY: every pixel index lies in `y` and `r` (channels < 8 of `plane` floats,
            // rows < 2 of `ow`).
            &|m, ms, nch, y, shape, b, r, relu, acc| unsafe {
                output_store_f2(m, ms, nch, y.as_mut_ptr(), shape, b, r, relu, acc)
            },
            // SAFETY: AVX2 checked; pixels as above, points of 8 lanes in `m`.
            &|m, ms, nch, y, shape, b, r, relu, acc| unsafe {
                avx2::output_tile8_f2(
                    m.as_ptr(),
                    ms,
                    nch,
                    y.as_mut_ptr(),
                    shape,
                    b.map(<[f32]>::as_ptr),
                    r.map(<[f32]>::as_ptr),
                    relu,
                    acc,
                )
            },
        );
    }

    #[test]
    fn segments_cut_blocks_at_tile_rows_and_images() {
        // 2 images of 2×3 tiles, block of 5 from tile 4: (img 0, row 1, tx 1..3), (img 1, row 0).
        let s: Vec<_> = segments(4, 5, 2, 3).map(|s| (s.img, s.ty, s.tx0, s.len, s.col)).collect();
        assert_eq!(s, vec![(0, 1, 1, 2, 0), (1, 0, 0, 3, 2)]);
    }

    #[test]
    fn a_deferred_kernel_makes_the_same_u_once_when_prepared() {
        let (oc, ic) = (40, 24);
        let w: Vec<f32> = (0..oc * ic * 9).map(|i| ((i * 7919) % 23) as f32 / 23.0 - 0.5).collect();
        for tile in [2, 4] {
            let eager = Winograd::with_tile(&w, oc, ic, 16, tile);
            let deferred = Winograd::deferred(oc, ic, 16, tile);
            assert!(eager.transformed() && !deferred.transformed());
            deferred.prepare(|| w.clone());
            assert!(deferred.transformed());
            deferred.prepare(|| panic!("U is made once"));
            let bits = |u: &[f32]| u.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(deferred.u()), bits(eager.u()), "F({tile}×{tile}): serial and parallel transforms agree");
        }
    }

    #[test]
    fn filter_transform_of_a_delta_is_g_column() {
        // g = δ at (0,0): U = G[:,0] G[:,0]ᵀ.
        let mut w = vec![0.0f32; 9];
        w[0] = 1.0;
        let wg = Winograd::new(&w, 1, 1, 1);
        for (i, gi) in G.iter().enumerate() {
            for (j, gj) in G.iter().enumerate() {
                let want = (gi[0] * gj[0]) as f32;
                let got = wg.u()[(i * 6 + j) * PANEL];
                assert!((got - want).abs() < 1e-7, "({i},{j}): {got} vs {want}");
            }
        }
    }
}
