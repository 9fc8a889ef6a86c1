//! `resnet bench` through the binary: one JSON object with every documented field, a text
//! report, and usage errors with exit code 2. A 64×64, 10-class ResNet-18 keeps it fast.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn resnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resnet")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A zoo-structured resnet18-v1 with input [N,3,64,64] and 10 classes, written into `dir`.
fn small_model(dir: &Path) -> PathBuf {
    let path = dir.join("r18-64.onnx");
    let o = resnet(&[
        "export",
        "--arch",
        "resnet18-v1",
        "--seed",
        "1",
        "--classes",
        "10",
        "--input-size",
        "64",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    path
}

fn macs_per_image(model: &Path) -> u64 {
    let o = resnet(&["inspect", "--json", model.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    json["macs"].as_u64().unwrap()
}

#[test]
fn bench_json_is_one_object_with_every_field_and_sane_values() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let macs = macs_per_image(&model);
    for engine in ["plan", "reference"] {
        let o = resnet(&[
            "bench",
            "--json",
            "--model",
            model.to_str().unwrap(),
            "--engine",
            engine,
            "--batch",
            "2",
            "--threads",
            "1",
            "--runs",
            "2",
            "--warmup",
            "0",
        ]);
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        let stdout = String::from_utf8(o.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();

        assert_eq!(j["model"], model.to_str().unwrap());
        // Fast (Winograd) is the plan's default mode; the reference executor is always exact.
        let mode = if engine == "plan" { "fast" } else { "exact" };
        assert_eq!((j["engine"].as_str(), j["mode"].as_str()), (Some(engine), Some(mode)));
        assert_eq!((j["batch"].as_u64(), j["threads"].as_u64()), (Some(2), Some(1)));
        assert_eq!((j["runs"].as_u64(), j["warmup"].as_u64()), (Some(2), Some(0)));
        assert_eq!(j["input_shape"], serde_json::json!([2, 3, 64, 64]));
        let f = |k: &str| j[k].as_f64().unwrap_or_else(|| panic!("{k} missing in {j}"));
        assert!(f("load_ms") > 0.0 && f("compile_ms") >= 0.0, "{j}");
        if engine == "plan" {
            assert!(f("compile_ms") > 0.0, "packing weights takes time: {j}");
        }
        assert!(f("min_ms") > 0.0 && f("min_ms") <= f("median_ms") && f("median_ms") <= f("max_ms"), "{j}");
        let images_per_s = 2.0 * 1e3 / f("median_ms");
        assert!((f("images_per_s") - images_per_s).abs() < 1e-6 * images_per_s, "{j}");
        // The work `resnet inspect` counts, at the benchmarked batch.
        assert_eq!(j["macs_per_image"].as_u64(), Some(macs));
        let gflops = 2.0 * macs as f64 * 2.0 / (f("median_ms") * 1e6);
        assert!(f("gflops") > 0.0 && (f("gflops") - gflops).abs() < 1e-6 * gflops, "{j}");
        // Peak: measured on x86-64 with AVX2+FMA, else null; a fraction exactly when a peak is known.
        match j["peak_gflops"].as_f64() {
            Some(peak) => {
                assert!(peak > 1.0, "{j}");
                assert!((f("fraction_of_peak") - f("gflops") / peak).abs() < 1e-9, "{j}");
                let source = j["peak_source"].as_str().unwrap_or_default();
                assert!(
                    ["avx512", "avx2"].iter().any(|isa| source == format!("measured ({isa} fma loop, 1 threads)")),
                    "{j}"
                );
            }
            None => assert!(j["fraction_of_peak"].is_null(), "{j}"),
        }
        // Whether 512-bit FMAs run at full rate: a boolean exactly on AVX-512 CPUs.
        assert_eq!(j["fma512_full_rate"].is_boolean(), has_avx512(), "{j}");
        assert!(has_avx512() || j["fma512_full_rate"].is_null(), "{j}");
        if cfg!(target_os = "linux") {
            // At least the model's 11.2 M parameters as f32.
            assert!(f("peak_rss_mb") > 40.0, "{j}");
        }
    }
}

#[test]
fn bench_text_report_states_the_peak_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let o =
        resnet(&["bench", "--model", model.to_str().unwrap(), "--runs", "1", "--warmup", "0", "--peak-gflops", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in ["engine      plan (fast), ", "input       [1, 3, 64, 64]", "load ", "per run     median "] {
        assert!(text.contains(needle), "'{needle}' not in:\n{text}");
    }
    // On AVX-512 CPUs the line also says how fast 512-bit FMAs run.
    let rate = ["; 512-bit FMAs at full rate)", "; 512-bit FMAs at half rate)"];
    let tail =
        text.split("(peak 1000.0 GFLOP/s, --peak-gflops").nth(1).unwrap_or_else(|| panic!("no peak in:\n{text}"));
    match has_avx512() {
        true => assert!(rate.iter().any(|r| tail.starts_with(r)), "{text}"),
        false => assert!(tail.starts_with(')'), "{text}"),
    }
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Exit code 2 and an `error:` first line naming `needle` (clap adds a `--help` hint below).
fn assert_usage_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: ") && first.contains(needle), "'{needle}' not in: {err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
}

#[test]
fn bench_rejects_bad_arguments_with_exit_code_2() {
    let m = "model.onnx";
    assert_usage_error(&resnet(&["bench", "--model", m, "--batch", "0"]), "'--batch <BATCH>'");
    assert_usage_error(&resnet(&["bench", "--model", m, "--runs", "0"]), "'--runs <RUNS>'");
    assert_usage_error(&resnet(&["bench", "--model", m, "--threads", "0"]), "'--threads <THREADS>'");
    assert_usage_error(&resnet(&["bench", "--model", m, "--engine", "gpu"]), "invalid value 'gpu' for '--engine");
    assert_usage_error(&resnet(&["bench", "--model", m, "--mode", "turbo"]), "invalid value 'turbo' for '--mode");
    let o = resnet(&["bench"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("error: the following required arguments were not provided:\n  --model"));

    // A model that does not exist: our own one-line error.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["bench", "--offline", "--model", missing.to_str().unwrap()])
        .env("RESNET_CACHE_DIR", dir.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("missing.onnx"), "{err}");
}

#[test]
fn bench_profile_accounts_for_every_conv_and_the_model_work() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let macs = macs_per_image(&model);
    let args = ["bench", "--model", model.to_str().unwrap(), "--threads", "1", "--runs", "2", "--warmup", "0"];
    let o = resnet(&[&args[..], &["--profile", "--json", "--batch", "2"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = j["profile"].as_array().unwrap_or_else(|| panic!("no profile in {j}"));
    // Every multiply-add of the model (batch 2) is in some row; shares add up to 1.
    let gmacs: f64 = rows.iter().map(|r| r["gmacs"].as_f64().unwrap()).sum();
    assert!((gmacs - 2.0 * macs as f64 / 1e9).abs() < 1e-9, "{gmacs} vs {macs}: {j}");
    let share: f64 = rows.iter().map(|r| r["fraction"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-9, "{j}");
    // Slowest first; the zoo ResNet-18's 20 convs (stem, 16 in blocks, 3 projections) are all
    // there, as direct or (fast mode, the default) Winograd steps.
    let ms: Vec<f64> = rows.iter().map(|r| r["ms"].as_f64().unwrap()).collect();
    assert!(ms.windows(2).all(|w| w[0] >= w[1]), "{ms:?}");
    let convs: u64 = rows
        .iter()
        .filter(|r| ["conv", "winograd"].iter().any(|k| r["kind"].as_str().unwrap().starts_with(k)))
        .map(|r| r["steps"].as_u64().unwrap())
        .sum();
    assert_eq!(convs, 20, "{j}");
    // The profiled runs' wall time, and the part of it outside the steps: within it.
    let (run, outside) = (j["profile_run_ms"].as_f64().unwrap(), j["profile_outside_ms"].as_f64().unwrap());
    assert!(run > 0.0 && (0.0..run).contains(&outside), "{j}");
    // Without --json: the table and the time outside the steps; with the reference engine:
    // a usage error.
    let o = resnet(&[&args[..], &["--profile"]].concat());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("GFLOP/s  kernel [fused]"), "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("outside ") && l.contains("ms of a profiled run's")),
        "{out}"
    );
    let o = resnet(&[&args[..], &["--profile", "--engine", "reference"]].concat());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--profile times the steps of the compiled plan"), "{}", stderr(&o));
}
