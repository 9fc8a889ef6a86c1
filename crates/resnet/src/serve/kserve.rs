//! The KServe v2 (Open Inference Protocol) REST API on the inference port: health, model
//! metadata and readiness, and `POST /v2/models/{model}/infer` with JSON tensors:
//! * an `FP32` input of shape `[N, 3, S, S]` (preprocessed images, S the model's input size,
//!   flat or nested row-major `data`) → the model's `FP32` output `[N, classes]` (logits);
//! * a `BYTES` input of shape `[N]` whose `data` holds N base64-encoded JPEG/PNG images →
//!   top-k outputs: `probabilities` (`FP32 [N, K]`, softmax), `classes` (`BYTES [N, K]`,
//!   synset lines) and `indices` (`INT64 [N, K]`); `K` from `parameters.topk` (default 5).
//!
//! Errors carry the protocol's `{"error": "..."}` plus MMS's `code`, `type`, `message`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::batcher::Input;
use super::body::{media_type, read_limited};
use super::error::{json_response, ApiError};
use super::inference::{answer, rank, submit, top_k_param, AppState, ModelName};
use super::store::ServedModel;

const VERSION: &str = "1";

pub async fn server_metadata() -> Response {
    json_response(StatusCode::OK, &json!({"name": "resnet-rs", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
}

pub async fn live() -> Response {
    json_response(StatusCode::OK, &json!({"live": true}))
}

/// Ready while at least one model is served and the server is not shutting down; else 503.
pub async fn ready(State(app): State<AppState>) -> Response {
    let ready = app.is_ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, &json!({"ready": ready}))
}

pub async fn model_metadata(State(app): State<AppState>, ModelName(name): ModelName) -> Response {
    let model = match app.model(&name) {
        Ok(m) => m,
        Err(e) => return e.kserve().into_response(),
    };
    let c = &model.core;
    let s = c.input_size as i64;
    json_response(
        StatusCode::OK,
        &json!({
            "name": model.name,
            "versions": [VERSION],
            "platform": "onnx_onnxv1",
            "inputs": [{"name": c.input_name, "datatype": "FP32", "shape": [-1, 3, s, s]}],
            "outputs": [{"name": c.output_name, "datatype": "FP32", "shape": [-1, c.classes as i64]}],
        }),
    )
}

pub async fn model_ready(State(app): State<AppState>, ModelName(name): ModelName) -> Response {
    match app.model(&name) {
        Ok(m) => json_response(StatusCode::OK, &json!({"name": m.name, "ready": true})),
        Err(e) => e.kserve().into_response(),
    }
}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
}

pub async fn infer(
    State(app): State<AppState>,
    ModelName(name): ModelName,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let work = async {
        let bytes = read_limited(&headers, body, app.limits.max_body_bytes).await?;
        let model = app.model(&name)?;
        match media_type(&headers)?.as_deref() {
            None | Some("application/json") => {}
            Some(t) => {
                return Err(ApiError::unsupported_media_type(format!(
                    "unsupported Content-Type '{t}': the v2 REST API takes application/json (the binary tensor extension is not supported)"
                )))
            }
        }
        // Megabytes of numbers: parsed on a blocking thread, not on the runtime's.
        let request: InferRequest = tokio::task::spawn_blocking(move || serde_json::from_slice(&bytes))
            .await
            .map_err(|e| ApiError::internal(format!("parsing failed: {e}")))?
            .map_err(|e| ApiError::bad_request(format!("malformed inference request JSON: {e}")))?;
        let [input] = <[InputTensor; 1]>::try_from(request.inputs)
            .map_err(|v| ApiError::bad_request(format!("expected exactly one input tensor, got {}", v.len())))?;
        let outputs = match input.datatype.as_str() {
            "FP32" => infer_tensor(&model, input).await?,
            "BYTES" => {
                let k = match request.parameters.as_ref().and_then(|p| p.get("topk")) {
                    None => None,
                    Some(v) => Some(v.as_u64().ok_or_else(|| {
                        ApiError::bad_request(format!("parameters.topk must be a positive integer, got {v}"))
                    })? as usize),
                };
                infer_images(&model, input, top_k_param(k, model.core.classes)?).await?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                "input '{}' has datatype {other}; expected FP32 (preprocessed [N,3,{s},{s}]) or BYTES (encoded images)",
                input.name,
                s = model.core.input_size
            )))
            }
        };
        let outputs = select_outputs(outputs, request.outputs)?;
        let mut reply = json!({"model_name": model.name, "model_version": VERSION, "outputs": outputs});
        if let Some(id) = request.id {
            reply["id"] = Value::String(id);
        }
        Ok(json_response(StatusCode::OK, &reply))
    };
    answer(&app, &name, "kserve", work).await
}

