//! MaxPool and AveragePool: reductions over sliding windows of the spatial axes.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__MaxPool.html>,
//! <https://onnx.ai/onnx/operators/onnx__AveragePool.html>. Window geometry (`auto_pad`,
//! `pads`, `strides`, `dilations`, `ceil_mode`) is shared with Conv in
//! [`crate::ops::padding`]. We compute f32 with 1 to 3 spatial axes.
//!
//! MaxPool history: 1; 8 adds `storage_order` and the optional second output `Indices`;
//! 10 adds `ceil_mode` and `dilations`; 11 clarifies `pads`; 12 adds int8/uint8 (we compute
//! f32 only: other types → `OpError::DType`). Padding never wins (it acts as -inf).
//! `Indices` (int64) is always produced as output 1 and holds the flat index of the maximum
//! in X, `((n·C + c)·D + d)·H·W + h·W + w` for `storage_order=0`, or with the spatial
//! coordinates flattened column-major (`d + h·D + w·D·H`) for `storage_order=1`. Ties keep
//! the first tap in row-major window order; NaNs never win (as in onnxruntime); a window that
//! holds only padding yields -inf with index -1.
//!
//! AveragePool history: 1; 7 adds `count_include_pad`; 10 adds `ceil_mode`; 11 clarifies
//! `pads`; 19 adds `dilations`. The divisor is the number of taps inside the input
//! (`count_include_pad=0`), or the number inside the input plus its explicit/auto padding
//! (`count_include_pad=1`) — never the ceil-mode overhang beyond that, as the ONNX reference
//! implementation and onnxruntime do (node tests `test_averagepool_2d_ceil` and
//! `..._ceil_last_window_starts_on_pad`). A window with a zero divisor yields NaN.
//!
//! Every attribute is accepted at every opset 7..=25; one introduced later than the model's
//! opset just means what it means in the newest opset.

use crate::error::OpError;
use crate::fact::{Dim, Fact};
use crate::ops::padding::{check_spatial_input, lift_to_3d, Axis, Window};
use crate::ops::{check_arity, f32_input, required, Attrs, OpDef};
use crate::tensor::{numel, DType, Tensor};

/// How MaxPool's `Indices` flatten the spatial coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageOrder {
    /// `storage_order=0` (default): row-major.
    #[default]
    RowMajor,
    /// `storage_order=1`: column-major over the spatial axes.
    ColumnMajor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool {
    /// `kernel_shape` is always present.
    pub window: Window,
    pub storage_order: StorageOrder,
}

