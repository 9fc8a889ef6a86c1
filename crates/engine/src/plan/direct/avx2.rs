//! The position kernel of the direct convolution for CPUs with AVX2 and FMA but no AVX-512
//! (AMD Zen 1–3, Intel client cores): the same arithmetic on the same packed layouts as the
//! `avx512` kernels, cut into register blocks that fit the 16 ymm registers. The 8 filters ×
//! `16·NV` positions of a call run as blocks of 4 filters × 24 positions (12 accumulators, 3
//! vector loads and 4 broadcasts per tap, [`tap_4x3`]) — two filter halves × two position
//! halves for 48-position strips — or of 4 × 16 for 32- and 16-position strips. Every output
//! is the sum of the same products in the same order (tap by tap, one FMA per tap) as the
//! AVX-512 kernel's, so both give the same bits. A band's last strip runs only the blocks
//! its positions need (`super::avx2_blocks`), and the epilogue is fused on grids of 8 or
//! more positions a row (the AVX-512 kernel's needs 16): one thread, single-conv models,
//! `scripts/ab_bench.py --rounds 4`, against whole strips and a separate epilogue pass:
//! 3×3 256 ch at 14×14 0.88×, 512 at 7×7 0.86×, 64 at 56×56 0.94×, 128 at 28×28 0.98×.
//!
//! The 1×1 convs have their own AVX2 kernel here ([`pointwise_block`]): the same 4 × 24
//! register block over strips packed just for it, in the opposite loop order to the AVX-512
//! wide-plane kernel's (see `DirectConv::wide_tile_avx2`).
//!
//! Measured on an AMD EPYC (Zen 3, AVX2 only, one thread, single-conv models,
//! `scripts/ab_bench.py`, minima of 6–8 alternated rounds) against the im2col + `gemm` path:
//! 3×3 64 ch at 56×56 0.86×, 128 at 28×28 0.88×, 512 at 7×7 0.95×, 3×3/2 128 ← 64 0.96×, the
//! 7×7/2 stem 0.72×, 256 at 14×14 0.97×. 1×1 convs read in place (as 4 × 24 blocks per
//! 32-channel chunk, the AVX-512 kernel's order) ran 0.84–0.88× the speed of `gemm`, which
//! packs its panels — hence [`pointwise_block`]'s packed strips.
//!
//! The narrow-plane kernel ([`micro_rows`]: 32 filters × 3 positions, the AVX-512 kernel's
//! filter panels) takes every k×k conv whose padded plane fits the narrow-plane band budget
//! (all of ResNet's at 224×224; `AVX2_ROWS_ACC` cuts large planes into bands of rows),
//! computing no padded-grid column (the position kernel computes 216 positions for 196
//! outputs at 14×14, 56 for 49 at 7×7). Against the position kernel, one thread,
//! single-conv models, `scripts/ab_bench.py --rounds 4–5`, minima: 3×3 256 ch at 14×14
//! 0.93–0.94×, 512 at 7×7 0.90–0.91×, 3×3/2 256 ← 256 from 28×28 0.87×, 512 ← 512 from
//! 14×14 0.85×, 64 at 56×56 0.94×, 128 at 28×28 0.96×, 3×3/2 128 from 56×56 0.88×, the
//! 7×7/2 stem 0.93×; two threads 0.90–0.96× (3×3/2 128 from 56×56 0.90× more with a band of
//! rows per thread instead of half the filters each). As 16 filters × 6 positions in sweeps
//! of 32 channels (an earlier form) it measured no better than the position kernel: a
//! sweep's filters and input rows must stay in the 32 KiB L1 together (16 channels here), and
//! a per-element epilogue and per-call divisions cost 6 % of a 14×14 layer (now 8 × 8
//! transposes and a position table). On 1×1 convs it ran no faster than the wide kernel
//! (2048 ← 512 at 7×7: 1.00×; 0.9× the speed at 56×56), which keeps them.

use std::arch::x86_64::*;

use super::pointwise::Store;
use super::{avx2_blocks, StripOut, KC_CHANNELS, MR};
use crate::plan::kernels::{lane_mask8 as lanes, store_prefix8};

/// Software prefetch distance along the packed filters, in floats (as the AVX-512 kernels).
const PF_DIST: usize = 512;

