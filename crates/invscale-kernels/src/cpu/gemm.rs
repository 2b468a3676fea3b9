//! The f32 matrix product of the exact CPU path, `y = x Wᵀ` (a linear layer), over a weight
//! matrix packed once at load: panels of [`NR`] output rows, each stored k-major (`k × NR`
//! contiguous), so the micro-kernel reads the weights as whole vectors in the order it uses them.
//! candle's product (the `gemm` crate) packs the weights again at every call and reached 146
//! GFLOP/s on SmolLM2's shapes on two AVX-512 cores where PyTorch's MKL reaches ~300 (issue 22).
//!
//! Every output is one accumulator summed over `k` in order (one fused multiply-add a term): the
//! same float operations whichever tile, thread, vector width or batch of rows computes it. So
//! the AVX-512 path, the AVX2 path and the portable twin give the same bits, and a row's result
//! does not depend on the other rows of the batch.

use std::sync::OnceLock;

/// Output rows per panel (two AVX-512 vectors, four AVX2 ones).
pub const NR: usize = 32;
/// Rows of `x` a micro-tile holds in registers: AVX-512 (24 accumulators of its 32 registers).
const MR_512: usize = 12;
/// AVX2: 6 rows of a 16-wide half panel (12 accumulators of its 16 registers).
const MR_256: usize = 6;
/// Rows of `x` a task takes: a panel's weights are read once per this many rows (then from cache).
const ROWS_PER_TASK: usize = 96;

/// Which vector path runs here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmKernel {
    Avx512,
    Avx2,
}

impl GemmKernel {
    /// The fastest path this CPU runs (`INVSCALE_GEMM=avx2`: the AVX2 one, the same results;
    /// `INVSCALE_GEMM=candle`: none); `None`: no vector path (the layers use candle's product).
    pub fn detect() -> Option<GemmKernel> {
        static K: OnceLock<Option<GemmKernel>> = OnceLock::new();
        *K.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                let asked = std::env::var("INVSCALE_GEMM").ok();
                let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
                let avx512 = is_x86_feature_detected!("avx512f") && asked.as_deref() != Some("avx2");
                match asked.as_deref() {
                    Some("candle") => None,
                    _ if avx512 => Some(GemmKernel::Avx512),
                    _ if avx2 => Some(GemmKernel::Avx2),
                    _ => None,
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            None
        })
    }
}

/// A weight matrix `[n, k]` (row-major, a linear layer's `[out, in]`) in panels of [`NR`] rows.
pub struct PackedMatrix {
    n: usize,
    k: usize,
    /// `ceil(n / NR)` panels of `k × NR` values (rows past `n` zero).
    panels: Vec<f32>,
}

impl PackedMatrix {
    pub fn pack(w: &[f32], n: usize, k: usize) -> PackedMatrix {
        assert_eq!(w.len(), n * k, "a [{n}, {k}] matrix");
        let count = n.div_ceil(NR);
        let mut panels = vec![0f32; count * k * NR];
        for (p, panel) in panels.chunks_mut(k * NR).enumerate() {
            for r in 0..NR.min(n - p * NR) {
                let row = &w[(p * NR + r) * k..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + r] = v;
                }
            }
        }
        PackedMatrix { n, k, panels }
    }

    pub fn rows(&self) -> usize {
        self.n
    }
    pub fn cols(&self) -> usize {
        self.k
    }

    /// Row `i` of the matrix as it was packed.
    pub fn row(&self, i: usize) -> Vec<f32> {
        let panel = &self.panels[(i / NR) * self.k * NR..][..self.k * NR];
        (0..self.k).map(|kk| panel[kk * NR + i % NR]).collect()
    }

    /// `out[m, n] = x[m, k] · selfᵀ`, on candle's CPU thread pool.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_with(GemmKernel::detect(), x, m, out)
    }

    /// [`matmul`](Self::matmul) on a given path (`None`: the portable twin).
    pub fn matmul_with(&self, kernel: Option<GemmKernel>, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k, "x is [{m}, {k}]");
        assert_eq!(out.len(), m * n, "out is [{m}, {n}]");
        let panels = n.div_ceil(NR);
        let blocks = m.div_ceil(ROWS_PER_TASK);
        struct Out(*mut f32);
        unsafe impl Sync for Out {}
        let dst = &Out(out.as_mut_ptr());
        let task = |t: usize| {
            let dst = dst;
            let (p, b) = (t % panels, t / panels);
            let rows = b * ROWS_PER_TASK..(b * ROWS_PER_TASK + ROWS_PER_TASK).min(m);
            let panel = &self.panels[p * k * NR..][..k * NR];
            let cols = p * NR..(p * NR + NR).min(n);
            // SAFETY: each task writes its own rows × columns of `out`, in bounds by the asserts.
            unsafe { panel_product(kernel, &x[rows.start * k..rows.end * k], rows.len(), k, panel, dst.0.add(rows.start * n + cols.start), n, cols.len()) };
        };
        let tasks = panels * blocks;
        if tasks == 1 || m * n * k < 1 << 16 {
            (0..tasks).for_each(task);
        } else {
            candle_core::utils::barrier_pool().execute_chunked(tasks, |range| range.for_each(task));
        }
    }
}

