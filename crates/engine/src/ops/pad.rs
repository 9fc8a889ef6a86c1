//! Pad: adds (or, with negative amounts, removes) elements at both ends of each axis.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Pad.html>
//!
//! | opset | change |
//! |---|---|
//! | 2 | attributes `pads` (ints, required: `[x1_begin, x2_begin, …, x1_end, x2_end, …]` over all axes), `value` (float, 0.0), `mode` (`constant`, `reflect`, `edge`; default `constant`) |
//! | 11 | `pads` becomes int64 input 1; the fill value becomes optional input 2 `constant_value` (a scalar of the data's type, default 0); `value` attribute removed |
//! | 13 | bfloat16 (no semantic change) |
//! | 18 | optional int64 input 3 `axes`: `pads` then covers only those axes (negative axes count from the back) |
//! | 19 | mode `wrap` (the data as a torus) |
//! | 21, 23, 24, 25 | more element types (no semantic change) |
//!
//! Supported: opsets 7..=25, modes constant, reflect, edge and (from 19) wrap, any of our
//! element types. An unknown `mode` is an attribute error.
//!
//! Negative pads crop. As in onnxruntime, cropping comes first and the non-constant modes
//! then pad from the cropped data: `[1,2,3,4,5]` with pads `(-1, 2)` in reflect mode is
//! `[2,3,4,5,4,3]`. Reflect and wrap pads wider than the data repeat the pattern, as in
//! `numpy.pad` (the ONNX reference); onnxruntime rejects those. Padding an axis left empty
//! by cropping (or empty to begin with) in a non-constant mode is a shape error.

use crate::error::OpError;
use crate::fact::{fmt_shape, Dim, Fact};
use crate::ops::shape::{check_dtype_i64, const_i64, i64_list};
use crate::ops::{check_arity, normalize_axis, required, Attrs, OpDef};
use crate::tensor::{numel, strides, Tensor, TensorData};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// Fill with a constant.
    Constant,
    /// Mirror without repeating the edge element (`numpy` "reflect").
    Reflect,
    /// Repeat the edge element.
    Edge,
    /// Continue from the other end (opset 19+).
    Wrap,
}

