//! Tokenizers: from a `tokenizer.json` (HF checkpoints), or built from a GGUF file's metadata.
//!
//! A GGUF stores the vocabulary, merges, token types and special ids under llama.cpp's keys, and
//! no `tokenizer.json`. The tokenizer is rebuilt here with the same components transformers'
//! GGUF loader (`integrations/gguf/gguf_tokenizer_mapping.py`, transformers 5) assembles, on the
//! same engine (HF `tokenizers`), because lm-evaluation-harness tokenizes with exactly that:
//!
//! * `gpt2` (byte-level BPE; SmolLM2, Qwen2, Llama 3): the file's vocabulary and merges, and the
//!   pre-tokenizer split that `tokenizer.ggml.pre` names (GPT-2's default split otherwise).
//! * `llama` (SentencePiece BPE): byte fallback, spaces as `▁`; merges from the file, or derived
//!   from the vocabulary by score. Gemma files need two fixes: all-space tokens are stored with real
//!   spaces, and the merge order is the vocabulary order, not the scores.
//! * Control tokens (type 3) become special added tokens, user-defined ones (type 4) plain added
//!   tokens, so they are matched whole in the text as both references do.

use std::collections::HashMap;

use ahash::AHashMap;
use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::gguf::GgufFile;
use crate::{ModelError, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
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

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Token ids of `text`, without special tokens (lm-eval's `add_special_tokens=False`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.inner.encode_fast(text, false).map_err(tok_err)?.get_ids().to_vec())
    }

    /// The text of one token (for `invscale logprobs`): decoded bytes, lossy.
    pub fn token_text(&self, id: u32) -> String {
        self.inner.decode(&[id], false).unwrap_or_default()
    }

    pub fn vocab_size(&self) -> usize {
        *self.vocab_size.get_or_init(|| self.inner.get_vocab_size(true))
    }

    /// A tokenizer.json with the BOS/EOS and default of its checkpoint's config.
    pub fn from_tokenizer_json(path: &Path, bos_id: Option<u32>, eos_id: Option<u32>, add_bos: bool) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::corrupt(path, e.to_string()))?;
        Ok(Tokenizer { inner, bos_id, eos_id, add_bos, kind: "tokenizer.json".into(), vocab_size: Default::default() })
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
        Ok(Tokenizer { inner, bos_id, eos_id, add_bos, kind: "tokenizer.json".into(), vocab_size: Default::default() })
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
        let unsupported = |m: String| ModelError::unsupported(&g.path, m);

        let (mut inner, byte_level) = match model.as_str() {
            "gpt2" => (byte_level_bpe(&tokens, merges.as_deref(), pre.as_deref(), &g.path)?, true),
            "llama" => {
                let gemma = arch.starts_with("gemma");
                let scores = match g.get("tokenizer.ggml.scores") {
                    Some(candle_core::quantized::gguf_file::Value::Array(v)) => {
                        v.iter().map(|x| x.to_f32().unwrap_or(0.0)).collect()
                    }
                    _ => vec![0.0; tokens.len()],
                };
                (sentencepiece_bpe(&tokens, merges.as_deref(), &scores, gemma)?, false)
            }
            other => {
                return Err(unsupported(format!(
                    "tokenizer model `{other}` is not supported (supported: gpt2 byte-level BPE, llama/SentencePiece BPE)"
                )));
            }
        };
        add_typed_tokens(&mut inner, &tokens, &types, byte_level);
        // transformers: a SentencePiece vocabulary adds BOS unless the file says otherwise.
        let add_bos = g.opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(model == "llama");
        let kind = format!("gguf {model}{}", pre.map(|p| format!("/{p}")).unwrap_or_default());
        Ok(Tokenizer { inner, bos_id, eos_id, add_bos, kind, vocab_size: Default::default() })
    }
}

/// GPT-2's map from bytes to printable characters, in which byte-level vocabularies are spelled.
fn bytes_to_unicode() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in printable.into_iter().zip(chars) {
        table[b as usize] = char::from_u32(c).expect("valid code points");
    }
    table
}

fn byte_alphabet() -> std::collections::HashSet<char> {
    bytes_to_unicode().into_iter().collect()
}

/// GGUF merges are `"left right"` strings.
fn parse_merges(merges: &[String]) -> Vec<(String, String)> {
    merges
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').unwrap_or((m, ""));
            (a.to_string(), b.to_string())
        })
        .collect()
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

fn byte_level_bpe(tokens: &[String], merges: Option<&[String]>, pre: Option<&str>, path: &Path) -> Result<tokenizers::Tokenizer> {
    let spelling = bytes_to_unicode();
    let alphabet = byte_alphabet();
    let mut vocab = AHashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        // Tokens outside the byte alphabet are respelled byte by byte, as transformers does.
        let key = if t.chars().all(|c| alphabet.contains(&c)) {
            t.clone()
        } else {
            t.bytes().map(|b| spelling[b as usize]).collect()
        };
        vocab.insert(key, i as u32);
    }
    let merges = merges.ok_or_else(|| ModelError::unsupported(path, "a byte-level BPE vocabulary without merges"))?;
    let merges = parse_merges(merges);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .build()
        .map_err(tok_err)?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    match pre.and_then(split_regex) {
        Some(regex) => {
            let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false).map_err(tok_err)?;
            let bytes = ByteLevel::default().add_prefix_space(false).use_regex(false);
            tok.with_pre_tokenizer(Some(PreSequence::new(vec![split.into(), bytes.into()])));
        }
        None => {
            tok.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false).use_regex(true)));
        }
    }
    tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    Ok(tok)
}

