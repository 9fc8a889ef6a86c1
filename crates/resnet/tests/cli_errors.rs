//! Bad input through the CLI: every case gets its documented exit code and a readable
//! one-line error, never a panic; good images in the same run are still classified.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;
use resnet_engine::onnx::proto::{
    tensor_proto, type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use resnet_test_support::shared_asset;

fn resnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resnet")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a fatal error: exit code 2, one `error:` line naming `needles`, no panic.
fn assert_fatal(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "'{n}' not in: {err}");
    }
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let shape = TensorShapeProto { dim: dims.iter().map(|&d| tensor_shape_dim(d)).collect() };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: 1, shape: Some(shape) })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tensor_shape_dim(d: i64) -> resnet_engine::onnx::proto::tensor_shape_proto::Dimension {
    use resnet_engine::onnx::proto::tensor_shape_proto::{dimension, Dimension};
    Dimension { value: Some(dimension::Value::DimValue(d)), ..Default::default() }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A one-input model: `x [1,4]` through `nodes` to `y`.
fn model(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>) -> Vec<u8> {
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(GraphProto {
            name: "bad".into(),
            node: nodes,
            initializer: initializers,
            input: vec![value_info("x", &[1, 4])],
            output: vec![value_info("y", &[1, 4])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn inspect(path: &Path) -> Output {
    resnet(&["inspect", path.to_str().unwrap()])
}

#[test]
fn bad_models_give_one_line_errors_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    assert_fatal(&inspect(&write(d, "random.onnx", &random)), &["random.onnx", "not a valid ONNX model"]);
    assert_fatal(&inspect(&write(d, "empty.onnx", b"")), &["empty.onnx"]);

    let missing_init = model(vec![node("Add", "add1", &["x", "bias"], &["y"])], vec![]);
    assert_fatal(&inspect(&write(d, "dangling.onnx", &missing_init)), &["dangling.onnx", "add1", "Add", "bias"]);

    let cycle = model(
        vec![
            node("Add", "r1", &["x", "b"], &["a"]),
            node("Add", "r2", &["a", "x"], &["b"]),
            node("Relu", "r3", &["a"], &["y"]),
        ],
        vec![],
    );
    // r1 reads b (from r2), r2 reads a (from r1).
    assert_fatal(&inspect(&write(d, "cycle.onnx", &cycle)), &["cycle.onnx", "cycle"]);

    let unknown = model(vec![node("FancyConv", "f1", &["x"], &["y"])], vec![]);
    assert_fatal(&inspect(&write(d, "unknown.onnx", &unknown)), &["unknown.onnx", "f1", "FancyConv"]);

    let wrong_len = TensorProto {
        name: "w".into(),
        dims: vec![4],
        data_type: tensor_proto::DataType::Float as i32,
        raw_data: vec![0u8; 7].into(),
        ..Default::default()
    };
    let bad_tensor = model(vec![node("Add", "a", &["x", "w"], &["y"])], vec![wrong_len]);
    assert_fatal(&inspect(&write(d, "tensor.onnx", &bad_tensor)), &["tensor.onnx", "'w'"]);

    assert_fatal(&inspect(&d.join("does-not-exist.onnx")), &["does-not-exist.onnx"]);
}

#[test]
fn truncated_real_model_is_rejected_without_panic() {
    let Some(model) = shared_asset("models/resnet50-v1-keras/model.onnx") else { return };
    let bytes = std::fs::read(model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for len in [10, 1000, bytes.len() / 2] {
        let p = write(dir.path(), "truncated.onnx", &bytes[..len]);
        assert_fatal(&inspect(&p), &["truncated.onnx"]);
    }
}

#[test]
fn bad_images_are_reported_per_image_and_the_rest_are_classified() {
    let (Some(model), Some(images)) =
        (shared_asset("models/resnet50-v1-keras/model.onnx"), shared_asset("data/imagenet-samples/images"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = images.join("n06874185_traffic_light.JPEG");
    let jpeg = std::fs::read(&good).unwrap();
    let truncated = write(d, "truncated.jpg", &jpeg[..jpeg.len() / 3]);
    let empty = write(d, "empty.jpg", b"");
    let text = write(d, "notes.jpg", b"this is not an image\n");
    let missing = d.join("missing.jpg");
    // A PNG whose header claims 100000×100000 pixels: refused before decoding.
    let bomb = write(d, "bomb.png", &png_header(100_000, 100_000));
    // A 1×1 image is tiny but valid: it is upscaled and classified.
    let tiny = write(d, "tiny.png", &one_pixel_png());

    let paths = [&good, &truncated, &empty, &text, &missing, &bomb, &tiny];
    let mut args = vec!["classify", "--json", "--model", model.to_str().unwrap()];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let out = resnet(&args);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), paths.len());
    for (line, path) in lines.iter().zip(paths) {
        assert_eq!(line["file"], path.to_str().unwrap());
    }
    assert_eq!(lines[0]["predictions"][0]["index"], 920, "traffic light");
    assert!(lines[6]["predictions"].is_array(), "1×1 image: {}", lines[6]);
    for (i, needle) in [(1, "trunc"), (2, "empty"), (3, "format"), (4, "read"), (5, "pixels")] {
        let err = lines[i]["error"].as_str().unwrap_or_else(|| panic!("no error for {}", lines[i]));
        assert!(err.to_lowercase().contains(needle), "{}: '{err}' lacks '{needle}'", paths[i].display());
        assert!(!err.contains('\n'));
    }
    // Human mode says the same in readable lines.
    let mut args = vec!["classify", "--model", model.to_str().unwrap()];
    args.extend([good.to_str().unwrap(), empty.to_str().unwrap()]);
    let out = resnet(&args);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("traffic light"), "{text}");
    assert!(text.contains("error:"), "{text}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32(&body).to_be_bytes());
    c
}

/// PNG signature + IHDR (8-bit RGB) and nothing else.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png
}

/// A valid 1×1 red PNG.
fn one_pixel_png() -> Vec<u8> {
    // zlib stream of one scanline: filter byte 0 + RGB, stored (uncompressed) block.
    let raw = [0u8, 255, 0, 0];
    let mut z = vec![0x78, 0x01, 0x01, 4, 0, !4u8, 0xFF];
    z.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = png_header(1, 1);
    png.extend(chunk(b"IDAT", &z));
    png.extend(chunk(b"IEND", &[]));
    png
}
