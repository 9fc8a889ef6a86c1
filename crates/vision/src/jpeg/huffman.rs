//! Huffman decoding of baseline entropy-coded data: the derived lookup tables of
//! libjpeg-turbo's `jpeg_make_d_derived_tbl`, a bit reader over one entropy-coded segment
//! (byte stuffing, markers), and `decode_mcu`'s per-block DC/AC decoding (jdhuff.c).
//!
//! Where libjpeg only warns (a bad Huffman code, entropy data ending before the scan does)
//! and goes on with zeros, this decoder reports `Corrupt`: the caller's contract is that
//! damaged files are errors.

use super::{corrupt, JpegError};

/// Codes up to this many bits are decoded with one table lookup (libjpeg's `HUFF_LOOKAHEAD`
/// is 8; 9 catches a few more of the common AC codes).
const LOOKAHEAD: u32 = 9;

/// `jpeg_natural_order` with libjpeg's 16 extra entries: a corrupt run length can push the
/// coefficient index past 63, and libjpeg then writes coefficient 63 instead of out of bounds.
pub(crate) const NATURAL_ORDER: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
];

/// One DHT table in decoding form.
#[derive(Clone, Debug)]
pub(crate) struct HuffmanTable {
    /// Indexed by the next `LOOKAHEAD` bits: `(code length << 8) | symbol`, or 0 when the
    /// code is longer than `LOOKAHEAD` bits.
    lookup: Vec<u16>,
    /// Largest code of each length (index 1..=16), -1 when there is none.
    maxcode: [i32; 18],
    /// Added to a code of each length to get its index in `values`.
    valoffset: [i32; 18],
    values: Vec<u8>,
}

impl HuffmanTable {
    /// Builds the table from a DHT's 16 code-length counts and its symbols, rejecting what
    /// libjpeg rejects (`JERR_BAD_HUFF_TABLE`): more than 256 symbols, over-subscribed code
    /// lengths, DC symbols above 15.
    pub(crate) fn new(counts: &[u8; 16], values: &[u8], is_dc: bool) -> Result<Self, JpegError> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total > 256 || total != values.len() {
            return Err(corrupt("Huffman table has a bad symbol count"));
        }
        if is_dc && values.iter().any(|&v| v > 15) {
            return Err(corrupt("DC Huffman table has a symbol above 15"));
        }
        // Code of each symbol, canonical order (jcparam/jdhuff's huffsize/huffcode).
        let mut sizes = Vec::with_capacity(total);
        for (len, &count) in counts.iter().enumerate() {
            sizes.extend(std::iter::repeat_n(len as u32 + 1, usize::from(count)));
        }
        let mut codes = Vec::with_capacity(total);
        let mut code = 0u32;
        let mut p = 0;
        for si in 1..=16u32 {
            while p < sizes.len() && sizes[p] == si {
                codes.push(code);
                code += 1;
                p += 1;
            }
            if code >= 1 << si {
                return Err(corrupt("Huffman table has over-subscribed code lengths"));
            }
            code <<= 1;
        }

        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 18];
        let mut p = 0usize;
        for len in 1..=16 {
            let count = usize::from(counts[len - 1]);
            if count > 0 {
                valoffset[len] = p as i32 - codes[p] as i32;
                p += count;
                maxcode[len] = codes[p - 1] as i32;
            }
        }
        // Sentinel so the slow path always ends (libjpeg's maxcode[17]).
        maxcode[17] = i32::MAX;

        let mut lookup = vec![0u16; 1 << LOOKAHEAD];
        for (i, (&size, &code)) in sizes.iter().zip(&codes).enumerate() {
            if size <= LOOKAHEAD {
                let shift = LOOKAHEAD - size;
                let first = (code << shift) as usize;
                let entry = ((size as u16) << 8) | u16::from(values[i]);
                lookup[first..first + (1 << shift)].fill(entry);
            }
        }
        Ok(Self { lookup, maxcode, valoffset, values: values.to_vec() })
    }
}

