//! GELU (the tanh approximation: Gemma, GPT-2) and SiLU-gated products (Llama, Qwen2) on the
//! CPU, vectorised: candle's elementwise ops call libm's `tanhf` (and through it `expm1f`) or
//! `expf` per value (GELU was a tenth of Gemma 3's quantized forward pass), and `silu(g) · u` in
//! candle keeps four `[tokens, intermediate]` tensors alive where one buffer does.
//!
//! `gelu(x) = x/2 · (1 + tanh(y))`, `y = √(2/π) · (x + 0.044715 x³)`, computed without
//! cancellation: with `e = e^(−2|y|)`, `1 + tanh(y)` is `2 / (1 + e)` for `y ≥ 0` and
//! `2e / (1 + e)` below, so `gelu(x) = x / (1 + e)`, times `e` when `y < 0`. Within 2e-6 relative
//! of the exact function (tested), and within 5e-7 of candle's.

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const CUBIC: f32 = 0.044_715;

/// The vector paths, widest first: the same arithmetic value by value, so the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationKernel {
    Avx512,
    Avx2,
}

impl ActivationKernel {
    pub fn runs(self) -> bool {
        match self {
            ActivationKernel::Avx512 => crate::cpu::exp::avx512_available(),
            ActivationKernel::Avx2 => crate::cpu::exp::avx2_available(),
        }
    }

    pub fn detect() -> Option<ActivationKernel> {
        [ActivationKernel::Avx512, ActivationKernel::Avx2].into_iter().find(|k| k.runs())
    }
}

/// Whether this CPU runs the vector GELU and SiLU (x86-64 with AVX-512F, or AVX2 and FMA).
pub fn available() -> bool {
    ActivationKernel::detect().is_some()
}

/// GELU (tanh) of every value, in place.
///
/// # Panics
/// Where [`available`] is false.
pub fn gelu_tanh_in_place(xs: &mut [f32]) {
    gelu_tanh_in_place_with(ActivationKernel::detect().expect("the vector GELU needs AVX-512 or AVX2"), xs)
}

/// [`gelu_tanh_in_place`] on a given path (which must run here).
pub fn gelu_tanh_in_place_with(kernel: ActivationKernel, xs: &mut [f32]) {
    assert!(kernel.runs(), "{kernel:?} does not run on this CPU");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the path's features were checked.
    match kernel {
        ActivationKernel::Avx512 => in_chunks(xs, &[], |x, _| unsafe { gelu_avx512(x) }),
        ActivationKernel::Avx2 => in_chunks(xs, &[], |x, _| unsafe { gelu_avx2(x) }),
    }
}

/// `f` over disjoint chunks of `xs` (with the same range of `with`, which is as long or empty)
/// on candle's CPU threads.
#[cfg(target_arch = "x86_64")]
fn in_chunks(xs: &mut [f32], with: &[f32], f: impl Fn(&mut [f32], &[f32]) + Sync) {
    const CHUNK: usize = 1 << 14;
    assert!(with.is_empty() || with.len() == xs.len());
    struct Ptr(*mut f32, *const f32);
    unsafe impl Sync for Ptr {}
    let (n, paired, p) = (xs.len(), !with.is_empty(), Ptr(xs.as_mut_ptr(), with.as_ptr()));
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(CHUNK), |parts| {
        let p = &p;
        let (start, end) = (parts.start * CHUNK, (parts.end * CHUNK).min(n));
        // SAFETY: chunks are disjoint and within `xs`, and within `with` when it is given.
        let (x, w) = unsafe {
            let w: &[f32] = if paired { std::slice::from_raw_parts(p.1.add(start), end - start) } else { &[] };
            (std::slice::from_raw_parts_mut(p.0.add(start), end - start), w)
        };
        f(x, w)
    });
}

/// `g ← silu(g) · u`, value by value (`silu(x) = x / (1 + e^(−x))`, computed as GELU is, without
/// overflow: with `e = e^(−|x|)`, `x / (1 + e)`, times `e` when `x < 0`).
///
/// # Panics
/// Where [`available`] is false, or if the lengths differ.
pub fn silu_mul_in_place(g: &mut [f32], u: &[f32]) {
    silu_mul_in_place_with(ActivationKernel::detect().expect("the vector SiLU needs AVX-512 or AVX2"), g, u)
}

/// [`silu_mul_in_place`] on a given path (which must run here).
pub fn silu_mul_in_place_with(kernel: ActivationKernel, g: &mut [f32], u: &[f32]) {
    assert!(kernel.runs(), "{kernel:?} does not run on this CPU");
    assert_eq!(g.len(), u.len());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the path's features were checked.
    match kernel {
        ActivationKernel::Avx512 => in_chunks(g, u, |g, u| unsafe { silu_mul_avx512(g, u) }),
        ActivationKernel::Avx2 => in_chunks(g, u, |g, u| unsafe { silu_mul_avx2(g, u) }),
    }
}

