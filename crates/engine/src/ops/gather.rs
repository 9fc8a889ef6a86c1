//! Gather: picks slices of `data` along `axis` at the given indices.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Gather.html>
//!
//! `out[i_0..i_{axis-1}, j_0..j_{q-1}, i_{axis+1}..] = data[i_0.., indices[j_0..], i_{axis+1}..]`,
//! so the output shape is `data[..axis] ++ indices.shape ++ data[axis+1..]`.
//!
//! | opset | change |
//! |---|---|
//! | 1 | `axis` (default 0, negative counts from the back); int32/int64 indices |
//! | 11 | negative indices count from the back of the axis (`[-s, s-1]`) |
//! | 13, 25 | more element types (no semantic change) |
//!
//! Supported: opsets 7..=25, any of our element types for `data`, int32 or int64 `indices`.
//! An index outside `[-s, s-1]` is a shape error, as is a negative index before opset 11
//! (it has no meaning there). With constant indices, inference checks them against a known
//! axis size.

use crate::error::OpError;
use crate::fact::Fact;
use crate::ops::{check_arity, normalize_axis, required, Attrs, OpDef};
use crate::tensor::{numel, DType, Tensor, TensorData};

#[derive(Debug, Clone, PartialEq)]
pub struct Gather {
    /// The axis of `data` to index (may be negative). Default 0.
    pub axis: i64,
    /// Negative indices count from the back (opset 11+); before, they are errors.
    pub negative_indices: bool,
}

impl Gather {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        Ok(Gather { axis: a.int("axis", 0)?, negative_indices: opset >= 11 })
    }

    /// Maps an index into `0..size`, or says why it cannot.
    fn resolve(&self, index: i64, size: usize) -> Result<usize, OpError> {
        let s = size as i64;
        let i = if index < 0 && self.negative_indices { index + s } else { index };
        if i < 0 || i >= s {
            let range = if self.negative_indices { format!("[-{s}, {}]", s - 1) } else { format!("[0, {}]", s - 1) };
            return Err(OpError::shape(format!(
                "Gather index {index} is out of range {range} for an axis of size {size}"
            )));
        }
        Ok(i as usize)
    }
}

fn check_indices_dtype(dtype: DType) -> Result<(), OpError> {
    match dtype {
        DType::I64 | DType::I32 => Ok(()),
        d => Err(OpError::DType { input: 1, dtype: d, expected: "int32 or int64" }),
    }
}

/// For each `outer` block, copies the `inner`-sized rows at `rows` (indices into the axis of
/// size `size`).
fn pick<T: Copy>(data: &[T], rows: &[usize], outer: usize, size: usize, inner: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * rows.len() * inner);
    for o in 0..outer {
        for &r in rows {
            let at = (o * size + r) * inner;
            out.extend_from_slice(&data[at..at + inner]);
        }
    }
    out
}

