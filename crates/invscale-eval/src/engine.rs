//! Runs a task's documents on a model: builds each document's requests, takes finished ones from
//! the score cache, runs each distinct context once and scores all of its continuations against
//! the cached KV, records new scores as each document finishes, and computes the metrics.

use std::collections::HashMap;

use invscale_models::{BosPolicy, Model, ModelError};
use invscale_tasks::spec::{Metric, RequestMode, TaskType};
use invscale_tasks::{DocBody, Document, TaskSpec};

use crate::cache::{RequestKey, Score, ScoreCache};
use crate::encode::{EncodeSettings, Encoded, Encoder, encode};
use crate::metrics::{Aggregate, DocScores, aggregate, doc_metric};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("score cache: {0}")]
    Cache(#[from] std::io::Error),
    #[error("document {doc} of {task}: tokenizer: {message}")]
    Tokenize { task: String, doc: usize, message: String },
}

/// Settings of a run that change its numbers (all recorded in the results).
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub bos: BosPolicy,
    /// Overrides each task file's request mode.
    pub mode: Option<RequestMode>,
    /// Overrides the model's context length (lm-eval's `max_length`).
    pub max_length: Option<usize>,
    /// Degrees of freedom of the stderr: 1 as lm-eval, 0 as the prize's plots.
    pub stderr_ddof: usize,
    /// Extra metrics on top of each task's own (`acc_mutual_info` doubles the requests).
    pub extra_metrics: Vec<Metric>,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings { bos: BosPolicy::Auto, mode: None, max_length: None, stderr_ddof: 1, extra_metrics: Vec::new() }
    }
}

/// lm-eval's `max_length` when the model does not say (HFLM's `_DEFAULT_MAX_LENGTH`).
pub const DEFAULT_MAX_LENGTH: usize = 2048;
/// The prize pipeline cut inputs at 1023 tokens.
pub const PRIZE_MAX_LENGTH: usize = 1023;

/// One scored request, with what the samples log shows of it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestResult {
    pub context: String,
    pub continuation: String,
    pub ll: f64,
    pub greedy: bool,
    pub context_tokens: usize,
    pub continuation_tokens: usize,
    pub truncated: usize,
    pub boundary_fallback: bool,
}

#[derive(Clone, Debug)]
pub struct DocResult {
    pub doc_id: usize,
    /// In lm-eval's order: one per class (logodds: the classes after `prompt`, then after
    /// `other_prompt`).
    pub requests: Vec<RequestResult>,
    /// `acc_mutual_info`'s class-only requests.
    pub unconditional: Vec<RequestResult>,
    pub scores: DocScores,
    pub metrics: Vec<(Metric, f64)>,
}

/// Counts that explain a run (reported in the results).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: usize,
    /// Requests whose score came from the cache (finished in an earlier run).
    pub cached: usize,
    /// Requests scored in this run.
    pub computed: usize,
    pub truncated: usize,
    pub boundary_fallback: usize,
    /// Tokens the requests ask for, as lm-eval runs them (each request's whole input).
    pub tokens_requested: usize,
    /// Tokens this run put through the model (each distinct context once).
    pub tokens_computed: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.requests += o.requests;
        self.cached += o.cached;
        self.computed += o.computed;
        self.truncated += o.truncated;
        self.boundary_fallback += o.boundary_fallback;
        self.tokens_requested += o.tokens_requested;
        self.tokens_computed += o.tokens_computed;
    }
}

#[derive(Clone, Debug)]
pub struct TaskResult {
    pub task: String,
    pub mode: RequestMode,
    pub max_length: usize,
    pub metrics: Vec<(Metric, Aggregate)>,
    pub docs: Vec<DocResult>,
    pub counts: Counts,
}

/// Reported after each document.
pub struct Progress<'a> {
    pub task: &'a str,
    pub done: usize,
    pub total: usize,
    pub counts: Counts,
}

struct ModelEncoder<'a>(&'a Model);

