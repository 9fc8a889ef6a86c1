//! The reference interpreter: runs a graph node by node, as written, with each op's naive
//! kernel. It is the oracle for every optimized path and stays obviously correct rather
//! than fast. Intermediate values are dropped after their last use to bound memory.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fact::{fmt_shape, shape_fits};
use crate::graph::Graph;
use crate::tensor::Tensor;

/// Checks runtime inputs against the graph's declared inputs: count, dtype, rank and every
/// numeric dimension (symbolic ones match anything).
pub fn check_inputs(graph: &Graph, inputs: &[Tensor]) -> Result<()> {
    if inputs.len() != graph.inputs.len() {
        let names: Vec<&str> = graph.inputs.iter().map(|&i| graph.values[i].name.as_str()).collect();
        return Err(Error::Input {
            name: names.join(", "),
            detail: format!("the model takes {} input(s), {} given", graph.inputs.len(), inputs.len()),
        });
    }
    for (&id, t) in graph.inputs.iter().zip(inputs) {
        let v = &graph.values[id];
        if let Some(dt) = v.fact.dtype {
            if dt != t.dtype() {
                return Err(Error::Input { name: v.name.clone(), detail: format!("expected {dt}, got {}", t.dtype()) });
            }
        }
        if let Some(declared) = &v.fact.shape {
            if !shape_fits(declared, t.shape()) {
                return Err(Error::Input {
                    name: v.name.clone(),
                    detail: format!("expected shape {}, got {:?}", fmt_shape(declared), t.shape()),
                });
            }
        }
    }
    Ok(())
}

/// Runs `graph` on `inputs` (in the order of `graph.inputs`) and returns the graph outputs.
pub fn run(graph: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
    check_inputs(graph, &inputs)?;
    let mut slots: Vec<Option<Arc<Tensor>>> = graph.values.iter().map(|v| v.initializer.clone()).collect();
    for (&id, t) in graph.inputs.iter().zip(inputs) {
        slots[id] = Some(Arc::new(t));
    }
    // Last node index that reads each value; graph outputs are never freed.
    let mut last_use = vec![None::<usize>; graph.values.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for &id in node.inputs.iter().flatten() {
            last_use[id] = Some(i);
        }
    }
    for &id in &graph.outputs {
        last_use[id] = None;
    }

    for (i, node) in graph.nodes.iter().enumerate() {
        let wrap = |source| Error::Node { node: node.name.clone(), op: node.op.onnx_type().to_string(), source };
        let args: Vec<Option<&Tensor>> = node
            .inputs
            .iter()
            .map(|id| id.map(|id| slots[id].as_deref().expect("topological order: inputs are computed first")))
            .collect();
        let results = node.op.def().eval(&args).map_err(wrap)?;
        drop(args);
        for (slot, t) in node.outputs.iter().zip(results) {
            if let Some(id) = *slot {
                slots[id] = Some(Arc::new(t));
            }
        }
        for &id in node.inputs.iter().flatten() {
            if last_use[id] == Some(i) && graph.values[id].initializer.is_none() {
                slots[id] = None;
            }
        }
    }
    graph
        .outputs
        .iter()
        .map(|&id| {
            let t = slots[id].clone().ok_or_else(|| Error::DanglingOutput(graph.values[id].name.clone()))?;
            Ok(Arc::try_unwrap(t).unwrap_or_else(|shared| (*shared).clone()))
        })
        .collect()
}
