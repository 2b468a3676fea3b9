//! invscale as a library: evaluate a list of models on a list of tasks with one call, and turn
//! the results into lm-eval's files or a scaling report. The `invscale` command line is a thin
//! shell over this crate.
//!
//! ```no_run
//! use invscale_harness::{ModelRequest, Options, Silent, TaskSet, evaluate};
//! # fn main() -> Result<(), invscale_harness::HarnessError> {
//! let data = invscale_tasks::DataOptions::from_env(vec!["../shared/data/inverse_scaling".into()]);
//! let tasks = TaskSet::load("neqa,memo_trap", &data, &mut Silent)?;
//! let models = [ModelRequest::cpu("SmolLM2-135M-Instruct.Q4_1.gguf")];
//! for run in evaluate(&models, &tasks, &Options::default(), &mut Silent)? {
//!     for r in &run.results {
//!         println!("{} {}: {:?}", run.model.name, r.task, r.metrics);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! - [`tasks`]: the tasks of a `--tasks` value with their data ([`TaskSet`]);
//! - [`models`]: a model to load ([`ModelRequest`]), loaded on one or more devices;
//! - [`evaluate`](mod@evaluate): the runs, each model's finished requests from its score cache
//!   ([`cache`]), progress reported to an [`Observer`] ([`console`] draws it on a terminal);
//! - [`run_files`]: a run as lm-eval's results and samples files;
//! - [`family`] and [`scaling`]: a model family and its scaling report.

pub mod cache;
pub mod console;
pub mod error;
pub mod evaluate;
pub mod family;
pub mod info;
pub mod models;
pub mod observer;
pub mod run_files;
pub mod scaling;
pub mod server;
pub mod stored;
pub mod tasks;
pub mod text;

pub use error::HarnessError;
pub use evaluate::{ModelRun, Options, evaluate, evaluate_model};
pub use info::ModelInfo;
pub use models::{LoadedModel, ModelRequest};
pub use observer::{Observer, Silent};
pub use tasks::TaskSet;
