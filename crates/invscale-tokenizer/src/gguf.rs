//! A GGUF file's tokenizer. A GGUF stores the vocabulary, merges, token types and special ids
//! under llama.cpp's keys, and no `tokenizer.json`. lm-evaluation-harness tokenizes such a file
//! with what transformers' GGUF loader (`integrations/gguf/gguf_tokenizer_mapping.py`,
//! transformers 5) assembles on HF `tokenizers`; the tokenizers here compute the same ids from the
//! file without `tokenizers`' tables (see [`crate::bpe`]: Gemma 3's took ~78 MB):
//!
//! * `gpt2` (byte-level BPE; SmolLM2, Qwen2, Llama 3): the file's vocabulary and merges, and the
//!   pre-tokenizer split that `tokenizer.ggml.pre` names (GPT-2's default split otherwise):
//!   [`ByteLevel`].
//! * `llama` (SentencePiece BPE): byte fallback, spaces as `▁`, merges derived from the vocabulary
//!   by score: [`SentencePiece`]. Gemma files need two fixes: all-space tokens are stored with
//!   real spaces, and the merge order is the vocabulary order, not the scores.
//! * Control tokens (type 3) and user-defined ones (type 4) are matched whole in the text, as
//!   both references match them.
//!
//! The file itself is read by the weights loader (invscale-models' `GgufFile::tokenizer`), which
//! fills a [`GgufVocab`]: this crate reads no GGUF.

use std::path::PathBuf;

use tokenizers::pre_tokenizers::byte_level::ByteLevel as ByteLevelSplit;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::byte_level::{BadMerge, ByteLevel};
use crate::error::{Result, TokenizerError};
use crate::sentencepiece::SentencePiece;
use crate::tokenizer::{Inner, Tokenizer};

/// The tokenizer entries of a GGUF file's metadata (`tokenizer.ggml.*`), as stored.
#[derive(Clone, Debug, Default)]
pub struct GgufVocab {
    /// The file, for errors.
    pub path: PathBuf,
    /// `general.architecture` (Gemma's SentencePiece files need fixes of their own).
    pub architecture: String,
    /// `tokenizer.ggml.model`: `gpt2` or `llama`.
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer's name.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` (empty: all normal).
    pub types: Vec<i64>,
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.scores` (empty when absent).
    pub scores: Vec<f32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unknown_id: Option<u32>,
    pub padding_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`, when the file says.
    pub add_bos: Option<bool>,
}

impl Tokenizer {
    /// The tokenizer transformers builds from a GGUF file's vocabulary.
    pub fn from_gguf(v: &GgufVocab) -> Result<Tokenizer> {
        let GgufVocab { path, architecture, model, pre, tokens, types, merges, scores, bos_id, eos_id, .. } = v;
        let specials: Vec<u32> = [*bos_id, *eos_id, v.unknown_id, v.padding_id]
            .into_iter()
            .flatten()
            .filter(|&i| (i as usize) < tokens.len())
            .collect();
        let unsupported = |m: String| TokenizerError::unsupported(path, m);

        let inner = match model.as_str() {
            "gpt2" => {
                let merges = merges.as_ref().ok_or_else(|| unsupported("a byte-level BPE vocabulary without merges".into()))?;
                let split = pre_tokenizer(pre.as_deref())?;
                let bpe = ByteLevel::new(tokens, merges, types, &specials, split).map_err(|BadMerge(i, why)| {
                    TokenizerError::corrupt(path, format!("tokenizer.ggml.merges[{i}]: {why}"))
                })?;
                Inner::ByteLevel(bpe)
            }
            "llama" => {
                if merges.is_some() {
                    return Err(unsupported(
                        "a SentencePiece vocabulary with merges of its own (transformers derives them from the scores)".into(),
                    ));
                }
                Inner::SentencePiece(SentencePiece::new(tokens, scores, types, &specials, architecture.starts_with("gemma")))
            }
            other => {
                return Err(unsupported(format!(
                    "tokenizer model `{other}` is not supported (supported: gpt2 byte-level BPE, llama/SentencePiece BPE)"
                )));
            }
        };
        // transformers: a SentencePiece vocabulary adds BOS unless the file says otherwise.
        let add_bos = v.add_bos.unwrap_or(model == "llama");
        let kind = format!("gguf {model}{}", pre.as_ref().map(|p| format!("/{p}")).unwrap_or_default());
        Ok(Tokenizer { inner, bos_id: *bos_id, eos_id: *eos_id, add_bos, kind, vocab_size: Default::default() })
    }
}

/// The pre-tokenizer splits transformers picks by `tokenizer.ggml.pre`.
fn split_regex(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" | "dbrx"
        | "smaug-bpe" => LLAMA3,
        "qwen2" | "deepseek-r1-qwen" | "megrez" => QWEN2,
        "gpt-4o" | "llama4" => GPT4O,
        _ => return None,
    })
}

/// The split before byte-level BPE: the regex `tokenizer.ggml.pre` names and the byte mapping,
/// or GPT-2's ByteLevel split.
fn pre_tokenizer(pre: Option<&str>) -> Result<PreTokenizerWrapper> {
    Ok(match pre.and_then(split_regex) {
        Some(regex) => {
            let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false).map_err(TokenizerError::engine)?;
            let bytes = ByteLevelSplit::default().add_prefix_space(false).use_regex(false);
            PreSequence::new(vec![split.into(), bytes.into()]).into()
        }
        None => ByteLevelSplit::default().add_prefix_space(false).use_regex(true).into(),
    })
}