/// Filters per register block of the position kernel: half of [`MR`].
const HR: usize = MR / 2;

/// Lanes of a ymm vector.
const L: usize = 8;

/// `c[r][j] = Σ_kk a[kk·MR + r] · b[offs[kk] + 8j ..]` for `r < 4`, `j < V` (plus the sums at
/// `init`, rows `rs` apart): one register block of the position kernel. `a` points at the
/// block's first filter within the packed 8-filter rows.
///
/// # Safety
/// AVX2 and FMA available; as [`super::micro`] for `a`, `b` (`8·V` floats per tap) and `offs`.
#[inline(always)]
unsafe fn block<const V: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
    offs: *const isize,
    init: Option<(*const f32, usize)>,
) -> [[__m256; V]; HR] {
    // SAFETY (whole body): pointers and extents as the caller guarantees.
    unsafe {
        let mut c = sums::<V>(init);
        let mut ap = a;
        for kk in 0..k {
            // A hint only: prefetching past the end of `a` does not fault.
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(PF_DIST).cast());
            tap(&mut c, ap, b.offset(*offs.add(kk)));
            ap = ap.add(MR);
        }
        c
    }
}

/// `c[r][j] += a[r] · b[8j ..]` for `r < 4`, `j < V`: one tap of a register block from
/// intrinsics (3 vectors: [`tap_4x3`]).
///
/// # Safety
/// AVX2 and FMA available (the caller's target features); `a .. + 4` and `b .. + 8·V`
/// readable.
#[inline(always)]
unsafe fn tap<const V: usize>(c: &mut [[__m256; V]; HR], a: *const f32, b: *const f32) {
    // SAFETY (whole body): pointers and extents as the caller guarantees.
    unsafe {
        let mut bv = [_mm256_setzero_ps(); V];
        for (j, v) in bv.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(b.add(L * j));
        }
        for (r, row) in c.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(r));
            for (v, bj) in row.iter_mut().zip(&bv) {
                *v = _mm256_fmadd_ps(av, *bj, *v);
            }
        }
    }
}

/// A register block's accumulators: the sums at `init` (rows `rs` apart), or zeros.
///
/// # Safety
/// AVX available; `acc + r·rs .. + 8·V` readable for `r < 4` when given.
#[inline(always)]
unsafe fn sums<const V: usize>(init: Option<(*const f32, usize)>) -> [[__m256; V]; HR] {
    let mut c = [[_mm256_setzero_ps(); V]; HR];
    if let Some((acc, rs)) = init {
        for (r, row) in c.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                // SAFETY: the caller's contract.
                *v = unsafe { _mm256_loadu_ps(acc.add(r * rs + L * j)) };
            }
        }
    }
    c
}

