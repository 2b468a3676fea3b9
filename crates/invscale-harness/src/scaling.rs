//! A family's runs as a scaling report: models sorted by size, and for each task and metric the
//! series, its trend verdict with the evidence, and the documents that go from right to wrong.

use invscale_eval::metrics::{higher_is_better, logsumexp};
use invscale_eval::DocScores;
use invscale_scale::flips::right_to_wrong;
use invscale_scale::{Axis, FlipDoc, MetricSeries, ModelPoint, Options, ScalingReport, TaskScaling};
use invscale_tasks::spec::Metric;
use invscale_tasks::{Document, TaskSpec};

use crate::error::HarnessError;
use crate::evaluate::{ModelRun, evaluate};
use crate::models::ModelRequest;
use crate::observer::Observer;
use crate::family::Member;
use crate::tasks::TaskSet;

/// How verdicts are judged and what the report shows.
#[derive(Clone, Copy, Debug)]
pub struct Analysis {
    pub axis: Axis,
    pub bootstrap: Options,
    /// Right-to-wrong documents listed per task.
    pub flips: usize,
    pub limit: Option<f64>,
    /// Also one fit over all families with an intercept each (never instead of theirs).
    pub pooled: bool,
}

/// The report over `runs[i]` of `members[i]` (same order), on `tasks`.
pub fn report(members: &[Member], runs: &[ModelRun], tasks: &TaskSet, analysis: Analysis, command: String) -> ScalingReport {
    assert_eq!(members.len(), runs.len(), "a run for every member");
    let mut order: Vec<(ModelPoint, &ModelRun)> = members
        .iter()
        .zip(runs)
        .map(|(member, run)| {
            let parameters = member.params.map_or(run.model.params, |p| p as u64);
            let point = ModelPoint {
                name: member.label.clone().unwrap_or_else(|| run.model.name.clone()),
                family: member.family.clone().unwrap_or_else(|| run.model.family.clone()),
                parameters,
                // Counted here, unless the family file gave the size.
                non_embedding_parameters: if member.params.is_some() { 0 } else { run.model.non_embedding_params },
                size: member.size(analysis.axis, run.model.params),
                scored_by: scored_by(run),
                architecture: run.model.arch.clone(),
                tokenizer: run.model.tokenizer.clone(),
            };
            (point, run)
        })
        .collect();
    order.sort_by(|a, b| a.0.size.total_cmp(&b.0.size));
    let runs: Vec<&ModelRun> = order.iter().map(|(_, r)| *r).collect();
    let models: Vec<ModelPoint> = order.into_iter().map(|(p, _)| p).collect();
    let scaling = (0..tasks.datasets.len())
        .map(|t| task_scaling(&runs, &models, t, &tasks.datasets[t].spec, tasks.docs(t, analysis.limit), analysis))
        .collect();
    let mut report = ScalingReport {
        command,
        axis: analysis.axis,
        models,
        bootstrap: analysis.bootstrap,
        tasks: scaling,
        skipped: tasks.skipped.iter().map(|s| invscale_scale::Skipped { task: s.task.clone(), reason: s.reason.clone() }).collect(),
    };
    report.adjust();
    report
}

/// A run per member, in their order: stored runs read from their folders first (a bad folder is
/// found before any model time is spent), then every other member evaluated (`request` says how).
pub fn family_runs(
    members: &[Member],
    request: impl Fn(&Member) -> ModelRequest,
    axis: Axis,
    tasks: &TaskSet,
    options: &crate::evaluate::Options,
    observer: &mut dyn Observer,
) -> Result<Vec<ModelRun>, HarnessError> {
    let mut stored = Vec::new();
    for (m, dir) in members.iter().filter_map(|m| m.results.as_ref().map(|dir| (m, dir))) {
        let run = crate::stored::read(std::path::Path::new(dir), tasks, options.limit)?;
        if run.model.params == 0 && m.params.is_none() && axis == Axis::Parameters {
            return Err(HarnessError::BadInput(format!("{dir}: the results do not say the model's size: give `params` in the family file")));
        }
        stored.push(run);
    }
    let requests: Vec<ModelRequest> = members.iter().filter(|m| m.results.is_none()).map(request).collect();
    let live = if requests.is_empty() { Vec::new() } else { evaluate(&requests, tasks, options, observer)? };
    let (mut stored, mut live) = (stored.into_iter(), live.into_iter());
    Ok(members.iter().map(|m| if m.results.is_some() { stored.next() } else { live.next() }.expect("a run per member")).collect())
}

