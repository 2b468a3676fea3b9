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
//! so that order is total and [`SentencePiece::rank`] gives each pair the place the list would.
//! The merging itself is `tokenizers`' (`Word::merge_all`): the pair of lowest rank first, the
//! leftmost among equals, stale queue entries skipped.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use aho_corasick::{AhoCorasick, MatchKind};
use hashbrown::HashTable;

/// A GGUF token type: control tokens (3) are matched whole in the text, as are user-defined
/// ones (4).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

pub struct SentencePiece {
    /// Every token's text back to back (Gemma's all-space tokens respelled with `▁`); token
    /// `i` is `text[ends[i - 1]..ends[i]]`.
    text: String,
    ends: Vec<u32>,
    /// Distinct texts → the id of the text's last occurrence (Python dict semantics: a repeated
    /// token's later id wins).
    index: HashTable<u32>,
    hasher: ahash::RandomState,
    /// Per id: the score that orders merges making this token (higher first).
    score: Vec<f32>,
    /// Per id: where the token's text first occurs (ties of score and lengths go by this).
    first: Vec<u32>,
    /// `<0xXX>` tokens, for bytes of characters outside the vocabulary.
    byte_ids: [Option<u32>; 256],
    unk: Option<u32>,
    /// Control and user-defined tokens, matched in the raw text (leftmost, longest) before
    /// anything else; a match becomes its one id.
    added: Option<(AhoCorasick, Vec<u32>)>,
    /// Texts of added tokens outside the vocabulary (numbered after it, as `tokenizers` does).
    extra: Vec<String>,
}

/// A merge waiting in the queue: the pair starting at symbol `pos`, making `new_id`.
struct Merge {
    rank: Rank,
    pos: usize,
    new_id: u32,
}

/// Sorts like the merge list: higher score, longer left piece, longer right piece, earlier token.
#[derive(Clone, Copy, PartialEq)]
struct Rank {
    score: f32,
    left_chars: u32,
    right_chars: u32,
    first: u32,
}

impl Rank {
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

impl PartialEq for Merge {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Merge {}
impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Merge {
    /// The max-heap pops the lowest rank first, the leftmost among equal ranks.
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank.cmp(&other.rank).reverse().then(other.pos.cmp(&self.pos))
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: usize,
    next: usize,
    /// Bytes of the normalized text it covers; 0 once merged into its left neighbour.
    len: usize,
}

const NONE: usize = usize::MAX;

impl SentencePiece {
    /// `tokens`, `scores` and `types` as the GGUF stores them. `gemma`: all-space tokens are
    /// stored with real spaces (respelled with `▁`), and the vocabulary order is the merge order
    /// (score = −index), not the file's scores.
    pub fn new(tokens: &[String], scores: &[f32], types: &[i64], gemma: bool) -> SentencePiece {
        let mut text = String::with_capacity(tokens.iter().map(String::len).sum());
        let mut ends = Vec::with_capacity(tokens.len());
        for t in tokens {
            if gemma && t.contains(' ') && t.chars().all(py_isspace) {
                text.extend(std::iter::repeat_n('▁', t.chars().count()));
            } else {
                text.push_str(t);
            }
            ends.push(u32::try_from(text.len()).expect("a vocabulary under 4 GB"));
        }
        let mut sp = SentencePiece {
            text,
            ends,
            index: HashTable::with_capacity(tokens.len()),
            hasher: ahash::RandomState::new(),
            score: Vec::with_capacity(tokens.len()),
            first: Vec::with_capacity(tokens.len()),
            byte_ids: [None; 256],
            unk: None,
            added: None,
            extra: Vec::new(),
        };
        for i in 0..tokens.len() {
            let id = i as u32;
            let hash = sp.hasher.hash_one(sp.piece(id));
            let (pieces, text, ends) = (&mut sp.index, &sp.text, &sp.ends);
            let same = |j: &u32| piece_of(text, ends, *j) == piece_of(text, ends, id);
            let first = match pieces.find_mut(hash, same) {
                Some(slot) => {
                    let first = sp.first[*slot as usize];
                    *slot = id;
                    first
                }
                None => {
                    pieces.insert_unique(hash, id, |j| sp.hasher.hash_one(piece_of(text, ends, *j)));
                    id
                }
            };
            sp.first.push(first);
            sp.score.push(if gemma { -(i as f32) } else { scores.get(i).copied().unwrap_or(0.0) });
        }
        for b in 0..=255u8 {
            sp.byte_ids[b as usize] = sp.id(&format!("<{b:#04X}>"));
        }
        sp.unk = sp.id("<unk>");
        sp.added = sp.added_tokens(tokens, types);
        sp
    }

    /// Control tokens (all of them) and user-defined tokens that are in the vocabulary, as
    /// transformers adds them; a control token outside the vocabulary gets the next new id.
    fn added_tokens(&mut self, tokens: &[String], types: &[i64]) -> Option<(AhoCorasick, Vec<u32>)> {
        let mut patterns: Vec<&str> = Vec::new();
        let mut ids = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for kind in [CONTROL, USER_DEFINED] {
            for (t, _) in tokens.iter().zip(types).filter(|(_, ty)| **ty == kind) {
                if !seen.insert(t.as_str()) {
                    continue;
                }
                let id = match self.id(t) {
                    Some(id) => id,
                    None if kind == CONTROL => {
                        self.extra.push(t.clone());
                        (self.ends.len() + self.extra.len() - 1) as u32
                    }
                    None => {
                        seen.remove(t.as_str());
                        continue;
                    }
                };
                patterns.push(t);
                ids.push(id);
            }
        }
        if patterns.is_empty() {
            return None;
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .expect("an automaton over the vocabulary's added tokens");
        Some((matcher, ids))
    }

    /// Token ids of `text` (no BOS: special tokens are the caller's).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut from = 0;
        if let Some((matcher, ids)) = &self.added {
            for m in matcher.find_iter(text) {
                self.encode_piece(&text[from..m.start()], &mut out);
                out.push(ids[m.pattern().as_usize()]);
                from = m.end();
            }
        }
        self.encode_piece(&text[from..], &mut out);
        out
    }

