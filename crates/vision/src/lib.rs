//! Image input for resnet-rs: decoding JPEG/PNG to RGB like Pillow, Pillow-exact bilinear
//! resizing, the model zoo's ImageNet preprocessing, and the ImageNet labels.
//!
//! [`augment`] holds the random training augmentations (SPEC §6.1).
//!
//! Knows nothing about ONNX; it produces `Vec<f32>` tensors in CHW layout and label strings.
//!
//! ```no_run
//! use resnet_vision::{preprocess_bytes, DecodeOptions, Labels, Preprocess};
//! let bytes = std::fs::read("cat.jpg")?;
//! let chw = preprocess_bytes(&bytes, &DecodeOptions::default(), &Preprocess::default())?;
//! assert_eq!(chw.len(), 3 * 224 * 224);
//! let labels = Labels::imagenet();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod augment;
mod decode;
mod error;
mod jpeg;
mod labels;
mod preprocess;
mod resize;
mod rgb_image;

pub use decode::{decode_file, decode_jpeg_exact, decode_rgb8, DecodeOptions, DEFAULT_MAX_PIXELS};
pub use error::VisionError;
pub use labels::{Label, Labels};
pub use preprocess::{preprocess_bytes, Preprocess, IMAGENET_MEAN, IMAGENET_STD};
pub use resize::resize_bilinear_pillow;
pub use rgb_image::RgbImage;
