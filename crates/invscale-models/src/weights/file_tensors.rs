//! Where each tensor of a safetensors checkpoint lies in its files (from the files' headers), and
//! reading one into memory of its own with `pread`. The CPU reads weights this way, not through
//! the memory map: pages of a map that have been read stay in the process's resident memory until
//! the map is dropped, so reading through it held every weight twice at the end of loading (peak
//! RSS 2.2× the weights); and the GPU upload reads the same way into pinned buffers
//! ([`crate::weights::cuda_upload`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// A tensor's bytes in one of the files.
#[derive(Clone, Debug)]
pub struct FileTensor {
    pub file: usize,
    /// Byte offset of the data in the file.
    pub offset: u64,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl FileTensor {
    pub fn bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size_in_bytes()
    }
}

/// The tensors of safetensors `files` in dtypes the GPU path reads (bf16, f16, f32), by name,
/// from the files' headers. An error names the file.
pub fn safetensors_index(files: &[PathBuf]) -> crate::error::Result<Vec<(String, FileTensor)>> {
    let mut out = vec![];
    for (file, path) in files.iter().enumerate() {
        let bad = |m: String| crate::error::ModelError::corrupt(path, m);
        let f = File::open(path).map_err(|e| crate::error::ModelError::io(path, e))?;
        let size = f.metadata().map_err(|e| crate::error::ModelError::io(path, e))?.len();
        let mut n = [0u8; 8];
        f.read_exact_at(&mut n, 0).map_err(|e| crate::error::ModelError::io(path, e))?;
        let n = u64::from_le_bytes(n);
        if n > size.saturating_sub(8) || n > 100 << 20 {
            return Err(bad(format!("safetensors header of {n} bytes does not fit the file")));
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact_at(&mut header, 8).map_err(|e| crate::error::ModelError::io(path, e))?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| bad(format!("safetensors header is not valid JSON: {e}")))?;
        for (name, info) in header {
            if name == "__metadata__" {
                continue;
            }
            let dtype = match info["dtype"].as_str() {
                Some("BF16") => DType::BF16,
                Some("F16") => DType::F16,
                Some("F32") => DType::F32,
                _ => continue, // read the ordinary way, if at all
            };
            let shape: Option<Vec<usize>> = info["shape"].as_array().and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
            let offsets: Option<Vec<u64>> = info["data_offsets"].as_array().and_then(|a| a.iter().map(|d| d.as_u64()).collect());
            let (Some(shape), Some([begin, end])) = (shape, offsets.as_deref().and_then(|o| <[u64; 2]>::try_from(o).ok())) else {
                return Err(bad(format!("tensor `{name}`: no shape or data_offsets in the header")));
            };
            let t = FileTensor { file, offset: 8 + n + begin, dtype, shape };
            if end < begin || end - begin != t.bytes() as u64 || t.offset + t.bytes() as u64 > size {
                return Err(bad(format!("tensor `{name}`: its data_offsets do not match its shape, or run past the end of the file")));
            }
            out.push((name, t));
        }
    }
    Ok(out)
}

/// Reads `t` from `file` into a CPU tensor of the file's dtype (one allocation, filled in place).
pub fn read_tensor(file: &File, t: &FileTensor) -> std::io::Result<Tensor> {
    fn read<T: candle_core::WithDType + Default>(file: &File, t: &FileTensor) -> std::io::Result<Tensor> {
        let n = t.shape.iter().product::<usize>();
        let mut v = vec![T::default(); n];
        // Safety: f32, bf16 and f16 are plain bits (every pattern a value), the slice covers
        // exactly the vector's initialised elements, and safetensors stores little-endian, as
        // this machine (x86-64) is.
        let bytes = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, n * std::mem::size_of::<T>()) };
        file.read_exact_at(bytes, t.offset)?;
        Tensor::from_vec(v, t.shape.as_slice(), &Device::Cpu).map_err(std::io::Error::other)
    }
    match t.dtype {
        DType::F32 => read::<f32>(file, t),
        DType::BF16 => read::<half::bf16>(file, t),
        DType::F16 => read::<half::f16>(file, t),
        other => Err(std::io::Error::other(format!("{other:?} tensors are not read this way"))),
    }
}
