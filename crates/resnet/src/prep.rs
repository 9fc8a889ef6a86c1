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
    #[error("{}: cannot read it as a tar archive: {detail}", path.display())]
    Archive { path: PathBuf, detail: String },
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

/// What [`prepare_imagenet_train`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrainPrepReport {
    /// The class-folder tree (`OUT/train`).
    pub tree: PathBuf,
    /// Images written by this run.
    pub created: usize,
    /// Images that were already in place (same size).
    pub already_present: usize,
    /// Entries that are not `<wnid>.tar` class archives, or not images inside one (left out).
    pub unexpected: Vec<String>,
    /// Images in the tree per class (WNID), from this run's archives.
    pub per_class: BTreeMap<String, usize>,
}

/// Extracts the ImageNet training set into `out/train/<wnid>/`: `input` is either
/// `ILSVRC2012_img_train.tar` itself (1000 per-class `<wnid>.tar` inside, read as a stream,
/// nothing unpacked to disk first) or a folder holding the per-class tars. Each image is
/// written to a temporary name and renamed; an image already in place with the right size is
/// skipped, so a re-run is a no-op and an interrupted one is finished by running it again.
/// Only the file name of each entry is used, so no entry can write outside its class folder.
pub fn prepare_imagenet_train(input: &Path, out: &Path, labels: &Labels) -> Result<TrainPrepReport, PrepError> {
    let tree = out.join("train");
    let mut report = TrainPrepReport { tree: tree.clone(), ..TrainPrepReport::default() };
    if input.is_dir() {
        for name in regular_files(input)? {
            let path = input.join(&name);
            match class_of_archive(&name, labels) {
                Some(wnid) => {
                    let file = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
                    extract_class(std::io::BufReader::new(file), &name, &wnid, &tree, &mut report)
                        .map_err(|e| tar_error(&path, e))?;
                }
                None => report.unexpected.push(name),
            }
        }
    } else {
        let file = std::fs::File::open(input).map_err(|e| io(input, e))?;
        let mut outer = tar::Archive::new(std::io::BufReader::new(file));
        for entry in outer.entries().map_err(|e| tar_error(input, e))? {
            let entry = entry.map_err(|e| tar_error(input, e))?;
            let name = entry_name(&entry).unwrap_or_default();
            if entry.header().entry_type().is_dir() {
                continue;
            }
            match class_of_archive(&name, labels) {
                Some(wnid) => {
                    extract_class(entry, &name, &wnid, &tree, &mut report).map_err(|e| tar_error(input, e))?
                }
                None => report.unexpected.push(name),
            }
        }
    }
    report.unexpected.sort();
    Ok(report)
}

/// `n01440764.tar` → `n01440764` when it is one of the labels' WNIDs.
fn class_of_archive(name: &str, labels: &Labels) -> Option<String> {
    let wnid = name.strip_suffix(".tar")?;
    labels.index_of_wnid(wnid).map(|_| wnid.to_string())
}

/// The last path component of a tar entry's name.
fn entry_name<R: std::io::Read>(entry: &tar::Entry<R>) -> Option<String> {
    let path = entry.path().ok()?;
    Some(path.file_name()?.to_string_lossy().into_owned())
}

/// Writes the images of one per-class tar into `tree/<wnid>/`.
fn extract_class(
    reader: impl std::io::Read,
    archive: &str,
    wnid: &str,
    tree: &Path,
    report: &mut TrainPrepReport,
) -> std::io::Result<()> {
    let dir = tree.join(wnid);
    std::fs::create_dir_all(&dir)?;
    let mut inner = tar::Archive::new(reader);
    for entry in inner.entries()? {
        let mut entry = entry?;
        let name = entry_name(&entry).unwrap_or_default();
        let is_file = entry.header().entry_type().is_file();
        if !is_file || name.starts_with('.') || !crate::validate::is_image_name(&name) {
            if !entry.header().entry_type().is_dir() {
                report.unexpected.push(format!("{archive}/{name}"));
            }
            continue;
        }
        let dst = dir.join(&name);
        let size = entry.header().size()?;
        if std::fs::metadata(&dst).is_ok_and(|m| m.len() == size) {
            report.already_present += 1;
        } else {
            let tmp = dir.join(format!(".{name}.partial"));
            let mut file = std::fs::File::create(&tmp)?;
            std::io::copy(&mut entry, &mut file)?;
            std::fs::rename(&tmp, &dst)?;
            report.created += 1;
        }
        *report.per_class.entry(wnid.to_string()).or_default() += 1;
    }
    Ok(())
}

fn tar_error(path: &Path, e: std::io::Error) -> PrepError {
    // The tar crate quotes the bytes it could not parse: keep the message one printable line.
    let detail: String =
        e.to_string().chars().map(|c| if c.is_control() || c == '\u{fffd}' { '?' } else { c }).collect();
    let detail = match detail.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &detail[..cut]),
        None => detail,
    };
    PrepError::Archive { path: path.to_path_buf(), detail }
}
