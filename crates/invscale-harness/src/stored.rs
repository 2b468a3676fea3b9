//! A finished run read back from its output folder, so a scaling report can be built without
//! rerunning the model: `invscale run --output-path DIR --log-samples`, or lm-evaluation-harness's
//! `lm_eval --output_path DIR --log_samples` (the same layout: `DIR/<model>/results_<time>.json`
//! and `samples_<task>_<time>.jsonl`, SCORING.md §5).
//!
//! Per document it reads what the verdicts need and nothing of the text: `doc_id`, `target`
//! (the gold class), `filtered_resps` (each class's log-likelihood and whether it was greedy),
//! and the per-document metrics lm-eval logged (`acc`, `acc_norm`, …); the loss is the gold
//! class's negative log-probability among the classes, as for a live run. The documents must be
//! the task's own, in its order (`doc_id` 0..n as `--limit n` gives); the task's data is loaded
//! as for a live run, for the report's prompts.

use std::path::{Path, PathBuf};

use invscale_eval::metrics::{aggregate, logsumexp};
use invscale_eval::{Counts, DocResult, DocScores, RunSettings, TaskResult};
use invscale_tasks::spec::Metric;
use serde_json::Value;

use crate::error::HarnessError;
use crate::evaluate::ModelRun;
use crate::info::{ModelInfo, infer_family};
use crate::tasks::TaskSet;

/// What a stored run's `dtype` says in the report (`scored_by`).
pub const STORED: &str = "stored results";

/// The run in `dir`, for every task of `tasks` (its first `limit` documents).
pub fn read(dir: &Path, tasks: &TaskSet, limit: Option<f64>) -> Result<ModelRun, HarnessError> {
    let bad = |m: String| HarnessError::BadInput(m);
    let results_file = latest(dir, "results_", ".json")?.ok_or_else(|| {
        bad(format!("{}: no results_*.json here or one folder down: name a finished run's --output-path folder (invscale run, or lm_eval)", dir.display()))
    })?;
    let text = std::fs::read_to_string(&results_file).map_err(|e| bad(format!("{}: {e}", results_file.display())))?;
    let results: Value = serde_json::from_str(&text).map_err(|e| bad(format!("{}:{}: {e}", results_file.display(), e.line())))?;
    let folder = results_file.parent().unwrap_or(dir);
    let invscale = &results["invscale"]["model"];
    let name = results["model_name"]
        .as_str()
        .or_else(|| results["config"]["model_args"]["pretrained"].as_str())
        .unwrap_or_else(|| dir.file_name().and_then(|n| n.to_str()).unwrap_or("stored run"))
        .to_string();
    let params = invscale["parameters"].as_u64().or_else(|| results["config"]["model_num_parameters"].as_u64()).unwrap_or(0);
    let arch = invscale["arch"].as_str().unwrap_or_default().to_string();
    let settings = RunSettings::default();
    let mut task_results = Vec::new();
    for (t, dataset) in tasks.datasets.iter().enumerate() {
        let task = &dataset.spec.name;
        let file = samples_file(folder, task)?.ok_or_else(|| {
            bad(format!("{}: no samples_*{task}_*.jsonl beside {}: the run needs --log-samples (lm_eval: --log_samples) and task {task}", folder.display(), results_file.display()))
        })?;
        let docs = tasks.docs(t, limit);
        let mut read = read_samples(&file, &dataset.spec.scoring.metrics)?;
        read.sort_by_key(|d| d.doc_id);
        let want: Vec<usize> = docs.iter().map(|d| d.id).collect();
        let have: Vec<usize> = read.iter().map(|d| d.doc_id).collect();
        if have.len() < want.len() || have[..want.len()] != want[..] {
            return Err(bad(format!(
                "{}: holds documents {} of {task}, the report asks for {} (its --limit): give the same --limit as the stored run",
                file.display(),
                span(&have),
                span(&want)
            )));
        }
        read.truncate(want.len());
        let metrics: Vec<Metric> = read.first().map(|d| d.metrics.iter().map(|(m, _)| *m).collect()).unwrap_or_default();
        let aggregates = metrics
            .iter()
            .map(|&m| {
                let values: Vec<f64> = read.iter().map(|d| d.metrics.iter().find(|(k, _)| *k == m).map_or(f64::NAN, |(_, v)| *v)).collect();
                (m, aggregate(m, &values, settings.stderr_ddof))
            })
            .collect();
        task_results.push(TaskResult {
            task: task.clone(),
            mode: dataset.spec.scoring.mode,
            max_length: results["max_length"].as_u64().unwrap_or(0) as usize,
            metrics: aggregates,
            docs: read,
            counts: Counts::default(),
        });
    }
    let model = ModelInfo {
        reference: dir.display().to_string(),
        family: infer_family(&name, Path::new(&name), &arch),
        name: crate::info::display_name(&name),
        path: dir.to_path_buf(),
        arch,
        params,
        non_embedding_params: invscale["non_embedding_parameters"].as_u64().unwrap_or(0),
        dtype: STORED,
        tokenizer: invscale["tokenizer"].as_str().unwrap_or_default().to_string(),
        bos_token: None,
        eos_token: None,
        context_length: None,
    };
    Ok(ModelRun {
        model,
        fingerprint: String::new(),
        cache: None,
        settings,
        bos_used: false,
        results: task_results,
        load_seconds: 0.0,
        scoring_seconds: 0.0,
        server: Value::Null,
    })
}

