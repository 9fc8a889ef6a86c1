//! Dataset preparation (SPEC §7, the zoo's `imagenet_prep.md` / `extract_imagenet.py`):
//! the 50,000 flat ImageNet validation images into `OUT/val/<wnid>/` class folders, the
//! layout `resnet validate` and the zoo's notebooks read.
//!
//! Unlike `extract_imagenet.py`, which moves the files, this never moves, modifies or deletes
//! an input: each image is hard-linked (or, with [`LinkMode::Copy`], copied to a temporary
//! name and renamed, so a file at its final name is always complete). An image already at its
//! place is left alone, so a second run does nothing and an interrupted run is finished by
//! running it again.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use resnet_vision::Labels;

use crate::validate::parse_ground_truth;

/// How an image gets into the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// A hard link: no extra space, same file system only.
    HardLink,
    /// A copy (temporary name, then renamed).
    Copy,
}

/// What [`prepare_imagenet_val`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ValPrepReport {
    /// The class-folder tree (`OUT/val`).
    pub tree: PathBuf,
    /// Images linked or copied by this run.
    pub created: usize,
    /// Images that were already in place.
    pub already_present: usize,
    /// Files the ground truth lists that are not in the images folder.
    pub missing: Vec<String>,
    /// Files in the images folder that the ground truth does not list (left out of the tree).
    pub unexpected: Vec<String>,
    /// Destination files that exist with another size than their source: left untouched.
    pub conflicting: Vec<String>,
    /// Images in the tree per class (WNID), after this run.
    pub per_class: BTreeMap<String, usize>,
}

/// Why preparation could not run.
#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}:{line}: {detail}", path.display())]
    GroundTruth { path: PathBuf, line: usize, detail: String },
    #[error("cannot hard-link {} into {}: they are on different file systems; use --copy", images.display(), out.display())]
    CrossDevice { images: PathBuf, out: PathBuf },
}

/// Builds `out/val/<wnid>/<file>` for every file `ground_truth` lists (see
/// [`crate::validate::parse_ground_truth`] for its formats) that exists in `images`.
pub fn prepare_imagenet_val(
    images: &Path,
    ground_truth: &Path,
    out: &Path,
    mode: LinkMode,
    labels: &Labels,
) -> Result<ValPrepReport, PrepError> {
    if !images.is_dir() {
        return Err(PrepError::NotADirectory(images.to_path_buf()));
    }
    let text = std::fs::read_to_string(ground_truth).map_err(|source| io(ground_truth, source))?;
    let gt_error = |line, detail| PrepError::GroundTruth { path: ground_truth.to_path_buf(), line, detail };
    let entries = parse_ground_truth(&text, labels).map_err(|(line, detail)| gt_error(line, detail))?;

    let tree = out.join("val");
    let mut report = ValPrepReport { tree: tree.clone(), ..ValPrepReport::default() };
    let listed: HashSet<&str> = entries.iter().map(|e| e.file.as_str()).collect();
    for name in regular_files(images)? {
        if !listed.contains(name.as_str()) {
            report.unexpected.push(name);
        }
    }

    let mut made_dirs = HashSet::new();
    for entry in &entries {
        let Some(wnid) = &entry.wnid else {
            let detail = format!("class {} of '{}' has no WordNet id in the labels", entry.label, entry.file);
            return Err(gt_error(0, detail));
        };
        let src = images.join(&entry.file);
        if !src.is_file() {
            report.missing.push(entry.file.clone());
            continue;
        }
        let dir = tree.join(wnid);
        if made_dirs.insert(wnid.clone()) {
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        let dst = dir.join(&entry.file);
        match place(&src, &dst, mode) {
            Ok(Placed::Created) => report.created += 1,
            Ok(Placed::AlreadyThere) => report.already_present += 1,
            Ok(Placed::Conflict) => {
                report.conflicting.push(format!("{wnid}/{}", entry.file));
                continue;
            }
            Err(e) if is_cross_device(&e) => {
                return Err(PrepError::CrossDevice { images: images.to_path_buf(), out: out.to_path_buf() })
            }
            Err(e) => return Err(io(&dst, e)),
        }
        *report.per_class.entry(wnid.clone()).or_default() += 1;
    }
    report.missing.sort();
    report.unexpected.sort();
    Ok(report)
}

enum Placed {
    Created,
    AlreadyThere,
    Conflict,
}

/// Puts `src` at `dst` unless something is there already.
fn place(src: &Path, dst: &Path, mode: LinkMode) -> std::io::Result<Placed> {
    if let Ok(existing) = std::fs::metadata(dst) {
        let source = std::fs::metadata(src)?;
        return Ok(if same_file(&existing, &source) || existing.len() == source.len() {
            Placed::AlreadyThere
        } else {
            Placed::Conflict
        });
    }
    match mode {
        // Creating a link is atomic: the name appears complete or not at all.
        LinkMode::HardLink => match std::fs::hard_link(src, dst) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Placed::AlreadyThere),
            other => other.map(|()| Placed::Created),
        },
        LinkMode::Copy => {
            let name = dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let tmp = dst.with_file_name(format!(".{name}.partial"));
            std::fs::copy(src, &tmp)?;
            std::fs::rename(&tmp, dst)?;
            Ok(Placed::Created)
        }
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

fn is_cross_device(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::CrossesDevices || e.raw_os_error() == Some(18)
    // EXDEV
}

/// Names of the regular, non-hidden files directly in `dir`.
fn regular_files(dir: &Path) -> Result<Vec<String>, PrepError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_file() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn io(path: &Path, source: std::io::Error) -> PrepError {
    PrepError::Io { path: path.to_path_buf(), source }
}
