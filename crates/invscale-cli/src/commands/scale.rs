//! `invscale scale`: a family of models on tasks, and per task and metric a trend verdict with
//! its evidence, plus the documents that flip from right to wrong as models grow.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use invscale_eval::metrics::{higher_is_better, logsumexp};
use invscale_eval::{DocScores, RunSettings, TaskResult, run_task};
use invscale_models::{BosPolicy, Model, resolve};
use invscale_report::output::write_atomic;
use invscale_scale::flips::right_to_wrong;
use invscale_scale::trend::human_params;
use invscale_scale::{Options, Verdict, classify};
use invscale_tasks::DataOptions;
use invscale_tasks::spec::Metric;
use serde_json::json;

use super::{BAD_INPUT, Dtype};
use super::logprobs::Bos;
use super::progress::ProgressLine;
use super::run::{limited, load_datasets, open_cache};

#[derive(Args)]
#[command(after_help = "\
Examples:
  invscale scale --models smollm2.gguf,gemma-3-270m.gguf,qwen2.5-0.5b.gguf,qwen2.5-1.5b.gguf \\
      --tasks neqa,memo_trap,hindsight_neglect --data-dir ../shared/data/inverse_scaling --output-path scaling
  invscale scale --models EleutherAI/pythia-70m,EleutherAI/pythia-160m,EleutherAI/pythia-410m --tasks inverse_scaling_mc

Each model's finished requests come from the score cache, so adding a model to a family reruns
nothing for the others.")]
pub struct ScaleArgs {
    /// The models, comma-separated (.gguf files, folders or hub ids); any order: sorted by size.
    #[arg(long, required = true, value_delimiter = ',')]
    models: Vec<String>,
    /// Tasks, groups, task files or data files, comma-separated.
    #[arg(long, required = true)]
    tasks: String,
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
    /// Write scaling.json and scaling.md here.
    #[arg(long, value_name = "DIR")]
    output_path: Option<PathBuf>,
    /// Right-to-wrong documents to show per task.
    #[arg(long, default_value_t = 5)]
    flips: usize,
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[arg(long)]
    no_cache: bool,
}

struct ModelRun {
    name: String,
    params: u64,
    results: Vec<TaskResult>,
}

fn display_name(reference: &str) -> String {
    let p = std::path::Path::new(reference);
    if p.exists() {
        p.file_stem().or_else(|| p.file_name()).map_or(reference.to_string(), |s| s.to_string_lossy().into_owned())
    } else {
        reference.to_string()
    }
}

