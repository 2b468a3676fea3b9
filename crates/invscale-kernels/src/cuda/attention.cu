// Fused attention over a layout's blocks, for the CUDA build (see src/cuda_attention.rs).
// Key and value tiles are double-buffered: the next tile's copy (cp.async) runs while the CTA
// computes on the current one.
//
// One launch runs a whole layer's attention: every block of the layout (a document's tokens,
// a shared prefix segment, ...) with its own query rows, its own list of keys (its context
// ranges then its own tokens) and, for each query row, the keys it sees as two ranges of key
// indices (a document's context and its own continuation, say). Nothing is padded and the
// `[heads, queries, keys]` scores never reach global memory: a CTA of four warps takes 64
// query rows of one block and one head, and walks the block's keys 32 at a time through
// shared memory, skipping key tiles that none of its rows sees.
//
// The softmax runs in two passes over the keys (row max and sum, then the normalised
// probabilities): q·kᵀ is computed twice, but the output accumulates in tensor-core fragments
// without the per-tile rescaling an online softmax needs (WMMA fragments have no documented
// element layout). Attention is a few percent of a pass's FLOPs, so this costs little; what
// it saves is the materialised scores. Arithmetic follows transformers' half-precision
// attention: products accumulate in f32, the softmax runs in f32 on unrounded scores (with the
// hardware's exp2: its error, ~1e-6 relative, is far below the half type's rounding of p), the
// probabilities are rounded to the input type before the product with the values (f32
// accumulation), and the output is rounded once.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

using namespace nvcuda;

namespace {

constexpr int WARPS = 4;
constexpr int BQ = 16 * WARPS;  // query rows per CTA
constexpr int BK = 32;          // keys per tile

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }

// Block table row: first query token, query rows, offset of its keys in `keys`, key count,
// offset of its rows' visible ranges in `seen`.
struct BlockInfo {
    unsigned q_start, q_len, k_off, k_len, row_off;
};

// The keys a query row sees: indices [x, y) and [z, w) of its block's keys.
__device__ __forceinline__ bool sees(uint4 r, int col) {
    return ((unsigned)col >= r.x && (unsigned)col < r.y) || ((unsigned)col >= r.z && (unsigned)col < r.w);
}
__device__ __forceinline__ bool sees_any(uint4 r, int from, int to) {
    return (r.x < (unsigned)to && r.y > (unsigned)from && r.x < r.y) || (r.z < (unsigned)to && r.w > (unsigned)from && r.z < r.w);
}

// Copies tile rows `[first, first + rows)` of the gathered `src` (row i: `D` elements at
// `src + token * stride`, token `index[i]`, or `start + i` without an index; `src` already at
// the head) into shared memory; rows past `count` are zeros (padding must not be NaN: a zero
// probability times a NaN value is NaN).
template <typename T, int D, int LD>
__device__ __forceinline__ void load_rows(T* dst, const T* __restrict__ src, long long stride, const unsigned* __restrict__ index,
                                          unsigned start, int first, int rows, int count) {
    constexpr int CH = D / 8;  // 16-byte chunks a row
    for (int i = threadIdx.x; i < rows * CH; i += blockDim.x) {
        const int r = i / CH, c = i % CH;
        const int row = first + r;
        uint4 value = make_uint4(0, 0, 0, 0);
        if (row < count) {
            const size_t token = index ? (size_t)index[row] : (size_t)(start + row);
            value = *reinterpret_cast<const uint4*>(src + token * stride + c * 8);
        }
        *reinterpret_cast<uint4*>(dst + r * LD + c * 8) = value;
    }
}

// As `load_rows` with an index, asynchronously (`cp.async`: the copy runs while the CTA computes
// on the other buffer; rows past `count` zero-filled). Complete after `cp_async_wait`.
template <typename T, int D, int LD>
__device__ __forceinline__ void load_rows_async(T* dst, const T* __restrict__ src, long long stride, const unsigned* __restrict__ index,
                                                int first, int rows, int count) {
    constexpr int CH = D / 8;
    for (int i = threadIdx.x; i < rows * CH; i += blockDim.x) {
        const int r = i / CH, c = i % CH;
        const int row = first + r;
        const bool ok = row < count;
        const T* from = ok ? src + (long long)index[row] * stride + c * 8 : src;
        const unsigned to = (unsigned)__cvta_generic_to_shared(dst + r * LD + c * 8);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(from), "r"(ok ? 16 : 0));
    }
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

