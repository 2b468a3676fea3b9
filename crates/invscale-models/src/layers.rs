//! Layers shared by the architectures: linear layers (dense or quantized), norms, rotary
//! embeddings, causal attention with a KV cache. Activations are `[tokens, hidden]` for one
//! sequence; attention works on `[1, heads, tokens, head_dim]`.

use candle_core::quantized::QMatMul;
use candle_core::{D, DType, Device, Module, Tensor};

use std::sync::{Arc, OnceLock};

use crate::Result;
use crate::cuda_attention::{FusedBlocks, HostBlock};
use crate::block_quant::{BlockFormat, BlockMatrix, QuantizedRows};

/// `INVSCALE_PROFILE=2`: time spent per kind of layer work, the device synchronised around each
/// piece (slower, but it says where a forward pass goes). Level 1 times whole passes only.
pub mod profile {
    use std::cell::RefCell;
    use std::sync::OnceLock;
    use std::time::Instant;

    use candle_core::Device;

    use crate::Result;

    thread_local! {
        static SPENT: RefCell<Vec<(&'static str, f64)>> = const { RefCell::new(Vec::new()) };
    }

    pub fn level() -> u8 {
        static LEVEL: OnceLock<u8> = OnceLock::new();
        *LEVEL.get_or_init(|| std::env::var("INVSCALE_PROFILE").ok().and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// Runs `f`, adding its time to `label` at level 2.
    pub fn time<T>(label: &'static str, device: &Device, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if level() < 2 {
            return f();
        }
        device.synchronize()?;
        let started = Instant::now();
        let out = f()?;
        device.synchronize()?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        SPENT.with(|s| {
            let mut s = s.borrow_mut();
            match s.iter_mut().find(|(l, _)| *l == label) {
                Some((_, total)) => *total += ms,
                None => s.push((label, ms)),
            }
        });
        Ok(out)
    }

    /// At level 1 and above: `what` with the time since the first stamp, a timeline of a run
    /// (the gaps between its lines are where host work went).
    pub fn stamp(what: impl std::fmt::Display) {
        static FIRST: OnceLock<Instant> = OnceLock::new();
        if level() >= 1 {
            eprintln!("profile: at {:.1} ms: {what}", FIRST.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3);
        }
    }

    /// What was timed since the last call, `label ms` pairs.
    pub fn take() -> String {
        SPENT.with(|s| s.borrow_mut().drain(..).map(|(l, ms)| format!("{l} {ms:.1} ms")).collect::<Vec<_>>().join(", "))
    }
}

/// A weight matrix `[out, in]`, applied as `x Wᵀ`.
pub enum Weight {
    /// Full precision (GGUF dequantized to f32, or an HF checkpoint's tensor).
    Dense(Tensor),
    /// Kept quantized; candle's kernels quantize the activations too (llama.cpp's scheme).
    Quantized(QMatMul),
    /// Kept quantized in a 32-value block format, multiplied by our own CPU kernel
    /// (llama.cpp's arithmetic; see `block_quant`).
    Blocks(BlockMatrix),
}

pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Whether each output row is computed alone, the same bits whatever rows share the product:
    /// true of our block kernel (integer block dot products, blocks summed in order); dense
    /// products (gemm's blocking follows the row count) can move the last bits.
    pub fn rows_independent(&self) -> bool {
        matches!(self.weight, Weight::Blocks(_))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Weight::Dense(w), Some(b)) = (&self.weight, &self.bias)
            && crate::cuda_ops::half_on_cuda(x)
            && x.rank() == 2
            && w.dtype() == x.dtype()
        {
            return profile::time("matmul", x.device(), || crate::cuda_ops::linear_bias(x, w, b));
        }
        let y = profile::time("matmul", x.device(), || {
            Ok(match &self.weight {
                Weight::Dense(w) => x.matmul(&w.t()?)?,
                Weight::Quantized(q) => quantized_product(q, x)?,
                Weight::Blocks(w) => block_matmul(w, x)?,
            })
        })?;
        profile::time("bias", x.device(), || {
            Ok(match &self.bias {
                // On the GPU a broadcast add costs integer divisions per element; the bias as a
                // rank-1 product (ones · b, exact) makes it an add of two contiguous tensors.
                Some(b) if y.device().is_cuda() && b.rank() == 1 => {
                    let out = b.dim(0)?;
                    let rows = y.elem_count() / out;
                    let ones = Tensor::ones((rows, 1), y.dtype(), y.device())?;
                    let bias = ones.matmul(&b.to_dtype(y.dtype())?.reshape((1, out))?)?;
                    let bias = bias.reshape(y.shape())?;
                    (y + bias)?
                }
                Some(b) => y.broadcast_add(b)?,
                None => y,
            })
        })
    }
}

/// A product with a matrix kept quantized in candle's storage (on the GPU; on the CPU the formats
/// our block kernel does not take). On the GPU the matrix is dequantized for the product and
/// multiplied in TF32 with f32 sums: candle's own quantized CUDA kernels (its port of llama.cpp's
/// MMQ/MMVQ) err 2.3–4× as much as llama.cpp's CPU scheme on Q4_1 matrices and on Q4_0/Q5_0 with
/// ≤ 8 rows (`cuda_ops` test `gpu_quantized_products_err_less_than_the_cpus`), which put the GPU
/// 2.4× as far from llama.cpp as every other path on a real SmolLM2 (bench/gpu/RESULTS.md,
/// session 11); TF32 of the dequantized matrix errs ~40× less than any 8-bit activation scheme,
/// and on a Llama-3-8B shape scores 1.4× as fast as candle's kernels (bench/gpu/quantized_speed.py).
/// The matrix stays quantized in memory (one dequantized copy at a time, while it is used).
/// `INVSCALE_GPU_QUANTIZED_KERNELS=candle` runs candle's kernels instead (for speed comparisons).
pub fn quantized_product(q: &QMatMul, x: &Tensor) -> Result<Tensor> {
    static CANDLE_KERNELS: OnceLock<bool> = OnceLock::new();
    let candle = *CANDLE_KERNELS.get_or_init(|| std::env::var("INVSCALE_GPU_QUANTIZED_KERNELS").is_ok_and(|v| v == "candle"));
    if let (true, QMatMul::QTensor(t)) = (cfg!(feature = "cuda") && x.device().is_cuda() && !candle, q) {
        let w = t.dequantize(x.device())?;
        let k = w.dim(1)?;
        let dims = x.dims().to_vec();
        let rows = x.elem_count() / k;
        let y = crate::cuda_ops::matmul_tf32(&x.to_dtype(DType::F32)?.reshape((rows, k))?, &w)?;
        let mut out = dims;
        *out.last_mut().expect("a product's input has a last dimension") = w.dim(0)?;
        return Ok(y.reshape(out)?.to_dtype(x.dtype())?);
    }
    Ok(q.forward(x)?)
}

