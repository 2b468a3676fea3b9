//! Runs a task's documents on a model: builds each document's requests, takes finished ones from
//! the score cache, runs each distinct context once and scores all of its continuations against
//! the cached KV, records new scores as each document finishes, and computes the metrics.

use std::collections::HashMap;

use invscale_models::batch::prefix_tree::{MIN_SHARED_TOKENS, PrefixTree, SegmentTree};
use invscale_models::profile::stamp;
use invscale_models::{BosPolicy, Tokenizer};
use invscale_tasks::spec::{Metric, RequestMode, TaskType};
use invscale_tasks::{DocBody, Document, TaskSpec};

use crate::cache::{RequestKey, Score, ScoreCache};
use crate::error::EvalError;
use crate::encode::{EncodeSettings, Encoded, Encoder, encode};
use crate::metrics::{Aggregate, DocScores, aggregate, doc_metric};
use crate::scorer::{Pass, Scorer};


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
    /// Tokens per forward pass: small documents are batched together up to this many.
    pub batch_tokens: usize,
    /// At most this many requests per forward pass (`--batch-size N`); `None`: tokens decide.
    pub batch_requests: Option<usize>,
    /// Threads that tokenise a task's documents; `None`: every core when a GPU runs the passes,
    /// one on the CPU (tokenising is ~0.1% of a CPU run there, and each extra thread's malloc
    /// arena stays resident: +6 MiB peak RSS on SmolLM2's three tasks).
    pub prepare_threads: Option<usize>,
    /// Whether [`run_tasks_on`] plans the next tasks while one is scored; `None`: when a GPU runs
    /// the passes (on a CPU the passes use every core).
    pub plan_ahead: Option<bool>,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            bos: BosPolicy::Auto,
            mode: None,
            max_length: None,
            stderr_ddof: 1,
            extra_metrics: Vec::new(),
            batch_tokens: DEFAULT_BATCH_TOKENS,
            batch_requests: None,
            prepare_threads: None,
            plan_ahead: None,
        }
    }
}

/// lm-eval's `max_length` when the model does not say (HFLM's `_DEFAULT_MAX_LENGTH`).
pub const DEFAULT_MAX_LENGTH: usize = 2048;
/// Tokens per forward pass on the CPU: past a few hundred, a pass is bound by arithmetic, not by
/// reading the weights, and batching more gains nothing.
pub const DEFAULT_BATCH_TOKENS: usize = 384;
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
    /// Tokens this run put through the model (each distinct context once, prefixes shared by
    /// documents batched together once).
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

struct ModelEncoder<'a>(&'a Tokenizer);

impl Encoder for ModelEncoder<'_> {
    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.0.encode(text).map_err(|e| e.to_string())
    }
}

/// A document's encodings, remembered: its requests share their context, which each request's
/// encoding tokenises again (lm-eval's `_encode_pair` tokenises the context and the whole text).
struct Memo<'e> {
    inner: &'e dyn Encoder,
    seen: std::cell::RefCell<Vec<(String, Vec<u32>)>>,
}

impl Encoder for Memo<'_> {
    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        if let Some((_, tokens)) = self.seen.borrow().iter().find(|(t, _)| t == text) {
            return Ok(tokens.clone());
        }
        let tokens = self.inner.encode(text)?;
        self.seen.borrow_mut().push((text.to_string(), tokens.clone()));
        Ok(tokens)
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
    model: &dyn Scorer,
    cache: &mut ScoreCache,
    spec: &TaskSpec,
    docs: &[Document],
    settings: &RunSettings,
    progress: &mut dyn FnMut(Progress),
) -> Result<TaskResult, EvalError> {
    run_task_on(&[model], cache, spec, docs, settings, progress)
}

/// [`run_task`] with a copy of the model on each of several devices (data parallel): the
/// batches are those one device runs, handed out in turns, one to each device at a time, and
/// finished (cache, results, progress) in order; so the results are those of one device.
pub fn run_task_on(
    models: &[&dyn Scorer],
    cache: &mut ScoreCache,
    spec: &TaskSpec,
    docs: &[Document],
    settings: &RunSettings,
    progress: &mut dyn FnMut(Progress),
) -> Result<TaskResult, EvalError> {
    let model = *models.first().expect("at least one model");
    score_task_on(models, cache, plan_task(model, spec, docs, settings)?, settings, progress)
}

