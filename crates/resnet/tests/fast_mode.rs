//! Fast mode (Winograd F(4×4,3×3) for the 3×3 convs) and bf16 mode on the 200 ImageNet
//! sample images with the real Keras ResNet-50: top-1 must equal exact mode's for every
//! image, and the logits stay within [`FAST_LOGIT_BOUND`] (fast) or [`BF16_LOGIT_BOUND`]
//! (bf16) of max|logit| (per image) of exact mode. The measured worst errors are printed
//! (`--nocapture`); they are the numbers `--help` quotes.

use std::process::Command;

use rayon::prelude::*;
use resnet::{Classifier, Mode, Model, Tensor};
use resnet_test_support::shared_asset;

/// Documented bound of fast mode's logits, relative to max|logit| of exact mode per image.
const FAST_LOGIT_BOUND: f64 = 1e-3;

/// Bound of bf16 mode's logits against exact mode's on the 200 images, relative to
/// max|logit| per image (measured: 1.18e-2 at worst, 3.7e-3 on average, at batches of 8 and
/// of 2; `--help` quotes it).
const BF16_LOGIT_BOUND: f64 = 2e-2;

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

/// A sample image: file name, WNID, input prepared as the zoo does.
type Sample = (String, String, Vec<f32>);

/// The Keras ResNet-50 in exact mode on two threads and the 200 sample images, or `None`
/// without the assets (`shared_asset` fails instead under CI).
fn keras_and_samples() -> Option<(Model, Vec<Sample>)> {
    let model_path = shared_asset("models/resnet50-v1-keras/model.onnx")?;
    let samples = shared_asset("data/imagenet-samples")?;
    let exact = Model::load(&model_path).unwrap().with_mode(Mode::Exact).with_threads(2);
    let classifier = Classifier::new(exact.clone()).unwrap();
    let tsv = std::fs::read_to_string(samples.join("labels.tsv")).unwrap();
    let rows: Vec<(String, String)> = tsv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap().to_string(), f.next().unwrap().to_string())
        })
        .collect();
    assert_eq!(rows.len(), 200);
    let images = rows
        .into_par_iter()
        .map(|(file, wnid)| {
            let x = classifier.prepare_bytes(&std::fs::read(samples.join("images").join(&file)).unwrap()).unwrap();
            (file, wnid, x)
        })
        .collect();
    Some((exact, images))
}

/// Logits of every image, run in batches of `batch`.
fn logits(model: &Model, images: &[Sample], batch: usize) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch) {
        let x =
            Tensor::from_f32(vec![chunk.len(), 3, 224, 224], chunk.iter().flat_map(|i| i.2.iter().copied()).collect());
        let y = model.run(vec![x]).unwrap().remove(0);
        out.extend(y.as_f32().unwrap().chunks(y.len() / chunk.len()).map(<[f32]>::to_vec));
    }
    out
}

/// `got` against `want` image by image: the largest and the mean of max|got − want| /
/// max|want|, the image with the largest, and the images whose top-1 differs.
fn compare(want: &[Vec<f32>], got: &[Vec<f32>], images: &[Sample]) -> (f64, String, f64, Vec<String>) {
    let (mut worst, mut worst_file, mut sum, mut changed) = (0.0f64, String::new(), 0.0f64, Vec::new());
    for ((w, g), (name, _, _)) in want.iter().zip(got).zip(images) {
        let max = w.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
        let err = w.iter().zip(g).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs())) / max;
        assert!(err.is_finite(), "{name}: non-finite logits");
        sum += err;
        if err > worst {
            (worst, worst_file) = (err, name.clone());
        }
        if argmax(w) != argmax(g) {
            changed.push(format!("{name}: {} → {}", argmax(w), argmax(g)));
        }
    }
    (worst, worst_file, sum / want.len() as f64, changed)
}

#[test]
fn fast_mode_keeps_top1_and_logits_on_200_samples() {
    let Some((exact, images)) = keras_and_samples() else { return };
    let fast = exact.clone().with_mode(Mode::Fast).with_threads(2);
    assert!(
        fast.plan().unwrap().describe().iter().filter(|l| l.contains("winograd")).count() == 16,
        "the 16 3×3 stride-1 convs of ResNet-50 v1 have Winograd filters"
    );
    let want = logits(&exact, &images, 8);
    // Batches of 8 on two threads run as two parts of 4: every 3×3 conv as Winograd F(4×4)
    // (the 7×7 layers have 16 tiles). Batches of 2, one image per part: the 7×7 layers as
    // F(2×2) (16 tiles of 2×2; exact on CPUs with two 512-bit FMAs a cycle), the others as
    // F(4×4).
    for batch in [8, 2] {
        let (worst, worst_file, mean, changed) = compare(&want, &logits(&fast, &images, batch), &images);
        eprintln!(
            "fast (batch {batch}) vs exact on 200 images: top-1 changed on {}; logits relative error max {worst:.3e} ({worst_file}), mean {mean:.3e}",
            changed.len()
        );
        assert!(changed.is_empty(), "batch {batch}: top-1 changed: {changed:#?}");
        assert!(
            worst <= FAST_LOGIT_BOUND,
            "batch {batch}: logits relative error {worst:e} on {worst_file} exceeds {FAST_LOGIT_BOUND:e}"
        );
    }
}

