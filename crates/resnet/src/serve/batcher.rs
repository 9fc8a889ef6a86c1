//! The dynamic batcher: worker threads that take batches from a model's [`JobQueue`](super::queue::JobQueue), decode
//! the batch's images in parallel on the decode pool, run them as one `Model::run` on the
//! engine's own thread pool, and answer each request.
//!
//! Workers are plain `std::thread`s: decoding and model runs never block the async runtime.
//! Decoding happens here, just before the run, rather than in the request handler: on a
//! machine whose cores the model already keeps busy, decoding alongside a run only
//! oversubscribes the cores and stalls the run's parallel steps, and a fixed pool keeps the
//! number of threads (and of allocator arenas) fixed. A job whose client is gone (timed out,
//! disconnected) is dropped before any work is spent on it.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use rayon::prelude::*;
use resnet_engine::Tensor;
use tokio::sync::oneshot;

use super::error::ApiError;
use super::queue::Batchable;
use super::store::ModelCore;

/// The logits of a job's images (`images × classes`, row-major), or why it failed (a decode
/// error of one of its images, or a failed run).
pub type JobResult = Result<Vec<f32>, ApiError>;

/// What a request brings.
pub enum Input {
    /// Encoded JPEG/PNG images, decoded and preprocessed by the worker.
    Encoded(Vec<Bytes>),
    /// Already preprocessed CHW images, one after the other.
    Prepared(Vec<f32>),
}

/// One request's images, waiting for a worker.
pub struct Job {
    pub input: Input,
    pub images: usize,
    pub reply: oneshot::Sender<JobResult>,
}

impl Batchable for Job {
    fn images(&self) -> usize {
        self.images
    }
}

/// A worker's loop: runs until the queue is closed and drained, or `stop` is set.
pub fn work(core: Arc<ModelCore>, stop: Arc<AtomicBool>) {
    loop {
        let settings = core.settings();
        let Some(batch) = core.queue.take_batch(settings.batch_size, settings.max_batch_delay(), &stop) else {
            return;
        };
        let batch: Vec<Job> = batch.into_iter().filter(|job| !job.reply.is_closed()).collect();
        if !batch.is_empty() {
            run_batch(&core, batch);
        }
    }
}

/// Decodes and preprocesses one request's encoded images.
fn prepare(core: &ModelCore, input: Input) -> Result<Vec<f32>, ApiError> {
    match input {
        Input::Prepared(x) => Ok(x),
        Input::Encoded(images) => {
            let mut x = Vec::with_capacity(images.len() * 3 * core.input_size * core.input_size);
            for bytes in &images {
                x.extend(core.classifier.prepare_bytes(bytes).map_err(|e| ApiError::from_image(&e))?);
            }
            Ok(x)
        }
    }
}

fn run_batch(core: &ModelCore, batch: Vec<Job>) {
    // Decode every job's images in parallel; a job whose image is bad is answered now.
    let (inputs, replies): (Vec<(Input, usize)>, Vec<oneshot::Sender<JobResult>>) =
        batch.into_iter().map(|job| ((job.input, job.images), job.reply)).unzip();
    let prepared: Vec<(Result<Vec<f32>, ApiError>, usize)> = core.decode_pool.install(|| {
        inputs
            .into_par_iter()
            .map(|(input, images)| {
                let x = std::panic::catch_unwind(AssertUnwindSafe(|| prepare(core, input)))
                    .unwrap_or_else(|_| Err(ApiError::internal("preprocessing failed: the decoder panicked")));
                (x, images)
            })
            .collect()
    });
    let mut ready = Vec::new();
    for ((x, images), reply) in prepared.into_iter().zip(replies) {
        match x {
            Ok(x) => ready.push((x, images, reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    let images: usize = ready.iter().map(|(_, n, _)| n).sum();
    let size = core.input_size;
    let mut data = Vec::with_capacity(images * 3 * size * size);
    for (x, _, _) in &ready {
        data.extend_from_slice(x);
    }
    for (x, _, _) in ready.iter_mut() {
        *x = Vec::new(); // copied into the batch: free it before the run
    }
    let started = Instant::now();
    let x = Tensor::from_f32(vec![images, 3, size, size], data);
    // A panic inside the engine must not take the worker (and every later request) down.
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| core.classifier.model().run(vec![x])));
    core.metrics.batch(&core.name, images, started.elapsed());
    let logits = match outcome {
        Ok(Ok(outputs)) => logits_of(outputs, images, core.classes),
        Ok(Err(e)) => Err(format!("inference failed: {e}")),
        Err(_) => Err("inference failed: the engine panicked".to_string()),
    };
    match logits {
        Ok(logits) => {
            let mut rows = logits.as_slice();
            for (_, n, reply) in ready {
                let (mine, rest) = rows.split_at(n * core.classes);
                rows = rest;
                let _ = reply.send(Ok(mine.to_vec()));
            }
        }
        Err(message) => {
            for (_, _, reply) in ready {
                let _ = reply.send(Err(ApiError::internal(message.clone())));
            }
        }
    }
}

/// The first output as `images × classes` floats.
fn logits_of(outputs: Vec<Tensor>, images: usize, classes: usize) -> Result<Vec<f32>, String> {
    let out = outputs.into_iter().next().ok_or("the model returned no output")?;
    let shape = out.shape().to_vec();
    let data = out.into_f32().ok_or("the model output is not float32")?;
    if data.len() != images * classes {
        return Err(format!("expected an output of [{images}, {classes}], got {shape:?}"));
    }
    Ok(data)
}
