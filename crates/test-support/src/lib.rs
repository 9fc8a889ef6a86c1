//! The one place tests find `../shared`: the models, images, labels and ONNX node tests that
//! live beside the checkout (CI puts them there too).
//!
//! `RESNET_SHARED_DIR` overrides the location. A missing asset is a clear failure when
//! `CI=true` (CI must never pass by skipping) and a printed "skipping" note otherwise, so a
//! contributor without the assets can still run the rest of the suite.

use std::path::{Path, PathBuf};

pub mod http;

/// Environment variable that points at the shared assets folder.
pub const SHARED_DIR_VAR: &str = "RESNET_SHARED_DIR";

/// The shared assets folder: `$RESNET_SHARED_DIR`, else `<workspace>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os(SHARED_DIR_VAR) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("..").join("shared"),
    }
}

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `shared/<rel>` if it exists. When it does not: panics under CI, otherwise prints why the
/// calling test is skipped and returns `None` (call as `let Some(p) = shared_asset(..) else { return };`).
pub fn shared_asset(rel: &str) -> Option<PathBuf> {
    let path = shared_dir().join(rel);
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "test asset {} not found (set {SHARED_DIR_VAR} to the folder that holds SPEC.md, models/ and data/)",
        path.display()
    );
    if in_ci() {
        panic!("{msg}; CI must have it");
    }
    eprintln!("skipping: {msg}");
    None
}
