//! Token embedding tables.

use candle_core::{Device, Tensor};
use invscale_kernels::cpu::block_quant::BlockMatrix;

use crate::batch::layout::Layout;
use crate::error::Result;
use crate::layers::kv_cache::KvCache;

/// A token embedding table: dense, or quantized rows dequantized as they are looked up.
pub enum Embedding {
    Dense(Tensor),
    Blocks(BlockMatrix),
}

impl Embedding {
    /// Where lookups land (quantized tables live on the CPU).
    pub fn device(&self) -> Device {
        match self {
            Embedding::Dense(t) => t.device().clone(),
            Embedding::Blocks(_) => Device::Cpu,
        }
    }

    /// The rows of `ids`, `[ids.len(), hidden]`, on `device`.
    pub fn lookup(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Embedding::Dense(t) => Ok(t.index_select(&Tensor::new(ids, device)?, 0)?),
            Embedding::Blocks(w) => Ok(Tensor::from_vec(w.rows_f32(ids), (ids.len(), w.shape().1), device)?),
        }
    }

    /// A pass's first step: `ids` (laid out as `layout`, after `cache`'s tokens) embedded on the
    /// table's device.
    pub fn start_pass(&self, ids: &[u32], layout: &Layout, cache: &KvCache) -> Result<Tensor> {
        assert_eq!((layout.past, layout.len()), (cache.len(), ids.len()));
        self.lookup(ids, &self.device())
    }
}
