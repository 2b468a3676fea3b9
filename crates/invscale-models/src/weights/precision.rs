//! How a model computes: f32, GGUF kept quantized, or half precision on GPUs.

/// How a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Every tensor in f32 (GGUF dequantized): the exact path, what transformers does in float32.
    F32,
    /// GGUF matrices stay quantized (llama.cpp's arithmetic): the fast path on the CPU.
    Quantized,
    /// Weights and activations in bfloat16 (for GPUs); log-softmax still in f32.
    Bf16,
    /// Weights and activations in float16 (for GPUs); log-softmax still in f32.
    F16,
}

impl Precision {
    /// The dtype of dense weights and activations.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::Bf16 => candle_core::DType::BF16,
            Precision::F16 => candle_core::DType::F16,
            Precision::F32 | Precision::Quantized => candle_core::DType::F32,
        }
    }

    /// Bytes a weight takes at this precision (quantized: about a byte, as Q8_0; less for fewer bits).
    pub fn bytes_per_weight(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::Bf16 | Precision::F16 => 2,
            Precision::Quantized => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Quantized => "quantized",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}
