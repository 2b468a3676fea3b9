//! Gemma 3 (text) and Gemma 2. Differences from Llama: embeddings scaled by √hidden; norms
//! after attention and after the MLP as well as before; a GELU (tanh) gated MLP; sliding-window
//! layers. Gemma 3: RMSNorm on each head's queries and keys, 5 sliding layers of every 6 with
//! their own rotary base. Gemma 2: every other layer sliding, attention scores and final logits
//! soft-capped (`cap · tanh(x / cap)`). llama.cpp's converter stores Gemma's norm weights as
//! `1 + w`, so they are plain RMSNorm weights there.

use candle_core::Tensor;

use crate::batch::layout::Layout;
use crate::error::Result;
use crate::layers::{Stages, Embedding, KvCache, Linear, RmsNorm, RopeStyle, Rotary, attention, split_heads};
use crate::models::causal_lm::CausalLm;
use crate::weights::checkpoint::{Dims, HfConfig, HfWeights};
use crate::weights::gguf_weights::{GgufWeights, Hparams};

/// Every `GLOBAL_EVERY`-th layer attends globally (Gemma 3's fixed pattern: 5 local, 1 global);
/// the file does not record it.
const GLOBAL_EVERY: usize = 6;
/// Rotary base of the sliding-window layers (Gemma 3's `rope_local_base_freq`).
const LOCAL_ROPE_BASE: f64 = 10_000.0;

struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    /// Gemma 3's per-head query and key norms.
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    o: Linear,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: RmsNorm,
    /// `Some(window)` on sliding-window layers.
    window: Option<usize>,
}

pub struct Gemma3 {
    /// Where each layer runs (see [`Stages`]).
    stages: Stages,
    embed: Embedding,
    embed_scale: f64,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: Linear,
    rotary_global: Rotary,
    rotary_local: Rotary,
    heads: usize,
    kv_heads: usize,
    scale: f64,
    /// Gemma 2's soft-capping of attention scores and of the final logits.
    attn_softcap: Option<f64>,
    final_softcap: Option<f64>,
    /// The quantized GGUF path: attention in llama.cpp's f16-KV arithmetic.
    f16_kv: bool,
}

impl Gemma3 {
    /// A GGUF of arch `gemma3` or `gemma2` (llama.cpp's patterns: Gemma 2's even layers slide,
    /// as transformers' `layer_types`; its caps under `gemma2.*_softcapping`).
    pub fn from_gguf(w: &GgufWeights, arch: &str) -> Result<Gemma3> {
        let gemma2 = arch == "gemma2";
        let Hparams { hidden, layers, heads, kv_heads, head_dim, rms_eps: eps, rope_base, rope_scale, .. } =
            Hparams::from_gguf(w.file, arch, if gemma2 { 10_000.0 } else { 1_000_000.0 })?;
        let window = w.file.opt_int(&format!("{arch}.attention.sliding_window")).map(|v| v as usize);
        let sliding = |i: usize| if gemma2 { i % 2 == 0 } else { (i + 1) % GLOBAL_EVERY != 0 };
        let cap = |k: &str| w.file.float(&format!("{arch}.{k}")).ok().filter(|&c| c > 0.0);
        let embed = w.embedding("token_embd.weight")?;
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            blocks.push(Block {
                attn_norm: w.rms_norm(&n("attn_norm"), eps)?,
                q: w.linear(&n("attn_q"))?,
                k: w.linear(&n("attn_k"))?,
                v: w.linear(&n("attn_v"))?,
                qk_norm: match gemma2 {
                    true => None,
                    false => Some((w.rms_norm(&n("attn_q_norm"), eps)?, w.rms_norm(&n("attn_k_norm"), eps)?)),
                },
                o: w.linear(&n("attn_output"))?,
                post_attn_norm: w.rms_norm(&n("post_attention_norm"), eps)?,
                ffn_norm: w.rms_norm(&n("ffn_norm"), eps)?,
                gate: w.linear(&n("ffn_gate"))?,
                up: w.linear(&n("ffn_up"))?,
                down: w.linear(&n("ffn_down"))?,
                post_ffn_norm: w.rms_norm(&n("post_ffw_norm"), eps)?,
                window: if sliding(i) { window } else { None },
            });
        }
        // Gemma scales queries by query_pre_attn_scalar^-1/2, which the GGUF does not record:
        // head_dim for every size but the 27Bs (Gemma 3's 62 layers, Gemma 2's 46), where it is
        // hidden / heads — llama.cpp's rule, by the layer count as there.
        let scalar = if layers == if gemma2 { 46 } else { 62 } { (hidden / heads) as f64 } else { head_dim as f64 };
        Ok(Gemma3 {
            stages: w.stages().clone(),
            f16_kv: w.precision == crate::weights::precision::Precision::Quantized,
            norm: w.rms_norm("output_norm.weight", eps)?,
            head: w.lm_head(&embed)?,
            embed,
            embed_scale: (hidden as f32).sqrt() as f64,
            blocks,
            rotary_global: Rotary::new(RopeStyle::Halves, head_dim, rope_base, rope_scale),
            rotary_local: Rotary::new(RopeStyle::Halves, head_dim, if gemma2 { rope_base } else { LOCAL_ROPE_BASE }, 1.0),
            heads,
            kv_heads,
            scale: 1.0 / scalar.sqrt(),
            attn_softcap: if gemma2 { cap("attn_logit_softcapping") } else { None },
            final_softcap: if gemma2 { cap("final_logit_softcapping") } else { None },
        })
    }
}

