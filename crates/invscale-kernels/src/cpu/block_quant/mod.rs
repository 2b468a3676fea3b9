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

mod format;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(test)]
mod tests;

pub use format::{BlockFormat, BlockMatrix, Kernel, QuantizedRows};

use half::f16;

use format::{QK, QK_K, quantize_q8_k_portable, quantize_q8_portable};

impl BlockMatrix {
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

impl QuantizedRows {
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
