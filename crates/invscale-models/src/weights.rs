//! Loading weights from a GGUF file at the precision asked for.

use candle_core::quantized::QMatMul;
use candle_core::{Device, Tensor};

use crate::gguf::GgufFile;
use crate::layers::{Linear, RmsNorm, Weight};
use crate::Result;

/// How a GGUF model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Every tensor dequantized to f32: the exact path, what transformers' `gguf_file=` does.
    F32,
    /// Matrices stay quantized (llama.cpp's arithmetic): the fast path.
    Quantized,
}

pub struct GgufWeights<'a> {
    pub file: &'a GgufFile,
    pub device: Device,
    pub precision: Precision,
}

impl GgufWeights<'_> {
    /// A tensor dequantized to f32.
    pub fn f32(&self, name: &str) -> Result<Tensor> {
        Ok(self.file.qtensor(name, &self.device)?.dequantize(&self.device)?)
    }

    /// `name` (a `.weight`) as a linear layer, with its `.bias` when the file has one.
    pub fn linear(&self, name: &str) -> Result<Linear> {
        let weight = match self.precision {
            Precision::F32 => Weight::Dense(self.f32(name)?),
            Precision::Quantized => Weight::Quantized(QMatMul::from_qtensor(self.file.qtensor(name, &self.device)?)?),
        };
        let bias_name = name.strip_suffix(".weight").map(|n| format!("{n}.bias"));
        let bias = match bias_name {
            Some(b) if self.file.has_tensor(&b) => Some(self.f32(&b)?),
            _ => None,
        };
        Ok(Linear { weight, bias })
    }

    pub fn rms_norm(&self, name: &str, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: self.f32(name)?, eps })
    }

    /// The output projection: `output.weight`, or the token embeddings when tied (reusing the
    /// f32 embedding matrix on the exact path instead of a second copy).
    pub fn lm_head(&self, embed_f32: &Tensor) -> Result<Linear> {
        if self.file.has_tensor("output.weight") {
            return self.linear("output.weight");
        }
        Ok(match self.precision {
            Precision::F32 => Linear { weight: Weight::Dense(embed_f32.clone()), bias: None },
            Precision::Quantized => self.linear("token_embd.weight")?,
        })
    }
}
