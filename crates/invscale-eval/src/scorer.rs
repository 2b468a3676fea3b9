//! What the engine scores with: "something that scores token sequences". The in-process model
//! runtime is one; a server backend is another. The engine builds every request itself (with the
//! scorer's tokenizer, lm-eval's context/continuation split, the BOS policy, truncation), so a
//! scorer only computes log-probs of given tokens, and whatever scores them, a request's key in
//! the score cache is the same.

use invscale_models::{Model, TokenScore, Tokenizer};

use crate::error::EvalError;

/// One continuation scored: what the engine keeps of it (and the score cache records).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContinuationScore {
    /// `Σ log p(token | everything before it)` over the continuation's tokens, summed in f64 in
    /// token order (lm-eval's log-likelihood).
    pub ll: f64,
    /// Whether every token was the argmax at its position (lm-eval's `is_greedy`).
    pub greedy: bool,
    /// Tokens in the continuation.
    pub tokens: usize,
}

impl ContinuationScore {
    /// The continuation's score from its tokens' scores.
    pub fn of(tokens: &[TokenScore]) -> ContinuationScore {
        ContinuationScore {
            ll: tokens.iter().map(|t| f64::from(t.logprob)).sum(),
            greedy: tokens.iter().all(|t| t.greedy),
            tokens: tokens.len(),
        }
    }
}

/// A batch's answer: for each tree (a context and its continuations), each continuation's
/// score, in order.
pub type Pass = Vec<Vec<ContinuationScore>>;

/// A scorer of token sequences.
pub trait Scorer: Sync {
    /// The tokenizer the requests are built with: the model's own, token for token.
    fn tokenizer(&self) -> &Tokenizer;

    /// The longest sequence the model takes, when known (lm-eval's `max_length` defaults to it).
    fn context_length(&self) -> Option<usize>;

    /// Whether the scoring computes on this machine's cores (the CPU runtime): then documents
    /// are tokenised on one thread and tasks planned one after another, leaving the cores to the
    /// passes; otherwise (a GPU, a server) planning runs on every core, ahead of the scoring.
    fn uses_host_cores(&self) -> bool;

    /// Every continuation scored: each token's log-prob given its context and the continuation's
    /// tokens before it, summed; `trees[i]` is a context and its continuations, and each
    /// context is cut into the segments `cuts[i]` says (from the task's prefix tree: the
    /// in-process runtime runs each shared segment once). A request's numbers may depend on its
    /// cuts, never on what else is in the call.
    fn score_forest_cut(&self, trees: &[(&[u32], Vec<&[u32]>)], cuts: &[Vec<usize>]) -> Result<Pass, EvalError>;
}

impl Scorer for Model {
    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn context_length(&self) -> Option<usize> {
        self.context_length
    }

    fn uses_host_cores(&self) -> bool {
        self.on_cpu()
    }

    fn score_forest_cut(&self, trees: &[(&[u32], Vec<&[u32]>)], cuts: &[Vec<usize>]) -> Result<Pass, EvalError> {
        let pass = Model::score_forest_cut(self, trees, cuts)?;
        Ok(pass.iter().map(|tree| tree.iter().map(|tokens| ContinuationScore::of(tokens)).collect()).collect())
    }
}
