//! Forward-pass throughput on the real GGUF models, next to llama.cpp on the same prompts in the
//! same run: tokens/s of scoring whole prompts (one sequence at a time, every position scored).
//!
//!     cargo bench -p invscale-models --bench forward
//!
//! Prompts: 8 NeQA and 2 hindsight-neglect documents (short and ~700-token prompts). llama.cpp
//! runs through llama-cpp-python (`INVSCALE_PYTHON`, default `python3`) when it is installed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use invscale_models::{BosPolicy, Model, Precision};
use invscale_tasks::{DataOptions, Registry, load, locate};

const MODELS: &[(&str, &str)] = &[("SmolLM2-135M", "SmolLM2-135M-Instruct.Q4_1.gguf"), ("Gemma-3-270M", "gemma-3-270m.Q4_K_M.gguf")];

fn prompts() -> Vec<String> {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/inverse_scaling");
    let opts = DataOptions { data_dirs: vec![shared], hub: invscale_hub::HubConfig::from_env() };
    let mut out = Vec::new();
    for (alias, ids) in [("neqa", (0..8).collect::<Vec<_>>()), ("hindsight_neglect", vec![0, 1])] {
        let spec = Registry::builtin().task(alias).unwrap();
        let data = load(spec, &locate(spec, &opts).unwrap()).unwrap();
        out.extend(ids.into_iter().map(|i| data.docs[i].body.prompt().to_string()));
    }
    out
}

const LLAMA_CPP: &str = r#"
import json, sys, time
import llama_cpp
path, prompts = sys.argv[1], json.load(open(sys.argv[2]))
llm = llama_cpp.Llama(model_path=path, logits_all=True, n_ctx=2048, n_batch=512, verbose=False)
bos = [llm.token_bos()] if llm.metadata.get("tokenizer.ggml.add_bos_token") == "true" else []
seqs = [bos + llm.tokenize(p.encode(), add_bos=False, special=True) for p in prompts]
llm.reset(); llm.eval(seqs[0][:8])  # warm-up
t = time.perf_counter()
for s in seqs:
    llm.reset(); llm.eval(s)
print(json.dumps({"tokens": sum(map(len, seqs)), "seconds": time.perf_counter() - t}))
"#;

fn main() {
    let models_dir = std::env::var_os("INVSCALE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/invscale/models"));
    let prompts = prompts();
    let prompts_file = std::env::temp_dir().join("invscale-bench-prompts.json");
    std::fs::write(&prompts_file, serde_json::to_string(&prompts).unwrap()).unwrap();
    let python = std::env::var("INVSCALE_PYTHON").unwrap_or_else(|_| "python3".into());
    println!("invscale forward-pass benchmark ({} CPU threads; {} prompts; build: {})", std::thread::available_parallelism().map_or(0, |n| n.get()), prompts.len(), if cfg!(debug_assertions) { "debug, not meaningful" } else { "release" });
    println!("{:14} {:10} {:>8} {:>9} {:>10}", "model", "path", "tokens", "seconds", "tokens/s");
    for (name, file) in MODELS {
        let path = models_dir.join(file);
        let mut rates = Vec::new();
        for precision in [Precision::F32, Precision::Quantized] {
            let model = Model::load_gguf(&path, precision).unwrap();
            let bos: Vec<u32> = model.bos_token(BosPolicy::Auto).into_iter().collect();
            let seqs: Vec<Vec<u32>> = prompts.iter().map(|p| bos.iter().copied().chain(model.tokenizer.encode(p).unwrap()).collect()).collect();
            model.score(&seqs[0][..8], 1).unwrap(); // warm-up
            let t = Instant::now();
            for s in &seqs {
                model.score(s, 1).unwrap();
            }
            let secs = t.elapsed().as_secs_f64();
            let tokens: usize = seqs.iter().map(Vec::len).sum();
            let label = format!("{precision:?}").to_lowercase();
            println!("{name:14} {label:10} {tokens:>8} {secs:>9.2} {:>10.0}", tokens as f64 / secs);
            rates.push((label, tokens as f64 / secs));
        }
        let out = Command::new(&python).args(["-c", LLAMA_CPP, path.to_str().unwrap(), prompts_file.to_str().unwrap()]).output();
        match out {
            Ok(o) if o.status.success() => {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                let rate = v["tokens"].as_f64().unwrap() / v["seconds"].as_f64().unwrap();
                println!("{name:14} {:10} {:>8} {:>9.2} {rate:>10.0}", "llama.cpp", v["tokens"], v["seconds"].as_f64().unwrap());
                for (label, r) in &rates {
                    println!("{name:14} ratio {label} / llama.cpp: {:.2}x", r / rate);
                }
            }
            _ => println!("{name:14} llama.cpp: not measured ({python} has no llama_cpp; set INVSCALE_PYTHON)"),
        }
    }
}
