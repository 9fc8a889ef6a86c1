//! The validation pipeline: worker threads read, decode and preprocess images and send the
//! crops through a bounded channel; the calling thread packs them into batches, runs the
//! model (on its own thread pool) and ranks the classes.
//!
//! Decoding overlaps inference: while a batch runs, the workers fill the channel with the
//! next one (its capacity is two batches, so memory stays bounded). Images are scored in
//! the order they finish decoding, which varies from run to run, but each image's logits
//! depend only on its own pixels (the batch rows are independent up to float rounding), so
//! the results do not depend on thread count or batch size; reports are sorted by file.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use resnet_vision::DecodeOptions;

use super::dataset::{Dataset, Item};
use super::Error;
use crate::postprocess::top_k;
use crate::Classifier;

/// How many classes each image keeps in the results (top-5 needs five).
pub const KEPT_CLASSES: usize = 5;

/// Knobs of [`run`].
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// 1 (the zoo's single center crop) or 10 (SPEC §5.5 ten-crop).
    pub crops: usize,
    /// Crops per model run; ten-crop rounds up to whole images (at least one image).
    pub batch: usize,
    /// Decoding threads.
    pub workers: usize,
    pub decode: DecodeOptions,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions { crops: 1, batch: 8, workers: 2, decode: DecodeOptions::default() }
    }
}

/// One scored image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageResult {
    /// Path relative to the dataset root.
    pub file: String,
    /// The true class.
    pub label: usize,
    /// The five most probable classes, most probable first.
    pub top5: Vec<usize>,
    /// Their probabilities (softmax; for ten-crop the mean of the ten softmaxes).
    pub probabilities: Vec<f32>,
}

impl ImageResult {
    pub fn top1_correct(&self) -> bool {
        self.top5.first() == Some(&self.label)
    }

    pub fn top5_correct(&self) -> bool {
        self.top5.contains(&self.label)
    }
}

/// An image that could not be read or decoded (excluded from the metrics).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub file: String,
    pub error: String,
}

/// Counts so far, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub scored: usize,
    pub failed: usize,
    pub total: usize,
    pub top1_correct: usize,
    pub top5_correct: usize,
}

/// What [`run`] returns.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Sorted by file.
    pub images: Vec<ImageResult>,
    /// Sorted by file.
    pub failed: Vec<Failure>,
    /// Wall time from the first read to the last result.
    pub seconds: f64,
}

/// Scores every image of `dataset` with `classifier`. `progress` is called after each batch.
/// Unreadable images end up in [`Outcome::failed`]; only a failing model run is an error.
pub fn run(
    classifier: &Classifier,
    dataset: &Dataset,
    opts: &PipelineOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, Error> {
    let crops = opts.crops.max(1);
    let images_per_batch = opts.batch.max(1).div_ceil(crops);
    let items = &dataset.items;
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let mut state = Progress { total: items.len(), ..Progress::default() };
    let mut images = Vec::with_capacity(items.len());
    let mut failed = Vec::new();

    std::thread::scope(|scope| -> Result<(), Error> {
        let (tx, rx) = crossbeam_channel::bounded::<(usize, Result<Vec<Vec<f32>>, String>)>(2 * images_per_batch);
        for w in 0..opts.workers.max(1) {
            let tx = tx.clone();
            let next = &next;
            std::thread::Builder::new()
                .name(format!("resnet-decode-{w}"))
                .spawn_scoped(scope, move || loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(k) else { break };
                    let prepared = prepare(classifier, item, crops, &opts.decode);
                    if tx.send((k, prepared)).is_err() {
                        break; // the consumer stopped (a model error)
                    }
                })
                .map_err(|e| Error::Threads(e.to_string()))?;
        }
        drop(tx);

        let mut pending: Vec<(usize, Vec<Vec<f32>>)> = Vec::with_capacity(images_per_batch);
        let mut flush = |pending: &mut Vec<(usize, Vec<Vec<f32>>)>, state: &mut Progress| -> Result<(), Error> {
            if pending.is_empty() {
                return Ok(());
            }
            for r in score(classifier, items, std::mem::take(pending), crops)? {
                state.scored += 1;
                state.top1_correct += usize::from(r.top1_correct());
                state.top5_correct += usize::from(r.top5_correct());
                images.push(r);
            }
            Ok(())
        };
        for (k, prepared) in rx.iter() {
            match prepared {
                Ok(tensors) => pending.push((k, tensors)),
                Err(error) => {
                    failed.push(Failure { file: items[k].file.clone(), error });
                    state.failed += 1;
                }
            }
            if pending.len() >= images_per_batch {
                flush(&mut pending, &mut state)?;
                progress(&state);
            }
        }
        flush(&mut pending, &mut state)?;
        progress(&state);
        Ok(())
    })?;

    images.sort_by(|a, b| a.file.cmp(&b.file));
    failed.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(Outcome { images, failed, seconds: start.elapsed().as_secs_f64() })
}

/// Reads, decodes and preprocesses one image into its crops (CHW floats each).
fn prepare(
    classifier: &Classifier,
    item: &Item,
    crops: usize,
    decode: &DecodeOptions,
) -> Result<Vec<Vec<f32>>, String> {
    let bytes = std::fs::read(&item.path).map_err(|e| format!("cannot read the file: {e}"))?;
    let image = resnet_vision::decode_rgb8(&bytes, decode).map_err(|e| e.to_string())?;
    let pre = classifier.preprocess();
    if crops == 1 {
        Ok(vec![pre.tensor_chw(&pre.crop_rgb8(&image).map_err(|e| e.to_string())?)])
    } else {
        Ok(pre.ten_crop_rgb8(&image).map_err(|e| e.to_string())?.iter().map(|c| pre.tensor_chw(c)).collect())
    }
}

/// Runs one batch and ranks each image's classes (ten-crop: by the mean softmax of its crops).
fn score(
    classifier: &Classifier,
    items: &[Item],
    batch: Vec<(usize, Vec<Vec<f32>>)>,
    crops: usize,
) -> Result<Vec<ImageResult>, Error> {
    let ks: Vec<usize> = batch.iter().map(|(k, _)| *k).collect();
    let tensors: Vec<Vec<f32>> = batch.into_iter().flat_map(|(_, t)| t).collect();
    let classified = classifier.classify_prepared(tensors)?;
    Ok(ks
        .iter()
        .zip(classified.chunks(crops))
        .map(|(&k, group)| {
            let probabilities = if group.len() == 1 {
                group[0].probabilities.clone()
            } else {
                let mut sum = vec![0f64; group[0].probabilities.len()];
                for c in group {
                    for (s, &p) in sum.iter_mut().zip(&c.probabilities) {
                        *s += f64::from(p);
                    }
                }
                sum.iter().map(|s| (s / group.len() as f64) as f32).collect()
            };
            let top5 = top_k(&probabilities, KEPT_CLASSES);
            let kept = top5.iter().map(|&c| probabilities[c]).collect();
            ImageResult { file: items[k].file.clone(), label: items[k].label, top5, probabilities: kept }
        })
        .collect())
}
