//! One file per architecture, over the shared layers in `crate::layers`.

pub mod gemma3;
pub mod llama;
