//! Flatten: reshapes a tensor to 2-D, `[d0*…*d(axis-1), d(axis)*…*d(r-1)]`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Flatten.html>
//!
//! | opset | change |
//! |---|---|
//! | 1 | `axis` (default 1) in `[0, rank]`; `axis = 0` gives `[1, total]` |
//! | 9 | any element type (no semantic change for us) |
//! | 11 | negative `axis` (counts from the back), range `[-rank, rank]` |
//! | 13, 21, 23, 24, 25 | more element types |
//!
//! Supported: opsets 7..=25, any of our element types. A negative `axis` before opset 11 is
//! rejected (it has no meaning there).

use crate::error::OpError;
use crate::fact::{Dim, Fact};
use crate::ops::{check_arity, required, Attrs, OpDef};
use crate::tensor::{numel, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct Flatten {
    /// Split point: dims before it form the rows. Default 1; may be negative (from opset 11).
    pub axis: i64,
}

impl Flatten {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        let axis = a.int("axis", 1)?;
        if axis < 0 && opset < 11 {
            return Err(OpError::attr("axis", format!("negative axis {axis} needs opset 11 or later")));
        }
        Ok(Flatten { axis })
    }

    /// The split point for a tensor of rank `rank` (`0..=rank`).
    pub fn split(&self, rank: usize) -> Result<usize, OpError> {
        let r = rank as i64;
        let a = if self.axis < 0 { self.axis + r } else { self.axis };
        if a < 0 || a > r {
            return Err(OpError::shape(format!("Flatten axis {} is out of range for rank {rank}", self.axis)));
        }
        Ok(a as usize)
    }
}

/// The product of dims: a number when all are known; the one symbol when the others multiply
/// to 1 (`[N,1,1]` → `N`); otherwise unknown.
pub fn dim_product(dims: &[Dim]) -> Dim {
    let known: usize = dims.iter().filter_map(Dim::known).product();
    let syms: Vec<&Dim> = dims.iter().filter(|d| d.known().is_none()).collect();
    match syms.as_slice() {
        [] => Dim::Known(known),
        [one] if known == 1 => (*one).clone(),
        _ if known == 0 => Dim::Known(0),
        _ => Dim::unknown(),
    }
}

impl OpDef for Flatten {
    fn onnx_type(&self) -> &'static str {
        "Flatten"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = required(inputs, 0)?;
        let out = match &x.shape {
            Some(dims) => {
                let k = self.split(dims.len())?;
                Fact {
                    dtype: x.dtype,
                    shape: Some(vec![dim_product(&dims[..k]), dim_product(&dims[k..])]),
                    value: None,
                }
            }
            None => Fact { dtype: x.dtype, shape: Some(vec![Dim::unknown(), Dim::unknown()]), value: None },
        };
        Ok(vec![out])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x = required(inputs, 0)?;
        let k = self.split(x.rank())?;
        let shape = vec![numel(&x.shape()[..k]), numel(&x.shape()[k..])];
        let out = x.clone().reshaped(shape).expect("flattening keeps the element count");
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;
    use crate::tensor::DType;

    fn flatten(axis: Option<i64>, opset: i64) -> Result<Flatten, OpError> {
        let a = Attrs::new(axis.map(|v| ("axis".to_string(), AttrValue::Int(v))).into_iter().collect());
        let op = Flatten::from_onnx(&a, opset)?;
        a.finish()?;
        Ok(op)
    }

    fn out_shape(op: &Flatten, shape: &[usize]) -> Vec<usize> {
        let x = Tensor::zeros(shape.to_vec());
        op.eval(&[Some(&x)]).unwrap()[0].shape().to_vec()
    }

    #[test]
    fn flatten_matches_onnx_node_tests_shapes() {
        // test_flatten_*: input (2, 3, 4, 5).
        let s = [2, 3, 4, 5];
        assert_eq!(out_shape(&flatten(None, 13).unwrap(), &s), vec![2, 60]);
        assert_eq!(out_shape(&flatten(Some(0), 13).unwrap(), &s), vec![1, 120]);
        assert_eq!(out_shape(&flatten(Some(2), 13).unwrap(), &s), vec![6, 20]);
        assert_eq!(out_shape(&flatten(Some(4), 13).unwrap(), &s), vec![120, 1]);
        assert_eq!(out_shape(&flatten(Some(-1), 13).unwrap(), &s), vec![24, 5]);
        assert_eq!(out_shape(&flatten(Some(-4), 13).unwrap(), &s), vec![1, 120]);
    }

    #[test]
    fn flatten_keeps_data_order() {
        let x = Tensor::from_i64(vec![2, 2], vec![1, 2, 3, 4]);
        let y = flatten(Some(0), 7).unwrap().eval(&[Some(&x)]).unwrap().remove(0);
        assert_eq!(y, Tensor::from_i64(vec![1, 4], vec![1, 2, 3, 4]));
    }

    #[test]
    fn flatten_rejects_negative_axis_before_opset_11_and_out_of_range_axis() {
        assert!(matches!(flatten(Some(-1), 9), Err(OpError::Attribute { .. })));
        let op = flatten(Some(5), 13).unwrap();
        assert!(matches!(op.eval(&[Some(&Tensor::zeros(vec![2, 3, 4, 5]))]), Err(OpError::Shape(_))));
        assert!(matches!(op.infer(&[Some(&Fact::known(DType::F32, &[2, 3]))]), Err(OpError::Shape(_))));
    }

    #[test]
    fn flatten_passes_the_batch_symbol_through() {
        let x = Fact::new(DType::F32, vec![Dim::Sym("N".into()), Dim::Known(2048), Dim::Known(1), Dim::Known(1)]);
        let f = flatten(None, 7).unwrap().infer(&[Some(&x)]).unwrap().remove(0);
        assert_eq!(f.shape.unwrap(), vec![Dim::Sym("N".into()), Dim::Known(2048)]);
    }

    #[test]
    fn dim_product_cases() {
        let n = Dim::Sym("N".into());
        assert_eq!(dim_product(&[]), Dim::Known(1));
        assert_eq!(dim_product(&[Dim::Known(2), Dim::Known(3)]), Dim::Known(6));
        assert_eq!(dim_product(&[n.clone(), Dim::Known(1)]), n);
        assert_eq!(dim_product(&[n.clone(), Dim::Known(2)]), Dim::unknown());
        assert_eq!(dim_product(&[n, Dim::Known(0)]), Dim::Known(0));
    }
}
