//! Contexts as prefix trees. Prompts of one task often begin alike — an instruction, few-shot
//! demonstrations, a template — and a forward pass can run their common tokens once for every
//! document that shares them (see [`Layout::prefix_tree`](crate::batch::layout::Layout::prefix_tree)).
//!
//! Two trees: a [`PrefixTree`] (a radix trie) over all of a task's contexts finds the prefixes
//! worth sharing and cuts every context into segments there ([`PrefixTree::cuts`]); a
//! [`SegmentTree`] holds one pass's contexts, segment by segment. Because the cuts come from the
//! whole task, a document runs as the same segments whatever it is batched with, so its numbers
//! do not depend on the batch (the segments' shapes, not just their tokens, decide the last bits).

/// Shared prefixes shorter than this are not worth a block of their own.
pub const MIN_SHARED_TOKENS: usize = 8;

/// A radix trie over token sequences: every node holds the tokens its contexts share past its
/// parent, and a node ends wherever contexts part or a context ends.
#[derive(Clone, Debug, Default)]
pub struct PrefixTree {
    tree: Tree,
    /// The node each context ends at, by insertion index.
    ends: Vec<usize>,
}

/// The nodes both trees are made of.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    nodes: Vec<Node>,
    /// Nodes without a parent, in order of insertion.
    roots: Vec<usize>,
    tokens: usize,
}

impl Tree {
    /// Tokens the tree holds: what running all of its contexts costs.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    fn children(&self, parent: Option<usize>) -> &[usize] {
        match parent {
            None => &self.roots,
            Some(p) => &self.nodes[p].children,
        }
    }

    /// A new node of `tokens` below `parent`, last among its siblings.
    fn add(&mut self, tokens: &[u32], parent: Option<usize>) -> usize {
        let node = self.nodes.len();
        self.nodes.push(Node { tokens: tokens.to_vec(), parent, children: Vec::new(), contexts: Vec::new() });
        match parent {
            None => self.roots.push(node),
            Some(p) => self.nodes[p].children.push(node),
        }
        self.tokens += tokens.len();
        node
    }
}

impl std::ops::Deref for PrefixTree {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        &self.tree
    }
}

impl std::ops::Deref for SegmentTree {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        &self.tree
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub tokens: Vec<u32>,
    pub parent: Option<usize>,
    /// In order of insertion.
    pub children: Vec<usize>,
    /// Contexts (by insertion index) that end at this node.
    pub contexts: Vec<usize>,
}

impl PrefixTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Contexts inserted so far.
    pub fn contexts(&self) -> usize {
        self.ends.len()
    }

    /// Adds a context (at least one token); returns how many of its tokens the tree did not
    /// hold yet. Context `i` (in insertion order) ends at [`end`](Self::end)`(i)`.
    pub fn insert(&mut self, context: &[u32]) -> usize {
        assert!(!context.is_empty(), "a context has at least one token");
        let index = self.ends.len();
        let mut at = 0;
        let mut parent: Option<usize> = None;
        loop {
            let rest = &context[at..];
            let Some(&first) = rest.first() else {
                // The context ends where an earlier one passed or ended.
                let node = parent.expect("a non-empty context ends below a root");
                self.tree.nodes[node].contexts.push(index);
                self.ends.push(node);
                return 0;
            };
            let Some(&child) = self.children(parent).iter().find(|&&c| self.nodes[c].tokens[0] == first) else {
                let node = self.tree.add(rest, parent);
                self.tree.nodes[node].contexts.push(index);
                self.ends.push(node);
                return rest.len();
            };
            let held = &self.nodes[child].tokens;
            let common = held.iter().zip(rest).take_while(|(a, b)| a == b).count();
            if common < held.len() {
                self.split(child, common);
            }
            at += common;
            parent = Some(child);
        }
    }

    /// The node context `i` ends at.
    pub fn end(&self, i: usize) -> usize {
        self.ends[i]
    }

    /// Cuts node `i` after `keep` tokens: `i` keeps the head (and its place among its
    /// siblings); a new node below it takes the tail, its children and its contexts.
    fn split(&mut self, i: usize, keep: usize) {
        let tree = &mut self.tree;
        let tail_index = tree.nodes.len();
        let node = &mut tree.nodes[i];
        let tail = Node {
            tokens: node.tokens.split_off(keep),
            parent: Some(i),
            children: std::mem::replace(&mut node.children, vec![tail_index]),
            contexts: std::mem::take(&mut node.contexts),
        };
        for &c in &tail.children {
            tree.nodes[c].parent = Some(tail_index);
        }
        for &c in &tail.contexts {
            self.ends[c] = tail_index;
        }
        tree.nodes.push(tail);
    }

    /// The tokens of the path from a root to node `i`.
    pub fn path(&self, mut i: usize) -> Vec<u32> {
        let mut parts = vec![&self.nodes[i].tokens];
        while let Some(p) = self.nodes[i].parent {
            parts.push(&self.nodes[p].tokens);
            i = p;
        }
        parts.into_iter().rev().flatten().copied().collect()
    }

    /// Where context `i` is cut into segments (positions, ascending, inside the context): after
    /// every node of its path that other contexts share too, once at least `min_shared` tokens
    /// have gathered since the previous cut. The cuts of a node depend only on the nodes above
    /// it, so contexts sharing a prefix are cut alike within it.
    pub fn cuts(&self, i: usize, min_shared: usize) -> Vec<usize> {
        let mut path = vec![self.ends[i]];
        while let Some(p) = self.nodes[*path.last().expect("non-empty")].parent {
            path.push(p);
        }
        path.reverse();
        let (mut cuts, mut at, mut gathered) = (Vec::new(), 0, 0);
        for &n in &path[..path.len() - 1] {
            let len = self.nodes[n].tokens.len();
            at += len;
            gathered += len;
            if gathered >= min_shared {
                cuts.push(at);
                gathered = 0;
            }
        }
        cuts
    }

    /// The cuts of each of `contexts`, sharing prefixes among them.
    pub fn shared_cuts(contexts: &[&[u32]], min_shared: usize) -> Vec<Vec<usize>> {
        let mut tree = PrefixTree::new();
        for c in contexts {
            tree.insert(c);
        }
        (0..contexts.len()).map(|i| tree.cuts(i, min_shared)).collect()
    }
}

