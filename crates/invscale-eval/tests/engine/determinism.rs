//! Results do not depend on how documents are batched: batch sizes 1, 7 and auto (a token
//! budget) give the same log-likelihoods (|Δ| ≤ 1e-5; a document runs as the same segments
//! whatever it is batched with — shared prefixes cut where the whole task shares them — so in
//! practice they are bit-identical) and the same predictions, on real data and a real model;
//! and batching documents together does share their common prefixes (fewer tokens computed).

use std::path::Path;

use invscale_eval::{RunSettings, ScoreCache, Scorer, TaskResult, run_task, run_task_on, run_tasks_on};
use invscale_models::testing::{SMOLLM2, model_path, shared};
use invscale_models::{Model, Precision};
use invscale_tasks::{DataOptions, Registry, load, locate};

/// The real task data in ../shared, read in place; no hub.
fn data_options() -> DataOptions {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/inverse_scaling");
    DataOptions {
        data_dirs: vec![shared],
        hub: invscale_hub::HubConfig::new(std::env::temp_dir().join("invscale-empty-hub"), "http://127.0.0.1:9", true),
    }
}

#[test]
fn batch_size_does_not_change_results() {
    let model = shared(SMOLLM2, Precision::F32);
    let opts = data_options();
    for (task, n) in [("neqa", 30), ("memo_trap", 40), ("hindsight_neglect", 3)] {
        let spec = Registry::builtin().task(task).unwrap();
        let data = load(spec, &locate(spec, &opts).unwrap()).unwrap();
        let docs = &data.docs[..n];
        let run = |batch_requests: Option<usize>| {
            let settings = RunSettings { batch_requests, ..RunSettings::default() };
            run_task(model, &mut ScoreCache::disabled(), spec, docs, &settings, &mut |_| {}).unwrap()
        };
        let auto = run(None);
        let alone = run(Some(1));
        let c = (auto.counts.tokens_computed, alone.counts.tokens_computed, auto.counts.tokens_requested);
        eprintln!("{task}: tokens computed {} batched, {} one document a pass, {} requested", c.0, c.1, c.2);
        if task != "hindsight_neglect" {
            // NeQA's prompts share a 17-token instruction, memo-trap's a template per subtask.
            assert!(c.0 * 10 < c.1 * 8, "{task}: batching shares no prefixes: {c:?}");
        }
        for other in [alone, run(Some(7))] {
            for (a, b) in auto.docs.iter().zip(&other.docs) {
                assert_eq!(a.doc_id, b.doc_id);
                for (ra, rb) in a.requests.iter().zip(&b.requests) {
                    assert!((ra.ll - rb.ll).abs() <= 1e-5, "{task} doc {}: {} vs {}", a.doc_id, ra.ll, rb.ll);
                    assert_eq!(ra.greedy, rb.greedy);
                }
                assert_eq!(a.metrics, b.metrics, "{task} doc {}", a.doc_id);
            }
        }
    }
}

/// Data parallel: two copies of the model (as on two GPUs; here both on the CPU) give exactly
/// the results and counts of one — the same batches, finished in order — with a score cache and
/// documents repeated in later batches (which one model reads from the cache, and two must too,
/// even when the repeat runs in the same turn as the batch that finishes it).
#[test]
fn two_model_copies_give_the_results_of_one() {
    // Two copies: the shared one and one of its own.
    let (one, two) = (shared(SMOLLM2, Precision::Quantized), &Model::load_gguf(&model_path(SMOLLM2), Precision::Quantized).unwrap());
    let opts = data_options();
    let spec = Registry::builtin().task("neqa").unwrap();
    let data = load(spec, &locate(spec, &opts).unwrap()).unwrap();
    // Three documents twice, then nine more. A batch of 4 requests is 2 documents, a turn 2
    // batches: the first repeat runs in the same turn as its twin (one model would read it from
    // the cache), the others in the turn after.
    let docs: Vec<_> = data.docs[..3].iter().chain(&data.docs[..12]).cloned().collect();
    let settings = RunSettings { batch_requests: Some(4), ..RunSettings::default() };
    let run = |models: &[&dyn Scorer]| {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ScoreCache::open(dir.path(), "test").unwrap();
        run_task_on(models, &mut cache, spec, &docs, &settings, &mut |_| {}).unwrap()
    };
    let single = run(&[one]);
    let parallel = run(&[one, two]);
    assert_eq!(single.counts, parallel.counts);
    assert!(single.counts.cached > 0, "the repeated documents come from the cache: {:?}", single.counts);
    for (a, b) in single.docs.iter().zip(&parallel.docs) {
        assert_eq!(a.doc_id, b.doc_id);
        for (ra, rb) in a.requests.iter().zip(&b.requests) {
            assert_eq!((ra.ll.to_bits(), ra.greedy), (rb.ll.to_bits(), rb.greedy), "doc {}", a.doc_id);
        }
    }
}

