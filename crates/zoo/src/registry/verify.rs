//! SHA-256 of files, and the `.verified` stamps that spare re-hashing a checked file.
//!
//! A stamp `<file>.verified` holds the hash the file was checked against, its size and its
//! modification time in nanoseconds. It matches only while all three still hold, so a file
//! replaced or rewritten in place (new mtime) is hashed again before it is used.

use std::fs::{self, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::error::RegistryError;

/// SHA-256 of a file's contents as 64 lowercase hex digits.
pub fn sha256_file(path: &Path) -> Result<String, RegistryError> {
    let mut file = fs::File::open(path).map_err(|e| RegistryError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| RegistryError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn stamp_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    file.with_file_name(name)
}

fn stamp_text(meta: &Metadata, sha256: &str) -> Option<String> {
    let mtime_ns = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some(format!("sha256 {sha256}\nbytes {}\nmtime_ns {mtime_ns}\n", meta.len()))
}

/// Whether `file` (with metadata `meta`) carries a stamp saying it hashed to `sha256`.
pub(crate) fn stamp_matches(file: &Path, meta: &Metadata, sha256: &str) -> bool {
    match (fs::read_to_string(stamp_path(file)), stamp_text(meta, sha256)) {
        (Ok(found), Some(expected)) => found == expected,
        _ => false,
    }
}

/// Records that `file` hashed to `sha256` just now.
pub(crate) fn write_stamp(file: &Path, sha256: &str) -> Result<(), RegistryError> {
    let meta = fs::metadata(file).map_err(|e| RegistryError::io(file, e))?;
    let stamp = stamp_path(file);
    match stamp_text(&meta, sha256) {
        Some(text) => fs::write(&stamp, text).map_err(|e| RegistryError::io(&stamp, e)),
        // No usable mtime on this file system: no stamp, the file is hashed on each use.
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_strings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        fs::write(&p, b"").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn stamp_stops_matching_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.onnx");
        fs::write(&p, b"model").unwrap();
        write_stamp(&p, "aa").unwrap();
        assert!(stamp_matches(&p, &fs::metadata(&p).unwrap(), "aa"));
        assert!(!stamp_matches(&p, &fs::metadata(&p).unwrap(), "bb"));
        fs::write(&p, b"modem").unwrap(); // same size, new contents and mtime
        let meta = fs::metadata(&p).unwrap();
        let f = fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(meta.modified().unwrap() + std::time::Duration::from_secs(1)).unwrap();
        assert!(!stamp_matches(&p, &fs::metadata(&p).unwrap(), "aa"));
    }
}
