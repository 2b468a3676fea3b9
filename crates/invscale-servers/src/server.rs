//! A server to score on: its address, which API it speaks (asked for, or found from its
//! endpoints), which of its models, and the identity its answers are cached under.

use std::time::Duration;

use serde_json::Value;

use crate::api::ApiKind;
use crate::http::{Client, HttpError};

/// How to reach and use a server (`invscale run --server URL ...`).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `http://host:port` or `http://host:port/v1`.
    pub url: String,
    /// `None`: found from the server's endpoints.
    pub api: Option<ApiKind>,
    /// The model to ask for; `None`: the server's only model.
    pub served_model: Option<String>,
    /// Requests in flight at once (the server batches them).
    pub concurrency: usize,
    pub timeout: Duration,
    pub max_retries: u32,
    /// Score without the self-check (recorded in the results).
    pub skip_check: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            url: String::new(),
            api: None,
            served_model: None,
            concurrency: 16,
            timeout: Duration::from_secs(300),
            max_retries: 6,
            skip_check: false,
        }
    }
}

/// A server that answered, with what it said about itself.
#[derive(Clone, Debug)]
pub struct Server {
    pub client: Client,
    pub api: ApiKind,
    /// The model name sent with every request.
    pub model: String,
    /// What the server reported of the model and itself (its `/v1/models` entry, version, …),
    /// for the record and the cache identity; never a secret.
    pub about: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server is not usable as asked, and why (with what to do about it).
    #[error("{0}")]
    Refused(String),
}

impl Server {
    /// Connects to `options.url`, finds its API (unless given) and the model to use.
    pub fn connect(options: &ServerOptions, key: Option<String>) -> Result<Server, ServerError> {
        let client = Client::new(&options.url, options.timeout, options.max_retries, key);
        let models = client.get("/v1/models")?;
        let api = match options.api {
            Some(a) => a,
            None => detect(&client, models.as_ref())?,
        };
        if api == ApiKind::LlamaCpp {
            return Err(ServerError::Refused(format!(
                "{}: llama.cpp's llama-server returns no log-probs of prompt tokens (it echoes nothing, or only the generated \
                 token: every choice would score 0, results at chance; lm-eval #4158, llama.cpp #27174). Serve the GGUF with \
                 llama-cpp-python's server (`python -m llama_cpp.server --model FILE`, models that add BOS only), vLLM or \
                 SGLang, or score it in-process: `invscale run --model FILE`",
                client.base
            )));
        }
        let listed: Vec<&Value> = models.as_ref().and_then(|m| m["data"].as_array()).map(|a| a.iter().collect()).unwrap_or_default();
        let model = match (&options.served_model, listed.as_slice()) {
            (Some(m), _) => m.clone(),
            (None, [one]) => one["id"].as_str().unwrap_or_default().to_string(),
            (None, []) if api == ApiKind::Tgi => "tgi".to_string(),
            (None, []) => return Err(ServerError::Refused(format!("{}: the server lists no model (/v1/models); name one with --served-model", client.base))),
            (None, many) => {
                let names: Vec<&str> = many.iter().filter_map(|m| m["id"].as_str()).collect();
                return Err(ServerError::Refused(format!("{}: the server has {} models ({}); pick one with --served-model", client.base, names.len(), names.join(", "))));
            }
        };
        let entry = listed.iter().find(|m| m["id"].as_str() == Some(model.as_str())).map(|m| (*m).clone()).unwrap_or(Value::Null);
        let version = client.get("/version").ok().flatten().unwrap_or(Value::Null);
        let about = serde_json::json!({"api": api.name(), "model": model, "listing": entry, "version": version});
        Ok(Server { client, api, model, about })
    }
}

/// Which API a server speaks, from what it answers: SGLang has `/get_model_info`, TGI `/info`
/// with a `router`, llama.cpp's server `/props`; vLLM answers `/version` and lists its models
/// owned by "vllm"; anything else with `/v1/models` is taken as OpenAI-compatible.
pub fn detect(client: &Client, models: Option<&Value>) -> Result<ApiKind, ServerError> {
    let owned_by = models.and_then(|m| m["data"][0]["owned_by"].as_str()).unwrap_or_default().to_string();
    if owned_by == "vllm" {
        return Ok(ApiKind::Vllm);
    }
    if client.get("/get_model_info")?.is_some() {
        return Ok(ApiKind::Sglang);
    }
    if let Some(info) = client.get("/info")?
        && (info.get("router").is_some() || info.get("max_input_tokens").is_some() || info.get("max_input_length").is_some())
    {
        return Ok(ApiKind::Tgi);
    }
    if let Some(props) = client.get("/props")?
        && props.get("default_generation_settings").is_some()
    {
        return Ok(ApiKind::LlamaCpp);
    }
    if models.is_some() {
        return Ok(ApiKind::OpenAi);
    }
    Err(ServerError::Refused(format!(
        "{}: cannot tell which server this is (no /v1/models, /get_model_info, /info or /props); say it with --server-api",
        client.base
    )))
}
