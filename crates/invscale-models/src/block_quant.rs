//! The CPU matmul for GGUF matrices stored in 32-value blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0),
//! with llama.cpp's arithmetic and a prompt-sized (many rows at once) loop.
//!
//! Why our own: candle's kernels for Q4_1 and Q5_x are scalar, and its packed fast paths need
//! rows of a multiple of 256 values, which the small models of this project (hidden sizes 576,
//! 640, 896) do not have. llama.cpp quantizes each 32-value block of the activations to 8 bits
//! (`Q8_0`; `Q8_1` with its scaled sum for the formats with a minimum) and multiplies blocks in
//! integers; so does this kernel, giving the same integer dot products and the same scales:
//!
//!   y = Σ_blocks d_w · d_a · Σ_j (q_w[j] − offset) · q_a[j]   (+ m_w · s_a for Q4_1 / Q5_1)
//!
//! Only the order of the float sums differs. Weights stay in their file format (memory as the
//! file); a tile of rows is unpacked to one byte per value when a matmul reaches it and used for
//! every activation row, so unpacking costs nothing next to the products.
//!
//! On x86-64 with AVX-512 VNNI (`vpdpbusd` on 256-bit vectors) the products run 4 weight rows ×
//! 4 activation rows at a time; elsewhere [`BlockMatrix::kernel_available`] is false and the
//! caller keeps candle's kernel.

use half::f16;

const QK: usize = 32;

/// A GGUF block format this kernel multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockFormat {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
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
            _ => return None,
        })
    }

    /// Bytes per block in the file: f16 scale, [f16 min], [u32 high bits], packed values.
    fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4_1 => 20,
            BlockFormat::Q5_0 => 22,
            BlockFormat::Q5_1 => 24,
            BlockFormat::Q8_0 => 34,
        }
    }

    /// What the stored unsigned value is offset by (value = d · (q − offset) [+ m]).
    fn offset(self) -> i32 {
        match self {
            BlockFormat::Q4_0 => 8,
            BlockFormat::Q5_0 => 16,
            BlockFormat::Q8_0 => 128,
            BlockFormat::Q4_1 | BlockFormat::Q5_1 => 0,
        }
    }

    fn has_min(self) -> bool {
        matches!(self, BlockFormat::Q4_1 | BlockFormat::Q5_1)
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
        let fits = cols.is_multiple_of(QK) && data.as_ref().len() == rows * (cols / QK) * format.block_bytes();
        fits.then(|| BlockMatrix { format, rows, cols, data: Box::new(data) })
    }

    /// Whether this machine has the vector instructions the kernel is written for.
    pub fn kernel_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            x86::available()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    pub fn format(&self) -> BlockFormat {
        self.format
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn blocks(&self) -> usize {
        self.cols / QK
    }

    /// Rows `first..first + count` as one unsigned byte per value (`q`, row after row), with
    /// each block's scale (`d`) and minimum (`m`, zero for the offset formats).
    #[inline(always)]
    fn unpack(&self, first: usize, count: usize, q: &mut [u8], d: &mut [f32], m: &mut [f32]) {
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
                }
            }
        }
    }

    /// Row `r` in f32 (`d · (q − offset) + m`), for tests and checks.
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        let nb = self.blocks();
        let (mut q, mut d, mut m) = (vec![0u8; self.cols], vec![0f32; nb], vec![0f32; nb]);
        self.unpack(r, 1, &mut q, &mut d, &mut m);
        let offset = self.format.offset();
        q.iter().enumerate().map(|(i, &v)| d[i / QK] * (i32::from(v) - offset) as f32 + m[i / QK]).collect()
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
        if x86::available() {
            return x86::matmul(self, acts, y);
        }
        self.matmul_portable(acts, y);
    }

    /// The same arithmetic in plain Rust: the reference the vector kernel is tested against.
    pub fn matmul_portable(&self, acts: &QuantizedRows, y: &mut [f32]) {
        let (nb, n) = (self.blocks(), self.rows);
        let offset = self.format.offset();
        let (mut q, mut d, mut mins) = (vec![0u8; self.cols], vec![0f32; nb], vec![0f32; nb]);
        for r in 0..n {
            self.unpack(r, 1, &mut q, &mut d, &mut mins);
            for c in 0..acts.m {
                let mut sum = 0f32;
                for b in 0..nb {
                    let a = &acts.q[(c * nb + b) * QK..][..QK];
                    let w = &q[b * QK..][..QK];
                    let dot: i32 = w.iter().zip(a).map(|(&w, &a)| (i32::from(w) - offset) * i32::from(a)).sum();
                    sum += d[b] * acts.d[c * nb + b] * dot as f32 + mins[b] * acts.s[c * nb + b];
                }
                y[c * n + r] = sum;
            }
        }
    }
}

