//! ONNX import: protobuf bytes → [`Graph`](crate::Graph).
//!
//! `proto` is the protobuf code generated from `onnx.proto3` (checked in; regenerate with
//! `cargo run --manifest-path tools/protogen/Cargo.toml`), `tensor_proto` converts tensors,
//! `import` turns a model into the graph IR and `export` writes one back.

pub mod export;
pub mod import;
#[rustfmt::skip]
pub mod proto;
pub mod tensor_proto;

pub use export::{export_model, write_model, ExportError, ExportOptions};
pub use import::{decode_model, import_model, load_model, load_model_bytes};
pub use tensor_proto::{read_tensor_pb, tensor_from_proto, tensor_to_proto, write_tensor_pb};

/// Newest ONNX IR version we read. IR 3 is the zoo's; IR 13 is what ONNX 1.22 writes (the node
/// tests at opset 25). The IR versions in between add element types, functions and metadata
/// that a ResNet does not use; anything unsupported in them fails by name at import.
pub const MAX_IR_VERSION: i64 = 13;
