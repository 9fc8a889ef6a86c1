//! bfloat16 products ([`crate::plan::Mode::Bf16`], opt-in) for the 1×1 kernels (the
//! wide-plane one and the narrow-plane one) and the F(2×2) Winograd products: both operands
//! rounded to bfloat16 (8 significant bits) and multiplied with `vdpbf16ps`, which adds two
//! bfloat16 products into each float32 lane — 32 multiply-adds per instruction where
//! `vfmadd231ps` does 16, at the same rate on Zen 4 (`scripts/bf16_peak.c`, a register-only loop:
//! 235 against 117 GFLOP/s on one core). The sums stay float32; each product of two
//! bfloat16 values is exact in float32, so what changes against the float32 kernels is the
//! rounding of the two operands (relative 2⁻⁸ each at most).
//!
//! Layouts: `vdpbf16ps` pairs the two bfloat16 halves of each 32-bit lane, so both operands
//! hold *channel pairs*. Wide-plane kernel: the filters are `[block][pair][MR]` of 32-bit
//! words `w[f][2p] | w[f][2p+1] << 16` (a zero channel past an odd C); a strip of 48
//! positions is `[pair][STRIP]` words `x[2p][j] | x[2p+1][j] << 16`, packed per tile from the
//! float32 input (read in place at stride 1) into a per-thread panel half the size of the
//! float32 one. The micro-kernel is the float32 one's `8 × 48` (24 accumulators; per channel
//! pair 3 vector loads of the strip, 8 broadcast filter pairs) and shares its epilogue.
//! Narrow-plane kernel (and the Winograd products, whose panels have the same shape):
//! vectors along 32 filters, `[block of 32][pair][32]` words, each position's channel pair
//! broadcast, up to 14 positions per call.

use std::cell::RefCell;

use rayon::prelude::*;

use super::pointwise::STRIP;
use super::{DirectConv, MR, NC, ROW_SEGMENT};
use crate::ops::conv::ConvGeometry;
use crate::plan::kernels::{self, LineFetch, OutPtr, Residual};

thread_local! {
    /// Per-thread packed bfloat16 strips of one tile (`[strip][pair][STRIP]`); grows to the
    /// largest panel once.
    static PANEL: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Whether this CPU runs the bfloat16 kernel: AVX-512F with the BF16 and BW extensions.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `v` rounded to the nearest bfloat16, ties to even, as `vcvtne2ps2bf16` rounds: the upper
/// 16 bits of the result. Subnormals become zero of the same sign (the instruction treats
/// them as zero), NaNs stay (quiet) NaNs.
pub fn round_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x0040) as u16;
    }
    if bits & 0x7f80_0000 == 0 {
        return ((bits >> 16) & 0x8000) as u16;
    }
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// A bfloat16 (upper 16 bits of a float32) as the float32 it is.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `[M, C]` filters (row-major) as the micro-kernel reads them: `[block][pair][MR]` words,
/// rows past M and the channel past an odd C zero.
pub(crate) fn pack_filters(w: &[f32], m: usize, c: usize) -> Vec<u32> {
    assert_eq!(w.len(), m * c, "filter length");
    let pairs = c.div_ceil(2);
    let mut out = vec![0u32; m.div_ceil(MR) * pairs * MR];
    // Block by block on the compiling thread pool (ResNet-50: 15 M filters).
    out.par_chunks_mut(pairs * MR).enumerate().for_each(|(b, block)| {
        for (r, filt) in w.chunks_exact(c.max(1)).skip(b * MR).take(MR).enumerate() {
            for p in 0..pairs {
                let lo = round_bf16(filt[2 * p]);
                let hi = filt.get(2 * p + 1).map_or(0, |&v| round_bf16(v));
                block[p * MR + r] = u32::from(lo) | u32::from(hi) << 16;
            }
        }
    });
    out
}

