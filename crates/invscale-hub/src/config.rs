//! Where the hub is, where its cache is, whether to go online, and the token, from the same
//! environment variables `huggingface_hub` reads.

use std::fmt;
use std::path::PathBuf;

/// Where the hub is and how to reach it. Built from the environment by [`HubConfig::from_env`].
#[derive(Clone)]
pub struct HubConfig {
    pub endpoint: String,
    pub cache_dir: PathBuf,
    pub offline: bool,
    token: Option<String>,
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: never in logs, results or panics.
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

impl HubConfig {
    /// The configuration huggingface_hub would use in this environment.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Same as [`from_env`](Self::from_env) over any variable lookup (tests use a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let home = var("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".cache")).join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let offline = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"]
            .iter()
            .any(|k| var(k).is_some_and(|v| is_truthy(&v)));
        let token = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN")).or_else(|| {
            let path = var("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| hf_home.join("token"));
            std::fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
        });
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        HubConfig { endpoint: endpoint.trim_end_matches('/').to_string(), cache_dir, offline, token }
    }

    /// A configuration with an explicit cache folder and endpoint (no token).
    pub fn new(cache_dir: impl Into<PathBuf>, endpoint: impl Into<String>, offline: bool) -> Self {
        HubConfig { endpoint: endpoint.into(), cache_dir: cache_dir.into(), offline, token: None }
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

fn is_truthy(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}
