//! Training over the graph IR: parameters, autograd, optimizers and learning-rate schedules.
//!
//! Any graph the importer or the zoo builder produces (the ResNet op set: Conv, BatchNormalization,
//! Relu, MaxPool, Global/AveragePool, Add, Flatten/Reshape, Gemm/MatMul, Dropout) can be trained:
//! its initializers become [`Param`]s (trainable tensors) and [`Buffer`]s (BatchNorm running
//! statistics), the loss is softmax cross-entropy on the graph's logits, and the trained values
//! are written back into a [`crate::Graph`] for export.

pub mod optim;
pub mod param;
pub mod schedule;

pub use optim::{OptimError, Optimizer, OptimizerConfig, OptimizerKind};
pub use param::{Buffer, Param, ParamRole};
pub use schedule::{LrDecay, LrDecayParseError, LrSchedule};
