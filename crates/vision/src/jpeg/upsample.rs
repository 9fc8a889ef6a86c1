//! Chroma upsampling to the output size, as libjpeg-turbo does with its default
//! `do_fancy_upsampling = TRUE` (jdsample.c `jinit_upsampler` picks the method):
//! * same size: a copy (`fullsize_upsample`);
//! * 2:1 horizontally: `h2v1_fancy_upsample` (triangle filter, 3/4 + 1/4), or the box
//!   `h2v1_upsample` when the component is at most 2 samples wide;
//! * 2:1 vertically: `h1v2_fancy_upsample`;
//! * 2:1 both ways: `h2v2_fancy_upsample` (9/16, 3/16, 3/16, 1/16), or the box
//!   `h2v2_upsample` when at most 2 samples wide;
//! * other integer ratios: the box `int_upsample`.
//!
//! The vertical filters need the rows above and below each row; jdmainct.c supplies the
//! first row again above the image and the last real row (`downsampled_height - 1`) again
//! below it, so rows are clamped to that range here. Columns past `downsampled_width` are
//! never read: the filters special-case the first and last column.

use super::JpegError;

/// A component's decoded samples: `stride` bytes per row, at least `height` rows, of
/// which the first `width` columns and `height` rows are real (`downsampled_*`).
pub(crate) struct ComponentPlane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl ComponentPlane<'_> {
    #[inline]
    fn row(&self, y: usize) -> &[u8] {
        let y = y.min(self.height - 1);
        &self.data[y * self.stride..y * self.stride + self.width]
    }
}

/// Upsamples a component with sampling factors `(h, v)` in a frame whose largest are
/// `(max_h, max_v)` to `out_width * out_height` samples, row-major, no padding.
pub(crate) fn upsample(
    plane: &ComponentPlane<'_>,
    (h, v): (usize, usize),
    (max_h, max_v): (usize, usize),
    out_width: usize,
    out_height: usize,
) -> Result<Vec<u8>, JpegError> {
    let mut out = vec![0u8; out_width * out_height];
    let mut wide = vec![0u8; 2 * plane.width + max_h];
    let fancy_ok = plane.width > 2;
    for (y, dst) in out.chunks_exact_mut(out_width).enumerate() {
        if h == max_h && v == max_v {
            dst.copy_from_slice(&plane.row(y)[..out_width]);
        } else if 2 * h == max_h && v == max_v {
            if fancy_ok {
                h2v1_fancy_row(plane.row(y), &mut wide);
                dst.copy_from_slice(&wide[..out_width]);
            } else {
                box_row(plane.row(y), 2, dst);
            }
        } else if h == max_h && 2 * v == max_v {
            let (near, far, bias) = vertical_neighbours(y);
            let (near, far) = (plane.row(near), plane.row(far));
            for (d, (&n, &f)) in dst.iter_mut().zip(near.iter().zip(far)) {
                *d = ((3 * u32::from(n) + u32::from(f) + bias) >> 2) as u8;
            }
        } else if 2 * h == max_h && 2 * v == max_v {
            if fancy_ok {
                let (near, far, _) = vertical_neighbours(y);
                h2v2_fancy_row(plane.row(near), plane.row(far), &mut wide);
                dst.copy_from_slice(&wide[..out_width]);
            } else {
                box_row(plane.row(y / 2), 2, dst);
            }
        } else if max_h % h == 0 && max_v % v == 0 {
            box_row(plane.row(y / (max_v / v)), max_h / h, dst);
        } else {
            return Err(JpegError::Unsupported(format!("fractional sampling {h}x{v} of {max_h}x{max_v}")));
        }
    }
    Ok(out)
}

/// For output row `y` of a 2:1 vertical filter: the nearer input row, the farther one
/// (above for even `y`, below for odd, before clamping) and `h1v2_fancy_upsample`'s bias.
fn vertical_neighbours(y: usize) -> (usize, usize, u32) {
    let near = y / 2;
    if y.is_multiple_of(2) {
        (near, near.saturating_sub(1), 1)
    } else {
        (near, near + 1, 2)
    }
}

/// `h2v1_upsample` / `int_upsample` along a row: each sample repeated `factor` times.
fn box_row(src: &[u8], factor: usize, dst: &mut [u8]) {
    for (x, d) in dst.iter_mut().enumerate() {
        *d = src[x / factor];
    }
}

/// `h2v1_fancy_upsample` for one row of at least 3 samples into `2 * src.len()` samples.
fn h2v1_fancy_row(src: &[u8], dst: &mut [u8]) {
    let n = src.len();
    let s = |i: usize| u32::from(src[i]);
    dst[0] = src[0];
    dst[1] = ((s(0) * 3 + s(1) + 2) >> 2) as u8;
    for i in 1..n - 1 {
        let center = s(i) * 3;
        dst[2 * i] = ((center + s(i - 1) + 1) >> 2) as u8;
        dst[2 * i + 1] = ((center + s(i + 1) + 2) >> 2) as u8;
    }
    dst[2 * n - 2] = ((s(n - 1) * 3 + s(n - 2) + 1) >> 2) as u8;
    dst[2 * n - 1] = src[n - 1];
}

/// `h2v2_fancy_upsample` for one output row: `near` is the input row it lies in, `far` the
/// neighbouring one on its side; at least 3 samples wide.
fn h2v2_fancy_row(near: &[u8], far: &[u8], dst: &mut [u8]) {
    let n = near.len();
    let colsum = |i: usize| u32::from(near[i]) * 3 + u32::from(far[i]);
    let mut this = colsum(0);
    let mut next = colsum(1);
    dst[0] = ((this * 4 + 8) >> 4) as u8;
    dst[1] = ((this * 3 + next + 7) >> 4) as u8;
    let mut last = this;
    this = next;
    for i in 1..n - 1 {
        next = colsum(i + 1);
        dst[2 * i] = ((this * 3 + last + 8) >> 4) as u8;
        dst[2 * i + 1] = ((this * 3 + next + 7) >> 4) as u8;
        last = this;
        this = next;
    }
    dst[2 * n - 2] = ((this * 3 + last + 8) >> 4) as u8;
    dst[2 * n - 1] = ((this * 4 + 7) >> 4) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2v1_fancy_weights_the_nearer_sample_three_quarters() {
        let mut out = [0u8; 6];
        h2v1_fancy_row(&[0, 100, 200], &mut out);
        assert_eq!(out, [0, 25, 75, 125, 175, 200]);
    }

    #[test]
    fn h2v2_replicates_the_first_and_last_rows_at_the_edges() {
        // 3x2 component -> 6x4 output: row 0 uses row 0 as its "above" neighbour.
        let data = [10, 10, 10, 50, 50, 50];
        let plane = ComponentPlane { data: &data, stride: 3, width: 3, height: 2 };
        let out = upsample(&plane, (1, 1), (2, 2), 6, 4).unwrap();
        assert_eq!(&out[0..6], &[10; 6]);
        assert_eq!(&out[6..12], &[20; 6]); // (3*10 + 50) * 4 / 16 = 20
        assert_eq!(&out[12..18], &[40; 6]);
        assert_eq!(&out[18..24], &[50; 6]);
    }
}
