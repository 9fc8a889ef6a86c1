//! Transpose: permutes the dims of a tensor; output dim `i` is input dim `perm[i]`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Transpose.html>
//!
//! | opset | change |
//! |---|---|
//! | 1 | `perm` (ints, default: the dims reversed) |
//! | 13, 21, 23, 24, 25 | more element types (no semantic change) |
//!
//! Supported: opsets 7..=25, any of our element types. A `perm` that is not a permutation
//! of `0..rank` is rejected (`from_onnx` checks it is a permutation, inference and the
//! kernel check its length against the input's rank).

use crate::error::OpError;
use crate::fact::{fmt_shape, Fact};
use crate::ops::{check_arity, required, Attrs, OpDef};
use crate::tensor::{numel, strides, Tensor, TensorData};

#[derive(Debug, Clone, PartialEq)]
pub struct Transpose {
    /// The permutation; `None` means reversed dims.
    pub perm: Option<Vec<usize>>,
}

impl Transpose {
    pub fn from_onnx(a: &Attrs, _opset: i64) -> Result<Self, OpError> {
        let perm = a.ints_opt("perm")?;
        if let Some(p) = &perm {
            let mut seen = vec![false; p.len()];
            for &v in p {
                let ok = usize::try_from(v).ok().filter(|&u| u < p.len() && !seen[u]);
                match ok {
                    Some(u) => seen[u] = true,
                    None => return Err(OpError::attr("perm", format!("{p:?} is not a permutation of 0..{}", p.len()))),
                }
            }
        }
        Ok(Transpose { perm: perm.map(|p| p.into_iter().map(|v| v as usize).collect()) })
    }

    /// The permutation for a tensor of rank `rank`.
    fn perm_for(&self, rank: usize, shape: &str) -> Result<Vec<usize>, OpError> {
        match &self.perm {
            None => Ok((0..rank).rev().collect()),
            Some(p) if p.len() == rank => Ok(p.clone()),
            Some(p) => Err(OpError::shape(format!("perm {p:?} does not fit input shape {shape} (rank {rank})"))),
        }
    }
}

/// Writes the output in order, reading the input through permuted strides.
fn permute<T: Copy>(data: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let in_strides = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let src_strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let n = numel(shape);
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0usize; shape.len()];
    let mut src = 0usize;
    for _ in 0..n {
        out.push(data[src]);
        // Advance the output index like an odometer, keeping `src` in step.
        for d in (0..index.len()).rev() {
            index[d] += 1;
            src += src_strides[d];
            if index[d] < out_shape[d] {
                break;
            }
            src -= src_strides[d] * index[d];
            index[d] = 0;
        }
    }
    out
}

