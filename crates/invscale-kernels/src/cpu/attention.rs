//! Attention on the CPU in one fused pass: for each head and tile of query rows, the scores
//! against the keys the tile may see, an f32 softmax and the weighted sum of the values, in
//! buffers that stay in the core's cache. The unfused path (candle's batched products, a scale,
//! a mask add, a softmax, each a pass over `[heads, rows, keys]` tensors, with libm's `expf`)
//! took a third of a long prompt's forward pass.
//!
//! Exact to f32 rounding: the same products, in another order, and an `exp` within 2 ulp
//! (Cephes' polynomial) where the unfused path calls libm. Two vector paths, AVX-512 (head sizes
//! a multiple of 32) and AVX2 (a multiple of 16), that give the same bits: every score and
//! output is one accumulator summed in order, and a row's sum of exponentials adds 16 lanes in
//! one fixed order on both. Other CPUs and head sizes keep the unfused path.

/// Query rows a tile holds (their scores are one `ROWS × keys` buffer).
const ROWS: usize = 8;
/// Keys a score micro-tile covers: two 16-wide vectors, so 8 × 2 accumulators in registers.
const KEYS: usize = 32;

/// Sizes of one block's attention.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub heads: usize,
    pub kv_heads: usize,
    /// Query rows.
    pub rows: usize,
    pub keys: usize,
    pub head_dim: usize,
}

/// The fused kernel's vector paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// AVX-512F (and FMA): heads of a multiple of 32 values.
    Avx512,
    /// AVX2, FMA and F16C: heads of a multiple of 16 values.
    Avx2,
}

impl AttentionKernel {
    /// Whether this CPU runs `self` on heads of `head_dim` values.
    pub fn runs(self, head_dim: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                AttentionKernel::Avx512 => head_dim.is_multiple_of(32) && crate::cpu::exp::avx512_available(),
                AttentionKernel::Avx2 => head_dim.is_multiple_of(16) && crate::cpu::exp::avx2_available() && is_x86_feature_detected!("f16c"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = head_dim;
            false
        }
    }

    /// The fastest path this CPU runs on heads of `head_dim` values (`INVSCALE_ATTENTION=avx2`:
    /// the AVX2 one, the same results); `None`: the caller keeps the unfused path.
    pub fn detect(head_dim: usize) -> Option<AttentionKernel> {
        static ASKED_AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let avx2_only = *ASKED_AVX2.get_or_init(|| std::env::var("INVSCALE_ATTENTION").is_ok_and(|v| v == "avx2"));
        [AttentionKernel::Avx512, AttentionKernel::Avx2]
            .into_iter()
            .filter(|k| !(avx2_only && *k == AttentionKernel::Avx512))
            .find(|k| k.runs(head_dim))
    }
}

/// Whether this CPU runs the fused kernel for heads of `head_dim` values (x86-64 with AVX-512F
/// and `head_dim` a multiple of 32, or AVX2 and a multiple of 16); elsewhere the caller keeps
/// the unfused path.
pub fn available(head_dim: usize) -> bool {
    AttentionKernel::detect(head_dim).is_some()
}

/// `softmax(q kᵀ · scale + mask) v` with grouped-query heads. `q: [heads, rows, d]`,
/// `k, v: [kv_heads, keys, d]`, `mask: [rows, keys]` of 0 and -inf (every row opens at least
/// one key). Returns `[rows, heads·d]`. Runs on candle's worker pool.
///
/// `f16_kv`: llama.cpp's arithmetic (its CPU path without flash attention): keys and values
/// are held in f16 (its KV cache), the queries rounded to f16 for the product with the keys,
/// and the normalised probabilities rounded to f16 for the product with the values; sums in
/// f32. The quantized path uses it, to score as llama.cpp does.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], mask: &[f32], dims: Dims, scale: f32, f16_kv: bool) -> Vec<f32> {
    let kernel = AttentionKernel::detect(dims.head_dim).expect("the fused attention kernel needs AVX-512 (heads of a multiple of 32 values) or AVX2 (of 16)");
    attention_with(kernel, q, k, v, mask, dims, scale, f16_kv)
}

