//! Training checkpoints: bit-exact round trips, typed errors for missing, truncated, foreign
//! and future files, atomic saves, and capture/restore of a model and its optimizer.

use std::io::Write;
use std::path::Path;

use resnet::engine::train::{Buffer, Optimizer, OptimizerConfig, Param, ParamRole};
use resnet::train::checkpoint::{self, write_atomically, PartialEpoch, FORMAT_VERSION};
use resnet::train::{Checkpoint, CheckpointError, CheckpointMeta, NamedTensor};
use serde_json::json;

fn sample_meta() -> CheckpointMeta {
    CheckpointMeta {
        format_version: FORMAT_VERSION,
        epoch: 7,
        batch_in_epoch: 123,
        global_step: 45_678_901_234,
        seed: u64::MAX,
        partial_epoch: Some(PartialEpoch {
            loss_sum_bits: 0,
            correct: 1,
            images: u64::MAX,
            seconds_bits: 0x9E37_79B9_7F4A_7C15,
        }),
        best_val_top1: Some(0.1 + 0.2),
        best_epoch: Some(5),
        classes: vec!["zero".into(), "one".into(), "tench, Tinca tinca".into()],
        config: json!({"model": "resnet18_v1", "optimizer": {"kind": "nag", "momentum": 0.9, "wd": 2e-4}, "epochs": 10}),
    }
}

fn sample() -> Checkpoint {
    let special = vec![0.0, -0.0, 1.0e-45, f32::MAX, f32::MIN_POSITIVE, -3.5, f32::from_bits(0x7fc0_1234), 1.0 / 3.0];
    Checkpoint {
        // Deliberately not in name order: the order must survive.
        params: vec![
            NamedTensor::new("stage1_conv0_weight", vec![2, 1, 2, 2], special.clone()),
            NamedTensor::new("conv0_weight", vec![2, 2], (0..4).map(|k| k as f32 * 0.25).collect()),
            NamedTensor::new("dense0_bias", vec![3], vec![0.5, -0.5, 1e-7]),
        ],
        buffers: vec![
            NamedTensor::new("bn_running_var", vec![2], vec![1.0, 2.0]),
            NamedTensor::new("bn_running_mean", vec![2], vec![-1.0, 0.0]),
        ],
        optimizer: vec![
            NamedTensor::new("stage1_conv0_weight", vec![2, 1, 2, 2], special.iter().map(|v| v * 0.5).collect()),
            NamedTensor::new("conv0_weight", vec![2, 2], vec![0.0; 4]),
        ],
        meta: sample_meta(),
    }
}

fn bits(tensors: &[NamedTensor]) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    tensors.iter().map(|t| (t.name.clone(), t.shape.clone(), t.data.iter().map(|v| v.to_bits()).collect())).collect()
}

fn assert_same(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(bits(&a.params), bits(&b.params), "params");
    assert_eq!(bits(&a.buffers), bits(&b.buffers), "buffers");
    assert_eq!(bits(&a.optimizer), bits(&b.optimizer), "optimizer");
    assert_eq!(a.meta, b.meta, "meta");
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn round_trip_is_bit_exact_and_keeps_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let ckpt = sample();
    checkpoint::save(&path, &ckpt).unwrap();
    let loaded = checkpoint::load(&path).unwrap();
    assert_same(&ckpt, &loaded);
    assert_eq!(loaded.meta.best_val_top1.unwrap().to_bits(), (0.1f64 + 0.2).to_bits());
    assert_eq!(files_in(dir.path()), vec!["ckpt.safetensors"], "no temporary file may remain");
}

#[test]
fn the_file_is_plain_safetensors_with_prefixed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    checkpoint::save(&path, &sample()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(
        names,
        vec![
            "buffers/bn_running_mean",
            "buffers/bn_running_var",
            "optimizer/conv0_weight",
            "optimizer/stage1_conv0_weight",
            "params/conv0_weight",
            "params/dense0_bias",
            "params/stage1_conv0_weight",
        ]
    );
    let bias = file.tensor("params/dense0_bias").unwrap();
    assert_eq!(bias.dtype(), safetensors::Dtype::F32);
    assert_eq!(bias.shape(), &[3]);
    assert_eq!(&bias.data()[..4], &0.5f32.to_le_bytes());
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().as_ref().unwrap();
    assert_eq!(meta["format"], checkpoint::FORMAT_TAG);
    let stored: serde_json::Value = serde_json::from_str(&meta["checkpoint"]).unwrap();
    assert_eq!(stored["epoch"], 7);
    assert_eq!(stored["config"]["optimizer"]["kind"], "nag");
}

#[test]
fn a_missing_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.safetensors");
    match checkpoint::load(&path) {
        Err(CheckpointError::Missing { path: p }) => assert_eq!(p, path),
        other => panic!("expected Missing, got {other:?}"),
    }
}

