//! The marker layer: finding markers and parsing the segments a baseline decoder needs
//! (DQT, DHT, SOF0/SOF1, SOS, DRI, and the APP0 JFIF / APP1 Exif / APP14 Adobe headers),
//! after libjpeg-turbo's jdmarker.c (`next_marker`, `get_dqt`, `get_dht`, `get_sof`,
//! `get_sos`, `get_dri`, `examine_app0`, `examine_app14`).
//!
//! Every length and index is checked against the data; nothing here can panic.

use super::huffman::{HuffmanTable, NATURAL_ORDER};
use super::{corrupt, truncated, JpegError};

/// A frame component (SOF).
#[derive(Clone, Debug)]
pub(crate) struct FrameComponent {
    pub id: u8,
    /// Horizontal sampling factor, 1..=4.
    pub h: usize,
    /// Vertical sampling factor, 1..=4.
    pub v: usize,
    /// Quantization table selector, 0..=3.
    pub quant_table: usize,
}

/// The frame header (SOF0/SOF1) with libjpeg's derived sizes (jdinput.c `initial_setup`).
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub width: u32,
    pub height: u32,
    pub components: Vec<FrameComponent>,
    pub max_h: usize,
    pub max_v: usize,
    /// MCUs per row and column of an interleaved scan.
    pub mcus_x: usize,
    pub mcus_y: usize,
}

impl Frame {
    /// `downsampled_width`/`downsampled_height` of component `c`: its size in its own samples,
    /// `ceil(image size * factor / max factor)`.
    pub(crate) fn component_size(&self, c: &FrameComponent) -> (usize, usize) {
        let w = (self.width as usize * c.h).div_ceil(self.max_h);
        let h = (self.height as usize * c.v).div_ceil(self.max_v);
        (w, h)
    }
}

/// One component of a scan (SOS).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScanComponent {
    /// Index into `Frame::components`.
    pub index: usize,
    pub dc_table: usize,
    pub ac_table: usize,
}

/// libjpeg's `next_marker`: from `pos`, skips anything that is not `FF`, then fill bytes,
/// and returns the marker code and the position after it. `FF 00` is not a marker.
pub(crate) fn next_marker(data: &[u8], mut pos: usize) -> Result<(u8, usize), JpegError> {
    loop {
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        match data.get(pos) {
            None => return Err(truncated("JPEG data ends before its end-of-image marker")),
            Some(0) => pos += 1,
            Some(&code) => return Ok((code, pos + 1)),
        }
    }
}

/// The payload of the segment whose length field starts at `pos`, and the position after it.
pub(crate) fn segment(data: &[u8], pos: usize) -> Result<(&[u8], usize), JpegError> {
    let len_bytes = data.get(pos..pos + 2).ok_or_else(|| truncated("JPEG segment length cut off"))?;
    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    if len < 2 {
        return Err(corrupt("JPEG segment length below 2"));
    }
    let payload = data.get(pos + 2..pos + len).ok_or_else(|| truncated("JPEG segment cut off"))?;
    Ok((payload, pos + len))
}

/// DQT: any number of 8- or 16-bit tables, stored in natural order.
pub(crate) fn parse_dqt(mut p: &[u8], tables: &mut [Option<[u16; 64]>; 4]) -> Result<(), JpegError> {
    while let Some((&pq_tq, rest)) = p.split_first() {
        let (precision, id) = (pq_tq >> 4, usize::from(pq_tq & 15));
        if id > 3 {
            return Err(corrupt("quantization table id above 3"));
        }
        let size = match precision {
            0 => 64,
            1 => 128,
            _ => return Err(corrupt("quantization table precision is neither 8 nor 16 bits")),
        };
        let values = rest.get(..size).ok_or_else(|| corrupt("DQT segment too short"))?;
        let mut table = [0u16; 64];
        for k in 0..64 {
            table[NATURAL_ORDER[k]] = if precision == 0 {
                u16::from(values[k])
            } else {
                u16::from_be_bytes([values[2 * k], values[2 * k + 1]])
            };
        }
        tables[id] = Some(table);
        p = &rest[size..];
    }
    Ok(())
}

/// DHT: any number of tables.
pub(crate) fn parse_dht(
    mut p: &[u8],
    dc: &mut [Option<HuffmanTable>; 4],
    ac: &mut [Option<HuffmanTable>; 4],
) -> Result<(), JpegError> {
    while let Some((&tc_th, rest)) = p.split_first() {
        let (class, id) = (tc_th >> 4, usize::from(tc_th & 15));
        if class > 1 || id > 3 {
            return Err(corrupt("bad Huffman table class or id"));
        }
        let counts: [u8; 16] =
            rest.get(..16).and_then(|c| c.try_into().ok()).ok_or_else(|| corrupt("DHT segment too short"))?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let values = rest.get(16..16 + total).ok_or_else(|| corrupt("DHT segment too short"))?;
        let table = HuffmanTable::new(&counts, values, class == 0)?;
        if class == 0 {
            dc[id] = Some(table);
        } else {
            ac[id] = Some(table);
        }
        p = &rest[16 + total..];
    }
    Ok(())
}

