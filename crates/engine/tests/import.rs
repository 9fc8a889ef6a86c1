//! ONNX import: the real ResNet-50 loads with the expected structure and reproduces ONNX
//! Runtime's logits, and every kind of bad file is a typed one-line error, never a panic.
//!
//! Bad models are built here with the generated protobuf types (`model`, `node`, … below), so
//! each test shows the one thing that is wrong with its model.

use resnet_test_support as common;

use bytes::Bytes;
use prost::Message;
use resnet_engine::onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataLocation, tensor_shape_proto, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use resnet_engine::onnx::{self, load_model, load_model_bytes, tensor_to_proto};
use resnet_engine::testdata::{self, Tolerance};
use resnet_engine::{exec, Dim, Error, Tensor};

// ---- a tiny model builder ------------------------------------------------------------------

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: outputs.first().map_or("", |s| s).to_string(),
        op_type: op.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..NodeProto::default()
    }
}

/// A float tensor value declaration with a numeric or symbolic shape (`"N"`).
fn value_info(name: &str, elem_type: i32, dims: &[&str]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d.parse::<i64>() {
                Ok(v) => tensor_shape_proto::dimension::Value::DimValue(v),
                Err(_) => tensor_shape_proto::dimension::Value::DimParam(d.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

const FLOAT: i32 = 1;

fn float_init(name: &str, dims: &[usize]) -> TensorProto {
    let n = dims.iter().product();
    tensor_to_proto(name, &Tensor::from_f32(dims.to_vec(), vec![0.5; n]))
}

/// IR 3, opset 7 (the zoo's versions): input `x` float [N,4], output `y`.
fn model(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>) -> ModelProto {
    ModelProto {
        ir_version: 3,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 7 }],
        graph: Some(GraphProto {
            name: "test".into(),
            node: nodes,
            input: vec![value_info("x", FLOAT, &["N", "4"])],
            output: vec![value_info("y", FLOAT, &["N", "4"])],
            initializer: initializers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn import(m: &ModelProto) -> Result<resnet_engine::Graph, Error> {
    load_model_bytes(Bytes::from(m.encode_to_vec()))
}

/// The error's Display is one line and mentions every `names`.
fn assert_one_line_naming(e: &Error, names: &[&str]) {
    let s = e.to_string();
    assert!(!s.contains('\n'), "multi-line error: {s}");
    for n in names {
        assert!(s.contains(n), "error does not name {n:?}: {s}");
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

// ---- the real model ------------------------------------------------------------------------

const RESNET50: &str = "models/resnet50-v1-keras/model.onnx";

#[test]
fn real_resnet50_imports_with_its_documented_structure() {
    let Some(path) = common::shared_asset(RESNET50) else { return };
    let g = load_model(&path).unwrap();
    assert_eq!((g.ir_version, g.opset), (3, 7));
    assert_eq!(g.nodes.len(), 176);
    assert_eq!(g.inputs.len(), 1, "initializers listed as inputs must not be runtime inputs");
    let data = g.value(g.inputs[0]);
    assert_eq!(data.name, "data");
    assert_eq!(
        data.fact.shape.as_deref(),
        Some(&[Dim::Sym("N".into()), Dim::Known(3), Dim::Known(224), Dim::Known(224)][..])
    );
    assert_eq!(g.outputs.len(), 1);
    let out = g.value(g.outputs[0]);
    assert_eq!(out.name, "fc1000");
    assert_eq!(out.fact.shape.as_deref(), Some(&[Dim::Sym("N".into()), Dim::Known(1000)][..]));
    assert_eq!(
        g.op_counts(),
        vec![
            ("Add", 16),
            ("BatchNormalization", 54),
            ("Conv", 53),
            ("Flatten", 1),
            ("Gemm", 1),
            ("GlobalAveragePool", 1),
            ("MaxPool", 1),
            ("Relu", 49),
        ]
    );
    // The README's 25,636,712 Keras parameters plus the 4×3 floats of the leading
    // preprocessing BatchNormalization.
    assert_eq!(g.parameter_count(), 25_636_712 + 12);
}

#[test]
fn real_resnet50_matches_onnx_runtime_on_both_test_sets() {
    let Some(path) = common::shared_asset(RESNET50) else { return };
    let g = load_model(&path).unwrap();
    for set in ["test_data_set_0", "test_data_set_1"] {
        let dir = path.parent().unwrap().join(set);
        let (_, input) = onnx::read_tensor_pb(dir.join("input_0.pb")).unwrap();
        let (_, expected) = onnx::read_tensor_pb(dir.join("output_0.pb")).unwrap();
        let out = exec::run(&g, vec![input]).unwrap();
        let r = testdata::compare(set.into(), &out[0], &expected, Tolerance::default());
        assert!(r.passed, "{set}: {r:?}");
    }
}

// ---- bad files -----------------------------------------------------------------------------

#[test]
fn truncated_model_files_are_not_onnx() {
    let Some(path) = common::shared_asset(RESNET50) else { return };
    let bytes = std::fs::read(&path).unwrap();
    for len in [1000, bytes.len() / 2] {
        let e = load_model_bytes(Bytes::copy_from_slice(&bytes[..len])).unwrap_err();
        assert!(matches!(e, Error::NotOnnx(_)), "cut at {len}: {e}");
        assert_one_line_naming(&e, &["truncated"]);
    }
}

#[test]
fn random_bytes_are_not_onnx() {
    for seed in 1..=20 {
        let e = load_model_bytes(Bytes::from(random_bytes(4096, seed))).unwrap_err();
        assert!(matches!(e, Error::NotOnnx(_)), "seed {seed}: {e}");
        assert_one_line_naming(&e, &["not a valid ONNX model"]);
    }
}

#[test]
fn empty_file_is_not_onnx_and_the_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.onnx");
    std::fs::write(&path, b"").unwrap();
    let e = load_model(&path).unwrap_err();
    assert!(matches!(e.root(), Error::NotOnnx(_)), "{e}");
    assert_one_line_naming(&e, &["empty.onnx", "empty"]);
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let e = load_model("/nonexistent/dir/model.onnx").unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert_one_line_naming(&e, &["/nonexistent/dir/model.onnx"]);
}

#[test]
fn missing_initializer_is_a_dangling_edge_naming_node_op_and_input() {
    let m = model(vec![node("Add", &["x", "bias"], &["y"])], vec![]);
    let e = import(&m).unwrap_err();
    assert!(
        matches!(&e, Error::DanglingEdge { node, op, input } if node == "y" && op == "Add" && input == "bias"),
        "{e}"
    );
    assert_one_line_naming(&e, &["'y'", "Add", "'bias'"]);
}

#[test]
fn cycle_is_reported_with_a_node_on_it() {
    let m = model(
        vec![node("Add", &["x", "c"], &["b"]), node("Relu", &["b"], &["c"]), node("Relu", &["c"], &["y"])],
        vec![],
    );
    let e = import(&m).unwrap_err();
    assert!(matches!(&e, Error::Cycle { node, .. } if node == "b" || node == "c"), "{e}");
    assert_one_line_naming(&e, &["cycle"]);
}

#[test]
fn unknown_op_is_named_with_its_node() {
    let e = import(&model(vec![node("FancyActivation", &["x"], &["y"])], vec![])).unwrap_err();
    assert!(
        matches!(&e, Error::UnknownOp { node, op, domain } if node == "y" && op == "FancyActivation" && domain.is_empty())
    );
    assert_one_line_naming(&e, &["'y'", "FancyActivation"]);

    let mut custom = node("Relu", &["x"], &["y"]);
    custom.domain = "com.example".into();
    let mut m = model(vec![custom], vec![]);
    m.opset_import.push(OperatorSetIdProto { domain: "com.example".into(), version: 1 });
    let e = import(&m).unwrap_err();
    assert!(matches!(&e, Error::UnknownOp { domain, .. } if domain == "com.example"), "{e}");
    assert_one_line_naming(&e, &["Relu", "com.example"]);
}

#[test]
fn unsupported_opset_is_refused() {
    let mut m = model(vec![node("Relu", &["x"], &["y"])], vec![]);
    m.opset_import[0].version = 99;
    let e = import(&m).unwrap_err();
    assert!(matches!(e, Error::Opset { version: 99, .. }), "{e}");
    assert_one_line_naming(&e, &["99"]);

    m.opset_import[0].domain = "ai.onnx.ml".into();
    assert!(matches!(import(&m).unwrap_err(), Error::NoDefaultOpset));
}

#[test]
fn external_data_initializer_is_refused_by_name() {
    let mut w = TensorProto { name: "w".into(), data_type: FLOAT, dims: vec![4], ..Default::default() };
    w.data_location = DataLocation::External as i32;
    w.external_data = vec![StringStringEntryProto { key: "location".into(), value: "weights.bin".into() }];
    let e = import(&model(vec![node("Add", &["x", "w"], &["y"])], vec![w])).unwrap_err();
    assert!(matches!(&e, Error::ExternalData { name } if name == "w"), "{e}");
    assert_one_line_naming(&e, &["'w'", "external"]);
}

#[test]
fn float_tensor_with_wrong_raw_data_length_is_refused_by_name() {
    let mut w = float_init("w", &[4]);
    w.raw_data = Bytes::from_static(&[0; 15]);
    let e = import(&model(vec![node("Add", &["x", "w"], &["y"])], vec![w])).unwrap_err();
    assert!(matches!(&e, Error::Tensor { name, .. } if name == "w"), "{e}");
    assert_one_line_naming(&e, &["'w'", "15 bytes"]);
}

#[test]
fn ir_version_zero_is_refused() {
    let mut m = model(vec![node("Relu", &["x"], &["y"])], vec![]);
    m.ir_version = 0;
    let e = import(&m).unwrap_err();
    assert!(matches!(e, Error::IrVersion(0)), "{e}");
    assert_one_line_naming(&e, &["IR version 0"]);
}

#[test]
fn duplicate_producers_and_dangling_outputs_are_refused() {
    let m = model(vec![node("Relu", &["x"], &["y"]), node("Relu", &["x"], &["y"])], vec![]);
    assert!(matches!(import(&m).unwrap_err(), Error::DuplicateValue(v) if v == "y"));
    let m = model(vec![node("Relu", &["x"], &["z"])], vec![]);
    assert!(matches!(import(&m).unwrap_err(), Error::DanglingOutput(v) if v == "y"));
}

#[test]
fn input_of_an_unsupported_element_type_is_refused_by_name() {
    let mut m = model(vec![node("Relu", &["x"], &["y"])], vec![]);
    m.graph.as_mut().unwrap().input[0] = value_info("x", 10, &["4"]);
    let e = import(&m).unwrap_err();
    assert!(matches!(&e, Error::Input { name, .. } if name == "x"), "{e}");
    assert_one_line_naming(&e, &["'x'", "float16"]);
}

#[test]
fn initializers_listed_as_inputs_are_constants_not_runtime_inputs() {
    let mut m = model(vec![node("Add", &["x", "w"], &["y"])], vec![float_init("w", &[4])]);
    m.graph.as_mut().unwrap().input.push(value_info("w", FLOAT, &["4"]));
    let g = import(&m).unwrap();
    assert_eq!(g.inputs.len(), 1);
    assert_eq!(g.value(g.inputs[0]).name, "x");
    let w = g.value(g.value_id("w").unwrap());
    assert_eq!(w.initializer.as_ref().unwrap().as_f32().unwrap(), &[0.5; 4]);
    let out = exec::run(&g, vec![Tensor::from_f32(vec![1, 4], vec![1.0, 2.0, 3.0, 4.0])]).unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[1.5, 2.5, 3.5, 4.5]);
}

#[test]
fn nameless_nodes_and_absent_optional_values_are_handled() {
    let mut relu = node("Relu", &["x"], &["y"]);
    relu.name.clear();
    let g = import(&model(vec![relu], vec![])).unwrap();
    assert_eq!(g.nodes[0].name, "y");

    let mut bad = node("FancyActivation", &["x", ""], &[""]);
    bad.name.clear();
    let mut m = model(vec![bad], vec![]);
    m.graph.as_mut().unwrap().output[0].name = "x".into();
    let e = import(&m).unwrap_err();
    assert!(matches!(&e, Error::UnknownOp { node, .. } if node == "#0"), "{e}");
}

#[test]
fn huge_declared_dims_do_not_allocate() {
    let w =
        TensorProto { name: "w".into(), data_type: FLOAT, dims: vec![1 << 31, 1 << 31, 1 << 31], ..Default::default() };
    let e = import(&model(vec![node("Add", &["x", "w"], &["y"])], vec![w])).unwrap_err();
    assert!(matches!(&e, Error::Tensor { name, .. } if name == "w"), "{e}");
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// Shape inference runs on whatever a file declares, so extreme dimensions and attributes
/// must come out as typed errors (or valid facts), never as an arithmetic-overflow panic.
#[test]
fn extreme_dims_and_attributes_are_errors_not_panics() {
    const BIG: i64 = i64::MAX;
    // (op, declared input shapes, attributes)
    type Case = (&'static str, Vec<&'static [i64]>, Vec<AttributeProto>);
    let cases: Vec<Case> = vec![
        ("Relu", vec![&[BIG, BIG, BIG]], vec![]),
        ("Flatten", vec![&[BIG, BIG, 2]], vec![]),
        ("GlobalAveragePool", vec![&[BIG, BIG, BIG, BIG]], vec![]),
        ("Add", vec![&[BIG, 1], &[1, BIG]], vec![]),
        ("MatMul", vec![&[BIG, BIG, BIG], &[BIG, BIG]], vec![]),
        ("Conv", vec![&[BIG, BIG, BIG, BIG], &[BIG, BIG, BIG, BIG]], vec![]),
        ("Conv", vec![&[1, 1, 5, 5], &[1, 1, 3, 3]], vec![ints("pads", &[BIG; 4]), ints("dilations", &[BIG; 2])]),
        ("MaxPool", vec![&[1, 1, BIG, BIG]], vec![ints("kernel_shape", &[BIG; 2]), ints("pads", &[BIG; 4])]),
        ("AveragePool", vec![&[1, 1, 5, 5]], vec![ints("kernel_shape", &[3, 3]), ints("strides", &[0, 0])]),
        ("Pad", vec![&[BIG, 2]], vec![ints("pads", &[BIG; 4])]),
    ];
    let mut panics = Vec::new();
    for (op, dims, attrs) in cases {
        let names = ["a", "b"];
        let mut n = node(op, &names[..dims.len()], &["y"]);
        n.attribute = attrs;
        let mut m = model(vec![n], vec![]);
        let graph = m.graph.as_mut().unwrap();
        graph.input = names.iter().zip(&dims).map(|(name, d)| value_info_dims(name, d)).collect();
        let bytes = Bytes::from(m.encode_to_vec());
        if std::panic::catch_unwind(|| load_model_bytes(bytes).map(|_| ())).is_err() {
            panics.push(format!("{op} {dims:?}"));
        }
    }
    assert!(panics.is_empty(), "import panicked for: {}", panics.join("; "));
}

fn value_info_dims(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    value_info(name, FLOAT, &dims.iter().map(String::as_str).collect::<Vec<_>>())
}
