//! Byte-level BPE (GGUF tokenizer model `gpt2`: SmolLM2, Qwen2, Llama 3) from the file's
//! vocabulary and merges, computing the ids HF `tokenizers` computes for them (transformers' GGUF
//! loader builds exactly that) with a compact vocabulary (see [`crate::bpe`]).
//!
//! The text is split as `tokenizers` splits it — the very pre-tokenizer objects, so the regexes
//! (with their look-ahead) are the same engine's — and each piece, spelled in GPT-2's byte
//! alphabet, is merged by the file's merge list: the earliest merge first.

use std::borrow::Cow;

use ahash::AHashMap;
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, PreTokenizerWrapper};

use crate::bpe::{AddedTokens, Vocab, Word};

pub struct ByteLevel {
    /// Texts in the byte alphabet (tokens outside it respelled byte by byte, as transformers does).
    vocab: Vocab,
    /// (left, right) → (place in the merge list, merged id); a pair listed twice keeps its last place.
    merges: AHashMap<(u32, u32), (u32, u32)>,
    pre: PreTokenizerWrapper,
    alphabet: ByteAlphabet,
    added: Option<AddedTokens>,
}

/// A merge the vocabulary cannot make: its line in the file and why.
#[derive(Debug)]
pub struct BadMerge(pub usize, pub String);

impl ByteLevel {
    /// `specials`: the ids the file names as BOS, EOS, unknown and padding. `pre`: the split before BPE (a regex split and the byte mapping, or GPT-2's ByteLevel).
    pub fn new(tokens: &[String], merges: &[String], types: &[i64], specials: &[u32], pre: PreTokenizerWrapper) -> Result<ByteLevel, BadMerge> {
        let alphabet = ByteAlphabet::new();
        let in_alphabet = |t: &str| t.chars().all(|c| alphabet.byte(c).is_some());
        let vocab = Vocab::new(tokens.iter().map(|t| {
            if in_alphabet(t) { Cow::Borrowed(t.as_str()) } else { Cow::Owned(t.bytes().map(|b| alphabet.char(b)).collect()) }
        }));
        let mut map = AHashMap::with_capacity(merges.len());
        for (i, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').unwrap_or((m, ""));
            let id = |t: &str| vocab.id(t).ok_or_else(|| BadMerge(i, format!("merge `{m}`: `{t}` is not in the vocabulary")));
            let (l, r) = (id(a)?, id(b)?);
            let new_id = id(&format!("{a}{b}"))?;
            map.insert((l, r), (i as u32, new_id));
        }
        let added = AddedTokens::new(tokens, types, specials, &vocab, in_alphabet);
        Ok(ByteLevel { vocab, merges: map, pre, added, alphabet })
    }

    /// Token ids of `text` (no BOS: special tokens are the caller's).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        let mut failed = None;
        AddedTokens::split(self.added.as_ref(), text, &mut out, |piece, _, out| {
            if piece.is_empty() || failed.is_some() {
                return;
            }
            let mut split = PreTokenizedString::from(piece);
            if let Err(e) = self.pre.pre_tokenize(&mut split) {
                failed = Some(e.to_string());
                return;
            }
            for (word, _, _) in split.get_splits(OffsetReferential::Original, OffsetType::None) {
                self.encode_word(word, out);
            }
        });
        failed.map_or(Ok(out), Err)
    }

    /// One pre-tokenized word: a symbol per character (characters outside the vocabulary are
    /// dropped, as `tokenizers` drops them without an unknown token), merged.
    fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        let mut symbols = Word::default();
        let mut buf = [0u8; 4];
        for c in word.chars() {
            let s: &str = c.encode_utf8(&mut buf);
            if let Some(id) = self.vocab.id(s) {
                symbols.push(id, s.len());
            }
        }
        symbols.merge_all(|l, r| self.merges.get(&(l, r)).copied(), out);
    }

    pub fn vocab_size(&self) -> usize {
        AddedTokens::id_count(self.added.as_ref(), &self.vocab)
    }

    /// One token's text: its characters mapped back to bytes (a token with a character outside
    /// the byte alphabet as its own UTF-8), lossy.
    pub fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(&self.token_bytes(id)).into_owned()
    }

    /// One token's bytes (a token may hold part of a character; [`crate::Tokenizer::decode`]
    /// joins the bytes of a sequence before reading them as UTF-8).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        if let Some(text) = AddedTokens::text_past(self.added.as_ref(), &self.vocab, id) {
            return text.into_bytes();
        }
        let piece = self.vocab.piece(id);
        let bytes: Option<Vec<u8>> = piece.chars().map(|c| self.alphabet.byte(c)).collect();
        bytes.unwrap_or_else(|| piece.as_bytes().to_vec())
    }
}

/// GPT-2's map from bytes to printable characters, in which byte-level vocabularies are
/// spelled, both ways.
pub struct ByteAlphabet {
    chars: [char; 256],
    /// By code point (all below U+0144).
    bytes: [Option<u8>; 0x144],
}

impl ByteAlphabet {
    pub fn new() -> ByteAlphabet {
        let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut codes: Vec<u32> = printable.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !printable.contains(&b) {
                printable.push(b);
                codes.push(256 + n);
                n += 1;
            }
        }
        let mut alphabet = ByteAlphabet { chars: ['\0'; 256], bytes: [None; 0x144] };
        for (b, c) in printable.into_iter().zip(codes) {
            alphabet.chars[b as usize] = char::from_u32(c).expect("valid code points");
            alphabet.bytes[c as usize] = Some(b as u8);
        }
        alphabet
    }

    pub fn char(&self, byte: u8) -> char {
        self.chars[byte as usize]
    }

    pub fn byte(&self, c: char) -> Option<u8> {
        self.bytes.get(c as usize).copied().flatten()
    }
}