impl Encoder for ModelEncoder<'_> {
    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.0.tokenizer.encode(text).map_err(|e| e.to_string())
    }
}

/// The metrics a task reports in this run.
pub fn task_metrics(spec: &TaskSpec, settings: &RunSettings) -> Vec<Metric> {
    let mut metrics = spec.metrics();
    for m in &settings.extra_metrics {
        if spec.task_type.allowed_metrics().contains(m) && !metrics.contains(m) {
            metrics.push(*m);
        }
    }
    metrics
}

pub fn run_task(
    model: &Model,
    cache: &mut ScoreCache,
    spec: &TaskSpec,
    docs: &[Document],
    settings: &RunSettings,
    progress: &mut dyn FnMut(Progress),
) -> Result<TaskResult, EvalError> {
    let mode = settings.mode.unwrap_or(spec.scoring.mode);
    let max_length = settings.max_length.unwrap_or(match mode {
        RequestMode::LmEval => model.context_length.unwrap_or(DEFAULT_MAX_LENGTH),
        RequestMode::Prize => PRIZE_MAX_LENGTH,
    });
    let enc_settings = EncodeSettings {
        mode,
        bos: model.bos_token(settings.bos),
        prefix_token: model.bos_token(BosPolicy::Always).unwrap_or(0),
        max_length,
    };
    let metrics = task_metrics(spec, settings);
    let mutual_info = metrics.contains(&Metric::AccMutualInfo);
    let encoder = ModelEncoder(model);
    let mut counts = Counts::default();
    let mut results = Vec::with_capacity(docs.len());
    for (done, doc) in docs.iter().enumerate() {
        let tokenize_err = |message: String| EvalError::Tokenize { task: spec.name.clone(), doc: doc.id, message };
        // The requests, as text and as tokens.
        let mut texts: Vec<(String, String)> =
            doc.requests(&spec.scoring.delimiter).into_iter().map(|r| (r.context, r.continuation)).collect();
        let n_main = texts.len();
        if mutual_info && let DocBody::Classification { classes, .. } = &doc.body {
            texts.extend(classes.iter().map(|c| (String::new(), c.clone())));
        }
        let encoded: Vec<Encoded> = match &doc.body {
            DocBody::Logodds { classes, .. } => {
                // Next-token log-probs after each prompt, of each class's last token.
                let mut out = Vec::new();
                for (context, continuation) in &texts {
                    let mut ctx: Vec<u32> = enc_settings.bos.into_iter().collect();
                    ctx.extend(encoder.encode(context).map_err(tokenize_err)?);
                    let class_tokens = encoder.encode(continuation).map_err(tokenize_err)?;
                    let last = *class_tokens.last().ok_or_else(|| tokenize_err(format!("class {classes:?} has no tokens")))?;
                    out.push(Encoded { context: ctx, continuation: vec![last], truncated: 0, boundary_fallback: false });
                }
                out
            }
            _ => texts
                .iter()
                .map(|(c, k)| encode(&encoder, &enc_settings, c, k))
                .collect::<Result<_, _>>()
                .map_err(tokenize_err)?,
        };
        let (scores, doc_counts) = score_requests(model, cache, &encoded)?;
        counts += doc_counts;

        let requests: Vec<RequestResult> = texts
            .into_iter()
            .zip(&encoded)
            .zip(&scores)
            .map(|(((context, continuation), e), s)| RequestResult {
                context,
                continuation,
                ll: s.ll,
                greedy: s.greedy,
                context_tokens: e.context.len(),
                continuation_tokens: e.continuation.len(),
                truncated: e.truncated,
                boundary_fallback: e.boundary_fallback,
            })
            .collect();
        let (requests, unconditional) = {
            let mut r = requests;
            let u = r.split_off(n_main);
            (r, u)
        };
        let doc_scores = match &doc.body {
            DocBody::Classification { .. } => DocScores::Classification {
                lls: requests.iter().map(|r| r.ll).collect(),
                greedy: requests.iter().map(|r| r.greedy).collect(),
                unconditional: mutual_info.then(|| unconditional.iter().map(|r| r.ll).collect()),
            },
            DocBody::SequenceProb { .. } => DocScores::SequenceProb { ll: requests[0].ll },
            DocBody::Logodds { .. } => DocScores::Logodds {
                prompt: [requests[0].ll, requests[1].ll],
                other_prompt: [requests[2].ll, requests[3].ll],
            },
        };
        let absolute = spec.task_type == TaskType::AbsoluteLogodds;
        let doc_metrics = metrics
            .iter()
            .filter_map(|&m| doc_metric(m, &doc.body, &doc_scores, absolute).map(|v| (m, v)))
            .collect();
        results.push(DocResult { doc_id: doc.id, requests, unconditional, scores: doc_scores, metrics: doc_metrics });
        progress(Progress { task: &spec.name, done: done + 1, total: docs.len(), counts });
    }
    let aggregates = metrics
        .iter()
        .map(|&m| {
            let values: Vec<f64> =
                results.iter().filter_map(|d| d.metrics.iter().find(|(k, _)| *k == m).map(|(_, v)| *v)).collect();
            (m, aggregate(m, &values, settings.stderr_ddof))
        })
        .collect();
    Ok(TaskResult { task: spec.name.clone(), mode, max_length, metrics: aggregates, docs: results, counts })
}