/// Reads bits from one entropy-coded segment, MSB first, undoing `FF 00` stuffing and
/// stopping at the first marker. Past the data it supplies zero bits, as libjpeg does, and
/// remembers whether any of them were actually consumed.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load.
    pos: usize,
    buf: u64,
    nbits: u32,
    /// How many of the low `nbits` bits of `buf` are zero padding, not data.
    padding_bits: u32,
    at_marker: bool,
    /// A decode consumed padding bits: the segment held too little data.
    overrun: bool,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8], pos: usize) -> Self {
        Self { data, pos, buf: 0, nbits: 0, padding_bits: 0, at_marker: false, overrun: false }
    }

    /// Position of the first byte not loaded into the bit buffer; once the reader has met a
    /// marker, the marker's `FF`.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// True if the decoder has used bits beyond the end of the segment's data.
    pub(crate) fn overran(&self) -> bool {
        self.overrun
    }

    /// Drops the buffered bits (libjpeg's `process_restart`) and moves on to the byte after
    /// the restart marker that must follow; returns that marker's code.
    pub(crate) fn restart(&mut self) -> Result<u8, JpegError> {
        self.buf = 0;
        self.nbits = 0;
        self.padding_bits = 0;
        self.at_marker = false;
        let (marker, after) = super::markers::next_marker(self.data, self.pos)?;
        self.pos = after;
        Ok(marker)
    }

    #[inline]
    fn fill(&mut self) {
        while self.nbits <= 56 {
            let byte = if self.at_marker || self.pos >= self.data.len() {
                self.at_marker = true;
                self.padding_bits += 8;
                0
            } else {
                let b = self.data[self.pos];
                if b != 0xFF {
                    self.pos += 1;
                    b
                } else {
                    // FF then any FF fill bytes, then 00 (a stuffed FF) or a marker code.
                    let mut next = self.pos + 1;
                    while next < self.data.len() && self.data[next] == 0xFF {
                        next += 1;
                    }
                    if next < self.data.len() && self.data[next] == 0 {
                        self.pos = next + 1;
                        0xFF
                    } else {
                        self.at_marker = true;
                        self.padding_bits += 8;
                        0
                    }
                }
            };
            self.buf = (self.buf << 8) | u64::from(byte);
            self.nbits += 8;
        }
    }

    #[inline(always)]
    fn peek(&self, n: u32) -> u32 {
        ((self.buf >> (self.nbits - n)) & ((1u64 << n) - 1)) as u32
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.nbits -= n;
        if self.nbits < self.padding_bits {
            self.overrun = true;
            self.padding_bits = self.nbits;
        }
    }

    /// `jpeg_huff_decode` / `HUFF_DECODE`: the next symbol.
    #[inline]
    fn decode(&mut self, table: &HuffmanTable) -> Result<u8, JpegError> {
        if self.nbits < 32 {
            self.fill();
        }
        let entry = table.lookup[self.peek(LOOKAHEAD) as usize];
        if entry != 0 {
            self.consume(u32::from(entry >> 8));
            return Ok(entry as u8);
        }
        let bits16 = self.peek(16);
        for len in LOOKAHEAD + 1..=16 {
            let code = (bits16 >> (16 - len)) as i32;
            if code <= table.maxcode[len as usize] {
                self.consume(len);
                let index = code + table.valoffset[len as usize];
                return usize::try_from(index)
                    .ok()
                    .and_then(|i| table.values.get(i).copied())
                    .ok_or_else(|| corrupt("bad Huffman code"));
            }
        }
        Err(corrupt("bad Huffman code"))
    }

    /// `GET_BITS(s)` followed by `HUFF_EXTEND`: an `s`-bit signed magnitude (`s` <= 16).
    #[inline]
    fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        if self.nbits < 32 {
            self.fill();
        }
        let x = self.peek(s) as i32;
        self.consume(s);
        if x < (1 << (s - 1)) {
            x - (1 << s) + 1
        } else {
            x
        }
    }

    /// Decodes one block's coefficients (natural order) into `block`, which must be zeroed,
    /// updating the component's DC predictor (`decode_mcu` in jdhuff.c).
    pub(crate) fn decode_block(
        &mut self,
        dc_table: &HuffmanTable,
        ac_table: &HuffmanTable,
        dc_pred: &mut i32,
        block: &mut [i16; 64],
    ) -> Result<(), JpegError> {
        let s = u32::from(self.decode(dc_table)?);
        let diff = self.receive_extend(s);
        // libjpeg refuses only an `int` overflow of the predictor; the stored coefficient is
        // then truncated to JCOEF (16 bits).
        *dc_pred = dc_pred.checked_add(diff).ok_or_else(|| corrupt("DC coefficient overflows"))?;
        block[0] = *dc_pred as i16;

        let mut k = 1usize;
        while k < 64 {
            let rs = self.decode(ac_table)?;
            let (run, size) = (usize::from(rs >> 4), u32::from(rs & 15));
            if size != 0 {
                k += run;
                let value = self.receive_extend(size);
                block[NATURAL_ORDER[k]] = value as i16;
            } else if run == 15 {
                k += 15;
            } else {
                break;
            }
            k += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_subscribed_code_lengths_are_rejected() {
        // Three 1-bit codes cannot exist.
        let mut counts = [0u8; 16];
        counts[0] = 3;
        assert!(HuffmanTable::new(&counts, &[0, 1, 2], true).is_err());
    }

    #[test]
    fn a_short_and_a_long_code_decode() {
        // Symbol 5 = "0" (1 bit); symbol 7 = "1000000000" (10 bits, beyond the lookup).
        let mut counts = [0u8; 16];
        counts[0] = 1;
        counts[9] = 1;
        let table = HuffmanTable::new(&counts, &[5, 7], true).unwrap();
        // bits: 0 | 1000000000 | 0 ... = 0x40 0x00
        let data = [0b0100_0000, 0b0000_0000];
        let mut reader = BitReader::new(&data, 0);
        assert_eq!(reader.decode(&table).unwrap(), 5);
        assert_eq!(reader.decode(&table).unwrap(), 7);
        assert_eq!(reader.decode(&table).unwrap(), 5);
        assert!(!reader.overran());
    }

    #[test]
    fn stuffed_ff_is_data_and_a_marker_ends_the_segment() {
        let mut reader = BitReader::new(&[0xFF, 0x00, 0xAB, 0xFF, 0xD9], 0);
        reader.fill();
        assert_eq!(reader.peek(16), 0xFFAB);
        reader.consume(16);
        assert!(!reader.overran());
        assert_eq!(reader.position(), 3);
        reader.consume(1);
        assert!(reader.overran());
    }
}
