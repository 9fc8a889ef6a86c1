//! What an operator sets when starting `resnet serve`: addresses, the limits that protect the
//! server from its clients, and the default batching settings of each model.

use std::net::IpAddr;
use std::time::Duration;

/// Batching and worker settings of one model (MMS's `batch_size`, `max_batch_delay`,
/// `min_worker`); changed at run time with `PUT /models/{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most images in one model run.
    pub batch_size: usize,
    /// How long the first request of a batch waits for others, in milliseconds.
    pub max_batch_delay_ms: u64,
    /// Worker threads pulling batches from the model's queue (each runs the shared plan).
    pub workers: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings { batch_size: 8, max_batch_delay_ms: 5, workers: 1 }
    }
}

/// Upper bounds on batch settings, so a management call cannot ask for a million threads.
pub const MAX_BATCH_SIZE: usize = 256;
pub const MAX_BATCH_DELAY_MS: u64 = 10_000;
pub const MAX_WORKERS: usize = 16;

impl BatchSettings {
    /// Checks the bounds; the error is the message of a 400 answer.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(format!("batch_size must be 1..={MAX_BATCH_SIZE}, got {}", self.batch_size));
        }
        if self.max_batch_delay_ms > MAX_BATCH_DELAY_MS {
            return Err(format!(
                "max_batch_delay must be 0..={MAX_BATCH_DELAY_MS} ms, got {}",
                self.max_batch_delay_ms
            ));
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return Err(format!("the number of workers must be 1..={MAX_WORKERS}, got {}", self.workers));
        }
        Ok(())
    }

    pub fn max_batch_delay(&self) -> Duration {
        Duration::from_millis(self.max_batch_delay_ms)
    }
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests admitted per model and not yet answered by a worker (waiting for decode, in the
    /// queue or being decoded); one more gets 503 with `Retry-After`.
    pub queue_depth: usize,
    /// From the request's arrival to its answer; past it the answer is 504.
    pub request_timeout: Duration,
    /// Largest request body (raw image, multipart form or JSON); larger gets 413.
    pub max_body_bytes: usize,
    /// Largest image, in pixels as its header announces them; larger gets 413 before any
    /// pixel memory is allocated (decompression bombs).
    pub max_image_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue_depth: 100,
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024 * 1024,
            max_image_pixels: 25_000_000,
        }
    }
}

/// One model to load at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name in URLs (`/predictions/{name}`).
    pub name: String,
    /// A file path, `file://` URL, zoo name or registry URL (see [`crate::serve::store`]).
    pub url: String,
}

impl ModelSpec {
    /// `NAME=PATH|ZOO_NAME`, or just `PATH|ZOO_NAME` (named after the zoo name or the file stem).
    pub fn parse(spec: &str) -> Result<ModelSpec, String> {
        let (name, url) = match spec.split_once('=') {
            Some((name, url)) => (name.to_string(), url.to_string()),
            None => (default_model_name(spec), spec.to_string()),
        };
        if url.is_empty() {
            return Err(format!("'{spec}': the model after '=' is empty"));
        }
        check_model_name(&name)?;
        Ok(ModelSpec { name, url })
    }
}

/// The name a model gets when none is given: a zoo name as it is, a file's stem
/// (`/m/resnet50-v1-7.onnx` → `resnet50-v1-7`), or its folder's name for the zoo's
/// `.../<name>/model.onnx` layout.
pub fn default_model_name(url: &str) -> String {
    let path = url.strip_prefix("file://").unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    let path = std::path::Path::new(path);
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if stem == "model" {
        if let Some(parent) = path.parent().and_then(|p| p.file_name()) {
            return parent.to_string_lossy().into_owned();
        }
    }
    stem
}

/// MMS's rule: a model name starts with a letter and holds only letters, digits, `_`, `-`, `.`
/// (at most 64 characters, so names stay sane in URLs and metric labels).
pub fn check_model_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid model name '{name}': it must start with a letter and hold only letters, digits, '_', '-' and '.' (at most 64)"
        ))
    }
}

/// Everything `resnet serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: IpAddr,
    /// Inference API port (0: any free port).
    pub port: u16,
    /// Management API port (0: any free port).
    pub management_port: u16,
    pub models: Vec<ModelSpec>,
    /// Settings of the models loaded at startup, and the defaults of `POST /models`.
    pub batch: BatchSettings,
    pub limits: Limits,
    /// Threads of each model's engine pool (0: one per core).
    pub threads: usize,
    /// Executor and arithmetic of every model (default: the compiled plan in fast mode).
    pub engine: crate::Engine,
    pub mode: crate::Mode,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            management_port: 8081,
            models: Vec::new(),
            batch: BatchSettings::default(),
            limits: Limits::default(),
            threads: 0,
            engine: crate::Engine::Plan,
            mode: crate::Mode::Fast,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_take_a_name_or_derive_one() {
        assert_eq!(
            ModelSpec::parse("r50=/m/x.onnx").unwrap(),
            ModelSpec { name: "r50".into(), url: "/m/x.onnx".into() }
        );
        assert_eq!(ModelSpec::parse("resnet18-v1").unwrap().name, "resnet18-v1");
        assert_eq!(ModelSpec::parse("/a/resnet50-v1-7.onnx").unwrap().name, "resnet50-v1-7");
        assert_eq!(ModelSpec::parse("file:///a/resnet50-v1-keras/model.onnx").unwrap().name, "resnet50-v1-keras");
        assert!(ModelSpec::parse("9lives=/a.onnx").is_err());
        assert!(ModelSpec::parse("a b=/a.onnx").is_err());
        assert!(ModelSpec::parse("x=").is_err());
    }

    #[test]
    fn batch_settings_are_bounded() {
        assert!(BatchSettings::default().validate().is_ok());
        assert!(BatchSettings { batch_size: 0, ..Default::default() }.validate().is_err());
        assert!(BatchSettings { workers: 17, ..Default::default() }.validate().is_err());
        assert!(BatchSettings { max_batch_delay_ms: 10_001, ..Default::default() }.validate().is_err());
    }
}