/// `c[r][j] += a[r] · b[8j ..]` for `r < 4`, `j < 3`: one tap of the 4 × 24 register block,
/// in inline assembly. Its 12 accumulators, 3 vectors of `b` and a broadcast take all 16 ymm
/// registers; compiled from intrinsics, LLVM kept a second broadcast live and spilled an
/// accumulator to the stack every tap, a store-to-load chain per tap (a 1×1 prototype on
/// these blocks: 40 GFLOP/s from intrinsics, 64 in assembly, of a 102 peak).
macro_rules! tap_4x3 {
    ($c:ident, $ap:expr, $bp:expr) => {
        std::arch::asm!(
            "vmovups {b0}, ymmword ptr [{bp}]",
            "vmovups {b1}, ymmword ptr [{bp} + 32]",
            "vmovups {b2}, ymmword ptr [{bp} + 64]",
            "vbroadcastss {t}, dword ptr [{ap}]",
            "vfmadd231ps {c00}, {t}, {b0}",
            "vfmadd231ps {c01}, {t}, {b1}",
            "vfmadd231ps {c02}, {t}, {b2}",
            "vbroadcastss {t}, dword ptr [{ap} + 4]",
            "vfmadd231ps {c10}, {t}, {b0}",
            "vfmadd231ps {c11}, {t}, {b1}",
            "vfmadd231ps {c12}, {t}, {b2}",
            "vbroadcastss {t}, dword ptr [{ap} + 8]",
            "vfmadd231ps {c20}, {t}, {b0}",
            "vfmadd231ps {c21}, {t}, {b1}",
            "vfmadd231ps {c22}, {t}, {b2}",
            "vbroadcastss {t}, dword ptr [{ap} + 12]",
            "vfmadd231ps {c30}, {t}, {b0}",
            "vfmadd231ps {c31}, {t}, {b1}",
            "vfmadd231ps {c32}, {t}, {b2}",
            ap = in(reg) $ap,
            bp = in(reg) $bp,
            b0 = out(ymm_reg) _,
            b1 = out(ymm_reg) _,
            b2 = out(ymm_reg) _,
            t = out(ymm_reg) _,
            c00 = inout(ymm_reg) $c[0][0],
            c01 = inout(ymm_reg) $c[0][1],
            c02 = inout(ymm_reg) $c[0][2],
            c10 = inout(ymm_reg) $c[1][0],
            c11 = inout(ymm_reg) $c[1][1],
            c12 = inout(ymm_reg) $c[1][2],
            c20 = inout(ymm_reg) $c[2][0],
            c21 = inout(ymm_reg) $c[2][1],
            c22 = inout(ymm_reg) $c[2][2],
            c30 = inout(ymm_reg) $c[3][0],
            c31 = inout(ymm_reg) $c[3][1],
            c32 = inout(ymm_reg) $c[3][2],
            options(nostack, preserves_flags, readonly),
        )
    };
}

/// [`block`] for 3 vectors, on [`tap_4x3`].
///
/// # Safety
/// As [`block`].
#[target_feature(enable = "avx2,fma")]
unsafe fn block3(
    k: usize,
    a: *const f32,
    b: *const f32,
    offs: *const isize,
    init: Option<(*const f32, usize)>,
) -> [[__m256; 3]; HR] {
    // SAFETY (whole body): pointers and extents as the caller guarantees.
    unsafe {
        let mut c = sums::<3>(init);
        let mut ap = a;
        for kk in 0..k {
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(PF_DIST).cast());
            let bp = b.offset(*offs.add(kk));
            tap_4x3!(c, ap, bp);
            ap = ap.add(MR);
        }
        c
    }
}

/// [`super::micro`] on AVX2.
///
/// # Safety
/// As [`super::micro`], with AVX2 and FMA available instead of AVX-512F.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn micro<const NV: usize>(
    need: usize,
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
        for r0 in [0, HR] {
            for (j0, v) in avx2_blocks(NV, need) {
                let at = acc.add(r0 * acc_rs + j0);
                let init = accumulate.then_some((at.cast_const(), acc_rs));
                match v {
                    3 => store_block(&block3(k, a.add(r0), b.add(j0), offs, init), at, acc_rs),
                    2 => store_block(&block::<2>(k, a.add(r0), b.add(j0), offs, init), at, acc_rs),
                    1 => store_block(&block::<1>(k, a.add(r0), b.add(j0), offs, init), at, acc_rs),
                    _ => {}
                }
            }
        }
    }
}

/// Stores a register block at `at`, rows `rs` apart.
///
/// # Safety
/// AVX2 available; `at + r·rs .. + 8·V` writable for `r < 4`.
#[inline(always)]
unsafe fn store_block<const V: usize>(c: &[[__m256; V]; HR], at: *mut f32, rs: usize) {
    for (r, row) in c.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            // SAFETY: the caller's contract.
            unsafe { _mm256_storeu_ps(at.add(r * rs + L * j), *v) };
        }
    }
}

/// `relu?(v + bias + res[at ..])` stored at `y[at ..]` in the lanes of `m` (`count` of them
/// from lane `lo`; all 8 take plain loads and stores, and so does the store of lanes from 0:
/// [`store_prefix8`]).
///
/// # Safety
/// AVX2 available; the lanes of `m` at `y + at` (and `res + at`) lie in their buffers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_lanes(
    v: __m256,
    bias: __m256,
    res: Option<*const f32>,
    relu: bool,
    y: *mut f32,
    at: isize,
    (m, lo): (__m256i, isize),
    count: isize,
) {
    // SAFETY: the caller's contract; masked-off lanes are neither read nor written.
    unsafe {
        let mut x = _mm256_add_ps(v, bias);
        if let Some(res) = res {
            let r = if count == L as isize {
                _mm256_loadu_ps(res.wrapping_offset(at))
            } else {
                _mm256_maskload_ps(res.wrapping_offset(at), m)
            };
            x = _mm256_add_ps(x, r);
        }
        if relu {
            x = _mm256_max_ps(x, _mm256_setzero_ps());
        }
        if lo == 0 {
            store_prefix8(y.wrapping_offset(at), x, count as usize);
        } else {
            _mm256_maskstore_ps(y.wrapping_offset(at), m, x);
        }
    }
}

