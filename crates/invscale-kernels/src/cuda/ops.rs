//! Half-precision work on CUDA done in one step where candle takes several, rounding where
//! transformers rounds (`ops.cu` and cuBLAS):
//! - [`rms_norm`]: one launch a norm (candle: cast to f32, norm, cast back, scale by the
//!   weight with a broadcast multiply — four passes over the activations);
//! - [`linear_bias`]: `x Wᵀ + b` as one GEMM with β = 1 over a C filled with the bias, so the
//!   bias joins the f32 accumulator before the one rounding, as PyTorch's `addmm` (and its
//!   cuBLASLt bias epilogue) does; a separate add rounds twice and passes over the output again;
//! - [`gelu`]: GELU in f32 rounded once, as PyTorch's kernel (candle's rounds between steps);
//! - [`layer_norm`]: one launch a LayerNorm in f32, rounded once;
//! - [`neox_qkv_rope`]: GPT-NeoX's q, k, v out of its fused projection, q and k partially rotated,
//!   in one pass (candle: a copy each, then narrow, rotate and concatenate q and k).

use candle_core::{DType, Tensor};

use candle_core::Result;

/// Whether `x` is a half-precision tensor on a CUDA device of a build with CUDA: what these
/// ops take.
pub fn half_on_cuda(x: &Tensor) -> bool {
    cfg!(feature = "cuda") && x.device().is_cuda() && matches!(x.dtype(), DType::BF16 | DType::F16)
}

/// RMSNorm over the last dimension of `x` in f32 (see `ops.cu` for the two roundings):
/// `weight` in f32; `scale_after_cast`: Llama's `w · r.to(dtype)`, else Gemma's `(r · w).to(dtype)`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32, scale_after_cast: bool) -> Result<Tensor> {
    let x = x.contiguous()?;
    Ok(x.apply_op2_no_bwd(&weight.to_dtype(DType::F32)?, &RmsNorm { eps, scale_after_cast })?)
}

/// `x Wᵀ + b`: `x: [rows, k]`, `w: [n, k]`, `b: [n]`, all of one half type.
pub fn linear_bias(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (x, w, b) = (x.contiguous()?, w.contiguous()?, b.to_dtype(x.dtype())?.contiguous()?);
    Ok(x.apply_op3_no_bwd(&w, &b, &LinearBias)?)
}

/// `x Wᵀ` in f32 with TF32 tensor-core products (inputs rounded to 10-bit mantissas, sums in
/// f32): `x: [rows, k]`, `w: [n, k]`, both f32 on a GPU.
pub fn matmul_tf32(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    Ok(x.apply_op2_no_bwd(&w, &MatmulTf32)?)
}

/// GELU of a half-type tensor, computed in f32 and rounded once as PyTorch does: the erf form
/// (`nn.GELU()`), or with `tanh_form` the tanh approximation (`approximate="tanh"`).
pub fn gelu(x: &Tensor, tanh_form: bool) -> Result<Tensor> {
    Ok(pair_aligned(x)?.apply_op1_no_bwd(&Gelu { tanh_form })?)
}

