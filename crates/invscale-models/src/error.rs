//! The runtime's errors: each names the file it is about.

use std::path::{Path, PathBuf};

use invscale_tokenizer::TokenizerError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Unsupported { path: PathBuf, message: String },
    #[error("{0}")]
    Hub(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<TokenizerError> for ModelError {
    fn from(e: TokenizerError) -> Self {
        match e {
            TokenizerError::Io { path, source } => ModelError::Io { path, source },
            TokenizerError::Corrupt { path, message } => ModelError::Corrupt { path, message },
            TokenizerError::Unsupported { path, message } => ModelError::Unsupported { path, message },
            TokenizerError::Engine(m) => ModelError::Tokenizer(m),
        }
    }
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io { path: path.to_path_buf(), source }
    }
    pub fn corrupt(path: &Path, message: impl Into<String>) -> Self {
        ModelError::Corrupt { path: path.to_path_buf(), message: message.into() }
    }
    pub fn unsupported(path: &Path, message: impl Into<String>) -> Self {
        ModelError::Unsupported { path: path.to_path_buf(), message: message.into() }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
