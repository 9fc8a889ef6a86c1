//! Concat: joins tensors along one axis.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Concat.html>
//!
//! | opset | change |
//! |---|---|
//! | 1 | `axis` optional, default 1 (not loaded: older than opset 7) |
//! | 4 | `axis` required, in `[0, rank)` |
//! | 11 | negative `axis` counts from the back, `[-rank, rank)` |
//! | 13, 23, 24, 25 | more element types (no semantic change) |
//!
//! All inputs share the element type and the rank, and agree on every dim except `axis`.
//! Supported: opsets 7..=25, any of our element types (float32, int64, int32: exporters
//! build shapes with Concat). A missing `axis`, or a negative one before opset 11, is
//! rejected.

use crate::error::OpError;
use crate::fact::{Dim, Fact};
use crate::ops::{check_arity, normalize_axis, required, Attrs, OpDef};
use crate::tensor::{numel, Tensor, TensorData};

#[derive(Debug, Clone, PartialEq)]
pub struct Concat {
    /// The axis to join along (may be negative from opset 11). Required.
    pub axis: i64,
}

impl Concat {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        let axis = a.int_opt("axis")?.ok_or_else(|| OpError::attr("axis", "is required"))?;
        if axis < 0 && opset < 11 {
            return Err(OpError::attr("axis", format!("negative axis {axis} needs opset 11 or later")));
        }
        Ok(Concat { axis })
    }
}

/// Copies `chunk[i]` elements of each part, in turn, `outer` times.
fn join<T: Copy>(parts: &[&[T]], chunks: &[usize], outer: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for o in 0..outer {
        for (p, &c) in parts.iter().zip(chunks) {
            out.extend_from_slice(&p[o * c..(o + 1) * c]);
        }
    }
    out
}