/// `x` contiguous and starting on an even element, for kernels that move two half values (4
/// bytes) at a time.
fn pair_aligned(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    Ok(if x.layout().start_offset() % 2 == 0 { x } else { x.copy()? })
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Gelu {
    tanh_form: bool,
}

impl candle_core::CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "invscale-gelu"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &candle_core::Layout) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        crate::cuda::launch::cpu_bail(self.name())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, x: &candle_core::CudaStorage, lx: &candle_core::Layout) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        use crate::cuda::launch::*;

        let n = lx.shape().elem_count();
        let dev = x.device().clone();
        fn run<T: Half>(name: &str, dev: &candle_core::CudaDevice, x: &candle_core::CudaStorage, lx: &candle_core::Layout, n: usize, tanh_form: bool) -> candle_core::Result<candle_core::CudaStorage> {
            let x = view::<T>(x, lx)?;
            // SAFETY: the kernel writes all n values.
            let out = unsafe { dev.alloc::<T>(n)? };
            let func = dev.get_or_load_custom_func(name, "invscale_ops", OPS_PTX)?;
            let mut builder = func.builder();
            builder.arg(&x);
            builder.arg(&out);
            candle_core::builder_arg!(builder, n, i32::from(tanh_form));
            let cfg = LaunchConfig { grid_dim: ((n / 2).div_ceil(256).clamp(1, 65_535) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            // SAFETY: reads and writes n values, two a thread (grid-stride loop): `out` is fresh and
            // `x` starts on an even element (`pair_aligned`), so both are 4-byte aligned.
            unsafe { builder.launch(cfg) }.w()?;
            Ok(candle_core::CudaStorage::wrap_cuda_slice(out, dev.clone()))
        }
        let out = match x.dtype() {
            DType::BF16 => run::<half::bf16>("gelu_bf16", &dev, x, lx, n, self.tanh_form)?,
            DType::F16 => run::<half::f16>("gelu_f16", &dev, x, lx, n, self.tanh_form)?,
            other => candle_core::bail!("gelu: {other:?} is not a half type"),
        };
        Ok((out, lx.shape().clone()))
    }
}

/// GPT-NeoX's attention inputs: `qkv: [t, heads · 3 · d]` (each head's q, k, v side by side)
/// → `[3, t, heads, d]`, q and k rotated (rotate_half) on their first `rot` dimensions by
/// `cos`, `sin: [t, rot / 2]` (in `qkv`'s half type), with transformers' roundings.
/// Needs an even head size and `rot` a multiple of 4 ([`neox_qkv_rope_fits`]).
pub fn neox_qkv_rope(qkv: &Tensor, cos: &Tensor, sin: &Tensor, heads: usize, rot: usize) -> Result<Tensor> {
    let (qkv, cos, sin) = (pair_aligned(qkv)?, pair_aligned(cos)?, pair_aligned(sin)?);
    Ok(qkv.apply_op3_no_bwd(&cos, &sin, &NeoxQkvRope { heads, rot })?)
}

/// Whether [`neox_qkv_rope`] takes heads of `head_dim` rotating `rot` dimensions (it moves two
/// values at a time).
pub fn neox_qkv_rope_fits(head_dim: usize, rot: usize) -> bool {
    head_dim % 2 == 0 && rot % 4 == 0 && rot <= head_dim
}

/// LayerNorm over the last dimension in f32 with one rounding, as PyTorch's: `w`, `b` in `x`'s
/// half type.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    let (x, w, b) = (x.contiguous()?, w.contiguous()?, b.contiguous()?);
    Ok(x.apply_op3_no_bwd(&w, &b, &LayerNorm { eps })?)
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct LayerNorm {
    eps: f32,
}

