//! `fold_constants`: nodes computable at load time become initializers.
//!
//! A node folds when every output it uses already has a known value in its fact (shape
//! inference computed it: `Shape` of a statically shaped tensor, say), or when all its
//! inputs are constants — a `Constant` node always folds. The node is evaluated once with its
//! reference kernel, its outputs become initializers and the node is removed. Folding runs in
//! node order, so a chain `Shape → Gather → Unsqueeze → Concat` folds in one sweep and the
//! `Reshape` it feeds is left with a constant target.
//!
//! Inputs that became unused stay in the graph until `remove_dead_values` runs.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fact::Fact;
use crate::graph::{Graph, ValueId};
use crate::ops::Op;
use crate::tensor::Tensor;

/// Largest total number of input elements a node may have and still be folded. Folding is
/// for shape arithmetic and small parameter transforms, not for running a layer on constant
/// data at load time; the same bound as load-time inference (`graph.rs`), so a folded graph
/// re-infers to the same facts.
pub const MAX_FOLD_INPUT_ELEMENTS: usize = 1 << 20;

/// Folds every foldable node; returns whether any was folded.
pub fn fold_constants(graph: &mut Graph) -> Result<bool> {
    let mut changed = false;
    let mut i = 0;
    while i < graph.nodes.len() {
        let Some(folded) = folded_outputs(graph, i)? else {
            i += 1;
            continue;
        };
        for (id, t) in folded {
            let v = &mut graph.values[id];
            v.fact = Fact::constant(t.clone());
            v.initializer = Some(t);
        }
        graph.nodes.remove(i);
        changed = true;
    }
    Ok(changed)
}

/// A folded node's used outputs: `(value, its constant)`.
type Folded = Vec<(ValueId, Arc<Tensor>)>;

/// The values of node `i`'s used outputs, when it can be folded.
fn folded_outputs(graph: &Graph, i: usize) -> Result<Option<Folded>> {
    let node = &graph.nodes[i];
    let used: Vec<(usize, ValueId)> =
        node.outputs.iter().enumerate().filter_map(|(slot, id)| id.map(|id| (slot, id))).collect();
    // Shape inference already computed them.
    let inferred: Option<Folded> =
        used.iter().map(|&(_, id)| Some((id, graph.values[id].fact.value.clone()?))).collect();
    if let Some(values) = inferred.filter(|v| !v.is_empty()) {
        return Ok(Some(values));
    }
    if !inputs_are_small_constants(graph, i) {
        return Ok(None);
    }
    let wrap = |source| Error::Node { node: node.name.clone(), op: node.op.onnx_type().to_string(), source };
    let args: Vec<Option<&Tensor>> = node
        .inputs
        .iter()
        .map(|id| id.map(|id| &**graph.values[id].fact.value.as_ref().expect("checked constant")))
        .collect();
    let mut out: Vec<Option<Tensor>> = node.op.def().eval(&args).map_err(wrap)?.into_iter().map(Some).collect();
    // An op that returns fewer outputs than the node uses is left for the executor to report.
    Ok(used.iter().map(|&(slot, id)| Some((id, Arc::new(out.get_mut(slot)?.take()?)))).collect())
}

/// Whether every present input of node `i` has a known value and together they are small
/// enough to fold (a `Constant` node, which has no inputs, always is).
fn inputs_are_small_constants(graph: &Graph, i: usize) -> bool {
    let node = &graph.nodes[i];
    if matches!(node.op, Op::Constant(_)) {
        return true;
    }
    let mut total = 0usize;
    for id in node.inputs.iter().flatten() {
        match &graph.values[*id].fact.value {
            Some(t) => total += t.len(),
            None => return false,
        }
    }
    total <= MAX_FOLD_INPUT_ELEMENTS
}
