//! A model as the results describe it: what stays once its weights are dropped.

use std::path::{Path, PathBuf};

use invscale_models::Tokenizer;

/// A model as the results describe it (what stays once the weights are dropped).
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// `reference` as given.
    pub reference: String,
    /// Its short name: a file's stem, or the hub id.
    pub name: String,
    pub path: PathBuf,
    pub arch: String,
    pub params: u64,
    /// Kaplan et al.'s N: embeddings and an untied output head left out.
    pub non_embedding_params: u64,
    pub dtype: &'static str,
    pub tokenizer: String,
    pub bos_token: Option<(String, u32)>,
    pub eos_token: Option<(String, u32)>,
    pub context_length: Option<usize>,
}

/// A special token as the results show it: its text and id.
pub(crate) fn token(t: &Tokenizer, id: Option<u32>) -> Option<(String, u32)> {
    id.map(|i| (t.token_text(i), i))
}

/// A model reference's short name: an existing file's or folder's stem, else the reference as
/// written (a hub id).
pub fn display_name(reference: &str) -> String {
    let p = Path::new(reference);
    if p.exists() {
        p.file_stem().or_else(|| p.file_name()).map_or(reference.to_string(), |s| s.to_string_lossy().into_owned())
    } else {
        reference.to_string()
    }
}