/// [`super::micro_store`] on AVX2.
///
/// # Safety
/// As [`super::micro_store`], with AVX2 and FMA available instead of AVX-512F.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn micro_store<const NV: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
    offs: *const isize,
    acc: Option<(*const f32, usize)>,
    out: &StripOut,
) {
    // SAFETY (whole body): pointers and extents as the caller guarantees; the masked stores
    // and loads touch only the lanes of valid outputs.
    unsafe {
        for r0 in [0, HR] {
            if r0 >= out.rows {
                break;
            }
            for (j0, v) in avx2_blocks(NV, out.positions.saturating_sub(out.q0)) {
                let init = acc.map(|(p, rs)| (p.add(r0 * rs + j0), rs));
                match v {
                    3 => store_out(&block3(k, a.add(r0), b.add(j0), offs, init), r0, j0, out),
                    2 => store_out(&block::<2>(k, a.add(r0), b.add(j0), offs, init), r0, j0, out),
                    1 => store_out(&block::<1>(k, a.add(r0), b.add(j0), offs, init), r0, j0, out),
                    _ => {}
                }
            }
        }
    }
}

/// The epilogue of [`micro_store`] for the register block of filters `r0 ..` and positions
/// `q0 + j0 ..`: valid columns only, at most two grid rows per vector (`wp ≥ 8`).
///
/// # Safety
/// As [`super::micro_store`].
#[inline(always)]
unsafe fn store_out<const V: usize>(c: &[[__m256; V]; HR], r0: usize, j0: usize, out: &StripOut) {
    // SAFETY (whole body): as the caller guarantees.
    unsafe {
        let zero = _mm256_setzero_ps();
        let (wp, ow) = (out.wp as isize, out.ow as isize);
        for j in 0..V {
            // Positions q + i: grid row `row`, columns c0 + i (i < wp − c0), then row + 1,
            // columns c0 + i − wp.
            let q = (out.q0 + j0 + L * j) as isize;
            let left = out.positions as isize - q;
            if left <= 0 {
                break;
            }
            let (row, c0) = (q / wp, q % wp);
            let (m1, n1) = lanes(0, (ow - c0).min(wp - c0).min(left));
            let (m2, n2) = lanes(wp - c0, (wp - c0 + ow).min(left));
            let o1 = row * ow + c0;
            let o2 = (row + 1) * ow + c0 - wp;
            for (r, v) in c.iter().enumerate().take(out.rows - r0) {
                let bias = out.bias.map_or(zero, |p| _mm256_set1_ps(*p.add(r0 + r)));
                let base = ((r0 + r) * out.plane) as isize;
                if n1 > 0 {
                    store_lanes(v[j], bias, out.res, out.relu, out.y, base + o1, (m1, 0), n1);
                }
                if n2 > 0 {
                    store_lanes(v[j], bias, out.res, out.relu, out.y, base + o2, (m2, wp - c0), n2);
                }
            }
        }
    }
}

/// [`super::store_segment`] on AVX2.
///
/// # Safety
/// AVX2 available; `src` (and `res`) at least as long as `dst`.
#[target_feature(enable = "avx2,fma")]
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
    // SAFETY (whole body): lanes of each mask lie below `n`; the caller's lengths cover them.
    unsafe {
        let (bv, zero) = (_mm256_set1_ps(bias), _mm256_setzero_ps());
        let mut i = 0;
        while i < n {
            let (m, count) = lanes(0, (n - i) as isize);
            let load = |p: *const f32| if count == L as isize { _mm256_loadu_ps(p) } else { _mm256_maskload_ps(p, m) };
            let mut v = load(s.add(i));
            if accumulate {
                v = _mm256_add_ps(load(d.add(i)), v);
            } else {
                v = _mm256_add_ps(v, bv);
                if let Some(r) = r {
                    v = _mm256_add_ps(v, load(r.add(i)));
                }
                if relu {
                    v = _mm256_max_ps(v, zero);
                }
            }
            store_prefix8(d.add(i), v, count as usize);
            i += L;
        }
    }
}

