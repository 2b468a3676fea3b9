//! One file per architecture, over the shared layers of [`crate::layers`]; each implements
//! [`causal_lm::CausalLm`], and none imports the loader (`crate::load` picks the architecture).

pub mod causal_lm;
pub mod gemma3;
pub mod gpt2;
pub mod gpt_neox;
pub mod llama;
pub mod olmo2;
pub mod opt;
