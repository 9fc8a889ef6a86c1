//! A baseline JPEG decoder that reproduces Pillow's pixels bit for bit.
//!
//! Pillow decodes with libjpeg-turbo at its defaults: the `JDCT_ISLOW` integer IDCT, fancy
//! (triangle-filter) chroma upsampling and fixed-point YCbCr -> RGB. The `image` crate's
//! zune-jpeg rounds differently in all three, enough to flip near-tie predictions, so JPEGs
//! the files here cover are decoded by this port instead:
//! * `markers.rs`: markers and header segments (jdmarker.c);
//! * `huffman.rs`: Huffman tables, the bit reader, per-block decoding (jdhuff.c);
//! * `scan.rs`: the MCU loop and restart markers (jdcoefct.c, jdinput.c);
//! * `idct.rs`: dequantization and the islow IDCT (jidctint.c);
//! * `upsample.rs`: chroma upsampling (jdsample.c, jdmainct.c's edge rows);
//! * `color.rs`: YCbCr -> RGB (jdcolor.c).
//!
//! Scope: sequential Huffman-coded JPEGs (SOF0, SOF1) with 8-bit samples and 1 or 3
//! components. Anything else (progressive, lossless, arithmetic coding, 12-bit, CMYK/YCCK)
//! is reported as [`JpegError::Unsupported`] so the caller can fall back to another decoder;
//! damaged data is a [`VisionError`].

mod color;
mod huffman;
mod idct;
mod markers;
mod scan;
mod upsample;

use crate::decode::check_dimensions;
use crate::{RgbImage, VisionError};

use huffman::HuffmanTable;
use markers::{AppInfo, Frame};
use scan::{Plane, Tables};
use upsample::ComponentPlane;

/// Why the exact decoder gave no image.
#[derive(Debug)]
pub(crate) enum JpegError {
    /// The file uses a feature this decoder does not implement; another decoder may.
    Unsupported(String),
    /// The file is damaged, or breaks a limit; no decoder should accept it.
    Invalid(VisionError),
}

impl From<VisionError> for JpegError {
    fn from(err: VisionError) -> Self {
        JpegError::Invalid(err)
    }
}

pub(crate) fn corrupt(detail: &str) -> JpegError {
    JpegError::Invalid(VisionError::Corrupt { detail: detail.to_owned() })
}

pub(crate) fn truncated(detail: &str) -> JpegError {
    JpegError::Invalid(VisionError::Truncated { detail: detail.to_owned() })
}

/// A decoded JPEG and the metadata the caller may still need.
pub(crate) struct Decoded {
    pub image: RgbImage,
    /// TIFF data of the APP1 Exif segment, for the orientation tag.
    pub exif: Option<Vec<u8>>,
}

/// How the components map to RGB (jdapimin.c `default_decompress_parms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColorSpace {
    Gray,
    YCbCr,
    Rgb,
}

