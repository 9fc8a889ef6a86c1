//! `RgbImage`: the crate's own 8-bit RGB pixel buffer, so downstream crates never need the
//! `image` crate's types.

use crate::VisionError;

/// An 8-bit RGB image, row-major, 3 bytes per pixel, no padding between rows
/// (the layout of a NumPy `uint8` array of shape `(height, width, 3)`).
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps `data` (`width * height * 3` bytes, row-major RGB).
    /// Zero-sized images are allowed here; decoding refuses them.
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Result<Self, VisionError> {
        let expected = u64::from(width) * u64::from(height) * 3;
        if data.len() as u64 != expected {
            return Err(VisionError::BufferSize { width, height, expected, actual: data.len() as u64 });
        }
        Ok(Self { width, height, data })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels, row-major RGB.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    /// Gives the pixel buffer back.
    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    /// The pixel at column `x`, row `y`, or `None` outside the image.
    pub fn get(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }
}

impl std::fmt::Debug for RgbImage {
    // The pixel data would drown any assertion message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_raw_rejects_a_buffer_of_the_wrong_length() {
        assert!(matches!(
            RgbImage::from_raw(2, 2, vec![0; 11]),
            Err(VisionError::BufferSize { expected: 12, actual: 11, .. })
        ));
    }

    #[test]
    fn get_reads_row_major_rgb_and_is_none_outside() {
        let img = RgbImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(img.get(1, 0), Some([4, 5, 6]));
        assert_eq!(img.get(2, 0), None);
        assert_eq!(img.get(0, 1), None);
    }
}
