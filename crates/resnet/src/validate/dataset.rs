//! Which images a validation run scores and their labels (SPEC §5.1): class folders named by
//! WordNet id, or a flat folder plus a ground-truth file; sorted by relative path, then
//! optionally limited and sharded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use resnet_vision::Labels;

use super::Error;

/// The extensions Gluon's `ImageFolderDataset` accepts (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// One image to score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Where to read it.
    pub path: PathBuf,
    /// Its path relative to the dataset root with `/` separators (`n01440764/x.JPEG`): the
    /// image's name in reports, the sort key and the shard key.
    pub file: String,
    /// Class index (the line of its WNID in the labels).
    pub label: usize,
}

/// How the images and their labels were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `root/<wnid>/<image>`.
    ClassFolders,
    /// `root/<image>` with labels from a ground-truth file.
    FlatWithGroundTruth,
}

/// The images of a validation run, sorted by [`Item::file`].
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder the images were found in (`DIR` or `DIR/val`).
    pub root: PathBuf,
    pub layout: Layout,
    pub items: Vec<Item>,
    /// Images of a flat folder that the ground-truth file does not mention (not scored).
    pub unlabeled: Vec<String>,
}

/// `--shard I/N`: the `I`-th of `N` disjoint parts (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("'{s}' is not a shard: expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) =
            (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Dataset {
    /// Finds the images under `dir`. Without a ground-truth file `dir` holds one folder per
    /// class, named by WNID (`dir/val/<wnid>/` is used when `dir` itself has none, as
    /// `resnet prep` writes it); each class's label is its WNID's line in `labels`, so a
    /// subset of the classes still scores right. With one, `dir` is flat and the file gives
    /// each image's class (see [`parse_ground_truth`]). Only `.jpg`, `.jpeg` and `.png` files
    /// (any case) directly in those folders count.
    pub fn discover(dir: &Path, ground_truth: Option<&Path>, labels: &Labels) -> Result<Dataset, Error> {
        if !dir.is_dir() {
            return Err(Error::NotADirectory(dir.to_path_buf()));
        }
        match ground_truth {
            Some(gt) => Self::flat(dir, gt, labels),
            None => Self::class_folders(dir, labels),
        }
    }

    fn class_folders(dir: &Path, labels: &Labels) -> Result<Dataset, Error> {
        let (mut classes, others) = class_dirs(dir, labels)?;
        let mut root = dir.to_path_buf();
        if classes.is_empty() && dir.join("val").is_dir() {
            root = dir.join("val");
            let (c, o) = class_dirs(&root, labels)?;
            if !c.is_empty() {
                classes = c;
                check_no_others(&root, &o)?;
            }
        } else {
            check_no_others(dir, &others)?;
        }
        if classes.is_empty() {
            let flat_images = image_files(dir)?.len();
            return Err(Error::NoClassFolders { dir: dir.to_path_buf(), flat_images });
        }
        let mut items = Vec::new();
        let folders = classes.len();
        for (name, label) in classes {
            let folder = root.join(&name);
            for file in image_files(&folder)? {
                items.push(Item { path: folder.join(&file), file: format!("{name}/{file}"), label });
            }
        }
        items.sort_by(|a, b| a.file.cmp(&b.file));
        if items.is_empty() {
            return Err(Error::NoImages {
                dir: root,
                detail: format!("its {folders} class folder(s) hold no .jpg, .jpeg or .png files"),
            });
        }
        Ok(Dataset { root, layout: Layout::ClassFolders, items, unlabeled: Vec::new() })
    }

    fn flat(dir: &Path, gt: &Path, labels: &Labels) -> Result<Dataset, Error> {
        let text = std::fs::read_to_string(gt).map_err(|source| Error::Io { path: gt.to_path_buf(), source })?;
        let entries = parse_ground_truth(&text, labels).map_err(|(line, detail)| Error::GroundTruth {
            path: gt.to_path_buf(),
            line,
            detail,
        })?;
        let by_name: HashMap<&str, usize> = entries.iter().map(|e| (e.file.as_str(), e.label)).collect();
        let mut items = Vec::new();
        let mut unlabeled = Vec::new();
        for file in image_files(dir)? {
            match by_name.get(file.as_str()) {
                Some(&label) => items.push(Item { path: dir.join(&file), file, label }),
                None => unlabeled.push(file),
            }
        }
        items.sort_by(|a, b| a.file.cmp(&b.file));
        unlabeled.sort();
        if items.is_empty() {
            return Err(Error::NoImages {
                dir: dir.to_path_buf(),
                detail: format!("none is named in {}", gt.display()),
            });
        }
        Ok(Dataset { root: dir.to_path_buf(), layout: Layout::FlatWithGroundTruth, items, unlabeled })
    }

    /// Keeps the first `n` images (in sorted order).
    pub fn limit(mut self, n: usize) -> Dataset {
        self.items.truncate(n);
        self
    }

    /// Keeps the images of one shard: the `k`-th image in sorted order belongs to shard
    /// `k mod N`, so the shards are disjoint, cover everything, differ in size by at most
    /// one image and each sees every class folder.
    pub fn shard(mut self, shard: Shard) -> Dataset {
        self.items = self
            .items
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % shard.count == shard.index)
            .map(|(_, item)| item)
            .collect();
        self.unlabeled = self
            .unlabeled
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % shard.count == shard.index)
            .map(|(_, f)| f)
            .collect();
        self
    }

    /// Number of distinct classes among the images.
    pub fn class_count(&self) -> usize {
        let mut labels: Vec<usize> = self.items.iter().map(|i| i.label).collect();
        labels.sort_unstable();
        labels.dedup();
        labels.len()
    }
}