/// Runs `f` with this thread's bfloat16 panel of at least `words` words.
pub(super) fn with_panel<R>(words: usize, f: impl FnOnce(&mut [u32]) -> R) -> R {
    PANEL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < words + 16 {
            // Room for the float32 panel budget's worth of strips at once (every ResNet
            // panel), so a worker that meets a larger panel late does not allocate in a
            // steady-state run.
            p.resize((words + 16).max(super::pointwise::PANEL_FLOATS / 2 + 16), 0);
        }
        let skip = p.as_ptr().align_offset(64).min(p.len());
        f(&mut p[skip..])
    })
}

/// Packs `n` positions of `c` channel rows `bs` floats apart as channel pairs:
/// `dst[p·ld + j] = bf16(src[2p·bs + j]) | bf16(src[(2p+1)·bs + j]) << 16` for `p < ⌈c/2⌉`,
/// `j < n`, zeros for `n ≤ j < ld` and for the channel past an odd `c`.
///
/// # Safety
/// AVX-512F, BW and BF16 available ([`supported`]); `src.add(ch·bs) .. + n` readable for
/// `ch < c`; `ld` a multiple of 16 at least `n`; `dst` 64-byte aligned.
pub(crate) unsafe fn pack_rows(src: *const f32, bs: usize, c: usize, n: usize, ld: usize, dst: &mut [u32]) {
    assert!(ld.is_multiple_of(16) && n <= ld && dst.len() >= c.div_ceil(2) * ld, "bf16 rows");
    assert!(dst.as_ptr().align_offset(64) == 0, "bf16 rows aligned");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract; `dst` checked above.
    unsafe {
        avx512::pack_rows(src, bs, c, n, ld, dst.as_mut_ptr());
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (src, bs, n);
        unreachable!("the bf16 kernel needs AVX-512 BF16");
    }
}

