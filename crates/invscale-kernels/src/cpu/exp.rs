//! The exponential of a softmax (`x <= 0`), scalar and 16 at a time with AVX-512: Cephes' `expf`,
//! within 2 ulp of libm, the same operations in both so that they agree bit for bit; and the
//! sum of a row's exponentials (the log-softmax of the LM head, the fused attention's softmax).

/// Whether this CPU runs the 16-wide exponential (x86-64 with AVX-512F and FMA), and with it the
/// kernels built on it (fused attention, GELU/SiLU).
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `Σ e^(x − shift)` over `xs` (every `x ≤ shift`: a row of logits less its maximum), the
/// exponentials by [`exp`] (16 at a time with AVX-512), summed in f64.
pub fn sum_exp(xs: &[f32], shift: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if avx512_available() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { avx512::sum_exp(xs, shift) };
    }
    xs.iter().map(|&x| f64::from(exp(x - shift))).sum()
}

/// `ln 2` in two parts (Cephes): `n·C1` is exact for the `n` a softmax meets.
const C1: f32 = 0.693_359_4;
const C2: f32 = -2.121_944_4e-4;
/// Cephes' `expf` polynomial for `(e^r - 1 - r) / r²` on `[-ln 2 / 2, ln 2 / 2]`, highest first.
const P: [f32; 6] = [1.987_569_1e-4, 1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];

