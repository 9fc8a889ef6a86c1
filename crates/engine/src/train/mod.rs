//! Training over the graph IR: parameters, autograd, optimizers and learning-rate schedules.
//!
//! Any graph the importer or the zoo builder produces (the ResNet op set: Conv, BatchNormalization,
//! Relu, MaxPool, Global/AveragePool, Add, Flatten/Reshape, Gemm/MatMul, Dropout) can be trained:
//! its initializers become [`Param`]s (trainable tensors) and [`Buffer`]s (BatchNorm running
//! statistics), the loss is softmax cross-entropy on the graph's logits, and the trained values
//! are written back into a [`crate::Graph`] for export.
//!
//! [`TrainProgram`] (in `program`) is the autograd: it compiles a graph once and then runs
//! forward + backward per batch. The kernels live one family per module (`conv`,
//! `batchnorm`, `pool`, `dense`, `elementwise`, `loss`), generic over [`Real`] (`f32` to
//! train, `f64` for gradient checks). f32 convs take the fastest path that applies: Winograd
//! (opt-in), `lanes` (small planes with the batch as the vector axis), the inference plan's
//! direct kernel (planes of 20×20 and more), else im2col + GEMM in `conv`. For batches of
//! whole 16-image vectors the program keeps activations on `lanes` between those convs
//! (through BatchNorm, Relu and Add) instead of transposing around each one.

mod batchnorm;
mod conv;
mod dense;
mod elementwise;
pub mod error;
mod lanes;
mod loss;
pub mod optim;
pub mod param;
mod pool;
pub mod program;
pub mod real;
pub mod schedule;

pub use error::TrainError;
pub use optim::{OptimError, Optimizer, OptimizerConfig, OptimizerKind};
pub use param::{Buffer, Param, ParamRole};
pub use program::{StepOutput, TrainOptions, TrainProgram};
pub use real::Real;
pub use schedule::{LrDecay, LrDecayParseError, LrSchedule};
