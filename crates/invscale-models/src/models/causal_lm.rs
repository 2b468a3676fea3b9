//! What every architecture implements: token ids in, final hidden states out, logits on demand.
//! Its own file, so that architectures depend on it and on the layers, never on the loader.

use candle_core::Tensor;

use crate::batch::layout::Layout;
use crate::error::Result;
use crate::layers::kv_cache::KvCache;
use crate::layers::linear::Linear;

/// One architecture's network: token ids in, final hidden states out; logits on demand.
pub trait CausalLm: Send + Sync {
    /// Runs `ids` after the cached tokens, arranged as `layout` says (positions, which tokens see
    /// which), appending them to the cache; returns the final (normed) hidden states,
    /// `[ids.len(), hidden]`.
    fn forward(&self, ids: &[u32], layout: &Layout, cache: &mut KvCache) -> Result<Tensor>;
    /// The LM head's matrix.
    fn head(&self) -> &Linear;
    /// The LM head on some hidden states: `[n, hidden]` → `[n, vocab]`.
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.head().forward(hidden)
    }
    fn layers(&self) -> usize;
}
