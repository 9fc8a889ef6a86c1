//! Clip: limits every element to `[min, max]`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Clip.html>.
//!
//! Opset history that matters:
//! - 6: float attributes `min` and `max` (defaults: the lowest and highest float).
//! - 11: `min` and `max` become optional scalar inputs 1 and 2 (an empty name means absent).
//! - 12: integer element types; 13: bfloat16.
//!
//! Both forms map onto [`Bounds`]. We support float32 at every opset and, from opset 11,
//! int64 and int32 (absent bounds default to the type's extremes). Bounds must be scalars (we
//! also accept one-element tensors, like ONNX Runtime) of the input's type.
//!
//! Semantics follow the spec's function body, `y = max < t ? max : t` with
//! `t = x < min ? min : x`: when `min > max` every element becomes `max`
//! (`test_clip_min_greater_than_max`), and NaN passes through.

use crate::error::OpError;
use crate::fact::Fact;
use crate::ops::{check_arity, required, Attrs, OpDef};
use crate::tensor::{DType, Tensor, TensorData};

/// Where the limits come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Bounds {
    /// Opset < 11: the attributes (`-inf`/`+inf` when absent).
    Attrs { min: f32, max: f32 },
    /// Opset ≥ 11: optional inputs 1 and 2.
    Inputs,
}

#[derive(Debug, Clone)]
pub struct Clip {
    pub bounds: Bounds,
}

impl Clip {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        let bounds = if opset < 11 {
            Bounds::Attrs { min: a.float("min", f32::NEG_INFINITY)?, max: a.float("max", f32::INFINITY)? }
        } else {
            Bounds::Inputs
        };
        Ok(Clip { bounds })
    }

    fn max_inputs(&self) -> usize {
        match self.bounds {
            Bounds::Attrs { .. } => 1,
            Bounds::Inputs => 3,
        }
    }
}

/// The spec's clip: `min > max` yields `max`; NaN stays NaN.
fn clip<T: PartialOrd + Copy>(x: T, lo: T, hi: T) -> T {
    let t = if x < lo { lo } else { x };
    if hi < t {
        hi
    } else {
        t
    }
}

/// Bound input `i` (1 = min, 2 = max): must hold one element of the input's type.
fn bound<'a>(inputs: &[Option<&'a Tensor>], i: usize, x: &Tensor) -> Result<Option<&'a Tensor>, OpError> {
    let Some(t) = inputs.get(i).copied().flatten() else { return Ok(None) };
    if t.dtype() != x.dtype() {
        return Err(OpError::DType { input: i, dtype: t.dtype(), expected: x.dtype().name() });
    }
    if t.len() != 1 {
        return Err(OpError::shape(format!("Clip's {} must be a scalar, got shape {:?}", bound_name(i), t.shape())));
    }
    Ok(Some(t))
}

fn bound_name(i: usize) -> &'static str {
    if i == 1 {
        "min"
    } else {
        "max"
    }
}

fn clip_all<T: PartialOrd + Copy>(v: &[T], lo: Option<&[T]>, hi: Option<&[T]>, lowest: T, highest: T) -> Vec<T> {
    let lo = lo.map_or(lowest, |s| s[0]);
    let hi = hi.map_or(highest, |s| s[0]);
    v.iter().map(|&x| clip(x, lo, hi)).collect()
}

