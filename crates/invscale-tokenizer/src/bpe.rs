//! What the GGUF tokenizers ([`crate::sentencepiece`], [`crate::byte_level`]) share: a compact
//! vocabulary, the added tokens matched whole in the text, and BPE's merge loop.
//!
//! They compute the ids HF `tokenizers` computes for the same vocabulary (transformers' GGUF
//! loader builds exactly that), holding a tenth of its memory: one string of all token texts and
//! a table of ids instead of two maps of owned strings, and no per-token strings or offsets per
//! encoding (the peak RSS of a quantized run is mostly the model file, so this is what is left
//! to save).

use std::collections::BinaryHeap;

use aho_corasick::{AhoCorasick, MatchKind};
use hashbrown::HashTable;

/// Token texts back to back, and a table from text to id. A text that occurs twice maps to its
/// last id (Python dict semantics, as transformers builds the vocabulary).
pub struct Vocab {
    text: String,
    ends: Vec<u32>,
    index: HashTable<u32>,
    hasher: ahash::RandomState,
    /// Per id: the first id with the same text.
    first: Vec<u32>,
}

impl Vocab {
    pub fn new<'a>(tokens: impl ExactSizeIterator<Item = std::borrow::Cow<'a, str>>) -> Vocab {
        let n = tokens.len();
        let mut v = Vocab {
            text: String::new(),
            ends: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
            hasher: ahash::RandomState::new(),
            first: Vec::with_capacity(n),
        };
        for t in tokens {
            v.text.push_str(&t);
            v.ends.push(u32::try_from(v.text.len()).expect("a vocabulary under 4 GB"));
        }
        v.text.shrink_to_fit();
        for id in 0..n as u32 {
            let (text, ends, hasher) = (&v.text, &v.ends, &v.hasher);
            let hash = hasher.hash_one(piece_of(text, ends, id));
            let first = match v.index.find_mut(hash, |j| piece_of(text, ends, *j) == piece_of(text, ends, id)) {
                Some(slot) => std::mem::replace(slot, id),
                None => {
                    v.index.insert_unique(hash, id, |j| hasher.hash_one(piece_of(text, ends, *j)));
                    id
                }
            };
            let first = if first == id { id } else { v.first[first as usize] };
            v.first.push(first);
        }
        v
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The text of token `id` (`id < len`).
    pub fn piece(&self, id: u32) -> &str {
        piece_of(&self.text, &self.ends, id)
    }

    /// The id of a text (its last occurrence).
    pub fn id(&self, piece: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(piece);
        self.index.find(hash, |&j| self.piece(j) == piece).copied()
    }

    /// The id of the concatenation of two tokens' texts.
    pub fn joined(&self, left: u32, right: u32) -> Option<u32> {
        let (l, r) = (self.piece(left), self.piece(right));
        let mut joined = String::with_capacity(l.len() + r.len());
        joined.push_str(l);
        joined.push_str(r);
        self.id(&joined)
    }

    /// Where the text of `id` first occurs in the vocabulary.
    pub fn first(&self, id: u32) -> u32 {
        self.first[id as usize]
    }
}

fn piece_of<'a>(text: &'a str, ends: &[u32], id: u32) -> &'a str {
    let i = id as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &text[start..ends[i] as usize]
}

/// GGUF token types: control tokens (3) and user-defined ones (4) are matched whole in the text.
pub const CONTROL: i64 = 3;
pub const USER_DEFINED: i64 = 4;

/// Tokens matched whole in the raw text before anything else (leftmost, longest), as
/// `tokenizers`' added vocabulary matches them; a match becomes its one id.
pub struct AddedTokens {
    matcher: AhoCorasick,
    ids: Vec<u32>,
    /// Control tokens outside the vocabulary, numbered after it (as `tokenizers` numbers them).
    pub extra: Vec<String>,
}

