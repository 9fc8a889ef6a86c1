//! Random training augmentations on [`RgbImage`] (SPEC §6.1, the zoo's `train_resnet.ipynb`
//! transforms with MXNet 1.2's semantics): random resized crop, horizontal flip, color jitter
//! (brightness, contrast, saturation in random order) and AlexNet-style PCA lighting noise.
//!
//! Every random choice is drawn from the caller's RNG through the small helpers at the end of
//! this file ([`uniform`], [`below`], [`normal`], [`shuffle`]), which use only
//! `next_u64` of the generator: with a seeded ChaCha8 the same seed gives the same image on
//! every platform and every `rand` release (rand's own range sampling may change between
//! versions). Pixel values stay `u8`: each step rounds to nearest and saturates to 0..=255, as
//! MXNet's uint8 image ops saturate. Images are moved in and out (`RgbImage` by value) so the
//! per-pixel steps work in place; lookup tables replace per-pixel float math where a step is
//! a function of the byte alone (brightness, contrast, lighting).
//!
//! One documented departure from MXNet 1.x: saturation blends each pixel with its proper luma
//! `0.299 R + 0.587 G + 0.114 B`. MXNet 1.2–1.9's loop assigns instead of accumulating, so its
//! "gray" is only `0.114 B`; that quirk is deliberately not reproduced.

use rand::Rng;

use crate::{resize_bilinear_pillow, RgbImage, VisionError};

/// `RandomResizedCrop`'s default range of the crop area, as a fraction of the image area.
pub const DEFAULT_SCALE: (f64, f64) = (0.08, 1.0);
/// `RandomResizedCrop`'s default range of the crop aspect ratio (width / height), drawn
/// uniformly (not log-uniformly, unlike torchvision).
pub const DEFAULT_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
/// Attempts at a fitting random box before the center-crop fallback (MXNet: 10).
pub const CROP_ATTEMPTS: usize = 10;

/// AlexNet PCA eigenvalues of ImageNet's RGB covariance (0–255 pixel scale), SPEC §6.1.
pub const PCA_EIGENVALUES: [f64; 3] = [55.46, 4.794, 1.148];
/// AlexNet PCA eigenvectors: row `c` holds channel `c`'s (R, G, B) components of the three
/// eigenvectors, so the offset of channel `c` is `Σ_j V[c][j] · α_j · λ_j`.
pub const PCA_EIGENVECTORS: [[f64; 3]; 3] =
    [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]];

/// Luma weights (ITU-R 601) used for the gray of contrast and saturation.
const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// A rectangle of an image: top-left corner and size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// Left column.
    pub x0: u32,
    /// Top row.
    pub y0: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Where a random resized crop of a `width` x `height` image cuts, and whether a random box
