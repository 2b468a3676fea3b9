//! OLMo 2 and OLMo 3 (Hugging Face checkpoints). Differences from Llama: no norm before attention
//! or the MLP — RMSNorms on their *outputs*, before each residual add; RMSNorm over the whole
//! query and key projections (all heads together, before splitting them); norms that scale in
//! f32 before casting back (`(w * x).to(dtype)`). OLMo 3 adds sliding-window layers
//! (`layer_types`), each layer type with its own rotary parameters.

use candle_core::Tensor;

use crate::batch::layout::Layout;
use crate::error::{ModelError, Result};
use crate::layers::{Stages, Embedding, GatedMlp, KvCache, Linear, RmsNorm, RopeStyle, Rotary, attention, split_heads};
use crate::models::causal_lm::CausalLm;
use crate::weights::checkpoint::{Dims, HfConfig, HfWeights};
use crate::weights::gguf_weights::{GgufWeights, Hparams};

struct Block {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    post_attn_norm: RmsNorm,
    mlp: GatedMlp,
    post_ffn_norm: RmsNorm,
    /// `Some(window)` on sliding-window layers (OLMo 3).
    window: Option<usize>,
}

pub struct Olmo2 {
    /// Where each layer runs (see [`Stages`]).
    stages: Stages,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: Linear,
    rotary_full: Rotary,
    rotary_sliding: Rotary,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Olmo2 {
    /// `olmo2` and `olmo3` checkpoints.
    pub fn from_hf(w: &HfWeights, c: &HfConfig) -> Result<Olmo2> {
        let Dims { layers, heads, kv_heads, head_dim, rms_eps: eps, .. } = Dims::from_config(c)?;
        let sliding: Vec<bool> = match c.get("layer_types").as_array() {
            Some(types) if types.len() == layers => types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect(),
            Some(types) => {
                return Err(ModelError::corrupt(&c.path, format!("`layer_types` has {} entries for {layers} layers", types.len())));
            }
            None => vec![false; layers],
        };
        let window = c.opt_usize(&["sliding_window"]);
        if sliding.iter().any(|&s| s) && window.is_none() {
            return Err(ModelError::corrupt(&c.path, "`layer_types` names sliding-window layers but `sliding_window` is not set"));
        }
        // OLMo's norms scale in f32 and then cast (not Llama's cast-then-scale).
        let norm = |name: &str| -> Result<RmsNorm> { Ok(RmsNorm { scale_after_cast: false, ..w.rms_norm(name, eps, false)? }) };
        let embed = w.get("model.embed_tokens.weight")?;
        let mut blocks = Vec::with_capacity(layers);
        for (i, &is_sliding) in sliding.iter().enumerate() {
            let n = |s: &str| format!("model.layers.{i}.{s}");
            blocks.push(Block {
                q: w.linear(&n("self_attn.q_proj"))?,
                k: w.linear(&n("self_attn.k_proj"))?,
                v: w.linear(&n("self_attn.v_proj"))?,
                o: w.linear(&n("self_attn.o_proj"))?,
                q_norm: norm(&n("self_attn.q_norm.weight"))?,
                k_norm: norm(&n("self_attn.k_norm.weight"))?,
                post_attn_norm: norm(&n("post_attention_layernorm.weight"))?,
                mlp: GatedMlp { gate: w.linear(&n("mlp.gate_proj"))?, up: w.linear(&n("mlp.up_proj"))?, down: w.linear(&n("mlp.down_proj"))? },
                post_ffn_norm: norm(&n("post_feedforward_layernorm.weight"))?,
                window: if is_sliding { window } else { None },
            });
        }
        let (full, sliding) = (c.rope(Some("full_attention"), 10_000.0)?, c.rope(Some("sliding_attention"), 10_000.0)?);
        Ok(Olmo2 {
            stages: w.stages().clone(),
            norm: norm("model.norm.weight")?,
            head: w.head("lm_head.weight", &embed, c.bool_or("tie_word_embeddings", false))?,
            embed: Embedding::Dense(embed),
            blocks,
            rotary_full: Rotary::scaled(RopeStyle::Halves, head_dim, &full),
            rotary_sliding: Rotary::scaled(RopeStyle::Halves, head_dim, &sliding),
            heads,
            kv_heads,
            head_dim,
        })
    }
}

impl Olmo2 {
    /// llama.cpp's `olmo2` GGUF (no sliding layers: OLMo 3 is its own architecture there).
    pub fn from_gguf(w: &GgufWeights) -> Result<Olmo2> {
        let Hparams { layers, heads, kv_heads, head_dim, rotary_dim, rms_eps: eps, rope_base, rope_scale, .. } = Hparams::from_gguf(w.file, "olmo2", 10_000.0)?;
        let norm = |name: &str| -> Result<RmsNorm> { Ok(RmsNorm { scale_after_cast: false, ..w.rms_norm(name, eps)? }) };
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            blocks.push(Block {
                q: w.linear(&n("attn_q"))?,
                k: w.linear(&n("attn_k"))?,
                v: w.linear(&n("attn_v"))?,
                o: w.linear(&n("attn_output"))?,
                q_norm: norm(&n("attn_q_norm"))?,
                k_norm: norm(&n("attn_k_norm"))?,
                post_attn_norm: norm(&n("post_attention_norm"))?,
                mlp: GatedMlp { gate: w.linear(&n("ffn_gate"))?, up: w.linear(&n("ffn_up"))?, down: w.linear(&n("ffn_down"))? },
                post_ffn_norm: norm(&n("post_ffw_norm"))?,
                window: None,
            });
        }
        let embed = w.embedding("token_embd.weight")?;
        let rotary = || Rotary::new(RopeStyle::Halves, rotary_dim, rope_base, rope_scale);
        Ok(Olmo2 {
            stages: w.stages().clone(),
            norm: norm("output_norm.weight")?,
            head: w.lm_head(&embed)?,
            embed,
            blocks,
            rotary_full: rotary(),
            rotary_sliding: rotary(),
            heads,
            kv_heads,
            head_dim,
        })
    }
}

