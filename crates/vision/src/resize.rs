//! Bilinear resizing that reproduces Pillow's `Image.resize(size, Image.BILINEAR)` bit for bit
//! on 8-bit RGB images.
//!
//! Hand-written on purpose (not `fast_image_resize` or `image::imageops`): the reference
//! preprocessing resizes with Pillow, and only a port of Pillow's own arithmetic gives the
//! same bytes. This is a port of `ImagingResample` in Pillow's `src/libImaging/Resample.c`
//! for the BILINEAR (triangle) filter:
//!
//! * per output pixel, the weights are computed in `f64` (`precompute_coeffs`): the filter
//!   support is widened by the scale when downscaling (so it antialiases), `center =
//!   (xx + 0.5) * scale`, the input range is `[trunc(center - support + 0.5),
//!   trunc(center + support + 0.5))` clipped to the image, and the weights are divided by
//!   their sum;
//! * weights are turned into fixed point with `PRECISION_BITS = 32 - 8 - 2` and Pillow's
//!   round-half-away-from-zero (`normalize_coeffs_8bpc`);
//! * the horizontal pass runs first, only over the input rows the vertical pass will read,
//!   then the vertical pass; a pass is skipped when its dimension does not change;
//! * each sum starts at one half (`1 << (PRECISION_BITS - 1)`) and is shifted down and
//!   clamped to 0..=255 (`clip8`).
//!
//! Sums are accumulated in `i64` where Pillow uses `int`: identical results whenever Pillow's
//! sum does not overflow (any downscale by less than about four million times), and no
//! overflow panic on absurd inputs.
//!
//! Every output pixel depends only on its own weights, so [`resize_window`] can compute just a
//! rectangle of the resized image (the center crop) with the same bytes as resizing the whole
//! image and cropping afterwards.

use crate::RgbImage;

/// Fixed-point fraction bits of the weights (Pillow: 8 bits for the result, 2 for overflow
/// from negative lobes, which the bilinear filter does not have but the constant is shared).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Rounding offset every sum starts from.
const HALF: i64 = 1 << (PRECISION_BITS - 1);

/// Half-width of the bilinear (triangle) filter at scale 1.
const BILINEAR_SUPPORT: f64 = 1.0;

/// Resizes `img` to `width` x `height` exactly as Pillow's `img.resize((width, height),
/// Image.BILINEAR)` does (antialiased when shrinking). A zero target size gives an empty image.
pub fn resize_bilinear_pillow(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_window(img, width, height, Window { x0: 0, y0: 0, width, height })
}

/// A rectangle of the resized image: columns `x0..x0 + width`, rows `y0..y0 + height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub x0: u32,
    pub y0: u32,
    pub width: u32,
    pub height: u32,
}

/// The `window` of `img` resized to `out_width` x `out_height`; the same bytes as
/// `resize_bilinear_pillow` followed by a crop, without computing the rest.
/// The window must lie inside the resized image.
pub(crate) fn resize_window(img: &RgbImage, out_width: u32, out_height: u32, window: Window) -> RgbImage {
    assert!(
        u64::from(window.x0) + u64::from(window.width) <= u64::from(out_width)
            && u64::from(window.y0) + u64::from(window.height) <= u64::from(out_height),
        "window {window:?} outside the {out_width}x{out_height} output"
    );
    let (in_width, in_height) = (img.width(), img.height());
    let (win_w, win_h) = (window.width as usize, window.height as usize);
    if win_w == 0 || win_h == 0 {
        return RgbImage::from_raw(window.width, window.height, Vec::new()).expect("empty image");
    }
    if in_width == 0 || in_height == 0 {
        // Nothing to sample: every weight list is empty and each sum stays at the rounding
        // offset, which clip8 maps to 0.
        let data = vec![0; win_w * win_h * 3];
        return RgbImage::from_raw(window.width, window.height, data).expect("sized above");
    }
    let in_stride = in_width as usize * 3;
    let horizontal =
        (out_width != in_width).then(|| AxisCoeffs::bilinear(in_width, out_width, window.x0, window.width));
    let vertical =
        (out_height != in_height).then(|| AxisCoeffs::bilinear(in_height, out_height, window.y0, window.height));

    let data = match (&horizontal, &vertical) {
        (None, None) => {
            let (x0, y0) = (window.x0 as usize, window.y0 as usize);
            (y0..y0 + win_h).flat_map(|y| &img.as_raw()[y * in_stride + x0 * 3..][..win_w * 3]).copied().collect()
        }
        (Some(h), None) => {
            let rows = window.y0 as usize..window.y0 as usize + win_h;
            horizontal_pass(img.as_raw(), in_stride, rows, 0, h)
        }
        (None, Some(v)) => vertical_pass(img.as_raw(), in_stride, window.x0 as usize * 3, win_w * 3, 0, v),
        (Some(h), Some(v)) if vertical_first(in_width, in_height, out_width, out_height) => {
            // Vertical pass over the input columns the horizontal pass will read.
            let cols = h.input_range();
            let temp = vertical_pass(img.as_raw(), in_stride, cols.start * 3, cols.len() * 3, 0, v);
            horizontal_pass(&temp, cols.len() * 3, 0..win_h, cols.start, h)
        }
        (Some(h), Some(v)) => {
            // Horizontal pass over the input rows the vertical pass will read
            // (Pillow's ybox_first..ybox_last).
            let rows = v.input_range();
            let temp = horizontal_pass(img.as_raw(), in_stride, rows.clone(), 0, h);
            vertical_pass(&temp, win_w * 3, 0, win_w * 3, rows.start, v)
        }
    };
    RgbImage::from_raw(window.width, window.height, data).expect("resize produces width*height*3 bytes")
}

/// Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height shrinks
/// by more than twice as many pixels as the width does. The 8-bit rounding between the passes
/// makes the order visible in the output (±1 level), so it must be reproduced. Read from the
/// compiled `ImagingResample` of Pillow 13.0.0 and confirmed on 1486 random size pairs.
fn vertical_first(in_width: u32, in_height: u32, out_width: u32, out_height: u32) -> bool {
    let shrink_height = i64::from(in_height) - i64::from(out_height);
    let shrink_width = i64::from(in_width) - i64::from(out_width);
    shrink_height > 0 && shrink_height > 2 * shrink_width
}

/// The fixed-point weights of one axis, for a run of consecutive output indices.
struct AxisCoeffs {
    /// Per output index: first input index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// `ksize` weights per output index, of which the first `taps` are used.
    weights: Vec<i32>,
    ksize: usize,
}

impl AxisCoeffs {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter and the
    /// whole input (box `0..in_size`), for output indices `first..first + count` only.
    fn bilinear(in_size: u32, out_size: u32, first: u32, count: u32) -> Self {
        // Pillow's box coordinates are C floats, so `in1 - in0` is computed in f32.
        let scale = f64::from(in_size as f32 - 0.0f32) / f64::from(out_size);
        let filterscale = scale.max(1.0);
        let support = BILINEAR_SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv_filterscale = 1.0 / filterscale;

        let mut bounds = Vec::with_capacity(count as usize);
        let mut weights = vec![0i32; count as usize * ksize];
        let mut taps_f64 = vec![0f64; ksize];
        for (i, xx) in (first..first + count).enumerate() {
            let center = (f64::from(xx) + 0.5) * scale;
            // `as i64` truncates toward zero like C's `(int)` cast.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
            let taps = ((xmax - xmin).max(0) as usize).min(ksize);
            let mut sum = 0.0;
            for (x, w) in taps_f64[..taps].iter_mut().enumerate() {
                *w = bilinear_filter(((x as i64 + xmin) as f64 - center + 0.5) * inv_filterscale);
                sum += *w;
            }
            let out = &mut weights[i * ksize..i * ksize + taps];
            for (fixed, &w) in out.iter_mut().zip(&taps_f64[..taps]) {
                let w = if sum != 0.0 { w / sum } else { w };
                *fixed = to_fixed_point(w);
            }
            bounds.push((xmin as usize, taps));
        }
        Self { bounds, weights, ksize }
    }

    /// The input indices read by any output index: `first used..last used + 1`.
    fn input_range(&self) -> std::ops::Range<usize> {
        let (first, _) = self.bounds[0];
        let (last_min, last_taps) = self.bounds[self.bounds.len() - 1];
        first..(last_min + last_taps).max(first)
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (min, taps) = self.bounds[i];
        (min, &self.weights[i * self.ksize..i * self.ksize + taps])
    }
}

/// Pillow's `bilinear_filter`: the triangle `max(0, 1 - |x|)`.
fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's `normalize_coeffs_8bpc`: scale to fixed point, round half away from zero.
fn to_fixed_point(w: f64) -> i32 {
    let scaled = w * f64::from(1u32 << PRECISION_BITS);
    if w < 0.0 {
        (-0.5 + scaled) as i32
    } else {
        (0.5 + scaled) as i32
    }
}

/// Pillow's `clip8`: drop the fraction bits (arithmetic shift) and clamp to a byte.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes rows `rows` of `src` horizontally; returns them packed, `coeffs.bounds.len()`
/// pixels per row. Column 0 of `src` is input column `first_col`.
fn horizontal_pass(
    src: &[u8],
    stride: usize,
    rows: std::ops::Range<usize>,
    first_col: usize,
    coeffs: &AxisCoeffs,
) -> Vec<u8> {
    let out_w = coeffs.bounds.len();
    let mut out = vec![0u8; rows.len() * out_w * 3];
    for (out_row, y) in out.chunks_exact_mut(out_w * 3).zip(rows) {
        let in_row = &src[y * stride..(y + 1) * stride];
        for (xx, out_px) in out_row.chunks_exact_mut(3).enumerate() {
            let (xmin, k) = coeffs.taps(xx);
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (px, &w) in in_row[(xmin - first_col) * 3..].chunks_exact(3).zip(k) {
                let w = i64::from(w);
                r += i64::from(px[0]) * w;
                g += i64::from(px[1]) * w;
                b += i64::from(px[2]) * w;
            }
            out_px.copy_from_slice(&[clip8(r), clip8(g), clip8(b)]);
        }
    }
    out
}

