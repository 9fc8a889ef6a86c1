//! The 8x8 inverse DCT with dequantization: a port of libjpeg-turbo's `jpeg_idct_islow`
//! (jidctint.c, the default `JDCT_ISLOW` method Pillow decodes with), output range limit
//! included.
//!
//! Arithmetic is reproduced step for step: 13-bit fixed-point constants (`CONST_BITS`), two
//! extra bits of precision between the passes (`PASS1_BITS`), `DESCALE` rounding (add half,
//! arithmetic shift), the 32-bit `int` workspace between the passes, the "AC terms all zero"
//! shortcuts of both passes, and the final `range_limit[x & RANGE_MASK]` lookup. That lookup
//! wraps values far outside 0..255 (`x & 1023`) instead of clamping them, so garbage
//! coefficients give the same garbage pixels libjpeg gives. `JLONG` is 64 bits wide on the
//! LP64 platforms Pillow ships for, so intermediates are `i64` and cannot overflow.
//!
//! libjpeg-turbo's SIMD versions of this function are bit-exact with the C code as long as
//! the dequantized coefficients fit in 16 bits, which every real encoder's output does.

const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;

const FIX_0_298631336: i64 = 2446;
const FIX_0_390180644: i64 = 3196;
const FIX_0_541196100: i64 = 4433;
const FIX_0_765366865: i64 = 6270;
const FIX_0_899976223: i64 = 7373;
const FIX_1_175875602: i64 = 9633;
const FIX_1_501321110: i64 = 12299;
const FIX_1_847759065: i64 = 15137;
const FIX_1_961570560: i64 = 16069;
const FIX_2_053119869: i64 = 16819;
const FIX_2_562915447: i64 = 20995;
const FIX_3_072711026: i64 = 25172;

/// `RANGE_MASK` of jdct.h: `MAXJSAMPLE * 4 + 3`.
const RANGE_MASK: i64 = 1023;

/// libjpeg's `DESCALE(x, n)`: divide by `2^n`, rounding half up (arithmetic shift).
#[inline(always)]
fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// `IDCT_range_limit(cinfo)` (jdmaster.c `prepare_range_limit_table`), indexed by
/// `x & RANGE_MASK` where `x` is the IDCT output before `CENTERJSAMPLE` (128) is added.
/// Within -128..=127 it maps to `x + 128`; the wrapped remainder saturates to 255
/// (128..=511) or 0 (512..=895), and 896..=1023 are the negative values -128..=-1 again.
static RANGE_LIMIT: [u8; 1024] = {
    let mut table = [0u8; 1024];
    let mut m = 0;
    while m < 1024 {
        table[m] = match m {
            0..=127 => (m + 128) as u8,
            128..=511 => 255,
            512..=895 => 0,
            _ => (m - 896) as u8,
        };
        m += 1;
    }
    table
};

#[inline(always)]
fn range_limit(x: i64) -> u8 {
    RANGE_LIMIT[(x & RANGE_MASK) as usize]
}

/// The arithmetic `butterfly` needs: `i64` is libjpeg's `JLONG`; `i32` gives the same
/// results whenever nothing overflows, which `idct_islow` checks before using it.
trait Lane:
    Copy
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Shl<u32, Output = Self>
    + std::ops::AddAssign
    + std::ops::MulAssign
{
    fn constant(c: i64) -> Self;
}

impl Lane for i32 {
    #[inline(always)]
    fn constant(c: i64) -> Self {
        c as i32
    }
}

impl Lane for i64 {
    #[inline(always)]
    fn constant(c: i64) -> Self {
        c
    }
}

/// Largest intermediate of one `butterfly` per unit of input magnitude: the pass run with
/// every constant made positive and every input 1 (the `tmp11 + tmp2` output). Inputs up to
/// `I32_SAFE_INPUT` keep every intermediate, rounding term included, inside `i32`.
const BUTTERFLY_GAIN: i64 = 178_219;
const I32_SAFE_INPUT: i64 = (i32::MAX as i64 - (1 << 18)) / BUTTERFLY_GAIN;

