//! A loaded model and the interface made for scoring: log-probabilities of given tokens, with
//! the LM head applied only at the positions that are scored, and a KV cache so a shared prefix
//! runs once and many continuations are scored against it.

use std::path::PathBuf;

use candle_core::{D, DType, Device, Tensor};

use invscale_kernels::cpu::exp::sum_exp;
use invscale_tokenizer::{BosPolicy, Tokenizer};

use crate::batch::layout::Layout;
use crate::batch::prefix_tree::{MIN_SHARED_TOKENS, PrefixTree, SegmentTree};
use crate::error::Result;
use crate::host::release_freed_memory;
use crate::layers::kv_cache::KvCache;
use crate::layers::stages::Stages;
use crate::models::causal_lm::CausalLm;
use crate::profile;
use crate::weights::params::ParamCounts;
use crate::weights::precision::Precision;


/// The score of one token given everything before it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenScore {
    pub token: u32,
    /// `log p(token | prefix)`, from a log-softmax computed in f32.
    pub logprob: f32,
    /// Whether the token is the argmax at its position (lm-eval's `is_greedy`).
    pub greedy: bool,
}


/// A sequence run once, to be continued: its KV cache and its last hidden state.
#[derive(Clone)]
pub struct Prefix {
    cache: KvCache,
    last_hidden: Tensor,
}

impl Prefix {
    pub fn len(&self) -> usize {
        self.cache.len()
    }
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

/// `INVSCALE_PROFILE=1`: each forward pass prints where its time went (2: per kind of work).
pub(crate) fn profiling() -> bool {
    profile::level() >= 1
}

pub struct Model {
    pub tokenizer: Tokenizer,
    /// The architecture name (GGUF `general.architecture`).
    pub arch: String,
    /// Parameters counted from the weights (tied matrices once), and those not embeddings.
    pub params: ParamCounts,
    pub path: PathBuf,
    pub precision: Precision,
    /// The longest sequence the model was trained for, when the file says.
    pub context_length: Option<usize>,
    pub(crate) net: Box<dyn CausalLm>,
    /// Where its layers run; the pass starts and ends on the first device (`device()`).
    pub(crate) stages: Stages,
}

impl Model {
    /// The token to put first under `policy`, if any. With `Always` and no BOS token, EOS
    /// stands in (as lm-eval does).
    pub fn bos_token(&self, policy: BosPolicy) -> Option<u32> {
        self.tokenizer.bos_token(policy)
    }

    /// Log-probs of `tokens[from..]`, each given all tokens before it (`from >= 1`).
    pub fn score(&self, tokens: &[u32], from: usize) -> Result<Vec<TokenScore>> {
        assert!(from >= 1 && from <= tokens.len(), "score needs at least one token of context");
        let mut cache = KvCache::scratch(self.net.layers());
        // The last token is only ever a target.
        let input = &tokens[..tokens.len() - 1];
        let hidden = self.net.forward(input, &Layout::sequence(0, input.len()), &mut cache)?;
        let rows = hidden.narrow(0, from - 1, tokens.len() - from)?;
        self.gather(&rows, &tokens[from..])
    }

    /// Runs `tokens` once, for continuations scored with [`score_after`](Self::score_after).
    pub fn prefill(&self, tokens: &[u32]) -> Result<Prefix> {
        Ok(self.prefill_scored(tokens, tokens.len())?.0)
    }

    /// [`prefill`](Self::prefill) that also scores `tokens[from..]` in the same pass (`from >= 1`;
    /// `from == tokens.len()` scores nothing).
    pub fn prefill_scored(&self, tokens: &[u32], from: usize) -> Result<(Prefix, Vec<TokenScore>)> {
        assert!(!tokens.is_empty(), "a prefix needs at least one token");
        assert!(from >= 1 && from <= tokens.len(), "scoring needs at least one token of context");
        let mut cache = KvCache::new(self.net.layers());
        let hidden = self.net.forward(tokens, &Layout::sequence(0, tokens.len()), &mut cache)?;
        let last_hidden = hidden.narrow(0, tokens.len() - 1, 1)?;
        let scores = if from < tokens.len() {
            self.gather(&hidden.narrow(0, from - 1, tokens.len() - from)?, &tokens[from..])?
        } else {
            Vec::new()
        };
        Ok((Prefix { cache, last_hidden }, scores))
    }