/// A token embedding table: dense, or quantized rows dequantized as they are looked up.
pub enum Embedding {
    Dense(Tensor),
    Blocks(BlockMatrix),
}

impl Embedding {
    /// Where lookups land (quantized tables live on the CPU).
    pub fn device(&self) -> Device {
        match self {
            Embedding::Dense(t) => t.device().clone(),
            Embedding::Blocks(_) => Device::Cpu,
        }
    }

    /// The rows of `ids`, `[ids.len(), hidden]`, on `device`.
    pub fn lookup(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Embedding::Dense(t) => Ok(t.index_select(&Tensor::new(ids, device)?, 0)?),
            Embedding::Blocks(w) => Ok(Tensor::from_vec(w.rows_f32(ids), (ids.len(), w.shape().1), device)?),
        }
    }
}

/// `x` quantized for `format`, reusing the last quantization when the same tensor comes again
/// (Q, K and V read one input; so do gate and up): tensors are immutable and their ids unique.
fn quantized_input(x: &Tensor, format: BlockFormat, m: usize, k: usize) -> Result<std::rc::Rc<QuantizedRows>> {
    use std::cell::RefCell;
    use std::rc::Rc;
    thread_local! {
        static LAST: RefCell<Option<(candle_core::TensorId, Rc<QuantizedRows>)>> = const { RefCell::new(None) };
    }
    let hit = LAST.with(|l| l.borrow().as_ref().filter(|(id, q)| *id == x.id() && q.serve(format)).map(|(_, q)| Rc::clone(q)));
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let acts = Rc::new(QuantizedRows::new(&xs, m, k, format));
    LAST.with(|l| *l.borrow_mut() = Some((x.id(), Rc::clone(&acts))));
    Ok(acts)
}

fn block_matmul(w: &BlockMatrix, x: &Tensor) -> Result<Tensor> {
    let (n, k) = w.shape();
    let mut dims = x.dims().to_vec();
    let last = dims.pop();
    if last != Some(k) {
        return Err(candle_core::Error::Msg(format!("matmul: input {:?} against a [{n}, {k}] matrix", x.dims())).into());
    }
    let m: usize = dims.iter().product();
    let acts = quantized_input(x, w.format(), m, k)?;
    let mut y = vec![0f32; m * n];
    w.matmul_quantized(&acts, &mut y);
    dims.push(n);
    Ok(Tensor::from_vec(y, dims, x.device())?)
}

pub struct RmsNorm {
    /// Always f32 (norm weights are small and their rounding matters in half precision).
    pub weight: Tensor,
    pub eps: f32,
    /// Half precision: cast the normalised input back to its dtype *before* scaling by the weight
    /// (Llama-style norms in transformers), rather than after (Gemma's `1 + w`).
    pub scale_after_cast: bool,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        profile::time("norm", x.device(), || self.forward_inner(x))
    }

    fn forward_inner(&self, x: &Tensor) -> Result<Tensor> {
        if x.dtype() == DType::F32 {
            // Contiguous: on a GPU, Gemma's q/k norms get `split_heads`' view.
            return Ok(candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)?);
        }
        if crate::cuda_ops::half_on_cuda(x) {
            return crate::cuda_ops::rms_norm(x, &self.weight, self.eps, self.scale_after_cast);
        }
        // In f32 whatever the dtype, as transformers' RMSNorms do, then cast back.
        let x32 = x.to_dtype(DType::F32)?;
        if self.scale_after_cast {
            let ones = Tensor::ones_like(&self.weight)?;
            let normed = candle_nn::ops::rms_norm(&x32, &ones, self.eps)?.to_dtype(x.dtype())?;
            Ok(normed.broadcast_mul(&self.weight.to_dtype(x.dtype())?)?)
        } else {
            Ok(candle_nn::ops::rms_norm(&x32, &self.weight, self.eps)?.to_dtype(x.dtype())?)
        }
    }
}

pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f32,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        profile::time("norm", x.device(), || {
            if crate::cuda_ops::half_on_cuda(x) && self.weight.dtype() == x.dtype() && self.bias.dtype() == x.dtype() {
                return crate::cuda_ops::layer_norm(x, &self.weight, &self.bias, self.eps);
            }
            Ok(candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)?)
        })
    }
}

/// How rotary embeddings pair dimensions: llama.cpp's "normal" (adjacent pairs; llama-arch GGUF
/// files permute Q/K for it) or NeoX's halves (HF's `rotate_half`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    Interleaved,
    Halves,
}

pub struct Rotary {
    pub style: RopeStyle,
    /// `1 / base^(2i/d)` for the rotated dimensions.
    inv_freq: Vec<f32>,
    /// Positions are divided by this (linear RoPE scaling; 1 for none).
    scale: f32,
    /// The last tables made (every layer of a pass, q and k, rotates by the same positions):
    /// positions, dtype, cos, sin.
    last: std::sync::Mutex<Option<(Vec<usize>, DType, Tensor, Tensor)>>,
}

impl Rotary {
    pub fn new(style: RopeStyle, rotary_dim: usize, base: f64, linear_scale: f64) -> Rotary {
        // As HF computes it: inv_freq = 1 / base^(arange(0, d, 2) / d) in float32.
        let inv_freq = (0..rotary_dim)
            .step_by(2)
            .map(|i| 1.0f32 / (base as f32).powf(i as f32 / rotary_dim as f32))
            .collect();
        Rotary { style, inv_freq, scale: linear_scale as f32, last: std::sync::Mutex::new(None) }
    }

