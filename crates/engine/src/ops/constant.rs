//! Constant: a node with no inputs whose single output is a tensor stored in an attribute.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Constant.html>.
//!
//! Opset history: 1–9 `value` (tensor); 11 adds `sparse_value`; 12 adds `value_float`,
//! `value_floats`, `value_int`, `value_ints`, `value_string`, `value_strings`. Exactly one of
//! them must be set. We support `value` and, from opset 12, the four numeric shorthands
//! (`value_float` is a float32 scalar, `value_floats` a 1-D float32 tensor, `value_int(s)`
//! the same in int64). `sparse_value` and the string forms are [`OpError::Unsupported`].
//! An attribute not defined at the model's opset is rejected as unknown.

use std::sync::Arc;

use crate::error::OpError;
use crate::fact::Fact;
use crate::ops::{check_arity, Attrs, OpDef};
use crate::tensor::Tensor;

#[derive(Debug, Clone)]
pub struct Constant {
    pub value: Arc<Tensor>,
}

impl Constant {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        if opset >= 11 && a.has("sparse_value") {
            return Err(OpError::Unsupported("Constant with a sparse_value is not supported".into()));
        }
        let mut found: Vec<(&str, Tensor)> = Vec::new();
        if let Some(t) = a.tensor_opt("value")? {
            found.push(("value", t));
        }
        if opset >= 12 {
            for name in ["value_string", "value_strings"] {
                if a.has(name) {
                    return Err(OpError::Unsupported(format!(
                        "Constant with {name} (string tensors) is not supported"
                    )));
                }
            }
            if let Some(v) = a.float_opt("value_float")? {
                found.push(("value_float", Tensor::from_f32(vec![], vec![v])));
            }
            if let Some(v) = a.floats_opt("value_floats")? {
                found.push(("value_floats", Tensor::from_f32(vec![v.len()], v)));
            }
            if let Some(v) = a.int_opt("value_int")? {
                found.push(("value_int", Tensor::from_i64(vec![], vec![v])));
            }
            if let Some(v) = a.ints_opt("value_ints")? {
                found.push(("value_ints", Tensor::from_i64(vec![v.len()], v)));
            }
        }
        match found.len() {
            0 => {
                let names: Vec<&str> = a.names().collect();
                let detail = if names.is_empty() {
                    "Constant needs exactly one value attribute, found none".to_string()
                } else {
                    format!(
                        "Constant needs exactly one value attribute valid at opset {opset}, found only {}",
                        names.join(", ")
                    )
                };
                Err(OpError::attr("value", detail))
            }
            1 => Ok(Constant { value: Arc::new(found.remove(0).1) }),
            _ => {
                let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
                Err(OpError::attr(
                    names[1],
                    format!("Constant needs exactly one value attribute, found {}", names.join(", ")),
                ))
            }
        }
    }
}

impl OpDef for Constant {
    fn onnx_type(&self) -> &'static str {
        "Constant"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 0, 0)?;
        Ok(vec![Fact::constant(self.value.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 0, 0)?;
        Ok(vec![(*self.value).clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;

    fn parse(items: Vec<(&str, AttrValue)>, opset: i64) -> Result<Constant, OpError> {
        let a = Attrs::new(items.into_iter().map(|(n, v)| (n.to_string(), v)).collect());
        let c = Constant::from_onnx(&a, opset)?;
        a.finish()?;
        Ok(c)
    }

    #[test]
    fn constant_value_tensor_becomes_a_constant_fact() {
        let t = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let c = parse(vec![("value", AttrValue::Tensor(t.clone()))], 7).unwrap();
        assert_eq!(c.eval(&[]).unwrap(), vec![t.clone()]);
        let f = c.infer(&[]).unwrap().remove(0);
        assert_eq!(f.value.as_deref(), Some(&t));
        assert_eq!(f.concrete_shape(), Some(vec![2, 2]));
    }

    #[test]
    fn constant_numeric_shorthands_from_opset_12() {
        let c = parse(vec![("value_float", AttrValue::Float(1.5))], 12).unwrap();
        assert_eq!(*c.value, Tensor::from_f32(vec![], vec![1.5]));
        let c = parse(vec![("value_floats", AttrValue::Floats(vec![1.0, 2.0]))], 13).unwrap();
        assert_eq!(*c.value, Tensor::from_f32(vec![2], vec![1.0, 2.0]));
        let c = parse(vec![("value_int", AttrValue::Int(-3))], 12).unwrap();
        assert_eq!(*c.value, Tensor::from_i64(vec![], vec![-3]));
        let c = parse(vec![("value_ints", AttrValue::Ints(vec![1, 2, 3]))], 25).unwrap();
        assert_eq!(*c.value, Tensor::from_i64(vec![3], vec![1, 2, 3]));
    }

    #[test]
    fn constant_shorthand_before_opset_12_is_unknown() {
        let err = parse(vec![("value_int", AttrValue::Int(1))], 11).unwrap_err();
        assert!(err.to_string().contains("opset 11, found only value_int"), "{err}");
    }

    #[test]
    fn constant_rejects_strings_sparse_none_and_two_values() {
        let e = parse(vec![("value_string", AttrValue::String("a".into()))], 12).unwrap_err();
        assert!(matches!(e, OpError::Unsupported(_)));
        let e = parse(vec![("sparse_value", AttrValue::Other("sparse_tensor"))], 11).unwrap_err();
        assert!(matches!(e, OpError::Unsupported(_)));
        assert!(matches!(parse(vec![], 13), Err(OpError::Attribute { .. })));
        let two = vec![("value_int", AttrValue::Int(1)), ("value_float", AttrValue::Float(1.0))];
        assert!(matches!(parse(two, 13), Err(OpError::Attribute { .. })));
    }

    #[test]
    fn constant_takes_no_inputs() {
        let c = parse(vec![("value_int", AttrValue::Int(1))], 13).unwrap();
        let x = Tensor::from_i64(vec![], vec![0]);
        assert!(matches!(c.eval(&[Some(&x)]), Err(OpError::Arity { .. })));
    }
}
