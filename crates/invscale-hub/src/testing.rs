//! A loopback server that answers like the Hugging Face hub, for tests (the real hub is
//! unreachable from the machines that build invscale). Enabled by the `testing` feature.
//!
//! It serves `GET /api/{kind}s/{id}/revision/{rev}` (the listing) and `HEAD`/`GET` on
//! `/{datasets/}{id}/resolve/{commit}/{path}`: plain files answer with their ETag, LFS files
//! with a 302 to a "CDN" path and `X-Linked-Etag`, as the hub does. Every request is logged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::repo::{Repo, RepoKind};

/// One file served by the fake hub.
#[derive(Clone, Debug)]
pub struct FakeFile {
    pub repo: Repo,
    pub commit: String,
    pub path: String,
    pub content: Vec<u8>,
    /// Served like an LFS object: redirect to a CDN path, blob named by X-Linked-Etag.
    pub lfs: bool,
}

/// A logged request: method, URL path, Authorization header.
pub type LoggedRequest = (String, String, Option<String>);

pub struct FakeHub {
    pub endpoint: String,
    pub log: Arc<Mutex<Vec<LoggedRequest>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeHub {
    pub fn start(files: Vec<FakeFile>) -> FakeHub {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind a loopback port");
        let endpoint = format!("http://{}", server.server_addr().to_ip().expect("an IP listener"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        let thread = thread::spawn(move || serve(server, files, log2));
        FakeHub { endpoint, log, thread: Some(thread) }
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().expect("log lock").clone()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        let _ = ureq::get(&format!("{}/shutdown", self.endpoint)).call();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: tiny_http::Server, files: Vec<FakeFile>, log: Arc<Mutex<Vec<LoggedRequest>>>) {
    let header = |k: &str, v: &str| tiny_http::Header::from_bytes(k, v).expect("valid header");
    for request in server.incoming_requests() {
        let method = request.method().to_string();
        let url = request.url().to_string();
        let auth =
            request.headers().iter().find(|h| h.field.equiv("Authorization")).map(|h| h.value.to_string());
        log.lock().expect("log lock").push((method.clone(), url.clone(), auth));
        if url == "/shutdown" {
            let _ = request.respond(tiny_http::Response::empty(200));
            return;
        }
        let not_found = || tiny_http::Response::from_string("not found").with_status_code(404);
        let response = if let Some(listing) = listing_answer(&files, &url) {
            tiny_http::Response::from_string(listing)
        } else if let Some(i) = url.strip_prefix("/cdn/").and_then(|i| i.parse::<usize>().ok()) {
            match files.get(i) {
                Some(f) => tiny_http::Response::from_data(f.content.clone()),
                None => not_found(),
            }
        } else if let Some((i, f)) = files.iter().enumerate().find(|(_, f)| resolve_url(f) == url) {
            let etag = format!("\"etag-{i}-{}\"", f.content.len());
            if f.lfs {
                tiny_http::Response::from_data(Vec::new())
                    .with_status_code(302)
                    .with_header(header("Location", &format!("/cdn/{i}")))
                    .with_header(header("X-Linked-Etag", &etag))
                    .with_header(header("X-Repo-Commit", &f.commit))
            } else {
                let body = if method == "HEAD" { Vec::new() } else { f.content.clone() };
                tiny_http::Response::from_data(body)
                    .with_header(header("ETag", &etag))
                    .with_header(header("X-Repo-Commit", &f.commit))
            }
        } else {
            not_found()
        };
        let _ = request.respond(response);
    }
}

fn resolve_url(f: &FakeFile) -> String {
    let prefix = match f.repo.kind {
        RepoKind::Dataset => "datasets/",
        RepoKind::Model => "",
    };
    format!("/{prefix}{}/resolve/{}/{}", f.repo.id, f.commit, f.path)
}

/// The revision listing of a repository, if `url` asks for one the server knows.
fn listing_answer(files: &[FakeFile], url: &str) -> Option<String> {
    let mut repos: BTreeMap<String, (String, Vec<&str>)> = BTreeMap::new();
    for f in files {
        let revision = f.repo.revision.replace('/', "%2F");
        let key = format!("/api/{}/{}/revision/{revision}", f.repo.kind.plural(), f.repo.id);
        let entry = repos.entry(key).or_insert_with(|| (f.commit.clone(), Vec::new()));
        entry.1.push(&f.path);
    }
    let (commit, paths) = repos.get(url)?;
    let siblings: Vec<serde_json::Value> = paths.iter().map(|p| serde_json::json!({ "rfilename": p })).collect();
    Some(serde_json::json!({ "sha": commit, "siblings": siblings }).to_string())
}
