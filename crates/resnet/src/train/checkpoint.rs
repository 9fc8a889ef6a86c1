//! Training checkpoints: parameters, BatchNorm buffers, optimizer momentum and the run's
//! progress in one safetensors file, saved atomically.
//!
//! Layout (any safetensors reader can open it, e.g. Python's `safetensors.numpy.load_file`):
//! every tensor is little-endian `F32`, keyed `params/<name>`, `buffers/<name>` or
//! `optimizer/<param name>` (the momentum buffer of that parameter). The `__metadata__` map
//! holds three strings: `format` = [`FORMAT_TAG`], `checkpoint` = the [`CheckpointMeta`] as
//! JSON, and `tensors` = a JSON array of the keys in their original order (safetensors itself
//! keeps no order). Tensor data is written in that order too.
//!
//! [`save`] never leaves a half-written checkpoint behind: it writes a temporary file in the
//! same directory, fsyncs it, renames it over the target and fsyncs the directory
//! ([`write_atomically`]), so after a crash at any point the path holds either the old
//! checkpoint or the new one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use resnet_engine::train::{Buffer, OptimError, Optimizer, Param};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;
use serde::{Deserialize, Serialize};

/// The [`CheckpointMeta::format_version`] this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The `format` entry of `__metadata__` that marks a resnet-rs training checkpoint.
pub const FORMAT_TAG: &str = "resnet-rs training checkpoint";

const PARAMS_PREFIX: &str = "params/";
const BUFFERS_PREFIX: &str = "buffers/";
const OPTIMIZER_PREFIX: &str = "optimizer/";

/// safetensors' own limit on the JSON header (`MAX_HEADER_SIZE` in the crate).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One f32 tensor of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// The graph initializer's name (for optimizer entries: the parameter's name).
    pub name: String,
    pub shape: Vec<usize>,
    /// Row-major values; `shape`'s product of them.
    pub data: Vec<f32>,
}

impl NamedTensor {
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> NamedTensor {
        NamedTensor { name: name.into(), shape, data }
    }
}

impl From<&Param<f32>> for NamedTensor {
    fn from(param: &Param<f32>) -> NamedTensor {
        NamedTensor::new(param.name.clone(), param.shape.clone(), param.value.clone())
    }
}

impl From<&Buffer<f32>> for NamedTensor {
    fn from(buffer: &Buffer<f32>) -> NamedTensor {
        NamedTensor::new(buffer.name.clone(), buffer.shape.clone(), buffer.value.clone())
    }
}

/// Sums over the batches done so far in an interrupted epoch, so that the resumed epoch
/// reports the same averages as an uninterrupted one. Floats are kept as their IEEE-754 bits:
/// exact, and JSON has no NaN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// Σ (mean batch loss × batch size), as `f64::to_bits`.
    pub loss_sum_bits: u64,
    /// Images classified right (top-1).
    pub correct: u64,
    pub images: u64,
    /// Training seconds of the epoch so far, as `f64::to_bits`.
    pub seconds_bits: u64,
}

/// Where a run stands, stored as JSON in the checkpoint's `__metadata__`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`FORMAT_VERSION`] when written by this build; [`load`] refuses any other.
    pub format_version: u32,
    /// Epochs completed.
    pub epoch: usize,
    /// Batches done in the current (incomplete) epoch: non-zero for a mid-epoch save, e.g. on
    /// Ctrl-C; 0 at an epoch boundary.
    pub batch_in_epoch: usize,
    /// Optimizer steps taken since the start of the run (the schedule's iteration).
    pub global_step: u64,
    /// The run's seed.
    pub seed: u64,
    /// The running sums of an epoch saved mid-way (Ctrl-C); `None` at an epoch boundary. The
    /// data pipeline keeps no generator state to save: its randomness is a pure function of
    /// (seed, epoch, sample index), so (`seed`, `epoch`, `batch_in_epoch`) is its whole state.
    #[serde(default)]
    pub partial_epoch: Option<PartialEpoch>,
    /// Best validation top-1 accuracy so far (fraction in [0, 1]) and the epoch it came from.
    pub best_val_top1: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Class names, index = label.
    pub classes: Vec<String>,
    /// The full training configuration, to refuse resuming with a different one
    /// ([`CheckpointMeta::check_config`]).
    pub config: serde_json::Value,
}

