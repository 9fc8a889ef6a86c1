//! Elementwise arithmetic with numpy broadcasting: Add, Sub, Mul, Div and the variadic Sum.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__Add.html> (Sub, Mul, Div alike) and
//! <https://onnx.ai/onnx/operators/onnx__Sum.html>.
//!
//! Opset history that matters:
//! - Add/Sub/Mul/Div 7: the `broadcast`/`axis` attributes of opsets 1–6 are gone; numpy
//!   multidirectional broadcasting always applies. We load opset ≥ 7 only, so those
//!   attributes are rejected as unknown. 13 and 14 only add element types (bfloat16, the
//!   8/16-bit integers) that we cannot store.
//! - Sum 6: all inputs must have the same shape; Sum 8: multidirectional broadcasting.
//!   Broadcasting is a superset of equal shapes, so every opset gets broadcasting.
//!
//! Supported element types: Add/Sub/Mul/Div on float32, int64 and int32 (both inputs of one
//! type, else [`OpError::DType`]); Sum on float32 (the spec allows only float types).
//! Integer arithmetic wraps on overflow like numpy; integer Div truncates toward zero like C
//! (`-3 / 2 == -1`, ONNX test `test_div_int32_trunc`); integer division by zero is an error.
//!
//! The broadcasting rules live here once, for facts ([`broadcast_shapes`]) and for concrete
//! shapes ([`broadcast_concrete`], [`broadcast_index_map`]), for every op that broadcasts.

use crate::error::OpError;
use crate::fact::{fmt_shape, Dim, Fact};
use crate::ops::{check_arity, required, Attrs, OpDef};
use crate::tensor::{numel, strides, DType, Tensor, TensorData};

// ---- broadcasting ------------------------------------------------------------------------

/// The numpy-broadcast shape of `shapes` over symbolic dimensions.
///
/// Shapes are aligned on their last axis; a missing or `1` dimension stretches. Two different
/// numbers other than 1 are an error. A symbol next to a number `k > 1` resolves to `k` (the
/// symbol must be 1 or `k` at run time); equal symbols stay that symbol; different symbols
/// give an unknown dimension (either could be 1).
pub fn broadcast_shapes(shapes: &[&[Dim]]) -> Result<Vec<Dim>, OpError> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for axis in 0..rank {
        let dims = shapes.iter().filter_map(|s| (axis + s.len()).checked_sub(rank).map(|i| &s[i]));
        let mut known: Option<usize> = None;
        let mut sym: Option<&Dim> = None;
        let mut syms_differ = false;
        for d in dims {
            match d {
                Dim::Known(1) => {}
                Dim::Known(k) => match known {
                    Some(prev) if prev != *k => return Err(broadcast_error_dims(shapes)),
                    _ => known = Some(*k),
                },
                s @ Dim::Sym(_) => match sym {
                    Some(prev) if prev != s => syms_differ = true,
                    _ => sym = Some(s),
                },
            }
        }
        out.push(match (known, sym) {
            (Some(k), _) => Dim::Known(k),
            (None, Some(_)) if syms_differ => Dim::unknown(),
            (None, Some(s)) => s.clone(),
            (None, None) => Dim::Known(1),
        });
    }
    Ok(out)
}

/// The numpy-broadcast shape of concrete shapes (see [`broadcast_shapes`]).
pub fn broadcast_concrete(shapes: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if d != 1 {
                if *o != 1 && *o != d {
                    let all: Vec<String> = shapes.iter().map(|s| format!("{s:?}").replace(' ', "")).collect();
                    return Err(OpError::shape(format!("cannot broadcast shapes {}", all.join(" and "))));
                }
                *o = d;
            }
        }
    }
    Ok(out)
}

fn broadcast_error_dims(shapes: &[&[Dim]]) -> OpError {
    let all: Vec<String> = shapes.iter().map(|s| fmt_shape(s)).collect();
    OpError::shape(format!("cannot broadcast shapes {}", all.join(" and ")))
}

