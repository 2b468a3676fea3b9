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
    /// Whether this CPU has the path's features.
    pub fn runs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                GemmKernel::Avx512 => is_x86_feature_detected!("avx512f"),
                GemmKernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// The fastest path this CPU runs (`INVSCALE_GEMM=avx2`: the AVX2 one, the same results;
    /// `INVSCALE_GEMM=candle`: none); `None`: no vector path (the layers use candle's product).
    pub fn detect() -> Option<GemmKernel> {
        static K: OnceLock<Option<GemmKernel>> = OnceLock::new();
        *K.get_or_init(|| {
            let asked = std::env::var("INVSCALE_GEMM").ok();
            match asked.as_deref() {
                Some("candle") => None,
                Some("avx2") => Some(GemmKernel::Avx2).filter(|k| k.runs()),
                _ => [GemmKernel::Avx512, GemmKernel::Avx2].into_iter().find(|k| k.runs()),
            }
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

/// `out[m, n] = x[m, k] · wᵀ` for a weight matrix `w` `[n, k]` read row-major where it lies (a
/// tied LM head is the embedding matrix: packing it would hold it twice). Each output is a dot
/// product in 16 lanes (lane `l` sums the terms `k ≡ l mod 16` in order), the lanes added in one
/// fixed order ([`super::sum16`]), then the last `k mod 16` terms in order: the same bits on every path
/// and whatever the rows beside it. Runs on candle's CPU thread pool.
pub fn matmul_row_major(w: &[f32], n: usize, k: usize, x: &[f32], m: usize, out: &mut [f32]) {
    matmul_row_major_with(GemmKernel::detect(), w, n, k, x, m, out)
}

/// [`matmul_row_major`] on a given path (`None`: the portable twin).
pub fn matmul_row_major_with(kernel: Option<GemmKernel>, w: &[f32], n: usize, k: usize, x: &[f32], m: usize, out: &mut [f32]) {
    /// Weight rows a task takes (their dot products with every row of `x`).
    const ROWS_PER_TASK: usize = 256;
    assert_eq!(w.len(), n * k, "w is [{n}, {k}]");
    assert_eq!(x.len(), m * k, "x is [{m}, {k}]");
    assert_eq!(out.len(), m * n, "out is [{m}, {n}]");
    struct Out(*mut f32);
    unsafe impl Sync for Out {}
    let dst = &Out(out.as_mut_ptr());
    let task = |t: usize| {
        let dst = dst;
        let cols = t * ROWS_PER_TASK..(t * ROWS_PER_TASK + ROWS_PER_TASK).min(n);
        // SAFETY: each task writes its own columns of `out`, in bounds by the asserts.
        unsafe { dots(kernel, &w[cols.start * k..cols.end * k], cols.len(), k, x, m, dst.0.add(cols.start), n) };
    };
    let tasks = n.div_ceil(ROWS_PER_TASK);
    if tasks == 1 || m * n * k < 1 << 16 {
        (0..tasks).for_each(task);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(tasks, |range| range.for_each(task));
    }
}

/// `c[r, j] = x[r] · w[j]` for the `rows` rows of `w` and every row of `x`, `c` with row stride `ldc`.
///
/// # Safety
/// `c` must be valid for `m` rows of `rows` values at stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn dots(kernel: Option<GemmKernel>, w: &[f32], rows: usize, k: usize, x: &[f32], m: usize, c: *mut f32, ldc: usize) {
    let whole = k / 16 * 16;
    // Blocks of weight rows × rows of x whose lanes one call keeps in registers.
    let (wb, xb) = match kernel {
        Some(GemmKernel::Avx512) => (4, 3),
        Some(GemmKernel::Avx2) => (2, 3),
        None => (1, 1),
    };
    let mut lanes = [[0f32; 16]; 12];
    for j0 in (0..rows).step_by(wb) {
        let nw = wb.min(rows - j0);
        for r0 in (0..m).step_by(xb) {
            let nx = xb.min(m - r0);
            let (wp, xp) = (&w[j0 * k..(j0 + nw) * k], &x[r0 * k..(r0 + nx) * k]);
            match kernel {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `detect` found the features; nw ≤ 4 rows of w, nx ≤ 3 of x, k each.
                Some(GemmKernel::Avx512) => unsafe { x86::dots_avx512(wp, nw, xp, nx, k, &mut lanes) },
                #[cfg(target_arch = "x86_64")]
                Some(GemmKernel::Avx2) => unsafe { x86::dots_avx2(wp, nw, xp, nx, k, &mut lanes) },
                _ => dots_portable(wp, nw, xp, nx, k, &mut lanes),
            }
            for i in 0..nx {
                for j in 0..nw {
                    let (xr, wr) = (&xp[i * k..(i + 1) * k], &wp[j * k..(j + 1) * k]);
                    let mut s = super::sum16(lanes[i * nw + j]);
                    for kk in whole..k {
                        s = xr[kk].mul_add(wr[kk], s);
                    }
                    // SAFETY: row r0 + i < m, column j0 + j < rows: the caller's promise.
                    unsafe { *c.add((r0 + i) * ldc + j0 + j) = s };
                }
            }
        }
    }
}

/// The portable twin of the dot products' lanes: `lanes[i·nw + j][l] = Σ x[i, 16t + l] · w[j, 16t + l]`.
fn dots_portable(w: &[f32], nw: usize, x: &[f32], nx: usize, k: usize, lanes: &mut [[f32; 16]; 12]) {
    for i in 0..nx {
        for j in 0..nw {
            let mut acc = [0f32; 16];
            for t in 0..k / 16 {
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = x[i * k + 16 * t + l].mul_add(w[j * k + 16 * t + l], *a);
                }
            }
            lanes[i * nw + j] = acc;
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

    /// The lanes of [`super::dots`]: `nw ≤ 4` rows of `w` against `nx ≤ 3` rows of `x`.
    ///
    /// # Safety
    /// AVX-512F must be available; `w` is `nw × k`, `x` `nx × k`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots_avx512(w: &[f32], nw: usize, x: &[f32], nx: usize, k: usize, lanes: &mut [[f32; 16]; 12]) {
        macro_rules! shapes {
            ($(($a:literal, $b:literal))*) => {
                match (nw, nx) { $(($a, $b) => unsafe { dots_512::<$a, $b>(w, x, k, lanes) },)* _ => unreachable!("at most 4 × 3") }
            };
        }
        shapes!((1, 1) (1, 2) (1, 3) (2, 1) (2, 2) (2, 3) (3, 1) (3, 2) (3, 3) (4, 1) (4, 2) (4, 3))
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn dots_512<const NW: usize, const NX: usize>(w: &[f32], x: &[f32], k: usize, lanes: &mut [[f32; 16]; 12]) {
        debug_assert!(w.len() >= NW * k && x.len() >= NX * k);
        let (w, x) = (w.as_ptr(), x.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); NW]; NX];
        for t in (0..k / 16 * 16).step_by(16) {
            // SAFETY: t + 16 ≤ k, within each row.
            unsafe {
                let ws: [__m512; NW] = std::array::from_fn(|j| _mm512_loadu_ps(w.add(j * k + t)));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let xv = _mm512_loadu_ps(x.add(i * k + t));
                    for j in 0..NW {
                        acc[j] = _mm512_fmadd_ps(xv, ws[j], acc[j]);
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for (j, a) in acc.iter().enumerate() {
                // SAFETY: 16 values into a [f32; 16].
                unsafe { _mm512_storeu_ps(lanes[i * NW + j].as_mut_ptr(), *a) };
            }
        }
    }

    /// The same on AVX2: `nw ≤ 2` rows of `w`, `nx ≤ 3` of `x`, each lane set as two 8-wide halves.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; shapes as for [`dots_avx512`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots_avx2(w: &[f32], nw: usize, x: &[f32], nx: usize, k: usize, lanes: &mut [[f32; 16]; 12]) {
        macro_rules! shapes {
            ($(($a:literal, $b:literal))*) => {
                match (nw, nx) { $(($a, $b) => unsafe { dots_256::<$a, $b>(w, x, k, lanes) },)* _ => unreachable!("at most 2 × 3") }
            };
        }
        shapes!((1, 1) (1, 2) (1, 3) (2, 1) (2, 2) (2, 3))
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn dots_256<const NW: usize, const NX: usize>(w: &[f32], x: &[f32], k: usize, lanes: &mut [[f32; 16]; 12]) {
        debug_assert!(w.len() >= NW * k && x.len() >= NX * k);
        let (w, x) = (w.as_ptr(), x.as_ptr());
        let mut acc = [[[_mm256_setzero_ps(); 2]; NW]; NX];
        for t in (0..k / 16 * 16).step_by(16) {
            // SAFETY: as in dots_512.
            unsafe {
                let ws: [[__m256; 2]; NW] = std::array::from_fn(|j| [_mm256_loadu_ps(w.add(j * k + t)), _mm256_loadu_ps(w.add(j * k + t + 8))]);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let xv = [_mm256_loadu_ps(x.add(i * k + t)), _mm256_loadu_ps(x.add(i * k + t + 8))];
                    for j in 0..NW {
                        for h in 0..2 {
                            acc[j][h] = _mm256_fmadd_ps(xv[h], ws[j][h], acc[j][h]);
                        }
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for (j, a) in acc.iter().enumerate() {
                // SAFETY: two halves of 8 into a [f32; 16].
                unsafe {
                    _mm256_storeu_ps(lanes[i * NW + j].as_mut_ptr(), a[0]);
                    _mm256_storeu_ps(lanes[i * NW + j].as_mut_ptr().add(8), a[1]);
                }
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
    use crate::cpu::test_values as values;

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
            for kernel in [GemmKernel::Avx2, GemmKernel::Avx512] {
                if !kernel.runs() {
                    eprintln!("{kernel:?} not on this CPU: checked where it runs");
                    continue;
                }
                let mut got = vec![0f32; m * n];
                packed.matmul_with(Some(kernel), &x, m, &mut got);
                assert_eq!(got, want, "{kernel:?} {m}×{n}×{k}");
            }
        }
        assert_eq!(PackedMatrix::pack(&values(70 * 33, 2), 70, 33).row(69), values(70 * 33, 2)[69 * 33..].to_vec());
    }

    /// The row-major product: every path gives the portable twin's bits, which are the product
    /// within f32 rounding of an f64 reference, on ragged shapes (`k` not a multiple of 16, rows
    /// not of a block), and a row's result does not depend on the rows beside it.
    #[test]
    fn row_major_paths_agree_and_rows_are_independent() {
        for &(m, n, k) in &[(1, 1, 1), (5, 7, 37), (32, 300, 64), (3, 513, 576), (8, 70, 640)] {
            let (x, w) = (values(m * k, 5), values(n * k, 6));
            let mut want = vec![0f32; m * n];
            matmul_row_major_with(None, &w, n, k, &x, m, &mut want);
            for i in 0..m {
                for j in 0..n {
                    let exact: f64 = (0..k).map(|kk| f64::from(x[i * k + kk]) * f64::from(w[j * k + kk])).sum();
                    assert!((f64::from(want[i * n + j]) - exact).abs() <= 1e-5 * (k as f64).sqrt().max(1.0), "({i}, {j}) of {m}×{n}×{k}");
                }
            }
            for kernel in [GemmKernel::Avx2, GemmKernel::Avx512] {
                if !kernel.runs() {
                    eprintln!("{kernel:?} not on this CPU: checked where it runs");
                    continue;
                }
                let mut got = vec![0f32; m * n];
                matmul_row_major_with(Some(kernel), &w, n, k, &x, m, &mut got);
                assert_eq!(got, want, "{kernel:?} {m}×{n}×{k}");
                for r in [0, m / 2, m - 1] {
                    let mut one = vec![0f32; n];
                    matmul_row_major_with(Some(kernel), &w, n, k, &x[r * k..(r + 1) * k], 1, &mut one);
                    assert_eq!(one, want[r * n..(r + 1) * n], "{kernel:?} row {r} alone");
                }
            }
        }
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