/// was found (`true`) or the fallback was used (`false`).
///
/// MXNet 1.2's `random_size_crop`: up to [`CROP_ATTEMPTS`] times, target area =
/// `U(scale) · width · height`, aspect `r = U(ratio)`, `w = round(√(area·r))`,
/// `h = round(√(area/r))` (Python's ties-to-even `round`), then `w` and `h` are swapped with
/// probability 0.5; when `1 ≤ w ≤ width` and `1 ≤ h ≤ height` the corner is uniform over
/// every position that fits. Otherwise the fallback is MXNet's `center_crop`: the centered
/// square of side `min(size, width, height)` (its `scale_down` for a square target), origin
/// `((width − side) / 2, (height − side) / 2)` rounded down.
pub fn random_crop_box<R: Rng + ?Sized>(
    width: u32,
    height: u32,
    size: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> (CropBox, bool) {
    let area = f64::from(width) * f64::from(height);
    for _ in 0..CROP_ATTEMPTS {
        let target_area = uniform(rng, scale.0, scale.1) * area;
        let aspect = uniform(rng, ratio.0, ratio.1);
        // `as u64` saturates (and maps NaN to 0), so absurd parameters just fail to fit.
        let mut w = (target_area * aspect).sqrt().round_ties_even() as u64;
        let mut h = (target_area / aspect).sqrt().round_ties_even() as u64;
        if uniform(rng, 0.0, 1.0) < 0.5 {
            std::mem::swap(&mut w, &mut h);
        }
        if (1..=u64::from(width)).contains(&w) && (1..=u64::from(height)).contains(&h) {
            let (w, h) = (w as u32, h as u32);
            let x0 = below(rng, u64::from(width - w) + 1) as u32;
            let y0 = below(rng, u64::from(height - h) + 1) as u32;
            return (CropBox { x0, y0, width: w, height: h }, true);
        }
    }
    let side = size.min(width).min(height);
    (CropBox { x0: (width - side) / 2, y0: (height - side) / 2, width: side, height: side }, false)
}

/// Copies the pixels of `rect` out of `img`. [`VisionError::ZeroSize`] when the box is empty;
/// a box reaching outside the image is clipped to it.
pub fn crop(img: &RgbImage, rect: CropBox) -> Result<RgbImage, VisionError> {
    let x0 = rect.x0.min(img.width());
    let y0 = rect.y0.min(img.height());
    let width = rect.width.min(img.width() - x0);
    let height = rect.height.min(img.height() - y0);
    if width == 0 || height == 0 {
        return Err(VisionError::ZeroSize { width, height });
    }
    let stride = img.width() as usize * 3;
    let (left, row_bytes) = (x0 as usize * 3, width as usize * 3);
    let mut data = Vec::with_capacity(row_bytes * height as usize);
    for row in img.as_raw().chunks_exact(stride).skip(y0 as usize).take(height as usize) {
        data.extend_from_slice(&row[left..left + row_bytes]);
    }
    RgbImage::from_raw(width, height, data)
}

/// `RandomResizedCrop(size)`: a crop chosen by [`random_crop_box`], resized to `size` x `size`
/// with the crate's Pillow-exact bilinear filter (MXNet 1.2 used OpenCV cubic, ≥ 1.3
/// bilinear). Errors: [`VisionError::ZeroSize`] for an empty image or `size == 0`.
pub fn random_resized_crop<R: Rng + ?Sized>(
    img: &RgbImage,
    size: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> Result<RgbImage, VisionError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(VisionError::ZeroSize { width: img.width(), height: img.height() });
    }
    if size == 0 {
        return Err(VisionError::ZeroSize { width: 0, height: 0 });
    }
    let (rect, _) = random_crop_box(img.width(), img.height(), size, scale, ratio, rng);
    let cropped = crop(img, rect)?;
    if cropped.width() == size && cropped.height() == size {
        return Ok(cropped);
    }
    Ok(resize_bilinear_pillow(&cropped, size, size))
}

