//! Linear layers: a weight matrix dense, kept quantized in candle's storage, or in a block format
//! multiplied by our own kernel (llama.cpp's arithmetic), with an optional bias.

use std::sync::OnceLock;

use candle_core::quantized::QMatMul;
use candle_core::{DType, Module, Tensor};
use invscale_kernels::cpu::block_quant::{BlockFormat, BlockMatrix, QuantizedRows};
use invscale_kernels::cpu::gemm::{GemmKernel, PackedMatrix};
use invscale_kernels::cuda::ops as cuda_ops;

use crate::error::Result;
use crate::profile;

/// A weight matrix `[out, in]`, applied as `x Wᵀ`.
pub enum Weight {
    /// Full precision (GGUF dequantized to f32, or an HF checkpoint's tensor).
    Dense(Tensor),
    /// Kept quantized; candle's kernels quantize the activations too (llama.cpp's scheme).
    Quantized(QMatMul),
    /// Kept quantized in a 32-value block format, multiplied by our own CPU kernel
    /// (llama.cpp's arithmetic; see `block_quant`).
    Blocks(BlockMatrix),
    /// f32 on the CPU, packed once for our own product (`cpu::gemm`: ~0.9× MKL's rate where
    /// candle's reached ~0.55×; a row's result independent of the batch).
    Packed(PackedMatrix),
    /// f32 on the CPU, `[out, in]` read where it lies by our row-major product (a tied LM head:
    /// the embedding matrix itself; candle's product packed all of it again at every call).
    RowMajor(Tensor),
}

pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A dense layer: an f32 CPU matrix packed for our product where this CPU runs it
    /// (`INVSCALE_GEMM=candle`: candle's product instead), anything else kept as it is.
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        let packable = weight.device().is_cpu() && weight.dtype() == DType::F32 && weight.rank() == 2 && GemmKernel::detect().is_some();
        let weight = match packable {
            true => {
                let (n, k) = weight.dims2()?;
                let weight = weight.contiguous()?;
                let (storage, layout) = weight.storage_and_layout();
                Weight::Packed(PackedMatrix::pack(crate::layers::tensor::cpu_f32(&storage, layout)?, n, k))
            }
            false => Weight::Dense(weight),
        };
        Ok(Linear { weight, bias })
    }

    /// The LM head tied to an embedding matrix `[vocab, hidden]`: read in place (a packed copy
    /// would hold it twice), by our row-major product where this CPU runs it.
    pub fn tied(embed: &Tensor) -> Linear {
        let ours = embed.device().is_cpu() && embed.dtype() == DType::F32 && embed.rank() == 2 && embed.is_contiguous() && GemmKernel::detect().is_some();
        let weight = if ours { Weight::RowMajor(embed.clone()) } else { Weight::Dense(embed.clone()) };
        Linear { weight, bias: None }
    }

    /// Whether each output row is computed alone, the same bits whatever rows share the product:
    /// true of our block kernel (integer block dot products, blocks summed in order); dense
    /// products (gemm's blocking follows the row count) can move the last bits.
    pub fn rows_independent(&self) -> bool {
        matches!(self.weight, Weight::Blocks(_) | Weight::Packed(_) | Weight::RowMajor(_))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Weight::Dense(w), Some(b)) = (&self.weight, &self.bias)
            && cuda_ops::half_on_cuda(x)
            && x.rank() == 2
            && w.dtype() == x.dtype()
        {
            return profile::time("matmul", x.device(), || Ok(cuda_ops::linear_bias(x, w, b)?));
        }
        let y = profile::time("matmul", x.device(), || {
            Ok(match &self.weight {
                Weight::Dense(w) => x.matmul(&w.t()?)?,
                Weight::Quantized(q) => quantized_product(q, x)?,
                Weight::Blocks(w) => block_matmul(w, x)?,
                Weight::Packed(w) => packed_matmul(w, x)?,
                Weight::RowMajor(w) => row_major_matmul(w, x)?,
            })
        })?;
        profile::time("bias", x.device(), || {
            Ok(match &self.bias {
                // On the GPU a broadcast add costs integer divisions per element; the bias as a
                // rank-1 product (ones · b, exact) makes it an add of two contiguous tensors.
                Some(b) if y.device().is_cuda() && b.rank() == 1 => {
                    let out = b.dim(0)?;
                    let rows = y.elem_count() / out;
                    let ones = Tensor::ones((rows, 1), y.dtype(), y.device())?;
                    let bias = ones.matmul(&b.to_dtype(y.dtype())?.reshape((1, out))?)?;
                    let bias = bias.reshape(y.shape())?;
                    (y + bias)?
                }
                Some(b) => y.broadcast_add(b)?,
                None => y,
            })
        })
    }
}

