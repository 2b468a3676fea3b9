//! A server as the engine's [`Scorer`]: the engine builds every request (its tokenizer is the
//! model's, read locally), and this sends them, many at once, to the server: token ids where the
//! API takes them, else their text (and then the server's tokens must be ours). Identical
//! sequences go once; every answer is recorded at once in a score cache of its own (keyed by
//! the server's model identity and the exact tokens), so a run stopped at any point, by the
//! client or the server going down, loses nothing answered.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use invscale_eval::cache::{RequestKey, Score};
use invscale_eval::{ContinuationScore, EvalError, Pass, ScoreCache, Scorer};
use invscale_models::Tokenizer;

use crate::api::{self, ApiKind, Scored};
use crate::server::{Server, ServerError};

/// Sequences per request where the API takes a batch (vLLM's prompt list, SGLang's `input_ids`).
const PER_REQUEST: usize = 8;

pub struct ServerScorer {
    pub server: Server,
    pub tokenizer: Tokenizer,
    pub context_length: Option<usize>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Every answered sequence, as it comes.
    answers: Mutex<ScoreCache>,
    /// Sequences sent in this run, and answered from the cache.
    pub sent: AtomicUsize,
    pub reused: AtomicUsize,
    /// The self-check's report (recorded in the results).
    pub check: crate::report::CheckReport,
}

/// One sequence to score: `tokens[from..]`, each given the tokens before it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Sequence {
    tokens: Vec<u32>,
    from: usize,
}

impl ServerScorer {
    pub fn new(server: Server, tokenizer: Tokenizer, context_length: Option<usize>, concurrency: usize, answers: ScoreCache) -> ServerScorer {
        ServerScorer {
            server,
            tokenizer,
            context_length,
            concurrency: concurrency.max(1),
            answers: Mutex::new(answers),
            sent: AtomicUsize::new(0),
            reused: AtomicUsize::new(0),
            check: Default::default(),
        }
    }

    /// Where the lines about the work go (progress, retries): see [`crate::http::Notes`].
    pub fn report_to(&self, sink: Box<dyn Fn(&str) + Send + Sync>) {
        let _ = self.server.client.notes.set(sink);
    }

    /// Where answers are recorded from now on (and read back from).
    pub fn keep_answers_in(&self, cache: ScoreCache) {
        *self.answers.lock().unwrap_or_else(|e| e.into_inner()) = cache;
    }

    /// Scores each sequence, `concurrency` requests at a time; answers recorded as they come.
    fn score_all(&self, seqs: &[Sequence]) -> Result<Vec<Scored>, ServerError> {
        let per = if self.server.api.takes_token_ids() { PER_REQUEST } else { 1 };
        let groups: Vec<&[Sequence]> = seqs.chunks(per).collect();
        let results: Vec<Mutex<Option<Result<Vec<Scored>, ServerError>>>> = groups.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let progress = Progress::new(seqs.len());
        std::thread::scope(|s| {
            for _ in 0..self.concurrency.min(groups.len()) {
                s.spawn(|| {
                    loop {
                        let g = next.fetch_add(1, Ordering::Relaxed);
                        if g >= groups.len() || failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let answer = self.request(groups[g]);
                        if let Ok(scored) = &answer {
                            // Recorded before anything else happens: a kill after this loses nothing.
                            let items: Vec<(RequestKey, Score)> = groups[g].iter().zip(scored).map(|(q, s)| (key(q), score(s))).collect();
                            let mut cache = self.answers.lock().unwrap_or_else(|e| e.into_inner());
                            if let Err(e) = cache.put_all(&items) {
                                *results[g].lock().unwrap() = Some(Err(ServerError::Refused(format!("the server answers' cache: {e}"))));
                                failed.store(true, Ordering::Relaxed);
                                continue;
                            }
                            progress.answered(groups[g].len(), &self.server.client);
                        } else {
                            failed.store(true, Ordering::Relaxed);
                        }
                        *results[g].lock().unwrap() = Some(answer);
                    }
                });
            }
        });
        let mut out = Vec::with_capacity(seqs.len());
        for r in results {
            match r.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(Ok(scored)) => out.extend(scored),
                Some(Err(e)) => return Err(e),
                None => return Err(ServerError::Refused("a request was not sent (an earlier one failed)".into())),
            }
        }
        self.sent.fetch_add(seqs.len(), Ordering::Relaxed);
        Ok(out)
    }

    /// One sequence in one request, not recorded.
    pub(crate) fn request_one(&self, tokens: &[u32], from: usize) -> Result<Scored, ServerError> {
        let mut out = self.request(&[Sequence { tokens: tokens.to_vec(), from }])?;
        out.pop().ok_or_else(|| ServerError::Refused("an empty answer".into()))
    }

    /// One request for `group` (one sequence unless the API takes a batch).
    fn request(&self, group: &[Sequence]) -> Result<Vec<Scored>, ServerError> {
        let bad = |e: api::BadAnswer| ServerError::Refused(format!("{}: {e}", self.server.client.base));
        let prompts: Vec<&[u32]> = group.iter().map(|q| q.tokens.as_slice()).collect();
        let from: Vec<usize> = group.iter().map(|q| q.from).collect();
        match self.server.api {
            ApiKind::Vllm => {
                let answer = self.server.client.post("/v1/completions", &api::vllm::request(&self.server.model, &prompts))?;
                api::vllm::parse(&answer, &prompts, &from).map_err(bad)
            }
            ApiKind::Sglang => {
                let answer = self.server.client.post("/generate", &api::sglang::request(&prompts, &from))?;
                api::sglang::parse(&answer, &prompts, &from).map_err(bad)
            }
            ApiKind::OpenAi => {
                let q = &group[0];
                let (text, texts, bos) = self.as_text(&q.tokens);
                let answer = self.server.client.post("/v1/completions", &api::openai::request(&self.server.model, &text))?;
                Ok(vec![api::openai::parse(&answer, &texts, q.from, bos).map_err(bad)?])
            }
            ApiKind::Tgi => {
                let q = &group[0];
                let (text, _, _) = self.as_text(&q.tokens);
                let answer = self.server.client.post("/generate", &api::tgi::request(&text))?;
                Ok(vec![api::tgi::parse(&answer, &q.tokens, q.from).map_err(bad)?])
            }
            ApiKind::LlamaCpp => Err(ServerError::Refused("llama.cpp's server gives no prompt log-probs".into())),
        }
    }

    /// A sequence as the text a text-only API is sent (without a leading BOS, which such
    /// servers add themselves), each token's own text, and whether it starts with BOS.
    pub(crate) fn as_text(&self, tokens: &[u32]) -> (String, Vec<String>, bool) {
        let bos = self.tokenizer.bos_id.is_some() && tokens.first() == self.tokenizer.bos_id.as_ref();
        let body = if bos { &tokens[1..] } else { tokens };
        let texts = tokens.iter().map(|&t| self.tokenizer.token_text(t)).collect();
        (self.tokenizer.decode(body), texts, bos)
    }
}

