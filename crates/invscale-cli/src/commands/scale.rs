//! `invscale scale`: a family of models on tasks, and per task and metric a trend verdict with
//! its evidence, the documents that flip from right to wrong as models grow, plots and an HTML
//! report. `invscale check` is the same for one candidate dataset, validated first.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use invscale_eval::RunSettings;
use invscale_harness::cache::CacheOptions;
use invscale_harness::console::Console;
use invscale_harness::family::{self, Member};
use invscale_harness::models::parse_devices;
use invscale_harness::scaling::{self, Analysis};
use invscale_harness::{Options, TaskSet};
use invscale_scale::{Axis, ScalingReport};
use invscale_tasks::dataset::check;
use invscale_tasks::diag::Severity;
use invscale_tasks::registry::candidate_task;
use invscale_tasks::spec::Metric;
use invscale_tasks::{DataOptions, Origin};

use super::logprobs::Bos;
use super::server::ServerTuning;
use super::{BAD_INPUT, Dtype, harness_failure};

/// Which models, and what their size is.
#[derive(Args)]
pub struct FamilyArgs {
    /// The models, comma-separated (.gguf files, folders or hub ids); any order: sorted by size.
    #[arg(long, value_delimiter = ',', required_unless_present = "family")]
    models: Vec<String>,
    /// A family file (TOML) instead of --models: each `[[model]]` has `path` (or `results`: a
    /// finished run's folder) and optionally `label`, `family`, `params`, `train_tokens`,
    /// `train_flops`, `step`, `server` (a URL: scored there) with `served_model`, `server_api`.
    #[arg(long, value_name = "FILE", conflicts_with = "models")]
    family: Option<PathBuf>,
    /// The trend's axis: parameters, training tokens / FLOPs (family file), or the training step
    /// of one model's checkpoints (`@stepN`). Checkpoints of one size give the noise floor.
    #[arg(long, value_enum, default_value_t = SizeAxis::Params)]
    x: SizeAxis,
}

/// How the models run and how the verdicts are judged.
#[derive(Args)]
pub struct AnalysisArgs {
    /// Only the first N documents of each task, or a fraction.
    #[arg(long)]
    limit: Option<f64>,
    /// f32 (exact), quantized (GGUF models only), bf16 or f16 (GPUs).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// cpu, cuda, cuda:N; cuda:0,cuda:1 (a copy each), cuda:0+cuda:1 (layers split), auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, value_enum, default_value_t = Bos::Auto)]
    bos: Bos,
    /// Bootstrap resamples over documents (the smallest p-value is 2/(N+1), before Holm's).
    #[arg(long, default_value_t = 10_000)]
    resamples: usize,
    /// Level of the intervals; tests are called at 1 − level after adjustment.
    #[arg(long, default_value_t = 0.95)]
    level: f64,
    /// Also fit all families together, one intercept each (verdicts stay per family too).
    #[arg(long)]
    pooled: bool,
    /// Right-to-wrong documents to show per task and family.
    #[arg(long, default_value_t = 5)]
    flips: usize,
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    server: ServerTuning,
}

#[derive(Args)]
#[command(after_help = "\
Examples:
  invscale scale --models smollm2.gguf,gemma-3-270m.gguf,qwen2.5-0.5b.gguf,qwen2.5-1.5b.gguf \\
      --tasks neqa,memo_trap,hindsight_neglect --data-dir ../shared/data/inverse_scaling --output-path scaling
  invscale scale --models EleutherAI/pythia-70m,EleutherAI/pythia-160m,EleutherAI/pythia-410m --tasks inverse_scaling_mc
  invscale scale --family family.toml --x train-tokens --tasks inverse_scaling_mc --output-path scaling

A family file:
  [[model]]
  path = \"EleutherAI/pythia-160m\"
  family = \"Pythia\"          # one line per family in the plots
  train_tokens = 300e9        # for --x train-tokens
  [[model]]
  path = \"Qwen/Qwen3-32B\"    # the tokenizer (no weights fetched): scored on the server
  server = \"http://gpu-node:8000\"
  params = 32.8e9

--output-path DIR writes scaling.json, scaling.md, report.html (one self-contained file: open it
in a browser) and plots/<task>.svg|png with plots/grid_acc.svg|png. Each model's finished
requests come from the score cache, so adding a model to a family reruns nothing for the others.")]
pub struct ScaleArgs {
    #[command(flatten)]
    family: FamilyArgs,
    /// Tasks, groups, task files or data files, comma-separated.
    #[arg(long, required = true)]
    tasks: String,
    /// Write the report here (scaling.json, scaling.md, report.html, plots/).
    #[arg(long, value_name = "DIR")]
    output_path: Option<PathBuf>,
    #[command(flatten)]
    analysis: AnalysisArgs,
}

#[derive(Args)]
#[command(after_help = "\
The Inverse Scaling Prize's submission workflow in one command: the dataset is validated first
(every problem reported as file:line: field, nothing run if any is an error), then every model of
the family scores it, and the verdict is printed with its evidence.

Examples:
  invscale check my_task.csv --models smollm2.gguf,qwen2.5-0.5b.gguf,qwen2.5-1.5b.gguf
  invscale check my_task.jsonl --family family.toml --output-path my_task_report

