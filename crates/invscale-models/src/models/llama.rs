//! Llama and its close relatives: Llama 1/2/3, SmolLM (arch `llama`), Mistral, Qwen2 (biases on
//! q/k/v, NeoX-style rotary) and Qwen3 (RMSNorm on each head's queries and keys before the
//! rotary, no biases), SmolLM3 (no rotary on the layers `no_rope_layers` marks 0) and Phi-3/4
//! (q/k/v and gate/up each one fused matrix, split here, from checkpoints and GGUFs alike; partial
//! rotary; a sliding window on every layer, as Mistral's; LongRoPE). Pre-norm blocks with RMSNorm, grouped-query attention with rotary
//! embeddings, and a SwiGLU MLP.

use candle_core::Tensor;

use crate::batch::layout::Layout;
use crate::error::{ModelError, Result};
use crate::layers::{RopeScaling, RopeSpec, Stages, Embedding, FeedForward, GatedMlp, KvCache, Linear, RmsNorm, RopeStyle, Rotary, SparseMoe, attention, split_heads};
use crate::models::causal_lm::CausalLm;
use crate::weights::checkpoint::{Dims, HfConfig, HfWeights};
use crate::weights::gguf_weights::{GgufWeights, Hparams};

struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// Qwen3's per-head norms of queries and keys (before the rotary).
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    /// Whether positions are rotated in (not on SmolLM3's NoPE layers).
    rotary: bool,
    ffn_norm: RmsNorm,
    ffn: FeedForward,
}

pub struct Llama {
    /// Where each layer runs (see [`Stages`]).
    stages: Stages,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: Linear,
    rotary: Rotary,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Every layer's sliding window (Mistral, Phi-3), if any.
    window: Option<usize>,
    /// The quantized GGUF path: attention in llama.cpp's f16-KV arithmetic.
    f16_kv: bool,
}

impl Llama {
    pub fn from_gguf(w: &GgufWeights, arch: &str) -> Result<Llama> {
        let Hparams { layers, heads, kv_heads, head_dim, rotary_dim, rms_eps: eps, rope_base, rope_scale, .. } =
            Hparams::from_gguf(w.file, arch, 10_000.0)?;
        // llama.cpp's converter permutes Q/K of `llama` models for adjacent-pair rotation; the
        // dot products are those of HF's rotate_half on the original weights.
        let style = if arch == "llama" { RopeStyle::Interleaved } else { RopeStyle::Halves };
        let embed = w.embedding("token_embd.weight")?;
        // Phi-3: q/k/v one matrix, gate and up one (`ffn_up`, gate first), as in its checkpoints.
        let phi3 = arch == "phi3";
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let [q, k, v] = match phi3 {
                true => w.split_linear(&n("attn_qkv"), [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim])?,
                false => [w.linear(&n("attn_q"))?, w.linear(&n("attn_k"))?, w.linear(&n("attn_v"))?],
            };
            blocks.push(Block {
                attn_norm: w.rms_norm(&n("attn_norm"), eps)?,
                q,
                k,
                v,
                o: w.linear(&n("attn_output"))?,
                qk_norm: match arch {
                    "qwen3" | "qwen3moe" => Some((w.rms_norm(&n("attn_q_norm"), eps)?, w.rms_norm(&n("attn_k_norm"), eps)?)),
                    _ => None,
                },
                rotary: true,
                ffn_norm: w.rms_norm(&n("ffn_norm"), eps)?,
                ffn: gguf_feed_forward(w, arch, i)?,
            });
        }
        Ok(Llama {
            stages: w.stages().clone(),
            f16_kv: w.precision == crate::weights::precision::Precision::Quantized,
            norm: w.rms_norm("output_norm.weight", eps)?,
            head: w.lm_head(&embed)?,
            embed,
            blocks,
            rotary: Rotary::scaled(style, rotary_dim, &RopeSpec { base: rope_base, scaling: gguf_rope_scaling(w, arch, rope_scale)? }),
            heads,
            kv_heads,
            head_dim,
            // Phi-3's window on every layer, as transformers applies it (0: none, Phi-4).
            window: w.file.opt_int(&format!("{arch}.attention.sliding_window")).filter(|&v| phi3 && v > 0).map(|v| v as usize),
        })
    }
}

/// A GGUF's rotary scaling: Llama 3.1+'s as llama.cpp's converter precomputes it
/// (`rope_freqs.weight`: each frequency's divisor), else linear by `rope.scaling.factor`.
fn gguf_rope_scaling(w: &GgufWeights, arch: &str, linear: f64) -> Result<RopeScaling> {
    let cpu = candle_core::Device::Cpu;
    let read = |name: &str| -> Result<Vec<f32>> { Ok(w.file.qtensor(name, &cpu)?.dequantize(&cpu)?.flatten_all()?.to_vec1::<f32>()?) };
    if w.file.has_tensor("rope_freqs.weight") {
        return Ok(RopeScaling::Factors(read("rope_freqs.weight")?));
    }
    // Phi-3's LongRoPE (128k): both factor lists, the pretraining length and the attention
    // factor as its converter wrote them; long or short chosen per pass as transformers does.
    if w.file.has_tensor("rope_factors_long.weight") {
        let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect();
        return Ok(RopeScaling::LongRope {
            short: widen(read("rope_factors_short.weight")?),
            long: widen(read("rope_factors_long.weight")?),
            original: w.file.int(&format!("{arch}.rope.scaling.original_context_length"))? as usize,
            attention_factor: w.file.float(&format!("{arch}.rope.scaling.attn_factor")).unwrap_or(1.0),
        });
    }
    Ok(if linear == 1.0 { RopeScaling::None } else { RopeScaling::Linear(linear) })
}

