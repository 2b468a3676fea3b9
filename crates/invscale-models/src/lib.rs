//! The model runtime for scoring: tokenizers and per-architecture model code over candle, loaded
//! from Hugging Face checkpoints (safetensors) or GGUF files.

pub mod block_quant;
pub mod byte_level;
pub mod bpe;
pub mod cpu_attention;
pub mod cpu_gelu;
pub mod cuda_attention;
pub mod cuda_ops;
#[cfg(feature = "cuda")]
pub mod cuda_upload;
pub mod gguf;
pub mod hf;
pub mod layers;
pub mod model;
pub mod models;
pub mod prefix_tree;
pub mod sentencepiece;
pub mod source;
pub mod tokenizer;
pub mod weights;

pub use model::{BosPolicy, Model, Prefix, TokenScore};
pub use source::{ModelSource, resolve};
pub use weights::Precision;

use std::path::{Path, PathBuf};

/// Call first thing in `main`, before any thread starts. candle asks for its CPU thread count at
/// every matrix product, and unless `RAYON_NUM_THREADS` is set that count comes from parsing
/// `/proc/cpuinfo` (`num_cpus::get_physical`) each time: 13% of a small model's CPU run. Asked
/// once here and pinned in the environment, the count (and so every result) is the same.
pub fn pin_cpu_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // Safety: no other thread exists yet to read the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}

/// Call at the start of a CPU run: fixes glibc's thresholds for a process that allocates the
/// same large activation buffers pass after pass. By default a buffer over 128 KiB is its own `mmap`,
/// faulted in page by page and unmapped when freed, until a freed one raises the threshold; a
/// run whose loading freed no large block (the GGUF tokenizers keep none) stays there: Gemma 3's
/// quantized hindsight-neglect took 3.4 M page faults instead of 0.5 M, and 15% longer. Buffers up
/// to 32 MiB now come from the heap and stay there between passes (after each CPU pass the heap's
/// free pages are still handed back, see `release_freed_memory`), so peak RSS is unchanged. Not
/// measured on a GPU run, which therefore keeps glibc's defaults.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only sets allocator parameters (under the arena's lock).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 64 << 20);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Unsupported { path: PathBuf, message: String },
    #[error("{0}")]
    Hub(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io { path: path.to_path_buf(), source }
    }
    pub fn corrupt(path: &Path, message: impl Into<String>) -> Self {
        ModelError::Corrupt { path: path.to_path_buf(), message: message.into() }
    }
    pub fn unsupported(path: &Path, message: impl Into<String>) -> Self {
        ModelError::Unsupported { path: path.to_path_buf(), message: message.into() }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
