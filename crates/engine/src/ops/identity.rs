//! Identity: the output is the input, of any element type.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Identity.html>.
//!
//! Opset history: 13 added bfloat16; 14 and 16 allow sequence and optional values, which our
//! graphs do not carry; 19–24 add element types. No attributes at any opset. A constant input
//! stays constant: the output fact keeps the input's value.

use crate::error::OpError;
use crate::fact::Fact;
use crate::ops::{check_arity, required, Attrs, OpDef};
use crate::tensor::Tensor;

#[derive(Debug, Clone)]
pub struct Identity {}

impl Identity {
    pub fn from_onnx(_a: &Attrs, _opset: i64) -> Result<Self, OpError> {
        Ok(Identity {})
    }
}

impl OpDef for Identity {
    fn onnx_type(&self) -> &'static str {
        "Identity"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, 1)?;
        Ok(vec![required(inputs, 0)?.clone()])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, 1)?;
        Ok(vec![required(inputs, 0)?.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn identity_passes_tensors_and_constant_facts_through() {
        let x = Tensor::from_i64(vec![2], vec![4, 5]);
        assert_eq!(Identity {}.eval(&[Some(&x)]).unwrap(), vec![x.clone()]);
        let f = Fact::constant(Arc::new(x.clone()));
        let out = Identity {}.infer(&[Some(&f)]).unwrap();
        assert_eq!(out[0].value.as_deref(), Some(&x));
    }

    #[test]
    fn identity_requires_its_input() {
        assert_eq!(Identity {}.eval(&[None]).unwrap_err(), OpError::MissingInput(0));
        assert!(matches!(Identity {}.eval(&[]), Err(OpError::Arity { .. })));
    }
}
