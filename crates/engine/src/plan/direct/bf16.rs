//! bfloat16 products for the wide-plane 1×1 kernel ([`crate::plan::Mode::Bf16`], opt-in): the
//! filters and each strip of inputs are rounded to bfloat16 (8 significant bits) and
//! multiplied with `vdpbf16ps`, which adds two bfloat16 products into each float32 lane —
//! 32 multiply-adds per instruction where `vfmadd231ps` does 16, at the same rate on Zen 4
//! (measured with a register-only loop: 235 against 117 GFLOP/s on one core). The sums stay
//! float32; each product of two bfloat16 values is exact in float32, so what changes against
//! the float32 kernel is the rounding of the two operands (relative 2⁻⁸ each at most).
//!
//! Layouts: `vdpbf16ps` pairs the two bfloat16 halves of each 32-bit lane, so both operands
//! hold *channel pairs*. The filters are `[block][pair][MR]` of 32-bit words `w[f][2p] |
//! w[f][2p+1] << 16` (a zero channel past an odd C); a strip of 48 positions is
//! `[pair][STRIP]` words `x[2p][j] | x[2p+1][j] << 16`, packed per tile from the float32
//! input (read in place at stride 1) into a per-thread panel half the size of the float32
//! one. The micro-kernel is the float32 one's `8 × 48` (24 accumulators; per channel pair 3
//! vector loads of the strip, 8 broadcast filter pairs) and shares its epilogue.

use std::cell::RefCell;

use super::pointwise::STRIP;
use super::MR;

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
    for (row, filt) in w.chunks_exact(c.max(1)).enumerate() {
        let (b, r) = (row / MR, row % MR);
        for p in 0..pairs {
            let lo = round_bf16(filt[2 * p]);
            let hi = filt.get(2 * p + 1).map_or(0, |&v| round_bf16(v));
            out[(b * pairs + p) * MR + r] = u32::from(lo) | u32::from(hi) << 16;
        }
    }
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

/// Packs one strip: `dst[p·STRIP + j] = bf16(src[2p·bs + j]) | bf16(src[(2p+1)·bs + j]) << 16`
/// for `p < ⌈c/2⌉`, `j < STRIP` (a zero channel past an odd `c`).
///
/// # Safety
/// AVX-512F, BW and BF16 available ([`supported`]); `src.add(ch·bs) .. + STRIP` readable for
/// `ch < c`; `dst` holds `⌈c/2⌉·STRIP` words.
pub(super) unsafe fn pack_strip(src: *const f32, bs: usize, c: usize, dst: &mut [u32]) {
    let pairs = c.div_ceil(2);
    assert!(dst.len() >= pairs * STRIP, "bf16 strip length");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract; `dst` checked above.
    unsafe {
        avx512::pack_strip(src, bs, c, dst.as_mut_ptr());
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (src, bs);
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::pointwise::avx512::store;
    use super::super::pointwise::Store;
    use super::{MR, STRIP};

    /// [`super::pack_strip`].
    ///
    /// # Safety
    /// As [`super::pack_strip`], `dst` holding `⌈c/2⌉·STRIP` words.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pack_strip(src: *const f32, bs: usize, c: usize, dst: *mut u32) {
        // Word i of the interleaved vector: low half `x[2p][i]` (words 0..16 of the
        // conversion), high half `x[2p+1][i]` (words 16..32).
        let idx = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
            1, 16, 0,
        );
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            for p in 0..c.div_ceil(2) {
                let lo = src.add(2 * p * bs);
                let hi = (2 * p + 1 < c).then(|| src.add((2 * p + 1) * bs));
                for j in 0..STRIP / 16 {
                    let a = _mm512_loadu_ps(lo.add(16 * j));
                    let b = hi.map_or(_mm512_setzero_ps(), |h| _mm512_loadu_ps(h.add(16 * j)));
                    let h: __m512bh = _mm512_cvtne2ps_pbh(b, a);
                    let v = _mm512_permutexvar_epi16(idx, std::mem::transmute::<__m512bh, __m512i>(h));
                    _mm512_store_si512(dst.add(p * STRIP + 16 * j).cast(), v);
                }
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
        let Store { y, res, rows, plane, .. } = *st;
        // SAFETY (whole body): pointers and extents as the caller guarantees.
        unsafe {
            // The next strip's output (and residual) lines, as the float32 kernel fetches them.
            for r in 0..rows {
                for j in 0..NV {
                    let at = r * plane + STRIP + 16 * j;
                    if let Some(res) = res {
                        _mm_prefetch::<_MM_HINT_T0>(res.wrapping_add(at).cast());
                    }
                    _mm_prefetch::<_MM_HINT_ET0>(y.wrapping_add(at).cast());
                }
            }
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