/// One forward pass's contexts, each cut into segments: contexts whose first segments are the
/// same share those nodes. Nodes come in order of first appearance.
#[derive(Clone, Debug, Default)]
pub struct SegmentTree {
    tree: Tree,
    contexts: usize,
}

impl SegmentTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a context cut at `cuts` (ascending positions inside it); returns how many of its
    /// tokens the tree did not hold yet (the segments not already there).
    pub fn insert(&mut self, context: &[u32], cuts: &[usize]) -> usize {
        assert!(!context.is_empty(), "a context has at least one token");
        let index = self.contexts;
        self.contexts += 1;
        let bounds: Vec<usize> = std::iter::once(0).chain(cuts.iter().copied()).chain([context.len()]).collect();
        let mut parent: Option<usize> = None;
        let mut new = 0;
        for w in bounds.windows(2) {
            assert!(w[0] < w[1], "cuts {cuts:?} of a {}-token context", context.len());
            let segment = &context[w[0]..w[1]];
            let node = match self.children(parent).iter().find(|&&c| self.nodes[c].tokens == segment) {
                Some(&c) => c,
                None => {
                    new += segment.len();
                    self.tree.add(segment, parent)
                }
            };
            parent = Some(node);
        }
        self.tree.nodes[parent.expect("at least one segment")].contexts.push(index);
        new
    }

    /// Contexts inserted so far.
    pub fn contexts(&self) -> usize {
        self.contexts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefixes_are_held_once() {
        let mut t = PrefixTree::new();
        assert_eq!(t.insert(&[1, 2, 3, 4]), 4);
        assert_eq!(t.insert(&[1, 2, 3, 5, 6]), 2); // splits [1 2 3 4] after 3
        assert_eq!(t.insert(&[1, 2]), 0); // ends inside a node: splits it again
        assert_eq!(t.insert(&[7]), 1); // a second root
        assert_eq!(t.insert(&[1, 2, 3, 4]), 0); // the same context twice
        assert_eq!(t.insert(&[1, 2, 9]), 1);
        assert_eq!(t.tokens(), 4 + 2 + 1 + 1);
        let contexts: [&[u32]; 6] = [&[1, 2, 3, 4], &[1, 2, 3, 5, 6], &[1, 2], &[7], &[1, 2, 3, 4], &[1, 2, 9]];
        for (i, c) in contexts.iter().enumerate() {
            assert_eq!(t.path(t.end(i)), *c, "context {i}");
            assert!(t.node(t.end(i)).contexts.contains(&i));
        }
        assert_eq!(t.end(0), t.end(4));
        assert_eq!(t.roots().len(), 2);
        // Every node but a root has a parent that lists it, and parts from its siblings at its
        // first token.
        for i in 0..t.nodes.len() {
            let n = t.node(i);
            assert!(!n.tokens.is_empty());
            let siblings = match n.parent {
                Some(p) => &t.node(p).children,
                None => &t.roots,
            };
            assert_eq!(siblings.iter().filter(|&&s| s == i).count(), 1);
            assert_eq!(siblings.iter().filter(|&&s| t.node(s).tokens[0] == n.tokens[0]).count(), 1);
        }
    }

    #[test]
    fn contexts_are_cut_where_shared_prefixes_end_and_are_long_enough() {
        let header: Vec<u32> = (1..=10).collect();
        let contexts: Vec<Vec<u32>> = vec![
            [header.clone(), vec![20, 21, 22, 23]].concat(),
            [header.clone(), vec![20, 21, 30]].concat(),
            [header.clone(), vec![40]].concat(),
            vec![1, 2, 99],
            vec![50, 51],
        ];
        let refs: Vec<&[u32]> = contexts.iter().map(Vec::as_slice).collect();
        // Nodes: [1 2] · [3..10] · [20 21] · ...; with 8 tokens needed, the first cut comes
        // after the header (10 tokens gathered), the next would need 8 more.
        assert_eq!(PrefixTree::shared_cuts(&refs, 8), vec![vec![10], vec![10], vec![10], vec![], vec![]]);
        assert_eq!(PrefixTree::shared_cuts(&refs, 2), vec![vec![2, 10, 12], vec![2, 10, 12], vec![2, 10], vec![2], vec![]]);
        // A pass over some of them: the header once, whatever else is batched with it.
        let cuts = PrefixTree::shared_cuts(&refs, 8);
        let mut pass = SegmentTree::new();
        assert_eq!(pass.insert(&contexts[0], &cuts[0]), 14);
        assert_eq!(pass.insert(&contexts[2], &cuts[2]), 1);
        assert_eq!(pass.insert(&contexts[3], &cuts[3]), 3);
        assert_eq!(pass.insert(&contexts[0], &cuts[0]), 0);
        assert_eq!(pass.tokens(), 18);
        assert_eq!(pass.roots().len(), 2);
        let header_node = pass.node(pass.roots()[0]);
        assert_eq!(header_node.tokens, header);
        assert_eq!(header_node.children.len(), 2);
        assert_eq!(pass.node(header_node.children[0]).contexts, vec![0, 3]);
    }
}