/// One 1-D pass of the even/odd butterfly shared by both passes of `jpeg_idct_islow`, on
/// inputs already scaled as that pass expects. Returns the 8 outputs before descaling.
#[inline(always)]
fn butterfly<T: Lane>(s: [T; 8]) -> [T; 8] {
    let c = T::constant;
    // Even part: reverse the even part of the forward DCT.
    let (z2, z3) = (s[2], s[6]);
    let z1 = (z2 + z3) * c(FIX_0_541196100);
    let tmp2 = z1 + z3 * c(-FIX_1_847759065);
    let tmp3 = z1 + z2 * c(FIX_0_765366865);
    let tmp0 = (s[0] + s[4]) << CONST_BITS;
    let tmp1 = (s[0] - s[4]) << CONST_BITS;
    let tmp10 = tmp0 + tmp3;
    let tmp13 = tmp0 - tmp3;
    let tmp11 = tmp1 + tmp2;
    let tmp12 = tmp1 - tmp2;

    // Odd part.
    let (mut tmp0, mut tmp1, mut tmp2, mut tmp3) = (s[7], s[5], s[3], s[1]);
    let mut z1 = tmp0 + tmp3;
    let mut z2 = tmp1 + tmp2;
    let mut z3 = tmp0 + tmp2;
    let mut z4 = tmp1 + tmp3;
    let z5 = (z3 + z4) * c(FIX_1_175875602);
    tmp0 *= c(FIX_0_298631336);
    tmp1 *= c(FIX_2_053119869);
    tmp2 *= c(FIX_3_072711026);
    tmp3 *= c(FIX_1_501321110);
    z1 *= c(-FIX_0_899976223);
    z2 *= c(-FIX_2_562915447);
    z3 *= c(-FIX_1_961570560);
    z4 *= c(-FIX_0_390180644);
    z3 += z5;
    z4 += z5;
    tmp0 += z1 + z3;
    tmp1 += z2 + z4;
    tmp2 += z2 + z3;
    tmp3 += z1 + z4;

    [tmp10 + tmp3, tmp11 + tmp2, tmp12 + tmp1, tmp13 + tmp0, tmp13 - tmp0, tmp12 - tmp1, tmp11 - tmp2, tmp10 - tmp3]
}

/// Dequantizes `coefs` (natural order, as `JCOEF` = `i16`) with `quant` (natural order) and
/// writes the 8x8 pixel block to `out[offset + row * stride + col]`.
///
/// Each pass runs in `i32` when its inputs are small enough that no intermediate can
/// overflow (always, for real photos) and in `i64` otherwise; both give libjpeg's results.
///
/// # Panics
/// If `out` is shorter than `offset + 7 * stride + 8` (callers size their planes for whole
/// blocks).
pub(crate) fn idct_islow(coefs: &[i16; 64], quant: &[u16; 64], out: &mut [u8], offset: usize, stride: usize) {
    // i16 * u16 always fits in i32 (|product| <= 32768 * 65535 < 2^31).
    let mut deq = [0i32; 64];
    let mut max_input = 0i32;
    for ((d, &c), &q) in deq.iter_mut().zip(coefs).zip(quant) {
        *d = i32::from(c) * i32::from(q);
        max_input = max_input.max(d.abs());
    }
    let small = i64::from(max_input) <= I32_SAFE_INPUT;

    // Pass 1: columns from input, results (scaled up by 2^PASS1_BITS) into the workspace,
    // which is C `int`.
    let mut ws = [0i32; 64];
    for col in 0..8 {
        let column: [i32; 8] = std::array::from_fn(|row| deq[row * 8 + col]);
        if (1..8).all(|row| coefs[row * 8 + col] == 0) {
            let dc = (i64::from(column[0]) << PASS1_BITS) as i32;
            for row in 0..8 {
                ws[row * 8 + col] = dc;
            }
            continue;
        }
        if small {
            let o = butterfly(column);
            for row in 0..8 {
                ws[row * 8 + col] = descale_i32(o[row], CONST_BITS - PASS1_BITS);
            }
        } else {
            let o = butterfly(column.map(i64::from));
            for row in 0..8 {
                ws[row * 8 + col] = descale(o[row], CONST_BITS - PASS1_BITS) as i32;
            }
        }
    }

    // Pass 2: rows from the workspace to output samples.
    let small = ws.iter().all(|&v| i64::from(v).abs() <= I32_SAFE_INPUT);
    for (row, w) in ws.chunks_exact(8).enumerate() {
        let dst = &mut out[offset + row * stride..offset + row * stride + 8];
        let w: [i32; 8] = std::array::from_fn(|i| w[i]);
        if w[1..].iter().all(|&v| v == 0) {
            dst.fill(range_limit(descale(i64::from(w[0]), PASS1_BITS + 3)));
            continue;
        }
        if small {
            for (d, v) in dst.iter_mut().zip(butterfly(w)) {
                *d = RANGE_LIMIT[(descale_i32(v, CONST_BITS + PASS1_BITS + 3) & RANGE_MASK as i32) as usize];
            }
        } else {
            for (d, v) in dst.iter_mut().zip(butterfly(w.map(i64::from))) {
                *d = range_limit(descale(v, CONST_BITS + PASS1_BITS + 3));
            }
        }
    }
}

