//! MatMul: matrix product with numpy semantics.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__MatMul.html>
//!
//! | opset | change |
//! |---|---|
//! | 1 | numpy `matmul`: a 1-D A is promoted to `[1, K]` and a 1-D B to `[K, 1]` (the added dim is removed from the result); leading (batch) dims broadcast |
//! | 9 | integer element types |
//! | 13 | bfloat16 |
//!
//! Supported: opsets 7..=25, float32 only (integer MatMul → a dtype error); rank-0
//! operands are rejected as in numpy. Each batch is one `matrixmultiply::sgemm` call;
//! broadcast batches read the same operand slice, nothing is copied.

use crate::error::OpError;
use crate::fact::{fmt_shape, Fact};
use crate::ops::binary::{broadcast_concrete, broadcast_shapes};
use crate::ops::{check_arity, f32_input, required, Attrs, OpDef};
use crate::tensor::{numel, strides, DType, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct MatMul {}

impl MatMul {
    pub fn from_onnx(_a: &Attrs, _opset: i64) -> Result<Self, OpError> {
        Ok(MatMul {})
    }
}

fn check_f32(f: &Fact, input: usize) -> Result<(), OpError> {
    match f.dtype {
        None | Some(DType::F32) => Ok(()),
        Some(d) => Err(OpError::DType { input, dtype: d, expected: "float32" }),
    }
}

/// The operands viewed as (batch dims, rows, cols) after numpy's 1-D promotion.
fn as_matrix<D: Clone + From<usize>>(s: &[D], is_a: bool) -> (Vec<D>, D, D) {
    match s.len() {
        1 if is_a => (vec![], D::from(1), s[0].clone()),
        1 => (vec![], s[0].clone(), D::from(1)),
        r => (s[..r - 2].to_vec(), s[r - 2].clone(), s[r - 1].clone()),
    }
}

impl OpDef for MatMul {
    fn onnx_type(&self) -> &'static str {
        "MatMul"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 2, 2)?;
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        check_f32(a, 0)?;
        check_f32(b, 1)?;
        let (Some(sa), Some(sb)) = (&a.shape, &b.shape) else {
            return Ok(vec![Fact { dtype: Some(DType::F32), shape: None, value: None }]);
        };
        if sa.is_empty() || sb.is_empty() {
            return Err(OpError::shape(format!("MatMul operands must have rank ≥ 1, got {a} and {b}")));
        }
        let (ba, m, ka) = as_matrix(sa, true);
        let (bb, kb, n) = as_matrix(sb, false);
        let mismatch = || OpError::shape(format!("cannot multiply {} by {}", fmt_shape(sa), fmt_shape(sb)));
        if let (Some(x), Some(y)) = (ka.known(), kb.known()) {
            if x != y {
                return Err(mismatch());
            }
        }
        let mut out = broadcast_shapes(&[&ba, &bb]).map_err(|_| mismatch())?;
        if sa.len() > 1 {
            out.push(m);
        }
        if sb.len() > 1 {
            out.push(n);
        }
        Ok(vec![Fact::new(DType::F32, out)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 2, 2)?;
        let (a, b) = (f32_input(inputs, 0)?, f32_input(inputs, 1)?);
        let mismatch = || OpError::shape(format!("cannot multiply {:?} by {:?}", a.shape(), b.shape()));
        if a.rank() == 0 || b.rank() == 0 {
            return Err(mismatch());
        }
        let (ba, m, k) = as_matrix(a.shape(), true);
        let (bb, kb, n) = as_matrix(b.shape(), false);
        if k != kb {
            return Err(mismatch());
        }
        let batch = broadcast_concrete(&[&ba, &bb]).map_err(|_| mismatch())?;
        // Batch strides of each operand over the output batch index (0 where broadcast).
        let batch_strides = |own: &[usize], mat: usize| -> Vec<usize> {
            let own_strides = strides(own);
            let pad = batch.len() - own.len();
            (0..batch.len())
                .map(|i| if i < pad || own[i - pad] == 1 { 0 } else { own_strides[i - pad] * mat })
                .collect()
        };
        let (sa, sb) = (batch_strides(&ba, m * k), batch_strides(&bb, k * n));
        let (av, bv) = (a.as_f32().expect("checked"), b.as_f32().expect("checked"));
        let batches = numel(&batch);
        let mut y = vec![0.0f32; batches * m * n];
        let out_strides = strides(&batch);
        for bi in 0..batches {
            let (mut oa, mut ob) = (0, 0);
            for (d, &st) in out_strides.iter().enumerate() {
                let idx = bi / st % batch[d];
                oa += idx * sa[d];
                ob += idx * sb[d];
            }
            if m == 0 || n == 0 {
                continue;
            }
            // SAFETY: `oa..oa+m*k` lies in A and `ob..ob+k*n` in B (the batch offsets address
            // whole matrices of the operands' own batch shapes), the output slice is
            // `m*n` elements of `y`, and nothing aliases `y`.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    av.as_ptr().add(oa),
                    k as isize,
                    1,
                    bv.as_ptr().add(ob),
                    n as isize,
                    1,
                    0.0,
                    y.as_mut_ptr().add(bi * m * n),
                    n as isize,
                    1,
                );
            }
        }
        let mut shape = batch;
        if a.rank() > 1 {
            shape.push(m);
        }
        if b.rank() > 1 {
            shape.push(n);
        }
        Ok(vec![Tensor::from_f32(shape, y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fact::Dim;

    fn seq(shape: &[usize]) -> Tensor {
        let n = numel(shape);
        Tensor::from_f32(shape.to_vec(), (0..n).map(|i| (i % 7) as f32 - 3.0).collect())
    }

    fn mm(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
        Ok(MatMul {}.eval(&[Some(a), Some(b)])?.remove(0))
    }

    /// Naive numpy matmul for 2-D operands.
    fn naive2(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        y
    }

    #[test]
    fn matmul_2d_is_the_matrix_product() {
        let a = Tensor::from_f32(vec![2, 2], vec![1., 2., 3., 4.]);
        let b = Tensor::from_f32(vec![2, 2], vec![5., 6., 7., 8.]);
        assert_eq!(mm(&a, &b).unwrap(), Tensor::from_f32(vec![2, 2], vec![19., 22., 43., 50.]));
    }

    #[test]
    fn matmul_shapes_match_onnx_node_tests() {
        let cases: &[(&[usize], &[usize], &[usize])] = &[
            (&[3, 4], &[4, 3], &[3, 3]),
            (&[2, 3, 4], &[2, 4, 3], &[2, 3, 3]),
            (&[1, 2, 3, 4], &[1, 2, 4, 3], &[1, 2, 3, 3]),
            (&[1, 2, 3, 4], &[4], &[1, 2, 3]),
            (&[4], &[1, 2, 4, 3], &[1, 2, 3]),
            (&[4], &[4], &[]),
            (&[3, 1, 2, 4], &[5, 4, 3], &[3, 5, 2, 3]),
        ];
        for (sa, sb, want) in cases {
            assert_eq!(mm(&seq(sa), &seq(sb)).unwrap().shape(), *want, "{sa:?} x {sb:?}");
            let fa = Fact::known(DType::F32, sa);
            let fb = Fact::known(DType::F32, sb);
            let f = MatMul {}.infer(&[Some(&fa), Some(&fb)]).unwrap().remove(0);
            assert_eq!(f.concrete_shape().unwrap(), want.to_vec());
        }
    }

    #[test]
    fn matmul_broadcast_batches_reuse_the_smaller_operand() {
        let a = seq(&[2, 1, 2, 3]);
        let b = seq(&[3, 3, 2]);
        let y = mm(&a, &b).unwrap();
        assert_eq!(y.shape(), &[2, 3, 2, 2]);
        let (av, bv, yv) = (a.as_f32().unwrap(), b.as_f32().unwrap(), y.as_f32().unwrap());
        for i in 0..2 {
            for j in 0..3 {
                let want = naive2(&av[i * 6..i * 6 + 6], &bv[j * 6..j * 6 + 6], 2, 3, 2);
                let at = (i * 3 + j) * 4;
                assert_eq!(&yv[at..at + 4], want.as_slice());
            }
        }
    }

    #[test]
    fn matmul_rejects_mismatched_shapes_and_dtypes() {
        assert!(matches!(mm(&seq(&[2, 3]), &seq(&[2, 3])), Err(OpError::Shape(_))));
        assert!(matches!(mm(&seq(&[2, 2, 3]), &seq(&[3, 3, 2])), Err(OpError::Shape(_))));
        assert!(matches!(mm(&seq(&[]), &seq(&[3])), Err(OpError::Shape(_))));
        let i = Tensor::from_i64(vec![1, 1], vec![1]);
        assert!(matches!(mm(&i, &seq(&[1, 1])), Err(OpError::DType { input: 0, .. })));
        let fa = Fact::new(DType::F32, vec![Dim::Sym("N".into()), Dim::Known(3)]);
        let fb = Fact::known(DType::F32, &[4, 2]);
        let err = MatMul {}.infer(&[Some(&fa), Some(&fb)]).unwrap_err();
        assert!(err.to_string().contains("[N,3]"), "{err}");
    }

    #[test]
    fn matmul_infers_symbolic_batch() {
        let fa = Fact::new(DType::F32, vec![Dim::Sym("N".into()), Dim::Known(2048)]);
        let fb = Fact::known(DType::F32, &[2048, 1000]);
        let f = MatMul {}.infer(&[Some(&fa), Some(&fb)]).unwrap().remove(0);
        assert_eq!(f.shape.unwrap(), vec![Dim::Sym("N".into()), Dim::Known(1000)]);
    }
}
