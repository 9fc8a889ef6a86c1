//! `resnet prep`: lay out ImageNet as the zoo's `imagenet_prep` does (SPEC §7).

use std::path::PathBuf;
use std::process::ExitCode;

use resnet::prep::{prepare_imagenet_train, prepare_imagenet_val, LinkMode, TrainPrepReport, ValPrepReport};
use resnet::vision::Labels;

/// Prepare a dataset in the layout `resnet validate` and the zoo's notebooks read.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: PrepCommand,
}

#[derive(clap::Subcommand)]
enum PrepCommand {
    ImagenetVal(ValArgs),
    ImagenetTrain(TrainArgs),
}

/// The training set (ILSVRC2012_img_train.tar: one <wnid>.tar per class) into OUT/train/<wnid>/.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  resnet prep imagenet-train --input ILSVRC2012_img_train.tar --out imagenet   # streamed, no temporary copy
  resnet prep imagenet-train --input train_tars/ --out imagenet                # a folder of <wnid>.tar

The archives are only read. Each image is written under a temporary name and renamed; images
already in place (same size) are skipped, so running it again is a no-op and an interrupted run
is finished by running it again.")]
struct TrainArgs {
    /// ILSVRC2012_img_train.tar, or a folder of per-class <wnid>.tar files.
    #[arg(long, value_name = "TAR|DIR")]
    input: PathBuf,
    /// Output folder; the classes go to OUT/train/<wnid>/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Print the report as one JSON object (with the per-class counts).
    #[arg(long)]
    json: bool,
}

/// The 50,000 flat validation images (ILSVRC2012_img_val.tar, extracted) into OUT/val/<wnid>/.
#[derive(clap::Args)]
#[command(after_help = "Example:
  tar -xf ILSVRC2012_img_val.tar -C val_flat
  resnet prep imagenet-val --images val_flat --ground-truth ILSVRC2012_val_ground_truth.tsv --out imagenet
  resnet validate --model resnet50-v1 --data imagenet

Inputs are never moved, modified or deleted: images are hard-linked (or copied with --copy,
through a temporary name). Files already in place are kept, so running it again is a no-op and
an interrupted run is finished by running it again. Exit code 1 when files listed in the ground
truth are missing (or a different file is in the way), 0 otherwise.")]
struct ValArgs {
    /// Folder with the flat ILSVRC2012_val_XXXXXXXX.JPEG files.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Ground truth: `FILE WNID [INDEX]` lines (ILSVRC2012_val_ground_truth.tsv) or `FILE INDEX` (val.txt).
    #[arg(long, value_name = "FILE")]
    ground_truth: PathBuf,
    /// Output folder; the classes go to OUT/val/<wnid>/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Copy the images instead of hard-linking them (needed across file systems).
    #[arg(long)]
    copy: bool,
    /// Print the report as one JSON object (with the per-class counts).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        PrepCommand::ImagenetVal(v) => imagenet_val(v),
        PrepCommand::ImagenetTrain(t) => imagenet_train(t),
    }
}

fn imagenet_train(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let report = prepare_imagenet_train(&a.input, &a.out, &Labels::imagenet())?;
    if a.json {
        println!("{}", serde_json::to_string(&report).expect("plain data serializes"));
        return Ok(ExitCode::SUCCESS);
    }
    let r: &TrainPrepReport = &report;
    println!("{}: {} created, {} already present", r.tree.display(), r.created, r.already_present);
    list("unexpected (not a <wnid>.tar class archive, or not an image in one; left out)", &r.unexpected);
    print_class_counts(&r.per_class);
    Ok(ExitCode::SUCCESS)
}

fn imagenet_val(a: ValArgs) -> anyhow::Result<ExitCode> {
    let mode = if a.copy { LinkMode::Copy } else { LinkMode::HardLink };
    let report = prepare_imagenet_val(&a.images, &a.ground_truth, &a.out, mode, &Labels::imagenet())?;
    if a.json {
        println!("{}", serde_json::to_string(&report).expect("plain data serializes"));
    } else {
        print_report(&report, mode);
    }
    let complete = report.missing.is_empty() && report.conflicting.is_empty();
    Ok(if complete { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_report(r: &ValPrepReport, mode: LinkMode) {
    let how = if mode == LinkMode::Copy { "copies" } else { "hard links" };
    println!("{}: {} created, {} already present ({how})", r.tree.display(), r.created, r.already_present);
    list("missing (in the ground truth, not in --images)", &r.missing);
    list("unexpected (in --images, not in the ground truth; left out)", &r.unexpected);
    list("conflicting (another file with that name is in the way; left untouched)", &r.conflicting);
    print_class_counts(&r.per_class);
}

/// Per-class counts as a histogram: "1000 with 50 images" for the real validation set.
fn print_class_counts(per_class: &std::collections::BTreeMap<String, usize>) {
    let mut histogram = std::collections::BTreeMap::new();
    for &n in per_class.values() {
        *histogram.entry(n).or_insert(0usize) += 1;
    }
    let parts: Vec<String> =
        histogram.iter().rev().map(|(n, classes)| format!("{classes} with {n} image{}", plural(*n))).collect();
    println!("classes: {} ({})", per_class.len(), if parts.is_empty() { "none".into() } else { parts.join(", ") });
}

fn list(what: &str, files: &[String]) {
    const SHOWN: usize = 10;
    if files.is_empty() {
        return;
    }
    println!("{} {what}:", files.len());
    for f in files.iter().take(SHOWN) {
        println!("  {f}");
    }
    if files.len() > SHOWN {
        println!("  … and {} more (--json lists all)", files.len() - SHOWN);
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
