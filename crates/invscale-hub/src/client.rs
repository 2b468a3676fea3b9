//! The network side: listing a repository and downloading files into the cache.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use ureq::Agent;

use crate::cache::CacheRepo;
use crate::config::HubConfig;
use crate::error::{HubError, Result};
use crate::repo::{Repo, RepoListing};

/// A hub client over one cache folder.
pub struct Hub {
    config: HubConfig,
    /// Follows no redirects: the first answer carries the commit and ETag headers.
    head_agent: Agent,
    /// Follows redirects (file contents are often served from a CDN).
    get_agent: Agent,
}

#[derive(Deserialize)]
struct ApiRevision {
    sha: String,
    #[serde(default)]
    siblings: Vec<ApiSibling>,
}

#[derive(Deserialize)]
struct ApiSibling {
    rfilename: String,
}

impl Hub {
    pub fn new(config: HubConfig) -> Self {
        let agent = |redirects: u32| -> Agent {
            Agent::config_builder()
                .max_redirects(redirects)
                .max_redirects_will_error(false)
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(20)))
                .timeout_recv_body(Some(Duration::from_secs(300)))
                .user_agent(concat!("invscale/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Hub { config, head_agent: agent(0), get_agent: agent(10) }
    }

    pub fn from_env() -> Self {
        Hub::new(HubConfig::from_env())
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub fn cache_repo(&self, repo: &Repo) -> CacheRepo {
        CacheRepo::new(&self.config.cache_dir, repo)
    }

    /// The files of `repo` at its revision. Offline, or when the hub cannot be reached,
    /// this is what the cache holds of the revision's commit.
    pub fn listing(&self, repo: &Repo) -> Result<RepoListing> {
        let cache = self.cache_repo(repo);
        if self.config.offline {
            let commit = cache
                .resolve_commit(&repo.revision)
                .ok_or_else(|| HubError::OfflineMissingRepo { repo: repo.clone(), looked: cache.root.clone() })?;
            return cache.listing(&commit);
        }
        let url = format!(
            "{}/api/{}/{}/revision/{}",
            self.config.endpoint,
            repo.kind.plural(),
            repo.id,
            encode_segment(&repo.revision)
        );
        let body = match self.get_text(&url) {
            Ok((200, body)) => body,
            Ok((status @ (401 | 404), _)) => {
                return Err(HubError::RepoNotFound { repo: repo.clone(), url, status });
            }
            Ok((status, _)) => return Err(HubError::Http { url, status }),
            Err(network) => {
                // Same behaviour as huggingface_hub: without the network, a cached snapshot serves.
                return match cache.resolve_commit(&repo.revision) {
                    Some(commit) => cache.listing(&commit),
                    None => Err(network),
                };
            }
        };
        let api: ApiRevision = serde_json::from_str(&body)
            .map_err(|e| HubError::Protocol { url: url.clone(), message: e.to_string() })?;
        if !crate::repo::is_commit_hash(&api.sha) {
            return Err(HubError::Protocol { url, message: format!("`sha` is not a commit hash: {:?}", api.sha) });
        }
        cache.write_ref(&repo.revision, &api.sha)?;
        let mut files: Vec<String> = api.siblings.into_iter().map(|s| s.rfilename).collect();
        files.sort();
        Ok(RepoListing { commit: api.sha, files })
    }

    /// The local path of `file` at `commit` of `repo`, downloading it into the cache if needed.
    pub fn file(&self, repo: &Repo, commit: &str, file: &str) -> Result<PathBuf> {
        let cache = self.cache_repo(repo);
        if let Some(path) = cache.file(commit, file) {
            return Ok(path);
        }
        if self.config.offline {
            return Err(HubError::OfflineMissingFile {
                repo: repo.clone(),
                path: file.to_string(),
                looked: cache.snapshot_dir(commit).join(file),
            });
        }
        let url = format!(
            "{}/{}{}/resolve/{}/{}",
            self.config.endpoint,
            repo.kind.url_prefix(),
            repo.id,
            commit,
            file.split('/').map(encode_segment).collect::<Vec<_>>().join("/")
        );
        // HEAD first, without following redirects: the hub's first answer names the blob
        // (X-Linked-Etag for LFS files, ETag otherwise), as huggingface_hub reads it.
        let head = self.request(self.head_agent.head(&url), &url)?;
        let status = head.status().as_u16();
        if status == 404 {
            return Err(HubError::FileNotFound { repo: repo.clone(), path: file.to_string(), url, status });
        }
        if !(200..400).contains(&status) {
            return Err(HubError::Http { url, status });
        }
        let header = |name: &str| head.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| normalize_etag(&e))
            .filter(|e| !e.is_empty() && !e.contains(['/', '\\']) && e != "." && e != "..")
            .ok_or_else(|| HubError::Protocol { url: url.clone(), message: "no ETag header".into() })?;
        let location = if (300..400).contains(&status) {
            header("location").map(|l| absolute_location(&self.config.endpoint, &l))
        } else {
            None
        };
        let get_url = location.unwrap_or_else(|| url.clone());
        // The token goes only to the hub itself, never to the CDN it redirects to.
        let same_host = get_url.starts_with(&self.config.endpoint);
        let mut request = self.get_agent.get(&get_url);
        if same_host && let Some(token) = self.config.token() {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| self.network_error(&get_url, e))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(HubError::Http { url: get_url, status });
        }
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        cache.store(commit, file, &etag, &mut reader)
    }

    fn get_text(&self, url: &str) -> Result<(u16, String)> {
        let mut response = self.request(self.get_agent.get(url), url)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| HubError::Protocol { url: url.to_string(), message: e.to_string() })?;
        Ok((status, body))
    }

    fn request<B>(
        &self,
        mut request: ureq::RequestBuilder<B>,
        url: &str,
    ) -> Result<ureq::http::Response<ureq::Body>>
    where
        B: 'static,
        ureq::RequestBuilder<B>: Callable,
    {
        if let Some(token) = self.config.token() {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        request.call_it().map_err(|e| self.network_error(url, e))
    }

    fn network_error(&self, url: &str, e: ureq::Error) -> HubError {
        HubError::Network { url: url.to_string(), message: e.to_string(), cache: self.config.cache_dir.clone() }
    }
}

/// `call()` exists on both body-less builders (GET, HEAD); this names it once.
pub trait Callable {
    fn call_it(self) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>;
}

impl Callable for ureq::RequestBuilder<ureq::typestate::WithoutBody> {
    fn call_it(self) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.call()
    }
}

/// `W/"abc"` → `abc`.
fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

fn absolute_location(endpoint: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{endpoint}/{}", location.trim_start_matches('/'))
    }
}

/// Percent-encodes one URL path segment (revisions like `refs/convert/parquet` included).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_segments() {
        assert_eq!(normalize_etag("W/\"abc123\""), "abc123");
        assert_eq!(normalize_etag("\"sha256hex\""), "sha256hex");
        assert_eq!(encode_segment("refs/convert/parquet"), "refs%2Fconvert%2Fparquet");
        assert_eq!(encode_segment("a b+c.jsonl"), "a%20b%2Bc.jsonl");
        assert_eq!(absolute_location("http://h:1", "/api/x"), "http://h:1/api/x");
        assert_eq!(absolute_location("http://h:1", "https://cdn/x"), "https://cdn/x");
    }
}
