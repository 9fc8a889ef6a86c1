//! `resnet inspect`: what a model file contains — versions, inputs and outputs, op counts,
//! parameters, the multiply-adds of one image at 224×224, and which zoo architecture it is.

use resnet_engine::{Dim, Graph, Op};
use serde::Serialize;

use crate::error::Result;
use crate::model::Model;

#[derive(Debug, Clone, Serialize)]
pub struct TensorSummary {
    pub name: String,
    pub dtype: String,
    /// Dimensions as strings: numbers or symbols such as `N`.
    pub shape: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub ir_version: i64,
    pub opset: i64,
    pub producer: String,
    pub graph_name: String,
    pub inputs: Vec<TensorSummary>,
    pub outputs: Vec<TensorSummary>,
    pub nodes: usize,
    pub op_counts: Vec<(String, usize)>,
    pub initializers: usize,
    pub parameters: usize,
    /// Multiply-accumulates of Conv, Gemm and MatMul for one image at `macs_input`.
    pub macs: Option<u64>,
    pub macs_input: Vec<usize>,
    /// The zoo architecture the graph has the exact shape and names of, if any.
    pub zoo_arch: Option<ZooArch>,
}

/// A recognised zoo architecture ([`resnet_zoo::arch::recognize`]).
#[derive(Debug, Clone, Serialize)]
pub struct ZooArch {
    /// `resnet50-v2`.
    pub name: String,
    /// Gluon's name prefix, `resnetv24_`.
    pub prefix: String,
    pub classes: usize,
    pub input_size: usize,
    /// `resnet50-v2 (Gluon ResNetV2, prefix resnetv24_)`.
    pub description: String,
}

fn tensor_summary(graph: &Graph, id: usize) -> TensorSummary {
    let v = &graph.values[id];
    TensorSummary {
        name: v.name.clone(),
        dtype: v.fact.dtype.map(|d| d.name().to_string()).unwrap_or_else(|| "?".into()),
        shape: v.fact.shape.as_ref().map(|s| s.iter().map(|d| d.to_string()).collect()).unwrap_or_default(),
    }
}

/// Summarises a model. MACs are counted after re-inferring shapes for one image: batch 1
/// and, where the spatial size is not fixed, 224×224.
pub fn summarize(model: &Model) -> Result<Summary> {
    let graph = model.graph();
    let (macs, macs_input) = match count_macs(model) {
        Some((m, input)) => (Some(m), input),
        None => (None, Vec::new()),
    };
    Ok(Summary {
        ir_version: graph.ir_version,
        opset: graph.opset,
        producer: graph.producer.clone(),
        graph_name: graph.name.clone(),
        inputs: graph.inputs.iter().map(|&i| tensor_summary(graph, i)).collect(),
        outputs: graph.outputs.iter().map(|&i| tensor_summary(graph, i)).collect(),
        nodes: graph.nodes.len(),
        op_counts: graph.op_counts().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        initializers: graph.initializers().count(),
        parameters: graph.parameter_count(),
        macs,
        macs_input,
        zoo_arch: resnet_zoo::arch::recognize(graph).map(|spec| ZooArch {
            name: spec.name(),
            prefix: spec.prefix(),
            classes: spec.classes,
            input_size: spec.input_size,
            description: spec.to_string(),
        }),
    })
}

/// Multiply-adds for one image, or `None` when the model's shapes cannot be made concrete.
fn count_macs(model: &Model) -> Option<(u64, Vec<usize>)> {
    let (per_node, input) = node_macs(model)?;
    Some((per_node.iter().map(|(_, m)| m).sum(), input))
}

/// `(node name, multiply-adds)` per node, in graph order.
pub type NodeMacs = Vec<(String, u64)>;

/// Multiply-adds of each node (by node name, in graph order; 0 for nodes that are not Conv,
/// Gemm or MatMul) for one image at the shape `summarize` uses, and that input shape. A model
/// that declares a fixed batch `B` is counted at it and each count divided by `B` (they were
/// `B` images' worth, so `resnet bench` on such a model reported `B`× its GFLOP/s).
pub fn node_macs(model: &Model) -> Option<(NodeMacs, Vec<usize>)> {
    let mut m = model.clone();
    for i in 0..m.graph().inputs.len() {
        let declared = m.graph().values[m.graph().inputs[i]].fact.shape.clone()?;
        let concrete: Vec<usize> = declared
            .iter()
            .enumerate()
            .map(|(axis, d)| match d {
                Dim::Known(k) => *k,
                Dim::Sym(_) if axis == 0 => 1,
                Dim::Sym(_) => 224,
            })
            .collect();
        m.set_input_shape(i, concrete.iter().map(|&d| Dim::Known(d)).collect()).ok()?;
    }
    let graph = m.graph();
    let input = graph.inputs.first().and_then(|&i| graph.values[i].fact.concrete_shape()).unwrap_or_default();
    let shape_of = |id: Option<usize>| id.and_then(|id| graph.values[id].fact.concrete_shape());
    let mut per_node = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let out = shape_of(node.outputs.first().copied().flatten());
        let macs = match &node.op {
            Op::Conv(_) => {
                // Each output element needs (Cin/group)·kH·kW multiply-adds: the weight's
                // elements per output channel.
                let w = shape_of(node.inputs.get(1).copied().flatten())?;
                let per_output: usize = w[1..].iter().product();
                out?.iter().product::<usize>() * per_output
            }
            Op::Gemm(_) | Op::MatMul(_) => {
                // Output elements × the shared inner dimension.
                let a = shape_of(node.inputs.first().copied().flatten())?;
                let o = out?;
                let k = if let Op::Gemm(g) = &node.op {
                    if g.trans_a {
                        a[0]
                    } else {
                        *a.last()?
                    }
                } else {
                    *a.last()?
                };
                o.iter().product::<usize>() * k
            }
            _ => 0,
        };
        per_node.push((node.name.clone(), macs as u64));
    }
    // Every node's output has the batch as its first axis, so each count is a multiple of it.
    let batch = input.first().copied().unwrap_or(1).max(1) as u64;
    for (_, m) in &mut per_node {
        *m /= batch;
    }
    Some((per_node, input))
}

#[cfg(test)]
mod tests {
    use resnet_zoo::arch::{self, ArchSpec, Init};

    use super::*;

    #[test]
    fn a_declared_fixed_batch_still_counts_multiply_adds_per_image() {
        let mut spec = ArchSpec::from_name("resnet18-v1").unwrap();
        spec.input_size = 64;
        spec.classes = 10;
        let symbolic = Model::from_graph(arch::build(&spec, Init::Zeros).unwrap());
        let (per_image, input) = node_macs(&symbolic).unwrap();
        assert_eq!(input, [1, 3, 64, 64]);
        let mut fixed = symbolic.clone();
        fixed.set_input_shape(0, [4, 3, 64, 64].map(Dim::Known).to_vec()).unwrap();
        let (fixed_macs, fixed_input) = node_macs(&fixed).unwrap();
        assert_eq!(fixed_input, [4, 3, 64, 64]);
        assert_eq!(fixed_macs, per_image, "per node, per image");
        let total: u64 = per_image.iter().map(|(_, m)| m).sum();
        assert!(total > 100_000_000, "ResNet-18 at 64×64 is ~0.15 GMACs: {total}");
        assert_eq!(summarize(&fixed).unwrap().macs, Some(total));
    }
}
