//! `invscale run`: evaluate a model on tasks, as lm-evaluation-harness would, and never lose work.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use invscale_eval::RunSettings;
use invscale_harness::cache::CacheOptions;
use invscale_harness::console::Console;
use invscale_harness::models::parse_devices;
use invscale_harness::run_files::{self, Invocation};
use invscale_harness::{LoadedModel, ModelRequest, Options, TaskSet, evaluate_model};
use invscale_models::profile::stamp;
use invscale_tasks::DataOptions;
use invscale_tasks::spec::{Metric, RequestMode};

use super::logprobs::Bos;
use super::server::ServerArgs;
use super::{Dtype, bad_input, harness_failure};

#[derive(Args)]
#[command(after_help = "\
Examples:
  invscale run --model ~/.cache/invscale/models/SmolLM2-135M-Instruct.Q4_1.gguf --tasks inverse_scaling_mc \\
      --data-dir ../shared/data/inverse_scaling/official_release --output-path results --log-samples
  invscale run --model org/name --gguf-file model.Q4_K_M.gguf --tasks neqa,memo_trap --limit 50
  invscale run --model m.gguf --tasks my_task.csv --metrics loss,coverage --mode prize

From lm-evaluation-harness:
  --model hf --model_args pretrained=P,gguf_file=F   →  --model P --gguf-file F
  --model_args ...,add_bos_token=True                →  --bos always
  --model_args ...,dtype=float32                     →  --dtype f32
  --tasks, --limit, --batch_size, --device, --seed, --output_path, --log_samples: the same (with - for _)
  --use_cache DIR                                    →  always on (--cache-dir, --no-cache)

