//! Decoding: Pillow's `convert("RGB")` rules for every PNG/JPEG pixel format, typed errors
//! for bad input, the pixel limit checked from the header, and no panics.

use resnet_test_support as common;

use std::time::{Duration, Instant};

use image::{ExtendedColorType, ImageEncoder};
use resnet_vision::{decode_file, decode_rgb8, DecodeOptions, RgbImage, VisionError};

fn decode(bytes: &[u8]) -> Result<RgbImage, VisionError> {
    decode_rgb8(bytes, &DecodeOptions::default())
}

// ---- a minimal PNG writer, for formats and headers the `image` encoder cannot produce ----

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

/// zlib stream of `data` in stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() { vec![&[]] } else { data.chunks(65535).collect() };
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i == blocks.len() - 1));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// A PNG with the given header fields, extra chunks before IDAT, and raw scanlines
/// (each already prefixed with its filter byte).
fn png(width: u32, height: u32, bit_depth: u8, color_type: u8, extra: &[Vec<u8>], scanlines: &[u8]) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    for c in extra {
        out.extend_from_slice(c);
    }
    out.extend(chunk(b"IDAT", &zlib_stored(scanlines)));
    out.extend(chunk(b"IEND", &[]));
    out
}

fn encode_png(width: u32, height: u32, color: ExtendedColorType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out).write_image(data, width, height, color).unwrap();
    out
}

fn encode_jpeg(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .write_image(rgb, width, height, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn sample_jpeg(name: &str) -> Option<Vec<u8>> {
    let path = common::shared_asset(&format!("data/imagenet-samples/images/{name}"))?;
    Some(std::fs::read(path).unwrap())
}

// ---- pixel formats ----

#[test]
fn grayscale_sample_jpegs_become_rgb_with_equal_channels() {
    for (name, size) in [
        ("n02692877_airship.JPEG", (350, 156)),
        ("n03908714_pencil_sharpener.JPEG", (333, 500)),
        ("n04254680_soccer_ball.JPEG", (500, 500)),
    ] {
        let Some(bytes) = sample_jpeg(name) else { return };
        let img = decode(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), size, "{name}");
        assert!(img.as_raw().chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]), "{name}");
        assert!(img.as_raw().chunks(3).any(|p| p[0] != img.as_raw()[0]), "{name} is not flat");
    }
}

#[test]
fn palette_png_looks_up_the_palette_and_ignores_transparency() {
    let palette = [10, 20, 30, 200, 100, 0, 255, 255, 255];
    let trns = [0u8, 128]; // entry 0 transparent, entry 1 half: Pillow's RGB ignores both
    let scanlines = [0, 0, 1, 2, 1, 0, 2, 2, 0, 1];
    let bytes = png(4, 2, 8, 3, &[chunk(b"PLTE", &palette), chunk(b"tRNS", &trns)], &scanlines);
    let img = decode(&bytes).unwrap();
    let expected: Vec<u8> = [0, 1, 2, 1, 2, 2, 0, 1].iter().flat_map(|&i| palette[i * 3..i * 3 + 3].to_vec()).collect();
    assert_eq!(img.as_raw(), &expected[..]);
}

#[test]
fn rgba_png_drops_alpha_without_compositing() {
    let rgba = [10, 20, 30, 0, 200, 100, 50, 128, 1, 2, 3, 255];
    let img = decode(&encode_png(3, 1, ExtendedColorType::Rgba8, &rgba)).unwrap();
    assert_eq!(img.as_raw(), &[10, 20, 30, 200, 100, 50, 1, 2, 3]);
}

#[test]
fn gray_alpha_png_replicates_gray_and_drops_alpha() {
    let la = [0, 255, 77, 0, 255, 128];
    let img = decode(&encode_png(3, 1, ExtendedColorType::La8, &la)).unwrap();
    assert_eq!(img.as_raw(), &[0, 0, 0, 77, 77, 77, 255, 255, 255]);
}