/// A task tokenised and cut into batches, ready for [`score_task_on`]. Planning is host work
/// only, so a GPU run plans the next task while this one's passes run (see [`run_tasks_on`]).
pub struct TaskPlan<'d> {
    spec: &'d TaskSpec,
    mode: RequestMode,
    max_length: usize,
    metrics: Vec<Metric>,
    mutual_info: bool,
    docs: usize,
    batches: Vec<Vec<Prepared<'d>>>,
}

/// Tokenises a task's documents (on `model`'s tokenizer) and cuts them into batches.
pub fn plan_task<'d>(model: &dyn Scorer, spec: &'d TaskSpec, docs: &'d [Document], settings: &RunSettings) -> Result<TaskPlan<'d>, EvalError> {
    stamp(format!("task {}: preparing", spec.name));
    let mode = settings.mode.unwrap_or(spec.scoring.mode);
    let max_length = settings.max_length.unwrap_or(match mode {
        RequestMode::LmEval => model.context_length().unwrap_or(DEFAULT_MAX_LENGTH),
        RequestMode::Prize => PRIZE_MAX_LENGTH,
    });
    let enc_settings = EncodeSettings {
        mode,
        bos: model.tokenizer().bos_token(settings.bos),
        prefix_token: model.tokenizer().bos_token(BosPolicy::Always).unwrap_or(0),
        max_length,
    };
    let metrics = task_metrics(spec, settings);
    let mutual_info = metrics.contains(&Metric::AccMutualInfo);
    let mut prepared = prepare_all(docs, spec, model, &enc_settings, mutual_info, settings.prepare_threads)?;
    stamp(format!("task {}: tokenized", spec.name));
    // Where the task's contexts share prefixes, found over all of them, so that every document
    // runs as the same segments whatever it is batched with.
    let mut task_tree = PrefixTree::new();
    for p in &prepared {
        for e in &p.encoded {
            task_tree.insert(&e.context);
        }
    }
    // Contexts were inserted in request order, so the i-th request overall is context i.
    let mut contexts = 0..;
    for p in &mut prepared {
        p.cuts = p.encoded.iter().zip(contexts.by_ref()).map(|(_, i)| task_tree.cuts(i, MIN_SHARED_TOKENS)).collect();
    }
    // Documents are scored in batches: one forward pass runs the contexts of several documents
    // (each with its continuations), their shared segments once, up to a budget of the tokens
    // the pass computes.
    let mut batches: Vec<Vec<Prepared>> = Vec::new();
    let mut pending: Vec<Prepared> = Vec::new();
    let mut pending_tree = SegmentTree::new();
    let mut pending_tokens = 0;
    let mut pending_requests = 0;
    let total = prepared.len();
    for (i, prepared) in prepared.into_iter().enumerate() {
        let work = prepared.work(&mut pending_tree);
        pending_tokens += work.0;
        pending_requests += work.1;
        pending.push(prepared);
        let last = i + 1 == total;
        let full = pending_tokens >= settings.batch_tokens || settings.batch_requests.is_some_and(|n| pending_requests >= n);
        if full || last {
            batches.push(std::mem::take(&mut pending));
            (pending_tokens, pending_requests) = (0, 0);
            pending_tree = SegmentTree::new();
        }
    }
    stamp(format!("task {}: {} batches planned", spec.name, batches.len()));
    Ok(TaskPlan { spec, mode, max_length, metrics, mutual_info, docs: docs.len(), batches })
}