/// Class folders (named by WNID, or by a whole label line such as `dog` for the labels.txt of
/// a fine-tuned model) with their class index.
type ClassDirs = Vec<(String, usize)>;

/// Sub-folders of `dir` split into (WNID folders with their label, other non-hidden folders).
fn class_dirs(dir: &Path, labels: &Labels) -> Result<(ClassDirs, Vec<String>), Error> {
    let mut classes = Vec::new();
    let mut others = Vec::new();
    for entry in read_dir_sorted(dir)? {
        let (name, path) = entry;
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        match labels.index_of_wnid(&name).or_else(|| labels.index_of_line(&name)) {
            Some(label) => classes.push((name, label)),
            None => others.push(name),
        }
    }
    Ok((classes, others))
}

fn check_no_others(dir: &Path, others: &[String]) -> Result<(), Error> {
    match others.first() {
        Some(name) => Err(Error::UnknownClassFolder { dir: dir.to_path_buf(), name: name.clone() }),
        None => Ok(()),
    }
}

/// Names of the image files directly in `dir`, sorted: regular files (or links to them) and
/// dangling links, which the caller then reports as unreadable instead of dropping silently
/// (a folder of broken links used to score "0 images, 0 failed").
pub fn image_files(dir: &Path) -> Result<Vec<String>, Error> {
    Ok(read_dir_sorted(dir)?
        .into_iter()
        .filter(|(name, path)| is_image_name(name) && (path.is_file() || (path.is_symlink() && !path.exists())))
        .map(|(name, _)| name)
        .collect())
}

/// `.jpg`, `.jpeg` or `.png`, in any case.
pub fn is_image_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Entries of `dir` as (UTF-8 name, path), sorted by name; names that are not UTF-8 are skipped
/// (no ImageNet file has one).
fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let io = |source| Error::Io { path: dir.to_path_buf(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// One line of a ground-truth file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundTruthEntry {
    /// The image's file name (the last path component of what the line says).
    pub file: String,
    /// Class index in the labels.
    pub label: usize,
    /// The class's WNID, from the line or from the labels.
    pub wnid: Option<String>,
}

/// Parses a ground-truth file. Accepted lines (fields separated by tabs, or by spaces when a
/// line has no tab):
/// - `ILSVRC2012_val_00000001.JPEG<TAB>n01751748<TAB>65` — the TSV of
///   `ILSVRC2012_val_ground_truth.tsv` (file, WNID, optional index; the WNID decides);
/// - `ILSVRC2012_val_00000001.JPEG 65` — the `val.txt` "file index" lines (index = line of
///   the class in the labels);
///
/// plus empty lines, `#` comments and one header line at the top (a first line whose second
/// field is neither a WNID nor a number). Errors are `(line number, what is wrong)`.
pub fn parse_ground_truth(text: &str, labels: &Labels) -> Result<Vec<GroundTruthEntry>, (usize, String)> {
    let mut entries = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut first_data_line = true;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = if line.contains('\t') {
            line.split('\t').map(str::trim).collect()
        } else {
            line.split_whitespace().collect()
        };
        let is_first = std::mem::replace(&mut first_data_line, false);
        let (Some(&path), Some(&class)) = (fields.first(), fields.get(1)) else {
            return Err((line_no, format!("expected 'FILE WNID' or 'FILE INDEX', got '{line}'")));
        };
        let (label, wnid) = if let Some(index) = labels.index_of_wnid(class) {
            (index, Some(class.to_string()))
        } else if let Ok(index) = class.parse::<usize>() {
            if index >= labels.len() {
                return Err((
                    line_no,
                    format!("class index {index} is out of range (the labels have {})", labels.len()),
                ));
            }
            (index, labels.get(index).and_then(|l| l.wnid.clone()))
        } else if looks_like_wnid(class) {
            return Err((line_no, format!("'{class}' is not one of the labels' WordNet ids")));
        } else if is_first {
            continue; // a header such as `file wnid label`
        } else {
            return Err((line_no, format!("'{class}' is neither a WordNet id nor a class index")));
        };
        let file = path.rsplit(['/', '\\']).next().unwrap_or(path).to_string();
        if let Some(previous) = seen.insert(file.clone(), line_no) {
            return Err((line_no, format!("'{file}' is listed twice (also on line {previous})")));
        }
        entries.push(GroundTruthEntry { file, label, wnid });
    }
    Ok(entries)
}

