//! Parameter counts, the trend's x-axis, against the numbers the models' authors publish:
//! Qwen2.5-0.5B "0.49B, non-embedding 0.36B" (Qwen's model card; its GGUF stores the tied
//! embeddings twice, quantized apart, which counted 630M before), Gemma 3 270M "170M embedding
//! and 100M transformer-block parameters" (Google's release note), SmolLM2 "135M". Within 1%
//! (the cards round); and on the tiny checkpoints, the non-embedding count computed by hand
//! from their configs.

use invscale_models::load::describe;
use invscale_models::testing::{SMOLLM2, model_path};
use invscale_models::{Model, ModelSource, Precision};

fn near(got: u64, published: f64) -> bool {
    (got as f64 - published).abs() <= 0.01 * published
}

#[test]
fn real_models_count_as_published() {
    for (file, total, non_embedding) in [
        ("qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf", 0.49e9, Some(0.36e9)),
        ("gemma-3-270m.Q4_K_M.gguf", 270e6, Some(100e6)),
        (SMOLLM2, 135e6, None),
    ] {
        let p = describe(&ModelSource::Gguf(model_path(file))).unwrap().params;
        eprintln!("{file}: {} total, {} non-embedding", p.total, p.non_embedding);
        assert!(near(p.total, total), "{file}: {} parameters, published {total:e}", p.total);
        if let Some(n) = non_embedding {
            assert!(near(p.non_embedding, n), "{file}: {} non-embedding parameters, published {n:e}", p.non_embedding);
        }
    }
}

#[test]
fn tiny_checkpoints_count_embeddings_apart() {
    let tiny = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    // vocabulary 320 × hidden 32: the embedding matrix; llama's head is untied (a second one),
    // qwen2's tied (stored once), gpt2 adds 128 learned positions.
    for (name, embeddings) in [("llama", 2 * 320 * 32), ("qwen2", 320 * 32), ("gpt2", 320 * 32 + 128 * 32)] {
        let p = Model::load(&ModelSource::Checkpoint(tiny.join(name)), Precision::F32).unwrap().params;
        assert_eq!(p.total - p.non_embedding, embeddings, "{name}: {p:?}");
    }
}
