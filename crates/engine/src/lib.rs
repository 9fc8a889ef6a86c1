//! resnet-engine: tensors, the graph IR, ONNX import and the reference executor.
//!
//! Data flows one way: `.onnx` bytes → [`onnx::load_model`] → [`Graph`] → [`exec::run`] →
//! output tensors. Nothing here knows about images, HTTP or the command line.

pub mod error;
pub mod exec;
pub mod fact;
pub mod graph;
pub mod onnx;
pub mod ops;
pub mod passes;
pub mod plan;
pub mod tensor;
pub mod testdata;
pub mod train;

pub use error::{Error, OpError, Result};
pub use fact::{Dim, Fact};
pub use graph::{Graph, Node, Value, ValueId};
pub use ops::Op;
pub use tensor::{DType, Tensor, TensorData};