/// A batch's sequences answered so far, told every [`Progress::EVERY`] (a server's batch of a
/// task can take minutes: llama-cpp-python spends ~0.3 s a prompt token on a 262k vocabulary).
struct Progress {
    total: usize,
    done: AtomicUsize,
    started: Instant,
    last: Mutex<Instant>,
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(10);

    fn new(total: usize) -> Progress {
        let now = Instant::now();
        Progress { total, done: AtomicUsize::new(0), started: now, last: Mutex::new(now) }
    }

    fn answered(&self, n: usize, client: &crate::http::Client) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Self::EVERY && done < self.total {
            *last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            let eta = secs / done as f64 * (self.total - done) as f64;
            client.note(&format!(
                "server: {done}/{} sequences of this batch answered, {:.2} requests/s, ETA {}:{:02}",
                self.total,
                done as f64 / secs,
                eta as u64 / 60,
                eta as u64 % 60
            ));
        }
    }
}

fn key(q: &Sequence) -> RequestKey {
    RequestKey::new(&q.tokens[..q.from], &q.tokens[q.from..])
}

fn score(s: &Scored) -> Score {
    Score { ll: s.logprobs.iter().map(|&x| f64::from(x)).sum(), greedy: s.greedy.iter().all(|g| g.unwrap_or(false)) }
}

impl Scorer for ServerScorer {
    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn context_length(&self) -> Option<usize> {
        self.context_length
    }

    fn uses_host_cores(&self) -> bool {
        false
    }

    fn score_forest_cut(&self, trees: &[(&[u32], Vec<&[u32]>)], _cuts: &[Vec<usize>]) -> Result<Pass, EvalError> {
        // Each continuation as its own sequence (the server shares what it can); identical
        // ones once; answered ones from the cache.
        let mut unique: Vec<Sequence> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut slots: Vec<Vec<Option<usize>>> = Vec::with_capacity(trees.len());
        for (context, continuations) in trees {
            slots.push(
                continuations
                    .iter()
                    .map(|c| {
                        (!c.is_empty()).then(|| {
                            let q = Sequence { tokens: context.iter().chain(c.iter()).copied().collect(), from: context.len() };
                            *index.entry(q.clone()).or_insert_with(|| {
                                unique.push(q);
                                unique.len() - 1
                            })
                        })
                    })
                    .collect(),
            );
        }
        let known: Vec<Option<Score>> = {
            let cache = self.answers.lock().unwrap_or_else(|e| e.into_inner());
            unique.iter().map(|q| cache.get(&key(q))).collect()
        };
        let missing: Vec<Sequence> = unique.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(q, _)| q.clone()).collect();
        self.reused.fetch_add(unique.len() - missing.len(), Ordering::Relaxed);
        let mut fresh = self.score_all(&missing).map_err(|e| match e {
            ServerError::Http(e) => EvalError::Scorer(format!(
                "{e}\nevery answer received so far is in the score cache: once the server answers again, rerun the same \
                 command to resume (nothing answered is sent again; --max-retries and --timeout wait longer)"
            )),
            e => EvalError::Scorer(e.to_string()),
        })?
        .into_iter();
        let scores: Vec<Score> = known.into_iter().map(|k| k.unwrap_or_else(|| score(&fresh.next().expect("an answer per sequence sent")))).collect();
        Ok(trees
            .iter()
            .zip(slots)
            .map(|((_, continuations), slots)| {
                continuations
                    .iter()
                    .zip(slots)
                    .map(|(c, slot)| match slot {
                        Some(i) => ContinuationScore { ll: scores[i].ll, greedy: scores[i].greedy, tokens: c.len() },
                        None => ContinuationScore { ll: 0.0, greedy: true, tokens: 0 },
                    })
                    .collect()
            })
            .collect())
    }
}