/// The image mirrored left to right, in place (Pillow's `FLIP_LEFT_RIGHT`).
pub fn flip_horizontal(img: RgbImage) -> RgbImage {
    let (width, height) = (img.width(), img.height());
    let mut data = img.into_raw();
    let w = width as usize;
    for row in data.chunks_exact_mut((w * 3).max(1)) {
        for x in 0..w / 2 {
            let (a, b) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
    RgbImage::from_raw(width, height, data).expect("same size as the input")
}

/// `RandomFlipLeftRight`: [`flip_horizontal`] with probability 0.5 (one draw).
pub fn random_flip<R: Rng + ?Sized>(img: RgbImage, rng: &mut R) -> RgbImage {
    if uniform(rng, 0.0, 1.0) < 0.5 {
        flip_horizontal(img)
    } else {
        img
    }
}

/// `RandomColorJitter(brightness, contrast, saturation)` (hue 0): the enabled adjustments
/// (strength > 0) are applied in a random order, each with its own factor
/// `α = 1 + U(−strength, strength)`:
/// brightness `x·α`; contrast `x·α + (1−α)·mean_gray` with the mean luma of the whole image
/// (as it is at that step); saturation `x·α + (1−α)·gray` with the pixel's own luma (see the
/// module docs for MXNet's blue-only quirk, not reproduced). Each step rounds and saturates
/// to `u8`. The order is always drawn (one shuffle of the three steps); a strength of 0 (or
/// negative, or NaN) disables its step without drawing its factor, so
/// `color_jitter(img, 0, 0, 0, rng)` returns `img` unchanged.
pub fn color_jitter<R: Rng + ?Sized>(
    img: RgbImage,
    brightness: f64,
    contrast: f64,
    saturation: f64,
    rng: &mut R,
) -> RgbImage {
    let (width, height) = (img.width(), img.height());
    let mut data = img.into_raw();
    let mut order = [0usize, 1, 2];
    shuffle(&mut order, rng);
    for step in order {
        match step {
            0 if brightness > 0.0 => {
                let alpha = 1.0 + uniform(rng, -brightness, brightness);
                let table = byte_table(|v| v * alpha);
                data.iter_mut().for_each(|b| *b = table[usize::from(*b)]);
            }
            1 if contrast > 0.0 => {
                let alpha = 1.0 + uniform(rng, -contrast, contrast);
                let offset = (1.0 - alpha) * mean_luma(&data);
                let table = byte_table(|v| v * alpha + offset);
                data.iter_mut().for_each(|b| *b = table[usize::from(*b)]);
            }
            2 if saturation > 0.0 => {
                let alpha = 1.0 + uniform(rng, -saturation, saturation);
                for px in data.chunks_exact_mut(3) {
                    let gray = (1.0 - alpha) * luma(px);
                    for v in px.iter_mut() {
                        *v = saturate(f64::from(*v) * alpha + gray);
                    }
                }
            }
            _ => {}
        }
    }
    RgbImage::from_raw(width, height, data).expect("same size as the input")
}

/// `RandomLighting(alphastd)`: AlexNet PCA noise. Draws `α_j ~ N(0, alphastd)` for the three
/// eigenvectors and adds [`pca_offset`]`(α)` to every pixel (0–255 scale), rounding and
/// saturating. `alphastd ≤ 0` (or NaN) returns `img` unchanged without drawing.
pub fn lighting<R: Rng + ?Sized>(img: RgbImage, alphastd: f64, rng: &mut R) -> RgbImage {
    if alphastd.is_nan() || alphastd <= 0.0 {
        return img;
    }
    let alpha = [normal(rng) * alphastd, normal(rng) * alphastd, normal(rng) * alphastd];
    let offset = pca_offset(alpha);
    let tables = offset.map(|o| byte_table(|v| v + o));
    let (width, height) = (img.width(), img.height());
    let mut data = img.into_raw();
    for px in data.chunks_exact_mut(3) {
        for (c, v) in px.iter_mut().enumerate() {
            *v = tables[c][usize::from(*v)];
        }
    }
    RgbImage::from_raw(width, height, data).expect("same size as the input")
}

/// The RGB offset of PCA lighting for eigen-coefficients `alpha`:
/// `offset[c] = Σ_j V[c][j] · α_j · λ_j` ([`PCA_EIGENVECTORS`], [`PCA_EIGENVALUES`]).
pub fn pca_offset(alpha: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (c, o) in out.iter_mut().enumerate() {
        *o = (0..3).map(|j| PCA_EIGENVECTORS[c][j] * alpha[j] * PCA_EIGENVALUES[j]).sum();
    }
    out
}

fn luma(px: &[u8]) -> f64 {
    LUMA[0] * f64::from(px[0]) + LUMA[1] * f64::from(px[1]) + LUMA[2] * f64::from(px[2])
}

/// Mean luma of all pixels of an RGB buffer (0 for an empty one).
fn mean_luma(data: &[u8]) -> f64 {
    let pixels = data.len() / 3;
    if pixels == 0 {
        return 0.0;
    }
    // Per-channel sums are exact in u64; the weights are applied once.
    let mut sums = [0u64; 3];
    for px in data.chunks_exact(3) {
        for c in 0..3 {
            sums[c] += u64::from(px[c]);
        }
    }
    (0..3).map(|c| LUMA[c] * sums[c] as f64).sum::<f64>() / pixels as f64
}

/// The 256 results of `f` on each byte value, rounded and saturated.
fn byte_table(f: impl Fn(f64) -> f64) -> [u8; 256] {
    std::array::from_fn(|v| saturate(f(v as f64)))
}

/// Round to nearest (halves away from zero) and clamp to 0..=255; NaN becomes 0.
fn saturate(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// A uniform `f64` in `[lo, hi)` from the top 53 bits of one `next_u64` (`lo` when `lo == hi`).
pub fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    let unit = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    lo + (hi - lo) * unit
}

/// A uniform integer in `0..n` (Lemire's multiply-and-reject, unbiased); 0 when `n == 0`.
pub fn below<R: Rng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let threshold = n.wrapping_neg() % n;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(n);
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
}

/// A standard normal draw (Box–Muller, two uniforms per draw).
pub fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 1 − U in (0, 1] keeps the logarithm finite.
    let u1 = 1.0 - uniform(rng, 0.0, 1.0);
    let u2 = uniform(rng, 0.0, 1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Fisher–Yates shuffle with [`below`]: the same permutation for the same RNG state on every
/// platform.
pub fn shuffle<T, R: Rng + ?Sized>(items: &mut [T], rng: &mut R) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturate_rounds_to_nearest_and_clamps() {
        assert_eq!(saturate(-3.0), 0);
        assert_eq!(saturate(254.5), 255);
        assert_eq!(saturate(300.0), 255);
        assert_eq!(saturate(10.49), 10);
        assert_eq!(saturate(f64::NAN), 0);
    }

    #[test]
    fn mean_luma_weights_the_channels() {
        let data = [255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0];
        assert!((mean_luma(&data) - 255.0 / 4.0).abs() < 1e-9);
        assert_eq!(mean_luma(&[]), 0.0);
    }
}
