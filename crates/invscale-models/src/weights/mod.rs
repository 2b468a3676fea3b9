//! Where a model's weights come from and how they are read: `--model` resolved to a file or
//! folder ([`source`]), GGUF files ([`gguf`]: header, metadata, tensors, the tokenizer's
//! vocabulary; [`gguf_weights`]: tensors as layers), Hugging Face checkpoints ([`checkpoint`]:
//! `config.json` and safetensors), the run's [`precision`], and the direct safetensors upload to
//! a GPU ([`cuda_upload`]).

pub mod checkpoint;
#[cfg(feature = "cuda")]
pub mod cuda_upload;
pub mod file_tensors;
pub mod gguf;
pub mod gguf_weights;
pub mod params;
pub mod precision;
pub mod source;