    /// cos and sin, `[t, rotary_dim / 2]`, for the given positions.
    fn tables(&self, positions: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut freqs = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            let pos = p as f32 / self.scale;
            freqs.extend(self.inv_freq.iter().map(|f| pos * f));
        }
        let freqs = Tensor::from_vec(freqs, (positions.len(), half), device)?;
        Ok((freqs.cos()?, freqs.sin()?))
    }

    /// Rotates `x: [1, heads, t, head_dim]`, token `i` at `positions[i]`.
    pub fn apply(&self, x: &Tensor, positions: &[usize]) -> Result<Tensor> {
        profile::time("rotary", x.device(), || self.apply_inner(x, positions))
    }

    /// Dimensions of a head that turn.
    pub fn rotary_dim(&self) -> usize {
        self.inv_freq.len() * 2
    }

    /// cos and sin, `[t, rotary_dim / 2]` in `dtype` on `device` (computed in f32 and cast, as
    /// transformers does), made once for all the layers of a pass.
    pub fn cos_sin(&self, positions: &[usize], dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match &*last {
            Some((p, d, cos, sin)) if p == positions && *d == dtype && cos.device().same_device(device) => (cos.clone(), sin.clone()),
            _ => {
                let (cos, sin) = self.tables(positions, device)?;
                let (cos, sin) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
                *last = Some((positions.to_vec(), dtype, cos.clone(), sin.clone()));
                (cos, sin)
            }
        })
    }

    fn apply_inner(&self, x: &Tensor, positions: &[usize]) -> Result<Tensor> {
        let (_, _, t, head_dim) = x.dims4()?;
        assert_eq!(t, positions.len());
        let (cos, sin) = self.cos_sin(positions, x.dtype(), x.device())?;
        let rot = self.rotary_dim();
        // A `[1, heads, t, d]` view of a `[1, t, heads, d]` tensor (`split_heads` on a GPU):
        // rotated in that layout, and returned as such a view again.
        let tokens_major = x.transpose(1, 2)?;
        if rot == head_dim && self.style == RopeStyle::Halves && tokens_major.is_contiguous() && !x.is_contiguous() {
            return Ok(candle_nn::rotary_emb::rope_thd(&tokens_major, &cos, &sin)?.transpose(1, 2)?);
        }
        let rope = |x: &Tensor| -> Result<Tensor> {
            let x = x.contiguous()?;
            Ok(match self.style {
                RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?,
                RopeStyle::Halves => candle_nn::rotary_emb::rope(&x, &cos, &sin)?,
            })
        };
        if rot == head_dim {
            return rope(x);
        }
        // Partial rotary (GPT-NeoX's rotary_pct): only the first `rot` dimensions turn.
        let rotated = rope(&x.narrow(D::Minus1, 0, rot)?)?;
        let rest = x.narrow(D::Minus1, rot, head_dim - rot)?;
        Ok(Tensor::cat(&[rotated, rest], D::Minus1)?)
    }
}

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
    segment: Vec<usize>,
    /// Parent segment of each segment, within its block (`None`: the block's first segment).
    parent: Vec<Option<usize>>,
    blocks: Vec<Block>,
}

/// Tokens that attend only among themselves, to the cache, and to the `context` ranges; so
/// attention costs the sum of the blocks' squares, not the square of the sum, and a document's
/// numbers do not depend on what it was batched with.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Block {
    queries: std::ops::Range<usize>,
    /// Earlier tokens of the pass that every token of the block sees (its shared prefix), in
    /// order; adjacent ranges merged.
    context: Vec<std::ops::Range<usize>>,
}