impl Gemma3 {
    /// A Hugging Face checkpoint (`gemma3_text`, `gemma2`): norms stored as `w` for a scale of
    /// `1 + w`, queries scaled by `query_pre_attn_scalar^-1/2`, each layer's type and rotary base
    /// from the config.
    pub fn from_hf(w: &HfWeights, c: &HfConfig) -> Result<Gemma3> {
        let Dims { hidden, layers, heads, kv_heads, head_dim, rms_eps: eps } = Dims::from_config(c)?;
        let gemma2 = c.model_type()? == "gemma2";
        let window = c.opt_usize(&["sliding_window"]);
        let softcap = |key: &str| c.get(key).as_f64().filter(|_| gemma2);
        if !gemma2 && (c.get("final_logit_softcapping").as_f64().is_some() || c.get("attn_logit_softcapping").as_f64().is_some()) {
            return Err(crate::error::ModelError::unsupported(&c.path, "logit soft-capping on a Gemma 3 model is not supported"));
        }
        let layer_types: Vec<bool> = match c.get("layer_types").as_array() {
            Some(types) => types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect(),
            // Gemma 2: even layers slide; Gemma 3: 5 of every 6.
            None if gemma2 => (0..layers).map(|i| i % 2 == 0).collect(),
            None => {
                let every = c.opt_usize(&["sliding_window_pattern", "_sliding_window_pattern"]).unwrap_or(GLOBAL_EVERY);
                (0..layers).map(|i| (i + 1) % every != 0).collect()
            }
        };
        let global = c.rope(Some("full_attention"), if gemma2 { 10_000.0 } else { 1_000_000.0 })?;
        // Gemma 2 has one rotary for every layer.
        let local_base = match gemma2 {
            true => global.base,
            false => c.get("rope_parameters")["sliding_attention"]["rope_theta"]
                .as_f64()
                .unwrap_or_else(|| c.f64_or("rope_local_base_freq", LOCAL_ROPE_BASE)),
        };
        let embed = w.get("model.embed_tokens.weight")?;
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let n = |s: &str| format!("model.layers.{i}.{s}");
            let norm = |s: &str, eps| w.rms_norm(&n(s), eps, true);
            blocks.push(Block {
                attn_norm: norm("input_layernorm.weight", eps)?,
                q: w.linear(&n("self_attn.q_proj"))?,
                k: w.linear(&n("self_attn.k_proj"))?,
                v: w.linear(&n("self_attn.v_proj"))?,
                qk_norm: match gemma2 {
                    true => None,
                    false => Some((norm("self_attn.q_norm.weight", eps)?, norm("self_attn.k_norm.weight", eps)?)),
                },
                o: w.linear(&n("self_attn.o_proj"))?,
                post_attn_norm: norm("post_attention_layernorm.weight", eps)?,
                ffn_norm: norm("pre_feedforward_layernorm.weight", eps)?,
                gate: w.linear(&n("mlp.gate_proj"))?,
                up: w.linear(&n("mlp.up_proj"))?,
                down: w.linear(&n("mlp.down_proj"))?,
                post_ffn_norm: norm("post_feedforward_layernorm.weight", eps)?,
                window: if layer_types.get(i).copied().unwrap_or(false) { window } else { None },
            });
        }
        let scalar = c.get("query_pre_attn_scalar").as_f64().unwrap_or(head_dim as f64);
        Ok(Gemma3 {
            stages: w.stages().clone(),
            f16_kv: false,
            norm: w.rms_norm("model.norm.weight", eps, true)?,
            head: w.head("lm_head.weight", &embed, c.bool_or("tie_word_embeddings", true))?,
            embed: Embedding::Dense(embed),
            // HF computes the scale in the embedding's dtype (f32 here).
            embed_scale: (hidden as f32).sqrt() as f64,
            blocks,
            rotary_global: Rotary::scaled(RopeStyle::Halves, head_dim, &global),
            rotary_local: Rotary::new(RopeStyle::Halves, head_dim, local_base, 1.0),
            heads,
            kv_heads,
            scale: 1.0 / scalar.sqrt(),
            attn_softcap: softcap("attn_logit_softcapping"),
            final_softcap: softcap("final_logit_softcapping"),
        })
    }
}

