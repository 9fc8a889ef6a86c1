//! `resnet check`: run model folders in the ONNX test layout and compare every output.

use std::path::PathBuf;
use std::process::ExitCode;

use resnet::engine::testdata::{data_sets, find_model, run_data_set_with, DataSetReport, Tolerance};
use resnet::Model;

/// Run test data sets (test_data_set_*/input_N.pb → output_N.pb) and compare outputs.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  resnet check resnet50-v1-keras/
  resnet check --rtol 1e-4 --atol 1e-6 test_conv_with_strides_padding/
  resnet check --tol-of-max 1e-4 zoo-models/*/

A folder holds model.onnx (or a single *.onnx) and test_data_set_0, test_data_set_1, …
Prints one line per data set with the max absolute error and the error relative to the
largest expected value; exits 1 if any output mismatches.")]
pub struct Args {
    /// Relative tolerance: |ours − expected| ≤ atol + rtol·|expected| for every element.
    #[arg(long, default_value_t = 1e-3)]
    rtol: f64,
    /// Absolute tolerance (see --rtol).
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// Instead of --rtol/--atol: pass when max|ours − expected| ≤ F·max|expected|.
    #[arg(long, value_name = "F")]
    tol_of_max: Option<f64>,
    /// Print one JSON object per data set.
    #[arg(long)]
    json: bool,
    /// Threads for the plan (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    engine: super::EngineArgs,
    /// Model folders.
    #[arg(required = true)]
    folders: Vec<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let tol = match a.tol_of_max {
        Some(f) => Tolerance::OfMax(f),
        None => Tolerance::Elementwise { rtol: a.rtol, atol: a.atol },
    };
    a.engine.validate()?;
    let mut mismatches = 0usize;
    let mut errors = 0usize;
    let mut set_errors = 0usize;
    let mut total = 0usize;
    for folder in &a.folders {
        let loaded = find_model(folder)
            .map_err(resnet::Error::from)
            .and_then(Model::load)
            .map(|m| a.engine.apply(m, a.threads, super::ModeChoice::Exact));
        let model = match loaded {
            Ok(m) => m,
            Err(e) => {
                errors += 1;
                eprintln!("{}: error: {}", folder.display(), super::one_line(&e.into()));
                continue;
            }
        };
        let sets = data_sets(folder)?;
        if sets.is_empty() {
            errors += 1;
            eprintln!("{}: error: no test_data_set_* folders", folder.display());
            continue;
        }
        for set in sets {
            total += 1;
            let run = |inputs| {
                model.run(inputs).map_err(|e| match e {
                    resnet::Error::Engine(e) => e,
                    other => resnet::engine::Error::TestLayout(other.to_string()),
                })
            };
            match run_data_set_with(model.graph(), &set, tol, run) {
                Ok(r) => {
                    if !r.passed {
                        mismatches += 1;
                    }
                    if a.json {
                        println!("{}", report_json(&r));
                        continue;
                    }
                    let max_abs = r.outputs.iter().map(|o| o.max_abs_err).fold(0.0, f64::max);
                    let rel = r.outputs.iter().map(|o| o.rel_err).fold(0.0, f64::max);
                    let status = if r.passed { "ok  " } else { "FAIL" };
                    println!("{status} {}  max abs err {max_abs:.3e}  rel err {rel:.3e}", set.display());
                    for o in r.outputs.iter().filter(|o| !o.passed) {
                        let why = o.problem.clone().unwrap_or_else(|| "values differ beyond tolerance".into());
                        println!("     output '{}': {why}", o.name);
                    }
                }
                Err(e) => {
                    errors += 1;
                    set_errors += 1;
                    println!("ERR  {}  {}", set.display(), super::one_line(&e.into()));
                }
            }
        }
    }
    if !a.json {
        let failed = mismatches + set_errors;
        println!("{total} data sets: {} passed, {failed} failed", total - failed);
        if errors > set_errors {
            println!("{} folder(s) could not be checked (see the errors above)", errors - set_errors);
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(2)
    } else if mismatches > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One data set as a JSON line (NaN errors, for outputs that could not be compared, as null).
fn report_json(r: &DataSetReport) -> serde_json::Value {
    let outputs: Vec<serde_json::Value> = r
        .outputs
        .iter()
        .map(|o| {
            serde_json::json!({
                "name": o.name,
                "passed": o.passed,
                "max_abs_err": o.max_abs_err,
                "rel_err": o.rel_err,
                "problem": o.problem,
            })
        })
        .collect();
    serde_json::json!({ "path": r.path.display().to_string(), "passed": r.passed, "outputs": outputs })
}
