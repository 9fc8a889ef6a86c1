//! The training augmentations (SPEC §6.1): determinism per seed, identities at zero strength,
//! the crop box distribution and its fallback, output sizes.

use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use resnet_vision::augment::{
    self, color_jitter, crop, flip_horizontal, lighting, pca_offset, random_crop_box, random_flip, random_resized_crop,
    CropBox, DEFAULT_RATIO, DEFAULT_SCALE,
};
use resnet_vision::RgbImage;

/// A `width` x `height` image with varied, deterministic pixels.
fn pattern(width: u32, height: u32) -> RgbImage {
    let data = (0..width as usize * height as usize * 3).map(|i| (i * 37 % 251 + (i / 7) % 5) as u8).collect();
    RgbImage::from_raw(width, height, data).unwrap()
}

fn uniform_image(width: u32, height: u32, px: [u8; 3]) -> RgbImage {
    RgbImage::from_raw(width, height, px.repeat(width as usize * height as usize)).unwrap()
}

fn full_pipeline(img: &RgbImage, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let out = random_resized_crop(img, 32, DEFAULT_SCALE, DEFAULT_RATIO, &mut rng).unwrap();
    let out = random_flip(out, &mut rng);
    let out = color_jitter(out, 0.4, 0.4, 0.4, &mut rng);
    lighting(out, 0.1, &mut rng)
}

#[test]
fn the_same_seed_gives_the_same_augmented_image_and_other_seeds_differ() {
    let img = pattern(90, 70);
    let a = full_pipeline(&img, 7);
    assert_eq!(a, full_pipeline(&img, 7));
    assert_eq!((a.width(), a.height()), (32, 32));
    let distinct = (0..8).filter(|&s| full_pipeline(&img, s) != a).count();
    assert!(distinct >= 7, "only {distinct} of 8 other seeds changed the image");
}

#[test]
fn zero_strength_jitter_and_lighting_are_the_identity_and_draw_nothing() {
    let img = pattern(17, 9);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    assert_eq!(color_jitter(img.clone(), 0.0, 0.0, 0.0, &mut rng), img);
    assert_eq!(lighting(img.clone(), 0.0, &mut rng), img);
    // Only the order shuffle drew: the next draws match a fresh RNG after one shuffle.
    let mut fresh = ChaCha8Rng::seed_from_u64(1);
    augment::shuffle(&mut [0, 1, 2], &mut fresh);
    assert_eq!(augment::uniform(&mut rng, 0.0, 1.0), augment::uniform(&mut fresh, 0.0, 1.0));
}

#[test]
fn flipping_twice_is_the_identity_and_once_mirrors_each_row() {
    for (w, h) in [(5, 3), (4, 2), (1, 1)] {
        let img = pattern(w, h);
        let flipped = flip_horizontal(img.clone());
        for y in 0..h {
            for x in 0..w {
                assert_eq!(flipped.get(x, y), img.get(w - 1 - x, y));
            }
        }
        assert_eq!(flip_horizontal(flipped), img);
    }
}

