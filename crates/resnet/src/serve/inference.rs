//! The inference API (MMS-compatible, SPEC §8.2) on the inference port: `GET /ping`,
//! `POST /predictions/{model}`, `OPTIONS /` (API description), `GET /` (the web page),
//! `GET /models` (the model list, for the page), and the request pipeline they share with
//! KServe: admit → queue → (worker) decode the batch in parallel → batched run → answer.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::batcher::{Input, Job};
use super::body::{
    image_body_kind, image_from_multipart, media_type, parse_param, query_params, read_limited, ImageBody,
};
use super::config::{BatchSettings, Limits};
use super::error::{json_response, ApiError};
use super::metrics::Metrics;
use super::queue::Refused;
use super::store::{ModelCore, ModelStore, ServedModel};
use crate::postprocess::{softmax, top_k};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<ModelStore>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Settings of models registered without their own.
    pub defaults: BatchSettings,
    /// Set on SIGTERM/SIGINT: readiness turns false while in-flight requests finish.
    pub shutting_down: Arc<AtomicBool>,
}

impl AppState {
    pub fn model(&self, name: &str) -> Result<Arc<ServedModel>, ApiError> {
        self.store.get(name).ok_or_else(|| ApiError::model_not_found(name))
    }

    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::SeqCst) && !self.store.list().is_empty()
    }
}

/// The `{model}` path segment; a bad one (invalid percent-encoding) is a JSON 400.
pub struct ModelName(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ModelName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(name)) => Ok(ModelName(name)),
            Err(e) => Err(ApiError::bad_request(format!("bad model name in the path: {e}"))),
        }
    }
}

pub const INDEX_HTML: &str = include_str!("static/index.html");

pub async fn index() -> Response {
    let mut r = INDEX_HTML.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

/// `GET /ping`: `{"status": "Healthy"}` while at least one model is served, else
/// `"Unhealthy"` (still 200, as MMS does).
pub async fn ping(State(app): State<AppState>) -> Response {
    let status = if app.store.list().is_empty() { "Unhealthy" } else { "Healthy" };
    json_response(StatusCode::OK, &serde_json::json!({ "status": status }))
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    let text = app.metrics.render(&app.store.queue_depths());
    let mut r = text.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// Runs `work` under the request timeout and counts the answer in the metrics.
pub async fn answer<F>(app: &AppState, model: &str, api: &'static str, work: F) -> Response
where
    F: Future<Output = Result<Response, ApiError>>,
{
    let started = Instant::now();
    let _in_flight = app.metrics.enter();
    let timeout = app.limits.request_timeout;
    let mut response = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response_for(api),
        Err(_) => ApiError::timeout(timeout.as_millis()).into_response_for(api),
    };
    let label = if app.store.get(model).is_some() { model } else { "" };
    app.metrics.request(label, api, response.status().as_u16(), started.elapsed());
    response.headers_mut().entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

impl ApiError {
    fn into_response_for(self, api: &str) -> Response {
        if api == "kserve" {
            self.kserve().into_response()
        } else {
            self.into_response()
        }
    }
}

/// Admits a request to `model`'s queue (503 when full), queues it and waits for the
/// worker's answer: `images × classes` logits. Decoding happens on the worker's side.
pub async fn submit(model: &ServedModel, input: Input, images: usize) -> Result<Vec<f32>, ApiError> {
    let slot = model.core.queue.reserve().map_err(|refused| match refused {
        Refused::Full { capacity } => ApiError::queue_full(&model.name, capacity),
        Refused::Closed => ApiError::unavailable(format!("Model \"{}\" is being unregistered", model.name)),
    })?;
    let (reply, answer) = oneshot::channel();
    slot.push(Job { input, images, reply });
    match answer.await {
        Ok(result) => result,
        Err(_) => Err(ApiError::internal("the model's worker stopped before answering")),
    }
}

/// One ranked class as MMS's vision service returns it (SPEC §8.6), with a real softmax
/// probability (not the raw logit MMS returned for the ONNX ResNets, SPEC §9.11).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RankedClass {
    pub probability: f32,
    /// The whole synset line: `n02123045 tabby, tabby cat`.
    pub class: String,
    #[serde(skip)]
    pub index: usize,
}

/// The `k` most probable classes of one row of logits.
pub fn rank(core: &ModelCore, logits: &[f32], k: usize) -> Vec<RankedClass> {
    let probabilities = softmax(logits);
    top_k(&probabilities, k)
        .into_iter()
        .map(|index| RankedClass {
            probability: probabilities[index],
            class: match core.labels.get(index) {
                Some(l) => match &l.wnid {
                    Some(w) => format!("{w} {}", l.name),
                    None => l.name.clone(),
                },
                None => format!("class {index}"),
            },
            index,
        })
        .collect()
}

/// `?topk=K` (default 5), 1 ≤ K ≤ the number of classes.
pub fn top_k_param(value: Option<usize>, classes: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(5.min(classes)),
        Some(k) if (1..=classes).contains(&k) => Ok(k),
        Some(k) => Err(ApiError::bad_request(format!("topk must be between 1 and {classes}, got {k}"))),
    }
}

/// `POST /predictions/{model}`: the image as the raw body or a multipart field → the top-k
/// classes `[{"probability": p, "class": "<synset line>"}, …]`.
pub async fn predictions(
    State(app): State<AppState>,
    ModelName(name): ModelName,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let work = async {
        let bytes = read_limited(&headers, body, app.limits.max_body_bytes).await?;
        let params = query_params(query.as_deref())?;
        let model = app.model(&name)?;
        let k = top_k_param(parse_param(&params, "topk")?, model.core.classes)?;
        let kind = image_body_kind(media_type(&headers)?.as_deref())?;
        let image = match kind {
            ImageBody::Raw => bytes,
            ImageBody::Multipart => image_from_multipart(&headers, bytes).await?,
        };
        let logits = submit(&model, Input::Encoded(vec![image]), 1).await?;
        let ranked = rank(&model.core, &logits, k);
        Ok(json_response(StatusCode::OK, &serde_json::to_value(ranked).unwrap_or_default()))
    };
    answer(&app, &name, "predictions", work).await
}

/// `GET /models` on the inference port: the management API's list, so the web page (same
/// origin) can offer the models.
pub async fn list_models(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    match super::management::list(&app, query.as_deref()) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

pub async fn describe_api() -> Response {
    json_response(StatusCode::OK, &super::openapi::inference_api())
}

pub async fn describe_model_api(State(app): State<AppState>, ModelName(name): ModelName) -> Response {
    match app.model(&name) {
        Ok(m) => json_response(StatusCode::OK, &super::openapi::model_api(&m.name)),
        Err(e) => e.into_response(),
    }
}

pub async fn not_found() -> Response {
    ApiError::not_found("Requested resource is not found, please refer to API document.").into_response()
}

pub async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}
