//! `invscale scale`: a family of models on tasks, and per task and metric a trend verdict with
//! its evidence, the documents that flip from right to wrong as models grow, plots and an HTML
//! report. `invscale check` is the same for one candidate dataset, validated first.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use invscale_eval::metrics::{higher_is_better, logsumexp};
use invscale_eval::{DocScores, RunSettings, TaskResult, run_task};
use invscale_models::{BosPolicy, Model, resolve};
use invscale_report::Skipped;
use invscale_report::output::write_atomic;
use invscale_scale::flips::right_to_wrong;
use invscale_scale::trend::human_params;
use invscale_scale::{Axis, FlipDoc, MetricSeries, ModelPoint, Options, ScalingReport, TaskScaling, classify, report_files};
use invscale_tasks::dataset::{Dataset, check};
use invscale_tasks::diag::Severity;
use invscale_tasks::registry::task_for_data_file;
use invscale_tasks::spec::Metric;
use invscale_tasks::{DataOptions, Document, Origin, Registry, TaskSpec};

use super::logprobs::Bos;
use super::progress::ProgressLine;
use super::run::{limited, load_datasets, open_cache};
use super::{BAD_INPUT, Dtype};

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

/// One `[[model]]` of a family file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyModel {
    path: String,
    label: Option<String>,
    family: Option<String>,
    params: Option<f64>,
    train_tokens: Option<f64>,
    train_flops: Option<f64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyFile {
    /// The family's name: the line's label for models that name none.
    name: Option<String>,
    model: Vec<FamilyModel>,
}

/// A model's results on every task.
struct ModelRun {
    point: ModelPoint,
    results: Vec<TaskResult>,
}

fn read_family(path: &Path) -> Result<Vec<FamilyModel>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: FamilyFile = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start].lines().count().max(1));
        format!("{}{}: {}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), e.message())
    })?;
    let name = file.name;
    let base = path.parent().unwrap_or(Path::new(""));
    Ok(file
        .model
        .into_iter()
        .map(|m| FamilyModel { path: member_path(base, &m.path), family: m.family.or_else(|| name.clone()), ..m })
        .collect())
}

/// A family file's `path`: `~/` is the home folder, a relative path that exists beside the
/// family file is taken from there, anything else (a hub id) as written.
fn member_path(base: &Path, path: &str) -> String {
    if let (Some(rest), Some(home)) = (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        return Path::new(&home).join(rest).display().to_string();
    }
    let beside = base.join(path);
    if Path::new(path).is_relative() && beside.exists() { beside.display().to_string() } else { path.to_string() }
}

fn display_name(reference: &str) -> String {
    let p = Path::new(reference);
    if p.exists() {
        p.file_stem().or_else(|| p.file_name()).map_or(reference.to_string(), |s| s.to_string_lossy().into_owned())
    } else {
        reference.to_string()
    }
}

/// The family's members, checked against the axis, and the analysis options checked; `Err` is
/// printed as a bad-input error.
fn members(args: &FamilyArgs, analysis: &AnalysisArgs) -> Result<Vec<FamilyModel>, String> {
    check_analysis(analysis)?;
    let members = match &args.family {
        Some(path) => read_family(path)?,
        None => args
            .models
            .iter()
            .map(|m| FamilyModel { path: m.clone(), label: None, family: None, params: None, train_tokens: None, train_flops: None })
            .collect(),
    };
    if members.len() < 2 {
        return Err("a trend needs at least two models (--models A,B or a family file)".into());
    }
    let missing = members.iter().find(|m| match args.x {
        SizeAxis::Params => false,
        SizeAxis::TrainTokens => m.train_tokens.is_none(),
        SizeAxis::TrainFlops => m.train_flops.is_none(),
    });
    if let Some(m) = missing {
        return Err(format!("--x needs `train_tokens`/`train_flops` for every model of the family file; `{}` has none", m.path));
    }
    Ok(members)
}

