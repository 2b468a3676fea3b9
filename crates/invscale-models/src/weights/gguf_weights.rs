//! A GGUF file's tensors as layers, at the precision asked for, and the transformer dimensions
//! its metadata states.

use candle_core::quantized::QMatMul;
use candle_core::{Device, Tensor};
use invscale_kernels::cpu::block_quant::{BlockFormat, BlockMatrix};

use crate::error::Result;
use crate::layers::embedding::Embedding;
use crate::layers::linear::{Linear, Weight};
use crate::layers::norm::{LayerNorm, RmsNorm};
use crate::layers::stages::Stages;
use crate::weights::gguf::GgufFile;
use crate::weights::precision::Precision;

pub struct GgufWeights<'a> {
    pub file: &'a GgufFile,
    /// Which device each tensor goes to (its layer's stage; see [`Stages`]).
    pub stages: Stages,
    pub precision: Precision,
}

impl GgufWeights<'_> {
    /// Where each layer runs.
    pub fn stages(&self) -> &Stages {
        &self.stages
    }

    /// The device tensor `name` goes to.
    fn device(&self, name: &str) -> &Device {
        self.stages.device_for(name)
    }

    /// A tensor dequantized, in the run's dtype (f32 unless bf16/f16 was asked for).
    pub fn f32(&self, name: &str) -> Result<Tensor> {
        let t = self.file.qtensor(name, self.device(name))?.dequantize(self.device(name))?;
        let dtype = self.precision.dtype();
        Ok(if t.dtype() == dtype { t } else { t.to_dtype(dtype)? })
    }

    /// `name` (a `.weight`) as a linear layer, with its `.bias` when the file has one.
    pub fn linear(&self, name: &str) -> Result<Linear> {
        let weight = match self.precision {
            Precision::Quantized => {
                match self.block_matrix(name) {
                    Some(blocks) => Weight::Blocks(blocks),
                    None => Weight::Quantized(QMatMul::from_qtensor(self.file.qtensor(name, self.device(name))?)?),
                }
            }
            _ => return Linear::dense(self.f32(name)?, self.bias_of(name)?),
        };
        Ok(Linear { weight, bias: self.bias_of(name)? })
    }

    /// The `.bias` beside `name` (a `.weight`), when the file has one.
    fn bias_of(&self, name: &str) -> Result<Option<Tensor>> {
        match name.strip_suffix(".weight").map(|n| format!("{n}.bias")) {
            Some(b) if self.file.has_tensor(&b) => Ok(Some(self.f32(&b)?)),
            _ => Ok(None),
        }
    }

    pub fn rms_norm(&self, name: &str, eps: f32) -> Result<RmsNorm> {
        // Norm weights stay f32; llama.cpp stores Gemma's as `1 + w` already.
        let weight = self.file.qtensor(name, self.device(name))?.dequantize(self.device(name))?;
        Ok(RmsNorm { weight, eps, scale_after_cast: true })
    }

    /// LayerNorm `prefix.weight` and `prefix.bias` (GPT-2, GPT-NeoX), in the run's dtype.
    pub fn layer_norm(&self, prefix: &str, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm { weight: self.f32(&format!("{prefix}.weight"))?, bias: self.f32(&format!("{prefix}.bias"))?, eps })
    }

    /// A mixture's experts stacked in one 3-D tensor (`blk.N.ffn_gate_exps.weight`:
    /// `[experts, out, in]`), one dense layer each.
    pub fn expert_linears(&self, name: &str) -> Result<Vec<Linear>> {
        let stacked = self.f32(name)?;
        (0..stacked.dim(0)?).map(|e| Linear::dense(stacked.get(e)?.contiguous()?, None)).collect()
    }

    /// The token embeddings: kept quantized on the quantized path when our block kernel takes
    /// the format (rows dequantized as looked up), else in the run's dtype.
    pub fn embedding(&self, name: &str) -> Result<Embedding> {
        if self.precision == Precision::Quantized {
            if let Some(blocks) = self.block_matrix(name) {
                return Ok(Embedding::Blocks(blocks));
            }
        }
        Ok(Embedding::Dense(self.f32(name)?))
    }

    /// The output projection: `output.weight`, or the token embeddings when tied (the dense
    /// embedding matrix itself, or the file's quantized bytes again: no second copy either way).
    pub fn lm_head(&self, embed: &Embedding) -> Result<Linear> {
        if self.file.has_tensor("output.weight") {
            return self.linear("output.weight");
        }
        Ok(match (self.precision, embed) {
            (Precision::Quantized, _) | (_, Embedding::Blocks(_)) => self.linear("token_embd.weight")?,
            (_, Embedding::Dense(t)) => Linear::tied(t),
        })
    }

    /// A fused projection (Phi-3's `attn_qkv`, its gate-and-up `ffn_up`) split into consecutive
    /// groups of `rows` output rows, each its own layer, at the run's precision: dense ones
    /// narrowed, quantized ones over their rows' bytes (rows are whole blocks: nothing requantized).
    pub fn split_linear<const N: usize>(&self, name: &str, rows: [usize; N]) -> Result<[Linear; N]> {
        let bad = |m: String| crate::error::ModelError::corrupt(&self.file.path, m);
        let info = self.file.content.tensor_infos.get(name).ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
        let (n, cols) = info.shape.dims2().map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        if n != rows.iter().sum::<usize>() {
            return Err(bad(format!("`{name}` has {n} rows, not {}", rows.iter().sum::<usize>())));
        }
        let device = self.device(name);
        let dense = match self.precision {
            Precision::Quantized => None,
            _ => Some(self.f32(name)?),
        };
        let mut start = 0;
        let mut out = Vec::with_capacity(N);
        for r in rows {
            let weight = match &dense {
                Some(w) => Linear::dense(w.narrow(0, start, r)?.contiguous()?, None)?.weight,
                None => {
                    match self.block_rows(name, start, r) {
                        Some(blocks) => Weight::Blocks(blocks),
                        None => {
                            let bytes = self.file.tensor_row_bytes(name, start, r).ok_or_else(|| bad(format!("tensor `{name}`: rows out of range")))?;
                            let q = candle_core::quantized::ggml_file::qtensor_from_ggml(info.ggml_dtype, bytes.as_ref(), vec![r, cols], device)?;
                            Weight::Quantized(QMatMul::from_qtensor(q)?)
                        }
                    }
                }
            };
            out.push(Linear { weight, bias: None });
            start += r;
        }
        Ok(out.try_into().unwrap_or_else(|_| unreachable!("one layer per group")))
    }

    /// A CPU matrix in a 32-value block format as our own kernel's matrix, over the file's map,
    /// when this machine runs that kernel (else candle's kernels take it).
    fn block_matrix(&self, name: &str) -> Option<BlockMatrix> {
        let (rows, _) = self.file.content.tensor_infos.get(name)?.shape.dims2().ok()?;
        self.block_rows(name, 0, rows)
    }

    /// [`block_matrix`](Self::block_matrix) of rows `from..from + rows` only (over their bytes).
    fn block_rows(&self, name: &str, from: usize, rows: usize) -> Option<BlockMatrix> {
        let info = self.file.content.tensor_infos.get(name)?;
        let format = BlockFormat::from_ggml(info.ggml_dtype)?;
        if !self.device(name).is_cpu() || BlockMatrix::kernel().is_none() {
            return None;
        }
        let (_, cols) = info.shape.dims2().ok()?;
        BlockMatrix::new(format, rows, cols, self.file.tensor_row_bytes(name, from, rows)?)
    }
}

