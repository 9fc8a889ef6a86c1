//! Relu: `y = max(x, 0)` elementwise.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Relu.html>.
//!
//! Opset history: 6 dropped `consumed_inputs` (we load opset ≥ 7, where Relu has no
//! attributes); 13 added bfloat16; 14 added the signed integer types. We support float32,
//! int64 and int32 at every opset (ints before 14 are a harmless superset). NaN propagates
//! (`x < 0` is false for NaN), as in ONNX Runtime and numpy's `maximum`.

use crate::error::OpError;
use crate::fact::Fact;
use crate::ops::{check_arity, required, Attrs, OpDef};
use crate::tensor::{DType, Tensor, TensorData};

#[derive(Debug, Clone)]
pub struct Relu {}

impl Relu {
    pub fn from_onnx(_a: &Attrs, _opset: i64) -> Result<Self, OpError> {
        Ok(Relu {})
    }
}

impl OpDef for Relu {
    fn onnx_type(&self) -> &'static str {
        "Relu"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = required(inputs, 0)?;
        if let Some(d @ DType::Unsupported(_)) = x.dtype {
            return Err(OpError::DType { input: 0, dtype: d, expected: "float32, int64 or int32" });
        }
        Ok(vec![Fact { dtype: x.dtype, shape: x.shape.clone(), value: None }])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = required(inputs, 0)?;
        let data = match x.data() {
            TensorData::F32(v) => TensorData::F32(v.iter().map(|&a| if a < 0.0 { 0.0 } else { a }).collect()),
            TensorData::I64(v) => TensorData::I64(v.iter().map(|&a| a.max(0)).collect()),
            TensorData::I32(v) => TensorData::I32(v.iter().map(|&a| a.max(0)).collect()),
        };
        Ok(vec![Tensor::new(x.shape().to_vec(), data).expect("same length as the input")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fact::Dim;

    #[test]
    fn relu_zeroes_negatives_and_keeps_nan() {
        let x = Tensor::from_f32(vec![2, 2], vec![-1.0, 0.0, 2.5, f32::NAN]);
        let y = Relu {}.eval(&[Some(&x)]).unwrap().remove(0);
        let v = y.as_f32().unwrap();
        assert_eq!(&v[..3], &[0.0, 0.0, 2.5]);
        assert!(v[3].is_nan());
        assert_eq!(y.shape(), &[2, 2]);
    }

    #[test]
    fn relu_on_integers() {
        let x = Tensor::from_i64(vec![3], vec![-5, 0, 7]);
        assert_eq!(Relu {}.eval(&[Some(&x)]).unwrap()[0], Tensor::from_i64(vec![3], vec![0, 0, 7]));
        let x = Tensor::from_i32(vec![2], vec![-5, 7]);
        assert_eq!(Relu {}.eval(&[Some(&x)]).unwrap()[0], Tensor::from_i32(vec![2], vec![0, 7]));
    }

    #[test]
    fn relu_infer_keeps_shape_and_checks_arity() {
        let x = Fact::new(DType::F32, vec![Dim::Sym("N".into()), Dim::Known(64)]);
        let out = Relu {}.infer(&[Some(&x)]).unwrap();
        assert_eq!(out[0].shape, x.shape);
        assert!(matches!(Relu {}.infer(&[Some(&x), Some(&x)]), Err(OpError::Arity { .. })));
        let bad = Fact::known(DType::Unsupported(11), &[1]);
        assert!(matches!(Relu {}.infer(&[Some(&bad)]), Err(OpError::DType { .. })));
    }
}
