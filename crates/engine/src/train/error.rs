//! Errors of training programs: one readable line naming the node, value or shape at fault.

use crate::error::OpError;

/// What went wrong building or running a [`crate::train::TrainProgram`].
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the graph must have exactly one runtime input (the image batch), it has {0}")]
    InputCount(usize),
    #[error("the graph must have exactly one output (the logits), it has {0}")]
    OutputCount(usize),
    #[error("node '{node}' ({op}): {detail}")]
    Unsupported { node: String, op: String, detail: String },
    #[error("node '{node}' ({op}): no backward pass for this op, but a gradient has to flow through it")]
    NoBackward { node: String, op: String },
    #[error("node '{node}' ({op}): {source}")]
    Node { node: String, op: String, source: OpError },
    #[error("input '{name}': {detail}")]
    Input { name: String, detail: String },
    #[error("{got} labels for a batch of {batch}")]
    LabelCount { got: usize, batch: usize },
    #[error("label {label} at batch index {index} is out of range for {classes} classes")]
    LabelRange { label: usize, index: usize, classes: usize },
    #[error("the logits '{name}' have shape {shape:?}; expected [N,K] with N = {batch}")]
    Logits { name: String, shape: Vec<usize>, batch: usize },
    #[error("value '{0}' is read before any node produces it")]
    Missing(String),
    #[error("initializer '{name}': {detail}")]
    Initializer { name: String, detail: String },
    #[error("{what} '{name}' is not in the graph")]
    UnknownName { what: &'static str, name: String },
    #[error(transparent)]
    Graph(#[from] crate::error::Error),
    #[error("could not start the training thread pool: {0}")]
    ThreadPool(String),
}
