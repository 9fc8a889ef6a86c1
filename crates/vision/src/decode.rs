//! Decoding JPEG and PNG bytes into an [`RgbImage`] the way the reference's
//! `PIL.Image.open(...).convert("RGB")` does.
//!
//! Pixel-format conversion follows Pillow rather than the `image` crate, because the
//! reference tensor is built from Pillow's pixels:
//! * alpha is dropped, never composited onto a background (Pillow's `RGBA -> RGB`);
//! * gray is replicated into R, G and B; palettes are looked up (the PNG decoder expands them);
//! * 16-bit RGB(A) and gray+alpha keep the high byte (`v >> 8`, Pillow's `RGB;16B` unpacker),
//!   while 16-bit gray without alpha is *clamped* to 255 (Pillow opens it as `I;16` and its
//!   `I;16 -> RGB` conversion clips instead of scaling: a quirk, reproduced on purpose);
//! * CMYK JPEGs are converted to RGB by the fallback JPEG decoder (zune-jpeg).
//!
//! JPEGs are decoded by the crate's own port of libjpeg-turbo ([`crate::jpeg`]), which gives
//! Pillow's pixels exactly, for every sequential 8-bit gray or YCbCr/RGB file (practically
//! all photos). The rest (progressive, CMYK/YCCK, 12-bit, lossless, arithmetic-coded) falls
//! back to the `image` crate's zune-jpeg, whose IDCT and chroma upsampling round differently:
//! those pixels may differ from Pillow's by a level or two. Damaged JPEGs are errors from
//! either decoder, never a fallback. PNG pixels are identical to Pillow's.

use std::io::Cursor;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

use crate::jpeg::{self, JpegError};
use crate::{RgbImage, VisionError};

/// Pillow's `Image.MAX_IMAGE_PIXELS` (1024 * 1024 * 1024 // 4 // 3): the size above which
/// Pillow starts warning about decompression bombs.
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

/// The most bytes per pixel any supported decoder output needs (16-bit RGBA), used to size
/// the `image` crate's allocation limit from the pixel limit.
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// Knobs for [`decode_rgb8`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Images whose header announces more than this many pixels (`width * height`) are
    /// refused before any pixel memory is allocated. Default: [`DEFAULT_MAX_PIXELS`].
    pub max_pixels: u64,
    /// Rotate/flip the image as its EXIF orientation tag says. Default `false`, because the
    /// reference (`Image.open` without `ImageOps.exif_transpose`) ignores the tag.
    pub apply_exif_orientation: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { max_pixels: DEFAULT_MAX_PIXELS, apply_exif_orientation: false }
    }
}

/// Decodes a JPEG or PNG image into 8-bit RGB, converting other pixel formats as Pillow's
/// `convert("RGB")` does (see the module docs). Never panics; every malformed input gives a
/// [`VisionError`].
pub fn decode_rgb8(bytes: &[u8], opts: &DecodeOptions) -> Result<RgbImage, VisionError> {
    if bytes.is_empty() {
        return Err(VisionError::Empty);
    }
    let format = detect_format(bytes)?;
    if format == ImageFormat::Jpeg && !jpeg_has_end_of_image(bytes) {
        // zune-jpeg fills a cut-off scan with gray and succeeds; Pillow (without
        // LOAD_TRUNCATED_IMAGES) raises "image file is truncated". Follow Pillow.
        return Err(VisionError::Truncated { detail: "JPEG data ends before its end-of-image marker".into() });
    }

    if format == ImageFormat::Jpeg {
        match jpeg::decode(bytes, opts.max_pixels) {
            Ok(decoded) => {
                let orientation = if opts.apply_exif_orientation {
                    decoded.exif.as_deref().and_then(Orientation::from_exif_chunk)
                } else {
                    None
                };
                return Ok(match orientation {
                    Some(orientation) => orient(decoded.image, orientation),
                    None => decoded.image,
                });
            }
            Err(JpegError::Invalid(err)) => return Err(err),
            // Progressive, CMYK, 12-bit, ...: zune-jpeg below, close to Pillow but not exact.
            Err(JpegError::Unsupported(_)) => {}
        }
    }

    if let Some((width, height)) = png_ihdr_dimensions(bytes) {
        // The PNG decoder reads on to the first data chunk before reporting dimensions, so a
        // bomb that is only a header would come out as "truncated"; say what it is instead.
        check_dimensions(width, height, opts.max_pixels)?;
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decoder_limits(opts.max_pixels));
    // Only the header is read here, so the pixel limit is checked before decoding.
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, opts.max_pixels)?;

    let orientation =
        if opts.apply_exif_orientation { Some(decoder.orientation().map_err(map_image_error)?) } else { None };
    let mut image = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(to_rgb8_like_pillow(image))
}

