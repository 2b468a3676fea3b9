//! CPU kernels. Each vector path has a portable twin it is tested against, and says on which
//! CPUs it runs (`available`/`kernel`): the callers fall back to candle's ops elsewhere.

pub mod activation;
pub mod attention;
pub mod block_quant;
pub mod exp;
pub mod gemm;
pub mod norm;
pub mod rotary;

/// The sum of 16 lanes in one fixed order (halves added, then their halves): a 16-lane
/// accumulator's total, the same bits from one AVX-512 register, two AVX2 ones or an array.
#[inline]
pub(crate) fn sum16(mut l: [f32; 16]) -> f32 {
    for width in [8, 4, 2, 1] {
        for i in 0..width {
            l[i] += l[i + width];
        }
    }
    l[0]
}

/// Reproducible values in [-1, 1) (xorshift), for the kernels' tests and benchmarks.
#[doc(hidden)]
pub fn test_values(n: usize, seed: u32) -> Vec<f32> {
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
