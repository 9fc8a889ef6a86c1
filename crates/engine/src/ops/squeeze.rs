//! Squeeze and Unsqueeze: remove or insert size-1 dims. The data is unchanged.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__Squeeze.html>,
//! <https://onnx.ai/onnx/operators/onnx__Unsqueeze.html>
//!
//! | opset | change |
//! |---|---|
//! | 1 | `axes` attribute (Squeeze: optional, absent = every size-1 dim; Unsqueeze: required) |
//! | 11 | negative axes (Squeeze: against the input rank; Unsqueeze: against the **output** rank) |
//! | 13 | `axes` becomes int64 input 1 (Squeeze: optional; Unsqueeze: required) |
//! | 21, 23, 24, 25 | more element types (no semantic change) |
//!
//! Unsqueeze's axes name positions in the output and may come in any order
//! (`[3,4,5]` with axes `(5,4,2)` is `[3,4,1,5,1,1]`).
//!
//! Supported: opsets 7..=25, any of our element types. Errors: squeezing a dim that is not 1,
//! repeated axes, axes out of range, a negative axis before opset 11, the `axes` attribute
//! from opset 13 on (an unknown attribute) or the input before it (an arity error).
//! With non-constant axes, inference gives the output rank when the axes' length is known.

use std::collections::BTreeSet;

use crate::error::OpError;
use crate::fact::{fmt_shape, Dim, Fact};
use crate::ops::shape::{const_i64, i64_list, known_len};
use crate::ops::{check_arity, normalize_axis, required, Attrs, OpDef};
use crate::tensor::Tensor;

/// Where the axes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Axes {
    /// The `axes` attribute (opsets < 13); `None` when absent.
    Attribute(Option<Vec<i64>>),
    /// Optional input 1 (opsets ≥ 13).
    Input,
}

fn parse_axes(a: &Attrs, opset: i64) -> Result<Axes, OpError> {
    if opset >= 13 {
        return Ok(Axes::Input);
    }
    let axes = a.ints_opt("axes")?;
    if opset < 11 {
        if let Some(&neg) = axes.iter().flatten().find(|&&v| v < 0) {
            return Err(OpError::attr("axes", format!("negative axis {neg} needs opset 11 or later")));
        }
    }
    Ok(Axes::Attribute(axes))
}

/// Normalises axes against `rank` and rejects repeats.
fn normalize_axes(axes: &[i64], rank: usize) -> Result<BTreeSet<usize>, OpError> {
    let mut set = BTreeSet::new();
    for &a in axes {
        if !set.insert(normalize_axis(a, rank)?) {
            return Err(OpError::shape(format!("axis {a} is repeated in axes {axes:?}")));
        }
    }
    Ok(set)
}

/// The axes as known at inference time: `Ok(Some(None))` = none given, `Ok(None)` = given
/// but not constant.
type KnownAxes = Option<Option<Vec<i64>>>;

fn infer_axes(axes: &Axes, inputs: &[Option<&Fact>]) -> Result<KnownAxes, OpError> {
    match axes {
        Axes::Attribute(v) => Ok(Some(v.clone())),
        Axes::Input => match inputs.get(1).copied().flatten() {
            None => Ok(Some(None)),
            Some(f) => Ok(const_i64(f, 1)?.map(Some)),
        },
    }
}

fn eval_axes(axes: &Axes, inputs: &[Option<&Tensor>]) -> Result<Option<Vec<i64>>, OpError> {
    match axes {
        Axes::Attribute(v) => Ok(v.clone()),
        Axes::Input => inputs.get(1).copied().flatten().map(|t| i64_list(t, 1).map(<[i64]>::to_vec)).transpose(),
    }
}

/// Input counts `(min, max)`: the data, then the axes input from opset 13.
fn arity(axes: &Axes) -> (usize, usize) {
    match axes {
        Axes::Attribute(_) => (1, 1),
        Axes::Input => (1, 2),
    }
}

// ---- Squeeze ----------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Squeeze {
    pub axes: Axes,
}

