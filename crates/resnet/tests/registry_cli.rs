//! The registry through the CLI: `resnet models …`, zoo names in `--model`, and `classify`'s
//! default model — against a loopback server and a test manifest (RESNET_REGISTRY_MANIFEST)
//! that serves a tiny classifier under the zoo's file name. Never touches the real network or
//! the user's cache.

use std::path::Path;
use std::process::{Command, Output};

use prost::Message;
use resnet::zoo::registry::sha256_file;
use resnet_engine::onnx::proto::{
    attribute_proto, tensor_proto, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use resnet_test_support::http::FileServer;
use resnet_test_support::shared_asset;

const IMAGE: &str = "data/imagenet-samples/images/n06874185_traffic_light.JPEG";

/// `resnet ARGS` with the registry's environment cleared and the cache in `cache`.
fn resnet(cache: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resnet"));
    for var in ["RESNET_OFFLINE", "RESNET_MODEL_BASE_URL", "RESNET_REGISTRY_MANIFEST", "XDG_CACHE_HOME"] {
        cmd.env_remove(var);
    }
    cmd.env("RESNET_CACHE_DIR", cache).envs(env.iter().copied()).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "'{n}' not in: {err}");
    }
}

fn value_info(name: &str, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Ok(n) => Value::DimValue(*n),
                Err(p) => Value::DimParam(p.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A 1000-class "classifier" small enough to serve in a test: the mean of each input channel
/// through a 3→1000 dense layer (`data [N,3,224,224]` → `logits [N,1000]`).
fn tiny_classifier() -> Vec<u8> {
    let node = |op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>| NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    };
    let float = |name: &str, dims: Vec<i64>, data: Vec<f32>| TensorProto {
        name: name.into(),
        dims,
        data_type: tensor_proto::DataType::Float as i32,
        float_data: data,
        ..Default::default()
    };
    let trans_b = AttributeProto {
        name: "transB".into(),
        r#type: attribute_proto::AttributeType::Int as i32,
        i: 1,
        ..Default::default()
    };
    let weights: Vec<f32> = (0..3000).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(GraphProto {
            name: "tiny".into(),
            node: vec![
                node("GlobalAveragePool", &["data"], "pool", vec![]),
                node("Flatten", &["pool"], "flat", vec![]),
                node("Gemm", &["flat", "w", "b"], "logits", vec![trans_b]),
            ],
            initializer: vec![float("w", vec![1000, 3], weights), float("b", vec![1000], vec![0.0; 1000])],
            input: vec![value_info("data", &[Err("N"), Ok(3), Ok(224), Ok(224)])],
            output: vec![value_info("logits", &[Err("N"), Ok(1000)])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A server with the tiny model at `/zoo/resnet18-v1-7.onnx` and a manifest naming it.
struct Mirror {
    server: FileServer,
    dir: tempfile::TempDir,
    model: Vec<u8>,
}

impl Mirror {
    fn new(sha256_override: Option<&str>) -> Mirror {
        let server = FileServer::start();
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_classifier();
        server.add("/zoo/resnet18-v1-7.onnx", model.clone());
        let local = dir.path().join("model.onnx");
        std::fs::write(&local, &model).unwrap();
        let sha = sha256_override.map(str::to_string).unwrap_or_else(|| sha256_file(&local).unwrap());
        let manifest = format!("# test manifest\nresnet18-v1 resnet18-v1-7.onnx {} {sha}\n", model.len());
        std::fs::write(dir.path().join("manifest.tsv"), manifest).unwrap();
        Mirror { server, dir, model }
    }

    fn cache(&self) -> std::path::PathBuf {
        self.dir.path().join("cache")
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("RESNET_REGISTRY_MANIFEST", self.dir.path().join("manifest.tsv").display().to_string()),
            ("RESNET_MODEL_BASE_URL", format!("{}/zoo", self.server.url())),
        ]
    }

    fn run(&self, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
        let env = self.env();
        let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(extra_env);
        resnet(&self.cache(), &all, args)
    }
}

#[test]
fn models_list_shows_the_ten_names_with_size_and_cache_state() {
    let cache = tempfile::tempdir().unwrap();
    let out = resnet(cache.path(), &[], &["models", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for name in ["resnet18-v1", "resnet50-v1", "resnet152-v1", "resnet18-v2", "resnet50-v2", "resnet152-v2"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{stdout}"));
        assert!(line.ends_with(" no"), "{line}");
    }
    assert!(stdout.contains("resnet50-v2-7.onnx") && stdout.contains("102.4 MB"), "{stdout}");
    let out = resnet(cache.path(), &[], &["models", "list", "--json"]);
    let lines: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[7]["name"], "resnet50-v2");
    assert_eq!(lines[7]["sha256"], "79102261eb6e5fd7af5d27f41316293e388c5cb691e5d25bfb035c4f64fefe31");
    assert_eq!(lines[7]["cached"], "missing");
}

#[test]
fn models_path_offline_says_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let out = resnet(cache.path(), &[("RESNET_OFFLINE", "1")], &["models", "path", "resnet50-v2"]);
    assert_one_line_error(&out, &["resnet50-v2", "offline", "resnet models pull resnet50-v2", "resnet50-v2-7.onnx"]);
    let out = resnet(cache.path(), &[], &["models", "--offline", "path", "resnet34-v1"]);
    assert_one_line_error(&out, &["resnet models pull resnet34-v1"]);
}

#[test]
fn classify_without_model_uses_resnet50_v2_from_the_registry() {
    let cache = tempfile::tempdir().unwrap();
    let out = resnet(cache.path(), &[], &["classify", "--offline", "cat.jpg"]);
    assert_one_line_error(&out, &["resnet50-v2", "resnet models pull resnet50-v2"]);
}

#[test]
fn an_unknown_model_lists_the_zoo_names() {
    let cache = tempfile::tempdir().unwrap();
    let out = resnet(cache.path(), &[], &["inspect", "resnet51-v2"]);
    assert_one_line_error(&out, &["'resnet51-v2'", "resnet18-v1", "resnet152-v2"]);
    let out = resnet(cache.path(), &[], &["models", "pull", "resnet50-v2", "resnet51-v2"]);
    assert_one_line_error(&out, &["unknown model 'resnet51-v2'"]);
}

#[test]
fn classify_fetches_a_zoo_name_from_a_mirror_and_then_works_offline() {
    let Some(image) = shared_asset(IMAGE) else { return };
    let image = image.to_str().unwrap();
    let mut m = Mirror::new(None);

    let out = m.run(&[], &["classify", "--json", "--top", "3", "--model", "resnet18-v1", image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(line["predictions"].as_array().unwrap().len(), 3);
    assert!(text(&out.stderr).contains("downloading resnet18-v1"), "{}", text(&out.stderr));
    let cached = m.cache().join("resnet18-v1-7.onnx");
    assert_eq!(std::fs::read(&cached).unwrap(), m.model);

    m.server.stop();
    let out = m.run(&[("RESNET_OFFLINE", "1")], &["inspect", "resnet18-v1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&cached.display().to_string()), "{}", text(&out.stdout));
    assert!(text(&out.stderr).is_empty(), "nothing downloaded: {}", text(&out.stderr));

    let out = m.run(&[], &["models", "list"]);
    let stdout = text(&out.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("resnet18-v1 ") && l.ends_with(" yes")), "{stdout}");
    let out = m.run(&[], &["models", "path", "resnet18-v1"]);
    assert_eq!(text(&out.stdout).trim(), cached.display().to_string());

    let out = m.run(&[], &["models", "verify", cached.to_str().unwrap()]);
    assert!(out.status.success() && text(&out.stdout).contains("resnet18-v1"), "{}", text(&out.stdout));
    let other = m.dir.path().join("manifest.tsv");
    let out = m.run(&[], &["models", "verify", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("matches none"), "{}", text(&out.stdout));
    let out = m.run(&[], &["models", "verify", "--name", "resnet18-v1", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("not resnet18-v1"), "{}", text(&out.stdout));
}

#[test]
fn pull_rejects_a_file_whose_sha256_does_not_match() {
    let wrong = "0".repeat(64);
    let m = Mirror::new(Some(&wrong));
    let out = m.run(&[], &["models", "pull", "resnet18-v1"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("error: ") && last.contains("sha256 mismatch") && last.contains(&wrong), "{stderr}");
    assert!(!m.cache().join("resnet18-v1-7.onnx").exists());
    assert!(!m.cache().join("resnet18-v1-7.onnx.part").exists());
}
