//! End to end against a loopback server that answers like the hub (the real one is unreachable
//! here): listing, download into the hub cache layout, offline mode, missing files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;

use invscale_hub::{Hub, HubConfig, HubError, Repo};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TRAIN: &str = "{\"prompt\":\"Q?\",\"classes\":\"[' A', ' B']\",\"answer_index\":0}\n";
const LFS: &[u8] = b"PAR1 pretend parquet bytes PAR1";

/// A loopback hub: one dataset `org/ds` at COMMIT. `data/train.jsonl` is a plain git file
/// (ETag on the first answer), `data/big.parquet` an LFS file (302 to a "CDN" path with
/// X-Linked-Etag), as the real hub serves them. Records every request's method, path and
/// Authorization header.
struct FakeHub {
    endpoint: String,
    log: Arc<Mutex<Vec<(String, String, Option<String>)>>>,
    _thread: thread::JoinHandle<()>,
}

fn fake_hub() -> FakeHub {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind loopback");
    let endpoint = format!("http://{}", server.server_addr().to_ip().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let handle = thread::spawn(move || {
        for request in server.incoming_requests() {
            let method = request.method().to_string();
            let url = request.url().to_string();
            let auth = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .map(|h| h.value.to_string());
            log2.lock().unwrap().push((method.clone(), url.clone(), auth));
            if url == "/shutdown" {
                let _ = request.respond(tiny_http::Response::empty(200));
                break;
            }
            let resolve = format!("/datasets/org/ds/resolve/{COMMIT}/");
            let header = |k: &str, v: &str| tiny_http::Header::from_bytes(k, v).unwrap();
            let response = match url.as_str() {
                "/api/datasets/org/ds/revision/main" => tiny_http::Response::from_string(format!(
                    r#"{{"id":"org/ds","sha":"{COMMIT}","siblings":[{{"rfilename":"README.md"}},{{"rfilename":"data/train.jsonl"}},{{"rfilename":"data/big.parquet"}}]}}"#
                )),
                u if u == format!("{resolve}data/train.jsonl") => {
                    tiny_http::Response::from_string(if method == "HEAD" { "" } else { TRAIN })
                        .with_header(header("ETag", "\"gitblob1\""))
                        .with_header(header("X-Repo-Commit", COMMIT))
                }
                u if u == format!("{resolve}data/big.parquet") => tiny_http::Response::from_string("")
                    .with_status_code(302)
                    .with_header(header("Location", "/cdn/lfs-object"))
                    .with_header(header("X-Linked-Etag", "\"sha256lfs\""))
                    .with_header(header("ETag", "\"pointer-etag\"")),
                "/cdn/lfs-object" => tiny_http::Response::from_data(LFS.to_vec()),
                _ => tiny_http::Response::from_string("not found").with_status_code(404),
            };
            let _ = request.respond(response);
        }
    });
    FakeHub { endpoint, log, _thread: handle }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        let _ = ureq::get(&format!("{}/shutdown", self.endpoint)).call();
    }
}

fn repo() -> Repo {
    Repo::dataset("org/ds")
}

#[test]
fn downloads_into_the_hub_cache_layout_and_reads_it_back_offline() {
    let hub_server = fake_hub();
    let cache = tempfile::tempdir().unwrap();
    let online = Hub::new(
        HubConfig::new(cache.path(), &hub_server.endpoint, false).with_token(Some("hf_secret".into())),
    );

    let listing = online.listing(&repo()).unwrap();
    assert_eq!(listing.commit, COMMIT);
    assert_eq!(listing.files, vec!["README.md", "data/big.parquet", "data/train.jsonl"]);

    let train = online.file(&repo(), COMMIT, "data/train.jsonl").unwrap();
    let big = online.file(&repo(), COMMIT, "data/big.parquet").unwrap();
    assert_eq!(std::fs::read_to_string(&train).unwrap(), TRAIN);
    assert_eq!(std::fs::read(&big).unwrap(), LFS);

    // Exactly huggingface_hub's layout: refs/main holds the commit; snapshot entries are
    // relative symlinks to blobs named by the (X-Linked-)ETag.
    let root = cache.path().join("datasets--org--ds");
    assert_eq!(std::fs::read_to_string(root.join("refs/main")).unwrap(), COMMIT);
    assert_eq!(train, root.join("snapshots").join(COMMIT).join("data/train.jsonl"));
    #[cfg(unix)]
    {
        assert_eq!(std::fs::read_link(&train).unwrap(), std::path::Path::new("../../../blobs/gitblob1"));
        assert_eq!(std::fs::read_link(&big).unwrap(), std::path::Path::new("../../../blobs/sha256lfs"));
    }
    assert!(root.join("blobs/gitblob1").is_file());
    assert!(!root.join("blobs/gitblob1.incomplete").exists());

    // The token went to the hub only as a header (never in a URL).
    let log = hub_server.log.lock().unwrap().clone();
    assert!(log.iter().any(|(_, url, auth)| url.starts_with("/api/") && auth.as_deref() == Some("Bearer hf_secret")));
    assert!(log.iter().all(|(_, url, _)| !url.contains("hf_secret")));
    let requests_before = log.len();

    // A second lookup is served from the cache: no new download.
    assert_eq!(online.file(&repo(), COMMIT, "data/train.jsonl").unwrap(), train);
    assert_eq!(hub_server.log.lock().unwrap().len(), requests_before);

    // Offline: the listing comes from refs/main + the snapshot, the files from the cache.
    let offline = Hub::new(HubConfig::new(cache.path(), "http://127.0.0.1:9", true));
    let cached = offline.listing(&repo()).unwrap();
    assert_eq!(cached.commit, COMMIT);
    assert_eq!(cached.files, vec!["data/big.parquet", "data/train.jsonl"]);
    assert_eq!(offline.file(&repo(), COMMIT, "data/train.jsonl").unwrap(), train);

    // Offline and not cached: a precise error naming the path looked for and how to get it.
    let err = offline.file(&repo(), COMMIT, "README.md").unwrap_err();
    assert!(matches!(err, HubError::OfflineMissingFile { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("snapshots/{COMMIT}/README.md")), "{msg}");
    assert!(msg.contains("HF_HUB_OFFLINE"), "{msg}");
    assert!(msg.contains("huggingface-cli download --repo-type dataset org/ds README.md"), "{msg}");
}

#[test]
fn offline_without_cache_names_the_folder_looked_in() {
    let cache = tempfile::tempdir().unwrap();
    let offline = Hub::new(HubConfig::new(cache.path(), "http://127.0.0.1:9", true));
    let err = offline.listing(&Repo::dataset("inverse-scaling/NeQA")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HubError::OfflineMissingRepo { .. }));
    assert!(msg.contains("datasets--inverse-scaling--NeQA"), "{msg}");
}