impl candle_core::CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "invscale-layer-norm"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        crate::cuda::launch::cpu_bail(self.name())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        lx: &candle_core::Layout,
        w: &candle_core::CudaStorage,
        lw: &candle_core::Layout,
        b: &candle_core::CudaStorage,
        lb: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        use crate::cuda::launch::*;

        let cols = lx.dims().last().copied().unwrap_or(1);
        let rows = lx.shape().elem_count() / cols.max(1);
        if lw.shape().elem_count() != cols || lb.shape().elem_count() != cols {
            candle_core::bail!("layer_norm: weight {:?} and bias {:?} for rows of {cols}", lw.dims(), lb.dims());
        }
        let dev = x.device().clone();
        fn run<T: Half>(name: &str, dev: &candle_core::CudaDevice, parts: [(&candle_core::CudaStorage, &candle_core::Layout); 3], (rows, cols): (usize, usize), eps: f32) -> candle_core::Result<candle_core::CudaStorage> {
            let (x, w, b) = (view::<T>(parts[0].0, parts[0].1)?, view::<T>(parts[1].0, parts[1].1)?, view::<T>(parts[2].0, parts[2].1)?);
            // SAFETY: the kernel writes every value of every row.
            let out = unsafe { dev.alloc::<T>(rows * cols)? };
            let func = dev.get_or_load_custom_func(name, "invscale_ops", OPS_PTX)?;
            let mut builder = func.builder();
            builder.arg(&x);
            builder.arg(&w);
            builder.arg(&b);
            builder.arg(&out);
            candle_core::builder_arg!(builder, cols as i32, eps);
            let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            // SAFETY: one CTA a row reads its `cols` inputs, the weight and the bias, writes its `cols` outputs.
            unsafe { builder.launch(cfg) }.w()?;
            Ok(candle_core::CudaStorage::wrap_cuda_slice(out, dev.clone()))
        }
        let parts = [(x, lx), (w, lw), (b, lb)];
        let out = match x.dtype() {
            DType::BF16 => run::<half::bf16>("layer_norm_bf16", &dev, parts, (rows, cols), self.eps)?,
            DType::F16 => run::<half::f16>("layer_norm_f16", &dev, parts, (rows, cols), self.eps)?,
            other => candle_core::bail!("layer_norm: {other:?} is not a half type"),
        };
        Ok((out, lx.shape().clone()))
    }
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct NeoxQkvRope {
    heads: usize,
    rot: usize,
}

impl candle_core::CustomOp3 for NeoxQkvRope {
    fn name(&self) -> &'static str {
        "invscale-neox-qkv-rope"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        crate::cuda::launch::cpu_bail(self.name())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        qkv: &candle_core::CudaStorage,
        lq: &candle_core::Layout,
        cos: &candle_core::CudaStorage,
        lc: &candle_core::Layout,
        sin: &candle_core::CudaStorage,
        ls: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        use crate::cuda::launch::*;

