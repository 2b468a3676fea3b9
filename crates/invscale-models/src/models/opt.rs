//! OPT: learned positions offset by 2, LayerNorm blocks (pre-norm, or post-norm for OPT-350m),
//! ReLU MLP, queries scaled before the product; OPT-350m also projects embeddings in and out
//! (`project_in`/`project_out`, when `word_embed_proj_dim != hidden_size`) and has no final norm.

use candle_core::Tensor;

use crate::batch::layout::Layout;
use crate::error::ModelError;
use crate::error::Result;
use crate::layers::{Stages, KvCache, LayerNorm, Linear, attention, split_heads};
use crate::models::causal_lm::CausalLm;
use crate::weights::checkpoint::{HfConfig, HfWeights};

/// OPT's learned positional embedding starts at index 2 (a fairseq legacy).
const POSITION_OFFSET: usize = 2;

struct Block {
    attn_norm: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

pub struct Opt {
    /// Where each layer runs (see [`Stages`]).
    stages: Stages,
    embed: Tensor,
    positions: Tensor,
    project_in: Option<Linear>,
    project_out: Option<Linear>,
    blocks: Vec<Block>,
    final_norm: Option<LayerNorm>,
    head: Linear,
    heads: usize,
    pre_norm: bool,
    head_dim: usize,
}

impl Opt {
    pub fn from_hf(w: &HfWeights, c: &HfConfig) -> Result<Opt> {
        let hidden = c.usize(&["hidden_size"])?;
        let heads = c.usize(&["num_attention_heads"])?;
        let layers = c.usize(&["num_hidden_layers"])?;
        let pre_norm = c.bool_or("do_layer_norm_before", true);
        if c.get("activation_function").as_str().is_some_and(|a| a != "relu") {
            return Err(ModelError::unsupported(&c.path, "OPT with an activation other than relu"));
        }
        let p = if w.has("model.decoder.embed_tokens.weight") { "model.decoder." } else { "decoder." };
        let embed = w.get(&format!("{p}embed_tokens.weight"))?;
        let opt_linear = |name: &str| -> Result<Option<Linear>> {
            if w.has(&format!("{p}{name}.weight")) { Ok(Some(w.linear(&format!("{p}{name}"))?)) } else { Ok(None) }
        };
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let b = |s: &str| format!("{p}layers.{i}.{s}");
            blocks.push(Block {
                attn_norm: w.layer_norm(&b("self_attn_layer_norm"), 1e-5)?,
                q: w.linear(&b("self_attn.q_proj"))?,
                k: w.linear(&b("self_attn.k_proj"))?,
                v: w.linear(&b("self_attn.v_proj"))?,
                o: w.linear(&b("self_attn.out_proj"))?,
                ffn_norm: w.layer_norm(&b("final_layer_norm"), 1e-5)?,
                fc1: w.linear(&b("fc1"))?,
                fc2: w.linear(&b("fc2"))?,
            });
        }
        let final_norm =
            if w.has(&format!("{p}final_layer_norm.weight")) { Some(w.layer_norm(&format!("{p}final_layer_norm"), 1e-5)?) } else { None };
        Ok(Opt {
            stages: w.stages().clone(),
            positions: w.get(&format!("{p}embed_positions.weight"))?,
            project_in: opt_linear("project_in")?,
            project_out: opt_linear("project_out")?,
            head: w.head("lm_head.weight", &embed, c.bool_or("tie_word_embeddings", true))?,
            embed,
            blocks,
            final_norm,
            heads,
            pre_norm,
            head_dim: hidden / heads,
        })
    }
}

impl CausalLm for Opt {
    fn layers(&self) -> usize {
        self.blocks.len()
    }

    fn forward(&self, ids: &[u32], layout: &Layout, cache: &mut KvCache) -> Result<Tensor> {
        let device = self.embed.device();
        let mut x = self.embed.index_select(&Tensor::new(ids, device)?, 0)?;
        if let Some(p) = &self.project_in {
            x = p.forward(&x)?;
        }
        let positions: Vec<u32> = layout.positions.iter().map(|&p| (p + POSITION_OFFSET) as u32).collect();
        x = (x + self.positions.index_select(&Tensor::new(positions.as_slice(), device)?, 0)?)?;
        let masks = self.stages.per_device(|d| layout.mask(None, d))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        for (i, b) in self.blocks.iter().enumerate() {
            x = self.stages.enter(i, x)?;
            let h = if self.pre_norm { b.attn_norm.forward(&x)? } else { x.clone() };
            let q = split_heads(&b.q.forward(&h)?, self.heads)?;
            let k = split_heads(&b.k.forward(&h)?, self.heads)?;
            let v = split_heads(&b.v.forward(&h)?, self.heads)?;
            let (k, v) = cache.append(i, k, v)?;
            x = (x + b.o.forward(&attention(&q, &k, &v, masks.at(i), scale)?)?)?;
            if !self.pre_norm {
                x = b.attn_norm.forward(&x)?;
            }
            let h = if self.pre_norm { b.ffn_norm.forward(&x)? } else { x.clone() };
            x = (&x + b.fc2.forward(&b.fc1.forward(&h)?.relu()?)?)?;
            if !self.pre_norm {
                x = b.ffn_norm.forward(&x)?;
            }
        }
        cache.advance(ids.len());
        x = self.stages.leave(x)?;
        if let Some(n) = &self.final_norm {
            x = n.forward(&x)?;
        }
        if let Some(p) = &self.project_out {
            x = p.forward(&x)?;
        }
        Ok(x)
    }

    fn head(&self) -> &Linear {
        &self.head
    }
}
