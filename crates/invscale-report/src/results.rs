//! The results file: lm-eval's layout (`results` → `"acc,none"`, `"acc_stderr,none"`, …,
//! `configs`, `versions`, `n-shot`, `higher_is_better`, `n-samples`, `config`, tokenizer and
//! timing keys), so scripts that read lm-eval's files read invscale's. Everything invscale adds
//! (loss, coverage, BOS policy, request counts, data provenance) is under keys lm-eval does not
//! use, mostly `invscale`.

use serde_json::{Map, Value, json};

pub use invscale_eval::metrics::higher_is_better;
use invscale_eval::Aggregate;
use invscale_tasks::spec::Metric;

use crate::{GroupReport, RunInfo, Skipped, TaskReport, sanitize_model_name};

fn metric_entries(out: &mut Map<String, Value>, metrics: &[(Metric, Aggregate)]) {
    for (m, agg) in metrics {
        let name = m.as_str();
        out.insert(format!("{name},none"), number(agg.value));
        out.insert(format!("{name}_stderr,none"), agg.stderr.map_or(json!("N/A"), number));
    }
}

/// A JSON number, or the string lm-eval writes for a value that is not one.
fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(json!("N/A"), Value::Number)
}

fn task_config(t: &TaskReport) -> Value {
    let spec = t.spec;
    let hf = spec.source.hf.as_ref();
    json!({
        "task": spec.name,
        "tag": spec.groups,
        "dataset_path": hf.map(|h| h.repo.clone()),
        "test_split": hf.map(|h| h.split.clone()),
        "doc_to_text": spec.columns.prompt,
        "doc_to_target": spec.columns.answer,
        "doc_to_choice": spec.columns.classes,
        "description": "",
        "target_delimiter": spec.scoring.delimiter,
        "fewshot_delimiter": "\n\n",
        "num_fewshot": 0,
        "metric_list": t.result.metrics.iter().map(|(m, _)| json!({
            "metric": m.as_str(),
            "aggregation": if *m == Metric::Perplexity { "perplexity" } else { "mean" },
            "higher_is_better": higher_is_better(*m),
        })).collect::<Vec<_>>(),
        "output_type": match spec.task_type {
            invscale_tasks::spec::TaskType::Classification => "multiple_choice",
            _ => "loglikelihood",
        },
        "repeats": 1,
        "should_decontaminate": false,
        "metadata": {"version": spec.version},
    })
}

