//! A model's layers split over devices (`--device cpu+cpu`, `cuda:0+cuda:1`; issue 21): every
//! architecture, from its checkpoint and from its GGUF, split into stages on the CPU gives the
//! numbers of the whole model on one device, bit for bit, however it is asked — one sequence,
//! a prefix tree of continuations in one pass, a prefill continued from its KV cache. Reference:
//! the same model loaded on one device (itself within 1e-4 of transformers: `tiny_models`).
//! On a GPU the same check runs as two stages on one device (bench/gpu/check_architectures.py,
//! `--device cuda:0+cuda:0`), where the activations are copied between the stages' handles.

use std::path::{Path, PathBuf};

use candle_core::Device;
use invscale_models::{Model, ModelSource, Precision, TokenScore};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The token ids of the fixture's first few prompts for `model`.
fn prompts(model: &str) -> Vec<Vec<u32>> {
    let text = std::fs::read_to_string(fixtures().join("tiny/logprobs.jsonl")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["model"] == model)
        .take(3)
        .map(|r| r["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect())
        .collect()
}

/// Everything a model is asked, as numbers: whole sequences, a forest of continuations, a
/// prefill continued.
fn answers(model: &Model, prompts: &[Vec<u32>]) -> Vec<Vec<TokenScore>> {
    let mut out = Vec::new();
    for ids in prompts {
        out.push(model.score(ids, 1).unwrap());
        let cut = ids.len() / 2;
        let (context, rest) = ids.split_at(cut);
        let other: Vec<u32> = rest.iter().rev().copied().collect();
        out.extend(model.score_branches(context, &[rest, &other]).unwrap());
        let prefix = model.prefill(context).unwrap();
        out.push(model.score_after(&prefix, rest).unwrap());
    }
    out
}

fn check(name: &str, source: ModelSource) {
    let prompts = prompts(name);
    assert!(!prompts.is_empty(), "{name}: no prompts in the fixture");
    let whole = Model::load(&source, Precision::F32).unwrap_or_else(|e| panic!("{name}: {e}"));
    let layers = whole_layers(&source);
    let want = answers(&whole, &prompts);
    for stages in 2..=layers.min(3) {
        let split = Model::load_split(&source, Precision::F32, &vec![Device::Cpu; stages]).unwrap_or_else(|e| panic!("{name} in {stages} stages: {e}"));
        let sizes = split.stage_sizes();
        assert_eq!(sizes.len(), stages, "{name}: {stages} stages asked, {sizes:?} made");
        assert!(sizes.iter().all(|&s| s > 0) && sizes.iter().sum::<usize>() == layers, "{name}: stages {sizes:?} of {layers} layers");
        let got = answers(&split, &prompts);
        assert_eq!(got, want, "{name} in {stages} stages ({sizes:?}): not the numbers of one device");
    }
}

/// Layers of the model, from its config or GGUF header.
/// (A tiny GGUF is its namesake checkpoint converted.)
fn whole_layers(source: &ModelSource) -> usize {
    let dir = match source {
        ModelSource::Checkpoint(dir) => dir.clone(),
        ModelSource::Gguf(path) => fixtures().join("tiny").join(path.file_stem().unwrap()),
    };
    let c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let c = c.get("text_config").unwrap_or(&c);
    c.get("num_hidden_layers").or(c.get("n_layer")).and_then(|v| v.as_u64()).unwrap() as usize
}

#[test]
fn checkpoints_split_over_stages_give_one_devices_numbers() {
    let dir = fixtures().join("tiny");
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 25, "every tiny architecture: {names:?}");
    for name in &names {
        check(name, ModelSource::Checkpoint(dir.join(name)));
    }
}

#[test]
fn gguf_models_split_over_stages_give_one_devices_numbers() {
    for name in ["llama", "llama3-rope", "phi3", "phi3-longrope", "phi3-llamacpp", "gemma2-llamacpp", "qwen2", "qwen3", "olmo2", "mixtral", "qwen3-moe-sparse", "gpt2", "gpt-neox"] {
        check(name, ModelSource::Gguf(fixtures().join(format!("tiny-gguf/{name}.gguf"))));
    }
}

/// More stages than layers is refused, saying so.
#[test]
fn more_stages_than_layers_is_refused() {
    let source = ModelSource::Checkpoint(fixtures().join("tiny/llama"));
    let e = Model::load_split(&source, Precision::F32, &[Device::Cpu, Device::Cpu, Device::Cpu]).err().expect("3 stages of 2 layers");
    assert!(e.to_string().contains("2 layers cannot be split into 3 stages"), "{e}");
}
