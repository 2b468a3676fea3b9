//! Per-sample parity with lm-evaluation-harness on the real models and the real data.
//!
//! The fixtures (`tests/fixtures/lm-eval/<model>.json`) were written by lm-eval 0.4.13 itself
//! (`reference/lm_eval_reference.py`: `hf` backend, `gguf_file=`, dtype float32, lm-eval's own
//! `inverse_scaling` task configuration); they hold hashes, log-likelihoods and metrics, no text.
//!
//! Tolerances: |Δ log-likelihood| ≤ 1e-3 per request; acc and acc_norm identical per document;
//! on whole tasks, mean and stderr identical to the 4th decimal. The opposite BOS policy is shown
//! to differ (that is how a wrong setup shows up).
//!
//! CI checks every NeQA and memo-trap document and the first documents of hindsight-neglect
//! (~700-token prompts); `INVSCALE_PARITY_FULL=1` checks all 315 of them too (the documented
//! reference check, `reference/lm_eval_check.sh`).

use std::path::Path;

use invscale_eval::{RunSettings, ScoreCache, run_task};
use invscale_models::testing::shared;
use invscale_models::{BosPolicy, Model, Precision};
use invscale_tasks::spec::Metric;
use invscale_tasks::{DataOptions, Registry, TaskSpec, load, locate};
use serde_json::Value;
use sha2::{Digest, Sha256};

const TOLERANCE: f64 = 1e-3;

fn model(file: &str) -> &'static Model {
    shared(file, Precision::F32)
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm-eval").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (made by reference/lm_eval_reference.py)", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn data_options() -> DataOptions {
    // Every source's folder (inverse_scaling/, truthfulqa/, model_written_evals/): its subfolders are searched.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    assert!(shared.is_dir(), "needs the project's shared/ folder beside the checkout ({})", shared.display());
    DataOptions {
        data_dirs: vec![shared],
        // Offline, with an empty cache: the data comes from ../shared only.
        hub: invscale_hub::HubConfig::new(std::env::temp_dir().join("invscale-empty-hub"), "http://127.0.0.1:9", true),
    }
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn full() -> bool {
    std::env::var_os("INVSCALE_PARITY_FULL").is_some_and(|v| v == "1")
}

/// The name lm-eval logs a metric under: mc2 is its `truthfulqa_mc2`'s `acc`.
fn lm_eval_metric(m: Metric) -> &'static str {
    if m == Metric::Mc2 { "acc" } else { m.as_str() }
}

/// Runs the first `limit` documents (all when `None`) of each task and compares with lm-eval's samples.
fn check(model_file: &str, fixture_name: &str, selection: &[(&str, Option<usize>)]) {
    let specs: Vec<Selection> = selection.iter().map(|&(t, n)| (Registry::builtin().task(t).unwrap().clone(), n, &[][..])).collect();
    check_specs(model_file, fixture_name, &specs);
}

/// A task, how many of its first documents, and which others by id.
type Selection<'a> = (TaskSpec, Option<usize>, &'a [usize]);