/// [`attention`] on a given path (which must [`run`](AttentionKernel::runs) here).
#[allow(clippy::too_many_arguments)]
pub fn attention_with(kernel: AttentionKernel, q: &[f32], k: &[f32], v: &[f32], mask: &[f32], dims: Dims, scale: f32, f16_kv: bool) -> Vec<f32> {
    let Dims { heads, kv_heads, rows, keys, head_dim: d } = dims;
    assert_eq!(q.len(), heads * rows * d);
    assert_eq!(k.len(), kv_heads * keys * d);
    assert_eq!(v.len(), k.len());
    assert_eq!(mask.len(), rows * keys);
    assert!(kernel.runs(d), "{kernel:?} attention does not run here on heads of {d} values");
    // Keys transposed, `[kv_heads, d, padded]`, zero-padded to whole micro-tiles: a score
    // micro-tile then reads 32 consecutive keys of one dimension.
    let padded = keys.next_multiple_of(KEYS);
    let mut kt = vec![0f32; kv_heads * d * padded];
    let (q, v) = if f16_kv {
        let (mut q, mut v) = (q.to_vec(), v.to_vec());
        // SAFETY: `runs` checked the kernel's features.
        unsafe {
            round_to_f16(kernel, &mut q);
            round_to_f16(kernel, &mut v);
        }
        (std::borrow::Cow::Owned(q), std::borrow::Cow::Owned(v))
    } else {
        (std::borrow::Cow::Borrowed(q), std::borrow::Cow::Borrowed(v))
    };
    let (q, v) = (&*q, &*v);
    for h in 0..kv_heads {
        for j in 0..keys {
            for c in 0..d {
                kt[(h * d + c) * padded + j] = k[(h * keys + j) * d + c];
            }
        }
    }
    if f16_kv {
        // SAFETY: `runs` checked the kernel's features.
        unsafe { round_to_f16(kernel, &mut kt) };
    }
    // Each tile's open keys: from the first key any of its rows sees to the last.
    let tiles = rows.div_ceil(ROWS);
    let spans: Vec<(usize, usize)> = (0..tiles)
        .map(|t| {
            let (mut lo, mut hi) = (keys, 0);
            for r in t * ROWS..(t * ROWS + ROWS).min(rows) {
                let row = &mask[r * keys..(r + 1) * keys];
                if let Some(first) = row.iter().position(|&m| m == 0.0) {
                    lo = lo.min(first);
                    hi = hi.max(keys - row.iter().rev().position(|&m| m == 0.0).expect("an open key"));
                }
            }
            assert!(lo < hi, "a row of the mask opens no key");
            (lo, hi)
        })
        .collect();
    let mut out = vec![0f32; rows * heads * d];
    struct Out(*mut f32);
    unsafe impl Sync for Out {}
    let dst = Out(out.as_mut_ptr());
    let rep = heads / kv_heads;
    candle_core::utils::barrier_pool().execute_chunked(heads * tiles, |items| {
        let dst = &dst;
        let mut scores = vec![0f32; ROWS * padded];
        let mut acc = vec![0f32; ROWS * d];
        // The tile's queries, zero rows after the last: the score loops always run ROWS rows
        // (fully unrolled, their accumulators in registers).
        let mut qs = vec![0f32; ROWS * d];
        for item in items {
            let (h, t) = (item / tiles, item % tiles);
            let first_row = t * ROWS;
            let n = ROWS.min(rows - first_row);
            let kv = h / rep;
            qs[..n * d].copy_from_slice(&q[(h * rows + first_row) * d..(h * rows + first_row + n) * d]);
            qs[n * d..].fill(0.0);
            let job = Tile {
                q: &qs,
                kt: &kt[kv * d * padded..(kv + 1) * d * padded],
                v: &v[kv * keys * d..(kv + 1) * keys * d],
                mask: &mask[first_row * keys..(first_row + n) * keys],
                n,
                d,
                keys,
                padded,
                span: spans[t],
                scale,
                f16_kv,
            };
            // SAFETY: the features were checked by `runs`.
            unsafe { run_tile(kernel, &job, &mut scores, &mut acc) };
            for r in 0..n {
                // SAFETY: (row, head) pairs are disjoint between items; each writes its d values.
                let o = unsafe { std::slice::from_raw_parts_mut(dst.0.add(((first_row + r) * heads + h) * d), d) };
                o.copy_from_slice(&acc[r * d..(r + 1) * d]);
            }
        }
    });
    out
}

