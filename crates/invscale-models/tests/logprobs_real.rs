//! The exact path (GGUF dequantized to f32) against transformers loading the same file with
//! `gguf_file=` (float32): per-token log-probs on 100 real documents per model (45 NeQA,
//! 45 memo-trap, 10 hindsight-neglect, whose ~700-token prompts pass Gemma 3's sliding window).
//! Fixtures from reference/logprobs.py, never from invscale.
//!
//! Tolerance: max |Δ log-prob| ≤ 1e-3 per token (issue 3), and the mean far below it.

mod common;

use common::{MODELS, documents, fixtures, model_path};
use invscale_models::{Model, Precision};

#[derive(serde::Deserialize)]
struct Header {
    bos: bool,
}

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
    let fixture = fixtures().join(format!("logprobs/transformers-f32-{name}.jsonl"));
    let text = std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    let mut lines = text.lines();
    let header: Header = serde_json::from_str(lines.next().unwrap()).unwrap();
    let model = Model::load_gguf(&model_path(file), Precision::F32).unwrap();
    assert_eq!(model.tokenizer.add_bos, header.bos, "{name}: BOS default differs from transformers'");
    let (mut worst, mut sum, mut count, mut docs_checked) = (0f32, 0f64, 0usize, 0usize);
    let mut worst_at = String::new();
    for line in lines {
        let row: Row = serde_json::from_str(line).unwrap();
        let (prompt, classes) = &docs[&(row.task.clone(), row.doc)];
        let mut ids = if header.bos { vec![model.tokenizer.bos_id.unwrap()] } else { vec![] };
        ids.extend(model.tokenizer.encode(&format!("{prompt}{}", classes[0])).unwrap());
        assert_eq!(ids.len(), row.n, "{name} {}/{}: token count", row.task, row.doc);
        let scores = model.score(&ids, 1).unwrap();
        for (i, (s, want)) in scores.iter().zip(&row.logprobs).enumerate() {
            let d = (s.logprob - want).abs();
            sum += f64::from(d);
            count += 1;
            if d > worst {
                worst = d;
                worst_at = format!("{}/{} position {}", row.task, row.doc, i + 1);
            }
        }
        docs_checked += 1;
    }
    assert!(docs_checked >= 100, "{name}: only {docs_checked} documents in the fixture");
    let mean = sum / count as f64;
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
        let model = Model::load_gguf(&model_path(file), Precision::F32).unwrap();
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
