//! `invscale run`: evaluate a model on tasks, as lm-evaluation-harness would, and never lose work.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use invscale_eval::metrics::group as group_aggregate;
use invscale_eval::{RunSettings, ScoreCache, TaskResult, fingerprint, run_tasks_on};
use invscale_models::profile::stamp;
use invscale_models::{BosPolicy, Model, resolve};
use invscale_report::markdown::{Row, group_table, table};
use invscale_report::output::{OutputPaths, write_atomic};
use invscale_report::results::results_json;
use invscale_report::samples::sample_line;
use invscale_report::{GroupReport, RunInfo, Skipped, TaskReport};
use invscale_tasks::dataset::Dataset;
use invscale_tasks::spec::{Metric, RequestMode};
use invscale_tasks::{DataOptions, Document, Registry, TaskSpec, load, locate};

use super::{BAD_INPUT, Dtype};
use super::logprobs::Bos;
use super::progress::ProgressLine;

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
    /// cpu, cuda or cuda:N (GPU builds: `--features cuda`); several GPUs of one host as
    /// cuda:0,cuda:1 (data parallel: a copy of the model on each, batches handed out in turns;
    /// the results are those of one GPU).
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    LmEval,
    Prize,
}

fn fail(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(BAD_INPUT))
}

fn parse_metric(name: &str) -> Option<Metric> {
    serde_json::from_value(serde_json::Value::String(name.trim().to_string())).ok()
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("INVSCALE_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/invscale/scores"))
}

