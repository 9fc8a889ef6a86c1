//! Model folders in the ONNX test layout (`model.onnx` or one `*.onnx`, plus
//! `test_data_set_*/input_N.pb` and `output_N.pb`): finding them, running them and comparing
//! every output. Used by `resnet check` and by the conformance tests.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::exec;
use crate::graph::Graph;
use crate::onnx::read_tensor_pb;
use crate::tensor::{Tensor, TensorData};

/// When two outputs count as equal.
#[derive(Debug, Clone, Copy)]
pub enum Tolerance {
    /// numpy `allclose`: every element satisfies |a − b| ≤ atol + rtol·|b|.
    Elementwise { rtol: f64, atol: f64 },
    /// max |a − b| ≤ fraction · max |b|: error relative to the output's magnitude.
    OfMax(f64),
}

impl Default for Tolerance {
    fn default() -> Tolerance {
        Tolerance::Elementwise { rtol: 1e-3, atol: 1e-5 }
    }
}

/// Comparison of one output tensor.
#[derive(Debug, Clone)]
pub struct OutputReport {
    pub name: String,
    pub passed: bool,
    /// max |a − b|.
    pub max_abs_err: f64,
    /// max |a − b| / max |b|.
    pub rel_err: f64,
    /// Why it failed before any number could be compared (shape or dtype mismatch).
    pub problem: Option<String>,
}

/// One test data set.
#[derive(Debug, Clone)]
pub struct DataSetReport {
    pub path: PathBuf,
    pub passed: bool,
    pub outputs: Vec<OutputReport>,
}

/// Finds the model file of a test folder.
pub fn find_model(dir: &Path) -> Result<PathBuf> {
    let direct = dir.join("model.onnx");
    if direct.is_file() {
        return Ok(direct);
    }
    let io = |source| Error::Io { path: dir.to_path_buf(), source };
    let mut onnx: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    onnx.sort();
    match onnx.len() {
        1 => Ok(onnx.remove(0)),
        0 => Err(Error::TestLayout(format!("{}: no model.onnx or *.onnx file in this folder", dir.display()))),
        _ => Err(Error::TestLayout(format!(
            "{}: several .onnx files and no model.onnx; which one? ({})",
            dir.display(),
            onnx.iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The `test_data_set_*` folders of a test folder, sorted.
pub fn data_sets(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io { path: dir.to_path_buf(), source };
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_")))
        .collect();
    sets.sort();
    Ok(sets)
}

/// Reads `prefix_0.pb`, `prefix_1.pb`, … until one is missing.
pub fn read_numbered(dir: &Path, prefix: &str) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    loop {
        let p = dir.join(format!("{prefix}_{}.pb", out.len()));
        if !p.is_file() {
            return Ok(out);
        }
        out.push(read_tensor_pb(&p)?);
    }
}

/// Runs one data set folder through `graph` with the reference executor.
pub fn run_data_set(graph: &Graph, dir: &Path, tol: Tolerance) -> Result<DataSetReport> {
    run_data_set_with(graph, dir, tol, |inputs| exec::run(graph, inputs))
}

/// Runs one data set folder with any executor of `graph` (the reference interpreter, a
/// compiled plan, …); `graph` names the inputs.
pub fn run_data_set_with(
    graph: &Graph,
    dir: &Path,
    tol: Tolerance,
    run: impl FnOnce(Vec<Tensor>) -> Result<Vec<Tensor>>,
) -> Result<DataSetReport> {
    let inputs = read_numbered(dir, "input")?;
    let expected = read_numbered(dir, "output")?;
    // Feed by name when every file names a model input, else by position.
    let names: Vec<&str> = graph.inputs.iter().map(|&i| graph.values[i].name.as_str()).collect();
    let by_name = inputs.iter().all(|(n, _)| names.contains(&n.as_str())) && inputs.len() == names.len();
    let ordered: Vec<Tensor> = if by_name {
        names.iter().map(|n| inputs.iter().find(|(m, _)| m == n).expect("checked above").1.clone()).collect()
    } else {
        inputs.into_iter().map(|(_, t)| t).collect()
    };
    let actual = run(ordered)?;
    let mut outputs = Vec::new();
    for (i, (name, want)) in expected.iter().enumerate() {
        let name = if name.is_empty() { format!("output {i}") } else { name.clone() };
        let report = match actual.get(i) {
            None => OutputReport {
                name,
                passed: false,
                max_abs_err: f64::NAN,
                rel_err: f64::NAN,
                problem: Some(format!(
                    "the model produced {} outputs, the data set expects at least {}",
                    actual.len(),
                    i + 1
                )),
            },
            Some(got) => compare(name, got, want, tol),
        };
        outputs.push(report);
    }
    Ok(DataSetReport { path: dir.to_path_buf(), passed: outputs.iter().all(|o| o.passed), outputs })
}

/// Compares one output with its expected value.
pub fn compare(name: String, got: &Tensor, want: &Tensor, tol: Tolerance) -> OutputReport {
    let fail = |problem: String| OutputReport {
        name: name.clone(),
        passed: false,
        max_abs_err: f64::NAN,
        rel_err: f64::NAN,
        problem: Some(problem),
    };
    if got.shape() != want.shape() {
        return fail(format!("shape {:?}, expected {:?}", got.shape(), want.shape()));
    }
    let (a, b): (Vec<f64>, Vec<f64>) = match (got.data(), want.data()) {
        (TensorData::F32(a), TensorData::F32(b)) => {
            (a.iter().map(|&x| x as f64).collect(), b.iter().map(|&x| x as f64).collect())
        }
        (TensorData::I64(a), TensorData::I64(b)) => {
            (a.iter().map(|&x| x as f64).collect(), b.iter().map(|&x| x as f64).collect())
        }
        (TensorData::I32(a), TensorData::I32(b)) => {
            (a.iter().map(|&x| x as f64).collect(), b.iter().map(|&x| x as f64).collect())
        }
        _ => return fail(format!("data type {}, expected {}", got.dtype(), want.dtype())),
    };
    let mut max_abs = 0f64;
    let mut max_ref = 0f64;
    let mut elementwise_ok = true;
    for (&x, &y) in a.iter().zip(&b) {
        let d = (x - y).abs();
        // NaN in either side is a mismatch unless both are NaN.
        let d = if x.is_nan() && y.is_nan() {
            0.0
        } else if d.is_nan() {
            f64::INFINITY
        } else {
            d
        };
        max_abs = max_abs.max(d);
        max_ref = max_ref.max(y.abs());
        if let Tolerance::Elementwise { rtol, atol } = tol {
            if d > atol + rtol * y.abs() {
                elementwise_ok = false;
            }
        }
    }
    let rel = if max_ref > 0.0 { max_abs / max_ref } else { max_abs };
    let passed = match tol {
        Tolerance::Elementwise { .. } => elementwise_ok,
        Tolerance::OfMax(f) => max_abs <= f * max_ref,
    };
    OutputReport { name, passed, max_abs_err: max_abs, rel_err: rel, problem: None }
}
