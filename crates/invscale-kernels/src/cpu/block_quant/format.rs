//! The block formats and their data: a GGUF matrix kept in its file bytes, unpacked a tile of
//! rows at a time, and activation rows quantized as llama.cpp quantizes them. The products are
//! in `super` (dispatch and portable arithmetic) and `super::x86` (the vector kernels).

use half::f16;

/// Values of the blocks the kernel multiplies (a K-quant's 256 are eight of them).
pub(crate) const QK: usize = 32;
/// Values of a K-quant block (a `Q8_K` activation block too).
pub(crate) const QK_K: usize = 256;

/// A GGUF block format this kernel multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockFormat {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q6K,
}

impl BlockFormat {
    pub fn from_ggml(dtype: candle_core::quantized::GgmlDType) -> Option<BlockFormat> {
        use candle_core::quantized::GgmlDType as G;
        Some(match dtype {
            G::Q4_0 => BlockFormat::Q4_0,
            G::Q4_1 => BlockFormat::Q4_1,
            G::Q5_0 => BlockFormat::Q5_0,
            G::Q5_1 => BlockFormat::Q5_1,
            G::Q8_0 => BlockFormat::Q8_0,
            G::Q4K => BlockFormat::Q4K,
            G::Q6K => BlockFormat::Q6K,
            _ => return None,
        })
    }

    /// Values a stored block holds.
    pub(crate) fn block_values(self) -> usize {
        if self.k_quant() { QK_K } else { QK }
    }

    /// Bytes per stored block: f16 scale, [f16 min], [u32 high bits], packed values (the
    /// K-quants: Q4_K d, dmin, 12 bytes of 6-bit scales and mins, 128 of nibbles; Q6_K 128 bytes
    /// of low nibbles, 64 of high bit pairs, 16 i8 scales, d).
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4_1 => 20,
            BlockFormat::Q5_0 => 22,
            BlockFormat::Q5_1 => 24,
            BlockFormat::Q8_0 => 34,
            BlockFormat::Q4K => 144,
            BlockFormat::Q6K => 210,
        }
    }

    /// What the stored unsigned value is offset by (value = d · (q − offset) [+ m]).
    pub(crate) fn offset(self) -> i32 {
        match self {
            BlockFormat::Q4_0 => 8,
            BlockFormat::Q5_0 => 16,
            BlockFormat::Q8_0 => 128,
            BlockFormat::Q6K => 32,
            BlockFormat::Q4_1 | BlockFormat::Q5_1 | BlockFormat::Q4K => 0,
        }
    }

    pub(crate) fn has_min(self) -> bool {
        matches!(self, BlockFormat::Q4_1 | BlockFormat::Q5_1 | BlockFormat::Q4K)
    }

    /// Multiplied against `Q8_K` activations (llama.cpp's `vec_dot_type` of the K-quants).
    pub(crate) fn k_quant(self) -> bool {
        matches!(self, BlockFormat::Q4K | BlockFormat::Q6K)
    }

    /// Scales per 32-value block: Q6_K has one per 16 values.
    pub(crate) fn scales_per_block(self) -> usize {
        if self == BlockFormat::Q6K { 2 } else { 1 }
    }
}

