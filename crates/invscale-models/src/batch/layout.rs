//! The layout of one forward pass: which tokens run, at which positions, and which earlier
//! tokens each one sees (blocks of segments: documents side by side, shared prefixes once,
//! continuations branching from their context).

use crate::batch::prefix_tree::SegmentTree;

/// What one forward pass runs: new tokens after the `past` tokens of the KV cache, arranged in
/// blocks of segments. A block's tokens see every cached token, the tokens of its `context`
/// ranges (shared prefixes run in earlier blocks of the same pass), and the earlier tokens of
/// their own segment and of the segments above it; never another block's tokens otherwise. So
/// one pass runs a context and several continuations of it (each seeing the context, never
/// another continuation), many documents side by side, and documents after prefixes they share.
#[derive(Clone, Debug)]
pub struct Layout {
    pub past: usize,
    /// Position of each new token (for rotary embeddings and windows).
    pub positions: Vec<usize>,
    /// Segment of each new token.
    pub(crate) segment: Vec<usize>,
    /// Parent segment of each segment, within its block (`None`: the block's first segment).
    pub(crate) parent: Vec<Option<usize>>,
    pub(crate) blocks: Vec<Block>,
}

/// Tokens that attend only among themselves, to the cache, and to the `context` ranges; so
/// attention costs the sum of the blocks' squares, not the square of the sum, and a document's
/// numbers do not depend on what it was batched with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) queries: std::ops::Range<usize>,
    /// Earlier tokens of the pass that every token of the block sees (its shared prefix), in
    /// order; adjacent ranges merged.
    pub(crate) context: Vec<std::ops::Range<usize>>,
}

impl Block {
    pub(crate) fn context_len(&self) -> usize {
        self.context.iter().map(|r| r.len()).sum()
    }
    /// Keys of the block: cache, context, then its own tokens.
    pub(crate) fn keys(&self, past: usize) -> usize {
        past + self.context_len() + self.queries.len()
    }
    /// The pass's tokens the block attends to (after any cache): its context, then its own.
    pub(crate) fn key_tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.context.iter().flat_map(|r| r.clone()).chain(self.queries.clone()).map(|k| k as u32)
    }
}

/// Where [`Layout::prefix_tree`] put the tokens: the pass's input ids in order, and for each
/// context its last token's row and the first row of each of its branches.
pub struct TreeRows {
    pub ids: Vec<u32>,
    pub contexts: Vec<(usize, Vec<usize>)>,
}

impl Layout {
    /// `t` tokens continuing the cached sequence.
    pub fn sequence(past: usize, t: usize) -> Layout {
        Layout {
            past,
            positions: (past..past + t).collect(),
            segment: vec![0; t],
            parent: vec![None],
            blocks: vec![Block { queries: 0..t, context: Vec::new() }],
        }
    }

    /// A context of `context` tokens after the cache, then branches of the given lengths, each
    /// continuing the context on its own.
    pub fn branches(past: usize, context: usize, branches: &[usize]) -> Layout {
        let mut l = Layout { past, positions: Vec::new(), segment: Vec::new(), parent: Vec::new(), blocks: Vec::new() };
        l.push_block(context, past, branches, Vec::new());
        l
    }

    /// Several independent trees in one pass (no cache): each a context from position 0 and its
    /// branches; no token sees another tree's tokens.
    pub fn forest(trees: &[(usize, Vec<usize>)]) -> Layout {
        let mut l = Layout { past: 0, positions: Vec::new(), segment: Vec::new(), parent: Vec::new(), blocks: Vec::new() };
        for (context, branches) in trees {
            l.push_block(*context, 0, branches, Vec::new());
        }
        l
    }

    /// The contexts of `tree` (no cache), each with branches (continuations) of the given
    /// tokens: every node (segment) of the tree runs once, as a block whose context is the nodes
    /// above it, followed by the branches of the contexts that end at it. Nodes come depth
    /// first, in insertion order. `branches[i]`: context `i`'s branches.
    pub fn prefix_tree(tree: &SegmentTree, branches: &[Vec<&[u32]>]) -> (Layout, TreeRows) {
        assert_eq!(tree.contexts(), branches.len(), "branches for every context");
        let mut l = Layout { past: 0, positions: Vec::new(), segment: Vec::new(), parent: Vec::new(), blocks: Vec::new() };
        let mut rows = TreeRows { ids: Vec::new(), contexts: vec![(0, Vec::new()); branches.len()] };
        // (node, its position, the rows of the nodes above it).
        let mut stack: Vec<(usize, usize, Vec<std::ops::Range<usize>>)> =
            tree.roots().iter().rev().map(|&r| (r, 0, Vec::new())).collect();
        while let Some((n, position, above)) = stack.pop() {
            let node = tree.node(n);
            let start = l.len();
            rows.ids.extend_from_slice(&node.tokens);
            let lens: Vec<usize> = node.contexts.iter().flat_map(|&c| branches[c].iter().map(|b| b.len())).collect();
            l.push_block(node.tokens.len(), position, &lens, above.clone());
            let last = start + node.tokens.len() - 1;
            let mut at = last + 1;
            for &c in &node.contexts {
                let starts = branches[c]
                    .iter()
                    .map(|b| {
                        rows.ids.extend_from_slice(b);
                        at += b.len();
                        at - b.len()
                    })
                    .collect();
                rows.contexts[c] = (last, starts);
            }
            let mut below = above;
            match below.last_mut() {
                Some(r) if r.end == start => r.end = start + node.tokens.len(),
                _ => below.push(start..start + node.tokens.len()),
            }
            let next = position + node.tokens.len();
            stack.extend(node.children.iter().rev().map(|&c| (c, next, below.clone())));
        }
        (l, rows)
    }

