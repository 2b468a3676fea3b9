//! A model to evaluate: what the user named (a `.gguf`, a folder, a hub id), at which precision,
//! on which devices; loaded (a copy on each device, side by side), and described for the results.

use std::time::Instant;

use candle_core::Device;
use invscale_eval::Scorer;
use invscale_models::load::describe;
use invscale_models::{BosPolicy, Model, Needed, Precision, Tokenizer, resolve_for};
use invscale_servers::{ServerOptions, ServerScorer};

use crate::error::HarnessError;
use crate::info::{ModelInfo, display_name, token};

/// What to load.
#[derive(Clone, Debug)]
pub struct ModelRequest {
    /// A `.gguf` file, a checkpoint folder, or a hub id `org/name[@revision]`.
    pub reference: String,
    /// Which `.gguf` of a folder or repository (lm-eval's `gguf_file=`).
    pub gguf_file: Option<String>,
    pub precision: Precision,
    /// Where the in-process model runs (`--device`).
    pub devices: Placement,
    /// Score on this server instead (`reference` then gives the tokenizer and names the model).
    pub server: Option<ServerOptions>,
}

impl ModelRequest {
    /// `reference` in f32 on the CPU (the exact path).
    pub fn cpu(reference: &str) -> ModelRequest {
        ModelRequest { reference: reference.into(), gguf_file: None, precision: Precision::F32, devices: Placement::cpu(), server: None }
    }

    /// Whether the scoring runs on this machine's CPU.
    pub fn on_cpu(&self) -> bool {
        self.server.is_none() && self.devices.is_cpu()
    }
}

/// Where the in-process model runs: `--device`.
#[derive(Clone, Debug)]
pub enum Placement {
    /// A copy per entry (data parallel), each entry's layers split over its devices in order
    /// (one device: the whole model).
    Copies(Vec<Vec<Device>>),
    /// `--device auto` on a GPU host, every GPU: a copy on each while one holds the model, else
    /// copies split over as few GPUs as hold one (chosen when the model's size is known).
    Auto(Vec<Device>),
}

impl Placement {
    pub fn cpu() -> Placement {
        Placement::Copies(vec![vec![Device::Cpu]])
    }

    pub fn is_cpu(&self) -> bool {
        matches!(self, Placement::Copies(c) if c.iter().flatten().all(Device::is_cpu))
    }

    /// The copies to load for a model of `weight_bytes` at the run's precision.
    pub fn copies(&self, weight_bytes: u64) -> Vec<Vec<Device>> {
        match self {
            Placement::Copies(c) => c.clone(),
            Placement::Auto(gpus) => {
                // A copy's GPUs must hold its weights in 80% of their memory (the rest for
                // activations); as few per copy as that allows, as many copies as the host has room for.
                let free = invscale_models::free_memory(gpus).unwrap_or_default();
                let least = free.iter().copied().min().unwrap_or(0).max(1) as f64;
                let per_copy = ((weight_bytes as f64 / (0.8 * least)).ceil() as usize).clamp(1, gpus.len().max(1));
                gpus.chunks(per_copy).filter(|c| c.len() == per_copy).map(<[Device]>::to_vec).collect()
            }
        }
    }
}

/// What scores a model's requests.
pub enum Backend {
    /// The in-process runtime: one copy per device, in the order of `request.devices`.
    Local(Vec<Model>),
    /// An inference server (the weights there; the tokenizer here).
    Server(Box<ServerScorer>),
}

/// A model loaded (or its server connected and checked).
pub struct LoadedModel {
    pub request: ModelRequest,
    pub backend: Backend,
    pub info: ModelInfo,
    pub load_seconds: f64,
}