pub fn run(args: ScaleArgs, data: &DataOptions) -> anyhow::Result<ExitCode> {
    let members = match members(&args.family, &args.analysis) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    let Some((datasets, skipped)) = load_datasets(&args.tasks, data) else {
        return Ok(ExitCode::from(BAD_INPUT));
    };
    let Some(report) = analyse(&members, args.family.x, &datasets, skipped, &args.analysis)? else {
        return Ok(ExitCode::from(BAD_INPUT));
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
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    let path = &args.file;
    if !path.is_file() {
        eprintln!("error: {}: no such file", path.display());
        return Ok(ExitCode::from(BAD_INPUT));
    }
    let spec = match candidate_spec(path, args.as_task.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    // Validate before any model time is spent: every problem at once, as `data validate` does.
    let (dataset, diagnostics) = check(&spec, &[(path.clone(), Origin::Path)]);
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    for d in &diagnostics {
        eprintln!("{d}");
    }
    if errors > 0 {
        eprintln!("error: {}: {errors} error(s) in the dataset; nothing was run (fix them, then check again)", path.display());
        return Ok(ExitCode::from(BAD_INPUT));
    }
    if dataset.docs.is_empty() {
        eprintln!("error: {}: no documents", path.display());
        return Ok(ExitCode::from(BAD_INPUT));
    }
    eprintln!(
        "{}: {} documents, {} warning(s); valid in the prize format",
        path.display(),
        dataset.docs.len(),
        diagnostics.len()
    );
    let Some(report) = analyse(&members, args.family.x, std::slice::from_ref(&dataset), Vec::new(), &args.analysis)? else {
        return Ok(ExitCode::from(BAD_INPUT));
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

fn check_analysis(a: &AnalysisArgs) -> Result<(), String> {
    if !(0.5..1.0).contains(&a.level) {
        return Err(format!("--level {} must be in [0.5, 1)", a.level));
    }
    if a.resamples < 100 {
        return Err(format!("--resamples {}: at least 100 are needed for a 95% interval", a.resamples));
    }
    Ok(())
}

fn write_report(dir: &Path, report: &ScalingReport, flips: usize) -> anyhow::Result<()> {
    let files = report_files(report, flips).map_err(|e| anyhow::anyhow!(e))?;
    for (name, bytes) in &files {
        write_atomic(&dir.join(name), bytes).map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(name).display()))?;
    }
    eprintln!("wrote {} ({} files: open report.html in a browser)", dir.display(), files.len());
    Ok(())
}

/// Runs every model on every dataset (finished requests from the cache) and judges each task's
/// trends. `None`: a model could not be loaded (printed).
fn analyse(
    members: &[FamilyModel],
    x: SizeAxis,
    datasets: &[Dataset],
    skipped: Vec<Skipped>,
    a: &AnalysisArgs,
) -> anyhow::Result<Option<ScalingReport>> {
    let precision = a.dtype.precision();
    let device = match super::parse_device(&a.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(None);
        }
    };
    // The paper's plots show loss too.
    let settings = RunSettings { bos: BosPolicy::from(a.bos), extra_metrics: vec![Metric::Loss], ..RunSettings::default() };
    let hub = invscale_hub::Hub::from_env();
    let mut runs = Vec::new();
    for member in members {
        let reference = &member.path;
        let model = match resolve(reference, None, &hub).and_then(|s| Model::load_on(&s, precision, &device)) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: {reference}: {e}");
                return Ok(None);
            }
        };
        eprintln!("model: {} ({}, {} parameters)", model.path.display(), model.arch, human_params(model.params as f64));
        let (_, mut cache) = open_cache(&model, precision.name(), a.no_cache, a.cache_dir.as_deref())?;
        let settings = RunSettings { batch_tokens: model.batch_tokens(settings.batch_tokens), ..settings.clone() };
        let mut results = Vec::new();
        for ds in datasets {
            let docs = limited(&ds.docs, a.limit);
            let mut bar = ProgressLine::new(&ds.spec.name, docs.len());
            let r = run_task(&model, &mut cache, &ds.spec, docs, &settings, &mut |p| bar.update(p.done, p.counts))?;
            bar.finish(r.counts);
            results.push(r);
        }
        let parameters = member.params.map_or(model.params, |p| p as u64);
        let size = match x {
            SizeAxis::Params => parameters as f64,
            SizeAxis::TrainTokens => member.train_tokens.unwrap_or(f64::NAN),
            SizeAxis::TrainFlops => member.train_flops.unwrap_or(f64::NAN),
        };
        let name = member.label.clone().unwrap_or_else(|| display_name(reference));
        let family = member.family.clone().unwrap_or_else(|| "models".into());
        runs.push(ModelRun { point: ModelPoint { name, family, parameters, size }, results });
    }
    runs.sort_by(|a, b| a.point.size.total_cmp(&b.point.size));

    let bootstrap = Options { resamples: a.resamples, level: a.level, seed: 1234 };
    let tasks = datasets.iter().enumerate().map(|(t, ds)| task_scaling(&runs, t, ds, limited(&ds.docs, a.limit), bootstrap, a.flips)).collect();
    let axis = match x {
        SizeAxis::Params => Axis::Parameters,
        SizeAxis::TrainTokens => Axis::TrainingTokens,
        SizeAxis::TrainFlops => Axis::TrainingFlops,
    };
    // As a user would type it: the program by its name, not the path it was started from.
    let command = std::iter::once("invscale".to_string())
        .chain(std::env::args().skip(1).map(|a| if a.contains(' ') { format!("{a:?}") } else { a }))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Some(ScalingReport {
        command,
        axis,
        models: runs.iter().map(|r| r.point.clone()).collect(),
        bootstrap,
        tasks,
        skipped: skipped.into_iter().map(|s| invscale_scale::Skipped { task: s.task, reason: s.reason }).collect(),
    }))
}