/// Scores a planned task on one copy of the model per device (see [`run_task_on`]).
pub fn score_task_on(
    models: &[&dyn Scorer],
    cache: &mut ScoreCache,
    plan: TaskPlan,
    settings: &RunSettings,
    progress: &mut dyn FnMut(Progress),
) -> Result<TaskResult, EvalError> {
    let TaskPlan { spec, mode, max_length, metrics, mutual_info, docs, batches } = plan;
    let absolute = spec.task_type == TaskType::AbsoluteLogodds;
    let mut counts = Counts::default();
    let mut results = Vec::with_capacity(docs);
    let mut batches = batches.into_iter().peekable();
    while batches.peek().is_some() {
        let turn: Vec<Vec<Prepared>> = batches.by_ref().take(models.len()).collect();
        let passes = run_passes(models, cache, &turn)?;
        for (batch, pass) in turn.into_iter().zip(passes) {
            // Planned again: an earlier batch of this turn may have finished requests this one
            // repeats, which one device would have read from the cache.
            let plan = plan_batch(cache, &batch);
            let scored = finish_batch(cache, &batch, plan, pass)?;
            for (p, (scores, doc_counts)) in batch.into_iter().zip(scored) {
                counts += doc_counts;
                results.push(p.finish(scores, mutual_info, &metrics, absolute));
            }
            progress(Progress { task: &spec.name, done: results.len(), total: docs, counts });
        }
        stamp("turn finished");
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

/// Runs several tasks in order, calling `started` before each and `finished` with each result
/// (the first error ends the run: results already finished were handed over). On a GPU, tasks
/// are planned on other cores (one planner, up to [`PLANS_AHEAD`] plans ready) while the passes
/// run, so their tokenising (the suite's sig-figs: ~1.4 s on 15 cores) hides behind the GPU's
/// work; on a CPU the passes use every core, and tasks are planned one after another (see
/// [`RunSettings::plan_ahead`]). Either way the results are the same, bit for bit.
pub fn run_tasks_on<'d>(
    models: &[&dyn Scorer],
    cache: &mut ScoreCache,
    tasks: &[(&'d TaskSpec, &'d [Document])],
    settings: &RunSettings,
    started: &mut dyn FnMut(usize),
    progress: &mut dyn FnMut(Progress),
    finished: &mut dyn FnMut(usize, TaskResult),
) -> Result<(), EvalError> {
    let model = *models.first().expect("at least one model");
    if !settings.plan_ahead.unwrap_or(!model.uses_host_cores()) {
        for (i, (spec, docs)) in tasks.iter().enumerate() {
            started(i);
            finished(i, run_task_on(models, cache, spec, docs, settings, progress)?);
        }
        return Ok(());
    }
    // The planner leaves a core to the thread that drives the GPU.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let planning = RunSettings { prepare_threads: settings.prepare_threads.or(Some(cores.saturating_sub(1).max(1))), ..settings.clone() };
    std::thread::scope(|s| {
        let (send, plans) = std::sync::mpsc::sync_channel(PLANS_AHEAD);
        let planning = &planning;
        s.spawn(move || {
            for (spec, docs) in tasks {
                let plan = plan_task(model, spec, docs, planning);
                let failed = plan.is_err();
                // Stops when the scorer has stopped (an error) or after this task's error.
                if send.send(plan).is_err() || failed {
                    break;
                }
            }
        });
        for i in 0..tasks.len() {
            started(i);
            let plan = plans.recv().expect("a plan for every task until one fails")?;
            finished(i, score_task_on(models, cache, plan, settings, progress)?);
        }
        Ok(())
    })
}

/// Plans a GPU run keeps ready beyond the task being scored.
pub const PLANS_AHEAD: usize = 2;

/// One document's requests, as text and tokens, ready to score.
struct Prepared<'d> {
    doc: &'d Document,
    texts: Vec<(String, String)>,
    /// Requests `n_main..` are `acc_mutual_info`'s class-only requests.
    n_main: usize,
    encoded: Vec<Encoded>,
    /// Where each request's context is cut into segments (see `PrefixTree::cuts`).
    cuts: Vec<Vec<usize>>,
    keys: Vec<RequestKey>,
}

/// Every document prepared, in order, on `threads` threads (see `RunSettings::prepare_threads`):
/// on a GPU, tokenising a task's long prompts on one core was the largest host cost of a run
/// (hindsight-neglect: ~1 s against 5.7 s of passes at 8B). The first error in document order is
/// the one returned.
fn prepare_all<'d>(
    docs: &'d [Document],
    spec: &TaskSpec,
    model: &dyn Scorer,
    enc_settings: &EncodeSettings,
    mutual_info: bool,
    threads: Option<usize>,
) -> Result<Vec<Prepared<'d>>, EvalError> {
    let all_cores = || std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads.unwrap_or_else(|| if model.uses_host_cores() { 1 } else { all_cores() }).min(docs.len().div_ceil(8)).max(1);
    if threads == 1 {
        let encoder = ModelEncoder(model.tokenizer());
        return docs.iter().map(|doc| prepare(doc, spec, &encoder, enc_settings, mutual_info)).collect();
    }
    let per = docs.len().div_ceil(threads);
    let parts: Vec<Result<Vec<Prepared<'d>>, EvalError>> = std::thread::scope(|s| {
        let handles: Vec<_> = docs
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    // Each thread on its own copy where sharing one would contend.
                    let own = model.tokenizer().fork();
                    let encoder = ModelEncoder(own.as_ref().unwrap_or(model.tokenizer()));
                    part.iter().map(|doc| prepare(doc, spec, &encoder, enc_settings, mutual_info)).collect()
                })
            })
            .collect();
        handles.into_iter().map(joined).collect()
    });
    let mut all = Vec::with_capacity(docs.len());
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}