        let (t, width) = lq.shape().dims2()?;
        let (heads, rot) = (self.heads, self.rot);
        let d = width / (3 * heads).max(1);
        if width != 3 * heads * d || d % 2 != 0 || rot > d || rot % 4 != 0 || lc.shape().dims2()? != (t, rot / 2) || ls.shape().dims2()? != (t, rot / 2) {
            candle_core::bail!("neox_qkv_rope: qkv {:?}, cos {:?}, sin {:?} for {heads} heads rotating {rot}", lq.dims(), lc.dims(), ls.dims());
        }
        let dev = qkv.device().clone();
        fn run<T: Half>(name: &str, dev: &candle_core::CudaDevice, parts: [(&candle_core::CudaStorage, &candle_core::Layout); 3], (t, heads, d, rot): (usize, usize, usize, usize)) -> candle_core::Result<candle_core::CudaStorage> {
            let (qkv, cos, sin) = (view::<T>(parts[0].0, parts[0].1)?, view::<T>(parts[1].0, parts[1].1)?, view::<T>(parts[2].0, parts[2].1)?);
            // SAFETY: the kernel writes every one of the 3·t·heads·d values.
            let out = unsafe { dev.alloc::<T>(3 * t * heads * d)? };
            let func = dev.get_or_load_custom_func(name, "invscale_ops", OPS_PTX)?;
            let mut builder = func.builder();
            builder.arg(&qkv);
            builder.arg(&cos);
            builder.arg(&sin);
            builder.arg(&out);
            candle_core::builder_arg!(builder, t as i32, heads as i32, d as i32, rot as i32);
            let threads = (heads * d / 2).next_multiple_of(32).min(1024) as u32;
            let cfg = LaunchConfig { grid_dim: (t as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
            // SAFETY: a CTA per token reads its heads' q, k, v and its cos and sin and writes its
            // three parts of `out`, two values at a time at even offsets of buffers that start on
            // an even element (`out` fresh, the inputs through `pair_aligned`).
            unsafe { builder.launch(cfg) }.w()?;
            Ok(candle_core::CudaStorage::wrap_cuda_slice(out, dev.clone()))
        }
        let parts = [(qkv, lq), (cos, lc), (sin, ls)];
        let out = match qkv.dtype() {
            DType::BF16 => run::<half::bf16>("neox_qkv_rope_bf16", &dev, parts, (t, heads, d, rot))?,
            DType::F16 => run::<half::f16>("neox_qkv_rope_f16", &dev, parts, (t, heads, d, rot))?,
            other => candle_core::bail!("neox_qkv_rope: {other:?} is not a half type"),
        };
        Ok((out, (3, t, heads, d).into()))
    }
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct RmsNorm {
    eps: f32,
    scale_after_cast: bool,
}

struct LinearBias;


impl candle_core::CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "invscale-rms-norm"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        crate::cuda::launch::cpu_bail(self.name())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        lx: &candle_core::Layout,
        w: &candle_core::CudaStorage,
        lw: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        use crate::cuda::launch::*;

        let cols = lx.dims().last().copied().unwrap_or(1);
        let rows = lx.shape().elem_count() / cols.max(1);
        if lw.shape().elem_count() != cols {
            candle_core::bail!("rms_norm: weight of {} values for rows of {cols}", lw.shape().elem_count());
        }
        let dev = x.device().clone();
        fn run<T: Half>(name: &str, dev: &candle_core::CudaDevice, x: &candle_core::CudaStorage, lx: &candle_core::Layout, w: &candle_core::CudaStorage, lw: &candle_core::Layout, rows: usize, cols: usize, op: &RmsNorm) -> candle_core::Result<candle_core::CudaStorage> {
            let (x, w) = (view::<T>(x, lx)?, view::<f32>(w, lw)?);
            let out = dev.alloc_zeros::<T>(rows * cols)?;
            let func = dev.get_or_load_custom_func(name, "invscale_ops", OPS_PTX)?;
            let mut builder = func.builder();
            builder.arg(&x);
            builder.arg(&w);
            builder.arg(&out);
            candle_core::builder_arg!(builder, cols as i32, op.eps, i32::from(op.scale_after_cast));
            let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            // SAFETY: one CTA a row reads its `cols` inputs and weights and writes its `cols` outputs.
            unsafe { builder.launch(cfg) }.w()?;
            Ok(candle_core::CudaStorage::wrap_cuda_slice(out, dev.clone()))
        }
        let out = match x.dtype() {
            DType::BF16 => run::<half::bf16>("rms_norm_bf16", &dev, x, lx, w, lw, rows, cols, self)?,
            DType::F16 => run::<half::f16>("rms_norm_f16", &dev, x, lx, w, lw, rows, cols, self)?,
            other => candle_core::bail!("rms_norm: {other:?} is not a half type"),
        };
        Ok((out, lx.shape().clone()))
    }
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct MatmulTf32;

impl candle_core::CustomOp2 for MatmulTf32 {
    fn name(&self) -> &'static str {
        "invscale-matmul-tf32"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        crate::cuda::launch::cpu_bail(self.name())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        lx: &candle_core::Layout,
        w: &candle_core::CudaStorage,
        lw: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::cublas::{result::gemm_ex, sys};
        use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
        use crate::cuda::launch::*;

