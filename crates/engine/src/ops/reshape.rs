//! Reshape: the same elements, in the same order, under another shape.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Reshape.html>
//!
//! | opset | change |
//! |---|---|
//! | 1 | target shape as the `shape` attribute (not loaded: older than opset 7) |
//! | 5 | target shape as int64 input 1; `0` copies the input's dim at that position, one `-1` is inferred |
//! | 13, 19, 21, 23, 24, 25 | more element types (no semantic change) |
//! | 14 | `allowzero` (default 0): when 1, a `0` means a zero-sized dim, and `0` together with `-1` is an error |
//!
//! Supported: opsets 7..=25, any of our element types. `allowzero` is read from opset 14 on.
//!
//! Shape inference with a constant target resolves symbols where it can: the symbols of the
//! input that `0` entries copy cancel out, so `[N,2048,1,1]` reshaped by `(0,-1)` is
//! `[N,2048]` (the zoo's v2 ResNets end that way), and `[N,2048]` by `(-1,2048)` is `[N,2048]`.

use crate::error::OpError;
use crate::fact::{fmt_shape, Dim, Fact};
use crate::ops::shape::{const_i64, i64_list, known_len};
use crate::ops::{check_arity, required, Attrs, OpDef};
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq)]
pub struct Reshape {
    /// A `0` in the target means a zero-sized dim instead of "copy the input dim". Default false.
    pub allowzero: bool,
}

impl Reshape {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        let allowzero = if opset >= 14 {
            match a.int("allowzero", 0)? {
                0 => false,
                1 => true,
                v => return Err(OpError::attr("allowzero", format!("expected 0 or 1, found {v}"))),
            }
        } else {
            false
        };
        Ok(Reshape { allowzero })
    }

    /// The output dims for `input` reshaped by `target` (the shape input's values). Works on
    /// symbolic dims; with all-known input dims the result is all known (or an error).
    pub fn resolve(&self, input: &[Dim], target: &[i64]) -> Result<Vec<Dim>, OpError> {
        let show = || format!("input shape {} with target shape {target:?}", fmt_shape(input));
        let mut inferred = None;
        let mut out = Vec::with_capacity(target.len());
        let mut copied = vec![false; input.len()];
        for (i, &v) in target.iter().enumerate() {
            match v {
                -1 => {
                    if inferred.replace(i).is_some() {
                        return Err(OpError::shape(format!("more than one -1 in the target: {}", show())));
                    }
                    out.push(Dim::unknown());
                }
                0 if !self.allowzero => {
                    let d = input.get(i).ok_or_else(|| {
                        OpError::shape(format!(
                            "target entry {i} is 0 (copy) but the input has rank {}: {}",
                            input.len(),
                            show()
                        ))
                    })?;
                    copied[i] = true;
                    out.push(d.clone());
                }
                v if v >= 0 => out.push(Dim::Known(v as usize)),
                v => return Err(OpError::shape(format!("invalid target dim {v}: {}", show()))),
            }
        }
        if self.allowzero && inferred.is_some() && target.contains(&0) {
            return Err(OpError::shape(format!("allowzero=1 with both 0 and -1 in the target: {}", show())));
        }
        // Dims a `0` copied hold the same elements on both sides: leave them out of the count.
        let mut rest_in: Vec<Dim> = input.iter().zip(&copied).filter(|(_, &c)| !c).map(|(d, _)| d.clone()).collect();
        let mut rest_out: Vec<Dim> = Vec::new();
        for (i, d) in out.iter().enumerate() {
            if Some(i) != inferred && !copied.get(i).copied().unwrap_or(false) {
                rest_out.push(d.clone());
            }
        }
        // Equal named symbols on both sides cancel too (`[N,2048]` by `(-1,2048)`).
        rest_out.retain(|d| {
            let named = matches!(d, Dim::Sym(s) if s != "?");
            match rest_in.iter().position(|e| named && e == d) {
                Some(p) => {
                    rest_in.remove(p);
                    false
                }
                None => true,
            }
        });
        // Element counts (None when a dim is symbolic, or on overflow: then nothing is checked
        // here and the kernel's element-count check reports it).
        fn count(dims: impl Iterator<Item = usize>) -> Option<u128> {
            dims.into_iter().try_fold(1u128, |acc, d| acc.checked_mul(d as u128))
        }
        let known =
            |dims: &[Dim]| dims.iter().map(Dim::known).collect::<Option<Vec<_>>>().and_then(|v| count(v.into_iter()));
        let (in_count, out_count) = (known(&rest_in), known(&rest_out));
        match inferred {
            Some(at) => {
                out[at] = match (in_count, out_count) {
                    (Some(a), Some(b)) => {
                        if b == 0 || a % b != 0 {
                            return Err(OpError::shape(format!("cannot infer the -1 dim: {}", show())));
                        }
                        Dim::Known((a / b) as usize)
                    }
                    // One symbol left on the input side, and the output holds exactly the rest.
                    (None, Some(b)) => {
                        let syms: Vec<&Dim> = rest_in.iter().filter(|d| d.known().is_none()).collect();
                        let in_known = count(rest_in.iter().filter_map(Dim::known));
                        match syms.as_slice() {
                            [s] if in_known == Some(b) && b != 0 => (*s).clone(),
                            _ => Dim::unknown(),
                        }
                    }
                    _ => Dim::unknown(),
                };
            }
            None => {
                if let (Some(a), Some(b)) = (in_count, out_count) {
                    if a != b {
                        return Err(OpError::shape(format!("element count differs ({a} vs {b}): {}", show())));
                    }
                }
            }
        }
        Ok(out)
    }
}

