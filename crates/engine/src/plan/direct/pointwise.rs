//! The wide-plane kernel of 1×1 convs (any stride, no pads): a GEMM `Y[M, P] = W[M, C] ·
//! X[C, P]` over the output positions, with bias, residual and ReLU applied to the
//! accumulators in registers.
//!
//! One *tile* is (image, panel of output positions, chunk of the filter blocks). Its inputs
//! are strips of [`STRIP`] positions × C channels: at stride 1 a full strip is read in place
//! (channel `ch`'s row is 48 consecutive floats of input plane `ch`; the micro-kernel fetches
//! the rows [`avx512::ROW_AHEAD`] channels ahead into L1), while the panel's calls fetch the
//! next panel's rows into L2 a line per channel step; a last partial strip,
//! and every strip of a strided call, is packed as `[C][STRIP]` (zeros past the end, strided
//! positions gathered) into a per-thread buffer. For each block of [`MR`] filters (its `8·C`
//! packed filters stay in L1) and each strip it runs an `8 × 48` micro-kernel over all of
//! `C` — 24 zmm accumulators, 3 vector loads and 8 broadcasts per channel — and stores the
//! strip's outputs with the epilogue straight from the accumulators. `gemm` wrote each
//! output tile and a second pass read it back (with the residual) for the epilogue; the
//! position kernel of [`DirectConv::run`] stores its accumulators per 32-channel chunk.
//!
//! Packing every stride-1 strip (the kernel's first form) copied the whole input once per
//! tile while the FMA units waited: 9 % of a 64 ← 256 conv at 56×56 under `perf`. Read in
//! place with the next panel prefetched, Keras ResNet-50 at batch 4 on one thread
//! (`resnet bench --profile`, twice each): 64 ← 256 at 56×56 85–88 → 102–105 GFLOP/s,
//! 128 ← 512 at 28×28 98–101 → 108–109, the other shapes within noise.

use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
use super::avx2;
use super::{bf16, DirectConv, KC_CHANNELS, MR};
use crate::ops::conv::ConvGeometry;
use crate::ops::padding::Axis;
use crate::plan::kernels::{self, Isa, OutPtr, Residual};

/// Output positions per micro-kernel call: three 16-float vectors.
pub(super) const STRIP: usize = 48;

/// Budget of one tile's input panel, in floats (384 KiB, within a Zen 4 core's 1 MiB L2
/// beside the filters): 1536 positions of 64 channels, 192 of 512. Read in place or packed,
/// the panel's rows stay in L2 while every filter block passes over them.
pub(super) const PANEL_FLOATS: usize = 96 * 1024;

/// Largest image plane (its strips × channels, in floats) [`wide_tiling`] may take as one
/// panel on several threads, over [`PANEL_FLOATS`]: half this core's L2 ([`kernels::l2_bytes`]:
/// 1 MiB of 2 on an Intel Xeon (Emerald Rapids), 512 KiB of 1 on AMD Zen 4). Such a panel
/// has no next panel to fetch beside it; cut into panels of the budget instead, every
/// panel's task reads every filter, and ResNet-50's 14×14 filters are as large as the
/// plane or larger, where a filter split has each worker read half of them once. Exact,
/// batch 1, two threads on an Emerald Rapids Xeon, `resnet bench --profile`, old and new
/// binaries alternated twice (resnet50-v2): the five 256 ← 1024 steps at 14×14 (3 panels →
/// one, the filters split) 2.10–2.20 → 1.93–1.96 ms, the strided 1024 ← 512 (2 panels →
/// one) 0.91–0.94 → 0.79, 512 ← 1024 0.75–0.79 → 0.72, 512 ← 128 at 28×28 1.58–1.60 →
/// 1.54–1.55; whole runs within the host's noise (`scripts/ab_bench.py`, 6 rounds: Keras
/// ResNet-50 0.988, resnet50-v2 1.005). On one thread such tilings measured equal, so one
/// thread keeps the budget. An L2 reported over 4 MiB (no x86 core has one: a misreported
/// cache level) counts as 4 MiB.
fn whole_panel_floats() -> usize {
    kernels::l2_bytes().min(4 << 20) / 2 / std::mem::size_of::<f32>()
}

thread_local! {
    /// Per-thread packed strips (strided calls, partial strips); grows once (see
    /// [`DirectConv::wide_tile`]).
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// [`wide_tiling`]'s results by shape ([`kernels::memoized`]).
    static TILINGS: kernels::Memo<7, (usize, usize)> = const { RefCell::new(Vec::new()) };
}

impl DirectConv {
    /// Whether the wide-plane kernel takes this call: a 1×1 2-D conv of this pointwise
    /// kernel's shape, any stride, no pads, on AVX-512 (on AVX2 for at least
    /// [`super::AVX2_POINTWISE_MIN_FILTERS`] filters: [`DirectConv::wide_tile_avx2`]).
    pub(crate) fn wide_applies(&self, g: &ConvGeometry) -> bool {
        let [ad, ah, aw] = &g.axes;
        self.pointwise
            && *ad == Axis::UNIT
            && g.group == 1
            && g.m == self.m
            && g.c == self.c
            && [ah, aw].iter().all(|a| {
                a.kernel == 1
                    && a.stride >= 1
                    && a.pad_begin + a.pad_end == 0
                    && a.input >= 1
                    && a.output == (a.input - 1) / a.stride + 1
            })
            && match kernels::active_isa() {
                Isa::Avx512 => true,
                Isa::Avx2 => self.m >= super::AVX2_POINTWISE_MIN_FILTERS,
                _ => false,
            }
    }