/// A product with a matrix kept quantized in candle's storage (on the GPU; on the CPU the formats
/// our block kernel does not take). On the GPU the matrix is dequantized for the product and
/// multiplied in TF32 with f32 sums: candle's own quantized CUDA kernels (its port of llama.cpp's
/// MMQ/MMVQ) err 2.3–4× as much as llama.cpp's CPU scheme on Q4_1 matrices and on Q4_0/Q5_0 with
/// ≤ 8 rows (test `gpu_quantized_products_err_less_than_the_cpus` below), which put the GPU
/// 2.4× as far from llama.cpp as every other path on a real SmolLM2 (bench/gpu/RESULTS.md,
/// session 11); TF32 of the dequantized matrix errs ~40× less than any 8-bit activation scheme,
/// and on a Llama-3-8B shape scores 1.4× as fast as candle's kernels (bench/gpu/quantized_speed.py).
/// The matrix stays quantized in memory (one dequantized copy at a time, while it is used).
/// `INVSCALE_GPU_QUANTIZED_KERNELS=candle` runs candle's kernels instead (for speed comparisons).
pub fn quantized_product(q: &QMatMul, x: &Tensor) -> Result<Tensor> {
    static CANDLE_KERNELS: OnceLock<bool> = OnceLock::new();
    let candle = *CANDLE_KERNELS.get_or_init(|| std::env::var("INVSCALE_GPU_QUANTIZED_KERNELS").is_ok_and(|v| v == "candle"));
    if let (true, QMatMul::QTensor(t)) = (cfg!(feature = "cuda") && x.device().is_cuda() && !candle, q) {
        let w = t.dequantize(x.device())?;
        let k = w.dim(1)?;
        let dims = x.dims().to_vec();
        let rows = x.elem_count() / k;
        let y = cuda_ops::matmul_tf32(&x.to_dtype(DType::F32)?.reshape((rows, k))?, &w)?;
        let mut out = dims;
        *out.last_mut().expect("a product's input has a last dimension") = w.dim(0)?;
        return Ok(y.reshape(out)?.to_dtype(x.dtype())?);
    }
    Ok(q.forward(x)?)
}

/// `x` quantized for `format`, reusing the last quantization when the same tensor comes again
/// (Q, K and V read one input; so do gate and up): tensors are immutable and their ids unique.
fn quantized_input(x: &Tensor, format: BlockFormat, m: usize, k: usize) -> Result<std::rc::Rc<QuantizedRows>> {
    use std::cell::RefCell;
    use std::rc::Rc;
    thread_local! {
        static LAST: RefCell<Option<(candle_core::TensorId, Rc<QuantizedRows>)>> = const { RefCell::new(None) };
    }
    let hit = LAST.with(|l| l.borrow().as_ref().filter(|(id, q)| *id == x.id() && q.serve(format)).map(|(_, q)| Rc::clone(q)));
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let acts = Rc::new(QuantizedRows::new(&xs, m, k, format));
    LAST.with(|l| *l.borrow_mut() = Some((x.id(), Rc::clone(&acts))));
    Ok(acts)
}

/// Rows of `x` against an `[n, k]` matrix, and the product's dims (`x`'s with the last one `n`).
fn product_rows(x: &Tensor, n: usize, k: usize) -> Result<(usize, Vec<usize>)> {
    let mut dims = x.dims().to_vec();
    if dims.pop() != Some(k) {
        return Err(candle_core::Error::Msg(format!("matmul: input {:?} against a [{n}, {k}] matrix", x.dims())).into());
    }
    let m = dims.iter().product();
    dims.push(n);
    Ok((m, dims))
}

fn packed_matmul(w: &PackedMatrix, x: &Tensor) -> Result<Tensor> {
    let (n, k) = (w.rows(), w.cols());
    let (m, dims) = product_rows(x, n, k)?;
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let mut y = vec![0f32; m * n];
    w.matmul(crate::layers::tensor::cpu_f32(&storage, layout)?, m, &mut y);
    Ok(Tensor::from_vec(y, dims, x.device())?)
}

fn row_major_matmul(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    let (m, dims) = product_rows(x, n, k)?;
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let ((ws, wl), (xs, xl)) = (w.storage_and_layout(), x.storage_and_layout());
    let mut y = vec![0f32; m * n];
    let cpu_f32 = crate::layers::tensor::cpu_f32;
    invscale_kernels::cpu::gemm::matmul_row_major(cpu_f32(&ws, wl)?, n, k, cpu_f32(&xs, xl)?, m, &mut y);
    drop((ws, xs));
    Ok(Tensor::from_vec(y, dims, x.device())?)
}