/// Where the pads and the fill value come from.
#[derive(Debug, Clone, PartialEq)]
pub enum PadArgs {
    /// Opsets < 11: the `pads` and `value` attributes.
    Attributes { pads: Vec<i64>, value: f32 },
    /// Opsets ≥ 11: inputs `pads`, `constant_value` and (from opset 18) `axes`.
    Inputs { axes_input: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pad {
    /// Default constant.
    pub mode: PadMode,
    pub args: PadArgs,
}

impl Pad {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        let mode = match a.string("mode", "constant")?.as_str() {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            "wrap" if opset >= 19 => PadMode::Wrap,
            "wrap" => {
                return Err(OpError::attr("mode", format!("\"wrap\" needs opset 19 or later (model has {opset})")))
            }
            other => {
                return Err(OpError::attr(
                    "mode",
                    format!("unknown value {other:?} (expected constant, reflect, edge or wrap)"),
                ))
            }
        };
        let args = if opset < 11 {
            let pads = a.ints_opt("pads")?.ok_or_else(|| OpError::attr("pads", "is required"))?;
            PadArgs::Attributes { pads, value: a.float("value", 0.0)? }
        } else {
            PadArgs::Inputs { axes_input: opset >= 18 }
        };
        Ok(Pad { mode, args })
    }

    fn arity(&self) -> (usize, usize) {
        match self.args {
            PadArgs::Attributes { .. } => (1, 1),
            PadArgs::Inputs { axes_input: false } => (2, 3),
            PadArgs::Inputs { axes_input: true } => (2, 4),
        }
    }
}

/// Expands `pads` over `axes` (all axes when `None`) to per-axis `(begin, end)` for `rank`.
fn per_axis(pads: &[i64], axes: Option<&[i64]>, rank: usize) -> Result<Vec<(i64, i64)>, OpError> {
    let axes: Vec<usize> = match axes {
        None => (0..rank).collect(),
        Some(a) => a.iter().map(|&v| normalize_axis(v, rank)).collect::<Result<_, _>>()?,
    };
    if pads.len() != 2 * axes.len() {
        return Err(OpError::shape(format!(
            "pads {pads:?} must have 2 entries per padded axis ({} axes, rank {rank})",
            axes.len()
        )));
    }
    let mut out = vec![(0, 0); rank];
    let mut seen = vec![false; rank];
    for (i, &ax) in axes.iter().enumerate() {
        if std::mem::replace(&mut seen[ax], true) {
            return Err(OpError::shape(format!("axis {ax} is repeated in the pad axes")));
        }
        out[ax] = (pads[i], pads[i + axes.len()]);
    }
    Ok(out)
}

/// One axis after cropping: `crop` elements skipped at the start, `kept` remain, `before`
/// are added in front, and the output has `out` elements.
#[derive(Debug, Clone, Copy)]
struct AxisPlan {
    crop: usize,
    kept: usize,
    before: usize,
    out: usize,
}

fn plan_axis(d: usize, (b, e): (i64, i64), mode: PadMode) -> Result<AxisPlan, OpError> {
    // Pads beyond 2^31 cannot describe a tensor that fits in memory; bounding them keeps
    // the arithmetic below far from overflow.
    const MAX_PAD: i64 = 1 << 31;
    if b.unsigned_abs() > MAX_PAD as u64 || e.unsigned_abs() > MAX_PAD as u64 {
        return Err(OpError::shape(format!("pads ({b}, {e}) are larger than {MAX_PAD}")));
    }
    let d = d as i64;
    let kept = d + b.min(0) + e.min(0);
    let out = kept + b.max(0) + e.max(0);
    if kept < 0 {
        return Err(OpError::shape(format!("pads ({b}, {e}) crop more than the axis size {d}")));
    }
    if kept == 0 && out > 0 && mode != PadMode::Constant {
        return Err(OpError::shape(format!("cannot pad an empty axis in {mode:?} mode (size {d}, pads ({b}, {e}))")));
    }
    Ok(AxisPlan { crop: (-b).max(0) as usize, kept: kept as usize, before: b.max(0) as usize, out: out as usize })
}

impl AxisPlan {
    /// The input index feeding output index `o`, or `None` for the fill value.
    fn source(&self, o: usize, mode: PadMode) -> Option<usize> {
        let i = o as i64 - self.before as i64;
        let n = self.kept as i64;
        let within = match mode {
            _ if (0..n).contains(&i) => i,
            PadMode::Constant => return None,
            PadMode::Edge => i.clamp(0, n - 1),
            PadMode::Wrap => i.rem_euclid(n),
            PadMode::Reflect if n == 1 => 0,
            PadMode::Reflect => {
                let period = 2 * (n - 1);
                let m = i.rem_euclid(period);
                if m >= n {
                    period - m
                } else {
                    m
                }
            }
        };
        Some(self.crop + within as usize)
    }
}

fn pad_data<T: Copy>(data: &[T], shape: &[usize], plans: &[AxisPlan], mode: PadMode, fill: T) -> Vec<T> {
    let in_strides = strides(shape);
    // Per axis, the input offset of each output index (None = fill).
    let maps: Vec<Vec<Option<usize>>> = plans
        .iter()
        .zip(&in_strides)
        .map(|(p, &s)| (0..p.out).map(|o| p.source(o, mode).map(|i| i * s)).collect())
        .collect();
    let out_shape: Vec<usize> = plans.iter().map(|p| p.out).collect();
    let n = numel(&out_shape);
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..n {
        let src: Option<usize> = index.iter().zip(&maps).map(|(&i, m)| m[i]).sum();
        out.push(src.map_or(fill, |s| data[s]));
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < out_shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

/// The fill value input: one element of the data's type.
fn fill_value(t: &Tensor, data: &Tensor) -> Result<TensorData, OpError> {
    if t.dtype() != data.dtype() {
        return Err(OpError::DType { input: 2, dtype: t.dtype(), expected: "the element type of the data" });
    }
    if t.len() != 1 {
        return Err(OpError::shape(format!("constant_value must be one element, got shape {:?}", t.shape())));
    }
    Ok(t.data().clone())
}

impl OpDef for Pad {
    fn onnx_type(&self) -> &'static str {
        "Pad"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (min, max) = self.arity();
        check_arity(inputs, min, max)?;
        let x = required(inputs, 0)?;
        let Some(dims) = &x.shape else {
            return Ok(vec![Fact { dtype: x.dtype, shape: None, value: None }]);
        };
        let (pads, axes) = match &self.args {
            PadArgs::Attributes { pads, .. } => (Some(pads.clone()), Some(None)),
            PadArgs::Inputs { .. } => {
                let pads = const_i64(required(inputs, 1)?, 1)?;
                let axes = match inputs.get(3).copied().flatten() {
                    None => Some(None),
                    Some(f) => const_i64(f, 3)?.map(Some),
                };
                if let Some(c) = inputs.get(2).copied().flatten() {
                    if let (Some(cd), Some(xd)) = (c.dtype, x.dtype) {
                        if cd != xd {
                            return Err(OpError::DType {
                                input: 2,
                                dtype: cd,
                                expected: "the element type of the data",
                            });
                        }
                    }
                }
                (pads, axes)
            }
        };
        let (Some(pads), Some(axes)) = (pads, axes) else {
            return Ok(vec![Fact { dtype: x.dtype, shape: Some(vec![Dim::unknown(); dims.len()]), value: None }]);
        };
        let ends = per_axis(&pads, axes.as_deref(), dims.len())?;
        let shape = dims
            .iter()
            .zip(&ends)
            .map(|(d, &be)| match d {
                Dim::Known(k) => plan_axis(*k, be, self.mode)
                    .map(|p| Dim::Known(p.out))
                    .map_err(|e| OpError::shape(format!("{e}; input shape {}", fmt_shape(dims)))),
                sym if be == (0, 0) => Ok(sym.clone()),
                _ => Ok(Dim::unknown()),
            })
            .collect::<Result<_, _>>()?;
        Ok(vec![Fact { dtype: x.dtype, shape: Some(shape), value: None }])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let (min, max) = self.arity();
        check_arity(inputs, min, max)?;
        let x = required(inputs, 0)?;
        let (pads, axes, fill): (Vec<i64>, Option<Vec<i64>>, Option<TensorData>) = match &self.args {
            PadArgs::Attributes { pads, value } => (pads.clone(), None, Some(TensorData::F32(vec![*value]))),
            PadArgs::Inputs { .. } => {
                let pads = required(inputs, 1)?;
                check_dtype_i64(Some(pads.dtype()), 1)?;
                let axes = inputs.get(3).copied().flatten().map(|t| i64_list(t, 3).map(<[i64]>::to_vec)).transpose()?;
                let fill = inputs.get(2).copied().flatten().map(|t| fill_value(t, x)).transpose()?;
                (i64_list(pads, 1)?.to_vec(), axes, fill)
            }
        };
        let ends = per_axis(&pads, axes.as_deref(), x.rank())?;
        let plans: Vec<AxisPlan> =
            x.shape().iter().zip(&ends).map(|(&d, &be)| plan_axis(d, be, self.mode)).collect::<Result<_, _>>()?;
        let shape: Vec<usize> = plans.iter().map(|p| p.out).collect();
        let (s, m) = (x.shape(), self.mode);
        // The attribute's float fill is cast to integer data, as numpy's astype does.
        let data = match (x.data(), fill) {
            (TensorData::F32(v), f) => {
                let fill = match f {
                    Some(TensorData::F32(c)) => c[0],
                    _ => 0.0,
                };
                TensorData::F32(pad_data(v, s, &plans, m, fill))
            }
            (TensorData::I64(v), f) => {
                let fill = match f {
                    Some(TensorData::I64(c)) => c[0],
                    Some(TensorData::F32(c)) => c[0] as i64,
                    _ => 0,
                };
                TensorData::I64(pad_data(v, s, &plans, m, fill))
            }
            (TensorData::I32(v), f) => {
                let fill = match f {
                    Some(TensorData::I32(c)) => c[0],
                    Some(TensorData::F32(c)) => c[0] as i32,
                    _ => 0,
                };
                TensorData::I32(pad_data(v, s, &plans, m, fill))
            }
        };
        let out = Tensor::new(shape, data).ok_or_else(|| OpError::shape("Pad output size overflows"))?;
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;
    use crate::tensor::DType;
    use std::sync::Arc;

    fn pad(mode: &str, opset: i64, extra: Vec<(&str, AttrValue)>) -> Result<Pad, OpError> {
        let mut items = vec![("mode".to_string(), AttrValue::String(mode.into()))];
        items.extend(extra.into_iter().map(|(n, v)| (n.to_string(), v)));
        let a = Attrs::new(items);
        let op = Pad::from_onnx(&a, opset)?;
        a.finish()?;
        Ok(op)
    }

    fn i64s(v: &[i64]) -> Tensor {
        Tensor::from_i64(vec![v.len()], v.to_vec())
    }

    fn x23() -> Tensor {
        Tensor::from_f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.])
    }

    fn run(op: &Pad, x: &Tensor, pads: &[i64], value: Option<f32>, axes: Option<&[i64]>) -> Result<Tensor, OpError> {
        let (p, v, a) = (i64s(pads), value.map(|v| Tensor::from_f32(vec![], vec![v])), axes.map(i64s));
        let mut args = vec![Some(x), Some(&p), v.as_ref()];
        if a.is_some() {
            args.push(a.as_ref());
        }
        Ok(op.eval(&args)?.remove(0))
    }

    fn floats(v: &[i32]) -> Vec<f32> {
        v.iter().map(|&x| x as f32).collect()
    }

    #[test]
    fn pad_modes_match_numpy() {
        let cases: &[(&str, &[i32])] = &[
            ("reflect", &[6, 5, 4, 5, 6, 5, 4, 3, 2, 1, 2, 3, 2, 1, 6, 5, 4, 5, 6, 5, 4, 3, 2, 1, 2, 3, 2, 1]),
            ("edge", &[1, 1, 1, 2, 3, 3, 3, 1, 1, 1, 2, 3, 3, 3, 4, 4, 4, 5, 6, 6, 6, 4, 4, 4, 5, 6, 6, 6]),
            ("wrap", &[5, 6, 4, 5, 6, 4, 5, 2, 3, 1, 2, 3, 1, 2, 5, 6, 4, 5, 6, 4, 5, 2, 3, 1, 2, 3, 1, 2]),
        ];
        for (mode, want) in cases {
            let y = run(&pad(mode, 19, vec![]).unwrap(), &x23(), &[1, 2, 1, 2], None, None).unwrap();
            assert_eq!(y, Tensor::from_f32(vec![4, 7], floats(want)), "{mode}");
        }
    }

    #[test]
    fn pad_constant_uses_the_value_input() {
        let y = run(&pad("constant", 11, vec![]).unwrap(), &x23(), &[1, 0, 0, 1], Some(9.0), None).unwrap();
        assert_eq!(y, Tensor::from_f32(vec![3, 4], floats(&[9, 9, 9, 9, 1, 2, 3, 9, 4, 5, 6, 9])));
        let y = run(&pad("constant", 11, vec![]).unwrap(), &x23(), &[0, 1, 0, 0], None, None).unwrap();
        assert_eq!(y, Tensor::from_f32(vec![2, 4], floats(&[0, 1, 2, 3, 0, 4, 5, 6])));
    }

    #[test]
    fn pad_attributes_before_opset_11() {
        let op =
            pad("constant", 7, vec![("pads", AttrValue::Ints(vec![0, 1, 0, 0])), ("value", AttrValue::Float(7.5))])
                .unwrap();
        let y = op.eval(&[Some(&x23())]).unwrap().remove(0);
        assert_eq!(y, Tensor::from_f32(vec![2, 4], vec![7.5, 1., 2., 3., 7.5, 4., 5., 6.]));
        let xi = Tensor::from_i64(vec![1], vec![4]);
        let op =
            pad("constant", 7, vec![("pads", AttrValue::Ints(vec![1, 1])), ("value", AttrValue::Float(2.0))]).unwrap();
        assert_eq!(op.eval(&[Some(&xi)]).unwrap()[0], Tensor::from_i64(vec![3], vec![2, 4, 2]));
        assert!(matches!(pad("constant", 7, vec![]), Err(OpError::Attribute { .. })));
        assert!(matches!(
            pad("constant", 11, vec![("pads", AttrValue::Ints(vec![1, 1]))]),
            Err(OpError::UnknownAttribute(_))
        ));
    }

    #[test]
    fn pad_axes_like_onnx_node_tests() {
        // test_constant_pad_axes / _negative_axes: (1,3,4,5), pads (0,3,0,4) on axes (1,3).
        let x = Tensor::zeros(vec![1, 3, 4, 5]);
        let op = pad("constant", 18, vec![]).unwrap();
        for axes in [[1, 3], [-3, -1]] {
            let y = run(&op, &x, &[0, 3, 0, 4], Some(1.2), Some(&axes)).unwrap();
            assert_eq!(y.shape(), &[1, 3, 4, 12]);
            assert_eq!(&y.as_f32().unwrap()[..4], &[1.2, 1.2, 1.2, 0.0]);
        }
        // Before opset 18 there is no axes input.
        let op = pad("constant", 13, vec![]).unwrap();
        assert!(matches!(run(&op, &x, &[0, 3, 0, 4], Some(1.2), Some(&[1, 3])), Err(OpError::Arity { .. })));
    }

    #[test]
    fn pad_negative_pads_crop_before_padding() {
        let x = Tensor::from_f32(vec![5], floats(&[1, 2, 3, 4, 5]));
        let cases: &[(&str, [i64; 2], &[i32])] = &[
            ("reflect", [-1, 2], &[2, 3, 4, 5, 4, 3]),
            ("edge", [-1, 2], &[2, 3, 4, 5, 5, 5]),
            ("wrap", [-1, 2], &[2, 3, 4, 5, 2, 3]),
            ("constant", [-1, 2], &[2, 3, 4, 5, 0, 0]),
            ("constant", [2, -3], &[0, 0, 1, 2]),
            ("wrap", [2, -3], &[1, 2, 1, 2]),
            ("edge", [2, -3], &[1, 1, 1, 2]),
        ];
        for (mode, pads, want) in cases {
            let y = run(&pad(mode, 19, vec![]).unwrap(), &x, pads, None, None).unwrap();
            assert_eq!(y.as_f32().unwrap(), floats(want).as_slice(), "{mode} {pads:?}");
        }
    }

    #[test]
    fn pad_reflect_wider_than_data_repeats_like_numpy() {
        let x = Tensor::from_f32(vec![3], floats(&[1, 2, 3]));
        let y = run(&pad("reflect", 11, vec![]).unwrap(), &x, &[5, 5], None, None).unwrap();
        assert_eq!(y.as_f32().unwrap(), floats(&[2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2]).as_slice());
        let one = Tensor::from_f32(vec![1], vec![7.]);
        let y = run(&pad("reflect", 11, vec![]).unwrap(), &one, &[2, 2], None, None).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[7.; 5]);
    }

