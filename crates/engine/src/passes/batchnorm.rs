//! `fold_batchnorm_into_conv`: `Conv → BatchNormalization` becomes one Conv.
//!
//! BN computes `y = γ·(x − μ)/√(σ² + ε) + β` per channel. With `s = γ/√(σ² + ε)` and the conv
//! producing `x = W∗input + B`, the pair equals one conv with `W'[m] = s[m]·W[m]` and
//! `B'[m] = s[m]·(B[m] − μ[m]) + β[m]` (B = 0 when the conv has none). The factors are
//! computed in f64 and stored as f32.
//!
//! Conditions (those of ONNX Runtime's `conv_bn_fusion.cc`, adapted):
//! - the BN's input is produced by a Conv and read by nothing else (not even a graph
//!   output), so no one sees the un-normalized activations;
//! - the conv's W and B and the BN's four statistics are constants; the statistics are
//!   per channel, shape `[M]` with M = W's output channels;
//! - only the BN's first output is used (always so at inference).
//!
//! The conv then writes the BN's output value (its name survives, as a graph output too); new
//! W' and B' initializers are added beside the old ones, which stay for other users (weights
//! may be shared) until `remove_dead_values` drops them. A BN whose input is not a conv's
//! output — v2's BN on `data` ahead of the padded 7×7 conv, or the post-Add BNs — is left
//! alone: see the module docs of [`crate::passes`] for why.

use std::sync::Arc;

use rayon::prelude::*;

use crate::error::Result;
use crate::graph::{Graph, ValueId};
use crate::ops::Op;
use crate::tensor::Tensor;

/// Folds every eligible BN into the conv before it; returns whether any was folded.
pub fn fold_batchnorm_into_conv(graph: &mut Graph) -> Result<bool> {
    let mut changed = false;
    let mut i = 0;
    while i < graph.nodes.len() {
        match plan_fold(graph, i) {
            Some(fold) => {
                apply(graph, i, fold);
                changed = true;
            }
            None => i += 1,
        }
    }
    Ok(changed)
}

/// What folding the BN at node index `bn` into the conv at index `conv` produces.
struct Fold {
    conv: usize,
    weight: Tensor,
    bias: Tensor,
    /// The BN's output value, which the conv writes from now on.
    output: ValueId,
}

/// The constant f32 value of `id`, if it has one.
fn constant(graph: &Graph, id: Option<ValueId>) -> Option<&Arc<Tensor>> {
    graph.values[id?].fact.value.as_ref().filter(|t| t.as_f32().is_some())
}

/// Checks the conditions for the BN at node `bn` and computes the folded parameters.
fn plan_fold(graph: &Graph, bn: usize) -> Option<Fold> {
    let node = &graph.nodes[bn];
    let Op::BatchNormalization(attrs) = &node.op else { return None };
    let output = node.outputs.first().copied().flatten()?;
    if node.outputs[1..].iter().any(Option::is_some) {
        return None;
    }
    let x = node.inputs.first().copied().flatten()?;
    if graph.is_output(x) || graph.consumers_of(x) != [bn] {
        return None;
    }
    let conv = graph.nodes.iter().position(|n| n.outputs.first() == Some(&Some(x)))?;
    let conv_node = &graph.nodes[conv];
    if !matches!(conv_node.op, Op::Conv(_)) || conv_node.outputs[1..].iter().any(Option::is_some) {
        return None;
    }
    let w = constant(graph, conv_node.inputs.get(1).copied().flatten())?;
    let m = *w.shape().first()?;
    let conv_bias = match conv_node.inputs.get(2).copied().flatten() {
        None => None,
        Some(id) => Some(constant(graph, Some(id)).filter(|b| b.shape() == [m])?.as_f32()?),
    };
    let stats: Vec<&[f32]> = (1..5)
        .map(|k| constant(graph, node.inputs.get(k).copied().flatten()).filter(|t| t.shape() == [m])?.as_f32())
        .collect::<Option<_>>()?;
    let (gamma, beta, mean, var) = (stats[0], stats[1], stats[2], stats[3]);

    let eps = attrs.epsilon as f64;
    let scale: Vec<f64> = (0..m).map(|c| gamma[c] as f64 / (var[c] as f64 + eps).sqrt()).collect();
    let w_data = w.as_f32()?;
    let per_filter = (w_data.len() / m.max(1)).max(1);
    // Filters in parallel: ResNet-50's 23 M weights took 68 ms of compiling on one thread.
    let mut weight = vec![0.0f32; w_data.len()];
    weight.par_chunks_mut(per_filter).zip(w_data.par_chunks(per_filter)).zip(&scale).for_each(|((out, filter), &s)| {
        for (o, &v) in out.iter_mut().zip(filter) {
            *o = (v as f64 * s) as f32;
        }
    });
    let bias: Vec<f32> = (0..m)
        .map(|c| {
            let b = conv_bias.map_or(0.0, |b| b[c] as f64);
            ((b - mean[c] as f64) * scale[c] + beta[c] as f64) as f32
        })
        .collect();
    Some(Fold {
        conv,
        weight: Tensor::from_f32(w.shape().to_vec(), weight),
        bias: Tensor::from_f32(vec![m], bias),
        output,
    })
}

/// Rewires the conv to the folded parameters and the BN's output, and removes the BN.
fn apply(graph: &mut Graph, bn: usize, fold: Fold) {
    let conv_name = graph.nodes[fold.conv].name.clone();
    let base = if conv_name.is_empty() { graph.values[fold.output].name.clone() } else { conv_name };
    let w_name = graph.unique_name(&format!("{base}_bnfold_weight"));
    let w = graph.add_initializer(w_name, fold.weight);
    let b_name = graph.unique_name(&format!("{base}_bnfold_bias"));
    let b = graph.add_initializer(b_name, fold.bias);
    graph.nodes.remove(bn);
    let conv = &mut graph.nodes[fold.conv];
    conv.inputs.resize(3, None);
    conv.inputs[1] = Some(w);
    conv.inputs[2] = Some(b);
    conv.outputs[0] = Some(fold.output);
}
