//! The tokenizer of a model: one of three engines behind one interface, with the model's special
//! tokens and its BOS default.

use std::path::Path;

use crate::byte_level::ByteLevel;
use crate::error::{Result, TokenizerError};
use crate::sentencepiece::SentencePiece;

/// Whether sequences start with the BOS token (SCORING.md §2: the largest source of
/// disagreement between runs, so it is always explicit and recorded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BosPolicy {
    /// What the tokenizer does by default (Gemma, Llama 2: yes; GPT-2, Qwen2, SmolLM2: no).
    Auto,
    Always,
    Never,
}

pub struct Tokenizer {
    pub(crate) inner: Inner,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Whether the tokenizer adds BOS by default (`--bos auto` follows this).
    pub add_bos: bool,
    /// A short description for results files ("gguf gpt2/qwen2", "tokenizer.json").
    pub kind: String,
    /// Counted once: `tokenizers` builds the whole vocabulary map to count it (~140 ms for
    /// Gemma 3's 262k entries).
    pub(crate) vocab_size: std::sync::OnceLock<usize>,
}

/// The engine: HF `tokenizers` for a `tokenizer.json`; for a GGUF file, SentencePiece or
/// byte-level BPE computed from its vocabulary directly (the same ids without `tokenizers`'
/// tables, see [`crate::bpe`]).
pub(crate) enum Inner {
    Hf(tokenizers::Tokenizer),
    SentencePiece(SentencePiece),
    ByteLevel(ByteLevel),
}

fn tok_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::engine(e)
}

impl Tokenizer {
    /// The token to put first under `policy`, if any. With `Always` and no BOS token, EOS
    /// stands in (as lm-eval does).
    pub fn bos_token(&self, policy: BosPolicy) -> Option<u32> {
        match policy {
            BosPolicy::Never => None,
            BosPolicy::Auto if !self.add_bos => None,
            _ => self.bos_id.or(self.eos_id),
        }
    }

    /// Token ids of `text`, without special tokens (lm-eval's `add_special_tokens=False`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.inner {
            Inner::Hf(t) => Ok(t.encode_fast(text, false).map_err(tok_err)?.get_ids().to_vec()),
            Inner::SentencePiece(t) => Ok(t.encode(text)),
            Inner::ByteLevel(t) => t.encode(text).map_err(TokenizerError::Engine),
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

    /// The text of a sequence of ids, as transformers' `decode(ids)` gives it (special tokens
    /// kept): what a server that takes text only is sent; it must tokenize back to the same ids
    /// (lm-eval's `tokenized_requests=False` assumes the same, and invscale checks it).
    pub fn decode(&self, ids: &[u32]) -> String {
        match &self.inner {
            Inner::Hf(t) => t.decode(ids, false).unwrap_or_default(),
            Inner::SentencePiece(t) => {
                let bytes: Vec<u8> = ids.iter().flat_map(|&id| t.token_bytes(id)).collect();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                match text.strip_prefix(' ') {
                    Some(rest) if t.prefixes_first() => rest.to_string(),
                    _ => text,
                }
            }
            Inner::ByteLevel(t) => String::from_utf8_lossy(&ids.iter().flat_map(|&id| t.token_bytes(id)).collect::<Vec<u8>>()).into_owned(),
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
        let inner = read_tokenizer_json(path)?;
        Ok(Tokenizer { inner: Inner::Hf(inner), bos_id, eos_id, add_bos, kind: "tokenizer.json".into(), vocab_size: Default::default() })
    }

    /// A Hugging Face checkpoint's `tokenizer.json`, with BOS/EOS from `tokenizer_config.json`
    /// (or `config.json`), and whether BOS goes first by default: `add_bos_token` when the config
    /// says, else whether the tokenizer's own post-processor puts it there.
    /// `config` is the checkpoint's `config.json`.
    pub fn from_checkpoint(dir: &Path, config: &serde_json::Value) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(TokenizerError::corrupt(
                dir,
                "no tokenizer.json (only fast tokenizers are read: save one with transformers' AutoTokenizer.from_pretrained(dir).save_pretrained(dir))",
            ));
        }
        let inner = read_tokenizer_json(&path)?;
        let tc_path = dir.join("tokenizer_config.json");
        let tc: serde_json::Value = match std::fs::read_to_string(&tc_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| TokenizerError::corrupt(&tc_path, format!("not valid JSON: {e}")))?,
            Err(_) => serde_json::Value::Null,
        };
        let named = |v: &serde_json::Value| v.as_str().or_else(|| v["content"].as_str()).and_then(|s| inner.token_to_id(s));
        let config_id = |k: &str| {
            let v = &config[k];
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
}

/// A `tokenizer.json` read by the tokenizers library, checked as JSON first: tokenizers 0.22
/// panics on a syntax error inside some sections (an unwrap in `decoders/mod.rs`, found by
/// fuzzing), where serde_json reports the line.
fn read_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::corrupt(path, e.to_string()))?;
    let json = serde_json::from_str::<serde_json::Value>(&text).map_err(|e| TokenizerError::corrupt(path, format!("not valid JSON: {e}")))?;
    check_templates(&json["post_processor"]).map_err(|m| TokenizerError::corrupt(path, m))?;
    text.parse::<tokenizers::Tokenizer>().map_err(|e| TokenizerError::corrupt(path, e.to_string()))
}

/// A `TemplateProcessing` post-processor (alone or in a `Sequence`) whose single-sequence template
/// names sequence B: tokenizers 0.22 indexes a second encoding that is not there when it encodes
/// (found by fuzzing), so it is refused when the file is read.
fn check_templates(processor: &serde_json::Value) -> std::result::Result<(), String> {
    if let Some(list) = processor["processors"].as_array() {
        return list.iter().try_for_each(check_templates);
    }
    if processor["type"] != "TemplateProcessing" {
        return Ok(());
    }
    let names_b = processor["single"].as_array().is_some_and(|pieces| pieces.iter().any(|p| p["Sequence"]["id"] == "B"));
    if names_b {
        return Err("post_processor: the single-sequence template names sequence B, which a single text does not have".into());
    }
    Ok(())
}