/// Uniform guessing among each document's classes: accuracy mean(1/k), loss mean(ln k).
fn chance(metric: Metric, docs: &[Document]) -> Option<f64> {
    let ks: Vec<f64> = docs.iter().map(|d| d.body.classes().len() as f64).filter(|&k| k > 0.0).collect();
    if ks.is_empty() {
        return None;
    }
    let n = ks.len() as f64;
    match metric {
        Metric::Acc | Metric::AccNorm | Metric::AccBytes | Metric::AccMutualInfo => Some(ks.iter().map(|k| 1.0 / k).sum::<f64>() / n),
        Metric::Loss => Some(ks.iter().map(|k| k.ln()).sum::<f64>() / n),
        _ => None,
    }
}

fn task_scaling(runs: &[ModelRun], t: usize, ds: &Dataset, docs: &[Document], bootstrap: Options, flips_shown: usize) -> TaskScaling {
    let sizes: Vec<f64> = runs.iter().map(|r| r.point.size).collect();
    let metrics: Vec<MetricSeries> = runs[0].results[t]
        .metrics
        .iter()
        .map(|(m, _)| {
            let per_doc: Vec<Vec<f64>> = runs
                .iter()
                .map(|r| r.results[t].docs.iter().map(|d| d.metrics.iter().find(|(k, _)| k == m).map_or(f64::NAN, |(_, v)| *v)).collect())
                .collect();
            let aggregate = |r: &ModelRun| r.results[t].metrics.iter().find(|(k, _)| k == m).map(|(_, a)| (a.value, a.stderr));
            MetricSeries {
                metric: m.as_str().to_string(),
                higher_is_better: higher_is_better(*m),
                values: runs.iter().map(|r| aggregate(r).map_or(f64::NAN, |a| a.0)).collect(),
                stderrs: runs.iter().map(|r| aggregate(r).and_then(|a| a.1)).collect(),
                chance: chance(*m, docs),
                verdict: classify(&sizes, &per_doc, higher_is_better(*m), bootstrap),
            }
        })
        .collect();
    // Right at the smallest model, wrong at the largest, ranked by the rise of the gold loss.
    let correct: Vec<Vec<bool>> = runs
        .iter()
        .map(|r| r.results[t].docs.iter().map(|d| d.metrics.iter().any(|(k, v)| *k == Metric::Acc && *v == 1.0)).collect())
        .collect();
    let loss: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| {
            r.results[t]
                .docs
                .iter()
                .zip(docs)
                .map(|(d, doc)| match (&d.scores, doc.body.answer()) {
                    (DocScores::Classification { lls, .. }, Some(g)) => logsumexp(lls) - lls[g],
                    _ => f64::NAN,
                })
                .collect()
        })
        .collect();
    let has_acc = metrics.iter().any(|s| s.metric == Metric::Acc.as_str());
    let flips = if has_acc { right_to_wrong(&correct, Some(&loss)) } else { Vec::new() };
    TaskScaling {
        task: ds.spec.name.clone(),
        documents: docs.len(),
        metrics,
        flips_total: flips.len(),
        flips: flips
            .iter()
            .take(flips_shown)
            .map(|f| {
                let doc = &docs[f.doc];
                FlipDoc::new(f, doc.id, doc.body.prompt(), doc.body.classes(), doc.body.answer().unwrap_or(0))
            })
            .collect(),
    }
}