/// For each element of `out_shape` (row-major), the flat index of the element of a tensor of
/// shape `in_shape` that broadcasting reads. `in_shape` must broadcast to `out_shape` (as
/// checked by [`broadcast_concrete`]); a violation is a caller bug and panics.
pub fn broadcast_index_map(in_shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let rank = out_shape.len();
    let lead = rank.checked_sub(in_shape.len()).expect("input rank exceeds output rank");
    let in_strides = strides(in_shape);
    // Stride 0 along stretched axes: the same input element is read again.
    let mut bstrides = vec![0usize; rank];
    for (i, (&d, &s)) in in_shape.iter().zip(&in_strides).enumerate() {
        assert!(d == 1 || d == out_shape[lead + i], "{in_shape:?} does not broadcast to {out_shape:?}");
        if d != 1 {
            bstrides[lead + i] = s;
        }
    }
    let n = numel(out_shape);
    let mut map = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    let mut offset = 0usize;
    for _ in 0..n {
        map.push(offset);
        for axis in (0..rank).rev() {
            idx[axis] += 1;
            offset += bstrides[axis];
            if idx[axis] < out_shape[axis] {
                break;
            }
            offset -= bstrides[axis] * idx[axis];
            idx[axis] = 0;
        }
    }
    map
}

/// `f(a[i], b[j])` over the broadcast of `a` and `b` into `out_shape`.
fn zip_broadcast<T: Copy, U>(
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out_shape: &[usize],
    mut f: impl FnMut(T, T) -> Result<U, OpError>,
) -> Result<Vec<U>, OpError> {
    if a_shape == out_shape && b_shape == out_shape {
        return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
    }
    let ia = broadcast_index_map(a_shape, out_shape);
    let ib = broadcast_index_map(b_shape, out_shape);
    ia.iter().zip(&ib).map(|(&i, &j)| f(a[i], b[j])).collect()
}

// ---- Add, Sub, Mul, Div ------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryKind {
    fn apply_f32(self, x: f32, y: f32) -> f32 {
        match self {
            BinaryKind::Add => x + y,
            BinaryKind::Sub => x - y,
            BinaryKind::Mul => x * y,
            BinaryKind::Div => x / y,
        }
    }

    /// Integer arithmetic in i64. int32 is computed here too and narrowed with `as i32`:
    /// wrapping arithmetic modulo 2^64 narrowed to 32 bits equals wrapping i32 arithmetic,
    /// and truncating division of two i32 values (widened) narrows to the i32 result.
    fn apply_int(self, x: i64, y: i64) -> Result<i64, OpError> {
        Ok(match self {
            BinaryKind::Add => x.wrapping_add(y),
            BinaryKind::Sub => x.wrapping_sub(y),
            BinaryKind::Mul => x.wrapping_mul(y),
            BinaryKind::Div if y == 0 => {
                return Err(OpError::Unsupported("integer division by zero".into()));
            }
            // Rust's `/` truncates toward zero like C and ONNX Runtime.
            BinaryKind::Div => x.wrapping_div(y),
        })
    }
}

/// Add, Sub, Mul or Div with numpy broadcasting. No attributes (opset ≥ 7).
#[derive(Debug, Clone)]
pub struct Binary {
    pub kind: BinaryKind,
}

impl Binary {
    pub fn from_onnx(kind: BinaryKind, _a: &Attrs, _opset: i64) -> Result<Self, OpError> {
        Ok(Binary { kind })
    }
}

const ARITH_TYPES: &str = "float32, int64 or int32";

/// The common dtype of two facts: both known must agree; either may be unknown.
fn common_dtype(a: &Fact, b: &Fact) -> Result<Option<DType>, OpError> {
    match (a.dtype, b.dtype) {
        (Some(x), Some(y)) if x != y => Err(OpError::DType { input: 1, dtype: y, expected: x.name() }),
        (x, y) => Ok(x.or(y)),
    }
}