        let (rows, k) = lx.shape().dims2()?;
        let (n, kw) = lw.shape().dims2()?;
        if kw != k || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
            candle_core::bail!("matmul_tf32: x [{rows}, {k}] {:?}, w [{n}, {kw}] {:?}", x.dtype(), w.dtype());
        }
        let dev = x.device().clone();
        let (xv, wv) = (view::<f32>(x, lx)?, view::<f32>(w, lw)?);
        // SAFETY: the GEMM writes every element (β = 0).
        let mut out = unsafe { dev.alloc::<f32>(rows * n)? };
        let stream = dev.cuda_stream();
        let blas = dev.cublas_handle();
        let (one, zero) = (1f32, 0f32);
        {
            let (xp, _gx) = xv.device_ptr(&stream);
            let (wp, _gw) = wv.device_ptr(&stream);
            let (op, _go) = out.device_ptr_mut(&stream);
            // Row-major Y = X Wᵀ as column-major Yᵀ = W Xᵀ (as linear_bias).
            // SAFETY: the shapes above are those of the buffers; the handle runs on their stream.
            unsafe {
                gemm_ex(
                    *blas.handle(),
                    sys::cublasOperation_t::CUBLAS_OP_T,
                    sys::cublasOperation_t::CUBLAS_OP_N,
                    n as i32,
                    rows as i32,
                    k as i32,
                    (&one as *const f32).cast(),
                    wp as *const _,
                    sys::cudaDataType_t::CUDA_R_32F,
                    k as i32,
                    xp as *const _,
                    sys::cudaDataType_t::CUDA_R_32F,
                    k as i32,
                    (&zero as *const f32).cast(),
                    op as *mut _,
                    sys::cudaDataType_t::CUDA_R_32F,
                    n as i32,
                    sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
                    sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(|e| candle_core::Error::Msg(format!("matmul_tf32: {e:?}")))?;
        }
        Ok((candle_core::CudaStorage::wrap_cuda_slice(out, dev.clone()), (rows, n).into()))
    }
}

impl candle_core::CustomOp3 for LinearBias {
    fn name(&self) -> &'static str {
        "invscale-linear-bias"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        crate::cuda::launch::cpu_bail(self.name())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        lx: &candle_core::Layout,
        w: &candle_core::CudaStorage,
        lw: &candle_core::Layout,
        b: &candle_core::CudaStorage,
        lb: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::cublas::{Gemm, GemmConfig, sys::cublasOperation_t};
        use crate::cuda::launch::*;

        let (rows, k) = lx.shape().dims2()?;
        let (n, kw) = lw.shape().dims2()?;
        if kw != k || lb.shape().elem_count() != n {
            candle_core::bail!("linear_bias: x [{rows}, {k}], w [{n}, {kw}], b of {}", lb.shape().elem_count());
        }
        let dev = x.device().clone();
        fn run<T: Half>(name: &str, dev: &candle_core::CudaDevice, (x, lx): (&candle_core::CudaStorage, &candle_core::Layout), (w, lw): (&candle_core::CudaStorage, &candle_core::Layout), (b, lb): (&candle_core::CudaStorage, &candle_core::Layout), (rows, n, k): (usize, usize, usize)) -> candle_core::Result<candle_core::CudaStorage>
        where
            candle_core::cuda_backend::cudarc::cublas::CudaBlas: Gemm<T>,
        {
            let (x, w, b) = (view::<T>(x, lx)?, view::<T>(w, lw)?, view::<T>(b, lb)?);
            // SAFETY: every element is written by fill_rows before the GEMM reads it.
            let mut out = unsafe { dev.alloc::<T>(rows * n)? };
            let func = dev.get_or_load_custom_func(name, "invscale_ops", OPS_PTX)?;
            let mut builder = func.builder();
            builder.arg(&b);
            builder.arg(&out);
            candle_core::builder_arg!(builder, rows as i32, n as i32);
            let cfg = LaunchConfig { grid_dim: (rows.clamp(1, 65_535) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            // SAFETY: writes rows × n values of `out`, reads n of `b`.
            unsafe { builder.launch(cfg) }.w()?;
            // Row-major Y = X Wᵀ is column-major Yᵀ = W Xᵀ: W's row-major buffer read transposed
            // (k × n, ld k), X's as is (k × rows, ld k), Y's (n × rows, ld n); β = 1 adds C = b.
            let one = T::from_f64(1.0);
            let gemm = GemmConfig {
                transa: cublasOperation_t::CUBLAS_OP_T,
                transb: cublasOperation_t::CUBLAS_OP_N,
                m: n as i32,
                n: rows as i32,
                k: k as i32,
                alpha: one,
                lda: k as i32,
                ldb: k as i32,
                beta: one,
                ldc: n as i32,
            };
            // SAFETY: the shapes above are those of the buffers.
            unsafe { dev.cublas_handle().gemm(gemm, &w, &x, &mut out) }.w()?;
            Ok(candle_core::CudaStorage::wrap_cuda_slice(out, dev.clone()))
        }
        let parts = ((x, lx), (w, lw), (b, lb));
        let out = match x.dtype() {
            DType::BF16 => run::<half::bf16>("fill_rows_bf16", &dev, parts.0, parts.1, parts.2, (rows, n, k))?,
            DType::F16 => run::<half::f16>("fill_rows_f16", &dev, parts.0, parts.1, parts.2, (rows, n, k))?,
            other => candle_core::bail!("linear_bias: {other:?} is not a half type"),
        };
        Ok((out, (rows, n).into()))
    }
}


#[cfg(all(test, feature = "cuda"))]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// Largest |a − b| in units of b's half-type ulp (2⁻⁷·|b| for bf16, 2⁻¹⁰·|b| for f16; for
    /// |b| < 1/16 that of 1/16: near zero, f32 accumulation order moves more ulps of a tiny
    /// value), and the share of values equal.
    fn ulps(a: &Tensor, b: &Tensor, dtype: DType) -> (f32, f64) {
        let bits = if dtype == DType::BF16 { 7 } else { 10 };
        let (a, b) = (a.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (y.abs().max(0.0625) * 2f32.powi(-bits))).fold(0.0, f32::max);
        let equal = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / b.len() as f64;
        (max, equal)
    }

