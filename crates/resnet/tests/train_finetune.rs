//! Fine-tuning on real images (issue #7): the Keras ResNet-50 of ../shared with a new 5-way
//! head, backbone frozen, trained on the coarse classes built from the 200 sample images by
//! `scripts/coarse-set.py` (docs/finetune-coarse.md: 152 train / 48 validation). The exported
//! model + labels.txt is what `resnet validate` and `resnet classify` then use, and `validate`
//! reproduces the training log's validation accuracy of the exported (best) epoch exactly.

use std::path::Path;
use std::process::Command;

fn resnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_resnet"))
}

#[test]
fn fine_tuned_keras_resnet50_validates_as_logged() {
    let Some(model) = resnet_test_support::shared_asset("models/resnet50-v1-keras/model.onnx") else { return };
    let Some(samples) = resnet_test_support::shared_asset("data/imagenet-samples") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let coarse = tmp.path().join("coarse");
    let script = resnet_test_support::workspace_root().join("scripts/coarse-set.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(&coarse)
        .arg("--samples")
        .arg(&samples)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("python3 runs scripts/coarse-set.py");
    assert!(status.success());

    let out = tmp.path().join("run");
    let train = resnet()
        .args(["train", "--from"])
        .arg(&model)
        .arg("--data")
        .arg(coarse.join("train"))
        .arg("--val")
        .arg(coarse.join("val"))
        .args(["--freeze-backbone", "--epochs", "2", "--batch-size", "16", "--lr", "0.01"])
        .args(["--lr-schedule", "constant", "--threads", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&train.stderr);
    assert!(train.status.success(), "{err}");
    eprintln!("{err}");
    let log = resnet::train::read_log(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(log.len(), 2);
    // The exported model is the best epoch's (highest validation top-1, later on ties).
    let best = log.iter().rev().max_by(|a, b| a.val_top1.partial_cmp(&b.val_top1).unwrap()).unwrap();
    let best_top1 = best.val_top1.unwrap();
    // 26 of the 48 validation images are artifacts: a model that ignores its input gets 54 %.
    assert!(best_top1 >= 0.7, "fine-tuned top-1 {best_top1}");
    let labels = std::fs::read_to_string(out.join("labels.txt")).unwrap();
    assert_eq!(labels.lines().collect::<Vec<_>>(), ["artifact", "bird", "dog", "food_nature", "other_animal"]);

    // validate on the exported ONNX (labels.txt beside it is picked up) gives the same top-1.
    let v = resnet()
        .args(["validate", "--model"])
        .arg(out.join("model.onnx"))
        .arg("--data")
        .arg(coarse.join("val"))
        .args(["--mode", "exact", "--json"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(report["count"], 48);
    assert_eq!(report["top1"].as_f64().unwrap(), best_top1, "validate vs the training log");

    // classify names the coarse classes.
    let dog = first_image(&coarse.join("val/dog"));
    let c = resnet().args(["classify", "--model"]).arg(out.join("model.onnx")).arg(&dog).output().unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let text = String::from_utf8_lossy(&c.stdout);
    assert!(["artifact", "bird", "dog", "food_nature", "other_animal"].iter().any(|l| text.contains(l)), "{text}");
}

fn first_image(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.remove(0)
}
