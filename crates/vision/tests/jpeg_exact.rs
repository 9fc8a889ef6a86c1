//! The exact JPEG decoder against Pillow's decodes of all 200 shared ImageNet sample JPEGs
//! (`np.asarray(Image.open(p).convert("RGB"))`, recorded by scripts/pillow_jpeg_fixtures.py
//! as one FNV-1a 64 hash per band of 16 rows): every image must be supported by the exact
//! decoder and match bit for bit. Small synthetic JPEGs saved by Pillow (restart markers,
//! chroma planes under 3 samples wide) cover what the samples do not.

use resnet_test_support as common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use resnet_vision::{decode_jpeg_exact, decode_rgb8, DecodeOptions, VisionError, DEFAULT_MAX_PIXELS};

const SAMPLES_FIXTURE: &str = include_str!("fixtures/pillow/jpeg_decodes.txt");
const SYNTHETIC_FIXTURE: &str = include_str!("fixtures/pillow/jpeg_synthetic_decodes.txt");
const BAND_ROWS: usize = 16;

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3))
}

struct Expected {
    width: u32,
    height: u32,
    band_hashes: Vec<u64>,
}

fn expected_decodes(fixture: &str) -> BTreeMap<String, Expected> {
    fixture
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields.len(), 4, "bad fixture line {line}");
            let band_hashes = fields[3].split(',').map(|h| u64::from_str_radix(h, 16).unwrap()).collect();
            let expected =
                Expected { width: fields[1].parse().unwrap(), height: fields[2].parse().unwrap(), band_hashes };
            (fields[0].to_owned(), expected)
        })
        .collect()
}

/// Sampling of the first (luma) component from the SOF marker, e.g. "2x2", for reporting.
fn luma_sampling(bytes: &[u8]) -> String {
    let mut pos = 2;
    while pos + 4 <= bytes.len() && bytes[pos] == 0xFF {
        let marker = bytes[pos + 1];
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        if matches!(marker, 0xC0..=0xC2) {
            let components = bytes[pos + 9];
            let hv = bytes[pos + 11];
            return if components == 1 { "gray".into() } else { format!("{}x{}", hv >> 4, hv & 15) };
        }
        pos += 2 + len;
    }
    "?".into()
}

/// Decodes every file of `expected` from `dir` with the exact decoder; returns the
/// mismatches and, per luma sampling, (exact, total).
fn compare_with_pillow(
    dir: &Path,
    expected: &BTreeMap<String, Expected>,
) -> (Vec<String>, BTreeMap<String, (usize, usize)>) {
    let mut per_sampling: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (name, want) in expected {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let tally = per_sampling.entry(luma_sampling(&bytes)).or_default();
        tally.1 += 1;
        let image = match decode_jpeg_exact(&bytes, DEFAULT_MAX_PIXELS) {
            Ok(image) => image,
            Err(err) => {
                failures.push(format!("{name}: {err}"));
                continue;
            }
        };
        if (image.width(), image.height()) != (want.width, want.height) {
            failures.push(format!(
                "{name}: {}x{} instead of {}x{}",
                image.width(),
                image.height(),
                want.width,
                want.height
            ));
            continue;
        }
        let band_bytes = BAND_ROWS * want.width as usize * 3;
        let bad_bands: Vec<usize> = image
            .as_raw()
            .chunks(band_bytes)
            .zip(&want.band_hashes)
            .enumerate()
            .filter(|(_, (band, &hash))| fnv1a64(band) != hash)
            .map(|(i, _)| i)
            .collect();
        if bad_bands.is_empty() {
            tally.0 += 1;
        } else {
            failures.push(format!("{name}: row bands {bad_bands:?} differ (of {})", want.band_hashes.len()));
        }
    }
    (failures, per_sampling)
}

