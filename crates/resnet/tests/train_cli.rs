//! `resnet train` end to end (issue #7): resume after SIGKILL and after Ctrl-C ends with the
//! weights of an uninterrupted run, the exported model is what `validate` and `classify` use,
//! the metrics log plots, and bad usage is one readable line. The MNIST accuracy run and the
//! fine-tuning run are in `train_mnist.rs` and `train_finetune.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use resnet::train::checkpoint;

fn resnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_resnet"))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn digits() -> Option<PathBuf> {
    resnet_test_support::shared_asset("data/digits/digits.csv.gz")
}

/// A small run on the 8×8 digits: 3 epochs of 22 batches of 64 (1,437 training images).
fn digits_args(data: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "--arch",
        "mnist-v1",
        "--data",
        p(data),
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--lr",
        "0.1",
        "--lr-schedule",
        "cosine",
        "--threads",
        "2",
        "--seed",
        "11",
        "--out",
        p(out),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_ok(args: &[String]) -> Output {
    let out = resnet().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Parameters, buffers and optimizer state of a run's checkpoint, bit for bit.
fn state(out: &Path) -> Vec<(String, Vec<u32>)> {
    let c = checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    c.params
        .iter()
        .chain(&c.buffers)
        .chain(&c.optimizer)
        .map(|t| (t.name.clone(), t.data.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn records(out: &Path) -> Vec<resnet::train::EpochRecord> {
    resnet::train::read_log(&out.join("metrics.jsonl")).unwrap()
}

/// Waits until `cond` holds (polling), or panics after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn resume_after_sigkill_and_after_ctrl_c_ends_with_the_uninterrupted_weights() {
    let Some(data) = digits() else { return };
    let tmp = tempfile::tempdir().unwrap();

    // The reference: one uninterrupted run.
    let whole = tmp.path().join("whole");
    run_ok(&digits_args(&data, &whole));
    let reference = state(&whole);
    let log = records(&whole);
    assert_eq!(log.len(), 3);
    assert!(log[2].val_top1.unwrap() > 0.3, "the digits run learns (chance: 0.1): {log:?}");

    // SIGKILL in the middle of epoch 2 (after epoch 1's checkpoint), then --resume.
    let killed = tmp.path().join("killed");
    let mut child = resnet().args(digits_args(&data, &killed)).stderr(Stdio::null()).spawn().unwrap();
    wait_for(Duration::from_secs(120), "epoch 1", || records_len(&killed) >= 1);
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(records_len(&killed) < 3, "the run finished before it could be killed; make it longer");
    let mut args = digits_args(&data, &killed);
    args.push("--resume".into());
    let resumed = run_ok(&args);
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("resuming from"));
    assert_eq!(state(&killed), reference, "weights after SIGKILL + resume differ from the uninterrupted run");
    assert_eq!(records(&killed).len(), 3);
    assert_eq!(std::fs::read(killed.join("model.onnx")).unwrap(), std::fs::read(whole.join("model.onnx")).unwrap());

    // Ctrl-C (SIGINT) mid-epoch: saves where it is, exits 130; --resume continues from there.
    let interrupted = tmp.path().join("interrupted");
    let child = resnet().args(digits_args(&data, &interrupted)).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(Duration::from_secs(120), "epoch 1", || records_len(&interrupted) >= 1);
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted at epoch") && err.contains("--resume"), "{err}");
    let meta = checkpoint::load(&interrupted.join("checkpoint.safetensors")).unwrap().meta;
    assert!(meta.epoch >= 1, "{meta:?}");
    let mut args = digits_args(&data, &interrupted);
    args.push("--resume".into());
    run_ok(&args);
    assert_eq!(state(&interrupted), reference, "weights after Ctrl-C + resume differ from the uninterrupted run");
    let (a, b) = (records(&interrupted), log);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.epoch, x.train_loss.to_bits(), x.val_top1), (y.epoch, y.train_loss.to_bits(), y.val_top1));
    }

    // The log plots.
    let png = tmp.path().join("curves.png");
    let out = resnet().args(["train", "plot", p(&whole.join("metrics.jsonl")), "--out", p(&png)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let img = image::open(&png).unwrap();
    assert!(img.width() > 600 && img.height() > 300);
}

fn records_len(out: &Path) -> usize {
    std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |t| t.lines().filter(|l| l.ends_with('}')).count())
}

fn error_line(args: &[&str]) -> String {
    let out = resnet().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    err
}

#[test]
fn bad_usage_is_one_line_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = p(&out);
    let err = error_line(&["train", "--arch", "mnist-v1", "--data", "/nonexistent/data", "--out", o]);
    assert!(err.contains("/nonexistent/data"), "{err}");
    let Some(data) = digits() else { return };
    let d = p(&data);
    let err = error_line(&["train", "--arch", "resnet7-v1", "--data", d, "--out", o]);
    assert!(err.contains("resnet7-v1"), "{err}");
    let err = error_line(&["train", "--arch", "mnist-v1", "--data", d, "--freeze-backbone", "--out", o]);
    assert!(err.contains("--freeze-backbone needs --from"), "{err}");
    let err = error_line(&["train", "--arch", "mnist-v1", "--data", d, "--lr=-1", "--out", o]);
    assert!(err.contains("--lr"), "{err}");
    let err = error_line(&["train", "--arch", "mnist-v1", "--data", d, "--lr-schedule", "step:x", "--out", o]);
    assert!(err.contains("step:x"), "{err}");
    let err = error_line(&["train", "--arch", "resnet18-v1", "--data", d, "--out", o]);
    assert!(err.contains("input channel"), "{err}");
    let err = error_line(&["train", "--arch", "mnist-v1", "--data", d, "--classes", "7", "--out", o]);
    assert!(err.contains("--classes 7"), "{err}");
    let err = error_line(&["train", "--arch", "mnist-v1", "--data", d]);
    assert!(err.contains("--out"), "{err}");
    let err =
        error_line(&["train", "plot", p(&tmp.path().join("missing.jsonl")), "--out", p(&tmp.path().join("c.png"))]);
    assert!(err.contains("missing.jsonl"), "{err}");

    // A finished run is not overwritten by accident, and resuming it with other options is refused.
    let mut args = vec!["train", "--arch", "mnist-v1", "--data", d, "--epochs", "1", "--max-batches", "2"];
    args.extend(["--batch-size", "16", "--out", o]);
    let first = resnet().args(&args).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let before = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    let err = error_line(&args);
    assert!(err.contains("--resume"), "{err}");
    let mut other = args.clone();
    other.extend(["--resume", "--lr", "0.5"]);
    let err = error_line(&other);
    assert!(err.contains("lr") && err.contains("0.5"), "{err}");
    // The conv arithmetic is part of the configuration too.
    let mut fast = args.clone();
    fast.extend(["--resume", "--mode", "fast"]);
    let err = error_line(&fast);
    assert!(err.contains("winograd"), "{err}");
    assert_eq!(std::fs::read(out.join("checkpoint.safetensors")).unwrap(), before);
}