    /// One block: `context` tokens from `position`, then branches of the given lengths after
    /// them, the whole seeing the `above` ranges.
    fn push_block(&mut self, context: usize, position: usize, branches: &[usize], above: Vec<std::ops::Range<usize>>) {
        let start = self.len();
        let root = self.parent.len();
        self.parent.push(None);
        self.segment.extend(std::iter::repeat_n(root, context));
        self.positions.extend(position..position + context);
        for &len in branches {
            let seg = self.parent.len();
            self.parent.push(Some(root));
            self.segment.extend(std::iter::repeat_n(seg, len));
            self.positions.extend(position + context..position + context + len);
        }
        self.blocks.push(Block { queries: start..self.len(), context: above });
    }

    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    pub(crate) fn is_ancestor_or_self(&self, a: usize, mut s: usize) -> bool {
        loop {
            if a == s {
                return true;
            }
            match self.parent[s] {
                Some(p) => s = p,
                None => return false,
            }
        }
    }

    /// Each segment's tokens, `first..end` (a segment's tokens are contiguous).
    pub(crate) fn segment_spans(&self) -> Vec<std::ops::Range<usize>> {
        let mut spans = vec![0..0; self.parent.len()];
        for (i, &s) in self.segment.iter().enumerate() {
            if spans[s].is_empty() {
                spans[s] = i..i + 1;
            } else {
                spans[s].end = i + 1;
            }
        }
        spans
    }

    /// For each of block `b`'s rows (no cache), the keys it sees as two ranges of the block's
    /// key indices (context, then own tokens), `[a, b, c, d]` for `[a, b) ∪ [c, d)`: the cells
    /// `fill_block` opens, worked out from the segments rather than cell by cell (a long pass
    /// has tens of millions of cells). `None` if a row sees more than two ranges.
    pub(crate) fn seen_ranges(&self, b: &Block, window: Option<usize>, spans: &[std::ops::Range<usize>]) -> Option<Vec<[u32; 4]>> {
        assert_eq!(self.past, 0);
        let context = b.context_len();
        let mut out = Vec::with_capacity(b.queries.len());
        // (first key, end key, position of the first key): ranges of consecutive positions.
        let mut ranges: Vec<(usize, usize, usize)> = Vec::new();
        for qi in b.queries.clone() {
            ranges.clear();
            let mut key = 0;
            for r in &b.context {
                ranges.push((key, key + r.len(), self.positions[r.start]));
                key += r.len();
            }
            let own_key = |token: usize| context + token - b.queries.start;
            let at = ranges.len();
            let mut s = self.segment[qi];
            let mut end = qi + 1;
            loop {
                let first = spans[s].start;
                ranges.insert(at, (own_key(first), own_key(end), self.positions[first]));
                match self.parent[s] {
                    Some(p) => {
                        s = p;
                        end = spans[p].end;
                    }
                    None => break,
                }
            }
            // A sliding window drops the keys `window` or more positions back.
            let near = window.map_or(0, |w| (self.positions[qi] + 1).saturating_sub(w));
            let mut merged: Vec<(usize, usize)> = Vec::with_capacity(2);
            for &(a, e, position) in &ranges {
                let a = (a + near.saturating_sub(position)).min(e);
                match merged.last_mut() {
                    _ if a == e => {}
                    Some(last) if last.1 == a => last.1 = e,
                    _ => merged.push((a, e)),
                }
            }
            out.push(match merged[..] {
                [] => [0; 4],
                [(a, e)] => [a as u32, e as u32, 0, 0],
                [(a, e), (c, d)] => [a as u32, e as u32, c as u32, d as u32],
                _ => return None,
            });
        }
        Some(out)
    }

    /// Writes block `b`'s mask rows (queries: its tokens; keys: the cache, its context, then its
    /// tokens) into `m`, `stride` cells a row; cells not opened stay as they are.
    pub(crate) fn fill_block(&self, b: &Block, window: Option<usize>, m: &mut [f32], stride: usize) {
        let near = |q: usize, k: usize| window.is_none_or(|w| q - k < w);
        let context: Vec<usize> = b.context.iter().flat_map(|r| r.clone()).collect();
        for (i, qi) in b.queries.clone().enumerate() {
            let q = self.positions[qi];
            let row = &mut m[i * stride..(i + 1) * stride];
            let (cache, rest) = row.split_at_mut(self.past);
            let (above, own) = rest.split_at_mut(context.len());
            for (k, cell) in cache.iter_mut().enumerate() {
                if near(q, k) {
                    *cell = 0.0;
                }
            }
            for (&kj, cell) in context.iter().zip(above) {
                if near(q, self.positions[kj]) {
                    *cell = 0.0;
                }
            }
            for (kj, cell) in b.queries.clone().zip(own) {
                let k = self.positions[kj];
                if kj <= qi && k <= q && near(q, k) && self.is_ancestor_or_self(self.segment[kj], self.segment[qi]) {
                    *cell = 0.0;
                }
            }
        }
    }

}
