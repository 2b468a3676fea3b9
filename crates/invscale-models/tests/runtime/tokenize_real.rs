//! Tokenizers built from the real GGUF files tokenize every prompt and every prompt + class of
//! the three real tasks exactly as the references do. The fixtures (fixtures/tokens/) were made
//! by reference/tokens.py with transformers (and llama.cpp where present), never by invscale.

use crate::common::{MODELS, documents, fixtures, model_path};
use invscale_models::Tokenizer;
use invscale_models::weights::gguf::GgufFile;
use sha2::{Digest, Sha256};

/// Same digest as reference/tokens.py: sha256 of the decimal ids joined by ',', 16 hex digits.
fn digest(ids: &[u32]) -> (usize, String) {
    let text = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let hex = format!("{:x}", Sha256::digest(text.as_bytes()));
    (ids.len(), hex[..16].to_string())
}

#[derive(serde::Deserialize)]
struct Row {
    task: String,
    doc: usize,
    prompt: (usize, String),
    whole: Vec<(usize, String)>,
}

#[test]
fn gguf_tokenizers_match_the_references_on_all_real_prompts() {
    let docs = documents();
    let fixtures = fixtures().join("tokens");
    let mut checked_files = 0;
    let mut report = Vec::new();
    for (name, file) in MODELS {
        let tokenizer = GgufFile::open(&model_path(file)).unwrap().tokenizer().unwrap();
        for tool in ["transformers", "llama.cpp"] {
            let fixture = fixtures.join(format!("{tool}-{name}.jsonl"));
            if tool == "transformers" {
                assert!(fixture.is_file(), "missing {}", fixture.display());
            } else if !fixture.is_file() {
                continue;
            }
            checked_files += 1;
            let text = std::fs::read_to_string(&fixture).unwrap();
            let mut strings = 0;
            let mut mismatches = Vec::new();
            for line in text.lines().skip(1) {
                let row: Row = serde_json::from_str(line).unwrap();
                let (prompt, classes) = &docs[&(row.task.clone(), row.doc)];
                let mut check = |what: String, text: &str, want: &(usize, String)| {
                    strings += 1;
                    let ids = tokenizer.encode(text).unwrap();
                    if digest(&ids) != *want {
                        mismatches.push(format!("{}/{} {what}: {} tokens vs {} ({ids:?})", row.task, row.doc, ids.len(), want.0));
                    }
                };
                check("prompt".into(), prompt, &row.prompt);
                for (i, (class, want)) in classes.iter().zip(&row.whole).enumerate() {
                    check(format!("prompt+class {i}"), &format!("{prompt}{class}"), want);
                }
            }
            assert!(strings >= 1551 * 3, "{fixture:?}: only {strings} strings");
            if !mismatches.is_empty() {
                report.push(format!(
                    "{name} vs {tool}: {} of {strings} differ; first: {}",
                    mismatches.len(),
                    mismatches.iter().take(3).cloned().collect::<Vec<_>>().join(" | ")
                ));
            }
        }
    }
    assert!(checked_files >= 3);
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn special_ids_and_bos_defaults_come_from_the_metadata() {
    let smol = GgufFile::open(&model_path(MODELS[0].1)).unwrap().tokenizer().unwrap();
    let gemma = GgufFile::open(&model_path(MODELS[1].1)).unwrap().tokenizer().unwrap();
    assert_eq!(gemma.bos_id, Some(2));
    assert!(gemma.add_bos, "Gemma's tokenizer adds <bos> by default");
    assert!(smol.bos_id.is_some());
    assert_eq!(smol.vocab_size(), 49152);
    assert_eq!(gemma.vocab_size(), 262144);
    // Control tokens stay whole.
    let im_start = smol.encode("<|im_start|>").unwrap();
    assert_eq!(im_start.len(), 1, "{im_start:?}");
}

#[derive(serde::Deserialize)]
struct EdgeRow {
    text: String,
    ids: Vec<u32>,
}

fn edge_rows(tool: &str, name: &str) -> Vec<EdgeRow> {
    let path = fixtures().join("tokens").join(format!("edge-{tool}-{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (made by reference/tokens.py {tool} --edge)", path.display()));
    text.lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Compares `tokenizer` with the edge-case fixtures of `name`: transformers' ids on every string,
/// llama.cpp's wherever llama.cpp and transformers agree (where they differ, invscale follows
/// transformers, which lm-eval tokenizes with; the differences are printed). Returns the mismatches.
fn edge_mismatches(name: &str, tokenizer: &Tokenizer) -> Vec<String> {
    let mut report = Vec::new();
    let transformers = edge_rows("transformers", name);
    let llama = edge_rows("llama.cpp", name);
    assert!(transformers.len() >= 40, "{name}: only {} edge cases", transformers.len());
    assert_eq!(transformers.len(), llama.len(), "{name}: the two fixtures list different strings");
    for (t, l) in transformers.iter().zip(&llama) {
        assert_eq!(t.text, l.text);
        let ids = tokenizer.encode(&t.text).unwrap();
        if ids != t.ids {
            report.push(format!("{name} {:?}: {ids:?}, transformers {:?}", t.text, t.ids));
        }
        if t.ids == l.ids {
            if ids != l.ids {
                report.push(format!("{name} {:?}: {ids:?}, llama.cpp {:?}", t.text, l.ids));
            }
        } else {
            eprintln!("{name} {:?}: transformers {:?} and llama.cpp {:?} differ", t.text, t.ids, l.ids);
        }
    }
    report
}

/// Hard strings (reference/tokens.py's EDGE_CASES: special tokens inside text, characters outside
/// the vocabulary, unusual whitespace, other scripts, digits) on the real GGUF models.
#[test]
fn gguf_tokenizers_match_the_references_on_edge_cases() {
    let mut report = Vec::new();
    for (name, file) in MODELS {
        let tokenizer = GgufFile::open(&model_path(file)).unwrap().tokenizer().unwrap();
        report.extend(edge_mismatches(name, &tokenizer));
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

/// A Llama-2-style SentencePiece file (reference/spm_gguf.py: 400 pieces trained on the README,
/// merges ordered by the file's scores, ties included, and a `▁` before the text): the edge
/// cases and 40 README lines, as transformers and llama.cpp tokenize them. They differ on text
/// that starts with a space (llama.cpp always adds its `▁`, transformers only when the text does
/// not start with one); invscale follows transformers.
#[test]
fn llama_style_sentencepiece_matches_the_references() {
    let path = fixtures().join("tokens/llama-spm.gguf");
    let tokenizer = GgufFile::open(&path).unwrap().tokenizer().unwrap();
    let report = edge_mismatches("llama-spm", &tokenizer);
    assert!(report.is_empty(), "{}", report.join("\n"));
}
