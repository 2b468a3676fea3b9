//! GGUF files: memory-mapped, header parsed by candle, with the checks that turn a corrupt or
//! truncated file into a clear error instead of a panic or garbage.

use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{Content, Value};
use memmap2::Mmap;

use invscale_tokenizer::{GgufVocab, Tokenizer};

use crate::error::{ModelError, Result};

pub struct GgufFile {
    pub path: PathBuf,
    mmap: Arc<Mmap>,
    pub content: Content,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the file is opened read-only and only read through the map; a file changed
        // underneath a running evaluation is outside what any loader can defend against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        if mmap.len() < 8 || &mmap[..4] != b"GGUF" {
            return Err(ModelError::corrupt(path, "not a GGUF file (it does not start with the bytes `GGUF`)"));
        }
        let content = Content::read(&mut Cursor::new(&mmap[..]))
            .map_err(|e| ModelError::corrupt(path, format!("unreadable GGUF header: {e}")))?;
        let g = GgufFile { path: path.to_path_buf(), mmap: Arc::new(mmap), content };
        g.check_tensor_bounds()?;
        Ok(g)
    }

    /// Every tensor's bytes must lie inside the file: a truncated download fails here, by name.
    fn check_tensor_bounds(&self) -> Result<()> {
        let data_start = self.content.tensor_data_offset as usize;
        for (name, info) in &self.content.tensor_infos {
            // Checked arithmetic: a crafted shape's element count overflows (found by fuzzing),
            // and a wrapped count would pass the bounds check below.
            let overflow = || ModelError::corrupt(&self.path, format!("tensor `{name}`: its shape {:?} or offset is too large for any file", info.shape.dims()));
            let elems = info.shape.dims().iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(overflow)?;
            let block = info.ggml_dtype.block_size();
            if elems % block != 0 {
                return Err(ModelError::corrupt(&self.path, format!("tensor `{name}`: {elems} elements is not a whole number of {block}-element blocks")));
            }
            let bytes = (elems / block).checked_mul(info.ggml_dtype.type_size()).ok_or_else(overflow)?;
            let end = data_start.checked_add(info.offset as usize).and_then(|e| e.checked_add(bytes)).ok_or_else(overflow)?;
            if end > self.mmap.len() {
                return Err(ModelError::corrupt(
                    &self.path,
                    format!(
                        "truncated: tensor `{name}` ends at byte {end} but the file has {} bytes (an incomplete download? check its sha256)",
                        self.mmap.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn missing(&self, key: &str) -> ModelError {
        ModelError::corrupt(&self.path, format!("metadata key `{key}` is missing or has the wrong type"))
    }

    pub fn string(&self, key: &str) -> Result<&str> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(self.missing(key)),
        }
    }

    /// An integer of any width.
    pub fn int(&self, key: &str) -> Result<i64> {
        self.get(key).and_then(value_int).ok_or_else(|| self.missing(key))
    }

    pub fn opt_int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(value_int)
    }

    pub fn float(&self, key: &str) -> Result<f64> {
        match self.get(key) {
            Some(Value::F32(v)) => Ok(f64::from(*v)),
            Some(Value::F64(v)) => Ok(*v),
            Some(v) => value_int(v).map(|i| i as f64).ok_or_else(|| self.missing(key)),
            None => Err(self.missing(key)),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    pub fn string_array(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.missing(key)),
                })
                .collect(),
            _ => Err(self.missing(key)),
        }
    }

    pub fn int_array(&self, key: &str) -> Result<Vec<i64>> {
        match self.get(key) {
            Some(Value::Array(items)) => items.iter().map(|v| value_int(v).ok_or_else(|| self.missing(key))).collect(),
            _ => Err(self.missing(key)),
        }
    }

    pub fn architecture(&self) -> Result<&str> {
        self.string("general.architecture")
    }

    /// The file's vocabulary (`tokenizer.ggml.*`), as stored: what [`tokenizer`](Self::tokenizer)
    /// builds from. A required entry that is missing or mistyped is an error naming its key.
    pub fn vocab(&self) -> Result<GgufVocab> {
        let model = self.string("tokenizer.ggml.model")?.to_string();
        let architecture = self.architecture()?.to_string();
        let pre = self.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned();
        let tokens = self.string_array("tokenizer.ggml.tokens")?;
        let id = |key: &str| self.opt_int(key).and_then(|i| u32::try_from(i).ok());
        Ok(GgufVocab {
            path: self.path.clone(),
            architecture,
            model,
            pre,
            tokens,
            types: self.int_array("tokenizer.ggml.token_type").unwrap_or_default(),
            merges: self.string_array("tokenizer.ggml.merges").ok(),
            scores: match self.get("tokenizer.ggml.scores") {
                Some(Value::Array(v)) => v.iter().map(|x| x.to_f32().unwrap_or(0.0)).collect(),
                _ => Vec::new(),
            },
            bos_id: id("tokenizer.ggml.bos_token_id"),
            eos_id: id("tokenizer.ggml.eos_token_id"),
            unknown_id: id("tokenizer.ggml.unknown_token_id"),
            padding_id: id("tokenizer.ggml.padding_token_id"),
            add_bos: self.opt_bool("tokenizer.ggml.add_bos_token"),
        })
    }

    /// The tokenizer transformers builds from this file's vocabulary.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Ok(Tokenizer::from_gguf(&self.vocab()?)?)
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// A tensor's bytes as stored, borrowed from the file's map (no copy; bounds were checked
    /// when the file was opened).
    pub fn tensor_bytes(&self, name: &str) -> Option<MappedBytes> {
        let info = self.content.tensor_infos.get(name)?;
        let start = self.content.tensor_data_offset as usize + info.offset as usize;
        let len = info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        Some(MappedBytes { map: Arc::clone(&self.mmap), start, len })
    }

    /// Rows `from..from + rows` of a 2-D tensor's bytes as stored (a row is whole blocks).
    pub fn tensor_row_bytes(&self, name: &str, from: usize, rows: usize) -> Option<MappedBytes> {
        let info = self.content.tensor_infos.get(name)?;
        let (n, cols) = info.shape.dims2().ok()?;
        let row = cols / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let all = self.tensor_bytes(name)?;
        (from + rows <= n).then(|| MappedBytes { start: all.start + from * row, len: rows * row, map: all.map })
    }

    /// The first `rows` rows of a 2-D tensor, dequantized (a look at a large matrix without
    /// reading it all).
    pub fn rows_f32(&self, name: &str, rows: usize) -> Result<Vec<f32>> {
        let info = self.content.tensor_infos.get(name).ok_or_else(|| ModelError::corrupt(&self.path, format!("tensor `{name}` is missing")))?;
        let (n, cols) = info.shape.dims2().map_err(|e| ModelError::corrupt(&self.path, format!("tensor `{name}`: {e}")))?;
        let rows = rows.min(n);
        let dtype = info.ggml_dtype;
        let len = rows * cols / dtype.block_size() * dtype.type_size();
        let bytes = self.tensor_bytes(name).expect("the tensor is there");
        let part = candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &bytes.as_ref()[..len], vec![rows, cols], &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| ModelError::corrupt(&self.path, format!("tensor `{name}`: {e}")))?;
        Ok(part)
    }

    /// A tensor as stored (quantized or not).
    pub fn qtensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(ModelError::corrupt(&self.path, format!("tensor `{name}` is missing")));
        }
        self.content
            .tensor(&mut Cursor::new(&self.mmap[..]), name, device)
            .map_err(|e| ModelError::corrupt(&self.path, format!("tensor `{name}`: {e}")))
    }
}

fn value_int(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => i64::from(*x),
        Value::I8(x) => i64::from(*x),
        Value::U16(x) => i64::from(*x),
        Value::I16(x) => i64::from(*x),
        Value::U32(x) => i64::from(*x),
        Value::I32(x) => i64::from(*x),
        Value::U64(x) => i64::try_from(*x).ok()?,
        Value::I64(x) => *x,
        _ => return None,
    })
}

/// A byte range of a memory-mapped file, kept alive with the map.
pub struct MappedBytes {
    map: Arc<Mmap>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for MappedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len]
    }
}
