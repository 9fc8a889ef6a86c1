//! The reference ImageNet preprocessing (SPEC §3.1, `preprocess` in the model zoo's
//! `imagenet_preprocess.py`): shorter side to 256 with Pillow bilinear, center crop 224,
//! `(v / 255 - mean) / std` per channel, CHW float32.
//!
//! Every step reproduces the reference's arithmetic, not just its intent, so the tensor
//! matches it to the last bit when the decoded pixels match: Python 3's ties-to-even `round`
//! for the resized size, floor division for the crop origin, and NumPy's float precision for
//! the normalization (see [`Preprocess::normalize_into`]).

use crate::decode::{decode_rgb8, DecodeOptions};
use crate::resize::{resize_window, Window};
use crate::{RgbImage, VisionError};

/// ImageNet channel means (RGB) used by the zoo's ResNets, on the 0..1 scale.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB), on the 0..1 scale.
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Resize-then-center-crop preprocessing. `Default` is the model zoo's: 256 / 224 / ImageNet
/// mean and std.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// The shorter side is resized to this many pixels, keeping the aspect ratio.
    pub resize_shorter: u32,
    /// Edge length of the square center crop (the network's input size).
    pub crop: u32,
    /// Per-channel mean (RGB, 0..1 scale). `f64` because the reference subtracts a NumPy
    /// `float64` (storing it as `f32` changes about 450 of the 768 possible outputs).
    pub mean: [f64; 3],
    /// Per-channel standard deviation (RGB, 0..1 scale), `f64` for the same reason.
    pub std: [f64; 3],
}

impl Default for Preprocess {
    fn default() -> Self {
        Self { resize_shorter: 256, crop: 224, mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }
}

impl Preprocess {
    /// The zoo pipeline scaled to another crop size, keeping its crop ratio of 224/256 = 0.875:
    /// `resize_shorter = round(crop * 256 / 224)`.
    pub fn for_crop(crop: u32) -> Self {
        Self { resize_shorter: round_half_even(f64::from(crop) * 256.0 / 224.0) as u32, crop, ..Self::default() }
    }

    /// Size `(width, height)` of the image after the resize step, computed as the reference
    /// does: `ratio = resize_shorter / min(w, h)`; the longer side becomes
    /// `round(ratio * side)` with Python's ties-to-even `round`; a square image counts as
    /// portrait. Saturates at `u32::MAX` for absurd aspect ratios (see [`Preprocess::crop_rgb8`]).
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        let (w, h) = self.resized_size_u64(width, height);
        (saturate_u32(w), saturate_u32(h))
    }

    fn resized_size_u64(&self, width: u32, height: u32) -> (u64, u64) {
        let ratio = f64::from(self.resize_shorter) / f64::from(width.min(height));
        let shorter = u64::from(self.resize_shorter);
        // `as u64` saturates, and maps the NaN of a zero-sized image to 0.
        if width > height {
            (round_half_even(ratio * f64::from(width)) as u64, shorter)
        } else {
            (shorter, round_half_even(ratio * f64::from(height)) as u64)
        }
    }

    /// Top-left corner of the center crop in a `width` x `height` image:
    /// `(width / 2 - crop / 2, height / 2 - crop / 2)` with integer division, as the
    /// reference's `w//2 - crop_w//2`. `None` when the crop does not fit (the reference would
    /// silently return a smaller array, or wrap around with a negative start).
    pub fn center_crop_origin(&self, width: u32, height: u32) -> Option<(u32, u32)> {
        if self.crop > width || self.crop > height {
            return None;
        }
        Some((width / 2 - self.crop / 2, height / 2 - self.crop / 2))
    }