    /// Ids in the vocabulary, plus added tokens outside it.
    pub fn vocab_size(&self) -> usize {
        self.ends.len() + self.extra.len()
    }

    /// One token's text as decoded alone: `▁` as a space, a byte token as its byte (lossy).
    pub fn token_text(&self, id: u32) -> String {
        let i = id as usize;
        if i >= self.ends.len() {
            return self.extra.get(i - self.ends.len()).cloned().unwrap_or_default();
        }
        let piece = self.piece(id);
        if let Some(b) = self.byte_ids.iter().position(|&b| b == Some(id)) {
            return String::from_utf8_lossy(&[b as u8]).into_owned();
        }
        piece.replace('▁', " ")
    }

    fn piece(&self, id: u32) -> &str {
        piece_of(&self.text, &self.ends, id)
    }

    /// The id of a text (its last occurrence).
    fn id(&self, piece: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(piece);
        self.index.find(hash, |&j| self.piece(j) == piece).copied()
    }

    /// Where the merge of `left` and `right` sits in the merge list, if they merge.
    fn rank(&self, left: u32, right: u32) -> Option<(Rank, u32)> {
        let (l, r) = (self.piece(left), self.piece(right));
        let mut joined = String::with_capacity(l.len() + r.len());
        joined.push_str(l);
        joined.push_str(r);
        let id = self.id(&joined)?;
        let rank = Rank {
            score: self.score[id as usize],
            left_chars: l.chars().count() as u32,
            right_chars: r.chars().count() as u32,
            first: self.first[id as usize],
        };
        Some((rank, id))
    }

    /// A stretch of text between added tokens: spaces as `▁`, one symbol per character (its
    /// bytes' tokens when the vocabulary lacks it, fused unknowns otherwise), then merged.
    fn encode_piece(&self, piece: &str, out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        let normalized = piece.replace(' ', "▁");
        let mut symbols: Vec<Symbol> = Vec::with_capacity(normalized.len());
        let add = |symbols: &mut Vec<Symbol>, id: u32, len: usize| {
            let n = symbols.len();
            symbols.push(Symbol { id, prev: if n == 0 { NONE } else { n - 1 }, next: n + 1, len });
        };
        let mut unk: Option<(u32, usize)> = None;
        let mut buf = [0u8; 4];
        for c in normalized.chars() {
            let s: &str = c.encode_utf8(&mut buf);
            if let Some(id) = self.id(s) {
                if let Some((unk_id, len)) = unk.take() {
                    add(&mut symbols, unk_id, len);
                }
                add(&mut symbols, id, s.len());
                continue;
            }
            let bytes: Option<Vec<u32>> = s.bytes().map(|b| self.byte_ids[b as usize]).collect();
            if let Some(bytes) = bytes {
                // As `tokenizers`: byte tokens go in before a pending unknown is flushed.
                for id in bytes {
                    add(&mut symbols, id, 1);
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
            add(&mut symbols, unk_id, len);
        }
        if let Some(last) = symbols.last_mut() {
            last.next = NONE;
        }

        let mut queue: BinaryHeap<Merge> = symbols
            .windows(2)
            .enumerate()
            .filter_map(|(pos, w)| self.rank(w[0].id, w[1].id).map(|(rank, new_id)| Merge { rank, pos, new_id }))
            .collect();
        while let Some(top) = queue.pop() {
            let here = symbols[top.pos];
            if here.len == 0 || here.next == NONE {
                continue;
            }
            let right = symbols[here.next];
            // A stale entry: one of its symbols has merged since.
            if self.rank(here.id, right.id).is_none_or(|(_, id)| id != top.new_id) {
                continue;
            }
            symbols[top.pos] = Symbol { id: top.new_id, len: here.len + right.len, next: right.next, ..here };
            symbols[here.next].len = 0;
            if right.next != NONE {
                symbols[right.next].prev = top.pos;
            }
            let merged = symbols[top.pos];
            if merged.prev != NONE {
                if let Some((rank, new_id)) = self.rank(symbols[merged.prev].id, merged.id) {
                    queue.push(Merge { rank, pos: merged.prev, new_id });
                }
            }
            if merged.next != NONE {
                if let Some((rank, new_id)) = self.rank(merged.id, symbols[merged.next].id) {
                    queue.push(Merge { rank, pos: top.pos, new_id });
                }
            }
        }
        out.extend(symbols.iter().filter(|s| s.len != 0).map(|s| s.id));
    }
}

fn piece_of<'a>(text: &'a str, ends: &[u32], id: u32) -> &'a str {
    let i = id as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &text[start..ends[i] as usize]
}

/// Python's `str.isspace`: Unicode White_Space plus the four information separators.
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}