impl OpDef for Reshape {
    fn onnx_type(&self) -> &'static str {
        "Reshape"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 2, 2)?;
        let (x, target) = (required(inputs, 0)?, required(inputs, 1)?);
        if let Some(r) = target.rank() {
            if r != 1 {
                return Err(OpError::shape(format!("the target shape must be 1-D, got {target}")));
            }
        }
        let shape = match (const_i64(target, 1)?, &x.shape) {
            (Some(t), Some(dims)) => Some(self.resolve(dims, &t)?),
            (Some(t), None) => Some(
                t.iter()
                    .map(|&v| if v > 0 || (v == 0 && self.allowzero) { Dim::Known(v as usize) } else { Dim::unknown() })
                    .collect(),
            ),
            (None, _) => known_len(target).map(|n| vec![Dim::unknown(); n]),
        };
        let out = Fact { dtype: x.dtype, shape, value: None };
        Ok(vec![out])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 2, 2)?;
        let (x, target) = (required(inputs, 0)?, required(inputs, 1)?);
        if target.rank() != 1 {
            return Err(OpError::shape(format!("the target shape must be 1-D, got shape {:?}", target.shape())));
        }
        let dims: Vec<Dim> = x.shape().iter().map(|&d| Dim::Known(d)).collect();
        let out = self.resolve(&dims, i64_list(target, 1)?)?;
        let mismatch = || OpError::shape(format!("cannot reshape {:?} to {}", x.shape(), fmt_shape(&out)));
        let shape: Vec<usize> = out.iter().map(Dim::known).collect::<Option<_>>().ok_or_else(mismatch)?;
        let out = x.clone().reshaped(shape).ok_or_else(mismatch)?;
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;
    use crate::tensor::DType;
    use std::sync::Arc;

    fn reshape(allowzero: Option<i64>, opset: i64) -> Result<Reshape, OpError> {
        let a = Attrs::new(allowzero.map(|v| ("allowzero".to_string(), AttrValue::Int(v))).into_iter().collect());
        let op = Reshape::from_onnx(&a, opset)?;
        a.finish()?;
        Ok(op)
    }

    fn run(op: &Reshape, shape: &[usize], target: &[i64]) -> Result<Vec<usize>, OpError> {
        let x = Tensor::zeros(shape.to_vec());
        let t = Tensor::from_i64(vec![target.len()], target.to_vec());
        Ok(op.eval(&[Some(&x), Some(&t)])?[0].shape().to_vec())
    }

    fn n() -> Dim {
        Dim::Sym("N".into())
    }

    #[test]
    fn reshape_matches_onnx_node_tests_shapes() {
        let op = reshape(None, 13).unwrap();
        let cases: &[(&[i64], &[usize])] = &[
            (&[2, 3, 2, 2], &[2, 3, 2, 2]),
            (&[2, -1, 2], &[2, 6, 2]),
            (&[-1, 2, 3, 4], &[1, 2, 3, 4]),
            (&[24], &[24]),
            (&[2, 12], &[2, 12]),
            (&[4, 2, 3], &[4, 2, 3]),
            (&[2, 0, 1, -1], &[2, 3, 1, 4]),
            (&[2, 0, 4, 1], &[2, 3, 4, 1]),
        ];
        for (target, want) in cases {
            assert_eq!(run(&op, &[2, 3, 4], target).unwrap(), want.to_vec(), "{target:?}");
        }
    }

    #[test]
    fn reshape_allowzero_makes_zero_a_zero_sized_dim() {
        // test_reshape_allowzero_reordered
        let op = reshape(Some(1), 14).unwrap();
        assert_eq!(run(&op, &[0, 3, 4], &[3, 4, 0]).unwrap(), vec![3, 4, 0]);
        assert!(matches!(run(&op, &[0, 3, 4], &[0, -1]), Err(OpError::Shape(_))));
    }

    #[test]
    fn reshape_allowzero_is_unknown_before_opset_14() {
        assert_eq!(reshape(Some(1), 13).unwrap_err(), OpError::UnknownAttribute("allowzero".into()));
    }

    #[test]
    fn reshape_keeps_data_order() {
        let x = Tensor::from_i32(vec![2, 3], vec![1, 2, 3, 4, 5, 6]);
        let t = Tensor::from_i64(vec![2], vec![3, -1]);
        let y = reshape(None, 7).unwrap().eval(&[Some(&x), Some(&t)]).unwrap().remove(0);
        assert_eq!(y, Tensor::from_i32(vec![3, 2], vec![1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn reshape_rejects_bad_targets() {
        let op = reshape(None, 13).unwrap();
        assert!(matches!(run(&op, &[2, 3, 4], &[-1, -1]), Err(OpError::Shape(_))));
        assert!(matches!(run(&op, &[2, 3, 4], &[5, 5]), Err(OpError::Shape(_))));
        assert!(matches!(run(&op, &[2, 3, 4], &[5, -1]), Err(OpError::Shape(_))));
        assert!(matches!(run(&op, &[2, 3, 4], &[-2, 12]), Err(OpError::Shape(_))));
        assert!(matches!(run(&op, &[2, 3], &[0, 0, 0]), Err(OpError::Shape(_))));
        let x = Tensor::zeros(vec![4]);
        let t = Tensor::from_i32(vec![1], vec![4]);
        assert!(matches!(op.eval(&[Some(&x), Some(&t)]), Err(OpError::DType { input: 1, .. })));
    }

    fn infer(op: &Reshape, x: Vec<Dim>, target: &[i64]) -> Result<Vec<Dim>, OpError> {
        let x = Fact::new(DType::F32, x);
        let t = Fact::constant(Arc::new(Tensor::from_i64(vec![target.len()], target.to_vec())));
        Ok(op.infer(&[Some(&x), Some(&t)])?.remove(0).shape.unwrap())
    }

    #[test]
    fn reshape_infers_batch_symbol_for_zoo_v2_head() {
        let op = reshape(None, 7).unwrap();
        let x = vec![n(), Dim::Known(2048), Dim::Known(1), Dim::Known(1)];
        assert_eq!(infer(&op, x, &[0, -1]).unwrap(), vec![n(), Dim::Known(2048)]);
        assert_eq!(infer(&op, vec![n(), Dim::Known(2048)], &[-1, 2048]).unwrap(), vec![n(), Dim::Known(2048)]);
        assert_eq!(infer(&op, vec![n(), Dim::Known(6)], &[0, 2, 3]).unwrap(), vec![n(), Dim::Known(2), Dim::Known(3)]);
        // The -1 depends on N: unknown, but the rank and other dims are kept.
        assert_eq!(infer(&op, vec![n(), Dim::Known(6)], &[-1, 3]).unwrap(), vec![Dim::unknown(), Dim::Known(3)]);
    }

    #[test]
    fn reshape_infer_rejects_element_count_mismatch() {
        let op = reshape(None, 7).unwrap();
        let err = infer(&op, vec![n(), Dim::Known(6)], &[0, 4]).unwrap_err();
        assert!(err.to_string().contains("[N,6]"), "{err}");
    }

    #[test]
    fn reshape_infer_with_unknown_target_keeps_rank() {
        let op = reshape(None, 7).unwrap();
        let x = Fact::known(DType::F32, &[2, 3]);
        let t = Fact::known(DType::I64, &[3]);
        let f = op.infer(&[Some(&x), Some(&t)]).unwrap().remove(0);
        assert_eq!(f.rank(), Some(3));
        let f = op.infer(&[Some(&x), Some(&Fact::unknown())]).unwrap().remove(0);
        assert_eq!(f.rank(), None);
    }
}
