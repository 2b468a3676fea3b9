//! Hugging Face checkpoints: `config.json` and `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), memory-mapped; every tensor is read as f32 (the exact path).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::layers::linear::Linear;
use crate::layers::norm::{LayerNorm, RmsNorm};
use crate::layers::rotary::{RopeScaling, RopeSpec};
use crate::layers::stages::Stages;
use crate::weights::file_tensors::{FileTensor, read_tensor, safetensors_index};

/// `config.json`, with typed access and errors that name the file and the key.
pub struct HfConfig {
    pub path: PathBuf,
    value: Value,
}

impl HfConfig {
    pub fn read(dir: &Path) -> Result<HfConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| ModelError::corrupt(&path, format!("not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ModelError::corrupt(&path, "not a JSON object"));
        }
        Ok(HfConfig { path, value })
    }

    pub fn model_type(&self) -> Result<&str> {
        self.value["model_type"].as_str().ok_or_else(|| ModelError::corrupt(&self.path, "no `model_type`"))
    }

    pub fn get(&self, key: &str) -> &Value {
        &self.value[key]
    }

    /// A multimodal config's language model (`text_config`), read as a text model's config.
    pub fn text_config(&self) -> Result<HfConfig> {
        let text = &self.value["text_config"];
        if !text.is_object() {
            return Err(ModelError::corrupt(&self.path, "no `text_config` (a multimodal config names its language model there)"));
        }
        Ok(HfConfig { path: self.path.clone(), value: text.clone() })
    }

    /// The whole file.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The first of `keys` present (configs name the same thing differently across families).
    pub fn usize(&self, keys: &[&str]) -> Result<usize> {
        self.opt_usize(keys).ok_or_else(|| ModelError::corrupt(&self.path, format!("`{}` is missing or not a count", keys[0])))
    }

    pub fn opt_usize(&self, keys: &[&str]) -> Option<usize> {
        keys.iter().find_map(|k| self.value[*k].as_u64()).map(|v| v as usize)
    }

    pub fn f64_or(&self, key: &str, default: f64) -> f64 {
        self.value[key].as_f64().unwrap_or(default)
    }

    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        self.value[key].as_bool().unwrap_or(default)
    }

    /// The rotary of layers of `layer_type` (or the model's one): its base and scaling, as
    /// transformers' `standardize_rope_params` reads them (`rope_parameters`, else the legacy
    /// `rope_theta` / `rope_scaling`; Phi-3's top-level `original_max_position_embeddings` first).
    pub fn rope(&self, layer_type: Option<&str>, default_base: f64) -> Result<RopeSpec> {
        let params = match (&self.value["rope_parameters"], layer_type) {
            (Value::Object(m), Some(t)) if m.contains_key(t) => &m[t],
            (v @ Value::Object(_), _) => v,
            _ => &Value::Null,
        };
        let legacy_scaling = &self.value["rope_scaling"];
        let base = params["rope_theta"].as_f64().or_else(|| self.value["rope_theta"].as_f64()).unwrap_or(default_base);
        let scaling = if params.is_object() { params } else { legacy_scaling };
        let kind = scaling["rope_type"].as_str().or_else(|| scaling["type"].as_str()).unwrap_or("default");
        let f = |k: &str| scaling[k].as_f64();
        let max_positions = self.value["max_position_embeddings"].as_f64();
        let original = self.value["original_max_position_embeddings"].as_f64().or(f("original_max_position_embeddings")).or(max_positions);
        let need = |v: Option<f64>, what: &str| v.ok_or_else(|| ModelError::corrupt(&self.path, format!("rope type `{kind}` without `{what}`")));
        let factors = |k: &str| -> Result<Vec<f64>> {
            scaling[k].as_array().and_then(|a| a.iter().map(Value::as_f64).collect()).ok_or_else(|| ModelError::corrupt(&self.path, format!("rope type `{kind}` without a list `{k}`")))
        };
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear(f("factor").unwrap_or(1.0)),
            "llama3" => RopeScaling::Llama3 {
                factor: need(f("factor"), "factor")?,
                low_freq_factor: need(f("low_freq_factor"), "low_freq_factor")?,
                high_freq_factor: need(f("high_freq_factor"), "high_freq_factor")?,
                original: need(f("original_max_position_embeddings").or(original), "original_max_position_embeddings")?,
            },
            "yarn" => {
                let original = need(original, "original_max_position_embeddings")?;
                let factor = match f("factor") {
                    Some(v) => v,
                    None => need(max_positions, "factor")? / original,
                };
                let mscale = |scale: f64, m: f64| if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 };
                let attention_factor = match (f("attention_factor"), f("mscale"), f("mscale_all_dim")) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => mscale(factor, m) / mscale(factor, all),
                    _ => mscale(factor, 1.0),
                };
                RopeScaling::Yarn {
                    factor,
                    original,
                    beta_fast: f("beta_fast").filter(|&b| b != 0.0).unwrap_or(32.0),
                    beta_slow: f("beta_slow").filter(|&b| b != 0.0).unwrap_or(1.0),
                    attention_factor,
                    truncate: scaling["truncate"].as_bool().unwrap_or(true),
                }
            }
            "longrope" | "su" => {
                let original = need(original, "original_max_position_embeddings")?;
                let factor = match f("factor") {
                    Some(v) => v,
                    None => need(max_positions, "max_position_embeddings")? / original,
                };
                let attention_factor = f("attention_factor").unwrap_or(if factor <= 1.0 { 1.0 } else { (1.0 + factor.ln() / original.ln()).sqrt() });
                RopeScaling::LongRope { short: factors("short_factor")?, long: factors("long_factor")?, original: original as usize, attention_factor }
            }
            other => {
                return Err(ModelError::unsupported(&self.path, format!("rope type `{other}` is not supported (default, linear, llama3, yarn and longrope are)")));
            }
        };
        Ok(RopeSpec { base, scaling })
    }

    /// GPT-NeoX's rotary fraction: `rope_parameters.partial_rotary_factor` or `rotary_pct`.
    pub fn partial_rotary(&self) -> f64 {
        self.value["rope_parameters"]["partial_rotary_factor"]
            .as_f64()
            .or_else(|| self.value["partial_rotary_factor"].as_f64())
            .or_else(|| self.value["rotary_pct"].as_f64())
            .unwrap_or(1.0)
    }
}

