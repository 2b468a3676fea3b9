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
    /// The model series it belongs to, as inferred by [`infer_family`] (a family file's
    /// `family` overrides it).
    pub family: String,
}

/// A special token as the results show it: its text and id.
pub(crate) fn token(t: &Tokenizer, id: Option<u32>) -> Option<(String, u32)> {
    id.map(|i| (t.token_text(i), i))
}

/// The model series of `reference`: a GGUF's own metadata (`general.basename`), else the
/// reference's name with its size, revision and quantisation taken out
/// (`EleutherAI/pythia-410m@step143000` → `EleutherAI/pythia`, `Qwen/Qwen2.5-0.5B-Instruct` →
/// `Qwen/Qwen2.5-Instruct`), else the architecture.
pub fn infer_family(reference: &str, path: &Path, arch: &str) -> String {
    if let Some(hint) = invscale_models::load::family_hint(path) {
        return hint;
    }
    let name = reference.split('@').next().unwrap_or(reference);
    let p = Path::new(name);
    let name = if p.exists() { p.file_name().map_or(name.to_string(), |s| s.to_string_lossy().into_owned()) } else { name.to_string() };
    let name = name.strip_suffix(".gguf").unwrap_or(&name);
    // A quantisation suffix after the last dot (`.Q4_K_M`, `.f16`).
    let name = match name.rsplit_once('.') {
        Some((stem, q)) if is_quant(q) => stem,
        _ => name,
    };
    let kept: Vec<&str> = name.split('-').filter(|t| !is_size(t) && !is_quant(t)).collect();
    let family = kept.join("-");
    if family.is_empty() || family.ends_with('/') { arch.to_string() } else { family }
}

/// `135M`, `1.5B`, `8x7B`, `A3B`, `70m`: a size label.
fn is_size(token: &str) -> bool {
    let t = token.to_ascii_lowercase();
    let t = t.strip_prefix('a').filter(|r| r.ends_with('b')).unwrap_or(&t);
    let t = t.split_once('x').filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty()).map_or(t, |(_, r)| r);
    match t.char_indices().last() {
        Some((i, unit)) if "kmbt".contains(unit) && i > 0 => {
            let number = &t[..i];
            number.chars().all(|c| c.is_ascii_digit() || c == '.') && number.chars().next().is_some_and(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// `Q4_K_M`, `Q8_0`, `IQ3_XS`, `f16`, `bf16`, `f32`: a quantisation tag.
fn is_quant(token: &str) -> bool {
    let t = token.to_ascii_lowercase();
    matches!(t.as_str(), "f16" | "bf16" | "f32" | "fp16")
        || ((t.starts_with('q') || t.starts_with("iq")) && t.chars().nth(if t.starts_with('q') { 1 } else { 2 }).is_some_and(|c| c.is_ascii_digit()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_names() {
        let none = Path::new("/no/such/file");
        for (reference, want) in [
            ("EleutherAI/pythia-410m@step143000", "EleutherAI/pythia"),
            ("EleutherAI/pythia-1.4b", "EleutherAI/pythia"),
            ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-Instruct"),
            ("Qwen/Qwen3-30B-A3B", "Qwen/Qwen3"),
            ("mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-v0.1"),
            ("qwen2.5-coder-1.5b-instruct.Q4_K_M.gguf", "qwen2.5-coder-instruct"),
            ("facebook/opt-125m", "facebook/opt"),
        ] {
            assert_eq!(infer_family(reference, none, "llama"), want, "{reference}");
        }
        assert_eq!(infer_family("7b", none, "llama"), "llama", "nothing left: the architecture");
    }
}
