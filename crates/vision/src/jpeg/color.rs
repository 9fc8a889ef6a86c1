//! YCbCr -> RGB conversion in libjpeg-turbo's fixed point (jdcolor.c `build_ycc_rgb_table`
//! and `ycc_rgb_convert`): 16 fractional bits (`SCALEBITS`), the red and blue terms rounded
//! into per-level tables, the green term summed from two tables and shifted once, and the
//! result clamped to 0..=255 (`range_limit`).

const SCALEBITS: u32 = 16;
const ONE_HALF: i64 = 1 << (SCALEBITS - 1);

/// libjpeg's `FIX(x)`: `x` in 16.16 fixed point, rounded.
fn fix(x: f64) -> i64 {
    (x * f64::from(1u32 << SCALEBITS) + 0.5) as i64
}

/// The four per-level tables of `build_ycc_rgb_table`, indexed by the Cb or Cr sample.
pub(crate) struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i64; 256],
    cb_g: [i64; 256],
}

impl YccTables {
    pub(crate) fn new() -> Self {
        let mut t = Self { cr_r: [0; 256], cb_b: [0; 256], cr_g: [0; 256], cb_g: [0; 256] };
        for i in 0..256 {
            let x = i as i64 - 128; // CENTERJSAMPLE
            t.cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> SCALEBITS) as i32;
            t.cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> SCALEBITS) as i32;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + ONE_HALF;
        }
        t
    }

    /// Converts full-resolution Y, Cb, Cr planes (same length) to interleaved RGB.
    pub(crate) fn convert(&self, y: &[u8], cb: &[u8], cr: &[u8], rgb: &mut [u8]) {
        let clamp = |v: i32| v.clamp(0, 255) as u8;
        for (((px, &y), &cb), &cr) in rgb.chunks_exact_mut(3).zip(y).zip(cb).zip(cr) {
            let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
            px[0] = clamp(y + self.cr_r[cr]);
            px[1] = clamp(y + ((self.cb_g[cb] + self.cr_g[cr]) >> SCALEBITS) as i32);
            px[2] = clamp(y + self.cb_b[cb]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_constants_are_libjpegs() {
        assert_eq!([fix(1.402), fix(1.772), fix(0.71414), fix(0.34414)], [91881, 116130, 46802, 22554]);
    }

    #[test]
    fn neutral_chroma_keeps_gray_and_extremes_clamp() {
        let t = YccTables::new();
        let mut rgb = [0u8; 9];
        t.convert(&[0, 77, 255], &[128, 128, 255], &[128, 128, 255], &mut rgb);
        assert_eq!(&rgb[..6], &[0, 0, 0, 77, 77, 77]);
        // Y 255 with Cb = Cr = 255: red and blue saturate, green drops by (0.344 + 0.714) * 127 = 134 (floor of -133.9).
        assert_eq!(rgb[6..], [255, 121, 255]);
    }
}
