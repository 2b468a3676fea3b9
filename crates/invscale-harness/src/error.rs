//! A harness call fails on bad input (data, task files, arguments, a model that cannot be
//! found or read: the caller exits 2) or in the work itself (the scoring, the cache's disk: 1).

use invscale_eval::EvalError;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Bad input; everything wrong was reported already where the message says so.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// A file could not be written or a cache opened.
    #[error("{0}")]
    Io(String),
    /// A server could not be reached, or stopped answering (after its retries).
    #[error("{0}")]
    Server(String),
}

impl HarnessError {
    pub fn is_bad_input(&self) -> bool {
        matches!(self, HarnessError::BadInput(_))
    }
}