    /// Log-probs of every token of `continuation` after `prefix` (the prefix is not changed).
    pub fn score_after(&self, prefix: &Prefix, continuation: &[u32]) -> Result<Vec<TokenScore>> {
        if continuation.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = vec![prefix.last_hidden.clone()];
        if continuation.len() > 1 {
            let mut cache = prefix.cache.clone();
            let input = &continuation[..continuation.len() - 1];
            rows.push(self.net.forward(input, &Layout::sequence(cache.len(), input.len()), &mut cache)?);
        }
        self.gather(&Tensor::cat(&rows, 0)?, continuation)
    }

    /// Scores several continuations of one context in a single forward pass: the context and
    /// every continuation but its last token run together, each continuation seeing the context
    /// and itself only (a [`Layout::branches`] tree), and one LM head call over the scored rows.
    /// Returns the log-probs of every token of each continuation.
    pub fn score_branches(&self, context: &[u32], continuations: &[&[u32]]) -> Result<Vec<Vec<TokenScore>>> {
        Ok(self.score_forest(&[(context, continuations.to_vec())])?.remove(0))
    }

    /// [`score_branches`](Self::score_branches) for several contexts at once (one forward pass,
    /// one LM head call): small documents batched together share the cost of reading the
    /// weights, and contexts that begin alike share the work of their common tokens (at least
    /// [`MIN_SHARED_TOKENS`] of them; see [`score_forest_cut`](Self::score_forest_cut)).
    pub fn score_forest(&self, trees: &[(&[u32], Vec<&[u32]>)]) -> Result<Vec<Vec<Vec<TokenScore>>>> {
        let contexts: Vec<&[u32]> = trees.iter().map(|(c, _)| *c).collect();
        self.score_forest_cut(trees, &PrefixTree::shared_cuts(&contexts, MIN_SHARED_TOKENS))
    }

    /// [`score_forest`](Self::score_forest) with each context cut into segments at the given
    /// positions (from [`PrefixTree::cuts`]): the pass runs the contexts' [`SegmentTree`], every
    /// segment once, each after the segments above it. A context's numbers depend on its
    /// segments, not on what else is in the pass, so cuts taken from a whole task make them
    /// independent of the batching.
    pub fn score_forest_cut(&self, trees: &[(&[u32], Vec<&[u32]>)], cuts: &[Vec<usize>]) -> Result<Vec<Vec<Vec<TokenScore>>>> {
        static TRIM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let scores = self.score_pass(trees, cuts);
        if self.device().is_cpu() && *TRIM.get_or_init(|| std::env::var_os("INVSCALE_NO_TRIM").is_none()) {
            release_freed_memory();
        }
        scores
    }

