//! What a run leaves behind, in the formats users' tools already read (SCORING.md §5):
//! lm-eval's results JSON (its keys and layout, plus invscale's own under `invscale`), its
//! samples JSONL, and its markdown table.

pub mod markdown;
pub mod output;
pub mod results;
pub mod samples;

use invscale_eval::{Aggregate, TaskResult};
use invscale_tasks::spec::Metric;
use invscale_tasks::{Document, TaskSpec};
use invscale_tasks::dataset::DataFile;

/// Everything about the run that is not per task.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// `--model` as the user gave it (lm-eval's `pretrained`).
    pub model: String,
    /// lm-eval-style `model_args` (`pretrained=...,gguf_file=...,dtype=...`).
    pub model_args: String,
    pub model_path: String,
    pub arch: String,
    pub params: u64,
    /// Without embeddings and an untied output head.
    pub non_embedding_params: u64,
    /// `f32` or `quantized`.
    pub dtype: String,
    pub fingerprint: String,
    /// `auto`, `always` or `never`, and what it meant for this model.
    pub bos_policy: String,
    pub bos_token: Option<(String, u32)>,
    pub eos_token: Option<(String, u32)>,
    /// Whether sequences started with BOS in this run.
    pub bos_used: bool,
    pub tokenizer: String,
    pub batch_size: String,
    pub device: String,
    /// `--limit` as given (count or fraction).
    pub limit: Option<f64>,
    pub seed: u64,
    pub stderr_ddof: usize,
    pub cache: Option<String>,
    pub start_time: f64,
    pub end_time: f64,
    /// Seconds spent loading the model, and scoring (every task, cached requests included).
    pub load_seconds: f64,
    pub scoring_seconds: f64,
    /// The process's peak resident memory when the results were written (Linux).
    pub peak_memory_bytes: Option<u64>,
    /// The command line, for the record.
    pub command: String,
    /// With `--server`: the server scored on (address, API, model, what it said of itself), its
    /// self-check and what was sent; `null` for the in-process runtime.
    pub server: serde_json::Value,
}

/// One task of the run, with its data.
pub struct TaskReport<'a> {
    pub spec: &'a TaskSpec,
    pub result: &'a TaskResult,
    /// The documents scored (after `--limit`), in the result's order.
    pub docs: &'a [Document],
    /// Documents in the data before `--limit`.
    pub original: usize,
    pub files: &'a [DataFile],
}

/// A group row over tasks of the run.
#[derive(Clone, Debug)]
pub struct GroupReport {
    pub name: String,
    pub tasks: Vec<String>,
    pub metrics: Vec<(Metric, Aggregate)>,
}

/// A task that was asked for and not run, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub task: String,
    pub reason: String,
}

/// lm-eval's `sanitize_model_name`: runs of `"<>:/|\?*[]` become `__`.
pub fn sanitize_model_name(name: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in name.chars() {
        if "\"<>:/|\\?*[]".contains(c) {
            if !in_run {
                out.push_str("__");
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_sanitized_as_lm_eval_does() {
        // lm-eval's own output folder for pretrained=/root/.cache/invscale/models
        assert_eq!(sanitize_model_name("/root/.cache/invscale/models"), "__root__.cache__invscale__models");
        assert_eq!(sanitize_model_name("EleutherAI/pythia-70m"), "EleutherAI__pythia-70m");
        assert_eq!(sanitize_model_name("a:/b"), "a__b");
    }
}