/// `0..39`, or the ids as written when they are not a run.
fn span(ids: &[usize]) -> String {
    match (ids.first(), ids.last()) {
        (Some(a), Some(b)) if b - a + 1 == ids.len() => format!("{a}..{b}"),
        (None, _) => "none".into(),
        _ => format!("{ids:?}"),
    }
}

/// The newest file named `prefix…suffix` in `dir` or one folder down (lm-eval's timestamps sort
/// as text).
fn latest(dir: &Path, prefix: &str, suffix: &str) -> Result<Option<PathBuf>, HarnessError> {
    let listing = |d: &Path| -> Result<Vec<PathBuf>, HarnessError> {
        let entries = std::fs::read_dir(d).map_err(|e| HarnessError::BadInput(format!("{}: {e}", d.display())))?;
        Ok(entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
    };
    let mut found = Vec::new();
    for entry in listing(dir)? {
        if entry.is_dir() {
            found.extend(listing(&entry)?.into_iter().filter(|p| p.is_file()));
        } else {
            found.push(entry);
        }
    }
    found.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix)));
    // lm-eval's `--output_path` holds one subfolder per model: the newest file across them would
    // silently be some model's, so a folder of several is refused.
    let mut folders: Vec<&Path> = found.iter().filter_map(|p| p.parent()).collect();
    folders.sort_unstable();
    folders.dedup();
    if folders.len() > 1 {
        let names: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
        return Err(HarnessError::BadInput(format!(
            "{}: holds the results of several runs ({}): name one model's folder",
            dir.display(),
            names.join(", ")
        )));
    }
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(found.pop())
}

/// The newest `samples_<name>_<time>.jsonl` whose `<name>` is `task`, or ends with `_<task>` (a
/// task renamed around lm-eval's own config, as `ref_inverse_scaling_neqa`).
fn samples_file(folder: &Path, task: &str) -> Result<Option<PathBuf>, HarnessError> {
    let entries = std::fs::read_dir(folder).map_err(|e| HarnessError::BadInput(format!("{}: {e}", folder.display())))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let Some(n) = p.file_name().and_then(|n| n.to_str()) else { return false };
            let Some(rest) = n.strip_prefix("samples_").and_then(|r| r.strip_suffix(".jsonl")) else { return false };
            // `<name>_<time>`: lm-eval's time has no `_`, so the name is what comes before the last one.
            rest.rsplit_once('_').is_some_and(|(name, _)| name == task || name.ends_with(&format!("_{task}")))
        })
        .collect();
    found.sort();
    Ok(found.pop())
}

