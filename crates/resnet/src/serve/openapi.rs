//! The API descriptions answered by `OPTIONS /` (OpenAPI 3.0.1, as MMS does) on each port.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn components() -> Value {
    json!({"schemas": {
        "Error": {
            "type": "object",
            "required": ["code", "type", "message"],
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status."},
                "type": {"type": "string", "description": "e.g. ModelNotFoundException, BadRequestException"},
                "message": {"type": "string"}
            }
        },
        "Prediction": {
            "type": "object",
            "properties": {
                "probability": {"type": "number", "description": "Softmax probability."},
                "class": {"type": "string", "description": "Synset line, e.g. 'n02123045 tabby, tabby cat'."}
            }
        }
    }})
}

fn predictions_operation(model: Option<&str>) -> Value {
    let mut parameters = vec![json!({
        "in": "query", "name": "topk", "required": false,
        "schema": {"type": "integer", "minimum": 1, "default": 5},
        "description": "How many classes to return."
    })];
    if model.is_none() {
        parameters
            .insert(0, json!({"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}));
    }
    json!({
        "operationId": "predictions",
        "description": "Classify one JPEG or PNG image, sent as the raw body or as a multipart/form-data field ('data', 'body', or the only file field).",
        "parameters": parameters,
        "requestBody": {"required": true, "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {"data": {"type": "string", "format": "binary"}}}}
        }},
        "responses": {
            "200": {"description": "Top-k classes, most probable first.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}}}},
            "400": error_response("Empty image, malformed multipart form or query."),
            "404": error_response("Model not found."),
            "413": error_response("Body larger than --max-body-bytes, or image larger than --max-image-pixels."),
            "415": error_response("Unsupported Content-Type."),
            "422": error_response("The body is not a decodable JPEG or PNG."),
            "500": error_response("Inference failed."),
            "503": error_response("The model's queue is full (Retry-After is set)."),
            "504": error_response("Not answered within --request-timeout-ms.")
        }
    })
}

/// The inference port's API.
pub fn inference_api() -> Value {
    json!({
        "openapi": "3.0.1",
        "info": {"title": "resnet serve: inference API", "description": "MMS-compatible inference API plus KServe v2 REST", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/": {
                "options": {"operationId": "apiDescription", "description": "This description.", "responses": {"200": {"description": "OpenAPI 3.0.1 JSON"}}},
                "get": {"operationId": "webPage", "description": "A web page to classify an image.", "responses": {"200": {"description": "HTML"}}}
            },
            "/api-description": {"get": {"operationId": "apiDescription", "responses": {"200": {"description": "OpenAPI 3.0.1 JSON"}}}},
            "/ping": {"get": {"operationId": "ping", "description": "Health: {\"status\": \"Healthy\"} while a model is served, else \"Unhealthy\".", "responses": {"200": {"description": "Health status"}}}},
            "/predictions/{model_name}": {
                "post": predictions_operation(None),
                "options": {"operationId": "modelApiDescription", "responses": {"200": {"description": "OpenAPI JSON of this model's predictions API"}, "404": error_response("Model not found.")}}
            },
            "/models": {"get": {"operationId": "listModels", "description": "Same as the management API's list.", "responses": {"200": {"description": "{models, nextPageToken}"}}}},
            "/metrics": {"get": {"operationId": "metrics", "description": "Prometheus text format.", "responses": {"200": {"description": "metrics"}}}},
            "/v2": {"get": {"operationId": "serverMetadata", "responses": {"200": {"description": "KServe v2 server metadata"}}}},
            "/v2/health/live": {"get": {"operationId": "serverLive", "responses": {"200": {"description": "{\"live\": true}"}}}},
            "/v2/health/ready": {"get": {"operationId": "serverReady", "responses": {"200": {"description": "{\"ready\": true}"}, "503": {"description": "No model served, or shutting down"}}}},
            "/v2/models/{model_name}": {"get": {"operationId": "modelMetadata", "responses": {"200": {"description": "KServe v2 model metadata"}, "404": error_response("Model not found.")}}},
            "/v2/models/{model_name}/ready": {"get": {"operationId": "modelReady", "responses": {"200": {"description": "{\"name\", \"ready\": true}"}, "404": error_response("Model not found.")}}},
            "/v2/models/{model_name}/infer": {"post": {
                "operationId": "modelInfer",
                "description": "KServe v2 JSON tensors: FP32 [N,3,S,S] in -> FP32 [N,classes] logits out; or BYTES [N] base64 images in -> probabilities/classes/indices [N,K] out (K = parameters.topk, default 5).",
                "responses": {
                    "200": {"description": "Inference response"},
                    "400": error_response("Malformed JSON, wrong shape/datatype/data, bad base64, empty image."),
                    "404": error_response("Model not found."),
                    "413": error_response("Body or image too large."),
                    "415": error_response("Content-Type is not application/json."),
                    "422": error_response("An image is not a decodable JPEG or PNG."),
                    "503": error_response("Queue full."),
                    "504": error_response("Timed out.")
                }
            }}
        },
        "components": components()
    })
}

/// `OPTIONS /predictions/{model}`: that model's predictions API.
pub fn model_api(model: &str) -> Value {
    json!({
        "openapi": "3.0.1",
        "info": {"title": format!("resnet serve: model {model}"), "version": env!("CARGO_PKG_VERSION")},
        "paths": {format!("/predictions/{model}"): {"post": predictions_operation(Some(model))}},
        "components": components()
    })
}

/// The management port's API.
pub fn management_api() -> Value {
    let name = json!({"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}});
    let int = |n: &str, d: &str| json!({"in": "query", "name": n, "required": false, "schema": {"type": "integer"}, "description": d});
    json!({
        "openapi": "3.0.1",
        "info": {"title": "resnet serve: management API", "description": "MMS-compatible model management", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/": {"options": {"operationId": "apiDescription", "responses": {"200": {"description": "OpenAPI 3.0.1 JSON"}}}},
            "/models": {
                "get": {
                    "operationId": "listModels",
                    "parameters": [int("limit", "Page size, 1..100 (default 100)."), int("next_page_token", "Offset of the page.")],
                    "responses": {"200": {"description": "{\"models\": [{modelName, modelUrl}], \"nextPageToken\"?}"}, "400": error_response("Malformed parameters.")}
                },
                "post": {
                    "operationId": "registerModel",
                    "parameters": [
                        {"in": "query", "name": "url", "required": true, "schema": {"type": "string"}, "description": "A path, file:// URL, zoo model name, or a URL of the zoo registry."},
                        {"in": "query", "name": "model_name", "required": false, "schema": {"type": "string"}},
                        int("batch_size", "Images per model run."),
                        int("max_batch_delay", "Milliseconds the first request of a batch waits for others."),
                        int("initial_workers", "Worker threads (default 1).")
                    ],
                    "responses": {
                        "200": {"description": "{\"status\": \"Model \\\"NAME\\\" registered\"}"},
                        "400": error_response("Missing url, bad name or settings, not a loadable classifier."),
                        "409": error_response("A model of that name is registered."),
                        "500": error_response("Download failed.")
                    }
                }
            },
            "/models/{model_name}": {
                "get": {"operationId": "describeModel", "parameters": [name], "responses": {"200": {"description": "[{modelName, modelUrl, batchSize, maxBatchDelay, minWorkers, maxWorkers, workers, ...}]"}, "404": error_response("Model not found.")}},
                "put": {
                    "operationId": "setAutoScale",
                    "parameters": [name, int("min_worker", "Worker threads."), int("max_worker", "Must be >= min_worker."), int("batch_size", "New batch size."), int("max_batch_delay", "New batch delay (ms).")],
                    "responses": {"200": {"description": "{\"status\": \"Workers scaled\"}"}, "400": error_response("Bad settings."), "404": error_response("Model not found.")}
                },
                "delete": {"operationId": "unregisterModel", "parameters": [name], "responses": {"200": {"description": "{\"status\": \"Model \\\"NAME\\\" unregistered\"}"}, "404": error_response("Model not found.")}}
            },
            "/metrics": {"get": {"operationId": "metrics", "responses": {"200": {"description": "Prometheus text format"}}}}
        },
        "components": components()
    })
}