/// Decodes a JPEG as Pillow's `Image.open(...).convert("RGB")` would, refusing images of
/// more than `max_pixels` pixels right after reading the frame header.
pub(crate) fn decode(data: &[u8], max_pixels: u64) -> Result<Decoded, JpegError> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(corrupt("JPEG data does not start with SOI"));
    }
    let mut pos = 2;
    let mut frame: Option<Frame> = None;
    let mut planes: Vec<Plane> = Vec::new();
    let mut quant: [Option<[u16; 64]>; 4] = Default::default();
    let mut dc: [Option<HuffmanTable>; 4] = Default::default();
    let mut ac: [Option<HuffmanTable>; 4] = Default::default();
    let mut restart_interval = 0u16;
    let mut app = AppInfo::default();
    let mut scans = 0usize;

    loop {
        let (marker, after) = markers::next_marker(data, pos)?;
        pos = after;
        match marker {
            0xD9 => break,
            0xD8 => return Err(corrupt("second SOI marker")),
            // Markers without a length: restart markers outside a scan, TEM.
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let (payload, next) = markers::segment(data, pos)?;
        pos = next;
        match marker {
            0xC0 | 0xC1 => {
                if frame.is_some() {
                    return Err(corrupt("second SOF marker"));
                }
                let f = markers::parse_sof(payload)?;
                check_dimensions(f.width, f.height, max_pixels)?;
                planes = (0..f.components.len()).map(|i| Plane::for_component(&f, i)).collect();
                frame = Some(f);
            }
            0xC2 => return Err(JpegError::Unsupported("progressive JPEG".into())),
            0xC3 | 0xC7 | 0xCB | 0xCF => return Err(JpegError::Unsupported("lossless JPEG".into())),
            0xC5 | 0xC6 | 0xCD | 0xCE => return Err(JpegError::Unsupported("hierarchical JPEG".into())),
            0xC9 | 0xCA | 0xCC => return Err(JpegError::Unsupported("arithmetic-coded JPEG".into())),
            0xC4 => markers::parse_dht(payload, &mut dc, &mut ac)?,
            0xDB => markers::parse_dqt(payload, &mut quant)?,
            0xDD => restart_interval = markers::parse_dri(payload)?,
            0xDC => return Err(JpegError::Unsupported("DNL marker".into())),
            0xDA => {
                let f = frame.as_ref().ok_or_else(|| corrupt("scan before the frame header"))?;
                let scan = markers::parse_sos(payload, f)?;
                let tables = Tables { quant: &quant, dc: &dc, ac: &ac, restart_interval };
                pos = scan::decode_scan(data, pos, f, &scan, &tables, &mut planes)?;
                scans += 1;
            }
            0xE0..=0xEF => app.record(marker, payload),
            0xFE => {}
            _ => return Err(corrupt(&format!("unexpected marker FF {marker:02X}"))),
        }
    }

    let frame = frame.ok_or_else(|| corrupt("no frame header before the end of the image"))?;
    if scans == 0 {
        return Err(corrupt("no scan before the end of the image"));
    }
    let image = to_rgb(&frame, &planes, color_space(&frame, &app))?;
    Ok(Decoded { image, exif: app.exif })
}

/// libjpeg's guess of the color space: one component is gray; three are YCbCr under a JFIF
/// header, as the Adobe transform flag says otherwise (0 = RGB), and else RGB only when the
/// component ids spell 'R', 'G', 'B'.
fn color_space(frame: &Frame, app: &AppInfo) -> ColorSpace {
    if frame.components.len() == 1 {
        return ColorSpace::Gray;
    }
    if app.saw_jfif {
        return ColorSpace::YCbCr;
    }
    if let Some(transform) = app.adobe_transform {
        return if transform == 0 { ColorSpace::Rgb } else { ColorSpace::YCbCr };
    }
    let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
    if ids == [b'R', b'G', b'B'] {
        ColorSpace::Rgb
    } else {
        ColorSpace::YCbCr
    }
}

/// Upsamples every component to the image size and converts to interleaved RGB.
fn to_rgb(frame: &Frame, planes: &[Plane], space: ColorSpace) -> Result<RgbImage, JpegError> {
    let (width, height) = (frame.width as usize, frame.height as usize);
    let mut full = Vec::with_capacity(planes.len());
    for (c, plane) in frame.components.iter().zip(planes) {
        let (w, h) = frame.component_size(c);
        let view = ComponentPlane { data: &plane.data, stride: plane.stride, width: w, height: h };
        full.push(upsample::upsample(&view, (c.h, c.v), (frame.max_h, frame.max_v), width, height)?);
    }
    let mut rgb = vec![0u8; width * height * 3];
    match space {
        ColorSpace::Gray => {
            for (px, &y) in rgb.chunks_exact_mut(3).zip(&full[0]) {
                px.fill(y);
            }
        }
        ColorSpace::Rgb => {
            for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
                px.copy_from_slice(&[full[0][i], full[1][i], full[2][i]]);
            }
        }
        ColorSpace::YCbCr => color::YccTables::new().convert(&full[0], &full[1], &full[2], &mut rgb),
    }
    Ok(RgbImage::from_raw(frame.width, frame.height, rgb)?)
}