impl OpDef for Transpose {
    fn onnx_type(&self) -> &'static str {
        "Transpose"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = required(inputs, 0)?;
        let shape = match &x.shape {
            Some(dims) => {
                let perm = self.perm_for(dims.len(), &fmt_shape(dims))?;
                Some(perm.iter().map(|&p| dims[p].clone()).collect())
            }
            None => self.perm.as_ref().map(|p| vec![crate::fact::Dim::unknown(); p.len()]),
        };
        let out = Fact { dtype: x.dtype, shape, value: None };
        Ok(vec![out])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = required(inputs, 0)?;
        let shape = x.shape();
        let perm = self.perm_for(shape.len(), &format!("{shape:?}"))?;
        let data = match x.data() {
            TensorData::F32(v) => TensorData::F32(permute(v, shape, &perm)),
            TensorData::I64(v) => TensorData::I64(permute(v, shape, &perm)),
            TensorData::I32(v) => TensorData::I32(permute(v, shape, &perm)),
        };
        let out_shape = perm.iter().map(|&p| shape[p]).collect();
        Ok(vec![Tensor::new(out_shape, data).expect("a permuted shape has the same element count")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fact::Dim;
    use crate::ops::AttrValue;
    use crate::tensor::DType;

    fn transpose(perm: Option<&[i64]>) -> Result<Transpose, OpError> {
        let a = Attrs::new(perm.map(|p| ("perm".to_string(), AttrValue::Ints(p.to_vec()))).into_iter().collect());
        let op = Transpose::from_onnx(&a, 13)?;
        a.finish()?;
        Ok(op)
    }

    /// Reference by index arithmetic, one element at a time.
    fn naive(x: &Tensor, perm: &[usize]) -> Vec<f32> {
        let shape = x.shape();
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let (is, os) = (strides(shape), strides(&out_shape));
        (0..x.len())
            .map(|o| {
                let src: usize = (0..perm.len()).map(|d| (o / os[d] % out_shape[d]) * is[perm[d]]).sum();
                x.as_f32().unwrap()[src]
            })
            .collect()
    }

    #[test]
    fn transpose_default_reverses_dims() {
        let x = Tensor::from_f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let y = transpose(None).unwrap().eval(&[Some(&x)]).unwrap().remove(0);
        assert_eq!(y, Tensor::from_f32(vec![3, 2], vec![1., 4., 2., 5., 3., 6.]));
    }

    #[test]
    fn transpose_all_permutations_of_rank_3_match_index_arithmetic() {
        // test_transpose_all_permutations_*: input (2, 3, 4).
        let x = Tensor::from_f32(vec![2, 3, 4], (0..24).map(|i| i as f32).collect());
        for perm in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
            let p: Vec<i64> = perm.iter().map(|&v| v as i64).collect();
            let y = transpose(Some(&p)).unwrap().eval(&[Some(&x)]).unwrap().remove(0);
            assert_eq!(y.shape(), perm.iter().map(|&d| x.shape()[d]).collect::<Vec<_>>());
            assert_eq!(y.as_f32().unwrap(), naive(&x, &perm).as_slice(), "{perm:?}");
        }
    }

    #[test]
    fn transpose_handles_scalars_empty_dims_and_ints() {
        let s = Tensor::from_i64(vec![], vec![5]);
        assert_eq!(transpose(None).unwrap().eval(&[Some(&s)]).unwrap()[0], s);
        let e = Tensor::zeros(vec![0, 3]);
        assert_eq!(transpose(None).unwrap().eval(&[Some(&e)]).unwrap()[0].shape(), &[3, 0]);
        let i = Tensor::from_i32(vec![1, 2], vec![7, 8]);
        assert_eq!(transpose(None).unwrap().eval(&[Some(&i)]).unwrap()[0], Tensor::from_i32(vec![2, 1], vec![7, 8]));
    }

    #[test]
    fn transpose_rejects_non_permutations_and_rank_mismatch() {
        assert!(matches!(transpose(Some(&[0, 0])), Err(OpError::Attribute { .. })));
        assert!(matches!(transpose(Some(&[0, 2])), Err(OpError::Attribute { .. })));
        assert!(matches!(transpose(Some(&[-1, 0])), Err(OpError::Attribute { .. })));
        let op = transpose(Some(&[1, 0])).unwrap();
        assert!(matches!(op.eval(&[Some(&Tensor::zeros(vec![2, 3, 4]))]), Err(OpError::Shape(_))));
        let f = Fact::known(DType::F32, &[2, 3, 4]);
        assert!(matches!(op.infer(&[Some(&f)]), Err(OpError::Shape(_))));
    }

    #[test]
    fn transpose_infers_symbolic_dims() {
        let n = Dim::Sym("N".into());
        let f = Fact::new(DType::F32, vec![n.clone(), Dim::Known(224), Dim::Known(224), Dim::Known(3)]);
        let y = transpose(Some(&[0, 3, 1, 2])).unwrap().infer(&[Some(&f)]).unwrap().remove(0);
        assert_eq!(y.shape.unwrap(), vec![n, Dim::Known(3), Dim::Known(224), Dim::Known(224)]);
    }

    proptest::proptest! {
        #[test]
        fn transpose_then_inverse_is_identity(dims in proptest::collection::vec(1usize..4, 0..5), seed: u64) {
            let rank = dims.len();
            // A permutation from the seed (Fisher-Yates with a tiny LCG).
            let mut perm: Vec<usize> = (0..rank).collect();
            let mut s = seed;
            for i in (1..rank).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                perm.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mut inverse = vec![0; rank];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            let n = numel(&dims);
            let x = Tensor::from_f32(dims.clone(), (0..n).map(|i| i as f32).collect());
            let fwd = Transpose { perm: Some(perm.clone()) }.eval(&[Some(&x)]).unwrap().remove(0);
            let want = naive(&x, &perm);
            proptest::prop_assert_eq!(fwd.as_f32().unwrap(), want.as_slice());
            let back = Transpose { perm: Some(inverse) }.eval(&[Some(&fwd)]).unwrap().remove(0);
            proptest::prop_assert_eq!(back, x);
        }
    }
}