impl MaxPool {
    pub fn from_onnx(a: &Attrs, _opset: i64) -> Result<Self, OpError> {
        let window = pool_window(a)?;
        let storage_order = match a.int("storage_order", 0)? {
            0 => StorageOrder::RowMajor,
            1 => StorageOrder::ColumnMajor,
            other => return Err(OpError::attr("storage_order", format!("must be 0 or 1, got {other}"))),
        };
        Ok(MaxPool { window, storage_order })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AveragePool {
    /// `kernel_shape` is always present.
    pub window: Window,
    /// Whether explicit/auto padding counts in the divisor (`count_include_pad`, default 0).
    pub count_include_pad: bool,
}

impl AveragePool {
    pub fn from_onnx(a: &Attrs, _opset: i64) -> Result<Self, OpError> {
        let window = pool_window(a)?;
        let count_include_pad = bool_attr(a, "count_include_pad")?;
        Ok(AveragePool { window, count_include_pad })
    }
}

/// The window attributes of a pool: `kernel_shape` is required, `ceil_mode` is read.
fn pool_window(a: &Attrs) -> Result<Window, OpError> {
    let mut w = Window::from_attrs(a)?;
    if w.kernel_shape.is_none() {
        return Err(OpError::attr("kernel_shape", "is required"));
    }
    w.ceil_mode = bool_attr(a, "ceil_mode")?;
    Ok(w)
}

/// A 0/1 int attribute, default 0.
fn bool_attr(a: &Attrs, name: &str) -> Result<bool, OpError> {
    match a.int(name, 0)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(OpError::attr(name, format!("must be 0 or 1, got {other}"))),
    }
}

/// Output shape fact of a pool over `x`.
fn infer_pool(window: &Window, inputs: &[Option<&Fact>]) -> Result<Vec<Dim>, OpError> {
    check_arity(inputs, 1, 1)?;
    let x = required(inputs, 0)?;
    let kernel = window.kernel_shape.as_deref().unwrap_or_default();
    let xs = match check_spatial_input(x, 0)? {
        Some(xs) => xs.to_vec(),
        None => vec![Dim::unknown(); kernel.len() + 2],
    };
    if xs.len() != kernel.len() + 2 {
        return Err(OpError::shape(format!(
            "input {x} has {} spatial axes but kernel_shape {kernel:?} has {}",
            xs.len().saturating_sub(2),
            kernel.len()
        )));
    }
    let mut shape = xs[..2].to_vec();
    shape.extend(window.output_dims(kernel, &xs[2..])?);
    Ok(shape)
}

/// The shapes of one pool call, spatial axes lifted to 3-D.
struct PoolGeometry {
    /// `N · C`: the number of independent planes.
    planes: usize,
    axes: [Axis; 3],
    out_shape: Vec<usize>,
}

fn pool_geometry(window: &Window, x: &Tensor) -> Result<PoolGeometry, OpError> {
    let xs = x.shape();
    let kernel = window.kernel_shape.as_deref().unwrap_or_default();
    if !(3..=5).contains(&xs.len()) || xs.len() != kernel.len() + 2 {
        return Err(OpError::shape(format!(
            "input shape {xs:?} does not fit kernel_shape {kernel:?}: expected [N,C] and one dim per kernel axis"
        )));
    }
    let axes = window.axes(kernel, &xs[2..])?;
    let mut out_shape = xs[..2].to_vec();
    out_shape.extend(axes.iter().map(|a| a.output));
    if out_shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none() {
        return Err(OpError::shape(format!("output shape {out_shape:?} is too large")));
    }
    Ok(PoolGeometry { planes: xs[0] * xs[1], axes: lift_to_3d(&axes)?, out_shape })
}

impl OpDef for MaxPool {
    fn onnx_type(&self) -> &'static str {
        "MaxPool"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let shape = infer_pool(&self.window, inputs)?;
        Ok(vec![Fact::new(DType::F32, shape.clone()), Fact::new(DType::I64, shape)])
    }

    /// Naive loops: for every plane and output position, scan the window's taps.
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x_t = f32_input(inputs, 0)?;
        let g = pool_geometry(&self.window, x_t)?;
        let x = x_t.as_f32().unwrap_or_default();
        let [ad, ah, aw] = g.axes;
        let in_plane = ad.input * ah.input * aw.input;
        let flat = |id: usize, ih: usize, iw: usize| match self.storage_order {
            StorageOrder::RowMajor => (id * ah.input + ih) * aw.input + iw,
            StorageOrder::ColumnMajor => id + ih * ad.input + iw * ad.input * ah.input,
        };
        let len = numel(&g.out_shape);
        let (mut y, mut indices) = (Vec::with_capacity(len), Vec::with_capacity(len));
        for plane in 0..g.planes {
            let xp = &x[plane * in_plane..][..in_plane];
            for od in 0..ad.output {
                for oh in 0..ah.output {
                    for ow in 0..aw.output {
                        let (mut best, mut best_index) = (f32::NEG_INFINITY, -1i64);
                        for kd in 0..ad.kernel {
                            let Some(id) = ad.input_index(od, kd) else { continue };
                            for kh in 0..ah.kernel {
                                let Some(ih) = ah.input_index(oh, kh) else { continue };
                                for kw in 0..aw.kernel {
                                    let Some(iw) = aw.input_index(ow, kw) else { continue };
                                    let v = xp[(id * ah.input + ih) * aw.input + iw];
                                    if v > best || (best_index < 0 && !v.is_nan()) {
                                        best = v;
                                        best_index = (plane * in_plane + flat(id, ih, iw)) as i64;
                                    }
                                }
                            }
                        }
                        y.push(best);
                        indices.push(best_index);
                    }
                }
            }
        }
        Ok(vec![Tensor::from_f32(g.out_shape.clone(), y), Tensor::from_i64(g.out_shape, indices)])
    }
}