impl Squeeze {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        Ok(Squeeze { axes: parse_axes(a, opset)? })
    }

    /// The output dims. A symbolic dim named in `axes` is assumed to be 1 (the kernel
    /// checks); with no axes, every known 1 goes, and a symbolic dim makes the rank unknown.
    fn squeeze(dims: &[Dim], axes: Option<&[i64]>) -> Result<Option<Vec<Dim>>, OpError> {
        let Some(axes) = axes else {
            if dims.iter().any(|d| d.known().is_none()) {
                return Ok(None);
            }
            return Ok(Some(dims.iter().filter(|d| **d != Dim::Known(1)).cloned().collect()));
        };
        let set = normalize_axes(axes, dims.len())?;
        for &a in &set {
            if matches!(dims[a], Dim::Known(d) if d != 1) {
                return Err(OpError::shape(format!(
                    "cannot squeeze axis {a} of shape {}: it is not 1",
                    fmt_shape(dims)
                )));
            }
        }
        Ok(Some(dims.iter().enumerate().filter(|(i, _)| !set.contains(i)).map(|(_, d)| d.clone()).collect()))
    }
}

impl OpDef for Squeeze {
    fn onnx_type(&self) -> &'static str {
        "Squeeze"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (min, max) = arity(&self.axes);
        check_arity(inputs, min, max)?;
        let x = required(inputs, 0)?;
        let shape = match (&x.shape, infer_axes(&self.axes, inputs)?) {
            (Some(dims), Some(axes)) => Self::squeeze(dims, axes.as_deref())?,
            (Some(dims), None) => {
                let n = inputs.get(1).copied().flatten().and_then(known_len);
                n.and_then(|n| dims.len().checked_sub(n)).map(|r| vec![Dim::unknown(); r])
            }
            (None, _) => None,
        };
        let out = Fact { dtype: x.dtype, shape, value: None };
        Ok(vec![out])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let (min, max) = arity(&self.axes);
        check_arity(inputs, min, max)?;
        let x = required(inputs, 0)?;
        let axes = eval_axes(&self.axes, inputs)?;
        let dims: Vec<Dim> = x.shape().iter().map(|&d| Dim::Known(d)).collect();
        let out = Self::squeeze(&dims, axes.as_deref())?.expect("known dims squeeze to known dims");
        let shape = out.iter().map(|d| d.known().expect("known")).collect();
        Ok(vec![x.clone().reshaped(shape).expect("squeezing keeps the element count")])
    }
}

// ---- Unsqueeze --------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Unsqueeze {
    pub axes: Axes,
}

impl Unsqueeze {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        let axes = parse_axes(a, opset)?;
        if axes == Axes::Attribute(None) {
            return Err(OpError::attr("axes", "is required"));
        }
        Ok(Unsqueeze { axes })
    }

    /// The output dims: `axes` are positions in the output (rank `dims.len() + axes.len()`).
    fn unsqueeze(dims: &[Dim], axes: &[i64]) -> Result<Vec<Dim>, OpError> {
        let rank = dims.len() + axes.len();
        let set = normalize_axes(axes, rank)?;
        let mut rest = dims.iter();
        Ok((0..rank)
            .map(
                |i| {
                    if set.contains(&i) {
                        Dim::Known(1)
                    } else {
                        rest.next().expect("rank - |axes| dims left").clone()
                    }
                },
            )
            .collect())
    }
}

