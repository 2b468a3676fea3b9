//! Several continuations scored in one forward pass, and several documents in one pass, (`Model::score_branches`, the token tree
//! the scoring engine uses) give the log-probs of scoring each `context + continuation` on its own:
//! each continuation sees the context and itself, never another continuation, with the right
//! positions, also past Gemma 3's 512-token sliding window (hindsight-neglect prompts are ~700
//! tokens).
//!
//! Tolerance: |Δ log-prob| ≤ 1e-4 per token (the same arithmetic in other matrix shapes).

mod common;

use common::{documents, model_path};
use invscale_models::{Model, Precision};

fn check(file: &str) {
    let docs = documents();
    let model = Model::load_gguf(&model_path(file), Precision::F32).unwrap();
    let bos: Vec<u32> = model.bos_token(invscale_models::BosPolicy::Auto).into_iter().collect();
    let mut worst = 0f32;
    let mut trees: Vec<(Vec<u32>, Vec<Vec<u32>>, Vec<Vec<invscale_models::TokenScore>>)> = Vec::new();
    let selection = [("hindsight_neglect", 0), ("hindsight_neglect", 157), ("neqa", 3), ("neqa", 150), ("memo_trap", 10)];
    for (task, id) in selection {
        let (prompt, classes) = &docs[&(task.to_string(), id)];
        let context: Vec<u32> = bos.iter().copied().chain(model.tokenizer.encode(prompt).unwrap()).collect();
        // The classes, a longer continuation, and a single token: branches of different lengths.
        let mut continuations: Vec<Vec<u32>> = classes.iter().map(|c| model.tokenizer.encode(c).unwrap()).collect();
        continuations.push(model.tokenizer.encode(" and then something else entirely.").unwrap());
        continuations.push(continuations[0][..1].to_vec());
        let refs: Vec<&[u32]> = continuations.iter().map(Vec::as_slice).collect();
        let together = model.score_branches(&context, &refs).unwrap();
        assert_eq!(together.len(), continuations.len());
        for (cont, got) in continuations.iter().zip(&together) {
            let whole: Vec<u32> = context.iter().chain(cont).copied().collect();
            let alone = model.score(&whole, context.len()).unwrap();
            assert_eq!(got.len(), alone.len());
            for (i, (g, a)) in got.iter().zip(&alone).enumerate() {
                assert_eq!(g.token, a.token);
                let d = (g.logprob - a.logprob).abs();
                worst = worst.max(d);
                assert!(d <= 1e-4, "{file} {task} doc {id}, continuation token {i}: {} together vs {} alone", g.logprob, a.logprob);
                assert_eq!(g.greedy, a.greedy, "{file} {task} doc {id}, token {i}: greedy");
            }
        }
        trees.push((context, continuations, together));
    }
    // All documents in one pass (a forest): no document sees another.
    let forest: Vec<(&[u32], Vec<&[u32]>)> =
        trees.iter().map(|(c, conts, _)| (c.as_slice(), conts.iter().map(Vec::as_slice).collect())).collect();
    let all = model.score_forest(&forest).unwrap();
    for ((_, _, alone), together) in trees.iter().zip(&all) {
        for (a, g) in alone.iter().flatten().zip(together.iter().flatten()) {
            assert_eq!(a.token, g.token);
            let d = (g.logprob - a.logprob).abs();
            worst = worst.max(d);
            assert!(d <= 1e-4, "{file}: forest {} vs tree {}", g.logprob, a.logprob);
        }
    }
    eprintln!("{file}: max |Δ| {worst:.1e}");
}

#[test]
fn branches_match_separate_runs_smollm2() {
    check("SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn branches_match_separate_runs_gemma3_past_the_sliding_window() {
    check("gemma-3-270m.Q4_K_M.gguf");
}
