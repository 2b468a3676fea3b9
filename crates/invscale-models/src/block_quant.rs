//! The CPU matmul for GGUF matrices in llama.cpp's block formats — the 32-value ones (Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0) and the 256-value K-quants that small models mix in (Q4_K, Q6_K) — with
//! llama.cpp's arithmetic and a prompt-sized (many rows at once) loop.
//!
//! Why our own: candle's kernels for Q4_1 and Q5_x are scalar, its packed fast paths need
//! rows of a multiple of 256 values, which the small models of this project (hidden sizes 576,
//! 640, 896) do not have, and its K-quant products copy the matrices out of the file and run one
//! dot product per (weight row, activation row) on rayon's pool. llama.cpp quantizes the
//! activations to 8 bits (`Q8_0` per 32 values; `Q8_1` with its scaled sum for the formats with a
//! minimum; `Q8_K`, one f32 scale per 256 values, for the K-quants) and multiplies blocks in
//! integers; so does this kernel, giving the same integer dot products and the same scales:
//!
//!   y = Σ_blocks d_w · d_a · Σ_j (q_w[j] − offset) · q_a[j]   (+ m_w · s_a for Q4_1 / Q5_1 / Q4_K)
//!
//! A K-quant's 256-value block is taken as eight 32-value blocks with its sub-block scales folded
//! in (Q4_K: d·scale and −dmin·min per 32 values; Q6_K: d·scale per 16 values, two to a block).
//! Only the order of the float sums differs. Weights stay in their file format (memory as the
//! file); a tile of rows is unpacked to one byte per value when a matmul reaches it and used for
//! every activation row, so unpacking costs nothing next to the products.
//!
//! On x86-64 with AVX-512 VNNI (`vpdpbusd`) the products run 16 weight rows × 8 activation rows
//! at a time; with AVX2 (`vpmaddubsw` + `vpmaddwd`), 8 × 4, with the same integer and float sums
//! ([`Kernel`]); elsewhere [`BlockMatrix::kernel`] is `None` and the caller keeps
//! candle's kernel.

use half::f16;

/// Values of the blocks the kernel multiplies (a K-quant's 256 are eight of them).
const QK: usize = 32;
/// Values of a K-quant block (a `Q8_K` activation block too).
const QK_K: usize = 256;

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
    fn block_values(self) -> usize {
        if self.k_quant() { QK_K } else { QK }
    }

    /// Bytes per stored block: f16 scale, [f16 min], [u32 high bits], packed values (the
    /// K-quants: Q4_K d, dmin, 12 bytes of 6-bit scales and mins, 128 of nibbles; Q6_K 128 bytes
    /// of low nibbles, 64 of high bit pairs, 16 i8 scales, d).
    fn block_bytes(self) -> usize {
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
    fn offset(self) -> i32 {
        match self {
            BlockFormat::Q4_0 => 8,
            BlockFormat::Q5_0 => 16,
            BlockFormat::Q8_0 => 128,
            BlockFormat::Q6K => 32,
            BlockFormat::Q4_1 | BlockFormat::Q5_1 | BlockFormat::Q4K => 0,
        }
    }

    fn has_min(self) -> bool {
        matches!(self, BlockFormat::Q4_1 | BlockFormat::Q5_1 | BlockFormat::Q4K)
    }

    /// Multiplied against `Q8_K` activations (llama.cpp's `vec_dot_type` of the K-quants).
    fn k_quant(self) -> bool {
        matches!(self, BlockFormat::Q4K | BlockFormat::Q6K)
    }

    /// Scales per 32-value block: Q6_K has one per 16 values.
    fn scales_per_block(self) -> usize {
        if self == BlockFormat::Q6K { 2 } else { 1 }
    }
}

