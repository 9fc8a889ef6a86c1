//! The registry of the zoo's ten official ResNet files (SPEC §2.1): names, URLs, byte sizes
//! and SHA-256, and a download cache that never hands out a partial or corrupt file.
//!
//! A model is fetched as `<base URL>/<file name>` into `<cache dir>/<file name>.part` (resumed
//! with an HTTP `Range` request when a previous attempt was cut off), checked against its
//! size and SHA-256, and only then renamed to `<cache dir>/<file name>`. A file that fails the
//! check is deleted. After a successful check a `<file name>.verified` stamp records the size
//! and modification time, so later look-ups re-check those two instead of re-hashing
//! 100–240 MB on every run; a file without a matching stamp (e.g. copied in by hand) is
//! hashed once.
//!
//! ```no_run
//! use resnet_zoo::registry::{Registry, Settings};
//! let registry = Registry::from_settings(Settings::default())?; // cache dir, mirror, offline from the environment
//! let path = registry.fetch("resnet50-v2", &mut |_event| {})?;  // downloads once, then reuses
//! # Ok::<(), resnet_zoo::registry::RegistryError>(())
//! ```

use std::fs;
use std::path::{Path, PathBuf};

mod download;
mod error;
mod settings;
mod verify;

pub use download::DownloadEvent;
pub use error::RegistryError;
pub use settings::{
    default_cache_dir, parse_manifest, Settings, BASE_URL_VAR, CACHE_DIR_VAR, MANIFEST_VAR, OFFLINE_VAR,
};
pub use verify::sha256_file;

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Where the zoo keeps the ten files today (the repository moved them under `validated/` in
/// 2023; GitHub answers this `raw` address with a redirect to its Git-LFS storage).
pub const OFFICIAL_BASE_URL: &str =
    "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model";

/// The model `classify` uses when no `--model` is given.
pub const DEFAULT_MODEL: &str = "resnet50-v2";

/// One downloadable model: its short name, the file name it has in the zoo, and what the file
/// must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZooModel {
    /// Short name used on the command line, e.g. `resnet50-v2`.
    pub name: String,
    /// File name in the zoo and in the cache, e.g. `resnet50-v2-7.onnx`.
    pub file_name: String,
    /// Exact size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, 64 lowercase hex digits.
    pub sha256: String,
}

/// The ten "-7" files: (name, size in bytes, SHA-256). Full hashes and sizes from the zoo's
/// `ONNX_HUB_MANIFEST.json` (`model_sha`, `model_bytes`); each agrees with the abbreviated
/// hash and the size in SPEC §2.1 (checked by a unit test below).
const OFFICIAL: [(&str, u64, &str); 10] = [
    ("resnet18-v1", 46_820_737, "4e8f8653e7a2222b3904cc3fe8e304cd8b339ce1d05fd24688162f86fb6df52c"),
    ("resnet34-v1", 87_302_588, "883a41b2e30ddc2e422c108b091b5e70b92d37dc5c345a2c563dcae27971e2cc"),
    ("resnet50-v1", 102_583_340, "af16a04a6ec48ac494065d4439fe9dea590d337b9ca6dc328160ccf04a217b9c"),
    ("resnet101-v1", 178_914_043, "760702f6ec0138f71ebac66f4e95d1c72dc9267a8544f4d4667a53075fd0497c"),
    ("resnet152-v1", 241_816_206, "b0ec92437bf8c9d0739bf9bafdea9638e13f9e3c1e2fb766ad546cc182fd3f6d"),
    ("resnet18-v2", 46_806_737, "3b4d048057854022232aa20bf68262e31718ab7119a17f920b8a2dc1433f824b"),
    ("resnet34-v2", 87_288_587, "3d3815e25f4b1ea967e2a526a3b27ef2a03af1725bdc199a63a271c26862d914"),
    ("resnet50-v2", 102_442_452, "79102261eb6e5fd7af5d27f41316293e388c5cb691e5d25bfb035c4f64fefe31"),
    ("resnet101-v2", 178_682_301, "3a0a819ea0953fb4700b0d98e43540aeee253e5b4c503c552b0c7979fc67767d"),
    ("resnet152-v2", 241_503_848, "40fb3f6dd313ba786a2c8077a0ef7d7b4afeda5d037365400d3a7fbc2b1bee64"),
];

/// The ten official models, v1 then v2, shallow to deep.
pub fn official_models() -> Vec<ZooModel> {
    OFFICIAL
        .iter()
        .map(|&(name, bytes, sha256)| ZooModel {
            name: name.to_string(),
            file_name: format!("{name}-7.onnx"),
            bytes,
            sha256: sha256.to_string(),
        })
        .collect()
}

/// What the cache holds for a model, found without hashing (for listings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    /// Present with the right size and a stamp from a successful SHA-256 check.
    Verified,
    /// Present with the right size but never checked here (it will be hashed on first use).
    Unchecked,
    /// A download was interrupted after this many bytes; `pull` resumes it.
    Partial(u64),
    /// Not there (or a file of the wrong size, which is never used).
    Missing,
}

