//! One file per architecture, over the shared layers in `crate::layers`.

pub mod gemma3;
pub mod gpt2;
pub mod gpt_neox;
pub mod llama;
pub mod opt;
