//! Typed errors of the engine.
//!
//! [`OpError`] is what an op says about itself (an attribute, a shape, a dtype); the importer
//! and the executors wrap it into [`Error::Node`] with the node's name and op type, and the
//! model loader wraps everything into [`Error::InFile`] with the path. Displayed, an error is
//! one line: `model.onnx: node 'conv1' (Conv): attribute 'auto_pad': unknown value "FOO"`.

use std::path::PathBuf;

use crate::tensor::DType;

/// What went wrong inside one op: no node context yet.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    #[error("attribute '{name}': {detail}")]
    Attribute { name: String, detail: String },
    #[error("unknown attribute '{0}'")]
    UnknownAttribute(String),
    #[error("expected {expected} inputs, got {got}")]
    Arity { expected: String, got: usize },
    #[error("input {0} is required but missing")]
    MissingInput(usize),
    #[error("input {input} has data type {dtype}, expected {expected}")]
    DType { input: usize, dtype: DType, expected: &'static str },
    #[error("{0}")]
    Shape(String),
    #[error("{0}")]
    Unsupported(String),
}

impl OpError {
    pub fn attr(name: &str, detail: impl Into<String>) -> OpError {
        OpError::Attribute { name: name.to_string(), detail: detail.into() }
    }

    pub fn shape(detail: impl Into<String>) -> OpError {
        OpError::Shape(detail.into())
    }
}

/// Any engine error. Display is a single readable line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    InFile { path: PathBuf, source: Box<Error> },
    #[error("not a valid ONNX model (protobuf decoding failed: {0}); is the file truncated or of another format?")]
    NotOnnx(String),
    #[error("the model has no graph")]
    NoGraph,
    #[error("unsupported ONNX IR version {0} (supported: 3 to {max})", max = crate::onnx::MAX_IR_VERSION)]
    IrVersion(i64),
    #[error("unsupported opset {version} of domain '{domain}' (supported: default domain, opsets {min} to {max})",
        min = crate::ops::MIN_OPSET, max = crate::ops::MAX_OPSET)]
    Opset { domain: String, version: i64 },
    #[error("the model imports no opset of the default ONNX domain")]
    NoDefaultOpset,
    #[error("node '{node}': unknown op '{op}'{}", if domain.is_empty() { String::new() } else { format!(" of domain '{domain}'") })]
    UnknownOp { node: String, op: String, domain: String },
    #[error("node '{node}': op {op} is not defined at opset {opset} (it exists from opset {since})")]
    OpNotInOpset { node: String, op: String, opset: i64, since: i64 },
    #[error("node '{node}' ({op}): {source}")]
    Node { node: String, op: String, source: OpError },
    #[error("node '{node}' ({op}): input '{input}' is not produced by any node, initializer or graph input")]
    DanglingEdge { node: String, op: String, input: String },
    #[error("the graph has a cycle through node '{node}' ({op})")]
    Cycle { node: String, op: String },
    #[error("value '{0}' is produced more than once")]
    DuplicateValue(String),
    #[error("graph output '{0}' is not produced by any node, initializer or input")]
    DanglingOutput(String),
    #[error("tensor '{name}': {detail}")]
    Tensor { name: String, detail: String },
    #[error("tensor '{name}' stores its data in an external file, which is not supported; re-save the model with all tensors inside it (onnx.save(model, path, save_as_external_data=False))")]
    ExternalData { name: String },
    #[error("input '{name}': {detail}")]
    Input { name: String, detail: String },
    #[error("{0}")]
    TestLayout(String),
    #[error("bf16 mode needs a CPU with AVX-512 BF16 (AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids and later); this one has none, or the kernels are capped below AVX-512: use --mode fast or exact")]
    Bf16Unsupported,
}

impl Error {
    /// Attaches the file this error came from (once; an error already in a file keeps its path).
    pub fn in_file(self, path: impl Into<PathBuf>) -> Error {
        match self {
            e @ (Error::InFile { .. } | Error::Io { .. }) => e,
            e => Error::InFile { path: path.into(), source: Box::new(e) },
        }
    }

    /// The error with its file context removed.
    pub fn root(&self) -> &Error {
        match self {
            Error::InFile { source, .. } => source.root(),
            e => e,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