template <typename T, int D>
__device__ void attend(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                       const BlockInfo* __restrict__ blocks, const uint2* __restrict__ tiles,
                       const unsigned* __restrict__ keys, const uint4* __restrict__ seen,
                       T* __restrict__ out, const long long (&strides)[6], int heads, int kv_heads, float scale) {
    constexpr int LD = D + 8;        // shared row stride of q, k, v tiles (elements)
    constexpr int SLD = BK + 4;      // scores row stride (floats)
    constexpr int PLD = BK + 8;      // probabilities row stride (elements)
    constexpr int FRAGS = D / 16;
    static_assert(BQ == 2 * BK, "q is staged in the key tiles' space");
    static_assert(16 * PLD * sizeof(T) <= 16 * SLD * sizeof(float), "probabilities overwrite their scores");
    // Two buffers each of key and value tiles (one filling while the other is used), then
    // each warp's scores (the probabilities overwrite them).
    __shared__ __align__(128) T kv[4 * BK * LD];
    __shared__ __align__(128) float scores_all[WARPS][16 * SLD];

    const uint2 tile = tiles[blockIdx.x];
    const BlockInfo blk = blocks[tile.x];
    const int row0 = tile.y;
    const int h = blockIdx.y;
    const int kvh = h / (heads / kv_heads);
    // q, k, v at this head: element (head, token, i) of each at head · strides[2j] + token ·
    // strides[2j + 1] + i (`[heads, t, D]` contiguous, or views of `[t, heads · D]`).
    const T* qh = q + h * strides[0];
    const T* kh = k + kvh * strides[2];
    const T* vh = v + kvh * strides[4];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q_len = blk.q_len, k_len = blk.k_len;
    const unsigned* block_keys = keys + blk.k_off;
    auto ks = [&](int b) { return kv + b * BK * LD; };
    auto vs = [&](int b) { return kv + (2 + b) * BK * LD; };
    float* scores = scores_all[warp];
    T* probs = reinterpret_cast<T*>(scores);

    // The warp's 16 query rows as tensor-core fragments, staged through shared memory.
    load_rows<T, D, LD>(kv, qh, strides[1], nullptr, blk.q_start, row0, BQ, q_len);
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[FRAGS];
#pragma unroll
    for (int i = 0; i < FRAGS; i++) wmma::load_matrix_sync(qf[i], kv + warp * 16 * LD + i * 16, LD);
    __syncthreads();

    // Softmax rows: lanes 2r and 2r+1 share row r of the warp's 16, 16 columns of a tile each.
    const int r = lane >> 1, half_col = (lane & 1) * (BK / 2);
    const int row = row0 + warp * 16 + r;  // within the block
    const bool row_ok = row < q_len;
    const uint4 range = row_ok ? seen[blk.row_off + row] : make_uint4(0, 0, 0, 0);
    const int ktiles = (k_len + BK - 1) / BK;

    // The first key tile from `kt` on that a row of the CTA sees (every thread holds a row's
    // ranges; the vote synchronises the CTA).
    auto next_seen = [&](int kt) {
        while (kt < ktiles && !__syncthreads_or(sees_any(range, kt * BK, kt * BK + BK))) kt++;
        return kt;
    };
    // Starts copying key tile `kt` (and its values) into buffer `b`.
    auto fetch = [&](int kt, int b, bool values) {
        load_rows_async<T, D, LD>(ks(b), kh, strides[3], block_keys, kt * BK, BK, k_len);
        if (values) load_rows_async<T, D, LD>(vs(b), vh, strides[5], block_keys, kt * BK, BK, k_len);
    };
    // Runs `body(j0, b)` on each key tile a row of the CTA sees, its keys (and values) in
    // buffer `b`, the next tile's copy running meanwhile.
    auto walk = [&](bool values, auto body) {
        int kt = next_seen(0), b = 0;
        if (kt < ktiles) fetch(kt, 0, values);
        cp_async_commit();
        while (kt < ktiles) {
            const int next = next_seen(kt + 1);
            if (next < ktiles) fetch(next, b ^ 1, values);
            cp_async_commit();
            cp_async_wait<1>();
            __syncthreads();
            body(kt * BK, b);
            __syncthreads();
            kt = next;
            b ^= 1;
        }
        cp_async_wait<0>();
    };
    // The warp's 16 × BK scores against the keys in buffer `b`, into `scores`.
    auto score_tile = [&](int b) {
#pragma unroll
        for (int n0 = 0; n0 < BK / 16; n0++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int i = 0; i < FRAGS; i++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, ks(b) + n0 * 16 * LD + i * 16, LD);
                wmma::mma_sync(acc, qf[i], kf, acc);
            }
            wmma::store_matrix_sync(scores + n0 * 16, acc, SLD, wmma::mem_row_major);
        }
        __syncwarp();
    };

    // Pass 1: each row's maximum and sum of exponentials.
    float m = -INFINITY, l = 0.0f;
    walk(false, [&](int j0, int b) {
        score_tile(b);
        if (row_ok) {
            float tile_max = -INFINITY;
            for (int c = half_col; c < half_col + BK / 2; c++) {
                const int col = j0 + c;
                if (sees(range, col)) tile_max = fmaxf(tile_max, scores[r * SLD + c] * scale);
            }
            if (tile_max > m) {
                l *= __expf(m - tile_max);
                m = tile_max;
            }
            for (int c = half_col; c < half_col + BK / 2; c++) {
                const int col = j0 + c;
                if (sees(range, col)) l += __expf(scores[r * SLD + c] * scale - m);
            }
        }
    });
    const float m_other = __shfl_xor_sync(0xffffffffu, m, 1);
    const float l_other = __shfl_xor_sync(0xffffffffu, l, 1);
    const float row_max = fmaxf(m, m_other);
    const float sum = (m == -INFINITY ? 0.0f : l * __expf(m - row_max)) + (m_other == -INFINITY ? 0.0f : l_other * __expf(m_other - row_max));
    const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;

    // Pass 2: the normalised probabilities, rounded to T, times the values.
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> of[FRAGS];
#pragma unroll
    for (int j = 0; j < FRAGS; j++) wmma::fill_fragment(of[j], 0.0f);
    walk(true, [&](int j0, int b) {
        score_tile(b);
        float s_row[BK / 2];
#pragma unroll
        for (int i = 0; i < BK / 2; i++) s_row[i] = scores[r * SLD + half_col + i];
        __syncwarp();
#pragma unroll
        for (int i = 0; i < BK / 2; i++) {
            const int c = half_col + i;
            float p = 0.0f;
            if (sees(range, j0 + c)) p = __expf(s_row[i] * scale - row_max) * inv_sum;
            probs[r * PLD + c] = from_float<T>(p);
        }
        __syncwarp();
#pragma unroll
        for (int j = 0; j < FRAGS; j++) {
#pragma unroll
            for (int kk = 0; kk < BK / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
                wmma::load_matrix_sync(pf, probs + kk * 16, PLD);
                wmma::load_matrix_sync(vf, vs(b) + kk * 16 * LD + j * 16, LD);
                wmma::mma_sync(of[j], pf, vf, of[j]);
            }
        }
    });

    // Out: row `q_start + row` of `[t, heads · D]`, this head's D columns, 16 at a time
    // through the warp's scores space.
    const size_t out_row = (size_t)(blk.q_start + row) * heads * D + (size_t)h * D;
