//! What can go wrong with the hub, each error saying where it looked and how to get the file.

use std::path::{Path, PathBuf};

use crate::repo::{Repo, RepoKind};

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
