//! Tokenizers: from a `tokenizer.json` (HF checkpoints), or built from a GGUF file's metadata.
//!
//! A GGUF stores the vocabulary, merges, token types and special ids under llama.cpp's keys, and
//! no `tokenizer.json`. lm-evaluation-harness tokenizes such a file with what transformers' GGUF
//! loader (`integrations/gguf/gguf_tokenizer_mapping.py`, transformers 5) assembles on HF
//! `tokenizers`; the tokenizers here compute the same ids from the file without `tokenizers`'
//! tables (see [`crate::bpe`]: Gemma 3's took ~78 MB):
//!
//! * `gpt2` (byte-level BPE; SmolLM2, Qwen2, Llama 3): the file's vocabulary and merges, and the
//!   pre-tokenizer split that `tokenizer.ggml.pre` names (GPT-2's default split otherwise):
//!   [`ByteLevel`].
//! * `llama` (SentencePiece BPE): byte fallback, spaces as `▁`, merges derived from the vocabulary
//!   by score: [`SentencePiece`]. Gemma files need two fixes: all-space tokens are stored with
//!   real spaces, and the merge order is the vocabulary order, not the scores.
//! * Control tokens (type 3) and user-defined ones (type 4) are matched whole in the text, as
//!   both references match them.

use std::path::Path;

use tokenizers::pre_tokenizers::byte_level::ByteLevel as ByteLevelSplit;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::byte_level::{BadMerge, ByteLevel};
use crate::gguf::GgufFile;
use crate::sentencepiece::SentencePiece;
use crate::{ModelError, Result};

pub struct Tokenizer {
    inner: Inner,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Whether the tokenizer adds BOS by default (`--bos auto` follows this).
    pub add_bos: bool,
    /// A short description for results files ("gguf gpt2/qwen2", "tokenizer.json").
    pub kind: String,
    /// Counted once: `tokenizers` builds the whole vocabulary map to count it (~140 ms for
    /// Gemma 3's 262k entries).
    vocab_size: std::sync::OnceLock<usize>,
}