impl OpDef for Unsqueeze {
    fn onnx_type(&self) -> &'static str {
        "Unsqueeze"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (_, n) = arity(&self.axes);
        check_arity(inputs, n, n)?;
        let x = required(inputs, 0)?;
        if self.axes == Axes::Input {
            required(inputs, 1)?;
        }
        let shape = match (&x.shape, infer_axes(&self.axes, inputs)?) {
            (Some(dims), Some(axes)) => Some(Self::unsqueeze(dims, axes.as_deref().unwrap_or_default())?),
            (Some(dims), None) => inputs[1].and_then(known_len).map(|n| vec![Dim::unknown(); dims.len() + n]),
            (None, _) => None,
        };
        let out = Fact { dtype: x.dtype, shape, value: None };
        Ok(vec![out])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let (_, n) = arity(&self.axes);
        check_arity(inputs, n, n)?;
        let x = required(inputs, 0)?;
        if self.axes == Axes::Input {
            required(inputs, 1)?;
        }
        let axes = eval_axes(&self.axes, inputs)?.unwrap_or_default();
        let dims: Vec<Dim> = x.shape().iter().map(|&d| Dim::Known(d)).collect();
        let shape = Self::unsqueeze(&dims, &axes)?.iter().map(|d| d.known().expect("known")).collect();
        Ok(vec![x.clone().reshaped(shape).expect("unsqueezing keeps the element count")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;
    use crate::tensor::DType;
    use std::sync::Arc;

    fn attrs(axes: Option<&[i64]>) -> Attrs {
        Attrs::new(axes.map(|v| ("axes".to_string(), AttrValue::Ints(v.to_vec()))).into_iter().collect())
    }

    fn axes_t(v: &[i64]) -> Tensor {
        Tensor::from_i64(vec![v.len()], v.to_vec())
    }

    fn sq(shape: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, OpError> {
        let op = Squeeze::from_onnx(&attrs(None), 13)?;
        let x = Tensor::zeros(shape.to_vec());
        let a = axes.map(axes_t);
        Ok(op.eval(&[Some(&x), a.as_ref()])?[0].shape().to_vec())
    }

    fn unsq(shape: &[usize], axes: &[i64]) -> Result<Vec<usize>, OpError> {
        let op = Unsqueeze::from_onnx(&attrs(None), 13)?;
        let x = Tensor::zeros(shape.to_vec());
        Ok(op.eval(&[Some(&x), Some(&axes_t(axes))])?[0].shape().to_vec())
    }

    #[test]
    fn squeeze_matches_onnx_node_tests() {
        assert_eq!(sq(&[1, 3, 4, 5], Some(&[0])).unwrap(), vec![3, 4, 5]);
        assert_eq!(sq(&[1, 3, 1, 5], Some(&[-2])).unwrap(), vec![1, 3, 5]);
        assert_eq!(sq(&[1, 3, 1, 5], None).unwrap(), vec![3, 5]);
    }

    #[test]
    fn squeeze_rejects_non_one_dims_repeats_and_out_of_range() {
        assert!(matches!(sq(&[1, 3], Some(&[1])), Err(OpError::Shape(_))));
        assert!(matches!(sq(&[1, 3], Some(&[0, -2])), Err(OpError::Shape(_))));
        assert!(matches!(sq(&[1, 3], Some(&[2])), Err(OpError::Shape(_))));
        let op = Squeeze::from_onnx(&attrs(None), 13).unwrap();
        let bad = Tensor::from_i32(vec![1], vec![0]);
        assert!(matches!(op.eval(&[Some(&Tensor::zeros(vec![1])), Some(&bad)]), Err(OpError::DType { .. })));
    }

    #[test]
    fn squeeze_reads_the_attribute_before_opset_13_only() {
        let a = attrs(Some(&[0]));
        let op = Squeeze::from_onnx(&a, 11).unwrap();
        a.finish().unwrap();
        let y = op.eval(&[Some(&Tensor::zeros(vec![1, 2]))]).unwrap().remove(0);
        assert_eq!(y.shape(), &[2]);
        assert!(matches!(
            op.eval(&[Some(&Tensor::zeros(vec![1, 2])), Some(&axes_t(&[0]))]),
            Err(OpError::Arity { .. })
        ));
        let a = attrs(Some(&[0]));
        Squeeze::from_onnx(&a, 13).unwrap();
        assert_eq!(a.finish(), Err(OpError::UnknownAttribute("axes".into())));
        assert!(matches!(Squeeze::from_onnx(&attrs(Some(&[-1])), 9), Err(OpError::Attribute { .. })));
    }

    #[test]
    fn squeeze_infers_with_symbolic_batch() {
        let n = Dim::Sym("N".into());
        let x = Fact::new(DType::F32, vec![n.clone(), Dim::Known(2048), Dim::Known(1), Dim::Known(1)]);
        let op = Squeeze::from_onnx(&attrs(Some(&[2, 3])), 7).unwrap();
        let f = op.infer(&[Some(&x)]).unwrap().remove(0);
        assert_eq!(f.shape.unwrap(), vec![n.clone(), Dim::Known(2048)]);
        // Without axes, whether N is 1 decides the rank.
        let op = Squeeze::from_onnx(&attrs(None), 13).unwrap();
        assert_eq!(op.infer(&[Some(&x)]).unwrap()[0].shape, None);
        // Non-constant axes of known length: the rank is known.
        let axes = Fact::known(DType::I64, &[2]);
        assert_eq!(op.infer(&[Some(&x), Some(&axes)]).unwrap()[0].rank(), Some(2));
        let err = op.infer(&[Some(&x), Some(&Fact::constant(Arc::new(axes_t(&[1]))))]).unwrap_err();
        assert!(err.to_string().contains("[N,2048,1,1]"), "{err}");
    }

    #[test]
    fn unsqueeze_matches_onnx_node_tests() {
        assert_eq!(unsq(&[3, 4, 5], &[0]).unwrap(), vec![1, 3, 4, 5]);
        assert_eq!(unsq(&[3, 4, 5], &[1]).unwrap(), vec![3, 1, 4, 5]);
        assert_eq!(unsq(&[3, 4, 5], &[2]).unwrap(), vec![3, 4, 1, 5]);
        assert_eq!(unsq(&[1, 3, 1, 5], &[-2]).unwrap(), vec![1, 3, 1, 1, 5]);
        assert_eq!(unsq(&[3, 4, 5], &[2, 4, 5]).unwrap(), vec![3, 4, 1, 5, 1, 1]);
        assert_eq!(unsq(&[3, 4, 5], &[1, 4]).unwrap(), vec![3, 1, 4, 5, 1]);
        assert_eq!(unsq(&[3, 4, 5], &[5, 4, 2]).unwrap(), vec![3, 4, 1, 5, 1, 1]);
        assert_eq!(unsq(&[], &[0]).unwrap(), vec![1]);
    }

    #[test]
    fn unsqueeze_rejects_repeats_out_of_range_and_missing_axes() {
        assert!(matches!(unsq(&[3], &[0, 0]), Err(OpError::Shape(_))));
        assert!(matches!(unsq(&[3], &[0, -3]), Err(OpError::Shape(_))));
        assert_eq!(unsq(&[3], &[0, -2]).unwrap(), vec![1, 1, 3]);
        assert!(matches!(unsq(&[3], &[2]), Err(OpError::Shape(_))));
        assert!(matches!(Unsqueeze::from_onnx(&attrs(None), 11), Err(OpError::Attribute { .. })));
        let op = Unsqueeze::from_onnx(&attrs(None), 13).unwrap();
        assert!(matches!(op.eval(&[Some(&Tensor::zeros(vec![1]))]), Err(OpError::Arity { .. })));
        assert!(matches!(op.eval(&[Some(&Tensor::zeros(vec![1])), None]), Err(OpError::MissingInput(1))));
    }

    #[test]
    fn unsqueeze_infers_rank_from_axes() {
        let n = Dim::Sym("N".into());
        let op = Unsqueeze::from_onnx(&attrs(Some(&[0])), 9).unwrap();
        let x = Fact::new(DType::F32, vec![n.clone()]);
        assert_eq!(op.infer(&[Some(&x)]).unwrap()[0].shape, Some(vec![Dim::Known(1), n]));
        let op = Unsqueeze::from_onnx(&attrs(None), 13).unwrap();
        let axes = Fact::known(DType::I64, &[2]);
        assert_eq!(op.infer(&[Some(&x), Some(&axes)]).unwrap()[0].rank(), Some(3));
        assert_eq!(op.infer(&[Some(&x), Some(&Fact::unknown())]).unwrap()[0].shape, None);
    }
}
