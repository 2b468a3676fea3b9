//! Fused attention on CUDA (`attention.cu`): one launch a layer runs every block of a
//! pass's layout (invscale-models' `Layout`) (documents, shared prefix segments, continuations) without
//! padding and without materialising the scores. bf16 and f16, heads of 64 or 128 values;
//! other cases take the padded path in `layers`.
//!
//! The launch is described by [`FusedBlocks`], built on the host from the layout: a table of
//! blocks (first query token, query count, where its keys and rows start), a table of CTA
//! tiles (block, first row: 64 query rows each), every block's key tokens (its context ranges,
//! then its own tokens) and, for each query row, the keys it sees as two ranges of key indices.
//! Two ranges hold every row a layout makes: a row sees its block's context and the block's
//! tokens up to its own — or, in a continuation, the document's tokens and the continuation's
//! up to its own — cut at the front by a sliding window. The kernel tests a key against them
//! arithmetically (a mask read from memory in its inner loop made it latency-bound).

use candle_core::{DType, Device, Tensor};

use candle_core::Result;

/// Query rows a CTA takes (four warps of 16): the tile table's stride.
const ROWS_PER_TILE: usize = 64;

/// Whether the fused kernel runs attention of this dtype and head size on `device`
/// (`INVSCALE_FUSED_ATTENTION=0` turns it off: the padded path, to compare).
pub fn supported(device: &Device, dtype: DType, head_dim: usize) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var("INVSCALE_FUSED_ATTENTION").map_or(true, |v| v != "0"));
    on && cfg!(feature = "cuda") && device.is_cuda() && matches!(dtype, DType::BF16 | DType::F16) && matches!(head_dim, 64 | 128)
}

/// The host-built description of one pass's attention blocks for the kernel (see the module
/// doc), on the device.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub struct FusedBlocks {
    /// `[blocks, 5]` u32: q_start, q_len, keys offset, key count, first row in `seen`.
    blocks: Tensor,
    /// `[tiles, 2]` u32: block, first query row.
    tiles: Tensor,
    tile_count: usize,
    /// Every block's key tokens, block after block.
    keys: Tensor,
    /// `[rows, 4]` u32: the key indices each query row sees, `[a, b)` and `[c, d)`.
    seen: Tensor,
    tokens: usize,
}

/// One block as the host lays it out: its query tokens, its key tokens, and for each query the
/// keys it sees, `[a, b, c, d]`: key indices `[a, b) ∪ [c, d)`.
pub struct HostBlock {
    pub queries: std::ops::Range<usize>,
    pub keys: Vec<u32>,
    pub seen: Vec<[u32; 4]>,
}

impl FusedBlocks {
    /// Lays out `blocks` (covering tokens `0..tokens`) for the kernel on `device`.
    pub fn new(blocks: impl IntoIterator<Item = HostBlock>, tokens: usize, device: &Device) -> Result<FusedBlocks> {
        let mut table = Vec::new();
        let mut tiles = Vec::new();
        let mut keys = Vec::new();
        let mut seen: Vec<u32> = Vec::new();
        for (i, b) in blocks.into_iter().enumerate() {
            table.extend([b.queries.start as u32, b.queries.len() as u32, keys.len() as u32, b.keys.len() as u32, (seen.len() / 4) as u32]);
            for row in (0..b.queries.len()).step_by(ROWS_PER_TILE) {
                tiles.extend([i as u32, row as u32]);
            }
            keys.extend_from_slice(&b.keys);
            seen.extend(b.seen.iter().flatten());
        }
        let tile_count = tiles.len() / 2;
        Ok(FusedBlocks {
            blocks: Tensor::new(table.as_slice(), device)?,
            tiles: Tensor::new(tiles.as_slice(), device)?,
            tile_count,
            keys: Tensor::new(keys.as_slice(), device)?,
            seen: Tensor::new(seen.as_slice(), device)?.reshape(((seen.len() / 4).max(1), 4))?,
            tokens,
        })
    }
}

/// `softmax(q kᵀ · scale + mask) v` for every block; `q: [1, h, t, d]`, `k, v: [1, kv_h, t, d]`
/// (no cache), contiguous or views of `[t, heads · d]` (any strides over heads and tokens, the
/// last dimension contiguous); returns `[t, h·d]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, blocks: &FusedBlocks, scale: f64) -> Result<Tensor> {
    let rows_contiguous = |x: &Tensor| -> Result<Tensor> { Ok(if x.stride()[3] == 1 { x.clone() } else { x.contiguous()? }) };
    let (q, k, v) = (rows_contiguous(q)?, rows_contiguous(k)?, rows_contiguous(v)?);
    Ok(q.apply_op3_no_bwd(&k, &v, &Fused { blocks, scale: scale as f32 })?)
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Fused<'a> {
    blocks: &'a FusedBlocks,
    scale: f32,
}

