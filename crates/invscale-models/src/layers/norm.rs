//! RMSNorm and LayerNorm, in f32 as transformers computes them whatever the activations' dtype.

use candle_core::{DType, Tensor};
use invscale_kernels::cuda::ops as cuda_ops;

use crate::error::Result;
use crate::layers::tensor::cpu_f32;
use crate::profile;

pub struct RmsNorm {
    /// Always f32 (norm weights are small and their rounding matters in half precision).
    pub weight: Tensor,
    pub eps: f32,
    /// Half precision: cast the normalised input back to its dtype *before* scaling by the weight
    /// (Llama-style norms in transformers), rather than after (Gemma's `1 + w`).
    pub scale_after_cast: bool,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        profile::time("norm", x.device(), || self.forward_inner(x))
    }

    fn forward_inner(&self, x: &Tensor) -> Result<Tensor> {
        if x.dtype() == DType::F32 && x.device().is_cpu() {
            let x = x.contiguous()?;
            let (xs, xl) = x.storage_and_layout();
            let (ws, wl) = self.weight.storage_and_layout();
            let mut out = vec![0f32; x.elem_count()];
            invscale_kernels::cpu::norm::rms_norm(cpu_f32(&xs, xl)?, cpu_f32(&ws, wl)?, self.eps, &mut out);
            drop((xs, ws));
            return Ok(Tensor::from_vec(out, x.shape(), x.device())?);
        }
        if x.dtype() == DType::F32 {
            // Contiguous: on a GPU, Gemma's q/k norms get `split_heads`' view.
            return Ok(candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)?);
        }
        if cuda_ops::half_on_cuda(x) {
            return Ok(cuda_ops::rms_norm(x, &self.weight, self.eps, self.scale_after_cast)?);
        }
        // In f32 whatever the dtype, as transformers' RMSNorms do, then cast back.
        let x32 = x.to_dtype(DType::F32)?;
        if self.scale_after_cast {
            let ones = Tensor::ones_like(&self.weight)?;
            let normed = candle_nn::ops::rms_norm(&x32, &ones, self.eps)?.to_dtype(x.dtype())?;
            Ok(normed.broadcast_mul(&self.weight.to_dtype(x.dtype())?)?)
        } else {
            Ok(candle_nn::ops::rms_norm(&x32, &self.weight, self.eps)?.to_dtype(x.dtype())?)
        }
    }
}

pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f32,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        profile::time("norm", x.device(), || {
            if cuda_ops::half_on_cuda(x) && self.weight.dtype() == x.dtype() && self.bias.dtype() == x.dtype() {
                return Ok(cuda_ops::layer_norm(x, &self.weight, &self.bias, self.eps)?);
            }
            Ok(candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)?)
        })
    }
}