/// `c[r, j] = Σ_k x[r, k] · panel[k, j]` for the `rows` rows of `x` and the first `width` columns
/// of one panel, `c` with row stride `ldc`.
///
/// # Safety
/// `c` must be valid for `rows` rows of `width` values at stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_product(kernel: Option<GemmKernel>, x: &[f32], rows: usize, k: usize, panel: &[f32], c: *mut f32, ldc: usize, width: usize) {
    let mut tile = [0f32; MR_512 * NR];
    let mr = match kernel {
        Some(GemmKernel::Avx512) => MR_512,
        Some(GemmKernel::Avx2) => MR_256,
        None => 1,
    };
    let mut r = 0;
    while r < rows {
        let h = mr.min(rows - r);
        let a = &x[r * k..(r + h) * k];
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` found the CPU features; `a` is h rows of k, the panel k × NR, the tile h × NR.
            Some(GemmKernel::Avx512) => unsafe { x86::tile_avx512(a, h, k, panel, &mut tile) },
            #[cfg(target_arch = "x86_64")]
            Some(GemmKernel::Avx2) => unsafe { x86::tile_avx2(a, h, k, panel, &mut tile) },
            _ => tile_portable(a, h, k, panel, &mut tile),
        }
        for i in 0..h {
            // SAFETY: row r + i < rows, `width` columns: the caller's promise.
            unsafe { std::ptr::copy_nonoverlapping(tile.as_ptr().add(i * NR), c.add((r + i) * ldc), width) };
        }
        r += h;
    }
}

/// The portable twin: the same fused multiply-adds in the same order.
fn tile_portable(a: &[f32], h: usize, k: usize, panel: &[f32], tile: &mut [f32]) {
    for i in 0..h {
        let mut acc = [0f32; NR];
        for kk in 0..k {
            let av = a[i * k + kk];
            for (j, s) in acc.iter_mut().enumerate() {
                *s = av.mul_add(panel[kk * NR + j], *s);
            }
        }
        tile[i * NR..][..NR].copy_from_slice(&acc);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{MR_256, MR_512, NR};

    /// Rows of `a` (≤ 12) times the panel, AVX-512: each row's 32 outputs in two registers.
    ///
    /// # Safety
    /// AVX-512F must be available; `a` is `h × k`, `panel` `k × NR`, `tile` at least `h × NR`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512(a: &[f32], h: usize, k: usize, panel: &[f32], tile: &mut [f32]) {
        macro_rules! rows {
            ($($m:literal)*) => {
                match h { $($m => unsafe { tile_512::<$m>(a, k, panel, tile) },)* _ => unreachable!("at most {MR_512} rows") }
            };
        }
        rows!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile_512<const M: usize>(a: &[f32], k: usize, panel: &[f32], tile: &mut [f32]) {
        debug_assert!(a.len() >= M * k && panel.len() >= k * NR && tile.len() >= M * NR);
        let (a, b) = (a.as_ptr(), panel.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); 2]; M];
        for kk in 0..k {
            // SAFETY: kk < k, so the panel's row kk and each a[i, kk] are in bounds.
            unsafe {
                let b0 = _mm512_loadu_ps(b.add(kk * NR));
                let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(i * k + kk));
                    acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
                }
            }
        }
        let t = tile.as_mut_ptr();
        for (i, acc) in acc.iter().enumerate() {
            // SAFETY: row i < M of the tile.
            unsafe {
                _mm512_storeu_ps(t.add(i * NR), acc[0]);
                _mm512_storeu_ps(t.add(i * NR + 16), acc[1]);
            }
        }
    }

    /// Rows of `a` (≤ 12) times the panel, AVX2: each 16-wide half of the panel for up to 6 rows
    /// at a time.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; shapes as for [`tile_avx512`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(a: &[f32], h: usize, k: usize, panel: &[f32], tile: &mut [f32]) {
        let mut r = 0;
        while r < h {
            let m = MR_256.min(h - r);
            for half in [0, 16] {
                macro_rules! rows {
                    ($($m:literal)*) => {
                        match m { $($m => unsafe { tile_256::<$m>(&a[r * k..], k, panel, half, &mut tile[r * NR..]) },)* _ => unreachable!() }
                    };
                }
                rows!(1 2 3 4 5 6);
            }
            r += m;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile_256<const M: usize>(a: &[f32], k: usize, panel: &[f32], half: usize, tile: &mut [f32]) {
        debug_assert!(a.len() >= M * k && panel.len() >= k * NR && tile.len() >= M * NR);
        let (a, b) = (a.as_ptr(), panel[half..].as_ptr());
        let mut acc = [[_mm256_setzero_ps(); 2]; M];
        for kk in 0..k {
            // SAFETY: as in tile_512.
            unsafe {
                let b0 = _mm256_loadu_ps(b.add(kk * NR));
                let b1 = _mm256_loadu_ps(b.add(kk * NR + 8));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_ps(*a.add(i * k + kk));
                    acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                }
            }
        }
        let t = tile[half..].as_mut_ptr();
        for (i, acc) in acc.iter().enumerate() {
            // SAFETY: row i < M of the tile, columns half..half + 16.
            unsafe {
                _mm256_storeu_ps(t.add(i * NR), acc[0]);
                _mm256_storeu_ps(t.add(i * NR + 8), acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every path gives the portable twin's bits on ragged shapes (rows not a multiple of a
    /// tile, columns not of a panel), and the twin is the product within f32 rounding of an
    /// f64 reference.
    #[test]
    fn every_path_gives_the_portable_bits_and_the_product() {
        for &(m, n, k) in &[(1, 1, 1), (13, 45, 7), (97, 70, 33), (200, 64, 576), (5, 192, 64)] {
            let (x, w) = (values(m * k, 1), values(n * k, 2));
            let packed = PackedMatrix::pack(&w, n, k);
            let mut want = vec![0f32; m * n];
            packed.matmul_with(None, &x, m, &mut want);
            for i in 0..m {
                for j in 0..n {
                    let exact: f64 = (0..k).map(|kk| f64::from(x[i * k + kk]) * f64::from(w[j * k + kk])).sum();
                    assert!((f64::from(want[i * n + j]) - exact).abs() <= 1e-5 * (k as f64).sqrt().max(1.0), "({i}, {j}) of {m}×{n}×{k}");
                }
            }
            for kernel in [Some(GemmKernel::Avx2), Some(GemmKernel::Avx512)] {
                #[cfg(target_arch = "x86_64")]
                let runs = match kernel {
                    Some(GemmKernel::Avx512) => is_x86_feature_detected!("avx512f"),
                    _ => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                };
                #[cfg(not(target_arch = "x86_64"))]
                let runs = false;
                if !runs {
                    eprintln!("{kernel:?} not on this CPU: checked where it runs");
                    continue;
                }
                let mut got = vec![0f32; m * n];
                packed.matmul_with(kernel, &x, m, &mut got);
                assert_eq!(got, want, "{kernel:?} {m}×{n}×{k}");
            }
        }
        assert_eq!(PackedMatrix::pack(&values(70 * 33, 2), 70, 33).row(69), values(70 * 33, 2)[69 * 33..].to_vec());
    }

    /// A row's result does not depend on the other rows computed with it.
    #[test]
    fn a_rows_result_does_not_depend_on_the_batch() {
        let (n, k) = (96, 200);
        let w = values(n * k, 3);
        let packed = PackedMatrix::pack(&w, n, k);
        let x = values(150 * k, 4);
        let mut all = vec![0f32; 150 * n];
        packed.matmul(&x, 150, &mut all);
        for r in [0, 11, 12, 95, 96, 149] {
            let mut one = vec![0f32; n];
            packed.matmul(&x[r * k..(r + 1) * k], 1, &mut one);
            assert_eq!(one, all[r * n..(r + 1) * n], "row {r}");
        }
    }
}
