//! The inference servers' APIs for prompt-token log-probs (shared/docs/SERVERS.md): per engine,
//! the best correct request and a parser of its answer that aligns by token id. Each parser is a
//! pure function of the JSON, tested on responses in the engines' documented formats.

pub mod openai;
pub mod sglang;
pub mod tgi;
pub mod vllm;

use serde_json::Value;

/// Which API a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    /// OpenAI-compatible `/v1/completions` with echo + logprobs, text prompts (hosted APIs,
    /// llama-cpp-python's server).
    OpenAi,
    /// vLLM's `/v1/completions`: token-id prompts, `prompt_logprobs`, `return_token_ids`.
    Vllm,
    /// SGLang's native `/generate`: `input_ids`, `return_logprob`, `logprob_start_len`.
    Sglang,
    /// TGI's `/generate` with `decoder_input_details` (text inputs; no top-1, so no is_greedy).
    Tgi,
    /// llama.cpp's `llama-server`: no prompt log-probs (refused).
    LlamaCpp,
}

impl ApiKind {
    pub fn name(self) -> &'static str {
        match self {
            ApiKind::OpenAi => "openai",
            ApiKind::Vllm => "vllm",
            ApiKind::Sglang => "sglang",
            ApiKind::Tgi => "tgi",
            ApiKind::LlamaCpp => "llama-cpp",
        }
    }

    /// The names `parse` takes (as `name` gives them).
    pub const NAMES: [&'static str; 5] = ["openai", "vllm", "sglang", "tgi", "llama-cpp"];

    pub fn parse(name: &str) -> Option<ApiKind> {
        Some(match name {
            "openai" => ApiKind::OpenAi,
            "vllm" => ApiKind::Vllm,
            "sglang" => ApiKind::Sglang,
            "tgi" => ApiKind::Tgi,
            "llama-cpp" | "llama.cpp" | "llamacpp" => ApiKind::LlamaCpp,
            _ => return None,
        })
    }

    /// Whether prompts go as token ids (else as text, and the server's tokens are checked).
    pub fn takes_token_ids(self) -> bool {
        matches!(self, ApiKind::Vllm | ApiKind::Sglang)
    }
}

/// A sequence's scored tokens as a server gave them: for `tokens[from..]`, each token's
/// log-prob given the tokens before it, and whether it was the argmax (`None`: the API does
/// not say).
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub logprobs: Vec<f32>,
    pub greedy: Vec<Option<bool>>,
}

/// An answer that does not fit the request: what the self-check and every request guard
/// against (a shifted, short or padded answer would be scored as garbage).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BadAnswer(pub String);

fn bad(message: impl Into<String>) -> BadAnswer {
    BadAnswer(message.into())
}

/// A JSON number as f32; `null` and non-numbers are `None`. vLLM clamps to -9999; NaN comes
/// as null.
fn number(v: &Value) -> Option<f32> {
    v.as_f64().map(|x| x as f32)
}
