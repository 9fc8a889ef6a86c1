//! Fast mode (Winograd F(4×4,3×3) for the 3×3 convs) on the 200 ImageNet sample images with
//! the real Keras ResNet-50: top-1 must equal exact mode's for every image, and the logits
//! stay within [`FAST_LOGIT_BOUND`] of max|logit| (per image) of exact mode. The measured
//! worst error is printed (`--nocapture`); it is the number `--help` quotes.

use std::process::Command;

use rayon::prelude::*;
use resnet::{Classifier, Mode, Model, Tensor};
use resnet_test_support::shared_asset;

/// Documented bound of fast mode's logits, relative to max|logit| of exact mode per image.
const FAST_LOGIT_BOUND: f64 = 1e-3;

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

#[test]
fn fast_mode_keeps_top1_and_logits_on_200_samples() {
    let (Some(model_path), Some(samples)) =
        (shared_asset("models/resnet50-v1-keras/model.onnx"), shared_asset("data/imagenet-samples"))
    else {
        return;
    };
    let tsv = std::fs::read_to_string(samples.join("labels.tsv")).unwrap();
    let files: Vec<String> = tsv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    assert_eq!(files.len(), 200);

    let exact = Model::load(&model_path).unwrap().with_mode(Mode::Exact).with_threads(2);
    let fast = exact.clone().with_mode(Mode::Fast).with_threads(2);
    assert!(
        fast.plan().unwrap().describe().iter().filter(|l| l.contains("winograd")).count() == 16,
        "the 16 3×3 stride-1 convs of ResNet-50 v1 have Winograd filters"
    );
    let classifier = Classifier::new(exact.clone()).unwrap();
    let prepared: Vec<Vec<f32>> = files
        .par_iter()
        .map(|f| classifier.prepare_bytes(&std::fs::read(samples.join("images").join(f)).unwrap()).unwrap())
        .collect();

    // Logits of every image, run in batches of `batch`.
    let logits = |model: &Model, batch: usize| -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(prepared.len());
        for chunk in prepared.chunks(batch) {
            let x = Tensor::from_f32(vec![chunk.len(), 3, 224, 224], chunk.concat());
            let y = model.run(vec![x]).unwrap().remove(0);
            out.extend(y.as_f32().unwrap().chunks(y.len() / chunk.len()).map(<[f32]>::to_vec));
        }
        out
    };
    let want = logits(&exact, 8);
    // Batches of 8 on two threads run as two parts of 4: every 3×3 conv as Winograd F(4×4)
    // (the 7×7 layers have 16 tiles). Batches of 2, one image per part: the 7×7 layers as
    // F(2×2) (16 tiles of 2×2), the others as F(4×4).
    for batch in [8, 2] {
        let got = logits(&fast, batch);
        let (mut worst, mut worst_file, mut sum) = (0.0f64, String::new(), 0.0f64);
        let mut changed = Vec::new();
        for ((ei, fi), name) in want.iter().zip(&got).zip(&files) {
            let max = ei.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
            let err = ei.iter().zip(fi).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs())) / max;
            assert!(err.is_finite(), "{name}: non-finite logits");
            sum += err;
            if err > worst {
                (worst, worst_file) = (err, name.clone());
            }
            if argmax(ei) != argmax(fi) {
                changed.push(format!("{name}: exact {} fast {}", argmax(ei), argmax(fi)));
            }
        }
        eprintln!(
            "fast (batch {batch}) vs exact on 200 images: top-1 changed on {}; logits relative error max {worst:.3e} ({worst_file}), mean {:.3e}",
            changed.len(),
            sum / 200.0
        );
        assert!(changed.is_empty(), "batch {batch}: top-1 changed: {changed:#?}");
        assert!(
            worst <= FAST_LOGIT_BOUND,
            "batch {batch}: logits relative error {worst:e} on {worst_file} exceeds {FAST_LOGIT_BOUND:e}"
        );
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