/// Channels per pass of the AVX2 pointwise kernel ([`pointwise_block`]): a 24-position
/// strip's rows of one pass (24 × 128 floats, 12 KiB) stay in L1 while every filter block of
/// the tile passes over them; wider inputs keep their partial sums in a per-thread tile
/// between passes. Keras ResNet-50 fast, one thread, Zen 3 (`resnet bench --profile`):
/// passes of 64, 256 or all channels were slower on most 1×1 shapes (256: 128 ← 512 at
/// 28×28 80.6 → 85.9 GFLOP/s with 128, 2048 ← 1024 at 7×7 66.9 → 79.4).
pub(super) const PW_PASS: usize = 128;

/// `c[r][j] = init + Σ_ch W[b·MR + r0 + r][ch] · xs[(ch − k0)·8V + 8j ..]` over channels `k`
/// (whole K chunks of [`KC_CHANNELS`], or up to `c`), for `r < 4`, `j < V`: one register
/// block of the pointwise kernel, on [`tap_4x3`] for 3 vectors.
///
/// # Safety
/// AVX2 and FMA available; `packed` holds `blocks·MR·c` floats in K chunks of
/// [`KC_CHANNELS`]; `xs .. + 8V·k.len()` readable; `init` as [`sums`].
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn pw_sums<const V: usize>(
    packed: *const f32,
    blocks: usize,
    c: usize,
    b: usize,
    r0: usize,
    xs: *const f32,
    k: std::ops::Range<usize>,
    init: Option<(*const f32, usize)>,
) -> [[__m256; V]; HR] {
    // SAFETY (whole body): pointers and extents as the caller guarantees.
    unsafe {
        let mut acc = sums::<V>(init);
        let mut bp = xs;
        let mut ch = k.start;
        while ch < k.end {
            let kn = KC_CHANNELS.min(c - ch);
            let mut ap = packed.add((ch * blocks + b * kn) * MR + r0);
            for _ in 0..kn {
                _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(PF_DIST).cast());
                if V == 3 {
                    // SAFETY: `[[__m256; V]; HR]` is `[[__m256; 3]; HR]` here.
                    let c3 = &mut *(&mut acc as *mut [[__m256; V]; HR]).cast::<[[__m256; 3]; HR]>();
                    tap_4x3!(c3, ap, bp);
                } else {
                    tap(&mut acc, ap, bp);
                }
                ap = ap.add(MR);
                bp = bp.add(L * V);
            }
            ch += kn;
        }
        acc
    }
}

