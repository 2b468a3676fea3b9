//! Rotary position embeddings: interleaved pairs (llama.cpp's GGUF layout) or halves (HF's
//! `rotate_half`), whole or partial (GPT-NeoX's `rotary_pct`), with linear scaling.

use candle_core::{D, DType, Device, Tensor};

use crate::error::Result;
use crate::profile;

/// How rotary embeddings pair dimensions: llama.cpp's "normal" (adjacent pairs; llama-arch GGUF
/// files permute Q/K for it) or NeoX's halves (HF's `rotate_half`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    Interleaved,
    Halves,
}

pub struct Rotary {
    pub style: RopeStyle,
    /// `1 / base^(2i/d)` for the rotated dimensions.
    inv_freq: Vec<f32>,
    /// Positions are divided by this (linear RoPE scaling; 1 for none).
    scale: f32,
    /// The last tables made (every layer of a pass, q and k, rotates by the same positions):
    /// positions, dtype, cos, sin.
    last: std::sync::Mutex<Option<(Vec<usize>, DType, Tensor, Tensor)>>,
}

impl Rotary {
    pub fn new(style: RopeStyle, rotary_dim: usize, base: f64, linear_scale: f64) -> Rotary {
        // As HF computes it: inv_freq = 1 / base^(arange(0, d, 2) / d) in float32.
        let inv_freq = (0..rotary_dim)
            .step_by(2)
            .map(|i| 1.0f32 / (base as f32).powf(i as f32 / rotary_dim as f32))
            .collect();
        Rotary { style, inv_freq, scale: linear_scale as f32, last: std::sync::Mutex::new(None) }
    }

    /// cos and sin, `[t, rotary_dim / 2]`, for the given positions.
    fn tables(&self, positions: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut freqs = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            let pos = p as f32 / self.scale;
            freqs.extend(self.inv_freq.iter().map(|f| pos * f));
        }
        let freqs = Tensor::from_vec(freqs, (positions.len(), half), device)?;
        Ok((freqs.cos()?, freqs.sin()?))
    }

    /// Rotates `x: [1, heads, t, head_dim]`, token `i` at `positions[i]`.
    pub fn apply(&self, x: &Tensor, positions: &[usize]) -> Result<Tensor> {
        profile::time("rotary", x.device(), || self.apply_inner(x, positions))
    }

    /// Dimensions of a head that turn.
    pub fn rotary_dim(&self) -> usize {
        self.inv_freq.len() * 2
    }

    /// cos and sin, `[t, rotary_dim / 2]` in `dtype` on `device` (computed in f32 and cast, as
    /// transformers does), made once for all the layers of a pass.
    pub fn cos_sin(&self, positions: &[usize], dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match &*last {
            Some((p, d, cos, sin)) if p == positions && *d == dtype && cos.device().same_device(device) => (cos.clone(), sin.clone()),
            _ => {
                let (cos, sin) = self.tables(positions, device)?;
                let (cos, sin) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
                *last = Some((positions.to_vec(), dtype, cos.clone(), sin.clone()));
                (cos, sin)
            }
        })
    }

    fn apply_inner(&self, x: &Tensor, positions: &[usize]) -> Result<Tensor> {
        let (_, _, t, head_dim) = x.dims4()?;
        assert_eq!(t, positions.len());
        let (cos, sin) = self.cos_sin(positions, x.dtype(), x.device())?;
        let rot = self.rotary_dim();
        // A `[1, heads, t, d]` view of a `[1, t, heads, d]` tensor (`split_heads` on a GPU):
        // rotated in that layout, and returned as such a view again.
        let tokens_major = x.transpose(1, 2)?;
        if rot == head_dim && self.style == RopeStyle::Halves && tokens_major.is_contiguous() && !x.is_contiguous() {
            return Ok(candle_nn::rotary_emb::rope_thd(&tokens_major, &cos, &sin)?.transpose(1, 2)?);
        }
        let rope = |x: &Tensor| -> Result<Tensor> {
            let x = x.contiguous()?;
            Ok(match self.style {
                RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?,
                RopeStyle::Halves => candle_nn::rotary_emb::rope(&x, &cos, &sin)?,
            })
        };
        if rot == head_dim {
            return rope(x);
        }
        // Partial rotary (GPT-NeoX's rotary_pct): only the first `rot` dimensions turn.
        let rotated = rope(&x.narrow(D::Minus1, 0, rot)?)?;
        let rest = x.narrow(D::Minus1, rot, head_dim - rot)?;
        Ok(Tensor::cat(&[rotated, rest], D::Minus1)?)
    }
}

#[cfg(all(test, feature = "cuda"))]
mod tests {
    use super::*;
    use crate::layers::tensor::split_heads;

    /// On a GPU, rotary embeddings of `split_heads`' view (rotated token-major by `rope_thd`)
    /// are those of the contiguous heads, bit for bit.
    #[test]
    fn rotary_of_a_token_major_view_equals_rotary_of_contiguous_heads() {
        let gpu = Device::new_cuda(0).expect("this test needs a CUDA GPU: build the tests with --features cuda and run them on a machine with one");
        let rotary = Rotary::new(RopeStyle::Halves, 64, 10_000.0, 1.0);
        let positions: Vec<usize> = (0..50).chain(20..40).collect();
        let x = Tensor::randn(0f32, 1.0, (positions.len(), 4 * 64), &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap().to_device(&gpu).unwrap();
        let view = split_heads(&x, 4).unwrap();
        assert!(!view.is_contiguous());
        let a = rotary.apply(&view, &positions).unwrap();
        let b = rotary.apply(&view.contiguous().unwrap(), &positions).unwrap();
        let f32_cpu = |x: Tensor| x.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(f32_cpu(a), f32_cpu(b));
    }
}