    /// Resize and center crop: the `crop` x `crop` uint8 RGB image the reference feeds to its
    /// normalization. Only the cropped part of the resized image is computed (same bytes).
    ///
    /// Errors: [`VisionError::ZeroSize`] for an empty image; [`VisionError::CropLargerThanImage`]
    /// when the resized image is smaller than the crop, which only happens when
    /// `crop > resize_shorter` or when the longer side would not fit in `u32`.
    pub fn crop_rgb8(&self, img: &RgbImage) -> Result<RgbImage, VisionError> {
        let (rw, rh, (x0, y0)) = self.checked_resize(img)?;
        let window = Window { x0, y0, width: self.crop, height: self.crop };
        Ok(resize_window(img, rw, rh, window))
    }

    /// Ten-crop (SPEC §5.5, the AlexNet/ResNet-paper test convention): from the resized
    /// image (shorter side `resize_shorter`, as [`Preprocess::crop_rgb8`]) the four corner
    /// crops and the center crop, each followed by its horizontal mirror: top-left, its
    /// mirror, top-right, its mirror, bottom-left, …, center, its mirror. The center crop is
    /// the same bytes as [`Preprocess::crop_rgb8`]; only the five windows are computed.
    pub fn ten_crop_rgb8(&self, img: &RgbImage) -> Result<Vec<RgbImage>, VisionError> {
        let (rw, rh, center) = self.checked_resize(img)?;
        let (right, bottom) = (rw - self.crop, rh - self.crop);
        let origins = [(0, 0), (right, 0), (0, bottom), (right, bottom), center];
        let mut crops = Vec::with_capacity(10);
        for (x0, y0) in origins {
            let crop = resize_window(img, rw, rh, Window { x0, y0, width: self.crop, height: self.crop });
            let mirrored = mirror_horizontally(&crop);
            crops.push(crop);
            crops.push(mirrored);
        }
        Ok(crops)
    }

    /// The resized size and the center-crop origin, or why the crop cannot be taken.
    fn checked_resize(&self, img: &RgbImage) -> Result<(u32, u32, (u32, u32)), VisionError> {
        let (width, height) = (img.width(), img.height());
        if width == 0 || height == 0 {
            return Err(VisionError::ZeroSize { width, height });
        }
        let (resized_w, resized_h) = self.resized_size_u64(width, height);
        let too_small = || VisionError::CropLargerThanImage {
            resized_width: resized_w,
            resized_height: resized_h,
            crop: self.crop,
        };
        let (rw, rh) =
            (u32::try_from(resized_w).map_err(|_| too_small())?, u32::try_from(resized_h).map_err(|_| too_small())?);
        let origin = self.center_crop_origin(rw, rh).ok_or_else(too_small)?;
        Ok((rw, rh, origin))
    }

    /// Writes `img` into `out` as CHW float32, `out[c][y][x] = (v / 255 - mean[c]) / std[c]`.
    ///
    /// The precision follows the reference under NumPy 2: `v / 255` is computed in `f32`
    /// (a float32 array divided by a Python int), then subtracting the `float64` mean
    /// promotes to `f64`, the division by the `f64` std stays in `f64`, and the result is
    /// stored as `f32`. Any other order (all-`f32`, or `(v - 255 mean) / (255 std)`) differs
    /// in the last bit for over 100 of the 256 levels per channel.
    ///
    /// `out` must hold exactly `3 * width * height` floats ([`VisionError::OutputSize`]).
    pub fn normalize_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<(), VisionError> {
        let plane = img.width() as usize * img.height() as usize;
        if out.len() != 3 * plane {
            return Err(VisionError::OutputSize { expected: 3 * plane, actual: out.len() });
        }
        // A byte has only 256 values: compute each channel's 256 results once.
        let table = self.normalization_table();
        for (c, out_plane) in out.chunks_exact_mut(plane.max(1)).enumerate().take(3) {
            for (o, px) in out_plane.iter_mut().zip(img.as_raw().chunks_exact(3)) {
                *o = table[c][usize::from(px[c])];
            }
        }
        Ok(())
    }

