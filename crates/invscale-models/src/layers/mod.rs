//! Layers shared by the architectures, one file per kind: linear layers (dense or quantized),
//! embeddings, norms, rotary embeddings, the KV cache, attention with its masks, activations.
//! Activations are `[tokens, hidden]` for one pass; attention works on
//! `[1, heads, tokens, head_dim]`. The kernels they call are in `invscale-kernels`; how a
//! pass's tokens are arranged is in [`crate::batch`].

pub mod activation;
pub mod attention;
pub mod embedding;
pub mod kv_cache;
pub mod linear;
pub mod mask;
pub mod moe;
pub mod norm;
pub mod rotary;
pub mod stages;
pub mod tensor;

pub use activation::{gelu_erf, gelu_pytorch_tanh, gelu_tanh, silu, silu_mul};
pub use attention::attention;
pub use embedding::Embedding;
pub use kv_cache::KvCache;
pub use linear::{Linear, Weight, quantized_product};
pub use mask::AttnMask;
pub use moe::{FeedForward, GatedMlp, SparseMoe};
pub use norm::{LayerNorm, RmsNorm};
pub use rotary::{RopeScaling, RopeSpec, RopeStyle, Rotary};
pub use stages::{OnStages, Stages};
pub use tensor::{ensure_f32, rows_in_chunks, split_heads};