    /// `y = relu?(conv(x) + bias + residual)` for a call [`DirectConv::wide_applies`] to.
    pub(crate) fn run_wide(
        &self,
        g: &ConvGeometry,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        y: &mut [f32],
    ) {
        let [_, ah, aw] = &g.axes;
        let plane = ah.output * aw.output;
        assert_eq!(y.len(), g.n * self.m * plane, "output length");
        assert_eq!(x.len(), g.n * self.c * ah.input * aw.input, "input length");
        assert!(bias.is_none_or(|b| b.len() >= self.m), "bias length");
        assert!(residual.tensor().is_none_or(|r| r.len() == y.len()), "residual length");
        if plane * g.n == 0 {
            return;
        }
        let strips = plane.div_ceil(STRIP);
        let blocks = self.m.div_ceil(MR);
        let threads = kernels::threads();
        let avx2 = kernels::active_isa() == Isa::Avx2;
        let min_strips = if avx2 { 2 } else { 1 };
        // Measured on AVX-512 only: the AVX2 tiles keep to the budget.
        let whole = if avx2 { 0 } else { whole_panel_floats() };
        let key = [g.n, plane, self.c, blocks, threads, min_strips, whole];
        let (panels, chunk) = TILINGS.with(|c| {
            kernels::memoized(c, key, || wide_tiling(g.n, plane, self.c, blocks, threads, min_strips, whole))
        });
        let split = blocks.div_ceil(chunk);
        let out = OutPtr(y.as_mut_ptr());
        let tasks = g.n * panels * split;
        kernels::for_each_task(tasks, |t| {
            let (mi, pi, img) = (t % split, t / split % panels, t / split / panels);
            let b0 = mi * chunk;
            // Panel `pi`: strips `S·pi/panels ..`, so panels differ by one strip at most.
            let (s0, s1) = (strips * pi / panels, strips * (pi + 1) / panels);
            if avx2 {
                self.wide_tile_avx2(
                    g,
                    img,
                    s0 * STRIP..(s1 * STRIP).min(plane),
                    b0..(b0 + chunk).min(blocks),
                    x,
                    bias,
                    residual,
                    relu,
                    out,
                );
                return;
            }
            // The panel this worker most likely runs next: the next task of its own range
            // (see `team`) — another panel of this image, or none to fetch (this panel again
            // with other filters, another image, the range's end).
            let next = kernels::next_own_task(t, tasks, threads)
                .filter(|&a| a / split / panels == img && a / split % panels != pi)
                .map(|a| strips * (a / split % panels) / panels * STRIP);
            self.wide_tile(
                g,
                img,
                s0 * STRIP..(s1 * STRIP).min(plane),
                next,
                b0..(b0 + chunk).min(blocks),
                x,
                bias,
                residual,
                relu,
                out,
            );
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn wide_tile(
        &self,
        g: &ConvGeometry,
        img: usize,
        positions: std::ops::Range<usize>,
        next_panel: Option<usize>,
        blocks: std::ops::Range<usize>,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        out: OutPtr,
    ) {
        let [_, ah, aw] = &g.axes;
        let (c, m) = (self.c, self.m);
        let plane = ah.output * aw.output;
        let in_plane = ah.input * aw.input;
        let x_img = &x[img * c * in_plane..][..c * in_plane];
        let pw = positions.end - positions.start;
        let strips = pw.div_ceil(STRIP);
        if strips == 0 {
            // `run_wide` gives every tile at least one strip; an empty one has nothing to do.
            return;
        }
        PANEL.with(|panel| {
            let mut panel = panel.borrow_mut();
            if panel.len() < strips * c * STRIP + 16 {
                // The budget at once (every conv of up to 2048 channels fits), and on several
                // threads the largest whole-plane panel ([`whole_panel_floats`]), so a worker
                // that first meets a bigger panel late does not allocate in a steady-state run.
                let most = if kernels::threads() > 1 { whole_panel_floats().max(PANEL_FLOATS) } else { PANEL_FLOATS };
                panel.resize((strips * c * STRIP).max(most) + 16, 0.0);
            }
            let panel = kernels::align64(&mut panel[..]);
            // Stride 1: full strips are read in place (row `ch` of a strip is `x_img[ch·plane +
            // p0 ..]`), a last partial one is packed (zeros past the plane's end). Strided:
            // every strip is gathered into the panel.
            let in_place = ah.stride == 1 && aw.stride == 1;
            // A last strip of at most NARROW positions (14×14 planes: 196 = 4·48 + 4) runs
            // the filter-vector kernel (`micro_narrow`), read in place at stride 1 too.
            // In bf16 mode every strip runs the bf16 kernel, a partial one packed with zeros
            // past its end: its filters are in L1 then, where the filter-vector kernel read
            // the float32 filters again (1 MB for 1024 ← 256) for a few positions.
            let last = pw - (strips - 1) * STRIP;
            let wide_strips = if last <= NARROW && self.bf16.is_none() { strips - 1 } else { strips };
            for s in 0..strips {
                let p0 = positions.start + s * STRIP;
                let n = STRIP.min(positions.end - p0);
                if !in_place || (n < STRIP && s < wide_strips && self.bf16.is_none()) {
                    pack_strip(&mut panel[s * c * STRIP..][..c * STRIP], x_img, c, in_plane, ah, aw, p0, n, STRIP);
                }
            }
            let all = m.div_ceil(MR);
            // The panel of this image this worker most likely runs next (`next_panel`), read
            // in place too: fetched into L2 a line per channel step while this one computes,
            // spread evenly over the tile's calls.
            let calls = (blocks.end - blocks.start) * wide_strips;
            let next = next_panel.filter(|&p| in_place && p < plane).map(|p| {
                let width = pw.min(plane - p);
                let lpr = width.div_ceil(16) + 1;
                (x_img[p..].as_ptr(), lpr, (c * lpr).div_ceil(calls.max(1)).min(c))
            });
            // Output rows `b·MR ..` of image `img` at strip `s` (`n` positions from `p0`).
            let store_at = |b: usize, s: usize| {
                let p0 = positions.start + s * STRIP;
                let n = STRIP.min(positions.end - p0);
                let off = (img * m + b * MR) * plane + p0;
                let st = Store {
                    y: out.0.wrapping_add(off),
                    res: residual.base(out.0).map(|r| r.wrapping_add(off)),
                    bias: bias.map(|v| v[b * MR..].as_ptr()),
                    rows: MR.min(m - b * MR),
                    plane,
                    relu,
                };
                (st, p0, n)
            };
            if let Some(filters) = self.bf16.as_deref() {
                // bfloat16 products (`Mode::Bf16`): the tile's strips rounded once into
                // this thread's bf16 panel, then every filter block passes over them.
                let pairs = c.div_ceil(2);
                bf16::with_panel(wide_strips * pairs * STRIP, |bpanel| {
                    for s in 0..wide_strips {
                        let p0 = positions.start + s * STRIP;
                        let n = STRIP.min(positions.end - p0);
                        let (src, bs) =
                            if in_place { (&x_img[p0..], in_plane) } else { (&panel[s * c * STRIP..], STRIP) };
                        // SAFETY: `bf16` is set only where the CPU has AVX-512 BF16
                        // (`DirectConv::use_bf16`); the strip's C rows of `n` floats `bs`
                        // apart lie in `src` (in place: `p0 + n ≤ plane = in_plane` at
                        // stride 1; else the packed strip); `pack_rows` reads `n` of each
                        // and zero-fills the rest of the STRIP words.
                        unsafe { bf16::pack_rows(src.as_ptr(), bs, c, n, STRIP, &mut bpanel[s * pairs * STRIP..]) };
                    }
                    for b in blocks.clone() {
                        for s in 0..wide_strips {
                            let (st, _, n) = store_at(b, s);
                            // SAFETY: as the float32 call below, with the strip packed as
                            // `pairs·STRIP` words and `filters` holding every block.
                            unsafe {
                                bf16::micro(n, c, filters.as_ptr(), b, bpanel[s * pairs * STRIP..].as_ptr(), &st)
                            };
                        }
                    }
                });
            } else {
                // The last strip's few positions (`last ≤ NARROW`) for filter blocks `b ..
                // b + group` on the filter-vector kernel, with the epilogue.
                let s = strips - 1;
                let p0 = positions.start + s * STRIP;
                let (nbp, nbs) =
                    if in_place { (x_img[p0..].as_ptr(), in_plane) } else { (panel[s * c * STRIP..].as_ptr(), STRIP) };
                let res = residual.base(out.0);
                let narrow = |b: usize, group: usize| {
                    let mut tile = [[0f32; NARROW_GROUP * MR]; NARROW];
                    // SAFETY: AVX-512F (`wide_applies`); `packed` holds `all ≥ b + group`
                    // blocks of `8·C` filters in K chunks; the strip has C rows of `last ≤
                    // NARROW` readable floats `nbs` apart (in place: positions `p0 .. p0 +
                    // last ≤ plane = in_plane` of each plane of `x_img`; else the packed strip).
                    unsafe { micro_narrow(last, group, c, self.packed.as_ptr(), all, b, nbp, nbs, &mut tile) };
                    for f in 0..group * MR {
                        let row = b * MR + f;
                        if row >= m {
                            break;
                        }
                        let off = (img * m + row) * plane + p0;
                        // The micro-kernels' epilogue (`avx512::store`), value by value: the
                        // same operations in the same order, so the same bits.
                        let bias = bias.map_or(0.0, |v| v[row]);
                        for (p, t) in tile.iter().take(last).enumerate() {
                            // SAFETY: output row `row` of image `img`, positions `p0 + p < p0
                            // + last ≤ plane`: in `y` (and in `res`, checked the same length)
                            // and this tile's only; each residual element is read before its
                            // output is written (they may be the same).
                            unsafe {
                                let mut o = t[f] + bias;
                                if let Some(r) = res {
                                    o += *r.add(off + p);
                                }
                                if relu {
                                    o = if o > 0.0 { o } else { 0.0 };
                                }
                                *out.0.add(off + p) = o;
                            }
                        }
                    }
                };
                let mut call = 0;
                for b in blocks.clone() {
                    for s in 0..wide_strips {
                        let pf = next.map_or(RowFetch::NONE, |(at, lpr, per_call)| {
                            RowFetch::share(at, lpr, in_plane, c, call * per_call, per_call)
                        });
                        call += 1;
                        let (st, p0, n) = store_at(b, s);
                        let (bp, bs) = if in_place && n == STRIP {
                            (x_img[p0..].as_ptr(), in_plane)
                        } else {
                            (panel[s * c * STRIP..].as_ptr(), STRIP)
                        };
                        // SAFETY: AVX-512F (`wide_applies`); `packed` holds `all` blocks of
                        // `8·C` filters in K chunks; the strip has C rows of `n` readable
                        // floats `bs` apart (packed: `C·STRIP` floats in the panel; in place:
                        // full strips, `p0 + STRIP ≤ plane = in_plane` at stride 1, in
                        // `x_img`); output rows `b·MR .. b·MR + rows` of image `img`,
                        // positions `p0 .. p0 + n` lie in `y` (and `residual`, checked the
                        // same length, or `y` itself, each element read before it is
                        // written) and belong to this tile only; `bias` holds at least M
                        // values.
                        // A block's first call also fetches the next block's filters into L2
                        // (`next_block`): in a whole model they come from memory, in K
                        // chunks 1 KiB long and `32·M` floats apart, which the hardware
                        // prefetcher does not follow far enough ahead.
                        unsafe {
                            micro_wide(n, c, self.packed.as_ptr(), all, b, bp, bs, &st, pf, s == 0 && b + 1 < all)
                        };
                    }
                    if wide_strips == strips {
                        continue;
                    }
                    // The narrow positions of a group of NARROW_GROUP blocks right after the
                    // group's last block, while their filters are in cache (after the whole
                    // tile, 1024 ← 256 at 14×14 read its 1 MB of filters again for 4
                    // positions); past the last whole group, block by block.
                    let g0 = blocks.start + (b - blocks.start) / NARROW_GROUP * NARROW_GROUP;
                    if blocks.end - g0 < NARROW_GROUP {
                        narrow(b, 1);
                    } else if b + 1 == g0 + NARROW_GROUP {
                        narrow(g0, NARROW_GROUP);
                    }
                }
            }
        });
    }
}

/// The strips of an AVX2 tile of `pw` positions: `(full, tail, narrow)`, `full` strips of 24
/// positions, then up to two of `8·tail[i]` (vectors, 0: none), then `narrow` (0–2) last
/// positions for [`avx2::pointwise_tail`] (packed as a strip of one vector). A remainder of
/// 9–23 positions is one strip of 2 or 3 vectors; one of 1 or 2 after a full strip is
/// `narrow` (7×7: 24 + 24 + 1); one of 3–8 turns the last full strip into two of 2 vectors
/// (14×14: 7 · 24 + 16 + 16), where a strip of 8 ran at half speed (4 accumulators cannot
/// hide the FMA latency).
fn avx2_strips(pw: usize) -> (usize, [usize; 2], usize) {
    let (full, r) = (pw / 24, pw % 24);
    match r {
        0 => (full, [0, 0], 0),
        17.. => (full, [3, 0], 0),
        9.. => (full, [2, 0], 0),
        1..=2 if full > 0 => (full, [0, 0], r),
        _ if full > 0 => (full - 1, [2, 2], 0),
        _ => (0, [1, 0], 0),
    }
}

impl DirectConv {
    /// [`DirectConv::wide_tile`] on AVX2 (no AVX-512): the tile's positions packed as
    /// strips of 8–24 ([`avx2_strips`]; each `[C][8·V]`, all of them first, channel by
    /// channel), then for each strip every filter block of the tile over it in blocks of 4
    /// filters × the strip ([`avx2::pointwise_block`]), in passes of [`avx2::PW_PASS`]
    /// channels whose strip rows stay in L1. The filters stream from L2 (or L3), 4 floats
    /// per channel step where the strip is 24. Packing each strip just before its calls,
    /// with the next one's input rows prefetched, measured slower (single-conv models,
    /// Zen 3: 1.01–1.13× the time at 14×14 and 7×7); prefetching the next panel (as
    /// `wide_tile` does) gained nothing, so this path takes no `next_panel`.
    #[allow(clippy::too_many_arguments)]
    fn wide_tile_avx2(
        &self,
        g: &ConvGeometry,
        img: usize,
        positions: std::ops::Range<usize>,
        blocks: std::ops::Range<usize>,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        out: OutPtr,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            let [_, ah, aw] = &g.axes;
            let (c, m) = (self.c, self.m);
            let plane = ah.output * aw.output;
            let in_plane = ah.input * aw.input;
            let x_img = &x[img * c * in_plane..][..c * in_plane];
            let pw = positions.end - positions.start;
            if pw == 0 || blocks.is_empty() {
                return;
            }
            let (full, tail, narrow) = avx2_strips(pw);
            let covered = 24 * full + 8 * (tail[0] + tail[1]) + if narrow > 0 { 8 } else { 0 };
            // Strip `s`: (first position in the tile, vectors); its packed rows start at
            // `c·first` in the panel. The `narrow` positions are the last, one vector.
            let strip = |s: usize| match s {
                _ if s < full => (24 * s, 3),
                _ if narrow > 0 => (24 * full, 1),
                _ if s == full => (24 * full, tail[0]),
                _ => (24 * full + 8 * tail[0], tail[1]),
            };
            // The strips the 4 × 8V kernel computes, and all that are packed.
            let strips = full + tail.iter().filter(|&&t| t > 0).count();
            let packed_strips = strips + usize::from(narrow > 0);
            let pass_len = avx2::PW_PASS;
            let passes = c.div_ceil(pass_len);
            let partial = if passes > 1 { blocks.len() * MR * 24 } else { 0 };
            // The narrow positions' sums, per block: `narrow` vectors of MR filters.
            let tail_sums = blocks.len() * MR * 2;
            let all = m.div_ceil(MR);
            let res = residual.base(out.0);
            PANEL.with(|panel| {
                let mut panel = panel.borrow_mut();
                let need = c * covered + partial + tail_sums + 16;
                if panel.len() < need {
                    // Twice the budget at once (every ResNet tile fits: panels of the budget
                    // rounded up to strips of 24, and the partial sums of 2048 filters), so
                    // a worker that first meets a bigger tile late does not allocate in a
                    // steady-state run.
                    panel.resize(need.max(2 * PANEL_FLOATS + 16), 0.0);
                }
                let panel = kernels::align64(&mut panel[..]);
                let (xs, acc) = panel.split_at_mut(c * covered);
                let (acc, tail_acc) = acc.split_at_mut(partial);
                if ah.stride == 1 && aw.stride == 1 {
                    // Channel by channel (each input row read front to back), full strips as
                    // fixed-size copies: `pack_strip`'s `memmove` call per 24-float row took
                    // 17 % of a 64 ← 256 conv at 56×56 (`perf`).
                    for ch in 0..c {
                        let src = &x_img[ch * in_plane + positions.start..][..pw];
                        for s in 0..packed_strips {
                            let (o, v) = strip(s);
                            let dst = &mut xs[c * o + ch * 8 * v..][..8 * v];
                            let n = (8 * v).min(pw - o);
                            match (v, n) {
                                (3, 24) => copy_n::<24>(dst, &src[o..]),
                                (2, 16) => copy_n::<16>(dst, &src[o..]),
                                (1, 8) => copy_n::<8>(dst, &src[o..]),
                                _ => {
                                    dst[..n].copy_from_slice(&src[o..o + n]);
                                    dst[n..].fill(0.0);
                                }
                            }
                        }
                    }
                } else {
                    for s in 0..packed_strips {
                        let (o, v) = strip(s);
                        let n = (8 * v).min(pw - o);
                        let dst = &mut xs[c * o..][..c * 8 * v];
                        pack_strip(dst, x_img, c, in_plane, ah, aw, positions.start + o, n, 8 * v);
                    }
                }
                for s in 0..strips {
                    let (o, v) = strip(s);
                    let (n, p0) = ((8 * v).min(pw - o), positions.start + o);
                    for pass in 0..passes {
                        let k = pass * pass_len..((pass + 1) * pass_len).min(c);
                        let xp = xs[c * o + k.start * 8 * v..].as_ptr();
                        for b in blocks.clone() {
                            let off = (img * m + b * MR) * plane + p0;
                            let st = Store {
                                y: out.0.wrapping_add(off),
                                res: res.map(|r| r.wrapping_add(off)),
                                bias: bias.map(|v| v[b * MR..].as_ptr()),
                                rows: MR.min(m - b * MR),
                                plane,
                                relu,
                            };
                            for r0 in [0, MR / 2] {
                                if r0 >= st.rows {
                                    break;
                                }
                                // This block's partial sums (unused, and past `acc`, with
                                // one pass).
                                let at = acc.as_mut_ptr().wrapping_add(((b - blocks.start) * MR + r0) * 24);
                                // SAFETY: AVX2 + FMA (`wide_applies`; `run_wide` takes this
                                // path on AVX2 only); `packed` holds `all` blocks of `8·C`
                                // filters in K chunks; the strip has `k.len()` packed rows
                                // of `8·v` floats from `xp`; `partial` (used only with
                                // several passes) is this block's 8 × 24 floats of `acc`;
                                // output rows `b·MR .. + rows`, positions `p0 .. p0 + n` of
                                // image `img` lie in `y` (and in `residual`, checked the
                                // same length, or `y` itself, each element read before it
                                // is written) and belong to this tile only; `bias` holds M.
                                unsafe {
                                    let packed = self.packed.as_ptr();
                                    let k = k.clone();
                                    match v {
                                        3 => avx2::pointwise_block::<3>(packed, all, c, b, r0, xp, k, (at, 24), n, &st),
                                        2 => avx2::pointwise_block::<2>(packed, all, c, b, r0, xp, k, (at, 24), n, &st),
                                        _ => avx2::pointwise_block::<1>(packed, all, c, b, r0, xp, k, (at, 24), n, &st),
                                    }
                                }
                            }
                            // After the last strip's calls of every 4 blocks, the narrow
                            // positions of those blocks, their filters still in L1.
                            let g0 = b - (b - blocks.start) % 4;
                            if narrow > 0 && s + 1 == strips && (b + 1 - g0 == 4 || b + 1 == blocks.end) {
                                let o = 24 * full;
                                let tp = tail_acc[(g0 - blocks.start) * narrow * MR..].as_mut_ptr();
                                let xt = xs[c * o + k.start * 8..].as_ptr();
                                let packed = self.packed.as_ptr();
                                // SAFETY: AVX2 + FMA as above; blocks `g0 ..= b` (< `all`) of
                                // `packed`; the narrow strip's `k.len()` rows of 8 floats
                                // from `xt`; `tail_sums` holds 2 vectors per block of the tile.
                                unsafe {
                                    let k = k.clone();
                                    match (b + 1 - g0, narrow) {
                                        (4, 1) => avx2::pointwise_tail::<4, 1>(packed, all, c, g0, xt, k, tp),
                                        (4, _) => avx2::pointwise_tail::<4, 2>(packed, all, c, g0, xt, k, tp),
                                        (3, 1) => avx2::pointwise_tail::<3, 1>(packed, all, c, g0, xt, k, tp),
                                        (3, _) => avx2::pointwise_tail::<3, 2>(packed, all, c, g0, xt, k, tp),
                                        (2, 1) => avx2::pointwise_tail::<2, 1>(packed, all, c, g0, xt, k, tp),
                                        (2, _) => avx2::pointwise_tail::<2, 2>(packed, all, c, g0, xt, k, tp),
                                        (_, 1) => avx2::pointwise_tail::<1, 1>(packed, all, c, g0, xt, k, tp),
                                        _ => avx2::pointwise_tail::<1, 2>(packed, all, c, g0, xt, k, tp),
                                    }
                                }
                                if k.end == c {
                                    self.tail_epilogue(
                                        &tail_acc[(g0 - blocks.start) * narrow * MR..],
                                        g0..b + 1,
                                        narrow,
                                        (img, positions.start + o, plane),
                                        bias,
                                        res,
                                        relu,
                                        out,
                                    );
                                }
                            }
                        }
                    }
                }
            });
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (g, img, positions, blocks, x, bias, residual, relu, out);
            unreachable!("wide_applies declines without AVX2");
        }
    }
}

impl DirectConv {
    /// The epilogue of [`avx2::pointwise_tail`]'s sums (`sums[(g·narrow + p)·MR + f]` for
    /// block `blocks.start + g`): `relu?(sum + bias + res)` at output position `p0 + p` of
    /// filter `b·MR + f` of image `img`, in the vector epilogue's order, value by value (so
    /// the same bits as `avx2::pointwise_block`'s).
    #[allow(clippy::too_many_arguments)]
    fn tail_epilogue(
        &self,
        sums: &[f32],
        blocks: std::ops::Range<usize>,
        narrow: usize,
        (img, p0, plane): (usize, usize, usize),
        bias: Option<&[f32]>,
        res: Option<*const f32>,
        relu: bool,
        out: OutPtr,
    ) {
        for (g, b) in blocks.enumerate() {
            for f in 0..MR.min(self.m - b * MR) {
                let row = b * MR + f;
                let bias = bias.map_or(0.0, |v| v[row]);
                for p in 0..narrow {
                    let at = (img * self.m + row) * plane + p0 + p;
                    let mut o = sums[(g * narrow + p) * MR + f] + bias;
                    // SAFETY: output row `row` of image `img`, position `p0 + p` of the
                    // tile's own positions: in `y` (and in `res`, checked the same length,
                    // or `y` itself, read before it is written).
                    unsafe {
                        if let Some(r) = res {
                            o += *r.add(at);
                        }
                        if relu {
                            o = if o > 0.0 { o } else { 0.0 };
                        }
                        *out.0.add(at) = o;
                    }
                }
            }
        }
    }
}

/// `dst[..N] = src[..N]` as one fixed-size copy (inline vector moves, no `memmove` call).
#[inline(always)]
fn copy_n<const N: usize>(dst: &mut [f32], src: &[f32]) {
    let d: &mut [f32; N] = (&mut dst[..N]).try_into().expect("N floats");
    *d = *<&[f32; N]>::try_from(&src[..N]).expect("N floats");
}

/// Most positions a strip may have to run the filter-vector kernel (`micro_narrow`): at up
/// to 7 the 8 × 48 kernel wastes most of its one vector (4 of 16 lanes used at 14×14), while
/// 4 blocks × 7 positions are 28 of the 32 vector registers.
const NARROW: usize = 7;

/// Filter blocks per `micro_narrow` call: 32 filters, four 8-float vectors.
const NARROW_GROUP: usize = 4;

/// `tile[p][f] = Σ_ch W[b·MR + f][ch] · strip[ch·bs + p]` for `p < n ≤ NARROW`, `f <
/// group·MR`: the filter-vector kernel of a strip of a few positions (see [`NARROW`]),
/// dispatched on `n` and `group` (1 or [`NARROW_GROUP`]); a group of [`NARROW_GROUP`] in
/// 512-bit vectors on CPUs whose 512-bit FMAs run at full rate. Measured there (Intel Xeon,
/// Emerald Rapids; one thread, runs alternated in one process, the median of each run's
/// time over its neighbour's on the 256-bit form): the 14×14 layers 256 ← 1024 and 1024 ←
/// 256 (their last 4 positions) 0.981 and 0.979, Keras ResNet-50 exact 0.994; the same bits.
///
/// # Safety
/// As [`avx512::micro_narrow`].
#[allow(clippy::too_many_arguments)]
unsafe fn micro_narrow(
    n: usize,
    group: usize,
    c: usize,
    packed: *const f32,
    blocks: usize,
    b: usize,
    strip: *const f32,
    bs: usize,
    tile: &mut [[f32; NARROW_GROUP * MR]; NARROW],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if group == NARROW_GROUP && kernels::fma512_full_rate() {
            macro_rules! wide {
                ($($p:literal),*) => {
                    match n {
                        // SAFETY: forwarded from the caller.
                        $($p => unsafe { avx512::micro_narrow512::<$p>(c, packed, blocks, b, strip, bs, tile) },)*
                        _ => unreachable!("1 to NARROW positions"),
                    }
                };
            }
            wide!(1, 2, 3, 4, 5, 6, 7);
            return;
        }
        macro_rules! dispatch {
            ($(($p:literal, $g:literal)),*) => {
                match (n, group) {
                    // SAFETY: forwarded from the caller.
                    $(($p, $g) => unsafe { avx512::micro_narrow::<$p, $g>(c, packed, blocks, b, strip, bs, tile) },)*
                    _ => unreachable!("1 to NARROW positions, groups of 1 or NARROW_GROUP blocks"),
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
            (1, 4),
            (2, 4),
            (3, 4),
            (4, 4),
            (5, 4),
            (6, 4),
            (7, 4)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (n, group, c, packed, blocks, b, strip, bs, tile);
        unreachable!("DirectConv::pointwise declines without AVX-512");
    }
}

/// Bringing one strip into cache (packed, or fetched in place), in units of one filter
/// block's products over it (`48·C` floats against `8·48·C` multiply-adds): each task reads
/// its own panel, so splitting a panel's filters between two tasks reads it twice.
const PACK_COST: f64 = 0.5;

/// How [`DirectConv::run_wide`] cuts `n` images of `plane` positions (strips of
/// [`STRIP`]) of `c` channels and `blocks` filter blocks into tasks for `threads` workers:
/// `(panels per image, filter blocks per task)`. As few panels as the [`PANEL_FLOATS`]
/// budget allows, unless the tasks are too few to share evenly: then the panel count and
/// filter split whose busiest worker (as the team hands the tasks out, see
/// [`kernels::busiest_load`]) carries the least, the fewer tasks on a tie. A last partial
/// strip counts the vectors it computes (a few positions on the filter-vector kernel: those
/// positions), so a 14×14 plane's 4 + 48·4 positions can be cut 96 + 100. The rule it
/// replaces (panels of the budget, filters split only under 4 tasks per worker) cut the
/// strided 1024 ← 512 conv (at stride 1 on its 14×14 output: 5 strips, 4 per panel) into
/// panels of 144 and 52 positions, and 64 ← 256 at 56×56 into 9 tasks on 2 workers.
/// `min_strips`: the fewest strips a panel may be given (the AVX2 kernel's 2: a 7×7 plane
/// of 2048 channels was a panel of 48 positions and one of 1, which streamed the filters
/// twice). `whole`: on several threads, a plane whose strips hold at most this many floats
/// may be cut into fewer panels than the budget asks, down to one with the filters split
/// ([`whole_panel_floats`]; 0: never).
fn wide_tiling(
    n: usize,
    plane: usize,
    c: usize,
    blocks: usize,
    threads: usize,
    min_strips: usize,
    whole: usize,
) -> (usize, usize) {
    let strips = plane.div_ceil(STRIP).max(1);
    let budget = (PANEL_FLOATS / c.max(1) / STRIP).max(min_strips).max(1);
    let fewest = strips.div_ceil(budget).max(1);
    if threads <= 1 || threads > kernels::MAX_WORKERS || n * fewest >= 8 * threads {
        return (fewest, blocks);
    }
    let least = if strips * STRIP * c <= whole { 1 } else { fewest };
    // Strip `s`'s work in full strips.
    let last = plane - (strips - 1) * STRIP;
    let strip_cost = |s: usize| match last {
        _ if s + 1 < strips || last == STRIP => 1.0,
        1..=NARROW => last as f64 / STRIP as f64,
        _ => last.div_ceil(16) as f64 / (STRIP / 16) as f64,
    };
    let mut best = (f64::INFINITY, fewest, blocks);
    for panels in least..=(fewest + 2 * threads).min(strips) {
        for split in 1..=threads.min(blocks) {
            let chunk = blocks.div_ceil(split);
            let split = blocks.div_ceil(chunk);
            // Task `t` as `run_wide` numbers them: filter chunk `t % split` of panel `t / split`.
            let cost = |t: usize| {
                let (mi, pi) = (t % split, t / split % panels);
                let width: f64 = (strips * pi / panels..strips * (pi + 1) / panels).map(strip_cost).sum();
                width * (chunk.min(blocks - mi * chunk) as f64 + PACK_COST)
            };
            let busiest = kernels::busiest_load(threads, n * panels * split, cost);
            if busiest < best.0 * (1.0 - 1e-9) {
                best = (busiest, panels, chunk);
            }
        }
    }
    (best.1, best.2)
}

/// Packs output positions `p0 .. p0 + n` (`n ≤ width ≤ STRIP`) of every channel as
/// `dst[ch·width + j]`, zeros past `n`: rows of the input plane at stride 1, the strided
/// positions otherwise.
#[allow(clippy::too_many_arguments)]
fn pack_strip(
    dst: &mut [f32],
    x: &[f32],
    c: usize,
    in_plane: usize,
    ah: &Axis,
    aw: &Axis,
    p0: usize,
    n: usize,
    width: usize,
) {
    let ow = aw.output;
    let mut idx = [0usize; STRIP];
    for (j, v) in idx.iter_mut().enumerate().take(n) {
        let (oh, owi) = ((p0 + j) / ow, (p0 + j) % ow);
        *v = oh * ah.stride * aw.input + owi * aw.stride;
    }
    let contiguous = n == 0 || idx[n - 1] - idx[0] == n - 1;
    for (ch, row) in dst.chunks_exact_mut(width).take(c).enumerate() {
        let src = &x[ch * in_plane..][..in_plane];
        if contiguous {
            row[..n].copy_from_slice(&src[idx[0]..idx[0] + n]);
        } else {
            for (d, &i) in row.iter_mut().zip(&idx[..n]) {
                *d = src[i];
            }
        }
        row[n..].fill(0.0);
    }
}

/// Cache lines of a panel's input rows a micro-kernel call prefetches (T1), one per channel
/// step: its share of the `rows × lpr` lines of `rows` rows `stride` floats apart.
#[derive(Debug, Clone, Copy)]
struct RowFetch {
    at: *const f32,
    within: usize,
    lpr: usize,
    stride: usize,
    left: usize,
}

impl RowFetch {
    const NONE: RowFetch = RowFetch { at: std::ptr::null(), within: 0, lpr: 1, stride: 0, left: 0 };

    /// Lines `first .. first + count` (row by row) of the rows at `base`.
    fn share(base: *const f32, lpr: usize, stride: usize, rows: usize, first: usize, count: usize) -> Self {
        if first >= rows * lpr {
            return RowFetch::NONE;
        }
        let (row, within) = (first / lpr, first % lpr);
        RowFetch {
            at: base.wrapping_add(row * stride + 16 * within),
            within,
            lpr,
            stride,
            left: count.min(rows * lpr - first),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn step(&mut self) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        if self.left > 0 {
            // SAFETY: a prefetch is a hint; it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(self.at.cast()) };
            self.left -= 1;
            self.within += 1;
            if self.within == self.lpr {
                self.within = 0;
                self.at = self.at.wrapping_add(self.stride).wrapping_sub(16 * (self.lpr - 1));
            } else {
                self.at = self.at.wrapping_add(16);
            }
        }
    }
}

/// Where and how one micro-kernel call stores its `rows × n` outputs: `y[r·plane + j] =
/// relu?(sum + bias[r] + res[r·plane + j])`.
pub(super) struct Store {
    pub(super) y: *mut f32,
    pub(super) res: Option<*const f32>,
    pub(super) bias: Option<*const f32>,
    pub(super) rows: usize,
    pub(super) plane: usize,
    pub(super) relu: bool,
}

/// The micro-kernel for `n ≤ STRIP` positions: dispatched on the vectors they take.
///
/// # Safety
/// As [`avx512::micro_wide`].
#[allow(clippy::too_many_arguments)]
unsafe fn micro_wide(
    n: usize,
    c: usize,
    packed: *const f32,
    blocks: usize,
    b: usize,
    strip: *const f32,
    bs: usize,
    st: &Store,
    pf: RowFetch,
    next_block: bool,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the caller's contract.
        unsafe {
            match n.div_ceil(16) {
                3 => avx512::micro_wide::<3>(n, c, packed, blocks, b, strip, bs, st, pf, next_block),
                2 => avx512::micro_wide::<2>(n, c, packed, blocks, b, strip, bs, st, pf, next_block),
                _ => avx512::micro_wide::<1>(n, c, packed, blocks, b, strip, bs, st, pf, next_block),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (n, c, packed, blocks, b, strip, bs, st, pf, next_block);
        unreachable!("DirectConv::pointwise declines without AVX-512");
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    use super::super::avx512::rank1;
    use super::{RowFetch, Store, KC_CHANNELS, MR, NARROW, NARROW_GROUP, STRIP};

    /// `y[r·plane + j] = relu?(Σ_ch W[b·MR + r][ch] · strip[ch·bs + j] + bias[r] +
    /// res[r·plane + j])` for `r < rows`, `j < n`, the filters read from `packed`'s K chunks
    /// of [`KC_CHANNELS`] channels (block `b` of `blocks`), stored as `st` says. With
    /// `next_block` each channel step also fetches block `b + 1`'s filters of the channel
    /// into L2 (a hint; `pf` fetches input rows).
    ///
    /// # Safety
    /// AVX-512F available; `16·(NV−1) < n ≤ 16·NV`; `packed` holds `blocks·MR·c` floats;
    /// `strip.add(ch·bs) .. + 16·NV` is readable for `ch < c`; `y.add(r·plane) .. + n` (and
    /// the same of `res`) lie in their buffers for `r < rows ≤ MR`, and `y`'s alias none of
    /// the inputs but `res` (which may be `y` itself: each element is read before it is
    /// written); `bias` holds `rows`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn micro_wide<const NV: usize>(
        n: usize,
        c: usize,
        packed: *const f32,
        blocks: usize,
        b: usize,
        strip: *const f32,
        bs: usize,
        st: &Store,
        pf: RowFetch,
        next_block: bool,
    ) {
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            prefetch_next_strip::<NV>(st);
            let acc = products::<NV>(c, packed, blocks, b, strip, bs, pf, next_block);
            store::<NV>(&acc, n, st);
        }
    }

    /// The next strip's output (and residual) lines of `st`'s rows — the tile's next call —
    /// fetched while this one computes: its rows lie a plane apart, which the hardware
    /// prefetcher does not follow. Hints only: past the end they do not fault
    /// (`wrapping_add`).
    #[inline(always)]
    pub(in crate::plan::direct) fn prefetch_next_strip<const NV: usize>(st: &Store) {
        let Store { y, res, rows, plane, .. } = *st;
        for r in 0..rows {
            for j in 0..NV {
                let at = r * plane + STRIP + 16 * j;
                // SAFETY: prefetches are hints; they never fault, whatever the address.
                unsafe {
                    if let Some(res) = res {
                        _mm_prefetch::<_MM_HINT_T0>(res.wrapping_add(at).cast());
                    }
                    _mm_prefetch::<_MM_HINT_ET0>(y.wrapping_add(at).cast());
                }
            }
        }
    }

    /// Channel by channel in `packed`'s K-chunk order, `step(ap, kn, bp)`: block `b`'s
    /// [`MR`] filters of the channel at `ap` (block `b + g`'s `g·kn·MR` floats further, `kn`
    /// the channel's K chunk length) and the strip's row of the channel at `bp` (rows `bs`
    /// apart) — the walk of every micro-kernel here.
    ///
    /// # Safety
    /// `packed` holds `blocks > b` blocks of `MR·c` filters in K chunks of [`KC_CHANNELS`];
    /// the strip has `c` rows `bs` apart; `step` reads within those.
    #[inline(always)]
    unsafe fn channels(
        c: usize,
        packed: *const f32,
        blocks: usize,
        b: usize,
        strip: *const f32,
        bs: usize,
        mut step: impl FnMut(*const f32, usize, *const f32),
    ) {
        let mut bp = strip;
        for k0 in (0..c).step_by(KC_CHANNELS) {
            let kn = KC_CHANNELS.min(c - k0);
            let mut ap = packed.wrapping_add((k0 * blocks + b * kn) * MR);
            for _ in 0..kn {
                step(ap, kn, bp);
                ap = ap.wrapping_add(MR);
                bp = bp.wrapping_add(bs);
            }
        }
    }

    /// `tile[p][g·MR + i] = Σ_ch W[(b + g)·MR + i][ch] · strip[ch·bs + p]` for `p < P`, `g <
    /// G`, `i < MR`: vectors along 8 filters (256-bit: Zen 4 runs two per cycle, as many
    /// multiply-adds as one 512-bit), one broadcast per position and channel. The channels
    /// in the order of [`products`], so each sum is the same as the 8 × 48 kernel's.
    ///
    /// # Safety
    /// AVX-512F available; `packed` holds `blocks ≥ b + G` blocks of `MR·c` filters in K
    /// chunks of [`KC_CHANNELS`]; `strip.add(ch·bs) .. + P` is readable for `ch < c`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn micro_narrow<const P: usize, const G: usize>(
        c: usize,
        packed: *const f32,
        blocks: usize,
        b: usize,
        strip: *const f32,
        bs: usize,
        tile: &mut [[f32; NARROW_GROUP * MR]; NARROW],
    ) {
        let mut acc = [[_mm256_setzero_ps(); G]; P];
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            channels(c, packed, blocks, b, strip, bs, |ap, kn, bp| {
                let mut w = [_mm256_setzero_ps(); G];
                for (g, v) in w.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(ap.add(g * kn * MR));
                }
                for (p, row) in acc.iter_mut().enumerate() {
                    let xv = _mm256_set1_ps(*bp.add(p));
                    for (v, wg) in row.iter_mut().zip(&w) {
                        *v = _mm256_fmadd_ps(xv, *wg, *v);
                    }
                }
            });
            for (row, t) in acc.iter().zip(tile.iter_mut()) {
                for (g, v) in row.iter().enumerate() {
                    _mm256_storeu_ps(t.as_mut_ptr().add(g * MR), *v);
                }
            }
        }
    }

    /// [`micro_narrow`] for [`NARROW_GROUP`] blocks in 512-bit vectors, each two blocks'
    /// 8 filters side by side (a 256-bit load and an insert per pair and channel): the same
    /// multiply-adds in the same order per lane, so the same sums, in half the instructions
    /// — for CPUs whose 512-bit FMAs run at full rate ([`crate::plan::kernels::fma512_full_rate`]),
    /// where the 256-bit form runs at half their multiply-adds per cycle.
    ///
    /// # Safety
    /// As [`micro_narrow`] with `G` = [`NARROW_GROUP`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn micro_narrow512<const P: usize>(
        c: usize,
        packed: *const f32,
        blocks: usize,
        b: usize,
        strip: *const f32,
        bs: usize,
        tile: &mut [[f32; NARROW_GROUP * MR]; NARROW],
    ) {
        const PAIRS: usize = NARROW_GROUP / 2;
        let mut acc = [[_mm512_setzero_ps(); PAIRS]; P];
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            channels(c, packed, blocks, b, strip, bs, |ap, kn, bp| {
                let mut w = [_mm512_setzero_ps(); PAIRS];
                for (h, v) in w.iter_mut().enumerate() {
                    let lo = _mm512_castps256_ps512(_mm256_loadu_ps(ap.add(2 * h * kn * MR)));
                    let hi = _mm256_loadu_ps(ap.add((2 * h + 1) * kn * MR));
                    *v = _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), _mm256_castps_pd(hi)));
                }
                for (p, row) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*bp.add(p));
                    for (v, wh) in row.iter_mut().zip(&w) {
                        *v = _mm512_fmadd_ps(xv, *wh, *v);
                    }
                }
            });
            for (row, t) in acc.iter().zip(tile.iter_mut()) {
                for (h, v) in row.iter().enumerate() {
                    _mm512_storeu_ps(t.as_mut_ptr().add(2 * h * MR), *v);
                }
            }
        }
    }

    /// Channel steps ahead at which [`products`] fetches the strip's rows into L1. Rows read
    /// in place lie a plane apart (3 KiB at 28×28, 12 KiB at 56×56), past the 2 KiB stride
    /// Intel documents for its L1 stride prefetcher, so each step's loads waited on L2.
    /// Measured on an Intel Xeon (Emerald Rapids) in a busy spell of the host, runs with and
    /// without alternated in one process (median of each run's time over its neighbour's):
    /// Keras ResNet-50 exact at batch 1 0.978–0.985 on one thread, resnet50-v2 0.975 on two,
    /// single 1×1 layers 0.92–0.95; 2 to 12 steps ahead alike. In quiet spells, alternated
    /// processes (`scripts/ab_bench.py`, minima): 0.995 and 1.002 — no loss.
    pub(super) const ROW_AHEAD: usize = 4;

    /// The sums of [`micro_wide`].
    ///
    /// # Safety
    /// As [`micro_wide`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn products<const NV: usize>(
        c: usize,
        packed: *const f32,
        blocks: usize,
        b: usize,
        strip: *const f32,
        bs: usize,
        mut pf: RowFetch,
        next_block: bool,
    ) -> [[__m512; NV]; MR] {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let ahead = usize::from(next_block);
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            channels(c, packed, blocks, b, strip, bs, |ap, kn, bp| {
                pf.step();
                // A hint: block `b + 1`'s filters of this channel (or this block's own).
                _mm_prefetch::<_MM_HINT_T1>(ap.wrapping_add(ahead * kn * MR).cast());
                for j in 0..NV {
                    // A hint: past the strip's last row it does not fault.
                    _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(ROW_AHEAD * bs + 16 * j).cast());
                }
                rank1(&mut acc, ap, bp);
            });
        }
        acc
    }

    /// The epilogue of [`micro_wide`]: the accumulators stored as `st` says.
    ///
    /// # Safety
    /// As [`micro_wide`].
    #[inline(always)]
    pub(in crate::plan::direct) unsafe fn store<const NV: usize>(acc: &[[__m512; NV]; MR], n: usize, st: &Store) {
        let Store { y, res, bias, rows, plane, relu } = *st;
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            let zero = _mm512_setzero_ps();
            let last: __mmask16 = if n.is_multiple_of(16) { 0xffff } else { (1u16 << (n % 16)) - 1 };
            for (r, row) in acc.iter().enumerate().take(rows) {
                let bv = bias.map_or(zero, |p| _mm512_set1_ps(*p.add(r)));
                for (j, v) in row.iter().enumerate() {
                    let mask = if j + 1 == NV { last } else { 0xffff };
                    let at = r * plane + 16 * j;
                    let mut o = _mm512_add_ps(*v, bv);
                    if let Some(res) = res {
                        o = _mm512_add_ps(o, _mm512_maskz_loadu_ps(mask, res.add(at)));
                    }
                    if relu {
                        o = _mm512_max_ps(o, zero);
                    }
                    _mm512_mask_storeu_ps(y.add(at), mask, o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{avx2_strips, wide_tiling, PANEL_FLOATS, STRIP};

    /// The 512-bit filter-vector kernel gives the 256-bit one's bits: the same products
    /// summed in the same order per filter, over K chunks, in place or packed strips.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn narrow_kernels_512_and_256_bit_give_the_same_bits() {
        use super::{avx512, KC_CHANNELS, MR, NARROW, NARROW_GROUP};
        if !std::arch::is_x86_feature_detected!("avx512f") || !std::arch::is_x86_feature_detected!("fma") {
            return;
        }
        let mut seed = 7u64;
        let mut rand = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        for (c, blocks, b, bs) in [(1024, 32, 28, 196), (70, 5, 1, 9), (KC_CHANNELS, 4, 0, 16)] {
            let packed: Vec<f32> = (0..c * blocks * MR).map(|_| rand()).collect();
            let strip: Vec<f32> = (0..c * bs + NARROW).map(|_| rand()).collect();
            let run = |wide: bool| {
                let mut tile = [[0f32; NARROW_GROUP * MR]; NARROW];
                // SAFETY: AVX-512F and FMA checked; `packed` holds `blocks ≥ b + 4` blocks of
                // `MR·c`; the strip's `c` rows of 4 floats lie `bs` apart in `strip`.
                unsafe {
                    if wide {
                        avx512::micro_narrow512::<4>(c, packed.as_ptr(), blocks, b, strip.as_ptr(), bs, &mut tile);
                    } else {
                        avx512::micro_narrow::<4, 4>(c, packed.as_ptr(), blocks, b, strip.as_ptr(), bs, &mut tile);
                    }
                }
                tile[..4].iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(run(true), run(false), "c {c} blocks {blocks} b {b}");
            assert!(run(false).iter().any(|&v| v != 0), "c {c}: sums computed");
        }
    }

    #[test]
    fn avx2_strips_cover_the_positions_once_with_few_wasted() {
        // The plane sizes of ResNet's 1×1 convs, and every tile width up to 300.
        assert_eq!(avx2_strips(49), (2, [0, 0], 1));
        assert_eq!(avx2_strips(196), (7, [2, 2], 0));
        assert_eq!(avx2_strips(784), (32, [2, 0], 0));
        assert_eq!(avx2_strips(3136), (130, [2, 0], 0));
        for pw in 1..=300 {
            let (full, tail, narrow) = avx2_strips(pw);
            assert!(narrow <= 2 && (narrow == 0 || (full > 0 && tail == [0, 0])), "{pw}");
            // The narrow positions count as computed exactly (their own kernel).
            let widths: Vec<usize> = std::iter::repeat_n(24, full)
                .chain(tail.iter().filter(|&&t| t > 0).map(|t| 8 * t))
                .chain((narrow > 0).then_some(narrow))
                .collect();
            assert!(tail[1] == 0 || tail[0] > 0, "{pw}: a second tail strip only after a first");
            let covered: usize = widths.iter().sum();
            // Every strip has valid positions, and at most 7 lanes are computed past the end.
            let last = *widths.last().expect("a strip");
            assert!(covered >= pw && covered - pw < last && covered - pw <= 7, "{pw}: {widths:?}");
            // A strip of one vector (4 accumulators: half speed) only when nothing wider fits.
            assert!(!widths.contains(&8) || pw <= 8, "{pw}: {widths:?}");
        }
    }

    #[test]
    fn wide_tiling_keeps_the_budget_and_balances_few_tasks() {
        // One thread, or enough tasks: the fewest panels the budget allows, filters whole
        // (whatever the whole-plane limit).
        assert_eq!(wide_tiling(1, 56 * 56, 256, 8, 1, 1, 0), (9, 8));
        assert_eq!(wide_tiling(8, 56 * 56, 256, 8, 2, 1, 0), (9, 8));
        assert_eq!(wide_tiling(1, 14 * 14, 1024, 32, 1, 1, 1 << 20), (3, 32));
        // 1024 ← 512 on a 14×14 plane: 4 strips of 48 and one of 4 positions. Counted in
        // whole strips, two panels (2 + 3 strips) looked uneven and each panel's filters were
        // split; counted in positions they are 96 and 100, one per worker, and each worker
        // reads only its own positions.
        assert_eq!(wide_tiling(1, 14 * 14, 512, 128, 2, 1, 0), (2, 128));
        // 512 ← 2048 at 7×7: over the budget as one panel, but the AVX2 kernel's two strips at
        // least keep it whole (one panel of 49 positions, not 48 + 1).
        assert_eq!(wide_tiling(1, 7 * 7, 2048, 64, 1, 1, 0), (2, 64));
        assert_eq!(wide_tiling(1, 7 * 7, 2048, 64, 1, 2, 0), (1, 64));
        // 64 ← 256 at 56×56: 66 strips, 8 per panel: 9 panels on 2 workers became an even
        // number of panels (or a filter split).
        let (panels, chunk) = wide_tiling(1, 56 * 56, 256, 8, 2, 1, 0);
        assert!(panels >= 9 && (panels % 2 == 0 || chunk < 8), "{panels} panels of {chunk} blocks");
        // Never a panel over the budget without a whole-plane limit, whatever the search picks.
        for (n, plane, c, blocks, threads) in [
            (1, 196, 512, 128, 2),
            (1, 3136, 256, 8, 2),
            (2, 784, 64, 32, 3),
            (1, 1, 2048, 256, 2),
            (1, 49, 2048, 64, 3),
        ] {
            let strips = usize::div_ceil(plane, STRIP);
            let (panels, chunk) = wide_tiling(n, plane, c, blocks, threads, 1, 0);
            assert!((1..=strips).contains(&panels) && (1..=blocks).contains(&chunk));
            assert!(strips.div_ceil(panels) * STRIP * c <= PANEL_FLOATS.max(STRIP * c), "{n} {plane} {c}");
        }
    }

    /// Two threads under a whole-plane limit (half a 2 MiB L2: 256 Ki floats): 256 ← 1024 and
    /// 1024 ← 512 at 14×14 (5 strips of 1024 or 512 channels) become one panel with the
    /// filters split, not three or two panels that each stream every filter; a plane over
    /// the limit (64 ← 256 at 56×56) keeps the budget's panels; under a limit the plane
    /// does not fit (half of 1 MiB), 256 ← 1024 keeps them too.
    #[test]
    fn wide_tiling_takes_a_plane_within_the_limit_as_one_panel_on_several_threads() {
        let whole = 256 * 1024;
        assert_eq!(wide_tiling(1, 14 * 14, 1024, 32, 2, 1, whole), (1, 16));
        assert_eq!(wide_tiling(1, 14 * 14, 512, 128, 2, 1, whole), (1, 64));
        assert_eq!(wide_tiling(1, 56 * 56, 256, 8, 2, 1, whole), wide_tiling(1, 56 * 56, 256, 8, 2, 1, 0));
        assert_eq!(wide_tiling(1, 14 * 14, 1024, 32, 2, 1, whole / 2), wide_tiling(1, 14 * 14, 1024, 32, 2, 1, 0));
        assert_ne!(wide_tiling(1, 14 * 14, 1024, 32, 2, 1, 0).0, 1);
        // Every panel within the limit, or within the budget.
        for (n, plane, c, blocks, threads) in [(1, 196, 1024, 32, 2), (1, 784, 256, 64, 2), (1, 3136, 64, 8, 3)] {
            let strips = usize::div_ceil(plane, STRIP);
            let (panels, chunk) = wide_tiling(n, plane, c, blocks, threads, 1, whole);
            assert!((1..=strips).contains(&panels) && (1..=blocks).contains(&chunk));
            assert!(strips.div_ceil(panels) * STRIP * c <= whole.max(PANEL_FLOATS), "{n} {plane} {c}");
        }
    }
}
