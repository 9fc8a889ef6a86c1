//! `VisionError`: every way decoding, resizing or preprocessing an image can fail.
//!
//! Variants carry the numbers a user needs to act on the error (the limit and the actual
//! size, the path of the file) instead of a pre-formatted string.

use std::path::PathBuf;

/// An error from this crate. Decoding never panics: malformed input ends up here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VisionError {
    /// The input holds no bytes at all.
    #[error("the image data is empty (0 bytes)")]
    Empty,

    /// The first bytes match no image format we know.
    #[error("unknown image format (first bytes: {magic}); expected JPEG or PNG")]
    UnknownFormat {
        /// Hex dump of up to the first 8 bytes, to tell e.g. HTML or text from an image.
        magic: String,
    },

    /// A recognised image format that this crate does not decode (only JPEG and PNG are built in).
    #[error("unsupported image format {format}; only JPEG and PNG are supported")]
    UnsupportedFormat {
        /// The format's name, e.g. `Gif`.
        format: String,
    },

    /// A JPEG or PNG using a feature the decoder does not implement (e.g. 12-bit JPEG).
    #[error("the image uses a feature the decoder does not support: {detail}")]
    Unsupported {
        /// The decoder's description.
        detail: String,
    },

    /// The data ends before the image does (e.g. an interrupted download).
    #[error("the image data is truncated: {detail}")]
    Truncated {
        /// What the decoder was reading when the data ran out.
        detail: String,
    },

    /// The data is not a valid image of its format.
    #[error("the image data is corrupt: {detail}")]
    Corrupt {
        /// The decoder's description of the problem.
        detail: String,
    },

    /// The header announces more pixels than allowed; nothing was decoded.
    #[error(
        "image is {width}x{height} = {pixels} pixels, more than the limit of {max_pixels} \
         (raise DecodeOptions::max_pixels to accept it)"
    )]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// `width * height`.
        pixels: u64,
        /// The limit in force (`DecodeOptions::max_pixels`).
        max_pixels: u64,
    },

    /// The image has no pixels (a width or height of 0).
    #[error("image has zero size ({width}x{height})")]
    ZeroSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },

    /// A pixel buffer whose length does not match `width * height * 3`.
    #[error("pixel buffer holds {actual} bytes but a {width}x{height} RGB image needs {expected}")]
    BufferSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// `width * height * 3`.
        expected: u64,
        /// Length of the buffer given.
        actual: u64,
    },

    /// An output slice of the wrong length was passed to `Preprocess::normalize_into`.
    #[error("output buffer holds {actual} floats but {expected} are needed (3 x height x width)")]
    OutputSize {
        /// `3 * width * height`.
        expected: usize,
        /// Length of the slice given.
        actual: usize,
    },

    /// The image, resized so its shorter side is `resize_shorter`, is still smaller than the
    /// crop. Only happens when `crop > resize_shorter`; the reference would return a smaller
    /// (wrongly shaped) array here, so we refuse instead.
    #[error("cannot center-crop {crop}x{crop} from the resized {resized_width}x{resized_height} image")]
    CropLargerThanImage {
        /// Width after the resize step.
        resized_width: u64,
        /// Height after the resize step.
        resized_height: u64,
        /// Crop edge length.
        crop: u32,
    },

    /// Reading an image file failed.
    #[error("cannot read image file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// Decoding an image file failed; wraps the decode error with the file's path.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: Box<VisionError>,
    },
}