fn looks_like_wnid(s: &str) -> bool {
    s.len() == 9 && s.starts_with('n') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth_reads_the_tsv_with_its_comment_and_the_val_txt_style() {
        let labels = Labels::imagenet();
        let tsv = "# file\twnid\tindex_in_synset.txt (0-based)\nILSVRC2012_val_00000001.JPEG\tn01751748\t65\n";
        let e = parse_ground_truth(tsv, &labels).unwrap();
        assert_eq!(
            e,
            vec![GroundTruthEntry {
                file: "ILSVRC2012_val_00000001.JPEG".into(),
                label: 65,
                wnid: Some("n01751748".into())
            }]
        );
        let txt = "file label\nval/ILSVRC2012_val_00000002.JPEG 970\n\nILSVRC2012_val_00000003.JPEG   230\n";
        let e = parse_ground_truth(txt, &labels).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].file.as_str(), e[0].label, e[0].wnid.as_deref()),
            ("ILSVRC2012_val_00000002.JPEG", 970, Some("n09193705"))
        );
        assert_eq!(e[1].label, 230);
    }

    #[test]
    fn ground_truth_errors_name_the_line() {
        let labels = Labels::imagenet();
        assert_eq!(parse_ground_truth("a.jpg 0\nb.jpg 1000\n", &labels).unwrap_err().0, 2);
        assert_eq!(parse_ground_truth("a.jpg 0\nb.jpg cat\n", &labels).unwrap_err().0, 2);
        assert_eq!(parse_ground_truth("a.jpg n99999999\n", &labels).unwrap_err().0, 1);
        assert_eq!(parse_ground_truth("a.jpg 0\na.jpg 1\n", &labels).unwrap_err().0, 2);
        assert_eq!(parse_ground_truth("lonely\n", &labels).unwrap_err().0, 1);
    }

    #[test]
    fn image_names_match_case_insensitively() {
        assert!(is_image_name("a.JPEG") && is_image_name("b.Jpg") && is_image_name("c.png"));
        assert!(!is_image_name("d.gif") && !is_image_name("jpeg") && !is_image_name("e.jpeg.txt"));
    }

    #[test]
    fn shards_are_disjoint_and_cover_everything() {
        let items: Vec<Item> =
            (0..10).map(|k| Item { path: PathBuf::from(format!("{k}")), file: format!("{k:02}"), label: k }).collect();
        let ds =
            Dataset { root: PathBuf::new(), layout: Layout::ClassFolders, items: items.clone(), unlabeled: vec![] };
        let mut all: Vec<Item> = (0..3).flat_map(|i| ds.clone().shard(Shard { index: i, count: 3 }).items).collect();
        all.sort_by(|a, b| a.file.cmp(&b.file));
        assert_eq!(all, items);
        assert_eq!(ds.clone().shard(Shard { index: 0, count: 3 }).items.len(), 4);
        assert_eq!(ds.shard(Shard { index: 2, count: 3 }).items.len(), 3);
    }

    #[test]
    fn shard_parses_i_of_n() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        assert!("3/3".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }
}