pub(crate) fn half(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// A `[rows, cols]` matrix in a block format, applied as `x Wᵀ`.
pub struct BlockMatrix {
    pub(crate) format: BlockFormat,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// The file's bytes: usually a range of the memory-mapped GGUF file, so the matrix costs
    /// no memory beyond the file's pages.
    pub(crate) data: Box<dyn AsRef<[u8]> + Send + Sync>,
}

impl BlockMatrix {
    /// `data` as stored in the GGUF file, row after row. None when the sizes do not fit.
    pub fn new(format: BlockFormat, rows: usize, cols: usize, data: impl AsRef<[u8]> + Send + Sync + 'static) -> Option<BlockMatrix> {
        let per = format.block_values();
        let fits = cols.is_multiple_of(per) && data.as_ref().len() == rows * (cols / per) * format.block_bytes();
        fits.then(|| BlockMatrix { format, rows, cols, data: Box::new(data) })
    }


    pub fn format(&self) -> BlockFormat {
        self.format
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// 32-value blocks in a row.
    pub(crate) fn blocks(&self) -> usize {
        self.cols / QK
    }

    /// Rows `first..first + count` as one unsigned byte per value (`q`, row after row), with
    /// each 32-value block's scale (`d`; two, one per 16 values, for Q6_K) and minimum (`m`, zero
    /// for the offset formats).
    #[inline(always)]
    pub(crate) fn unpack(&self, first: usize, count: usize, q: &mut [u8], d: &mut [f32], m: &mut [f32]) {
        if self.format.k_quant() {
            return self.unpack_k(first, count, q, d, m);
        }
        let (nb, bs) = (self.blocks(), self.format.block_bytes());
        let data = (*self.data).as_ref();
        for r in 0..count {
            for b in 0..nb {
                let block = &data[((first + r) * nb + b) * bs..][..bs];
                let at = r * nb + b;
                let out = &mut q[at * QK..][..QK];
                // f16 scale, then the f16 minimum of the formats that have one, then the values.
                d[at] = half(block, 0);
                let (min, body) = if self.format.has_min() { (half(block, 2), &block[4..]) } else { (0.0, &block[2..]) };
                m[at] = min;
                match self.format {
                    BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
                        for j in 0..16 {
                            out[j] = body[j] & 0x0F;
                            out[j + 16] = body[j] >> 4;
                        }
                    }
                    BlockFormat::Q5_0 | BlockFormat::Q5_1 => {
                        let qh = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                        let qs = &body[4..20];
                        for j in 0..16 {
                            out[j] = (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
                            out[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                        }
                    }
                    BlockFormat::Q8_0 => {
                        for j in 0..QK {
                            out[j] = body[j] ^ 0x80; // i8 + 128 as u8
                        }
                    }
                    BlockFormat::Q4K | BlockFormat::Q6K => unreachable!("K-quants unpack in unpack_k"),
                }
            }
        }
    }

    /// [`unpack`](Self::unpack) for the K-quants, as ggml's `dequantize_row_q4_K` / `_q6_K` lay
    /// the values out; each sub-block's scale (Q4_K: 6 bits a 32-value block, with a 6-bit
    /// minimum; Q6_K: an i8 a 16-value half block) times the block's f16 `d` (`dmin`): a product
    /// of an f16 and a small integer, exact in f32.
    #[inline(always)]
    pub(crate) fn unpack_k(&self, first: usize, count: usize, q: &mut [u8], d: &mut [f32], m: &mut [f32]) {
        let (nb, bs, per_row) = (self.blocks(), self.format.block_bytes(), self.cols / QK_K);
        let data = (*self.data).as_ref();
        for r in 0..count {
            for s in 0..per_row {
                let block = &data[((first + r) * per_row + s) * bs..][..bs];
                // The first 32-value block of this 256-value block, in the tile's arrays.
                let b0 = r * nb + s * 8;
                let out = &mut q[b0 * QK..][..QK_K];
                match self.format {
                    BlockFormat::Q4K => {
                        let (scale, min) = (half(block, 0), half(block, 2));
                        let (scales, qs) = (&block[4..16], &block[16..144]);
                        for j in 0..8 {
                            let (sc, mn) = scale_min_k4(j, scales);
                            d[b0 + j] = scale * f32::from(sc);
                            m[b0 + j] = -(min * f32::from(mn));
                        }
                        // Sub-blocks 2i and 2i+1 are the low and high nibbles of 32 bytes.
                        for i in 0..4 {
                            for l in 0..32 {
                                let v = qs[32 * i + l];
                                out[64 * i + l] = v & 0x0F;
                                out[64 * i + 32 + l] = v >> 4;
                            }
                        }
                    }
                    BlockFormat::Q6K => {
                        let scale = half(block, 208);
                        for n in 0..2 {
                            let (ql, qh) = (&block[64 * n..][..64], &block[128 + 32 * n..][..32]);
                            let out = &mut out[128 * n..][..128];
                            for l in 0..32 {
                                out[l] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
                                out[l + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
                                out[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                                out[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                            }
                        }
                        // One i8 scale per 16 values, in order: two per 32-value block.
                        for (g, &sc) in block[192..208].iter().enumerate() {
                            d[2 * b0 + g] = scale * f32::from(sc as i8);
                        }
                        m[b0..b0 + 8].fill(0.0);
                    }
                    _ => unreachable!("32-value formats unpack in unpack"),
                }
            }
        }
    }

    /// Row `r` in f32 (`d · (q − offset) + m`), for tests and checks.
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        let nb = self.blocks();
        let per = QK / self.format.scales_per_block();
        let (mut q, mut d, mut m) = (vec![0u8; self.cols], vec![0f32; nb * 2], vec![0f32; nb]);
        self.unpack(r, 1, &mut q, &mut d, &mut m);
        let offset = self.format.offset();
        q.iter().enumerate().map(|(i, &v)| d[i / per] * (i32::from(v) - offset) as f32 + m[i / QK]).collect()
    }

    /// Rows `ids` in f32, one after another: an embedding lookup on a quantized table (llama.cpp's
    /// `get_rows` dequantizes the same way).
    pub fn rows_f32(&self, ids: &[u32]) -> Vec<f32> {
        ids.iter().flat_map(|&r| self.dequantize_row(r as usize)).collect()
    }

}

/// ggml's `get_scale_min_k4`: Q4_K's 6-bit scale and minimum of sub-block `j`, packed in 12 bytes.
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Activation rows quantized to 8 bits as llama.cpp does for a weight format: per 32-value block
/// (`Q8_0` / `Q8_1`), or per 256 values with an f32 scale (`Q8_K`, for the K-quants).
pub struct QuantizedRows {
    pub(crate) m: usize,
    /// The weight format's offset that `neg_offset_sum` was made for.
    pub(crate) offset: i32,
    /// `Q8_K` (one f32 scale per 256 values) rather than `Q8_0` / `Q8_1`.
    pub(crate) k_quant: bool,
    /// Values, row after row.
    pub(crate) q: Vec<i8>,
    /// Per 32-value block: the scale as llama.cpp stores it (f16; `Q8_K`'s f32 scale of the
    /// 256 values the block is in).
    pub(crate) d: Vec<f32>,
    /// Per block: `d · Σq` (`Q8_1`'s, stored f16; exact integer sums times `Q8_K`'s scale), for
    /// formats with a minimum.
    pub(crate) s: Vec<f32>,
    /// Per block (per 16 values for Q6_K, whose scales are per 16): `−offset · Σq`, the
    /// weights' offset taken out in integers.
    pub(crate) neg_offset_sum: Vec<i32>,
    /// Offset sums per block: 1, or 2 for Q6_K.
    pub(crate) sums_per_block: usize,
}

/// Round to nearest, ties to even, as `_mm256_round_ps` and ggml's `nearest_int`: adding and
/// removing 1.5·2^23 does it for |x| < 2^22 (ours are ≤ 127) in a few vector instructions, where
/// `round_ties_even` is a libm call per value on baseline x86-64.
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    const SHIFT: f32 = 12_582_912.0;
    ((x + SHIFT) - SHIFT) as i32
}

pub(crate) fn quantize_q8_portable(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
    let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, v) in qs.iter_mut().zip(xs) {
        let r = nearest_int(v * id);
        *q = r as i8;
        sum += r;
    }
    (d, sum)
}

pub(crate) fn quantize_q8_k_portable(xs: &[f32], qs: &mut [i8]) -> f32 {
    // A max over the block, then its first value of that magnitude: the same pick as ggml's
    // running `ax > amax`.
    let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
    let (d, iscale) = match xs.iter().find(|v| v.abs() == amax) {
        Some(&max) if amax != 0.0 => (1.0 / (-127.0 / max), -127.0 / max),
        _ => (0.0, 0.0),
    };
    for (q, &v) in qs.iter_mut().zip(xs) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    d
}

impl QuantizedRows {
    /// Whether these activations serve a matrix in `format` (any format with the same offset
    /// and activation type).
    pub fn serve(&self, format: BlockFormat) -> bool {
        self.offset == format.offset() && self.k_quant == format.k_quant() && self.sums_per_block == format.scales_per_block()
    }

}

/// The vector kernels of the block product, best first; [`BlockMatrix::kernel`] says which one
/// this CPU runs. Both give the same integer dot products and the same float sums in the same
/// order, lane for lane: their results are identical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 VNNI (`vpdpbusd` on 512-bit vectors): 16 weight rows × 8 activation rows at a time.
    Avx512Vnni,
    /// AVX2 + FMA + F16C, what nearly every x86-64 CPU since 2015 has (AMD Zen 1–3 among them,
    /// which lack AVX-512): `vpmaddubsw` then `vpmaddwd` on 256-bit vectors, 8 × 4 at a time.
    Avx2,
}
