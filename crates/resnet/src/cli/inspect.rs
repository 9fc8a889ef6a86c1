//! `resnet inspect`: versions, inputs/outputs, op counts, parameters and MACs of a model.

use std::process::ExitCode;

use resnet::inspect::{summarize, TensorSummary};
use resnet::Model;

/// Show what an ONNX model contains.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  resnet inspect resnet50-v1-7.onnx
  resnet inspect resnet18-v2                  # a zoo model by name, fetched on first use
  resnet inspect --json model.onnx | jq .macs")]
pub struct Args {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// ONNX model file, or a zoo model name (see `resnet models list`).
    #[arg(value_name = "FILE|NAME")]
    model: String,
    #[command(flatten)]
    registry: super::models::RegistryArgs,
}

fn fmt_tensor(t: &TensorSummary) -> String {
    format!("{} {}[{}]", t.name, t.dtype, t.shape.join(","))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let path = resnet::resolve_model(&a.model, &a.registry.resolve_options())?;
    let model = Model::load(&path)?;
    let s = summarize(&model)?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", path.display());
    println!(
        "  IR version {}, opset {}{}",
        s.ir_version,
        s.opset,
        if s.producer.is_empty() { String::new() } else { format!(", producer {}", s.producer) }
    );
    if !s.graph_name.is_empty() {
        println!("  graph      {}", s.graph_name);
    }
    if let Some(z) = &s.zoo_arch {
        println!("  zoo arch   {}", z.description);
    }
    for t in &s.inputs {
        println!("  input      {}", fmt_tensor(t));
    }
    for t in &s.outputs {
        println!("  output     {}", fmt_tensor(t));
    }
    let ops: Vec<String> = s.op_counts.iter().map(|(op, n)| format!("{op} {n}")).collect();
    println!("  nodes      {} ({})", s.nodes, ops.join(", "));
    println!(
        "  parameters {} in {} initializers ({:.2} MB as f32)",
        s.parameters,
        s.initializers,
        s.parameters as f64 * 4.0 / 1e6
    );
    match s.macs {
        Some(m) => println!("  MACs       {:.3} G per image at {:?}", m as f64 / 1e9, s.macs_input),
        None => println!("  MACs       unknown (shapes depend on runtime values)"),
    }
    Ok(ExitCode::SUCCESS)
}
