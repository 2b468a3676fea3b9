//! Attention masks of a pass's [`Layout`]: one additive mask per block of tokens; on a GPU the
//! blocks stacked in padded groups, or the block tables of the fused CUDA kernel.

use std::sync::{Arc, OnceLock};

use candle_core::{Device, Tensor};
use invscale_kernels::cuda::attention::{FusedBlocks, HostBlock};

use crate::batch::layout::{Block, Layout};
use crate::error::Result;

impl Layout {
    /// The additive attention masks, block by block; with a sliding `window`, a token sees only
    /// keys less than `window` positions back. On a GPU, the blocks are laid out in a few padded
    /// batches instead (see [`AttnMask`]).
    pub fn mask(&self, window: Option<usize>, device: &Device) -> Result<AttnMask> {
        if device.is_cuda() && self.past == 0 {
            let gpu = GpuMasks { layout: self.clone(), window, fused: OnceLock::new(), unfused: OnceLock::new() };
            return Ok(AttnMask { past: 0, blocks: Vec::new(), padded: None, f16_kv: false, softcap: None, gpu: Some(Arc::new(gpu)) });
        }
        self.mask_as(window, device, device.is_cuda())
    }

    /// The masks of a model whose layers attend fully or through a sliding `window` (Gemma 3,
    /// OLMo 3): `(full, sliding)`, the sliding one the full one where no layer slides.
    pub fn full_and_sliding_masks(&self, window: Option<usize>, device: &Device, f16_kv: bool) -> Result<(AttnMask, AttnMask)> {
        let full = self.mask(None, device)?.with_f16_kv(f16_kv);
        let sliding = match window {
            Some(w) => self.mask(Some(w), device)?.with_f16_kv(f16_kv),
            None => full.clone(),
        };
        Ok((full, sliding))
    }

    /// The blocks as the fused CUDA kernel takes them (see `cuda_attention`; `None`: it cannot).
    pub(crate) fn fused_blocks(&self, window: Option<usize>, device: &Device) -> Result<Option<FusedBlocks>> {
        let spans = self.segment_spans();
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let Some(seen) = self.seen_ranges(b, window, &spans) else { return Ok(None) };
            blocks.push(HostBlock { queries: b.queries.clone(), keys: b.key_tokens().collect(), seen });
        }
        Ok(Some(FusedBlocks::new(blocks, self.len(), device)?))
    }

    /// [`mask`](Self::mask), choosing the padded layout or not.
    pub(crate) fn mask_as(&self, window: Option<usize>, device: &Device, padded: bool) -> Result<AttnMask> {
        if padded && self.past == 0 && self.blocks.len() > 1 {
            return self.padded_mask(window, device, SMALL_CELLS);
        }
        let mut out = Vec::new();
        for b in &self.blocks {
            let s = b.keys(self.past);
            let mut m = vec![f32::NEG_INFINITY; b.queries.len() * s];
            self.fill_block(b, window, &mut m, s);
            let mask = Tensor::from_vec(m, (1, 1, b.queries.len(), s), device)?;
            out.push((b.clone(), mask));
        }
        Ok(AttnMask { past: self.past, blocks: out, padded: None, f16_kv: false, softcap: None, gpu: None })
    }

    /// Blocks of similar size padded to common query and key lengths and stacked, so that one
    /// batched product runs many documents' attention (a GPU launches a handful of kernels
    /// instead of a few per document). A group pads to at most 4/3 of its blocks' score cells,
    /// or to any shape while it is small (then launches, not cells, cost the time); padded keys
    /// are masked out, padded queries see one key (never a row of -inf) and are dropped after.
    /// `small_cells`: below this many cells a group takes any block ([`SMALL_CELLS`]).
    pub(crate) fn padded_mask(&self, window: Option<usize>, device: &Device, small_cells: usize) -> Result<AttnMask> {
        // Score cells (n·Pq·Pk) a group may hold, per head: bounds the f32 scores' memory.
        const MAX_CELLS: usize = 1 << 23;
        let mut blocks: Vec<&Block> = self.blocks.iter().collect();
        blocks.sort_by_key(|b| (std::cmp::Reverse(b.queries.len()), std::cmp::Reverse(b.keys(0))));
        let t = self.len();
        let mut groups = Vec::new();
        let mut unpad = vec![0u32; t];
        let mut rows_before = 0usize;
        let mut i = 0;
        while i < blocks.len() {
            let pq = blocks[i].queries.len().next_multiple_of(8);
            let mut longest = blocks[i].keys(0);
            let mut cells = blocks[i].queries.len() * longest;
            let mut j = i + 1;
            while j < blocks.len() {
                let (q, k) = (blocks[j].queries.len(), blocks[j].keys(0));
                let padded = (j - i + 1) * pq * longest.max(k).next_multiple_of(8);
                if padded > MAX_CELLS || (padded > small_cells && padded * 3 > (cells + q * k) * 4) {
                    break;
                }
                longest = longest.max(k);
                cells += q * k;
                j += 1;
            }
            let pk = longest.next_multiple_of(8);
            let group = &blocks[i..j];
            let n = group.len();
            let mut m = vec![f32::NEG_INFINITY; n * pq * pk];
            let mut gather_q = Vec::with_capacity(n * pq);
            let mut gather_kv = Vec::with_capacity(n * pk);
            for (g, b) in group.iter().enumerate() {
                let cells = &mut m[g * pq * pk..(g + 1) * pq * pk];
                self.fill_block(b, window, cells, pk);
                for row in b.queries.len()..pq {
                    cells[row * pk] = 0.0;
                }
                let q_rows = b.queries.clone();
                gather_q.extend((0..pq).map(|k| (q_rows.start + k.min(q_rows.len() - 1)) as u32));
                let keys: Vec<u32> = b.key_tokens().collect();
                gather_kv.extend((0..pk).map(|k| keys[k.min(keys.len() - 1)]));
                for (k, tok) in q_rows.enumerate() {
                    unpad[tok] = (rows_before + g * pq + k) as u32;
                }
            }
            rows_before += n * pq;
            groups.push(PaddedGroup {
                n,
                queries: pq,
                keys: pk,
                gather_q: Tensor::new(gather_q.as_slice(), device)?,
                gather_kv: Tensor::new(gather_kv.as_slice(), device)?,
                mask: Tensor::from_vec(m, (n, 1, pq, pk), device)?,
                full: std::sync::OnceLock::new(),
            });
            i = j;
        }
        Ok(AttnMask {
            past: 0,
            blocks: Vec::new(),
            padded: Some(PaddedBlocks { groups, unpad: Tensor::new(unpad.as_slice(), device)? }),
            f16_kv: false,
            softcap: None,
            gpu: None,
        })
    }
}