    #[test]
    fn pad_rejects_bad_modes_pads_and_values() {
        assert!(matches!(pad("FOO", 13, vec![]), Err(OpError::Attribute { .. })));
        assert!(matches!(pad("wrap", 18, vec![]), Err(OpError::Attribute { .. })));
        let op = pad("constant", 18, vec![]).unwrap();
        assert!(matches!(run(&op, &x23(), &[1, 1], None, None), Err(OpError::Shape(_))));
        assert!(matches!(run(&op, &x23(), &[-3, 0, 0, 0], None, None), Err(OpError::Shape(_))));
        assert!(matches!(run(&op, &x23(), &[1, 1, 1, 1], None, Some(&[0, -2])), Err(OpError::Shape(_))));
        let xi = Tensor::from_i64(vec![1], vec![1]);
        assert!(matches!(run(&op, &xi, &[1, 1], Some(0.5), None), Err(OpError::DType { input: 2, .. })));
        let empty = Tensor::zeros(vec![0]);
        assert!(matches!(run(&pad("edge", 11, vec![]).unwrap(), &empty, &[1, 1], None, None), Err(OpError::Shape(_))));
        assert_eq!(run(&op, &empty, &[1, 1], None, None).unwrap().shape(), &[2]);
    }

    #[test]
    fn pad_infers_output_dims() {
        let n = Dim::Sym("N".into());
        let x = Fact::new(DType::F32, vec![n.clone(), Dim::Known(3), Dim::Known(224), Dim::Known(224)]);
        let pads = Fact::constant(Arc::new(i64s(&[0, 0, 1, 1, 0, 0, 1, 1])));
        let op = pad("constant", 13, vec![]).unwrap();
        let f = op.infer(&[Some(&x), Some(&pads)]).unwrap().remove(0);
        assert_eq!(f.shape.unwrap(), vec![n.clone(), Dim::Known(3), Dim::Known(226), Dim::Known(226)]);
        let pads = Fact::constant(Arc::new(i64s(&[1, 0, 0, 0, 0, 0, 0, 0])));
        let f = op.infer(&[Some(&x), Some(&pads)]).unwrap().remove(0);
        assert_eq!(f.shape.unwrap()[0], Dim::unknown());
        let f = op.infer(&[Some(&x), Some(&Fact::known(DType::I64, &[8]))]).unwrap().remove(0);
        assert_eq!(f.rank(), Some(4));
        let bad = Fact::constant(Arc::new(i64s(&[0, 0, -300, 0, 0, 0, 0, 0])));
        let err = op.infer(&[Some(&x), Some(&bad)]).unwrap_err();
        assert!(err.to_string().contains("[N,3,224,224]"), "{err}");
        let pads32 = Fact::known(DType::I32, &[8]);
        assert!(matches!(op.infer(&[Some(&x), Some(&pads32)]), Err(OpError::DType { input: 1, .. })));
    }
}
