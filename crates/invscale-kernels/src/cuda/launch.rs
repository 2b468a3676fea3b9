//! What the CUDA kernels of this crate share: their PTX modules (compiled by `build.rs`), views
//! of tensors' device memory for a launch, and the warm-up of a run's kernels while its weights
//! upload. Without the `cuda` feature only the CPU side of each op exists, which says so.

/// CPU forwards of the CUDA-only custom ops (`ops`' and `attention`'s): they are only
/// ever applied to CUDA tensors.
pub(crate) fn cpu_bail<T>(name: &str) -> candle_core::Result<T> {
    candle_core::bail!("{name} runs on CUDA only")
}

#[cfg(feature = "cuda")]
pub use device::*;

#[cfg(feature = "cuda")]
mod device {
    pub use candle_core::cuda_backend::cudarc::driver::{CudaView, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};
    pub use candle_core::cuda_backend::{CudaDType, WrapErr};

    pub const OPS_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/ops.ptx"));
    pub const ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));

    /// Gets the kernels of a pass ready on a thread of its own while the weights upload: one
    /// matrix product in the run's dtype (cuBLAS loads its kernels and sets itself up on its first
    /// call: ~120 ms of the first pass of every run on an H200 before this), and the kernel
    /// modules every pass uses, candle's and ours (the driver reads their PTX, and on a machine
    /// that has not seen them compiles it). lm-eval's batch-size probe does this for PyTorch
    /// before its scoring starts. A module a pass asks for first is loaded by the pass, as it
    /// would be without this; failures are left for the pass to report. Only modules a pass
    /// surely uses: loading one nobody calls costs its compilation on a new machine. The thread
    /// is not waited for.
    pub fn warm_kernels(dev: &candle_core::CudaDevice, dtype: candle_core::DType, quantized: bool) {
        use candle_core::cuda_backend::kernels as k;
        let dev = dev.clone();
        let half = dtype != candle_core::DType::F32;
        std::thread::spawn(move || {
            let device = candle_core::Device::Cuda(dev.clone());
            let product = || -> candle_core::Result<()> {
                // `x Wᵀ`, as a linear layer multiplies.
                let x = candle_core::Tensor::zeros((1024, 1024), dtype, &device)?;
                let w = candle_core::Tensor::zeros((2048, 1024), dtype, &device)?;
                x.matmul(&w.t()?)?;
                device.synchronize()
            };
            let _ = product();
            // One function each: loading any of a module's functions loads the whole module.
            // Copies, residual sums, embeddings, the LM head's log-softmax; its cast to f32 in
            // half-precision runs; GGUF tensors dequantized on the device in quantized ones.
            let mut candle = vec![("ucopy_f32", &k::UNARY), ("badd_f32", &k::BINARY), ("is_u32_f32", &k::INDEXING), ("fast_sum_f32", &k::REDUCE)];
            if half {
                candle.push(("cast_f32_bf16", &k::CAST));
            }
            if quantized {
                candle.push(("quantize_q8_1", &k::QUANTIZED));
            }
            for (name, module) in candle {
                let _ = dev.get_or_load_func(name, module);
            }
            if half {
                let _ = dev.get_or_load_custom_func("rms_norm_bf16", "invscale_ops", OPS_PTX);
                let _ = dev.get_or_load_custom_func("attention_bf16_64", "invscale_attention", ATTENTION_PTX);
            }
        });
    }

    /// The element types the kernels come in.
    pub trait Half: CudaDType + DeviceRepr + ValidAsZeroBits + candle_core::WithDType {}
    impl Half for half::bf16 {}
    impl Half for half::f16 {}

    /// A tensor's elements from its first on (read by its layout's strides, the last
    /// dimension contiguous).
    pub fn strided_view<'s, T: CudaDType>(s: &'s candle_core::CudaStorage, l: &candle_core::Layout) -> candle_core::Result<CudaView<'s, T>> {
        if l.stride().last() != Some(&1) {
            candle_core::bail!("a CUDA kernel's input has a strided last dimension");
        }
        let slice = s.as_cuda_slice::<T>()?;
        Ok(slice.slice(l.start_offset()..slice.len()))
    }

    /// A contiguous tensor's elements on the device.
    pub fn view<'s, T: CudaDType>(s: &'s candle_core::CudaStorage, l: &candle_core::Layout) -> candle_core::Result<CudaView<'s, T>> {
        let (a, b) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("a CUDA kernel's input is not contiguous".into()))?;
        Ok(s.as_cuda_slice::<T>()?.slice(a..b))
    }
}