/// Score cells (per head) below which a padded group takes any block: a small product costs
/// its launch, not its cells.
pub(crate) const SMALL_CELLS: usize = 1 << 20;

/// Attention masks of a [`Layout`]: one per block of tokens, or (GPU) the blocks stacked in
/// padded groups.
#[derive(Clone)]
pub struct AttnMask {
    pub(crate) past: usize,
    pub(crate) blocks: Vec<(Block, Tensor)>,
    pub(crate) padded: Option<PaddedBlocks>,
    /// Attention in llama.cpp's arithmetic (f16 keys, values and probabilities; see
    /// `cpu_attention::attention`), where the fused CPU kernel runs.
    pub(crate) f16_kv: bool,
    /// Gemma 2's attention soft-capping: scores become `cap · tanh(scores / cap)` before the
    /// mask (then neither fused kernel runs).
    pub(crate) softcap: Option<f64>,
    /// On a GPU without a cache: the masks, made at the first layer's attention.
    pub(crate) gpu: Option<Arc<GpuMasks>>,
}

/// A GPU pass's masks, made when the first layer's attention tells whether the fused kernel
/// runs it (dtype and head size; then block tables, see `cuda_attention`) or not (then padded
/// groups, or a block's mask); the other layers reuse them.
pub(crate) struct GpuMasks {
    pub(crate) layout: Layout,
    pub(crate) window: Option<usize>,
    pub(crate) fused: OnceLock<Option<FusedBlocks>>,
    pub(crate) unfused: OnceLock<AttnMask>,
}

impl GpuMasks {
    pub(crate) fn fused(&self, device: &Device) -> Result<Option<&FusedBlocks>> {
        if self.fused.get().is_none() {
            let _ = self.fused.set(self.layout.fused_blocks(self.window, device)?);
        }
        Ok(self.fused.get().expect("set above").as_ref())
    }
    pub(crate) fn unfused(&self, device: &Device) -> Result<&AttnMask> {
        if self.unfused.get().is_none() {
            let _ = self.unfused.set(self.layout.mask_as(self.window, device, true)?);
        }
        Ok(self.unfused.get().expect("set above"))
    }
}

impl AttnMask {
    /// The same masks, attention in llama.cpp's f16-KV arithmetic or not.
    pub fn with_f16_kv(mut self, on: bool) -> AttnMask {
        self.f16_kv = on;
        self
    }

    /// The same masks, the scores soft-capped at `cap` (see [`AttnMask::softcap`]).
    pub fn with_softcap(mut self, cap: Option<f64>) -> AttnMask {
        self.softcap = cap;
        self
    }
}

/// Blocks of similar sizes stacked as `[n, heads, len, d]` batches.
#[derive(Clone)]
pub(crate) struct PaddedBlocks {
    pub(crate) groups: Vec<PaddedGroup>,
    /// For each token, its row among the groups' padded query rows, in group order.
    pub(crate) unpad: Tensor,
}

#[derive(Clone)]
pub(crate) struct PaddedGroup {
    pub(crate) n: usize,
    pub(crate) queries: usize,
    pub(crate) keys: usize,
    /// `n·queries` token indices: each padded query row's source token (padding repeats a real one).
    pub(crate) gather_q: Tensor,
    /// `n·keys` token indices: each block's context then its own tokens, padded likewise.
    pub(crate) gather_kv: Tensor,
    /// `[n, 1, queries, keys]`.
    pub(crate) mask: Tensor,
    /// The mask at the scores' full shape `[n, heads, queries, keys]` and dtype, made by the
    /// first layer and reused by the others: adding it is then an elementwise add of two
    /// contiguous tensors (a broadcast add over heads costs several integer divisions per
    /// element on the GPU).
    pub(crate) full: std::sync::OnceLock<Tensor>,
}
