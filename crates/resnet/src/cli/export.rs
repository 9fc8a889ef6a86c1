//! `resnet export`: write a zoo architecture (built natively) or an imported model as ONNX.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use resnet::engine::onnx::{load_model, write_model, ExportOptions};
use resnet_zoo::arch::{build, parameter_counts, ArchSpec, Init};

/// Write an ONNX file: a zoo architecture with fresh weights, or an existing model re-exported.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  resnet export --arch resnet50-v2 resnet50-v2.onnx               # zoo graph, Xavier weights (seed 0)
  resnet export --arch resnet18-v1 --seed 7 --classes 10 r18.onnx
  resnet export --arch resnet50-v1 --opset 13 r50-opset13.onnx
  resnet export --model resnet50-v1-7.onnx --opset 13 out.onnx    # re-export an existing model

--arch builds one of resnet18-v1 … resnet152-v2 with exactly the zoo file's graph (node and
parameter names, order, attributes). Opset 7 (IR 3, the default) writes the zoo's conventions:
every initializer also a graph input, tensors in float_data. Opset 13 (IR 7) drops those
quirks and uses the opset-13 op forms. Ops that cannot be expressed at the chosen opset are an
error naming the node. The file is written atomically (temporary file, then rename).")]
pub struct Args {
    /// Architecture to build: resnet18-v1 … resnet152-v2, or the 28×28 presets mnist-v1 /
    /// mnist-v2 (thumbnail stem, 1 input channel, 10 classes).
    #[arg(long, value_name = "NAME", conflicts_with = "model", required_unless_present = "model")]
    arch: Option<String>,
    /// Model to re-export: an ONNX file or a zoo model name.
    #[arg(long, value_name = "FILE|NAME")]
    model: Option<String>,
    /// Seed of the random initial weights (SPEC §6.1 Xavier init) for --arch.
    #[arg(long, default_value_t = 0, requires = "arch")]
    seed: u64,
    /// Output classes of the dense layer, for --arch [default: the architecture's, 1000 or 10].
    #[arg(long, requires = "arch")]
    classes: Option<usize>,
    /// Declared input height and width, for --arch [default: the architecture's, 224 or 28].
    #[arg(long, value_name = "S", requires = "arch")]
    input_size: Option<usize>,
    /// ONNX opset: 7 (IR 3, zoo conventions) or 13 (IR 7). Default: 7; for --model, 13 when
    /// the model's own opset is 13 or newer.
    #[arg(long, value_parser = ["7", "13"])]
    opset: Option<String>,
    /// Output .onnx file.
    out: PathBuf,
    #[command(flatten)]
    registry: super::models::RegistryArgs,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let requested: Option<i64> = a.opset.as_deref().map(str::parse).transpose()?;
    let (graph, what) = match (&a.arch, &a.model) {
        (Some(name), _) => {
            let base = ArchSpec::from_name(name)?;
            let spec = ArchSpec {
                classes: a.classes.unwrap_or(base.classes),
                input_size: a.input_size.unwrap_or(base.input_size),
                ..base
            };
            let graph = build(&spec, Init::Seed(a.seed))?;
            let (stored, trainable) = parameter_counts(&graph);
            (graph, format!("{spec}, seed {}, {stored} parameters ({trainable} trainable)", a.seed))
        }
        (None, Some(model)) => {
            let path = resnet::resolve_model(model, &a.registry.resolve_options())?;
            let graph = load_model(&path)?;
            (graph, format!("{}", path.display()))
        }
        (None, None) => anyhow::bail!("give --arch NAME or --model FILE"),
    };
    let opset = requested.unwrap_or(if a.model.is_some() && graph.opset >= 13 { 13 } else { 7 });
    let options = ExportOptions::opset(opset);
    write_model(&graph, &options, &a.out).with_context(|| format!("exporting {what}"))?;
    eprintln!(
        "wrote {} ({} nodes, opset {opset}, IR {}) from {what}",
        a.out.display(),
        graph.nodes.len(),
        options.ir_version()
    );
    Ok(ExitCode::SUCCESS)
}
