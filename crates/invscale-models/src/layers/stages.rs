//! A model's layers split across devices (`--device cuda:0+cuda:1`): each device holds a run of
//! consecutive layers (a stage), the activations are handed on from one stage to the next, and
//! everything that is not a layer (embeddings, final norm, LM head) stays on the first device,
//! where the pass starts and ends. One device is the one-stage case; the arithmetic of a layer
//! does not depend on where it runs, so a split model's numbers are those of one device.

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};

/// Which device each layer runs on.
#[derive(Clone, Debug)]
pub struct Stages {
    /// Each stage's device, in order; the first is where the pass starts and ends (embeddings,
    /// final norm, LM head). On the CPU, stages share it.
    devices: Vec<Device>,
    /// Layer `i`'s stage; empty when every layer is on the first device.
    layers: Vec<usize>,
}

/// Something made once for each stage of a pass (its attention masks), for that stage's device.
pub struct OnStages<T> {
    /// One per stage, with the stage's first layer (ascending).
    items: Vec<(usize, T)>,
}

impl<T> OnStages<T> {
    /// The one for layer `layer`'s device.
    pub fn at(&self, layer: usize) -> &T {
        let i = self.items.partition_point(|(first, _)| *first <= layer).max(1) - 1;
        &self.items[i].1
    }
}

impl Stages {
    /// Every layer on `device`.
    pub fn single(device: &Device) -> Stages {
        Stages { devices: vec![device.clone()], layers: Vec::new() }
    }

    /// Splits a model's layers over `devices` (in order, one stage each), each stage's share of
    /// the layers' bytes in proportion to the memory its device has free (after the first one's
    /// embeddings and head); on the CPU in equal shares. `tensors`: every tensor's name (as
    /// stored) and its bytes at the run's precision; a tensor's layer is read from its name
    /// ([`layer_of`]). A stage gets at least one layer while there are layers to give.
    pub fn plan(devices: &[Device], tensors: &[(String, u64)], what: &std::path::Path) -> Result<Stages> {
        let Some(home) = devices.first() else { return Err(ModelError::unsupported(what, "no device to load the model on")) };
        if devices.len() == 1 {
            return Ok(Stages::single(home));
        }
        let (mut per_layer, mut rest) = (Vec::<u64>::new(), 0u64);
        for (name, bytes) in tensors {
            match layer_of(name) {
                Some(l) => {
                    if per_layer.len() <= l {
                        per_layer.resize(l + 1, 0);
                    }
                    per_layer[l] += bytes;
                }
                None => rest += bytes,
            }
        }
        let layers = per_layer.len();
        if layers < devices.len() {
            return Err(ModelError::unsupported(what, format!("{layers} layers cannot be split into {} stages", devices.len())));
        }
        let layer_bytes: u64 = per_layer.iter().sum();
        let free = free_memory(devices);
        let total = layer_bytes + rest;
        let capacity: Vec<f64> = match &free {
            Some(free) => {
                let room: u64 = free.iter().sum();
                if total as f64 > room as f64 * 0.9 {
                    return Err(ModelError::unsupported(
                        what,
                        format!("the weights ({:.1} GiB) do not fit the memory free on these devices ({:.1} GiB, 90% usable)", gib(total), gib(room)),
                    ));
                }
                free.iter().enumerate().map(|(i, &f)| (f as f64 - if i == 0 { rest as f64 } else { 0.0 }).max(1.0)).collect()
            }
            None => vec![1.0; devices.len()],
        };
        let sum: f64 = capacity.iter().sum();
        // Stage s ends where the layers' running total first passes its share's running total.
        let mut assigned = Vec::with_capacity(layers);
        let (mut stage, mut running, mut bound) = (0, 0.0, capacity[0] / sum * layer_bytes as f64);
        for (l, &bytes) in per_layer.iter().enumerate() {
            let left = layers - l;
            let stages_after = devices.len() - 1 - stage;
            let started = assigned.last().is_some_and(|&s| s == stage);
            if stage + 1 < devices.len() && started && (running + bytes as f64 / 2.0 > bound || left == stages_after) {
                stage += 1;
                bound += capacity[stage] / sum * layer_bytes as f64;
            }
            assigned.push(stage);
            running += bytes as f64;
        }
        Ok(Stages { devices: devices.to_vec(), layers: assigned })
    }