fn prepare<'d>(
    doc: &'d Document,
    spec: &TaskSpec,
    encoder: &ModelEncoder,
    enc_settings: &EncodeSettings,
    mutual_info: bool,
) -> Result<Prepared<'d>, EvalError> {
    let tokenize_err = |message: String| EvalError::Tokenize { task: spec.name.clone(), doc: doc.id, message };
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
        _ => {
            let memo = Memo { inner: encoder, seen: Default::default() };
            texts.iter().map(|(c, k)| encode(&memo, enc_settings, c, k)).collect::<Result<_, _>>().map_err(tokenize_err)?
        }
    };
    let keys = encoded.iter().map(RequestKey::of).collect();
    Ok(Prepared { doc, texts, n_main, encoded, cuts: Vec::new(), keys })
}

impl Prepared<'_> {
    /// Tokens the document adds to a forward pass whose contexts are in `batch` (its contexts'
    /// tokens that no earlier document of the batch shares, and its continuations), and its
    /// requests. Batches are cut from these, never from what the cache holds, so a resumed run
    /// batches documents exactly as the first run did (and computes bit-identical numbers: a
    /// batch's composition can move the last bits).
    fn work(&self, batch: &mut SegmentTree) -> (usize, usize) {
        let contexts: usize = self.encoded.iter().zip(&self.cuts).map(|(e, cuts)| batch.insert(&e.context, cuts)).sum();
        let tokens = contexts + self.encoded.iter().map(|e| e.continuation.len() - 1).sum::<usize>();
        (tokens, self.encoded.len())
    }

    fn finish(self, scores: Vec<Score>, mutual_info: bool, metrics: &[Metric], absolute: bool) -> DocResult {
        let doc = self.doc;
        let mut requests: Vec<RequestResult> = self
            .texts
            .into_iter()
            .zip(&self.encoded)
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
        let unconditional = requests.split_off(self.n_main);
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
        let doc_metrics =
            metrics.iter().filter_map(|&m| doc_metric(m, &doc.body, &doc_scores, absolute).map(|v| (m, v))).collect();
        DocResult { doc_id: doc.id, requests, unconditional, scores: doc_scores, metrics: doc_metrics }
    }
}

/// What a batch needs: each document's cached scores and counts so far, the trees of its
/// forward pass (document, context, member request indices: each distinct context of a
/// document once, in order of first appearance), and the requests a document repeats.
struct Plan<'b> {
    per_doc: Vec<(Vec<Option<Score>>, Counts)>,
    trees: Vec<(usize, &'b [u32], Vec<usize>)>,
    duplicates: Vec<(usize, usize)>,
}

impl Plan<'_> {
    fn needs_pass(&self) -> bool {
        self.per_doc.iter().any(|(scores, _)| scores.iter().any(Option::is_none))
    }
}

fn plan_batch<'b>(cache: &ScoreCache, batch: &'b [Prepared]) -> Plan<'b> {
    let mut per_doc: Vec<(Vec<Option<Score>>, Counts)> = Vec::new();
    let mut trees: Vec<(usize, &[u32], Vec<usize>)> = Vec::new();
    let mut duplicates: Vec<(usize, usize)> = Vec::new();
    for (d, p) in batch.iter().enumerate() {
        let mut counts = Counts { requests: p.encoded.len(), ..Counts::default() };
        let scores: Vec<Option<Score>> = p.keys.iter().map(|k| cache.get(k)).collect();
        for e in &p.encoded {
            counts.tokens_requested += e.context.len() + e.continuation.len() - 1;
            counts.truncated += usize::from(e.truncated > 0);
            counts.boundary_fallback += usize::from(e.boundary_fallback);
        }
        counts.cached = scores.iter().filter(|s| s.is_some()).count();
        let mut index: HashMap<&[u32], usize> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for (i, e) in p.encoded.iter().enumerate() {
            if !seen.insert(p.keys[i]) {
                // The same request twice in one document runs once.
                duplicates.push((d, i));
                continue;
            }
            let slot = *index.entry(&e.context).or_insert_with(|| {
                trees.push((d, &e.context, Vec::new()));
                trees.len() - 1
            });
            trees[slot].2.push(i);
        }
        per_doc.push((scores, counts));
    }
    Plan { per_doc, trees, duplicates }
}

