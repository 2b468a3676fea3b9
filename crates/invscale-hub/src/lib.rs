//! Hugging Face Hub access for datasets and models, with the hub's own cache layout.
//!
//! The cache is the one Python's `huggingface_hub` writes and reads, so a file downloaded by
//! either tool is found by the other:
//!
//! ```text
//! $HF_HUB_CACHE/                       (default $HF_HOME/hub, default ~/.cache/huggingface/hub)
//!   datasets--inverse-scaling--NeQA/   ({kind}s--{org}--{name})
//!     refs/main                        (the commit hash that `main` pointed to when last resolved)
//!     blobs/<etag>                     (file contents, named by the hub's ETag)
//!     snapshots/<commit>/<path>        (relative symlinks into ../../blobs)
//! ```
//!
//! Environment honoured (same names as huggingface_hub): `HF_HOME`, `HF_HUB_CACHE`,
//! `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `HF_TOKEN` / `HUGGING_FACE_HUB_TOKEN` / `$HF_HOME/token`.
//! The token is only ever sent as an `Authorization` header; it is never printed.

mod cache;
mod client;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::path::{Path, PathBuf};

pub use cache::CacheRepo;
pub use client::Hub;

/// What kind of repository: the hub keeps datasets and models under different URLs and
/// cache folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    /// The plural used in cache folder names and API paths (`models`, `datasets`).
    pub fn plural(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }
    /// Prefix of `resolve` URLs: datasets live under `/datasets/`, models at the root.
    fn url_prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "",
            RepoKind::Dataset => "datasets/",
        }
    }
}

/// A repository at a revision (branch, tag, or commit hash).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Repo {
    pub id: String,
    pub kind: RepoKind,
    pub revision: String,
}

impl Repo {
    pub fn new(id: impl Into<String>, kind: RepoKind, revision: impl Into<String>) -> Self {
        Repo { id: id.into(), kind, revision: revision.into() }
    }
    pub fn dataset(id: impl Into<String>) -> Self {
        Repo::new(id, RepoKind::Dataset, "main")
    }
    pub fn model(id: impl Into<String>) -> Self {
        Repo::new(id, RepoKind::Model, "main")
    }
    /// The cache folder name: `datasets--org--name`.
    pub fn cache_folder_name(&self) -> String {
        format!("{}--{}", self.kind.plural(), self.id.replace('/', "--"))
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        };
        write!(f, "{kind} {}@{}", self.id, self.revision)
    }
}

/// Whether `s` is a full commit hash (a revision that never moves).
pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

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

/// The files of a repository at one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoListing {
    pub commit: String,
    /// Paths relative to the repository root, `/`-separated, sorted.
    pub files: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "{repo}: not in the local hub cache and downloads are disabled (HF_HUB_OFFLINE=1).\n  looked in: {}\n  to get it: unset HF_HUB_OFFLINE on a machine with network access, or copy the files there with `huggingface-cli download{} {}`",
        looked.display(), kind_flag(repo), repo.id
    )]
    OfflineMissingRepo { repo: Repo, looked: PathBuf },

    #[error(
        "{repo}: file `{path}` is not in the local hub cache and downloads are disabled (HF_HUB_OFFLINE=1).\n  looked for: {}\n  to get it: unset HF_HUB_OFFLINE on a machine with network access, or `huggingface-cli download{} {} {path}`",
        looked.display(), kind_flag(repo), repo.id
    )]
    OfflineMissingFile { repo: Repo, path: String, looked: PathBuf },

    #[error("{repo}: the hub has no such repository or revision ({url} answered {status}){}", auth_hint(*status))]
    RepoNotFound { repo: Repo, url: String, status: u16 },

    #[error("{repo}: the hub has no file `{path}` ({url} answered {status})")]
    FileNotFound { repo: Repo, path: String, url: String, status: u16 },

    #[error("{url}: the hub answered HTTP {status}{}", auth_hint(*status))]
    Http { url: String, status: u16 },

    #[error("{url}: could not reach the hub: {message}\n  (set HF_HUB_OFFLINE=1 to use only the local cache at {})", cache.display())]
    Network { url: String, message: String, cache: PathBuf },

    #[error("{url}: unexpected answer from the hub: {message}")]
    Protocol { url: String, message: String },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

fn kind_flag(repo: &Repo) -> &'static str {
    match repo.kind {
        RepoKind::Dataset => " --repo-type dataset",
        RepoKind::Model => "",
    }
}

fn auth_hint(status: u16) -> &'static str {
    if status == 401 || status == 403 {
        "\n  (a gated or private repository needs a token: set HF_TOKEN)"
    } else {
        ""
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |source| HubError::Io { path: path.to_path_buf(), source }
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;
