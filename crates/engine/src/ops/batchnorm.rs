//! BatchNormalization at inference: `y = scale · (x − mean) / sqrt(var + epsilon) + B`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__BatchNormalization.html>.
//!
//! Inputs `X [N,C,D1..Dn]`, `scale`, `B`, `mean`, `var`. Opset history that matters:
//! - 7: attributes `epsilon` (1e-5), `momentum` (0.9, training only), `spatial` (1). With
//!   `spatial = 1` the four statistics have shape `[C]`; with `spatial = 0` they are
//!   per element, shape `[C,D1..Dn]`. Optional outputs 2–5 (running and saved statistics)
//!   exist only in training.
//! - 9: `spatial` removed (statistics are `[C]`).
//! - 14: `training_mode` (0): 1 makes the op compute batch statistics and return the running
//!   ones as outputs 2 and 3.
//! - 15: scale/B and mean/var may have a type other than X's (we store float32 only, so all
//!   five must be float32).
//!
//! We run inference only: `training_mode = 1` is [`OpError::Unsupported`]; so is a node that
//! asks for more than one output (the graph reports that the op produces 1).
//! `momentum` is read and ignored. Opsets < 7 (`is_test`, `consumed_inputs`) are not loaded.
//!
//! About `spatial = 0`: the ONNX zoo's 2018 exports carry `spatial = 0` by an exporter bug
//! while their statistics are per channel, `[C]`. So each statistic is read by its shape:
//! `[C]` is per channel whatever `spatial` says; `[C,D1..Dn]` (allowed only with
//! `spatial = 0`) is per element, broadcast over the batch. Anything else is a shape error.

use crate::error::OpError;
use crate::fact::{Dim, Fact};
use crate::ops::{check_arity, f32_input, required, Attrs, OpDef};
use crate::tensor::{DType, Tensor};

#[derive(Debug, Clone)]
pub struct BatchNormalization {
    pub epsilon: f32,
    /// Opset 7–8 `spatial`; `false` lets the statistics have shape `[C,D1..Dn]`.
    pub spatial: bool,
}

const INPUT_NAMES: [&str; 5] = ["X", "scale", "B", "mean", "var"];

impl BatchNormalization {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        let epsilon = a.float("epsilon", 1e-5)?;
        a.ignore("momentum");
        let spatial = if opset < 9 {
            match a.int("spatial", 1)? {
                1 => true,
                0 => false,
                v => return Err(OpError::attr("spatial", format!("expected 0 or 1, found {v}"))),
            }
        } else {
            true
        };
        if opset >= 14 {
            match a.int("training_mode", 0)? {
                0 => {}
                1 => {
                    return Err(OpError::Unsupported(
                        "training-mode BatchNormalization is not supported (this engine runs inference only)".into(),
                    ))
                }
                v => return Err(OpError::attr("training_mode", format!("expected 0 or 1, found {v}"))),
            }
        }
        Ok(BatchNormalization { epsilon, spatial })
    }
}

/// Whether two dimensions may be equal at run time.
fn dims_may_match(a: &Dim, b: &Dim) -> bool {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x == y,
        _ => true,
    }
}