/// The decoder dimensions Llama-family configs state (Llama, Qwen2, Mistral, Gemma 3).
pub struct Dims {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
}

impl Dims {
    pub fn from_config(c: &HfConfig) -> Result<Dims> {
        let hidden = c.usize(&["hidden_size"])?;
        let heads = c.usize(&["num_attention_heads"])?;
        Ok(Dims {
            hidden,
            layers: c.usize(&["num_hidden_layers"])?,
            heads,
            kv_heads: c.opt_usize(&["num_key_value_heads"]).unwrap_or(heads),
            head_dim: c.opt_usize(&["head_dim"]).unwrap_or(hidden / heads),
            rms_eps: c.f64_or("rms_norm_eps", 1e-6),
        })
    }
}

/// The checkpoint's tensors, memory-mapped.
pub struct HfWeights {
    pub dir: PathBuf,
    tensors: MmapedSafetensors,
    names: BTreeSet<String>,
    /// The files, and where each f32/bf16/f16 tensor lies in them: those are read with `pread`
    /// into memory of their own (see [`file_tensors`](crate::weights::file_tensors)); the map
    /// serves the headers and any other dtype.
    files: Vec<std::fs::File>,
    index: HashMap<String, FileTensor>,
    /// On a GPU: every tensor already on the device, in the file's dtype (read there by
    /// `cuda_upload`, many threads and pinned buffers at once, not one by one through the map).
    uploaded: HashMap<String, Tensor>,
    /// Which device each tensor goes to (its layer's stage; see [`Stages`]).
    stages: Stages,
    dtype: DType,
    /// A multimodal checkpoint's language model: where its `model.*` tensors are stored (see
    /// [`HfWeights::text_model`]).
    /// `(prefix of model.*, prefix of the rest)`.
    text_prefix: Option<(&'static str, &'static str)>,
}

impl HfWeights {
    /// Tensors are read in `dtype` (f32 on the exact path; bf16/f16 on GPUs), on `device`.
    pub fn open(dir: &Path, device: &Device, dtype: DType) -> Result<HfWeights> {
        HfWeights::open_split(dir, std::slice::from_ref(device), dtype)
    }

