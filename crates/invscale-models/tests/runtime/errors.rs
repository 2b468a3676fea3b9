//! Bad model inputs give clear errors, never panics: a file that is not GGUF, a corrupt header,
//! a truncated download, an unknown architecture, a tokenizer that does not fit the model,
//! missing files; and model references resolve from folders and from the hub cache.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use invscale_hub::testing::{FakeFile, FakeHub};
use invscale_hub::{Hub, HubConfig, Repo};
use invscale_models::load::describe;
use invscale_models::{Model, ModelError, ModelSource, Needed, Precision, resolve, resolve_for};

fn load_err(path: &Path) -> String {
    match Model::load_gguf(path, Precision::F32) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

/// A small GGUF: `arch`, a byte-level tokenizer of `vocab` tokens, an embedding of `rows` rows.
fn tiny_gguf(path: &Path, arch: &str, vocab: usize, rows: usize) {
    let names = ["a".to_string(), "b".to_string(), "ab".to_string()];
    let tokens: Vec<Value> =
        names.into_iter().chain((3..vocab).map(|i| format!("t{i}"))).take(vocab).map(Value::String).collect();
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String(arch.into())),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.merges", Value::Array(vec![Value::String("a b".into())])),
    ];
    let embed = QTensor::quantize(&Tensor::zeros((rows, 32), candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut f, &meta, &[("token_embd.weight", &embed)]).unwrap();
}

#[test]
fn not_gguf_and_corrupt_headers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.gguf");
    std::fs::write(&p, "this is a text file").unwrap();
    assert!(load_err(&p).contains("not a GGUF file"), "{}", load_err(&p));
    std::fs::write(&p, b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff garbage").unwrap();
    let e = load_err(&p);
    assert!(e.contains("model.gguf") && e.contains("unreadable GGUF header"), "{e}");
}

/// Found by fuzzing (scripts/fuzz.sh gguf): a tensor whose shape's element count overflows
/// (2^33 × 2^33) made the bounds check's arithmetic overflow (a panic in a debug build; a
/// wrapped count that passed the check in a release one).
#[test]
fn a_shape_too_large_for_any_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge-shape.gguf");
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes()); // version
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(0u64.to_le_bytes()); // metadata entries
    b.extend(1u64.to_le_bytes());
    b.push(b'w'); // name "w"
    b.extend(2u32.to_le_bytes()); // dimensions
    b.extend((1u64 << 33).to_le_bytes());
    b.extend((1u64 << 33).to_le_bytes());
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes()); // offset
    b.resize(b.len().next_multiple_of(32) + 64, 0);
    std::fs::write(&p, &b).unwrap();
    let e = load_err(&p);
    assert!(e.contains("huge-shape.gguf") && e.contains("tensor `w`: its shape [8589934592, 8589934592] or offset is too large for any file"), "{e}");
}

#[test]
fn truncated_download_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(crate::common::model_path(crate::common::MODELS[0].1)).unwrap();
    let p = dir.path().join("SmolLM2-truncated.gguf");
    std::fs::write(&p, &full[..full.len() / 3]).unwrap();
    let e = load_err(&p);
    assert!(e.contains("truncated: tensor `") && e.contains("an incomplete download"), "{e}");
}

#[test]
fn unknown_architecture_and_misfit_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rwkv.gguf");
    tiny_gguf(&p, "rwkv7", 4, 4);
    let e = load_err(&p);
    assert!(e.contains("GGUF architecture `rwkv7` is not supported (supported: llama (and Mixtral), qwen2, qwen3, qwen3moe, olmo2, gemma2, gemma3, phi3, gpt2, gptneox)"), "{e}");

    let p = dir.path().join("broken-tokenizer.gguf");
    let tokens = vec![Value::String("a".into())];
    let meta = [("general.architecture", Value::String("llama".into())), ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)), ("tokenizer.ggml.merges", Value::Array(vec![Value::String("a z".into())]))];
    let embed = QTensor::quantize(&Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap();
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut std::fs::File::create(&p).unwrap(), &meta, &[("token_embd.weight", &embed)]).unwrap();
    let e = load_err(&p);
    // The file, the field and its entry, and what is wrong with it.
    assert!(e.contains("broken-tokenizer.gguf: tokenizer.ggml.merges[0]: merge `a z`: `z` is not in the vocabulary"), "{e}");

    let p = dir.path().join("misfit.gguf");
    tiny_gguf(&p, "llama", 10, 5);
    let e = load_err(&p);
    assert!(e.contains("the tokenizer has 10 tokens but the model's embedding has 5 rows"), "{e}");
}