/// One head's tile of query rows.
struct Tile<'a> {
    /// `[ROWS, d]`, rows past `n` zero.
    q: &'a [f32],
    /// `[d, padded]`.
    kt: &'a [f32],
    /// `[keys, d]`.
    v: &'a [f32],
    /// `[n, keys]`.
    mask: &'a [f32],
    n: usize,
    d: usize,
    keys: usize,
    padded: usize,
    /// Keys `span.0..span.1` are open to some row of the tile.
    span: (usize, usize),
    scale: f32,
    f16_kv: bool,
}

impl Tile<'_> {
    /// The keys a tile's passes cover, `lo..hi` (`lo` the span's start rounded down to a score
    /// micro-tile) and their count, after checking the buffers against the shapes (heads of a
    /// multiple of `multiple` values).
    fn checked_span(&self, scores: &[f32], acc: &[f32], multiple: usize) -> (usize, usize, usize) {
        let Tile { q, kt, v, mask, n, d, keys, padded, span, .. } = *self;
        assert!(scores.len() >= ROWS * padded && acc.len() >= ROWS * d && q.len() >= ROWS * d);
        assert!(kt.len() >= d * padded && v.len() >= keys * d && mask.len() >= n * keys && d.is_multiple_of(multiple));
        let (lo, hi) = (span.0 / KEYS * KEYS, span.1);
        (lo, hi, hi - lo)
    }
}

/// A row's maximum over `row[from..]` and `max`: the scalar tail after the vectors.
fn tail_max(row: &[f32], from: usize, max: f32) -> f32 {
    row[from..].iter().fold(max, |m, &x| m.max(x))
}

/// `row[from..]` replaced by `e^(x − max)` one by one; their sum, in order.
fn tail_exp(row: &mut [f32], from: usize, max: f32) -> f32 {
    let mut sum = 0f32;
    for x in &mut row[from..] {
        *x = crate::cpu::exp::exp(*x - max);
        sum += *x;
    }
    sum
}

/// Rounds every value to the nearest f16 (ties to even), as llama.cpp's conversions do.
///
/// # Safety
/// The CPU has `kernel`'s features.
unsafe fn round_to_f16(kernel: AttentionKernel, xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match kernel {
            AttentionKernel::Avx512 => avx512::round_to_f16(xs),
            AttentionKernel::Avx2 => avx2::round_to_f16(xs),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, xs);
        unreachable!("no path runs off x86-64")
    }
}

/// # Safety
/// The CPU has `kernel`'s features.
unsafe fn run_tile(kernel: AttentionKernel, job: &Tile, scores: &mut [f32], acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match kernel {
            AttentionKernel::Avx512 => avx512::tile(job, scores, acc),
            AttentionKernel::Avx2 => avx2::tile(job, scores, acc),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, job, scores, acc);
        unreachable!("no path runs off x86-64")
    }
}

