//! The model store: the models being served, each with its classifier, queue, settings and
//! worker threads; loading (from a path, a `file://` URL, a zoo name or a registry URL),
//! scaling and unloading.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use resnet_engine::Dim;
use resnet_vision::{DecodeOptions, Labels};

use super::batcher::{self, Job};
use super::config::{check_model_name, BatchSettings, Limits};
use super::error::ApiError;
use super::metrics::Metrics;
use super::queue::JobQueue;
use crate::{Classifier, Model};

/// What a worker needs: the model, its queue and settings.
pub struct ModelCore {
    pub name: String,
    pub classifier: Classifier,
    pub labels: Arc<Labels>,
    pub queue: Arc<JobQueue<Job>>,
    pub metrics: Arc<Metrics>,
    /// Where workers decode their batches' images (shared by every model).
    pub decode_pool: Arc<rayon::ThreadPool>,
    settings: Mutex<BatchSettings>,
    /// Square input size (224 for the zoo's models).
    pub input_size: usize,
    pub classes: usize,
    pub input_name: String,
    pub output_name: String,
}

impl ModelCore {
    pub fn settings(&self) -> BatchSettings {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Worker {
    id: usize,
    started: SystemTime,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Worker description for `GET /models/{name}`.
pub struct WorkerInfo {
    pub id: usize,
    pub started: SystemTime,
}

/// A model being served.
pub struct ServedModel {
    pub name: String,
    /// What it was loaded from, as given.
    pub url: String,
    pub path: PathBuf,
    pub loaded_at_startup: bool,
    pub load_time: Duration,
    pub core: Arc<ModelCore>,
    workers: Mutex<Vec<Worker>>,
    next_worker_id: AtomicUsize,
}

impl ServedModel {
    fn workers(&self) -> MutexGuard<'_, Vec<Worker>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn worker_info(&self) -> Vec<WorkerInfo> {
        self.workers().iter().map(|w| WorkerInfo { id: w.id, started: w.started }).collect()
    }

    /// New batch settings; starts or stops workers to match `settings.workers` (stopped
    /// workers finish the batch they are running; queued requests go to the others).
    pub fn apply(&self, settings: BatchSettings) -> Result<(), ApiError> {
        settings.validate().map_err(ApiError::bad_request)?;
        *self.core.settings.lock().unwrap_or_else(|p| p.into_inner()) = settings;
        let mut workers = self.workers();
        while workers.len() < settings.workers {
            let worker = self.spawn_worker().map_err(ApiError::internal)?;
            workers.push(worker);
        }
        let stopping: Vec<Worker> = workers.drain(settings.workers..).collect();
        drop(workers);
        for w in &stopping {
            w.stop.store(true, Ordering::SeqCst);
        }
        self.core.queue.wake_all();
        for w in stopping {
            let _ = w.thread.join();
        }
        Ok(())
    }

    fn spawn_worker(&self) -> Result<Worker, String> {
        let id = self.next_worker_id.fetch_add(1, Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let (core, flag) = (self.core.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("serve-{}-{id}", self.name))
            .spawn(move || batcher::work(core, flag))
            .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        Ok(Worker { id, started: SystemTime::now(), stop, thread })
    }

    /// Refuses new requests, lets the workers answer every admitted one, and joins them.
    /// Blocks: call from a blocking context.
    pub fn shut_down(&self) {
        self.core.queue.close();
        let workers: Vec<Worker> = self.workers().drain(..).collect();
        for w in workers {
            let _ = w.thread.join();
        }
    }
}

/// The served models by name.
pub struct ModelStore {
    models: Mutex<BTreeMap<String, Arc<ServedModel>>>,
    /// Names being loaded (a second registration under the same name gets 409).
    loading: Mutex<BTreeSet<String>>,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// Threads of each model's engine pool (0: one per core).
    threads: usize,
    engine: crate::Engine,
    mode: crate::Mode,
    decode_pool: Arc<rayon::ThreadPool>,
}

impl ModelStore {
    /// A store whose models run on `engine` in `mode` with `threads` engine threads each (0:
    /// one per core); images are decoded on a pool of as many threads.
    pub fn new(
        metrics: Arc<Metrics>,
        limits: Limits,
        threads: usize,
        engine: crate::Engine,
        mode: crate::Mode,
    ) -> Result<ModelStore, String> {
        let decode_threads =
            if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let decode_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(decode_threads)
            .thread_name(|i| format!("serve-decode-{i}"))
            .build()
            .map_err(|e| format!("cannot start {decode_threads} decode threads: {e}"))?;
        Ok(ModelStore {
            models: Mutex::default(),
            loading: Mutex::default(),
            metrics,
            limits,
            threads,
            engine,
            mode,
            decode_pool: Arc::new(decode_pool),
        })
    }

    fn models(&self) -> MutexGuard<'_, BTreeMap<String, Arc<ServedModel>>> {
        self.models.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<ServedModel>> {
        self.models().get(name).cloned()
    }

    /// Every model, sorted by name.
    pub fn list(&self) -> Vec<Arc<ServedModel>> {
        self.models().values().cloned().collect()
    }

    pub fn queue_depths(&self) -> Vec<(String, usize)> {
        self.models().iter().map(|(n, m)| (n.clone(), m.core.queue.depth())).collect()
    }

    /// Loads `url` as `name` and starts serving it. Blocks (resolving may download, loading
    /// compiles the plan): call from a blocking context.
    pub fn register(
        &self,
        name: &str,
        url: &str,
        settings: BatchSettings,
        at_startup: bool,
    ) -> Result<Arc<ServedModel>, ApiError> {
        check_model_name(name).map_err(ApiError::bad_request)?;
        settings.validate().map_err(ApiError::bad_request)?;
        {
            let models = self.models();
            let mut loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
            if models.contains_key(name) || !loading.insert(name.to_string()) {
                return Err(ApiError::conflict(format!("Model {name} is already registered.")));
            }
        }
        let result = self.load(name, url, settings, at_startup);
        let mut models = self.models();
        self.loading.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        let model = result?;
        models.insert(name.to_string(), model.clone());
        Ok(model)
    }

    fn load(
        &self,
        name: &str,
        url: &str,
        settings: BatchSettings,
        at_startup: bool,
    ) -> Result<Arc<ServedModel>, ApiError> {
        let started = Instant::now();
        let path = resolve_url(url)?;
        let cannot =
            |e: crate::Error| ApiError::bad_request(format!("cannot load model '{name}' from {}: {e}", path.display()));
        let model = Model::load(&path)
            .map_err(cannot)?
            .with_engine(self.engine)
            .with_mode(self.mode)
            .with_threads(self.threads);
        let labels = match crate::classifier::labels_beside(&path) {
            Some(file) => Labels::from_file(&file).map_err(crate::Error::from).map_err(cannot)?,
            None => Labels::imagenet(),
        };
        let classifier = Classifier::with_label_set(model, labels.clone())
            .map_err(cannot)?
            .with_decode_options(DecodeOptions { max_pixels: self.limits.max_image_pixels, ..Default::default() });
        if self.engine == crate::Engine::Plan {
            classifier.model().plan().map_err(cannot)?; // compile now, not on the first request
        }
        let graph = classifier.model().graph();
        let labels = Arc::new(labels);
        let classes =
            match graph.outputs.first().and_then(|&o| graph.values[o].fact.shape.as_ref()).and_then(|s| s.last()) {
                Some(Dim::Known(c)) => *c,
                _ => labels.len(),
            };
        let value_name = |ids: &[usize]| ids.first().map(|&v| graph.values[v].name.clone()).unwrap_or_default();
        let core = Arc::new(ModelCore {
            name: name.to_string(),
            input_size: classifier.preprocess().crop as usize,
            input_name: value_name(&graph.inputs),
            output_name: value_name(&graph.outputs),
            classifier,
            labels,
            classes,
            queue: JobQueue::new(self.limits.queue_depth),
            metrics: self.metrics.clone(),
            decode_pool: self.decode_pool.clone(),
            settings: Mutex::new(settings),
        });
        let load_time = started.elapsed();
        let served = Arc::new(ServedModel {
            name: name.to_string(),
            url: url.to_string(),
            path,
            loaded_at_startup: at_startup,
            load_time,
            core,
            workers: Mutex::default(),
            next_worker_id: AtomicUsize::new(1),
        });
        served.apply(settings)?;
        self.metrics.model_loaded(name, load_time);
        Ok(served)
    }

    /// Stops serving `name` (after answering its admitted requests). Blocks.
    pub fn unregister(&self, name: &str) -> Result<(), ApiError> {
        let model = self.models().remove(name).ok_or_else(|| ApiError::model_not_found(name))?;
        model.shut_down();
        self.metrics.model_unloaded(name);
        Ok(())
    }

    /// Closes every queue and joins every worker once admitted requests are answered. Blocks.
    pub fn shut_down(&self) {
        for model in self.list() {
            model.shut_down();
        }
    }
}

/// The local file a model URL stands for:
/// * `file:///abs/model.onnx` or a path: that file;
/// * a zoo name (`resnet50-v2`): the verified file in the registry's cache, fetched if needed;
/// * an `http(s)://` URL: only a URL of the zoo registry (fetched and sha256-verified through
///   it); arbitrary URLs are refused, so the server cannot be made to fetch anything else.
pub fn resolve_url(url: &str) -> Result<PathBuf, ApiError> {
    if url.ends_with(".mar") {
        return Err(ApiError::bad_request(format!(
            "'{url}': model archives (.mar) are not supported; register the .onnx file or a zoo model name"
        )));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        let registry = resnet_zoo::registry::Registry::from_settings(Default::default())
            .map_err(|e| ApiError::internal(format!("the model registry is not usable: {e}")))?;
        let Some(entry) = registry.models().iter().find(|m| registry.url(m) == url) else {
            return Err(ApiError::bad_request(format!(
                "'{url}' is not a URL of the zoo registry; only registry files can be fetched (see `resnet models list`), or give a local path"
            )));
        };
        let name = entry.name.clone();
        return crate::resolve::fetch(&registry, &name, false).map_err(|e| download_failed(url, e));
    }
    let spec = url.strip_prefix("file://").unwrap_or(url);
    match crate::resolve_model(spec, &Default::default()) {
        Ok(path) => Ok(path),
        Err(e @ crate::Error::NoSuchModel { .. }) => Err(ApiError::bad_request(e.to_string())),
        Err(e) => Err(download_failed(url, e)),
    }
}

fn download_failed(url: &str, e: crate::Error) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "DownloadModelException", format!("cannot fetch '{url}': {e}"))
}