/// One call of the AVX2 pointwise kernel: filters `r0 .. r0 + 4` of `st`'s block `b` (of
/// `blocks`) over channels `k` of a packed strip of `8·V` positions (`xs`: the row of
/// channel `k.start`, rows `8·V` floats apart, zeros past `n`). `partial`: the sums of the
/// earlier passes (read unless `k.start == 0`) and of this one (written unless `k.end == c`)
/// as 4 rows of `8·V` floats `rs` apart; the last pass stores `relu?(sum + bias + res)` in
/// `st`'s rows `r0 ..` (at most 4, `st.rows` in all), positions `.. n`. Each output is the
/// sum of the same products in the same order (channel by channel, one FMA each, from 0) as
/// the AVX-512 kernel's, with the same epilogue, so both give the same bits.
///
/// # Safety
/// AVX2 and FMA available; `packed`, `xs` as [`pw_sums`]; `partial` readable and writable
/// for 4 rows of `8·V` floats; `n ≤ 8·V`; `st.y + (r0 + r)·plane .. + n` (and the same of
/// `st.res`) lie in their buffers for `r0 + r < st.rows`, `y` aliases none of the inputs but
/// `res` (which may be `y`); `st.bias` holds `st.rows` values.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pointwise_block<const V: usize>(
    packed: *const f32,
    blocks: usize,
    c: usize,
    b: usize,
    r0: usize,
    xs: *const f32,
    k: std::ops::Range<usize>,
    partial: (*mut f32, usize),
    n: usize,
    st: &Store,
) {
    // SAFETY (whole body): pointers and extents as the caller guarantees.
    unsafe {
        let (acc_at, rs) = partial;
        let init = (k.start > 0).then_some((acc_at.cast_const(), rs));
        let last = k.end == c;
        if last {
            // The output (or residual) lines the epilogue touches, requested while the sums
            // run: 4 rows of up to 96 bytes in as many planes, too many streams for the
            // hardware prefetcher.
            let at = st.res.unwrap_or(st.y.cast_const()).wrapping_add(r0 * st.plane);
            for r in 0..HR.min(st.rows.saturating_sub(r0)) {
                let row = at.wrapping_add(r * st.plane);
                _mm_prefetch::<_MM_HINT_T0>(row.cast());
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(n - 1).cast());
            }
        }
        let acc = pw_sums::<V>(packed, blocks, c, b, r0, xs, k, init);
        if !last {
            store_block(&acc, acc_at, rs);
            return;
        }
        let zero = _mm256_setzero_ps();
        let y = st.y.add(r0 * st.plane);
        let res = st.res.map(|r| r.add(r0 * st.plane));
        let rows = st.rows.saturating_sub(r0).min(HR);
        if n == L * V && rows == HR {
            // A full strip of a full block (all but a tile's last strip): whole vectors, the
            // epilogue's options tested once, not per vector (the same operations).
            macro_rules! full {
                ($res:expr, $relu:expr) => {
                    for (r, row) in acc.iter().enumerate() {
                        let bias = st.bias.map_or(zero, |p| _mm256_set1_ps(*p.add(r0 + r)));
                        for (j, v) in row.iter().enumerate() {
                            let at = r * st.plane + L * j;
                            let mut x = _mm256_add_ps(*v, bias);
                            if let Some(res) = $res {
                                x = _mm256_add_ps(x, _mm256_loadu_ps(res.add(at)));
                            }
                            if $relu {
                                x = _mm256_max_ps(x, zero);
                            }
                            _mm256_storeu_ps(y.add(at), x);
                        }
                    }
                };
            }
            match (res, st.relu) {
                (Some(res), true) => full!(Some(res), true),
                (Some(res), false) => full!(Some(res), false),
                (None, true) => full!(None::<*const f32>, true),
                (None, false) => full!(None::<*const f32>, false),
            }
            return;
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            let bias = st.bias.map_or(zero, |p| _mm256_set1_ps(*p.add(r0 + r)));
            for (j, v) in row.iter().enumerate() {
                let (m, count) = lanes(0, n as isize - (L * j) as isize);
                if count <= 0 {
                    break;
                }
                store_lanes(*v, bias, res, st.relu, y, (r * st.plane + L * j) as isize, (m, 0), count);
            }
        }
    }
}

