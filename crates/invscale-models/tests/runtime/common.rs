//! What the tests of the real models share: the real data's documents, the fixtures, the
//! comparison of token log-probs (the models themselves: `invscale_models::testing`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use invscale_tasks::{DataOptions, Registry, load, locate};

pub use invscale_models::testing::{MODELS, model_path};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// (task alias, doc id) → (prompt, classes), for the three real tasks in ../shared.
pub fn documents() -> HashMap<(String, usize), (String, Vec<String>)> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/inverse_scaling");
    assert!(shared.is_dir(), "needs the project's shared/ folder beside the checkout ({})", shared.display());
    let opts = DataOptions {
        data_dirs: vec![shared],
        hub: invscale_hub::HubConfig::new(std::env::temp_dir().join("invscale-empty-hub"), "http://127.0.0.1:9", true),
    };
    let mut out = HashMap::new();
    for alias in ["neqa", "hindsight_neglect", "memo_trap"] {
        let spec = Registry::builtin().task(alias).unwrap();
        let data = load(spec, &locate(spec, &opts).unwrap()).unwrap();
        for d in data.docs {
            out.insert((alias.to_string(), d.id), (d.body.prompt().to_string(), d.body.classes().to_vec()));
        }
    }
    out
}

/// A per-token log-prob fixture (reference/logprobs.py, reference/llama_cpp_logprobs.py): whether
/// the reference put BOS first (its header line), then its rows.
pub fn logprob_fixture<R: serde::de::DeserializeOwned>(file: &str) -> (bool, Vec<R>) {
    #[derive(serde::Deserialize)]
    struct Header {
        bos: bool,
    }
    let path = fixtures().join("logprobs").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Header = serde_json::from_str(lines.next().unwrap()).unwrap();
    (header.bos, lines.map(|l| serde_json::from_str(l).unwrap()).collect())
}

/// The fixture rows a test run checks: every one with `INVSCALE_TESTS_FULL=1`, else every
/// `step`-th (every fourth: 25 of the 100 documents, 12 NeQA, 11 memo-trap and 2 of
/// hindsight-neglect's ~700-token prompts, past Gemma 3's sliding window; every second: 50),
/// which keeps the CI run of the suite within its time on 2 cores. The fixture must hold all 100.
pub fn checked_rows<R>(name: &str, rows: Vec<R>, step: usize) -> Vec<R> {
    assert!(rows.len() >= 100, "{name}: only {} documents in the fixture", rows.len());
    if std::env::var_os("INVSCALE_TESTS_FULL").is_some_and(|v| v == "1") {
        return rows;
    }
    eprintln!("{name}: checking one in {step} of the fixture's {} documents (INVSCALE_TESTS_FULL=1 checks them all)", rows.len());
    rows.into_iter().step_by(step).collect()
}

/// The ids the fixtures score: BOS when the reference put it first, then prompt + first class;
/// the count must be the reference's (`n`), else the comparison would be off by a position.
pub fn first_class_ids(model: &invscale_models::Model, bos: bool, prompt: &str, class: &str, n: usize, at: &str) -> Vec<u32> {
    let mut ids = if bos { vec![model.tokenizer.bos_id.unwrap()] } else { vec![] };
    ids.extend(model.tokenizer.encode(&format!("{prompt}{class}")).unwrap());
    assert_eq!(ids.len(), n, "{at}: token count");
    ids
}

/// |Δ log-prob| per token against a reference: the worst (and where) and the mean.
#[derive(Default)]
pub struct TokenDiffs {
    pub worst: f32,
    pub worst_at: String,
    pub count: usize,
    sum: f64,
}

impl TokenDiffs {
    /// `got[i]` against `want[i]`, position i + 1 of document `at`.
    pub fn add(&mut self, at: &str, got: &[invscale_models::TokenScore], want: &[f32]) {
        for (i, (s, want)) in got.iter().zip(want).enumerate() {
            let d = (s.logprob - want).abs();
            self.sum += f64::from(d);
            self.count += 1;
            if d > self.worst {
                self.worst = d;
                self.worst_at = format!("{at} position {}", i + 1);
            }
        }
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}