#[test]
fn random_flip_flips_about_half_the_time() {
    let img = pattern(6, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let flips = (0..400).filter(|_| random_flip(img.clone(), &mut rng) != img).count();
    assert!((150..250).contains(&flips), "{flips} flips out of 400");
}

#[test]
fn crop_boxes_respect_the_area_and_aspect_bounds_and_fit_the_image() {
    let (w, h) = (500u32, 375u32);
    let area = f64::from(w * h);
    let mut fallbacks = 0;
    for seed in 0..2000 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (b, random) = random_crop_box(w, h, 224, DEFAULT_SCALE, DEFAULT_RATIO, &mut rng);
        assert!(b.width >= 1 && b.height >= 1 && b.x0 + b.width <= w && b.y0 + b.height <= h, "{b:?}");
        if !random {
            fallbacks += 1;
            continue;
        }
        // w and h are rounded separately: allow half a pixel on each side.
        let (bw, bh) = (f64::from(b.width), f64::from(b.height));
        let (lo, hi) = ((bw - 0.5) * (bh - 0.5), (bw + 0.5) * (bh + 0.5));
        assert!(hi >= 0.08 * area && lo <= area, "{b:?}: area out of [0.08, 1]");
        let aspect = bw / bh;
        let tol = 0.5 / bw.min(bh) * 2.5;
        let in_range = |r: f64| r >= 0.75 * (1.0 - tol) && r <= 4.0 / 3.0 * (1.0 + tol);
        // The range is closed under the 0.5 swap (1/r is in it too).
        assert!(in_range(aspect), "{b:?}: aspect {aspect}");
    }
    // Falling back needs ten misses in a row, rare for a 4:3 image.
    assert!(fallbacks < 20, "{fallbacks} fallbacks");
}

#[test]
fn crop_corners_cover_the_whole_range() {
    // With scale fixed at 0.25 of a 40x40 image the box is 20x20 (ratio 1): x0, y0 in 0..=20.
    let mut seen_x = [false; 21];
    for seed in 0..2000 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (b, random) = random_crop_box(40, 40, 8, (0.25, 0.25), (1.0, 1.0), &mut rng);
        assert!(random);
        assert_eq!((b.width, b.height), (20, 20));
        seen_x[b.x0 as usize] = true;
    }
    assert!(seen_x.iter().all(|&s| s), "corners not all reached: {seen_x:?}");
}

#[test]
fn a_box_that_never_fits_falls_back_to_the_centered_square() {
    // Any area ≥ 0.08 · 1000 · 10 needs a side ≥ 24 > 10: all ten attempts miss.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (b, random) = random_crop_box(1000, 10, 224, DEFAULT_SCALE, DEFAULT_RATIO, &mut rng);
    assert!(!random);
    assert_eq!(b, CropBox { x0: 495, y0: 0, width: 10, height: 10 });
    // A fallback on a large image is the centered size x size square.
    let (b, random) = random_crop_box(300, 260, 224, (2.0, 3.0), DEFAULT_RATIO, &mut rng);
    assert!(!random);
    assert_eq!(b, CropBox { x0: 38, y0: 18, width: 224, height: 224 });
    let img = pattern(300, 260);
    let out = random_resized_crop(&img, 224, (2.0, 3.0), DEFAULT_RATIO, &mut rng).unwrap();
    assert_eq!(out, crop(&img, b).unwrap());
}

#[test]
fn random_resized_crop_outputs_size_by_size_for_any_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (w, h) in [(1, 1), (3, 200), (640, 427), (50, 50)] {
        let out = random_resized_crop(&pattern(w, h), 24, DEFAULT_SCALE, DEFAULT_RATIO, &mut rng).unwrap();
        assert_eq!((out.width(), out.height()), (24, 24), "from {w}x{h}");
    }
    let empty = RgbImage::from_raw(0, 4, Vec::new()).unwrap();
    assert!(random_resized_crop(&empty, 24, DEFAULT_SCALE, DEFAULT_RATIO, &mut rng).is_err());
    assert!(random_resized_crop(&pattern(4, 4), 0, DEFAULT_SCALE, DEFAULT_RATIO, &mut rng).is_err());
}

#[test]
fn crop_copies_the_box_pixels() {
    let img = pattern(7, 5);
    let c = crop(&img, CropBox { x0: 2, y0: 1, width: 3, height: 2 }).unwrap();
    for y in 0..2 {
        for x in 0..3 {
            assert_eq!(c.get(x, y), img.get(x + 2, y + 1));
        }
    }
    assert!(crop(&img, CropBox { x0: 7, y0: 0, width: 3, height: 2 }).is_err());
}

