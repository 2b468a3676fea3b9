pub mod data;
pub mod logprobs;
pub mod progress;
pub mod run;
pub mod scale;
pub mod tasks;

/// Exit status for bad input: data, task files, arguments (clap also uses 2).
pub const BAD_INPUT: u8 = 2;

/// Shows the end of a long text (prompts end where the model continues), escapes visible.
pub use invscale_scale::report::tail;

/// `--dtype`: how the model computes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Dtype {
    /// Every weight in f32 (GGUF dequantized): exact, what transformers and lm-eval's hf backend
    /// compute with dtype=float32.
    #[value(alias = "float32")]
    F32,
    /// GGUF weights kept quantized (llama.cpp's arithmetic).
    Quantized,
    /// bfloat16 weights and activations (GPUs); log-softmax in f32.
    #[value(alias = "bfloat16")]
    Bf16,
    /// float16 weights and activations (GPUs); log-softmax in f32.
    #[value(alias = "float16")]
    F16,
}

impl Dtype {
    pub fn precision(self) -> invscale_models::Precision {
        use invscale_models::Precision;
        match self {
            Dtype::F32 => Precision::F32,
            Dtype::Quantized => Precision::Quantized,
            Dtype::Bf16 => Precision::Bf16,
            Dtype::F16 => Precision::F16,
        }
    }
}

/// `--device cpu|cuda|cuda:N`.
pub fn parse_device(name: &str) -> Result<candle_core::Device, String> {
    let index = match name {
        "cpu" => return Ok(candle_core::Device::Cpu),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => i,
            _ => return Err(format!("--device {name}: expected cpu, cuda or cuda:N")),
        },
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(format!(
            "--device {name}: this build of invscale has only the CPU backend (build with `--features cuda`: scripts/build-cuda.sh)"
        ));
    }
    candle_core::Device::new_cuda(index).map_err(|e| format!("--device {name}: {e}"))
}
