//! Sliding-window geometry shared by Conv, MaxPool and AveragePool: the `auto_pad`,
//! `pads`, `strides`, `dilations`, `kernel_shape` and `ceil_mode` attributes, and what they
//! mean for one spatial axis (output size and the pads actually applied at each end).
//!
//! The rules follow the ONNX spec's pooling section and onnxruntime's `PoolAttributes`
//! (which the ONNX node tests agree with):
//!
//! * `NOTSET` (explicit pads) and `VALID` (all pads zero): with the effective kernel
//!   `ek = (k - 1) * d + 1` and the padded length `L = in + pad_begin + pad_end`,
//!   `out = floor((L - ek) / s) + 1`; with `ceil_mode` it is rounded up instead, and then
//!   reduced by one if the last window would start at or after `in + pad_begin`, i.e. inside
//!   the end padding (the spec's "the last pooling window must start inside the image",
//!   node test `test_maxpool_2d_ceil_output_size_reduce_by_one`). The ceil-mode windows may
//!   overhang the padded input; pools ignore the overhang.
//! * `SAME_UPPER` / `SAME_LOWER`: `out = ceil(in / s)` whatever `ceil_mode` says; the total
//!   pad `max(0, (out - 1) * s + ek - in)` is split in two with the odd element at the end
//!   (`SAME_UPPER`) or at the beginning (`SAME_LOWER`).
//!
//! Explicit `pads` combined with a non-`NOTSET` `auto_pad` is rejected unless they are all
//! zero: the spec says the two must not be used together, and silently picking one would be
//! wrong for some producer.

use crate::error::OpError;
use crate::fact::{Dim, Fact};
use crate::ops::Attrs;
use crate::tensor::DType;

/// The deprecated-but-common `auto_pad` string attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoPad {
    /// Use the explicit `pads` attribute (default).
    #[default]
    NotSet,
    /// Pad so that `out = ceil(in / stride)`; an odd total pad puts the extra element at the end.
    SameUpper,
    /// Like `SameUpper`, but the extra element goes at the beginning.
    SameLower,
    /// No padding.
    Valid,
}

impl AutoPad {
    /// Parses the attribute value (the spec spells them in upper case; nothing else is accepted).
    pub fn parse(value: &str) -> Result<AutoPad, OpError> {
        match value {
            "NOTSET" => Ok(AutoPad::NotSet),
            "SAME_UPPER" => Ok(AutoPad::SameUpper),
            "SAME_LOWER" => Ok(AutoPad::SameLower),
            "VALID" => Ok(AutoPad::Valid),
            other => Err(OpError::attr(
                "auto_pad",
                format!("unknown value {other:?} (expected NOTSET, SAME_UPPER, SAME_LOWER or VALID)"),
            )),
        }
    }

    /// Reads `auto_pad` from a node's attributes (default `NOTSET`).
    pub fn from_attrs(a: &Attrs) -> Result<AutoPad, OpError> {
        AutoPad::parse(&a.string("auto_pad", "NOTSET")?)
    }
}

/// The window attributes of a Conv or pool node, as written. Lists that are absent take
/// their defaults (strides and dilations 1, pads 0) once the spatial rank is known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Window {
    /// `kernel_shape`: required for pools; Conv infers it from the weight when absent.
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    /// `[x1_begin, x2_begin, ..., x1_end, x2_end, ...]`.
    pub pads: Option<Vec<usize>>,
    pub auto_pad: AutoPad,
    /// Pools only (opset 10+); Conv always has `false`.
    pub ceil_mode: bool,
}

/// Largest kernel size, stride, dilation or pad we accept. Real networks stay in the tens;
/// a bound keeps every product of window parameters far from overflowing `usize`, so a
/// malformed model gets an error instead of wrapped index arithmetic.
pub const MAX_WINDOW_VALUE: usize = 1 << 20;

