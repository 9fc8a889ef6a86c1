//! The management API (MMS-compatible, SPEC §8.3) on its own port: list, describe,
//! register, scale/re-batch and unregister models.
//!
//! Parameters come from the query string, or from a JSON object body when the request says
//! `Content-Type: application/json` (as MMS accepts). Registration and scaling are
//! synchronous: the answer comes when the model is loaded / the workers are running.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::body::{media_type, parse_param, query_params, read_limited};
use super::config::{default_model_name, BatchSettings};
use super::error::{json_response, ApiError};
use super::inference::{AppState, ModelName};
use super::store::ServedModel;

/// Most bytes of a management request body (parameters only).
const MAX_MANAGEMENT_BODY: usize = 64 * 1024;

fn respond(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(|e| e.into_response())
}

/// Query parameters merged with a JSON object body (the body wins).
async fn parameters(
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<BTreeMap<String, String>, ApiError> {
    let bytes = read_limited(headers, body, MAX_MANAGEMENT_BODY).await?;
    let mut params = query_params(query)?;
    if bytes.is_empty() {
        return Ok(params);
    }
    if media_type(headers)?.as_deref() != Some("application/json") {
        return Err(ApiError::unsupported_media_type(
            "management parameters go in the query string, or in a JSON object body with Content-Type: application/json",
        ));
    }
    let body: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    for (k, v) in body {
        let v = match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        params.insert(k, v);
    }
    Ok(params)
}

/// `GET /models?limit=L&next_page_token=T`: models sorted by name, `names[T..T+L]`;
/// `nextPageToken` is present when more may follow (MMS's rule: `T+L ≤ count`).
pub fn list(app: &AppState, query: Option<&str>) -> Result<Response, ApiError> {
    let params = query_params(query)?;
    let limit = match parse_param::<i64>(&params, "limit")? {
        Some(l) if (1..=100).contains(&l) => l as usize,
        _ => 100,
    };
    let token = parse_param::<usize>(&params, "next_page_token")?.unwrap_or(0);
    let models = app.store.list();
    let page: Vec<Value> =
        models.iter().skip(token).take(limit).map(|m| json!({"modelName": m.name, "modelUrl": m.url})).collect();
    let mut reply = json!({"models": page});
    if let Some(next) = token.checked_add(limit).filter(|&next| next <= models.len()) {
        reply["nextPageToken"] = Value::String(next.to_string());
    }
    Ok(json_response(StatusCode::OK, &reply))
}

pub async fn list_models(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    respond(list(&app, query.as_deref()))
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn describe(m: &ServedModel) -> Value {
    let s = m.core.settings();
    let workers: Vec<Value> = m
        .worker_info()
        .iter()
        .map(|w| json!({"id": w.id.to_string(), "startTime": unix_seconds(w.started), "status": "READY", "gpu": false}))
        .collect();
    json!([{
        "modelName": m.name,
        "modelVersion": "1.0",
        "modelUrl": m.url,
        "modelPath": m.path.display().to_string(),
        "engine": "resnet-rs plan",
        "runtime": "rust",
        "minWorkers": s.workers,
        "maxWorkers": s.workers,
        "batchSize": s.batch_size,
        "maxBatchDelay": s.max_batch_delay_ms,
        "loadedAtStartup": m.loaded_at_startup,
        "loadTimeSeconds": m.load_time.as_secs_f64(),
        "queueDepth": m.core.queue.depth(),
        "queueCapacity": m.core.queue.capacity(),
        "workers": workers,
    }])
}

/// `GET /models/{model}`: a one-element list, as MMS answers.
pub async fn describe_model(State(app): State<AppState>, ModelName(name): ModelName) -> Response {
    respond(app.model(&name).map(|m| json_response(StatusCode::OK, &describe(&m))))
}

/// Batch settings from `batch_size`, `max_batch_delay` and `min_worker`/`max_worker` or
/// `initial_workers` over `base`.
fn settings_from(
    params: &BTreeMap<String, String>,
    base: BatchSettings,
    workers_param: &str,
) -> Result<BatchSettings, ApiError> {
    let mut s = base;
    if let Some(b) = parse_param(params, "batch_size")? {
        s.batch_size = b;
    }
    if let Some(d) = parse_param(params, "max_batch_delay")? {
        s.max_batch_delay_ms = d;
    }
    if let Some(w) = parse_param(params, workers_param)? {
        s.workers = w;
    }
    s.validate().map_err(ApiError::bad_request)?;
    Ok(s)
}

/// `POST /models?url=…[&model_name=…][&batch_size=…][&max_batch_delay=…][&initial_workers=…]`.
pub async fn register(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let work = async {
        let params = parameters(query.as_deref(), &headers, body).await?;
        let url = params
            .get("url")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ApiError::bad_request("Parameter url is required."))?
            .clone();
        if let Some(runtime) = params.get("runtime") {
            if !matches!(runtime.as_str(), "python" | "python2" | "python3" | "rust") {
                return Err(ApiError::bad_request(format!("Invalid RuntimeType value: {runtime}")));
            }
        }
        let name = params.get("model_name").cloned().unwrap_or_else(|| default_model_name(&url));
        let settings = settings_from(&params, app.defaults, "initial_workers")?;
        if settings.workers == 0 {
            return Err(ApiError::bad_request("initial_workers must be at least 1"));
        }
        let store = app.store.clone();
        let model = tokio::task::spawn_blocking(move || store.register(&name, &url, settings, false))
            .await
            .map_err(|e| ApiError::internal(format!("loading failed: {e}")))??;
        let message = format!("Model \"{}\" registered", model.name);
        Ok(json_response(StatusCode::OK, &json!({"status": message})))
    };
    respond(work.await)
}

/// `PUT /models/{model}?min_worker=…&max_worker=…&batch_size=…&max_batch_delay=…`: sets the
/// number of workers (`min_worker`; `max_worker` must not be below it) and the batching.
pub async fn scale(
    State(app): State<AppState>,
    ModelName(name): ModelName,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let work = async {
        let params = parameters(query.as_deref(), &headers, body).await?;
        let model = app.model(&name)?;
        let settings = settings_from(&params, model.core.settings(), "min_worker")?;
        if let Some(max) = parse_param::<usize>(&params, "max_worker")? {
            if max < settings.workers {
                return Err(ApiError::bad_request("max_worker cannot be less than min_worker"));
            }
        }
        tokio::task::spawn_blocking(move || model.apply(settings))
            .await
            .map_err(|e| ApiError::internal(format!("scaling failed: {e}")))??;
        Ok(json_response(StatusCode::OK, &json!({"status": "Workers scaled"})))
    };
    respond(work.await)
}

/// `DELETE /models/{model}`: answers the model's admitted requests, then unloads it.
pub async fn unregister(State(app): State<AppState>, ModelName(name): ModelName) -> Response {
    let work = async {
        let store = app.store.clone();
        let n = name.clone();
        tokio::task::spawn_blocking(move || store.unregister(&n))
            .await
            .map_err(|e| ApiError::internal(format!("unregistering failed: {e}")))??;
        Ok(json_response(StatusCode::OK, &json!({"status": format!("Model \"{name}\" unregistered")})))
    };
    respond(work.await)
}

pub async fn describe_api() -> Response {
    json_response(StatusCode::OK, &super::openapi::management_api())
}