/// Activation rows quantized to 8 bits per 32-value block (llama.cpp's `Q8_0` / `Q8_1`).
pub struct QuantizedRows {
    m: usize,
    /// The weight format's offset that `neg_offset_sum` was made for.
    offset: i32,
    /// Values, row after row.
    q: Vec<i8>,
    /// Per block: the scale as llama.cpp stores it (f16).
    d: Vec<f32>,
    /// Per block: `Q8_1`'s scaled sum `d · Σq` (f16), for formats with a minimum.
    s: Vec<f32>,
    /// Per block: `−offset · Σq`, the weights' offset taken out in integers.
    neg_offset_sum: Vec<i32>,
}

impl QuantizedRows {
    /// Whether these activations serve a matrix in `format` (any format with the same offset).
    pub fn serve(&self, format: BlockFormat) -> bool {
        self.offset == format.offset()
    }

    pub fn new(x: &[f32], m: usize, k: usize, format: BlockFormat) -> QuantizedRows {
        let nb = k / QK;
        let mut out = QuantizedRows {
            m,
            offset: format.offset(),
            q: vec![0; m * k],
            d: vec![0.0; m * nb],
            s: vec![0.0; m * nb],
            neg_offset_sum: vec![0; m * nb],
        };
        let offset = out.offset;
        struct Out(*mut i8, *mut f32, *mut f32, *mut i32);
        unsafe impl Sync for Out {}
        let dst = Out(out.q.as_mut_ptr(), out.d.as_mut_ptr(), out.s.as_mut_ptr(), out.neg_offset_sum.as_mut_ptr());
        // Rows in parallel on candle's pool (a prompt's activations are ~10% of a matmul's time
        // on one thread).
        candle_core::utils::barrier_pool().execute_chunked(m, |rows| {
            let dst = &dst;
            for i in rows.start * nb..rows.end * nb {
                let xs = &x[i * QK..][..QK];
                // SAFETY: block i of the outputs belongs to row i / nb alone, and each row to
                // one chunk.
                let qs = unsafe { std::slice::from_raw_parts_mut(dst.0.add(i * QK), QK) };
                let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
                // ggml's x86 quantize_row_q8_0/q8_1: d = max/127, values × 127/max rounded to
                // nearest-even, d (and s) stored as f16.
                let d = amax / 127.0;
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                let mut sum = 0i32;
                for (q, v) in qs.iter_mut().zip(xs) {
                    // Round to nearest, ties to even, as `_mm256_round_ps`: adding and removing
                    // 1.5·2^23 does it for |x| < 2^22 (ours are ≤ 127) in a few vector
                    // instructions, where `round_ties_even` is a libm call per value on
                    // baseline x86-64.
                    const SHIFT: f32 = 12_582_912.0;
                    let r = ((v * id + SHIFT) - SHIFT) as i32;
                    *q = r as i8;
                    sum += r;
                }
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

// The module is one kernel over raw pointers; every offset stays inside the slices that
// `matmul` sized, so the unsafe functions' bodies are not split into unsafe blocks.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_op_in_unsafe_fn)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockMatrix, QK, QuantizedRows};

    pub fn available() -> bool {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("f16c")
        })
    }

    /// Rows of weights unpacked per tile: enough to reuse each activation row many times, few
    /// enough to stay in L2 (the widest matrices have 4864-value rows).
    const TILE_ROWS: usize = 32;

    struct Dst(*mut f32);
    unsafe impl Send for Dst {}
    unsafe impl Sync for Dst {}

    pub fn matmul(w: &BlockMatrix, acts: &QuantizedRows, y: &mut [f32]) {
        let (n, k, nb) = (w.rows, w.cols, w.blocks());
        let dst = Dst(y.as_mut_ptr());
        let tiles = n.div_ceil(TILE_ROWS);
        // candle's own worker pool, not rayon's: candle runs its elementwise ops there and its
        // workers spin between ops; two pools on two cores steal each other's time (measured:
        // every op of the forward pass ~50% slower with the kernel on rayon).
        candle_core::utils::barrier_pool().execute_chunked(tiles, |range| {
            let (mut q, mut d, mut mins) = (vec![0u8; TILE_ROWS * k], vec![0f32; TILE_ROWS * nb], vec![0f32; TILE_ROWS * nb]);
            for tile in range {
                let first = tile * TILE_ROWS;
                let count = TILE_ROWS.min(n - first);
                // SAFETY: the features were detected.
                unsafe { unpack_vectorised(w, first, count, &mut q, &mut d, &mut mins) };
                let dst = &dst;
                // SAFETY: the features were detected; every (row, column) of `y` is written by
                // exactly one tile, so tiles running at once never touch the same element.
                unsafe {
                    if w.format.offset() != 0 {
                        tile_rows::<true>(w, acts, first, count, &q, &d, &mins, dst.0)
                    } else {
                        tile_rows::<false>(w, acts, first, count, &q, &d, &mins, dst.0)
                    }
                };
            }
        });
    }

    /// [`BlockMatrix::unpack`] compiled for the vector units the kernel runs on (its byte loops
    /// vectorise; for one-row products, the LM head of a 262k vocabulary, unpacking is the cost).
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,f16c")]
    unsafe fn unpack_vectorised(w: &BlockMatrix, first: usize, count: usize, q: &mut [u8], d: &mut [f32], m: &mut [f32]) {
        w.unpack(first, count, q, d, m)
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512vnni")]
    unsafe fn tile_rows<const OFFSET: bool>(
        w: &BlockMatrix,
        acts: &QuantizedRows,
        first: usize,
        count: usize,
        q: &[u8],
        d: &[f32],
        mins: &[f32],
        y: *mut f32,
    ) {
        let (n, k, nb, m) = (w.rows, w.cols, w.blocks(), acts.m);
        let has_min = w.format.has_min();
        let mut c = 0;
        while c < m {
            let cs = (m - c).min(4);
            let mut r = 0;
            while r < count {
                let rs = (count - r).min(4);
                let mut out = [[0f32; 4]; 4];
                let wp = Operand { q: q.as_ptr().add(r * k), d: d.as_ptr().add(r * nb) };
                let ap = Acts {
                    q: acts.q.as_ptr().add(c * k).cast(),
                    d: acts.d.as_ptr().add(c * nb),
                    off: acts.neg_offset_sum.as_ptr().add(c * nb),
                };
                // Fewer than 4 activation rows (the LM head on a prompt's last row): 4 weight
                // rows at a time still, 4 independent accumulators instead of one chain.
                match (rs, cs) {
                    (4, 4) => tile::<4, 4, OFFSET>(nb, k, wp, ap, &mut out),
                    (4, 3) => tile::<4, 3, OFFSET>(nb, k, wp, ap, &mut out),
                    (4, 2) => tile::<4, 2, OFFSET>(nb, k, wp, ap, &mut out),
                    (4, 1) => tile::<4, 1, OFFSET>(nb, k, wp, ap, &mut out),
                    _ => {
                    for (i, row) in out.iter_mut().enumerate().take(rs) {
                        for (j, cell) in row.iter_mut().enumerate().take(cs) {
                            let mut one = [[0f32; 4]; 4];
                            let wp = Operand { q: wp.q.add(i * k), d: wp.d.add(i * nb) };
                            let ap = Acts { q: ap.q.add(j * k), d: ap.d.add(j * nb), off: ap.off.add(j * nb) };
                            tile::<1, 1, OFFSET>(nb, k, wp, ap, &mut one);
                            *cell = one[0][0];
                        }
                    }
                    }
                }
                for i in 0..rs {
                    for j in 0..cs {
                        let mut v = out[i][j];
                        if has_min {
                            v += dot_f32(&mins[(r + i) * nb..][..nb], &acts.s[(c + j) * nb..][..nb]);
                        }
                        *y.add((c + j) * n + first + r + i) = v;
                    }
                }
                r += rs;
            }
            c += cs;
        }
    }

    #[derive(Clone, Copy)]
    struct Operand {
        q: *const u8,
        d: *const f32,
    }

    #[derive(Clone, Copy)]
    struct Acts {
        q: *const i8,
        d: *const f32,
        off: *const i32,
    }

    /// `R` weight rows × `C` activation rows over all blocks: per block the integer dot product
    /// (`vpdpbusd`, unsigned weights × signed activations, started from −offset·Σq_a), then
    /// scaled by d_w·d_a into float accumulators.
    #[inline(always)]
    unsafe fn tile<const R: usize, const C: usize, const OFFSET: bool>(
        nb: usize,
        k: usize,
        w: Operand,
        a: Acts,
        out: &mut [[f32; 4]; 4],
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        for b in 0..nb {
            let mut wv = [_mm256_setzero_si256(); R];
            for (r, v) in wv.iter_mut().enumerate() {
                *v = _mm256_loadu_si256(w.q.add(r * k + b * QK).cast());
            }
            for c in 0..C {
                let av = _mm256_loadu_si256(a.q.add(c * k + b * QK).cast());
                let init = if OFFSET {
                    _mm256_zextsi128_si256(_mm_cvtsi32_si128(*a.off.add(c * nb + b)))
                } else {
                    _mm256_setzero_si256()
                };
                let da = _mm256_set1_ps(*a.d.add(c * nb + b));
                for r in 0..R {
                    let p = _mm256_dpbusd_epi32(init, wv[r], av);
                    let scale = _mm256_mul_ps(_mm256_set1_ps(*w.d.add(r * nb + b)), da);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc[r][c]);
                }
            }
        }
        for r in 0..R {
            for c in 0..C {
                out[r][c] = hsum(acc[r][c]);
            }
        }
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[inline(always)]
    unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let chunks = a.len() / 8;
        for i in 0..chunks {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i * 8)), _mm256_loadu_ps(b.as_ptr().add(i * 8)), acc);
        }
        let mut s = hsum(acc);
        for i in chunks * 8..a.len() {
            s += a[i] * b[i];
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random matrix in `format`, built by packing random values the way the GGUF layout does.
    fn random_matrix(format: BlockFormat, rows: usize, cols: usize, seed: u64) -> BlockMatrix {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let nb = cols / QK;
        let mut data = Vec::new();
        for _ in 0..rows * nb {
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
            }
        }
        BlockMatrix::new(format, rows, cols, data).unwrap()
    }

