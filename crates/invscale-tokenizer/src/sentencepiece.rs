//! SentencePiece BPE (GGUF tokenizer model `llama`: Gemma, Llama 2) from the file's vocabulary,
//! computing what transformers' GGUF loader computes without building its tables.
//!
//! transformers turns such a vocabulary into an HF `tokenizers` BPE: merges generated from every
//! split of every token into two vocabulary pieces (`generate_merges`: Gemma 3's 262k tokens give
//! 515k merges), byte fallback, spaces as `▁`. Built that way the tokenizer holds ~78 MB (string
//! maps both ways, the merge map) — a third of the quantized Gemma 3 model beside it. Here the
//! rank of a merge is computed when it is needed, from the token it makes: the merge list is
//! sorted by that token's score (best first), then by the left piece's length and the right
//! piece's (longest first), ties in vocabulary order. The pieces of one token differ in length,
//! so that order is total and [`Rank`] gives each pair the place the list would.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::bpe::{AddedTokens, Vocab, Word};

pub struct SentencePiece {
    /// Gemma's all-space tokens respelled with `▁`.
    vocab: Vocab,
    /// Per id: the score that orders merges making this token (higher first).
    score: Vec<f32>,
    /// `<0xXX>` tokens, for bytes of characters outside the vocabulary.
    byte_ids: [Option<u32>; 256],
    unk: Option<u32>,
    added: Option<AddedTokens>,
    /// Llama-2-style files: a `▁` before the text, unless it starts with a space or an added
    /// token (transformers' `LlamaTokenizer`: Metaspace, prepend scheme "first"). Gemma: none.
    prefix_first: bool,
}

/// A merge's place in transformers' merge list: higher score, longer left piece, longer right
/// piece, earlier token.
#[derive(Clone, Copy, PartialEq)]
struct Rank {
    score: f32,
    left_chars: u32,
    right_chars: u32,
    first: u32,
}

impl Eq for Rank {}
impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Rank {
    fn cmp(&self, other: &Rank) -> Ordering {
        // As Python compares the scores: -0.0 == 0.0 (Gemma's first token scores -0.0).
        other
            .score
            .partial_cmp(&self.score)
            .unwrap_or(Ordering::Equal)
            .then(other.left_chars.cmp(&self.left_chars))
            .then(other.right_chars.cmp(&self.right_chars))
            .then(self.first.cmp(&other.first))
    }
}

impl SentencePiece {
    /// `tokens`, `scores` and `types` as the GGUF stores them; `specials` the ids it names as
    /// BOS, EOS, unknown and padding. `gemma`: all-space tokens are
    /// stored with real spaces (respelled with `▁`), and the vocabulary order is the merge order
    /// (score = −index), not the file's scores.
    pub fn new(tokens: &[String], scores: &[f32], types: &[i64], specials: &[u32], gemma: bool) -> SentencePiece {
        let vocab = Vocab::new(tokens.iter().map(|t| {
            if gemma && t.contains(' ') && t.chars().all(py_isspace) {
                Cow::Owned("▁".repeat(t.chars().count()))
            } else {
                Cow::Borrowed(t.as_str())
            }
        }));
        let score = (0..tokens.len()).map(|i| if gemma { -(i as f32) } else { scores.get(i).copied().unwrap_or(0.0) }).collect();
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = vocab.id(&format!("<{b:#04X}>"));
        }
        let unk = vocab.id("<unk>");
        let added = AddedTokens::new(tokens, types, specials, &vocab, |_| true);
        SentencePiece { vocab, score, byte_ids, unk, added, prefix_first: !gemma }
    }

    /// Token ids of `text` (no BOS: special tokens are the caller's).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        AddedTokens::split(self.added.as_ref(), text, &mut out, |piece, start, out| self.encode_piece(piece, start == 0, out));
        out
    }

    /// Ids in the vocabulary, plus added tokens outside it.
    pub fn vocab_size(&self) -> usize {
        AddedTokens::id_count(self.added.as_ref(), &self.vocab)
    }

    /// One token's text as decoded alone: `▁` as a space, a byte token as its byte (lossy).
    pub fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(&self.token_bytes(id)).into_owned()
    }

    /// One token's bytes: `▁` as a space, a byte token as its byte.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        if let Some(text) = AddedTokens::text_past(self.added.as_ref(), &self.vocab, id) {
            return text.into_bytes();
        }
        if let Some(b) = self.byte_ids.iter().position(|&b| b == Some(id)) {
            return vec![b as u8];
        }
        self.vocab.piece(id).replace('▁', " ").into_bytes()
    }

    /// Whether encoding puts a `▁` before the text (Llama-2 style): decoding then drops the
    /// first token's leading space, as transformers' Metaspace decoder does.
    pub fn prefixes_first(&self) -> bool {
        self.prefix_first
    }

    /// Where the merge of `left` and `right` sits in the merge list, if they merge.
    fn rank(&self, left: u32, right: u32) -> Option<(Rank, u32)> {
        let id = self.vocab.joined(left, right)?;
        let rank = Rank {
            score: self.score[id as usize],
            left_chars: self.vocab.piece(left).chars().count() as u32,
            right_chars: self.vocab.piece(right).chars().count() as u32,
            first: self.vocab.first(id),
        };
        Some((rank, id))
    }

    /// A stretch of text between added tokens: spaces as `▁` (and one before the text's start,
    /// see `prefix_first`), one symbol per character (its bytes' tokens when the vocabulary lacks
    /// it, fused unknowns otherwise), then merged.
    fn encode_piece(&self, piece: &str, at_start: bool, out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        let mut normalized = piece.replace(' ', "▁");
        if self.prefix_first && at_start && !normalized.starts_with('▁') {
            normalized.insert(0, '▁');
        }
        let mut word = Word::default();
        let mut unk: Option<(u32, usize)> = None;
        let mut buf = [0u8; 4];
        for c in normalized.chars() {
            let s: &str = c.encode_utf8(&mut buf);
            if let Some(id) = self.vocab.id(s) {
                if let Some((unk_id, len)) = unk.take() {
                    word.push(unk_id, len);
                }
                word.push(id, s.len());
                continue;
            }
            let bytes: Option<Vec<u32>> = s.bytes().map(|b| self.byte_ids[b as usize]).collect();
            if let Some(bytes) = bytes {
                // As `tokenizers`: byte tokens go in before a pending unknown is flushed.
                for id in bytes {
                    word.push(id, 1);
                }
                continue;
            }
            if let Some(unk_id) = self.unk {
                unk = Some(match unk {
                    Some((id, len)) => (id, len + s.len()),
                    None => (unk_id, s.len()),
                });
            }
        }
        if let Some((unk_id, len)) = unk {
            word.push(unk_id, len);
        }
        word.merge_all(|l, r| self.rank(l, r), out);
    }
}

/// Python's `str.isspace`: Unicode White_Space plus the four information separators.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}
