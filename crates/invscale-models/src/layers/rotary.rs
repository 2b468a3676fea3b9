//! Rotary position embeddings: interleaved pairs (llama.cpp's GGUF layout) or halves (HF's
//! `rotate_half`), whole or partial (GPT-NeoX's `rotary_pct`), and the frequency scalings of
//! long-context checkpoints as transformers computes them (`modeling_rope_utils`): linear,
//! Llama 3's, YaRN (OLMo 3, Qwen3 extended), LongRoPE (Phi-3/3.5/4-mini), and llama.cpp's
//! `rope_freqs` factors (a Llama 3 GGUF's scaling, precomputed).

use candle_core::{D, DType, Device, Tensor};

use crate::error::Result;
use crate::layers::tensor::cpu_f32;
use crate::profile;

/// How rotary embeddings pair dimensions: llama.cpp's "normal" (adjacent pairs; llama-arch GGUF
/// files permute Q/K for it) or NeoX's halves (HF's `rotate_half`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    Interleaved,
    Halves,
}

/// How a checkpoint rescales the rotary frequencies for a longer context.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by the factor.
    Linear(f64),
    /// Llama 3.1+: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original: f64 },
    /// YaRN: frequencies interpolated below a correction range, extrapolated above it, the
    /// tables scaled by `attention_factor`.
    Yarn { factor: f64, original: f64, beta_fast: f64, beta_slow: f64, attention_factor: f64, truncate: bool },
    /// LongRoPE: each frequency divided by its factor, `short` while a pass stays within
    /// `original` positions, `long` beyond (transformers' rule, per forward call); tables scaled.
    LongRope { short: Vec<f64>, long: Vec<f64>, original: usize, attention_factor: f64 },
    /// llama.cpp's `rope_freqs.weight`: each frequency divided by its factor.
    Factors(Vec<f32>),
}

/// A checkpoint's rotary: its base and scaling.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeSpec {
    pub base: f64,
    pub scaling: RopeScaling,
}

pub struct Rotary {
    pub style: RopeStyle,
    /// `1 / base^(2i/d)` for the rotated dimensions (scaled as the checkpoint says).
    inv_freq: Vec<f32>,
    /// LongRoPE's frequencies past `original` positions: `(original, inv_freq)`.
    long: Option<(usize, Vec<f32>)>,
    /// cos and sin are multiplied by this (YaRN's and LongRoPE's attention factor; 1 for none).
    attention: f32,
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
        Rotary { style, inv_freq, long: None, attention: 1.0, scale: linear_scale as f32, last: std::sync::Mutex::new(None) }
    }

    /// A rotary as transformers' `ROPE_INIT_FUNCTIONS` make it for `spec` (f32 arithmetic where
    /// torch's is f32).
    pub fn scaled(style: RopeStyle, rotary_dim: usize, spec: &RopeSpec) -> Rotary {
        let mut r = Rotary::new(style, rotary_dim, spec.base, 1.0);
        let dim = rotary_dim as f64;
        match &spec.scaling {
            RopeScaling::None => {}
            RopeScaling::Linear(f) => r.scale = *f as f32,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original } => {
                let (low_wavelen, high_wavelen) = (original / low_freq_factor, original / high_freq_factor);
                for f in r.inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    let scaled = if f64::from(wavelen) > low_wavelen { *f / *factor as f32 } else { *f };
                    let smooth = ((*original / f64::from(wavelen) - low_freq_factor) / (high_freq_factor - low_freq_factor)) as f32;
                    let medium = !(f64::from(wavelen) < high_wavelen) && !(f64::from(wavelen) > low_wavelen);
                    *f = if medium { (1.0 - smooth) * scaled / *factor as f32 + smooth * scaled } else { scaled };
                }
            }
            RopeScaling::Yarn { factor, original, beta_fast, beta_slow, attention_factor, truncate } => {
                let correction = |rotations: f64| dim * (original / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * spec.base.ln());
                let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
                if *truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0), high.min(dim - 1.0));
                if low == high {
                    high += 0.001;
                }
                for (i, f) in r.inv_freq.iter_mut().enumerate() {
                    let pos_freq = (spec.base as f32).powf((2 * i) as f32 / rotary_dim as f32);
                    let (extrapolation, interpolation) = (1.0 / pos_freq, 1.0 / (*factor as f32 * pos_freq));
                    let ramp = ((i as f32 - low as f32) / (high - low) as f32).clamp(0.0, 1.0);
                    let keep = 1.0 - ramp;
                    *f = interpolation * (1.0 - keep) + extrapolation * keep;
                }
                r.attention = *attention_factor as f32;
            }
            RopeScaling::LongRope { short, long, original, attention_factor } => {
                let with = |factors: &[f64]| -> Vec<f32> {
                    (0..rotary_dim / 2)
                        .map(|i| 1.0 / (factors.get(i).copied().unwrap_or(1.0) as f32 * (spec.base as f32).powf((2 * i) as f32 / rotary_dim as f32)))
                        .collect()
                };
                r.inv_freq = with(short);
                r.long = Some((*original, with(long)));
                r.attention = *attention_factor as f32;
            }
            RopeScaling::Factors(factors) => {
                for (f, k) in r.inv_freq.iter_mut().zip(factors) {
                    *f /= k;
                }
            }
        }
        r
    }

    /// cos and sin, `[t, rotary_dim / 2]`, for the given positions.
    fn tables(&self, positions: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let inv_freq = match &self.long {
            Some((original, long)) if positions.iter().any(|&p| p >= *original) => long,
            _ => &self.inv_freq,
        };
        let mut freqs = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            let pos = p as f32 / self.scale;
            freqs.extend(inv_freq.iter().map(|f| pos * f));
        }
        let freqs = Tensor::from_vec(freqs, (positions.len(), half), device)?;
        Ok(match self.attention {
            1.0 => (freqs.cos()?, freqs.sin()?),
            a => ((freqs.cos()? * f64::from(a))?, (freqs.sin()? * f64::from(a))?),
        })
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
            if x.device().is_cpu() && x.dtype() == DType::F32 {
                let (_, _, t, d) = x.dims4()?;
                let (cos, sin) = (cos.contiguous()?, sin.contiguous()?);
                let ((xs, xl), (cs, cl), (ss, sl)) = (x.storage_and_layout(), cos.storage_and_layout(), sin.storage_and_layout());
                let mut out = vec![0f32; x.elem_count()];
                let halves = self.style == RopeStyle::Halves;
                invscale_kernels::cpu::rotary::rope(cpu_f32(&xs, xl)?, t, d, cpu_f32(&cs, cl)?, cpu_f32(&ss, sl)?, halves, &mut out);
                drop((xs, cs, ss));
                return Ok(Tensor::from_vec(out, x.shape(), x.device())?);
            }
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
