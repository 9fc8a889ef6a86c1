//! ONNX export of built and imported graphs: byte-identical round trips, and an imported
//! real model that still computes the same outputs after export.

use resnet_engine::onnx::{export_model, load_model, load_model_bytes, read_tensor_pb, ExportOptions};
use resnet_engine::{exec, Graph};
use resnet_zoo::arch::{build, ArchSpec, Init, NAMES};

fn round_trip(g: &Graph, opset: i64) -> (Vec<u8>, Vec<u8>) {
    let o = ExportOptions::opset(opset);
    let first = export_model(g, &o).unwrap();
    let back = load_model_bytes(first.clone().into()).unwrap();
    (first, export_model(&back, &o).unwrap())
}

#[test]
fn export_import_export_is_byte_identical_for_all_ten_at_opsets_7_and_13() {
    for name in NAMES {
        let g = build(&ArchSpec::from_name(name).unwrap(), Init::Zeros).unwrap();
        for opset in [7, 13] {
            let (a, b) = round_trip(&g, opset);
            assert!(a == b, "{name} at opset {opset}: re-export differs ({} vs {} bytes)", a.len(), b.len());
        }
    }
}

#[test]
fn seeded_weights_survive_the_round_trip() {
    let g = build(&ArchSpec::from_name("resnet18-v2").unwrap(), Init::Seed(7)).unwrap();
    let (a, b) = round_trip(&g, 7);
    assert_eq!(a, b);
    let back = load_model_bytes(a.into()).unwrap();
    let w = |g: &Graph| g.initializers().map(|(n, t)| (n.to_string(), (**t).clone())).collect::<Vec<_>>();
    assert_eq!(w(&back), w(&g));
}

#[test]
fn exported_keras_resnet50_computes_the_same_outputs() {
    let Some(dir) = resnet_test_support::shared_asset("models/resnet50-v1-keras") else { return };
    let original = load_model(dir.join("model.onnx")).unwrap();
    for opset in [7, 13] {
        let (bytes, again) = round_trip(&original, opset);
        assert!(bytes == again, "opset {opset}: re-export differs");
        let exported = load_model_bytes(bytes.into()).unwrap();
        for set in ["test_data_set_0", "test_data_set_1"] {
            let (_, x) = read_tensor_pb(dir.join(set).join("input_0.pb")).unwrap();
            let (_, want) = read_tensor_pb(dir.join(set).join("output_0.pb")).unwrap();
            let ours = exec::run(&original, vec![x.clone()]).unwrap();
            let theirs = exec::run(&exported, vec![x]).unwrap();
            assert_eq!(ours, theirs, "opset {opset} {set}: the exported graph computes something else");
            let (y, w) = (theirs[0].as_f32().unwrap(), want.as_f32().unwrap());
            let peak = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = y.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= 1e-4 * peak, "opset {opset} {set}: max abs err {err} vs peak {peak}");
        }
    }
}
