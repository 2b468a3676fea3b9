//! `invscale logprobs`: every token of a text with its id and log-prob — the tool to reach for
//! when numbers disagree with another harness.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use invscale_harness::models::parse_devices;
use invscale_harness::{LoadedModel, ModelRequest};
use invscale_models::BosPolicy;
use serde_json::json;

use super::{BAD_INPUT, Dtype, bad_input, harness_failure};

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
    /// cpu, cuda or cuda:N (GPU builds).
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
        Ok(d) if d.len() == 1 => d,
        Ok(_) => return bad_input(format!("--device {}: one device scores a text", args.device)),
        Err(e) => return bad_input(e),
    };
    let request = ModelRequest { reference: args.model.clone(), gguf_file: args.gguf_file.clone(), precision: args.dtype.precision(), devices };
    let loaded = match LoadedModel::load(&request, &invscale_hub::Hub::from_env()) {
        Ok(m) => m,
        Err(e) => return harness_failure(e),
    };
    let model = loaded.model();
    let mut ids: Vec<u32> = model.bos_token(args.bos.into()).into_iter().collect();
    let first_text_token = ids.len();
    ids.extend(model.tokenizer.encode(&text)?);
    if ids.len() < 2 {
        eprintln!("error: the text gives {} token(s); at least 2 are needed to score one", ids.len());
        return Ok(ExitCode::from(BAD_INPUT));
    }
    let scores = model.score(&ids, 1)?;
    let total: f64 = scores.iter().map(|s| f64::from(s.logprob)).sum();
    if args.json {
        let tokens: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let s = i.checked_sub(1).map(|j| scores[j]);
                json!({"pos": i, "id": id, "text": model.tokenizer.token_text(id), "bos": i < first_text_token,
                       "logprob": s.map(|s| s.logprob), "greedy": s.map(|s| s.greedy)})
            })
            .collect();
        let out = json!({"model": model.path, "arch": model.arch, "params": model.params, "precision": format!("{:?}", model.precision).to_lowercase(),
                         "tokenizer": model.tokenizer.kind, "tokens": tokens, "sum_logprob": total});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} ({}, {:.0}M parameters, {:?}; tokenizer {})",
        model.path.display(),
        model.arch,
        model.params as f64 / 1e6,
        model.precision,
        model.tokenizer.kind
    );
    println!("{:>5}  {:>7}  {:>10}  {:6}  TOKEN", "POS", "ID", "LOGPROB", "GREEDY");
    for (i, &id) in ids.iter().enumerate() {
        let (lp, greedy) = match i.checked_sub(1).map(|j| scores[j]) {
            Some(s) => (format!("{:.4}", s.logprob), if s.greedy { "yes" } else { "" }),
            None => ("—".to_string(), ""),
        };
        println!("{i:>5}  {id:>7}  {lp:>10}  {greedy:6}  {:?}", model.tokenizer.token_text(id));
    }
    println!("sum of log-probs over {} scored tokens: {total:.4}", scores.len());
    Ok(ExitCode::SUCCESS)
}