impl candle_core::CustomOp3 for Fused<'_> {
    fn name(&self) -> &'static str {
        "invscale-fused-attention"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        crate::cuda::launch::cpu_bail(self.name())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        lq: &candle_core::Layout,
        k: &candle_core::CudaStorage,
        lk: &candle_core::Layout,
        v: &candle_core::CudaStorage,
        lv: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
        use crate::cuda::launch::*;
        use candle_core::backend::BackendStorage;
        use candle_core::{CudaStorage, Storage};

        let fb = self.blocks;
        let (_, heads, t, d) = lq.shape().dims4()?;
        let (_, kv_heads, tk, _) = lk.shape().dims4()?;
        if t != fb.tokens || tk != t || heads % kv_heads != 0 {
            candle_core::bail!("fused attention: q has {t} tokens, k {tk}, the layout {} (heads {heads}, kv heads {kv_heads})", fb.tokens);
        }
        let dev = q.device().clone();

        fn launch<T: Half>(
            name: &str,
            dev: &candle_core::CudaDevice,
            (q, lq): (&CudaStorage, &candle_core::Layout),
            (k, lk): (&CudaStorage, &candle_core::Layout),
            (v, lv): (&CudaStorage, &candle_core::Layout),
            fb: &FusedBlocks,
            dims: (usize, usize, usize, usize),
            scale: f32,
        ) -> candle_core::Result<CudaStorage> {
            let (t, heads, kv_heads, d) = dims;
            let strides = |l: &candle_core::Layout| -> (i64, i64) { (l.stride()[1] as i64, l.stride()[2] as i64) };
            let ((qh, qt), (kh, kt), (vh, vt)) = (strides(lq), strides(lk), strides(lv));
            let (q, k, v) = (strided_view::<T>(q, lq)?, strided_view::<T>(k, lk)?, strided_view::<T>(v, lv)?);
            let guards = [fb.blocks.storage_and_layout(), fb.tiles.storage_and_layout(), fb.keys.storage_and_layout(), fb.seen.storage_and_layout()];
            let cuda = |i: usize| -> candle_core::Result<&CudaStorage> {
                match &*guards[i].0 {
                    Storage::Cuda(s) => Ok(s),
                    _ => candle_core::bail!("fused attention: the block tables are not on the GPU"),
                }
            };
            let (blocks, tiles, keys, seen) =
                (cuda(0)?.as_cuda_slice::<u32>()?, cuda(1)?.as_cuda_slice::<u32>()?, cuda(2)?.as_cuda_slice::<u32>()?, cuda(3)?.as_cuda_slice::<u32>()?);
            let out = dev.alloc_zeros::<T>(t * heads * d)?;
            let func = dev.get_or_load_custom_func(name, "invscale_attention", ATTENTION_PTX)?;
            let mut builder = func.builder();
            builder.arg(&q);
            builder.arg(&k);
            builder.arg(&v);
            builder.arg(blocks);
            builder.arg(tiles);
            builder.arg(keys);
            builder.arg(seen);
            builder.arg(&out);
            candle_core::builder_arg!(builder, qh, qt, kh, kt, vh, vt, heads as i32, kv_heads as i32, scale);
            let cfg = LaunchConfig { grid_dim: (fb.tile_count as u32, heads as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
            // SAFETY: the kernel reads q, k, v within their layouts (`t` tokens: the tables index
            // tokens of the layout, which has `t`; heads and rows by the layouts' strides), the
            // tables within their lengths, and writes each of the `t` output rows' `heads · d`
            // values once.
            unsafe { builder.launch(cfg) }.w()?;
            Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
        }

        let dims = (t, heads, kv_heads, d);
        let storage = match q.dtype() {
            DType::BF16 => launch::<half::bf16>(&format!("attention_bf16_{d}"), &dev, (q, lq), (k, lk), (v, lv), fb, dims, self.scale)?,
            DType::F16 => launch::<half::f16>(&format!("attention_f16_{d}"), &dev, (q, lq), (k, lk), (v, lv), fb, dims, self.scale)?,
            other => candle_core::bail!("fused attention: {other:?} is not supported"),
        };
        Ok((storage, (t, heads * d).into()))
    }
}
