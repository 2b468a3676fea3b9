//! End to end against a loopback server that answers like the hub (the real one is unreachable
//! here): listing, download into the hub cache layout, offline mode, missing files.

use std::collections::HashMap;

use invscale_hub::testing::{FakeFile, FakeHub};
use invscale_hub::{Hub, HubConfig, HubError, Repo};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TRAIN: &str = "{\"prompt\":\"Q?\",\"classes\":\"[' A', ' B']\",\"answer_index\":0}\n";
const LFS: &[u8] = b"PAR1 pretend parquet bytes PAR1";

/// One dataset `org/ds` at COMMIT: README.md and data/train.jsonl as plain git files,
/// data/big.parquet as an LFS object.
fn fake_hub() -> FakeHub {
    let file = |path: &str, content: &[u8], lfs: bool| FakeFile {
        repo: repo(),
        commit: COMMIT.into(),
        path: path.into(),
        content: content.to_vec(),
        lfs,
    };
    FakeHub::start(vec![
        file("README.md", b"# ds", false),
        file("data/train.jsonl", TRAIN.as_bytes(), false),
        file("data/big.parquet", LFS, true),
    ])
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
        assert_eq!(std::fs::read_link(&train).unwrap(), std::path::Path::new("../../../blobs/etag-1-58"));
        assert_eq!(std::fs::read_link(&big).unwrap(), std::path::Path::new("../../../blobs/etag-2-31"));
    }
    assert!(root.join("blobs/etag-1-58").is_file());
    assert!(!root.join("blobs/etag-1-58.incomplete").exists());

    // The token went to the hub only as a header (never in a URL).
    let log = hub_server.requests();
    assert!(log.iter().any(|(_, url, auth)| url.starts_with("/api/") && auth.as_deref() == Some("Bearer hf_secret")));
    assert!(log.iter().all(|(_, url, _)| !url.contains("hf_secret")));
    let requests_before = log.len();

    // A second lookup is served from the cache: no new download.
    assert_eq!(online.file(&repo(), COMMIT, "data/train.jsonl").unwrap(), train);
    assert_eq!(hub_server.requests().len(), requests_before);

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
