//! Gemm: `Y = alpha * op(A) * op(B) + beta * C`, with `op` an optional transpose.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Gemm.html>
//!
//! | opset | change |
//! |---|---|
//! | 1, 6 | `broadcast` attribute for C (not loaded: older than opset 7) |
//! | 7 | C is unidirectionally broadcastable to `[M, N]`; `broadcast` removed |
//! | 9 | integer element types |
//! | 11 | C is optional (absent means no bias) |
//! | 13 | bfloat16 |
//!
//! Attributes: `alpha` (float, 1.0), `beta` (float, 1.0), `transA` (int, 0), `transB`
//! (int, 0). A and B are 2-D; C has rank ≤ 2 and each of its dims (aligned to the right) is
//! 1 or equal to the output's.
//!
//! Supported: opsets 7..=25, float32 only (integer Gemm → a dtype error). `transA`/`transB`
//! other than 0 or 1 are rejected. The kernel is `matrixmultiply::sgemm`, which takes
//! strides, so the transposes cost nothing: the zoo's final FC layer (`[N,2048] x
//! [1000,2048]ᵀ`, transB=1) runs at full GEMM speed even in the reference executor.

use crate::error::OpError;
use crate::fact::{fmt_shape, Dim, Fact};
use crate::ops::{check_arity, f32_input, required, Attrs, OpDef};
use crate::tensor::{DType, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct Gemm {
    /// Scale of `op(A) * op(B)`. Default 1.0.
    pub alpha: f32,
    /// Scale of C. Default 1.0.
    pub beta: f32,
    /// A is stored `[K, M]`. Default false.
    pub trans_a: bool,
    /// B is stored `[N, K]`. Default false.
    pub trans_b: bool,
    /// C must be given (opsets before 11).
    pub c_required: bool,
}

fn flag(a: &Attrs, name: &str) -> Result<bool, OpError> {
    match a.int(name, 0)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(OpError::attr(name, format!("expected 0 or 1, found {v}"))),
    }
}

/// Checks a dtype fact is float32 (or unknown).
fn check_f32(f: &Fact, input: usize) -> Result<(), OpError> {
    match f.dtype {
        None | Some(DType::F32) => Ok(()),
        Some(d) => Err(OpError::DType { input, dtype: d, expected: "float32" }),
    }
}

/// `true` when dims `a` and `b` may be equal (a symbol may be anything).
fn may_equal(a: &Dim, b: &Dim) -> bool {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x == y,
        _ => true,
    }
}

impl Gemm {
    pub fn from_onnx(a: &Attrs, opset: i64) -> Result<Self, OpError> {
        Ok(Gemm {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: flag(a, "transA")?,
            trans_b: flag(a, "transB")?,
            c_required: opset < 11,
        })
    }

    /// `(M, K)` of `op(A)` and `(K, N)` of `op(B)` from the stored shapes.
    fn dims<D: Clone>(&self, a: &[D], b: &[D]) -> ((D, D), (D, D)) {
        let pick = |s: &[D], t: bool| if t { (s[1].clone(), s[0].clone()) } else { (s[0].clone(), s[1].clone()) };
        (pick(a, self.trans_a), pick(b, self.trans_b))
    }

    fn min_inputs(&self) -> usize {
        if self.c_required {
            3
        } else {
            2
        }
    }
}

/// Checks that C (shape `c`) broadcasts unidirectionally to `[m, n]`.
fn check_c(c: &[Dim], m: &Dim, n: &Dim) -> Result<(), OpError> {
    let target = [m.clone(), n.clone()];
    let fits =
        c.len() <= 2 && c.iter().rev().zip(target.iter().rev()).all(|(d, t)| *d == Dim::Known(1) || may_equal(d, t));
    if !fits {
        return Err(OpError::shape(format!(
            "C of shape {} does not broadcast to the output shape {}",
            fmt_shape(c),
            fmt_shape(&target)
        )));
    }
    Ok(())
}