/// Writes `report`'s files (scaling.json, scaling.md, report.html, plots/) into `dir`, each
/// whole or not at all; how many.
pub fn write_files(dir: &std::path::Path, report: &ScalingReport, flips: usize) -> Result<usize, String> {
    let files = invscale_scale::report_files(report, flips)?;
    for (name, bytes) in &files {
        invscale_report::output::write_atomic(&dir.join(name), bytes).map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
    }
    Ok(files.len())
}

/// `in-process (f32)`, or `server URL (API, model NAME)` from the run's server record.
fn scored_by(run: &ModelRun) -> String {
    let field = |k: &str| run.server[k].as_str().unwrap_or("?").to_string();
    if run.model.dtype == crate::stored::STORED {
        return format!("{} {}", crate::stored::STORED, run.model.path.display());
    }
    if run.server.is_null() { format!("in-process ({})", run.model.dtype) } else { format!("server {} ({} API, model {})", field("url"), field("api"), field("served_model")) }
}

/// Uniform guessing among each document's classes: accuracy mean(1/k), loss mean(ln k), mc2
/// mean(true classes / k).
fn chance(metric: Metric, docs: &[Document]) -> Option<f64> {
    let ks: Vec<f64> = docs.iter().map(|d| d.body.classes().len() as f64).filter(|&k| k > 0.0).collect();
    if ks.is_empty() {
        return None;
    }
    let n = ks.len() as f64;
    match metric {
        Metric::Acc | Metric::AccNorm | Metric::AccBytes | Metric::AccMutualInfo | Metric::Mc1 => Some(ks.iter().map(|k| 1.0 / k).sum::<f64>() / n),
        Metric::Loss => Some(ks.iter().map(|k| k.ln()).sum::<f64>() / n),
        Metric::Mc2 => Some(docs.iter().filter_map(|d| Some(d.body.true_classes()?.len() as f64 / d.body.classes().len() as f64)).sum::<f64>() / n),
        _ => None,
    }
}

fn task_scaling(runs: &[&ModelRun], models: &[ModelPoint], t: usize, spec: &TaskSpec, docs: &[Document], analysis: Analysis) -> TaskScaling {
    let task = spec.name.as_str();
    let metric_of = |d: &invscale_eval::DocResult, m: Metric| d.metrics.iter().find(|(k, _)| *k == m).map(|(_, v)| *v);
    let metrics: Vec<MetricSeries> = runs[0].results[t]
        .metrics
        .iter()
        .map(|(m, _)| {
            let per_doc: Vec<Vec<f64>> =
                runs.iter().map(|r| r.results[t].docs.iter().map(|d| metric_of(d, *m).unwrap_or(f64::NAN)).collect()).collect();
            let aggregate = |r: &ModelRun| r.results[t].metrics.iter().find(|(k, _)| k == m).map(|(_, a)| (a.value, a.stderr));
            MetricSeries::new(
                m.as_str(),
                // Where gold is the undesired behaviour, more of it is worse.
                higher_is_better(*m) != spec.scoring.gold_is_undesired,
                runs.iter().map(|r| aggregate(r).map_or(f64::NAN, |a| a.0)).collect(),
                runs.iter().map(|r| aggregate(r).and_then(|a| a.1)).collect(),
                chance(*m, docs),
                models,
                &per_doc,
                analysis.bootstrap,
                analysis.pooled,
            )
        })
        .collect();
    // Right at the smallest model, wrong at the largest, ranked by the rise of the gold loss.
    let correct: Vec<Vec<bool>> =
        runs.iter().map(|r| r.results[t].docs.iter().map(|d| d.metrics.iter().any(|(k, v)| *k == Metric::Acc && *v == 1.0)).collect()).collect();
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
    // (Where gold is the undesired behaviour, "right" is no failure of the larger model: no flips.)
    let has_acc = metrics.iter().any(|s| s.metric == Metric::Acc.as_str()) && !spec.scoring.gold_is_undesired;
    // Right at a family's smallest model, wrong at its largest: families with two or more models.
    let mut flips_total = Vec::new();
    let mut flips = Vec::new();
    for (family, members) in invscale_scale::report::families_of(models) {
        if !has_acc || members.len() < 2 {
            continue;
        }
        let correct: Vec<Vec<bool>> = members.iter().map(|&i| correct[i].clone()).collect();
        let loss: Vec<Vec<f64>> = members.iter().map(|&i| loss[i].clone()).collect();
        let found = right_to_wrong(&correct, Some(&loss));
        flips_total.push((family.to_string(), found.len()));
        flips.extend(found.iter().take(analysis.flips).map(|f| {
            let doc = &docs[f.doc];
            FlipDoc::new(family, f, doc.id, doc.body.prompt(), doc.body.classes(), doc.body.answer().unwrap_or(0))
        }));
    }
    TaskScaling { task: task.to_string(), documents: docs.len(), metrics, flips_total, flips }
}