    fn normalization_table(&self) -> [[f32; 256]; 3] {
        let mut table = [[0f32; 256]; 3];
        for (c, row) in table.iter_mut().enumerate() {
            for (v, out) in row.iter_mut().enumerate() {
                let scaled = v as f32 / 255.0f32;
                *out = ((f64::from(scaled) - self.mean[c]) / self.std[c]) as f32;
            }
        }
        table
    }

    /// `img` normalized into a new CHW float32 vector of `3 * width * height` values
    /// (see [`Preprocess::normalize_into`]).
    pub fn tensor_chw(&self, img: &RgbImage) -> Vec<f32> {
        let mut out = vec![0f32; 3 * img.width() as usize * img.height() as usize];
        self.normalize_into(img, &mut out).expect("buffer sized from the image");
        out
    }
}

/// Decode, resize, crop and normalize: the reference `preprocess` on encoded image bytes.
/// Returns `3 * crop * crop` floats, CHW, RGB (add the batch axis to get `[1, 3, crop, crop]`).
pub fn preprocess_bytes(
    bytes: &[u8],
    decode: &DecodeOptions,
    preprocess: &Preprocess,
) -> Result<Vec<f32>, VisionError> {
    let image = decode_rgb8(bytes, decode)?;
    let cropped = preprocess.crop_rgb8(&image)?;
    Ok(preprocess.tensor_chw(&cropped))
}

/// `img` flipped left to right (Pillow's `Image.FLIP_LEFT_RIGHT`).
fn mirror_horizontally(img: &RgbImage) -> RgbImage {
    let row_bytes = img.width() as usize * 3;
    let mut data = Vec::with_capacity(img.as_raw().len());
    for row in img.as_raw().chunks_exact(row_bytes.max(1)) {
        data.extend(row.chunks_exact(3).rev().flatten());
    }
    RgbImage::from_raw(img.width(), img.height(), data).expect("same size as the input")
}

/// Python 3's `round(x)`: to the nearest integer, ties to even (`round(2.5) == 2`).
fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

