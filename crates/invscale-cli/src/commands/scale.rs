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
use invscale_harness::{ModelRequest, Options, TaskSet, evaluate};
use invscale_report::output::write_atomic;
use invscale_scale::{Axis, ScalingReport, report_files};
use invscale_tasks::dataset::check;
use invscale_tasks::diag::Severity;
use invscale_tasks::registry::task_for_data_file;
use invscale_tasks::spec::Metric;
use invscale_tasks::{DataOptions, Origin, Registry, TaskSpec};

use super::logprobs::Bos;
use super::{BAD_INPUT, Dtype, harness_failure};

/// Which models, and what their size is.
#[derive(Args)]
pub struct FamilyArgs {
    /// The models, comma-separated (.gguf files, folders or hub ids); any order: sorted by size.
    #[arg(long, value_delimiter = ',', required_unless_present = "family")]
    models: Vec<String>,
    /// A family file (TOML) instead of --models: each `[[model]]` has `path` and optionally
    /// `label`, `family` (one line per family in the plots), `params` (else counted from the
    /// weights), `train_tokens`, `train_flops`.
    #[arg(long, value_name = "FILE", conflicts_with = "models")]
    family: Option<PathBuf>,
    /// What size means on the trend's axis: parameters, or training tokens / FLOPs from the
    /// family file.
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
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, value_enum, default_value_t = Bos::Auto)]
    bos: Bos,
    /// Bootstrap resamples over documents for the verdicts' intervals.
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    /// Level of the intervals (a trend is called only outside them).
    #[arg(long, default_value_t = 0.95)]
    level: f64,
    /// Right-to-wrong documents to show per task.
    #[arg(long, default_value_t = 5)]
    flips: usize,
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[arg(long)]
    no_cache: bool,
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

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SizeAxis {
    Params,
    TrainTokens,
    TrainFlops,
}

impl SizeAxis {
    fn axis(self) -> Axis {
        match self {
            SizeAxis::Params => Axis::Parameters,
            SizeAxis::TrainTokens => Axis::TrainingTokens,
            SizeAxis::TrainFlops => Axis::TrainingFlops,
        }
    }
}

/// The family's members, checked against the axis, and the analysis options checked; `Err` is
/// printed as a bad-input error.
fn members(args: &FamilyArgs, analysis: &AnalysisArgs) -> Result<Vec<Member>, String> {
    if !(0.5..1.0).contains(&analysis.level) {
        return Err(format!("--level {} must be in [0.5, 1)", analysis.level));
    }
    if analysis.resamples < 100 {
        return Err(format!("--resamples {}: at least 100 are needed for a 95% interval", analysis.resamples));
    }
    let members = match &args.family {
        Some(path) => family::read(path)?,
        None => args.models.iter().map(|m| Member::new(m)).collect(),
    };
    family::check(&members, args.x.axis())?;
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
    let spec = match candidate_spec(path, args.as_task.as_deref()) {
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
    let task = &report.tasks[0];
    println!("{}", report.to_markdown(args.analysis.flips));
    // The prize asked one question: does the task show inverse scaling? The answer first.
    if let Some(s) = task.metric("loss").or_else(|| task.metrics.first()) {
        let inverse = s.verdict.trend == invscale_scale::Trend::Inverse;
        println!(
            "verdict: {} on {} ({}: {}) — {}",
            if inverse { "INVERSE SCALING" } else { "no inverse scaling shown" },
            path.display(),
            s.metric,
            s.verdict.trend.label(),
            s.verdict.evidence
        );
    }
    let stem = path.file_stem().map_or("check".into(), |s| s.to_string_lossy().into_owned());
    let dir = args.output_path.clone().unwrap_or_else(|| PathBuf::from(format!("{stem}_scaling")));
    write_report(&dir, &report, args.analysis.flips)?;
    Ok(ExitCode::SUCCESS)
}

/// A candidate file's task: its columns guessed from the file, or a built-in task's (`--as`).
fn candidate_spec(path: &Path, as_task: Option<&str>) -> Result<TaskSpec, String> {
    let Some(name) = as_task else {
        return task_for_data_file(path).map_err(|e| e.to_string());
    };
    let mut specs = Registry::builtin().resolve(name).map_err(|e| format!("--as: {e}"))?;
    if specs.len() != 1 {
        return Err("--as needs one task, not a group".into());
    }
    Ok(specs.remove(0).reading(path))
}

fn write_report(dir: &Path, report: &ScalingReport, flips: usize) -> anyhow::Result<()> {
    let files = report_files(report, flips).map_err(|e| anyhow::anyhow!(e))?;
    for (name, bytes) in &files {
        write_atomic(&dir.join(name), bytes).map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(name).display()))?;
    }
    eprintln!("wrote {} ({} files: open report.html in a browser)", dir.display(), files.len());
    Ok(())
}

/// Runs every member on every task (finished requests from the cache) and judges each task's
/// trends; `Err`: the exit code, the error printed.
fn analyse(members: &[Member], x: SizeAxis, tasks: &TaskSet, a: &AnalysisArgs) -> Result<ScalingReport, ExitCode> {
    let devices = parse_devices(&a.device).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(BAD_INPUT)
    })?;
    let requests: Vec<ModelRequest> = members
        .iter()
        .map(|m| ModelRequest { reference: m.path.clone(), gguf_file: None, precision: a.dtype.precision(), devices: devices.clone(), server: None })
        .collect();
    // The paper's plots show loss too.
    let settings = RunSettings { bos: a.bos.into(), extra_metrics: vec![Metric::Loss], ..RunSettings::default() };
    let options = Options { settings, limit: a.limit, cache: CacheOptions { dir: a.cache_dir.clone(), disabled: a.no_cache } };
    let runs = evaluate(&requests, tasks, &options, &mut Console::default()).map_err(|e| {
        let failure = e.is_bad_input();
        eprintln!("error: {e}");
        ExitCode::from(if failure { BAD_INPUT } else { 1 })
    })?;
    let bootstrap = invscale_scale::Options { resamples: a.resamples, level: a.level, seed: 1234 };
    let analysis = Analysis { axis: x.axis(), bootstrap, flips: a.flips, limit: a.limit };
    // As a user would type it: the program by its name, not the path it was started from.
    let command = std::iter::once("invscale".to_string())
        .chain(std::env::args().skip(1).map(|a| if a.contains(' ') { format!("{a:?}") } else { a }))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(scaling::report(members, &runs, tasks, analysis, command))
}