/// Tokenising a task's documents on several threads (as on a GPU) gives the results of one
/// thread, in the same order, bit for bit: the documents are split between threads in order and
/// joined again; memo-trap's many small documents and its repeated templates.
#[test]
fn tokenising_on_several_threads_changes_nothing() {
    let model = shared(SMOLLM2, Precision::Quantized);
    let opts = data_options();
    let spec = Registry::builtin().task("memo_trap").unwrap();
    let data = load(spec, &locate(spec, &opts).unwrap()).unwrap();
    let docs = &data.docs[..50];
    let run = |threads: usize| {
        let settings = RunSettings { prepare_threads: Some(threads), ..RunSettings::default() };
        run_task(model, &mut ScoreCache::disabled(), spec, docs, &settings, &mut |_| {}).unwrap()
    };
    let (one, three) = (run(1), run(3));
    assert_eq!(one.counts, three.counts);
    let ids = |r: &invscale_eval::TaskResult| r.docs.iter().map(|d| d.doc_id).collect::<Vec<_>>();
    assert_eq!(ids(&one), ids(&three));
    for (a, b) in one.docs.iter().zip(&three.docs) {
        for (ra, rb) in a.requests.iter().zip(&b.requests) {
            assert_eq!((ra.ll.to_bits(), ra.greedy), (rb.ll.to_bits(), rb.greedy), "doc {}", a.doc_id);
        }
    }
}

/// Planning tasks ahead on another thread (as GPU runs do) with the tokenising on several
/// threads, each on its own copy of an HF `tokenizers` tokenizer, gives the results of planning
/// each task on one thread just before it runs, bit for bit and in order.
#[test]
fn planning_ahead_changes_nothing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../invscale-models/tests/fixtures/tiny/gpt-neox");
    let model = Model::load_checkpoint(&dir).unwrap();
    let opts = data_options();
    let loaded: Vec<_> = ["neqa", "memo_trap", "hindsight_neglect"]
        .iter()
        .map(|t| {
            let spec = Registry::builtin().task(t).unwrap();
            (spec, load(spec, &locate(spec, &opts).unwrap()).unwrap())
        })
        .collect();
    let tasks: Vec<_> = loaded.iter().zip([40, 60, 4]).map(|((spec, data), n)| (*spec, &data.docs[..n])).collect();
    let run = |plan_ahead: bool, threads: usize| {
        let settings = RunSettings { plan_ahead: Some(plan_ahead), prepare_threads: Some(threads), ..RunSettings::default() };
        let mut results: Vec<(usize, TaskResult)> = Vec::new();
        let mut started = Vec::new();
        run_tasks_on(&[&model], &mut ScoreCache::disabled(), &tasks, &settings, &mut |i| started.push(i), &mut |_| {}, &mut |i, r| {
            results.push((i, r))
        })
        .unwrap();
        assert_eq!(started, [0, 1, 2]);
        results
    };
    let (plain, ahead) = (run(false, 1), run(true, 3));
    assert_eq!(plain.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(ahead.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
    for ((_, a), (_, b)) in plain.iter().zip(&ahead) {
        assert_eq!(a.counts, b.counts, "{}", a.task);
        for (da, db) in a.docs.iter().zip(&b.docs) {
            assert_eq!(da.doc_id, db.doc_id);
            for (ra, rb) in da.requests.iter().zip(&db.requests) {
                assert_eq!((ra.ll.to_bits(), ra.greedy), (rb.ll.to_bits(), rb.greedy), "{} doc {}", a.task, da.doc_id);
            }
        }
    }
}