impl OpDef for Clip {
    fn onnx_type(&self) -> &'static str {
        "Clip"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, self.max_inputs())?;
        let x = required(inputs, 0)?;
        match (&self.bounds, x.dtype) {
            (_, None | Some(DType::F32)) | (Bounds::Inputs, Some(DType::I64 | DType::I32)) => {}
            (Bounds::Attrs { .. }, Some(d)) => return Err(OpError::DType { input: 0, dtype: d, expected: "float32" }),
            (Bounds::Inputs, Some(d)) => {
                return Err(OpError::DType { input: 0, dtype: d, expected: "float32, int64 or int32" })
            }
        }
        for (i, b) in inputs.iter().enumerate().skip(1) {
            let Some(b) = b else { continue };
            if let (Some(bd), Some(xd)) = (b.dtype, x.dtype) {
                if bd != xd {
                    return Err(OpError::DType { input: i, dtype: bd, expected: xd.name() });
                }
            }
            if b.concrete_shape().is_some_and(|s| s.iter().product::<usize>() != 1) {
                return Err(OpError::shape(format!("Clip's {} must be a scalar, got {b}", bound_name(i))));
            }
        }
        Ok(vec![Fact { dtype: x.dtype, shape: x.shape.clone(), value: None }])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, self.max_inputs())?;
        let x = required(inputs, 0)?;
        let (lo, hi) = (bound(inputs, 1, x)?, bound(inputs, 2, x)?);
        let data = match (&self.bounds, x.data()) {
            (&Bounds::Attrs { min, max }, TensorData::F32(v)) => {
                TensorData::F32(v.iter().map(|&e| clip(e, min, max)).collect())
            }
            (Bounds::Attrs { .. }, _) => {
                return Err(OpError::DType { input: 0, dtype: x.dtype(), expected: "float32" });
            }
            (Bounds::Inputs, TensorData::F32(v)) => TensorData::F32(clip_all(
                v,
                lo.and_then(Tensor::as_f32),
                hi.and_then(Tensor::as_f32),
                f32::NEG_INFINITY,
                f32::INFINITY,
            )),
            (Bounds::Inputs, TensorData::I64(v)) => TensorData::I64(clip_all(
                v,
                lo.and_then(Tensor::as_i64),
                hi.and_then(Tensor::as_i64),
                i64::MIN,
                i64::MAX,
            )),
            (Bounds::Inputs, TensorData::I32(v)) => TensorData::I32(clip_all(
                v,
                lo.and_then(Tensor::as_i32),
                hi.and_then(Tensor::as_i32),
                i32::MIN,
                i32::MAX,
            )),
        };
        Ok(vec![Tensor::new(x.shape().to_vec(), data).expect("same length as the input")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fact::Dim;
    use crate::ops::AttrValue;

    fn f32t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data.to_vec())
    }

    fn scalar(v: f32) -> Tensor {
        Tensor::from_f32(vec![], vec![v])
    }

    fn clip13() -> Clip {
        Clip::from_onnx(&Attrs::default(), 13).unwrap()
    }

    #[test]
    fn clip_with_min_and_max_inputs() {
        // ONNX test_clip_example and test_clip_splitbounds.
        let x = f32t(&[3], &[-2.0, 0.0, 2.0]);
        let y = clip13().eval(&[Some(&x), Some(&scalar(-1.0)), Some(&scalar(1.0))]).unwrap();
        assert_eq!(y[0], f32t(&[3], &[-1.0, 0.0, 1.0]));
        let x = f32t(&[3], &[-1.0, 0.0, 6.0]);
        let y = clip13().eval(&[Some(&x), Some(&scalar(-5.0)), Some(&scalar(5.0))]).unwrap();
        assert_eq!(y[0], f32t(&[3], &[-1.0, 0.0, 5.0]));
    }

    #[test]
    fn clip_min_greater_than_max_gives_max() {
        // ONNX test_clip_min_greater_than_max.
        let x = f32t(&[3], &[-2.0, 0.0, 6.0]);
        let y = clip13().eval(&[Some(&x), Some(&scalar(2.0)), Some(&scalar(1.0))]).unwrap();
        assert_eq!(y[0], f32t(&[3], &[1.0, 1.0, 1.0]));
    }

    #[test]
    fn clip_absent_bounds_are_unbounded() {
        // ONNX test_clip_default_max: Clip(x, "", max).
        let x = f32t(&[3], &[-3.0, 0.5, 2.0]);
        let y = clip13().eval(&[Some(&x), None, Some(&scalar(0.0))]).unwrap();
        assert_eq!(y[0], f32t(&[3], &[-3.0, 0.0, 0.0]));
        let y = clip13().eval(&[Some(&x), None, None]).unwrap();
        assert_eq!(y[0], x);
        let y = clip13().eval(&[Some(&x), Some(&scalar(0.0))]).unwrap();
        assert_eq!(y[0], f32t(&[3], &[0.0, 0.5, 2.0]));
    }

    #[test]
    fn clip_old_opset_reads_attributes() {
        let a = Attrs::new(vec![("min".into(), AttrValue::Float(0.0)), ("max".into(), AttrValue::Float(6.0))]);
        let c = Clip::from_onnx(&a, 7).unwrap();
        a.finish().unwrap();
        let x = f32t(&[3], &[-1.0, 3.0, 9.0]);
        assert_eq!(c.eval(&[Some(&x)]).unwrap()[0], f32t(&[3], &[0.0, 3.0, 6.0]));
        // Inputs were not defined before opset 11.
        assert!(matches!(c.eval(&[Some(&x), Some(&scalar(0.0))]), Err(OpError::Arity { .. })));
        // Attributes are not defined from opset 11.
        let a = Attrs::new(vec![("min".into(), AttrValue::Float(0.0))]);
        Clip::from_onnx(&a, 11).unwrap();
        assert!(matches!(a.finish(), Err(OpError::UnknownAttribute(_))));
    }

    #[test]
    fn clip_integers() {
        let x = Tensor::from_i64(vec![3], vec![-5, 1, 9]);
        let lo = Tensor::from_i64(vec![], vec![0]);
        let y = clip13().eval(&[Some(&x), Some(&lo), None]).unwrap();
        assert_eq!(y[0], Tensor::from_i64(vec![3], vec![0, 1, 9]));
        let x = Tensor::from_i32(vec![2], vec![-5, 9]);
        let hi = Tensor::from_i32(vec![1], vec![3]);
        let y = clip13().eval(&[Some(&x), None, Some(&hi)]).unwrap();
        assert_eq!(y[0], Tensor::from_i32(vec![2], vec![-5, 3]));
    }

    #[test]
    fn clip_keeps_nan() {
        let x = f32t(&[1], &[f32::NAN]);
        let y = clip13().eval(&[Some(&x), Some(&scalar(0.0)), Some(&scalar(1.0))]).unwrap();
        assert!(y[0].as_f32().unwrap()[0].is_nan());
    }

    #[test]
    fn clip_rejects_bad_bounds() {
        let x = f32t(&[2], &[0.0, 1.0]);
        let wide = f32t(&[2], &[0.0, 1.0]);
        assert!(matches!(clip13().eval(&[Some(&x), Some(&wide)]), Err(OpError::Shape(_))));
        let int = Tensor::from_i64(vec![], vec![0]);
        assert!(matches!(clip13().eval(&[Some(&x), Some(&int)]), Err(OpError::DType { input: 1, .. })));
        let fx = Fact::new(DType::F32, vec![Dim::Sym("N".into())]);
        let fw = Fact::known(DType::F32, &[2]);
        assert!(matches!(clip13().infer(&[Some(&fx), Some(&fw)]), Err(OpError::Shape(_))));
        let fs = Fact::known(DType::F32, &[]);
        assert_eq!(clip13().infer(&[Some(&fx), Some(&fs), None]).unwrap()[0].shape, fx.shape);
    }
}
