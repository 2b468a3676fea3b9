//! A model to evaluate: what the user named (a `.gguf`, a folder, a hub id), at which precision,
//! on which devices; loaded (a copy on each device, side by side), and described for the results.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use invscale_models::{BosPolicy, Model, Precision, resolve};

use crate::error::HarnessError;

/// What to load.
#[derive(Clone, Debug)]
pub struct ModelRequest {
    /// A `.gguf` file, a checkpoint folder, or a hub id `org/name[@revision]`.
    pub reference: String,
    /// Which `.gguf` of a folder or repository (lm-eval's `gguf_file=`).
    pub gguf_file: Option<String>,
    pub precision: Precision,
    /// One device, or several of one host (data parallel: a copy on each).
    pub devices: Vec<Device>,
}

impl ModelRequest {
    /// `reference` in f32 on the CPU (the exact path).
    pub fn cpu(reference: &str) -> ModelRequest {
        ModelRequest { reference: reference.into(), gguf_file: None, precision: Precision::F32, devices: vec![Device::Cpu] }
    }

    pub fn on_cpu(&self) -> bool {
        self.devices.iter().all(Device::is_cpu)
    }
}

/// A model as the results describe it (what stays once the weights are dropped).
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// `reference` as given.
    pub reference: String,
    /// Its short name: a file's stem, or the hub id.
    pub name: String,
    pub path: PathBuf,
    pub arch: String,
    pub params: u64,
    pub dtype: &'static str,
    pub tokenizer: String,
    pub bos_token: Option<(String, u32)>,
    pub eos_token: Option<(String, u32)>,
    pub context_length: Option<usize>,
}

/// A model loaded on its devices.
pub struct LoadedModel {
    pub request: ModelRequest,
    /// One copy per device, in the order of `request.devices`.
    pub copies: Vec<Model>,
    pub load_seconds: f64,
}

impl LoadedModel {
    /// Resolves `request.reference` (through the hub cache for hub ids) and loads a copy on each
    /// device; a model that cannot be found or read is bad input.
    pub fn load(request: &ModelRequest, hub: &invscale_hub::Hub) -> Result<LoadedModel, HarnessError> {
        let started = Instant::now();
        let source = resolve(&request.reference, request.gguf_file.as_deref(), hub).map_err(|e| HarnessError::BadInput(e.to_string()))?;
        let copies = std::thread::scope(|s| {
            let loads: Vec<_> = request.devices.iter().map(|d| s.spawn(|| Model::load_on(&source, request.precision, d))).collect();
            loads.into_iter().map(|l| l.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect::<Result<Vec<Model>, _>>()
        })
        .map_err(|e| HarnessError::BadInput(e.to_string()))?;
        Ok(LoadedModel { request: request.clone(), copies, load_seconds: started.elapsed().as_secs_f64() })
    }

    /// The first copy (the one whose tokenizer builds the requests).
    pub fn model(&self) -> &Model {
        &self.copies[0]
    }

    pub fn info(&self) -> ModelInfo {
        let m = self.model();
        let token = |id: Option<u32>| id.map(|i| (m.tokenizer.token_text(i), i));
        ModelInfo {
            reference: self.request.reference.clone(),
            name: display_name(&self.request.reference),
            path: m.path.clone(),
            arch: m.arch.clone(),
            params: m.params,
            dtype: m.precision.name(),
            tokenizer: m.tokenizer.kind.clone(),
            bos_token: token(m.tokenizer.bos_id),
            eos_token: token(m.tokenizer.eos_id),
            context_length: m.context_length,
        }
    }

    /// Whether sequences start with BOS under `policy` for this model.
    pub fn bos_used(&self, policy: BosPolicy) -> bool {
        self.model().bos_token(policy).is_some()
    }
}

/// A model reference's short name: an existing file's or folder's stem, else the reference as
/// written (a hub id).
pub fn display_name(reference: &str) -> String {
    let p = Path::new(reference);
    if p.exists() {
        p.file_stem().or_else(|| p.file_name()).map_or(reference.to_string(), |s| s.to_string_lossy().into_owned())
    } else {
        reference.to_string()
    }
}

/// `--device`: `cpu`, `cuda`, `cuda:N`, or several GPUs of one host comma-separated
/// (`cuda:0,cuda:1`).
pub fn parse_devices(spec: &str) -> Result<Vec<Device>, String> {
    spec.split(',').map(|d| parse_device(d.trim())).collect()
}

fn parse_device(name: &str) -> Result<Device, String> {
    let index = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => i,
            _ => return Err(format!("--device {name}: expected cpu, cuda or cuda:N")),
        },
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(format!(
            "--device {name}: this build of invscale has only the CPU backend (build with `--features cuda`: scripts/build-cuda.sh)"
        ));
    }
    Device::new_cuda(index).map_err(|e| format!("--device {name}: {e}"))
}
