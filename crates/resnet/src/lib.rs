//! resnet-rs: run the ONNX model zoo's ResNet image classifiers from Rust.
//!
//! The stable surface is small: [`Model`] (load an ONNX file, run it) and [`Classifier`]
//! (model + the zoo's Pillow-exact preprocessing + ImageNet labels).
//!
//! ```
//! use resnet::{Classifier, Model};
//! # let Some(model_path) = resnet_test_support::shared_asset("models/resnet50-v1-keras/model.onnx") else { return Ok(()) };
//! # let Some(image_path) = resnet_test_support::shared_asset("data/imagenet-samples/images/n06874185_traffic_light.JPEG") else { return Ok(()) };
//! // model_path: e.g. "resnet50-v1-7.onnx"; image_path: a JPEG or PNG file.
//! let classifier = Classifier::new(Model::load(model_path)?)?;
//! let image = resnet::vision::decode_file(image_path, &Default::default())?;
//! let top5 = classifier.classify(&image)?.top(5);
//! for p in &top5 {
//!     println!("{:>8.4}  {}", p.probability, p.label);
//! }
//! assert_eq!(top5[0].label, "traffic light, traffic signal, stoplight");
//! # Ok::<(), resnet::Error>(())
//! ```

mod classifier;
mod error;
pub mod inspect;
mod model;
pub mod postprocess;
pub mod prep;
pub mod resolve;
pub mod serve;
pub mod train;
pub mod validate;

pub use classifier::{labels_beside, Classification, Classifier, Prediction};
pub use error::{Error, Result};
pub use model::{Engine, Mode, Model};
pub use resnet_engine::{Dim, Tensor};
pub use resolve::{resolve_model, ResolveOptions};

/// The engine underneath (graph IR, ONNX import, executors); not a stable API.
pub use resnet_engine as engine;
/// Image decoding and preprocessing; not a stable API.
pub use resnet_vision as vision;
/// The zoo's architectures and the registry of its files; not a stable API.
pub use resnet_zoo as zoo;