impl Window {
    /// Reads `kernel_shape`, `strides`, `dilations`, `pads` and `auto_pad` (not `ceil_mode`,
    /// which only pools define) and checks what can be checked without the input's rank.
    pub fn from_attrs(a: &Attrs) -> Result<Window, OpError> {
        let w = Window {
            kernel_shape: a.usizes_opt("kernel_shape")?,
            strides: a.usizes_opt("strides")?,
            dilations: a.usizes_opt("dilations")?,
            pads: a.usizes_opt("pads")?,
            auto_pad: AutoPad::from_attrs(a)?,
            ceil_mode: false,
        };
        for (name, list) in [("kernel_shape", &w.kernel_shape), ("strides", &w.strides), ("dilations", &w.dilations)] {
            if let Some(v) = list {
                if v.contains(&0) {
                    return Err(OpError::attr(name, format!("values must be positive, got {v:?}")));
                }
            }
        }
        for (name, list) in
            [("kernel_shape", &w.kernel_shape), ("strides", &w.strides), ("dilations", &w.dilations), ("pads", &w.pads)]
        {
            if let Some(v) = list.as_ref().filter(|v| v.iter().any(|&x| x > MAX_WINDOW_VALUE)) {
                return Err(OpError::attr(
                    name,
                    format!("values above {MAX_WINDOW_VALUE} are not supported, got {v:?}"),
                ));
            }
        }
        if let Some(p) = &w.pads {
            if p.len() % 2 != 0 {
                return Err(OpError::attr(
                    "pads",
                    format!("needs a begin and an end per axis, got {} values", p.len()),
                ));
            }
            if w.auto_pad != AutoPad::NotSet && p.iter().any(|&x| x != 0) {
                return Err(OpError::attr(
                    "pads",
                    format!("explicit pads {p:?} cannot be combined with auto_pad={:?}", w.auto_pad),
                ));
            }
        }
        let lens: Vec<(&str, usize)> = [
            ("kernel_shape", w.kernel_shape.as_ref().map(Vec::len)),
            ("strides", w.strides.as_ref().map(Vec::len)),
            ("dilations", w.dilations.as_ref().map(Vec::len)),
            ("pads", w.pads.as_ref().map(|p| p.len() / 2)),
        ]
        .into_iter()
        .filter_map(|(n, l)| l.map(|l| (n, l)))
        .collect();
        if let Some(&(first, len)) = lens.first() {
            if let Some(&(other, olen)) = lens.iter().find(|&&(_, l)| l != len) {
                return Err(OpError::attr(other, format!("covers {olen} spatial axes but {first} covers {len}")));
            }
        }
        Ok(w)
    }

    /// The spatial rank the attributes imply, if any list is present.
    pub fn spatial_rank(&self) -> Option<usize> {
        self.kernel_shape
            .as_ref()
            .map(Vec::len)
            .or(self.strides.as_ref().map(Vec::len))
            .or(self.dilations.as_ref().map(Vec::len))
            .or(self.pads.as_ref().map(|p| p.len() / 2))
    }

    /// Per-axis parameters for `kernel` (the real kernel's spatial dims): strides,
    /// dilations and explicit pads, defaulted and checked against the rank.
    fn params(&self, kernel: &[usize]) -> Result<Vec<AxisParams>, OpError> {
        let rank = kernel.len();
        if let Some(r) = self.spatial_rank() {
            if r != rank {
                return Err(OpError::shape(format!(
                    "the window attributes cover {r} spatial axes but the input has {rank}"
                )));
            }
        }
        if kernel.contains(&0) {
            return Err(OpError::shape(format!("kernel spatial shape {kernel:?} has a zero dimension")));
        }
        if kernel.iter().any(|&k| k > MAX_WINDOW_VALUE) {
            return Err(OpError::shape(format!("kernel spatial shape {kernel:?} is larger than {MAX_WINDOW_VALUE}")));
        }
        Ok((0..rank)
            .map(|i| AxisParams {
                kernel: kernel[i],
                stride: self.strides.as_ref().map_or(1, |s| s[i]),
                dilation: self.dilations.as_ref().map_or(1, |d| d[i]),
                pads: self.pads.as_ref().map_or((0, 0), |p| (p[i], p[rank + i])),
                auto_pad: self.auto_pad,
                ceil_mode: self.ceil_mode,
            })
            .collect())
    }

    /// Resolves every spatial axis for a concrete input.
    pub fn axes(&self, kernel: &[usize], input: &[usize]) -> Result<Vec<Axis>, OpError> {
        if input.len() != kernel.len() {
            return Err(OpError::shape(format!(
                "input has {} spatial axes but the kernel has {}",
                input.len(),
                kernel.len()
            )));
        }
        self.params(kernel)?.iter().zip(input).map(|(p, &len)| p.resolve(len)).collect()
    }

