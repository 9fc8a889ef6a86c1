//! Softmax and LogSoftmax: normalised exponentials along an axis.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__Softmax.html> and
//! <https://onnx.ai/onnx/operators/onnx__LogSoftmax.html>.
//!
//! Opset history that matters (both ops alike):
//! - 1 and 11: `axis` defaults to 1 and the input is coerced to 2-D,
//!   `[prod(dims[..axis]), prod(dims[axis..])]`: the normalisation runs over the whole
//!   flattened tail.
//! - 13: `axis` defaults to -1 and the normalisation runs along that single axis.
//!
//! Both map onto one struct: `axis` plus `flatten_tail`. float32 only. Kernels subtract the
//! maximum first, so large inputs do not overflow (`test_softmax_large_number`):
//! `softmax = exp(x − m) / Σ exp(x − m)`, `log_softmax = x − m − ln Σ exp(x − m)`.

use crate::error::OpError;
use crate::fact::Fact;
use crate::ops::{check_arity, f32_input, normalize_axis, required, Attrs, OpDef};
use crate::tensor::{DType, Tensor};

#[derive(Debug, Clone)]
pub struct Softmax {
    /// LogSoftmax instead of Softmax.
    pub log: bool,
    /// As written in the model; may be negative.
    pub axis: i64,
    /// Opset < 13: normalise over all axes from `axis` on, not just `axis`.
    pub flatten_tail: bool,
}

impl Softmax {
    pub fn from_onnx(log: bool, a: &Attrs, opset: i64) -> Result<Self, OpError> {
        let flatten_tail = opset < 13;
        let axis = a.int("axis", if flatten_tail { 1 } else { -1 })?;
        Ok(Softmax { log, axis, flatten_tail })
    }

    /// `(outer, n, inner)`: the input is `[outer, n, inner]` and normalisation runs over `n`.
    fn split(&self, shape: &[usize]) -> Result<(usize, usize, usize), OpError> {
        let axis = normalize_axis(self.axis, shape.len())?;
        let outer = shape[..axis].iter().product();
        Ok(if self.flatten_tail {
            (outer, shape[axis..].iter().product(), 1)
        } else {
            (outer, shape[axis], shape[axis + 1..].iter().product())
        })
    }
}

