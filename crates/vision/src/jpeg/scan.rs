//! Decoding one scan: walking its MCUs (interleaved) or blocks (single component), restart
//! intervals, and writing each block through the IDCT into its component's sample plane.
//! Ports the parts of libjpeg-turbo's jdcoefct.c (`decompress_onepass`), jdinput.c
//! (`per_scan_setup`: MCU geometry) and jdhuff.c (`process_restart`) a baseline decoder needs.

use super::huffman::{BitReader, HuffmanTable};
use super::idct::idct_islow;
use super::markers::{Frame, ScanComponent};
use super::{corrupt, JpegError};

/// A component's samples as decoded, whole blocks: `blocks_x * 8` by `blocks_y * 8`, with
/// `blocks_*` the component's share of the interleaved MCU grid.
pub(crate) struct Plane {
    pub data: Vec<u8>,
    pub stride: usize,
}

impl Plane {
    /// A plane covering every block any scan can write for component `c` of `frame`,
    /// initialised to 128 (what all-zero coefficients decode to).
    pub(crate) fn for_component(frame: &Frame, index: usize) -> Plane {
        let c = &frame.components[index];
        let stride = frame.mcus_x * c.h * 8;
        let rows = frame.mcus_y * c.v * 8;
        Plane { data: vec![128; stride * rows], stride }
    }
}

/// The tables in force when the scan starts.
pub(crate) struct Tables<'a> {
    pub quant: &'a [Option<[u16; 64]>; 4],
    pub dc: &'a [Option<HuffmanTable>; 4],
    pub ac: &'a [Option<HuffmanTable>; 4],
    pub restart_interval: u16,
}

/// Everything one scan component needs per block.
struct Active<'a> {
    index: usize,
    h: usize,
    v: usize,
    quant: &'a [u16; 64],
    dc: &'a HuffmanTable,
    ac: &'a HuffmanTable,
    dc_pred: i32,
}

/// Decodes the entropy-coded data starting at `start` into `planes`; returns the position
/// from which to look for the next marker.
pub(crate) fn decode_scan(
    data: &[u8],
    start: usize,
    frame: &Frame,
    scan: &[ScanComponent],
    tables: &Tables<'_>,
    planes: &mut [Plane],
) -> Result<usize, JpegError> {
    let mut active = Vec::with_capacity(scan.len());
    for sc in scan {
        let c = &frame.components[sc.index];
        let quant = tables.quant[c.quant_table].as_ref().ok_or_else(|| corrupt("quantization table not defined"))?;
        // libjpeg-turbo substitutes the standard tables for missing ones (Motion-JPEG);
        // leave that rare case to the fallback decoder.
        let missing = || JpegError::Unsupported("scan uses an undefined Huffman table".into());
        let dc = tables.dc[sc.dc_table].as_ref().ok_or_else(missing)?;
        let ac = tables.ac[sc.ac_table].as_ref().ok_or_else(missing)?;
        active.push(Active { index: sc.index, h: c.h, v: c.v, quant, dc, ac, dc_pred: 0 });
    }

    // An interleaved scan codes MCUs of h x v blocks per component; a single-component scan
    // codes the component's own blocks one at a time, ceil(downsampled size / 8) of them.
    let (units_x, units_y) = if active.len() > 1 {
        (frame.mcus_x, frame.mcus_y)
    } else {
        let (w, h) = frame.component_size(&frame.components[active[0].index]);
        (w.div_ceil(8), h.div_ceil(8))
    };
    let interleaved = active.len() > 1;

    let mut reader = BitReader::new(data, start);
    let restart_interval = usize::from(tables.restart_interval);
    let mut units_to_restart = restart_interval;
    let mut next_restart = 0u8;
    let mut block = [0i16; 64];
    for unit_y in 0..units_y {
        for unit_x in 0..units_x {
            if restart_interval > 0 {
                if units_to_restart == 0 {
                    check_not_overrun(&reader)?;
                    let marker = reader.restart()?;
                    if marker != 0xD0 + next_restart {
                        return Err(corrupt("expected restart marker missing"));
                    }
                    next_restart = (next_restart + 1) % 8;
                    for a in &mut active {
                        a.dc_pred = 0;
                    }
                    units_to_restart = restart_interval;
                }
                units_to_restart -= 1;
            }
            for a in &mut active {
                let (bh, bv) = if interleaved { (a.h, a.v) } else { (1, 1) };
                let plane = &mut planes[a.index];
                for by in 0..bv {
                    for bx in 0..bh {
                        block.fill(0);
                        reader.decode_block(a.dc, a.ac, &mut a.dc_pred, &mut block)?;
                        let (row, col) = ((unit_y * bv + by) * 8, (unit_x * bh + bx) * 8);
                        idct_islow(&block, a.quant, &mut plane.data, row * plane.stride + col, plane.stride);
                    }
                }
            }
        }
    }
    check_not_overrun(&reader)?;
    Ok(reader.position())
}

fn check_not_overrun(reader: &BitReader<'_>) -> Result<(), JpegError> {
    if reader.overran() {
        return Err(corrupt("entropy-coded data ends before the scan does"));
    }
    Ok(())
}