#[test]
fn truncated_files_are_reported_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    checkpoint::save(&path, &sample()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let cut = dir.path().join("cut.safetensors");
    for len in [0, 5, 8, 20, header_end - 1, header_end, header_end + 7, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        match checkpoint::load(&cut) {
            Err(e @ CheckpointError::Truncated { .. }) => {
                let line = e.to_string();
                assert!(
                    line.contains("cut.safetensors") && line.contains("truncated") && !line.contains('\n'),
                    "{line}"
                );
            }
            other => panic!("cut at {len} of {}: expected Truncated, got {other:?}", bytes.len()),
        }
    }
}

#[test]
fn garbage_and_foreign_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");

    std::fs::write(&path, b"this is a text file, certainly not a checkpoint\n").unwrap();
    assert!(matches!(checkpoint::load(&path), Err(CheckpointError::NotSafetensors { .. })));

    // A plausible length but no JSON header.
    let mut fake = 16u64.to_le_bytes().to_vec();
    fake.extend_from_slice(b"PK\x03\x04 zip-ish data...");
    std::fs::write(&path, &fake).unwrap();
    assert!(matches!(checkpoint::load(&path), Err(CheckpointError::NotSafetensors { .. })));

    // Our checkpoint with junk appended.
    checkpoint::save(&path, &sample()).unwrap();
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"junk").unwrap();
    assert!(matches!(checkpoint::load(&path), Err(CheckpointError::NotSafetensors { .. })));

    // A valid safetensors file that is not a resnet-rs checkpoint (e.g. someone's weights).
    let data = 1.0f32.to_le_bytes();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &data).unwrap();
    let bytes = safetensors::serialize([("weight", view)], None).unwrap();
    std::fs::write(&path, bytes).unwrap();
    match checkpoint::load(&path) {
        Err(e @ CheckpointError::BadMetadata { .. }) => assert!(e.to_string().contains("__metadata__"), "{e}"),
        other => panic!("expected BadMetadata, got {other:?}"),
    }
}

#[test]
fn another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.safetensors");
    let mut ckpt = sample();
    ckpt.meta.format_version = FORMAT_VERSION + 1;
    checkpoint::save(&path, &ckpt).unwrap();
    match checkpoint::load(&path) {
        Err(CheckpointError::Version { found, supported, .. }) => {
            assert_eq!((found, supported), (u64::from(FORMAT_VERSION) + 1, FORMAT_VERSION))
        }
        other => panic!("expected Version, got {other:?}"),
    }
}

#[test]
fn inconsistent_tensors_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let mut bad_shape = sample();
    bad_shape.params[1].shape = vec![3, 3];
    match checkpoint::save(&path, &bad_shape) {
        Err(CheckpointError::Tensor { name, .. }) => assert_eq!(name, "params/conv0_weight"),
        other => panic!("expected Tensor, got {other:?}"),
    }
    let mut twice = sample();
    twice.buffers.push(twice.buffers[0].clone());
    assert!(matches!(checkpoint::save(&path, &twice), Err(CheckpointError::Tensor { .. })));
    assert!(files_in(dir.path()).is_empty(), "nothing may be written: {:?}", files_in(dir.path()));
}

#[test]
fn a_save_that_fails_midway_leaves_the_previous_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let old = sample();
    checkpoint::save(&path, &old).unwrap();

    // The writer dies after half a checkpoint's bytes, as a full disk or a crash would.
    let mut newer = sample();
    newer.meta.epoch = 8;
    checkpoint::save(&dir.path().join("newer.safetensors"), &newer).unwrap();
    let newer_bytes = std::fs::read(dir.path().join("newer.safetensors")).unwrap();
    std::fs::remove_file(dir.path().join("newer.safetensors")).unwrap();
    let err = write_atomically(&path, |out| {
        out.write_all(&newer_bytes[..newer_bytes.len() / 2])?;
        Err(std::io::Error::other("simulated failure"))
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "simulated failure");
    assert_same(&old, &checkpoint::load(&path).unwrap());
    assert_eq!(files_in(dir.path()), vec!["ckpt.safetensors"], "the temporary file must be removed");

    // A save into a directory that does not exist fails with the path in the message.
    let nowhere = dir.path().join("missing-dir").join("ckpt.safetensors");
    let err = checkpoint::save(&nowhere, &newer).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }) && err.to_string().contains("missing-dir"), "{err}");

    // A successful save replaces the old checkpoint.
    checkpoint::save(&path, &newer).unwrap();
    assert_eq!(checkpoint::load(&path).unwrap().meta.epoch, 8);
    assert_eq!(files_in(dir.path()), vec!["ckpt.safetensors"]);
}

fn model() -> (Vec<Param<f32>>, Vec<Buffer<f32>>) {
    let param = |name: &str, role, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        Param {
            name: name.to_string(),
            value: (0..n).map(|k| (k as f32 * 0.7).sin()).collect(),
            grad: vec![0.0; n],
            shape,
            role,
            trainable: true,
        }
    };
    let params = vec![
        param("conv0_weight", ParamRole::Weight, vec![4, 3, 3, 3]),
        param("bn0_gamma", ParamRole::Gamma, vec![4]),
        param("bn0_beta", ParamRole::Beta, vec![4]),
        param("dense0_weight", ParamRole::Weight, vec![2, 4]),
    ];
    let buffers = vec![
        Buffer { name: "bn0_running_mean".into(), shape: vec![4], value: vec![0.0; 4] },
        Buffer { name: "bn0_running_var".into(), shape: vec![4], value: vec![1.0; 4] },
    ];
    (params, buffers)
}

