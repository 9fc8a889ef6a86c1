//! resnet-zoo: the ONNX model zoo's ten ResNets (v1/v2 × 18/34/50/101/152) — built natively
//! with exactly the zoo files' graph structure and names ([`arch`]), and the registry of the
//! official files with verified downloads ([`registry`]).

pub mod arch;
pub mod registry;
