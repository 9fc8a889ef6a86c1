//! Resize, center crop and normalization against Pillow/NumPy on synthetic images, bit for bit.
//!
//! Fixtures come from `scripts/pillow_fixtures.py` (Pillow 13, NumPy 2), which builds the same
//! synthetic images from `synthetic()`'s formula; no JPEG decoder is involved, so any
//! difference is in our arithmetic.

use std::path::PathBuf;

use resnet_vision::{resize_bilinear_pillow, Preprocess, RgbImage};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pillow")
}

/// `pixel(x, y, c) = ((x*7 + y*13 + c*31) ^ (x*y)) & 255`, as in the fixture script.
fn synthetic(width: u32, height: u32) -> RgbImage {
    let data = (0..height)
        .flat_map(|y| {
            (0..width).flat_map(move |x| (0..3).map(move |c| (((x * 7 + y * 13 + c * 31) ^ (x * y)) & 255) as u8))
        })
        .collect();
    RgbImage::from_raw(width, height, data).unwrap()
}

fn manifest_lines(kind: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(fixture_dir().join("manifest.txt")).unwrap();
    text.lines()
        .filter(|l| l.starts_with(kind) && l[kind.len()..].starts_with(' '))
        .map(|l| l.split_whitespace().skip(1).map(str::to_owned).collect())
        .collect()
}

fn num(s: &str) -> u32 {
    s.parse().unwrap()
}

/// Describes where two pixel buffers of a `width`-pixel-wide image first differ.
fn first_difference(ours: &[u8], pillow: &[u8], width: usize) -> Option<String> {
    let differing = ours.iter().zip(pillow).filter(|(a, b)| a != b).count();
    let i = ours.iter().zip(pillow).position(|(a, b)| a != b)?;
    let max = ours.iter().zip(pillow).map(|(&a, &b)| a.abs_diff(b)).max().unwrap();
    Some(format!(
        "{differing} bytes differ (max {max} levels); first at x={} y={} channel {}: ours {} pillow {}",
        i / 3 % width,
        i / 3 / width,
        i % 3,
        ours[i],
        pillow[i]
    ))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn bilinear_resize_matches_pillow_exactly_up_down_and_per_axis() {
    let cases = manifest_lines("resize");
    assert!(cases.len() >= 10, "manifest lists {} resize cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (iw, ih, ow, oh) = (num(&case[0]), num(&case[1]), num(&case[2]), num(&case[3]));
        let pillow = std::fs::read(fixture_dir().join(&case[4])).unwrap();
        let ours = resize_bilinear_pillow(&synthetic(iw, ih), ow, oh);
        assert_eq!((ours.width(), ours.height()), (ow, oh));
        assert_eq!(ours.as_raw().len(), pillow.len(), "{iw}x{ih} -> {ow}x{oh}");
        if let Some(diff) = first_difference(ours.as_raw(), &pillow, ow as usize) {
            failures.push(format!("{iw}x{ih} -> {ow}x{oh}: {diff}"));
        }
    }
    assert!(failures.is_empty(), "differences from Pillow:\n{}", failures.join("\n"));
}

#[test]
fn resize_shorter_side_and_center_crop_match_the_python_reference_exactly() {
    let cases = manifest_lines("crop");
    assert!(cases.len() >= 12, "manifest lists {} crop cases", cases.len());
    let preprocess = Preprocess::default();
    let mut failures = Vec::new();
    for case in &cases {
        let (iw, ih) = (num(&case[0]), num(&case[1]));
        let resized = (num(&case[2]), num(&case[3]));
        let origin = (num(&case[4]), num(&case[5]));
        let crop = num(&case[6]);
        let row_hashes: Vec<u64> = case[7].split(',').map(|h| u64::from_str_radix(h, 16).unwrap()).collect();

        assert_eq!(preprocess.resized_size(iw, ih), resized, "resized size of {iw}x{ih}");
        assert_eq!(preprocess.center_crop_origin(resized.0, resized.1), Some(origin), "crop origin of {iw}x{ih}");
        let ours = preprocess.crop_rgb8(&synthetic(iw, ih)).unwrap();
        assert_eq!((ours.width(), ours.height()), (crop, crop));
        let differing_rows: Vec<usize> = ours
            .as_raw()
            .chunks_exact(crop as usize * 3)
            .zip(&row_hashes)
            .enumerate()
            .filter(|(_, (row, &hash))| fnv1a64(row) != hash)
            .map(|(y, _)| y)
            .collect();
        if !differing_rows.is_empty() {
            failures.push(format!(
                "{iw}x{ih}: {} of {crop} rows differ, first row {} \
                 (dump Pillow's bytes with `pillow_fixtures.py --dump-crops DIR`)",
                differing_rows.len(),
                differing_rows[0]
            ));
        }
    }
    assert!(failures.is_empty(), "differences from Pillow:\n{}", failures.join("\n"));
}

#[test]
fn the_cropped_window_equals_cropping_the_full_pillow_resize() {
    // crop_rgb8 computes only the crop; check it against the full resize for one case.
    let img = synthetic(333, 251);
    let p = Preprocess::default();
    let (rw, rh) = p.resized_size(333, 251);
    let (x0, y0) = p.center_crop_origin(rw, rh).unwrap();
    let full = resize_bilinear_pillow(&img, rw, rh);
    let expected: Vec<u8> =
        (y0..y0 + 224).flat_map(|y| (x0..x0 + 224).flat_map(|x| full.get(x, y).unwrap()).collect::<Vec<_>>()).collect();
    assert_eq!(p.crop_rgb8(&img).unwrap().as_raw(), &expected[..]);
}

#[test]
fn normalization_matches_the_reference_numpy_arithmetic_bit_for_bit() {
    let bytes = std::fs::read(fixture_dir().join("normalize_table.f32")).unwrap();
    let reference: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    // A 256x1 image whose pixel x has level x in every channel: its CHW tensor is the table.
    let levels: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
    let img = RgbImage::from_raw(256, 1, levels).unwrap();
    let ours = Preprocess::default().tensor_chw(&img);
    let mismatches: Vec<String> = ours
        .iter()
        .zip(&reference)
        .enumerate()
        .filter(|(_, (a, b))| a.to_bits() != b.to_bits())
        .map(|(i, (a, b))| format!("channel {} level {}: ours {a:e} reference {b:e}", i / 256, i % 256))
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