    /// Where the pass starts and ends.
    pub fn home(&self) -> &Device {
        &self.devices[0]
    }

    /// Layer `layer`'s device.
    pub fn device_of(&self, layer: usize) -> &Device {
        self.layers.get(layer).map_or(self.home(), |&s| &self.devices[s])
    }

    /// The device a stored tensor goes to: its layer's, or home for the rest.
    pub fn device_for(&self, tensor: &str) -> &Device {
        layer_of(tensor).map_or(self.home(), |l| self.device_of(l))
    }

    /// How many layers each stage holds, in order (one entry for a model on one device).
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.devices.len()];
        for &s in &self.layers {
            sizes[s] += 1;
        }
        sizes
    }

    /// Every distinct device, home first.
    pub fn devices(&self) -> Vec<Device> {
        let mut out: Vec<Device> = Vec::new();
        for d in &self.devices {
            if !out.iter().any(|o| o.same_device(d)) {
                out.push(d.clone());
            }
        }
        out
    }

    /// `make` run once for each stage, on its device.
    pub fn per_device<T>(&self, make: impl Fn(&Device) -> Result<T>) -> Result<OnStages<T>> {
        let mut items = vec![(0, make(self.home())?)];
        for (i, &s) in self.layers.iter().enumerate() {
            if i > 0 && self.layers[i - 1] != s {
                items.push((i, make(&self.devices[s])?));
            }
        }
        Ok(OnStages { items })
    }

    /// `x` on layer `layer`'s device (moved only where a stage begins).
    pub fn enter(&self, layer: usize, x: Tensor) -> Result<Tensor> {
        let d = self.device_of(layer);
        Ok(if x.device().same_device(d) { x } else { x.to_device(d)? })
    }

    /// `x` back on the first device, for the final norm and the LM head.
    pub fn leave(&self, x: Tensor) -> Result<Tensor> {
        Ok(if x.device().same_device(self.home()) { x } else { x.to_device(self.home())? })
    }
}

/// The layer a stored tensor belongs to: the number after `layers`, `h` or `blk` in its name
/// (`model.layers.3.mlp…`, `transformer.h.3…`, `gpt_neox.layers.3…`, `blk.3…`); `None` for
/// embeddings, final norms and heads.
pub fn layer_of(name: &str) -> Option<usize> {
    let parts: Vec<&str> = name.split('.').collect();
    parts.windows(2).find(|w| matches!(w[0], "layers" | "h" | "blk")).and_then(|w| w[1].parse().ok())
}

/// The GPUs this machine has (0 without the CUDA build or a driver).
pub fn cuda_device_count() -> usize {
    #[cfg(feature = "cuda")]
    if candle_core::utils::cuda_is_available() {
        return candle_core::cuda_backend::cudarc::driver::CudaContext::device_count().map_or(0, |n| n.max(0) as usize);
    }
    0
}

/// Free memory of each device (CUDA; stages that share a GPU share its memory); `None` when any
/// is the CPU.
pub fn free_memory(devices: &[Device]) -> Option<Vec<u64>> {
    #[cfg(feature = "cuda")]
    {
        let mut free = Vec::with_capacity(devices.len());
        for d in devices {
            let Device::Cuda(c) = d else { return None };
            let sharing = devices.iter().filter(|o| o.location() == d.location()).count() as u64;
            free.push(cuda_free_bytes(c)? / sharing);
        }
        Some(free)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = devices;
        None
    }
}