impl OpDef for Softmax {
    fn onnx_type(&self) -> &'static str {
        if self.log {
            "LogSoftmax"
        } else {
            "Softmax"
        }
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = required(inputs, 0)?;
        if let Some(d) = x.dtype.filter(|&d| d != DType::F32) {
            return Err(OpError::DType { input: 0, dtype: d, expected: "float32" });
        }
        if let Some(rank) = x.rank() {
            normalize_axis(self.axis, rank)?;
        }
        Ok(vec![Fact { dtype: Some(DType::F32), shape: x.shape.clone(), value: None }])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = f32_input(inputs, 0)?;
        let (outer, n, inner) = self.split(x.shape())?;
        let src = x.as_f32().expect("checked f32");
        let mut out = vec![0.0f32; src.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| o * n * inner + k * inner + i;
                let m = (0..n).map(|k| src[at(k)]).fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = (0..n).map(|k| (src[at(k)] - m).exp()).sum();
                for k in 0..n {
                    let v = src[at(k)] - m;
                    out[at(k)] = if self.log { v - sum.ln() } else { v.exp() / sum };
                }
            }
        }
        Ok(vec![Tensor::from_f32(x.shape().to_vec(), out)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;
    use proptest::prelude::*;

    fn op(log: bool, axis: Option<i64>, opset: i64) -> Softmax {
        let items = axis.map(|a| vec![("axis".to_string(), AttrValue::Int(a))]).unwrap_or_default();
        Softmax::from_onnx(log, &Attrs::new(items), opset).unwrap()
    }

    fn run(s: &Softmax, shape: &[usize], data: &[f32]) -> Vec<f32> {
        let x = Tensor::from_f32(shape.to_vec(), data.to_vec());
        s.eval(&[Some(&x)]).unwrap().remove(0).into_f32().unwrap()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-6 + 1e-5 * w.abs(), "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn softmax_large_numbers_do_not_overflow() {
        // ONNX test_softmax_large_number / test_logsoftmax_large_number (opset 13).
        let x = [0.0, 1.0, 2.0, 3.0, 10000.0, 10001.0, 10002.0, 10003.0];
        let p = [0.0320586, 0.08714432, 0.2368828, 0.6439143];
        let want: Vec<f32> = p.iter().chain(&p).copied().collect();
        assert_close(&run(&op(false, None, 13), &[2, 4], &x), &want);
        let l = [-3.4401896, -2.4401896, -1.4401896, -0.44018966];
        let want: Vec<f32> = l.iter().chain(&l).copied().collect();
        assert_close(&run(&op(true, None, 13), &[2, 4], &x), &want);
    }

    #[test]
    fn softmax_opset_13_normalises_one_axis() {
        // Axis 0 of a [2,2]: columns sum to one.
        let y = run(&op(false, Some(0), 13), &[2, 2], &[0.0, 1.0, 0.0, 3.0]);
        let e = |d: f32| 1.0 / (1.0 + d.exp());
        assert_close(&y, &[0.5, e(2.0), 0.5, 1.0 - e(2.0)]);
        // Axis 1 of a [1,2,2] (opset 13) normalises over the middle axis only.
        let y = run(&op(false, Some(1), 13), &[1, 2, 2], &[0.0, 0.0, 0.0, 0.0]);
        assert_close(&y, &[0.5; 4]);
    }

    #[test]
    fn softmax_before_opset_13_flattens_the_tail() {
        // Default axis 1 of [1,2,2]: one distribution over all four elements.
        let y = run(&op(false, None, 11), &[1, 2, 2], &[0.0; 4]);
        assert_close(&y, &[0.25; 4]);
        let y = run(&op(true, None, 7), &[1, 2, 2], &[0.0; 4]);
        assert_close(&y, &[-(4f32.ln()); 4]);
    }

    #[test]
    fn softmax_rejects_bad_axis_and_dtype() {
        let s = op(false, Some(3), 13);
        let x = Tensor::from_f32(vec![2, 2], vec![0.0; 4]);
        assert!(matches!(s.eval(&[Some(&x)]), Err(OpError::Shape(_))));
        assert!(matches!(s.infer(&[Some(&Fact::known(DType::F32, &[2, 2]))]), Err(OpError::Shape(_))));
        let i = Tensor::from_i64(vec![1], vec![1]);
        assert!(matches!(op(false, None, 13).eval(&[Some(&i)]), Err(OpError::DType { .. })));
    }

    #[test]
    fn softmax_names_follow_log_flag() {
        assert_eq!(op(false, None, 13).onnx_type(), "Softmax");
        assert_eq!(op(true, None, 13).onnx_type(), "LogSoftmax");
    }

    proptest! {
        #[test]
        fn softmax_rows_sum_to_one_and_match_log_softmax(
            data in prop::collection::vec(-50.0f32..50.0, 12),
            axis in -3i64..3,
            opset in prop::sample::select(vec![11i64, 13]),
        ) {
            let shape = [2, 3, 2];
            let p = run(&op(false, Some(axis), opset), &shape, &data);
            let l = run(&op(true, Some(axis), opset), &shape, &data);
            for (a, b) in p.iter().zip(&l) {
                prop_assert!((a.ln() - b).abs() < 1e-3 || *a < 1e-30);
            }
            let s = op(false, Some(axis), opset);
            let (outer, n, inner) = s.split(&shape).unwrap();
            for o in 0..outer {
                for i in 0..inner {
                    let total: f32 = (0..n).map(|k| p[o * n * inner + k * inner + i]).sum();
                    prop_assert!((total - 1.0).abs() < 1e-5);
                }
            }
        }
    }
}