/// A number lm-eval may have written as a string (`"-14.35"`, `"0"`).
fn number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// `True`/`False` as lm-eval writes them, or a JSON boolean.
fn boolean(v: &Value) -> Option<bool> {
    v.as_bool().or_else(|| match v.as_str() {
        Some("True" | "true") => Some(true),
        Some("False" | "false") => Some(false),
        _ => None,
    })
}

/// Every document of a samples file; an error names the file, line and field.
fn read_samples(file: &Path, task_metrics: &[Metric]) -> Result<Vec<DocResult>, HarnessError> {
    let text = std::fs::read_to_string(file).map_err(|e| HarnessError::BadInput(format!("{}: {e}", file.display())))?;
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |field: &str, what: &str| HarnessError::BadInput(format!("{}:{}: field `{field}`: {what}", file.display(), i + 1));
        let row: Value = serde_json::from_str(line).map_err(|e| at("(the line)", &format!("not JSON: {e}")))?;
        let doc_id = row["doc_id"].as_u64().ok_or_else(|| at("doc_id", "missing or not a whole number"))? as usize;
        let pairs = row["filtered_resps"].as_array().ok_or_else(|| at("filtered_resps", "missing or not a list (a multiple-choice task's samples?)"))?;
        let mut lls = Vec::with_capacity(pairs.len());
        let mut greedy = Vec::with_capacity(pairs.len());
        for p in pairs {
            let pair = p.as_array().filter(|a| a.len() == 2).ok_or_else(|| at("filtered_resps", "each entry must be [log-likelihood, is_greedy]"))?;
            lls.push(number(&pair[0]).ok_or_else(|| at("filtered_resps", "a log-likelihood that is not a number"))?);
            greedy.push(boolean(&pair[1]).ok_or_else(|| at("filtered_resps", "is_greedy not True/False"))?);
        }
        let gold = number(&row["target"]).filter(|g| g.fract() == 0.0 && *g >= 0.0 && (*g as usize) < lls.len());
        let gold = gold.ok_or_else(|| at("target", &format!("not a class index below {}", lls.len())))? as usize;
        let mut metrics = Vec::new();
        for &m in task_metrics.iter().filter(|m| **m != Metric::Loss) {
            if let Some(v) = row.get(m.as_str()) {
                metrics.push((m, number(v).ok_or_else(|| at(m.as_str(), "not a number"))?));
            }
        }
        metrics.push((Metric::Loss, logsumexp(&lls) - lls[gold]));
        let scores = DocScores::Classification { lls, greedy, unconditional: None };
        docs.push(DocResult { doc_id, requests: Vec::new(), unconditional: Vec::new(), scores, metrics });
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder of this test's own, removed first if a killed run left it.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("invscale-stored-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn one_models_folder_gives_its_newest_results_and_several_are_refused() {
        let dir = scratch("latest");
        let one = dir.join("org__model-a");
        std::fs::create_dir_all(&one).unwrap();
        for time in ["2026-01-01T00-00-00.1", "2026-02-01T00-00-00.1"] {
            std::fs::write(one.join(format!("results_{time}.json")), "{}").unwrap();
        }
        let newest = latest(&dir, "results_", ".json").unwrap().unwrap();
        assert_eq!(newest, one.join("results_2026-02-01T00-00-00.1.json"));

        let other = dir.join("org__model-b");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("results_2026-03-01T00-00-00.1.json"), "{}").unwrap();
        let err = latest(&dir, "results_", ".json").unwrap_err().to_string();
        assert!(err.contains("several runs") && err.contains("model-a") && err.contains("model-b"), "{err}");
        // Naming one model's folder reads it.
        assert_eq!(latest(&other, "results_", ".json").unwrap().unwrap(), other.join("results_2026-03-01T00-00-00.1.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
