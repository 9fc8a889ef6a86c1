//! What can go wrong finding, downloading or verifying a zoo file; each displays as one line
//! that says what to do next where there is something to do.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A name that is not in the registry.
    #[error("unknown model '{name}'; the zoo's models are: {known}")]
    UnknownModel { name: String, known: String },

    /// Offline mode and the file is not (validly) in the cache.
    #[error(
        "{name} is needed but {why}, and offline mode is on (--offline or RESNET_OFFLINE): \
         run `resnet models pull {name}` where there is network access, or copy {file_name} \
         (from {url}) into {cache_dir}, or set RESNET_MODEL_BASE_URL to a mirror and drop \
         offline mode",
        cache_dir = cache_dir.display()
    )]
    Offline { name: String, why: String, file_name: String, cache_dir: PathBuf, url: String },

    /// The connection could not be made or broke off for good.
    #[error("downloading {url}: {detail} (retry to resume; set RESNET_MODEL_BASE_URL to use a mirror)")]
    Network { url: String, detail: String },

    /// The server answered with an error status.
    #[error("downloading {url}: the server answered HTTP {status}")]
    HttpStatus { url: String, status: u16 },

    /// The server sent a body of the wrong length.
    #[error("downloading {url}: got {actual} bytes, expected {expected}; the partial file was deleted")]
    SizeMismatch { url: String, expected: u64, actual: u64 },

    /// The downloaded bytes are not the file the registry names.
    #[error(
        "{}: sha256 mismatch: expected {expected}, got {actual}; the file was deleted",
        file.display()
    )]
    ChecksumMismatch { file: PathBuf, expected: String, actual: String },

    /// A manifest override (RESNET_REGISTRY_MANIFEST) could not be used.
    #[error("{}:{line}: {detail}", path.display())]
    Manifest { path: PathBuf, line: usize, detail: String },

    /// No cache directory could be worked out.
    #[error("no cache directory: set RESNET_CACHE_DIR, XDG_CACHE_HOME or HOME, or pass --cache-dir")]
    NoCacheDir,

    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl RegistryError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> RegistryError {
        RegistryError::Io { path: path.to_path_buf(), source }
    }
}
