// Fused attention over a layout's blocks, for the CUDA build (see src/cuda_attention.rs).
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
// attention: products accumulate in f32, the softmax runs in f32 on unrounded scores, the
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
// `src + (base + token) * D`, token `index[i]`, or `start + i` without an index) into shared
// memory; rows past `count` are zeros (padding must not be NaN: a zero probability times a NaN
// value is NaN).
template <typename T, int D, int LD>
__device__ __forceinline__ void load_rows(T* dst, const T* __restrict__ src, size_t base, const unsigned* __restrict__ index,
                                          unsigned start, int first, int rows, int count) {
    constexpr int CH = D / 8;  // 16-byte chunks a row
    for (int i = threadIdx.x; i < rows * CH; i += blockDim.x) {
        const int r = i / CH, c = i % CH;
        const int row = first + r;
        uint4 value = make_uint4(0, 0, 0, 0);
        if (row < count) {
            const size_t token = index ? (size_t)index[row] : (size_t)(start + row);
            value = *reinterpret_cast<const uint4*>(src + (base + token) * D + c * 8);
        }
        *reinterpret_cast<uint4*>(dst + r * LD + c * 8) = value;
    }
}

template <typename T, int D>
__device__ void attend(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                       const BlockInfo* __restrict__ blocks, const uint2* __restrict__ tiles,
                       const unsigned* __restrict__ keys, const uint4* __restrict__ seen,
                       T* __restrict__ out, int t, int heads, int kv_heads, float scale) {
    constexpr int LD = D + 8;        // shared row stride of q, k, v tiles (elements)
    constexpr int SLD = BK + 4;      // scores row stride (floats)
    constexpr int PLD = BK + 8;      // probabilities row stride (elements)
    constexpr int FRAGS = D / 16;
    static_assert(BQ == 2 * BK, "q is staged in the k and v tiles' space");
    __shared__ __align__(128) T kv[2 * BK * LD];
    __shared__ __align__(128) float scores_all[WARPS][16 * SLD];
    __shared__ __align__(128) T probs_all[WARPS][16 * PLD];

    const uint2 tile = tiles[blockIdx.x];
    const BlockInfo blk = blocks[tile.x];
    const int row0 = tile.y;
    const int h = blockIdx.y;
    const int kvh = h / (heads / kv_heads);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q_len = blk.q_len, k_len = blk.k_len;
    const unsigned* block_keys = keys + blk.k_off;
    T* ks = kv;
    T* vs = kv + BK * LD;
    float* scores = scores_all[warp];
    T* probs = probs_all[warp];

    // The warp's 16 query rows as tensor-core fragments, staged through shared memory.
    load_rows<T, D, LD>(kv, q, (size_t)h * t, nullptr, blk.q_start, row0, BQ, q_len);
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

    // Does any row of the CTA see any key of tile `j0`? (Every thread holds a row's ranges.)
    auto tile_seen = [&](int j0) { return __syncthreads_or(sees_any(range, j0, j0 + BK)) != 0; };
    // The warp's 16 × BK scores against the keys in `ks`, into `scores`.
    auto score_tile = [&]() {
#pragma unroll
        for (int n0 = 0; n0 < BK / 16; n0++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int i = 0; i < FRAGS; i++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, ks + n0 * 16 * LD + i * 16, LD);
                wmma::mma_sync(acc, qf[i], kf, acc);
            }
            wmma::store_matrix_sync(scores + n0 * 16, acc, SLD, wmma::mem_row_major);
        }
        __syncwarp();
    };

    // Pass 1: each row's maximum and sum of exponentials.
    float m = -INFINITY, l = 0.0f;
    for (int kt = 0; kt < ktiles; kt++) {
        const int j0 = kt * BK;
        if (!tile_seen(j0)) continue;
        load_rows<T, D, LD>(ks, k, (size_t)kvh * t, block_keys, 0, j0, BK, k_len);
        __syncthreads();
        score_tile();
        if (row_ok) {
            float tile_max = -INFINITY;
            for (int c = half_col; c < half_col + BK / 2; c++) {
                const int col = j0 + c;
                if (sees(range, col)) tile_max = fmaxf(tile_max, scores[r * SLD + c] * scale);
            }
            if (tile_max > m) {
                l *= expf(m - tile_max);
                m = tile_max;
            }
            for (int c = half_col; c < half_col + BK / 2; c++) {
                const int col = j0 + c;
                if (sees(range, col)) l += expf(scores[r * SLD + c] * scale - m);
            }
        }
        __syncthreads();
    }
    const float m_other = __shfl_xor_sync(0xffffffffu, m, 1);
    const float l_other = __shfl_xor_sync(0xffffffffu, l, 1);
    const float row_max = fmaxf(m, m_other);
    const float sum = (m == -INFINITY ? 0.0f : l * expf(m - row_max)) + (m_other == -INFINITY ? 0.0f : l_other * expf(m_other - row_max));
    const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;

    // Pass 2: the normalised probabilities, rounded to T, times the values.
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> of[FRAGS];
#pragma unroll
    for (int j = 0; j < FRAGS; j++) wmma::fill_fragment(of[j], 0.0f);
    for (int kt = 0; kt < ktiles; kt++) {
        const int j0 = kt * BK;
        if (!tile_seen(j0)) continue;
        load_rows<T, D, LD>(ks, k, (size_t)kvh * t, block_keys, 0, j0, BK, k_len);
        load_rows<T, D, LD>(vs, v, (size_t)kvh * t, block_keys, 0, j0, BK, k_len);
        __syncthreads();
        score_tile();
        for (int c = half_col; c < half_col + BK / 2; c++) {
            const int col = j0 + c;
            float p = 0.0f;
            if (sees(range, col)) p = expf(scores[r * SLD + c] * scale - row_max) * inv_sum;
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
                wmma::load_matrix_sync(vf, vs + kk * 16 * LD + j * 16, LD);
                wmma::mma_sync(of[j], pf, vf, of[j]);
            }
        }
        __syncthreads();
    }

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
             const uint4* seen, T* out, int t, int heads, int kv_heads, float scale) {                          \
        attend<T, D>(q, k, v, blocks, tiles, keys, seen, out, t, heads, kv_heads, scale);                      \
    }

ATTENTION(attention_bf16_64, __nv_bfloat16, 64)
ATTENTION(attention_bf16_128, __nv_bfloat16, 128)
ATTENTION(attention_f16_64, __half, 64)
ATTENTION(attention_f16_128, __half, 128)