/// The engine: HF `tokenizers` for a `tokenizer.json`; for a GGUF file, SentencePiece or
/// byte-level BPE computed from its vocabulary directly (the same ids without `tokenizers`'
/// tables, see [`crate::bpe`]).
enum Inner {
    Hf(tokenizers::Tokenizer),
    SentencePiece(SentencePiece),
    ByteLevel(ByteLevel),
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Token ids of `text`, without special tokens (lm-eval's `add_special_tokens=False`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.inner {
            Inner::Hf(t) => Ok(t.encode_fast(text, false).map_err(tok_err)?.get_ids().to_vec()),
            Inner::SentencePiece(t) => Ok(t.encode(text)),
            Inner::ByteLevel(t) => t.encode(text).map_err(ModelError::Tokenizer),
        }
    }

    /// A copy for another thread where sharing this one would contend: `tokenizers`' BPE keeps
    /// its word cache behind one lock, which 16 threads tokenising a task at once fight over
    /// (a copy starts with an empty cache). `None`: share this one (the GGUF tokenizers hold no
    /// lock).
    pub fn fork(&self) -> Option<Tokenizer> {
        match &self.inner {
            Inner::Hf(t) => Some(Tokenizer {
                inner: Inner::Hf(t.clone()),
                bos_id: self.bos_id,
                eos_id: self.eos_id,
                add_bos: self.add_bos,
                kind: self.kind.clone(),
                vocab_size: self.vocab_size.clone(),
            }),
            Inner::SentencePiece(_) | Inner::ByteLevel(_) => None,
        }
    }

    /// The text of one token (for `invscale logprobs`): decoded bytes, lossy.
    pub fn token_text(&self, id: u32) -> String {
        match &self.inner {
            Inner::Hf(t) => t.decode(&[id], false).unwrap_or_default(),
            Inner::SentencePiece(t) => t.token_text(id),
            Inner::ByteLevel(t) => t.token_text(id),
        }
    }

    pub fn vocab_size(&self) -> usize {
        *self.vocab_size.get_or_init(|| match &self.inner {
            Inner::Hf(t) => t.get_vocab_size(true),
            Inner::SentencePiece(t) => t.vocab_size(),
            Inner::ByteLevel(t) => t.vocab_size(),
        })
    }

    /// A tokenizer.json with the BOS/EOS and default of its checkpoint's config.
    pub fn from_tokenizer_json(path: &Path, bos_id: Option<u32>, eos_id: Option<u32>, add_bos: bool) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::corrupt(path, e.to_string()))?;
        Ok(Tokenizer { inner: Inner::Hf(inner), bos_id, eos_id, add_bos, kind: "tokenizer.json".into(), vocab_size: Default::default() })
    }

    /// A Hugging Face checkpoint's `tokenizer.json`, with BOS/EOS from `tokenizer_config.json`
    /// (or `config.json`), and whether BOS goes first by default: `add_bos_token` when the config
    /// says, else whether the tokenizer's own post-processor puts it there.
    pub fn from_checkpoint(dir: &Path, config: &crate::hf::HfConfig) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ModelError::corrupt(
                dir,
                "no tokenizer.json (only fast tokenizers are read: save one with transformers' AutoTokenizer.from_pretrained(dir).save_pretrained(dir))",
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| ModelError::corrupt(&path, e.to_string()))?;
        let tc_path = dir.join("tokenizer_config.json");
        let tc: serde_json::Value = match std::fs::read_to_string(&tc_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| ModelError::corrupt(&tc_path, format!("not valid JSON: {e}")))?,
            Err(_) => serde_json::Value::Null,
        };
        let named = |v: &serde_json::Value| v.as_str().or_else(|| v["content"].as_str()).and_then(|s| inner.token_to_id(s));
        let config_id = |k: &str| {
            let v = config.get(k);
            v.as_u64().or_else(|| v.as_array().and_then(|a| a.first()?.as_u64())).map(|i| i as u32)
        };
        let bos_id = named(&tc["bos_token"]).or_else(|| config_id("bos_token_id"));
        let eos_id = named(&tc["eos_token"]).or_else(|| config_id("eos_token_id"));
        let add_bos = match tc["add_bos_token"].as_bool() {
            Some(b) => b,
            None => {
                let probe = inner.encode("a", true).map_err(tok_err)?;
                bos_id.is_some() && probe.get_ids().first().copied() == bos_id
            }
        };
        Ok(Tokenizer { inner: Inner::Hf(inner), bos_id, eos_id, add_bos, kind: "tokenizer.json".into(), vocab_size: Default::default() })
    }

    pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
        let model = g.string("tokenizer.ggml.model")?.to_string();
        let arch = g.architecture()?.to_string();
        let pre = g.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned();
        let tokens = g.string_array("tokenizer.ggml.tokens")?;
        let types = g.int_array("tokenizer.ggml.token_type").unwrap_or_default();
        let merges = g.string_array("tokenizer.ggml.merges").ok();
        let id = |key: &str| g.opt_int(key).and_then(|i| u32::try_from(i).ok());
        let bos_id = id("tokenizer.ggml.bos_token_id");
        let eos_id = id("tokenizer.ggml.eos_token_id");
        let specials: Vec<u32> = [bos_id, eos_id, id("tokenizer.ggml.unknown_token_id"), id("tokenizer.ggml.padding_token_id")]
            .into_iter()
            .flatten()
            .filter(|&i| (i as usize) < tokens.len())
            .collect();
        let unsupported = |m: String| ModelError::unsupported(&g.path, m);

        let inner = match model.as_str() {
            "gpt2" => {
                let merges = merges.ok_or_else(|| ModelError::unsupported(&g.path, "a byte-level BPE vocabulary without merges"))?;
                let split = pre_tokenizer(pre.as_deref())?;
                let bpe = ByteLevel::new(&tokens, &merges, &types, &specials, split).map_err(|BadMerge(i, why)| {
                    ModelError::corrupt(&g.path, format!("tokenizer.ggml.merges[{i}]: {why}"))
                })?;
                Inner::ByteLevel(bpe)
            }
            "llama" => {
                if merges.is_some() {
                    return Err(unsupported(
                        "a SentencePiece vocabulary with merges of its own (transformers derives them from the scores)".into(),
                    ));
                }
                let scores: Vec<f32> = match g.get("tokenizer.ggml.scores") {
                    Some(candle_core::quantized::gguf_file::Value::Array(v)) => {
                        v.iter().map(|x| x.to_f32().unwrap_or(0.0)).collect()
                    }
                    _ => Vec::new(),
                };
                Inner::SentencePiece(SentencePiece::new(&tokens, &scores, &types, &specials, arch.starts_with("gemma")))
            }
            other => {
                return Err(unsupported(format!(
                    "tokenizer model `{other}` is not supported (supported: gpt2 byte-level BPE, llama/SentencePiece BPE)"
                )));
            }
        };
        // transformers: a SentencePiece vocabulary adds BOS unless the file says otherwise.
        let add_bos = g.opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(model == "llama");
        let kind = format!("gguf {model}{}", pre.map(|p| format!("/{p}")).unwrap_or_default());
        Ok(Tokenizer { inner, bos_id, eos_id, add_bos, kind, vocab_size: Default::default() })
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
            let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false).map_err(tok_err)?;
            let bytes = ByteLevelSplit::default().add_prefix_space(false).use_regex(false);
            PreSequence::new(vec![split.into(), bytes.into()]).into()
        }
        None => ByteLevelSplit::default().add_prefix_space(false).use_regex(true).into(),
    })
}
