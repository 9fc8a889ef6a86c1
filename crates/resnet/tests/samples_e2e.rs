//! End to end: `resnet classify --json` over the 200 ImageNet sample images agrees with the
//! reference pipeline (Pillow + ONNX Runtime) recorded in `labels.tsv`.

use std::collections::HashMap;
use std::process::Command;

use resnet_test_support::shared_asset;

struct Reference {
    top1: usize,
    top5: Vec<usize>,
}

fn read_reference(tsv: &str) -> HashMap<String, Reference> {
    tsv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let top5 = cols[4].split(',').map(|x| x.parse().unwrap()).collect();
            (cols[0].to_string(), Reference { top1: cols[3].parse().unwrap(), top5 })
        })
        .collect()
}

#[test]
fn classify_json_matches_reference_top1_and_top5_on_200_samples() {
    let (Some(model), Some(samples)) =
        (shared_asset("models/resnet50-v1-keras/model.onnx"), shared_asset("data/imagenet-samples"))
    else {
        return;
    };
    let reference = read_reference(&std::fs::read_to_string(samples.join("labels.tsv")).unwrap());
    assert_eq!(reference.len(), 200);
    let mut images: Vec<_> = reference.keys().map(|f| samples.join("images").join(f)).collect();
    images.sort();

    let out = Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["classify", "--json", "--batch", "8", "--model"])
        .arg(&model)
        .args(&images)
        .output()
        .unwrap();
    assert!(out.status.success(), "classify failed: {}", String::from_utf8_lossy(&out.stderr));

    let stdout = String::from_utf8(out.stdout).unwrap();
    let (mut top1_same, mut top5_same, mut lines) = (0, 0, 0);
    let mut differences = Vec::new();
    for line in stdout.lines() {
        lines += 1;
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = std::path::Path::new(v["file"].as_str().unwrap()).file_name().unwrap().to_str().unwrap().to_string();
        let preds = v["predictions"].as_array().unwrap();
        assert_eq!(preds.len(), 5);
        let ours: Vec<usize> = preds.iter().map(|p| p["index"].as_u64().unwrap() as usize).collect();
        let probs: Vec<f64> = preds.iter().map(|p| p["probability"].as_f64().unwrap()).collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{file}: probabilities not descending");
        assert!(probs.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let r = &reference[&file];
        if ours[0] == r.top1 {
            top1_same += 1;
        }
        let (mut a, mut b) = (ours.clone(), r.top5.clone());
        a.sort();
        b.sort();
        if a == b {
            top5_same += 1;
        } else {
            differences.push(format!("{file}: ours {ours:?}, reference {:?}", r.top5));
        }
    }
    assert_eq!(lines, 200);
    eprintln!("top-1 equal: {top1_same}/200, top-5 sets equal: {top5_same}/200; differences: {differences:#?}");
    assert!(top1_same >= 199, "top-1 agrees on only {top1_same} of 200");
    assert!(top5_same >= 195, "top-5 sets agree on only {top5_same} of 200");
}
