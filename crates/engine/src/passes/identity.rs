//! `eliminate_identity_like`: removes nodes whose output is their first input, unchanged.
//!
//! Removed: Identity; Dropout (inference only, so it is the identity) when its mask output is
//! unused; Flatten and Reshape whose output shape is provably the input shape (every dim a
//! number or a named symbol, and equal). Kept: a Flatten of `[N,C,1,1]`, which changes the
//! rank, and any Reshape whose target is not known at load time.
//!
//! Consumers of the removed node's output read its input instead. When that output is a graph
//! output, the graph output keeps its name: the input's producer writes it directly. When the
//! input is itself a graph input, an initializer or another graph output, the node is kept
//! (the graph needs a node to copy one named value into another).

use crate::error::Result;
use crate::fact::Dim;
use crate::graph::{Graph, Node, ValueId};
use crate::ops::Op;

/// Removes identity-like nodes; returns whether any was removed.
pub fn eliminate_identity_like(graph: &mut Graph) -> Result<bool> {
    let mut changed = false;
    let mut i = 0;
    while i < graph.nodes.len() {
        match passthrough(graph, &graph.nodes[i]) {
            Some((x, y)) if bypass(graph, i, x, y) => changed = true,
            _ => i += 1,
        }
    }
    Ok(changed)
}

/// `(input, output)` when `node` copies its first input to its only used output.
fn passthrough(graph: &Graph, node: &Node) -> Option<(ValueId, ValueId)> {
    let x = node.inputs.first().copied().flatten()?;
    let y = node.outputs.first().copied().flatten()?;
    if node.outputs[1..].iter().any(Option::is_some) {
        return None;
    }
    let is_noop = match &node.op {
        Op::Identity(_) | Op::Dropout(_) => true,
        Op::Flatten(_) | Op::Reshape(_) => same_static_shape(graph, x, y),
        _ => false,
    };
    is_noop.then_some((x, y))
}

/// Whether the facts of `a` and `b` say they have the same shape at run time: equal dims,
/// each a number or a named symbol (`?`, an unknown dim, proves nothing).
fn same_static_shape(graph: &Graph, a: ValueId, b: ValueId) -> bool {
    let (fa, fb) = (&graph.values[a].fact, &graph.values[b].fact);
    match (&fa.shape, &fb.shape) {
        (Some(sa), Some(sb)) => {
            fa.dtype == fb.dtype && sa == sb && sa.iter().all(|d| !matches!(d, Dim::Sym(s) if s == "?"))
        }
        _ => false,
    }
}

/// Removes node `index` (which copies `x` to `y`) and rewires the graph around it; false
/// (nothing changed) when the graph needs the copy.
fn bypass(graph: &mut Graph, index: usize, x: ValueId, y: ValueId) -> bool {
    if !graph.is_output(y) {
        graph.nodes.remove(index);
        graph.replace_uses(y, x);
        return true;
    }
    // `y` is a graph output: make `x`'s producer write `y` directly, if `x` is free to go.
    let x_is_named_elsewhere = graph.inputs.contains(&x) || graph.values[x].initializer.is_some() || graph.is_output(x);
    let Some(producer) = graph.nodes.iter().position(|n| n.outputs.contains(&Some(x))) else { return false };
    if x_is_named_elsewhere {
        return false;
    }
    graph.nodes.remove(index);
    for slot in graph.nodes[producer].outputs.iter_mut() {
        if *slot == Some(x) {
            *slot = Some(y);
        }
    }
    graph.replace_uses(x, y);
    true
}
