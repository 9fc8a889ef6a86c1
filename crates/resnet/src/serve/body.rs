//! Reading request bodies safely: the size limit (413), the content types each route accepts
//! (415), and the image inside a multipart form (400 when the form is malformed).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use futures_util::StreamExt;

use super::error::ApiError;

/// How much of an over-limit body is read and thrown away before answering 413, so that a
/// client still sending gets its answer instead of a reset connection (larger bodies are cut
/// off: the connection is closed).
const DRAIN_LIMIT_BYTES: usize = 32 * 1024 * 1024;

/// Reads the whole body, refusing it (413) when it passes `limit` bytes: its bytes past the
/// limit are never kept. Handlers read the body before anything else, so every answer (even
/// an early 404) comes after the client finished sending.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "the request body is larger than the server's limit of {limit} bytes (--max-body-bytes)"
        ))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    let mut over = declared.is_some_and(|n| n > limit as u64);
    let mut buf: Vec<u8> = Vec::with_capacity(if over { 0 } else { declared.unwrap_or(0) as usize });
    let mut drained = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        if !over && buf.len() + chunk.len() > limit {
            over = true;
            drained = buf.len();
            buf = Vec::new();
        }
        if over {
            drained += chunk.len();
            if drained > DRAIN_LIMIT_BYTES {
                break;
            }
        } else {
            buf.extend_from_slice(&chunk);
        }
    }
    if over {
        return Err(too_large());
    }
    Ok(Bytes::from(buf))
}

/// The media type of the request without parameters, lower-cased (`None` when absent).
pub fn media_type(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok(None),
        Some(v) => {
            let s = v.to_str().map_err(|_| ApiError::bad_request("the Content-Type header is not ASCII"))?;
            Ok(Some(s.split(';').next().unwrap_or("").trim().to_ascii_lowercase()))
        }
    }
}

/// How a `/predictions` body carries its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageBody {
    /// The body is the image (`curl -T img.jpg`, `--data-binary @img.jpg`).
    Raw,
    /// A `multipart/form-data` form (`curl -F data=@img.jpg`).
    Multipart,
}

/// Accepted: no content type, `image/*`, `application/octet-stream`,
/// `application/x-www-form-urlencoded` (what `curl --data-binary` sends) → raw;
/// `multipart/form-data` → form. Anything else (text, JSON, …) → 415.
pub fn image_body_kind(media_type: Option<&str>) -> Result<ImageBody, ApiError> {
    match media_type {
        None | Some("application/octet-stream") | Some("application/x-www-form-urlencoded") => Ok(ImageBody::Raw),
        Some(t) if t.starts_with("image/") => Ok(ImageBody::Raw),
        Some("multipart/form-data") => Ok(ImageBody::Multipart),
        Some(t) => Err(ApiError::unsupported_media_type(format!(
            "unsupported Content-Type '{t}': send the image as the raw body (image/jpeg, image/png, application/octet-stream) or as multipart/form-data"
        ))),
    }
}

/// The image in a multipart form: the field named `data` or `body` (MMS's names), else the
/// only file field, else the only field.
pub async fn image_from_multipart(headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::bad_request(format!("malformed multipart/form-data request: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut fields: Vec<(String, bool, Bytes)> = Vec::new();
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("malformed multipart/form-data request: {e}")))?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::bad_request(format!("malformed multipart/form-data request: {e}")))?;
        fields.push((name, is_file, bytes));
    }
    if let Some(i) =
        fields.iter().position(|(n, _, _)| n == "data").or_else(|| fields.iter().position(|(n, _, _)| n == "body"))
    {
        return Ok(fields.swap_remove(i).2);
    }
    let files: Vec<usize> = (0..fields.len()).filter(|&i| fields[i].1).collect();
    if files.len() == 1 {
        return Ok(fields.swap_remove(files[0]).2);
    }
    if fields.len() == 1 {
        return Ok(fields.swap_remove(0).2);
    }
    let names: Vec<&str> = fields.iter().map(|(n, _, _)| n.as_str()).collect();
    Err(ApiError::bad_request(format!(
        "the multipart form has no image field: send the image in a field named 'data' (fields found: {names:?})"
    )))
}

/// The query string's parameters (`?topk=3&x=y`); a malformed one is a 400.
pub fn query_params(raw: Option<&str>) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
    Ok(pairs.into_iter().collect())
}

/// A numeric parameter, or a 400 naming it.
pub fn parse_param<T: std::str::FromStr>(
    params: &std::collections::BTreeMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("parameter {name}={v:?} is not a valid number"))),
    }
}
