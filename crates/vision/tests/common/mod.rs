//! Locating the shared read-only test assets (`../shared` beside the workspace: sample images,
//! Pillow crops) for integration tests. Self-contained so it can move to a test-support crate.

use std::path::{Path, PathBuf};

/// Environment variable naming the shared assets directory.
pub const SHARED_DIR_VAR: &str = "RESNET_SHARED_DIR";

/// The shared assets directory: `$RESNET_SHARED_DIR`, else `<workspace root>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os(SHARED_DIR_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            // This crate lives at <workspace root>/crates/<name>.
            let workspace_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            workspace_root.join("../shared")
        }
    }
}

/// `shared_dir()/rel` if it exists. When it does not: panics on CI (`CI=true`), so a missing
/// asset cannot silently turn a test into a no-op there; elsewhere prints a skip notice and
/// returns `None`, and the caller returns early.
pub fn shared_asset(rel: &str) -> Option<PathBuf> {
    let path = shared_dir().join(rel);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("shared test asset {} not found; set {SHARED_DIR_VAR} to the shared assets directory", path.display());
    }
    eprintln!("skipping: {} not found (set {SHARED_DIR_VAR})", path.display());
    None
}
