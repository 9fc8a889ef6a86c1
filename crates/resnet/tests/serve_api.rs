//! `resnet serve` against the real ResNet-50 on loopback: every endpoint of the inference,
//! management and KServe v2 APIs, their error answers, and the bad-input corpus.

mod serve_support;

use base64::Engine as _;
use serde_json::{json, Value};
use serve_support::*;

const TENCH: &str = "n01440764_tench.JPEG";
const TRAFFIC_LIGHT: &str = "n06874185_traffic_light.JPEG";

/// A PNG whose IHDR (with a valid CRC) announces `width × height` RGB pixels, and no pixels.
fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

fn assert_top5_shape(v: &Value, k: usize) -> Vec<(String, f64)> {
    let list = v.as_array().unwrap_or_else(|| panic!("a JSON list: {v}"));
    assert_eq!(list.len(), k);
    let pairs: Vec<(String, f64)> =
        list.iter().map(|p| (p["class"].as_str().unwrap().to_string(), p["probability"].as_f64().unwrap())).collect();
    for w in pairs.windows(2) {
        assert!(w[0].1 >= w[1].1, "sorted by probability: {pairs:?}");
    }
    let total: f64 = pairs.iter().map(|p| p.1).sum();
    assert!(
        pairs.iter().all(|p| (0.0..=1.0).contains(&p.1)) && total <= 1.0 + 1e-5,
        "softmax probabilities: {pairs:?}"
    );
    pairs
}

#[test]
fn inference_api_classifies_raw_and_multipart_images_and_describes_itself() {
    if model_path().is_none() {
        return;
    }
    let s = ServerProcess::start_r50(&["--threads", "1"]);
    let i = &s.inference;

    let ping = get(&format!("{i}/ping"));
    assert_eq!((ping.status, ping.json()), (200, json!({"status": "Healthy"})));

    // Raw body (curl -T / --data-binary), with and without a content type.
    let image = sample_image(TRAFFIC_LIGHT);
    let raw = post(&format!("{i}/predictions/r50"), Some("image/jpeg"), &image);
    assert_eq!(raw.status, 200, "{}", raw.body);
    let top5 = assert_top5_shape(&raw.json(), 5);
    assert_eq!(top5[0].0, "n06874185 traffic light, traffic signal, stoplight");
    assert!(top5[0].1 > 0.5, "{top5:?}");
    let untyped = post(&format!("{i}/predictions/r50"), None, &image);
    assert_eq!(untyped.json(), raw.json());

    // Multipart: the `data` field, or the only file field under another name; ?topk.
    let (ct, form) = multipart("data", "tench.jpg", &sample_image(TENCH));
    let mp = post(&format!("{i}/predictions/r50?topk=3"), Some(&ct), &form);
    assert_eq!(mp.status, 200, "{}", mp.body);
    let top3 = assert_top5_shape(&mp.json(), 3);
    assert_eq!(top3[0].0, "n01440764 tench, Tinca tinca");
    let (ct, form) = multipart("upload", "tench.jpg", &sample_image(TENCH));
    let other = post(&format!("{i}/predictions/r50?topk=3"), Some(&ct), &form);
    assert_eq!(other.json(), mp.json());
    post(&format!("{i}/predictions/r50?topk=0"), None, &image).assert_error(400, "BadRequestException");
    post(&format!("{i}/predictions/r50?topk=1001"), None, &image).assert_error(400, "BadRequestException");
    post(&format!("{i}/predictions/r50?topk=many"), None, &image).assert_error(400, "BadRequestException");

    // API descriptions, the web page, the model list, unknown routes and methods.
    let api = options(&format!("{i}/"));
    assert_eq!(api.status, 200);
    assert_eq!(api.json()["openapi"], "3.0.1");
    assert!(api.json()["paths"]["/predictions/{model_name}"]["post"].is_object());
    assert_eq!(get(&format!("{i}/api-description")).json(), api.json());
    let per_model = options(&format!("{i}/predictions/r50"));
    assert!(per_model.json()["paths"]["/predictions/r50"]["post"].is_object(), "{}", per_model.body);
    options(&format!("{i}/predictions/nope")).assert_error(404, "ModelNotFoundException");
    let page = get(&format!("{i}/"));
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html") && page.body.contains("<html"), "{}", page.content_type);
    let models = get(&format!("{i}/models")).json();
    assert_eq!(models["models"][0]["modelName"], "r50");
    get(&format!("{i}/no/such/route")).assert_error(404, "ResourceNotFoundException");
    delete(&format!("{i}/ping")).assert_error(405, "MethodNotAllowedException");

    // Metrics count what happened.
    let page = get(&format!("{i}/metrics"));
    assert!(page.content_type.starts_with("text/plain; version=0.0.4"));
    let m = &page.body;
    assert!(metric(m, "resnet_requests_total{model=\"r50\",api=\"predictions\",code=\"200\"}").unwrap() >= 4.0, "{m}");
    assert_eq!(metric(m, "resnet_requests_total{model=\"r50\",api=\"predictions\",code=\"400\"}"), Some(3.0), "{m}");
    assert!(metric(m, "resnet_batch_size_count{model=\"r50\"}").unwrap() >= 1.0);
    assert!(metric(m, "resnet_request_duration_seconds_bucket{model=\"r50\",le=\"+Inf\"}").unwrap() >= 7.0);
    assert!(metric(m, "resnet_inference_duration_seconds_count{model=\"r50\"}").unwrap() >= 1.0);
    assert_eq!(metric(m, "resnet_queue_depth{model=\"r50\"}"), Some(0.0));
    assert_eq!(metric(m, "resnet_requests_in_flight"), Some(0.0), "every request answered: {m}");
    assert!(metric(m, "resnet_model_load_seconds{model=\"r50\"}").unwrap() > 0.0);
    assert_eq!(get(&format!("{}/metrics", s.management)).status, 200);
}