impl OpDef for Gemm {
    fn onnx_type(&self) -> &'static str {
        "Gemm"
    }

    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        check_arity(inputs, self.min_inputs(), 3)?;
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        let c = inputs.get(2).copied().flatten();
        if self.c_required && c.is_none() {
            return Err(OpError::MissingInput(2));
        }
        check_f32(a, 0)?;
        check_f32(b, 1)?;
        if let Some(c) = c {
            check_f32(c, 2)?;
        }
        for (i, f) in [(0, a), (1, b)] {
            if f.rank().is_some_and(|r| r != 2) {
                return Err(OpError::shape(format!("input {i} must be 2-D, got {f}")));
            }
        }
        let (Some(sa), Some(sb)) = (&a.shape, &b.shape) else {
            return Ok(vec![Fact::new(DType::F32, vec![Dim::unknown(), Dim::unknown()])]);
        };
        let ((m, ka), (kb, n)) = self.dims(sa, sb);
        if !may_equal(&ka, &kb) {
            return Err(OpError::shape(format!(
                "inner dims differ: A {} (transA={}) and B {} (transB={})",
                fmt_shape(sa),
                self.trans_a as u8,
                fmt_shape(sb),
                self.trans_b as u8
            )));
        }
        if let Some(sc) = c.and_then(|c| c.shape.as_deref()) {
            check_c(sc, &m, &n)?;
        }
        Ok(vec![Fact::new(DType::F32, vec![m, n])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        check_arity(inputs, self.min_inputs(), 3)?;
        let (a, b) = (f32_input(inputs, 0)?, f32_input(inputs, 1)?);
        let c = match inputs.get(2).copied().flatten() {
            Some(_) => Some(f32_input(inputs, 2)?),
            None if self.c_required => return Err(OpError::MissingInput(2)),
            None => None,
        };
        if a.rank() != 2 || b.rank() != 2 {
            return Err(OpError::shape(format!("A and B must be 2-D, got {:?} and {:?}", a.shape(), b.shape())));
        }
        let ((m, k), (kb, n)) = self.dims(a.shape(), b.shape());
        if k != kb {
            return Err(OpError::shape(format!(
                "inner dims differ: A {:?} (transA={}) and B {:?} (transB={})",
                a.shape(),
                self.trans_a as u8,
                b.shape(),
                self.trans_b as u8
            )));
        }
        let mut y = vec![0.0f32; m * n];
        let mut beta = 0.0;
        if let Some(c) = c {
            let known: Vec<Dim> = c.shape().iter().map(|&d| Dim::Known(d)).collect();
            check_c(&known, &Dim::Known(m), &Dim::Known(n))?;
            // Right-aligned C dims, with missing leading ones as 1.
            let (cm, cn) = match c.shape() {
                [] => (1, 1),
                [cn] => (1, *cn),
                [cm, cn] => (*cm, *cn),
                _ => unreachable!("check_c limits C to rank 2"),
            };
            let cv = c.as_f32().expect("f32_input checked the dtype");
            for i in 0..m {
                for j in 0..n {
                    y[i * n + j] = cv[(if cm == 1 { 0 } else { i }) * cn + (if cn == 1 { 0 } else { j })];
                }
            }
            beta = self.beta;
        }
        let (av, bv) = (a.as_f32().expect("checked"), b.as_f32().expect("checked"));
        // Stored A is [M,K] (row stride K) or, transposed, [K,M] (column stride M); same for B.
        let (rsa, csa) = if self.trans_a { (1, m as isize) } else { (k as isize, 1) };
        let (rsb, csb) = if self.trans_b { (1, k as isize) } else { (n as isize, 1) };
        if m > 0 && n > 0 {
            // SAFETY: the pointers cover `m*k`, `k*n` and `m*n` elements (checked above via the
            // shapes), the strides address only elements inside them, and `y` is not aliased.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    self.alpha,
                    av.as_ptr(),
                    rsa,
                    csa,
                    bv.as_ptr(),
                    rsb,
                    csb,
                    beta,
                    y.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        }
        Ok(vec![Tensor::from_f32(vec![m, n], y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;

    fn gemm(items: Vec<(&str, AttrValue)>, opset: i64) -> Result<Gemm, OpError> {
        let a = Attrs::new(items.into_iter().map(|(n, v)| (n.to_string(), v)).collect());
        let op = Gemm::from_onnx(&a, opset)?;
        a.finish()?;
        Ok(op)
    }

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data.to_vec())
    }

    /// Naive `alpha * op(A) op(B) + beta * C` with C already `[M,N]`.
    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Vec<f32> {
        let mut y = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    y[i * n + j] += av * bv;
                }
            }
        }
        y
    }

    #[test]
    fn gemm_multiplies_and_adds_broadcast_bias() {
        let op = gemm(vec![], 13).unwrap();
        let a = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = t(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
        let c = t(&[2], &[10., 20.]);
        let y = op.eval(&[Some(&a), Some(&b), Some(&c)]).unwrap().remove(0);
        assert_eq!(y, t(&[2, 2], &[14., 25., 20., 31.]));
        let c = t(&[2, 1], &[10., 20.]);
        let y = op.eval(&[Some(&a), Some(&b), Some(&c)]).unwrap().remove(0);
        assert_eq!(y, t(&[2, 2], &[14., 15., 30., 31.]));
        let c = t(&[], &[1.]);
        let y = op.eval(&[Some(&a), Some(&b), Some(&c)]).unwrap().remove(0);
        assert_eq!(y, t(&[2, 2], &[5., 6., 11., 12.]));
    }

    #[test]
    fn gemm_applies_all_attributes() {
        // Like test_gemm_all_attributes: A stored [K,M], B stored [N,K].
        let op = gemm(
            vec![
                ("alpha", AttrValue::Float(0.25)),
                ("beta", AttrValue::Float(0.35)),
                ("transA", AttrValue::Int(1)),
                ("transB", AttrValue::Int(1)),
            ],
            13,
        )
        .unwrap();
        let (m, k, n) = (3, 5, 4);
        let av: Vec<f32> = (0..k * m).map(|i| (i as f32 * 0.37).sin()).collect();
        let bv: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.91).cos()).collect();
        let cv: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let y = op.eval(&[Some(&t(&[k, m], &av)), Some(&t(&[n, k], &bv)), Some(&t(&[1, n], &cv))]).unwrap().remove(0);
        let want = naive(&av, &bv, m, k, n, true, true);
        for i in 0..m {
            for j in 0..n {
                let w = 0.25 * want[i * n + j] + 0.35 * cv[j];
                assert!((y.as_f32().unwrap()[i * n + j] - w).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn gemm_without_c_ignores_beta_from_opset_11() {
        let op = gemm(vec![("beta", AttrValue::Float(f32::NAN))], 11).unwrap();
        let a = t(&[1, 2], &[1., 2.]);
        let b = t(&[2, 1], &[3., 4.]);
        assert_eq!(op.eval(&[Some(&a), Some(&b)]).unwrap()[0], t(&[1, 1], &[11.]));
        assert_eq!(op.eval(&[Some(&a), Some(&b), None]).unwrap()[0], t(&[1, 1], &[11.]));
        let old = gemm(vec![], 9).unwrap();
        assert!(matches!(old.eval(&[Some(&a), Some(&b)]), Err(OpError::Arity { .. })));
        assert!(matches!(old.eval(&[Some(&a), Some(&b), None]), Err(OpError::MissingInput(2))));
    }

    #[test]
    fn gemm_rejects_bad_flags_and_shapes() {
        assert!(matches!(gemm(vec![("transA", AttrValue::Int(2))], 13), Err(OpError::Attribute { .. })));
        assert_eq!(
            gemm(vec![("broadcast", AttrValue::Int(1))], 7).unwrap_err(),
            OpError::UnknownAttribute("broadcast".into())
        );
        let op = gemm(vec![], 13).unwrap();
        let a = t(&[2, 3], &[0.; 6]);
        let b = t(&[2, 3], &[0.; 6]);
        assert!(matches!(op.eval(&[Some(&a), Some(&b)]), Err(OpError::Shape(_))));
        let b = t(&[3, 2], &[0.; 6]);
        let c = t(&[3], &[0.; 3]);
        assert!(matches!(op.eval(&[Some(&a), Some(&b), Some(&c)]), Err(OpError::Shape(_))));
        let ai = Tensor::from_i64(vec![2, 3], vec![0; 6]);
        assert!(matches!(op.eval(&[Some(&ai), Some(&b)]), Err(OpError::DType { input: 0, .. })));
        let a3 = Tensor::zeros(vec![1, 2, 3]);
        assert!(matches!(op.eval(&[Some(&a3), Some(&b)]), Err(OpError::Shape(_))));
    }

    #[test]
    fn gemm_infers_zoo_fc_layer_with_symbolic_batch() {
        let op = gemm(vec![("transB", AttrValue::Int(1))], 7).unwrap();
        let a = Fact::new(DType::F32, vec![Dim::Sym("N".into()), Dim::Known(2048)]);
        let b = Fact::known(DType::F32, &[1000, 2048]);
        let c = Fact::known(DType::F32, &[1000]);
        let f = op.infer(&[Some(&a), Some(&b), Some(&c)]).unwrap().remove(0);
        assert_eq!(f.shape.unwrap(), vec![Dim::Sym("N".into()), Dim::Known(1000)]);
        let bad = Fact::known(DType::F32, &[1000, 512]);
        let err = op.infer(&[Some(&a), Some(&bad), Some(&c)]).unwrap_err();
        assert!(err.to_string().contains("[N,2048]") && err.to_string().contains("[1000,512]"), "{err}");
        let bad_c = Fact::known(DType::F32, &[999]);
        assert!(matches!(op.infer(&[Some(&a), Some(&b), Some(&bad_c)]), Err(OpError::Shape(_))));
    }

    #[test]
    fn gemm_handles_empty_inner_dim() {
        let op = gemm(vec![], 13).unwrap();
        let a = t(&[2, 0], &[]);
        let b = t(&[0, 2], &[]);
        let c = t(&[2], &[1., 2.]);
        assert_eq!(op.eval(&[Some(&a), Some(&b), Some(&c)]).unwrap()[0], t(&[2, 2], &[1., 2., 1., 2.]));
    }

    proptest::proptest! {
        #[test]
        fn gemm_matches_naive_triple_loop(m in 1usize..6, k in 0usize..6, n in 1usize..6, ta: bool, tb: bool, seed in 0u32..1000) {
            let op = Gemm { alpha: 1.0, beta: 1.0, trans_a: ta, trans_b: tb, c_required: false };
            let av: Vec<f32> = (0..m * k).map(|i| ((i as u32 * 7 + seed) % 13) as f32 - 6.0).collect();
            let bv: Vec<f32> = (0..k * n).map(|i| ((i as u32 * 5 + seed) % 11) as f32 - 5.0).collect();
            let a = t(&if ta { [k, m] } else { [m, k] }, &av);
            let b = t(&if tb { [n, k] } else { [k, n] }, &bv);
            let y = op.eval(&[Some(&a), Some(&b)]).unwrap().remove(0);
            let want = naive(&av, &bv, m, k, n, ta, tb);
            proptest::prop_assert_eq!(y.as_f32().unwrap(), want.as_slice());
        }
    }
}
