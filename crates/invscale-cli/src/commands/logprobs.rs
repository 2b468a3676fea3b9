//! `invscale logprobs`: every token of a text with its id and log-prob — the tool to reach for
//! when numbers disagree with another harness.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use invscale_harness::models::parse_devices;
use invscale_harness::text::ScoredText;
use invscale_harness::{LoadedModel, ModelRequest};
use invscale_models::BosPolicy;

use super::{Dtype, bad_input, harness_failure};

#[derive(Args)]
pub struct LogprobsArgs {
    /// A .gguf file, a model folder, or a hub id (`org/name`, `org/name@revision`).
    #[arg(long)]
    model: String,
    /// Which .gguf of a folder or hub repository (lm-eval's `gguf_file=`).
    #[arg(long, value_name = "FILE")]
    gguf_file: Option<String>,
    /// f32: dequantize every weight (exact; what transformers does with gguf_file=).
    /// quantized: keep GGUF quantization (fast; llama.cpp's arithmetic).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// cpu, cuda or cuda:N (GPU builds); cuda:0+cuda:1 splits the layers over two GPUs.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Put BOS first: auto follows the tokenizer's default.
    #[arg(long, value_enum, default_value_t = Bos::Auto)]
    bos: Bos,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The text (`-` reads standard input).
    #[arg(long, required = true)]
    text: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Bos {
    Auto,
    Always,
    Never,
}

impl From<Bos> for BosPolicy {
    fn from(b: Bos) -> BosPolicy {
        match b {
            Bos::Auto => BosPolicy::Auto,
            Bos::Always => BosPolicy::Always,
            Bos::Never => BosPolicy::Never,
        }
    }
}

pub fn run(args: LogprobsArgs) -> anyhow::Result<ExitCode> {
    let text = if args.text == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        args.text.clone()
    };
    if args.device == "cpu" {
        invscale_models::tune_allocator();
    }
    let devices = match parse_devices(&args.device) {
        Ok(d @ invscale_harness::models::Placement::Copies(_)) if d.copies(0).len() == 1 => d,
        Ok(_) => return bad_input(format!("--device {}: one copy of the model scores a text (no `,`, no auto)", args.device)),
        Err(e) => return bad_input(e),
    };
    let request = ModelRequest { reference: args.model.clone(), gguf_file: args.gguf_file.clone(), precision: args.dtype.precision(), devices, server: None };
    let loaded = match LoadedModel::load(&request, &invscale_hub::Hub::from_env()) {
        Ok(m) => m,
        Err(e) => return harness_failure(e),
    };
    let model = loaded.local().expect("an in-process model");
    let scored = match ScoredText::score(model, &text, args.bos.into()) {
        Ok(s) => s,
        Err(e) => return harness_failure(e),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&scored.to_json(model))?);
    } else {
        print!("{}", scored.to_table(model));
    }
    Ok(ExitCode::SUCCESS)
}
