//! Several continuations scored in one forward pass, and several documents in one pass sharing
//! their common prefixes (`Model::score_branches`, `Model::score_forest`: the token trees the
//! scoring engine uses) give the log-probs of scoring each `context + continuation` on its own:
//! each continuation sees the context and itself, never another continuation, with the right
//! positions, also past Gemma 3's 512-token sliding window (hindsight-neglect prompts are ~700
//! tokens).
//!
//! Tolerance: |Δ log-prob| ≤ 1e-4 per token (the same arithmetic in other matrix shapes).

use crate::common::documents;
use invscale_models::Precision;
use invscale_models::testing::shared;

fn check(file: &str) {
    let docs = documents();
    let model = shared(file, Precision::F32);
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
    // All documents in one pass: no document sees another, though documents whose prompts begin
    // alike (the NeQA header, hindsight-neglect's "Question:") run their common tokens once.
    // Added to them: a context that is a prefix of another document's context, and a context
    // twice, each with its own continuation.
    let neqa = &trees[2].0;
    let cut = neqa.len() - 6;
    let extra: Vec<(Vec<u32>, Vec<Vec<u32>>)> = vec![
        (neqa[..cut].to_vec(), vec![neqa[cut..].to_vec(), trees[2].1[0].clone()]),
        (trees[4].0.clone(), vec![trees[4].1[1].clone()]),
    ];
    let mut forest: Vec<(&[u32], Vec<&[u32]>)> =
        trees.iter().map(|(c, conts, _)| (c.as_slice(), conts.iter().map(Vec::as_slice).collect())).collect();
    forest.extend(extra.iter().map(|(c, conts)| (c.as_slice(), conts.iter().map(Vec::as_slice).collect())));
    let mut alone: Vec<Vec<Vec<invscale_models::TokenScore>>> = trees.iter().map(|(_, _, s)| s.clone()).collect();
    for (context, conts) in &extra {
        let scores = conts.iter().map(|c| {
            let whole: Vec<u32> = context.iter().chain(c).copied().collect();
            model.score(&whole, context.len()).unwrap()
        });
        alone.push(scores.collect());
    }
    let all = model.score_forest(&forest).unwrap();
    assert_eq!(all.len(), alone.len());
    for (i, (alone, together)) in alone.iter().zip(&all).enumerate() {
        assert_eq!(alone.iter().map(Vec::len).collect::<Vec<_>>(), together.iter().map(Vec::len).collect::<Vec<_>>());
        for (a, g) in alone.iter().flatten().zip(together.iter().flatten()) {
            assert_eq!(a.token, g.token);
            let d = (g.logprob - a.logprob).abs();
            worst = worst.max(d);
            assert!(d <= 1e-4, "{file}: context {i} in the shared pass {} vs alone {}", g.logprob, a.logprob);
            assert_eq!(g.greedy, a.greedy, "{file}: context {i}: greedy");
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
