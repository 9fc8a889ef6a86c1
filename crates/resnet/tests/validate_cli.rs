//! `resnet validate` refuses bad input with one readable line (exit code 2) before loading
//! any model: unknown class folders, class folders without images, a flat folder without
//! ground truth, a bad ground-truth line, a bad --shard or --crops, reports that are not
//! reports.

use std::path::Path;
use std::process::{Command, Output};

fn resnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resnet")).args(args).output().unwrap()
}

fn error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    err
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_folder_that_is_not_a_wnid_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("n01440764")).unwrap();
    std::fs::create_dir_all(tmp.path().join("cats")).unwrap();
    let err = error_line(&resnet(&["validate", "--model", "m.onnx", "--data", p(tmp.path())]));
    assert!(err.contains("folder 'cats' is neither a WordNet id nor a line of the labels"), "{err}");
}

#[test]
fn class_folders_without_images_are_an_error_not_a_zero_score() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("n01440764")).unwrap();
    std::fs::write(tmp.path().join("n01440764").join("notes.txt"), b"not an image").unwrap();
    let err = error_line(&resnet(&["validate", "--model", "m.onnx", "--data", p(tmp.path())]));
    assert!(err.contains("no images to score: its 1 class folder(s) hold no .jpg, .jpeg or .png files"), "{err}");
}

#[test]
fn a_flat_folder_without_ground_truth_says_to_pass_one() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("ILSVRC2012_val_00000001.JPEG"), b"x").unwrap();
    let err = error_line(&resnet(&["validate", "--model", "m.onnx", "--data", p(tmp.path())]));
    assert!(err.contains("holds 1 images directly: pass --ground-truth FILE"), "{err}");
}

#[test]
fn a_bad_ground_truth_line_is_named_by_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let gt = tmp.path().join("gt.txt");
    std::fs::write(&gt, "a.JPEG 1\nb.JPEG 1000\n").unwrap();
    let err =
        error_line(&resnet(&["validate", "--model", "m.onnx", "--data", p(tmp.path()), "--ground-truth", p(&gt)]));
    assert!(err.contains("gt.txt:2: class index 1000 is out of range"), "{err}");
}

#[test]
fn bad_shard_crops_and_missing_data_are_usage_errors() {
    let out = resnet(&["validate", "--data", ".", "--shard", "3/3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected I/N with 0 <= I < N"));
    let out = resnet(&["validate", "--data", ".", "--crops", "5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--crops is 1 (center crop) or 10 (ten-crop)"));
    let err = error_line(&resnet(&["validate", "--model", "m.onnx"]));
    assert!(err.contains("--data DIR is required"), "{err}");
}

#[test]
fn merge_refuses_a_file_that_is_not_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("notes.json");
    std::fs::write(&f, "{\"hello\": 1}").unwrap();
    let err = error_line(&resnet(&["validate", "merge", p(&f)]));
    assert!(err.contains("notes.json: not a validation report"), "{err}");
}