The file is in the prize format: `prompt, classes, answer_index` (CSV, JSONL, JSON or parquet;
`classes` a list or a string holding a Python list literal); `--as TASK` reads it with a built-in
task's columns and rules instead.")]
pub struct CheckArgs {
    /// The candidate dataset.
    file: PathBuf,
    /// Read the file with this task's columns and rules (e.g. `neqa`).
    #[arg(long = "as", value_name = "TASK")]
    as_task: Option<String>,
    #[command(flatten)]
    family: FamilyArgs,
    /// Where to write the report (default: `<file name>_scaling` in the current folder).
    #[arg(long, value_name = "DIR")]
    output_path: Option<PathBuf>,
    #[command(flatten)]
    analysis: AnalysisArgs,
}

impl AnalysisArgs {
    fn bootstrap(&self) -> invscale_scale::Options {
        invscale_scale::Options { resamples: self.resamples, level: self.level, ..Default::default() }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SizeAxis {
    Params,
    TrainTokens,
    TrainFlops,
    Step,
}

impl SizeAxis {
    fn axis(self) -> Axis {
        match self {
            SizeAxis::Params => Axis::Parameters,
            SizeAxis::TrainTokens => Axis::TrainingTokens,
            SizeAxis::TrainFlops => Axis::TrainingFlops,
            SizeAxis::Step => Axis::TrainingStep,
        }
    }
}

/// The family's members, checked against the axis, and the analysis options checked; `Err` is
/// printed as a bad-input error.
fn members(args: &FamilyArgs, analysis: &AnalysisArgs) -> Result<Vec<Member>, String> {
    analysis.bootstrap().check()?;
    let members = match &args.family {
        Some(path) => family::read(path)?,
        None => args.models.iter().map(|m| Member::new(m)).collect(),
    };
    family::check(&members, args.x.axis())?;
    if let Some(flag) = analysis.server.given().filter(|_| members.iter().all(|m| m.server.is_none())) {
        return Err(format!("{flag} applies to models on a server: give a family file's [[model]] a `server = \"http://…\"`"));
    }
    Ok(members)
}

pub fn run(args: ScaleArgs, data: &DataOptions) -> anyhow::Result<ExitCode> {
    let members = match members(&args.family, &args.analysis) {
        Ok(m) => m,
        Err(e) => return super::bad_input(e),
    };
    let tasks = match TaskSet::load(&args.tasks, data, &mut Console::default()) {
        Ok(t) => t,
        Err(e) => return harness_failure(e),
    };
    let report = match analyse(&members, args.family.x, &tasks, &args.analysis) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    print!("{}", report.to_markdown(args.analysis.flips));
    if let Some(dir) = &args.output_path {
        write_report(dir, &report, args.analysis.flips)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let members = match members(&args.family, &args.analysis) {
        Ok(m) => m,
        Err(e) => return super::bad_input(e),
    };
    let path = &args.file;
    if !path.is_file() {
        return super::bad_input(format!("{}: no such file", path.display()));
    }
    let spec = match candidate_task(path, args.as_task.as_deref()) {
        Ok(s) => s,
        Err(e) => return super::bad_input(e),
    };
    // Validate before any model time is spent: every problem at once, as `data validate` does.
    let (dataset, diagnostics) = check(&spec, &[(path.clone(), Origin::Path)]);
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    for d in &diagnostics {
        eprintln!("{d}");
    }
    if errors > 0 {
        return super::bad_input(format!("{}: {errors} error(s) in the dataset; nothing was run (fix them, then check again)", path.display()));
    }
    if dataset.docs.is_empty() {
        return super::bad_input(format!("{}: no documents", path.display()));
    }
    eprintln!("{}: {} documents, {} warning(s); valid in the prize format", path.display(), dataset.docs.len(), diagnostics.len());
    let report = match analyse(&members, args.family.x, &TaskSet::single(dataset), &args.analysis) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    println!("{}", report.to_markdown(args.analysis.flips));
    if let Some(verdict) = report.prize_verdict(0, &path.display().to_string()) {
        println!("{verdict}");
    }
    let stem = path.file_stem().map_or("check".into(), |s| s.to_string_lossy().into_owned());
    let dir = args.output_path.clone().unwrap_or_else(|| PathBuf::from(format!("{stem}_scaling")));
    write_report(&dir, &report, args.analysis.flips)?;
    Ok(ExitCode::SUCCESS)
}

fn write_report(dir: &Path, report: &ScalingReport, flips: usize) -> anyhow::Result<()> {
    let count = scaling::write_files(dir, report, flips).map_err(|e| anyhow::anyhow!(e))?;
    eprintln!("wrote {} ({count} files: open report.html in a browser)", dir.display());
    Ok(())
}

/// Runs every member on every task (finished requests from the cache) and judges each task's
/// trends; `Err`: the exit code, the error printed.
fn analyse(members: &[Member], x: SizeAxis, tasks: &TaskSet, a: &AnalysisArgs) -> Result<ScalingReport, ExitCode> {
    let devices = parse_devices(&a.device).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(BAD_INPUT)
    })?;
    let tuning = a.server.options();

    // The paper's plots show loss too.
    let settings = RunSettings { bos: a.bos.into(), extra_metrics: vec![Metric::Loss], ..RunSettings::default() };
    let options = Options { settings, limit: a.limit, cache: CacheOptions { dir: a.cache_dir.clone(), disabled: a.no_cache } };
    let request = |m: &Member| m.request(a.dtype.precision(), &devices, &tuning);
    let runs = scaling::family_runs(members, request, x.axis(), tasks, &options, &mut Console::default()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(if e.is_bad_input() { BAD_INPUT } else { 1 })
    })?;
    let analysis = Analysis { axis: x.axis(), bootstrap: a.bootstrap(), flips: a.flips, limit: a.limit, pooled: a.pooled };
    Ok(scaling::report(members, &runs, tasks, analysis, invscale_harness::run_files::command_line()))
}
