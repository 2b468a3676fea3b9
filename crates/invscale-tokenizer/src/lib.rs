//! Tokenizers that give the ids transformers gives, and so lm-evaluation-harness's requests:
//!
//! - a checkpoint's `tokenizer.json`, through HF `tokenizers` ([`Tokenizer::from_checkpoint`]);
//! - a GGUF file's vocabulary ([`GgufVocab`], read from the file by the weights loader), rebuilt
//!   the way transformers' GGUF loader rebuilds it, computing the same ids without `tokenizers`'
//!   tables: byte-level BPE ([`byte_level`]: SmolLM2, Qwen2, Llama 3) and SentencePiece BPE
//!   ([`sentencepiece`]: Gemma, Llama 2), over the compact vocabulary of [`bpe`].
//!
//! A tokenizer also knows its BOS/EOS tokens and whether it puts BOS first by default, which
//! [`BosPolicy`] decides from (SCORING.md §2).

pub mod bpe;
pub mod byte_level;
pub mod error;
pub mod gguf;
pub mod sentencepiece;
pub mod tokenizer;

pub use error::TokenizerError;
pub use gguf::GgufVocab;
pub use tokenizer::{BosPolicy, Tokenizer};