/// The mask (0 or -inf) added to a row's scores: shared by both paths.
#[inline]
fn add_mask(row: &mut [f32], mask: &[f32]) {
    for (x, &m) in row.iter_mut().zip(mask) {
        *x += m;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{KEYS, ROWS, Tile};
    use crate::cpu::exp::avx512::exp16;

    /// Scores, softmax and weighted values of one tile; `acc` gets the `[n, d]` outputs.
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub(super) unsafe fn tile(job: &Tile, scores: &mut [f32], acc: &mut [f32]) {
        let Tile { q, kt, v, mask, n, d, keys, padded, scale, f16_kv, .. } = *job;
        let (lo, hi, width) = job.checked_span(scores, acc, 32);
        let (q, kt, v, sc) = (q.as_ptr(), kt.as_ptr(), v.as_ptr(), scores.as_mut_ptr());
        unsafe {
            // Scores: micro-tiles of 8 rows × 32 keys in 16 registers, a dimension at a time.
            let scale_v = _mm512_set1_ps(scale);
            for j0 in (lo..hi).step_by(KEYS) {
                let mut s = [_mm512_setzero_ps(); 2 * ROWS];
                for c in 0..d {
                    let k0 = _mm512_loadu_ps(kt.add(c * padded + j0));
                    let k1 = _mm512_loadu_ps(kt.add(c * padded + j0 + 16));
                    for r in 0..ROWS {
                        let qc = _mm512_set1_ps(*q.add(r * d + c));
                        s[2 * r] = _mm512_fmadd_ps(qc, k0, s[2 * r]);
                        s[2 * r + 1] = _mm512_fmadd_ps(qc, k1, s[2 * r + 1]);
                    }
                }
                for r in 0..n {
                    let row = sc.add(r * padded + j0 - lo);
                    _mm512_storeu_ps(row, _mm512_mul_ps(s[2 * r], scale_v));
                    _mm512_storeu_ps(row.add(16), _mm512_mul_ps(s[2 * r + 1], scale_v));
                }
            }
            // The mask (0 or -inf) on the scores; past the last key, -inf.
            for r in 0..n {
                super::add_mask(std::slice::from_raw_parts_mut(sc.add(r * padded), width), &mask[r * keys + lo..r * keys + hi]);
            }
            // Softmax per row: max, e^(x - max) and their sum, 16 at a time.
            let mut sums = [0f32; ROWS];
            for (r, sum) in sums.iter_mut().enumerate().take(n) {
                let row = sc.add(r * padded);
                let whole = width / 16 * 16;
                let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
                for j in (0..whole).step_by(16) {
                    mx = _mm512_max_ps(mx, _mm512_loadu_ps(row.add(j)));
                }
                let max = super::tail_max(std::slice::from_raw_parts(row, width), whole, _mm512_reduce_max_ps(mx));
                let max_v = _mm512_set1_ps(max);
                let mut total = _mm512_setzero_ps();
                for j in (0..whole).step_by(16) {
                    let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row.add(j)), max_v));
                    _mm512_storeu_ps(row.add(j), e);
                    total = _mm512_add_ps(total, e);
                }
                let tail = super::tail_exp(std::slice::from_raw_parts_mut(row, width), whole, max);
                let mut lanes = [0f32; 16];
                _mm512_storeu_ps(lanes.as_mut_ptr(), total);
                *sum = crate::cpu::sum16(lanes) + tail;
                if f16_kv {
                    // llama.cpp: probabilities normalised (× 1/sum), then f16 for the product.
                    let inv = _mm512_set1_ps(1.0 / *sum);
                    for j in (0..whole).step_by(16) {
                        _mm512_storeu_ps(row.add(j), half(_mm512_mul_ps(_mm512_loadu_ps(row.add(j)), inv)));
                    }
                    for j in whole..width {
                        let x = _mm512_set1_ps(*row.add(j) * (1.0 / *sum));
                        *row.add(j) = _mm512_cvtss_f32(half(x));
                    }
                    *sum = 1.0;
                }
            }
            // Weighted values: all 8 rows × 32 values in 16 registers, a key at a time (each value
            // row read once per 32 values for the tile's 8 rows); then ÷ sum.
            for c0 in (0..d).step_by(32) {
                let mut o = [_mm512_setzero_ps(); 2 * ROWS];
                for jj in 0..width {
                    let vj = v.add((lo + jj) * d + c0);
                    let vs = [_mm512_loadu_ps(vj), _mm512_loadu_ps(vj.add(16))];
                    for r in 0..ROWS {
                        // Rows past `n` read row 0's weights; their sums are never stored.
                        let p = _mm512_set1_ps(*sc.add(if r < n { r } else { 0 } * padded + jj));
                        o[2 * r] = _mm512_fmadd_ps(p, vs[0], o[2 * r]);
                        o[2 * r + 1] = _mm512_fmadd_ps(p, vs[1], o[2 * r + 1]);
                    }
                }
                for r in 0..n {
                    let inv = _mm512_set1_ps(1.0 / sums[r]);
                    let dst = acc.as_mut_ptr().add(r * d + c0);
                    _mm512_storeu_ps(dst, _mm512_mul_ps(o[2 * r], inv));
                    _mm512_storeu_ps(dst.add(16), _mm512_mul_ps(o[2 * r + 1], inv));
                }
            }
        }
    }

    /// The f16 nearest to each value, back in f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f")]
    fn half(x: __m512) -> __m512 {
        _mm512_cvtph_ps(_mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x))
    }

    #[target_feature(enable = "avx2,fma,avx512f")]
    pub(super) unsafe fn round_to_f16(xs: &mut [f32]) {
        let whole = xs.len() / 16 * 16;
        let p = xs.as_mut_ptr();
        unsafe {
            for j in (0..whole).step_by(16) {
                _mm512_storeu_ps(p.add(j), half(_mm512_loadu_ps(p.add(j))));
            }
            for j in whole..xs.len() {
                *p.add(j) = _mm512_cvtss_f32(half(_mm512_set1_ps(*p.add(j))));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{KEYS, ROWS, Tile};
    use crate::cpu::exp::avx2::exp8;

    /// The AVX-512 path's tile with 8-wide vectors and the same operations per value: scores in
    /// micro-tiles of 4 rows × 16 keys (8 accumulators of the 16 registers), weighted values in
    /// 4 rows × 16 values; a row's exponentials summed in two accumulators that hold the AVX-512
    /// accumulator's low and high lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn tile(job: &Tile, scores: &mut [f32], acc: &mut [f32]) {
        let Tile { q, kt, v, mask, n, d, keys, padded, scale, f16_kv, .. } = *job;
        let (lo, hi, width) = job.checked_span(scores, acc, 16);
        let (q, kt, v, sc) = (q.as_ptr(), kt.as_ptr(), v.as_ptr(), scores.as_mut_ptr());
        unsafe {
            let scale_v = _mm256_set1_ps(scale);
            for j0 in (lo..hi).step_by(KEYS) {
                for half in [0, 16] {
                    for r0 in (0..n).step_by(4) {
                        let mut s = [_mm256_setzero_ps(); 8];
                        for c in 0..d {
                            let k0 = _mm256_loadu_ps(kt.add(c * padded + j0 + half));
                            let k1 = _mm256_loadu_ps(kt.add(c * padded + j0 + half + 8));
                            for r in 0..4 {
                                // Rows past `n` are the tile's zero rows (ROWS is a multiple of 4).
                                let qc = _mm256_set1_ps(*q.add((r0 + r) * d + c));
                                s[2 * r] = _mm256_fmadd_ps(qc, k0, s[2 * r]);
                                s[2 * r + 1] = _mm256_fmadd_ps(qc, k1, s[2 * r + 1]);
                            }
                        }
                        for r in 0..4.min(n - r0) {
                            let row = sc.add((r0 + r) * padded + j0 - lo + half);
                            _mm256_storeu_ps(row, _mm256_mul_ps(s[2 * r], scale_v));
                            _mm256_storeu_ps(row.add(8), _mm256_mul_ps(s[2 * r + 1], scale_v));
                        }
                    }
                }
            }
            for r in 0..n {
                super::add_mask(std::slice::from_raw_parts_mut(sc.add(r * padded), width), &mask[r * keys + lo..r * keys + hi]);
            }
            let mut sums = [0f32; ROWS];
            for (r, sum) in sums.iter_mut().enumerate().take(n) {
                let row = sc.add(r * padded);
                let whole = width / 16 * 16;
                let mut mx = _mm256_set1_ps(f32::NEG_INFINITY);
                for j in (0..whole).step_by(8) {
                    mx = _mm256_max_ps(mx, _mm256_loadu_ps(row.add(j)));
                }
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), mx);
                let max = super::tail_max(std::slice::from_raw_parts(row, width), whole, super::tail_max(&lanes, 0, f32::NEG_INFINITY));
                let max_v = _mm256_set1_ps(max);
                let (mut low, mut high) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for j in (0..whole).step_by(16) {
                    let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row.add(j)), max_v));
                    _mm256_storeu_ps(row.add(j), e);
                    low = _mm256_add_ps(low, e);
                    let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row.add(j + 8)), max_v));
                    _mm256_storeu_ps(row.add(j + 8), e);
                    high = _mm256_add_ps(high, e);
                }
                let tail = super::tail_exp(std::slice::from_raw_parts_mut(row, width), whole, max);
                let mut lanes = [0f32; 16];
                _mm256_storeu_ps(lanes.as_mut_ptr(), low);
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8), high);
                *sum = crate::cpu::sum16(lanes) + tail;
                if f16_kv {
                    let inv = _mm256_set1_ps(1.0 / *sum);
                    for j in (0..whole).step_by(8) {
                        _mm256_storeu_ps(row.add(j), half(_mm256_mul_ps(_mm256_loadu_ps(row.add(j)), inv)));
                    }
                    for j in whole..width {
                        let x = _mm256_set1_ps(*row.add(j) * (1.0 / *sum));
                        *row.add(j) = _mm256_cvtss_f32(half(x));
                    }
                    *sum = 1.0;
                }
            }
            for r0 in (0..n).step_by(4) {
                let rows = 4.min(n - r0);
                for c0 in (0..d).step_by(16) {
                    let mut o = [_mm256_setzero_ps(); 8];
                    for jj in 0..width {
                        let vj = v.add((lo + jj) * d + c0);
                        let vs = [_mm256_loadu_ps(vj), _mm256_loadu_ps(vj.add(8))];
                        for r in 0..4 {
                            let p = _mm256_set1_ps(*sc.add((r0 + if r < rows { r } else { 0 }) * padded + jj));
                            for x in 0..2 {
                                o[r * 2 + x] = _mm256_fmadd_ps(p, vs[x], o[r * 2 + x]);
                            }
                        }
                    }
                    for r in 0..rows {
                        let inv = _mm256_set1_ps(1.0 / sums[r0 + r]);
                        let dst = acc.as_mut_ptr().add((r0 + r) * d + c0);
                        for x in 0..2 {
                            _mm256_storeu_ps(dst.add(8 * x), _mm256_mul_ps(o[r * 2 + x], inv));
                        }
                    }
                }
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn half(x: __m256) -> __m256 {
        _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn round_to_f16(xs: &mut [f32]) {
        let whole = xs.len() / 8 * 8;
        let p = xs.as_mut_ptr();
        unsafe {
            for j in (0..whole).step_by(8) {
                _mm256_storeu_ps(p.add(j), half(_mm256_loadu_ps(p.add(j))));
            }
            for j in whole..xs.len() {
                *p.add(j) = _mm256_cvtss_f32(half(_mm256_set1_ps(*p.add(j))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_values as values;

    /// Causal over `past` earlier keys, with a sliding window of `window` keys where given.
    fn mask(rows: usize, keys: usize, window: Option<usize>) -> Vec<f32> {
        let past = keys - rows;
        let mut m = vec![f32::NEG_INFINITY; rows * keys];
        for r in 0..rows {
            let last = past + r;
            let first = window.map_or(0, |w| (last + 1).saturating_sub(w));
            m[r * keys + first..r * keys + last + 1].fill(0.0);
        }
        m
    }

    /// `softmax(q kᵀ · scale + mask) v` in f64, the definition.
    fn reference(q: &[f32], k: &[f32], v: &[f32], mask: &[f32], dims: Dims, scale: f32) -> Vec<f64> {
        let Dims { heads, kv_heads, rows, keys, head_dim: d } = dims;
        let mut out = vec![0f64; rows * heads * d];
        for h in 0..heads {
            let kv = h / (heads / kv_heads);
            for r in 0..rows {
                let s: Vec<f64> = (0..keys)
                    .map(|j| {
                        let dot: f64 = (0..d).map(|c| f64::from(q[(h * rows + r) * d + c]) * f64::from(k[(kv * keys + j) * d + c])).sum();
                        dot * f64::from(scale) + f64::from(mask[r * keys + j])
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for c in 0..d {
                    out[(r * heads + h) * d + c] = (0..keys).map(|j| e[j] * f64::from(v[(kv * keys + j) * d + c])).sum::<f64>() / total;
                }
            }
        }
        out
    }

    /// Both vector paths compute the definition to f32 rounding (1e-5 on outputs of size ~0.5),
    /// and where both run they give the same bits, in f32 and with llama.cpp's f16 rounding:
    /// rows not a multiple of a tile, keys not of a micro-tile, a cache of earlier keys, a
    /// sliding window, grouped-query heads, heads of 16 (AVX2 only), 64, 96 and 256 values.
    #[test]
    fn both_paths_give_the_definition_and_the_same_bits() {
        let mut compared = 0;
        for &(heads, kv_heads, rows, keys, d, window) in
            &[(4, 2, 37, 37, 64, None), (2, 1, 19, 83, 256, Some(30)), (3, 3, 9, 9, 16, None), (2, 2, 21, 40, 96, None), (6, 2, 130, 170, 64, Some(50))]
        {
            let dims = Dims { heads, kv_heads, rows, keys, head_dim: d };
            let (q, k, v) = (values(heads * rows * d, 1), values(kv_heads * keys * d, 2), values(kv_heads * keys * d, 3));
            let m = mask(rows, keys, window);
            let want = reference(&q, &k, &v, &m, dims, 0.125);
            let mut outs = Vec::new();
            for kernel in [AttentionKernel::Avx512, AttentionKernel::Avx2] {
                if !kernel.runs(d) {
                    eprintln!("{kernel:?} does not run on heads of {d} values on this CPU");
                    continue;
                }
                let got = attention_with(kernel, &q, &k, &v, &m, dims, 0.125, false);
                let worst = got.iter().zip(&want).map(|(g, w)| (f64::from(*g) - w).abs()).fold(0.0, f64::max);
                assert!(worst < 1e-5, "{kernel:?} {dims:?}: max |Δ| {worst:e} from the definition");
                outs.push((got, attention_with(kernel, &q, &k, &v, &m, dims, 0.125, true)));
            }
            assert!(!outs.is_empty() || !cfg!(target_arch = "x86_64"), "no path ran on heads of {d}: this project's CPUs have AVX2");
            if let [(a, a16), (b, b16)] = &outs[..] {
                assert_eq!(a, b, "{dims:?}: the AVX-512 and AVX2 paths differ");
                assert_eq!(a16, b16, "{dims:?}: the paths differ with f16 keys and values");
                compared += 1;
            }
        }
        if compared == 0 {
            eprintln!("NOT COMPARED on this CPU: the two paths' bits (it lacks AVX-512); each was checked against the definition");
        }
    }
}
