//! How one forward pass's tokens are arranged: a task's contexts as a prefix tree (shared
//! beginnings run once, [`prefix_tree`]) and a pass's tokens laid out in blocks of segments with
//! what each token sees ([`layout`]). Model code reads the layout; attention masks are made from
//! it in `crate::layers::mask`.

pub mod layout;
pub mod prefix_tree;

pub use layout::{Layout, TreeRows};
pub use prefix_tree::{MIN_SHARED_TOKENS, PrefixTree, SegmentTree};