/// `e^x` for `x <= 0` (a softmax's shifted scores), within 2 ulp of libm: Cephes' `expf` (the
/// polynomial `P` on `[-ln 2 / 2, ln 2 / 2]`, scaled by `2^n`); 0 below -87.3 (where `e^x` is a
/// denormal) and for -inf. The vector kernel computes the same, 16 at a time.
pub fn exp(x: f32) -> f32 {
    let xc = x.max(-87.3);
    let n = (xc * std::f32::consts::LOG2_E).round_ties_even();
    let r = (-n).mul_add(C1, xc);
    let r = (-n).mul_add(C2, r);
    let p = P[1..].iter().fold(P[0], |p, &c| p.mul_add(r, c));
    let y = p.mul_add(r * r, r) + 1.0;
    let scaled = y * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.3 { 0.0 } else { scaled }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::sum_exp`] on a CPU with AVX-512F.
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub(super) unsafe fn sum_exp(xs: &[f32], shift: f32) -> f64 {
        let whole = xs.len() / 16 * 16;
        let s = _mm512_set1_ps(shift);
        let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        unsafe {
            for j in (0..whole).step_by(16) {
                let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(xs.as_ptr().add(j)), s));
                lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
                hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castsi256_ps(_mm512_extracti64x4_epi64::<1>(_mm512_castps_si512(e)))));
            }
        }
        let tail: f64 = xs[whole..].iter().map(|&x| f64::from(super::exp(x - shift))).sum();
        _mm512_reduce_add_pd(lo) + _mm512_reduce_add_pd(hi) + tail
    }

    /// [`super::exp`] on 16 values.
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub(crate) fn exp16(x: __m512) -> __m512 {
        let xc = _mm512_max_ps(x, _mm512_set1_ps(-87.3));
        // n = round(x·log2 e), r = x - n·ln 2 (in two parts), e^x = p(r) · 2^n.
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(xc, _mm512_set1_ps(std::f32::consts::LOG2_E)));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(super::C1), xc);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(super::C2), r);
        let mut p = _mm512_set1_ps(super::P[0]);
        for &c in &super::P[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0));
        let y = _mm512_scalef_ps(y, n);
        // Below -87.3 (and -inf): 0.
        let small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(-87.3));
        _mm512_maskz_mov_ps(!small, y)
    }
}

/// Whether this CPU runs the 8-wide exponential (x86-64 with AVX2 and FMA).
pub fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::exp`] on 8 values: the same operations (`2^n` built from its exponent bits, as
    /// the scalar one does; AVX-512's `scalef` gives the same product).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp8(x: __m256) -> __m256 {
        let xc = _mm256_max_ps(x, _mm256_set1_ps(-87.3));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(xc, _mm256_set1_ps(std::f32::consts::LOG2_E)));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(super::C1), xc);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(super::C2), r);
        let mut p = _mm256_set1_ps(super::P[0]);
        for &c in &super::P[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0));
        let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127))));
        let y = _mm256_mul_ps(y, pow2);
        // Below -87.3 (and -inf): 0.
        let small = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.3));
        _mm256_andnot_ps(small, y)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Where the CPU lacks AVX-512 the vector kernels never run (their dispatchers check
    /// `available`, and the models take candle's ops, which tiny_models.rs and logprobs_real.rs
    /// hold to transformers): said on stderr, after checking that the CPU really lacks the
    /// features, so a detection bug that left the kernels unused on a capable CPU fails here.
    pub(crate) fn without_avx512(what: &str) {
        assert!(!avx512_available(), "{what}: this CPU has AVX-512 and FMA, yet the kernel is reported unavailable");
        eprintln!("NOT RUN on this CPU: {what} needs AVX-512, which it lacks; models here run candle's ops instead");
    }

    /// The vector sum (16 lanes, two f64 accumulators) is the f64 sum of the scalar
    /// exponentials up to f64 rounding, on a row that is not a multiple of 16 long.
    #[test]
    fn sum_exp_is_the_sum_of_exps() {
        let xs: Vec<f32> = (0..1003).map(|i| ((i * 7919) % 1000) as f32 * -0.05).collect();
        let shift = 0.5;
        let want: f64 = xs.iter().map(|&x| f64::from(exp(x - shift))).sum();
        let got = sum_exp(&xs, shift);
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (got, want) = (exp(x), x.exp());
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).unsigned_abs();
            assert!(ulp <= 2, "exp({x}) = {got}, libm {want} ({ulp} ulp)");
            worst = worst.max(((got - want) / want).abs());
            x += 0.000_731;
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        eprintln!("largest relative error {worst:e}");
    }

    /// The vector exp is the scalar one, 16 at a time (bit for bit: the same operations).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_exp_equals_scalar_exp() {
        if !avx512_available() {
            return without_avx512("the vector exp");
        }
        let xs: Vec<f32> = (0..4096).map(|i| -90.0 + i as f32 * 0.0221).chain([f32::NEG_INFINITY, -0.0, -87.3, -87.29]).collect();
        for chunk in xs.chunks(16).filter(|c| c.len() == 16) {
            let mut got = [0f32; 16];
            unsafe { std::arch::x86_64::_mm512_storeu_ps(got.as_mut_ptr(), avx512_exp(chunk)) };
            for (x, g) in chunk.iter().zip(got) {
                assert_eq!(g.to_bits(), exp(*x).to_bits(), "exp({x})");
            }
        }
    }

    /// The same of the 8-wide one.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_exp_equals_scalar_exp() {
        assert!(avx2_available(), "every x86-64 machine this project runs on has AVX2 and FMA");
        let xs: Vec<f32> = (0..4096).map(|i| -90.0 + i as f32 * 0.0221).chain([f32::NEG_INFINITY, -0.0, -87.3, -87.29]).collect();
        for chunk in xs.chunks(8).filter(|c| c.len() == 8) {
            let mut got = [0f32; 8];
            unsafe { std::arch::x86_64::_mm256_storeu_ps(got.as_mut_ptr(), avx2_exp(chunk)) };
            for (x, g) in chunk.iter().zip(got) {
                assert_eq!(g.to_bits(), exp(*x).to_bits(), "exp({x})");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn avx2_exp(x: &[f32]) -> std::arch::x86_64::__m256 {
        unsafe { super::avx2::exp8(std::arch::x86_64::_mm256_loadu_ps(x.as_ptr())) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512f")]
    fn avx512_exp(x: &[f32]) -> std::arch::x86_64::__m512 {
        unsafe { super::avx512::exp16(std::arch::x86_64::_mm512_loadu_ps(x.as_ptr())) }
    }
}