Finished requests are saved as each document completes: rerun the same command after an
interruption and only the rest is computed.")]
pub struct RunArgs {
    /// A .gguf file, a model folder, or a hub id (`org/name`, `org/name@revision`).
    #[arg(long)]
    model: String,
    /// Which .gguf of a folder or hub repository (lm-eval's `gguf_file=`).
    #[arg(long, value_name = "FILE")]
    gguf_file: Option<String>,
    /// Tasks, groups, task files (.toml) or data files, comma-separated (see `invscale tasks`).
    #[arg(long, required = true, value_name = "TASKS")]
    tasks: String,
    /// Only the first N documents of each task, or a fraction (0.1 = the first 10%).
    #[arg(long)]
    limit: Option<f64>,
    /// Requests per forward pass at most (auto: as many small documents as fit a token budget;
    /// long ones go alone). Results do not depend on it beyond float rounding (≤ 1e-5).
    #[arg(long, default_value = "auto", value_name = "N|auto")]
    batch_size: String,
    /// cpu, cuda or cuda:N (GPU builds: `--features cuda`); cuda:0,cuda:1: a copy on each GPU
    /// (data parallel); cuda:0+cuda:1: the layers split over them (a model one GPU can't hold);
    /// both: cuda:0+cuda:1,cuda:2+cuda:3; auto: every GPU. Results are those of one GPU.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32: every weight in f32 (exact; what lm-eval's hf backend does with dtype=float32).
    /// quantized: keep the GGUF quantization (llama.cpp's arithmetic). bf16/f16: for GPUs.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// Put BOS first: auto follows the tokenizer's default (lm-eval ≥ 0.4.10).
    #[arg(long, value_enum, default_value_t = Bos::Auto)]
    bos: Bos,
    /// How requests are built: lm-eval's context/continuation split, or the prize pipeline's
    /// (class = last tokens of prompt + class). Default: each task file's.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Longest input in tokens (default: the model's context length; 1023 in prize mode).
    #[arg(long)]
    max_length: Option<usize>,
    /// Metrics on top of each task's own: acc_bytes, loss, coverage, brier_score,
    /// acc_mutual_info (doubles the requests), perplexity.
    #[arg(long, value_delimiter = ',', value_name = "METRICS")]
    metrics: Vec<String>,
    /// Standard error's degrees of freedom: 1 as lm-eval, 0 as the prize's plots.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    stderr_ddof: u8,
    /// Recorded in the results (nothing here is random).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A folder for results (lm-eval's layout: <model>/results_<date>.json), or a .json path.
    #[arg(long, value_name = "PATH")]
    output_path: Option<PathBuf>,
    /// Write every document's requests, log-likelihoods and metrics (needs --output-path).
    #[arg(long)]
    log_samples: bool,
    /// Where finished requests are kept (default $INVSCALE_CACHE_DIR, else ~/.cache/invscale/scores).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep nothing between runs.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    LmEval,
    Prize,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The arguments checked and turned into the harness's options; `Err`: the bad-input message.
fn options(args: &RunArgs) -> Result<Options, String> {
    if args.log_samples && args.output_path.is_none() {
        return Err("--log-samples needs --output-path (where to write the samples), as in lm-eval".into());
    }
    if let Some(l) = args.limit
        && !(l > 0.0 && (l < 1.0 || l.fract() == 0.0))
    {
        return Err(format!("--limit {l}: give a count of documents (50) or a fraction below 1 (0.1)"));
    }
    if args.batch_size != "auto" && args.batch_size.parse::<usize>().map_or(true, |n| n == 0) {
        return Err(format!("--batch-size {}: give a positive number or `auto`", args.batch_size));
    }
    let extra_metrics = Metric::parse_extra(&args.metrics)?;
    let settings = RunSettings {
        bos: args.bos.into(),
        mode: args.mode.map(|m| match m {
            Mode::LmEval => RequestMode::LmEval,
            Mode::Prize => RequestMode::Prize,
        }),
        max_length: args.max_length,
        stderr_ddof: usize::from(args.stderr_ddof),
        extra_metrics,
        batch_requests: args.batch_size.parse().ok(),
        ..RunSettings::default()
    };
    Ok(Options { settings, limit: args.limit, cache: CacheOptions { dir: args.cache_dir.clone(), disabled: args.no_cache } })
}

pub fn run(args: RunArgs, data: &DataOptions) -> anyhow::Result<ExitCode> {
    let start_time = now();
    let started = Instant::now();
    stamp("run: started");
    let devices = match parse_devices(&args.device) {
        Ok(d) => d,
        Err(e) => return bad_input(e),
    };
    let options = match options(&args) {
        Ok(o) => o,
        Err(e) => return bad_input(e),
    };
    let console = &mut Console::default();
    let tasks = match TaskSet::load(&args.tasks, data, console) {
        Ok(t) => t,
        Err(e) => return harness_failure(e),
    };
    stamp("run: data read");
    let server = match args.server.options() {
        Ok(s) => s,
        Err(e) => return bad_input(e),
    };
    let (gguf_file, precision) = (args.gguf_file.clone(), args.dtype.precision());
    let request = ModelRequest { reference: args.model.clone(), gguf_file, precision, devices, server };
    if request.on_cpu() {
        invscale_models::tune_allocator();
    }
    let model = match LoadedModel::load(&request, &invscale_hub::Hub::from_env()) {
        Ok(m) => m,
        Err(e) => return harness_failure(e),
    };
    let run = match evaluate_model(&model, &tasks, &options, console) {
        Ok(r) => r,
        Err(e) => return harness_failure(e),
    };
    let how = Invocation {
        gguf_file: args.gguf_file.clone(),
        bos: args.bos.into(),
        batch_size: args.batch_size.clone(),
        device: args.device.clone(),
        limit: args.limit,
        seed: args.seed,
        start_time,
        end_time: now(),
        command: run_files::command_line(),
    };
    if let Some(out) = &args.output_path
        && let Err(e) = run_files::write(out, &run, &tasks, &how, args.log_samples, console)
    {
        return harness_failure(e);
    }
    print!("{}", run_files::summary(&run, &tasks, &how));
    eprintln!("{}; {:.1}s", run_files::counts_line(&run.total(), !run.server.is_null()), started.elapsed().as_secs_f64());
    if let Some(note) = tasks.skipped_note() {
        eprintln!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}
