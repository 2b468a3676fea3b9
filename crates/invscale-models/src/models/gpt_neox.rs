//! GPT-NeoX / Pythia: LayerNorm blocks with a parallel residual (`x + attn(ln1 x) + mlp(ln2 x)`,
//! or sequential when `use_parallel_residual` is false), fused QKV laid out per head
//! (`[heads, 3, head_dim]`), rotary embeddings on the first `rotary_pct` of each head (NeoX
//! halves), exact GELU, and an untied output projection (`embed_out`).

use candle_core::Tensor;

use crate::batch::layout::Layout;
use crate::error::Result;
use crate::layers::{Stages, KvCache, LayerNorm, Linear, RopeStyle, Rotary, attention, gelu_erf, split_heads};
use crate::models::causal_lm::CausalLm;
use crate::weights::checkpoint::{HfConfig, HfWeights};
use crate::weights::gguf_weights::{GgufWeights, Hparams};

struct Block {
    ln_1: LayerNorm,
    qkv: Linear,
    dense: Linear,
    ln_2: LayerNorm,
    up: Linear,
    down: Linear,
}

pub struct GptNeox {
    /// Where each layer runs (see [`Stages`]).
    stages: Stages,
    embed: Tensor,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    head: Linear,
    rotary: Rotary,
    heads: usize,
    head_dim: usize,
    parallel: bool,
    /// HF's fused QKV is laid out per head (`[heads, 3, head_dim]`); llama.cpp's converter
    /// regroups it as GPT-2's (all q, all k, all v).
    qkv_per_head: bool,
}

impl GptNeox {
    pub fn from_hf(w: &HfWeights, c: &HfConfig) -> Result<GptNeox> {
        let hidden = c.usize(&["hidden_size"])?;
        let heads = c.usize(&["num_attention_heads"])?;
        let layers = c.usize(&["num_hidden_layers"])?;
        let eps = c.f64_or("layer_norm_eps", 1e-5);
        let head_dim = hidden / heads;
        let rotary_dim = (head_dim as f64 * c.partial_rotary()) as usize;
        let rope = c.rope(None, 10_000.0)?;
        let p = if w.has("gpt_neox.embed_in.weight") { "gpt_neox." } else { "" };
        let embed = w.get(&format!("{p}embed_in.weight"))?;
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let b = |s: &str| format!("{p}layers.{i}.{s}");
            blocks.push(Block {
                ln_1: w.layer_norm(&b("input_layernorm"), eps)?,
                qkv: w.linear(&b("attention.query_key_value"))?,
                dense: w.linear(&b("attention.dense"))?,
                ln_2: w.layer_norm(&b("post_attention_layernorm"), eps)?,
                up: w.linear(&b("mlp.dense_h_to_4h"))?,
                down: w.linear(&b("mlp.dense_4h_to_h"))?,
            });
        }
        Ok(GptNeox {
            stages: w.stages().clone(),
            final_norm: w.layer_norm(&format!("{p}final_layer_norm"), eps)?,
            head: w.head("embed_out.weight", &embed, c.bool_or("tie_word_embeddings", false))?,
            embed,
            blocks,
            rotary: Rotary::scaled(RopeStyle::Halves, rotary_dim, &rope),
            heads,
            head_dim,
            parallel: c.bool_or("use_parallel_residual", true),
            qkv_per_head: true,
        })
    }
}