impl Block {
    fn context_len(&self) -> usize {
        self.context.iter().map(|r| r.len()).sum()
    }
    /// Keys of the block: cache, context, then its own tokens.
    fn keys(&self, past: usize) -> usize {
        past + self.context_len() + self.queries.len()
    }
    /// The pass's tokens the block attends to (after any cache): its context, then its own.
    fn key_tokens(&self) -> impl Iterator<Item = u32> + '_ {
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
    pub fn prefix_tree(tree: &crate::prefix_tree::SegmentTree, branches: &[Vec<&[u32]>]) -> (Layout, TreeRows) {
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

    fn is_ancestor_or_self(&self, a: usize, mut s: usize) -> bool {
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

    /// The additive attention masks, block by block; with a sliding `window`, a token sees only
    /// keys less than `window` positions back. On a GPU, the blocks are laid out in a few padded
    /// batches instead (see [`AttnMask`]).
    pub fn mask(&self, window: Option<usize>, device: &Device) -> Result<AttnMask> {
        if device.is_cuda() && self.past == 0 {
            let gpu = GpuMasks { layout: self.clone(), window, fused: OnceLock::new(), unfused: OnceLock::new() };
            return Ok(AttnMask { past: 0, blocks: Vec::new(), padded: None, f16_kv: false, gpu: Some(Arc::new(gpu)) });
        }
        self.mask_as(window, device, device.is_cuda())
    }

    /// The blocks as the fused CUDA kernel takes them (see `cuda_attention`; `None`: it cannot).
    fn fused_blocks(&self, window: Option<usize>, device: &Device) -> Result<Option<FusedBlocks>> {
        let spans = self.segment_spans();
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let Some(seen) = self.seen_ranges(b, window, &spans) else { return Ok(None) };
            blocks.push(HostBlock { queries: b.queries.clone(), keys: b.key_tokens().collect(), seen });
        }
        Ok(Some(FusedBlocks::new(blocks, self.len(), device)?))
    }

    /// Each segment's tokens, `first..end` (a segment's tokens are contiguous).
    fn segment_spans(&self) -> Vec<std::ops::Range<usize>> {
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
    fn seen_ranges(&self, b: &Block, window: Option<usize>, spans: &[std::ops::Range<usize>]) -> Option<Vec<[u32; 4]>> {
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

    /// [`mask`](Self::mask), choosing the padded layout or not.
    fn mask_as(&self, window: Option<usize>, device: &Device, padded: bool) -> Result<AttnMask> {
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
        Ok(AttnMask { past: self.past, blocks: out, padded: None, f16_kv: false, gpu: None })
    }

    /// Writes block `b`'s mask rows (queries: its tokens; keys: the cache, its context, then its
    /// tokens) into `m`, `stride` cells a row; cells not opened stay as they are.
    fn fill_block(&self, b: &Block, window: Option<usize>, m: &mut [f32], stride: usize) {
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

    /// Blocks of similar size padded to common query and key lengths and stacked, so that one
    /// batched product runs many documents' attention (a GPU launches a handful of kernels
    /// instead of a few per document). A group pads to at most 4/3 of its blocks' score cells,
    /// or to any shape while it is small (then launches, not cells, cost the time); padded keys
    /// are masked out, padded queries see one key (never a row of -inf) and are dropped after.
    /// `small_cells`: below this many cells a group takes any block ([`SMALL_CELLS`]).
    fn padded_mask(&self, window: Option<usize>, device: &Device, small_cells: usize) -> Result<AttnMask> {
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
            gpu: None,
        })
    }
}

/// Score cells (per head) below which a padded group takes any block: a small product costs
/// its launch, not its cells.
const SMALL_CELLS: usize = 1 << 20;

/// Attention masks of a [`Layout`]: one per block of tokens, or (GPU) the blocks stacked in
/// padded groups.
#[derive(Clone)]
pub struct AttnMask {
    past: usize,
    blocks: Vec<(Block, Tensor)>,
    padded: Option<PaddedBlocks>,
    /// Attention in llama.cpp's arithmetic (f16 keys, values and probabilities; see
    /// `cpu_attention::attention`), where the fused CPU kernel runs.
    f16_kv: bool,
    /// On a GPU without a cache: the masks, made at the first layer's attention.
    gpu: Option<Arc<GpuMasks>>,
}

/// A GPU pass's masks, made when the first layer's attention tells whether the fused kernel
/// runs it (dtype and head size; then block tables, see `cuda_attention`) or not (then padded
/// groups, or a block's mask); the other layers reuse them.
struct GpuMasks {
    layout: Layout,
    window: Option<usize>,
    fused: OnceLock<Option<FusedBlocks>>,
    unfused: OnceLock<AttnMask>,
}

impl GpuMasks {
    fn fused(&self, device: &Device) -> Result<Option<&FusedBlocks>> {
        if self.fused.get().is_none() {
            let _ = self.fused.set(self.layout.fused_blocks(self.window, device)?);
        }
        Ok(self.fused.get().expect("set above").as_ref())
    }
    fn unfused(&self, device: &Device) -> Result<&AttnMask> {
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
}

/// Blocks of similar sizes stacked as `[n, heads, len, d]` batches.
#[derive(Clone)]
struct PaddedBlocks {
    groups: Vec<PaddedGroup>,
    /// For each token, its row among the groups' padded query rows, in group order.
    unpad: Tensor,
}

#[derive(Clone)]
struct PaddedGroup {
    n: usize,
    queries: usize,
    keys: usize,
    /// `n·queries` token indices: each padded query row's source token (padding repeats a real one).
    gather_q: Tensor,
    /// `n·keys` token indices: each block's context then its own tokens, padded likewise.
    gather_kv: Tensor,
    /// `[n, 1, queries, keys]`.
    mask: Tensor,
    /// The mask at the scores' full shape `[n, heads, queries, keys]` and dtype, made by the
    /// first layer and reused by the others: adding it is then an elementwise add of two
    /// contiguous tensors (a broadcast add over heads costs several integer divisions per
    /// element on the GPU).
    full: std::sync::OnceLock<Tensor>,
}

/// Attention over a layout's blocks: each block's queries against the cache, its context and
/// its own keys. `q: [1, h, t, d]`, `k, v: [1, kv_h, past + t, d]`; returns `[t, h·d]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask, scale: f64) -> Result<Tensor> {
    profile::time("attention", q.device(), || attention_inner(q, k, v, mask, scale))
}

fn attention_inner(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask, scale: f64) -> Result<Tensor> {
    if let Some(gpu) = &mask.gpu {
        if crate::cuda_attention::supported(q.device(), q.dtype(), q.dim(3)?)
            && let Some(fused) = gpu.fused(q.device())?
        {
            return crate::cuda_attention::attention(q, k, v, fused, scale);
        }
        let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        return attention_inner(&q, &k, &v, gpu.unfused(q.device())?, scale);
    }
    if let Some(padded) = &mask.padded {
        let mut outs = Vec::with_capacity(padded.groups.len());
        for g in &padded.groups {
            // [1, h, t, d] → [n, h, len, d], the group's blocks side by side.
            let stack = |x: &Tensor, rows: &Tensor, len: usize| -> Result<Tensor> {
                let heads = x.dim(1)?;
                let d = x.dim(3)?;
                Ok(x.squeeze(0)?.index_select(rows, 1)?.reshape((heads, g.n, len, d))?.transpose(0, 1)?)
            };
            let (qs, ks, vs) = profile::time("attention: stack", q.device(), || {
                Ok((stack(q, &g.gather_q, g.queries)?, stack(k, &g.gather_kv, g.keys)?, stack(v, &g.gather_kv, g.keys)?))
            })?;
            let heads = qs.dim(1)?;
            let full = match g.full.get() {
                Some(m) if m.dim(1)? == heads && m.dtype() == q.dtype() => m.clone(),
                _ => {
                    let m = g.mask.to_dtype(q.dtype())?.broadcast_as((g.n, heads, g.queries, g.keys))?.contiguous()?;
                    let _ = g.full.set(m.clone());
                    m
                }
            };
            outs.push(attention_block(&qs, &ks, &vs, &full, scale)?);
        }
        return profile::time("attention: unstack", q.device(), || {
            let all = if outs.len() == 1 { outs.remove(0) } else { Tensor::cat(&outs, 0)? };
            Ok(all.index_select(&padded.unpad, 0)?)
        });
    }
    if let [(b, m)] = mask.blocks.as_slice()
        && b.context.is_empty()
    {
        return attention_causal(q, k, v, m, mask.past, scale, mask.f16_kv);
    }
    let mut outs = Vec::with_capacity(mask.blocks.len());
    for (b, m) in &mask.blocks {
        let own = b.queries.start + mask.past..b.queries.end + mask.past;
        let mut ranges: Vec<std::ops::Range<usize>> = Vec::with_capacity(b.context.len() + 2);
        for r in std::iter::once(0..mask.past).chain(b.context.iter().map(|r| r.start + mask.past..r.end + mask.past)).chain([own]) {
            match ranges.last_mut() {
                _ if r.is_empty() => {}
                Some(last) if last.end == r.start => last.end = r.end,
                _ => ranges.push(r),
            }
        }
        let keys = |x: &Tensor| -> Result<Tensor> {
            let parts = ranges.iter().map(|r| x.narrow(2, r.start, r.len())).collect::<candle_core::Result<Vec<_>>>()?;
            Ok(if parts.len() == 1 { parts[0].clone() } else { Tensor::cat(&parts, 2)? })
        };
        let q = q.narrow(2, b.queries.start, b.queries.len())?;
        outs.push(attention_causal(&q, &keys(k)?, &keys(v)?, m, mask.past + b.context_len(), scale, mask.f16_kv)?);
    }
    Ok(Tensor::cat(&outs, 0)?)
}

/// [`attention_block`] for one block: on the CPU in f32 by the fused kernel, else (other dtypes,
/// CPUs without AVX-512, heads not a multiple of 64 values) on the CPU in chunks of query rows, each against the keys up to its own
/// last row: a row never attends to a later token (`fill_block` opens keys `kj <= qi` only), so
/// the keys left out are -inf in the mask and contribute exactly nothing. A long block's
/// products and softmax then cost about half. `past`: keys before the block's own (cache and context).
fn attention_causal(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, past: usize, scale: f64, f16_kv: bool) -> Result<Tensor> {
    if q.device().is_cpu() && q.dtype() == DType::F32 && crate::cpu_attention::available(q.dim(3)?) {
        return attention_fused_cpu(q, k, v, mask, scale, f16_kv);
    }
    attention_chunked(q, k, v, mask, past, scale)
}

fn attention_chunked(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, past: usize, scale: f64) -> Result<Tensor> {
    const CHUNK: usize = 128;
    let t = q.dim(2)?;
    if t <= 2 * CHUNK || !q.device().is_cpu() {
        return attention_block(q, k, v, mask, scale);
    }
    let mut outs = Vec::with_capacity(t.div_ceil(CHUNK));
    for start in (0..t).step_by(CHUNK) {
        let n = CHUNK.min(t - start);
        let keys = past + start + n;
        let m = mask.narrow(2, start, n)?.narrow(3, 0, keys)?;
        outs.push(attention_block(&q.narrow(2, start, n)?, &k.narrow(2, 0, keys)?, &v.narrow(2, 0, keys)?, &m, scale)?);
    }
    Ok(Tensor::cat(&outs, 0)?)
}

/// [`attention_block`] for one block on the CPU in f32, by the fused kernel (which skips, tile
/// by tile, the keys no row of the tile sees).
fn attention_fused_cpu(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64, f16_kv: bool) -> Result<Tensor> {
    let (_, heads, rows, head_dim) = q.dims4()?;
    let (_, kv_heads, keys, _) = k.dims4()?;
    // The tensors' own memory, read in place (copies of q, k, v and the mask were several MB
    // a long prompt's block).
    let tensors = [q.contiguous()?, k.contiguous()?, v.contiguous()?, mask.contiguous()?];
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let slices = guards.iter().map(|(storage, layout)| cpu_f32(storage, layout)).collect::<Result<Vec<&[f32]>>>()?;
    let dims = crate::cpu_attention::Dims { heads, kv_heads, rows, keys, head_dim };
    let out = crate::cpu_attention::attention(slices[0], slices[1], slices[2], slices[3], dims, scale as f32, f16_kv);
    drop(guards);
    Ok(Tensor::from_vec(out, (rows, heads * head_dim), q.device())?)
}

/// `softmax(q kᵀ · scale + mask) v` with grouped-query heads; `q: [b, h, t, d]`,
/// `k, v: [b, kv_h, s, d]`, `mask: [b or 1, 1, t, s]`. Returns `[b·t, h·d]`.
fn attention_block(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, heads, t, head_dim) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let (k, v) = if kv_heads == heads {
        (k.clone(), v.clone())
    } else {
        let rep = heads / kv_heads;
        let repeat = |x: &Tensor| -> Result<Tensor> {
            let (b, kvh, s, d) = x.dims4()?;
            Ok(x.unsqueeze(2)?.expand((b, kvh, rep, s, d))?.reshape((b, kvh * rep, s, d))?)
        };
        (repeat(&k)?, repeat(&v)?)
    };
    // Softmax in f32 whatever the dtype, cast back for the product with v (as transformers does
    // in half precision).
    let dev = q.device();
    let scores = profile::time("attention: q·k", dev, || Ok((q.contiguous()?.matmul(&k.t()?.contiguous()?)? * scale)?))?;
    let probs = profile::time("attention: softmax", dev, || {
        // The mask holds 0 and -inf only, so adding it before the cast to f32 is exact; a mask of
        // the scores' own shape and dtype makes it a plain elementwise add.
        let scores = if mask.dims() == scores.dims() && mask.dtype() == scores.dtype() {
            ensure_f32((scores + mask)?)?
        } else {
            ensure_f32(scores)?.broadcast_add(mask)?
        };
        Ok(candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(q.dtype())?)
    })?;
    profile::time("attention: p·v", dev, || {
        let out = probs.matmul(&v.contiguous()?)?; // [b, h, t, d]
        Ok(out.transpose(1, 2)?.reshape((b * t, heads * head_dim))?)
    })
}

/// A contiguous f32 CPU tensor's values, read in place (`storage` and `layout` from its
/// `storage_and_layout`).
pub(crate) fn cpu_f32<'a>(storage: &'a candle_core::Storage, layout: &candle_core::Layout) -> Result<&'a [f32]> {
    let candle_core::Storage::Cpu(cpu) = storage else {
        return Err(candle_core::Error::Msg("expected a tensor on the CPU".into()).into());
    };
    let start = layout.start_offset();
    Ok(&cpu.as_slice::<f32>()?[start..start + layout.shape().elem_count()])
}