impl OpDef for Gather {
    fn onnx_type(&self) -> &'static str {
        "Gather"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 2, 2)?;
        let (data, indices) = (required(inputs, 0)?, required(inputs, 1)?);
        if let Some(d) = indices.dtype {
            check_indices_dtype(d)?;
        }
        let shape = match (&data.shape, &indices.shape) {
            (Some(ds), Some(is)) => {
                let axis = normalize_axis(self.axis, ds.len())?;
                if let (Some(size), Some(values)) =
                    (ds[axis].known(), indices.value.as_ref().and_then(|v| v.to_i64_vec()))
                {
                    for v in values {
                        self.resolve(v, size)?;
                    }
                }
                Some([&ds[..axis], is.as_slice(), &ds[axis + 1..]].concat())
            }
            (Some(ds), None) => {
                normalize_axis(self.axis, ds.len())?;
                None
            }
            (None, _) => None,
        };
        let out = Fact { dtype: data.dtype, shape, value: None };
        Ok(vec![out])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 2, 2)?;
        let (data, indices) = (required(inputs, 0)?, required(inputs, 1)?);
        check_indices_dtype(indices.dtype())?;
        let axis = normalize_axis(self.axis, data.rank())?;
        let ds = data.shape();
        let size = ds[axis];
        let rows: Vec<usize> = indices
            .to_i64_vec()
            .expect("indices are integers")
            .into_iter()
            .map(|v| self.resolve(v, size))
            .collect::<Result<_, _>>()?;
        let (outer, inner) = (numel(&ds[..axis]), numel(&ds[axis + 1..]));
        let shape: Vec<usize> = [&ds[..axis], indices.shape(), &ds[axis + 1..]].concat();
        let out = match data.data() {
            TensorData::F32(v) => TensorData::F32(pick(v, &rows, outer, size, inner)),
            TensorData::I64(v) => TensorData::I64(pick(v, &rows, outer, size, inner)),
            TensorData::I32(v) => TensorData::I32(pick(v, &rows, outer, size, inner)),
        };
        let out = Tensor::new(shape, out).ok_or_else(|| OpError::shape("Gather output size overflows"))?;
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fact::Dim;
    use crate::ops::AttrValue;
    use std::sync::Arc;

    fn gather(axis: i64, opset: i64) -> Gather {
        let a = Attrs::new(vec![("axis".to_string(), AttrValue::Int(axis))]);
        let op = Gather::from_onnx(&a, opset).unwrap();
        a.finish().unwrap();
        op
    }

    fn seq(shape: &[usize]) -> Tensor {
        let n = numel(shape);
        Tensor::from_f32(shape.to_vec(), (0..n).map(|i| i as f32).collect())
    }

    fn run(op: &Gather, data: &Tensor, idx: &Tensor) -> Result<Tensor, OpError> {
        Ok(op.eval(&[Some(data), Some(idx)])?.remove(0))
    }

    #[test]
    fn gather_2d_indices_on_axis_1() {
        // test_gather_2d_indices: data (3,3), indices [[0, 2]], axis 1.
        let data = seq(&[3, 3]);
        let idx = Tensor::from_i64(vec![1, 2], vec![0, 2]);
        let y = run(&gather(1, 13), &data, &idx).unwrap();
        assert_eq!(y, Tensor::from_f32(vec![3, 1, 2], vec![0., 2., 3., 5., 6., 8.]));
    }

    #[test]
    fn gather_shapes_match_onnx_node_tests() {
        let data = seq(&[5, 4, 3, 2]);
        let idx = Tensor::from_i64(vec![3], vec![0, 1, 3]);
        let y = run(&gather(0, 13), &data, &idx).unwrap();
        assert_eq!(y.shape(), &[3, 4, 3, 2]);
        assert_eq!(&y.as_f32().unwrap()[48..], &data.as_f32().unwrap()[72..96]);
        assert_eq!(run(&gather(1, 13), &data, &idx).unwrap().shape(), &[5, 3, 3, 2]);
        assert_eq!(run(&gather(-3, 13), &data, &idx).unwrap().shape(), &[5, 3, 3, 2]);
    }

    #[test]
    fn gather_negative_indices_count_from_the_back() {
        // test_gather_negative_indices
        let data = seq(&[10]);
        let idx = Tensor::from_i32(vec![3], vec![0, -9, -10]);
        assert_eq!(run(&gather(0, 13), &data, &idx).unwrap(), Tensor::from_f32(vec![3], vec![0., 1., 0.]));
        assert!(matches!(run(&gather(0, 9), &data, &idx), Err(OpError::Shape(_))));
    }

    #[test]
    fn gather_scalar_index_drops_the_axis() {
        let data = Tensor::from_i64(vec![4], vec![1, 3, 224, 224]);
        let idx = Tensor::from_i64(vec![], vec![0]);
        assert_eq!(run(&gather(0, 9), &data, &idx).unwrap(), Tensor::from_i64(vec![], vec![1]));
    }

    #[test]
    fn gather_rejects_out_of_range_indices_and_bad_dtypes() {
        let data = seq(&[3, 2]);
        for bad in [3, -4] {
            let idx = Tensor::from_i64(vec![1], vec![bad]);
            let err = run(&gather(0, 13), &data, &idx).unwrap_err();
            assert!(matches!(err, OpError::Shape(_)), "{err}");
        }
        assert!(matches!(run(&gather(2, 13), &data, &Tensor::from_i64(vec![1], vec![0])), Err(OpError::Shape(_))));
        assert!(matches!(run(&gather(0, 13), &data, &seq(&[1])), Err(OpError::DType { input: 1, .. })));
        let empty = Tensor::zeros(vec![0]);
        assert!(matches!(run(&gather(0, 13), &empty, &Tensor::from_i64(vec![1], vec![0])), Err(OpError::Shape(_))));
    }

    #[test]
    fn gather_infers_shapes_and_checks_constant_indices() {
        let n = Dim::Sym("N".into());
        let data = Fact::new(DType::F32, vec![n.clone(), Dim::Known(5)]);
        let idx = Fact::constant(Arc::new(Tensor::from_i64(vec![2, 1], vec![4, 0])));
        let f = gather(1, 13).infer(&[Some(&data), Some(&idx)]).unwrap().remove(0);
        assert_eq!(f.shape.unwrap(), vec![n, Dim::Known(2), Dim::Known(1)]);
        let bad = Fact::constant(Arc::new(Tensor::from_i64(vec![1], vec![5])));
        assert!(matches!(gather(1, 13).infer(&[Some(&data), Some(&bad)]), Err(OpError::Shape(_))));
    }
}