#[test]
fn kserve_v2_health_metadata_and_image_inference() {
    if model_path().is_none() {
        return;
    }
    let s = ServerProcess::start_r50(&["--threads", "1"]);
    let v2 = format!("{}/v2", s.inference);
    assert_eq!(get(&v2).json()["name"], "resnet-rs");
    assert_eq!(get(&format!("{v2}/health/live")).json(), json!({"live": true}));
    let ready = get(&format!("{v2}/health/ready"));
    assert_eq!((ready.status, ready.json()), (200, json!({"ready": true})));
    let meta = get(&format!("{v2}/models/r50")).json();
    assert_eq!(meta["inputs"][0], json!({"name": "data", "datatype": "FP32", "shape": [-1, 3, 224, 224]}));
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 1000]));
    assert_eq!(get(&format!("{v2}/models/r50/ready")).json(), json!({"name": "r50", "ready": true}));
    let missing = get(&format!("{v2}/models/nope/ready"));
    missing.assert_error(404, "ModelNotFoundException");
    assert!(missing.json()["error"].as_str().unwrap().contains("nope"), "v2 errors carry 'error'");

    // BYTES: two base64 images in one request → top-k per image.
    let b64 = |name| base64::engine::general_purpose::STANDARD.encode(sample_image(name));
    let request = json!({
        "id": "req-1",
        "parameters": {"topk": 3},
        "inputs": [{"name": "images", "shape": [2], "datatype": "BYTES", "data": [b64(TENCH), b64(TRAFFIC_LIGHT)]}]
    });
    let r = post(&format!("{v2}/models/r50/infer"), Some("application/json"), request.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["id"], "req-1");
    assert_eq!(v["model_name"], "r50");
    let out = |name: &str| v["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap().clone();
    assert_eq!(out("classes")["shape"], json!([2, 3]));
    assert_eq!(out("classes")["data"][0], "n01440764 tench, Tinca tinca");
    assert_eq!(out("classes")["data"][3], "n06874185 traffic light, traffic signal, stoplight");
    assert_eq!(out("indices")["data"][0], 0);
    assert_eq!(out("indices")["data"][3], 920);
    // The same probabilities as /predictions.
    let single = post(&format!("{}/predictions/r50?topk=3", s.inference), None, &sample_image(TENCH)).json();
    let p0 = out("probabilities")["data"][0].as_f64().unwrap();
    assert!((p0 - single[0]["probability"].as_f64().unwrap()).abs() < 1e-6);
    // Asking for one output only.
    let only = json!({"inputs": [{"name": "i", "shape": [1], "datatype": "BYTES", "data": [b64(TENCH)]}], "outputs": [{"name": "classes"}]});
    let r = post(&format!("{v2}/models/r50/infer"), Some("application/json"), only.to_string().as_bytes()).json();
    assert_eq!(r["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(r["outputs"][0]["data"].as_array().unwrap().len(), 5);
    let m = get(&format!("{}/metrics", s.inference)).body;
    assert_eq!(metric(&m, "resnet_requests_total{model=\"r50\",api=\"kserve\",code=\"200\"}"), Some(2.0), "{m}");
}

#[test]
fn kserve_tensor_logits_match_model_run_on_the_same_input() {
    let Some(model_path) = model_path() else { return };
    let s = ServerProcess::start_r50(&["--threads", "1"]);
    let classifier = resnet::Classifier::new(resnet::Model::load(&model_path).unwrap()).unwrap();
    let mut data = classifier.prepare_bytes(&sample_image(TENCH)).unwrap();
    data.extend(classifier.prepare_bytes(&sample_image(TRAFFIC_LIGHT)).unwrap());
    let x = resnet::Tensor::from_f32(vec![2, 3, 224, 224], data.clone());
    let expected = classifier.model().run(vec![x]).unwrap().remove(0).into_f32().unwrap();

    let request = json!({"inputs": [{"name": "data", "shape": [2, 3, 224, 224], "datatype": "FP32", "data": data}]});
    let r =
        post(&format!("{}/v2/models/r50/infer", s.inference), Some("application/json"), request.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(500)]);
    let v = r.json();
    let out = &v["outputs"][0];
    assert_eq!(out["name"], "fc1000");
    assert_eq!(out["datatype"], "FP32");
    assert_eq!(out["shape"], json!([2, 1000]));
    let got: Vec<f64> = out["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(got.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
    let worst = got.iter().zip(&expected).map(|(g, e)| (g - *e as f64).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-4 * scale, "max |diff| {worst} > 1e-4 × max|y| ({scale})");

    // Nested row-major data is the same tensor.
    let nested: Vec<Vec<f32>> = data[..3 * 224 * 224].chunks(224).map(|r| r.to_vec()).collect();
    let request = json!({"inputs": [{"name": "data", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": nested}]});
    let r =
        post(&format!("{}/v2/models/r50/infer", s.inference), Some("application/json"), request.to_string().as_bytes());
    let first: Vec<f64> =
        r.json()["outputs"][0]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let worst = first.iter().zip(&expected[..1000]).map(|(g, e)| (g - *e as f64).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-4 * scale, "nested: max |diff| {worst}");
}

#[test]
fn bad_input_gets_its_documented_4xx_and_the_server_keeps_serving() {
    if model_path().is_none() {
        return;
    }
    let s =
        ServerProcess::start_r50(&["--threads", "1", "--max-body-bytes", "1000000", "--max-image-pixels", "50000000"]);
    let predict = format!("{}/predictions/r50", s.inference);
    let infer = format!("{}/v2/models/r50/infer", s.inference);
    let jpeg = sample_image(TENCH);
    let (mp_type, _) = multipart("data", "x.jpg", b"");
    let cases: Vec<(&str, Reply, u16, &str)> = vec![
        ("truncated JPEG", post(&predict, Some("image/jpeg"), &jpeg[..jpeg.len() / 3]), 422, "InvalidImageException"),
        ("0 bytes", post(&predict, Some("image/jpeg"), b""), 400, "BadRequestException"),
        (
            "text",
            post(&predict, Some("application/octet-stream"), b"hello, I am not an image"),
            422,
            "InvalidImageException",
        ),
        (
            "PNG claiming 100000x100000",
            post(&predict, Some("image/png"), &png_header_claiming(100_000, 100_000)),
            413,
            "RequestEntityTooLargeException",
        ),
        ("wrong content type", post(&predict, Some("text/plain"), &jpeg), 415, "UnsupportedMediaTypeException"),
        ("JSON to predictions", post(&predict, Some("application/json"), b"{}"), 415, "UnsupportedMediaTypeException"),
        (
            "body over the limit",
            post(&predict, Some("image/jpeg"), &vec![0xffu8; 1_000_001]),
            413,
            "RequestEntityTooLargeException",
        ),
        (
            "unknown model",
            post(&format!("{}/predictions/nope", s.inference), None, &jpeg),
            404,
            "ModelNotFoundException",
        ),
        (
            "malformed multipart",
            post(&predict, Some(&mp_type), b"--not-the-boundary\r\ngarbage"),
            400,
            "BadRequestException",
        ),
        ("multipart without boundary", post(&predict, Some("multipart/form-data"), b"x"), 400, "BadRequestException"),
        (
            "malformed KServe JSON",
            post(&infer, Some("application/json"), b"{\"inputs\": [{"),
            400,
            "BadRequestException",
        ),
        (
            "KServe without inputs",
            post(&infer, Some("application/json"), b"{\"inputs\": []}"),
            400,
            "BadRequestException",
        ),
        (
            "KServe wrong shape",
            post(
                &infer,
                Some("application/json"),
                json!({"inputs": [{"name": "x", "shape": [1, 3, 10, 10], "datatype": "FP32", "data": [0.0]}]})
                    .to_string()
                    .as_bytes(),
            ),
            400,
            "BadRequestException",
        ),
        (
            "KServe data/shape mismatch",
            post(
                &infer,
                Some("application/json"),
                json!({"inputs": [{"name": "x", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0.0, 1.0]}]})
                    .to_string()
                    .as_bytes(),
            ),
            400,
            "BadRequestException",
        ),
        (
            "KServe shape of 10^12 images",
            post(&infer, Some("application/json"), json!({"inputs": [{"name": "x", "shape": [1_000_000_000_000i64, 3, 224, 224], "datatype": "FP32", "data": [0.0]}]}).to_string().as_bytes()),
            400,
            "BadRequestException",
        ),
        (
            "KServe strings in FP32",
            post(
                &infer,
                Some("application/json"),
                json!({"inputs": [{"name": "x", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": ["a"]}]})
                    .to_string()
                    .as_bytes(),
            ),
            400,
            "BadRequestException",
        ),
        (
            "KServe bad base64",
            post(
                &infer,
                Some("application/json"),
                json!({"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]})
                    .to_string()
                    .as_bytes(),
            ),
            400,
            "BadRequestException",
        ),
        (
            "KServe undecodable image",
            post(
                &infer,
                Some("application/json"),
                json!({"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["aGVsbG8="]}]})
                    .to_string()
                    .as_bytes(),
            ),
            422,
            "InvalidImageException",
        ),
        (
            "KServe INT8",
            post(
                &infer,
                Some("application/json"),
                json!({"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}]})
                    .to_string()
                    .as_bytes(),
            ),
            400,
            "BadRequestException",
        ),
        ("KServe wrong content type", post(&infer, Some("text/plain"), b"{}"), 415, "UnsupportedMediaTypeException"),
        (
            "KServe body over the limit",
            post(&infer, Some("application/json"), &vec![b' '; 1_000_001]),
            413,
            "RequestEntityTooLargeException",
        ),
        (
            "KServe unknown model",
            post(&format!("{}/v2/models/nope/infer", s.inference), Some("application/json"), b"{}"),
            404,
            "ModelNotFoundException",
        ),
    ];
    for (what, reply, status, kind) in cases {
        let message = reply.assert_error(status, kind);
        eprintln!("{what}: {status} {message}");
        let ping = get(&format!("{}/ping", s.inference));
        assert_eq!(ping.status, 200, "after {what}");
    }
    // Still classifying correctly after all that.
    let ok = post(&predict, None, &jpeg).json();
    assert_eq!(ok[0]["class"], "n01440764 tench, Tinca tinca");
}

#[test]
fn past_the_request_timeout_the_answer_is_504() {
    if model_path().is_none() {
        return;
    }
    // No decode + ResNet-50 run finishes in 1 ms.
    let s = ServerProcess::start_r50(&["--threads", "1", "--request-timeout-ms", "1"]);
    post(&format!("{}/predictions/r50", s.inference), None, &sample_image(TENCH))
        .assert_error(504, "RequestTimeoutException");
    assert_eq!(get(&format!("{}/ping", s.inference)).status, 200);
}

#[test]
fn management_api_registers_lists_scales_and_unregisters_models() {
    let Some(model) = model_path() else { return };
    let s = ServerProcess::start_r50(&["--threads", "1"]);
    let m = &s.management;
    let file_url = format!("file://{}", model.display());

    let api = options(&format!("{m}/"));
    assert_eq!(api.json()["openapi"], "3.0.1");
    assert!(api.json()["paths"]["/models/{model_name}"]["put"].is_object());

    // Register two more (query parameters, and a JSON body).
    let r = post(&format!("{m}/models?url={file_url}&model_name=alpha&batch_size=4&max_batch_delay=20"), None, b"");
    assert_eq!((r.status, r.json()), (200, json!({"status": "Model \"alpha\" registered"})), "{}", r.body);
    let body = json!({"url": model.display().to_string(), "model_name": "beta", "initial_workers": 2});
    let r = post(&format!("{m}/models"), Some("application/json"), body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    post(&format!("{m}/models?url={file_url}&model_name=alpha"), None, b"")
        .assert_error(409, "ConflictStatusException");
    post(&format!("{m}/models"), None, b"").assert_error(400, "BadRequestException");
    post(&format!("{m}/models?url=/no/such/model.onnx&model_name=x"), None, b"")
        .assert_error(400, "BadRequestException");
    post(&format!("{m}/models?url=resnet18-v1.mar"), None, b"").assert_error(400, "BadRequestException");
    post(&format!("{m}/models?url=http://127.0.0.1:9/evil.onnx&model_name=x"), None, b"")
        .assert_error(400, "BadRequestException");
    post(&format!("{m}/models?url={file_url}&model_name=9bad"), None, b"").assert_error(400, "BadRequestException");
    post(&format!("{m}/models?url={file_url}&model_name=g&batch_size=0"), None, b"")
        .assert_error(400, "BadRequestException");
    post(&format!("{m}/models?url={file_url}&model_name=g&batch_size=x"), None, b"")
        .assert_error(400, "BadRequestException");

    // List with MMS pagination: sorted by name, nextPageToken while more may follow.
    let all = get(&format!("{m}/models")).json();
    let names: Vec<&str> = all["models"].as_array().unwrap().iter().map(|x| x["modelName"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta", "r50"]);
    assert_eq!(all["models"][0]["modelUrl"], file_url.as_str());
    let page = get(&format!("{m}/models?limit=2")).json();
    assert_eq!(page["models"].as_array().unwrap().len(), 2);
    assert_eq!(page["nextPageToken"], "2");
    let page = get(&format!("{m}/models?limit=2&next_page_token=2")).json();
    assert_eq!(page["models"][0]["modelName"], "r50");
    assert!(page.get("nextPageToken").is_none(), "{page}");
    get(&format!("{m}/models?limit=x")).assert_error(400, "BadRequestException");

    // Describe, scale and re-batch.
    let d = get(&format!("{m}/models/alpha")).json();
    assert_eq!((d[0]["batchSize"].clone(), d[0]["maxBatchDelay"].clone()), (json!(4), json!(20)));
    assert_eq!(d[0]["workers"].as_array().unwrap().len(), 1);
    assert_eq!(get(&format!("{m}/models/beta")).json()[0]["workers"].as_array().unwrap().len(), 2);
    get(&format!("{m}/models/nope")).assert_error(404, "ModelNotFoundException");
    let r = put(&format!("{m}/models/alpha?min_worker=3&max_worker=3&batch_size=2&max_batch_delay=0"));
    assert_eq!((r.status, r.json()), (200, json!({"status": "Workers scaled"})), "{}", r.body);
    let d = get(&format!("{m}/models/alpha")).json();
    assert_eq!((d[0]["minWorkers"].clone(), d[0]["batchSize"].clone()), (json!(3), json!(2)));
    assert_eq!(d[0]["workers"].as_array().unwrap().len(), 3);
    put(&format!("{m}/models/alpha?min_worker=2&max_worker=1")).assert_error(400, "BadRequestException");
    put(&format!("{m}/models/alpha?min_worker=0")).assert_error(400, "BadRequestException");
    put(&format!("{m}/models/nope?min_worker=1")).assert_error(404, "ModelNotFoundException");
    assert_eq!(put(&format!("{m}/models/alpha?min_worker=1")).status, 200);
    assert_eq!(get(&format!("{m}/models/alpha")).json()[0]["workers"].as_array().unwrap().len(), 1);

    // The new models serve; unregistering removes them.
    let p = post(&format!("{}/predictions/alpha", s.inference), None, &sample_image(TENCH));
    assert_eq!(p.json()[0]["class"], "n01440764 tench, Tinca tinca");
    let r = delete(&format!("{m}/models/alpha"));
    assert_eq!((r.status, r.json()), (200, json!({"status": "Model \"alpha\" unregistered"})));
    delete(&format!("{m}/models/alpha")).assert_error(404, "ModelNotFoundException");
    get(&format!("{m}/models/alpha")).assert_error(404, "ModelNotFoundException");
    post(&format!("{}/predictions/alpha", s.inference), None, &sample_image(TENCH))
        .assert_error(404, "ModelNotFoundException");
    assert_eq!(delete(&format!("{m}/models/beta")).status, 200);
    assert_eq!(delete(&format!("{m}/models/r50")).status, 200);
    // No model left: ping says so, readiness fails.
    assert_eq!(get(&format!("{}/ping", s.inference)).json(), json!({"status": "Unhealthy"}));
    assert_eq!(get(&format!("{}/v2/health/ready", s.inference)).status, 503);
    assert_eq!(get(&format!("{m}/models")).json(), json!({"models": []}));
}

#[test]
fn startup_errors_are_one_line_and_exit_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["serve", "--port", "0", "--management-port", "0", "--model", "x=/no/such/model.onnx"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: model 'x': ") && stderr.lines().count() == 1, "{stderr}");
    assert!(out.stdout.is_empty(), "no address printed before the models load");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["serve", "--model", "9x=a.onnx"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid model name '9x'"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["serve", "--queue-depth", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