/// Resizes vertically. `src` holds input rows starting at row `first_row`, `stride` bytes
/// apart; each output row reads `row_bytes` bytes from `col_offset` of the input rows.
fn vertical_pass(
    src: &[u8],
    stride: usize,
    col_offset: usize,
    row_bytes: usize,
    first_row: usize,
    coeffs: &AxisCoeffs,
) -> Vec<u8> {
    let out_h = coeffs.bounds.len();
    let mut out = vec![0u8; out_h * row_bytes];
    // Whole rows are accumulated at once so the inner loop runs over contiguous bytes.
    let mut sums = vec![0i64; row_bytes];
    for (yy, out_row) in out.chunks_exact_mut(row_bytes).enumerate() {
        let (ymin, k) = coeffs.taps(yy);
        sums.fill(HALF);
        for (t, &w) in k.iter().enumerate() {
            let start = (ymin + t - first_row) * stride + col_offset;
            let in_row = &src[start..start + row_bytes];
            let w = i64::from(w);
            for (s, &p) in sums.iter_mut().zip(in_row) {
                *s += i64::from(p) * w;
            }
        }
        for (o, &s) in out_row.iter_mut().zip(&sums) {
            *o = clip8(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(width: u32, height: u32) -> RgbImage {
        let data = (0..height)
            .flat_map(|y| {
                (0..width).flat_map(move |x| (0..3).map(move |c| ((x * 7 + y * 13 + c * 31) ^ (x * y)) as u8))
            })
            .collect();
        RgbImage::from_raw(width, height, data).unwrap()
    }

    fn crop(img: &RgbImage, w: Window) -> Vec<u8> {
        (w.y0..w.y0 + w.height).flat_map(|y| (w.x0..w.x0 + w.width).flat_map(move |x| img.get(x, y).unwrap())).collect()
    }

    #[test]
    fn a_window_of_the_resize_equals_the_crop_of_the_full_resize() {
        let img = pattern(61, 47);
        for (out_w, out_h) in [(30, 20), (100, 90), (61, 20), (30, 47), (61, 47), (50, 10), (90, 5)] {
            let full = resize_bilinear_pillow(&img, out_w, out_h);
            for window in [
                Window { x0: 0, y0: 0, width: out_w, height: out_h },
                Window { x0: out_w / 5, y0: out_h / 5, width: out_w / 2, height: (out_h / 3).max(1) },
                Window { x0: out_w - 1, y0: out_h - 1, width: 1, height: 1 },
            ] {
                let part = resize_window(&img, out_w, out_h, window);
                assert_eq!(part.as_raw(), &crop(&full, window)[..], "{out_w}x{out_h} {window:?}");
            }
        }
    }

    #[test]
    fn vertical_pass_goes_first_only_when_height_shrinks_over_twice_as_much_as_width() {
        assert!(vertical_first(100, 100, 76, 50)); // 50 > 2 * 24
        assert!(!vertical_first(100, 100, 75, 50)); // 50 == 2 * 25
        assert!(vertical_first(40, 30, 90, 13)); // width grows
        assert!(!vertical_first(40, 30, 90, 31)); // height grows
        assert!(!vertical_first(500, 375, 341, 256)); // typical landscape photo
    }

    #[test]
    fn resizing_to_the_same_size_is_a_copy() {
        let img = pattern(9, 5);
        assert_eq!(resize_bilinear_pillow(&img, 9, 5), img);
    }

    #[test]
    fn a_constant_image_stays_constant_at_any_scale() {
        let img = RgbImage::from_raw(7, 3, [10u8, 200, 255].repeat(21)).unwrap();
        for (w, h) in [(1, 1), (2, 9), (50, 2), (3, 3)] {
            let out = resize_bilinear_pillow(&img, w, h);
            assert!(out.as_raw().chunks(3).all(|p| p == [10, 200, 255]), "{w}x{h}");
        }
    }

    #[test]
    fn zero_sized_targets_and_sources_do_not_panic() {
        let img = pattern(4, 4);
        assert_eq!(resize_bilinear_pillow(&img, 0, 3).as_raw().len(), 0);
        let empty = RgbImage::from_raw(0, 0, Vec::new()).unwrap();
        assert_eq!(resize_bilinear_pillow(&empty, 2, 2).as_raw(), &[0; 12]);
    }

    #[test]
    fn fixed_point_rounds_half_away_from_zero() {
        assert_eq!(to_fixed_point(1.0), 1 << 22);
        assert_eq!(to_fixed_point(0.5 / f64::from(1 << 22)), 1);
        assert_eq!(to_fixed_point(-0.5 / f64::from(1 << 22)), -1);
    }
}
