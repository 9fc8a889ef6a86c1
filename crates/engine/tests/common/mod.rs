//! Shared test helpers: finding `../shared` (through `resnet-test-support`) and comparing
//! tensors.

#![allow(dead_code)] // each test binary uses a different subset

use resnet_engine::{Tensor, TensorData};

pub use resnet_test_support::shared_asset;

/// Largest error of `actual` against `expected` under `|a − b| ≤ atol + rtol·|b|`, as
/// `Ok(max |a − b|)` when every element passes. Shapes and dtypes must match exactly; NaN
/// never passes.
pub fn compare(actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) -> Result<f64, String> {
    if actual.dtype() != expected.dtype() {
        return Err(format!("dtype {} instead of {}", actual.dtype(), expected.dtype()));
    }
    if actual.shape() != expected.shape() {
        return Err(format!("shape {:?} instead of {:?}", actual.shape(), expected.shape()));
    }
    let pairs: Vec<(f64, f64)> = match (actual.data(), expected.data()) {
        (TensorData::F32(a), TensorData::F32(b)) => a.iter().zip(b).map(|(&a, &b)| (a as f64, b as f64)).collect(),
        (TensorData::I64(a), TensorData::I64(b)) => a.iter().zip(b).map(|(&a, &b)| (a as f64, b as f64)).collect(),
        (TensorData::I32(a), TensorData::I32(b)) => a.iter().zip(b).map(|(&a, &b)| (a as f64, b as f64)).collect(),
        _ => unreachable!("dtypes compared above"),
    };
    let mut max_err = 0.0f64;
    let mut bad = None;
    for (i, &(a, b)) in pairs.iter().enumerate() {
        let err = (a - b).abs();
        // Written so that NaN on either side fails (every comparison with NaN is false).
        let ok = err <= atol + rtol * b.abs();
        if !ok && bad.is_none() {
            bad = Some((i, a, b));
        }
        if err.is_nan() {
            max_err = f64::NAN;
        } else if !max_err.is_nan() {
            max_err = max_err.max(err);
        }
    }
    match bad {
        None => Ok(max_err),
        Some((i, a, b)) => {
            Err(format!("max |error| {max_err:.3e}; first mismatch at element {i}: {a} vs expected {b}"))
        }
    }
}
