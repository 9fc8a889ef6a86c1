//! The facade's error: everything a caller of [`crate::Model`] or [`crate::Classifier`] can
//! hit, each displayed as one line.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or running the model failed (bad file, unsupported op, wrong input shape…).
    #[error(transparent)]
    Engine(#[from] resnet_engine::Error),
    /// Decoding or preprocessing an image failed.
    #[error(transparent)]
    Image(#[from] resnet_vision::VisionError),
    /// The model is not an image classifier we can drive: wrong input or output layout.
    #[error("{0}")]
    NotAClassifier(String),
    /// A zoo model could not be found, downloaded or verified.
    #[error(transparent)]
    Registry(#[from] resnet_zoo::registry::RegistryError),
    /// `--model` named neither an existing file nor a zoo model.
    #[error("'{spec}' is neither an existing file nor a zoo model name ({known})")]
    NoSuchModel { spec: String, known: String },
    /// A labels file could not be used.
    #[error("{}: {detail}", path.display())]
    Labels { path: PathBuf, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