    /// [`score_forest_cut`](Self::score_forest_cut)'s pass.
    fn score_pass(&self, trees: &[(&[u32], Vec<&[u32]>)], cuts: &[Vec<usize>]) -> Result<Vec<Vec<Vec<TokenScore>>>> {
        assert_eq!(trees.len(), cuts.len(), "cuts for every context");
        profile::stamp("pass: laying out");
        let mut tree = SegmentTree::new();
        for ((context, _), cuts) in trees.iter().zip(cuts) {
            assert!(!context.is_empty(), "scoring needs at least one token of context");
            tree.insert(context, cuts);
        }
        // Every continuation but its last token is input; the last is only ever a target.
        let inputs: Vec<Vec<&[u32]>> =
            trees.iter().map(|(_, cs)| cs.iter().map(|c| &c[..c.len().saturating_sub(1)]).collect()).collect();
        let (layout, placed) = Layout::prefix_tree(&tree, &inputs);
        let ids = placed.ids;
        let mut cache = KvCache::scratch(self.net.layers());
        let profile = profiling().then(|| {
            // What building the masks costs (the forward builds its own again).
            let started = std::time::Instant::now();
            let _ = layout.mask(None, self.device());
            (started.elapsed(), std::time::Instant::now())
        });
        let hidden = self.net.forward(&ids, &layout, &mut cache)?;
        let forward_done = profile.map(|_| {
            let _ = self.device().synchronize();
            std::time::Instant::now()
        });
        // Row r of `hidden` predicts the token after it; a continuation's first token is
        // predicted by its context's last row.
        let mut rows: Vec<u32> = Vec::new();
        let mut targets = Vec::new();
        for ((_, continuations), (last, starts)) in trees.iter().zip(&placed.contexts) {
            for (c, &start) in continuations.iter().zip(starts) {
                if !c.is_empty() {
                    rows.push(*last as u32);
                    rows.extend(start as u32..(start + c.len() - 1) as u32);
                    targets.extend_from_slice(c);
                }
            }
        }
        if targets.is_empty() {
            return Ok(trees.iter().map(|(_, cs)| cs.iter().map(|_| Vec::new()).collect()).collect());
        }
        // Each row once through the LM head, however many targets it predicts.
        let mut unique: Vec<u32> = Vec::new();
        let mut slot: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        let which: Vec<usize> = rows
            .iter()
            .map(|&r| {
                *slot.entry(r).or_insert_with(|| {
                    unique.push(r);
                    unique.len() - 1
                })
            })
            .collect();
        let picked = hidden.index_select(&Tensor::new(unique.as_slice(), self.device())?, 0)?;
        let mut scores = self.gather_at(&picked, &which, &targets)?.into_iter();
        profile::stamp("pass: scored");
        if let (Some((mask, started)), Some(forward_done)) = (profile, forward_done) {
            eprintln!(
                "profile: pass of {} tokens for {} contexts: masks {:.1} ms, forward {:.1} ms, LM head on {} rows {:.1} ms",
                ids.len(),
                trees.len(),
                mask.as_secs_f64() * 1e3,
                (forward_done - started).as_secs_f64() * 1e3,
                unique.len(),
                forward_done.elapsed().as_secs_f64() * 1e3
            );
            if profile::level() >= 2 {
                eprintln!("profile: forward by kind: {}", profile::take());
            }
        }
        Ok(trees
            .iter()
            .map(|(_, continuations)| continuations.iter().map(|c| scores.by_ref().take(c.len()).collect()).collect())
            .collect())
    }

    /// Where a pass starts and ends (the first stage's device).
    pub(crate) fn device(&self) -> &Device {
        self.stages.home()
    }

    /// How many layers each device holds, in order (one entry when one device holds them all).
    pub fn stage_sizes(&self) -> Vec<usize> {
        self.stages.sizes()
    }

    /// Whether the model runs on the CPU (not a GPU).
    pub fn on_cpu(&self) -> bool {
        self.device().is_cpu()
    }

    /// Bytes of device memory free now (CUDA; of a split model, the least any stage's device
    /// has); `None` on the CPU.
    pub fn free_device_memory(&self) -> Option<usize> {
        #[cfg(feature = "cuda")]
        {
            let free = |d: &Device| -> Option<usize> {
                let Device::Cuda(d) = d else { return None };
                crate::layers::stages::cuda_free_bytes(d).map(|b| b as usize)
            };
            return self.stages.devices().iter().map(free).collect::<Option<Vec<usize>>>().and_then(|f| f.into_iter().min());
        }
        #[allow(unreachable_code)]
        None
    }

    /// Tokens per forward pass: `cpu` on the CPU (small passes stay in its caches); on a GPU,
    /// from the free memory, no trial runs: a quarter of it over an estimate of the activations
    /// a token keeps alive in a layer (hidden size from the parameters per layer, ~12 vectors of
    /// it with temporaries, at the activation dtype's width), between 1,024 and 65,536.
    pub fn batch_tokens(&self, cpu: usize) -> usize {
        let Some(free) = self.free_device_memory() else { return cpu };
        let hidden = (self.params.total as f64 / self.net.layers().max(1) as f64 / 14.0).sqrt();
        let bytes = 12.0 * hidden * self.precision.dtype().size_in_bytes() as f64;
        (free as f64 * 0.25 / bytes).clamp(1024.0, 65536.0) as usize
    }

    /// LM head on `rows` only, log-softmax in f32, the targets' log-probs and greediness; in
    /// chunks of rows, so that `[rows, vocab]` logits of a big batch never sit in memory at once
    /// (on the CPU a small chunk: the log-softmax keeps ~4 copies of the logits alive, so at
    /// most 2M logits (8 MB) a chunk — 32 rows of SmolLM2's 49k vocabulary, 8 of Gemma 3's
    /// 262k; memory is what the quantized path is for).
    fn gather(&self, rows: &Tensor, targets: &[u32]) -> Result<Vec<TokenScore>> {
        self.gather_at(rows, &(0..targets.len()).collect::<Vec<_>>(), targets)
    }