/// The whole results document.
pub fn results_json(run: &RunInfo, tasks: &[TaskReport], groups: &[GroupReport], skipped: &[Skipped]) -> Value {
    let group_row = |g: &GroupReport| {
        let mut row = Map::new();
        row.insert("alias".into(), json!(g.name));
        metric_entries(&mut row, &g.metrics);
        Value::Object(row)
    };
    let mut results: Map<String, Value> = groups.iter().map(|g| (g.name.clone(), group_row(g))).collect();
    for t in tasks {
        let mut row = Map::new();
        let in_group = groups.iter().any(|g| g.tasks.contains(&t.spec.name));
        row.insert("alias".into(), json!(if in_group { format!(" - {}", t.spec.name) } else { t.spec.name.clone() }));
        metric_entries(&mut row, &t.result.metrics);
        results.insert(t.spec.name.clone(), Value::Object(row));
    }
    let per_task = |f: &dyn Fn(&TaskReport) -> Value| -> Map<String, Value> {
        tasks.iter().map(|t| (t.spec.name.clone(), f(t))).collect()
    };
    let mut doc = Map::new();
    doc.insert("results".into(), Value::Object(results));
    if !groups.is_empty() {
        doc.insert("groups".into(), Value::Object(groups.iter().map(|g| (g.name.clone(), group_row(g))).collect()));
    }
    doc.insert(
        "group_subtasks".into(),
        Value::Object(
            groups
                .iter()
                .map(|g| (g.name.clone(), json!(g.tasks)))
                .chain(tasks.iter().filter(|t| !groups.iter().any(|g| g.tasks.contains(&t.spec.name))).map(|t| (t.spec.name.clone(), json!([]))))
                .collect(),
        ),
    );
    doc.insert("configs".into(), Value::Object(per_task(&task_config)));
    doc.insert("versions".into(), Value::Object(per_task(&|t| json!(t.spec.version))));
    doc.insert("n-shot".into(), Value::Object(per_task(&|_| json!(0))));
    doc.insert(
        "higher_is_better".into(),
        Value::Object(per_task(&|t| {
            Value::Object(t.result.metrics.iter().map(|(m, _)| (m.as_str().to_string(), json!(higher_is_better(*m)))).collect())
        })),
    );
    doc.insert(
        "n-samples".into(),
        Value::Object(per_task(&|t| json!({"original": t.original, "effective": t.result.docs.len()}))),
    );
    doc.insert(
        "config".into(),
        json!({
            "model": "invscale",
            "model_args": run.model_args,
            "model_num_parameters": run.params,
            "model_dtype": run.dtype,
            "model_revision": "main",
            "model_sha": run.fingerprint,
            "batch_size": run.batch_size,
            "batch_sizes": [],
            "device": run.device,
            "use_cache": run.cache,
            "limit": run.limit,
            "bootstrap_iters": 0,
            "gen_kwargs": null,
            "random_seed": run.seed,
            "numpy_seed": run.seed,
            "torch_seed": run.seed,
            "fewshot_seed": run.seed,
        }),
    );
    doc.insert("git_hash".into(), Value::Null);
    doc.insert("date".into(), json!(run.start_time));
    doc.insert("invscale_version".into(), json!(env!("CARGO_PKG_VERSION")));
    let token = |t: &Option<(String, u32)>| t.as_ref().map_or(json!(["None", "None"]), |(s, id)| json!([s, id.to_string()]));
    doc.insert("tokenizer_pad_token".into(), token(&run.eos_token));
    doc.insert("tokenizer_eos_token".into(), token(&run.eos_token));
    doc.insert("tokenizer_bos_token".into(), token(&run.bos_token));
    doc.insert("eot_token_id".into(), json!(run.eos_token.as_ref().map(|t| t.1)));
    doc.insert("max_length".into(), json!(tasks.first().map(|t| t.result.max_length)));
    doc.insert("task_hashes".into(), json!({}));
    doc.insert("model_source".into(), json!("invscale"));
    doc.insert("model_name".into(), json!(run.model));
    doc.insert("model_name_sanitized".into(), json!(sanitize_model_name(&run.model)));
    doc.insert("system_instruction".into(), Value::Null);
    doc.insert("system_instruction_sha".into(), Value::Null);
    doc.insert("fewshot_as_multiturn".into(), json!(false));
    doc.insert("chat_template".into(), Value::Null);
    doc.insert("chat_template_sha".into(), Value::Null);
    doc.insert("start_time".into(), json!(run.start_time));
    doc.insert("end_time".into(), json!(run.end_time));
    doc.insert("total_evaluation_time_seconds".into(), json!(format!("{}", run.end_time - run.start_time)));
    doc.insert("invscale".into(), invscale_section(run, tasks, skipped));
    Value::Object(doc)
}

/// invscale's own record: how the numbers were made, and what was not run.
fn invscale_section(run: &RunInfo, tasks: &[TaskReport], skipped: &[Skipped]) -> Value {
    let task_rows: Map<String, Value> = tasks
        .iter()
        .map(|t| {
            let c = t.result.counts;
            (
                t.spec.name.clone(),
                json!({
                    "request_mode": t.result.mode.as_str(),
                    "target_delimiter": t.spec.scoring.delimiter,
                    "max_length": t.result.max_length,
                    "documents": t.result.docs.len(),
                    "requests": c.requests,
                    "requests_cached": c.cached,
                    "requests_computed": c.computed,
                    "requests_truncated": c.truncated,
                    "requests_boundary_fallback": c.boundary_fallback,
                    "tokens_requested": c.tokens_requested,
                    "tokens_computed": c.tokens_computed,
                    "data": t.files,
                }),
            )
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "command": run.command,
        "model": {
            "path": run.model_path,
            "arch": run.arch,
            "parameters": run.params,
            "non_embedding_parameters": run.non_embedding_params,
            "dtype": run.dtype,
            "fingerprint": run.fingerprint,
            "tokenizer": run.tokenizer,
        },
        "bos_policy": run.bos_policy,
        "bos_prepended": run.bos_used,
        "stderr_ddof": run.stderr_ddof,
        "score_cache": run.cache,
        "server": run.server,
        "timing": {"model_load_seconds": run.load_seconds, "scoring_seconds": run.scoring_seconds, "peak_memory_bytes": run.peak_memory_bytes},
        "tasks": task_rows,
        "skipped": skipped.iter().map(|s| json!({"task": s.task, "reason": s.reason})).collect::<Vec<_>>(),
    })
}
