//! The block product's vector kernels on x86-64: AVX-512 VNNI and AVX2, the same sums lane for
//! lane; and the AVX-512 quantization of activations.
//!
//! The module is two kernels over raw pointers; every offset stays inside the slices that
//! `matmul` sized, so the unsafe functions' bodies are not split into unsafe blocks.
#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use super::format::{BlockMatrix, Kernel, QK, QuantizedRows};

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

/// [`super::format::quantize_q8_portable`] in vectors (the same roundings: a product by 127/max,
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

/// [`super::format::quantize_q8_k_portable`] in vectors.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
pub unsafe fn quantize_q8_k(xs: &[f32], qs: &mut [i8]) -> f32 {
    assert!(xs.len() == super::format::QK_K && qs.len() == super::format::QK_K);
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

    use crate::cpu::block_quant::format::{BlockFormat, BlockMatrix, QuantizedRows};
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

    use crate::cpu::block_quant::format::{BlockFormat, BlockMatrix, QuantizedRows};
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