/// lm-eval's `--limit`: a count, or a fraction of each task (rounded up).
pub fn limited(docs: &[Document], limit: Option<f64>) -> &[Document] {
    let n = match limit {
        None => docs.len(),
        Some(l) if l < 1.0 => (docs.len() as f64 * l).ceil() as usize,
        Some(l) => l as usize,
    };
    &docs[..n.min(docs.len())]
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

pub fn run(args: RunArgs, data: &DataOptions) -> anyhow::Result<ExitCode> {
    let start_time = now();
    let started = Instant::now();
    stamp("run: started");
    if args.device.split(',').all(|d| d.trim() == "cpu") {
        invscale_models::tune_allocator();
    }
    let devices = match args.device.split(',').map(|d| super::parse_device(d.trim())).collect::<Result<Vec<_>, _>>() {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    if args.log_samples && args.output_path.is_none() {
        return fail("--log-samples needs --output-path (where to write the samples), as in lm-eval");
    }
    if let Some(l) = args.limit
        && !(l > 0.0 && (l < 1.0 || l.fract() == 0.0))
    {
        return fail(format!("--limit {l}: give a count of documents (50) or a fraction below 1 (0.1)"));
    }
    if args.batch_size != "auto" && args.batch_size.parse::<usize>().map_or(true, |n| n == 0) {
        return fail(format!("--batch-size {}: give a positive number or `auto`", args.batch_size));
    }
    let mut extra_metrics = Vec::new();
    for name in args.metrics.iter().filter(|m| !m.trim().is_empty()) {
        match parse_metric(name) {
            Some(m) => extra_metrics.push(m),
            None => return fail(format!("--metrics: unknown metric `{name}` (known: acc, acc_norm, acc_bytes, loss, coverage, brier_score, acc_mutual_info, perplexity)")),
        }
    }
    let mut settings = RunSettings {
        bos: BosPolicy::from(args.bos),
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

    let Some((datasets, skipped)) = load_datasets(&args.tasks, data) else {
        return Ok(ExitCode::from(BAD_INPUT));
    };

    stamp("run: data read");
    let precision = args.dtype.precision();
    let hub = invscale_hub::Hub::from_env();
    let load_started = Instant::now();
    // A copy of the model on each device, loaded side by side.
    let loaded = resolve(&args.model, args.gguf_file.as_deref(), &hub).and_then(|source| {
        std::thread::scope(|s| {
            let loads: Vec<_> = devices.iter().map(|d| s.spawn(|| Model::load_on(&source, precision, d))).collect();
            loads.into_iter().map(|l| l.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect::<Result<Vec<Model>, _>>()
        })
    });
    let models = match loaded {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let model = &models[0];
    let load_seconds = load_started.elapsed().as_secs_f64();
    // On a GPU, passes as large as its free memory allows (no probing runs); with several,
    // as the smallest allows (every device runs the batches one would).
    settings.batch_tokens = models.iter().map(|m| m.batch_tokens(settings.batch_tokens)).min().unwrap_or(settings.batch_tokens);
    let dtype = precision.name();
    eprintln!(
        "model: {} ({}, {:.0}M parameters, {dtype}), loaded in {:.1}s",
        model.path.display(),
        model.arch,
        model.params as f64 / 1e6,
        load_seconds
    );
    let (fingerprint, mut cache) = open_cache(&model, dtype, args.no_cache, args.cache_dir.as_deref())?;

    let mut results: Vec<(usize, TaskResult)> = Vec::new();
    let scoring_started = Instant::now();
    let tasks: Vec<(&TaskSpec, &[Document])> = datasets.iter().map(|ds| (&ds.spec, limited(&ds.docs, args.limit))).collect();
    let on: Vec<&dyn invscale_eval::Scorer> = models.iter().map(|m| m as &dyn invscale_eval::Scorer).collect();
    let bar: std::cell::RefCell<Option<ProgressLine>> = std::cell::RefCell::new(None);
    run_tasks_on(
        &on,
        &mut cache,
        &tasks,
        &settings,
        &mut |i| *bar.borrow_mut() = Some(ProgressLine::new(&tasks[i].0.name, tasks[i].1.len())),
        &mut |p| {
            if let Some(bar) = bar.borrow_mut().as_mut() {
                bar.update(p.done, p.counts);
            }
        },
        &mut |i, result| {
            if let Some(mut bar) = bar.borrow_mut().take() {
                bar.finish(result.counts);
            }
            results.push((i, result));
        },
    )?;
    let scoring_seconds = scoring_started.elapsed().as_secs_f64();
    stamp("run: scored");
    let end_time = now();

    // Group rows for the groups named in --tasks, over their tasks that ran.
    let registry = Registry::builtin();
    let mut groups = Vec::new();
    for item in args.tasks.split(',').map(str::trim) {
        let Some(g) = registry.group(item) else { continue };
        let members: Vec<&TaskResult> =
            results.iter().map(|(_, r)| r).filter(|r| registry.task(&r.task).is_some_and(|t| t.groups.contains(&g.name))).collect();
        if members.is_empty() {
            continue;
        }
        let common: Vec<Metric> = members[0].metrics.iter().map(|(m, _)| *m).filter(|m| members.iter().all(|r| r.metrics.iter().any(|(k, _)| k == m))).collect();
        let metrics = common
            .iter()
            .map(|m| (*m, group_aggregate(&members.iter().map(|r| r.metrics.iter().find(|(k, _)| k == m).unwrap().1).collect::<Vec<_>>())))
            .collect();
        groups.push(GroupReport { name: g.name.clone(), tasks: members.iter().map(|r| r.task.clone()).collect(), metrics });
    }

    let token = |id: Option<u32>| id.map(|i| (model.tokenizer.token_text(i), i));
    let bos_used = model.bos_token(settings.bos).is_some();
    let mut model_args = format!("pretrained={}", args.model);
    if let Some(f) = &args.gguf_file {
        model_args += &format!(",gguf_file={f}");
    }
    model_args += &format!(",dtype={dtype},bos={}", bos_name(args.bos));
    let run = RunInfo {
        model: args.model.clone(),
        model_args,
        model_path: model.path.display().to_string(),
        arch: model.arch.clone(),
        params: model.params,
        dtype: dtype.into(),
        fingerprint,
        bos_policy: bos_name(args.bos).into(),
        bos_token: token(model.tokenizer.bos_id),
        eos_token: token(model.tokenizer.eos_id),
        bos_used,
        tokenizer: model.tokenizer.kind.clone(),
        batch_size: args.batch_size.clone(),
        device: args.device.clone(),
        limit: args.limit,
        seed: args.seed,
        stderr_ddof: settings.stderr_ddof,
        cache: cache.path().map(|p| p.display().to_string()),
        start_time,
        end_time,
        load_seconds,
        scoring_seconds,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let reports: Vec<TaskReport> = results
        .iter()
        .map(|(i, r)| {
            let ds = &datasets[*i];
            TaskReport { spec: &ds.spec, result: r, docs: limited(&ds.docs, args.limit), original: ds.docs.len(), files: &ds.files }
        })
        .collect();

    if let Some(out) = &args.output_path {
        let date_id = invscale_report::output::date_id(SystemTime::now());
        let paths = OutputPaths::new(out, &args.model, &date_id);
        let json = results_json(&run, &reports, &groups, &skipped);
        write_atomic(&paths.results, format!("{}\n", serde_json::to_string_pretty(&json)?).as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", paths.results.display()))?;
        eprintln!("results: {}", paths.results.display());
        if args.log_samples {
            let count = |t: &TaskReport| t.docs.len().min(t.result.docs.len());
            let lines = |t: &TaskReport, from: usize, to: usize| {
                t.docs[from..to].iter().zip(&t.result.docs[from..to]).map(|(d, r)| sample_line(d, r) + "\n").collect::<String>()
            };
            // On a GPU machine the lines are made on every core, in runs of documents (the
            // suite's sig-figs alone: 62 MB); a CPU run makes one file at a time (its peak RSS
            // is judged).
            const RUN: usize = 2048;
            let made: Vec<Option<String>> = if model.on_cpu() {
                reports.iter().map(|_| None).collect()
            } else {
                std::thread::scope(|s| {
                    let handles: Vec<Vec<_>> = reports
                        .iter()
                        .map(|t| {
                            let n = count(t);
                            (0..n).step_by(RUN).map(|from| s.spawn(move || lines(t, from, (from + RUN).min(n)))).collect()
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|runs| Some(runs.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()))
                        .collect()
                })
            };
            for (t, text) in reports.iter().zip(made) {
                let text = text.unwrap_or_else(|| lines(t, 0, count(t)));
                let path = paths.samples(&t.spec.name);
                write_atomic(&path, text.as_bytes()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                eprintln!("samples: {}", path.display());
            }
            stamp("run: samples written");
        }
    }

    // The summary, as lm-eval prints it.
    let limit = args.limit.map_or("None".to_string(), |l| l.to_string());
    println!(
        "invscale ({}, dtype={dtype}, bos={} → {}), limit: {limit}, batch_size: {}",
        args.model,
        bos_name(args.bos),
        if bos_used { "BOS" } else { "no BOS" },
        args.batch_size
    );
    let rows: Vec<Row> = reports
        .iter()
        .flat_map(|t| {
            t.result.metrics.iter().map(|(m, agg)| Row { name: t.spec.name.clone(), version: t.spec.version.to_string(), metric: *m, agg: *agg })
        })
        .collect();
    print!("{}", table(&rows));
    if !groups.is_empty() {
        println!();
        print!("{}", group_table(&groups));
    }
    let mut total = invscale_eval::Counts::default();
    for (_, r) in &results {
        total += r.counts;
    }
    eprintln!(
        "{} requests: {} computed, {} from the score cache; {} truncated, {} boundary fallbacks; {} of {} requested tokens computed; {:.1}s",
        total.requests,
        total.computed,
        total.cached,
        total.truncated,
        total.boundary_fallback,
        total.tokens_computed,
        total.tokens_requested,
        started.elapsed().as_secs_f64()
    );
    if !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|s| s.task.as_str()).collect();
        eprintln!(
            "skipped {} task(s) without data: {} (`invscale data validate TASK` lists where invscale looked and how to get the data)",
            names.len(),
            names.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The tasks of a `--tasks` value with their data: what cannot be found is reported and left
/// out; bad data is reported and stops the run before any model time is spent (`None`: the
/// errors are printed, exit with BAD_INPUT).
pub fn load_datasets(tasks: &str, data: &DataOptions) -> Option<(Vec<Dataset>, Vec<Skipped>)> {
    let registry = Registry::builtin();
    let specs = match registry.resolve(tasks) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return None;
        }
    };
    let mut datasets: Vec<Dataset> = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut bad_data = false;
    for spec in specs {
        let files = match locate(&spec, data) {
            Ok(f) => f,
            Err(e) => {
                // One line each (a group can miss many); `invscale data validate TASK` gives the
                // whole story: every place looked and how to get the data.
                let hub = e.hub.as_deref().and_then(|h| h.lines().next()).unwrap_or("no hub source");
                let reason = format!("no data: not in the --data-dir folders; hub: {}", hub.trim_end_matches('.'));
                eprintln!("warning: skipping {}: {reason}", spec.name);
                skipped.push(Skipped { task: spec.name.clone(), reason });
                continue;
            }
        };
        match load(&spec, &files) {
            Ok(ds) => {
                for d in &ds.diagnostics {
                    eprintln!("{d}");
                }
                datasets.push(ds);
            }
            Err(e) => {
                eprintln!("error: {e}");
                bad_data = true;
            }
        }
    }
    if bad_data {
        eprintln!("error: fix the data above (`invscale data validate` lists every problem); nothing was run");
        return None;
    }
    if datasets.is_empty() {
        eprintln!("error: none of the tasks has data to run (see the warnings above; --data-dir points at local files)");
        return None;
    }
    Some((datasets, skipped))
}

/// The model's fingerprint and its score cache (reporting damaged entries).
pub fn open_cache(model: &Model, dtype: &str, no_cache: bool, cache_dir: Option<&std::path::Path>) -> anyhow::Result<(String, ScoreCache)> {
    let fingerprint = fingerprint(&model.path, dtype).map_err(|e| anyhow::anyhow!("{}: {e}", model.path.display()))?;
    let cache = if no_cache {
        ScoreCache::disabled()
    } else {
        let dir = cache_dir.map(PathBuf::from).or_else(default_cache_dir).ok_or_else(|| anyhow::anyhow!("no cache folder: set --cache-dir or $HOME"))?;
        ScoreCache::open(&dir, &format!("{}-{fingerprint}", model.arch)).map_err(|e| anyhow::anyhow!("score cache in {}: {e}", dir.display()))?
    };
    for p in &cache.problems {
        eprintln!("warning: score cache: {p}");
    }
    if let Some(p) = cache.path() {
        eprintln!("score cache: {} ({} finished requests on record)", p.display(), cache.len());
    }
    Ok((fingerprint, cache))
}

fn bos_name(b: Bos) -> &'static str {
    match b {
        Bos::Auto => "auto",
        Bos::Always => "always",
        Bos::Never => "never",
    }
}