/// `[t, heads·head_dim]` → `[1, heads, t, head_dim]`: on a GPU a view (the fused attention
/// kernel and [`Rotary`] read it as it is; what needs it contiguous makes it so), elsewhere a
/// contiguous copy.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    profile::time("split heads", x.device(), || {
        let (t, width) = x.dims2()?;
        let view = x.reshape((1, t, heads, width / heads))?.transpose(1, 2)?;
        Ok(if x.device().is_cuda() { view } else { view.contiguous()? })
    })
}

/// GELU, tanh approximation: vectorised on CPUs with AVX-512 in f32 (see `cpu_gelu`), candle's
/// elsewhere.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    profile::time("activation", x.device(), || {
        if x.device().is_cpu() && x.dtype() == DType::F32 && crate::cpu_gelu::available() {
            let mut v = x.flatten_all()?.to_vec1::<f32>()?;
            crate::cpu_gelu::gelu_tanh_in_place(&mut v);
            return Ok(Tensor::from_vec(v, x.shape(), x.device())?);
        }
        Ok(x.gelu()?)
    })
}

/// GELU, erf form (`nn.GELU()`; GPT-NeoX): on CUDA in half types computed in f32 and rounded
/// once, as PyTorch does; candle's elsewhere.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    profile::time("activation", x.device(), || {
        if crate::cuda_ops::half_on_cuda(x) {
            return crate::cuda_ops::gelu(x, false);
        }
        Ok(x.gelu_erf()?)
    })
}