impl OpDef for Binary {
    fn onnx_type(&self) -> &'static str {
        match self.kind {
            BinaryKind::Add => "Add",
            BinaryKind::Sub => "Sub",
            BinaryKind::Mul => "Mul",
            BinaryKind::Div => "Div",
        }
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 2, 2)?;
        let a = required(inputs, 0)?;
        let b = required(inputs, 1)?;
        let dtype = common_dtype(a, b)?;
        if let Some(d @ DType::Unsupported(_)) = dtype {
            let input = if a.dtype.is_some() { 0 } else { 1 };
            return Err(OpError::DType { input, dtype: d, expected: ARITH_TYPES });
        }
        let shape = match (&a.shape, &b.shape) {
            (Some(s), Some(t)) => Some(broadcast_shapes(&[s, t])?),
            _ => None,
        };
        Ok(vec![Fact { dtype, shape, value: None }])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 2, 2)?;
        let a = required(inputs, 0)?;
        let b = required(inputs, 1)?;
        let shape = broadcast_concrete(&[a.shape(), b.shape()])?;
        let (sa, sb) = (a.shape(), b.shape());
        let kind = self.kind;
        let data = match (a.data(), b.data()) {
            (TensorData::F32(x), TensorData::F32(y)) => {
                TensorData::F32(zip_broadcast(x, sa, y, sb, &shape, |p, q| Ok(kind.apply_f32(p, q)))?)
            }
            (TensorData::I64(x), TensorData::I64(y)) => {
                TensorData::I64(zip_broadcast(x, sa, y, sb, &shape, |p, q| kind.apply_int(p, q))?)
            }
            (TensorData::I32(x), TensorData::I32(y)) => {
                TensorData::I32(zip_broadcast(x, sa, y, sb, &shape, |p, q| {
                    kind.apply_int(p.into(), q.into()).map(|r| r as i32)
                })?)
            }
            _ => return Err(OpError::DType { input: 1, dtype: b.dtype(), expected: a.dtype().name() }),
        };
        Ok(vec![Tensor::new(shape, data).expect("broadcast output matches its shape")])
    }
}

// ---- Sum ---------------------------------------------------------------------------------

/// Elementwise sum of one or more float32 inputs with numpy broadcasting. No attributes.
#[derive(Debug, Clone)]
pub struct Sum {}

impl Sum {
    pub fn from_onnx(_a: &Attrs, _opset: i64) -> Result<Self, OpError> {
        Ok(Sum {})
    }
}