/// Decodes a JPEG with the exact (libjpeg-turbo port) decoder only, without the fallback:
/// `Unsupported` names the feature it lacks. For tests and diagnostics; use [`decode_rgb8`].
#[doc(hidden)]
pub fn decode_jpeg_exact(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, VisionError> {
    match jpeg::decode(bytes, max_pixels) {
        Ok(decoded) => Ok(decoded.image),
        Err(JpegError::Invalid(err)) => Err(err),
        Err(JpegError::Unsupported(detail)) => Err(VisionError::Unsupported { detail }),
    }
}

/// Reads and decodes an image file; errors name the file.
pub fn decode_file(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<RgbImage, VisionError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| VisionError::Io { path: path.to_owned(), source })?;
    decode_rgb8(&bytes, opts).map_err(|source| VisionError::File { path: path.to_owned(), source: Box::new(source) })
}

fn detect_format(bytes: &[u8]) -> Result<ImageFormat, VisionError> {
    match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Jpeg | ImageFormat::Png)) => Ok(format),
        Ok(other) => Err(VisionError::UnsupportedFormat { format: format!("{other:?}") }),
        Err(_) => Err(VisionError::UnknownFormat {
            magic: bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "),
        }),
    }
}

/// Width and height from a PNG's IHDR chunk, which the format requires to come first.
fn png_ihdr_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || !bytes.starts_with(b"\x89PNG\r\n\x1a\n") || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}

fn decoder_limits(max_pixels: u64) -> Limits {
    let mut limits = Limits::default();
    let max_side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    // Leave room above the output buffer for the decoders' working memory.
    limits.max_alloc =
        Some(max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL).max(Limits::default().max_alloc.unwrap_or(0)));
    limits
}