fn train_step(params: &mut [Param<f32>], buffers: &mut [Buffer<f32>], optimizer: &mut Optimizer, step: usize) {
    for p in params.iter_mut() {
        p.grad = (0..p.value.len()).map(|k| ((k + step) as f32 * 0.3).cos()).collect();
    }
    buffers[0].value.iter_mut().for_each(|v| *v += 0.1);
    optimizer.step(params, 0.01);
}

#[test]
fn capture_save_load_restore_resumes_training_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let (mut params, mut buffers) = model();
    let mut optimizer = Optimizer::new(OptimizerConfig::default(), &params);
    for step in 0..3 {
        train_step(&mut params, &mut buffers, &mut optimizer, step);
    }
    let meta = CheckpointMeta::new(json!({"model": "tiny"}), 42, vec!["a".into(), "b".into()]);
    let ckpt = Checkpoint::capture(&params, &buffers, &optimizer, meta);
    assert_eq!(ckpt.optimizer[0].shape, vec![4, 3, 3, 3], "momentum keeps its parameter's shape");
    checkpoint::save(&path, &ckpt).unwrap();

    let (mut params2, mut buffers2) = model();
    let mut optimizer2 = Optimizer::new(OptimizerConfig::default(), &params2);
    checkpoint::load(&path).unwrap().restore(&mut params2, &mut buffers2, &mut optimizer2).unwrap();
    for step in 3..5 {
        train_step(&mut params, &mut buffers, &mut optimizer, step);
        train_step(&mut params2, &mut buffers2, &mut optimizer2, step);
    }
    for (a, b) in params.iter().zip(&params2) {
        assert_eq!(a.value, b.value, "{}", a.name);
    }
    assert_eq!(buffers[0].value, buffers2[0].value);
    assert_eq!(optimizer.state(), optimizer2.state());
}

#[test]
fn restore_refuses_a_checkpoint_of_another_model_and_changes_nothing() {
    let (params, buffers) = model();
    let optimizer = Optimizer::new(OptimizerConfig::default(), &params);
    let ckpt = Checkpoint::capture(&params, &buffers, &optimizer, CheckpointMeta::new(json!({}), 0, vec![]));

    let (mut other, mut other_buffers) = model();
    other[3].shape = vec![4, 2];
    let mut other_optimizer = Optimizer::new(OptimizerConfig::default(), &other);
    other[0].value.iter_mut().for_each(|v| *v = 9.0);
    let err = ckpt.restore(&mut other, &mut other_buffers, &mut other_optimizer).unwrap_err();
    assert!(matches!(err, CheckpointError::Mismatch(_)), "{err:?}");
    assert!(err.to_string().contains("dense0_weight"), "{err}");
    assert!(other[0].value.iter().all(|&v| v == 9.0), "a refused restore must not change the model");

    let (mut fewer, mut fewer_buffers) = model();
    fewer.pop();
    let mut fewer_optimizer = Optimizer::new(OptimizerConfig::default(), &fewer);
    let err = ckpt.restore(&mut fewer, &mut fewer_buffers, &mut fewer_optimizer).unwrap_err();
    assert!(err.to_string().contains("the model has no parameter 'dense0_weight'"), "{err}");

    let (mut same, mut same_buffers) = model();
    let mut frozen_optimizer = {
        let mut frozen = same.clone();
        frozen[0].trainable = false;
        Optimizer::new(OptimizerConfig::default(), &frozen)
    };
    let err = ckpt.restore(&mut same, &mut same_buffers, &mut frozen_optimizer).unwrap_err();
    assert!(matches!(err, CheckpointError::Optimizer(_)), "{err:?}");
}

#[test]
fn resuming_with_another_config_names_the_differing_key() {
    let meta = sample_meta();
    let same = meta.config.clone();
    meta.check_config(&same, &[]).unwrap();

    let mut changed = same.clone();
    changed["optimizer"]["momentum"] = json!(0.8);
    match meta.check_config(&changed, &[]) {
        Err(e @ CheckpointError::ConfigMismatch { .. }) => {
            let line = e.to_string();
            assert!(line.contains("'optimizer.momentum' was 0.9, is now 0.8"), "{line}");
        }
        other => panic!("expected ConfigMismatch, got {other:?}"),
    }

    let mut longer = same.clone();
    longer["epochs"] = json!(20);
    assert!(meta.check_config(&longer, &[]).is_err());
    meta.check_config(&longer, &["epochs"]).unwrap();

    let mut added = same;
    added["mixup"] = json!(true);
    let err = meta.check_config(&added, &[]).unwrap_err();
    assert!(err.to_string().contains("'mixup' was (absent), is now true"), "{err}");
}