#[test]
fn one_bit_gray_png_maps_to_black_and_white() {
    let img = decode(&png(8, 1, 1, 0, &[], &[0, 0b1010_0101])).unwrap();
    let expected: Vec<u8> = [255, 0, 255, 0, 0, 255, 0, 255].iter().flat_map(|&v| [v, v, v]).collect();
    assert_eq!(img.as_raw(), &expected[..]);
}

#[test]
fn sixteen_bit_pngs_convert_like_pillow() {
    // RGB 16-bit: Pillow keeps the high byte (0x80ff -> 0x80, not rounded to 0x81).
    let rgb16 = [0u8, 0x12, 0x34, 0x80, 0xff, 0xff, 0xff];
    assert_eq!(decode(&png(1, 1, 16, 2, &[], &rgb16)).unwrap().as_raw(), &[0x12, 0x80, 0xff]);
    // Gray 16-bit opens as Pillow mode I;16, whose RGB conversion clamps at 255.
    let gray16 = [0u8, 0x00, 0x80, 0x00, 0xff, 0x12, 0x34];
    let expected = [0x80, 0x80, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(decode(&png(3, 1, 16, 0, &[], &gray16)).unwrap().as_raw(), &expected);
}

#[test]
fn a_one_pixel_png_decodes() {
    let img = decode(&encode_png(1, 1, ExtendedColorType::Rgb8, &[1, 2, 3])).unwrap();
    assert_eq!((img.width(), img.height(), img.get(0, 0)), (1, 1, Some([1, 2, 3])));
}

// ---- errors ----

#[test]
fn empty_input_is_an_empty_error() {
    assert!(matches!(decode(&[]), Err(VisionError::Empty)));
}

#[test]
fn text_is_an_unknown_format_error() {
    let err = decode(b"<html><body>404 not found</body></html>").unwrap_err();
    assert!(matches!(err, VisionError::UnknownFormat { .. }), "{err}");
    assert!(err.to_string().contains("3c 68 74 6d"), "{err}");
}

#[test]
fn a_gif_is_an_unsupported_format_error() {
    let err = decode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap_err();
    assert!(matches!(err, VisionError::UnsupportedFormat { .. }), "{err}");
}

#[test]
fn half_a_sample_jpeg_is_a_truncated_error() {
    let Some(bytes) = sample_jpeg("n01440764_tench.JPEG") else { return };
    let err = decode(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, VisionError::Truncated { .. }), "{err}");
}

#[test]
fn a_png_cut_inside_its_pixel_data_is_truncated_or_corrupt() {
    let bytes = encode_png(16, 16, ExtendedColorType::Rgb8, &[7; 16 * 16 * 3]);
    let err = decode(&bytes[..bytes.len() - 20]).unwrap_err();
    assert!(matches!(err, VisionError::Truncated { .. } | VisionError::Corrupt { .. }), "{err}");
}

#[test]
fn a_png_with_garbage_pixel_data_is_corrupt() {
    let mut bytes = png(2, 2, 8, 2, &[], &[0; 14]);
    let idat = bytes.windows(4).position(|w| w == b"IDAT").unwrap();
    bytes[idat + 4] = 0xFF; // break the zlib header (the CRC check is skipped by decoders)
    let err = decode(&bytes).unwrap_err();
    assert!(matches!(err, VisionError::Corrupt { .. } | VisionError::Truncated { .. }), "{err}");
}