/// The forward pass of `plan`'s trees on `model` (the documents' contexts as a prefix tree,
/// every shared prefix and distinct context once, with the continuations as branches).
fn run_pass(model: &dyn Scorer, batch: &[Prepared], plan: &Plan) -> Result<Pass, EvalError> {
    let forest: Vec<(&[u32], Vec<&[u32]>)> = plan
        .trees
        .iter()
        .map(|(d, ctx, members)| (*ctx, members.iter().map(|&i| batch[*d].encoded[i].continuation.as_slice()).collect()))
        .collect();
    // Requests with one context share its cuts: take the first's.
    let cuts: Vec<Vec<usize>> = plan.trees.iter().map(|(d, _, members)| batch[*d].cuts[members[0]].clone()).collect();
    model.score_forest_cut(&forest, &cuts)
}

/// The passes of a turn's batches that need one, batch `i` on `models[i]`, side by side on
/// their devices (one at a time with one model).
fn run_passes(models: &[&dyn Scorer], cache: &ScoreCache, turn: &[Vec<Prepared>]) -> Result<Vec<Option<Pass>>, EvalError> {
    let plans: Vec<Plan> = turn.iter().map(|b| plan_batch(cache, b)).collect();
    let run = |model: &dyn Scorer, batch: &[Prepared], plan: &Plan| -> Result<Option<Pass>, EvalError> {
        if plan.needs_pass() { run_pass(model, batch, plan).map(Some) } else { Ok(None) }
    };
    if turn.len() == 1 {
        return Ok(vec![run(models[0], &turn[0], &plans[0])?]);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = models.iter().zip(turn).zip(&plans).map(|((&m, b), p)| s.spawn(move || run(m, b, p))).collect();
        handles.into_iter().map(joined).collect()
    })
}

/// A scoped thread's result; its panic, if it panicked, goes on in the caller.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Scores a batch of documents from `plan`: cached requests are read; if any is missing, the
/// batch's pass (run whole, not just for the missing requests, so that the numbers are those an
/// uninterrupted run computes bit for bit) gives the missing scores. Batches are written to the
/// cache whole (one synced write), so after an interruption a batch is either complete or
/// absent, and only a damaged cache makes a batch run again for part of it.
fn finish_batch(cache: &mut ScoreCache, batch: &[Prepared], plan: Plan, pass: Option<Pass>) -> Result<Vec<(Vec<Score>, Counts)>, EvalError> {
    let needs_pass = plan.needs_pass();
    let Plan { mut per_doc, trees, duplicates } = plan;
    let mut fresh = Vec::new();
    if needs_pass {
        let all = pass.expect("a pass for a batch with requests missing from the cache");
        // The pass's tokens, each counted for the first document that needs it (the model
        // builds the same tree, in the same order).
        let mut computed = SegmentTree::new();
        for ((d, ctx, members), tree_scores) in trees.iter().zip(all) {
            let (scores, counts) = &mut per_doc[*d];
            counts.tokens_computed += computed.insert(ctx, &batch[*d].cuts[members[0]]);
            for (&i, scored) in members.iter().zip(tree_scores) {
                counts.tokens_computed += scored.tokens.saturating_sub(1);
                if scores[i].is_some() {
                    continue; // finished before: the cached score stands
                }
                let score = Score { ll: scored.ll, greedy: scored.greedy };
                scores[i] = Some(score);
                fresh.push((batch[*d].keys[i], score));
                counts.computed += 1;
            }
        }
    }
    for (d, i) in duplicates {
        let key = batch[d].keys[i];
        if per_doc[d].0[i].is_none() {
            per_doc[d].0[i] = fresh.iter().find(|(k, _)| *k == key).map(|(_, s)| *s);
        }
    }
    cache.put_all(&fresh)?;
    Ok(per_doc
        .into_iter()
        .map(|(scores, counts)| (scores.into_iter().map(|s| s.expect("every request scored")).collect(), counts))
        .collect())
}