#pragma unroll
    for (int j = 0; j < FRAGS; j++) {
        wmma::store_matrix_sync(scores, of[j], SLD, wmma::mem_row_major);
        __syncwarp();
        if (row_ok) {
            const int c0 = (lane & 1) * 8;
#pragma unroll
            for (int c = c0; c < c0 + 8; c++) out[out_row + j * 16 + c] = from_float<T>(scores[r * SLD + c]);
        }
        __syncwarp();
    }
}

}  // namespace

#define ATTENTION(NAME, T, D)                                                                                    \
    extern "C" __global__ void __launch_bounds__(32 * WARPS)                                                  \
        NAME(const T* q, const T* k, const T* v, const BlockInfo* blocks, const uint2* tiles, const unsigned* keys, \
             const uint4* seen, T* out, long long q_head, long long q_token, long long k_head, long long k_token,  \
             long long v_head, long long v_token, int heads, int kv_heads, float scale) {                             \
        const long long strides[6] = {q_head, q_token, k_head, k_token, v_head, v_token};                            \
        attend<T, D>(q, k, v, blocks, tiles, keys, seen, out, strides, heads, kv_heads, scale);                      \
    }

ATTENTION(attention_bf16_64, __nv_bfloat16, 64)
ATTENTION(attention_bf16_128, __nv_bfloat16, 128)
ATTENTION(attention_f16_64, __half, 64)
ATTENTION(attention_f16_128, __half, 128)