/// GELU, tanh approximation, as PyTorch's `gelu(approximate="tanh")` computes it (Gemma's
/// `gelu_pytorch_tanh`: one rounding on CUDA in half types); [`gelu_tanh`] elsewhere.
pub fn gelu_pytorch_tanh(x: &Tensor) -> Result<Tensor> {
    if crate::cuda_ops::half_on_cuda(x) {
        return profile::time("activation", x.device(), || crate::cuda_ops::gelu(x, true));
    }
    gelu_tanh(x)
}

pub fn silu(x: &Tensor) -> Result<Tensor> {
    profile::time("activation", x.device(), || Ok(candle_nn::ops::silu(x)?))
}

/// `f` over `x`'s rows, on the CPU `rows` at a time (outputs stacked): a long prompt's MLP
/// keeps `[tokens, intermediate]` activations alive, the largest part of a pass's memory. Only
/// where a row's numbers do not depend on the rows beside it (see [`Linear::rows_independent`]):
/// chunk boundaries move with the batch, and results must not.
pub fn rows_in_chunks(x: &Tensor, rows: usize, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let t = x.dim(0)?;
    if !x.device().is_cpu() || t <= rows {
        return f(x);
    }
    let parts = (0..t).step_by(rows).map(|s| f(&x.narrow(0, s, rows.min(t - s))?)).collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// `silu(gate) · up()`, the gated MLP's product. On a CPU with AVX-512, in f32, in one buffer: the
/// gate's values are taken, its tensor dropped before `up` is computed, and the product written
/// over them (candle's ops keep gate, silu(gate), up and the product alive at once: four
/// `[tokens, intermediate]` tensors, the largest part of a long prompt's pass memory); and with a
/// vector exp (`cpu_gelu`). Elsewhere candle's ops.
pub fn silu_mul(gate: Tensor, up: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
    if !(gate.device().is_cpu() && gate.dtype() == DType::F32 && crate::cpu_gelu::available()) {
        let activated = silu(&gate)?;
        drop(gate);
        return Ok((activated * up()?)?);
    }
    let shape = gate.shape().clone();
    let mut g = gate.flatten_all()?.to_vec1::<f32>()?;
    drop(gate);
    let u = up()?.contiguous()?;
    profile::time("activation", u.device(), || {
        let (storage, layout) = u.storage_and_layout();
        crate::cpu_gelu::silu_mul_in_place(&mut g, cpu_f32(&storage, layout)?);
        Ok(())
    })?;
    drop(u);
    Ok(Tensor::from_vec(g, shape, &Device::Cpu)?)
}

/// Checks that a tensor is f32 (the exact path computes everything in f32).
pub fn ensure_f32(t: Tensor) -> Result<Tensor> {
    Ok(if t.dtype() == DType::F32 { t } else { t.to_dtype(DType::F32)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefix_tree::{PrefixTree, SegmentTree};

    fn max_diff(a: Tensor, b: Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    fn qkv(heads: usize, kv_heads: usize, d: usize, t: usize, s: usize) -> (Tensor, Tensor, Tensor) {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, heads, t, d), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, kv_heads, s, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, kv_heads, s, d), &dev).unwrap();
        (q, k, v)
    }

    /// Contexts sharing prefixes at several depths (one a prefix of another, one twice), a
    /// lone context, and branches of uneven lengths.
    fn shared_contexts() -> (SegmentTree, Vec<Vec<u32>>, Vec<Vec<Vec<u32>>>) {
        let header: Vec<u32> = (1..=40).collect();
        let demo: Vec<u32> = (100..130).collect();
        let contexts: Vec<Vec<u32>> = vec![
            [header.clone(), demo.clone(), vec![7, 8, 9]].concat(),
            [header.clone(), demo.clone(), (200..260).collect()].concat(),
            [header.clone(), vec![5; 12]].concat(),
            (300..337).collect(),
            header.clone(),
            [header.clone(), demo.clone(), vec![7, 8, 9]].concat(),
        ];
        let branches: Vec<Vec<Vec<u32>>> = contexts
            .iter()
            .enumerate()
            .map(|(i, _)| (0..(i % 3) + 1).map(|b| (0..(b * 2 + i % 2) as u32).map(|x| 900 + x).collect()).collect())
            .collect();
        let refs: Vec<&[u32]> = contexts.iter().map(Vec::as_slice).collect();
        let mut tree = SegmentTree::new();
        for (c, cuts) in contexts.iter().zip(PrefixTree::shared_cuts(&refs, 8)) {
            tree.insert(c, &cuts);
        }
        (tree, contexts, branches)
    }

    /// The GPU's padded, stacked attention gives what the per-block attention gives (run here on
    /// the CPU, where the same code runs): a forest of trees of uneven sizes and a prefix tree
    /// (blocks with shared context), grouped-query heads, with and without a sliding window.
    #[test]
    fn padded_blocks_equal_block_by_block_attention() {
        let dev = Device::Cpu;
        let trees: Vec<(usize, Vec<usize>)> =
            vec![(37, vec![3, 1]), (5, vec![2, 2, 2]), (64, vec![1]), (30, vec![4, 6]), (9, vec![]), (61, vec![2, 1])];
        let (tree, _, branches) = shared_contexts();
        let refs: Vec<Vec<&[u32]>> = branches.iter().map(|bs| bs.iter().map(Vec::as_slice).collect()).collect();
        for (layout, strict_groups) in [(Layout::forest(&trees), 2..=5), (Layout::prefix_tree(&tree, &refs).0, 2..=usize::MAX)] {
            let t = layout.len();
            let (q, k, v) = qkv(4, 2, 8, t, t);
            for window in [None, Some(7)] {
                let plain = layout.mask_as(window, &dev, false).unwrap();
                let a = attention(&q, &k, &v, &plain, 0.35).unwrap();
                // Grouped strictly (every group within 4/3 of its cells), and as on a GPU (these
                // small blocks all in one group).
                for (small_cells, expected) in [(0, strict_groups.clone()), (SMALL_CELLS, 1..=1)] {
                    let padded = layout.padded_mask(window, &dev, small_cells).unwrap();
                    let groups = padded.padded.as_ref().unwrap().groups.len();
                    assert!(expected.contains(&groups), "{groups} groups for {} blocks", layout.blocks.len());
                    let b = attention(&q, &k, &v, &padded, 0.35).unwrap();
                    let diff = max_diff(a.clone(), b);
                    assert!(diff < 1e-5, "window {window:?}, {groups} groups: max |Δ| {diff}");
                }
            }
        }
    }

    /// A prefix tree's pass: each context's tokens and branches attend to exactly what running
    /// the context and its branches alone attends to. Checked on the masks: for every row of the
    /// tree pass, the keys it sees, as (position, token) pairs, are those of the same row alone.
    #[test]
    fn prefix_tree_rows_see_what_separate_runs_see() {
        let (tree, contexts, branches) = shared_contexts();
        let refs: Vec<Vec<&[u32]>> = branches.iter().map(|bs| bs.iter().map(Vec::as_slice).collect()).collect();
        let (layout, rows) = Layout::prefix_tree(&tree, &refs);
        assert_eq!(rows.ids.len(), layout.len());
        let unique: usize = tree.tokens() + branches.iter().flatten().map(Vec::len).sum::<usize>();
        assert_eq!(layout.len(), unique, "every tree node and every branch once");
        // Keys seen by a row, as (position, token) pairs, from a layout's masks.
        let seen = |layout: &Layout, ids: &[u32], row: usize| -> Vec<(usize, u32)> {
            let b = layout.blocks.iter().find(|b| b.queries.contains(&row)).unwrap();
            let s = b.keys(0);
            let mut m = vec![f32::NEG_INFINITY; b.queries.len() * s];
            layout.fill_block(b, None, &mut m, s);
            let keys: Vec<usize> = b.context.iter().flat_map(|r| r.clone()).chain(b.queries.clone()).collect();
            let i = row - b.queries.start;
            keys.iter().enumerate().filter(|(j, _)| m[i * s + j] == 0.0).map(|(_, &k)| (layout.positions[k], ids[k])).collect()
        };
        for (c, context) in contexts.iter().enumerate() {
            let lens: Vec<usize> = branches[c].iter().map(Vec::len).collect();
            let alone = Layout::branches(0, context.len(), &lens);
            let alone_ids: Vec<u32> = context.iter().chain(branches[c].iter().flatten()).copied().collect();
            let (last, starts) = &rows.contexts[c];
            assert_eq!(rows.ids[*last], *context.last().unwrap());
            assert_eq!(layout.positions[*last], context.len() - 1);
            assert_eq!(seen(&layout, &rows.ids, *last), seen(&alone, &alone_ids, context.len() - 1), "context {c}");
            let mut at = context.len();
            for (b, &start) in branches[c].iter().zip(starts) {
                for j in 0..b.len() {
                    assert_eq!(rows.ids[start + j], b[j]);
                    assert_eq!(seen(&layout, &rows.ids, start + j), seen(&alone, &alone_ids, at + j), "context {c}, branch row {j}");
                }
                at += b.len();
            }
        }
    }

    /// `attend(q, k, v, mask)` on each block of `mask` (no context ranges): its queries against
    /// the cache and its own keys; the outputs stacked.
    fn per_block(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask, attend: impl Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Tensor) -> Tensor {
        let mut outs = Vec::new();
        for (b, m) in &mask.blocks {
            let r = &b.queries;
            assert!(b.context.is_empty());
            let keys = |x: &Tensor| {
                let own = x.narrow(2, mask.past + r.start, r.len()).unwrap();
                if mask.past > 0 { Tensor::cat(&[x.narrow(2, 0, mask.past).unwrap(), own], 2).unwrap() } else { own }
            };
            outs.push(attend(&q.narrow(2, r.start, r.len()).unwrap(), &keys(k), &keys(v), m));
        }
        Tensor::cat(&outs, 0).unwrap()
    }

    /// The same blocks, each as one unfused product over all of its keys.
    fn whole_blocks(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask) -> Tensor {
        per_block(q, k, v, mask, |q, k, v, m| attention_block(q, k, v, m, 0.35).unwrap())
    }

    /// Long blocks run in causal chunks of query rows (keys up to each chunk's last row), and on
    /// x86-64/AArch64 by the fused kernel; both must give what one product over the whole block
    /// gives: a long tree (context and three continuations) beside a short one, then a
    /// continuation pass on a cache, with and without a sliding window, with grouped-query heads
    /// and head sizes of 8 and 64 (several score micro-tiles, rows not a multiple of the tile).
    #[test]
    fn causal_chunks_and_fused_kernel_equal_whole_block_attention() {
        let dev = Device::Cpu;
        let long = Layout::forest(&[(700, vec![3, 1, 5]), (40, vec![2])]);
        let cached = Layout::sequence(450, 300);
        for (layout, d) in [(long.clone(), 8), (cached.clone(), 8), (long, 64), (cached, 256)] {
            let t = layout.len();
            let s = layout.past + t;
            let (q, k, v) = qkv(6, 2, d, t, s);
            for window in [None, Some(100)] {
                let mask = layout.mask_as(window, &dev, false).unwrap();
                let whole = whole_blocks(&q, &k, &v, &mask);
                let mut outs = vec![("chunked", per_block(&q, &k, &v, &mask, |q, k, v, m| attention_chunked(q, k, v, m, mask.past, 0.35).unwrap()))];
                if crate::cpu_attention::available(d) {
                    outs.push(("fused", per_block(&q, &k, &v, &mask, |q, k, v, m| attention_fused_cpu(q, k, v, m, 0.35, false).unwrap())));
                }
                for (name, out) in outs {
                    let diff = max_diff(out, whole.clone());
                    assert!(diff < 1e-5, "{name}: past {}, window {window:?}, d {d}: max |Δ| {diff}", layout.past);
                }
            }
        }
    }

    /// The fused CUDA kernel's key ranges, worked out from the segments, are exactly the cells
    /// the masks open (`fill_block`), row by row, with and without a window; and every row of
    /// these layouts sees at most two ranges (the kernel takes them all).
    #[test]
    fn seen_ranges_are_the_masks_open_cells() {
        let (tree, _, branches) = shared_contexts();
        let refs: Vec<Vec<&[u32]>> = branches.iter().map(|bs| bs.iter().map(Vec::as_slice).collect()).collect();
        let forest = Layout::forest(&[(150, vec![3, 1, 5]), (40, vec![2]), (7, vec![])]);
        for layout in [Layout::prefix_tree(&tree, &refs).0, forest, Layout::sequence(0, 90), Layout::branches(0, 30, &[4, 2])] {
            let spans = layout.segment_spans();
            for window in [None, Some(1), Some(3), Some(9), Some(45)] {
                for b in &layout.blocks {
                    let keys = b.keys(0);
                    let mut mask = vec![f32::NEG_INFINITY; b.queries.len() * keys];
                    layout.fill_block(b, window, &mut mask, keys);
                    let from_mask: Vec<[u32; 4]> = mask.chunks(keys).map(|row| crate::cuda_attention::visible_ranges(row).expect("two ranges at most")).collect();
                    assert_eq!(layout.seen_ranges(b, window, &spans).unwrap(), from_mask, "block {:?}, window {window:?}", b.queries);
                }
            }
        }
    }

    /// On a GPU, rotary embeddings of `split_heads`' view (rotated token-major by `rope_thd`)
    /// are those of the contiguous heads, bit for bit.
    #[cfg(feature = "cuda")]
    #[test]
    fn rotary_of_a_token_major_view_equals_rotary_of_contiguous_heads() {
        let gpu = Device::new_cuda(0).expect("this test needs a CUDA GPU: build the tests with --features cuda and run them on a machine with one");
        let rotary = Rotary::new(RopeStyle::Halves, 64, 10_000.0, 1.0);
        let positions: Vec<usize> = (0..50).chain(20..40).collect();
        let x = Tensor::randn(0f32, 1.0, (positions.len(), 4 * 64), &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap().to_device(&gpu).unwrap();
        let view = split_heads(&x, 4).unwrap();
        assert!(!view.is_contiguous());
        let a = rotary.apply(&view, &positions).unwrap();
        let b = rotary.apply(&view.contiguous().unwrap(), &positions).unwrap();
        let f32_cpu = |x: Tensor| x.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap();
        assert_eq!(max_diff(f32_cpu(a), f32_cpu(b)), 0.0);
    }

    /// The fused CUDA kernel gives what the per-block attention gives in f32 on the same
    /// half-precision inputs: a prefix tree (blocks with shared context, continuations), a
    /// forest with a block longer than a CTA's 64 rows and key tiles none of a tile's rows sees,
    /// with and without a sliding window, grouped-query heads, heads of 64 and 128, bf16 and
    /// f16. Tolerance: the kernel rounds the probabilities and the output to the half type
    /// (unit roundoff 2⁻⁸ for bf16, 2⁻¹¹ for f16), so a value is off by at most
    /// 2⁻⁸(|out| + max |v|) ≈ 2⁻⁸(3 + 4.5) ≈ 0.03 in bf16 (0.004 in f16): max |Δ| 3e-2 / 4e-3,
    /// and the mean, which rounding keeps near zero, 3e-3 / 4e-4; a wrong mask, key or row moves
    /// outputs by O(0.1–1). Needs a GPU: built with `--features cuda` and run on the accelerator
    /// machine (see `bench/gpu/RESULTS.md`).
    #[cfg(feature = "cuda")]
    #[test]
    fn fused_cuda_attention_equals_block_attention() {
        let gpu = Device::new_cuda(0).expect("this test needs a CUDA GPU: build the tests with --features cuda and run them on a machine with one");
        let (tree, _, branches) = shared_contexts();
        let refs: Vec<Vec<&[u32]>> = branches.iter().map(|bs| bs.iter().map(Vec::as_slice).collect()).collect();
        let forest = Layout::forest(&[(150, vec![3, 1, 5]), (40, vec![2]), (7, vec![])]);
        for layout in [Layout::prefix_tree(&tree, &refs).0, forest, Layout::sequence(0, 90)] {
            let t = layout.len();
            for (d, dtype, max_tol, mean_tol) in [(64, DType::BF16, 3e-2, 3e-3), (128, DType::BF16, 3e-2, 3e-3), (128, DType::F16, 4e-3, 4e-4)] {
                let (q, k, v) = qkv(4, 2, d, t, t);
                let round = |x: &Tensor| x.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
                let (q, k, v) = (round(&q), round(&k), round(&v));
                for window in [None, Some(9)] {
                    let reference = attention(&q, &k, &v, &layout.mask_as(window, &Device::Cpu, false).unwrap(), 0.3).unwrap();
                    let on_gpu = |x: &Tensor| x.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
                    let mask = layout.mask(window, &gpu).unwrap();
                    assert!(crate::cuda_attention::supported(&gpu, dtype, d));
                    let fused = attention(&on_gpu(&q), &on_gpu(&k), &on_gpu(&v), &mask, 0.3).unwrap();
                    // The same from views of `[t, heads · d]` (what `split_heads` gives on a GPU):
                    // the same kernel reading by strides, so the same bits.
                    let token_major = |x: &Tensor| on_gpu(x).transpose(1, 2).unwrap().contiguous().unwrap().transpose(1, 2).unwrap();
                    let strided = attention(&token_major(&q), &token_major(&k), &token_major(&v), &mask, 0.3).unwrap();
                    let fused = fused.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap();
                    assert_eq!(max_diff(strided.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap(), fused.clone()), 0.0);
                    let diff = (fused - reference).unwrap().abs().unwrap().flatten_all().unwrap();
                    let max = diff.max(0).unwrap().to_scalar::<f32>().unwrap();
                    let mean = diff.mean(0).unwrap().to_scalar::<f32>().unwrap();
                    let case = format!("{} blocks, d {d}, {dtype:?}, window {window:?}: max |Δ| {max:.2e}, mean {mean:.2e}", layout.blocks.len());
                    eprintln!("{case}");
                    assert!(max < max_tol && mean < mean_tol, "{case}");
                }
            }
        }
    }
}
