//! The keys and values of the tokens a sequence has run, for continuing it.

use candle_core::Tensor;

use crate::error::Result;

/// Past keys and values of every layer, for continuing a sequence.
#[derive(Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
    /// Keeps nothing: for a pass that is never continued (its keys and values, all layers at
    /// once, would be the largest thing in memory of a long prompt's pass).
    scratch: bool,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        KvCache { layers: vec![None; layers], len: 0, scratch: false }
    }
    /// A cache for a pass that will not be continued: it counts tokens but keeps no keys or values.
    pub fn scratch(layers: usize) -> Self {
        KvCache { scratch: true, ..KvCache::new(layers) }
    }
    /// Tokens already in the cache (the position of the next one).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
    /// Appends this step's keys/values to layer `i` and returns all of them.
    pub(crate) fn append(&mut self, i: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match self.layers[i].take() {
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2)?, Tensor::cat(&[pv, v], 2)?),
            None => (k, v),
        };
        if !self.scratch {
            self.layers[i] = Some((k.clone(), v.clone()));
        }
        Ok((k, v))
    }
}
