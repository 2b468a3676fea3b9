//! What the engine scores with: "something that scores token sequences". The in-process model
//! runtime is one; a server backend is another. The engine builds every request itself (with the
//! scorer's tokenizer, lm-eval's context/continuation split, the BOS policy, truncation), so a
//! scorer only computes log-probs of given tokens, and whatever scores them, a request's key in
//! the score cache is the same.

use invscale_models::{Model, TokenScore, Tokenizer};

use crate::error::EvalError;

/// A batch's answer: for each tree (a context and its continuations), each continuation's token
/// scores, in order.
pub type Pass = Vec<Vec<Vec<TokenScore>>>;

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

    /// The log-prob of every token of every continuation, each given its context and the
    /// continuation's tokens before it; `trees[i]` is a context and its continuations, and each
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
        Ok(Model::score_forest_cut(self, trees, cuts)?)
    }
}