impl OpDef for Concat {
    fn onnx_type(&self) -> &'static str {
        "Concat"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, usize::MAX)?;
        let facts: Vec<&Fact> = (0..inputs.len()).map(|i| required(inputs, i)).collect::<Result<_, _>>()?;
        let dtype = facts.iter().find_map(|f| f.dtype);
        for (i, f) in facts.iter().enumerate() {
            if let (Some(d), Some(want)) = (f.dtype, dtype) {
                if d != want {
                    return Err(OpError::DType { input: i, dtype: d, expected: "the element type of input 0" });
                }
            }
        }
        let Some(rank) = facts.iter().find_map(|f| f.rank()) else {
            return Ok(vec![Fact { dtype, shape: None, value: None }]);
        };
        let axis = normalize_axis(self.axis, rank)?;
        let show = || facts.iter().map(|f| f.shape_string()).collect::<Vec<_>>().join(", ");
        let mut out: Vec<Option<Dim>> = vec![None; rank];
        let mut total = Some(0usize);
        for f in &facts {
            let Some(s) = &f.shape else {
                total = None;
                continue;
            };
            if s.len() != rank {
                return Err(OpError::shape(format!("Concat inputs differ in rank: {}", show())));
            }
            for (d, (slot, dim)) in out.iter_mut().zip(s).enumerate() {
                if d == axis {
                    total = total.and_then(|t| Some(t + dim.known()?));
                    continue;
                }
                *slot = Some(match (slot.take(), dim) {
                    (None, x) => x.clone(),
                    (Some(Dim::Known(x)), Dim::Known(y)) if x != *y => {
                        return Err(OpError::shape(format!(
                            "Concat inputs differ in dim {d} (not the axis {axis}): {}",
                            show()
                        )));
                    }
                    (Some(Dim::Known(x)), _) | (_, &Dim::Known(x)) => Dim::Known(x),
                    (Some(x), y) if x == *y => x,
                    _ => Dim::unknown(),
                });
            }
        }
        out[axis] = Some(total.map(Dim::Known).unwrap_or_else(Dim::unknown));
        let shape = out.into_iter().map(|d| d.unwrap_or_else(Dim::unknown)).collect();
        let fact = Fact { dtype, shape: Some(shape), value: None };
        Ok(vec![fact])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, usize::MAX)?;
        let ts: Vec<&Tensor> = (0..inputs.len()).map(|i| required(inputs, i)).collect::<Result<_, _>>()?;
        let first = ts[0];
        let axis = normalize_axis(self.axis, first.rank())?;
        let mut shape = first.shape().to_vec();
        shape[axis] = 0;
        for (i, t) in ts.iter().enumerate() {
            if t.dtype() != first.dtype() {
                return Err(OpError::DType { input: i, dtype: t.dtype(), expected: "the element type of input 0" });
            }
            let fits = t.rank() == first.rank() && (0..t.rank()).all(|d| d == axis || t.shape()[d] == first.shape()[d]);
            if !fits {
                let all: Vec<String> = ts.iter().map(|t| format!("{:?}", t.shape())).collect();
                return Err(OpError::shape(format!("Concat inputs do not fit on axis {axis}: {}", all.join(", "))));
            }
            shape[axis] += t.shape()[axis];
        }
        let outer = numel(&first.shape()[..axis]);
        let chunks: Vec<usize> = ts.iter().map(|t| numel(&t.shape()[axis..])).collect();
        let data = match first.data() {
            TensorData::F32(_) => {
                TensorData::F32(join(&ts.iter().map(|t| t.as_f32().unwrap()).collect::<Vec<_>>(), &chunks, outer))
            }
            TensorData::I64(_) => {
                TensorData::I64(join(&ts.iter().map(|t| t.as_i64().unwrap()).collect::<Vec<_>>(), &chunks, outer))
            }
            TensorData::I32(_) => {
                TensorData::I32(join(&ts.iter().map(|t| t.as_i32().unwrap()).collect::<Vec<_>>(), &chunks, outer))
            }
        };
        let out = Tensor::new(shape, data).ok_or_else(|| OpError::shape("Concat output size overflows"))?;
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;
    use crate::tensor::DType;

    fn concat(axis: Option<i64>, opset: i64) -> Result<Concat, OpError> {
        let a = Attrs::new(axis.map(|v| ("axis".to_string(), AttrValue::Int(v))).into_iter().collect());
        let op = Concat::from_onnx(&a, opset)?;
        a.finish()?;
        Ok(op)
    }

    fn run(op: &Concat, ts: &[Tensor]) -> Result<Tensor, OpError> {
        let args: Vec<Option<&Tensor>> = ts.iter().map(Some).collect();
        Ok(op.eval(&args)?.remove(0))
    }

    #[test]
    fn concat_2d_on_each_axis_like_onnx_node_tests() {
        let a = Tensor::from_f32(vec![2, 2], vec![1., 2., 3., 4.]);
        let b = Tensor::from_f32(vec![2, 2], vec![5., 6., 7., 8.]);
        let rows = Tensor::from_f32(vec![4, 2], vec![1., 2., 3., 4., 5., 6., 7., 8.]);
        let cols = Tensor::from_f32(vec![2, 4], vec![1., 2., 5., 6., 3., 4., 7., 8.]);
        for (axis, want) in [(0, &rows), (1, &cols), (-2, &rows), (-1, &cols)] {
            assert_eq!(&run(&concat(Some(axis), 13).unwrap(), &[a.clone(), b.clone()]).unwrap(), want);
        }
    }

    #[test]
    fn concat_joins_unequal_sizes_of_int64() {
        let a = Tensor::from_i64(vec![1], vec![-1]);
        let b = Tensor::from_i64(vec![2], vec![3, 4]);
        let y = run(&concat(Some(0), 7).unwrap(), &[a, b]).unwrap();
        assert_eq!(y, Tensor::from_i64(vec![3], vec![-1, 3, 4]));
    }

    #[test]
    fn concat_rejects_bad_axis_dtype_and_shapes() {
        assert!(matches!(concat(None, 13), Err(OpError::Attribute { .. })));
        assert!(matches!(concat(Some(-1), 10), Err(OpError::Attribute { .. })));
        let op = concat(Some(1), 13).unwrap();
        let a = Tensor::zeros(vec![2, 2]);
        assert!(matches!(run(&op, &[a.clone(), Tensor::zeros(vec![3, 2])]), Err(OpError::Shape(_))));
        assert!(matches!(run(&op, &[a.clone(), Tensor::zeros(vec![2])]), Err(OpError::Shape(_))));
        assert!(matches!(
            run(&op, &[a.clone(), Tensor::from_i64(vec![2, 2], vec![0; 4])]),
            Err(OpError::DType { input: 1, .. })
        ));
        assert!(matches!(run(&concat(Some(2), 13).unwrap(), &[a]), Err(OpError::Shape(_))));
        assert!(matches!(op.eval(&[]), Err(OpError::Arity { .. })));
    }

    #[test]
    fn concat_infers_symbolic_dims_and_sums_the_axis() {
        let n = Dim::Sym("N".into());
        let a = Fact::new(DType::F32, vec![n.clone(), Dim::Known(64)]);
        let b = Fact::new(DType::F32, vec![n.clone(), Dim::Known(32)]);
        let f = concat(Some(1), 13).unwrap().infer(&[Some(&a), Some(&b)]).unwrap().remove(0);
        assert_eq!(f.shape.unwrap(), vec![n.clone(), Dim::Known(96)]);
        let f = concat(Some(0), 13).unwrap().infer(&[Some(&a), Some(&a)]).unwrap().remove(0);
        assert_eq!(f.shape.unwrap(), vec![Dim::unknown(), Dim::Known(64)]);
        let err = concat(Some(0), 13).unwrap().infer(&[Some(&a), Some(&b)]).unwrap_err();
        assert!(err.to_string().contains("[N,64], [N,32]"), "{err}");
    }
}