#[test]
fn all_sample_jpegs_decode_exactly_like_pillow() {
    let Some(images_dir) = common::shared_asset("data/imagenet-samples/images") else {
        return;
    };
    let expected = expected_decodes(SAMPLES_FIXTURE);
    assert_eq!(expected.len(), 200, "fixture should cover the 200 sample JPEGs");
    let (failures, per_sampling) = compare_with_pillow(&images_dir, &expected);
    for (sampling, (exact, total)) in &per_sampling {
        println!("luma sampling {sampling}: {exact}/{total} exact");
    }
    assert!(failures.is_empty(), "{} of 200 differ from Pillow:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn restart_markers_and_narrow_chroma_decode_exactly_like_pillow() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pillow");
    let expected = expected_decodes(SYNTHETIC_FIXTURE);
    assert_eq!(expected.len(), 6);
    let (failures, _) = compare_with_pillow(&dir, &expected);
    assert!(failures.is_empty(), "differ from Pillow:\n{}", failures.join("\n"));
}

/// Every prefix of a file with restart markers and 4:2:0 chroma, fed to the exact decoder
/// directly (without `decode_rgb8`'s end-of-image check), gives an error and no panic.
#[test]
fn every_truncation_is_an_error_in_the_exact_decoder() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pillow/synthetic_restart_420.jpg");
    let bytes = std::fs::read(path).unwrap();
    assert!(decode_jpeg_exact(&bytes, DEFAULT_MAX_PIXELS).is_ok());
    for len in 0..bytes.len() - 2 {
        let result = decode_jpeg_exact(&bytes[..len], DEFAULT_MAX_PIXELS);
        assert!(
            matches!(result, Err(VisionError::Truncated { .. } | VisionError::Corrupt { .. })),
            "prefix of {len}/{} bytes: {result:?}",
            bytes.len()
        );
    }
}

/// Random byte changes in the headers and entropy-coded data: an error or an image, never
/// a panic.
#[test]
fn random_corruption_never_panics_the_exact_decoder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pillow");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in ["synthetic_restart_420.jpg", "synthetic_restart_422.jpg", "synthetic_narrow_420.jpg"] {
        let original = std::fs::read(dir.join(name)).unwrap();
        for _ in 0..2000 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = next() as u8;
            }
            let _ = decode_jpeg_exact(&bytes, DEFAULT_MAX_PIXELS);
            let _ = decode_rgb8(&bytes, &DecodeOptions::default());
        }
    }
}

#[test]
fn decode_rgb8_uses_the_exact_decoder_for_sample_jpegs() {
    let Some(images_dir) = common::shared_asset("data/imagenet-samples/images") else {
        return;
    };
    let expected = expected_decodes(SAMPLES_FIXTURE);
    let (name, want) = expected.iter().next().unwrap();
    let bytes = std::fs::read(images_dir.join(name)).unwrap();
    let image = decode_rgb8(&bytes, &DecodeOptions::default()).unwrap();
    let first_band = &image.as_raw()[..BAND_ROWS * want.width as usize * 3];
    assert_eq!(fnv1a64(first_band), want.band_hashes[0], "{name}");
}

/// Timing against zune-jpeg (through the `image` crate) on the 500x375 samples:
/// `cargo test --release -p resnet-vision --test jpeg_exact -- --ignored --nocapture`.
#[test]
#[ignore = "timing, not a check; run with --release --ignored --nocapture"]
fn exact_decoder_speed_compared_with_zune() {
    let Some(images_dir) = common::shared_asset("data/imagenet-samples/images") else {
        return;
    };
    let files: Vec<Vec<u8>> = expected_decodes(SAMPLES_FIXTURE)
        .iter()
        .filter(|(_, e)| (e.width, e.height) == (500, 375))
        .map(|(name, _)| std::fs::read(images_dir.join(name)).unwrap())
        .collect();
    assert!(!files.is_empty());
    let rounds = 5;
    let start = Instant::now();
    for _ in 0..rounds {
        for bytes in &files {
            decode_jpeg_exact(bytes, DEFAULT_MAX_PIXELS).unwrap();
        }
    }
    let exact = start.elapsed().as_secs_f64() / (rounds * files.len()) as f64;
    let start = Instant::now();
    for _ in 0..rounds {
        for bytes in &files {
            std::hint::black_box(
                image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).unwrap().to_rgb8(),
            );
        }
    }
    let zune = start.elapsed().as_secs_f64() / (rounds * files.len()) as f64;
    println!(
        "{} images of 500x375: exact {:.2} ms/image, zune-jpeg {:.2} ms/image ({:.2}x)",
        files.len(),
        exact * 1e3,
        zune * 1e3,
        exact / zune
    );
}