    fn gpu() -> Device {
        Device::new_cuda(0).expect("this test needs a CUDA GPU: build the tests with --features cuda and run them on a machine with one")
    }

    /// The fused RMSNorm rounds where transformers does: against the same steps in f32 on the
    /// CPU with the roundings made explicit: ≥ 99% equal, the rest within one ulp of the half
    /// type (the row sum's order and rsqrt's last bit differ), two with the weight after the
    /// cast (a flipped first rounding, scaled by |w| up to ~2, then rounded again); both weight
    /// placements, rows wider than a CTA.
    #[test]
    fn rms_norm_rounds_as_transformers() {
        let gpu = gpu();
        for dtype in [DType::BF16, DType::F16] {
            let round = |x: &Tensor| x.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
            let x = round(&Tensor::randn(0f32, 2.0, (37, 1000), &Device::Cpu).unwrap());
            let w = round(&Tensor::randn(1f32, 0.3, 1000, &Device::Cpu).unwrap());
            let inv = (x.sqr().unwrap().mean_keepdim(1).unwrap() + 1e-6).unwrap().sqrt().unwrap().recip().unwrap();
            let r = x.broadcast_mul(&inv).unwrap();
            for after in [true, false] {
                let expected = if after { round(&round(&r).broadcast_mul(&w).unwrap()) } else { round(&r.broadcast_mul(&w).unwrap()) };
                let got = rms_norm(&x.to_dtype(dtype).unwrap().to_device(&gpu).unwrap(), &w.to_device(&gpu).unwrap(), 1e-6, after).unwrap();
                let (off, equal) = ulps(&got.to_device(&Device::Cpu).unwrap(), &expected, dtype);
                let ulps_allowed = if after { 2.0 } else { 1.0 };
                assert!(off <= ulps_allowed && equal >= 0.99, "{dtype:?}, scale after cast {after}: {off} ulps, {equal} equal");
            }
        }
    }

