//! Dropout at inference: the output is the input.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Dropout.html>.
//!
//! Opset history that matters:
//! - 7: `is_test` is gone; attribute `ratio` (default 0.5); optional output `mask`.
//! - 10: `mask` becomes bool.
//! - 12: `ratio` becomes an optional input; optional input `training_mode` (bool, default
//!   false); attribute `seed`. 13 and 22 add element types.
//!
//! This engine runs inference only, where Dropout is the identity whatever the ratio: `ratio`
//! (attribute or input) and `seed` are read and ignored. A `training_mode` input must be a
//! known constant false: true, or a value not known at load time, is
//! [`OpError::Unsupported`]. The `mask` output is bool, a type we cannot store: inference
//! returns one output, so a node that asks for the mask fails at load time with the graph's
//! "declares 2 outputs but the op produces 1".

use crate::error::OpError;
use crate::fact::Fact;
use crate::ops::{check_arity, required, Attrs, OpDef};
use crate::tensor::{Tensor, TensorData};

#[derive(Debug, Clone)]
pub struct Dropout {
    /// Opset ≥ 12: `ratio` and `training_mode` may be inputs.
    pub takes_ratio_input: bool,
    /// The `ratio` attribute of opsets < 12 (default 0.5); from opset 12 the ratio is input 1
    /// (default 0.5) and this holds 0.5. Inference ignores it; training uses it.
    pub ratio: f32,
}

impl Dropout {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        let takes_ratio_input = opset >= 12;
        let ratio = if takes_ratio_input {
            a.ignore("seed");
            0.5
        } else {
            a.float("ratio", 0.5)?
        };
        Ok(Dropout { takes_ratio_input, ratio })
    }

    fn max_inputs(&self) -> usize {
        if self.takes_ratio_input {
            3
        } else {
            1
        }
    }
}

fn training_error() -> OpError {
    OpError::Unsupported("training-mode Dropout is not supported (this engine runs inference only)".into())
}

/// Whether a stored `training_mode` value is true (any non-zero element).
fn is_training(t: &Tensor) -> bool {
    match t.data() {
        TensorData::F32(v) => v.iter().any(|&x| x != 0.0),
        TensorData::I64(v) => v.iter().any(|&x| x != 0),
        TensorData::I32(v) => v.iter().any(|&x| x != 0),
    }
}

impl OpDef for Dropout {
    fn onnx_type(&self) -> &'static str {
        "Dropout"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, self.max_inputs())?;
        let x = required(inputs, 0)?;
        if let Some(Some(mode)) = inputs.get(2) {
            match &mode.value {
                Some(t) if is_training(t) => return Err(training_error()),
                Some(_) => {}
                None => {
                    return Err(OpError::Unsupported(
                        "Dropout's training_mode input must be a constant false (inference only)".into(),
                    ))
                }
            }
        }
        Ok(vec![x.clone()])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, self.max_inputs())?;
        if let Some(Some(mode)) = inputs.get(2) {
            if is_training(mode) {
                return Err(training_error());
            }
        }
        Ok(vec![required(inputs, 0)?.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;
    use crate::tensor::DType;
    use std::sync::Arc;

    fn parse(items: Vec<(&str, AttrValue)>, opset: i64) -> Result<Dropout, OpError> {
        let a = Attrs::new(items.into_iter().map(|(n, v)| (n.to_string(), v)).collect());
        let d = Dropout::from_onnx(&a, opset)?;
        a.finish()?;
        Ok(d)
    }

    #[test]
    fn dropout_is_identity_at_inference() {
        // ONNX test_dropout_random_old: ratio 0.2 at opset 11 still returns the input.
        let d = parse(vec![("ratio", AttrValue::Float(0.2))], 11).unwrap();
        let x = Tensor::from_f32(vec![3], vec![-1.0, 0.0, 1.0]);
        assert_eq!(d.eval(&[Some(&x)]).unwrap(), vec![x.clone()]);
        // ONNX test_dropout_default_ratio: ratio input and seed at opset 22.
        let d = parse(vec![("seed", AttrValue::Int(0))], 22).unwrap();
        let r = Tensor::from_f32(vec![], vec![0.1]);
        assert_eq!(d.eval(&[Some(&x), Some(&r)]).unwrap(), vec![x]);
    }

    #[test]
    fn dropout_attributes_follow_opset() {
        assert!(matches!(parse(vec![("seed", AttrValue::Int(0))], 10), Err(OpError::UnknownAttribute(_))));
        assert!(matches!(parse(vec![("ratio", AttrValue::Float(0.5))], 12), Err(OpError::UnknownAttribute(_))));
        let old = parse(vec![], 7).unwrap();
        let x = Fact::known(DType::F32, &[2]);
        assert!(matches!(old.infer(&[Some(&x), Some(&x)]), Err(OpError::Arity { .. })));
    }

    #[test]
    fn dropout_rejects_training_mode() {
        let d = parse(vec![], 13).unwrap();
        let x = Fact::known(DType::F32, &[2]);
        let on = Fact::constant(Arc::new(Tensor::from_i64(vec![], vec![1])));
        let off = Fact::constant(Arc::new(Tensor::from_i64(vec![], vec![0])));
        let unknown = Fact::known(DType::Unsupported(9), &[]);
        assert!(matches!(d.infer(&[Some(&x), None, Some(&on)]), Err(OpError::Unsupported(_))));
        assert!(matches!(d.infer(&[Some(&x), None, Some(&unknown)]), Err(OpError::Unsupported(_))));
        assert_eq!(d.infer(&[Some(&x), None, Some(&off)]).unwrap()[0].shape, x.shape);
        let t = Tensor::from_f32(vec![1], vec![1.0]);
        let on = Tensor::from_i64(vec![], vec![1]);
        assert!(matches!(d.eval(&[Some(&t), None, Some(&on)]), Err(OpError::Unsupported(_))));
    }
}