/// SOF0/SOF1 (the caller has refused the other SOF types). Only what the exact decoder
/// implements passes: 8-bit samples, 1 (gray) or 3 components.
pub(crate) fn parse_sof(p: &[u8]) -> Result<Frame, JpegError> {
    if p.len() < 6 {
        return Err(corrupt("SOF segment too short"));
    }
    let precision = p[0];
    let height = u32::from(u16::from_be_bytes([p[1], p[2]]));
    let width = u32::from(u16::from_be_bytes([p[3], p[4]]));
    let count = usize::from(p[5]);
    if precision != 8 {
        return Err(JpegError::Unsupported(format!("{precision}-bit samples")));
    }
    if p.len() != 6 + 3 * count {
        return Err(corrupt("SOF segment length does not match its component count"));
    }
    if count != 1 && count != 3 {
        return Err(JpegError::Unsupported(format!("{count} color components")));
    }
    let mut components = Vec::with_capacity(count);
    for c in p[6..].chunks_exact(3) {
        let (h, v, quant_table) = (usize::from(c[1] >> 4), usize::from(c[1] & 15), usize::from(c[2]));
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
            return Err(corrupt("sampling factor outside 1..4"));
        }
        if quant_table > 3 {
            return Err(corrupt("quantization table selector above 3"));
        }
        components.push(FrameComponent { id: c[0], h, v, quant_table });
    }
    let max_h = components.iter().map(|c| c.h).max().unwrap_or(1);
    let max_v = components.iter().map(|c| c.v).max().unwrap_or(1);
    Ok(Frame {
        width,
        height,
        mcus_x: (width as usize).div_ceil(8 * max_h),
        mcus_y: (height as usize).div_ceil(8 * max_v),
        components,
        max_h,
        max_v,
    })
}

/// SOS: the scan's components and their tables. The spectral-selection and
/// successive-approximation bytes are ignored, as libjpeg does for sequential JPEGs.
pub(crate) fn parse_sos(p: &[u8], frame: &Frame) -> Result<Vec<ScanComponent>, JpegError> {
    let count = usize::from(*p.first().ok_or_else(|| corrupt("SOS segment too short"))?);
    if count == 0 || count > 4 || p.len() != 1 + 2 * count + 3 {
        return Err(corrupt("bad SOS segment"));
    }
    let mut scan: Vec<ScanComponent> = Vec::with_capacity(count);
    for c in p[1..1 + 2 * count].chunks_exact(2) {
        let index = frame
            .components
            .iter()
            .position(|fc| fc.id == c[0])
            .ok_or_else(|| corrupt("scan names a component the frame lacks"))?;
        if scan.iter().any(|s| s.index == index) {
            return Err(corrupt("scan names a component twice"));
        }
        let (dc_table, ac_table) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
        if dc_table > 3 || ac_table > 3 {
            return Err(corrupt("Huffman table selector above 3"));
        }
        scan.push(ScanComponent { index, dc_table, ac_table });
    }
    if count > 1 {
        // jdinput.c: an interleaved MCU holds at most 10 blocks (D_MAX_BLOCKS_IN_MCU).
        let blocks: usize = scan.iter().map(|s| frame.components[s.index].h * frame.components[s.index].v).sum();
        if blocks > 10 {
            return Err(corrupt("interleaved MCU of more than 10 blocks"));
        }
    }
    Ok(scan)
}

/// DRI: the restart interval in MCUs (0 = none).
pub(crate) fn parse_dri(p: &[u8]) -> Result<u16, JpegError> {
    match p {
        [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
        _ => Err(corrupt("DRI segment is not 2 bytes")),
    }
}

/// What the APPn segments say about color and orientation.
#[derive(Clone, Debug, Default)]
pub(crate) struct AppInfo {
    /// An APP0 JFIF header was seen (`examine_app0`: at least 14 bytes, "JFIF\0").
    pub saw_jfif: bool,
    /// The APP14 Adobe transform flag (`examine_app14`: at least 12 bytes, "Adobe").
    pub adobe_transform: Option<u8>,
    /// The TIFF data of the first APP1 Exif segment (after "Exif\0\0").
    pub exif: Option<Vec<u8>>,
}

impl AppInfo {
    pub(crate) fn record(&mut self, marker: u8, p: &[u8]) {
        match marker {
            0xE0 if p.len() >= 14 && p.starts_with(b"JFIF\0") => self.saw_jfif = true,
            0xE1 if self.exif.is_none() && p.starts_with(b"Exif\0\0") => self.exif = Some(p[6..].to_vec()),
            0xEE if p.len() >= 12 && p.starts_with(b"Adobe") => self.adobe_transform = Some(p[11]),
            _ => {}
        }
    }
}
