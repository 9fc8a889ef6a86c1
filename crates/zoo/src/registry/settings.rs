//! Where the registry's settings come from: an explicit value (a command-line flag) wins over
//! the environment, which wins over the default.
//!
//! | setting | flag | environment | default |
//! |---|---|---|---|
//! | cache directory | `--cache-dir` | `RESNET_CACHE_DIR` | `$XDG_CACHE_HOME/resnet-rs`, else `~/.cache/resnet-rs` |
//! | base URL (mirror) | `--base-url` | `RESNET_MODEL_BASE_URL` | the zoo ([`super::OFFICIAL_BASE_URL`]) |
//! | offline | `--offline` | `RESNET_OFFLINE=1` | off |
//! | model list | — | `RESNET_REGISTRY_MANIFEST` | the ten official files |

use std::path::{Path, PathBuf};

use super::error::RegistryError;
use super::{official_models, Registry, ZooModel};

pub const CACHE_DIR_VAR: &str = "RESNET_CACHE_DIR";
pub const BASE_URL_VAR: &str = "RESNET_MODEL_BASE_URL";
pub const OFFLINE_VAR: &str = "RESNET_OFFLINE";
/// A manifest replacing the built-in list: for mirrors that serve other files, and for tests.
pub const MANIFEST_VAR: &str = "RESNET_REGISTRY_MANIFEST";

/// Explicit settings; `None`/`false` means "from the environment, else the default".
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub cache_dir: Option<PathBuf>,
    pub base_url: Option<String>,
    /// Offline if this is true or `RESNET_OFFLINE` is set to anything but `0`/`false`/empty.
    pub offline: bool,
    /// A manifest file replacing the built-in list (see [`parse_manifest`]).
    pub manifest: Option<PathBuf>,
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// `RESNET_CACHE_DIR`, else `$XDG_CACHE_HOME/resnet-rs`, else `$HOME/.cache/resnet-rs`.
pub fn default_cache_dir() -> Result<PathBuf, RegistryError> {
    if let Some(dir) = env_nonempty(CACHE_DIR_VAR) {
        return Ok(PathBuf::from(dir));
    }
    // The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    if let Some(xdg) = env_nonempty("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Ok(xdg.join("resnet-rs"));
    }
    match env_nonempty("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("resnet-rs")),
        None => Err(RegistryError::NoCacheDir),
    }
}

impl Settings {
    pub(crate) fn resolve(self) -> Result<Registry, RegistryError> {
        let cache_dir = match self.cache_dir {
            Some(dir) => dir,
            None => default_cache_dir()?,
        };
        let manifest = self.manifest.or_else(|| env_nonempty(MANIFEST_VAR).map(PathBuf::from));
        let models = match manifest {
            Some(path) => read_manifest(&path)?,
            None => official_models(),
        };
        let offline = self.offline
            || env_nonempty(OFFLINE_VAR).is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "0" | "false"));
        let mut registry = Registry::with_entries(models, cache_dir).with_offline(offline);
        if let Some(url) = self.base_url.or_else(|| env_nonempty(BASE_URL_VAR)) {
            registry = registry.with_base_url(url);
        }
        Ok(registry)
    }
}

fn read_manifest(path: &Path) -> Result<Vec<ZooModel>, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|e| RegistryError::io(path, e))?;
    parse_manifest(&text).map_err(|(line, detail)| RegistryError::Manifest { path: path.to_path_buf(), line, detail })
}

/// Parses a manifest: one model per line, `NAME FILE_NAME BYTES SHA256` separated by
/// whitespace; blank lines and lines starting with `#` are skipped. Errors carry the 1-based
/// line number.
pub fn parse_manifest(text: &str) -> Result<Vec<ZooModel>, (usize, String)> {
    let mut models: Vec<ZooModel> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, file_name, bytes, sha256] = fields[..] else {
            return Err((line_no, format!("expected NAME FILE_NAME BYTES SHA256, got {} fields", fields.len())));
        };
        let bytes: u64 = bytes.parse().map_err(|_| (line_no, format!("size '{bytes}' is not a number")))?;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err((line_no, format!("sha256 '{sha256}' is not 64 lowercase hex digits")));
        }
        if file_name.contains(['/', '\\']) || file_name.starts_with('.') {
            return Err((line_no, format!("file name '{file_name}' must be a plain file name")));
        }
        if models.iter().any(|m| m.name == name) {
            return Err((line_no, format!("model '{name}' listed twice")));
        }
        models.push(ZooModel {
            name: name.to_string(),
            file_name: file_name.to_string(),
            bytes,
            sha256: sha256.to_string(),
        });
    }
    if models.is_empty() {
        return Err((1, "no models listed".to_string()));
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn manifest_lines_become_models() {
        let text = format!("# test manifest\n\nresnet18-v1  resnet18-v1-7.onnx\t3 {SHA}\n");
        let models = parse_manifest(&text).unwrap();
        assert_eq!(
            models,
            [ZooModel {
                name: "resnet18-v1".into(),
                file_name: "resnet18-v1-7.onnx".into(),
                bytes: 3,
                sha256: SHA.into()
            }]
        );
    }

    #[test]
    fn manifest_errors_name_the_line() {
        assert_eq!(parse_manifest("a b 3").unwrap_err().0, 1);
        assert_eq!(parse_manifest(&format!("\na b x {SHA}")).unwrap_err().0, 2);
        assert!(parse_manifest("a b 3 ABC").unwrap_err().1.contains("sha256"));
        assert!(parse_manifest(&format!("a ../b 3 {SHA}")).unwrap_err().1.contains("plain file name"));
        assert!(parse_manifest(&format!("a b 3 {SHA}\na c 3 {SHA}")).unwrap_err().1.contains("twice"));
        assert!(parse_manifest("# nothing\n").is_err());
    }
}