/// What [`Registry::identify`] found out about a file.
#[derive(Debug, Clone)]
pub struct Identified<'a> {
    pub bytes: u64,
    pub sha256: String,
    /// The registry entry with this exact SHA-256 and size, if any.
    pub model: Option<&'a ZooModel>,
}

/// The models a program knows, where their files are cached and how they are fetched.
#[derive(Debug, Clone)]
pub struct Registry {
    models: Vec<ZooModel>,
    cache_dir: PathBuf,
    base_url: String,
    offline: bool,
}

impl Registry {
    /// The ten official models, cached in `cache_dir`, fetched from [`OFFICIAL_BASE_URL`].
    pub fn official(cache_dir: impl Into<PathBuf>) -> Registry {
        Registry::with_entries(official_models(), cache_dir)
    }

    /// Any list of models (tests and private mirrors serve their own files and hashes).
    pub fn with_entries(models: Vec<ZooModel>, cache_dir: impl Into<PathBuf>) -> Registry {
        Registry { models, cache_dir: cache_dir.into(), base_url: OFFICIAL_BASE_URL.to_string(), offline: false }
    }

    /// The registry the command line uses: each setting from `settings` if given, else from
    /// the environment ([`CACHE_DIR_VAR`], [`BASE_URL_VAR`], [`OFFLINE_VAR`], [`MANIFEST_VAR`]),
    /// else the default.
    pub fn from_settings(settings: Settings) -> Result<Registry> {
        settings.resolve()
    }