impl OpDef for Sum {
    fn onnx_type(&self) -> &'static str {
        "Sum"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, 1, usize::MAX)?;
        let mut shapes = Vec::with_capacity(inputs.len());
        for i in 0..inputs.len() {
            let f = required(inputs, i)?;
            if let Some(d) = f.dtype.filter(|&d| d != DType::F32) {
                return Err(OpError::DType { input: i, dtype: d, expected: "float32" });
            }
            shapes.push(f.shape.as_deref());
        }
        let shape = match shapes.into_iter().collect::<Option<Vec<_>>>() {
            Some(s) => Some(broadcast_shapes(&s)?),
            None => None,
        };
        Ok(vec![Fact { dtype: Some(DType::F32), shape, value: None }])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, 1, usize::MAX)?;
        let tensors = (0..inputs.len()).map(|i| crate::ops::f32_input(inputs, i)).collect::<Result<Vec<_>, _>>()?;
        let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.shape()).collect();
        let shape = broadcast_concrete(&shapes)?;
        // Left to right, like the ONNX reference: ((x0 + x1) + x2) + …
        let mut acc = vec![0.0f32; numel(&shape)];
        for t in &tensors {
            let data = t.as_f32().expect("checked f32");
            if t.shape() == shape.as_slice() {
                acc.iter_mut().zip(data).for_each(|(s, &x)| *s += x);
            } else {
                let map = broadcast_index_map(t.shape(), &shape);
                acc.iter_mut().zip(&map).for_each(|(s, &i)| *s += data[i]);
            }
        }
        Ok(vec![Tensor::from_f32(shape, acc)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sym(s: &str) -> Dim {
        Dim::Sym(s.into())
    }

    fn k(d: usize) -> Dim {
        Dim::Known(d)
    }

    fn f32t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data.to_vec())
    }

    fn run(kind: BinaryKind, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
        let op = Binary::from_onnx(kind, &Attrs::default(), 14)?;
        Ok(op.eval(&[Some(a), Some(b)])?.remove(0))
    }

    #[test]
    fn broadcast_shapes_follow_numpy_rules() {
        assert_eq!(broadcast_shapes(&[&[k(2), k(3), k(4)], &[k(4)]]).unwrap(), vec![k(2), k(3), k(4)]);
        assert_eq!(broadcast_shapes(&[&[k(2), k(1)], &[k(1), k(5)]]).unwrap(), vec![k(2), k(5)]);
        assert_eq!(broadcast_shapes(&[&[], &[k(3)]]).unwrap(), vec![k(3)]);
        assert_eq!(broadcast_shapes(&[]).unwrap(), Vec::<Dim>::new());
    }

    #[test]
    fn broadcast_shapes_keep_symbols() {
        // Batch N against a bias [C,1,1].
        let x = [sym("N"), k(64), k(56), k(56)];
        assert_eq!(broadcast_shapes(&[&x, &[k(64), k(1), k(1)]]).unwrap(), x.to_vec());
        assert_eq!(broadcast_shapes(&[&[sym("N")], &[sym("N")]]).unwrap(), vec![sym("N")]);
        assert_eq!(broadcast_shapes(&[&[sym("N")], &[k(3)]]).unwrap(), vec![k(3)]);
        assert_eq!(broadcast_shapes(&[&[sym("N")], &[sym("M")]]).unwrap(), vec![Dim::unknown()]);
    }

    #[test]
    fn broadcast_shapes_reject_mismatch_and_show_shapes() {
        let err = broadcast_shapes(&[&[sym("N"), k(3)], &[k(4)]]).unwrap_err();
        assert_eq!(err, OpError::shape("cannot broadcast shapes [N,3] and [4]"));
        let err = broadcast_concrete(&[&[2, 3], &[4]]).unwrap_err();
        assert_eq!(err, OpError::shape("cannot broadcast shapes [2,3] and [4]"));
    }

    #[test]
    fn add_broadcasts_row_over_matrix() {
        let a = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = f32t(&[3], &[10.0, 20.0, 30.0]);
        let y = run(BinaryKind::Add, &a, &b).unwrap();
        assert_eq!(y, f32t(&[2, 3], &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]));
    }

    #[test]
    fn sub_broadcasts_in_both_directions() {
        let a = f32t(&[2, 1], &[10.0, 20.0]);
        let b = f32t(&[1, 3], &[1.0, 2.0, 3.0]);
        let y = run(BinaryKind::Sub, &a, &b).unwrap();
        assert_eq!(y, f32t(&[2, 3], &[9.0, 8.0, 7.0, 19.0, 18.0, 17.0]));
    }

    #[test]
    fn mul_and_div_on_floats() {
        let a = f32t(&[2], &[3.0, 4.0]);
        let b = f32t(&[2], &[1.0, 2.0]);
        assert_eq!(run(BinaryKind::Mul, &a, &b).unwrap(), f32t(&[2], &[3.0, 8.0]));
        assert_eq!(run(BinaryKind::Div, &a, &b).unwrap(), f32t(&[2], &[3.0, 2.0]));
    }

    #[test]
    fn integer_div_truncates_toward_zero() {
        // ONNX test_div_int32_trunc.
        let a = Tensor::from_i32(vec![4], vec![-3, 3, -3, 3]);
        let b = Tensor::from_i32(vec![4], vec![2, 2, -2, -2]);
        assert_eq!(run(BinaryKind::Div, &a, &b).unwrap(), Tensor::from_i32(vec![4], vec![-1, 1, 1, -1]));
        let a = Tensor::from_i64(vec![2], vec![-7, 7]);
        let b = Tensor::from_i64(vec![], vec![2]);
        assert_eq!(run(BinaryKind::Div, &a, &b).unwrap(), Tensor::from_i64(vec![2], vec![-3, 3]));
    }

    #[test]
    fn integer_arithmetic_wraps_like_numpy() {
        let a = Tensor::from_i32(vec![1], vec![i32::MAX]);
        let b = Tensor::from_i32(vec![1], vec![1]);
        assert_eq!(run(BinaryKind::Add, &a, &b).unwrap(), Tensor::from_i32(vec![1], vec![i32::MIN]));
        let a = Tensor::from_i32(vec![1], vec![i32::MIN]);
        let b = Tensor::from_i32(vec![1], vec![-1]);
        assert_eq!(run(BinaryKind::Div, &a, &b).unwrap(), Tensor::from_i32(vec![1], vec![i32::MIN]));
    }

    #[test]
    fn integer_division_by_zero_is_an_error() {
        let a = Tensor::from_i64(vec![2], vec![1, 2]);
        let b = Tensor::from_i64(vec![2], vec![1, 0]);
        assert!(matches!(run(BinaryKind::Div, &a, &b), Err(OpError::Unsupported(_))));
    }

    #[test]
    fn binary_rejects_mixed_dtypes() {
        let a = f32t(&[1], &[1.0]);
        let b = Tensor::from_i64(vec![1], vec![1]);
        assert_eq!(
            run(BinaryKind::Add, &a, &b).unwrap_err(),
            OpError::DType { input: 1, dtype: DType::I64, expected: "float32" }
        );
        let op = Binary { kind: BinaryKind::Add };
        let fa = Fact::known(DType::F32, &[1]);
        let fb = Fact::known(DType::I32, &[1]);
        assert!(matches!(op.infer(&[Some(&fa), Some(&fb)]), Err(OpError::DType { .. })));
    }

    #[test]
    fn binary_rejects_unbroadcastable_shapes() {
        let a = f32t(&[2, 3], &[0.0; 6]);
        let b = f32t(&[2], &[0.0; 2]);
        assert!(matches!(run(BinaryKind::Mul, &a, &b), Err(OpError::Shape(_))));
    }

    #[test]
    fn binary_infer_passes_batch_symbol() {
        let op = Binary { kind: BinaryKind::Add };
        let a = Fact::new(DType::F32, vec![sym("N"), k(8)]);
        let b = Fact::known(DType::F32, &[8]);
        let out = op.infer(&[Some(&a), Some(&b)]).unwrap();
        assert_eq!(out[0].shape, Some(vec![sym("N"), k(8)]));
        assert_eq!(out[0].dtype, Some(DType::F32));
        assert!(matches!(op.infer(&[Some(&a)]), Err(OpError::Arity { .. })));
    }

    #[test]
    fn binary_rejects_old_broadcast_attribute() {
        let a = Attrs::new(vec![("broadcast".into(), crate::ops::AttrValue::Int(1))]);
        assert!(crate::ops::parse("Add", &a, 7).unwrap().is_err());
    }

    #[test]
    fn sum_adds_any_number_of_inputs_with_broadcasting() {
        // ONNX test_sum_example.
        let a = f32t(&[3], &[3.0, 0.0, 2.0]);
        let b = f32t(&[3], &[1.0, 3.0, 4.0]);
        let c = f32t(&[3], &[2.0, 6.0, 6.0]);
        let op = Sum {};
        assert_eq!(op.eval(&[Some(&a), Some(&b), Some(&c)]).unwrap()[0], f32t(&[3], &[6.0, 9.0, 12.0]));
        assert_eq!(op.eval(&[Some(&a)]).unwrap()[0], a);
        let col = f32t(&[2, 1], &[100.0, 200.0]);
        assert_eq!(
            op.eval(&[Some(&a), Some(&col)]).unwrap()[0],
            f32t(&[2, 3], &[103.0, 100.0, 102.0, 203.0, 200.0, 202.0])
        );
        assert!(matches!(op.eval(&[]), Err(OpError::Arity { .. })));
        let fa = Fact::new(DType::F32, vec![sym("N"), k(3)]);
        let fb = Fact::known(DType::F32, &[3]);
        assert_eq!(op.infer(&[Some(&fa), Some(&fb)]).unwrap()[0].shape, Some(vec![sym("N"), k(3)]));
    }

    #[test]
    fn sum_rejects_integers() {
        let a = Tensor::from_i64(vec![1], vec![1]);
        assert!(matches!(Sum {}.eval(&[Some(&a)]), Err(OpError::DType { .. })));
    }

    fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..4, 0..4)
    }

    proptest! {
        #[test]
        fn symbolic_and_concrete_broadcasting_agree(a in shape_strategy(), b in shape_strategy()) {
            let da: Vec<Dim> = a.iter().map(|&d| k(d)).collect();
            let db: Vec<Dim> = b.iter().map(|&d| k(d)).collect();
            let sym = broadcast_shapes(&[&da, &db]).ok();
            let conc = broadcast_concrete(&[&a, &b]).ok().map(|s| s.into_iter().map(k).collect::<Vec<_>>());
            prop_assert_eq!(sym, conc);
        }

        #[test]
        fn add_is_commutative_under_broadcasting(a in shape_strategy(), b in shape_strategy()) {
            let ta = Tensor::from_f32(a.clone(), (0..numel(&a)).map(|i| i as f32).collect());
            let tb = Tensor::from_f32(b.clone(), (0..numel(&b)).map(|i| 0.5 * i as f32).collect());
            let ab = run(BinaryKind::Add, &ta, &tb).ok();
            let ba = run(BinaryKind::Add, &tb, &ta).ok();
            prop_assert_eq!(ab, ba);
        }
    }
}
