//! `resnet export` and the zoo line of `resnet inspect`, through the binary.

use std::process::{Command, Output};

fn resnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resnet")).args(args).output().unwrap()
}

#[test]
fn export_arch_writes_a_file_inspect_recognises() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r18.onnx");
    let o = resnet(&[
        "export",
        "--arch",
        "resnet18-v2",
        "--seed",
        "3",
        "--classes",
        "10",
        "--input-size",
        "64",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = resnet(&["inspect", "--json", out.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["zoo_arch"]["name"], "resnet18-v2");
    assert_eq!(json["zoo_arch"]["classes"], 10);
    assert_eq!(json["inputs"][0]["shape"], serde_json::json!(["N", "3", "64", "64"]));
    let o = resnet(&["inspect", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("zoo arch   resnet18-v2 (Gluon ResNetV2, prefix resnetv22_, 10 classes, input 64x64)"),
        "{text}"
    );
    // No temporary file is left beside the output.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // Re-exporting the file at opset 13 gives a model inspect still recognises.
    let out13 = dir.path().join("r18-13.onnx");
    let o = resnet(&["export", "--model", out.to_str().unwrap(), "--opset", "13", out13.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = resnet(&["inspect", "--json", out13.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((json["opset"].as_i64(), json["ir_version"].as_i64()), (Some(13), Some(7)));
    assert_eq!(json["zoo_arch"]["name"], "resnet18-v2");
}

#[test]
fn export_errors_are_one_line_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.onnx");
    let o = resnet(&["export", "--arch", "resnet51-v1", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: unknown architecture 'resnet51-v1' (choose from: resnet18-v1,"), "{err}");
    let o = resnet(&["export", "--arch", "resnet18-v1", "--opset", "11", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists());
}
