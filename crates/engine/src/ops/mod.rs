//! The op set: one module per ONNX op family, one [`Op`] enum, one registry table.
//!
//! Every op module defines a struct whose fields are the op's typed attributes (defaults are
//! the ONNX defaults, written where the attribute is parsed), a `from_onnx(&Attrs, opset)`
//! constructor that maps every supported opset onto one canonical meaning, and an
//! [`OpDef`] impl: shape inference over [`Fact`]s and a naive reference kernel. The naive
//! kernels are the oracle every faster path is tested against; they favour obviousness.
//!
//! To add an op: write its module, add a variant to [`Op`], a line to [`REGISTRY`] and an arm
//! to [`Op::def`].

use crate::error::OpError;
use crate::fact::Fact;
use crate::tensor::Tensor;

pub mod attrs;
pub mod batchnorm;
pub mod binary;
pub mod clip;
pub mod concat;
pub mod constant;
pub mod conv;
pub mod dropout;
pub mod flatten;
pub mod gather;
pub mod gemm;
pub mod global_pool;
pub mod identity;
pub mod matmul;
pub mod pad;
pub mod padding;
pub mod pool;
pub mod relu;
pub mod reshape;
pub mod shape;
pub mod softmax;
pub mod squeeze;
pub mod transpose;

pub use attrs::{AttrValue, Attrs};

/// Oldest default-domain opset we load (the zoo's files are opset 7; some say 8).
pub const MIN_OPSET: i64 = 7;
/// Newest default-domain opset we load. Every op in [`REGISTRY`] has been checked against
/// the spec's changelog up to this version.
pub const MAX_OPSET: i64 = 25;

/// What every op provides: its ONNX name, shape inference and a reference kernel.
pub trait OpDef: std::fmt::Debug + Send + Sync {
    /// The ONNX op type, e.g. `"Conv"`.
    fn onnx_type(&self) -> &'static str;

    /// Output facts from input facts (`None` for an absent optional input). Returns a fact
    /// per output; a fact may carry the output's value when it can be computed from
    /// constants alone (Shape of a static tensor, say).
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError>;

    /// Runs the op naively. `inputs` has one entry per declared input (`None` when absent).
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError>;
}

/// One node's operation with its attributes.
#[derive(Debug, Clone)]
pub enum Op {
    Conv(conv::Conv),
    BatchNormalization(batchnorm::BatchNormalization),
    Relu(relu::Relu),
    MaxPool(pool::MaxPool),
    AveragePool(pool::AveragePool),
    GlobalPool(global_pool::GlobalPool),
    Binary(binary::Binary),
    Sum(binary::Sum),
    Gemm(gemm::Gemm),
    MatMul(matmul::MatMul),
    Flatten(flatten::Flatten),
    Reshape(reshape::Reshape),
    Softmax(softmax::Softmax),
    Dropout(dropout::Dropout),
    Identity(identity::Identity),
    Constant(constant::Constant),
    Clip(clip::Clip),
    Concat(concat::Concat),
    Shape(shape::Shape),
    Gather(gather::Gather),
    Squeeze(squeeze::Squeeze),
    Unsqueeze(squeeze::Unsqueeze),
    Transpose(transpose::Transpose),
    Pad(pad::Pad),
}

impl Op {
    /// The op as its trait object: everything generic over ops goes through this.
    pub fn def(&self) -> &dyn OpDef {
        match self {
            Op::Conv(o) => o,
            Op::BatchNormalization(o) => o,
            Op::Relu(o) => o,
            Op::MaxPool(o) => o,
            Op::AveragePool(o) => o,
            Op::GlobalPool(o) => o,
            Op::Binary(o) => o,
            Op::Sum(o) => o,
            Op::Gemm(o) => o,
            Op::MatMul(o) => o,
            Op::Flatten(o) => o,
            Op::Reshape(o) => o,
            Op::Softmax(o) => o,
            Op::Dropout(o) => o,
            Op::Identity(o) => o,
            Op::Constant(o) => o,
            Op::Clip(o) => o,
            Op::Concat(o) => o,
            Op::Shape(o) => o,
            Op::Gather(o) => o,
            Op::Squeeze(o) => o,
            Op::Unsqueeze(o) => o,
            Op::Transpose(o) => o,
            Op::Pad(o) => o,
        }
    }

    pub fn onnx_type(&self) -> &'static str {
        self.def().onnx_type()
    }
}

/// How an ONNX op type becomes an [`Op`]: `parse(attrs, opset)` where `opset` is the
/// model's default-domain opset version.
pub struct OpSpec {
    pub onnx_type: &'static str,
    pub parse: fn(&Attrs, i64) -> Result<Op, OpError>,
}