#[test]
fn contrast_and_saturation_leave_gray_images_unchanged_and_brightness_scales() {
    // Gray pixels equal their luma (the weights sum to 1): contrast and saturation are
    // identities on a uniform gray image. MXNet's blue-only gray would darken it instead.
    let gray = uniform_image(8, 8, [100, 100, 100]);
    for seed in 0..20 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        assert_eq!(color_jitter(gray.clone(), 0.0, 0.4, 0.4, &mut rng), gray);
    }
    // Brightness alone: every byte scales by the same α = 1 + U(−0.4, 0.4).
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let out = color_jitter(uniform_image(4, 4, [100, 50, 200]), 0.4, 0.0, 0.0, &mut rng);
    let px = out.get(0, 0).unwrap();
    let alpha = f64::from(px[0]) / 100.0;
    assert!((0.595..=1.405).contains(&alpha));
    assert!(
        (f64::from(px[1]) - 50.0 * alpha).abs() <= 1.0 && (f64::from(px[2]) - (200.0 * alpha).min(255.0)).abs() <= 1.5
    );
    assert!(out.as_raw().chunks_exact(3).all(|p| p == px));
}

#[test]
fn crop_box_areas_spread_over_the_scale_range() {
    let mut small = 0;
    let mut large = 0;
    for seed in 0..500 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (b, _) = random_crop_box(400, 400, 224, DEFAULT_SCALE, DEFAULT_RATIO, &mut rng);
        let frac = f64::from(b.width * b.height) / 160_000.0;
        small += usize::from(frac < 0.3);
        large += usize::from(frac > 0.7);
    }
    assert!(small > 100 && large > 50, "{small} small, {large} large");
}

#[test]
fn saturation_moves_colors_towards_their_luma() {
    let img = uniform_image(2, 2, [200, 40, 40]);
    let luma = 0.299 * 200.0 + 0.587 * 40.0 + 0.114 * 40.0;
    for seed in 0..10 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let out = color_jitter(img.clone(), 0.0, 0.0, 0.4, &mut rng);
        let px = out.get(1, 1).unwrap();
        // x·α + (1−α)·luma is affine in α: recover α from R and check G and B with it.
        let alpha = (f64::from(px[0]) - luma) / (200.0 - luma);
        assert!((0.59..=1.41).contains(&alpha), "alpha {alpha}");
        let g = 40.0 * alpha + (1.0 - alpha) * luma;
        assert!((f64::from(px[1]) - g).abs() <= 1.5, "{px:?} vs {g}");
    }
}

#[test]
fn lighting_adds_one_pca_offset_to_every_pixel_and_saturates() {
    let off = pca_offset([1.0, 0.0, 0.0]);
    let want = [-0.5675 * 55.46, -0.5808 * 55.46, -0.5836 * 55.46];
    for c in 0..3 {
        assert!((off[c] - want[c]).abs() < 1e-9);
    }
    let img = uniform_image(5, 5, [128, 128, 128]);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let out = lighting(img, 0.5, &mut rng);
    let first = out.get(0, 0).unwrap();
    assert!(out.as_raw().chunks_exact(3).all(|p| p == first));
    assert_ne!(first, [128, 128, 128]);
}

#[test]
fn rng_helpers_are_uniform_and_in_range() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut counts = [0usize; 7];
    for _ in 0..7000 {
        counts[augment::below(&mut rng, 7) as usize] += 1;
    }
    assert!(counts.iter().all(|&c| (850..1150).contains(&c)), "{counts:?}");
    let n = 20000;
    let draws: Vec<f64> = (0..n).map(|_| augment::normal(&mut rng)).collect();
    let mean = draws.iter().sum::<f64>() / n as f64;
    let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    let mut v: Vec<usize> = (0..50).collect();
    augment::shuffle(&mut v, &mut rng);
    assert_ne!(v, (0..50).collect::<Vec<_>>());
    v.sort_unstable();
    assert_eq!(v, (0..50).collect::<Vec<_>>());
}
