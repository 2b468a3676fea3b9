pub mod data;
pub mod logprobs;
pub mod run;
pub mod scale;
pub mod server;
pub mod tasks;

/// Exit status for bad input: data, task files, arguments (clap also uses 2).
pub const BAD_INPUT: u8 = 2;

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

/// Prints a bad-input error; exit status 2.
pub fn bad_input(message: impl std::fmt::Display) -> anyhow::Result<std::process::ExitCode> {
    eprintln!("error: {message}");
    Ok(std::process::ExitCode::from(BAD_INPUT))
}

/// A harness call's error: bad input exits 2, a failure of the work 1.
pub fn harness_failure(e: invscale_harness::HarnessError) -> anyhow::Result<std::process::ExitCode> {
    if e.is_bad_input() { bad_input(e) } else { Err(e.into()) }
}