/// Memory a GPU has free for the next pass: what the driver says, and what candle's pool holds
/// but no tensor uses.
#[cfg(feature = "cuda")]
pub(crate) fn cuda_free_bytes(c: &candle_core::CudaDevice) -> Option<u64> {
    let (free, _) = c.cuda_stream().context().mem_get_info().ok()?;
    let pooled = crate::weights::cuda_upload::pooled_free_memory(c).unwrap_or(0);
    Some((free + pooled) as u64)
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(layer_bytes: &[u64], rest: u64) -> Vec<(String, u64)> {
        let mut t: Vec<(String, u64)> = layer_bytes.iter().enumerate().map(|(i, &b)| (format!("model.layers.{i}.mlp.up_proj.weight"), b)).collect();
        t.push(("model.embed_tokens.weight".into(), rest));
        t
    }

    #[test]
    fn layers_are_read_from_every_naming() {
        assert_eq!(layer_of("model.layers.12.self_attn.q_proj.weight"), Some(12));
        assert_eq!(layer_of("transformer.h.3.attn.c_attn.weight"), Some(3));
        assert_eq!(layer_of("gpt_neox.layers.0.attention.dense.bias"), Some(0));
        assert_eq!(layer_of("blk.31.ffn_down.weight"), Some(31));
        assert_eq!(layer_of("language_model.model.layers.5.mlp.gate_proj.weight"), Some(5));
        assert_eq!(layer_of("model.decoder.layers.7.fc1.weight"), Some(7));
        assert_eq!(layer_of("model.embed_tokens.weight"), None);
        assert_eq!(layer_of("token_embd.weight"), None);
        assert_eq!(layer_of("lm_head.weight"), None);
    }

    #[test]
    fn cpu_stages_share_the_layers_equally_and_in_order() {
        let devices = [Device::Cpu, Device::Cpu];
        let s = Stages::plan(&devices, &tensors(&[10; 6], 100), std::path::Path::new("m")).unwrap();
        assert_eq!(s.sizes(), vec![3, 3]);
        let s = Stages::plan(&[Device::Cpu, Device::Cpu, Device::Cpu], &tensors(&[10; 7], 0), std::path::Path::new("m")).unwrap();
        assert_eq!(s.sizes(), vec![2, 3, 2]);
        // Unequal layers: the shares are of bytes, not of layers.
        let s = Stages::plan(&devices, &tensors(&[30, 10, 10, 10], 0), std::path::Path::new("m")).unwrap();
        assert_eq!(s.sizes(), vec![1, 3]);
        // Every stage gets a layer.
        let s = Stages::plan(&devices, &tensors(&[1000, 1, 1], 0), std::path::Path::new("m")).unwrap();
        assert_eq!(s.sizes(), vec![1, 2]);
        assert!(Stages::plan(&[Device::Cpu, Device::Cpu, Device::Cpu], &tensors(&[1, 1], 0), std::path::Path::new("m")).is_err());
        assert_eq!(Stages::single(&Device::Cpu).sizes(), vec![0]);
        assert_eq!(Stages::single(&Device::Cpu).device_of(5).location(), Device::Cpu.location());
    }

    #[test]
    fn tensors_go_to_their_layers_stage_and_the_rest_home() {
        let s = Stages::plan(&[Device::Cpu, Device::Cpu], &tensors(&[10; 4], 0), std::path::Path::new("m")).unwrap();
        assert_eq!(s.device_for("model.layers.3.mlp.up_proj.weight").location(), Device::Cpu.location());
        let made = std::sync::atomic::AtomicUsize::new(0);
        let masks = s.per_device(|_| Ok(made.fetch_add(1, std::sync::atomic::Ordering::Relaxed))).unwrap();
        assert_eq!((*masks.at(0), *masks.at(1), *masks.at(2), *masks.at(3)), (0, 0, 1, 1));
    }
}
