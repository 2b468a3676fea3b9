//! The scoring engine: requests built as lm-eval and the prize built them, scored by a [`Scorer`] (the in-process model, or a server) with
//! each distinct context run once, metrics and aggregates, and a cache that makes runs resumable.

pub mod cache;
pub mod encode;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod scorer;

pub use cache::{ScoreCache, fingerprint};
pub use engine::{Counts, DocResult, Progress, RequestResult, RunSettings, TaskPlan, TaskResult, plan_task, run_task, run_task_on, run_tasks_on, score_task_on};
pub use error::EvalError;
pub use metrics::{Aggregate, DocScores};
pub use scorer::{ContinuationScore, Pass, Scorer};
