//! A model's run as lm-eval leaves it (SCORING.md §5): `<output>/<model>/results_<date>.json`
//! and, with `--log-samples`, `samples_<task>_<date>.jsonl` per task; and the table lm-eval
//! prints at the end.

use std::path::Path;
use std::time::SystemTime;

use invscale_models::BosPolicy;
use invscale_report::markdown::{Row, group_table, table};
use invscale_report::output::{OutputPaths, write_atomic};
use invscale_report::results::results_json;
use invscale_report::samples::sample_line;
use invscale_report::{RunInfo, TaskReport};

use crate::error::HarnessError;

/// This process's command line as a user would type it (the program by its name, not the path
/// it was started from; arguments with spaces quoted), for the results to record.
pub fn command_line() -> String {
    std::iter::once("invscale".to_string())
        .chain(std::env::args().skip(1).map(|a| if a.contains(' ') { format!("{a:?}") } else { a }))
        .collect::<Vec<_>>()
        .join(" ")
}
use crate::evaluate::ModelRun;
use crate::observer::Observer;
use crate::tasks::TaskSet;

/// How the run was asked for, as the results record it.
pub struct Invocation {
    pub gguf_file: Option<String>,
    pub bos: BosPolicy,
    /// `--batch-size` as given (`auto` or a count).
    pub batch_size: String,
    pub device: String,
    pub limit: Option<f64>,
    pub seed: u64,
    /// Seconds since the epoch.
    pub start_time: f64,
    pub end_time: f64,
    pub command: String,
}

pub fn bos_name(b: BosPolicy) -> &'static str {
    match b {
        BosPolicy::Auto => "auto",
        BosPolicy::Always => "always",
        BosPolicy::Never => "never",
    }
}

/// The run-level record of the results file.
pub fn run_info(run: &ModelRun, how: &Invocation) -> RunInfo {
    let m = &run.model;
    let mut model_args = format!("pretrained={}", m.reference);
    if let Some(f) = &how.gguf_file {
        model_args += &format!(",gguf_file={f}");
    }
    model_args += &format!(",dtype={},bos={}", m.dtype, bos_name(how.bos));
    RunInfo {
        model: m.reference.clone(),
        model_args,
        model_path: m.path.display().to_string(),
        arch: m.arch.clone(),
        params: m.params,
        non_embedding_params: m.non_embedding_params,
        dtype: m.dtype.into(),
        fingerprint: run.fingerprint.clone(),
        bos_policy: bos_name(how.bos).into(),
        bos_token: m.bos_token.clone(),
        eos_token: m.eos_token.clone(),
        bos_used: run.bos_used,
        tokenizer: m.tokenizer.clone(),
        batch_size: how.batch_size.clone(),
        device: how.device.clone(),
        limit: how.limit,
        seed: how.seed,
        stderr_ddof: run.settings.stderr_ddof,
        cache: run.cache.as_ref().map(|p| p.display().to_string()),
        start_time: how.start_time,
        end_time: how.end_time,
        load_seconds: run.load_seconds,
        scoring_seconds: run.scoring_seconds,
        peak_memory_bytes: invscale_models::peak_resident_bytes(),
        command: how.command.clone(),
        server: run.server.clone(),
    }
}

fn reports<'a>(run: &'a ModelRun, tasks: &'a TaskSet, limit: Option<f64>) -> Vec<TaskReport<'a>> {
    run.results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let ds = &tasks.datasets[i];
            TaskReport { spec: &ds.spec, result: r, docs: tasks.docs(i, limit), original: ds.docs.len(), files: &ds.files }
        })
        .collect()
}

/// Writes the results file (and the samples files) under `out`; each file whole or not at all.
pub fn write(out: &Path, run: &ModelRun, tasks: &TaskSet, how: &Invocation, log_samples: bool, observer: &mut dyn Observer) -> Result<(), HarnessError> {
    let reports = reports(run, tasks, how.limit);
    let groups = tasks.group_reports(&run.results);
    let paths = OutputPaths::new(out, &run.model.reference, &invscale_report::output::date_id(SystemTime::now()));
    let json = results_json(&run_info(run, how), &reports, &groups, &tasks.skipped);
    let text = serde_json::to_string_pretty(&json).map_err(|e| HarnessError::Io(e.to_string()))?;
    let written = |path: &Path, bytes: &[u8]| write_atomic(path, bytes).map_err(|e| HarnessError::Io(format!("{}: {e}", path.display())));
    written(&paths.results, format!("{text}\n").as_bytes())?;
    observer.note(&format!("results: {}", paths.results.display()));
    if !log_samples {
        return Ok(());
    }
    let count = |t: &TaskReport| t.docs.len().min(t.result.docs.len());
    let lines = |t: &TaskReport, from: usize, to: usize| {
        t.docs[from..to].iter().zip(&t.result.docs[from..to]).map(|(d, r)| sample_line(d, r) + "\n").collect::<String>()
    };
    // On a GPU machine the lines are made on every core, in runs of documents (the suite's
    // sig-figs alone: 62 MB); a CPU run makes one file at a time (its peak RSS is judged).
    const RUN: usize = 2048;
    let made: Vec<Option<String>> = if how.device.split(',').all(|d| d.trim() == "cpu") {
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
        written(&path, text.as_bytes())?;
        observer.note(&format!("samples: {}", path.display()));
    }
    invscale_models::profile::stamp("run: samples written");
    Ok(())
}

/// What a run's requests came to: computed, from the cache, truncated, boundary fallbacks, and
/// the tokens computed of those lm-eval would put through the model.
pub fn counts_line(total: &invscale_eval::Counts, on_server: bool) -> String {
    // A server's engine decides what it recomputes; only in-process is it known here.
    let tokens = if on_server {
        format!("{} requested tokens, scored on the server", total.tokens_requested)
    } else {
        format!("{} of {} requested tokens computed", total.tokens_computed, total.tokens_requested)
    };
    format!(
        "{} requests: {} computed, {} from the score cache; {} truncated, {} boundary fallbacks; {tokens}",
        total.requests, total.computed, total.cached, total.truncated, total.boundary_fallback
    )
}

/// lm-eval's summary: a header line, the task table, and the group table when groups ran.
pub fn summary(run: &ModelRun, tasks: &TaskSet, how: &Invocation) -> String {
    let limit = how.limit.map_or("None".to_string(), |l| l.to_string());
    let mut out = format!(
        "invscale ({}, dtype={}, bos={} → {}), limit: {limit}, batch_size: {}\n",
        run.model.reference,
        run.model.dtype,
        bos_name(how.bos),
        if run.bos_used { "BOS" } else { "no BOS" },
        how.batch_size
    );
    let rows: Vec<Row> = reports(run, tasks, how.limit)
        .iter()
        .flat_map(|t| {
            t.result.metrics.iter().map(|(m, agg)| Row { name: t.spec.name.clone(), version: t.spec.version.to_string(), metric: *m, agg: *agg })
        })
        .collect();
    out += &table(&rows);
    let groups = tasks.group_reports(&run.results);
    if !groups.is_empty() {
        out += "\n";
        out += &group_table(&groups);
    }
    out
}
