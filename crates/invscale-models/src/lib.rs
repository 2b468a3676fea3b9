//! The model runtime for scoring: per-architecture model code over candle, loaded from Hugging
//! Face checkpoints (safetensors) or GGUF files, scoring token sequences.
//!
//! - [`weights`]: reading GGUF files and safetensors checkpoints, resolving `--model`, GPU upload;
//! - [`layers`]: the layers the architectures share, one file per kind (kernels in
//!   `invscale-kernels`);
//! - [`batch`]: a pass's tokens as a prefix tree and its layout;
//! - [`models`]: one file per architecture, over the [`CausalLm`](models::causal_lm::CausalLm) trait;
//! - [`model`]: the scoring interface, [`Model`] (and [`load`], which architecture a file is);
//! - tokenizers are in `invscale-tokenizer`, re-exported here.

pub mod batch;
pub mod error;
pub mod host;
pub mod layers;
pub mod load;
pub mod model;
pub mod models;
pub mod profile;
#[cfg(feature = "testing")]
pub mod testing;
pub mod weights;

pub use error::{ModelError, Result};
pub use host::{peak_resident_bytes, pin_cpu_thread_count, tune_allocator};
pub use invscale_tokenizer::{self as tokenizer, BosPolicy, Tokenizer};
pub use layers::stages::{cuda_device_count, free_memory};
pub use model::{Model, Prefix, TokenScore};
pub use weights::precision::Precision;
pub use weights::source::{ModelSource, Needed, resolve, resolve_for};
