//! Our whole decode -> resize -> crop pipeline against the 224x224 crops Pillow made from the
//! shared ImageNet samples (`imagenet-samples/pil-crops/<name>.png` from
//! `imagenet-samples/images/<name>.JPEG`).
//!
//! The resize and crop are bit-exact (tests/pillow_resize.rs); what remains is the JPEG
//! decoder (zune-jpeg here, libjpeg-turbo in Pillow), whose IDCT and chroma upsampling
//! round differently. Hence a tolerance: per image, at least 99 % of the bytes within 2
//! levels and a mean absolute difference under 0.5 level.

use resnet_test_support as common;

use resnet_vision::{decode_file, DecodeOptions, Preprocess};

const MIN_FRACTION_WITHIN_2: f64 = 0.99;
const MAX_MEAN_ABS_DIFF: f64 = 0.5;

struct Stats {
    name: String,
    fraction_within_2: f64,
    mean_abs_diff: f64,
    max_abs_diff: u8,
}

#[test]
fn our_crops_of_the_sample_jpegs_match_pillows_within_jpeg_decoder_noise() {
    let Some(crops_dir) = common::shared_asset("data/imagenet-samples/pil-crops") else {
        return;
    };
    let Some(images_dir) = common::shared_asset("data/imagenet-samples/images") else {
        return;
    };
    let mut crops: Vec<_> = std::fs::read_dir(&crops_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    crops.sort();
    assert_eq!(crops.len(), 64, "expected 64 Pillow crops in {}", crops_dir.display());

    let opts = DecodeOptions::default();
    let preprocess = Preprocess::default();
    let mut stats = Vec::new();
    for crop_path in &crops {
        let stem = crop_path.file_stem().unwrap().to_str().unwrap();
        let pillow = decode_file(crop_path, &opts).unwrap();
        assert_eq!((pillow.width(), pillow.height()), (224, 224), "{stem}");
        let image = decode_file(images_dir.join(format!("{stem}.JPEG")), &opts).unwrap();
        let ours = preprocess.crop_rgb8(&image).unwrap();

        let diffs: Vec<u8> = ours.as_raw().iter().zip(pillow.as_raw()).map(|(&a, &b)| a.abs_diff(b)).collect();
        let n = diffs.len() as f64;
        stats.push(Stats {
            name: stem.to_owned(),
            fraction_within_2: diffs.iter().filter(|&&d| d <= 2).count() as f64 / n,
            mean_abs_diff: diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / n,
            max_abs_diff: diffs.iter().copied().max().unwrap(),
        });
    }

    let worst = stats.iter().max_by(|a, b| a.mean_abs_diff.total_cmp(&b.mean_abs_diff)).unwrap();
    println!(
        "worst of {} crops: {}: {:.3} % within 2 levels, mean |diff| {:.3}, max |diff| {}",
        stats.len(),
        worst.name,
        100.0 * worst.fraction_within_2,
        worst.mean_abs_diff,
        worst.max_abs_diff
    );
    let failing: Vec<String> = stats
        .iter()
        .filter(|s| s.fraction_within_2 < MIN_FRACTION_WITHIN_2 || s.mean_abs_diff >= MAX_MEAN_ABS_DIFF)
        .map(|s| {
            format!(
                "{}: {:.3} % within 2 levels, mean |diff| {:.3}",
                s.name,
                100.0 * s.fraction_within_2,
                s.mean_abs_diff
            )
        })
        .collect();
    assert!(failing.is_empty(), "crops too far from Pillow's:\n{}", failing.join("\n"));
}
