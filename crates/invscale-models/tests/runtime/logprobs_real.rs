//! The exact path (GGUF dequantized to f32) against transformers loading the same file with
//! `gguf_file=` (float32): per-token log-probs on 100 real documents per model (45 NeQA,
//! 45 memo-trap, 10 hindsight-neglect, whose ~700-token prompts pass Gemma 3's sliding window);
//! a plain run checks every fourth of them, `INVSCALE_TESTS_FULL=1` all (`common::checked_rows`).
//! Fixtures from reference/logprobs.py, never from invscale.
//!
//! Tolerance: max |Δ log-prob| ≤ 1e-3 per token (issue 3), and the mean far below it.

use crate::common::{MODELS, TokenDiffs, checked_rows, documents, first_class_ids, logprob_fixture};
use invscale_models::Precision;
use invscale_models::testing::shared;

#[derive(serde::Deserialize)]
struct Row {
    task: String,
    doc: usize,
    n: usize,
    logprobs: Vec<f32>,
}

const MAX_ABS: f32 = 1e-3;

fn check_model(name: &str, file: &str) -> String {
    let docs = documents();
    let (bos, rows): (bool, Vec<Row>) = logprob_fixture(&format!("transformers-f32-{name}.jsonl"));
    // A per-token maximum: a quarter of the documents (2.3k tokens) shows a wrong kernel as well.
    let rows = checked_rows(name, rows, 4);
    let model = shared(file, Precision::F32);
    assert_eq!(model.tokenizer.add_bos, bos, "{name}: BOS default differs from transformers'");
    let mut diffs = TokenDiffs::default();
    for row in &rows {
        let at = format!("{}/{}", row.task, row.doc);
        let (prompt, classes) = &docs[&(row.task.clone(), row.doc)];
        let ids = first_class_ids(&model, bos, prompt, &classes[0], row.n, &format!("{name} {at}"));
        diffs.add(&at, &model.score(&ids, 1).unwrap(), &row.logprobs);
    }
    let docs_checked = rows.len();
    let (worst, worst_at, count, mean) = (diffs.worst, &diffs.worst_at, diffs.count, diffs.mean());
    let summary = format!("{name}: {docs_checked} docs, {count} tokens, max |Δ| {worst:.2e} at {worst_at}, mean |Δ| {mean:.2e}");
    assert!(worst <= MAX_ABS, "{summary}");
    summary
}

#[test]
fn smollm2_f32_matches_transformers() {
    println!("{}", check_model(MODELS[0].0, MODELS[0].1));
}

#[test]
fn gemma3_f32_matches_transformers() {
    println!("{}", check_model(MODELS[1].0, MODELS[1].1));
}

#[test]
fn qwen2_f32_matches_transformers() {
    println!("{}", check_model(MODELS[2].0, MODELS[2].1));
}

#[test]
fn continuing_a_cached_prefix_scores_like_one_pass() {
    // The KV cache path (prefill the context once, score each continuation) must give the
    // numbers of a single pass over context + continuation.
    let docs = documents();
    for (_, file) in MODELS {
        let model = shared(file, Precision::F32);
        let (prompt, classes) = &docs[&("neqa".to_string(), 3)];
        let context = model.tokenizer.encode(prompt).unwrap();
        let prefix = model.prefill(&context).unwrap();
        for class in classes {
            let whole = model.tokenizer.encode(&format!("{prompt}{class}")).unwrap();
            let continuation = &whole[context.len()..];
            let cached = model.score_after(&prefix, continuation).unwrap();
            let single = model.score(&whole, context.len()).unwrap();
            assert_eq!(cached.len(), single.len());
            for (a, b) in cached.iter().zip(&single) {
                assert_eq!(a.token, b.token);
                assert!((a.logprob - b.logprob).abs() <= 1e-4, "{file}: {a:?} vs {b:?}");
                assert_eq!(a.greedy, b.greedy);
            }
        }
    }
}
