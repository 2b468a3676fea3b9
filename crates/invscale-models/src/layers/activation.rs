//! Activations: GELU (erf and tanh forms, rounded as PyTorch rounds them) and SiLU, with the
//! gated MLP's `silu(gate) · up` in one buffer on the CPU.

use candle_core::{DType, Device, Tensor};
use invscale_kernels::cpu::activation as cpu_activation;
use invscale_kernels::cuda::ops as cuda_ops;

use crate::error::Result;
use crate::layers::tensor::cpu_f32;
use crate::profile;

/// GELU, tanh approximation: vectorised on CPUs with AVX-512 or AVX2 in f32 (see `cpu_gelu`), candle's
/// elsewhere.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    profile::time("activation", x.device(), || {
        if x.device().is_cpu() && x.dtype() == DType::F32 && cpu_activation::available() {
            let mut v = x.flatten_all()?.to_vec1::<f32>()?;
            cpu_activation::gelu_tanh_in_place(&mut v);
            return Ok(Tensor::from_vec(v, x.shape(), x.device())?);
        }
        Ok(x.gelu()?)
    })
}

/// GELU, erf form (`nn.GELU()`; GPT-NeoX): on CUDA in half types computed in f32 and rounded
/// once, as PyTorch does; candle's elsewhere.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    profile::time("activation", x.device(), || {
        if cuda_ops::half_on_cuda(x) {
            return Ok(cuda_ops::gelu(x, false)?);
        }
        Ok(x.gelu_erf()?)
    })
}

/// GELU, tanh approximation, as PyTorch's `gelu(approximate="tanh")` computes it (Gemma's
/// `gelu_pytorch_tanh`: one rounding on CUDA in half types); [`gelu_tanh`] elsewhere.
pub fn gelu_pytorch_tanh(x: &Tensor) -> Result<Tensor> {
    if cuda_ops::half_on_cuda(x) {
        return profile::time("activation", x.device(), || Ok(cuda_ops::gelu(x, true)?));
    }
    gelu_tanh(x)
}

pub fn silu(x: &Tensor) -> Result<Tensor> {
    profile::time("activation", x.device(), || Ok(candle_nn::ops::silu(x)?))
}

/// `silu(gate) · up()`, the gated MLP's product. On a CPU with AVX-512 or AVX2, in f32, in one buffer: the
/// gate's values are taken, its tensor dropped before `up` is computed, and the product written
/// over them (candle's ops keep gate, silu(gate), up and the product alive at once: four
/// `[tokens, intermediate]` tensors, the largest part of a long prompt's pass memory); and with a
/// vector exp (`cpu_gelu`). Elsewhere candle's ops.
pub fn silu_mul(gate: Tensor, up: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
    if !(gate.device().is_cpu() && gate.dtype() == DType::F32 && cpu_activation::available()) {
        let activated = silu(&gate)?;
        drop(gate);
        return Ok((activated * up()?)?);
    }
    let shape = gate.shape().clone();
    let mut g = gate.flatten_all()?.to_vec1::<f32>()?;
    drop(gate);
    let u = up()?.contiguous()?;
    profile::time("activation", u.device(), || {
        let (storage, layout) = u.storage_and_layout();
        cpu_activation::silu_mul_in_place(&mut g, cpu_f32(&storage, layout)?);
        Ok(())
    })?;
    drop(u);
    Ok(Tensor::from_vec(g, shape, &Device::Cpu)?)
}
