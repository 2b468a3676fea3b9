//! `--server URL` and its options: scoring on an inference server. On `run` today; `scale` and
//! `check` (a server per model of a family file) are to follow.

use std::time::Duration;

use clap::{Args, ValueEnum};
use invscale_harness::server::{ApiKind, ServerOptions};

/// Scoring on an inference server (lm-eval's `--model local-completions`, `vllm`, `sglang`).
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Score on this server (`http://host:port`, or `…/v1`): vLLM, SGLang, TGI, llama-cpp-python or
    /// an OpenAI-compatible API. --model then gives the tokenizer (read here) and the cache's name.
    /// API keys come from $INVSCALE_API_KEY or $OPENAI_API_KEY, sent only as a header.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The server's API (auto: found from its endpoints).
    #[arg(long, value_enum, default_value_t = Api::Auto, requires = "server")]
    server_api: Api,
    /// The served model's name (default: the server's only model).
    #[arg(long, requires = "server", value_name = "NAME")]
    served_model: Option<String>,
    /// Requests in flight at once (the server batches them).
    #[arg(long, default_value_t = 16, requires = "server")]
    concurrency: usize,
    /// Seconds to wait for one answer.
    #[arg(long, default_value_t = 300, requires = "server", value_name = "SECONDS")]
    timeout: u64,
    /// Retries of a request that failed (429, 5xx, a timeout, a dropped connection), with backoff.
    #[arg(long, default_value_t = 6, requires = "server")]
    max_retries: u32,
    /// Score without the server's self-check (recorded in the results).
    #[arg(long, requires = "server")]
    skip_server_check: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Api {
    Auto,
    Openai,
    Vllm,
    Sglang,
    Tgi,
    LlamaCpp,
}

impl ServerArgs {
    pub fn options(&self) -> Option<ServerOptions> {
        let url = self.server.clone()?;
        let api = match self.server_api {
            Api::Auto => None,
            Api::Openai => Some(ApiKind::OpenAi),
            Api::Vllm => Some(ApiKind::Vllm),
            Api::Sglang => Some(ApiKind::Sglang),
            Api::Tgi => Some(ApiKind::Tgi),
            Api::LlamaCpp => Some(ApiKind::LlamaCpp),
        };
        Some(ServerOptions {
            url,
            api,
            served_model: self.served_model.clone(),
            concurrency: self.concurrency.max(1),
            timeout: Duration::from_secs(self.timeout.max(1)),
            max_retries: self.max_retries,
            skip_check: self.skip_server_check,
        })
    }
}