#[test]
fn a_huge_png_header_is_refused_fast_without_decoding() {
    // Valid IHDR claiming 100000 x 100000 (10^10 pixels, 30 GB of RGB) and no real data.
    let bytes = png(100_000, 100_000, 8, 2, &[], &[]);
    let start = Instant::now();
    let err = decode(&bytes).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
    match &err {
        VisionError::TooManyPixels { width: 100_000, height: 100_000, pixels: 10_000_000_000, max_pixels } => {
            assert_eq!(*max_pixels, DecodeOptions::default().max_pixels);
        }
        other => panic!("expected TooManyPixels, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("100000x100000") && message.contains("89478485"), "{message}");
}

#[test]
fn the_pixel_limit_is_configurable() {
    let bytes = encode_png(10, 10, ExtendedColorType::Rgb8, &[0; 300]);
    let opts = DecodeOptions { max_pixels: 99, ..DecodeOptions::default() };
    assert!(matches!(decode_rgb8(&bytes, &opts), Err(VisionError::TooManyPixels { pixels: 100, .. })));
    let opts = DecodeOptions { max_pixels: 100, ..DecodeOptions::default() };
    assert!(decode_rgb8(&bytes, &opts).is_ok());
}

#[test]
fn a_zero_width_png_is_an_error() {
    let err = decode(&png(0, 5, 8, 2, &[], &[])).unwrap_err();
    // The PNG decoder itself rejects a zero dimension in the header.
    assert!(matches!(err, VisionError::ZeroSize { .. } | VisionError::Corrupt { .. }), "{err}");
}

#[test]
fn decode_file_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("resnet-vision-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not an image").unwrap();
    let err = decode_file(&text, &DecodeOptions::default()).unwrap_err();
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert!(matches!(&err, VisionError::File { source, .. } if matches!(**source, VisionError::UnknownFormat { .. })));

    let missing = dir.join("missing.jpg");
    let err = decode_file(&missing, &DecodeOptions::default()).unwrap_err();
    assert!(matches!(err, VisionError::Io { .. }) && err.to_string().contains("missing.jpg"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- robustness ----

#[test]
fn every_truncation_of_a_jpeg_or_png_is_an_error_never_a_panic() {
    let rgb: Vec<u8> = (0..24 * 16 * 3).map(|i| (i * 37 % 251) as u8).collect();
    let jpeg = encode_jpeg(24, 16, &rgb);
    // The JPEG takes the exact (libjpeg-turbo port) path, not the zune fallback.
    assert!(resnet_vision::decode_jpeg_exact(&jpeg, resnet_vision::DEFAULT_MAX_PIXELS).is_ok());
    for bytes in [jpeg, encode_png(24, 16, ExtendedColorType::Rgb8, &rgb)] {
        assert!(decode(&bytes).is_ok());
        for len in 0..bytes.len() - 1 {
            // A PNG cut inside IEND can still be complete enough to decode; only
            // require no panic there.
            let result = decode(&bytes[..len]);
            if len < bytes.len() - 12 {
                assert!(result.is_err(), "prefix of {len}/{} bytes decoded", bytes.len());
            }
        }
    }
}

#[test]
fn random_byte_corruption_never_panics() {
    let rgb: Vec<u8> = (0..32 * 32 * 3).map(|i| (i * 13 % 256) as u8).collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for original in [encode_jpeg(32, 32, &rgb), encode_png(32, 32, ExtendedColorType::Rgb8, &rgb)] {
        for _ in 0..300 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = next() as u8;
            }
            let _ = decode(&bytes);
        }
    }
}

// ---- EXIF orientation ----

/// Inserts an APP1 EXIF segment with the given orientation tag right after the JPEG's SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec(); // big-endian TIFF, IFD at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_ignored_by_default_and_applied_on_request() {
    // 16x8: left half black, right half white.
    let rgb: Vec<u8> = (0..8).flat_map(|_| (0..16).flat_map(|x| [if x < 8 { 0 } else { 255 }; 3])).collect();
    let jpeg = with_exif_orientation(&encode_jpeg(16, 8, &rgb), 6); // 6 = rotate 90 clockwise

    let plain = decode(&jpeg).unwrap();
    assert_eq!((plain.width(), plain.height()), (16, 8));

    let opts = DecodeOptions { apply_exif_orientation: true, ..DecodeOptions::default() };
    let rotated = decode_rgb8(&jpeg, &opts).unwrap();
    assert_eq!((rotated.width(), rotated.height()), (8, 16));
    // Rotating clockwise puts the left (black) half on top.
    assert!(rotated.get(4, 2).unwrap()[0] < 40, "{:?}", rotated.get(4, 2));
    assert!(rotated.get(4, 13).unwrap()[0] > 215, "{:?}", rotated.get(4, 13));
}
