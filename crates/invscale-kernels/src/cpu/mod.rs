//! CPU kernels. Each vector path has a portable twin it is tested against, and says on which
//! CPUs it runs (`available`/`kernel`): the callers fall back to candle's ops elsewhere.

pub mod activation;
pub mod attention;
pub mod block_quant;
pub mod exp;
pub mod gemm;
