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
pub mod config;
pub mod error;
pub mod repo;
#[cfg(feature = "testing")]
pub mod testing;

pub use cache::CacheRepo;
pub use client::Hub;
pub use config::{DEFAULT_ENDPOINT, HubConfig};
pub use error::{HubError, Result};
pub use repo::{Repo, RepoKind, RepoListing, is_commit_hash};