impl CheckpointMeta {
    /// The metadata at the start of a run: nothing done yet.
    pub fn new(config: serde_json::Value, seed: u64, classes: Vec<String>) -> CheckpointMeta {
        CheckpointMeta {
            format_version: FORMAT_VERSION,
            epoch: 0,
            batch_in_epoch: 0,
            global_step: 0,
            seed,
            partial_epoch: None,
            best_val_top1: None,
            best_epoch: None,
            classes,
            config,
        }
    }

    /// `Ok` when `current` equals the stored config, ignoring the top-level keys in `ignore`
    /// (settings that may change on resume, e.g. `"epochs"` or `"threads"`); otherwise
    /// [`CheckpointError::ConfigMismatch`] naming the first differing key.
    pub fn check_config(&self, current: &serde_json::Value, ignore: &[&str]) -> Result<(), CheckpointError> {
        let strip = |value: &serde_json::Value| match value {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .filter(|(k, _)| !ignore.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        };
        match first_difference(&strip(&self.config), &strip(current), "") {
            None => Ok(()),
            Some((key, stored, now)) => Err(CheckpointError::ConfigMismatch { key, stored, now }),
        }
    }
}

/// Where two JSON values first differ: (key path, left value, right value), values as JSON
/// text ("(absent)" for a missing key).
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<(String, String, String)> {
    use serde_json::Value;
    let here = || if path.is_empty() { "(the whole config)".to_string() } else { path.to_string() };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|key| {
                let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => first_difference(p, q, &sub),
                    (p, q) => {
                        let show = |v: Option<&Value>| v.map_or_else(|| "(absent)".to_string(), Value::to_string);
                        Some((sub, show(p), show(q)))
                    }
                }
            })
        }
        _ if a == b => None,
        _ => Some((here(), a.to_string(), b.to_string())),
    }
}

/// Everything needed to resume a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub params: Vec<NamedTensor>,
    pub buffers: Vec<NamedTensor>,
    /// Momentum buffers, each named after its parameter (`optimizer/<name>` in the file).
    pub optimizer: Vec<NamedTensor>,
    pub meta: CheckpointMeta,
}

impl Checkpoint {
    /// A snapshot of the model's parameters and buffers and the optimizer's momentum.
    pub fn capture(
        params: &[Param<f32>],
        buffers: &[Buffer<f32>],
        optimizer: &Optimizer,
        meta: CheckpointMeta,
    ) -> Checkpoint {
        let shapes: HashMap<&str, &[usize]> = params.iter().map(|p| (p.name.as_str(), p.shape.as_slice())).collect();
        let optimizer = optimizer
            .state()
            .into_iter()
            .map(|(name, data)| {
                let shape = match shapes.get(name.as_str()) {
                    Some(shape) if shape.iter().product::<usize>() == data.len() => shape.to_vec(),
                    _ => vec![data.len()],
                };
                NamedTensor { name, shape, data }
            })
            .collect();
        Checkpoint {
            params: params.iter().map(NamedTensor::from).collect(),
            buffers: buffers.iter().map(NamedTensor::from).collect(),
            optimizer,
            meta,
        }
    }

