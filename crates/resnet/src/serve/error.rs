//! [`ApiError`]: every failed request, answered as MMS does — JSON
//! `{"code": 404, "type": "ModelNotFoundException", "message": "..."}` with that HTTP status.
//! KServe v2 routes add the protocol's `"error"` field with the same message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use resnet_vision::VisionError;

/// A failed request: status, MMS exception type and one readable line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (503 answers).
    pub retry_after_s: Option<u32>,
    /// Also write KServe v2's `{"error": message}` field.
    pub kserve: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, message: message.into(), retry_after_s: None, kserve: false }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    pub fn model_not_found(name: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "ModelNotFoundException", format!("Model not found: {name}"))
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedException",
            "Requested method is not allowed, please refer to API document.",
        )
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "ConflictStatusException", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLargeException", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaTypeException", message)
    }

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "InvalidImageException", message)
    }

    pub fn queue_full(model: &str, depth: usize) -> ApiError {
        ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                format!("Model \"{model}\" has no worker to serve inference request: its queue is full ({depth} requests); retry later"),
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException", message)
        }
    }

    pub fn timeout(ms: u128) -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "RequestTimeoutException",
            format!("the request was not answered within the request timeout of {ms} ms"),
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException", message)
    }

    /// Marks the error as a KServe v2 answer (adds `"error"`).
    pub fn kserve(mut self) -> ApiError {
        self.kserve = true;
        self
    }

    /// An image that could not be used: 400 for an empty body, 413 for a decompression bomb
    /// (more pixels than `--max-image-pixels`), 422 for data that is not a decodable JPEG/PNG.
    pub fn from_image(e: &crate::Error) -> ApiError {
        match e {
            crate::Error::Image(VisionError::Empty) => ApiError::bad_request("Empty image input: the request carries no image bytes"),
            crate::Error::Image(VisionError::TooManyPixels { width, height, max_pixels, .. }) => ApiError::too_large(format!(
                "image is {width}x{height} pixels, more than the server's limit of {max_pixels} pixels (--max-image-pixels)"
            )),
            crate::Error::Image(v) => ApiError::unprocessable(format!("cannot decode the image: {v}")),
            other => ApiError::internal(other.to_string()),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({"code": self.status.as_u16(), "type": self.kind, "message": self.message});
        if self.kserve {
            body["error"] = serde_json::Value::String(self.message.clone());
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.kind, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &self.body());
        if let Some(s) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// A JSON answer, pretty-printed with two-space indentation as MMS's `json.dumps(indent=2)`.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    let mut response = (status, text).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("model '{name}': {message}")]
    Model { name: String, message: String },
    #[error("cannot start: {0}")]
    Start(String),
    #[error("{context}: {source}")]
    Io { context: &'static str, source: std::io::Error },
}