    /// [`gather`](Self::gather) with `targets[i]` scored at row `which[i]` of `rows`: a row that
    /// predicts several targets (a context's last row predicts the first token of every
    /// continuation) goes through the LM head once.
    fn gather_at(&self, rows: &Tensor, which: &[usize], targets: &[u32]) -> Result<Vec<TokenScore>> {
        let vocab = self.tokenizer.vocab_size().max(1);
        let chunk = if self.device().is_cpu() { ((1 << 21) / vocab).clamp(1, 32) } else { 2048 };
        let n = rows.dim(0)?;
        let mut by_row: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, &r) in which.iter().enumerate() {
            by_row[r].push(i);
        }
        let mut out = vec![TokenScore { token: 0, logprob: 0.0, greedy: false }; targets.len()];
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            let mut part = rows.narrow(0, start, len)?;
            if self.device().is_cpu() && len < chunk && !self.net.head().rows_independent() {
                // Always `chunk` rows on the CPU (the first repeated) where the head's product
                // is candle's: its kernels take other paths for other row counts (one row is a
                // matrix-vector product), and a row's logits must not depend on how many rows a
                // batch scores. Our kernels compute each row alone.
                let pad = Tensor::new(vec![0u32; chunk - len], self.device())?;
                part = Tensor::cat(&[part.clone(), part.index_select(&pad, 0)?], 0)?;
            }
            let logits = self.net.logits(&part)?.to_dtype(DType::F32)?;
            let members: Vec<(usize, usize)> =
                (start..start + len).flat_map(|r| by_row[r].iter().map(move |&i| (r - start, i))).collect();
            if self.device().is_cpu() {
                log_softmax_at(&logits, &members, targets, &mut out)?;
                continue;
            }
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let argmax: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
            let width = logp.dim(1)?;
            let cells: Vec<u32> = members.iter().map(|&(r, i)| (r * width + targets[i] as usize) as u32).collect();
            let picked: Vec<f32> = logp.flatten_all()?.index_select(&Tensor::new(cells.as_slice(), self.device())?, 0)?.to_vec1()?;
            for (&(r, i), logprob) in members.iter().zip(picked) {
                out[i] = TokenScore { token: targets[i], logprob, greedy: argmax[r] == targets[i] };
            }
        }
        Ok(out)
    }
}

/// On the CPU, each `(row, i)` of `members`: `out[i]` = target `targets[i]`'s log-softmax at
/// `row` of `logits` `[rows, vocab]` (f32), and whether it is the row's argmax (the first
/// maximum, as torch's). Read in place, each row's max and log-sum-exp once (vectorised
/// exponentials, summed in f64):
/// candle's log_softmax keeps ~4 copies of the logits alive, 32 MB a chunk of 2M logits, most
/// of the quantized path's activation memory.
fn log_softmax_at(logits: &Tensor, members: &[(usize, usize)], targets: &[u32], out: &mut [TokenScore]) -> Result<()> {
    let logits = logits.contiguous()?;
    let (rows, width) = logits.dims2()?;
    let (storage, layout) = logits.storage_and_layout();
    let data = crate::layers::tensor::cpu_f32(&storage, layout)?;
    let mut stats: Vec<Option<(f32, f64, usize)>> = vec![None; rows];
    for &(r, i) in members {
        let row = &data[r * width..(r + 1) * width];
        let (max, log_sum, argmax) = *stats[r].get_or_insert_with(|| {
            let (mut max, mut argmax) = (f32::NEG_INFINITY, 0);
            for (j, &x) in row.iter().enumerate() {
                if x > max {
                    (max, argmax) = (x, j);
                }
            }
            (max, sum_exp(row, max).ln(), argmax)
        });
        let target = targets[i] as usize;
        let logprob = (f64::from(row[target] - max) - log_sum) as f32;
        out[i] = TokenScore { token: targets[i], logprob, greedy: argmax == target };
    }
    Ok(())
}
