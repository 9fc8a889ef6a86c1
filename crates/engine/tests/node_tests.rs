//! Conformance: the ONNX backend node tests, driven by the manifest `node_tests.txt`.
//!
//! Each `pass` case is loaded with `onnx::load_model`, run with the reference interpreter on
//! its `test_data_set_0/input_N.pb` (weights included: in the node tests they are graph
//! inputs, so this exercises runtime weights), and every output is compared with
//! `output_N.pb` at the suite's own tolerance. Failures are collected and reported together.
//! The same cases run again after `passes::optimize`.

use resnet_test_support as common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use resnet_engine::passes::{self, PassOptions};
use resnet_engine::testdata::{self, Tolerance};
use resnet_engine::{exec, onnx, Tensor};

/// The node-test suite's tolerance (onnx/backend/test/case/node/__init__.py).
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;

const MANIFEST: &str = include_str!("node_tests.txt");

#[derive(Debug, PartialEq)]
enum Entry {
    Pass,
    Exclude,
}

/// `(case, entry)` per manifest line; panics on a malformed line or an exclusion without a
/// reason.
fn manifest() -> Vec<(String, Entry)> {
    let mut out = Vec::new();
    for (i, line) in MANIFEST.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (body, reason) = match line.split_once('#') {
            Some((body, reason)) => (body.trim(), reason.trim()),
            None => (line, ""),
        };
        let entry = match body.split_whitespace().collect::<Vec<_>>()[..] {
            ["pass", case] => (case.to_string(), Entry::Pass),
            ["exclude", case] if !reason.is_empty() => (case.to_string(), Entry::Exclude),
            _ => panic!("node_tests.txt line {}: expected `pass <case>` or `exclude <case> # <reason>`: {line}", i + 1),
        };
        out.push(entry);
    }
    out
}

fn numbered_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..).map(|i| dir.join(format!("{prefix}_{i}.pb"))).take_while(|p| p.exists()).collect()
}

/// Runs one case, after the optimization passes when `optimize`; `Ok(max error)` or a
/// one-line reason.
fn run_case(dir: &Path, optimize: bool) -> Result<f64, String> {
    let mut graph = onnx::load_model(dir.join("model.onnx")).map_err(|e| format!("load: {}", e.root()))?;
    if optimize {
        graph = passes::optimize(graph, &PassOptions::default()).map_err(|e| format!("optimize: {e}"))?;
    }
    let data = dir.join("test_data_set_0");
    let read = |p: &PathBuf| onnx::read_tensor_pb(p).map(|(_, t)| t).map_err(|e| format!("test data: {}", e.root()));
    let inputs: Vec<Tensor> = numbered_files(&data, "input").iter().map(read).collect::<Result<_, _>>()?;
    let expected: Vec<Tensor> = numbered_files(&data, "output").iter().map(read).collect::<Result<_, _>>()?;
    let outputs = std::panic::catch_unwind(|| exec::run(&graph, inputs))
        .map_err(|p| {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            format!("run: panicked: {}", msg.unwrap_or_default())
        })?
        .map_err(|e| format!("run: {e}"))?;
    if outputs.len() != expected.len() {
        return Err(format!("{} outputs instead of {}", outputs.len(), expected.len()));
    }
    let mut max_err = 0.0f64;
    for (i, (got, want)) in outputs.iter().zip(&expected).enumerate() {
        let r = testdata::compare(format!("output {i}"), got, want, Tolerance::Elementwise { rtol: RTOL, atol: ATOL });
        if !r.passed {
            let why = r.problem.unwrap_or_else(|| format!("max |error| {:.3e} beyond tolerance", r.max_abs_err));
            return Err(format!("{}: {why}", r.name));
        }
        max_err = max_err.max(r.max_abs_err);
    }
    Ok(max_err)
}

#[test]
fn node_tests_in_the_manifest_pass() {
    run_manifest(false);
}

/// The passes must not change any result. (The node tests feed weights as runtime inputs,
/// so BN folding never fires here; constant folding and no-op removal do.)
#[test]
fn node_tests_in_the_manifest_pass_after_the_optimization_passes() {
    run_manifest(true);
}

fn run_manifest(optimize: bool) {
    let Some(root) = common::shared_asset("data/onnx-node-tests") else { return };
    let cases: Vec<String> = manifest().into_iter().filter(|(_, e)| *e == Entry::Pass).map(|(case, _)| case).collect();
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(why) = run_case(&root.join(case), optimize) {
            failures.push(format!("  {case}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} node test cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn manifest_names_exactly_the_case_folders_on_disk() {
    let Some(root) = common::shared_asset("data/onnx-node-tests") else { return };
    let on_disk: BTreeSet<String> = std::fs::read_dir(&root)
        .expect("readable node-test folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let listed: Vec<String> = manifest().into_iter().map(|(case, _)| case).collect();
    let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), listed_set.len(), "node_tests.txt lists a case twice");
    let missing: Vec<_> = on_disk.difference(&listed_set).collect();
    let stale: Vec<_> = listed_set.difference(&on_disk).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "node_tests.txt is out of date: not listed {missing:?}; listed but not on disk {stale:?}"
    );
}