fn block_matmul(w: &BlockMatrix, x: &Tensor) -> Result<Tensor> {
    let (n, k) = w.shape();
    let (m, dims) = product_rows(x, n, k)?;
    let acts = quantized_input(x, w.format(), m, k)?;
    let mut y = vec![0f32; m * n];
    w.matmul_quantized(&acts, &mut y);
    Ok(Tensor::from_vec(y, dims, x.device())?)
}

#[cfg(all(test, feature = "cuda"))]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    fn gpu() -> Device {
        Device::new_cuda(0).expect("this test needs a CUDA GPU: build the tests with --features cuda and run them on a machine with one")
    }

    /// The GPU's quantized product (`quantized_product`: the matrix dequantized, TF32
    /// with f32 sums) against the CPU's (llama.cpp's CPU scheme: activations quantized to Q8_1 /
    /// Q8_0 / Q8_K blocks), both held to the exact product of the dequantized matrix with
    /// unquantized activations (f64 sums); activations with outlier channels, as after an
    /// RMSNorm. The GPU must err at most a tenth as much as the CPU (relative RMS error and
    /// largest error), on every format of MODELS.md's files, with few rows and many, on
    /// SmolLM2-135M's shapes (576 columns: not a multiple of 256) and a K-quant model's.
    /// Measured on an H200: TF32 2.5–2.9e-4 against the CPU's 1.1–2.9e-2. Candle's own quantized
    /// CUDA kernels, which the GPU used before, failed this at even 1.5× the CPU's error: Q4_1
    /// 2.6–4.6e-2 against 1.1e-2, Q4_0 / Q5_0 with 5 rows 2.7–2.8e-2 (bench/gpu/RESULTS.md).
    #[test]
    fn gpu_quantized_products_err_less_than_the_cpus() {
        use candle_core::Module;
        use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
        let gpu = gpu();
        let exact = |x: &Tensor, w: &Tensor| x.to_dtype(DType::F64).unwrap().matmul(&w.to_dtype(DType::F64).unwrap().t().unwrap()).unwrap();
        let errors = |got: &Tensor, want: &Tensor| {
            let d = (got.to_device(&Device::Cpu).unwrap().to_dtype(DType::F64).unwrap() - want).unwrap();
            let rms = |t: &Tensor| t.sqr().unwrap().mean_all().unwrap().sqrt().unwrap().to_scalar::<f64>().unwrap();
            (rms(&d) / rms(want), d.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap())
        };
        let mut report = Vec::new();
        for (dtype, n, k) in [(GgmlDType::Q4_1, 1536, 576), (GgmlDType::Q4_1, 576, 1536), (GgmlDType::Q8_0, 1536, 576),
            (GgmlDType::Q4_0, 576, 1536), (GgmlDType::Q5_0, 576, 1536), (GgmlDType::Q4K, 576, 1536), (GgmlDType::Q6K, 1536, 2048)] {
            let w = Tensor::randn(0f32, 0.05, (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let wq = q.dequantize(&Device::Cpu).unwrap();
            let scale: Vec<f32> = (0..k).map(|i| if i % 97 == 3 { 20.0 } else { 1.0 }).collect();
            let scale = Tensor::from_vec(scale, k, &Device::Cpu).unwrap();
            // Uploaded as a GGUF's bytes are (zeroed padding after the last row).
            let on_gpu = candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &q.data().unwrap(), vec![n, k], &gpu).unwrap();
            let on_gpu = QMatMul::from_qtensor(on_gpu).unwrap();
            let on_cpu = QMatMul::from_qtensor(q).unwrap();
            for m in [5, 300] {
                let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap().broadcast_mul(&scale).unwrap();
                let want = exact(&x, &wq);
                let (cpu_rel, cpu_max) = errors(&on_cpu.forward(&x).unwrap(), &want);
                let got = quantized_product(&on_gpu, &x.to_device(&gpu).unwrap()).unwrap();
                assert_eq!(got.dims(), &[m, n]);
                let (gpu_rel, gpu_max) = errors(&got, &want);
                let line = format!("{dtype:?} {n}x{k}, {m} rows: relative RMS error cpu {cpu_rel:.2e} gpu {gpu_rel:.2e}; largest cpu {cpu_max:.2e} gpu {gpu_max:.2e}");
                println!("{line}");
                report.push((gpu_rel <= cpu_rel / 10.0 && gpu_max <= cpu_max / 10.0, line));
            }
        }
        let bad: Vec<_> = report.iter().filter(|(ok, _)| !ok).map(|(_, l)| l.as_str()).collect();
        assert!(bad.is_empty(), "the GPU's quantized product errs too much:\n{}", bad.join("\n"));
    }
}
