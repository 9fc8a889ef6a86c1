//! `remove_dead_values`: drops what no graph output depends on.
//!
//! A node is live when one of its outputs is a graph output or an input of a live node;
//! every other node is removed. Then values that nothing refers to any more — initializers
//! orphaned by folding, intermediates of removed nodes — are dropped and the rest renumbered
//! ([`Graph::remove_unreferenced_values`]). Graph inputs stay even when unused: they are the
//! model's calling convention.

use crate::error::Result;
use crate::graph::Graph;

/// Removes dead nodes and unreferenced values; returns whether anything was removed.
pub fn remove_dead_values(graph: &mut Graph) -> Result<bool> {
    let mut live = vec![false; graph.values.len()];
    for &id in &graph.outputs {
        live[id] = true;
    }
    let mut keep = vec![false; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate().rev() {
        if node.outputs.iter().flatten().any(|&id| live[id]) {
            keep[i] = true;
            for &id in node.inputs.iter().flatten() {
                live[id] = true;
            }
        }
    }
    let before = graph.nodes.len();
    let mut keep = keep.into_iter();
    graph.nodes.retain(|_| keep.next().expect("one flag per node"));
    let removed_nodes = before - graph.nodes.len();
    let removed_values = graph.remove_unreferenced_values();
    Ok(removed_nodes + removed_values > 0)
}