/// Python's `str.isspace`: Unicode White_Space plus the four information separators.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

fn sentencepiece_bpe(tokens: &[String], merges: Option<&[String]>, scores: &[f32], gemma: bool) -> Result<tokenizers::Tokenizer> {
    let tokens: Vec<String> = if gemma {
        tokens
            .iter()
            .map(|t| {
                if t.contains(' ') && t.chars().all(py_isspace) { "▁".repeat(t.chars().count()) } else { t.clone() }
            })
            .collect()
    } else {
        tokens.to_vec()
    };
    // Python dict semantics: a repeated token keeps its first position and its last value.
    let mut vocab: AHashMap<String, u32> = AHashMap::with_capacity(tokens.len());
    let mut order: Vec<String> = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if vocab.insert(t.clone(), i as u32).is_none() {
            order.push(t.clone());
        }
    }
    let merges: Vec<(String, String)> = match merges {
        Some(m) => parse_merges(m),
        None => {
            // Gemma: the vocabulary order is the merge order (score = -index); otherwise the
            // file's scores (score of the last occurrence, as a dict built by zip would hold).
            let score: HashMap<&str, f64> = if gemma {
                tokens.iter().enumerate().map(|(i, t)| (t.as_str(), -(i as f64))).collect()
            } else {
                tokens.iter().zip(scores).map(|(t, s)| (t.as_str(), f64::from(*s))).collect()
            };
            merges_from_vocab(&order, &vocab, &score)
        }
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token("<unk>".into())
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(tok_err)?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_normalizer(Some(tokenizers::normalizers::replace::Replace::new(" ", "▁").map_err(tok_err)?));
    // GemmaTokenizer's split on " " after the normalizer turned spaces into "▁": kept for
    // fidelity (it never fires).
    let split = Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false).map_err(tok_err)?;
    tok.with_pre_tokenizer(Some(split));
    tok.with_decoder(Some(tokenizers::decoders::sequence::Sequence::new(vec![
        tokenizers::normalizers::replace::Replace::new("▁", " ").map_err(tok_err)?.into(),
        tokenizers::decoders::byte_fallback::ByteFallback::default().into(),
        tokenizers::decoders::fuse::Fuse::default().into(),
    ])));
    Ok(tok)
}

/// transformers' `generate_merges(vocab, vocab_scores)`: every split of every token into two
/// vocabulary pieces, ordered by the token's score (best first), then the pieces' lengths
/// (longest first), stably; within one token by the pieces' ids. Lengths count characters.
fn merges_from_vocab(order: &[String], vocab: &AHashMap<String, u32>, score: &HashMap<&str, f64>) -> Vec<(String, String)> {
    struct Merge {
        left: String,
        right: String,
        score: f64,
        left_len: usize,
        right_len: usize,
    }
    let mut merges: Vec<Merge> = Vec::new();
    for token in order {
        let s = score[token.as_str()];
        let boundaries: Vec<usize> = token.char_indices().map(|(i, _)| i).skip(1).collect();
        let mut local: Vec<(u32, u32, Merge)> = boundaries
            .into_iter()
            .filter_map(|i| {
                let (l, r) = token.split_at(i);
                Some((*vocab.get(l)?, *vocab.get(r)?, Merge {
                    left: l.to_string(),
                    right: r.to_string(),
                    score: s,
                    left_len: l.chars().count(),
                    right_len: r.chars().count(),
                }))
            })
            .collect();
        local.sort_by_key(|(a, b, _)| (*a, *b));
        merges.extend(local.into_iter().map(|(_, _, m)| m));
    }
    // Python's sorted(reverse=True) is stable: equal keys keep their order.
    merges.sort_by(|a, b| {
        (b.score, b.left_len, b.right_len).partial_cmp(&(a.score, a.left_len, a.right_len)).expect("finite scores")
    });
    merges.into_iter().map(|m| (m.left, m.right)).collect()
}

fn add_typed_tokens(tok: &mut tokenizers::Tokenizer, tokens: &[String], types: &[i64], byte_level: bool) {
    const CONTROL: i64 = 3;
    const USER_DEFINED: i64 = 4;
    let alphabet = byte_alphabet();
    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|(t, ty)| **ty == CONTROL && (!byte_level || t.chars().all(|c| alphabet.contains(&c))))
        .map(|(t, _)| AddedToken::from(t.clone(), true).normalized(false))
        .collect();
    if !control.is_empty() {
        tok.add_special_tokens(&control);
    }
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|(t, ty)| **ty == USER_DEFINED && tok.token_to_id(t).is_some())
        .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
        .collect();
    if !user.is_empty() {
        tok.add_tokens(&user);
    }
}