/// SiLU of one value, as the vector code computes it (the tail of a slice, the tests' reference).
pub fn silu(x: f32) -> f32 {
    let e = crate::cpu::exp::exp(-x.abs());
    let r = x / (1.0 + e);
    if x < 0.0 { r * e } else { r }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f")]
unsafe fn silu_mul_avx512(g: &mut [f32], u: &[f32]) {
    use std::arch::x86_64::*;
    let whole = g.len() / 16 * 16;
    let (p, q) = (g.as_mut_ptr(), u.as_ptr());
    let one = _mm512_set1_ps(1.0);
    for j in (0..whole).step_by(16) {
        // SAFETY: j + 16 <= whole <= g.len() = u.len().
        unsafe {
            let x = _mm512_loadu_ps(p.add(j));
            let e = crate::cpu::exp::avx512::exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
            let r = _mm512_div_ps(x, _mm512_add_ps(one, e));
            let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
            _mm512_storeu_ps(p.add(j), _mm512_mul_ps(_mm512_mask_mul_ps(r, negative, r, e), _mm512_loadu_ps(q.add(j))));
        }
    }
    for (x, &v) in g[whole..].iter_mut().zip(&u[whole..]) {
        *x = silu(*x) * v;
    }
}

/// The same arithmetic on one value (the tail of a slice, and the tests' reference).
pub fn gelu_tanh(x: f32) -> f32 {
    let y = SQRT_2_OVER_PI * x * CUBIC.mul_add(x * x, 1.0);
    let e = crate::cpu::exp::exp(-2.0 * y.abs());
    let r = x / (1.0 + e);
    if y < 0.0 { r * e } else { r }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f")]
unsafe fn gelu_avx512(xs: &mut [f32]) {
    use std::arch::x86_64::*;
    let whole = xs.len() / 16 * 16;
    let p = xs.as_mut_ptr();
    let (c, cubic, one, minus_two) = (_mm512_set1_ps(SQRT_2_OVER_PI), _mm512_set1_ps(CUBIC), _mm512_set1_ps(1.0), _mm512_set1_ps(-2.0));
    for j in (0..whole).step_by(16) {
        // SAFETY: j + 16 <= whole <= xs.len().
        unsafe {
            let x = _mm512_loadu_ps(p.add(j));
            let y = _mm512_mul_ps(_mm512_mul_ps(c, x), _mm512_fmadd_ps(cubic, _mm512_mul_ps(x, x), one));
            let e = crate::cpu::exp::avx512::exp16(_mm512_mul_ps(minus_two, _mm512_abs_ps(y)));
            let r = _mm512_div_ps(x, _mm512_add_ps(one, e));
            let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, _mm512_setzero_ps());
            _mm512_storeu_ps(p.add(j), _mm512_mask_mul_ps(r, negative, r, e));
        }
    }
    for x in &mut xs[whole..] {
        *x = gelu_tanh(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_mul_avx2(g: &mut [f32], u: &[f32]) {
    use std::arch::x86_64::*;
    let whole = g.len() / 8 * 8;
    let (p, q) = (g.as_mut_ptr(), u.as_ptr());
    let (one, sign) = (_mm256_set1_ps(1.0), _mm256_set1_ps(-0.0));
    for j in (0..whole).step_by(8) {
        // SAFETY: j + 8 <= whole <= g.len() = u.len().
        unsafe {
            let x = _mm256_loadu_ps(p.add(j));
            let e = crate::cpu::exp::avx2::exp8(_mm256_or_ps(x, sign)); // −|x|
            let r = _mm256_div_ps(x, _mm256_add_ps(one, e));
            let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_setzero_ps());
            let r = _mm256_blendv_ps(r, _mm256_mul_ps(r, e), negative);
            _mm256_storeu_ps(p.add(j), _mm256_mul_ps(r, _mm256_loadu_ps(q.add(j))));
        }
    }
    for (x, &v) in g[whole..].iter_mut().zip(&u[whole..]) {
        *x = silu(*x) * v;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_avx2(xs: &mut [f32]) {
    use std::arch::x86_64::*;
    let whole = xs.len() / 8 * 8;
    let p = xs.as_mut_ptr();
    let (c, cubic, one, minus_two) = (_mm256_set1_ps(SQRT_2_OVER_PI), _mm256_set1_ps(CUBIC), _mm256_set1_ps(1.0), _mm256_set1_ps(-2.0));
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    for j in (0..whole).step_by(8) {
        // SAFETY: j + 8 <= whole <= xs.len().
        unsafe {
            let x = _mm256_loadu_ps(p.add(j));
            let y = _mm256_mul_ps(_mm256_mul_ps(c, x), _mm256_fmadd_ps(cubic, _mm256_mul_ps(x, x), one));
            let e = crate::cpu::exp::avx2::exp8(_mm256_mul_ps(minus_two, _mm256_and_ps(y, magnitude)));
            let r = _mm256_div_ps(x, _mm256_add_ps(one, e));
            let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(y, _mm256_setzero_ps());
            _mm256_storeu_ps(p.add(j), _mm256_blendv_ps(r, _mm256_mul_ps(r, e), negative));
        }
    }
    for x in &mut xs[whole..] {
        *x = gelu_tanh(*x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition in f64, and against candle's `gelu` (libm's `tanhf`).
    #[test]
    fn vector_gelu_matches_the_definition() {
        if !available() {
            return crate::cpu::exp::tests::without_avx512("the vector GELU (and AVX2)");
        }
        let xs: Vec<f32> = (0..20_001).map(|i| -12.0 + i as f32 * 0.0012).chain([0.0, -0.0, 30.0, -30.0, 1e-30]).collect();
        let mut got = xs.clone();
        gelu_tanh_in_place(&mut got);
        for kernel in [ActivationKernel::Avx512, ActivationKernel::Avx2].into_iter().filter(|k| k.runs()) {
            let mut other = xs.clone();
            gelu_tanh_in_place_with(kernel, &mut other);
            assert_eq!(other, got, "{kernel:?}: the paths give the same bits");
        }
        let candle = candle_core::Tensor::new(xs.as_slice(), &candle_core::Device::Cpu).unwrap().gelu().unwrap().to_vec1::<f32>().unwrap();
        let (mut worst, mut worst_candle) = (0f64, 0f64);
        for ((&x, &g), &c) in xs.iter().zip(&got).zip(&candle) {
            let x64 = f64::from(x);
            let exact = 0.5 * x64 * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64.powi(3))).tanh());
            let tol = 4.0 * f64::from(f32::EPSILON) * exact.abs().max(1e-30) + 1e-37;
            let d = (f64::from(g) - exact).abs();
            if exact.abs() > 1e-6 {
                worst = worst.max(d / exact.abs());
            }
            worst_candle = worst_candle.max((f64::from(c) - f64::from(g)).abs());
            assert!(d <= tol.max(4e-8 * x64.abs()), "gelu({x}) = {g}, exact {exact}");
            assert_eq!(g, gelu_tanh(x), "vector and scalar at {x}");
        }
        assert!(worst_candle < 1e-6, "against candle: max |Δ| {worst_candle:e}");
        eprintln!("largest relative error (|gelu| > 1e-6) {worst:e}, largest |Δ| to candle {worst_candle:e}");
    }

    /// `silu(g) · u` against the definition in f64 (≤ 4 ulp relative, the product's rounding
    /// included) and candle's `silu(g) * u`; vector = scalar bit for bit; a length that is not a
    /// multiple of 16; extremes (no overflow at ±100).
    #[test]
    fn vector_silu_mul_matches_the_definition() {
        if !available() {
            return crate::cpu::exp::tests::without_avx512("the vector SiLU (and AVX2)");
        }
        let gs: Vec<f32> = (0..20_001).map(|i| -12.0 + i as f32 * 0.0012).chain([0.0, -0.0, 100.0, -100.0, 1e-30]).collect();
        let us: Vec<f32> = (0..gs.len()).map(|i| ((i * 7919) % 1000) as f32 * 0.003 - 1.5).collect();
        let mut got = gs.clone();
        silu_mul_in_place(&mut got, &us);
        for kernel in [ActivationKernel::Avx512, ActivationKernel::Avx2].into_iter().filter(|k| k.runs()) {
            let mut other = gs.clone();
            silu_mul_in_place_with(kernel, &mut other, &us);
            assert_eq!(other, got, "{kernel:?}: the paths give the same bits");
        }
        let t = |v: &[f32]| candle_core::Tensor::new(v, &candle_core::Device::Cpu).unwrap();
        let candle = (candle_nn::ops::silu(&t(&gs)).unwrap() * t(&us)).unwrap().to_vec1::<f32>().unwrap();
        let mut worst_candle = 0f64;
        for (((&g, &u), &v), &c) in gs.iter().zip(&us).zip(&got).zip(&candle) {
            let exact = f64::from(g) / (1.0 + (-f64::from(g)).exp()) * f64::from(u);
            let tol = 4.0 * f64::from(f32::EPSILON) * exact.abs() + 1e-37;
            assert!((f64::from(v) - exact).abs() <= tol, "silu({g}) · {u} = {v}, exact {exact}");
            assert_eq!(v, silu(g) * u, "vector and scalar at {g}");
            worst_candle = worst_candle.max((f64::from(c) - f64::from(v)).abs());
        }
        assert!(worst_candle < 1e-5, "against candle: max |Δ| {worst_candle:e}");
    }
}