impl OpDef for AveragePool {
    fn onnx_type(&self) -> &'static str {
        "AveragePool"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        Ok(vec![Fact::new(DType::F32, infer_pool(&self.window, inputs)?)])
    }

    /// Naive loops: sum the taps inside the input, divide by the count the spec asks for.
    /// Whether a tap is inside is decided axis by axis, so both counts are products of
    /// per-axis counts.
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, 1)?;
        let x_t = f32_input(inputs, 0)?;
        let g = pool_geometry(&self.window, x_t)?;
        let x = x_t.as_f32().unwrap_or_default();
        let [ad, ah, aw] = g.axes;
        let in_plane = ad.input * ah.input * aw.input;
        let count = |a: &Axis, o: usize| -> usize {
            (0..a.kernel)
                .filter(
                    |&k| if self.count_include_pad { a.in_padded_extent(o, k) } else { a.input_index(o, k).is_some() },
                )
                .count()
        };
        let mut y = Vec::with_capacity(numel(&g.out_shape));
        for plane in 0..g.planes {
            let xp = &x[plane * in_plane..][..in_plane];
            for od in 0..ad.output {
                for oh in 0..ah.output {
                    for ow in 0..aw.output {
                        let mut sum = 0.0f32;
                        for kd in 0..ad.kernel {
                            let Some(id) = ad.input_index(od, kd) else { continue };
                            for kh in 0..ah.kernel {
                                let Some(ih) = ah.input_index(oh, kh) else { continue };
                                for kw in 0..aw.kernel {
                                    let Some(iw) = aw.input_index(ow, kw) else { continue };
                                    sum += xp[(id * ah.input + ih) * aw.input + iw];
                                }
                            }
                        }
                        let divisor = count(&ad, od) * count(&ah, oh) * count(&aw, ow);
                        y.push(sum / divisor as f32);
                    }
                }
            }
        }
        Ok(vec![Tensor::from_f32(g.out_shape, y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;

    fn attrs(items: Vec<(&str, AttrValue)>) -> Attrs {
        Attrs::new(items.into_iter().map(|(n, v)| (n.to_string(), v)).collect())
    }

    fn ints(v: &[i64]) -> AttrValue {
        AttrValue::Ints(v.to_vec())
    }

    fn max_pool(items: Vec<(&str, AttrValue)>) -> MaxPool {
        let a = attrs(items);
        let p = MaxPool::from_onnx(&a, 12).unwrap();
        a.finish().unwrap();
        p
    }

    fn avg_pool(items: Vec<(&str, AttrValue)>) -> AveragePool {
        let a = attrs(items);
        let p = AveragePool::from_onnx(&a, 19).unwrap();
        a.finish().unwrap();
        p
    }

    fn arange_from_1(shape: Vec<usize>) -> Tensor {
        let n = numel(&shape);
        Tensor::from_f32(shape, (1..=n).map(|i| i as f32).collect())
    }

    fn run(op: &dyn OpDef, x: &Tensor) -> Vec<Tensor> {
        op.eval(&[Some(x)]).unwrap()
    }

    #[test]
    fn maxpool_2d_ceil_matches_onnx_node_test() {
        let p = max_pool(vec![
            ("ceil_mode", AttrValue::Int(1)),
            ("kernel_shape", ints(&[3, 3])),
            ("strides", ints(&[2, 2])),
        ]);
        let y = run(&p, &arange_from_1(vec![1, 1, 4, 4]));
        assert_eq!(y[0].shape(), [1, 1, 2, 2]);
        assert_eq!(y[0].as_f32().unwrap(), [11.0, 12.0, 15.0, 16.0]);
    }

    #[test]
    fn maxpool_ceil_output_size_reduces_by_one_when_last_window_starts_in_padding() {
        let p = max_pool(vec![
            ("ceil_mode", AttrValue::Int(1)),
            ("kernel_shape", ints(&[1, 1])),
            ("strides", ints(&[2, 2])),
        ]);
        let y = run(&p, &arange_from_1(vec![1, 1, 2, 2]));
        assert_eq!((y[0].shape(), y[0].as_f32().unwrap()), ([1usize, 1, 1, 1].as_slice(), [1.0].as_slice()));
    }

    #[test]
    fn maxpool_indices_are_row_major_with_pads_as_in_onnx_node_test() {
        let p = max_pool(vec![("kernel_shape", ints(&[5, 5])), ("pads", ints(&[2, 2, 2, 2]))]);
        let y = run(&p, &arange_from_1(vec![1, 1, 5, 5]));
        #[rustfmt::skip]
        let want = [13., 14., 15., 15., 15., 18., 19., 20., 20., 20., 23., 24., 25., 25., 25.,
                    23., 24., 25., 25., 25., 23., 24., 25., 25., 25.];
        assert_eq!(y[0].as_f32().unwrap(), want);
        let want_idx: Vec<i64> = want.iter().map(|&v| v as i64 - 1).collect();
        assert_eq!(y[1].as_i64().unwrap(), want_idx);
    }

    #[test]
    fn maxpool_indices_honour_storage_order_column_major() {
        let p = max_pool(vec![
            ("kernel_shape", ints(&[2, 2])),
            ("storage_order", AttrValue::Int(1)),
            ("strides", ints(&[2, 2])),
        ]);
        let y = run(&p, &arange_from_1(vec![1, 1, 5, 5]));
        assert_eq!(y[0].as_f32().unwrap(), [7.0, 9.0, 17.0, 19.0]);
        assert_eq!(y[1].as_i64().unwrap(), [6, 16, 8, 18]);
    }

    #[test]
    fn maxpool_indices_count_batch_and_channel_planes() {
        let p = max_pool(vec![("kernel_shape", ints(&[2]))]);
        let x = Tensor::from_f32(vec![2, 1, 3], vec![0.0, 5.0, 1.0, 9.0, 2.0, 2.0]);
        let y = run(&p, &x);
        assert_eq!(y[0].as_f32().unwrap(), [5.0, 5.0, 9.0, 2.0]);
        assert_eq!(y[1].as_i64().unwrap(), [1, 1, 3, 4]);
    }

    #[test]
    fn maxpool_dilations_skip_taps() {
        let p = max_pool(vec![("dilations", ints(&[2, 2])), ("kernel_shape", ints(&[2, 2]))]);
        let y = run(&p, &arange_from_1(vec![1, 1, 4, 4]));
        assert_eq!(y[0].as_f32().unwrap(), [11.0, 12.0, 15.0, 16.0]);
    }

    #[test]
    fn maxpool_padding_never_wins_over_negative_values() {
        let p = max_pool(vec![("kernel_shape", ints(&[3])), ("pads", ints(&[1, 1]))]);
        let y = run(&p, &Tensor::from_f32(vec![1, 1, 2], vec![-3.0, -4.0]));
        assert_eq!(y[0].as_f32().unwrap(), [-3.0, -3.0]);
    }

    #[test]
    fn averagepool_2d_ceil_excludes_the_overhang() {
        let p = avg_pool(vec![
            ("ceil_mode", AttrValue::Int(1)),
            ("kernel_shape", ints(&[3, 3])),
            ("strides", ints(&[2, 2])),
        ]);
        let y = run(&p, &arange_from_1(vec![1, 1, 4, 4]));
        assert_eq!(y[0].as_f32().unwrap(), [6.0, 7.5, 12.0, 13.5]);
    }

    #[test]
    fn averagepool_ceil_last_window_starts_on_pad_matches_onnx_node_test() {
        let p = avg_pool(vec![
            ("ceil_mode", AttrValue::Int(1)),
            ("count_include_pad", AttrValue::Int(1)),
            ("kernel_shape", ints(&[3, 3])),
            ("pads", ints(&[1, 1, 1, 1])),
            ("strides", ints(&[3, 3])),
        ]);
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![0.9, 0.0, 0.0, 0.0]);
        let y = run(&p, &x);
        assert_eq!(y[0].shape(), [1, 1, 1, 1]);
        assert!((y[0].as_f32().unwrap()[0] - 0.1).abs() < 1e-6);
    }

    #[test]
    fn averagepool_count_include_pad_decides_the_divisor() {
        let x = Tensor::from_f32(vec![1, 1, 2], vec![3.0, 6.0]);
        let base = vec![("kernel_shape", ints(&[3])), ("pads", ints(&[1, 1]))];
        let exclude = avg_pool(base.clone());
        assert_eq!(run(&exclude, &x)[0].as_f32().unwrap(), [4.5, 4.5]);
        let mut with = base;
        with.push(("count_include_pad", AttrValue::Int(1)));
        assert_eq!(run(&avg_pool(with), &x)[0].as_f32().unwrap(), [3.0, 3.0]);
    }

    #[test]
    fn averagepool_dilations_match_onnx_node_test() {
        let p = avg_pool(vec![
            ("ceil_mode", AttrValue::Int(1)),
            ("dilations", ints(&[2, 2])),
            ("kernel_shape", ints(&[2, 2])),
            ("strides", ints(&[1, 1])),
        ]);
        assert_eq!(run(&p, &arange_from_1(vec![1, 1, 4, 4]))[0].as_f32().unwrap(), [6.0, 7.0, 10.0, 11.0]);
    }

    #[test]
    fn averagepool_same_lower_pads_at_the_beginning() {
        let p = avg_pool(vec![("auto_pad", AttrValue::String("SAME_LOWER".into())), ("kernel_shape", ints(&[2]))]);
        let y = run(&p, &Tensor::from_f32(vec![1, 1, 3], vec![2.0, 4.0, 8.0]));
        assert_eq!(y[0].as_f32().unwrap(), [2.0, 3.0, 6.0]);
    }

    #[test]
    fn pool_infer_passes_symbols_and_types_indices_int64() {
        let p =
            max_pool(vec![("kernel_shape", ints(&[3, 3])), ("pads", ints(&[1, 1, 1, 1])), ("strides", ints(&[2, 2]))]);
        let x = Fact::new(DType::F32, vec![Dim::Sym("N".into()), 64.into(), 112.into(), 112.into()]);
        let out = p.infer(&[Some(&x)]).unwrap();
        assert_eq!(out[0].to_string(), "float32[N,64,56,56]");
        assert_eq!(out[1].to_string(), "int64[N,64,56,56]");
        let unknown = p.infer(&[Some(&Fact::unknown())]).unwrap();
        assert_eq!(unknown[0].rank(), Some(4));
    }

    #[test]
    fn pools_require_kernel_shape_and_reject_bad_flags() {
        assert!(matches!(MaxPool::from_onnx(&attrs(vec![]), 12), Err(OpError::Attribute { .. })));
        let so = attrs(vec![("kernel_shape", ints(&[2])), ("storage_order", AttrValue::Int(2))]);
        assert!(matches!(MaxPool::from_onnx(&so, 12), Err(OpError::Attribute { .. })));
        let cip = attrs(vec![("kernel_shape", ints(&[2])), ("count_include_pad", AttrValue::Int(5))]);
        assert!(matches!(AveragePool::from_onnx(&cip, 12), Err(OpError::Attribute { .. })));
        let ap = attrs(vec![("kernel_shape", ints(&[2])), ("auto_pad", AttrValue::String("SAME".into()))]);
        assert!(matches!(AveragePool::from_onnx(&ap, 12), Err(OpError::Attribute { .. })));
    }

    #[test]
    fn pools_reject_non_f32_and_rank_mismatch() {
        let p = max_pool(vec![("kernel_shape", ints(&[2, 2]))]);
        let i = Tensor::from_i64(vec![1, 1, 2, 2], vec![1, 2, 3, 4]);
        assert!(matches!(p.eval(&[Some(&i)]), Err(OpError::DType { input: 0, .. })));
        let uint8 = Fact::new(DType::Unsupported(2), vec![1.into(), 1.into(), 5.into(), 5.into()]);
        assert!(matches!(p.infer(&[Some(&uint8)]), Err(OpError::DType { .. })));
        let x3 = Tensor::zeros(vec![1, 1, 4]);
        assert!(matches!(p.eval(&[Some(&x3)]), Err(OpError::Shape(_))));
        let f3 = Fact::known(DType::F32, &[1, 1, 4]);
        assert!(matches!(p.infer(&[Some(&f3)]), Err(OpError::Shape(_))));
        let too_small = Tensor::zeros(vec![1, 1, 1, 1]);
        assert!(matches!(p.eval(&[Some(&too_small)]), Err(OpError::Shape(_))));
    }
}