/// Keeps the outputs the request asked for (all when it named none).
fn select_outputs(outputs: Vec<Value>, requested: Option<Vec<RequestedOutput>>) -> Result<Vec<Value>, ApiError> {
    let Some(requested) = requested.filter(|r| !r.is_empty()) else { return Ok(outputs) };
    requested
        .iter()
        .map(|r| {
            outputs.iter().find(|o| o["name"] == r.name.as_str()).cloned().ok_or_else(|| {
                let names: Vec<&Value> = outputs.iter().map(|o| &o["name"]).collect();
                ApiError::bad_request(format!("unknown output '{}'; this request produces {names:?}", r.name))
            })
        })
        .collect()
}

/// `FP32 [N,3,S,S]` in → `FP32 [N, classes]` logits out.
async fn infer_tensor(model: &ServedModel, input: InputTensor) -> Result<Vec<Value>, ApiError> {
    let s = model.core.input_size as i64;
    let n = match input.shape.as_slice() {
        [n, 3, h, w] if *n >= 1 && *h == s && *w == s => *n as usize,
        _ => {
            return Err(ApiError::bad_request(format!(
                "input '{}' has shape {:?}; expected [N, 3, {s}, {s}] with N ≥ 1",
                input.name, input.shape
            )))
        }
    };
    // The data is bounded by the body limit; the shape is not (N could be 10^12): compare
    // counts without allocating for the shape.
    let mut data = Vec::new();
    flatten_numbers(&input.data, &mut data)?;
    let expected = n.checked_mul(3 * (s * s) as usize);
    if expected != Some(data.len()) {
        return Err(ApiError::bad_request(format!(
            "input '{}' has {} values but its shape {:?} needs {}",
            input.name,
            data.len(),
            input.shape,
            expected.map_or("more than fit in memory".to_string(), |e| e.to_string())
        )));
    }
    let logits = submit(model, Input::Prepared(data), n).await?;
    let c = model.core.classes;
    Ok(vec![json!({"name": model.core.output_name, "datatype": "FP32", "shape": [n, c], "data": logits})])
}

/// `BYTES [N]` of base64-encoded images in → top-k out.
async fn infer_images(model: &ServedModel, input: InputTensor, k: usize) -> Result<Vec<Value>, ApiError> {
    let mut strings = Vec::new();
    flatten_strings(&input.data, &mut strings)?;
    let n = strings.len();
    let shape_ok = matches!(input.shape.as_slice(), [m] | [m, 1] if *m == n as i64);
    if n == 0 || !shape_ok {
        return Err(ApiError::bad_request(format!(
            "input '{}' has shape {:?} and {n} elements; expected shape [N] with N ≥ 1 base64 strings",
            input.name, input.shape
        )));
    }
    let images = strings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            base64::engine::general_purpose::STANDARD.decode(s.trim()).map(Bytes::from).map_err(|e| {
                ApiError::bad_request(format!("element {i} of input '{}' is not valid base64: {e}", input.name))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let logits = submit(model, Input::Encoded(images), n).await?;
    let c = model.core.classes;
    let ranked: Vec<_> = logits.chunks(c).map(|row| rank(&model.core, row, k)).collect();
    let probabilities: Vec<f32> = ranked.iter().flatten().map(|r| r.probability).collect();
    let classes: Vec<&str> = ranked.iter().flatten().map(|r| r.class.as_str()).collect();
    let indices: Vec<usize> = ranked.iter().flatten().map(|r| r.index).collect();
    Ok(vec![
        json!({"name": "probabilities", "datatype": "FP32", "shape": [n, k], "data": probabilities}),
        json!({"name": "classes", "datatype": "BYTES", "shape": [n, k], "data": classes}),
        json!({"name": "indices", "datatype": "INT64", "shape": [n, k], "data": indices}),
    ])
}

/// Row-major values of flat or nested JSON arrays of numbers.
fn flatten_numbers(v: &Value, out: &mut Vec<f32>) -> Result<(), ApiError> {
    match v {
        Value::Number(x) => {
            let x =
                x.as_f64().ok_or_else(|| ApiError::bad_request("tensor data holds a number that is not a float"))?;
            out.push(x as f32);
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|item| flatten_numbers(item, out)),
        other => Err(ApiError::bad_request(format!("FP32 tensor data must hold numbers, found {}", kind(other)))),
    }
}

fn flatten_strings(v: &Value, out: &mut Vec<String>) -> Result<(), ApiError> {
    match v {
        Value::String(s) => {
            out.push(s.clone());
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|item| flatten_strings(item, out)),
        other => {
            Err(ApiError::bad_request(format!("BYTES tensor data must hold base64 strings, found {}", kind(other))))
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