pub fn run(args: ScaleArgs, data: &DataOptions) -> anyhow::Result<ExitCode> {
    if args.models.len() < 2 {
        eprintln!("error: --models needs at least two models to show a trend");
        return Ok(ExitCode::from(BAD_INPUT));
    }
    if !(0.5..1.0).contains(&args.level) {
        eprintln!("error: --level {} must be in [0.5, 1)", args.level);
        return Ok(ExitCode::from(BAD_INPUT));
    }
    let Some((datasets, skipped)) = load_datasets(&args.tasks, data) else {
        return Ok(ExitCode::from(BAD_INPUT));
    };
    let precision = args.dtype.precision();
    let device = match super::parse_device(&args.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    // The paper's plots show loss too.
    let settings = RunSettings { bos: BosPolicy::from(args.bos), extra_metrics: vec![Metric::Loss], ..RunSettings::default() };
    let hub = invscale_hub::Hub::from_env();
    let mut runs = Vec::new();
    for reference in &args.models {
        let model = match resolve(reference, None, &hub).and_then(|s| Model::load_on(&s, precision, &device)) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: {reference}: {e}");
                return Ok(ExitCode::from(BAD_INPUT));
            }
        };
        eprintln!("model: {} ({}, {} parameters)", model.path.display(), model.arch, human_params(model.params as f64));
        let (_, mut cache) = open_cache(&model, precision.name(), args.no_cache, args.cache_dir.as_deref())?;
        let mut results = Vec::new();
        for ds in &datasets {
            let docs = limited(&ds.docs, args.limit);
            let mut bar = ProgressLine::new(&ds.spec.name, docs.len());
            let r = run_task(&model, &mut cache, &ds.spec, docs, &settings, &mut |p| bar.update(p.done, p.counts))?;
            bar.finish(r.counts);
            results.push(r);
        }
        runs.push(ModelRun { name: display_name(reference), params: model.params, results });
    }
    runs.sort_by_key(|r| r.params);

    let opts = Options { resamples: args.resamples, level: args.level, seed: 1234 };
    let mut md = String::new();
    let mut tasks_json = Vec::new();
    for (t, ds) in datasets.iter().enumerate() {
        let docs = limited(&ds.docs, args.limit);
        let metrics: Vec<Metric> = runs[0].results[t].metrics.iter().map(|(m, _)| *m).collect();
        md += &format!("## {} ({} documents)\n\n| model | parameters |", ds.spec.name, docs.len());
        for m in &metrics {
            md += &format!(" {} |", m.as_str());
        }
        md += &format!("\n|---|---:|{}\n", "---:|".repeat(metrics.len()));
        for run in &runs {
            md += &format!("| {} | {} |", run.name, human_params(run.params as f64));
            for (_, agg) in &run.results[t].metrics {
                md += &format!(" {:.4} ± {:.4} |", agg.value, agg.stderr.unwrap_or(f64::NAN));
            }
            md += "\n";
        }
        md += "\n";
        let params: Vec<f64> = runs.iter().map(|r| r.params as f64).collect();
        let mut verdicts: Vec<(Metric, Verdict)> = Vec::new();
        for m in &metrics {
            let values: Vec<Vec<f64>> = runs
                .iter()
                .map(|r| r.results[t].docs.iter().map(|d| d.metrics.iter().find(|(k, _)| k == m).map_or(f64::NAN, |(_, v)| *v)).collect())
                .collect();
            let v = classify(&params, &values, higher_is_better(*m), opts);
            md += &format!("- **{}: {}** (confidence {:.2}): {}\n", m.as_str(), v.trend.label(), v.confidence, v.evidence);
            verdicts.push((*m, v));
        }
        // Right at the smallest model, wrong at the largest.
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
        let flips = if metrics.contains(&Metric::Acc) { right_to_wrong(&correct, Some(&loss)) } else { Vec::new() };
        md += &format!("\n{} document(s) right at {} and wrong at {}", flips.len(), runs[0].name, runs[runs.len() - 1].name);
        md += if flips.is_empty() { ".\n\n" } else { "; the largest moves away from the answer:\n\n" };
        for f in flips.iter().take(args.flips) {
            let doc = &docs[f.doc];
            let classes = doc.body.classes();
            let gold = doc.body.answer().and_then(|g| classes.get(g)).cloned().unwrap_or_default();
            md += &format!(
                "- doc {} (gold {gold:?} of {classes:?}, loss +{:.2} nats): {}\n",
                doc.id,
                f.loss_increase,
                super::tail(doc.body.prompt(), 120)
            );
        }
        md += "\n";
        tasks_json.push(json!({
            "task": ds.spec.name,
            "documents": docs.len(),
            "models": runs.iter().map(|r| json!({
                "model": r.name,
                "parameters": r.params,
                "metrics": r.results[t].metrics.iter().map(|(m, a)| (m.as_str().to_string(), json!({"value": a.value, "stderr": a.stderr}))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "verdicts": verdicts.iter().map(|(m, v)| (m.as_str().to_string(), serde_json::to_value(v).unwrap())).collect::<serde_json::Map<_, _>>(),
            "flips": flips.iter().map(|f| json!({"doc_id": docs[f.doc].id, "correct": f.correct, "loss_increase": f.loss_increase})).collect::<Vec<_>>(),
        }));
    }
    print!("{md}");
    if let Some(dir) = &args.output_path {
        let doc = json!({
            "models": runs.iter().map(|r| json!({"model": r.name, "parameters": r.params})).collect::<Vec<_>>(),
            "bootstrap": {"resamples": opts.resamples, "level": opts.level, "seed": opts.seed},
            "tasks": tasks_json,
            "skipped": skipped.iter().map(|s| json!({"task": s.task, "reason": s.reason})).collect::<Vec<_>>(),
        });
        write_atomic(&dir.join("scaling.json"), format!("{}\n", serde_json::to_string_pretty(&doc)?).as_bytes())?;
        write_atomic(&dir.join("scaling.md"), format!("# Scaling\n\n{md}").as_bytes())?;
        eprintln!("wrote {} and scaling.md", dir.join("scaling.json").display());
    }
    Ok(ExitCode::SUCCESS)
}