impl CausalLm for Olmo2 {
    fn layers(&self) -> usize {
        self.blocks.len()
    }

    fn forward(&self, ids: &[u32], layout: &Layout, cache: &mut KvCache) -> Result<Tensor> {
        let mut x = self.embed.start_pass(ids, layout, cache)?;
        let window = self.blocks.iter().find_map(|b| b.window);
        let masks = self.stages.per_device(|d| layout.full_and_sliding_masks(window, d, false))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        for (i, b) in self.blocks.iter().enumerate() {
            x = self.stages.enter(i, x)?;
            let (full_mask, sliding_mask) = masks.at(i);
            let (rotary, mask) = match b.window {
                Some(_) => (&self.rotary_sliding, sliding_mask),
                None => (&self.rotary_full, full_mask),
            };
            let q = split_heads(&b.q_norm.forward(&b.q.forward(&x)?)?, self.heads)?;
            let k = split_heads(&b.k_norm.forward(&b.k.forward(&x)?)?, self.kv_heads)?;
            let v = split_heads(&b.v.forward(&x)?, self.kv_heads)?;
            let (q, k) = (rotary.apply(&q, &layout.positions)?, rotary.apply(&k, &layout.positions)?);
            let (k, v) = cache.append(i, k, v)?;
            let a = b.o.forward(&attention(&q, &k, &v, mask, scale)?)?;
            x = (x + b.post_attn_norm.forward(&a)?)?;
            x = (&x + b.post_ffn_norm.forward(&b.mlp.forward(&x)?)?)?;
        }
        cache.advance(ids.len());
        self.norm.forward(&self.stages.leave(x)?)
    }

    fn head(&self) -> &Linear {
        &self.head
    }
}