/// The last 1 or 2 positions of a pointwise tile (7×7 planes: 49 = 2·24 + 1) with the
/// vectors along the filters: `tail[(g·R + p)·8 + f] (+)= Σ_ch W[(b0 + g)·MR + f][ch] ·
/// xs[(ch − k.start)·8 + p]` over channels `k`, for `g < G` blocks, `p < R`, `f < 8`, from
/// the stored sums unless `k.start == 0`. Run right after the blocks' strip calls, whose
/// filters it reads again from L1; `G·R` independent FMA chains. The same products in the
/// same order (channel by channel, one FMA each) as the strip kernels, so the same bits.
///
/// # Safety
/// AVX2 and FMA available; `packed` holds `blocks·MR·c` floats in K chunks of
/// [`KC_CHANNELS`] and `b0 + G ≤ blocks`; `xs .. + 8·k.len()` readable; `tail .. + G·R·8`
/// readable and writable.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pointwise_tail<const G: usize, const R: usize>(
    packed: *const f32,
    blocks: usize,
    c: usize,
    b0: usize,
    xs: *const f32,
    k: std::ops::Range<usize>,
    tail: *mut f32,
) {
    // SAFETY (whole body): pointers and extents as the caller guarantees.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); R]; G];
        if k.start > 0 {
            for (g, row) in acc.iter_mut().enumerate() {
                for (p, v) in row.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(tail.add((g * R + p) * L));
                }
            }
        }
        let mut bp = xs;
        let mut ch = k.start;
        while ch < k.end {
            // Passes are whole K chunks (as in `pw_sums`): the chunk's panels hold `kn`
            // channel rows of MR filters each.
            let kn = KC_CHANNELS.min(c - ch);
            let chunk = packed.add(ch * blocks * MR);
            for q in 0..kn {
                for (g, row) in acc.iter_mut().enumerate() {
                    let w = _mm256_loadu_ps(chunk.add(((b0 + g) * kn + q) * MR));
                    for (p, v) in row.iter_mut().enumerate() {
                        *v = _mm256_fmadd_ps(_mm256_broadcast_ss(&*bp.add(p)), w, *v);
                    }
                }
                bp = bp.add(L);
            }
            ch += kn;
        }
        for (g, row) in acc.iter().enumerate() {
            for (p, v) in row.iter().enumerate() {
                _mm256_storeu_ps(tail.add((g * R + p) * L), *v);
            }
        }
    }
}

/// Output channels per call of the narrow-plane kernel ([`micro_rows`]): the `NC`-filter
/// panels of `DirectConv::by_channel`, four ymm vectors.
const ROW_FILTERS: usize = super::NC;

/// The narrow-plane kernel on AVX2: `acc[p·32 + f] (+)= Σ_kk a[kk·32 + f] · b[offs[kk] +
/// pos[p]]` for the first `n ≤ 3` of 3 positions (`pos[0] = 0`, `pos[1]`, `pos[2]` floats on;
/// a call of fewer positions repeats its last one and stores only `n`), `f < 32`. Its 12
/// accumulators, 3 broadcasts and a filter vector take all 16 ymm registers (in assembly,
/// `kernels::fma_3x4`, shared with the Winograd products); each tap's 32 filters are loaded
/// once and used three times. Every output is the sum of the same products in the same order
/// (tap by tap, one FMA each, from 0 or from the stored partial sums) as the position
/// kernel's, so both give the same bits. The call first prefetches its share `pf` of the
/// next sweep's lines (`LineFetch::all`); the taps run two per loop step.
///
/// # Safety
/// AVX2 and FMA available; `a` holds `k·32` floats; `b.offset(offs[i] + pos[p])` is readable
/// for every `i < k`, `p < 3`; `acc .. + n·32` is writable (and readable when `accumulate`)
/// and aliases none of the inputs.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn micro_rows(
    n: usize,
    k: usize,
    a: *const f32,
    pf: crate::plan::kernels::LineFetch,
    b: *const f32,
    pos: [isize; 3],
    offs: *const isize,
    acc: *mut f32,
    accumulate: bool,
) {
    debug_assert!((1..=3).contains(&n) && pos[0] == 0);
    let mut c = [[_mm256_setzero_ps(); 4]; 3];
    // SAFETY (whole body): pointers and extents as the caller guarantees.
    unsafe {
        if accumulate {
            for (p, row) in c.iter_mut().enumerate().take(n) {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(acc.add(p * ROW_FILTERS + L * j));
                }
            }
        }
        let (o1, o2) = (4 * pos[1], 4 * pos[2]);
        // The call's share of the next sweep's lines (a few), all before the taps: a test
        // per tap cost 1–3 % of a layer.
        pf.all();
        let mut ap = a;
        let mut kk = 0;
        while kk + 1 < k {
            let (b0, b1) = (b.offset(*offs.add(kk)), b.offset(*offs.add(kk + 1)));
            crate::plan::kernels::fma_3x4!(c, b0, o1, o2, ap);
            crate::plan::kernels::fma_3x4!(c, b1, o1, o2, ap.add(ROW_FILTERS));
            ap = ap.add(2 * ROW_FILTERS);
            kk += 2;
        }
        if kk < k {
            let bp = b.offset(*offs.add(kk));
            crate::plan::kernels::fma_3x4!(c, bp, o1, o2, ap);
        }
        for (p, row) in c.iter().enumerate().take(n) {
            for (j, v) in row.iter().enumerate() {
                _mm256_storeu_ps(acc.add(p * ROW_FILTERS + L * j), *v);
            }
        }
    }
}