    /// Fetch files as `<url>/<file name>` instead of from the zoo (a mirror).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Registry {
        self.base_url = url.into();
        self
    }

    /// In offline mode nothing touches the network: a model not in the cache is an error
    /// that says how to get it there.
    pub fn with_offline(mut self, offline: bool) -> Registry {
        self.offline = offline;
        self
    }

    pub fn models(&self) -> &[ZooModel] {
        &self.models
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The model called `name`, or an error listing the names there are.
    pub fn model(&self, name: &str) -> Result<&ZooModel> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| RegistryError::UnknownModel { name: name.to_string(), known: self.names() })
    }

    /// All model names, comma-separated (for messages).
    pub fn names(&self) -> String {
        self.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Where `model` is fetched from.
    pub fn url(&self, model: &ZooModel) -> String {
        format!("{}/{}", self.base_url.trim_end_matches('/'), model.file_name)
    }

    /// Where the verified file of `model` lives in the cache (it may not exist yet).
    pub fn cache_path(&self, model: &ZooModel) -> PathBuf {
        self.cache_dir.join(&model.file_name)
    }

    fn part_path(&self, model: &ZooModel) -> PathBuf {
        self.cache_dir.join(format!("{}.part", model.file_name))
    }

    /// What the cache holds for `model`, without hashing anything.
    pub fn cache_state(&self, model: &ZooModel) -> CacheState {
        let path = self.cache_path(model);
        match fs::metadata(&path) {
            Ok(meta) if meta.len() == model.bytes => {
                if verify::stamp_matches(&path, &meta, &model.sha256) {
                    CacheState::Verified
                } else {
                    CacheState::Unchecked
                }
            }
            _ => match fs::metadata(self.part_path(model)) {
                Ok(meta) => CacheState::Partial(meta.len()),
                Err(_) => CacheState::Missing,
            },
        }
    }

    /// The cached file of `name` if it is there and verified, without any network access.
    /// A file of the wrong size or hash is deleted (it is ours, and must never be used), and
    /// `Ok(None)` returned.
    pub fn cached(&self, name: &str) -> Result<Option<PathBuf>> {
        let model = self.model(name)?;
        Ok(self.check_cached(model)?.ok())
    }

    /// `Ok(path)` for a verified cached file, `Err(why not)` otherwise.
    fn check_cached(&self, model: &ZooModel) -> Result<Result<PathBuf, String>> {
        let path = self.cache_path(model);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(_) => return Ok(Err("it is not in the cache".to_string())),
        };
        if verify::stamp_matches(&path, &meta, &model.sha256) && meta.len() == model.bytes {
            return Ok(Ok(path));
        }
        let why = if meta.len() != model.bytes {
            format!("the cached file had {} bytes instead of {}", meta.len(), model.bytes)
        } else {
            let actual = sha256_file(&path)?;
            if actual == model.sha256 {
                verify::write_stamp(&path, &model.sha256)?;
                return Ok(Ok(path));
            }
            format!("the cached file's sha256 was {actual}, not {}", model.sha256)
        };
        remove_if_exists(&path)?;
        remove_if_exists(&verify::stamp_path(&path))?;
        Ok(Err(format!("{why}, so it was deleted")))
    }

    /// The verified file of `name`: from the cache, else downloaded (unless offline).
    /// `on_event` sees the download start, its progress and any resumption.
    pub fn fetch(&self, name: &str, on_event: &mut dyn FnMut(DownloadEvent)) -> Result<PathBuf> {
        let model = self.model(name)?;
        let why_not = match self.check_cached(model)? {
            Ok(path) => return Ok(path),
            Err(why) => why,
        };
        if self.offline {
            return Err(RegistryError::Offline {
                name: model.name.clone(),
                why: why_not,
                file_name: model.file_name.clone(),
                cache_dir: self.cache_dir.clone(),
                url: self.url(model),
            });
        }
        self.download(model, on_event)
    }

    /// Downloads `model` (resuming a `.part` file), verifies it and moves it into place.
    fn download(&self, model: &ZooModel, on_event: &mut dyn FnMut(DownloadEvent)) -> Result<PathBuf> {
        fs::create_dir_all(&self.cache_dir).map_err(|e| RegistryError::io(&self.cache_dir, e))?;
        let part = self.part_path(model);
        let url = self.url(model);
        download::download_to_part(&url, &part, model.bytes, on_event)?;

        let actual = sha256_file(&part)?;
        if actual != model.sha256 {
            remove_if_exists(&part)?;
            return Err(RegistryError::ChecksumMismatch { file: part, expected: model.sha256.clone(), actual });
        }
        let path = self.cache_path(model);
        // Flush to disk before the rename makes the file visible under its final name.
        fs::File::open(&part).and_then(|f| f.sync_all()).map_err(|e| RegistryError::io(&part, e))?;
        fs::rename(&part, &path).map_err(|e| RegistryError::io(&path, e))?;
        verify::write_stamp(&path, &model.sha256)?;
        on_event(DownloadEvent::Verified { path: &path });
        Ok(path)
    }

    /// Hashes `path` and finds the model it is (by SHA-256 and size), if any.
    pub fn identify(&self, path: &Path) -> Result<Identified<'_>> {
        let bytes = fs::metadata(path).map_err(|e| RegistryError::io(path, e))?.len();
        let sha256 = sha256_file(path)?;
        let model = self.models.iter().find(|m| m.sha256 == sha256 && m.bytes == bytes);
        Ok(Identified { bytes, sha256, model })
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RegistryError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §2.1's table: file, bytes, abbreviated SHA-256 (prefix…suffix).
    const SPEC_2_1: [(&str, u64, &str, &str); 10] = [
        ("resnet18-v1-7.onnx", 46_820_737, "4e8f8653", "6df52c"),
        ("resnet34-v1-7.onnx", 87_302_588, "883a41b2", "71e2cc"),
        ("resnet50-v1-7.onnx", 102_583_340, "af16a04a", "217b9c"),
        ("resnet101-v1-7.onnx", 178_914_043, "760702f6", "0497c"),
        ("resnet152-v1-7.onnx", 241_816_206, "b0ec9243", "2fd3f6d"),
        ("resnet18-v2-7.onnx", 46_806_737, "3b4d0480", "433f824b"),
        ("resnet34-v2-7.onnx", 87_288_587, "3d3815e2", "62d914"),
        ("resnet50-v2-7.onnx", 102_442_452, "79102261", "efe31"),
        ("resnet101-v2-7.onnx", 178_682_301, "3a0a819e", "67767d"),
        ("resnet152-v2-7.onnx", 241_503_848, "40fb3f6d", "b1bee64"),
    ];

    #[test]
    fn official_hashes_and_sizes_agree_with_spec_2_1() {
        let models = official_models();
        assert_eq!(models.len(), SPEC_2_1.len());
        for (m, (file, bytes, prefix, suffix)) in models.iter().zip(SPEC_2_1) {
            assert_eq!(m.file_name, file);
            assert_eq!(m.bytes, bytes, "{file}");
            assert_eq!(m.sha256.len(), 64, "{file}");
            assert!(m.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{file}");
            assert!(m.sha256.starts_with(prefix) && m.sha256.ends_with(suffix), "{file}: {}", m.sha256);
        }
    }

    #[test]
    fn names_are_depth_and_version() {
        let names: Vec<String> = official_models().into_iter().map(|m| m.name).collect();
        assert_eq!(names, crate::arch::NAMES, "the registry names the ten architectures, in order");
        assert!(names.iter().any(|n| n == DEFAULT_MODEL));
    }

    #[test]
    fn url_is_base_slash_file_name() {
        let r = Registry::official("/tmp/x");
        let m = r.model("resnet18-v1").unwrap();
        assert_eq!(
            r.url(m),
            "https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet18-v1-7.onnx"
        );
        let r = r.with_base_url("http://mirror.example/zoo/");
        assert_eq!(r.url(r.model("resnet18-v1").unwrap()), "http://mirror.example/zoo/resnet18-v1-7.onnx");
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let e = Registry::official("/tmp/x").model("resnet51-v2").unwrap_err().to_string();
        assert!(e.contains("resnet51-v2") && e.contains("resnet18-v1") && e.contains("resnet152-v2"), "{e}");
    }
}
