//! Evaluating models on tasks: each model loaded in turn, its score cache opened, every task
//! scored (finished requests from the cache, the rest computed and recorded as each batch
//! finishes), and what the results files and scaling reports need kept once the model is gone.

use std::time::Instant;

use invscale_eval::{Counts, RunSettings, TaskResult, run_tasks_on};
use invscale_models::profile::stamp;

use crate::cache::{self, CacheOptions};
use crate::error::HarnessError;
use crate::info::ModelInfo;
use crate::models::{Backend, LoadedModel, ModelRequest};
use crate::observer::Observer;
use crate::tasks::TaskSet;

/// How every model of a call runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// What changes the numbers (BOS, request mode, lengths, metrics) and how passes are cut.
    pub settings: RunSettings,
    /// lm-eval's `--limit`: a count, or a fraction below 1, of each task's documents.
    pub limit: Option<f64>,
    pub cache: CacheOptions,
}

/// One model's results on every task of the call.
pub struct ModelRun {
    pub model: ModelInfo,
    /// The model file's fingerprint (the score cache's key).
    pub fingerprint: String,
    pub cache: Option<std::path::PathBuf>,
    /// The settings it ran with (batch sizes as fitted to its device).
    pub settings: RunSettings,
    /// Whether its sequences started with BOS.
    pub bos_used: bool,
    /// One per task of the [`TaskSet`], in its order.
    pub results: Vec<TaskResult>,
    pub load_seconds: f64,
    pub scoring_seconds: f64,
    /// The server's record (`null` in-process; see [`crate::server::record`]).
    pub server: serde_json::Value,
}

impl ModelRun {
    /// The counts of every task together.
    pub fn total(&self) -> Counts {
        let mut total = Counts::default();
        for r in &self.results {
            total += r.counts;
        }
        total
    }
}

/// Every model of `models` on every task of `tasks`, one model loaded at a time. The first
/// error stops the call; what was scored before it is in the score caches, so the same call
/// again resumes there.
pub fn evaluate(models: &[ModelRequest], tasks: &TaskSet, options: &Options, observer: &mut dyn Observer) -> Result<Vec<ModelRun>, HarnessError> {
    let hub = invscale_hub::Hub::from_env();
    let mut runs = Vec::with_capacity(models.len());
    for request in models {
        let model = LoadedModel::load(request, &hub).map_err(|e| match e {
            HarnessError::BadInput(m) if models.len() > 1 => HarnessError::BadInput(format!("{}: {m}", request.reference)),
            e => e,
        })?;
        runs.push(evaluate_model(&model, tasks, options, observer)?);
    }
    Ok(runs)
}

/// One loaded model (every copy of it: data parallel over its devices) on every task.
pub fn evaluate_model(model: &LoadedModel, tasks: &TaskSet, options: &Options, observer: &mut dyn Observer) -> Result<ModelRun, HarnessError> {
    if model.request.on_cpu() {
        invscale_models::tune_allocator();
    }
    let info = model.info();
    observer.note(&format!(
        "model: {} ({}, {:.0}M parameters, {:.0}M non-embedding, {}), loaded in {:.1}s",
        info.path.display(),
        info.arch,
        info.params as f64 / 1e6,
        info.non_embedding_params as f64 / 1e6,
        info.dtype,
        model.load_seconds
    ));
    if let Backend::Local(copies) = &model.backend
        && let Some(sizes) = copies.first().map(invscale_models::Model::stage_sizes).filter(|s| s.len() > 1)
    {
        let split: Vec<String> = sizes.iter().map(usize::to_string).collect();
        observer.note(&format!("layers split over {} devices ({} layers), {} cop{}", sizes.len(), split.join("+"), copies.len(), if copies.len() == 1 { "y" } else { "ies" }));
    }
    if let Backend::Server(s) = &model.backend {
        observer.note(&format!("server: {} ({} API, model {}): {}", s.server.client.base, s.server.api.name(), s.server.model, s.check.summary()));
        if let Some(sink) = observer.server_lines() {
            s.report_to(sink);
        }
    }
    let (fingerprint, mut cache) = cache::open(model, &options.cache, observer)?;
    // On a GPU, passes as large as its free memory allows (no probing runs); with several, as
    // the smallest allows (every device runs the batches one would).
    let base = options.settings.batch_tokens;
    let settings = RunSettings { batch_tokens: model.batch_tokens(base), ..options.settings.clone() };
    let scorers = model.scorers();
    let work: Vec<_> = (0..tasks.datasets.len()).map(|i| (&tasks.datasets[i].spec, tasks.docs(i, options.limit))).collect();
    let started = Instant::now();
    let mut results: Vec<TaskResult> = Vec::with_capacity(work.len());
    let observer = std::cell::RefCell::new(observer);
    run_tasks_on(
        &scorers,
        &mut cache,
        &work,
        &settings,
        &mut |i| observer.borrow_mut().task_started(&work[i].0.name, work[i].1.len()),
        &mut |p| observer.borrow_mut().progress(&p),
        &mut |_, result| {
            observer.borrow_mut().task_finished(&result);
            results.push(result);
        },
    )?;
    stamp("run: scored");
    let server = match &model.backend {
        Backend::Server(s) => crate::server::record(s),
        Backend::Local(_) => serde_json::Value::Null,
    };
    Ok(ModelRun {
        server,
        bos_used: model.bos_used(settings.bos),
        model: info,
        fingerprint,
        cache: cache.path().map(|p| p.to_path_buf()),
        settings,
        results,
        load_seconds: model.load_seconds,
        scoring_seconds: started.elapsed().as_secs_f64(),
    })
}
