//! What can go wrong building or running a tokenizer: a file that names its problem, or the
//! engine's own message.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The file is damaged or does not hold what it should.
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// A valid file this crate does not read (another tokenizer model, say).
    #[error("{}: {message}", path.display())]
    Unsupported { path: PathBuf, message: String },
    /// The tokenizer engine's message (HF `tokenizers`, a byte-level BPE's missing byte token).
    #[error("tokenizer: {0}")]
    Engine(String),
}

impl TokenizerError {
    pub fn corrupt(path: &Path, message: impl Into<String>) -> Self {
        TokenizerError::Corrupt { path: path.to_path_buf(), message: message.into() }
    }
    pub fn unsupported(path: &Path, message: impl Into<String>) -> Self {
        TokenizerError::Unsupported { path: path.to_path_buf(), message: message.into() }
    }
    pub(crate) fn engine(e: impl std::fmt::Display) -> Self {
        TokenizerError::Engine(e.to_string())
    }
}

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;
