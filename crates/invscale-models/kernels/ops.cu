// Row-wise kernels for half-precision passes on CUDA (see src/cuda_ops.rs), each one launch
// where candle's ops take several, and each rounding where transformers rounds.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace {

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }

// Sum over the CTA (blockDim.x a multiple of 32, at most 1024).
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < blockDim.x / 32 ? partial[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;  // every thread of warp 0 holds it; others too (each warp reduces `partial`)
}

// RMSNorm of one row per CTA, in f32 as transformers' RMSNorms: `r = x · rsqrt(mean(x²) + eps)`;
// then `scale_after_cast` (Llama, Qwen2: `w · r.to(dtype)`, weight in the half type):
// `T(T(r) · T(w))`, else (Gemma: `(r · w).to(dtype)`, w = 1 + weight in f32): `T(r · w)`.
template <typename T>
__device__ void rms_norm(const T* __restrict__ x, const float* __restrict__ w, T* __restrict__ out, int cols, float eps,
                         int scale_after_cast) {
    const size_t row = blockIdx.x;
    const T* xr = x + row * cols;
    T* yr = out + row * cols;
    float sq = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = to_float(xr[c]);
        sq += v * v;
    }
    const float inv = rsqrtf(block_sum(sq) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float r = to_float(xr[c]) * inv;
        yr[c] = scale_after_cast ? from_float<T>(to_float(from_float<T>(r)) * to_float(from_float<T>(w[c]))) : from_float<T>(r * w[c]);
    }
}

// `out[r, c] = bias[c]` for every row: the C of a GEMM with β = 1, so that the bias is added to
// the f32 accumulator before the one rounding (cuBLAS's and PyTorch's `addmm`).
template <typename T>
__device__ void fill_rows(const T* __restrict__ bias, T* __restrict__ out, int rows, int cols) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x)
        for (int c = threadIdx.x; c < cols; c += blockDim.x) out[(size_t)r * cols + c] = bias[c];
}

// GPT-NeoX's attention inputs out of its fused projection: `qkv` is `[t, heads, 3, d]` (each
// head's q, k and v side by side), `out` is `[3, t, heads, d]` (q, k, v, each token-major and
// contiguous), q and k turned on their first `rot` dimensions as transformers' rotate_half does,
// with its roundings (PyTorch computes each half-type op in f32 and rounds):
// `T(T(x·cos) ∓ T(x'·sin))`, cos and sin `[t, rot/2]` already in T. One pass where the unfused
// path copies q and k four times (contiguous, narrow, rotate, concatenate) and v once.
template <typename T>
__device__ void neox_qkv_rope(const T* __restrict__ qkv, const T* __restrict__ cos, const T* __restrict__ sin,
                              T* __restrict__ out, int t, int heads, int d, int rot) {
    const size_t n = (size_t)t * heads * d;
    const int half = rot / 2;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < 3 * n; i += (size_t)gridDim.x * blockDim.x) {
        const int part = (int)(i / n);
        const size_t r = i % n;
        const int c = (int)(r % d);
        const size_t token_head = r / d;
        const T* src = qkv + (token_head * 3 + part) * d;
        T v = src[c];
        if (part < 2 && c < rot) {
            const size_t at = (token_head / heads) * half + (c < half ? c : c - half);
            const float a = to_float(from_float<T>(to_float(src[c]) * to_float(cos[at])));
            const float b = to_float(from_float<T>(to_float(src[c < half ? c + half : c - half]) * to_float(sin[at])));
            v = from_float<T>(c < half ? a - b : a + b);
        }
        out[i] = v;
    }
}

// GELU as PyTorch's CUDA kernels compute it for half types: in f32, rounded once. `tanh`: its
// `approximate="tanh"` (Gemma's gelu_pytorch_tanh), else the erf form (nn.GELU(), GPT-NeoX's).
template <typename T>
__device__ void gelu(const T* __restrict__ x, T* __restrict__ out, size_t n, int tanh_form) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = to_float(x[i]);
        float y;
        if (tanh_form) {
            const float beta = 0.7978845608028654f;  // √2 · (2/√π) · ½
            const float cube = v * v * v;
            y = 0.5f * v * (1.0f + tanhf(beta * (v + 0.044715f * cube)));
        } else {
            y = v * 0.5f * (1.0f + erff(v * 0.7071067811865476f));
        }
        out[i] = from_float<T>(y);
    }
}

}  // namespace

extern "C" __global__ void rms_norm_bf16(const __nv_bfloat16* x, const float* w, __nv_bfloat16* out, int cols, float eps, int after) {
    rms_norm(x, w, out, cols, eps, after);
}
extern "C" __global__ void rms_norm_f16(const __half* x, const float* w, __half* out, int cols, float eps, int after) {
    rms_norm(x, w, out, cols, eps, after);
}
extern "C" __global__ void fill_rows_bf16(const __nv_bfloat16* bias, __nv_bfloat16* out, int rows, int cols) {
    fill_rows(bias, out, rows, cols);
}
extern "C" __global__ void fill_rows_f16(const __half* bias, __half* out, int rows, int cols) { fill_rows(bias, out, rows, cols); }
extern "C" __global__ void neox_qkv_rope_bf16(const __nv_bfloat16* qkv, const __nv_bfloat16* cos, const __nv_bfloat16* sin,
                                              __nv_bfloat16* out, int t, int heads, int d, int rot) {
    neox_qkv_rope(qkv, cos, sin, out, t, heads, d, rot);
}
extern "C" __global__ void neox_qkv_rope_f16(const __half* qkv, const __half* cos, const __half* sin, __half* out, int t, int heads,
                                             int d, int rot) {
    neox_qkv_rope(qkv, cos, sin, out, t, heads, d, rot);
}
extern "C" __global__ void gelu_bf16(const __nv_bfloat16* x, __nv_bfloat16* out, size_t n, int tanh_form) { gelu(x, out, n, tanh_form); }
extern "C" __global__ void gelu_f16(const __half* x, __half* out, size_t n, int tanh_form) { gelu(x, out, n, tanh_form); }
