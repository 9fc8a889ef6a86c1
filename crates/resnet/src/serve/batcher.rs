//! The dynamic batcher: worker threads that take batches from a model's [`JobQueue`], run
//! them as one `Model::run` on the engine's own thread pool, and answer each request.
//!
//! Workers are plain `std::thread`s: model runs never block the async runtime. A job whose
//! client is gone (timed out, disconnected) is dropped before the run instead of computed.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use resnet_engine::Tensor;
use tokio::sync::oneshot;

use super::queue::Batchable;
use super::store::ModelCore;

/// The logits of a job's images (`images × classes`, row-major), or why the run failed.
pub type JobResult = Result<Vec<f32>, String>;

/// One request's preprocessed images, waiting for a worker.
pub struct Job {
    /// `images` CHW images, one after the other.
    pub input: Vec<f32>,
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

fn run_batch(core: &ModelCore, batch: Vec<Job>) {
    let images: usize = batch.iter().map(|j| j.images).sum();
    let size = core.input_size;
    let mut data = Vec::with_capacity(images * 3 * size * size);
    for job in &batch {
        data.extend_from_slice(&job.input);
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
            for job in batch {
                let (mine, rest) = rows.split_at(job.images * core.classes);
                rows = rest;
                let _ = job.reply.send(Ok(mine.to_vec()));
            }
        }
        Err(message) => {
            for job in batch {
                let _ = job.reply.send(Err(message.clone()));
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