#[test]
fn missing_repo_and_file_on_the_hub_are_reported_as_such() {
    let hub_server = fake_hub();
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(HubConfig::new(cache.path(), &hub_server.endpoint, false));
    let err = hub.listing(&Repo::dataset("org/nope")).unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { status: 404, .. }), "{err:?}");
    let err = hub.file(&repo(), COMMIT, "data/missing.csv").unwrap_err();
    assert!(matches!(err, HubError::FileNotFound { status: 404, .. }), "{err:?}");
    // Nothing half-written was left in the cache.
    assert!(!cache.path().join("datasets--org--ds/snapshots").join(COMMIT).join("data/missing.csv").exists());
}

#[test]
fn unreachable_hub_falls_back_to_the_cached_snapshot() {
    let hub_server = fake_hub();
    let cache = tempfile::tempdir().unwrap();
    Hub::new(HubConfig::new(cache.path(), &hub_server.endpoint, false))
        .file(&repo(), COMMIT, "data/train.jsonl")
        .unwrap();
    // Port 9 (discard) on loopback: connection refused, as with no network.
    let cut_off = Hub::new(HubConfig::new(cache.path(), "http://127.0.0.1:9", false));
    let err = cut_off.listing(&Repo::dataset("org/other")).unwrap_err();
    assert!(matches!(err, HubError::Network { .. }), "{err:?}");
    // refs/main was not written by `file` alone; write it as a listing would have.
    std::fs::create_dir_all(cache.path().join("datasets--org--ds/refs")).unwrap();
    std::fs::write(cache.path().join("datasets--org--ds/refs/main"), COMMIT).unwrap();
    assert_eq!(cut_off.listing(&repo()).unwrap().files, vec!["data/train.jsonl"]);
}

#[test]
fn config_from_environment_variables() {
    let vars: HashMap<&str, &str> = [
        ("HOME", "/home/u"),
        ("HF_HOME", "/data/hf"),
        ("HF_HUB_OFFLINE", "1"),
        ("HF_TOKEN", "hf_abc"),
        ("HF_ENDPOINT", "http://mirror.local/"),
    ]
    .into_iter()
    .collect();
    let cfg = HubConfig::from_vars(|k| vars.get(k).map(|v| v.to_string()));
    assert_eq!(cfg.cache_dir, std::path::Path::new("/data/hf/hub"));
    assert!(cfg.offline);
    assert!(cfg.has_token());
    assert_eq!(cfg.endpoint, "http://mirror.local");
    // The token never shows in Debug output (logs, panics).
    assert!(!format!("{cfg:?}").contains("hf_abc"));

    let cfg = HubConfig::from_vars(|k| match k {
        "HOME" => Some("/home/u".into()),
        "HF_HUB_CACHE" => Some("/elsewhere".into()),
        _ => None,
    });
    assert_eq!(cfg.cache_dir, std::path::Path::new("/elsewhere"));
    assert!(!cfg.offline);
    assert_eq!(cfg.endpoint, "https://huggingface.co");
    let cfg = HubConfig::from_vars(|k| (k == "HOME").then(|| "/home/u".to_string()));
    assert_eq!(cfg.cache_dir, std::path::Path::new("/home/u/.cache/huggingface/hub"));
}