/// Layer `i`'s MLP in a GGUF: dense, or a mixture of experts (Mixtral as arch `llama`,
/// Qwen3-MoE as `qwen3moe`: `ffn_*_exps` stacked per expert, `ffn_gate_inp` the router).
fn gguf_feed_forward(w: &GgufWeights, arch: &str, i: usize) -> Result<FeedForward> {
    let n = |s: &str| format!("blk.{i}.{s}.weight");
    if arch == "phi3" {
        let inner = w.file.int("phi3.feed_forward_length")? as usize;
        let [gate, up] = w.split_linear(&n("ffn_up"), [inner, inner])?;
        return Ok(FeedForward::Dense(GatedMlp { gate, up, down: w.linear(&n("ffn_down"))? }));
    }
    if !w.file.has_tensor(&n("ffn_gate_inp")) {
        return Ok(FeedForward::Dense(GatedMlp { gate: w.linear(&n("ffn_gate"))?, up: w.linear(&n("ffn_up"))?, down: w.linear(&n("ffn_down"))? }));
    }
    let top_k = w.file.int(&format!("{arch}.expert_used_count"))? as usize;
    let (gates, ups, downs) = (w.expert_linears(&n("ffn_gate_exps"))?, w.expert_linears(&n("ffn_up_exps"))?, w.expert_linears(&n("ffn_down_exps"))?);
    let experts: Vec<GatedMlp> = gates.into_iter().zip(ups).zip(downs).map(|((gate, up), down)| GatedMlp { gate, up, down }).collect();
    // Rescaled top-k weights unless the file says otherwise: Mixtral always, and the released
    // Qwen3-MoE sets norm_topk_prob (as llama.cpp's graphs for both assume).
    let normalize = w.file.opt_bool(&format!("{arch}.expert_weights_norm")).unwrap_or(true);
    Ok(FeedForward::Experts(SparseMoe { router: w.linear(&n("ffn_gate_inp"))?, experts, top_k, normalize }))
}

impl Llama {
    /// A Hugging Face checkpoint (`llama`, `mistral`, `qwen2`, `qwen3` model types): HF's rotary
    /// layout (halves; the weights are not permuted as in GGUF).
    pub fn from_hf(w: &HfWeights, c: &HfConfig) -> Result<Llama> {
        let qk_norms = matches!(c.model_type()?, "qwen3" | "qwen3_moe");
        let Dims { layers, heads, kv_heads, head_dim, rms_eps: eps, .. } = Dims::from_config(c)?;
        if c.bool_or("use_sliding_window", false) {
            return Err(ModelError::unsupported(&c.path, "`use_sliding_window` is set: sliding-window layers are not supported for this model type"));
        }
        // SmolLM3: 1 where the layer uses the rotary, 0 for its NoPE layers.
        let rotary: Vec<bool> = match c.get("no_rope_layers").as_array() {
            Some(flags) if flags.len() == layers => flags.iter().map(|f| f.as_u64() != Some(0)).collect(),
            Some(flags) => return Err(ModelError::corrupt(&c.path, format!("`no_rope_layers` has {} entries for {layers} layers", flags.len()))),
            None => vec![true; layers],
        };
        let rope = c.rope(None, 10_000.0)?;
        let model_type = c.model_type()?;
        let fused = model_type == "phi3";
        let embed = w.get("model.embed_tokens.weight")?;
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let n = |s: &str| format!("model.layers.{i}.{s}");
            let [q, k, v] = match fused {
                true => w.split_linear(&n("self_attn.qkv_proj"), [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim])?,
                false => [w.linear(&n("self_attn.q_proj"))?, w.linear(&n("self_attn.k_proj"))?, w.linear(&n("self_attn.v_proj"))?],
            };
            let ffn = feed_forward(w, c, i, fused)?;
            blocks.push(Block {
                attn_norm: w.rms_norm(&n("input_layernorm.weight"), eps, false)?,
                q,
                k,
                v,
                o: w.linear(&n("self_attn.o_proj"))?,
                qk_norm: match qk_norms {
                    true => Some((w.rms_norm(&n("self_attn.q_norm.weight"), eps, false)?, w.rms_norm(&n("self_attn.k_norm.weight"), eps, false)?)),
                    false => None,
                },
                rotary: rotary[i],
                ffn_norm: w.rms_norm(&n("post_attention_layernorm.weight"), eps, false)?,
                ffn,
            });
        }
        let rotary_dim = (head_dim as f64 * c.partial_rotary()) as usize;
        Ok(Llama {
            stages: w.stages().clone(),
            f16_kv: false,
            norm: w.rms_norm("model.norm.weight", eps, false)?,
            head: w.head("lm_head.weight", &embed, c.bool_or("tie_word_embeddings", false))?,
            embed: Embedding::Dense(embed),
            blocks,
            rotary: Rotary::scaled(RopeStyle::Halves, rotary_dim, &rope),
            heads,
            kv_heads,
            head_dim,
            // transformers gives Mistral's and Phi-3's attention their `sliding_window` on every layer.
            window: if matches!(model_type, "mistral" | "mixtral" | "phi3") { c.opt_usize(&["sliding_window"]) } else { None },
        })
    }
}