impl LoadedModel {
    /// Resolves `request.reference` (through the hub cache for hub ids) and loads a copy on each
    /// device; a model that cannot be found or read is bad input. With a server, only the
    /// tokenizer is read here (see [`crate::server`]).
    pub fn load(request: &ModelRequest, hub: &invscale_hub::Hub) -> Result<LoadedModel, HarnessError> {
        let started = Instant::now();
        let needed = if request.server.is_some() { Needed::Tokenizer } else { Needed::Weights };
        let source = resolve_for(&request.reference, request.gguf_file.as_deref(), hub, needed).map_err(|e| HarnessError::BadInput(e.to_string()))?;
        if request.server.is_some() {
            let described = describe(&source).map_err(|e| HarnessError::BadInput(e.to_string()))?;
            let options = request.server.as_ref().expect("a server");
            let (scorer, info) = crate::server::connect(options, &request.reference, described)?;
            let load_seconds = started.elapsed().as_secs_f64();
            return Ok(LoadedModel { request: request.clone(), backend: Backend::Server(Box::new(scorer)), info, load_seconds });
        }
        // `auto` sizes its copies by the weights (counted from the headers); the rest need no size.
        let weight_bytes = match &request.devices {
            Placement::Auto(_) => describe(&source).map_err(|e| HarnessError::BadInput(e.to_string()))?.params.total * request.precision.bytes_per_weight(),
            Placement::Copies(_) => 0,
        };
        let placement = request.devices.copies(weight_bytes);
        let copies = std::thread::scope(|s| {
            let loads: Vec<_> = placement.iter().map(|d| s.spawn(|| Model::load_split(&source, request.precision, d))).collect();
            loads.into_iter().map(|l| l.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect::<Result<Vec<Model>, _>>()
        })
        .map_err(|e| HarnessError::BadInput(e.to_string()))?;
        let m = &copies[0];
        let info = ModelInfo {
            reference: request.reference.clone(),
            name: display_name(&request.reference),
            path: m.path.clone(),
            arch: m.arch.clone(),
            params: m.params.total,
            non_embedding_params: m.params.non_embedding,
            dtype: m.precision.name(),
            tokenizer: m.tokenizer.kind.clone(),
            bos_token: token(&m.tokenizer, m.tokenizer.bos_id),
            eos_token: token(&m.tokenizer, m.tokenizer.eos_id),
            context_length: m.context_length,
            family: crate::info::infer_family(&request.reference, &m.path, &m.arch),
        };
        Ok(LoadedModel { request: request.clone(), backend: Backend::Local(copies), info, load_seconds: started.elapsed().as_secs_f64() })
    }

    /// What scores the requests: each copy of the model, or the server.
    pub fn scorers(&self) -> Vec<&dyn Scorer> {
        match &self.backend {
            Backend::Local(copies) => copies.iter().map(|m| m as &dyn Scorer).collect(),
            Backend::Server(s) => vec![s.as_ref() as &dyn Scorer],
        }
    }

    /// The tokenizer the requests are built with.
    pub fn tokenizer(&self) -> &Tokenizer {
        self.scorers()[0].tokenizer()
    }

    /// The in-process model's first copy (`None` with a server).
    pub fn local(&self) -> Option<&Model> {
        match &self.backend {
            Backend::Local(copies) => copies.first(),
            Backend::Server(_) => None,
        }
    }

    /// Tokens a batch of documents may hold: on a GPU as its free memory allows, on a server
    /// enough for every request in flight.
    pub fn batch_tokens(&self, cpu: usize) -> usize {
        match &self.backend {
            Backend::Local(copies) => copies.iter().map(|m| m.batch_tokens(cpu)).min().unwrap_or(cpu),
            Backend::Server(s) => (s.concurrency * 2048).max(cpu),
        }
    }

    pub fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    /// Whether sequences start with BOS under `policy` for this model.
    pub fn bos_used(&self, policy: BosPolicy) -> bool {
        self.tokenizer().bos_token(policy).is_some()
    }
}

/// `--device`: `cpu`, `cuda`, `cuda:N`; several GPUs of one host comma-separated, a copy on
/// each (`cuda:0,cuda:1`); a model's layers split over GPUs joined by `+` (`cuda:0+cuda:1`, and
/// both at once: `cuda:0+cuda:1,cuda:2+cuda:3`); `auto`: every GPU (see [`Placement::Auto`]),
/// else the CPU.
pub fn parse_devices(spec: &str) -> Result<Placement, String> {
    if spec.trim() == "auto" {
        let gpus = invscale_models::cuda_device_count();
        if gpus == 0 {
            return Ok(Placement::cpu());
        }
        return Ok(Placement::Auto((0..gpus).map(|i| parse_device(&format!("cuda:{i}"))).collect::<Result<_, _>>()?));
    }
    let copies = spec.split(',').map(|copy| copy.split('+').map(|d| parse_device(d.trim())).collect::<Result<Vec<_>, _>>()).collect::<Result<Vec<_>, _>>()?;
    if copies.iter().any(|c| c.len() > 1 && c.iter().any(Device::is_cpu) && !c.iter().all(Device::is_cpu)) {
        return Err(format!("--device {spec}: a model's layers are split over GPUs or over the CPU, not both"));
    }
    Ok(Placement::Copies(copies))
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
