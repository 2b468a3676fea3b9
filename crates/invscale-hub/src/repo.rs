//! Repositories on the hub: a dataset or a model, at a revision, and the files of one commit.

use std::fmt;

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
    pub(crate) fn url_prefix(self) -> &'static str {
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

/// The files of a repository at one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoListing {
    pub commit: String,
    /// Paths relative to the repository root, `/`-separated, sorted.
    pub files: Vec<String>,
}