    /// `x Wᵀ + b` rounds once: against the f32 product plus bias on the CPU, rounded: ≥ 99%
    /// equal, the rest within one ulp (accumulation order). Rounding the product before adding
    /// the bias (what a separate add does) leaves far fewer equal.
    #[test]
    fn linear_bias_adds_before_rounding() {
        let gpu = gpu();
        for dtype in [DType::BF16, DType::F16] {
            let round = |x: &Tensor| x.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
            let x = round(&Tensor::randn(0f32, 1.0, (70, 96), &Device::Cpu).unwrap());
            let w = round(&Tensor::randn(0f32, 0.1, (50, 96), &Device::Cpu).unwrap());
            let b = round(&Tensor::randn(0f32, 1.0, 50, &Device::Cpu).unwrap());
            let expected = round(&x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap());
            let on = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
            let got = linear_bias(&on(&x), &on(&w), &on(&b)).unwrap();
            let (off, equal) = ulps(&got.to_device(&Device::Cpu).unwrap(), &expected, dtype);
            assert!(off <= 1.0 && equal >= 0.99, "{dtype:?}: {off} ulps, {equal} equal");
            let twice = round(&(round(&x.matmul(&w.t().unwrap()).unwrap()).broadcast_add(&b).unwrap()));
            let (_, equal_twice) = ulps(&twice, &expected, dtype);
            assert!(equal_twice < 0.9, "the test cannot tell one rounding from two: {equal_twice} equal");
        }
    }

    /// GELU rounds once: against PyTorch's formulas in f32 on the CPU, rounded: within one ulp of
    /// the half type everywhere, and equal on ≥ 99% of the values of magnitude ≥ 1/16. (Nearer
    /// zero, on the negative side, `1 + erf` cancels: the CPU's erf and CUDA's `erff` — PyTorch's
    /// — differ in their last bits, which the cancellation magnifies; measured 98.6% equal over
    /// all values in bf16.)
    #[test]
    fn gelu_rounds_once() {
        let gpu = gpu();
        for dtype in [DType::BF16, DType::F16] {
            let round = |x: &Tensor| x.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
            let x = round(&Tensor::randn(0f32, 3.0, (64, 1000), &Device::Cpu).unwrap());
            let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for tanh_form in [false, true] {
                let want: Vec<f32> = xs
                    .iter()
                    .map(|&v| {
                        if tanh_form {
                            0.5 * v * (1.0 + (0.797_884_6_f32 * (v + 0.044715 * (v * v * v))).tanh())
                        } else {
                            v * 0.5 * (1.0 + libm_erf(v * std::f32::consts::FRAC_1_SQRT_2))
                        }
                    })
                    .collect();
                let want = round(&Tensor::from_vec(want, x.shape(), &Device::Cpu).unwrap());
                let got = gelu(&x.to_dtype(dtype).unwrap().to_device(&gpu).unwrap(), tanh_form).unwrap();
                let got = got.to_device(&Device::Cpu).unwrap();
                let (off, _) = ulps(&got, &want, dtype);
                let (got, want) = (got.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
                let away: Vec<(f32, f32)> = got.into_iter().zip(want).filter(|(_, w)| w.abs() >= 0.0625).collect();
                let equal = away.iter().filter(|(g, w)| g == w).count() as f64 / away.len() as f64;
                assert!(off <= 1.0 && equal >= 0.99, "{dtype:?}, tanh {tanh_form}: {off} ulps, {equal} equal away from zero");
            }
        }
    }

    /// erf in f64 (Abramowitz–Stegun 7.1.26 is too coarse): its Taylor series near 0, continued
    /// fraction far out — enough digits that f32 rounding is the only error.
    fn libm_erf(x: f32) -> f32 {
        let x = f64::from(x);
        let (a, sign) = (x.abs(), x.signum());
        let value = if a < 2.5 {
            // Σ (−1)ⁿ x^(2n+1) / (n! (2n+1)) · 2/√π
            let (mut term, mut sum, mut n) = (a, a, 0.0f64);
            while term.abs() > 1e-17 * sum.abs() {
                n += 1.0;
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc by its continued fraction: e^(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …))))
            let mut f = 0.0f64;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
        };
        (sign * value) as f32
    }