impl GptNeox {
    /// llama.cpp's `gptneox` GGUF (Pythia): the fused QKV in HF's per-head layout, as there.
    pub fn from_gguf(w: &GgufWeights) -> Result<GptNeox> {
        let Hparams { layers, heads, head_dim, rotary_dim, rms_eps: eps, rope_base, rope_scale, .. } = Hparams::from_gguf(w.file, "gptneox", 10_000.0)?;
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let n = |s: &str| format!("blk.{i}.{s}");
            blocks.push(Block {
                ln_1: w.layer_norm(&n("attn_norm"), eps)?,
                qkv: w.linear(&n("attn_qkv.weight"))?,
                dense: w.linear(&n("attn_output.weight"))?,
                ln_2: w.layer_norm(&n("ffn_norm"), eps)?,
                up: w.linear(&n("ffn_up.weight"))?,
                down: w.linear(&n("ffn_down.weight"))?,
            });
        }
        let embed = w.embedding("token_embd.weight")?;
        Ok(GptNeox {
            stages: w.stages().clone(),
            head: w.lm_head(&embed)?,
            embed: w.f32("token_embd.weight")?,
            final_norm: w.layer_norm("output_norm", eps)?,
            blocks,
            rotary: Rotary::new(RopeStyle::Halves, rotary_dim, rope_base, rope_scale),
            heads,
            head_dim,
            parallel: w.file.opt_bool("gptneox.use_parallel_residual").unwrap_or(true),
            qkv_per_head: false,
        })
    }
}

impl CausalLm for GptNeox {
    fn layers(&self) -> usize {
        self.blocks.len()
    }

    fn forward(&self, ids: &[u32], layout: &Layout, cache: &mut KvCache) -> Result<Tensor> {
        let device = self.embed.device();
        let t = ids.len();
        let mut x = self.embed.index_select(&Tensor::new(ids, device)?, 0)?;
        let masks = self.stages.per_device(|d| layout.mask(None, d))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        for (i, b) in self.blocks.iter().enumerate() {
            x = self.stages.enter(i, x)?;
            let qkv = b.qkv.forward(&b.ln_1.forward(&x)?)?;
            let (q, k, v) = if !self.qkv_per_head {
                let width = self.heads * self.head_dim;
                let part = |j: usize| split_heads(&qkv.narrow(1, j * width, width)?, self.heads);
                (self.rotary.apply(&part(0)?, &layout.positions)?, self.rotary.apply(&part(1)?, &layout.positions)?, part(2)?)
            } else if invscale_kernels::cuda::ops::half_on_cuda(&qkv) && invscale_kernels::cuda::ops::neox_qkv_rope_fits(self.head_dim, self.rotary.rotary_dim()) {
                // One kernel: q, k, v token-major, q and k rotated; [1, heads, t, head_dim] views.
                let parts = crate::profile::time("rotary", qkv.device(), || {
                    let (cos, sin) = self.rotary.cos_sin(&layout.positions, qkv.dtype(), qkv.device())?;
                    Ok(invscale_kernels::cuda::ops::neox_qkv_rope(&qkv, &cos, &sin, self.heads, self.rotary.rotary_dim())?)
                })?;
                let part = |j: usize| -> Result<Tensor> { Ok(parts.get(j)?.unsqueeze(0)?.transpose(1, 2)?) };
                (part(0)?, part(1)?, part(2)?)
            } else {
                // [t, heads, 3, head_dim] → q, k, v as [1, heads, t, head_dim].
                let qkv = qkv.reshape((t, self.heads, 3, self.head_dim))?;
                let part = |j: usize| -> Result<Tensor> { Ok(qkv.narrow(2, j, 1)?.squeeze(2)?.transpose(0, 1)?.unsqueeze(0)?.contiguous()?) };
                (self.rotary.apply(&part(0)?, &layout.positions)?, self.rotary.apply(&part(1)?, &layout.positions)?, part(2)?)
            };
            let (k, v) = cache.append(i, k, v)?;
            let attn = b.dense.forward(&attention(&q, &k, &v, masks.at(i), scale)?)?;
            // transformers' order of the sums (in half types each rounds): mlp + attn + x.
            if self.parallel {
                let mlp = b.down.forward(&gelu_erf(&b.up.forward(&b.ln_2.forward(&x)?)?)?)?;
                x = ((mlp + attn)? + x)?;
            } else {
                x = (attn + x)?;
                let mlp = b.down.forward(&gelu_erf(&b.up.forward(&b.ln_2.forward(&x)?)?)?)?;
                x = (mlp + x)?;
            }
        }
        cache.advance(t);
        self.final_norm.forward(&self.stages.leave(x)?)
    }

    fn head(&self) -> &Linear {
        &self.head
    }
}