impl OpDef for BatchNormalization {
    fn onnx_type(&self) -> &'static str {
        "BatchNormalization"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 5, 5)?;
        let x = required(inputs, 0)?;
        for i in 0..5 {
            if let Some(d) = required(inputs, i)?.dtype.filter(|&d| d != DType::F32) {
                return Err(OpError::DType { input: i, dtype: d, expected: "float32" });
            }
        }
        if let Some(xs) = &x.shape {
            if xs.len() < 2 {
                return Err(OpError::shape(format!("X must be [N,C,...] (rank ≥ 2), got {x}")));
            }
            for (i, name) in INPUT_NAMES.iter().enumerate().skip(1) {
                let p = required(inputs, i)?;
                let Some(ps) = &p.shape else { continue };
                let per_channel = ps.len() == 1 && dims_may_match(&ps[0], &xs[1]);
                let per_element = !self.spatial
                    && ps.len() == xs.len() - 1
                    && ps.iter().zip(&xs[1..]).all(|(a, b)| dims_may_match(a, b));
                if !per_channel && !per_element {
                    let want = if self.spatial { "[C]" } else { "[C] or [C,D1,..]" };
                    return Err(OpError::shape(format!("{name} must have shape {want} for X {x}, got {p}")));
                }
            }
        }
        Ok(vec![Fact { dtype: Some(DType::F32), shape: x.shape.clone(), value: None }])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 5, 5)?;
        let t = (0..5).map(|i| f32_input(inputs, i)).collect::<Result<Vec<_>, _>>()?;
        let x = t[0];
        let xs = x.shape();
        if xs.len() < 2 {
            return Err(OpError::shape(format!("X must be [N,C,...] (rank ≥ 2), got shape {xs:?}")));
        }
        let c = xs[1];
        let inner: usize = xs[2..].iter().product();
        // Per statistic: true when it holds one value per channel, false when per element.
        let mut per_channel = [true; 5];
        for i in 1..5 {
            let ps = t[i].shape();
            if ps == [c] {
                per_channel[i] = true;
            } else if !self.spatial && ps == &xs[1..] {
                per_channel[i] = false;
            } else {
                return Err(OpError::shape(format!(
                    "{} must have shape [{c}]{} for X {xs:?}, got {ps:?}",
                    INPUT_NAMES[i],
                    if self.spatial { "" } else { " or X's shape without the batch" }
                )));
            }
        }
        let v: Vec<&[f32]> = t.iter().map(|t| t.as_f32().expect("checked f32")).collect();
        let sample = c * inner;
        let y = v[0]
            .iter()
            .enumerate()
            .map(|(i, &xv)| {
                let within = i % sample.max(1);
                let stat = |k: usize| v[k][if per_channel[k] { within / inner.max(1) } else { within }];
                let (scale, bias, mean, var) = (stat(1), stat(2), stat(3), stat(4));
                scale * ((xv - mean) / (var + self.epsilon).sqrt()) + bias
            })
            .collect();
        Ok(vec![Tensor::from_f32(xs.to_vec(), y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;

    fn attrs(items: Vec<(&str, AttrValue)>) -> Attrs {
        Attrs::new(items.into_iter().map(|(n, v)| (n.to_string(), v)).collect())
    }

    fn vec1(v: &[f32]) -> Tensor {
        Tensor::from_f32(vec![v.len()], v.to_vec())
    }

    fn reference(x: f32, s: f32, b: f32, m: f32, var: f32, eps: f32) -> f32 {
        s * (x - m) / (var + eps).sqrt() + b
    }

    #[test]
    fn batchnorm_normalises_per_channel() {
        let bn = BatchNormalization::from_onnx(&attrs(vec![("epsilon", AttrValue::Float(0.01))]), 15).unwrap();
        // X [1,2,1,2]: channel 0 = [1,2], channel 1 = [3,4].
        let x = Tensor::from_f32(vec![1, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let (s, b, m, v) = (vec1(&[2.0, 0.5]), vec1(&[0.1, -1.0]), vec1(&[1.5, 3.0]), vec1(&[0.25, 4.0]));
        let y = bn.eval(&[Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)]).unwrap().remove(0);
        let want = [
            reference(1.0, 2.0, 0.1, 1.5, 0.25, 0.01),
            reference(2.0, 2.0, 0.1, 1.5, 0.25, 0.01),
            reference(3.0, 0.5, -1.0, 3.0, 4.0, 0.01),
            reference(4.0, 0.5, -1.0, 3.0, 4.0, 0.01),
        ];
        assert_eq!(y.shape(), &[1, 2, 1, 2]);
        for (g, w) in y.as_f32().unwrap().iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn batchnorm_default_epsilon_matches_onnx_example() {
        // First element of ONNX test_batchnorm_example (opset 15, epsilon 1e-5).
        let bn = BatchNormalization::from_onnx(&Attrs::default(), 15).unwrap();
        let x = Tensor::from_f32(vec![1, 1, 1, 1], vec![1.7640524]);
        let (s, b, m, v) = (vec1(&[0.37642553]), vec1(&[1.3263859]), vec1(&[-0.43515354]), vec1(&[0.9755215]));
        let y = bn.eval(&[Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)]).unwrap().remove(0);
        assert!((y.as_f32().unwrap()[0] - 2.1645408).abs() < 1e-5);
    }

    #[test]
    fn batchnorm_spatial_zero_accepts_per_channel_and_per_element_stats() {
        let a = attrs(vec![("spatial", AttrValue::Int(0)), ("momentum", AttrValue::Float(0.9))]);
        let bn = BatchNormalization::from_onnx(&a, 7).unwrap();
        a.finish().unwrap();
        assert!(!bn.spatial);
        let x = Tensor::from_f32(vec![2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        // Per element [C=1, D=2]: mean [1,2] subtracts per position; per channel [1] for the rest.
        let m = Tensor::from_f32(vec![1, 2], vec![1.0, 2.0]);
        let (s, b, v) = (vec1(&[1.0]), vec1(&[0.0]), vec1(&[1.0]));
        let y = bn.eval(&[Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)]).unwrap().remove(0);
        let k = 1.0 / (1.0f32 + 1e-5).sqrt();
        assert_eq!(y.as_f32().unwrap(), &[0.0, 0.0, 2.0 * k, 2.0 * k]);
        // The same per-element mean is a shape error with spatial = 1.
        let spatial = BatchNormalization::from_onnx(&Attrs::default(), 7).unwrap();
        assert!(matches!(spatial.eval(&[Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)]), Err(OpError::Shape(_))));
    }

    #[test]
    fn batchnorm_attributes_follow_opset() {
        let a = attrs(vec![("spatial", AttrValue::Int(1))]);
        BatchNormalization::from_onnx(&a, 9).unwrap();
        assert!(matches!(a.finish(), Err(OpError::UnknownAttribute(_))));
        let a = attrs(vec![("training_mode", AttrValue::Int(0))]);
        BatchNormalization::from_onnx(&a, 14).unwrap();
        a.finish().unwrap();
        let a = attrs(vec![("training_mode", AttrValue::Int(1))]);
        assert!(matches!(BatchNormalization::from_onnx(&a, 14), Err(OpError::Unsupported(_))));
        let a = attrs(vec![("spatial", AttrValue::Int(2))]);
        assert!(matches!(BatchNormalization::from_onnx(&a, 7), Err(OpError::Attribute { .. })));
    }

    #[test]
    fn batchnorm_infer_checks_channel_count_and_keeps_batch_symbol() {
        let bn = BatchNormalization::from_onnx(&Attrs::default(), 9).unwrap();
        let x = Fact::new(DType::F32, vec![Dim::Sym("N".into()), Dim::Known(64), Dim::Known(7), Dim::Known(7)]);
        let good = Fact::known(DType::F32, &[64]);
        let bad = Fact::known(DType::F32, &[32]);
        let out = bn.infer(&[Some(&x), Some(&good), Some(&good), Some(&good), Some(&good)]).unwrap();
        assert_eq!(out[0].shape, x.shape);
        let err = bn.infer(&[Some(&x), Some(&good), Some(&good), Some(&bad), Some(&good)]).unwrap_err();
        assert_eq!(err, OpError::shape("mean must have shape [C] for X float32[N,64,7,7], got float32[32]"));
        assert!(matches!(bn.infer(&[Some(&x), Some(&good)]), Err(OpError::Arity { .. })));
        let ints = Fact::known(DType::I64, &[64]);
        assert!(matches!(
            bn.infer(&[Some(&x), Some(&good), Some(&ints), Some(&good), Some(&good)]),
            Err(OpError::DType { input: 2, .. })
        ));
    }

    #[test]
    fn batchnorm_eval_rejects_bad_inputs() {
        let bn = BatchNormalization::from_onnx(&Attrs::default(), 15).unwrap();
        let x = vec1(&[1.0, 2.0]);
        let s = vec1(&[1.0]);
        assert!(matches!(bn.eval(&[Some(&x), Some(&s), Some(&s), Some(&s), Some(&s)]), Err(OpError::Shape(_))));
        let x = Tensor::from_f32(vec![1, 2], vec![1.0, 2.0]);
        assert!(matches!(bn.eval(&[Some(&x), Some(&s), Some(&s), Some(&s), Some(&s)]), Err(OpError::Shape(_))));
        assert_eq!(bn.eval(&[Some(&x), Some(&s), None, Some(&s), Some(&s)]).unwrap_err(), OpError::MissingInput(2));
        // Empty batch: no elements, no panic.
        let empty = Tensor::from_f32(vec![0, 1], vec![]);
        assert_eq!(bn.eval(&[Some(&empty), Some(&s), Some(&s), Some(&s), Some(&s)]).unwrap()[0].len(), 0);
    }
}