/// `Mode::Bf16` (fast mode with the 1×1 convs and the F(2×2) Winograd products in bfloat16)
/// on the same 200 images at batches of 8 and of 2 on two threads: how far it moves the
/// logits and the top-1 from exact mode, and the top-1/top-5 it scores against the labels,
/// within the bounds `--help` quotes. On a CPU without AVX-512 BF16 the model refuses the
/// mode with an error that says so.
#[test]
fn bf16_mode_keeps_the_accuracy_on_200_samples() {
    let Some((exact, images)) = keras_and_samples() else { return };
    let bf16 = exact.clone().with_mode(Mode::Bf16);
    if !resnet_engine::plan::direct::bf16::supported() {
        let e = bf16.plan().expect_err("no AVX-512 BF16: refused");
        assert!(format!("{e:#}").contains("AVX-512 BF16"), "{e:#}");
        return;
    }
    let plan = bf16.plan().unwrap();
    let lines = plan.describe();
    assert_eq!(lines.iter().filter(|l| l.contains("winograd")).count(), 16, "bf16 mode is fast mode too");
    // Every 1×1 conv runs in bf16.
    assert_eq!(lines.iter().filter(|l| l.contains("pointwise-direct bf16")).count(), 36, "{lines:#?}");
    let synsets = std::fs::read_to_string(shared_asset("data/labels/synset.txt").expect("synset.txt")).unwrap();
    let wnids: Vec<&str> = synsets.lines().map(|l| l.split_whitespace().next().unwrap_or("")).collect();
    // (top-1, top-5) against the labels.
    let score = |all: &[Vec<f32>]| -> (usize, usize) {
        let (mut top1, mut top5) = (0, 0);
        for (v, (_, wnid, _)) in all.iter().zip(&images) {
            let mut idx: Vec<usize> = (0..v.len()).collect();
            idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
            let truth = wnids.iter().position(|w| w == wnid).unwrap();
            top1 += usize::from(idx[0] == truth);
            top5 += usize::from(idx[..5].contains(&truth));
        }
        (top1, top5)
    };
    let want = logits(&exact, &images, 8);
    let e = score(&want);
    // The 3×3 convs of 128 channels and more run as F(2×2) with bfloat16 products, the
    // 64-channel ones as F(4×4) in float32, at either batch (8 on two threads: parts of 4).
    for batch in [8, 2] {
        let got = logits(&bf16, &images, batch);
        let (worst, worst_file, mean, changed) = compare(&want, &got, &images);
        let b = score(&got);
        eprintln!(
            "bf16 (batch {batch}) vs exact on 200 images: top-1 changed on {} {changed:?}; logits relative error max {worst:.3e} ({worst_file}), mean {mean:.3e}; top-1/top-5 exact {e:?} bf16 {b:?}",
            changed.len()
        );
        assert!(
            worst <= BF16_LOGIT_BOUND,
            "batch {batch}: logits relative error {worst:e} on {worst_file} exceeds {BF16_LOGIT_BOUND:e}"
        );
        assert!(changed.is_empty(), "batch {batch}: top-1 changed on {changed:?}");
        assert_eq!(b, e, "batch {batch}: top-1/top-5 against the labels");
    }
}

#[test]
fn mode_fast_with_the_reference_engine_is_a_one_line_error() {
    for args in [
        &["classify", "--model", "nowhere.onnx", "nowhere.jpg"][..],
        &["bench", "--model", "nowhere.onnx"],
        &["check", "nowhere"],
    ] {
        let cmd = args[0];
        let o = Command::new(env!("CARGO_BIN_EXE_resnet"))
            .args(args)
            .args(["--engine", "reference", "--mode", "fast"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert_eq!(err.lines().count(), 1, "{cmd}: {err}");
        assert!(err.contains("--mode fast needs --engine plan"), "{cmd}: {err}");
    }
}

#[test]
fn help_says_what_fast_mode_does_and_its_measured_bound() {
    for cmd in ["classify", "bench", "check", "validate", "serve"] {
        let o = Command::new(env!("CARGO_BIN_EXE_resnet")).args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&o.stdout);
        for needle in [
            "Winograd",
            "F(4×4,3×3)",
            "F(2×2,3×3)",
            "top-1",
            "2.6e-6",
            "Default: fast for classify, validate, bench and serve",
        ] {
            assert!(help.contains(needle), "{cmd} --help lacks '{needle}':\n{help}");
        }
    }
}