/// Scores one document's requests: cached ones are read, the rest run with each distinct context
/// once; new scores are written to the cache (one synced write) before returning.
fn score_requests(model: &Model, cache: &mut ScoreCache, encoded: &[Encoded]) -> Result<(Vec<Score>, Counts), EvalError> {
    let mut counts = Counts { requests: encoded.len(), ..Counts::default() };
    let keys: Vec<RequestKey> = encoded.iter().map(RequestKey::of).collect();
    let mut scores: Vec<Option<Score>> = keys.iter().map(|k| cache.get(k)).collect();
    for e in encoded {
        counts.tokens_requested += e.context.len() + e.continuation.len() - 1;
        counts.truncated += usize::from(e.truncated > 0);
        counts.boundary_fallback += usize::from(e.boundary_fallback);
    }
    counts.cached = scores.iter().filter(|s| s.is_some()).count();
    // Group the missing requests by context, in order of first appearance.
    let mut by_context: Vec<(&[u32], Vec<usize>)> = Vec::new();
    let mut index: HashMap<&[u32], usize> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = Vec::new();
    for (i, e) in encoded.iter().enumerate() {
        if scores[i].is_some() {
            continue;
        }
        if !seen.insert(keys[i]) {
            // The same request twice in one document runs once.
            duplicates.push(i);
            continue;
        }
        let slot = *index.entry(&e.context).or_insert_with(|| {
            by_context.push((&e.context, Vec::new()));
            by_context.len() - 1
        });
        by_context[slot].1.push(i);
    }
    let mut fresh = Vec::new();
    for (context, members) in by_context {
        // One forward pass per context: it and all its continuations, as a token tree.
        let conts: Vec<&[u32]> = members.iter().map(|&i| encoded[i].continuation.as_slice()).collect();
        let all = model.score_branches(context, &conts)?;
        counts.tokens_computed += context.len() + conts.iter().map(|c| c.len() - 1).sum::<usize>();
        for (&i, token_scores) in members.iter().zip(all) {
            let score = Score {
                ll: token_scores.iter().map(|t| f64::from(t.logprob)).sum(),
                greedy: token_scores.iter().all(|t| t.greedy),
            };
            scores[i] = Some(score);
            fresh.push((keys[i], score));
            counts.computed += 1;
        }
    }
    for i in duplicates {
        scores[i] = fresh.iter().find(|(k, _)| *k == keys[i]).map(|(_, s)| *s);
    }
    cache.put_all(&fresh)?;
    Ok((scores.into_iter().map(|s| s.expect("every request scored")).collect(), counts))
}