pub(crate) fn check_dimensions(width: u32, height: u32, max_pixels: u64) -> Result<(), VisionError> {
    if width == 0 || height == 0 {
        return Err(VisionError::ZeroSize { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(VisionError::TooManyPixels { width, height, pixels, max_pixels });
    }
    Ok(())
}

/// True when an end-of-image marker (FF D9) follows the first start-of-scan (FF DA).
///
/// Inside entropy-coded data every FF byte is followed by 00 or a restart marker, so an
/// FF D9 after the first scan can only be the real end. Markers before the scan are skipped
/// by their lengths, which keeps an EXIF thumbnail's own FF D9 from counting.
fn jpeg_has_end_of_image(bytes: &[u8]) -> bool {
    let mut pos = 2; // after SOI
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            return false;
        }
        let marker = bytes[pos + 1];
        if marker == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        if marker == 0xDA {
            return bytes[pos + 2..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        if marker == 0xD9 {
            return false; // end of image before any scan
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            pos += 2; // markers without a length field
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        pos += 2 + len;
    }
    false
}

fn map_image_error(err: ImageError) -> VisionError {
    match err {
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            VisionError::Truncated { detail: e.to_string() }
        }
        ImageError::Unsupported(e) => VisionError::Unsupported { detail: e.to_string() },
        // Only reachable when a decoder needs working memory beyond `decoder_limits`; the
        // pixel count itself was already checked.
        ImageError::Limits(e) => VisionError::Unsupported { detail: format!("decoder memory limit: {e}") },
        other => {
            let detail = other.to_string();
            // The decoders report running out of data as a decoding error with text only.
            let lower = detail.to_ascii_lowercase();
            if lower.contains("eof") || lower.contains("unexpected end") || lower.contains("truncat") {
                VisionError::Truncated { detail }
            } else {
                VisionError::Corrupt { detail }
            }
        }
    }
}

/// Rotates/flips an image as an EXIF orientation tag says (the `image` crate does the work).
fn orient(image: RgbImage, orientation: Orientation) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    let buffer =
        image::RgbImage::from_raw(width, height, image.into_raw()).expect("RgbImage holds width*height*3 bytes");
    let mut dynamic = DynamicImage::ImageRgb8(buffer);
    dynamic.apply_orientation(orientation);
    to_rgb8_like_pillow(dynamic)
}

/// Converts any decoder output to RGB8 with Pillow's rules (see the module docs).
fn to_rgb8_like_pillow(image: DynamicImage) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    let data: Vec<u8> = match image {
        DynamicImage::ImageRgb8(buf) => buf.into_raw(),
        DynamicImage::ImageRgba8(buf) => drop_alpha(&buf.into_raw(), 4, |v| v),
        DynamicImage::ImageLuma8(buf) => replicate_gray(&buf.into_raw(), 1, |v| v),
        DynamicImage::ImageLumaA8(buf) => replicate_gray(&buf.into_raw(), 2, |v| v),
        DynamicImage::ImageRgb16(buf) => drop_alpha(&buf.into_raw(), 3, high_byte),
        DynamicImage::ImageRgba16(buf) => drop_alpha(&buf.into_raw(), 4, high_byte),
        DynamicImage::ImageLuma16(buf) => replicate_gray(&buf.into_raw(), 1, |v| v.min(255) as u8),
        DynamicImage::ImageLumaA16(buf) => replicate_gray(&buf.into_raw(), 2, high_byte),
        // Float images come from neither JPEG nor PNG; keep a sane fallback.
        other => other.to_rgb8().into_raw(),
    };
    RgbImage::from_raw(width, height, data).expect("conversion yields width*height*3 bytes")
}

fn high_byte(v: u16) -> u8 {
    (v >> 8) as u8
}

/// Keeps the first 3 of every `channels` samples.
fn drop_alpha<T: Copy>(samples: &[T], channels: usize, to_u8: impl Fn(T) -> u8) -> Vec<u8> {
    samples.chunks_exact(channels).flat_map(|px| [to_u8(px[0]), to_u8(px[1]), to_u8(px[2])]).collect()
}

/// Copies the first of every `channels` samples (the gray level) into R, G and B.
fn replicate_gray<T: Copy>(samples: &[T], channels: usize, to_u8: impl Fn(T) -> u8) -> Vec<u8> {
    samples
        .chunks_exact(channels)
        .flat_map(|px| {
            let v = to_u8(px[0]);
            [v, v, v]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_end_marker_is_found_only_after_the_scan() {
        // SOI, APP1 (len 6) holding a fake FF D9, SOS (len 2), data, EOI
        let good = [
            0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0x00, 0x00, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xD9,
        ];
        assert!(jpeg_has_end_of_image(&good));
        assert!(!jpeg_has_end_of_image(&good[..good.len() - 2]));
        assert!(!jpeg_has_end_of_image(&good[..9]));
    }

    #[test]
    fn sixteen_bit_gray_clips_like_pillow_i16() {
        let buf = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 1, vec![0x80, 0xFF, 0x1234]).unwrap();
        let rgb = to_rgb8_like_pillow(DynamicImage::ImageLuma16(buf));
        assert_eq!(rgb.as_raw(), &[0x80, 0x80, 0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn sixteen_bit_rgb_keeps_the_high_byte() {
        let buf = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(1, 1, vec![0x1234, 0x80FF, 0x7F80]).unwrap();
        let rgb = to_rgb8_like_pillow(DynamicImage::ImageRgb16(buf));
        assert_eq!(rgb.as_raw(), &[0x12, 0x80, 0x7F]);
    }
}