/// The narrow-plane kernel's epilogue, on AVX2 and AVX-512 CPUs alike: `acc` holds `plane`
/// positions × 32 filters (`[p][f]`) of one block; filter `f < rows` goes to the `plane`
/// floats at `y + f·ys` as `relu?(sum + bias[f] + res[f·ys + p])`, in the order and with the
/// skips of `kernels::conv_epilogue_row` (so the same bits as a scalar copy and row
/// epilogue), 8 × 8 blocks transposed in registers. `res` may be `y` (each element read
/// before it is written).
///
/// # Safety
/// AVX2 available; `acc .. + plane·32` readable; rows `f < rows` of `plane` floats `ys`
/// apart at `y` (and `res`) lie in their buffers, `y`'s aliasing none but `res`; `bias`
/// holds `rows`.
#[target_feature(enable = "avx2,fma")]
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
    // SAFETY (whole body): as the caller guarantees; the tail's masked lanes lie below
    // `plane` and its rows are copied from the `n < 8` positions left.
    unsafe {
        let zero = _mm256_setzero_ps();
        for p0 in (0..plane).step_by(L) {
            for f0 in (0..rows).step_by(L) {
                let n = L.min(plane - p0);
                let mut r = [zero; L];
                if n == L {
                    for (i, v) in r.iter_mut().enumerate() {
                        *v = _mm256_loadu_ps(acc.add((p0 + i) * ROW_FILTERS + f0));
                    }
                } else {
                    for (i, v) in r.iter_mut().enumerate().take(n) {
                        *v = _mm256_loadu_ps(acc.add((p0 + i) * ROW_FILTERS + f0));
                    }
                }
                let (m, count) = lanes(0, n as isize);
                if relu || res.is_some() {
                    // The bias (and, with nothing added after it, the ReLU) on each
                    // position's vector of filters before the transpose: the same
                    // operations on the same values as after it, one vector each instead of
                    // a broadcast per filter.
                    let bv = match bias {
                        Some(b) if rows - f0 >= L => _mm256_loadu_ps(b.add(f0)),
                        Some(b) => _mm256_maskload_ps(b.add(f0), lanes(0, (rows - f0) as isize).0),
                        None => zero,
                    };
                    for v in &mut r {
                        *v = _mm256_add_ps(*v, bv);
                        if relu && res.is_none() {
                            *v = _mm256_max_ps(*v, zero);
                        }
                    }
                    let t = transpose8(r);
                    for (j, &v) in t.iter().enumerate().take(rows - f0) {
                        let at = (f0 + j) * ys + p0;
                        match res {
                            None => store_prefix8(y.add(at), v, count as usize),
                            Some(rp) => {
                                let rv = if count == L as isize {
                                    _mm256_loadu_ps(rp.add(at))
                                } else {
                                    _mm256_maskload_ps(rp.add(at), m)
                                };
                                let mut x = _mm256_add_ps(v, rv);
                                if relu {
                                    x = _mm256_max_ps(x, zero);
                                }
                                store_prefix8(y.add(at), x, count as usize);
                            }
                        }
                    }
                    continue;
                }
                let t = transpose8(r);
                for (j, &v) in t.iter().enumerate().take(rows - f0) {
                    let f = f0 + j;
                    let b = bias.map_or(0.0, |b| *b.add(f));
                    let at = (f * ys + p0) as isize;
                    let x = match res {
                        Some(_) => v,
                        None if relu || b != 0.0 => v,
                        None => {
                            store_prefix8(y.wrapping_offset(at), v, count as usize);
                            continue;
                        }
                    };
                    store_lanes(x, _mm256_set1_ps(b), res, relu, y, at, (m, 0), count);
                }
            }
        }
    }
}

/// The 8 × 8 transpose of `r` (row `i` of the result is lane `i` of every input).
#[inline(always)]
fn transpose8(r: [__m256; L]) -> [__m256; L] {
    // SAFETY: register operations only; the callers run with AVX available.
    unsafe {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }
}
