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
template <typename T, typename T2>
__device__ void neox_qkv_rope(const T* __restrict__ qkv, const T* __restrict__ cos, const T* __restrict__ sin,
                              T* __restrict__ out, int t, int heads, int d, int rot) {
    // One CTA per token, two neighbouring dimensions a thread (4-byte loads and stores; d and
    // rot/2 even, so a pair never straddles a head, the rotated part or its halves).
    const unsigned token = blockIdx.x;
    const int half = rot / 2;
    const size_t n = (size_t)t * heads * d;
    for (int p = threadIdx.x; p < heads * d / 2; p += blockDim.x) {
        const int h = 2 * p / d, c = 2 * p % d;
        const size_t token_head = (size_t)token * heads + h;
        const T* src = qkv + token_head * 3 * d;
        const size_t at = (size_t)token * half + (c < half ? c : c - half);
        const int partner = c < half ? c + half : c - half;
        for (int part = 0; part < 3; ++part) {
            const T* s = src + part * d;
            T2 v = *reinterpret_cast<const T2*>(s + c);
            if (part < 2 && c < rot) {
                const T2 x = *reinterpret_cast<const T2*>(s + partner);
                const T2 cs = *reinterpret_cast<const T2*>(cos + at), sn = *reinterpret_cast<const T2*>(sin + at);
                const float a0 = to_float(from_float<T>(to_float(v.x) * to_float(cs.x)));
                const float a1 = to_float(from_float<T>(to_float(v.y) * to_float(cs.y)));
                const float b0 = to_float(from_float<T>(to_float(x.x) * to_float(sn.x)));
                const float b1 = to_float(from_float<T>(to_float(x.y) * to_float(sn.y)));
                v = c < half ? T2(from_float<T>(a0 - b0), from_float<T>(a1 - b1)) : T2(from_float<T>(a0 + b0), from_float<T>(a1 + b1));
            }
            *reinterpret_cast<T2*>(out + part * n + token_head * d + c) = v;
        }
    }
}

// LayerNorm of one row per CTA in f32, as PyTorch's: `T((x − mean) · rstd · w + b)`, mean and
// variance (biased) of the row, rstd = rsqrt(var + eps); w and b in T.
template <typename T>
__device__ void layer_norm(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ out, int cols,
                           float eps) {
    const size_t row = blockIdx.x;
    const T* xr = x + row * cols;
    T* yr = out + row * cols;
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) sum += to_float(xr[c]);
    const float mean = block_sum(sum) / cols;
    __syncthreads();  // `partial` is reused by the second sum
    float sq = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = to_float(xr[c]) - mean;
        sq += v * v;
    }
    const float rstd = rsqrtf(block_sum(sq) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = from_float<T>((to_float(xr[c]) - mean) * rstd * to_float(w[c]) + to_float(b[c]));
}

// GELU as PyTorch's CUDA kernels compute it for half types: in f32, rounded once. `tanh`: its
// `approximate="tanh"` (Gemma's gelu_pytorch_tanh), else the erf form (nn.GELU(), GPT-NeoX's).
__device__ __forceinline__ float gelu_f32(float v, int tanh_form) {
    if (tanh_form) {
        const float beta = 0.7978845608028654f;  // √2 · (2/√π) · ½
        const float cube = v * v * v;
        return 0.5f * v * (1.0f + tanhf(beta * (v + 0.044715f * cube)));
    }
    return v * 0.5f * (1.0f + erff(v * 0.7071067811865476f));
}

// Two values a thread (one 32-bit load and store), the odd last one by thread 0.
template <typename T, typename T2>
__device__ void gelu(const T* __restrict__ x, T* __restrict__ out, size_t n, int tanh_form) {
    const T2* x2 = reinterpret_cast<const T2*>(x);
    T2* out2 = reinterpret_cast<T2*>(out);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n / 2; i += (size_t)gridDim.x * blockDim.x) {
        const T2 v = x2[i];
        out2[i] = T2(from_float<T>(gelu_f32(to_float(v.x), tanh_form)), from_float<T>(gelu_f32(to_float(v.y), tanh_form)));
    }
    if (n % 2 == 1 && blockIdx.x == 0 && threadIdx.x == 0) out[n - 1] = from_float<T>(gelu_f32(to_float(x[n - 1]), tanh_form));
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
    neox_qkv_rope<__nv_bfloat16, __nv_bfloat162>(qkv, cos, sin, out, t, heads, d, rot);
}
extern "C" __global__ void neox_qkv_rope_f16(const __half* qkv, const __half* cos, const __half* sin, __half* out, int t, int heads,
                                             int d, int rot) {
    neox_qkv_rope<__half, __half2>(qkv, cos, sin, out, t, heads, d, rot);
}
extern "C" __global__ void layer_norm_bf16(const __nv_bfloat16* x, const __nv_bfloat16* w, const __nv_bfloat16* b, __nv_bfloat16* out,
                                           int cols, float eps) {
    layer_norm(x, w, b, out, cols, eps);
}
extern "C" __global__ void layer_norm_f16(const __half* x, const __half* w, const __half* b, __half* out, int cols, float eps) {
    layer_norm(x, w, b, out, cols, eps);
}
extern "C" __global__ void gelu_bf16(const __nv_bfloat16* x, __nv_bfloat16* out, size_t n, int tanh_form) {
    gelu<__nv_bfloat16, __nv_bfloat162>(x, out, n, tanh_form);
}
extern "C" __global__ void gelu_f16(const __half* x, __half* out, size_t n, int tanh_form) { gelu<__half, __half2>(x, out, n, tanh_form); }