    /// [`open`](Self::open) with the layers split over `devices` (one stage each, in order).
    pub fn open_split(dir: &Path, devices: &[Device], dtype: DType) -> Result<HfWeights> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::corrupt(&index, format!("not valid JSON: {e}")))?;
            let map = v["weight_map"].as_object().ok_or_else(|| ModelError::corrupt(&index, "no `weight_map`"))?;
            let shards: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
            let files: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
            if let Some(missing) = files.iter().find(|f| !f.is_file()) {
                return Err(ModelError::corrupt(&index, format!("shard {} is missing", missing.display())));
            }
            files
        } else {
            return Err(ModelError::corrupt(
                dir,
                "no weights: neither model.safetensors nor model.safetensors.index.json (PyTorch .bin checkpoints are not read: convert them to safetensors)",
            ));
        };
        // Safety: the files are mapped read-only; invscale never writes them, and a file
        // changed underneath a running process is outside what any mmap reader can guard.
        let tensors = unsafe { MmapedSafetensors::multi(&files) }
            .map_err(|e| ModelError::corrupt(&files[0], format!("not a readable safetensors file: {e}")))?;
        let sized: Vec<(String, u64)> =
            tensors.tensors().into_iter().map(|(n, v)| (n, (v.shape().iter().product::<usize>() * dtype.size_in_bytes()) as u64)).collect();
        let stages = Stages::plan(devices, &sized, dir)?;
        let names = sized.into_iter().map(|(n, _)| n).collect();
        let index: HashMap<String, FileTensor> = safetensors_index(&files)?.into_iter().collect();
        let uploaded = Self::upload(&files, &index, &stages, dtype)?;
        let files = files.iter().map(|f| std::fs::File::open(f).map_err(|e| ModelError::io(f, e))).collect::<Result<_>>()?;
        Ok(HfWeights { dir: dir.to_path_buf(), tensors, names, files, index, uploaded, stages, dtype, text_prefix: None })
    }

    /// Where each layer runs.
    pub fn stages(&self) -> &Stages {
        &self.stages
    }

    #[cfg(feature = "cuda")]
    fn upload(files: &[PathBuf], index: &HashMap<String, FileTensor>, stages: &Stages, dtype: DType) -> Result<HashMap<String, Tensor>> {
        if std::env::var_os("INVSCALE_DIRECT_UPLOAD").is_some_and(|v| v == "0") {
            return Ok(HashMap::new());
        }
        let mut uploaded = HashMap::new();
        // Each stage's device its own tensors; those stored in the run's dtype only: the others
        // are converted one at a time as they are read (an f32 checkpoint run in bf16 never has
        // all of its f32 copy on the device).
        for device in stages.devices() {
            let Device::Cuda(dev) = &device else { continue };
            let (names, tensors): (Vec<String>, Vec<_>) = index
                .iter()
                .filter(|(n, t)| t.dtype == dtype && stages.device_for(n).same_device(&device))
                .map(|(n, t)| (n.clone(), t.clone()))
                .unzip();
            let on_device = crate::weights::cuda_upload::upload(dev, files, &tensors, crate::weights::cuda_upload::CHUNK)?;
            uploaded.extend(names.into_iter().zip(on_device));
        }
        Ok(uploaded)
    }

    #[cfg(not(feature = "cuda"))]
    fn upload(_: &[PathBuf], _: &HashMap<String, FileTensor>, _: &Stages, _: DType) -> Result<HashMap<String, Tensor>> {
        Ok(HashMap::new())
    }

    /// Reads a multimodal checkpoint's language model (Gemma 3 4B-27B) as a text model: its
    /// tensors named as a text checkpoint names them (`model.layers.0…`, `lm_head.weight`),
    /// stored under `language_model.model.` (the Hub's files) or `model.language_model.` (newer
    /// transformers); the vision tower is left alone. `false`: no language model found.
    pub fn text_model(&mut self) -> bool {
        self.text_prefix = [("language_model.model.", "language_model."), ("model.language_model.", "")]
            .into_iter()
            .find(|(p, _)| self.names.contains(&format!("{p}embed_tokens.weight")));
        self.text_prefix.is_some()
    }

    /// Where the tensor the models call `name` is stored.
    fn stored<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        match (self.text_prefix, name.strip_prefix("model.")) {
            (Some((model, _)), Some(rest)) => format!("{model}{rest}").into(),
            (Some((_, other)), None) => format!("{other}{name}").into(),
            (None, _) => name.into(),
        }
    }

    /// A tensor as the file has it (its dtype), on the run's device.
    fn raw(&self, name: &str) -> Result<Tensor> {
        if !self.has(name) {
            return Err(ModelError::corrupt(&self.dir, format!("tensor `{}` is missing from the checkpoint", self.stored(name))));
        }
        let stored = self.stored(name);
        if let Some(t) = self.uploaded.get(stored.as_ref()) {
            return Ok(t.clone());
        }
        let device = self.stages.device_for(&stored);
        if let Some(t) = self.index.get(stored.as_ref()) {
            let read = read_tensor(&self.files[t.file], t).map_err(|e| ModelError::corrupt(&self.dir, format!("tensor `{stored}`: {e}")))?;
            return Ok(if device.is_cpu() { read } else { read.to_device(device)? });
        }
        self.tensors.load(&stored, device).map_err(|e| ModelError::corrupt(&self.dir, format!("tensor `{stored}`: {e}")))
    }

    /// A tensor's shape, without reading it.
    pub fn dims(&self, name: &str) -> Result<Vec<usize>> {
        let stored = self.stored(name);
        let view = self.tensors.get(&stored).map_err(|e| ModelError::corrupt(&self.dir, format!("tensor `{stored}`: {e}")))?;
        Ok(view.shape().to_vec())
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains(self.stored(name).as_ref())
    }

    /// Each tensor's name and size (of a multimodal checkpoint, its language model's).
    pub fn param_tensors(&self) -> Vec<(String, u64)> {
        let text = |n: &str| self.text_prefix.is_none_or(|(model, other)| n.starts_with(model) || n == format!("{other}lm_head.weight"));
        self.tensors.tensors().into_iter().filter(|(n, _)| text(n)).map(|(n, v)| (n, v.shape().iter().product::<usize>() as u64)).collect()
    }

    /// A tensor in the run's dtype.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let t = self.raw(name)?;
        Ok(if t.dtype() == self.dtype { t } else { t.to_dtype(self.dtype)? })
    }

    /// `prefix.weight` (`[out, in]`) and `prefix.bias` when present.
    pub fn linear(&self, prefix: &str) -> Result<Linear> {
        Linear::dense(self.get(&format!("{prefix}.weight"))?, self.bias_of(prefix)?)
    }

    /// `prefix.bias`, when the checkpoint has one.
    fn bias_of(&self, prefix: &str) -> Result<Option<Tensor>> {
        let bias = format!("{prefix}.bias");
        Ok(if self.has(&bias) { Some(self.get(&bias)?) } else { None })
    }

    /// A fused projection (Phi-3's `qkv_proj`, `gate_up_proj`) split into consecutive groups of
    /// `rows` output rows, each its own layer.
    pub fn split_linear<const N: usize>(&self, prefix: &str, rows: [usize; N]) -> Result<[Linear; N]> {
        let (weight, bias) = (&self.get(&format!("{prefix}.weight"))?, self.bias_of(prefix)?);
        if weight.dim(0)? != rows.iter().sum::<usize>() {
            return Err(ModelError::corrupt(&self.dir, format!("`{prefix}.weight` has {} rows, not {}", weight.dim(0)?, rows.iter().sum::<usize>())));
        }
        let mut start = 0;
        let mut out = Vec::with_capacity(rows.len());
        for n in rows {
            let part = |t: &Tensor| -> Result<Tensor> { Ok(t.narrow(0, start, n)?.contiguous()?) };
            out.push(Linear::dense(part(weight)?, bias.as_ref().map(part).transpose()?)?);
            start += n;
        }
        Ok(out.try_into().unwrap_or_else(|_| unreachable!("one layer per group")))
    }

    /// GPT-2's `Conv1D`: the weight is stored `[in, out]`.
    pub fn conv1d(&self, prefix: &str) -> Result<Linear> {
        Linear::dense(self.get(&format!("{prefix}.weight"))?.t()?.contiguous()?, Some(self.get(&format!("{prefix}.bias"))?))
    }

    pub fn layer_norm(&self, prefix: &str, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm { weight: self.get(&format!("{prefix}.weight"))?, bias: self.get(&format!("{prefix}.bias"))?, eps: eps as f32 })
    }

    /// RMSNorm (weights kept in f32); Gemma stores `w` for a scale of `1 + w`, applied in f32.
    pub fn rms_norm(&self, name: &str, eps: f64, plus_one: bool) -> Result<RmsNorm> {
        // From the file's dtype straight to f32 (not through the run's half type).
        let w = self.raw(name)?.to_dtype(DType::F32)?;
        Ok(RmsNorm { weight: if plus_one { (w + 1.0)? } else { w }, eps: eps as f32, scale_after_cast: !plus_one })
    }

    /// The LM head: the embedding matrix when tied (`tie_word_embeddings`), else `name`.
    pub fn head(&self, name: &str, embed: &Tensor, tied: bool) -> Result<Linear> {
        match tied {
            true => Ok(Linear::tied(embed)),
            false => Linear::dense(self.get(name)?, None),
        }
    }
}
