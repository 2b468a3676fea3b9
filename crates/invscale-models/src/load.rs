//! Loading a model: which architecture a GGUF file or checkpoint holds, its tokenizer checked
//! against its embedding, and the network built on the device asked for.

use std::path::Path;

use candle_core::Device;

use crate::error::{ModelError, Result};
use crate::host::release_freed_memory;
use crate::layers::stages::Stages;
use crate::model::{Model, profiling};
use crate::models::causal_lm::CausalLm;
use crate::models::{gemma3::Gemma3, gpt_neox::GptNeox, gpt2::Gpt2, llama::Llama, olmo2::Olmo2, opt::Opt};
use crate::weights::checkpoint::{HfConfig, HfWeights};
use crate::weights::gguf::GgufFile;
use crate::weights::gguf_weights::GgufWeights;
use crate::weights::params::{ParamCounts, checkpoint_counts, gguf_counts};
use crate::weights::precision::Precision;
use crate::weights::source::ModelSource;
use invscale_tokenizer::Tokenizer;

impl Model {
    /// Loads what [`resolve`](crate::weights::source::resolve) found, on the CPU.
    pub fn load(source: &ModelSource, precision: Precision) -> Result<Model> {
        Model::load_on(source, precision, &Device::Cpu)
    }

    /// Loads what [`resolve`](crate::weights::source::resolve) found, on `device`.
    pub fn load_on(source: &ModelSource, precision: Precision, device: &Device) -> Result<Model> {
        Model::load_split(source, precision, std::slice::from_ref(device))
    }

    /// Loads what [`resolve`](crate::weights::source::resolve) found with its layers split over
    /// `devices`, in order (see [`Stages`]); one device holds it all.
    pub fn load_split(source: &ModelSource, precision: Precision, devices: &[Device]) -> Result<Model> {
        #[cfg(feature = "cuda")]
        for device in devices {
            if let Device::Cuda(d) = device {
                crate::weights::cuda_upload::keep_freed_memory(d)?;
                invscale_kernels::cuda::launch::warm_kernels(d, precision.dtype(), precision == Precision::Quantized);
            }
        }
        match source {
            ModelSource::Gguf(path) => Model::load_gguf_on(path, precision, devices),
            ModelSource::Checkpoint(dir) => match precision {
                Precision::Quantized => Err(ModelError::unsupported(
                    dir,
                    "--dtype quantized applies to GGUF files; a safetensors checkpoint runs in f32, bf16 or f16",
                )),
                _ => Model::load_checkpoint_on(dir, precision, devices),
            },
        }
    }

    /// Loads a Hugging Face checkpoint folder (`config.json`, safetensors, `tokenizer.json`) on
    /// the CPU, in f32.
    pub fn load_checkpoint(dir: &Path) -> Result<Model> {
        Model::load_checkpoint_on(dir, Precision::F32, &[Device::Cpu])
    }

