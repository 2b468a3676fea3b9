//! What can stop a run: the model, the score cache's disk, a document the tokenizer refuses,
//! another scorer's failure.

use invscale_models::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("score cache: {0}")]
    Cache(#[from] std::io::Error),
    #[error("document {doc} of {task}: tokenizer: {message}")]
    Tokenize { task: String, doc: usize, message: String },
    /// A scorer other than the in-process model failed (a server's answer, say).
    #[error("{0}")]
    Scorer(String),
}
