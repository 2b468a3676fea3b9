//! Scoring on an inference server: the engine's [`Scorer`](invscale_eval::Scorer) over HTTP.
//!
//! invscale builds every request itself, with the model's own tokenizer read locally (lm-eval's
//! context/continuation split, the BOS policy, truncation), and asks the server only for the
//! log-probs of given tokens ([`api`]: per engine the best correct request, shared/docs/SERVERS.md
//! §3). Before any scoring, [`check`] makes sure the server's numbers can be trusted; a server that
//! fails is refused with the reason. [`scorer`] keeps many requests in flight and records every
//! answer as it comes; [`http`] retries what a busy or restarting server answers.
//!
//! - [`server`]: connecting, finding the API and the model;
//! - [`api`]: vLLM, SGLang, TGI, OpenAI-compatible (llama-cpp-python) requests and parsers;
//! - [`check`]: the self-check;
//! - [`scorer`]: [`ServerScorer`].

pub mod api;
pub mod check;
pub mod http;
pub mod report;
pub mod scorer;
pub mod server;

pub use api::ApiKind;
pub use check::self_check;
pub use report::CheckReport;
pub use scorer::ServerScorer;
pub use server::{Server, ServerError, ServerOptions};