#[test]
fn missing_files_and_folders() {
    let hub = Hub::new(HubConfig::new(std::env::temp_dir().join("invscale-empty-hub"), "http://127.0.0.1:9", true));
    let e = resolve("/no/such/model.gguf", None, &hub).unwrap_err().to_string();
    assert!(e.contains("/no/such/model.gguf") && e.contains("no such file"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = resolve(dir.path().to_str().unwrap(), None, &hub).unwrap_err().to_string();
    assert!(e.contains("neither a config.json") && e.contains("nor a .gguf"), "{e}");
    // A checkpoint folder is recognised; a config without a model type is named as such.
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let source = resolve(dir.path().to_str().unwrap(), None, &hub).unwrap();
    assert_eq!(source, ModelSource::Checkpoint(dir.path().to_path_buf()));
    let e = Model::load(&source, Precision::F32).err().unwrap().to_string();
    assert!(e.contains("config.json: no `model_type`"), "{e}");
    // Offline, a hub id that is not cached says where it looked.
    let e = resolve("org/absent", None, &hub).unwrap_err();
    assert!(matches!(e, ModelError::Hub(_)));
    assert!(e.to_string().contains("models--org--absent"), "{e}");
}

#[test]
fn hub_ids_resolve_through_the_hub_cache() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    tiny_gguf(&gguf, "llama", 4, 4);
    let bytes = std::fs::read(&gguf).unwrap();
    let commit = "3333333333333333333333333333333333333333";
    let file = |repo: &str, path: &str| FakeFile {
        repo: Repo::model(repo),
        commit: commit.into(),
        path: path.into(),
        content: bytes.clone(),
        lfs: true,
    };
    let server = FakeHub::start(vec![
        file("org/one", "tiny.Q8_0.gguf"),
        file("org/two", "a.Q4_K_M.gguf"),
        file("org/two", "b.Q8_0.gguf"),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(HubConfig::new(cache.path(), &server.endpoint, false));
    let source = resolve("org/one", None, &hub).unwrap();
    let want = cache.path().join("models--org--one/snapshots").join(commit).join("tiny.Q8_0.gguf");
    assert_eq!(source, ModelSource::Gguf(want));
    assert_eq!(std::fs::read(source.path()).unwrap(), bytes);

    let e = resolve("org/two", None, &hub).unwrap_err().to_string();
    assert!(e.contains("several .gguf files; pick one with --gguf-file: a.Q4_K_M.gguf, b.Q8_0.gguf"), "{e}");
    let picked = resolve("org/two", Some("b.Q8_0.gguf"), &hub).unwrap();
    assert!(picked.path().ends_with("b.Q8_0.gguf"));

    // Offline afterwards: served from the cache.
    let offline = Hub::new(HubConfig::new(cache.path(), "http://127.0.0.1:9", true));
    assert_eq!(resolve("org/one", None, &offline).unwrap(), source);
}

fn tiny_checkpoint(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny").join(name)
}

/// A copy of a tiny checkpoint, for breaking it.
fn copy_checkpoint(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(tiny_checkpoint(name)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

fn checkpoint_err(dir: &Path) -> String {
    match Model::load(&ModelSource::Checkpoint(dir.to_path_buf()), Precision::F32) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_checkpoints_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let case = |label: &str, edit: &dyn Fn(&Path)| -> String {
        let dir = tmp.path().join(label);
        copy_checkpoint("gpt2", &dir);
        edit(&dir);
        checkpoint_err(&dir)
    };
    let e = case("arch", &|d| {
        let c = std::fs::read_to_string(d.join("config.json")).unwrap().replace("\"model_type\": \"gpt2\"", "\"model_type\": \"mamba\"");
        std::fs::write(d.join("config.json"), c).unwrap();
    });
    assert!(e.contains("model_type `mamba` is not supported (supported: gpt2, opt, gpt_neox"), "{e}");
    let e = case("no-tokenizer", &|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    assert!(e.contains("no tokenizer.json"), "{e}");
    let e = case("no-weights", &|d| std::fs::remove_file(d.join("model.safetensors")).unwrap());
    assert!(e.contains("no weights: neither model.safetensors nor model.safetensors.index.json"), "{e}");
    let e = case("truncated", &|d| {
        let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(e.contains("model.safetensors: not a readable safetensors file"), "{e}");
    let e = case("bad-json", &|d| std::fs::write(d.join("config.json"), "{\"model_type\": ").unwrap());
    assert!(e.contains("config.json: not valid JSON"), "{e}");
    // Found by fuzzing (scripts/fuzz.sh tokenizer_json): a syntax error inside the `decoder`
    // section made tokenizers 0.22 panic (an unwrap in decoders/mod.rs) instead of erring.
    let e = case("bad-decoder", &|d| {
        let text = std::fs::read_to_string(d.join("tokenizer.json")).unwrap().replacen("\"decoder\": {", "\"decoder\": {,", 1);
        std::fs::write(d.join("tokenizer.json"), text).unwrap();
    });
    assert!(e.contains("tokenizer.json: not valid JSON: key must be a string at line"), "{e}");
    // Found by fuzzing too: a single-sequence template naming sequence B made tokenizers index a
    // second encoding while encoding.
    let e = case("template-b", &|d| {
        let mut t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("tokenizer.json")).unwrap()).unwrap();
        t["post_processor"] = serde_json::json!({"type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}], "special_tokens": {}});
        std::fs::write(d.join("tokenizer.json"), t.to_string()).unwrap();
    });
    assert!(e.contains("tokenizer.json: post_processor: the single-sequence template names sequence B"), "{e}");
    // A tokenizer from another model: 100 more tokens than the embedding has rows.
    let e = case("misfit", &|d| {
        let mut t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("tokenizer.json")).unwrap()).unwrap();
        let added = t["added_tokens"].as_array_mut().unwrap();
        for i in 0..100 {
            added.push(serde_json::json!({"id": 320 + i, "content": format!("<extra_{i}>"), "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true}));
        }
        std::fs::write(d.join("tokenizer.json"), t.to_string()).unwrap();
    });
    assert!(e.contains("the tokenizer has 420 tokens but the model's embedding has 320 rows"), "{e}");
    let e = case("missing-tensor", &|d| {
        let text = std::fs::read_to_string(tiny_checkpoint("opt").join("config.json")).unwrap();
        std::fs::write(d.join("config.json"), text).unwrap();
    });
    assert!(e.contains("tensor `decoder.embed_tokens.weight` is missing from the checkpoint"), "{e}");
}

/// A tiny checkpoint's files as the fake hub serves them in `repo` at `commit` (weights as LFS).
fn hub_files(checkpoint: &str, repo: &str, commit: &str) -> Vec<FakeFile> {
    std::fs::read_dir(tiny_checkpoint(checkpoint))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            FakeFile { repo: Repo::model(repo), commit: commit.into(), lfs: name.ends_with(".safetensors"), path: name, content: std::fs::read(&p).unwrap() }
        })
        .collect()
}

#[test]
fn hub_checkpoints_resolve_through_the_hub_cache() {
    let commit = "4444444444444444444444444444444444444444";
    let server = FakeHub::start(hub_files("gpt2", "org/tiny-gpt2", commit));
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(HubConfig::new(cache.path(), &server.endpoint, false));
    let source = resolve("org/tiny-gpt2", None, &hub).unwrap();
    let want = cache.path().join("models--org--tiny-gpt2/snapshots").join(commit);
    assert_eq!(source, ModelSource::Checkpoint(want));
    let from_hub = Model::load(&source, Precision::F32).unwrap();
    let local = Model::load(&ModelSource::Checkpoint(tiny_checkpoint("gpt2")), Precision::F32).unwrap();
    let ids = local.tokenizer.encode("Question: Is the sky blue?\nAnswer: Yes").unwrap();
    assert_eq!(from_hub.score(&ids, 1).unwrap(), local.score(&ids, 1).unwrap());
    assert!(Model::load(&source, Precision::Quantized).err().unwrap().to_string().contains("--dtype quantized applies to GGUF files"));
}

/// A model scored on a server needs only its tokenizer here: a hub checkpoint's weights are not
/// fetched, and a folder holding just `tokenizer.json` (+ its config) is enough.
#[test]
fn served_models_fetch_only_their_tokenizer() {
    let commit = "5555555555555555555555555555555555555555";
    let server = FakeHub::start(hub_files("llama", "org/tiny-llama", commit));
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(HubConfig::new(cache.path(), &server.endpoint, false));
    let source = resolve_for("org/tiny-llama", None, &hub, Needed::Tokenizer).unwrap();
    let fetched: Vec<String> = server.log.lock().unwrap().iter().map(|(_, path, _)| path.clone()).collect();
    assert!(fetched.iter().any(|p| p.ends_with("/tokenizer.json")), "{fetched:?}");
    assert!(!fetched.iter().any(|p| p.contains("safetensors")), "weights fetched for a served model: {fetched:?}");
    let served = describe(&source).unwrap();
    let local = Model::load(&ModelSource::Checkpoint(tiny_checkpoint("llama")), Precision::F32).unwrap();
    let text = "Question: Is the sky blue?\nAnswer: Yes";
    assert_eq!(served.tokenizer.encode(text).unwrap(), local.tokenizer.encode(text).unwrap());
    assert_eq!((served.tokenizer.bos_id, served.tokenizer.add_bos), (local.tokenizer.bos_id, local.tokenizer.add_bos));
    assert_eq!(served.arch, "llama");
    assert_eq!(served.params.total, 0, "no weights here, none counted");
    assert!(served.context_length.is_some());
    assert_eq!(served.context_length, local.context_length);

    // A folder with the tokenizer alone: fine for a server, not a model to run here.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(tiny_checkpoint("llama").join("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let reference = dir.path().to_str().unwrap();
    let source = resolve_for(reference, None, &hub, Needed::Tokenizer).unwrap();
    let alone = describe(&source).unwrap();
    assert_eq!(alone.tokenizer.encode(text).unwrap(), local.tokenizer.encode(text).unwrap());
    assert!(alone.arch.contains("no config.json"), "{}", alone.arch);
    let e = resolve(reference, None, &hub).unwrap_err().to_string();
    assert!(e.contains("neither a config.json"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = resolve_for(empty.path().to_str().unwrap(), None, &hub, Needed::Tokenizer).unwrap_err().to_string();
    assert!(e.contains("no tokenizer here: neither a tokenizer.json nor a .gguf file"), "{e}");
}
