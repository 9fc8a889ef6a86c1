//! Fuzzes the ONNX loader: arbitrary bytes must give a graph or a typed error, never a panic,
//! an abort or a runaway allocation. Graphs that import are only shape-checked (already done
//! by `load_model_bytes`, and re-run here on a copy); they are never executed, since a fuzzed
//! shape can legitimately ask for terabytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut graph) = resnet_engine::onnx::load_model_bytes(bytes::Bytes::copy_from_slice(data)) {
        let _ = graph.op_counts();
        let _ = graph.parameter_count();
        for e in [graph.sort_topologically().err(), graph.infer_facts().err()].into_iter().flatten() {
            let _ = e.to_string();
        }
    }
});
