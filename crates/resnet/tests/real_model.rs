//! The real ResNet-50 in ../shared through the CLI: `check` passes both data sets, `inspect`
//! reports what the file holds, and the library facade agrees with the reference logits.

use std::process::Command;

use resnet_test_support::shared_asset;

fn resnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resnet")).args(args).output().unwrap()
}

#[test]
fn check_passes_both_data_sets_of_the_real_resnet50() {
    let Some(dir) = shared_asset("models/resnet50-v1-keras") else { return };
    for engine in ["plan", "reference"] {
        let out = resnet(&["check", "--engine", engine, dir.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{engine}: check failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout.lines().filter(|l| l.starts_with("ok")).count(), 2, "{engine}: {stdout}");
        assert!(stdout.contains("test_data_set_0") && stdout.contains("test_data_set_1"));
    }
}

#[test]
fn check_fails_with_exit_1_when_tolerance_is_impossible() {
    let Some(dir) = shared_asset("models/resnet50-v1-keras") else { return };
    let out = resnet(&["check", "--rtol", "0", "--atol", "0", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
}

#[test]
fn inspect_json_describes_the_real_resnet50() {
    let Some(model) = shared_asset("models/resnet50-v1-keras/model.onnx") else { return };
    let out = resnet(&["inspect", "--json", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ir_version"], 3);
    assert_eq!(v["opset"], 7);
    assert_eq!(v["nodes"], 176);
    // 25,636,712 network parameters plus the 12 of the leading normalization BN.
    assert_eq!(v["parameters"], 25_636_724);
    assert_eq!(v["inputs"][0]["name"], "data");
    assert_eq!(v["outputs"][0]["name"], "fc1000");
    let ops: std::collections::HashMap<String, u64> = v["op_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap()))
        .collect();
    assert_eq!(ops["Conv"], 53);
    assert_eq!(ops["BatchNormalization"], 54);
    assert_eq!(ops["Relu"], 49);
    assert_eq!(ops["Add"], 16);
    // ResNet-50 v1: 3.86 GMACs of convolutions and the classifier (SPEC §1.5 counts the same
    // ops; this file has the same convolution shapes).
    let macs = v["macs"].as_f64().unwrap() / 1e9;
    assert!((macs - 3.858).abs() < 0.01, "MACs {macs} G");
}

#[test]
fn facade_logits_match_the_reference_logits() {
    let (Some(model), Some(samples)) =
        (shared_asset("models/resnet50-v1-keras/model.onnx"), shared_asset("data/imagenet-samples"))
    else {
        return;
    };
    let classifier = resnet::Classifier::new(resnet::Model::load(&model).unwrap()).unwrap();
    let tsv = std::fs::read_to_string(samples.join("labels.tsv")).unwrap();
    let logits = std::fs::read(samples.join("reference_logits.f32")).unwrap();
    // The first 8 images in one batch: decoding, resizing and cropping are bit-exact with
    // Pillow, so the logits match ONNX Runtime's to fp32 rounding.
    let files: Vec<&str> = tsv.lines().skip(1).take(8).map(|l| l.split('\t').next().unwrap()).collect();
    let prepared: Vec<Vec<f32>> = files
        .iter()
        .map(|f| classifier.prepare_bytes(&std::fs::read(samples.join("images").join(f)).unwrap()).unwrap())
        .collect();
    let batch = prepared.concat();
    let y = classifier.model().run(vec![resnet::Tensor::from_f32(vec![files.len(), 3, 224, 224], batch)]).unwrap();
    let ours = y[0].as_f32().unwrap();
    for (i, file) in files.iter().enumerate() {
        let reference: Vec<f32> =
            logits[i * 4000..(i + 1) * 4000].chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let row = &ours[i * 1000..(i + 1) * 1000];
        let max_ref = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
        let max_err = row.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(max_err <= 1e-4 * max_ref, "{file}: max err {max_err}, max |logit| {max_ref}");
    }
}

#[test]
fn classify_runs_at_a_larger_input_size_and_with_a_custom_labels_file() {
    let (Some(model), Some(image)) = (
        shared_asset("models/resnet50-v1-keras/model.onnx"),
        shared_asset("data/imagenet-samples/images/n06874185_traffic_light.JPEG"),
    ) else {
        return;
    };
    let (model, image) = (model.to_str().unwrap(), image.to_str().unwrap());
    // 288×288: resize the shorter side to 329, crop 288; global pooling makes the net size-agnostic.
    let out = resnet(&["classify", "--json", "--input-size", "288", "--model", model, image]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["predictions"][0]["index"], 920);

    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.txt");
    let lines: Vec<String> = (0..1000).map(|i| format!("class number {i}")).collect();
    std::fs::write(&labels, lines.join("\n") + "\n").unwrap();
    let out = resnet(&["classify", "--json", "--labels", labels.to_str().unwrap(), "--model", model, image]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["predictions"][0]["label"], "class number 920");
    assert!(v["predictions"][0]["wnid"].is_null());

    std::fs::write(&labels, "cat\ndog\n").unwrap();
    let out = resnet(&["classify", "--labels", labels.to_str().unwrap(), "--model", model, image]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1000 classes") && err.contains("--labels"), "{err}");
}