/// The transformer dimensions every GGUF architecture states under `{arch}.…`.
pub struct Hparams {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Dimensions of each head that rotate (all of them unless the file says otherwise).
    pub rotary_dim: usize,
    /// RMSNorm's epsilon, else LayerNorm's (GPT-2, GPT-NeoX).
    pub rms_eps: f32,
    /// `rope.freq_base`, or the architecture's default.
    pub rope_base: f64,
    /// Linear RoPE scaling factor (1 for none).
    pub rope_scale: f64,
}

impl Hparams {
    pub fn from_gguf(g: &GgufFile, arch: &str, default_rope_base: f64) -> Result<Hparams> {
        let key = |k: &str| format!("{arch}.{k}");
        let count = |k: &str| -> Result<usize> { Ok(g.int(&key(k))? as usize) };
        let optional = |k: &str| g.opt_int(&key(k)).map(|v| v as usize);
        let hidden = count("embedding_length")?;
        let heads = count("attention.head_count")?;
        let head_dim = optional("attention.key_length").unwrap_or(hidden / heads);
        // llama.cpp's YaRN and LongRoPE arithmetic differ from transformers' in details: refused,
        // not approximated (a Llama 3 GGUF's scaling is its rope_freqs tensor: see the Llama file).
        match g.string(&key("rope.scaling.type")) {
            Ok("none" | "linear") | Err(_) => {}
            Ok(other) => {
                return Err(crate::error::ModelError::unsupported(
                    &g.path,
                    format!("rope scaling `{other}` in a GGUF is not supported (none and linear are; a Hugging Face checkpoint of the model runs its yarn or longrope)"),
                ));
            }
        }
        Ok(Hparams {
            hidden,
            layers: count("block_count")?,
            heads,
            kv_heads: optional("attention.head_count_kv").unwrap_or(heads),
            head_dim,
            rotary_dim: optional("rope.dimension_count").unwrap_or(head_dim),
            rms_eps: g.float(&key("attention.layer_norm_rms_epsilon")).or_else(|_| g.float(&key("attention.layer_norm_epsilon")))? as f32,
            rope_base: g.float(&key("rope.freq_base")).unwrap_or(default_rope_base),
            rope_scale: g.float(&key("rope.scaling.factor")).unwrap_or(1.0),
        })
    }
}