    /// Copies the checkpoint into a model's parameters and buffers and the optimizer. The
    /// names must be exactly the model's and the shapes equal; otherwise nothing changes and
    /// the error names the first mismatch.
    pub fn restore(
        &self,
        params: &mut [Param<f32>],
        buffers: &mut [Buffer<f32>],
        optimizer: &mut Optimizer,
    ) -> Result<(), CheckpointError> {
        let param_values =
            match_by_name("parameter", &self.params, params.iter().map(|p| (p.name.as_str(), &p.shape[..])))?;
        let buffer_values =
            match_by_name("buffer", &self.buffers, buffers.iter().map(|b| (b.name.as_str(), &b.shape[..])))?;
        let state = self.optimizer.iter().map(|t| (t.name.clone(), t.data.clone())).collect();
        optimizer.load_state(state)?;
        for (param, values) in params.iter_mut().zip(param_values) {
            param.value.clone_from(values);
        }
        for (buffer, values) in buffers.iter_mut().zip(buffer_values) {
            buffer.value.clone_from(values);
        }
        Ok(())
    }
}

/// The checkpoint tensor for each `(name, shape)` of the model, in the model's order; an error
/// for a missing, extra or differently shaped one.
fn match_by_name<'a, 'm>(
    what: &str,
    stored: &'a [NamedTensor],
    model: impl Iterator<Item = (&'m str, &'m [usize])>,
) -> Result<Vec<&'a Vec<f32>>, CheckpointError> {
    let mut by_name: HashMap<&str, &NamedTensor> = stored.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut out = Vec::new();
    for (name, shape) in model {
        let Some(tensor) = by_name.remove(name) else {
            return Err(CheckpointError::Mismatch(format!("the checkpoint has no {what} '{name}'")));
        };
        if tensor.shape != shape {
            return Err(CheckpointError::Mismatch(format!(
                "{what} '{name}' has shape {:?} in the checkpoint, {:?} in the model",
                tensor.shape, shape
            )));
        }
        out.push(&tensor.data);
    }
    if let Some(extra) = stored.iter().find(|t| by_name.contains_key(t.name.as_str())) {
        return Err(CheckpointError::Mismatch(format!("the model has no {what} '{}' (in the checkpoint)", extra.name)));
    }
    Ok(out)
}

/// Why a checkpoint could not be saved, loaded or restored; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: no such checkpoint file", path.display())]
    Missing { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a safetensors file ({detail})", path.display())]
    NotSafetensors { path: PathBuf, detail: String },
    #[error("{}: truncated checkpoint ({detail}); is it an incomplete copy?", path.display())]
    Truncated { path: PathBuf, detail: String },
    #[error("{}: not a usable resnet-rs checkpoint: {detail}", path.display())]
    BadMetadata { path: PathBuf, detail: String },
    #[error("{}: checkpoint format version {found}, this build reads version {supported}", path.display())]
    Version { path: PathBuf, found: u64, supported: u32 },
    #[error("{}: tensor '{name}': {detail}", path.display())]
    Tensor { path: PathBuf, name: String, detail: String },
    #[error("the checkpoint was made with a different training configuration: '{key}' was {stored}, is now {now}")]
    ConfigMismatch { key: String, stored: String, now: String },
    #[error("checkpoint does not fit the model: {0}")]
    Mismatch(String),
    #[error("checkpoint does not fit the optimizer: {0}")]
    Optimizer(#[from] OptimError),
}

/// Writes `ckpt` to `path` atomically (see the module docs). Tensors whose data length is not
/// their shape's product, and duplicate names, are refused before anything is written.
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let groups = [(PARAMS_PREFIX, &ckpt.params), (BUFFERS_PREFIX, &ckpt.buffers), (OPTIMIZER_PREFIX, &ckpt.optimizer)];
    let mut keys: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut infos: Vec<(String, TensorInfo)> = Vec::new();
    let mut offset = 0usize;
    for (prefix, tensors) in groups {
        for tensor in tensors.iter() {
            let key = format!("{prefix}{}", tensor.name);
            let fail = |detail: String| CheckpointError::Tensor { path: path.to_path_buf(), name: key.clone(), detail };
            let elements = tensor.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if elements != Some(tensor.data.len()) {
                return Err(fail(format!("shape {:?} does not hold its {} values", tensor.shape, tensor.data.len())));
            }
            if !seen.insert(key.clone()) {
                return Err(fail("appears twice".to_string()));
            }
            let bytes = tensor.data.len() * 4;
            infos.push((
                key.clone(),
                TensorInfo { dtype: Dtype::F32, shape: tensor.shape.clone(), data_offsets: (offset, offset + bytes) },
            ));
            offset += bytes;
            keys.push(key);
        }
    }
    let bad_meta = |detail: String| CheckpointError::BadMetadata { path: path.to_path_buf(), detail };
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), FORMAT_TAG.to_string());
    metadata.insert("checkpoint".to_string(), serde_json::to_string(&ckpt.meta).map_err(|e| bad_meta(e.to_string()))?);
    metadata.insert("tensors".to_string(), serde_json::to_string(&keys).map_err(|e| bad_meta(e.to_string()))?);
    let header = Metadata::new(Some(metadata), infos).map_err(|e| bad_meta(e.to_string()))?;
    let mut header = serde_json::to_vec(&header).map_err(|e| bad_meta(e.to_string()))?;
    // safetensors pads the header with spaces to a multiple of 8 so the data is aligned.
    header.resize(header.len().next_multiple_of(8), b' ');

    write_atomically(path, |out| {
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        let mut bytes = Vec::with_capacity(64 * 1024);
        for (_, tensors) in groups {
            for tensor in tensors.iter() {
                for chunk in tensor.data.chunks(16 * 1024) {
                    bytes.clear();
                    bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                    out.write_all(&bytes)?;
                }
            }
        }
        Ok(())
    })
    .map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })
}

