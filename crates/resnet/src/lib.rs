//! resnet-rs: run the ONNX model zoo's ResNet image classifiers from Rust.
//!
//! The stable surface is small: [`Model`] (load an ONNX file, run it) and [`Classifier`]
//! (model + the zoo's Pillow-exact preprocessing + ImageNet labels).
//!
//! ```no_run
//! use resnet::{Classifier, Model};
//! let classifier = Classifier::new(Model::load("resnet50-v1-7.onnx")?)?;
//! let image = resnet::vision::decode_file("cat.jpg", &Default::default())?;
//! for p in classifier.classify(&image)?.top(5) {
//!     println!("{:>8.4}  {}", p.probability, p.label);
//! }
//! # Ok::<(), resnet::Error>(())
//! ```

pub mod check;
mod classifier;
mod error;
pub mod inspect;
mod model;
pub mod postprocess;

pub use classifier::{Classification, Classifier, Prediction};
pub use error::{Error, Result};
pub use model::Model;
pub use resnet_engine::{Dim, Tensor};

/// The engine underneath (graph IR, ONNX import, executors); not a stable API.
pub use resnet_engine as engine;
/// Image decoding and preprocessing; not a stable API.
pub use resnet_vision as vision;
