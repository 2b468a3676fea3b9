//! Scoring on inference servers: `run --server URL`, and for `scale`/`check` a `server` per
//! model of a family file; the tuning flags below apply to every server of the command.

use std::time::Duration;

use clap::Args;
use invscale_harness::server::{ApiKind, ServerOptions};

/// Scoring on an inference server (lm-eval's `--model local-completions`, `vllm`, `sglang`).
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Score on this server (`http://host:port`, or `…/v1`): vLLM, SGLang, TGI, llama-cpp-python or
    /// an OpenAI-compatible API. --model then gives the tokenizer (read here; a hub checkpoint's
    /// weights are not fetched) and the cache's name. API keys come from $INVSCALE_API_KEY or
    /// $OPENAI_API_KEY, sent only as a header.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The server's API (auto: found from its endpoints).
    #[arg(long, default_value = "auto", requires = "server", value_parser = api_names())]
    server_api: String,
    /// The served model's name (default: the server's only model).
    #[arg(long, requires = "server", value_name = "NAME")]
    served_model: Option<String>,
    #[command(flatten)]
    pub tuning: ServerTuning,
}

/// How a command talks to its servers.
#[derive(Args, Clone)]
pub struct ServerTuning {
    /// Requests in flight at once on a server, which batches them [default: 16].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Seconds to wait for a server's answer [default: 300].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Retries of a server request that failed (429, 5xx, a timeout, a dropped connection), with
    /// backoff [default: 6].
    #[arg(long)]
    max_retries: Option<u32>,
    /// Score without the server's self-check (recorded in the results).
    #[arg(long)]
    skip_server_check: bool,
}

fn api_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(std::iter::once("auto").chain(ApiKind::NAMES))
}

impl ServerTuning {
    /// The options every server of the command shares (its address and model set per server).
    pub fn options(&self) -> ServerOptions {
        let d = ServerOptions::default();
        ServerOptions {
            concurrency: self.concurrency.unwrap_or(d.concurrency).max(1),
            timeout: self.timeout.map_or(d.timeout, |s| Duration::from_secs(s.max(1))),
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            skip_check: self.skip_server_check,
            ..d
        }
    }

    /// The first flag given, for "applies only to a server" errors.
    pub fn given(&self) -> Option<&'static str> {
        [
            (self.concurrency.is_some(), "--concurrency"),
            (self.timeout.is_some(), "--timeout"),
            (self.max_retries.is_some(), "--max-retries"),
            (self.skip_server_check, "--skip-server-check"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

impl ServerArgs {
    /// The server to score on, if any; `Err`: a server flag without `--server`.
    pub fn options(&self) -> Result<Option<ServerOptions>, String> {
        let Some(url) = self.server.clone() else {
            return match self.tuning.given() {
                Some(flag) => Err(format!("{flag} applies to scoring on a server: give --server URL")),
                None => Ok(None),
            };
        };
        let api = ApiKind::parse(&self.server_api); // `auto`: None
        Ok(Some(ServerOptions { url, api, served_model: self.served_model.clone(), ..self.tuning.options() }))
    }
}
