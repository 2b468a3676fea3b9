//! Parameter counts for the trend's x-axis: every tensor once — an output head that repeats the
//! token embeddings counted once even where a GGUF stores both — and how many of them are not
//! embeddings (Kaplan et al.'s N: token and position embeddings and an untied output head left
//! out).

use crate::weights::checkpoint::HfWeights;
use crate::weights::gguf::GgufFile;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamCounts {
    pub total: u64,
    pub non_embedding: u64,
}

/// Embedding matrices by name, in both layouts: token and position embeddings, output heads.
fn is_embedding(name: &str) -> bool {
    const GGUF: [&str; 3] = ["token_embd.weight", "position_embd.weight", "output.weight"];
    const HF: [&str; 7] = ["embed_tokens.weight", "wte.weight", "wpe.weight", "embed_in.weight", "embed_out.weight", "lm_head.weight", "embed_positions.weight"];
    GGUF.contains(&name) || HF.iter().any(|suffix| name == *suffix || name.ends_with(&format!(".{suffix}")))
}

fn counts<'a>(tensors: impl Iterator<Item = (&'a str, u64)>) -> ParamCounts {
    let mut c = ParamCounts::default();
    for (name, n) in tensors {
        c.total += n;
        if !is_embedding(name) {
            c.non_embedding += n;
        }
    }
    c
}

/// A GGUF's counts. Converters write a tied model's head again as `output.weight` (quantized
/// apart: Qwen2.5-0.5B's token embeddings in Q5_0, its head in Q8_0), which would count its
/// 136M-parameter matrix twice; it is taken for the same matrix when the first rows of both
/// agree to a cosine ≥ 0.99 (independently trained matrices: about 0).
pub fn gguf_counts(file: &GgufFile) -> ParamCounts {
    let infos = &file.content.tensor_infos;
    let mut c = counts(infos.iter().map(|(n, i)| (n.as_str(), i.shape.elem_count() as u64)));
    if let (Some(head), Some(embed)) = (infos.get("output.weight"), infos.get("token_embd.weight"))
        && head.shape.dims() == embed.shape.dims()
        && same_matrix(file, "output.weight", "token_embd.weight")
    {
        c.total -= head.shape.elem_count() as u64;
    }
    c
}

fn same_matrix(file: &GgufFile, a: &str, b: &str) -> bool {
    const ROWS: usize = 64;
    match (file.rows_f32(a, ROWS), file.rows_f32(b, ROWS)) {
        (Ok(x), Ok(y)) => {
            let dot: f64 = x.iter().zip(&y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let norm = |v: &[f32]| v.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            dot / (norm(&x) * norm(&y)).max(f64::MIN_POSITIVE) >= 0.99
        }
        _ => false,
    }
}

/// A checkpoint's counts (safetensors store a tied head once, or not at all).
pub fn checkpoint_counts(weights: &HfWeights) -> ParamCounts {
    let tensors = weights.param_tensors();
    counts(tensors.iter().map(|(n, c)| (n.as_str(), *c)))
}
