//! The zoo's validation procedure (SPEC §5) over an ImageNet-layout dataset: find the images
//! and labels ([`Dataset`]), decode and score them in a pipeline ([`run`]), compute top-1,
//! top-5, per-class accuracy and confusions ([`Report`]), and merge shard reports.
//!
//! ```no_run
//! use resnet::validate::{self, Dataset, PipelineOptions, Report, RunInfo};
//! use resnet::{Classifier, Model};
//! let labels = resnet::vision::Labels::imagenet();
//! let classifier = Classifier::new(Model::load("resnet50-v1-7.onnx")?.with_threads(2))?;
//! let data = Dataset::discover("imagenet/val".as_ref(), None, &labels)?;
//! let out = validate::run(&classifier, &data, &PipelineOptions::default(), &mut |_| {})?;
//! let info = RunInfo { model: "resnet50-v1-7.onnx".into(), data: "imagenet/val".into(), crops: 1,
//!                      batch: 16, threads: 2, shard: None, seconds: out.seconds };
//! let report = Report::new(out.images, out.failed, data.unlabeled, &labels, info);
//! println!("top-1 {:.2} %", 100.0 * report.summary.top1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod dataset;
mod pipeline;
mod report;

use std::path::PathBuf;

pub use dataset::{
    image_files, is_image_name, parse_ground_truth, Dataset, GroundTruthEntry, Item, Layout, Shard, IMAGE_EXTENSIONS,
};
pub use pipeline::{run, Failure, ImageResult, Outcome, PipelineOptions, Progress, KEPT_CLASSES};
pub use report::{ClassAccuracy, Confusion, Report, RunInfo, Summary, CONFUSED_PAIRS};

/// Why a validation could not run (an unreadable image is not an error: it is reported).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error(
        "{}: no class folders named by WordNet id (e.g. n01440764/){}",
        dir.display(),
        if *flat_images > 0 { format!("; it holds {flat_images} images directly: pass --ground-truth FILE for a flat folder") } else { String::new() }
    )]
    NoClassFolders { dir: PathBuf, flat_images: usize },
    #[error("{}: folder '{name}' is neither a WordNet id nor a line of the labels; class folders are named like n01440764 (or as a line of --labels)", dir.display())]
    UnknownClassFolder { dir: PathBuf, name: String },
    #[error("{}: no images to score: {detail}", dir.display())]
    NoImages { dir: PathBuf, detail: String },
    #[error("{}:{line}: {detail}", path.display())]
    GroundTruth { path: PathBuf, line: usize, detail: String },
    #[error("{}: not a validation report: {detail}", path.display())]
    BadReport { path: PathBuf, detail: String },
    #[error("cannot merge: {0}")]
    Merge(String),
    #[error("cannot start the decoding threads: {0}")]
    Threads(String),
    #[error(transparent)]
    Model(#[from] crate::Error),
}