    /// Output spatial dims for shape inference. A symbolic input dim gives an unknown output
    /// dim, except on axes that provably keep the size (unit stride with `SAME_*`, or a
    /// unit-stride window whose pads exactly make up for its extent), where the symbol
    /// passes through.
    pub fn output_dims(&self, kernel: &[usize], input: &[Dim]) -> Result<Vec<Dim>, OpError> {
        if input.len() != kernel.len() {
            return Err(OpError::shape(format!(
                "input has {} spatial axes but the kernel has {}",
                input.len(),
                kernel.len()
            )));
        }
        self.params(kernel)?
            .iter()
            .zip(input)
            .map(|(p, d)| match d {
                Dim::Known(len) => Ok(Dim::Known(p.resolve(*len)?.output)),
                Dim::Sym(_) if p.keeps_size() => Ok(d.clone()),
                Dim::Sym(_) => Ok(Dim::unknown()),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
struct AxisParams {
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: (usize, usize),
    auto_pad: AutoPad,
    ceil_mode: bool,
}

impl AxisParams {
    fn effective_kernel(&self) -> usize {
        (self.kernel - 1) * self.dilation + 1
    }

    /// True when `out == in` for every input length.
    fn keeps_size(&self) -> bool {
        match self.auto_pad {
            AutoPad::SameUpper | AutoPad::SameLower => self.stride == 1,
            AutoPad::NotSet => self.stride == 1 && self.pads.0 + self.pads.1 + 1 == self.effective_kernel(),
            AutoPad::Valid => self.stride == 1 && self.effective_kernel() == 1,
        }
    }

    fn resolve(&self, input: usize) -> Result<Axis, OpError> {
        let (s, ek) = (self.stride, self.effective_kernel());
        let (output, pad_begin, pad_end) = match self.auto_pad {
            AutoPad::SameUpper | AutoPad::SameLower => {
                let out = input.div_ceil(s);
                let total = ((out.max(1) - 1) * s + ek).saturating_sub(input);
                let small = total / 2;
                match self.auto_pad {
                    AutoPad::SameUpper => (out, small, total - small),
                    _ => (out, total - small, small),
                }
            }
            AutoPad::NotSet | AutoPad::Valid => {
                let (pb, pe) = if self.auto_pad == AutoPad::Valid { (0, 0) } else { self.pads };
                let padded = input
                    .checked_add(pb + pe)
                    .ok_or_else(|| OpError::shape(format!("input length {input} plus pads overflows")))?;
                if padded < ek {
                    return Err(OpError::shape(format!(
                        "padded input length {padded} (input {input} + pads {pb}+{pe}) is shorter than \
                         the window extent {ek} (kernel {} with dilation {})",
                        self.kernel, self.dilation
                    )));
                }
                let span = padded - ek;
                let mut out = span / s + 1;
                if self.ceil_mode {
                    out = span.div_ceil(s) + 1;
                    if (out - 1) * s >= input + pb {
                        out -= 1;
                    }
                }
                (out, pb, pe)
            }
        };
        Ok(Axis { input, output, kernel: self.kernel, stride: s, dilation: self.dilation, pad_begin, pad_end })
    }
}

/// One spatial axis of a sliding-window op, fully resolved for a concrete input length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    pub input: usize,
    pub output: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
}

impl Axis {
    /// A trivial axis of length 1 (used to lift 1-D and 2-D windows to 3-D).
    pub const UNIT: Axis = Axis { input: 1, output: 1, kernel: 1, stride: 1, dilation: 1, pad_begin: 0, pad_end: 0 };

    /// Input coordinate read by kernel tap `k` of output position `o`; negative or
    /// `>= input` when the tap falls in the padding (or a ceil-mode overhang).
    pub fn input_pos(&self, o: usize, k: usize) -> isize {
        (o * self.stride + k * self.dilation) as isize - self.pad_begin as isize
    }

    /// The input coordinate when tap `k` of output `o` lands inside the input.
    pub fn input_index(&self, o: usize, k: usize) -> Option<usize> {
        let p = self.input_pos(o, k);
        (p >= 0 && (p as usize) < self.input).then_some(p as usize)
    }

    /// Whether tap `k` of output `o` lands inside the input or the explicit padding (not in
    /// the ceil-mode overhang beyond `pad_end`).
    pub fn in_padded_extent(&self, o: usize, k: usize) -> bool {
        let p = self.input_pos(o, k);
        p >= -(self.pad_begin as isize) && p < (self.input + self.pad_end) as isize
    }
}

/// Lifts 1-D, 2-D and 3-D axes to exactly three by prepending unit axes, so kernels need one
/// 3-D loop nest. More than three spatial axes → `Unsupported`.
pub fn lift_to_3d(axes: &[Axis]) -> Result<[Axis; 3], OpError> {
    match *axes {
        [w] => Ok([Axis::UNIT, Axis::UNIT, w]),
        [h, w] => Ok([Axis::UNIT, h, w]),
        [d, h, w] => Ok([d, h, w]),
        _ => Err(OpError::Unsupported(format!(
            "{} spatial axes (only 1-D, 2-D and 3-D windows are supported)",
            axes.len()
        ))),
    }
}

/// Checks that input `index` is an f32 `[N, C, spatial...]` tensor with 1 to 3 spatial axes
/// (when its dtype and rank are known) and returns its shape when known.
pub fn check_spatial_input(fact: &Fact, index: usize) -> Result<Option<&[Dim]>, OpError> {
    if let Some(dtype) = fact.dtype {
        if dtype != DType::F32 {
            return Err(OpError::DType { input: index, dtype, expected: "float32" });
        }
    }
    match &fact.shape {
        Some(s) if !(3..=5).contains(&s.len()) => Err(OpError::shape(format!(
            "input {index} has shape {fact}; expected [N,C,spatial...] with 1 to 3 spatial axes"
        ))),
        Some(s) => Ok(Some(s)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;

    fn axis(input: usize, kernel: usize, stride: usize, pads: (usize, usize), auto_pad: AutoPad, ceil: bool) -> Axis {
        AxisParams { kernel, stride, dilation: 1, pads, auto_pad, ceil_mode: ceil }.resolve(input).unwrap()
    }

    #[test]
    fn auto_pad_parses_spec_values_and_rejects_others() {
        assert_eq!(AutoPad::parse("SAME_LOWER").unwrap(), AutoPad::SameLower);
        assert!(matches!(AutoPad::parse("FOO"), Err(OpError::Attribute { .. })));
        assert!(matches!(AutoPad::parse("same_upper"), Err(OpError::Attribute { .. })));
    }

    #[test]
    fn explicit_pads_floor_the_output_size() {
        // 224 + 3 + 3 - 7 = 223, / 2 = 111 (floor), + 1 = 112: ResNet's first conv.
        let a = axis(224, 7, 2, (3, 3), AutoPad::NotSet, false);
        assert_eq!((a.output, a.pad_begin, a.pad_end), (112, 3, 3));
    }

    #[test]
    fn ceil_mode_rounds_up_but_last_window_must_start_before_end_padding() {
        assert_eq!(axis(4, 3, 2, (0, 0), AutoPad::NotSet, true).output, 2);
        // test_maxpool_2d_ceil_output_size_reduce_by_one: ceil(1/2)+1 = 2 would start at 2 == input.
        assert_eq!(axis(2, 1, 2, (0, 0), AutoPad::NotSet, true).output, 1);
        // test_averagepool_2d_ceil_last_window_starts_on_pad: second window would start at 3 == 2 + 1.
        assert_eq!(axis(2, 3, 3, (1, 1), AutoPad::NotSet, true).output, 1);
    }

    #[test]
    fn same_upper_puts_the_odd_pad_at_the_end_and_same_lower_at_the_beginning() {
        let u = axis(5, 4, 1, (0, 0), AutoPad::SameUpper, false);
        assert_eq!((u.output, u.pad_begin, u.pad_end), (5, 1, 2));
        let l = axis(5, 4, 1, (0, 0), AutoPad::SameLower, false);
        assert_eq!((l.output, l.pad_begin, l.pad_end), (5, 2, 1));
        let s2 = axis(7, 3, 2, (0, 0), AutoPad::SameUpper, false);
        assert_eq!((s2.output, s2.pad_begin, s2.pad_end), (4, 1, 1));
    }

    #[test]
    fn window_larger_than_padded_input_is_a_shape_error() {
        let p =
            AxisParams { kernel: 5, stride: 1, dilation: 1, pads: (0, 0), auto_pad: AutoPad::Valid, ceil_mode: false };
        assert!(matches!(p.resolve(4), Err(OpError::Shape(_))));
    }

    #[test]
    fn pads_with_auto_pad_are_rejected() {
        let a = Attrs::new(vec![
            ("auto_pad".into(), AttrValue::String("SAME_UPPER".into())),
            ("pads".into(), AttrValue::Ints(vec![1, 1, 1, 1])),
        ]);
        assert!(matches!(Window::from_attrs(&a), Err(OpError::Attribute { .. })));
    }

    #[test]
    fn attribute_lists_must_agree_on_the_rank() {
        let a = Attrs::new(vec![
            ("kernel_shape".into(), AttrValue::Ints(vec![3, 3])),
            ("strides".into(), AttrValue::Ints(vec![2])),
        ]);
        assert!(matches!(Window::from_attrs(&a), Err(OpError::Attribute { .. })));
        let odd = Attrs::new(vec![("pads".into(), AttrValue::Ints(vec![1, 1, 1]))]);
        assert!(matches!(Window::from_attrs(&odd), Err(OpError::Attribute { .. })));
        let zero = Attrs::new(vec![("strides".into(), AttrValue::Ints(vec![0, 1]))]);
        assert!(matches!(Window::from_attrs(&zero), Err(OpError::Attribute { .. })));
    }

    #[test]
    fn symbolic_dims_pass_through_size_keeping_axes_only() {
        let w = Window { pads: Some(vec![1, 1, 1, 1]), ..Window::default() };
        let n = Dim::Sym("H".into());
        assert_eq!(w.output_dims(&[3, 3], &[n.clone(), Dim::Known(8)]).unwrap(), vec![n.clone(), Dim::Known(8)]);
        let strided = Window { strides: Some(vec![2, 2]), ..w };
        assert_eq!(strided.output_dims(&[3, 3], &[n, Dim::Known(8)]).unwrap(), vec![Dim::unknown(), Dim::Known(4)]);
    }
}