fn check_specs(model_file: &str, fixture_name: &str, selection: &[Selection]) {
    let fx = fixture(fixture_name);
    assert_eq!(fx["bos"], "auto", "the fixture was made with the tokenizer's default BOS");
    let model = model(model_file);
    let opts = data_options();
    let mut report = Vec::new();
    for (spec, limit, extra) in selection {
        let (spec, task) = (spec, spec.name.as_str());
        let data = load(spec, &locate(spec, &opts).unwrap()).unwrap();
        let want = &fx["tasks"][&spec.name];
        let want_docs = want["docs"].as_array().unwrap();
        assert_eq!(want_docs.len(), data.docs.len(), "{task}: the fixture covers every document");
        let first = if full() { data.docs.len() } else { limit.unwrap_or(data.docs.len()).min(data.docs.len()) };
        let docs: Vec<_> = data.docs.iter().filter(|d| d.id < first || extra.contains(&d.id)).cloned().collect();
        let n = docs.len();
        let mut cache = ScoreCache::disabled();
        let result = run_task(model, &mut cache, spec, &docs, &RunSettings::default(), &mut |_| {}).unwrap();
        let mut max_delta = 0f64;
        for (doc, got) in docs.iter().zip(&result.docs) {
            let w = &want_docs[doc.id];
            assert_eq!(w["doc_id"], doc.id);
            assert_eq!(w["prompt_hash"], sha256_hex(&got.requests[0].context), "{task} doc {}: a different context", doc.id);
            assert_eq!(w["target_hash"], sha256_hex(&doc.body.answer().unwrap().to_string()));
            let lls: Vec<f64> = w["ll"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(lls.len(), got.requests.len());
            for (i, (r, want_ll)) in got.requests.iter().zip(&lls).enumerate() {
                let d = (r.ll - want_ll).abs();
                max_delta = max_delta.max(d);
                assert!(d <= TOLERANCE, "{task} doc {} class {i}: ll {} vs lm-eval {want_ll} (|Δ| {d:.2e})", doc.id, r.ll);
                assert_eq!(r.greedy, w["is_greedy"][i].as_bool().unwrap(), "{task} doc {} class {i}: is_greedy", doc.id);
            }
            for (metric, mine) in &got.metrics {
                let theirs = w[lm_eval_metric(*metric)].as_f64().unwrap_or_else(|| panic!("{task}: lm-eval logged no {metric:?}"));
                if *metric == Metric::Mc2 {
                    // A probability computed from the log-likelihoods: as close as they are.
                    assert!((mine - theirs).abs() <= TOLERANCE, "{task} doc {}: mc2 {mine} vs lm-eval {theirs}", doc.id);
                } else {
                    assert_eq!(*mine, theirs, "{task} doc {}: {}", doc.id, metric.as_str());
                }
            }
            assert_eq!(got.metrics.len(), spec.metrics().len());
        }
        if n == data.docs.len() {
            let metrics = &want["metrics"];
            for (m, agg) in &result.metrics {
                let name = lm_eval_metric(*m);
                let value = metrics[format!("{name},none")].as_f64().unwrap();
                let stderr = metrics[format!("{name}_stderr,none")].as_f64().unwrap();
                assert_eq!(format!("{:.4}", agg.value), format!("{value:.4}"), "{task} {name}");
                assert_eq!(format!("{:.4}", agg.stderr.unwrap()), format!("{stderr:.4}"), "{task} {name} stderr");
            }
        }
        report.push(format!("{task}: {n} documents, max |Δ ll| {max_delta:.1e}"));
    }
    eprintln!("{fixture_name}: {}", report.join("; "));
}

/// The opposite BOS policy gives different numbers: what a run with the wrong setup looks like.
fn opposite_bos_differs(model_file: &str, fixture_name: &str, opposite: BosPolicy) {
    let fx = fixture(fixture_name);
    let model = model(model_file);
    let spec = Registry::builtin().task("neqa").unwrap().clone();
    let data = load(&spec, &locate(&spec, &data_options()).unwrap()).unwrap();
    let settings = RunSettings { bos: opposite, ..RunSettings::default() };
    let docs = &data.docs[..20];
    let result = run_task(model, &mut ScoreCache::disabled(), &spec, docs, &settings, &mut |_| {}).unwrap();
    let want = fx["tasks"][&spec.name]["docs"].as_array().unwrap();
    let mut differing = 0;
    let mut total = 0;
    for (doc, got) in docs.iter().zip(&result.docs) {
        for (r, w) in got.requests.iter().zip(want[doc.id]["ll"].as_array().unwrap()) {
            total += 1;
            differing += usize::from((r.ll - w.as_f64().unwrap()).abs() > 0.05);
        }
    }
    assert!(differing * 10 >= total * 9, "with the opposite BOS policy only {differing} of {total} log-likelihoods differ by > 0.05");
}

#[test]
fn smollm2_matches_lm_eval_per_sample() {
    check("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m", &[("neqa", None), ("memo_trap", None), ("hindsight_neglect", Some(40))]);
    // lm-eval used no BOS here (the tokenizer's default); with BOS the numbers move.
    opposite_bos_differs("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m", BosPolicy::Always);
}

#[test]
fn gemma3_matches_lm_eval_per_sample() {
    check("gemma-3-270m.Q4_K_M.gguf", "gemma3-270m", &[("neqa", None), ("memo_trap", None), ("hindsight_neglect", Some(10))]);
    // lm-eval put BOS first here (the tokenizer's default); without it the numbers move.
    opposite_bos_differs("gemma-3-270m.Q4_K_M.gguf", "gemma3-270m", BosPolicy::Never);
}

/// The literature's tasks (reference/lm_eval_reference.py --set literature: lm-eval's own
/// truthfulqa and advanced_ai_risk YAMLs, and its inverse_scaling configuration over the prize's
/// redefine file). CI checks the first documents of each; INVSCALE_PARITY_FULL=1 every one, with
/// the means and stderrs. lm-eval's own truthfulqa_mc2.yaml, read by invscale, is checked too.
#[test]
fn smollm2_matches_lm_eval_on_the_literature_tasks() {
    let task = |name: &str| Registry::builtin().task(name).unwrap().clone();
    let yaml = Path::new(env!("CARGO_MANIFEST_DIR")).join("../invscale-tasks/tests/fixtures/lm-eval-yaml/truthfulqa/truthfulqa_mc2.yaml");
    let mc2_from_yaml = invscale_tasks::registry::tasks_from_path(&yaml).unwrap().remove(0);
    check_specs(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "smollm2-135m-literature",
        &[
            (task("truthfulqa_mc1"), Some(60), &[]),
            // Rows 25 and 208: the true answers do not all come first (lm-eval's version 3.0 fix).
            (task("truthfulqa_mc2"), Some(60), &[208]),
            (mc2_from_yaml, Some(20), &[25]),
            (task("inverse_scaling_redefine"), Some(200), &[]),
            (task("advanced_ai_risk_human-power-seeking-inclination"), Some(100), &[]),
        ],
    );
}