/// `descale` for the `i32` fast path (callers guarantee `x + 2^(n-1)` fits).
#[inline(always)]
fn descale_i32(x: i32, n: u32) -> i32 {
    (x + (1 << (n - 1))) >> n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook 2-D IDCT in f64, rounded and clamped.
    fn reference_idct(coefs: &[i16; 64], quant: &[u16; 64]) -> [u8; 64] {
        let mut out = [0u8; 64];
        for y in 0..8 {
            for x in 0..8 {
                let mut sum = 0.0;
                for v in 0..8 {
                    for u in 0..8 {
                        let cu = if u == 0 { std::f64::consts::FRAC_1_SQRT_2 } else { 1.0 };
                        let cv = if v == 0 { std::f64::consts::FRAC_1_SQRT_2 } else { 1.0 };
                        let c = f64::from(coefs[v * 8 + u]) * f64::from(quant[v * 8 + u]);
                        sum += cu
                            * cv
                            * c
                            * ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos()
                            * ((2 * y + 1) as f64 * v as f64 * std::f64::consts::PI / 16.0).cos();
                    }
                }
                out[y * 8 + x] = (sum / 4.0 + 128.0).round().clamp(0.0, 255.0) as u8;
            }
        }
        out
    }

    fn run(coefs: &[i16; 64], quant: &[u16; 64]) -> [u8; 64] {
        let mut out = [0u8; 64];
        idct_islow(coefs, quant, &mut out, 0, 8);
        out
    }

    #[test]
    fn matches_a_float_idct_within_one_level_on_random_blocks() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let quant = [1u16; 64];
        for _ in 0..2000 {
            let mut coefs = [0i16; 64];
            // Typical spectra: a DC term and a few small AC terms that keep pixels in range.
            coefs[0] = (next() % 1200) as i16 - 600;
            for _ in 0..next() % 12 {
                let k = 1 + (next() % 63) as usize;
                coefs[k] = (next() % 81) as i16 - 40;
            }
            let ours = run(&coefs, &quant);
            let reference = reference_idct(&coefs, &quant);
            for (a, b) in ours.iter().zip(reference) {
                assert!(a.abs_diff(b) <= 1, "{coefs:?}: {ours:?} vs {reference:?}");
            }
        }
    }

    #[test]
    fn a_dc_only_block_is_flat() {
        let mut coefs = [0i16; 64];
        let quant = [16u16; 64];
        for (dc, level) in [(0i16, 128u8), (8, 144), (-8, 112), (3, 134), (-3, 122)] {
            coefs[0] = dc;
            // DC * 16 / 8 + 128, rounding half up through DESCALE.
            assert_eq!(run(&coefs, &quant), [level; 64], "dc {dc}");
        }
    }

    #[test]
    fn saturating_coefficients_clamp_then_wrap_like_the_range_limit_table() {
        let quant = [1u16; 64];
        let mut coefs = [0i16; 64];
        coefs[0] = 1016; // 1016 / 8 = 127 -> 255
        assert_eq!(run(&coefs, &quant), [255; 64]);
        coefs[0] = 4000; // 500 above the centre: still inside the saturating part
        assert_eq!(run(&coefs, &quant), [255; 64]);
        coefs[0] = -4000; // -500 -> 0
        assert_eq!(run(&coefs, &quant), [0; 64]);
        coefs[0] = 8 * 600; // 600 & 1023 lies in the "0" part: wraps to black, as libjpeg
        assert_eq!(run(&coefs, &quant), [0; 64]);
        coefs[0] = 8 * 1024; // a whole period: back to mid-gray
        assert_eq!(run(&coefs, &quant), [128; 64]);
        // Extreme values everywhere never overflow.
        let extreme = [i16::MIN; 64];
        let _ = run(&extreme, &[u16::MAX; 64]);
        let extreme = [i16::MAX; 64];
        let _ = run(&extreme, &[u16::MAX; 64]);
    }

    #[test]
    fn range_limit_table_matches_libjpeg_layout() {
        assert_eq!(range_limit(-128), 0);
        assert_eq!(range_limit(-1), 127);
        assert_eq!(range_limit(0), 128);
        assert_eq!(range_limit(127), 255);
        assert_eq!(range_limit(128), 255);
        assert_eq!(range_limit(511), 255);
        assert_eq!(range_limit(512), 0);
        assert_eq!(range_limit(-129), 0);
        assert_eq!(range_limit(-512), 0);
    }
}
