//! Scaling analysis: how a task's metrics move across models of increasing size, with trend
//! verdicts that carry their evidence, and the documents where inverse scaling happens.

pub mod flips;
pub mod trend;

pub use trend::{Options, Trend, Verdict, classify};
