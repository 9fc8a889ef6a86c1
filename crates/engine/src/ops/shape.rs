//! Shape: the shape of a tensor as a 1-D int64 tensor, plus the helpers every
//! shape-computing op (Reshape, Squeeze, Unsqueeze, Pad) uses to read int64 inputs.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Shape.html>
//!
//! | opset | change |
//! |---|---|
//! | 1 | `Shape(data) -> int64[rank]` |
//! | 13 | bfloat16 input (no semantic change) |
//! | 15 | `start` (default 0) and `end` (default rank) attributes select a slice of the shape; negative values count from the back, and both are clamped to `[0, rank]` (an empty slice when `start >= end`) |
//! | 19, 21, 23, 24, 25 | more element types (no semantic change) |
//!
//! Supported: opsets 7..=25. `start`/`end` are read from opset 15 on (an older model that
//! carries them is rejected as having an unknown attribute).

use std::sync::Arc;

use crate::error::OpError;
use crate::fact::{Dim, Fact};
use crate::ops::{check_arity, required, Attrs, OpDef};
use crate::tensor::{DType, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// First dimension reported (may be negative: counts from the back). Default 0.
    pub start: i64,
    /// One past the last dimension reported; `None` means the rank. Default `None`.
    pub end: Option<i64>,
}

impl Shape {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        if opset >= 15 {
            Ok(Shape { start: a.int("start", 0)?, end: a.int_opt("end")? })
        } else {
            Ok(Shape { start: 0, end: None })
        }
    }

    /// The clamped `start..end` range for a tensor of rank `rank`.
    pub fn range(&self, rank: usize) -> std::ops::Range<usize> {
        let r = rank as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clamp(self.start);
        let end = clamp(self.end.unwrap_or(r));
        start..end.max(start)
    }
}

impl OpDef for Shape {
    fn onnx_type(&self) -> &'static str {
        "Shape"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = required(inputs, 0)?;
        let Some(dims) = &x.shape else {
            return Ok(vec![Fact::new(DType::I64, vec![Dim::unknown()])]);
        };
        let picked = &dims[self.range(dims.len())];
        let mut out = Fact::known(DType::I64, &[picked.len()]);
        if let Some(values) = picked.iter().map(Dim::known).collect::<Option<Vec<usize>>>() {
            let values = values.iter().map(|&d| d as i64).collect();
            out.value = Some(Arc::new(Tensor::from_i64(vec![picked.len()], values)));
        }
        Ok(vec![out])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = required(inputs, 0)?;
        let picked = &x.shape()[self.range(x.rank())];
        Ok(vec![Tensor::from_i64(vec![picked.len()], picked.iter().map(|&d| d as i64).collect())])
    }
}

// ---- helpers for shape-computing ops ----------------------------------------------------

/// The contents of int64 input number `input`: `Ok(None)` when it is not a constant. Any
/// dtype other than int64 (when known) is an error.
pub fn const_i64(f: &Fact, input: usize) -> Result<Option<Vec<i64>>, OpError> {
    check_dtype_i64(f.dtype, input)?;
    Ok(f.value.as_ref().and_then(|t| t.as_i64().map(<[i64]>::to_vec)))
}

/// Checks an int64-only input (Reshape's shape, axes, pads).
pub fn check_dtype_i64(dtype: Option<DType>, input: usize) -> Result<(), OpError> {
    match dtype {
        None | Some(DType::I64) => Ok(()),
        Some(d) => Err(OpError::DType { input, dtype: d, expected: "int64" }),
    }
}

/// The values of a runtime int64 input that must be a scalar or a 1-D tensor.
pub fn i64_list(t: &Tensor, input: usize) -> Result<&[i64], OpError> {
    let v = t.as_i64().ok_or(OpError::DType { input, dtype: t.dtype(), expected: "int64" })?;
    if t.rank() > 1 {
        return Err(OpError::shape(format!("input {input} must be 1-D, got shape {:?}", t.shape())));
    }
    Ok(v)
}

/// The length of a 1-D input as known from its fact, if it is.
pub fn known_len(f: &Fact) -> Option<usize> {
    match f.shape.as_deref()? {
        [] => Some(1),
        [d] => d.known(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;

    fn shape_op(items: Vec<(&str, i64)>, opset: i64) -> Result<Shape, OpError> {
        let a = Attrs::new(items.into_iter().map(|(n, v)| (n.to_string(), AttrValue::Int(v))).collect());
        let op = Shape::from_onnx(&a, opset)?;
        a.finish()?;
        Ok(op)
    }

    fn run(op: &Shape, shape: &[usize]) -> Vec<i64> {
        let x = Tensor::zeros(shape.to_vec());
        op.eval(&[Some(&x)]).unwrap()[0].as_i64().unwrap().to_vec()
    }

    #[test]
    fn shape_reports_all_dims_by_default() {
        assert_eq!(run(&shape_op(vec![], 7).unwrap(), &[3, 4, 5]), vec![3, 4, 5]);
        assert_eq!(run(&shape_op(vec![], 7).unwrap(), &[]), Vec::<i64>::new());
    }

    #[test]
    fn shape_start_end_match_onnx_node_tests() {
        // test_shape_* cases, input shape (3, 4, 5).
        type Case<'a> = (&'a [(&'a str, i64)], &'a [i64]);
        let cases: &[Case] = &[
            (&[("end", 10)], &[3, 4, 5]),
            (&[("start", -10)], &[3, 4, 5]),
            (&[("end", 1)], &[3]),
            (&[("end", -1)], &[3, 4]),
            (&[("start", 1)], &[4, 5]),
            (&[("start", 1), ("end", 2)], &[4]),
            (&[("start", 1), ("end", -1)], &[4]),
            (&[("start", 2), ("end", 1)], &[]),
            (&[("start", -1)], &[5]),
        ];
        for (attrs, want) in cases {
            let op = shape_op(attrs.to_vec(), 15).unwrap();
            assert_eq!(run(&op, &[3, 4, 5]), want.to_vec(), "{attrs:?}");
        }
    }

    #[test]
    fn shape_start_is_unknown_before_opset_15() {
        assert_eq!(shape_op(vec![("start", 1)], 13).unwrap_err(), OpError::UnknownAttribute("start".into()));
    }

    #[test]
    fn shape_infer_folds_known_shapes_and_keeps_rank_for_symbolic_ones() {
        let op = shape_op(vec![], 13).unwrap();
        let f = op.infer(&[Some(&Fact::known(DType::F32, &[2, 3]))]).unwrap().remove(0);
        assert_eq!(f.value.unwrap().as_i64().unwrap(), &[2, 3]);
        let sym = Fact::new(DType::F32, vec![Dim::Sym("N".into()), Dim::Known(3)]);
        let f = op.infer(&[Some(&sym)]).unwrap().remove(0);
        assert!(f.value.is_none());
        assert_eq!(f.concrete_shape(), Some(vec![2]));
        let f = op.infer(&[Some(&Fact::unknown())]).unwrap().remove(0);
        assert_eq!(f.rank(), Some(1));
    }

    #[test]
    fn shape_of_symbolic_slice_is_constant_when_slice_is_known() {
        let op = shape_op(vec![("start", 1)], 15).unwrap();
        let sym = Fact::new(DType::F32, vec![Dim::Sym("N".into()), Dim::Known(3)]);
        let f = op.infer(&[Some(&sym)]).unwrap().remove(0);
        assert_eq!(f.value.unwrap().as_i64().unwrap(), &[3]);
    }
}