    fn load_checkpoint_on(dir: &Path, precision: Precision, devices: &[Device]) -> Result<Model> {
        let config = HfConfig::read(dir)?;
        let arch = config.model_type()?.to_string();
        // Gemma 3's multimodal checkpoints (4B-27B): their language model, as a text model.
        let multimodal = arch == "gemma3";
        let (config, arch) = if multimodal { (config.text_config()?, "gemma3_text".to_string()) } else { (config, arch) };
        const SUPPORTED: &str =
            "gpt2, opt, gpt_neox, llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, smollm3, phi3, olmo2, olmo3, gemma2, gemma3_text, gemma3";
        if !matches!(
            arch.as_str(),
            "gpt2" | "opt" | "gpt_neox" | "llama" | "mistral" | "mixtral" | "qwen2" | "qwen3" | "qwen3_moe" | "smollm3" | "phi3" | "olmo2" | "olmo3" | "gemma2" | "gemma3_text"
        ) {
            return Err(ModelError::unsupported(
                &config.path,
                format!("model_type `{arch}` is not supported (supported: {SUPPORTED})"),
            ));
        }
        let tokenizer = Tokenizer::from_checkpoint(dir, config.value())?;
        let started = std::time::Instant::now();
        let mut weights = HfWeights::open_split(dir, devices, precision.dtype())?;
        let stages = weights.stages().clone();
        if multimodal && !weights.text_model() {
            return Err(ModelError::corrupt(dir, "a Gemma 3 multimodal checkpoint without its language model's tensors (language_model.model.*)"));
        }
        let opened = started.elapsed();
        let embed_name = ["model.embed_tokens.weight", "transformer.wte.weight", "wte.weight", "gpt_neox.embed_in.weight", "embed_in.weight", "model.decoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
            .into_iter()
            .find(|n| weights.has(n))
            .ok_or_else(|| ModelError::corrupt(dir, "no token embedding tensor in the checkpoint"))?;
        let rows = weights.dims(embed_name)?.first().copied().unwrap_or(0);
        if tokenizer.vocab_size() > rows {
            return Err(ModelError::corrupt(
                dir,
                format!("the tokenizer has {} tokens but the model's embedding has {rows} rows: they do not belong together", tokenizer.vocab_size()),
            ));
        }
        let net: Box<dyn CausalLm> = match arch.as_str() {
            "gpt2" => Box::new(Gpt2::from_hf(&weights, &config)?),
            "opt" => Box::new(Opt::from_hf(&weights, &config)?),
            "gpt_neox" => Box::new(GptNeox::from_hf(&weights, &config)?),
            "gemma2" | "gemma3_text" => Box::new(Gemma3::from_hf(&weights, &config)?),
            "olmo2" | "olmo3" => Box::new(Olmo2::from_hf(&weights, &config)?),
            _ => Box::new(Llama::from_hf(&weights, &config)?),
        };
        let context_length = config.opt_usize(&["max_position_embeddings", "n_positions", "n_ctx"]);
        if profiling() {
            eprintln!("profile: load: weights opened in {:.0} ms, network built in {:.0} ms", opened.as_secs_f64() * 1e3, (started.elapsed() - opened).as_secs_f64() * 1e3);
        }
        release_freed_memory();
        Ok(Model {
            tokenizer,
            arch,
            params: checkpoint_counts(&weights),
            path: dir.to_path_buf(),
            precision,
            context_length,
            net,
            stages,
        })
    }

    /// Loads a `.gguf` file on the CPU.
    pub fn load_gguf(path: &Path, precision: Precision) -> Result<Model> {
        Model::load_gguf_on(path, precision, &[Device::Cpu])
    }

    fn load_gguf_on(path: &Path, precision: Precision, devices: &[Device]) -> Result<Model> {
        let file = GgufFile::open(path)?;
        let arch = file.architecture()?.to_string();
        const SUPPORTED_GGUF: &str = "llama (and Mixtral), qwen2, qwen3, qwen3moe, olmo2, gemma2, gemma3, phi3, gpt2, gptneox";
        if !matches!(arch.as_str(), "llama" | "qwen2" | "qwen3" | "qwen3moe" | "olmo2" | "gemma2" | "gemma3" | "phi3" | "gpt2" | "gptneox") {
            return Err(ModelError::unsupported(
                path,
                format!("GGUF architecture `{arch}` is not supported (supported: {SUPPORTED_GGUF})"),
            ));
        }
        // The tokenizer first: a vocabulary larger than the embedding means the two do not
        // belong together, and is cheaper to find out than building the network.
        let tokenizer = file.tokenizer().map_err(|e| match e {
            ModelError::Tokenizer(m) => ModelError::corrupt(path, format!("tokenizer: {m}")),
            e => e,
        })?;
        let rows = file.content.tensor_infos.get("token_embd.weight").map(|i| i.shape.dims()[0]);
        match rows {
            None => return Err(ModelError::corrupt(path, "tensor `token_embd.weight` is missing")),
            Some(n) if tokenizer.vocab_size() > n => {
                return Err(ModelError::corrupt(
                    path,
                    format!("the tokenizer has {} tokens but the model's embedding has {n} rows: they do not belong together", tokenizer.vocab_size()),
                ));
            }
            Some(_) => {}
        }
        let sized: Vec<(String, u64)> = file
            .content
            .tensor_infos
            .iter()
            .map(|(n, i)| {
                let elements = i.shape.elem_count() as u64;
                let bytes = match precision {
                    Precision::Quantized => elements * i.ggml_dtype.type_size() as u64 / i.ggml_dtype.block_size() as u64,
                    _ => elements * precision.dtype().size_in_bytes() as u64,
                };
                (n.clone(), bytes)
            })
            .collect();
        let stages = Stages::plan(devices, &sized, path)?;
        let weights = GgufWeights { file: &file, stages: stages.clone(), precision };
        let net: Box<dyn CausalLm> = match arch.as_str() {
            "gemma3" | "gemma2" => Box::new(Gemma3::from_gguf(&weights, &arch)?),
            "olmo2" => Box::new(Olmo2::from_gguf(&weights)?),
            "gpt2" => Box::new(Gpt2::from_gguf(&weights)?),
            "gptneox" => Box::new(GptNeox::from_gguf(&weights)?),
            _ => Box::new(Llama::from_gguf(&weights, &arch)?),
        };
        let params = gguf_counts(&file);
        let context_length = file.opt_int(&format!("{arch}.context_length")).map(|v| v as usize);
        drop(file);
        release_freed_memory();
        Ok(Model { tokenizer, arch, params, path: path.to_path_buf(), precision, context_length, net, stages })
    }
}

/// What a model's files say without loading its weights: its tokenizer and what the results
/// record (a server backend scores with the weights elsewhere and the tokenizer here).
pub struct Described {
    pub tokenizer: Tokenizer,
    pub arch: String,
    /// Parameters counted from the tensors' shapes (the weights are not read); 0 for a folder
    /// without weights (a served model's tokenizer).
    pub params: ParamCounts,
    pub context_length: Option<usize>,
    pub path: std::path::PathBuf,
}

/// Reads `source`'s tokenizer and metadata (a GGUF's header, a checkpoint's config and its
/// safetensors headers), any architecture: nothing is run here.
pub fn describe(source: &ModelSource) -> Result<Described> {
    match source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path)?;
            let arch = file.architecture()?.to_string();
            let tokenizer = file.tokenizer()?;
            let params = gguf_counts(&file);
            let context_length = file.opt_int(&format!("{arch}.context_length")).map(|v| v as usize);
            Ok(Described { tokenizer, arch, params, context_length, path: path.clone() })
        }
        ModelSource::Checkpoint(dir) => {
            // A served model's folder may hold only its tokenizer (see `Needed::Tokenizer`).
            let config = if dir.join("config.json").is_file() { Some(HfConfig::read(dir)?) } else { None };
            let arch = match &config {
                Some(c) => c.model_type()?.to_string(),
                None => "unknown (no config.json)".into(),
            };
            let tokenizer = Tokenizer::from_checkpoint(dir, config.as_ref().map_or(&serde_json::Value::Null, HfConfig::value))?;
            let params = match has_weights(dir) {
                true => {
                    let mut weights = HfWeights::open(dir, &Device::Cpu, candle_core::DType::F32)?;
                    if arch == "gemma3" {
                        weights.text_model(); // a multimodal checkpoint: its language model's count
                    }
                    checkpoint_counts(&weights)
                }
                false => ParamCounts::default(),
            };
            let context_length = config.and_then(|c| c.opt_usize(&["max_position_embeddings", "n_positions", "n_ctx"]));
            Ok(Described { tokenizer, arch, params, context_length, path: dir.clone() })
        }
    }
}

/// The model series a GGUF file names in its metadata: `general.basename` ("Qwen2.5-Coder",
/// "gemma-3"), else `general.name` without its `general.size_label`. Fine-tune tags
/// (`general.finetune`) are left out: converters fill them inconsistently across the sizes of
/// one series ("Instruct" next to "Instruct-AWQ"). `None` for a checkpoint folder or a file
/// without them.
pub fn family_hint(path: &std::path::Path) -> Option<String> {
    if !path.is_file() {
        return None;
    }
    let file = GgufFile::open(path).ok()?;
    let text = |k: &str| file.string(k).ok().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    text("general.basename").or_else(|| {
        let name = text("general.name")?;
        let size = text("general.size_label").unwrap_or_default();
        let stripped = if size.is_empty() { name.clone() } else { name.replace(&size, "") };
        Some(stripped.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|s| !s.is_empty())
    })
}

/// Whether a checkpoint folder holds safetensors weights.
fn has_weights(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| entries.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().ends_with(".safetensors")))
}
