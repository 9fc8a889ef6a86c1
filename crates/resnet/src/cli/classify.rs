//! `resnet classify`: top-k ImageNet classes of images, decoded in parallel and batched.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rayon::prelude::*;
use resnet::vision::{DecodeOptions, Labels};
use resnet::{Classifier, Model, Prediction};

/// Classify images with a ResNet (top-k classes with softmax probabilities).
#[derive(clap::Args)]
#[command(after_help = "Examples:
  resnet classify cat.jpg                              # the zoo's resnet50-v2, fetched on first use
  resnet classify --model resnet18-v1 cat.jpg          # any zoo name: see `resnet models list`
  resnet classify --model model.onnx --top 3 --json photos/*.jpg

Images are decoded, resized (shorter side 256, Pillow's antialiased bilinear) and
center-cropped to 224 exactly as the ONNX model zoo's reference pipeline does.")]
pub struct Args {
    /// ONNX model file, or a zoo model name (resnet18-v1 … resnet152-v2) [default: resnet50-v2].
    #[arg(long, short = 'm', value_name = "FILE|NAME")]
    model: Option<String>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// One JSON object per image per line instead of text.
    #[arg(long)]
    json: bool,
    /// Threads for decoding and inference (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Images per model run.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
    /// Labels file, one class per line in output order (default: labels.txt beside the model
    /// file, as `resnet train` writes it, else the 1000 ImageNet synsets).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Square input size (≥ 224 for the zoo's models); the shorter side is resized to size·256/224.
    #[arg(long)]
    input_size: Option<u32>,
    /// Rotate/flip images by their EXIF orientation tag (the reference pipeline does not).
    #[arg(long)]
    exif_orientation: bool,
    /// Refuse images with more pixels than this (protection against decompression bombs).
    #[arg(long, default_value_t = DecodeOptions::default().max_pixels)]
    max_pixels: u64,
    /// Image files (JPEG or PNG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    engine: super::EngineArgs,
    #[command(flatten)]
    registry: super::models::RegistryArgs,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    a.engine.validate()?;
    super::init_threads(a.threads)?;
    let spec = a.model.as_deref().unwrap_or(resnet::zoo::registry::DEFAULT_MODEL);
    let model_path = resnet::resolve_model(spec, &a.registry.resolve_options())?;
    let model = a.engine.apply(Model::load(&model_path)?, a.threads, super::ModeChoice::Fast);
    let mut classifier = match a.labels.clone().or_else(|| resnet::labels_beside(&model_path)) {
        Some(path) => Classifier::with_label_set(model, Labels::from_file(path)?)?,
        None => Classifier::new(model)?,
    };
    if let Some(size) = a.input_size {
        classifier = classifier.with_input_size(size)?;
    }
    let decode = DecodeOptions { max_pixels: a.max_pixels, apply_exif_orientation: a.exif_orientation };
    let classifier = classifier.with_decode_options(decode);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    for chunk in a.images.chunks(a.batch as usize) {
        // Decode and preprocess in parallel; keep failures in place so output order is input order.
        let prepared: Vec<anyhow::Result<Vec<f32>>> = chunk
            .par_iter()
            .map(|path| {
                let bytes = std::fs::read(path).with_context(|| "cannot read the file".to_string())?;
                Ok(classifier.prepare_bytes(&bytes)?)
            })
            .collect();
        let ok: Vec<Vec<f32>> = prepared.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
        let mut results = classifier.classify_prepared(ok)?.into_iter();
        for (path, prep) in chunk.iter().zip(&prepared) {
            match prep {
                Ok(_) => {
                    let c = results.next().expect("one result per prepared image");
                    print_predictions(&mut out, path, &c.top(a.top), a.json)?;
                }
                Err(e) => {
                    failed += 1;
                    print_failure(&mut out, path, &super::one_line(e), a.json)?;
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} images could not be classified", a.images.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_predictions(out: &mut impl Write, path: &Path, preds: &[Prediction], json: bool) -> std::io::Result<()> {
    if json {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            file: String,
            predictions: &'a [Prediction],
        }
        let line = Line { file: path.display().to_string(), predictions: preds };
        return writeln!(out, "{}", serde_json::to_string(&line).expect("plain data serializes"));
    }
    writeln!(out, "{}", path.display())?;
    for p in preds {
        let wnid = p.wnid.as_deref().map(|w| format!("{w} ")).unwrap_or_default();
        writeln!(out, "  {:>9.6}  {wnid}{}", p.probability, p.label)?;
    }
    Ok(())
}

fn print_failure(out: &mut impl Write, path: &Path, error: &str, json: bool) -> std::io::Result<()> {
    if json {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            file: String,
            error: &'a str,
        }
        let line = Line { file: path.display().to_string(), error };
        return writeln!(out, "{}", serde_json::to_string(&line).expect("plain data serializes"));
    }
    writeln!(out, "{}\n  error: {error}", path.display())
}