/// The micro-kernel for `n ≤ STRIP` positions of a packed bfloat16 strip against filter
/// block `b` (`filters` from [`pack_filters`]), stored as `st` says.
///
/// # Safety
/// AVX-512F, BW and BF16 available; `strip` holds `⌈c/2⌉·STRIP` words; `filters` holds block
/// `b`; `st` as for the float32 kernel (`super::pointwise::Store`).
pub(super) unsafe fn micro(
    n: usize,
    c: usize,
    filters: *const u32,
    b: usize,
    strip: *const u32,
    st: &super::pointwise::Store,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract.
    unsafe {
        let a = filters.add(b * c.div_ceil(2) * MR);
        match n.div_ceil(16) {
            3 => avx512::micro::<3>(n, c.div_ceil(2), a, strip, st),
            2 => avx512::micro::<2>(n, c.div_ceil(2), a, strip, st),
            _ => avx512::micro::<1>(n, c.div_ceil(2), a, strip, st),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (n, c, filters, b, strip, st);
        unreachable!("the bf16 kernel needs AVX-512 BF16");
    }
}

/// The wide-layout filters ([`pack_filters`], blocks of [`MR`]) regrouped for the
/// narrow-plane kernel: `[block of NC][pair][NC]` words, filters past M zero.
fn rows_layout(wide: &[u32], m: usize, c: usize) -> Vec<u32> {
    let pairs = c.div_ceil(2);
    let mut out = vec![0u32; m.div_ceil(NC) * pairs * NC];
    for f in 0..m {
        let (b8, r) = (f / MR, f % MR);
        for p in 0..pairs {
            out[(f / NC * pairs + p) * NC + f % NC] = wide[(b8 * pairs + p) * MR + r];
        }
    }
    out
}

impl DirectConv {
    /// The narrow-plane kernel of a pointwise conv in bfloat16 ([`DirectConv::run_pointwise`]
    /// on small planes once [`DirectConv::use_bf16`] is on): the float32 one's tiling (one
    /// tile per image and chunk of [`NC`]-filter blocks, the plane in runs of at most
    /// [`ROW_SEGMENT`] positions × 32 filters per call, vectors along the filters), with the
    /// image's input packed once per tile as channel pairs ([`pack_rows`]) and `vdpbf16ps`
    /// products. `false` when the kernel has no bf16 filters (the caller runs float32).
    pub(super) fn run_pointwise_bf16(
        &self,
        g: &ConvGeometry,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        y: &mut [f32],
    ) -> bool {
        let Some(wide) = self.bf16.as_deref() else { return false };
        let filters = self.bf16_rows.get_or_init(|| rows_layout(wide, self.m, self.c));
        let [_, ah, aw] = &g.axes;
        let plane = ah.output * aw.output;
        assert_eq!(y.len(), g.n * self.m * plane, "output length");
        assert_eq!(x.len(), g.n * self.c * plane, "input length");
        assert!(bias.is_none_or(|b| b.len() >= self.m), "bias length");
        assert!(residual.tensor().is_none_or(|r| r.len() == y.len()), "residual length");
        let blocks = self.m.div_ceil(NC);
        let split = kernels::filter_split(g.n, kernels::threads(), blocks);
        let chunk = blocks.div_ceil(split);
        let split = blocks.div_ceil(chunk);
        let out = OutPtr(y.as_mut_ptr());
        kernels::for_each_task(g.n * split, |ti| {
            let (img, b0) = (ti / split, ti % split * chunk);
            self.rows_tile_bf16(filters, plane, img, b0..(b0 + chunk).min(blocks), x, bias, residual, relu, out);
        });
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn rows_tile_bf16(
        &self,
        filters: &[u32],
        plane: usize,
        img: usize,
        blocks: std::ops::Range<usize>,
        x: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        relu: bool,
        out: OutPtr,
    ) {
        let (m, c) = (self.m, self.c);
        let pairs = c.div_ceil(2);
        let ld = plane.next_multiple_of(16);
        let x_img = &x[img * c * plane..][..c * plane];
        let runs = plane.div_ceil(ROW_SEGMENT);
        let res = residual.base(out.0);
        with_panel(pairs * ld, |panel| {
            // SAFETY: `supported()` holds where `bf16` is set; C rows of `plane` floats
            // `plane` apart in `x_img`; `panel` holds `pairs·ld` aligned words.
            unsafe { pack_rows(x_img.as_ptr(), plane, c, plane, ld, panel) };
            let mut tile = [[0f32; NC]; ROW_SEGMENT];
            for b in blocks.clone() {
                let a = &filters[b * pairs * NC..][..pairs * NC];
                // The next block's filters, fetched into L2 over this block's calls (batch
                // 1 streams them from memory), as the float32 kernel does.
                let next = (b + 1 < blocks.end).then(|| filters[(b + 1) * pairs * NC..].as_ptr().cast::<f32>());
                for run in 0..runs {
                    let (p0, p1) = (plane * run / runs, plane * (run + 1) / runs);
                    let pf = next.map_or(LineFetch::NONE, |at| LineFetch::share(at, 2 * pairs, run, pairs, 1));
                    // SAFETY: as above; `a` holds `pairs·NC` words, the panel `pairs` rows of
                    // `ld ≥ p1` words from `p0`.
                    unsafe { micro_rows(p1 - p0, pairs, a.as_ptr(), panel[p0..].as_ptr(), ld, pf, &mut tile) };
                    for f in 0..NC.min(m - b * NC) {
                        let row = b * NC + f;
                        let off = (img * m + row) * plane;
                        let bv = bias.map_or(0.0, |v| v[row]);
                        for (p, t) in (p0..p1).zip(&tile) {
                            // SAFETY: output `row` of image `img`, position `p < plane`: in `y`
                            // (and the residual, checked the same length, or `y` itself,
                            // read before written) and this tile's only.
                            unsafe {
                                let mut v = t[f] + bv;
                                if let Some(r) = res {
                                    v += *r.add(off + p);
                                }
                                *out.0.add(off + p) = if relu { v.max(0.0) } else { v };
                            }
                        }
                    }
                }
            }
        });
    }
}

/// `tile[p][f] = Σ_pair dot(x[pair][p], a[pair][f])` for `p < n ≤ ROW_SEGMENT`, `f < NC`.
///
/// # Safety
/// AVX-512F, BW and BF16 available; `a` holds `pairs·NC` words, `x` `pairs` rows of `n`
/// words `ld` apart.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn micro_rows(
    n: usize,
    pairs: usize,
    a: *const u32,
    x: *const u32,
    ld: usize,
    pf: LineFetch,
    tile: &mut [[f32; NC]; ROW_SEGMENT],
) {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! dispatch {
            ($($p:literal),*) => {
                match n {
                    // SAFETY: forwarded from the caller.
                    $($p => unsafe { avx512::micro_rows::<$p>(pairs, a, x, ld, pf, tile) },)*
                    _ => unreachable!("runs of 1 to ROW_SEGMENT positions"),
                }
            };
        }
        dispatch!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (n, pairs, a, x, ld, pf, tile);
        unreachable!("the bf16 kernel needs AVX-512 BF16");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::pointwise::avx512::{prefetch_next_strip, store};
    use super::super::pointwise::Store;
    use super::{MR, STRIP};

    /// [`super::pack_rows`].
    ///
    /// # Safety
    /// As [`super::pack_rows`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(crate) unsafe fn pack_rows(src: *const f32, bs: usize, c: usize, n: usize, ld: usize, dst: *mut u32) {
        // Word i of the interleaved vector: low half `x[2p][i]` (words 0..16 of the
        // conversion), high half `x[2p+1][i]` (words 16..32).
        let idx = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
            1, 16, 0,
        );
        // SAFETY (whole body): pointers and extents as the caller guarantees; masked loads
        // read only the first `n` floats of each row.
        unsafe {
            for p in 0..c.div_ceil(2) {
                let lo = src.add(2 * p * bs);
                let hi = (2 * p + 1 < c).then(|| src.add((2 * p + 1) * bs));
                for j in 0..ld / 16 {
                    let left = n.saturating_sub(16 * j);
                    let m: __mmask16 = if left >= 16 { 0xffff } else { ((1u32 << left) - 1) as __mmask16 };
                    let a = _mm512_maskz_loadu_ps(m, lo.wrapping_add(16 * j));
                    let b = hi.map_or(_mm512_setzero_ps(), |h| _mm512_maskz_loadu_ps(m, h.wrapping_add(16 * j)));
                    let h: __m512bh = _mm512_cvtne2ps_pbh(b, a);
                    let v = _mm512_permutexvar_epi16(idx, std::mem::transmute::<__m512bh, __m512i>(h));
                    _mm512_store_si512(dst.add(p * ld + 16 * j).cast(), v);
                }
            }
        }
    }

    /// [`super::micro_rows`] for `P` positions.
    ///
    /// # Safety
    /// As [`super::micro_rows`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn micro_rows<const P: usize>(
        pairs: usize,
        a: *const u32,
        x: *const u32,
        ld: usize,
        mut pf: crate::plan::kernels::LineFetch,
        tile: &mut [[f32; super::NC]; super::ROW_SEGMENT],
    ) {
        let mut c = [[_mm512_setzero_ps(); 2]; P];
        // SAFETY (whole body): pointers and extents as the caller guarantees; the prefetch
        // is a hint past the end too.
        unsafe {
            let (mut ap, mut xp) = (a, x);
            for _ in 0..pairs {
                _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(1024).cast());
                pf.step();
                let w0 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(ap.cast()));
                let w1 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(ap.add(16).cast()));
                for (p, row) in c.iter_mut().enumerate() {
                    let xv = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*xp.add(p) as i32));
                    row[0] = _mm512_dpbf16_ps(row[0], xv, w0);
                    row[1] = _mm512_dpbf16_ps(row[1], xv, w1);
                }
                ap = ap.add(super::NC);
                xp = xp.add(ld);
            }
            for (row, t) in c.iter().zip(tile.iter_mut()) {
                _mm512_storeu_ps(t.as_mut_ptr(), row[0]);
                _mm512_storeu_ps(t.as_mut_ptr().add(16), row[1]);
            }
        }
    }

    /// `y[r·plane + j] = relu?(Σ_p dot(a[p][r], strip[p][j]) + bias[r] + res[r·plane + j])`
    /// for `r < rows`, `j < n` (`16·(NV−1) < n ≤ 16·NV`), stored by the float32 kernel's
    /// epilogue.
    ///
    /// # Safety
    /// As [`super::micro`]; `a` is filter block `b`'s `pairs·MR` words.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn micro<const NV: usize>(n: usize, pairs: usize, a: *const u32, strip: *const u32, st: &Store) {
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            prefetch_next_strip::<NV>(st);
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            let (mut ap, mut bp) = (a, strip);
            for _ in 0..pairs {
                let mut bv = [_mm512_setzero_si512(); NV];
                for (j, v) in bv.iter_mut().enumerate() {
                    *v = _mm512_load_si512(bp.add(16 * j).cast());
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av: __m512bh = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*ap.add(r) as i32));
                    for (v, bj) in row.iter_mut().zip(&bv) {
                        *v = _mm512_dpbf16_ps(*v, av, std::mem::transmute::<__m512i, __m512bh>(*bj));
                    }
                }
                ap = ap.add(MR);
                bp = bp.add(STRIP);
            }
            store::<NV>(&acc, n, st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even_and_flushes_subnormals() {
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties to the even one (1).
        assert_eq!(bf16_to_f32(round_bf16(1.0 + 2f32.powi(-8))), 1.0);
        // 1 + 3·2⁻⁸: halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶: up to the even one.
        assert_eq!(bf16_to_f32(round_bf16(1.0 + 3.0 * 2f32.powi(-8))), 1.0 + 2f32.powi(-6));
        // Just above halfway rounds up.
        assert_eq!(bf16_to_f32(round_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20))), 1.0 + 2f32.powi(-7));
        assert_eq!(bf16_to_f32(round_bf16(-2.5)), -2.5);
        assert_eq!(round_bf16(1e-40), 0);
        assert_eq!(round_bf16(-1e-40), 0x8000);
        assert!(bf16_to_f32(round_bf16(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(round_bf16(f32::INFINITY)), f32::INFINITY);
        // The largest float32 rounds to infinity, as the instruction does.
        assert_eq!(bf16_to_f32(round_bf16(f32::MAX)), f32::INFINITY);
        for v in [0.1f32, 3.3, -7.77, 1234.5, 6.0e-30] {
            let r = bf16_to_f32(round_bf16(v));
            assert!((r - v).abs() <= v.abs() * 2f32.powi(-8), "{v} → {r}");
        }
    }

    #[test]
    fn filters_pack_as_channel_pairs_per_block() {
        let (m, c) = (9, 3);
        let w: Vec<f32> = (0..m * c).map(|i| i as f32).collect();
        let p = pack_filters(&w, m, c);
        assert_eq!(p.len(), 2 * 2 * MR);
        // Block 1, pair 0, row 0 = filter 8: channels 0 and 1.
        let word = p[2 * MR];
        assert_eq!(bf16_to_f32(word as u16), 24.0);
        assert_eq!(bf16_to_f32((word >> 16) as u16), 25.0);
        // Pair 1 of filter 8: channel 2 and the zero past C.
        assert_eq!(p[(2 + 1) * MR], u32::from(round_bf16(26.0)));
        // Rows past M are zero.
        assert!(p[2 * 2 * MR - 1] == 0 && p[(2 + 1) * MR + 1] == 0);
    }
}