/// Every op we load, in one visible table.
pub static REGISTRY: &[OpSpec] = &[
    OpSpec { onnx_type: "Conv", parse: |a, v| Ok(Op::Conv(conv::Conv::from_onnx(a, v)?)) },
    OpSpec {
        onnx_type: "BatchNormalization",
        parse: |a, v| Ok(Op::BatchNormalization(batchnorm::BatchNormalization::from_onnx(a, v)?)),
    },
    OpSpec { onnx_type: "Relu", parse: |a, v| Ok(Op::Relu(relu::Relu::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "MaxPool", parse: |a, v| Ok(Op::MaxPool(pool::MaxPool::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "AveragePool", parse: |a, v| Ok(Op::AveragePool(pool::AveragePool::from_onnx(a, v)?)) },
    OpSpec {
        onnx_type: "GlobalAveragePool",
        parse: |a, v| Ok(Op::GlobalPool(global_pool::GlobalPool::from_onnx(global_pool::PoolKind::Average, a, v)?)),
    },
    OpSpec {
        onnx_type: "GlobalMaxPool",
        parse: |a, v| Ok(Op::GlobalPool(global_pool::GlobalPool::from_onnx(global_pool::PoolKind::Max, a, v)?)),
    },
    OpSpec {
        onnx_type: "Add",
        parse: |a, v| Ok(Op::Binary(binary::Binary::from_onnx(binary::BinaryKind::Add, a, v)?)),
    },
    OpSpec {
        onnx_type: "Sub",
        parse: |a, v| Ok(Op::Binary(binary::Binary::from_onnx(binary::BinaryKind::Sub, a, v)?)),
    },
    OpSpec {
        onnx_type: "Mul",
        parse: |a, v| Ok(Op::Binary(binary::Binary::from_onnx(binary::BinaryKind::Mul, a, v)?)),
    },
    OpSpec {
        onnx_type: "Div",
        parse: |a, v| Ok(Op::Binary(binary::Binary::from_onnx(binary::BinaryKind::Div, a, v)?)),
    },
    OpSpec { onnx_type: "Sum", parse: |a, v| Ok(Op::Sum(binary::Sum::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Gemm", parse: |a, v| Ok(Op::Gemm(gemm::Gemm::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "MatMul", parse: |a, v| Ok(Op::MatMul(matmul::MatMul::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Flatten", parse: |a, v| Ok(Op::Flatten(flatten::Flatten::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Reshape", parse: |a, v| Ok(Op::Reshape(reshape::Reshape::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Softmax", parse: |a, v| Ok(Op::Softmax(softmax::Softmax::from_onnx(false, a, v)?)) },
    OpSpec { onnx_type: "LogSoftmax", parse: |a, v| Ok(Op::Softmax(softmax::Softmax::from_onnx(true, a, v)?)) },
    OpSpec { onnx_type: "Dropout", parse: |a, v| Ok(Op::Dropout(dropout::Dropout::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Identity", parse: |a, v| Ok(Op::Identity(identity::Identity::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Constant", parse: |a, v| Ok(Op::Constant(constant::Constant::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Clip", parse: |a, v| Ok(Op::Clip(clip::Clip::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Concat", parse: |a, v| Ok(Op::Concat(concat::Concat::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Shape", parse: |a, v| Ok(Op::Shape(shape::Shape::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Gather", parse: |a, v| Ok(Op::Gather(gather::Gather::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Squeeze", parse: |a, v| Ok(Op::Squeeze(squeeze::Squeeze::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Unsqueeze", parse: |a, v| Ok(Op::Unsqueeze(squeeze::Unsqueeze::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Transpose", parse: |a, v| Ok(Op::Transpose(transpose::Transpose::from_onnx(a, v)?)) },
    OpSpec { onnx_type: "Pad", parse: |a, v| Ok(Op::Pad(pad::Pad::from_onnx(a, v)?)) },
];

/// Looks an ONNX op type up in [`REGISTRY`].
pub fn lookup(onnx_type: &str) -> Option<&'static OpSpec> {
    REGISTRY.iter().find(|s| s.onnx_type == onnx_type)
}

/// Builds an op from its ONNX type, attributes and opset; checks that every attribute was
/// understood.
pub fn parse(onnx_type: &str, attrs: &Attrs, opset: i64) -> Option<Result<Op, OpError>> {
    let spec = lookup(onnx_type)?;
    Some((spec.parse)(attrs, opset).and_then(|op| attrs.finish().map(|_| op)))
}

// ---- helpers shared by op modules -------------------------------------------------------

/// Checks the number of inputs is within `min..=max`.
pub fn check_arity<T>(inputs: &[Option<T>], min: usize, max: usize) -> Result<(), OpError> {
    let got = inputs.len();
    if got < min || got > max {
        let expected = if min == max { format!("{min}") } else { format!("{min} to {max}") };
        return Err(OpError::Arity { expected, got });
    }
    Ok(())
}

/// Input `i`, which must be present.
pub fn required<'a, T: ?Sized>(inputs: &[Option<&'a T>], i: usize) -> Result<&'a T, OpError> {
    inputs.get(i).copied().flatten().ok_or(OpError::MissingInput(i))
}

/// Input `i` as f32 data.
pub fn f32_input<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor, OpError> {
    let t = required(inputs, i)?;
    match t.as_f32() {
        Some(_) => Ok(t),
        None => Err(OpError::DType { input: i, dtype: t.dtype(), expected: "float32" }),
    }
}

/// Normalises a possibly negative axis against `rank` (`-1` is the last axis).
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(OpError::shape(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}