fn saturate_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_even_matches_python_round() {
        // Python: [round(x) for x in (0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001, 341.5, 342.5)]
        let cases = [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-0.5, -0.0),
            (-1.5, -2.0),
            (2.4999, 2.0),
            (2.5001, 3.0),
            (341.5, 342.0),
            (342.5, 342.0),
        ];
        for (x, want) in cases {
            assert_eq!(round_half_even(x), want, "round({x})");
        }
    }

    #[test]
    fn resized_size_makes_the_shorter_side_256_and_rounds_the_other_like_python() {
        let p = Preprocess::default();
        assert_eq!(p.resized_size(500, 375), (341, 256)); // 341.33
        assert_eq!(p.resized_size(375, 500), (256, 341));
        assert_eq!(p.resized_size(300, 300), (256, 256));
        assert_eq!(p.resized_size(100, 150), (256, 384)); // upscaling
        assert_eq!(p.resized_size(256, 400), (256, 400));
        // 256/512 * 683 = 341.5 -> 342 (even); 256/512 * 685 = 342.5 -> 342 (even)
        assert_eq!(p.resized_size(683, 512), (342, 256));
        assert_eq!(p.resized_size(685, 512), (342, 256));
        assert_eq!(p.resized_size(512, 687), (256, 344)); // 343.5 -> 344
    }

    #[test]
    fn resized_size_saturates_instead_of_overflowing() {
        assert_eq!(Preprocess::default().resized_size(1, u32::MAX), (256, u32::MAX));
    }

    #[test]
    fn center_crop_offsets_use_floor_division_like_numpy_slicing() {
        let p = Preprocess::default();
        assert_eq!(p.center_crop_origin(341, 256), Some((58, 16)));
        assert_eq!(p.center_crop_origin(256, 341), Some((16, 58)));
        assert_eq!(p.center_crop_origin(225, 224), Some((0, 0)));
        assert_eq!(p.center_crop_origin(257, 257), Some((16, 16)));
        assert_eq!(p.center_crop_origin(223, 300), None);
    }

    #[test]
    fn for_crop_keeps_the_zoo_crop_ratio() {
        assert_eq!(Preprocess::for_crop(224), Preprocess::default());
        assert_eq!(Preprocess::for_crop(288).resize_shorter, 329); // 329.14
        assert_eq!(Preprocess::for_crop(320).resize_shorter, 366); // 365.71
    }

    #[test]
    fn crop_larger_than_the_resized_image_is_an_error() {
        let p = Preprocess { resize_shorter: 200, ..Preprocess::default() };
        let img = RgbImage::from_raw(300, 300, vec![0; 300 * 300 * 3]).unwrap();
        assert!(matches!(p.crop_rgb8(&img), Err(VisionError::CropLargerThanImage { crop: 224, .. })));
    }

    #[test]
    fn zero_sized_image_is_an_error_not_a_panic() {
        let img = RgbImage::from_raw(0, 5, Vec::new()).unwrap();
        assert!(matches!(Preprocess::default().crop_rgb8(&img), Err(VisionError::ZeroSize { .. })));
    }

    #[test]
    fn ten_crop_takes_corners_and_center_of_the_resized_image_with_their_mirrors() {
        // 40x30 with distinct pixels, resized to shorter side 20 (27x20), crops of 16.
        let data: Vec<u8> = (0..40 * 30 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let img = RgbImage::from_raw(40, 30, data).unwrap();
        let p = Preprocess { resize_shorter: 20, crop: 16, ..Preprocess::default() };
        let full = crate::resize_bilinear_pillow(&img, 27, 20);
        let cut = |x0: u32, y0: u32| {
            let mut d = Vec::new();
            for y in y0..y0 + 16 {
                for x in x0..x0 + 16 {
                    d.extend(full.get(x, y).unwrap());
                }
            }
            RgbImage::from_raw(16, 16, d).unwrap()
        };
        let crops = p.ten_crop_rgb8(&img).unwrap();
        assert_eq!(crops.len(), 10);
        let origins = [(0, 0), (11, 0), (0, 4), (11, 4), (27 / 2 - 8, 20 / 2 - 8)];
        for (i, (x0, y0)) in origins.into_iter().enumerate() {
            assert_eq!(crops[2 * i], cut(x0, y0), "crop {i}");
            let m = &crops[2 * i + 1];
            for y in 0..16 {
                for x in 0..16 {
                    assert_eq!(m.get(x, y), crops[2 * i].get(15 - x, y), "mirror {i} at {x},{y}");
                }
            }
        }
        assert_eq!(crops[8], p.crop_rgb8(&img).unwrap());
    }

    #[test]
    fn ten_crop_of_a_too_small_resize_is_an_error() {
        let p = Preprocess { resize_shorter: 200, ..Preprocess::default() };
        let img = RgbImage::from_raw(300, 300, vec![0; 300 * 300 * 3]).unwrap();
        assert!(matches!(p.ten_crop_rgb8(&img), Err(VisionError::CropLargerThanImage { crop: 224, .. })));
    }

    #[test]
    fn normalize_writes_chw_planes() {
        let img = RgbImage::from_raw(2, 1, vec![0, 128, 255, 255, 0, 128]).unwrap();
        let t = Preprocess::default().tensor_chw(&img);
        let f = |v: f32, c: usize| ((f64::from(v / 255.0) - IMAGENET_MEAN[c]) / IMAGENET_STD[c]) as f32;
        assert_eq!(t, vec![f(0.0, 0), f(255.0, 0), f(128.0, 1), f(0.0, 1), f(255.0, 2), f(128.0, 2)]);
    }

    #[test]
    fn normalize_into_rejects_a_wrong_output_length() {
        let img = RgbImage::from_raw(2, 2, vec![0; 12]).unwrap();
        let mut out = vec![0f32; 11];
        assert!(matches!(
            Preprocess::default().normalize_into(&img, &mut out),
            Err(VisionError::OutputSize { expected: 12, actual: 11 })
        ));
    }
}
