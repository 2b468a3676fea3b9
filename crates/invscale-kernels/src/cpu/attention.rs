//! Attention on the CPU in one fused pass: for each head and tile of query rows, the scores
//! against the keys the tile may see, an f32 softmax and the weighted sum of the values, in
//! buffers that stay in the core's cache. The unfused path (candle's batched products, a scale,
//! a mask add, a softmax, each a pass over `[heads, rows, keys]` tensors, with libm's `expf`)
//! took a third of a long prompt's forward pass.
//!
//! Exact to f32 rounding: the same products, in another order, and an `exp` within 2 ulp
//! (Cephes' polynomial) where the unfused path calls libm. Written for AVX-512 (head sizes a
//! multiple of 64); other CPUs and head sizes keep the unfused path.

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

/// Whether this CPU runs the fused kernel for heads of `head_dim` values (x86-64 with AVX-512F,
/// `head_dim` a multiple of 64); elsewhere the caller keeps the unfused path.
pub fn available(head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        head_dim.is_multiple_of(64) && crate::cpu::exp::avx512_available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = head_dim;
        false
    }
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
    let Dims { heads, kv_heads, rows, keys, head_dim: d } = dims;
    assert_eq!(q.len(), heads * rows * d);
    assert_eq!(k.len(), kv_heads * keys * d);
    assert_eq!(v.len(), k.len());
    assert_eq!(mask.len(), rows * keys);
    assert!(available(d), "the fused attention kernel needs AVX-512 and heads of a multiple of 64 values");
    // Keys transposed, `[kv_heads, d, padded]`, zero-padded to whole micro-tiles: a score
    // micro-tile then reads 32 consecutive keys of one dimension.
    let padded = keys.next_multiple_of(KEYS);
    let mut kt = vec![0f32; kv_heads * d * padded];
    let (q, v) = if f16_kv {
        let (mut q, mut v) = (q.to_vec(), v.to_vec());
        // SAFETY: `available` checked AVX-512.
        unsafe {
            round_to_f16(&mut q);
            round_to_f16(&mut v);
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
        // SAFETY: `available` checked AVX-512.
        unsafe { round_to_f16(&mut kt) };
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
            // SAFETY: the features were checked by `available`.
            unsafe { run_tile(&job, &mut scores, &mut acc) };
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

/// Rounds every value to the nearest f16 (ties to even), as llama.cpp's conversions do.
///
/// # Safety
/// The CPU has AVX-512F.
unsafe fn round_to_f16(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    unsafe {
        avx512::round_to_f16(xs)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = xs;
        unreachable!("`available` is false off x86-64")
    }
}

/// # Safety
/// The CPU has the features [`available`] checks.
unsafe fn run_tile(job: &Tile, scores: &mut [f32], acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    unsafe {
        avx512::tile(job, scores, acc)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (job, scores, acc);
        unreachable!("`available` is false off x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{KEYS, ROWS, Tile};
    use crate::cpu::exp::avx512::exp16;
    use crate::cpu::exp::exp;

    /// Scores, softmax and weighted values of one tile; `acc` gets the `[n, d]` outputs.
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub(super) unsafe fn tile(job: &Tile, scores: &mut [f32], acc: &mut [f32]) {
        let Tile { q, kt, v, mask, n, d, keys, padded, span, scale, f16_kv } = *job;
        let (lo, hi) = (span.0 / KEYS * KEYS, span.1);
        let width = hi - lo;
        assert!(scores.len() >= ROWS * padded && acc.len() >= ROWS * d && q.len() >= ROWS * d);
        assert!(kt.len() >= d * padded && v.len() >= keys * d && mask.len() >= n * keys && d % 64 == 0);
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
                let row = std::slice::from_raw_parts_mut(sc.add(r * padded), width);
                for (x, &m) in row.iter_mut().zip(&mask[r * keys + lo..r * keys + hi]) {
                    *x += m;
                }
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
                let mut max = _mm512_reduce_max_ps(mx);
                for j in whole..width {
                    max = max.max(*row.add(j));
                }
                let max_v = _mm512_set1_ps(max);
                let mut total = _mm512_setzero_ps();
                for j in (0..whole).step_by(16) {
                    let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row.add(j)), max_v));
                    _mm512_storeu_ps(row.add(j), e);
                    total = _mm512_add_ps(total, e);
                }
                let mut tail = 0f32;
                for j in whole..width {
                    let e = exp(*row.add(j) - max);
                    *row.add(j) = e;
                    tail += e;
                }
                *sum = _mm512_reduce_add_ps(total) + tail;
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
            // Weighted values: 4 rows × 64 values in 16 registers, a key at a time; then ÷ sum.
            for r0 in (0..n).step_by(4) {
                let rows = 4.min(n - r0);
                for c0 in (0..d).step_by(64) {
                    let mut o = [_mm512_setzero_ps(); 16];
                    for jj in 0..width {
                        let vj = v.add((lo + jj) * d + c0);
                        let vs = [_mm512_loadu_ps(vj), _mm512_loadu_ps(vj.add(16)), _mm512_loadu_ps(vj.add(32)), _mm512_loadu_ps(vj.add(48))];
                        for r in 0..4 {
                            // Rows past `n` read row 0's weights; their sums are never stored.
                            let p = _mm512_set1_ps(*sc.add((r0 + if r < rows { r } else { 0 }) * padded + jj));
                            for x in 0..4 {
                                o[r * 4 + x] = _mm512_fmadd_ps(p, vs[x], o[r * 4 + x]);
                            }
                        }
                    }
                    for r in 0..rows {
                        let inv = _mm512_set1_ps(1.0 / sums[r0 + r]);
                        let dst = acc.as_mut_ptr().add((r0 + r) * d + c0);
                        for x in 0..4 {
                            _mm512_storeu_ps(dst.add(16 * x), _mm512_mul_ps(o[r * 4 + x], inv));
                        }
                    }
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