    /// LayerNorm rounds once: against PyTorch's formula in f32 on the CPU (mean and biased
    /// variance of the row), rounded: within one ulp of the half type, ≥ 99% equal (the sums'
    /// order and rsqrt's last bit differ); rows wider than a CTA.
    #[test]
    fn layer_norm_rounds_as_pytorch() {
        let gpu = gpu();
        for dtype in [DType::BF16, DType::F16] {
            let round = |x: &Tensor| x.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
            let x = round(&(Tensor::randn(0f32, 2.0, (37, 1000), &Device::Cpu).unwrap() + 0.5).unwrap());
            let w = round(&Tensor::randn(1f32, 0.3, 1000, &Device::Cpu).unwrap());
            let b = round(&Tensor::randn(0f32, 0.3, 1000, &Device::Cpu).unwrap());
            let centred = x.broadcast_sub(&x.mean_keepdim(1).unwrap()).unwrap();
            let rstd = (centred.sqr().unwrap().mean_keepdim(1).unwrap() + 1e-5).unwrap().sqrt().unwrap().recip().unwrap();
            let expected = round(&centred.broadcast_mul(&rstd).unwrap().broadcast_mul(&w).unwrap().broadcast_add(&b).unwrap());
            let on = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
            let got = layer_norm(&on(&x), &on(&w), &on(&b), 1e-5).unwrap();
            let (off, equal) = ulps(&got.to_device(&Device::Cpu).unwrap(), &expected, dtype);
            assert!(off <= 1.0 && equal >= 0.99, "{dtype:?}: {off} ulps, {equal} equal");
        }
    }

    /// GPT-NeoX's partial rotary in one kernel: against transformers' steps on the CPU in f32
    /// with its roundings made explicit (`q·cos` and `rotate_half(q)·sin` each rounded, then their
    /// sum), q and k rotated on their first 16 of 64 dimensions (Pythia's rotary_pct 0.25) and
    /// passed through on the rest, v copied: every value equal.
    #[test]
    fn neox_qkv_rope_rounds_as_transformers() {
        let gpu = gpu();
        let (t, heads, d, rot) = (37, 4, 64, 16);
        let half = rot / 2;
        for dtype in [DType::BF16, DType::F16] {
            let round = |x: &Tensor| x.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
            let qkv = round(&Tensor::randn(0f32, 2.0, (t, heads * 3 * d), &Device::Cpu).unwrap());
            let angles = Tensor::randn(0f32, 3.0, (t, half), &Device::Cpu).unwrap();
            let (cos, sin) = (round(&angles.cos().unwrap()), round(&angles.sin().unwrap()));
            let parts = qkv.reshape((t, heads, 3, d)).unwrap();
            let (c, s) = (cos.reshape((t, 1, half)).unwrap(), sin.reshape((t, 1, half)).unwrap());
            let turn = |j: usize| {
                let x = parts.narrow(2, j, 1).unwrap().squeeze(2).unwrap();
                let (x1, x2, rest) = (x.narrow(2, 0, half).unwrap(), x.narrow(2, half, half).unwrap(), x.narrow(2, rot, d - rot).unwrap());
                let first = round(&(round(&x1.broadcast_mul(&c).unwrap()) - round(&x2.broadcast_mul(&s).unwrap())).unwrap());
                let second = round(&(round(&x2.broadcast_mul(&c).unwrap()) + round(&x1.broadcast_mul(&s).unwrap())).unwrap());
                Tensor::cat(&[first, second, rest], 2).unwrap()
            };
            let expected = Tensor::stack(&[turn(0), turn(1), parts.narrow(2, 2, 1).unwrap().squeeze(2).unwrap()], 0).unwrap();
            let on = |x: &Tensor| x.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
            let got = neox_qkv_rope(&on(&qkv), &on(&cos), &on(&sin), heads, rot).unwrap();
            assert_eq!(got.dims(), &[3, t, heads, d]);
            let (off, equal) = ulps(&got.to_device(&Device::Cpu).unwrap(), &expected, dtype);
            assert!(equal == 1.0, "{dtype:?}: {off} ulps, {equal} equal");
        }
    }
}
