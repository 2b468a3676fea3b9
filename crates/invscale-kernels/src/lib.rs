//! The compute kernels of invscale's model runtime, apart from the layers that call them: each
//! takes plain slices or candle tensors and knows nothing of models.
//!
//! - [`cpu`]: llama.cpp's block-quantized products (AVX-512 VNNI, AVX2 and portable), the fused
//!   attention over a pass's blocks, vectorised GELU/SiLU and exponentials.
//! - [`cuda`]: half-precision work done in one launch where candle takes several (RMSNorm,
//!   LayerNorm, GELU, GPT-NeoX's rotary, a bias inside the GEMM, TF32 products) and the fused
//!   attention kernel; the `.cu` sources sit beside their bindings and are compiled to PTX by
//!   `build.rs` with the `cuda` feature.

pub mod cpu;
pub mod cuda;