/// Layer `i`'s MLP: dense (Phi-3's gate/up one fused matrix), or a sparse mixture of experts
/// (Mixtral's `block_sparse_moe`; Qwen3-MoE's `mlp` on every `decoder_sparse_step`-th layer not
/// in `mlp_only_layers`).
fn feed_forward(w: &HfWeights, c: &HfConfig, i: usize, fused: bool) -> Result<FeedForward> {
    let n = |s: &str| format!("model.layers.{i}.{s}");
    let gated = |prefix: &str, names: [&str; 3]| -> Result<GatedMlp> {
        let p = |s: &str| format!("{prefix}.{s}");
        Ok(GatedMlp { gate: w.linear(&p(names[0]))?, up: w.linear(&p(names[1]))?, down: w.linear(&p(names[2]))? })
    };
    let top_k = c.opt_usize(&["num_experts_per_tok"]).unwrap_or(2);
    match c.model_type()? {
        "mixtral" => {
            let experts = c.usize(&["num_local_experts"])?;
            let experts = (0..experts).map(|e| gated(&n(&format!("block_sparse_moe.experts.{e}")), ["w1", "w3", "w2"])).collect::<Result<_>>()?;
            Ok(FeedForward::Experts(SparseMoe { router: w.linear(&n("block_sparse_moe.gate"))?, experts, top_k, normalize: true }))
        }
        "qwen3_moe" => {
            let dense_only = c.get("mlp_only_layers").as_array().is_some_and(|l| l.iter().any(|v| v.as_u64() == Some(i as u64)));
            let step = c.opt_usize(&["decoder_sparse_step"]).unwrap_or(1).max(1);
            let experts = c.opt_usize(&["num_experts", "num_local_experts"]).unwrap_or(0);
            if dense_only || experts == 0 || (i + 1) % step != 0 {
                return Ok(FeedForward::Dense(gated(&n("mlp"), ["gate_proj", "up_proj", "down_proj"])?));
            }
            let experts = (0..experts).map(|e| gated(&n(&format!("mlp.experts.{e}")), ["gate_proj", "up_proj", "down_proj"])).collect::<Result<_>>()?;
            let normalize = c.bool_or("norm_topk_prob", false);
            Ok(FeedForward::Experts(SparseMoe { router: w.linear(&n("mlp.gate"))?, experts, top_k, normalize }))
        }
        _ if fused => {
            let inner = c.usize(&["intermediate_size"])?;
            let [gate, up] = w.split_linear(&n("mlp.gate_up_proj"), [inner, inner])?;
            Ok(FeedForward::Dense(GatedMlp { gate, up, down: w.linear(&n("mlp.down_proj"))? }))
        }
        _ => Ok(FeedForward::Dense(gated(&n("mlp"), ["gate_proj", "up_proj", "down_proj"])?)),
    }
}

impl CausalLm for Llama {
    fn layers(&self) -> usize {
        self.blocks.len()
    }

    fn forward(&self, ids: &[u32], layout: &Layout, cache: &mut KvCache) -> Result<Tensor> {
        let mut x = self.embed.start_pass(ids, layout, cache)?;
        let masks = self.stages.per_device(|d| Ok(layout.mask(self.window, d)?.with_f16_kv(self.f16_kv)))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        for (i, b) in self.blocks.iter().enumerate() {
            x = self.stages.enter(i, x)?;
            let h = b.attn_norm.forward(&x)?;
            let (mut q, mut k) = (split_heads(&b.q.forward(&h)?, self.heads)?, split_heads(&b.k.forward(&h)?, self.kv_heads)?);
            if let Some((q_norm, k_norm)) = &b.qk_norm {
                (q, k) = (q_norm.forward(&q)?, k_norm.forward(&k)?);
            }
            if b.rotary {
                (q, k) = (self.rotary.apply(&q, &layout.positions)?, self.rotary.apply(&k, &layout.positions)?);
            }
            let v = split_heads(&b.v.forward(&h)?, self.kv_heads)?;
            let (k, v) = cache.append(i, k, v)?;
            x = (x + b.o.forward(&attention(&q, &k, &v, masks.at(i), scale)?)?)?;
            x = (&x + b.ffn.forward(&b.ffn_norm.forward(&x)?)?)?;
        }
        cache.advance(ids.len());
        self.norm.forward(&self.stages.leave(x)?)
    }

    fn head(&self) -> &Linear {
        &self.head
    }
}
