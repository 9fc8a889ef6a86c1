//! GlobalAveragePool and GlobalMaxPool: the mean or max of each `[N, C]` plane over all
//! spatial axes, keeping them as size-1 axes (`[N, C, D1, ...]` → `[N, C, 1, ...]`).
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__GlobalAveragePool.html>,
//! <https://onnx.ai/onnx/operators/onnx__GlobalMaxPool.html>. Both exist since opset 1 with
//! no attributes; opset 22 only adds bfloat16. We compute f32 with 1 to 3 spatial axes. An
//! empty plane gives NaN (average) or -inf (max).

use crate::error::OpError;
use crate::fact::{Dim, Fact};
use crate::ops::padding::check_spatial_input;
use crate::ops::{check_arity, f32_input, required, Attrs, OpDef};
use crate::tensor::{DType, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Average,
    Max,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalPool {
    pub kind: PoolKind,
}

impl GlobalPool {
    /// No attributes in any opset.
    pub fn from_onnx(kind: PoolKind, _a: &Attrs, _opset: i64) -> Result<Self, OpError> {
        Ok(GlobalPool { kind })
    }
}

impl OpDef for GlobalPool {
    fn onnx_type(&self) -> &'static str {
        match self.kind {
            PoolKind::Average => "GlobalAveragePool",
            PoolKind::Max => "GlobalMaxPool",
        }
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = required(inputs, 0)?;
        let shape = check_spatial_input(x, 0)?.map(|xs| {
            let mut s = xs[..2].to_vec();
            s.resize(xs.len(), Dim::Known(1));
            s
        });
        Ok(vec![Fact { dtype: Some(DType::F32), shape, value: None }])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x_t = f32_input(inputs, 0)?;
        let xs = x_t.shape();
        if !(3..=5).contains(&xs.len()) {
            return Err(OpError::shape(format!("input shape {xs:?} is not [N,C,spatial...] with 1 to 3 spatial axes")));
        }
        let x = x_t.as_f32().unwrap_or_default();
        let plane: usize = xs[2..].iter().product();
        let planes = xs[0] * xs[1];
        let y: Vec<f32> = (0..planes)
            .map(|p| {
                let values = &x[p * plane..][..plane];
                match self.kind {
                    PoolKind::Average => values.iter().sum::<f32>() / plane as f32,
                    PoolKind::Max => values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                }
            })
            .collect();
        let mut shape = xs[..2].to_vec();
        shape.resize(xs.len(), 1);
        Ok(vec![Tensor::from_f32(shape, y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(kind: PoolKind) -> GlobalPool {
        GlobalPool::from_onnx(kind, &Attrs::default(), 22).unwrap()
    }

    #[test]
    fn global_pools_reduce_every_spatial_axis_per_channel() {
        let x = Tensor::from_f32(vec![1, 2, 2, 2], vec![1.0, 2.0, 3.0, 6.0, -1.0, -2.0, -3.0, -6.0]);
        let avg = pool(PoolKind::Average).eval(&[Some(&x)]).unwrap().remove(0);
        assert_eq!((avg.shape(), avg.as_f32().unwrap()), ([1usize, 2, 1, 1].as_slice(), [3.0, -3.0].as_slice()));
        let max = pool(PoolKind::Max).eval(&[Some(&x)]).unwrap().remove(0);
        assert_eq!(max.as_f32().unwrap(), [6.0, -1.0]);
    }

    #[test]
    fn global_pool_handles_1d_and_3d() {
        let x1 = Tensor::from_f32(vec![2, 1, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let y1 = pool(PoolKind::Average).eval(&[Some(&x1)]).unwrap().remove(0);
        assert_eq!((y1.shape(), y1.as_f32().unwrap()), ([2usize, 1, 1].as_slice(), [2.0, 5.0].as_slice()));
        let x3 = Tensor::from_f32(vec![1, 1, 1, 2, 2], vec![1.0, 9.0, 3.0, 4.0]);
        let y3 = pool(PoolKind::Max).eval(&[Some(&x3)]).unwrap().remove(0);
        assert_eq!((y3.shape(), y3.as_f32().unwrap()), ([1usize, 1, 1, 1, 1].as_slice(), [9.0].as_slice()));
    }

    #[test]
    fn global_pool_infer_keeps_batch_symbol() {
        let x = Fact::new(DType::F32, vec![Dim::Sym("N".into()), 2048.into(), 7.into(), Dim::unknown()]);
        let out = pool(PoolKind::Average).infer(&[Some(&x)]).unwrap();
        assert_eq!(out[0].to_string(), "float32[N,2048,1,1]");
    }

    #[test]
    fn global_pool_rejects_rank_2_and_non_f32() {
        let p = pool(PoolKind::Max);
        assert!(matches!(p.eval(&[Some(&Tensor::zeros(vec![2, 3]))]), Err(OpError::Shape(_))));
        assert!(matches!(p.infer(&[Some(&Fact::known(DType::F32, &[2, 3]))]), Err(OpError::Shape(_))));
        let i = Tensor::from_i64(vec![1, 1, 1], vec![1]);
        assert!(matches!(p.eval(&[Some(&i)]), Err(OpError::DType { input: 0, .. })));
        assert!(matches!(p.eval(&[]), Err(OpError::Arity { .. })));
    }
}