/// Calls `write` with a buffered writer on a temporary file beside `path` (`.<name>.tmp-…`),
/// then flushes, fsyncs, renames it over `path` and fsyncs the directory. If `write` or any
/// step fails, the temporary file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(file_name) = path.file_name() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"));
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        write(&mut out)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename in `dir` durable (POSIX needs an fsync of the directory itself).
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Reads a checkpoint written by [`save`]. A missing, truncated or foreign file, unreadable
/// metadata and another format version are distinct [`CheckpointError`]s.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let io_err = |source: io::Error| CheckpointError::Io { path: path.to_path_buf(), source };
    let not_st = |detail: String| CheckpointError::NotSafetensors { path: path.to_path_buf(), detail };
    let truncated = |detail: String| CheckpointError::Truncated { path: path.to_path_buf(), detail };
    let bad_meta = |detail: String| CheckpointError::BadMetadata { path: path.to_path_buf(), detail };

    let file = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => CheckpointError::Missing { path: path.to_path_buf() },
        _ => io_err(source),
    })?;
    let file_len = file.metadata().map_err(io_err)?.len();
    if file_len < 8 {
        return Err(truncated(format!("{file_len} bytes, fewer than the 8-byte header length")));
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut len_bytes = [0u8; 8];
    reader.read_exact(&mut len_bytes).map_err(io_err)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES {
        return Err(not_st(format!("its first 8 bytes give a header length of {header_len} bytes")));
    }
    let available = file_len - 8;
    let mut header = vec![0u8; header_len.min(available) as usize];
    reader.read_exact(&mut header).map_err(io_err)?;
    if header.first().is_some_and(|&b| b != b'{') {
        return Err(not_st("the header is not a JSON object".to_string()));
    }
    if header_len > available {
        return Err(truncated(format!(
            "the header needs {header_len} bytes, the file holds {available} after its length"
        )));
    }
    let header: Metadata =
        serde_json::from_slice(&header).map_err(|e| not_st(format!("header is not valid safetensors JSON: {e}")))?;
    let data_len = header.data_len() as u64;
    let data_available = available - header_len;
    if data_len > data_available {
        return Err(truncated(format!(
            "the header describes {data_len} bytes of tensor data, the file holds {data_available}"
        )));
    }
    if data_len < data_available {
        return Err(not_st(format!("{} bytes follow the last tensor", data_available - data_len)));
    }

    let entries = header.metadata().as_ref().ok_or_else(|| bad_meta("no __metadata__ map".to_string()))?;
    if entries.get("format").map(String::as_str) != Some(FORMAT_TAG) {
        return Err(bad_meta(format!("its __metadata__ has no \"format\": \"{FORMAT_TAG}\" entry")));
    }
    let meta_text =
        entries.get("checkpoint").ok_or_else(|| bad_meta("no \"checkpoint\" metadata entry".to_string()))?;
    let meta_json: serde_json::Value =
        serde_json::from_str(meta_text).map_err(|e| bad_meta(format!("\"checkpoint\" metadata is not JSON: {e}")))?;
    let found = meta_json.get("format_version").and_then(serde_json::Value::as_u64);
    match found {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(found) => {
            return Err(CheckpointError::Version { path: path.to_path_buf(), found, supported: FORMAT_VERSION })
        }
        None => return Err(bad_meta("\"checkpoint\" metadata has no format_version".to_string())),
    }
    let meta: CheckpointMeta =
        serde_json::from_value(meta_json).map_err(|e| bad_meta(format!("\"checkpoint\" metadata: {e}")))?;
    let order: Vec<String> = entries
        .get("tensors")
        .ok_or_else(|| bad_meta("no \"tensors\" metadata entry".to_string()))
        .and_then(|text| serde_json::from_str(text).map_err(|e| bad_meta(format!("\"tensors\" metadata: {e}"))))?;
    let infos = header.tensors();
    let listed: BTreeSet<&str> = order.iter().map(String::as_str).collect();
    if listed.len() != order.len() || listed.len() != infos.len() || !infos.keys().all(|k| listed.contains(k.as_str()))
    {
        return Err(bad_meta("the \"tensors\" list does not match the file's tensors".to_string()));
    }

    // Tensor data lies contiguously in offset order: read it sequentially.
    let mut values: BTreeMap<String, NamedTensor> = BTreeMap::new();
    let mut bytes = Vec::new();
    for key in header.offset_keys() {
        let info = infos[&key];
        if info.dtype != Dtype::F32 {
            return Err(CheckpointError::Tensor {
                path: path.to_path_buf(),
                name: key,
                detail: format!("data type {:?}, expected F32", info.dtype),
            });
        }
        let (start, end) = info.data_offsets;
        bytes.resize(end - start, 0);
        reader.read_exact(&mut bytes).map_err(io_err)?;
        let data = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let (_, name) = split_key(&key).ok_or_else(|| bad_meta(format!("tensor key '{key}' has no known prefix")))?;
        values.insert(key.clone(), NamedTensor { name: name.to_string(), shape: info.shape.clone(), data });
    }

    let mut ckpt = Checkpoint { params: Vec::new(), buffers: Vec::new(), optimizer: Vec::new(), meta };
    for key in &order {
        let tensor = values.remove(key).ok_or_else(|| bad_meta(format!("tensor '{key}' listed twice")))?;
        match split_key(key).map(|(prefix, _)| prefix) {
            Some(PARAMS_PREFIX) => ckpt.params.push(tensor),
            Some(BUFFERS_PREFIX) => ckpt.buffers.push(tensor),
            _ => ckpt.optimizer.push(tensor),
        }
    }
    Ok(ckpt)
}

/// `("params/", "conv0_weight")` for `"params/conv0_weight"`; `None` for an unknown prefix.
fn split_key(key: &str) -> Option<(&'static str, &str)> {
    [PARAMS_PREFIX, BUFFERS_PREFIX, OPTIMIZER_PREFIX]
        .into_iter()
        .find_map(|prefix| key.strip_prefix(prefix).map(|name| (prefix, name)))
}
