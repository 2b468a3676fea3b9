//! GPT-2: learned absolute positions, pre-norm blocks with LayerNorm, fused QKV (`c_attn`, a
//! `Conv1D` stored `[in, out]`), GELU (tanh) MLP, LM head tied to the token embeddings.

use candle_core::Tensor;

use crate::batch::layout::Layout;
use crate::error::Result;
use crate::layers::{Stages, KvCache, LayerNorm, Linear, attention, split_heads};
use crate::models::causal_lm::CausalLm;
use crate::weights::checkpoint::{HfConfig, HfWeights};
use crate::weights::gguf_weights::{GgufWeights, Hparams};

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    c_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

pub struct Gpt2 {
    /// Where each layer runs (see [`Stages`]).
    stages: Stages,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Linear,
    heads: usize,
    hidden: usize,
}

impl Gpt2 {
    pub fn from_hf(w: &HfWeights, c: &HfConfig) -> Result<Gpt2> {
        let hidden = c.usize(&["n_embd", "hidden_size"])?;
        let heads = c.usize(&["n_head", "num_attention_heads"])?;
        let layers = c.usize(&["n_layer", "num_hidden_layers"])?;
        let eps = c.f64_or("layer_norm_epsilon", 1e-5);
        // Checkpoints saved from GPT2LMHeadModel prefix `transformer.`; bare GPT2Model ones do not.
        let p = if w.has("transformer.wte.weight") { "transformer." } else { "" };
        let wte = w.get(&format!("{p}wte.weight"))?;
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let b = |s: &str| format!("{p}h.{i}.{s}");
            blocks.push(Block {
                ln_1: w.layer_norm(&b("ln_1"), eps)?,
                c_attn: w.conv1d(&b("attn.c_attn"))?,
                c_proj: w.conv1d(&b("attn.c_proj"))?,
                ln_2: w.layer_norm(&b("ln_2"), eps)?,
                c_fc: w.conv1d(&b("mlp.c_fc"))?,
                mlp_proj: w.conv1d(&b("mlp.c_proj"))?,
            });
        }
        Ok(Gpt2 {
            stages: w.stages().clone(),
            wpe: w.get(&format!("{p}wpe.weight"))?,
            ln_f: w.layer_norm(&format!("{p}ln_f"), eps)?,
            head: w.head("lm_head.weight", &wte, c.bool_or("tie_word_embeddings", true))?,
            wte,
            blocks,
            heads,
            hidden,
        })
    }
}

impl Gpt2 {
    /// llama.cpp's `gpt2` GGUF: the Conv1D weights stored `[out, in]` by its converter.
    pub fn from_gguf(w: &GgufWeights) -> Result<Gpt2> {
        let Hparams { hidden, layers, heads, rms_eps: eps, .. } = Hparams::from_gguf(w.file, "gpt2", 10_000.0)?;
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let n = |s: &str| format!("blk.{i}.{s}");
            blocks.push(Block {
                ln_1: w.layer_norm(&n("attn_norm"), eps)?,
                c_attn: w.linear(&n("attn_qkv.weight"))?,
                c_proj: w.linear(&n("attn_output.weight"))?,
                ln_2: w.layer_norm(&n("ffn_norm"), eps)?,
                c_fc: w.linear(&n("ffn_up.weight"))?,
                mlp_proj: w.linear(&n("ffn_down.weight"))?,
            });
        }
        let embed = w.embedding("token_embd.weight")?;
        Ok(Gpt2 {
            stages: w.stages().clone(),
            head: w.lm_head(&embed)?,
            wte: w.f32("token_embd.weight")?,
            wpe: w.f32("position_embd.weight")?,
            ln_f: w.layer_norm("output_norm", eps)?,
            blocks,
            heads,
            hidden,
        })
    }
}

impl CausalLm for Gpt2 {
    fn layers(&self) -> usize {
        self.blocks.len()
    }

    fn forward(&self, ids: &[u32], layout: &Layout, cache: &mut KvCache) -> Result<Tensor> {
        let device = self.wte.device();
        let positions: Vec<u32> = layout.positions.iter().map(|&p| p as u32).collect();
        let mut x = (self.wte.index_select(&Tensor::new(ids, device)?, 0)?
            + self.wpe.index_select(&Tensor::new(positions.as_slice(), device)?, 0)?)?;
        let masks = self.stages.per_device(|d| layout.mask(None, d))?;
        let scale = 1.0 / ((self.hidden / self.heads) as f64).sqrt();
        for (i, b) in self.blocks.iter().enumerate() {
            x = self.stages.enter(i, x)?;
            let qkv = b.c_attn.forward(&b.ln_1.forward(&x)?)?;
            let q = split_heads(&qkv.narrow(1, 0, self.hidden)?, self.heads)?;
            let k = split_heads(&qkv.narrow(1, self.hidden, self.hidden)?, self.heads)?;
            let v = split_heads(&qkv.narrow(1, 2 * self.hidden, self.hidden)?, self.heads)?;
            let (k, v) = cache.append(i, k, v)?;
            x = (x + b.c_proj.forward(&attention(&q, &k, &v, masks.at(i), scale)?)?)?;
            let h = crate::layers::gelu_tanh(&b.c_fc.forward(&b.ln_2.forward(&x)?)?)?;
            x = (&x + b.mlp_proj.forward(&h)?)?;
        }
        cache.advance(ids.len());
        self.ln_f.forward(&self.stages.leave(x)?)
    }

    fn head(&self) -> &Linear {
        &self.head
    }
}
