//! `resnet validate`: top-1/top-5 of a model on an ImageNet-layout dataset (SPEC §5), and
//! `resnet validate merge` for shard reports.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use resnet::validate::{self, Dataset, PipelineOptions, Progress, Report, RunInfo, Shard};
use resnet::vision::{DecodeOptions, Labels};
use resnet::{Classifier, Model};

/// Measure a model's top-1/top-5 accuracy on a dataset the way the model zoo does.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:
  resnet validate --model resnet50-v1 --data imagenet/val                # class folders n01440764/ …
  resnet validate --model m.onnx --data val_flat --ground-truth ILSVRC2012_val_ground_truth.tsv
  resnet validate --model m.onnx --data imagenet --crops 10 --json
  resnet validate --model m.onnx --data imagenet --shard 0/4 --report shard0.json   # on 4 machines…
  resnet validate merge shard0.json shard1.json shard2.json shard3.json            # …then exact totals

Layouts: DIR/<wnid>/*.JPEG (or DIR/val/<wnid>/, as `resnet prep imagenet-val` writes it), labels
from the WNID's line in the labels; or a flat DIR with --ground-truth (lines `FILE WNID [INDEX]`
as in ILSVRC2012_val_ground_truth.tsv, or the zoo's `val.txt` lines `FILE INDEX`).
.jpg/.jpeg/.png in any case. Images are preprocessed as the zoo's reference (shorter side 256,
Pillow bilinear, center crop 224). An unreadable image is listed and excluded; it does not stop
the run (exit code 0)."
)]
pub struct Args {
    #[command(subcommand)]
    merge: Option<MergeCommand>,
    /// ONNX model file, or a zoo model name (resnet18-v1 … resnet152-v2) [default: resnet50-v2].
    #[arg(long, short = 'm', value_name = "FILE|NAME")]
    model: Option<String>,
    /// Dataset folder: class folders named by WNID, or flat with --ground-truth.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Ground-truth file for a flat folder (`FILE WNID [INDEX]` or `FILE INDEX` lines).
    #[arg(long, value_name = "FILE")]
    ground_truth: Option<PathBuf>,
    /// 1: the zoo's single center crop; 10: four corners + center and their mirrors,
    /// softmax averaged (SPEC §5.5).
    #[arg(long, default_value_t = 1, value_parser = parse_crops)]
    crops: usize,
    /// Crops per model run (ten-crop: rounded up to whole images). 8, 16 and 32 gave the same
    /// images/s within noise for the Keras ResNet-50 on 2 threads (VALIDATE-BENCH.md); 8 holds
    /// the least memory.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
    /// Thread budget: the model runs on T threads and T workers decode ahead of it
    /// (default: all cores).
    #[arg(long, value_name = "T")]
    threads: Option<usize>,
    /// Decoding workers (default: T, the --threads budget).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    decode_threads: Option<u32>,
    /// Score only the first N images (in sorted order, before sharding).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Score the I-th of N disjoint parts (0-based; image k of the sorted list is in part
    /// k mod N); combine the parts' --report files with `resnet validate merge`.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Write the full report: per-image predictions, per-class accuracy, most confused pairs
    /// (JSON; CSV with one row per image when FILE ends in .csv).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Labels file, one class per line in output order (default: labels.txt beside the model
    /// file, as `resnet train` writes it, else the 1000 ImageNet synsets).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Refuse images with more pixels than this (they are reported as failed).
    #[arg(long, default_value_t = DecodeOptions::default().max_pixels)]
    max_pixels: u64,
    #[command(flatten)]
    engine: super::EngineArgs,
    #[command(flatten)]
    registry: super::models::RegistryArgs,
}

#[derive(clap::Subcommand)]
enum MergeCommand {
    /// Combine the JSON reports of `--shard I/N` runs into exact totals.
    Merge(MergeArgs),
}

#[derive(clap::Args)]
struct MergeArgs {
    /// Shard reports written with --report FILE.json, one per shard.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Write the merged report (JSON, or CSV by extension).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Labels file used by the shard runs (default: the 1000 ImageNet synsets).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
}

fn parse_crops(s: &str) -> Result<usize, String> {
    match s {
        "1" => Ok(1),
        "10" => Ok(10),
        _ => Err(format!("'{s}': --crops is 1 (center crop) or 10 (ten-crop)")),
    }
}

fn load_labels(path: Option<&PathBuf>) -> anyhow::Result<Labels> {
    Ok(match path {
        Some(p) => Labels::from_file(p)?,
        None => Labels::imagenet(),
    })
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(MergeCommand::Merge(m)) = a.merge {
        return merge(m);
    }
    let Some(data) = a.data.clone() else {
        anyhow::bail!("--data DIR is required (or `resnet validate merge REPORT...`); see --help");
    };
    let threads = match a.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let spec = a.model.as_deref().unwrap_or(resnet::zoo::registry::DEFAULT_MODEL);
    // --labels, else the labels.txt beside a model file (a fine-tuned model's classes).
    let labels_path = a.labels.clone().or_else(|| resnet::labels_beside(std::path::Path::new(spec)));
    let labels = load_labels(labels_path.as_ref())?;
    let mut dataset = Dataset::discover(&data, a.ground_truth.as_deref(), &labels)?;
    if let Some(n) = a.limit {
        dataset = dataset.limit(n);
    }
    if let Some(shard) = a.shard {
        dataset = dataset.shard(shard);
    }

    let model_path = resnet::resolve_model(spec, &a.registry.resolve_options())?;
    a.engine.validate()?;
    let model = a.engine.apply(Model::load(&model_path)?, Some(threads), super::ModeChoice::Fast);
    let classifier = Classifier::with_label_set(model, labels.clone())?;
    // Compile before the clock starts: the throughput is that of scoring images.
    if classifier.model().engine() == resnet::Engine::Plan {
        classifier.model().plan()?;
    }

    let opts = PipelineOptions {
        crops: a.crops,
        batch: a.batch as usize,
        workers: a.decode_threads.map_or(threads, |n| n as usize),
        decode: DecodeOptions { max_pixels: a.max_pixels, ..DecodeOptions::default() },
    };
    let bar = std::io::stderr().is_terminal().then(|| progress_bar(dataset.items.len()));
    let mut on_progress = |p: &Progress| {
        if let Some(bar) = &bar {
            bar.set_position((p.scored + p.failed) as u64);
            let n = p.scored.max(1) as f64;
            let rate = (p.scored + p.failed) as f64 / bar.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{rate:.1} images/s  top-1 {:.2} %  top-5 {:.2} %{}",
                100.0 * p.top1_correct as f64 / n,
                100.0 * p.top5_correct as f64 / n,
                if p.failed > 0 { format!("  {} failed", p.failed) } else { String::new() }
            ));
        }
    };
    let outcome = validate::run(&classifier, &dataset, &opts, &mut on_progress)?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let info = RunInfo {
        model: spec.to_string(),
        data: data.display().to_string(),
        crops: a.crops,
        batch: a.batch as usize,
        threads,
        shard: a.shard.map(|s| s.to_string()),
        seconds: outcome.seconds,
    };
    let report = Report::new(outcome.images, outcome.failed, dataset.unlabeled.clone(), &labels, info);
    if let Some(path) = &a.report {
        report.write(path, &labels)?;
    }
    print_summary(&report, a.json);
    Ok(ExitCode::SUCCESS)
}

fn merge(m: MergeArgs) -> anyhow::Result<ExitCode> {
    let labels = load_labels(m.labels.as_ref())?;
    let reports = m
        .reports
        .iter()
        .map(|p| Ok((p.display().to_string(), Report::read(p)?)))
        .collect::<Result<Vec<_>, validate::Error>>()?;
    let merged = Report::merge(&reports, &labels)?;
    if let Some(path) = &m.report {
        merged.write(path, &labels)?;
    }
    print_summary(&merged, m.json);
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} eta {eta}  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn print_summary(r: &Report, json: bool) {
    if json {
        println!("{}", r.summary_json());
        return;
    }
    let s = &r.summary;
    let crops = if s.crops == 10 { "ten-crop" } else { "center crop" };
    let shard = s.shard.as_deref().map(|x| format!(", shard {x}")).unwrap_or_default();
    println!("{} on {} ({crops}{shard}): {} images of {} classes", s.model, s.data, s.count, s.classes);
    println!("  top-1  {:6.2} %  ({}/{})", 100.0 * s.top1, s.top1_correct, s.count);
    println!("  top-5  {:6.2} %  ({}/{})", 100.0 * s.top5, s.top5_correct, s.count);
    println!("  {:.1} images/s ({:.1} s, batch {}, {} threads)", s.images_per_s, s.seconds, s.batch, s.threads);
    if s.unlabeled > 0 {
        println!("  {} images not in the ground truth were skipped", s.unlabeled);
    }
    println!("  failed {}", s.failed);
    for f in &r.failed {
        println!("    {}: {}", f.file, f.error);
    }
}
