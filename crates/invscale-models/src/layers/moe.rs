//! The gated MLP, dense or as a sparse mixture of experts (Mixtral, Qwen3-MoE): a router picks
//! each token's top-k experts, and each expert runs once on all the tokens routed to it (one
//! product per expert, not per token), its outputs weighted and added back in expert order, as
//! transformers does.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::layers::activation::silu_mul;
use crate::layers::linear::Linear;
use crate::layers::tensor::rows_in_chunks;
use crate::profile;

/// One SwiGLU MLP: `down(silu(gate(x)) · up(x))`.
pub struct GatedMlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl GatedMlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // On the CPU a long prompt's rows in chunks (see `rows_in_chunks`), where the results
        // cannot depend on where the chunks fall.
        let chunk = if [&self.gate, &self.up, &self.down].iter().all(|l| l.rows_independent()) { 256 } else { usize::MAX };
        rows_in_chunks(x, chunk, |h| self.down.forward(&silu_mul(self.gate.forward(h)?, || self.up.forward(h))?))
    }
}

/// A sparse mixture of gated experts.
pub struct SparseMoe {
    /// `[experts, hidden]`, no bias.
    pub router: Linear,
    pub experts: Vec<GatedMlp>,
    pub top_k: usize,
    /// Rescale each token's top-k routing probabilities to sum to 1 (Mixtral always; Qwen3-MoE
    /// with `norm_topk_prob`).
    pub normalize: bool,
}

impl SparseMoe {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let routes = profile::time("router", x.device(), || self.routes(x))?;
        let mut out = x.zeros_like()?;
        for (e, routed) in routes.iter().enumerate() {
            if routed.is_empty() {
                continue;
            }
            let tokens: Vec<u32> = routed.iter().map(|&(t, _)| t).collect();
            let weights: Vec<f32> = routed.iter().map(|&(_, w)| w).collect();
            let index = Tensor::new(tokens.as_slice(), x.device())?;
            let y = self.experts[e].forward(&x.index_select(&index, 0)?)?;
            // transformers weights in f32 (the router's dtype), then casts back.
            let w = Tensor::from_vec(weights, (tokens.len(), 1), x.device())?;
            let y = y.to_dtype(DType::F32)?.broadcast_mul(&w)?.to_dtype(x.dtype())?;
            out = out.index_add(&index, &y, 0)?;
        }
        Ok(out)
    }

    /// Per expert, the tokens routed to it with their weights: softmax over the router's logits
    /// in f32, the top k (ties to the lower expert, as `torch.topk` on the CPU), rescaled if
    /// `normalize`.
    fn routes(&self, x: &Tensor) -> Result<Vec<Vec<(u32, f32)>>> {
        let logits = self.router.forward(x)?.to_dtype(DType::F32)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
        let mut routes = vec![Vec::new(); self.experts.len()];
        for (t, p) in probs.iter().enumerate() {
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let top = &order[..self.top_k.min(order.len())];
            let sum: f32 = top.iter().map(|&e| p[e]).sum();
            for &e in top {
                routes[e].push((t as u32, if self.normalize { p[e] / sum } else { p[e] }));
            }
        }
        Ok(routes)
    }
}

/// A block's feed-forward part.
pub enum FeedForward {
    Dense(GatedMlp),
    Experts(SparseMoe),
}

impl FeedForward {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            FeedForward::Dense(m) => m.forward(x),
            FeedForward::Experts(m) => m.forward(x),
        }
    }
}