impl AddedTokens {
    /// transformers' choice: every control token that `control` accepts and the tokens the file
    /// names as BOS, EOS, unknown and padding (`specials`: transformers registers them as special
    /// tokens, whatever their type), then each user-defined token already known.
    pub fn new(tokens: &[String], types: &[i64], specials: &[u32], vocab: &Vocab, control: impl Fn(&str) -> bool) -> Option<AddedTokens> {
        let mut patterns: Vec<&str> = Vec::new();
        let mut ids = Vec::new();
        let mut extra = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // `tokenizers` skips empty ones (they would match everywhere).
        let special = |i: usize| types.get(i) == Some(&CONTROL) || specials.contains(&(i as u32));
        for (_, t) in tokens.iter().enumerate().filter(|(i, t)| special(*i) && !t.is_empty() && control(t)) {
            if !seen.insert(t.as_str()) {
                continue;
            }
            let id = vocab.id(t).unwrap_or_else(|| {
                extra.push(t.clone());
                (vocab.len() + extra.len() - 1) as u32
            });
            patterns.push(t);
            ids.push(id);
        }
        for (t, _) in tokens.iter().zip(types).filter(|(t, ty)| **ty == USER_DEFINED && !t.is_empty()) {
            if seen.contains(t.as_str()) {
                continue;
            }
            if let Some(id) = vocab.id(t) {
                seen.insert(t);
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
        Some(AddedTokens { matcher, ids, extra })
    }

    /// Ids of `vocab`, plus the added tokens outside it.
    pub fn id_count(added: Option<&AddedTokens>, vocab: &Vocab) -> usize {
        vocab.len() + added.map_or(0, |a| a.extra.len())
    }

    /// The text of an id past `vocab` (an added token outside it; empty for an unknown id), or
    /// `None` for an id of `vocab`.
    pub fn text_past(added: Option<&AddedTokens>, vocab: &Vocab, id: u32) -> Option<String> {
        let past = (id as usize).checked_sub(vocab.len())?;
        Some(added.and_then(|a| a.extra.get(past).cloned()).unwrap_or_default())
    }

    /// Splits `text` at the added tokens: `piece` gets each stretch between them (and where in
    /// `text` it starts), `out` the added tokens' ids in place.
    pub fn split(added: Option<&AddedTokens>, text: &str, out: &mut Vec<u32>, mut piece: impl FnMut(&str, usize, &mut Vec<u32>)) {
        let mut from = 0;
        if let Some(a) = added {
            for m in a.matcher.find_iter(text) {
                piece(&text[from..m.start()], from, out);
                out.push(a.ids[m.pattern().as_usize()]);
                from = m.end();
            }
        }
        piece(&text[from..], from, out);
    }
}

/// One symbol of a word being merged.
#[derive(Clone, Copy)]
pub struct Symbol {
    pub id: u32,
    prev: usize,
    next: usize,
    /// 0 once merged into its left neighbour.
    len: usize,
}

const NONE: usize = usize::MAX;

/// A word's symbols in order, for [`merge_all`].
#[derive(Default)]
pub struct Word {
    symbols: Vec<Symbol>,
}

impl Word {
    pub fn push(&mut self, id: u32, len: usize) {
        let n = self.symbols.len();
        if let Some(last) = self.symbols.last_mut() {
            last.next = n;
        }
        self.symbols.push(Symbol { id, prev: if n == 0 { NONE } else { n - 1 }, next: NONE, len });
    }

    /// `tokenizers`' `Word::merge_all`: repeatedly the pair of lowest rank (`rank(left, right)`
    /// gives it and the merged id; lower sorts first), the leftmost among equal ranks; queue
    /// entries made stale by an earlier merge are skipped. Appends the resulting ids to `out`.
    pub fn merge_all<R: Ord + Copy>(mut self, rank: impl Fn(u32, u32) -> Option<(R, u32)>, out: &mut Vec<u32>) {
        struct Merge<R> {
            rank: R,
            pos: usize,
            new_id: u32,
        }
        impl<R: Ord> PartialEq for Merge<R> {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == std::cmp::Ordering::Equal
            }
        }
        impl<R: Ord> Eq for Merge<R> {}
        impl<R: Ord> PartialOrd for Merge<R> {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl<R: Ord> Ord for Merge<R> {
            // A max-heap: the lowest rank pops first, the leftmost among equals.
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                other.rank.cmp(&self.rank).then(other.pos.cmp(&self.pos))
            }
        }
        let s = &mut self.symbols;
        let mut queue: BinaryHeap<Merge<R>> = s
            .windows(2)
            .enumerate()
            .filter_map(|(pos, w)| rank(w[0].id, w[1].id).map(|(rank, new_id)| Merge { rank, pos, new_id }))
            .collect();
        while let Some(top) = queue.pop() {
            let here = s[top.pos];
            if here.len == 0 || here.next == NONE {
                continue;
            }
            let right = s[here.next];
            if rank(here.id, right.id).is_none_or(|(_, id)| id != top.new_id) {
                continue;
            }
            s[top.pos] = Symbol { id: top.new_id, len: here.len + right.len, next: right.next, ..here };
            s[here.next].len = 0;
            if right.next != NONE {
                s[right.next].prev = top.pos;
            }
            let merged = s[top.pos];
            if merged.prev != NONE
                && let Some((rank, new_id)) = rank(s[merged.prev].id, merged.id)
            {
                queue.push(Merge { rank, pos: merged.prev, new_id });
            }
            if merged.next != NONE
                && let Some((rank, new_id)) = rank(merged.id, s[merged.next].id)
            {
                queue.push(Merge { rank, pos: top.pos, new_id });
            }
        }
        out.extend(s.iter().filter(|s| s.len != 0).map(|s| s.id));
    }
}