fn half(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// A `[rows, cols]` matrix in a block format, applied as `x Wᵀ`.
pub struct BlockMatrix {
    format: BlockFormat,
    rows: usize,
    cols: usize,
    /// The file's bytes: usually a range of the memory-mapped GGUF file, so the matrix costs
    /// no memory beyond the file's pages.
    data: Box<dyn AsRef<[u8]> + Send + Sync>,
}

impl BlockMatrix {
    /// `data` as stored in the GGUF file, row after row. None when the sizes do not fit.
    pub fn new(format: BlockFormat, rows: usize, cols: usize, data: impl AsRef<[u8]> + Send + Sync + 'static) -> Option<BlockMatrix> {
        let per = format.block_values();
        let fits = cols.is_multiple_of(per) && data.as_ref().len() == rows * (cols / per) * format.block_bytes();
        fits.then(|| BlockMatrix { format, rows, cols, data: Box::new(data) })
    }

    /// The vector kernel this machine runs, if it has the instructions of one.
    pub fn kernel() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        {
            x86::kernel()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    }

    pub fn format(&self) -> BlockFormat {
        self.format
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// 32-value blocks in a row.
    fn blocks(&self) -> usize {
        self.cols / QK
    }

    /// Rows `first..first + count` as one unsigned byte per value (`q`, row after row), with
    /// each 32-value block's scale (`d`; two, one per 16 values, for Q6_K) and minimum (`m`, zero
    /// for the offset formats).
    #[inline(always)]
    fn unpack(&self, first: usize, count: usize, q: &mut [u8], d: &mut [f32], m: &mut [f32]) {
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
    fn unpack_k(&self, first: usize, count: usize, q: &mut [u8], d: &mut [f32], m: &mut [f32]) {
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

    /// `y[m × rows] = x[m × cols] · Wᵀ`, activations quantized per 32-value block as llama.cpp does.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        assert_eq!(x.len(), m * self.cols, "lhs length");
        self.matmul_quantized(&QuantizedRows::new(x, m, self.cols, self.format), y);
    }

    /// [`matmul`](Self::matmul) on activations already quantized for this matrix's format (one
    /// input shared by several matrices: Q, K and V; gate and up).
    pub fn matmul_quantized(&self, acts: &QuantizedRows, y: &mut [f32]) {
        assert_eq!(acts.q.len(), acts.m * self.cols, "lhs length");
        assert!(acts.serve(self.format), "activations quantized for another format");
        assert_eq!(y.len(), acts.m * self.rows, "dst length");
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = x86::kernel() {
            return x86::matmul(kernel, self, acts, y);
        }
        self.matmul_portable(acts, y);
    }

    /// The same arithmetic in plain Rust: the reference the vector kernel is tested against.
    pub fn matmul_portable(&self, acts: &QuantizedRows, y: &mut [f32]) {
        let (nb, n) = (self.blocks(), self.rows);
        let offset = self.format.offset();
        // Values sharing a scale: 32, or 16 (Q6_K).
        let spb = self.format.scales_per_block();
        let per = QK / spb;
        let (mut q, mut d, mut mins) = (vec![0u8; self.cols], vec![0f32; nb * 2], vec![0f32; nb]);
        for r in 0..n {
            self.unpack(r, 1, &mut q, &mut d, &mut mins);
            for c in 0..acts.m {
                let mut sum = 0f32;
                for b in 0..nb {
                    for h in 0..spb {
                        let a = &acts.q[(c * nb + b) * QK + h * per..][..per];
                        let w = &q[b * QK + h * per..][..per];
                        let dot: i32 = w.iter().zip(a).map(|(&w, &a)| (i32::from(w) - offset) * i32::from(a)).sum();
                        sum += d[b * spb + h] * acts.d[c * nb + b] * dot as f32;
                    }
                    sum += mins[b] * acts.s[c * nb + b];
                }
                y[c * n + r] = sum;
            }
        }
    }
}

/// ggml's `get_scale_min_k4`: Q4_K's 6-bit scale and minimum of sub-block `j`, packed in 12 bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Activation rows quantized to 8 bits as llama.cpp does for a weight format: per 32-value block
/// (`Q8_0` / `Q8_1`), or per 256 values with an f32 scale (`Q8_K`, for the K-quants).
pub struct QuantizedRows {
    m: usize,
    /// The weight format's offset that `neg_offset_sum` was made for.
    offset: i32,
    /// `Q8_K` (one f32 scale per 256 values) rather than `Q8_0` / `Q8_1`.
    k_quant: bool,
    /// Values, row after row.
    q: Vec<i8>,
    /// Per 32-value block: the scale as llama.cpp stores it (f16; `Q8_K`'s f32 scale of the
    /// 256 values the block is in).
    d: Vec<f32>,
    /// Per block: `d · Σq` (`Q8_1`'s, stored f16; exact integer sums times `Q8_K`'s scale), for
    /// formats with a minimum.
    s: Vec<f32>,
    /// Per block (per 16 values for Q6_K, whose scales are per 16): `−offset · Σq`, the
    /// weights' offset taken out in integers.
    neg_offset_sum: Vec<i32>,
    /// Offset sums per block: 1, or 2 for Q6_K.
    sums_per_block: usize,
}

/// Round to nearest, ties to even, as `_mm256_round_ps` and ggml's `nearest_int`: adding and
/// removing 1.5·2^23 does it for |x| < 2^22 (ours are ≤ 127) in a few vector instructions, where
/// `round_ties_even` is a libm call per value on baseline x86-64.
#[inline(always)]
fn nearest_int(x: f32) -> i32 {
    const SHIFT: f32 = 12_582_912.0;
    ((x + SHIFT) - SHIFT) as i32
}

/// One 32-value block as ggml's x86 `quantize_row_q8_0` / `q8_1`: d = max|x|/127, values ×
/// 127/max|x| rounded to nearest-even. Returns d (unrounded; stored f16 by the caller) and Σq.
fn quantize_q8(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if x86::avx512() {
        // SAFETY: the features were detected; both slices hold a block.
        return unsafe { x86::quantize_q8(xs, qs) };
    }
    quantize_q8_portable(xs, qs)
}

fn quantize_q8_portable(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
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

/// One 256-value block as ggml's `quantize_row_q8_K_ref` (what x86 runs too): the value of largest
/// magnitude (the first such) maps to −127, iscale = −127/max, values rounded to nearest-even
/// and capped at 127. Returns d = 1/iscale (kept f32).
fn quantize_q8_k(xs: &[f32], qs: &mut [i8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::avx512() {
        // SAFETY: the features were detected; both slices hold a block.
        return unsafe { x86::quantize_q8_k(xs, qs) };
    }
    quantize_q8_k_portable(xs, qs)
}

fn quantize_q8_k_portable(xs: &[f32], qs: &mut [i8]) -> f32 {
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

    pub fn new(x: &[f32], m: usize, k: usize, format: BlockFormat) -> QuantizedRows {
        let nb = k / QK;
        let mut out = QuantizedRows {
            m,
            offset: format.offset(),
            k_quant: format.k_quant(),
            sums_per_block: format.scales_per_block(),
            q: vec![0; m * k],
            d: vec![0.0; m * nb],
            s: vec![0.0; m * nb],
            neg_offset_sum: vec![0; m * nb * format.scales_per_block()],
        };
        let offset = out.offset;
        struct Out(*mut i8, *mut f32, *mut f32, *mut i32);
        unsafe impl Sync for Out {}
        let dst = Out(out.q.as_mut_ptr(), out.d.as_mut_ptr(), out.s.as_mut_ptr(), out.neg_offset_sum.as_mut_ptr());
        let (k_quant, halves) = (format.k_quant(), format.scales_per_block() == 2);
        // Rows in parallel on candle's pool (a prompt's activations are ~10% of a matmul's time
        // on one thread).
        candle_core::utils::barrier_pool().execute_chunked(m, |rows| {
            let dst = &dst;
            if k_quant {
                for i in rows.start * (k / QK_K)..rows.end * (k / QK_K) {
                    let xs = &x[i * QK_K..][..QK_K];
                    // SAFETY: super-block i of the outputs belongs to row i / (k / 256) alone, and
                    // each row to one chunk.
                    let qs = unsafe { std::slice::from_raw_parts_mut(dst.0.add(i * QK_K), QK_K) };
                    let d = quantize_q8_k(xs, qs);
                    for b in 0..QK_K / QK {
                        let at = i * (QK_K / QK) + b;
                        let (lo, hi) = qs[b * QK..][..QK].split_at(QK / 2);
                        let (lo, hi): (i32, i32) = (lo.iter().map(|&v| i32::from(v)).sum(), hi.iter().map(|&v| i32::from(v)).sum());
                        unsafe {
                            *dst.1.add(at) = d;
                            *dst.2.add(at) = d * (lo + hi) as f32;
                            if halves {
                                *dst.3.add(2 * at) = -offset * lo;
                                *dst.3.add(2 * at + 1) = -offset * hi;
                            } else {
                                *dst.3.add(at) = -offset * (lo + hi);
                            }
                        }
                    }
                }
                return;
            }
            for i in rows.start * nb..rows.end * nb {
                let xs = &x[i * QK..][..QK];
                // SAFETY: block i of the outputs belongs to row i / nb alone, and each row to
                // one chunk.
                let qs = unsafe { std::slice::from_raw_parts_mut(dst.0.add(i * QK), QK) };
                let (d, sum) = quantize_q8(xs, qs);
                unsafe {
                    *dst.1.add(i) = f16::from_f32(d).to_f32();
                    *dst.2.add(i) = f16::from_f32(d * sum as f32).to_f32();
                    *dst.3.add(i) = -offset * sum;
                }
            }
        });
        out
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

// The module is two kernels over raw pointers; every offset stays inside the slices that
// `matmul` sized, so the unsafe functions' bodies are not split into unsafe blocks.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_op_in_unsafe_fn)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockMatrix, Kernel, QK, QuantizedRows};

    /// The best kernel this CPU runs, if any.
    pub fn kernel() -> Option<Kernel> {
        use std::sync::OnceLock;
        static KERNEL: OnceLock<Option<Kernel>> = OnceLock::new();
        *KERNEL.get_or_init(|| {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
            let vnni = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512bw");
            match (avx2, vnni) {
                (true, true) => Some(Kernel::Avx512Vnni),
                (true, false) => Some(Kernel::Avx2),
                _ => None,
            }
        })
    }

    /// Whether the activations' AVX-512 quantization runs here.
    pub fn avx512() -> bool {
        kernel() == Some(Kernel::Avx512Vnni)
    }

    /// [`super::quantize_q8_portable`] in vectors (the same roundings: a product by 127/max,
    /// rounded to nearest-even).
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    pub unsafe fn quantize_q8(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
        assert!(xs.len() == QK && qs.len() == QK);
        let (a, b) = (_mm512_loadu_ps(xs.as_ptr()), _mm512_loadu_ps(xs.as_ptr().add(16)));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        let d = amax / 127.0;
        let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let ra = _mm512_cvtps_epi32(_mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(a, id)));
        let rb = _mm512_cvtps_epi32(_mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(b, id)));
        _mm_storeu_si128(qs.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(ra));
        _mm_storeu_si128(qs.as_mut_ptr().add(16).cast(), _mm512_cvtepi32_epi8(rb));
        (d, _mm512_reduce_add_epi32(_mm512_add_epi32(ra, rb)))
    }

    /// [`super::quantize_q8_k_portable`] in vectors.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    pub unsafe fn quantize_q8_k(xs: &[f32], qs: &mut [i8]) -> f32 {
        assert!(xs.len() == super::QK_K && qs.len() == super::QK_K);
        let load = |t: usize| _mm512_loadu_ps(xs.as_ptr().add(16 * t));
        let mut m = _mm512_setzero_ps();
        for t in 0..16 {
            m = _mm512_max_ps(m, _mm512_abs_ps(load(t)));
        }
        let amax = _mm512_reduce_max_ps(m);
        if amax == 0.0 {
            qs.fill(0);
            return 0.0;
        }
        // The first value of that magnitude, its sign kept.
        let at = (0..16)
            .find_map(|t| {
                let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(load(t)), _mm512_set1_ps(amax));
                (hit != 0).then(|| 16 * t + hit.trailing_zeros() as usize)
            })
            .expect("the max is one of the values");
        let iscale = -127.0 / xs[at];
        let scale = _mm512_set1_ps(iscale);
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        for t in 0..16 {
            let r = _mm512_cvtps_epi32(_mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(load(t), scale)));
            let r = _mm512_min_epi32(r, _mm512_set1_epi32(127));
            _mm_storeu_si128(qs.as_mut_ptr().add(16 * t).cast(), _mm512_cvtepi32_epi8(r));
        }
        1.0 / iscale
    }

    struct Dst(*mut f32);
    unsafe impl Send for Dst {}
    unsafe impl Sync for Dst {}

    /// A tile of `LANES` weight rows (one per 32-bit lane of a vector, so a tile's sums for one
    /// activation row are one vector: no horizontal sums, and the per-block float work —
    /// convert, scale, accumulate — shared by all its rows) laid out for the product: for each
    /// 32-value block, eight groups of 4 consecutive values, each group the rows' 4 bytes side by
    /// side (one vector, multiplied by the activation's 4 bytes broadcast); each scale group's
    /// scales, and each block's minima, side by side.
    struct Tile<const LANES: usize> {
        q: Vec<u8>,
        d: Vec<f32>,
        mins: Vec<f32>,
        /// One row unpacked, before it is spread over the lanes.
        row_q: Vec<u8>,
        row_d: Vec<f32>,
        row_m: Vec<f32>,
    }

    impl<const LANES: usize> Tile<LANES> {
        fn new(k: usize) -> Self {
            let nb = k / QK;
            Tile {
                q: vec![0; LANES * k],
                d: vec![0.0; LANES * nb * 2],
                mins: vec![0.0; LANES * nb],
                row_q: vec![0; k],
                row_d: vec![0.0; nb * 2],
                row_m: vec![0.0; nb],
            }
        }

        /// Rows `first..first + count` of `w` into the lanes; lanes past `count` hold zeros.
        /// Inlined into each kernel, to be compiled with its instructions.
        #[inline(always)]
        fn fill(&mut self, w: &BlockMatrix, first: usize, count: usize) {
            let (nb, spb) = (w.blocks(), w.format.scales_per_block());
            for lane in 0..LANES {
                if lane < count {
                    w.unpack(first + lane, 1, &mut self.row_q, &mut self.row_d, &mut self.row_m);
                } else {
                    self.row_q.fill(0);
                    self.row_d.fill(0.0);
                    self.row_m.fill(0.0);
                }
                // Group g of the row (values 4g..4g+4) goes to lane `lane` of vector g.
                let src = self.row_q.as_ptr().cast::<u32>();
                let dst = self.q.as_mut_ptr().cast::<u32>();
                for g in 0..nb * 8 {
                    // SAFETY: row_q holds nb·32 bytes, q LANES times as many.
                    unsafe { dst.add(g * LANES + lane).write_unaligned(src.add(g).read_unaligned()) };
                }
                for t in 0..nb * spb {
                    self.d[t * LANES + lane] = self.row_d[t];
                }
                for b in 0..nb {
                    self.mins[b * LANES + lane] = self.row_m[b];
                }
            }
        }
    }

    /// One tile's rows `first..first + count` of `w` times every activation row, into `y`.
    type TileProduct<const LANES: usize> = unsafe fn(&mut Tile<LANES>, &BlockMatrix, &QuantizedRows, usize, usize, *mut f32);

    /// With `kernel` one this CPU runs ([`kernel`] or a lesser one: checked, the kernels'
    /// instructions are only safe to run where they exist).
    pub fn matmul(kernel: Kernel, w: &BlockMatrix, acts: &QuantizedRows, y: &mut [f32]) {
        let runs = matches!((kernel, self::kernel()), (Kernel::Avx2, Some(_)) | (Kernel::Avx512Vnni, Some(Kernel::Avx512Vnni)));
        assert!(runs, "the {kernel:?} block kernel does not run on this CPU");
        match kernel {
            Kernel::Avx512Vnni => by_tiles::<{ avx512::LANES }>(w, acts, y, avx512::tile_product),
            Kernel::Avx2 => by_tiles::<{ avx2::LANES }>(w, acts, y, avx2::tile_product),
        }
    }

    fn by_tiles<const LANES: usize>(w: &BlockMatrix, acts: &QuantizedRows, y: &mut [f32], product: TileProduct<LANES>) {
        let n = w.rows;
        let dst = Dst(y.as_mut_ptr());
        let tiles = n.div_ceil(LANES);
        // candle's own worker pool, not rayon's: candle runs its elementwise ops there and its
        // workers spin between ops; two pools on two cores steal each other's time (measured:
        // every op of the forward pass ~50% slower with the kernel on rayon).
        candle_core::utils::barrier_pool().execute_chunked(tiles, |range| {
            let (mut tile, dst) = (Tile::<LANES>::new(w.cols), &dst);
            for t in range {
                let first = t * LANES;
                // SAFETY: the caller picked a kernel this CPU runs; every (row, column) of `y` is
                // written by exactly one tile, so tiles running at once never touch the same
                // element.
                unsafe { product(&mut tile, w, acts, first, LANES.min(n - first), dst.0) };
            }
        });
    }

    mod avx512 {
        use std::arch::x86_64::*;

        use super::super::{BlockFormat, BlockMatrix, QuantizedRows};
        use super::Tile;

        pub const LANES: usize = 16;
        /// Activation rows run against a tile at once: independent `vpdpbusd` chains, each
        /// weight vector loaded once for all of them.
        const ACT_ROWS: usize = 8;

        #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni,f16c")]
        pub unsafe fn tile_product(tile: &mut Tile<LANES>, w: &BlockMatrix, acts: &QuantizedRows, first: usize, count: usize, y: *mut f32) {
            tile.fill(w, first, count);
            match w.format {
                BlockFormat::Q4_0 | BlockFormat::Q5_0 | BlockFormat::Q8_0 => tile_rows::<true, 1, false>(w, acts, first, count, tile, y),
                BlockFormat::Q4_1 | BlockFormat::Q5_1 | BlockFormat::Q4K => tile_rows::<false, 1, true>(w, acts, first, count, tile, y),
                BlockFormat::Q6K => tile_rows::<true, 2, false>(w, acts, first, count, tile, y),
            }
        }

        /// Every activation row against one tile, `ACT_ROWS` at a time.
        #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")]
        unsafe fn tile_rows<const OFFSET: bool, const SPB: usize, const MIN: bool>(
            w: &BlockMatrix,
            acts: &QuantizedRows,
            first: usize,
            count: usize,
            tile: &Tile<LANES>,
            y: *mut f32,
        ) {
            let (n, m) = (w.rows, acts.m);
            let mask: __mmask16 = if count == LANES { !0 } else { (1u16 << count) - 1 };
            let mut c = 0;
            while c < m {
                let cs = (m - c).min(ACT_ROWS);
                let out = y.add(c * n + first);
                match cs {
                    8 => rows::<8, OFFSET, SPB, MIN>(w, acts, c, tile, out, n, mask),
                    7 => rows::<7, OFFSET, SPB, MIN>(w, acts, c, tile, out, n, mask),
                    6 => rows::<6, OFFSET, SPB, MIN>(w, acts, c, tile, out, n, mask),
                    5 => rows::<5, OFFSET, SPB, MIN>(w, acts, c, tile, out, n, mask),
                    4 => rows::<4, OFFSET, SPB, MIN>(w, acts, c, tile, out, n, mask),
                    3 => rows::<3, OFFSET, SPB, MIN>(w, acts, c, tile, out, n, mask),
                    2 => rows::<2, OFFSET, SPB, MIN>(w, acts, c, tile, out, n, mask),
                    _ => rows::<1, OFFSET, SPB, MIN>(w, acts, c, tile, out, n, mask),
                }
                c += cs;
            }
        }

        /// `C` activation rows (from `c0`) × the tile's 16 weight rows over all blocks: per scale
        /// group (32 values, 16 for Q6_K) the integer dot products (`vpdpbusd`, unsigned weights ×
        /// signed activations, started from −offset·Σq_a), then × d_w·d_a into float sums, and the
        /// minima's m_w·s_a for the formats that have them.
        #[inline(always)]
        unsafe fn rows<const C: usize, const OFFSET: bool, const SPB: usize, const MIN: bool>(
            w: &BlockMatrix,
            acts: &QuantizedRows,
            c0: usize,
            tile: &Tile<LANES>,
            out: *mut f32,
            n: usize,
            mask: __mmask16,
        ) {
            let (k, nb) = (w.cols, w.blocks());
            let groups = 8 / SPB;
            let aq = acts.q.as_ptr().add(c0 * k);
            let mut acc = [_mm512_setzero_ps(); C];
            // The minima's terms apart, added at the end (llama.cpp's `hsum(acc) + summs`).
            let mut acc_min = [_mm512_setzero_ps(); C];
            for b in 0..nb {
                for h in 0..SPB {
                    let mut sums = [_mm512_setzero_si512(); C];
                    if OFFSET {
                        for (j, s) in sums.iter_mut().enumerate() {
                            *s = _mm512_set1_epi32(*acts.neg_offset_sum.get_unchecked(((c0 + j) * nb + b) * SPB + h));
                        }
                    }
                    for g in b * 8 + h * groups..b * 8 + (h + 1) * groups {
                        let wv = _mm512_loadu_si512(tile.q.as_ptr().add(g * LANES * 4).cast());
                        for (j, s) in sums.iter_mut().enumerate() {
                            let a = aq.add(j * k + g * 4).cast::<i32>().read_unaligned();
                            *s = _mm512_dpbusd_epi32(*s, wv, _mm512_set1_epi32(a));
                        }
                    }
                    let dw = _mm512_loadu_ps(tile.d.as_ptr().add((b * SPB + h) * LANES));
                    for (j, s) in sums.iter().enumerate() {
                        let scale = _mm512_mul_ps(dw, _mm512_set1_ps(*acts.d.get_unchecked((c0 + j) * nb + b)));
                        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(*s), scale, acc[j]);
                    }
                }
                if MIN {
                    let mv = _mm512_loadu_ps(tile.mins.as_ptr().add(b * LANES));
                    for (j, a) in acc_min.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(mv, _mm512_set1_ps(*acts.s.get_unchecked((c0 + j) * nb + b)), *a);
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                let a = if MIN { _mm512_add_ps(*a, acc_min[j]) } else { *a };
                _mm512_mask_storeu_ps(out.add(j * n), mask, a);
            }
        }
    }

    /// The AVX2 kernel: the AVX-512 one's arithmetic with what AVX2 has. `vpmaddubsw` multiplies
    /// unsigned weight bytes by signed activation bytes and adds pairs into saturating i16s;
    /// `vpmaddwd` by ones adds those pairs into the i32 lanes `vpdpbusd` would have given. Nothing
    /// saturates: activations are within ±127 and the unsigned weights of every format but Q8_0
    /// at most 63, so even two groups' pairs added in i16 stay within 4·63·127 = 32004. Q8_0's
    /// bytes (the i8 value + 128) would reach 2·255·127; its products take ggml's sign trick
    /// instead: |w| times the activation with w's sign (at most 2·128·127 = 32512), which is the
    /// exact Σ w·a, so its offset is not taken out afterwards. The integer sums are the AVX-512
    /// kernel's, and so, lane for lane, are the float sums.
    mod avx2 {
        use std::arch::x86_64::*;

        use super::super::{BlockFormat, BlockMatrix, QuantizedRows};
        use super::Tile;

        pub const LANES: usize = 8;
        /// 16 vector registers: C sums, C float sums and C minima's sums, two weight vectors.
        const ACT_ROWS: usize = 4;

        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn tile_product(tile: &mut Tile<LANES>, w: &BlockMatrix, acts: &QuantizedRows, first: usize, count: usize, y: *mut f32) {
            tile.fill(w, first, count);
            match w.format {
                BlockFormat::Q4_0 | BlockFormat::Q5_0 => tile_rows::<true, 1, false, false>(w, acts, first, count, tile, y),
                BlockFormat::Q8_0 => tile_rows::<false, 1, false, true>(w, acts, first, count, tile, y),
                BlockFormat::Q4_1 | BlockFormat::Q5_1 | BlockFormat::Q4K => tile_rows::<false, 1, true, false>(w, acts, first, count, tile, y),
                BlockFormat::Q6K => tile_rows::<true, 2, false, false>(w, acts, first, count, tile, y),
            }
        }

        #[target_feature(enable = "avx2,fma")]
        unsafe fn tile_rows<const OFFSET: bool, const SPB: usize, const MIN: bool, const SIGNED: bool>(
            w: &BlockMatrix,
            acts: &QuantizedRows,
            first: usize,
            count: usize,
            tile: &Tile<LANES>,
            y: *mut f32,
        ) {
            let (n, m) = (w.rows, acts.m);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(count as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            let mut c = 0;
            while c < m {
                let cs = (m - c).min(ACT_ROWS);
                let out = y.add(c * n + first);
                match cs {
                    4 => rows::<4, OFFSET, SPB, MIN, SIGNED>(w, acts, c, tile, out, n, mask),
                    3 => rows::<3, OFFSET, SPB, MIN, SIGNED>(w, acts, c, tile, out, n, mask),
                    2 => rows::<2, OFFSET, SPB, MIN, SIGNED>(w, acts, c, tile, out, n, mask),
                    _ => rows::<1, OFFSET, SPB, MIN, SIGNED>(w, acts, c, tile, out, n, mask),
                }
                c += cs;
            }
        }

        /// As the AVX-512 kernel's `rows`, two 4-value groups a step (a scale group has 8 or 4).
        #[inline(always)]
        unsafe fn rows<const C: usize, const OFFSET: bool, const SPB: usize, const MIN: bool, const SIGNED: bool>(
            w: &BlockMatrix,
            acts: &QuantizedRows,
            c0: usize,
            tile: &Tile<LANES>,
            out: *mut f32,
            n: usize,
            mask: __m256i,
        ) {
            let (k, nb) = (w.cols, w.blocks());
            let groups = 8 / SPB;
            let aq = acts.q.as_ptr().add(c0 * k);
            let ones = _mm256_set1_epi16(1);
            let flip = _mm256_set1_epi8(i8::MIN);
            let act = |j: usize, g: usize| _mm256_set1_epi32(aq.add(j * k + g * 4).cast::<i32>().read_unaligned());
            let mut acc = [_mm256_setzero_ps(); C];
            let mut acc_min = [_mm256_setzero_ps(); C];
            for b in 0..nb {
                for h in 0..SPB {
                    let mut sums = [_mm256_setzero_si256(); C];
                    if OFFSET {
                        for (j, s) in sums.iter_mut().enumerate() {
                            *s = _mm256_set1_epi32(*acts.neg_offset_sum.get_unchecked(((c0 + j) * nb + b) * SPB + h));
                        }
                    }
                    let start = b * 8 + h * groups;
                    for g in (start..start + groups).step_by(2) {
                        let w0 = _mm256_loadu_si256(tile.q.as_ptr().add(g * LANES * 4).cast());
                        let w1 = _mm256_loadu_si256(tile.q.as_ptr().add((g + 1) * LANES * 4).cast());
                        if SIGNED {
                            let (s0, s1) = (_mm256_xor_si256(w0, flip), _mm256_xor_si256(w1, flip));
                            let (u0, u1) = (_mm256_abs_epi8(s0), _mm256_abs_epi8(s1));
                            for (j, s) in sums.iter_mut().enumerate() {
                                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(u0, _mm256_sign_epi8(act(j, g), s0)), ones);
                                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(u1, _mm256_sign_epi8(act(j, g + 1), s1)), ones);
                                *s = _mm256_add_epi32(*s, _mm256_add_epi32(p0, p1));
                            }
                        } else {
                            for (j, s) in sums.iter_mut().enumerate() {
                                let pairs = _mm256_add_epi16(_mm256_maddubs_epi16(w0, act(j, g)), _mm256_maddubs_epi16(w1, act(j, g + 1)));
                                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(pairs, ones));
                            }
                        }
                    }
                    let dw = _mm256_loadu_ps(tile.d.as_ptr().add((b * SPB + h) * LANES));
                    for (j, s) in sums.iter().enumerate() {
                        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(*acts.d.get_unchecked((c0 + j) * nb + b)));
                        acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(*s), scale, acc[j]);
                    }
                }
                if MIN {
                    let mv = _mm256_loadu_ps(tile.mins.as_ptr().add(b * LANES));
                    for (j, a) in acc_min.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(mv, _mm256_set1_ps(*acts.s.get_unchecked((c0 + j) * nb + b)), *a);
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                let a = if MIN { _mm256_add_ps(*a, acc_min[j]) } else { *a };
                _mm256_maskstore_ps(out.add(j * n), mask, a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random matrix in `format`, built by packing random values the way the GGUF layout does.
    fn random_matrix(format: BlockFormat, rows: usize, cols: usize, seed: u64) -> BlockMatrix {
        matrix(format, rows, cols, seed, None)
    }

    /// [`random_matrix`] with every byte but the f16 scales (and minima) set to `byte` when given:
    /// 0xFF gives the largest unsigned values of each format (15, 31, 63), 0x00 and 0x7F Q8_0's
    /// −128 and 127.
    fn matrix(format: BlockFormat, rows: usize, cols: usize, seed: u64, byte: Option<u8>) -> BlockMatrix {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = (state >> 33) as u32;
            byte.map_or(v, |b| u32::from_le_bytes([b; 4]))
        };
        let mut data = Vec::new();
        let small_half = |v: u32| f16::from_f32(0.001 + (v % 1000) as f32 * 1e-5).to_le_bytes();
        if format.k_quant() {
            // Every byte random but the f16 scales (random bits could be NaN or infinite).
            for _ in 0..rows * (cols / QK_K) {
                let mut block: Vec<u8> = (0..format.block_bytes()).map(|_| next() as u8).collect();
                let at = if format == BlockFormat::Q4K { 0 } else { 208 };
                block[at..at + 2].copy_from_slice(&small_half(next()));
                if format == BlockFormat::Q4K {
                    block[2..4].copy_from_slice(&small_half(next()));
                }
                data.extend(block);
            }
            return BlockMatrix::new(format, rows, cols, data).unwrap();
        }
        for _ in 0..rows * (cols / QK) {
            let d = f16::from_f32(0.001 + (next() % 1000) as f32 * 1e-5);
            data.extend(d.to_le_bytes());
            if format.has_min() {
                data.extend(f16::from_f32(-((next() % 1000) as f32) * 1e-4).to_le_bytes());
            }
            match format {
                BlockFormat::Q4_0 | BlockFormat::Q4_1 => (0..16).for_each(|_| data.push(next() as u8)),
                BlockFormat::Q5_0 | BlockFormat::Q5_1 => {
                    data.extend(next().to_le_bytes());
                    (0..16).for_each(|_| data.push(next() as u8));
                }
                BlockFormat::Q8_0 => (0..32).for_each(|_| data.push(next() as u8)),
                BlockFormat::Q4K | BlockFormat::Q6K => unreachable!(),
            }
        }
        BlockMatrix::new(format, rows, cols, data).unwrap()
    }

    fn random_acts(m: usize, k: usize) -> Vec<f32> {
        (0..m * k).map(|i| ((i * 7919 % 2003) as f32 / 1001.0 - 1.0) * if i % 97 == 0 { 8.0 } else { 1.0 }).collect()
    }

    const FORMATS: [BlockFormat; 7] = [
        BlockFormat::Q4_0,
        BlockFormat::Q4_1,
        BlockFormat::Q5_0,
        BlockFormat::Q5_1,
        BlockFormat::Q8_0,
        BlockFormat::Q4K,
        BlockFormat::Q6K,
    ];

    /// A row length of `blocks` of the format's blocks (K-quants: 256 values a block).
    fn cols(format: BlockFormat, blocks: usize) -> usize {
        blocks * format.block_values()
    }

    #[test]
    fn unpacking_matches_candles_dequantization() {
        // candle's dequantizers follow ggml's reference C; ours must give the same values.
        use candle_core::quantized::{GgmlDType, QTensor};
        let dtypes = [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K];
        for (format, dtype) in FORMATS.iter().zip(dtypes) {
            assert_eq!(BlockFormat::from_ggml(dtype), Some(*format));
            let k = cols(*format, 2);
            let w = random_matrix(*format, 3, k, 7);
            let bytes = (*w.data).as_ref();
            let q = QTensor::new(
                candle_core::quantized::QStorage::from_data(std::borrow::Cow::Borrowed(bytes), &candle_core::Device::Cpu, dtype).unwrap(),
                (3, k),
            )
            .unwrap();
            let want = q.dequantize(&candle_core::Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            for r in 0..3 {
                assert_eq!(w.dequantize_row(r), want[r], "{format:?} row {r}");
            }
        }
    }

    #[test]
    fn quantized_products_are_close_to_the_exact_product() {
        // The activations' 8-bit rounding costs at most ~0.4% of Σ|w·x| per block.
        for format in FORMATS {
            let (n, k, m) = (9, cols(format, 3), 5);
            let w = random_matrix(format, n, k, 11);
            let x = random_acts(m, k);
            let mut y = vec![0f32; m * n];
            w.matmul(&x, m, &mut y);
            for r in 0..n {
                let row = w.dequantize_row(r);
                for c in 0..m {
                    let xs = &x[c * k..][..k];
                    let exact: f32 = row.iter().zip(xs).map(|(a, b)| a * b).sum();
                    let scale: f32 = row.iter().zip(xs).map(|(a, b)| (a * b).abs()).sum();
                    assert!((y[c * n + r] - exact).abs() <= 0.01 * scale, "{format:?} ({r},{c}): {} vs {exact}", y[c * n + r]);
                }
            }
        }
    }

    /// The vector kernels this CPU runs: the best one and every lesser one.
    #[cfg(target_arch = "x86_64")]
    fn kernels_here() -> Vec<Kernel> {
        match BlockMatrix::kernel() {
            Some(Kernel::Avx512Vnni) => vec![Kernel::Avx512Vnni, Kernel::Avx2],
            Some(Kernel::Avx2) => vec![Kernel::Avx2],
            None => vec![],
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_kernels_match_the_portable_arithmetic() {
        // Same integer products and scales; only the float summation order may differ. Sizes
        // cover whole tiles, partial ones (1 to 7 activation rows left, fewer weight rows than
        // a tile's lanes) and several tiles; the extreme matrices have every value at its
        // format's largest unsigned value (0xFF) or Q8_0's −128 and 127, against activations at
        // ±127, where the AVX2 kernel's 16-bit pair sums are closest to saturating. Where more
        // than one kernel runs, they must agree to the bit.
        let kernels = kernels_here();
        if kernels.is_empty() {
            // Then the models never use these kernels here (weights.rs keeps candle's), so there
            // is nothing in use to test; say so rather than pass quietly.
            eprintln!("NOT RUN on this CPU: no AVX2/FMA/F16C, so the block kernels are not used here");
            return;
        }
        let alternating = |m: usize, k: usize| (0..m * k).map(|i| if (i / 3) % 2 == 0 { 5.0 } else { -5.0 }).collect::<Vec<f32>>();
        for format in FORMATS {
            let cases = [(4, 1, 4, None), (70, 18, 9, None), (37, 5, 1, None), (37, 5, 2, None), (70, 18, 7, None), (21, 8, 5, Some(0xFF)), (21, 8, 5, Some(0x00)), (21, 8, 5, Some(0x7F))];
            for (n, blocks, m, byte) in cases {
                let k = cols(format, blocks);
                let w = matrix(format, n, k, 3, byte);
                let x = if byte.is_some() { alternating(m, k) } else { random_acts(m, k) };
                let acts = QuantizedRows::new(&x, m, k, format);
                let mut reference = vec![0f32; m * n];
                w.matmul_portable(&acts, &mut reference);
                // The sums' rounding is relative to the terms summed, not to the result: Q4_K's
                // minimum terms cancel most of its products (a result 100× smaller than its terms).
                let rows: Vec<Vec<f32>> = (0..n).map(|r| w.dequantize_row(r)).collect();
                let mut first: Option<Vec<f32>> = None;
                for &kernel in &kernels {
                    let mut fast = vec![0f32; m * n];
                    x86::matmul(kernel, &w, &acts, &mut fast);
                    let case = format!("{kernel:?} {format:?} {n}x{k}, m={m}, bytes {byte:?}");
                    for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
                        let (c, r) = (i / n, i % n);
                        let terms: f32 = rows[r].iter().zip(&x[c * k..][..k]).map(|(w, x)| (w * x).abs()).sum();
                        assert!((a - b).abs() <= 1e-6 * (1.0 + terms), "{case}, at {i}: {a} vs {b} (terms {terms})");
                    }
                    match &first {
                        None => first = Some(fast),
                        Some(other) => assert!(other.iter().zip(&fast).all(|(a, b)| a.to_bits() == b.to_bits()), "{case}: differs from {:?}", kernels[0]),
                    }
                }
            }
        }
    }

    #[test]
    fn activations_round_like_ggml() {
        // 127/max scaling, ties to even, f16 scale; Q8_1's sum scaled by the unrounded d.
        let mut x = vec![0f32; 32];
        x[0] = 127.0; // the max: scale 1
        x[1] = 0.5; // → 0 (even)
        x[2] = 1.5; // → 2
        x[3] = -1.5; // → −2
        x[4] = 2.5; // → 2
        x[5] = 0.1;
        let rows = QuantizedRows::new(&x, 1, 32, BlockFormat::Q4_1);
        assert_eq!(&rows.q[..6], &[127, 0, 2, -2, 2, 0]);
        assert_eq!(rows.d[0], 1.0);
        assert_eq!(rows.s[0], 129.0);
        assert_eq!(QuantizedRows::new(&x, 1, 32, BlockFormat::Q8_0).neg_offset_sum[0], -128 * 129);
        // A scale f16 cannot hold exactly is stored rounded, as ggml stores it.
        let y: Vec<f32> = x.iter().map(|v| v / 300.0).collect();
        let rows = QuantizedRows::new(&y, 1, 32, BlockFormat::Q8_0);
        assert_eq!(rows.d[0], f16::from_f32(127.0 / 300.0 / 127.0).to_f32());
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_quantization_of_activations_is_the_portable_one() {
        if !x86::avx512() {
            eprintln!("NOT RUN on this CPU: no AVX-512, so the activations' vector quantization is not used here");
            return;
        }
        // Random blocks, an all-zero one, ties (x.5 after scaling), a max repeated with both signs.
        let mut blocks: Vec<Vec<f32>> = (0..64).map(|s| random_acts(1, 256).iter().map(|v| v * (1.0 + s as f32)).rev().collect()).collect();
        blocks.push(vec![0.0; 256]);
        let mut ties = vec![0.5f32; 256];
        ties[7] = -127.0;
        ties[9] = 127.0;
        (0..256).step_by(3).for_each(|i| ties[i] = 1.5 + i as f32 % 5.0);
        blocks.push(ties);
        for (n, x) in blocks.iter().enumerate() {
            let (mut fast, mut slow) = (vec![0i8; 256], vec![0i8; 256]);
            let (d_fast, d_slow) = unsafe { (x86::quantize_q8_k(x, &mut fast), quantize_q8_k_portable(x, &mut slow)) };
            assert_eq!((d_fast.to_bits(), &fast), (d_slow.to_bits(), &slow), "Q8_K block {n}");
            for b in 0..8 {
                let (xs, f, s) = (&x[32 * b..][..32], &mut fast[32 * b..][..32], &mut slow[32 * b..][..32]);
                let (fast_ds, slow_ds) = unsafe { (x86::quantize_q8(xs, f), quantize_q8_portable(xs, s)) };
                assert_eq!((fast_ds.0.to_bits(), fast_ds.1, &*f), (slow_ds.0.to_bits(), slow_ds.1, &*s), "Q8_0 block {n}/{b}");
            }
        }
    }

    #[test]
    fn k_quant_activations_round_like_ggml() {
        // quantize_row_q8_K_ref: iscale = −127/max with max the value of largest magnitude (its
        // sign kept), ties to even, the f32 scale 1/iscale kept as is; sums per 16 values.
        let mut x = vec![0f32; 256];
        x[0] = -127.0; // the max: iscale 1
        x[1] = 0.5; // → 0 (even)
        x[2] = 1.5; // → 2
        x[3] = -1.5; // → −2
        x[4] = 2.5; // → 2
        x[20] = 3.0;
        let rows = QuantizedRows::new(&x, 1, 256, BlockFormat::Q6K);
        assert_eq!(&rows.q[..6], &[-127, 0, 2, -2, 2, 0]);
        assert_eq!(rows.d, vec![1.0; 8], "one scale for the 256 values");
        assert_eq!(rows.s[0], -125.0 + 3.0);
        assert_eq!(&rows.neg_offset_sum[..3], &[-32 * -125, -32 * 3, 0], "offset sums per 16 values");
        // A positive max flips the signs (iscale −1), as ggml's does.
        let flipped: Vec<f32> = x.iter().map(|v| -v).collect();
        let rows = QuantizedRows::new(&flipped, 1, 256, BlockFormat::Q4K);
        assert_eq!(&rows.q[..6], &[-127, 0, 2, -2, 2, 0]);
        assert_eq!(rows.d[0], -1.0);
        assert!(!rows.serve(BlockFormat::Q6K) && !rows.serve(BlockFormat::Q4_1) && rows.serve(BlockFormat::Q4K));
        // A scale that is no power of two stays f32 (Q8_K does not round it to f16).
        let y: Vec<f32> = x.iter().map(|v| v / 300.0).collect();
        let rows = QuantizedRows::new(&y, 1, 256, BlockFormat::Q4K);
        assert_eq!(rows.d[0], 1.0 / (-127.0 / (-127.0 / 300.0)));
    }

    #[test]
    fn rejects_sizes_that_do_not_fit() {
        assert!(BlockMatrix::new(BlockFormat::Q4K, 2, 128, vec![0; 144]).is_none());
        assert!(BlockMatrix::new(BlockFormat::Q6K, 1, 256, vec![0; 210]).is_some());
        assert!(BlockMatrix::new(BlockFormat::Q4_1, 2, 48, vec![0; 60]).is_none());
        assert!(BlockMatrix::new(BlockFormat::Q4_1, 2, 64, vec![0; 79]).is_none());
    }
}
