//! The HTTP side of a server backend: JSON POSTs and GETs with a timeout, the API key from the
//! environment sent only as a header, and retries with exponential backoff on what a busy or
//! restarting server answers (429, 5xx, timeouts, refused or dropped connections, a body cut
//! short), honouring `Retry-After`. A request that exhausts its retries is an error naming the
//! URL and the last failure; the key never appears in any message.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use ureq::Agent;

/// Where a client's lines about its work go (retries, progress): standard error from the command
/// line, anywhere a library user likes, nowhere by default.
pub type Notes = Arc<OnceLock<Box<dyn Fn(&str) + Send + Sync>>>;

/// How to reach a server.
#[derive(Clone)]
pub struct Client {
    /// `http://host:port` (no trailing slash, no `/v1`).
    pub base: String,
    agent: Agent,
    key: Option<String>,
    pub max_retries: u32,
    /// The first backoff; it doubles per retry, up to 30 s.
    pub backoff: Duration,
    pub notes: Notes,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never in logs, results or panics.
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server answered, with an error that retrying will not fix (4xx other than 408/429).
    #[error("{url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    /// Retries exhausted on failures that might have passed.
    #[error("{url}: no answer after {attempts} attempts (last: {last})")]
    GaveUp { url: String, attempts: u32, last: String },
    /// The answer was not the JSON expected.
    #[error("{url}: the answer is not valid JSON ({message}); starts {start:?}")]
    NotJson { url: String, message: String, start: String },
}

impl HttpError {
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The first `n` characters of a body, for error messages.
fn start(body: &str, n: usize) -> String {
    body.chars().take(n).collect()
}

impl Client {
    /// `base`: the server's address (`http://host:port`, with or without `/v1`). `key`: from
    /// `OPENAI_API_KEY` or `INVSCALE_API_KEY` (see [`api_key_from_env`]).
    pub fn new(base: &str, timeout: Duration, max_retries: u32, key: Option<String>) -> Client {
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base).to_string();
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(timeout))
            .user_agent(concat!("invscale/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client { base, agent, key, max_retries, backoff: Duration::from_millis(250), notes: Notes::default() }
    }

    /// Tells `line` to whoever listens (see [`Notes`]).
    pub fn note(&self, line: &str) {
        if let Some(f) = self.notes.get() {
            f(line);
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// `GET path`, its JSON; `Ok(None)` when the server has no such endpoint (404/405).
    pub fn get(&self, path: &str) -> Result<Option<Value>, HttpError> {
        let url = self.url(path);
        match self.with_retries(&url, || {
            let mut r = self.agent.get(&url);
            if let Some(k) = &self.key {
                r = r.header("Authorization", &format!("Bearer {k}"));
            }
            r.call()
        }) {
            Ok(v) => Ok(Some(v)),
            Err(HttpError::Status { status: 404 | 405, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST path` with a JSON body, its JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, HttpError> {
        let url = self.url(path);
        let text = body.to_string();
        self.with_retries(&url, || {
            let mut r = self.agent.post(&url).header("Content-Type", "application/json");
            if let Some(k) = &self.key {
                r = r.header("Authorization", &format!("Bearer {k}"));
            }
            r.send(text.as_str())
        })
    }

    fn with_retries(
        &self,
        url: &str,
        call: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, HttpError> {
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 0..=self.max_retries {
            if attempt > 0 {
                self.note(&format!("server: {url}: {last}; retrying in {:.1} s (attempt {} of {})", wait.as_secs_f64(), attempt + 1, self.max_retries + 1));
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            let mut response = match call() {
                Ok(r) => r,
                // Refused, reset, timed out: the server may be starting or busy.
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = match response.body_mut().with_config().limit(256 << 20).read_to_string() {
                Ok(b) => b,
                Err(e) => {
                    last = format!("the answer was cut short: {e}");
                    continue;
                }
            };
            if status == 429 || status == 408 || status >= 500 {
                last = format!("HTTP {status}: {}", start(&body, 200));
                if let Some(s) = retry_after {
                    wait = Duration::from_secs(s.min(120));
                }
                continue;
            }
            if status >= 400 {
                return Err(HttpError::Status { url: url.to_string(), status, body: start(&body, 500) });
            }
            match serde_json::from_str(&body) {
                Ok(v) => return Ok(v),
                // A truncated or garbled answer with a 200: what a dropped connection can leave.
                Err(e) => last = format!("not valid JSON ({e}), starts {:?}", start(&body, 80)),
            }
        }
        Err(HttpError::GaveUp { url: url.to_string(), attempts: self.max_retries + 1, last })
    }
}

/// The API key, if the environment has one: `INVSCALE_API_KEY`, else `OPENAI_API_KEY`.
pub fn api_key_from_env() -> Option<String> {
    ["INVSCALE_API_KEY", "OPENAI_API_KEY"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}