impl CausalLm for Gemma3 {
    fn layers(&self) -> usize {
        self.blocks.len()
    }

    fn forward(&self, ids: &[u32], layout: &Layout, cache: &mut KvCache) -> Result<Tensor> {
        let mut x = (self.embed.start_pass(ids, layout, cache)? * self.embed_scale)?;
        let window = self.blocks.iter().find_map(|b| b.window);
        let masks = self.stages.per_device(|d| {
            let (global, local) = layout.full_and_sliding_masks(window, d, self.f16_kv)?;
            Ok((global.with_softcap(self.attn_softcap), local.with_softcap(self.attn_softcap)))
        })?;
        for (i, b) in self.blocks.iter().enumerate() {
            x = self.stages.enter(i, x)?;
            let (global_mask, local_mask) = masks.at(i);
            let (rotary, mask) = match b.window {
                Some(_) => (&self.rotary_local, local_mask),
                None => (&self.rotary_global, global_mask),
            };
            let h = b.attn_norm.forward(&x)?;
            let (mut q, mut k) = (split_heads(&b.q.forward(&h)?, self.heads)?, split_heads(&b.k.forward(&h)?, self.kv_heads)?);
            if let Some((q_norm, k_norm)) = &b.qk_norm {
                (q, k) = (q_norm.forward(&q)?, k_norm.forward(&k)?);
            }
            let v = split_heads(&b.v.forward(&h)?, self.kv_heads)?;
            let (q, k) = (rotary.apply(&q, &layout.positions)?, rotary.apply(&k, &layout.positions)?);
            let (k, v) = cache.append(i, k, v)?;
            let a = b.o.forward(&attention(&q, &k, &v, mask, self.scale)?)?;
            x = (x + b.post_attn_norm.forward(&a)?)?;
            let h = b.ffn_norm.forward(&x)?;
            let m = b.down.forward(&(crate::layers::gelu_pytorch_tanh(&b.gate.forward(&h)?)? * b.up.forward(&h)?)?)?;
            x = (&x + b.post_ffn_norm.forward(&m)?)?;
        }
        cache.advance(ids.len());
        self.norm.forward(&self.stages.leave(x)?)
    }

    fn head(&self) -> &Linear {
        &self.head
    }
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = self.head.forward(hidden)?;
        Ok(match self.final_softcap {
            Some(cap) => ((logits / cap)?.tanh()? * cap)?,
            None => logits,
        })
    }
}