    fn random_acts(m: usize, k: usize) -> Vec<f32> {
        (0..m * k).map(|i| ((i * 7919 % 2003) as f32 / 1001.0 - 1.0) * if i % 97 == 0 { 8.0 } else { 1.0 }).collect()
    }

    const FORMATS: [BlockFormat; 5] =
        [BlockFormat::Q4_0, BlockFormat::Q4_1, BlockFormat::Q5_0, BlockFormat::Q5_1, BlockFormat::Q8_0];

    #[test]
    fn unpacking_matches_candles_dequantization() {
        // candle's dequantizers follow ggml's reference C; ours must give the same values.
        use candle_core::quantized::{GgmlDType, QTensor};
        for (format, dtype) in FORMATS.iter().zip([GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1, GgmlDType::Q8_0]) {
            let w = random_matrix(*format, 3, 64, 7);
            let bytes = (*w.data).as_ref();
            let q = QTensor::new(
                candle_core::quantized::QStorage::from_data(std::borrow::Cow::Borrowed(bytes), &candle_core::Device::Cpu, dtype).unwrap(),
                (3, 64),
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
            let (n, k, m) = (9, 96, 5);
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

    #[test]
    fn vector_kernel_matches_the_portable_arithmetic() {
        // Same integer products and scales; only the float summation order may differ. Sizes
        // cover whole 4×4 tiles, 4×1, 4×2 and 4×3 ones (1 to 3 activation rows left), partial
        // ones and more than one 32-row tile.
        if !BlockMatrix::kernel_available() {
            // Then the models never use this kernel here (weights.rs keeps candle's), so there is
            // nothing in use to test; say so rather than pass quietly.
            eprintln!("NOTE: no AVX-512 VNNI on this CPU: the block kernel is not used here and not tested");
            return;
        }
        for format in FORMATS {
            for (n, k, m) in [(4, 32, 4), (70, 576, 9), (37, 160, 1), (37, 160, 2), (70, 576, 7)] {
                let w = random_matrix(format, n, k, 3);
                let x = random_acts(m, k);
                let acts = QuantizedRows::new(&x, m, k, format);
                let (mut fast, mut reference) = (vec![0f32; m * n], vec![0f32; m * n]);
                w.matmul(&x, m, &mut fast);
                w.matmul_portable(&acts, &mut reference);
                for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{format:?} {n}x{k}, m={m}, at {i}: {a} vs {b}");
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
    fn rejects_sizes_that_do_not_fit() {
        assert!(BlockMatrix::new(BlockFormat::Q4_1, 2, 48, vec![0; 60]).is_none());
        assert!(BlockMatrix::new(BlockFormat::Q4_1, 2, 64, vec![0; 79]).is_none());
    }
}
