//! What a long evaluation tells as it goes: lines worth printing, warnings, and each task's
//! progress. The command line draws them on standard error ([`crate::console`]); a library user
//! may log them, show them elsewhere, or ignore them ([`Silent`]).

use invscale_eval::{Progress, TaskResult};

pub trait Observer {
    /// A line about the run: a model loaded, a cache opened, a summary.
    fn note(&mut self, _line: &str) {}
    /// Something the user should know that did not stop the work (a task skipped for want of
    /// data, a damaged cache entry recomputed).
    fn warning(&mut self, _message: &str) {}
    fn task_started(&mut self, _task: &str, _documents: usize) {}
    /// After each document.
    fn progress(&mut self, _progress: &Progress) {}
    fn task_finished(&mut self, _result: &TaskResult) {}
    /// Where a server backend's lines go as it works (its progress within a batch, retries),
    /// from its request threads; `None`: nowhere.
    fn server_lines(&self) -> Option<Box<dyn Fn(&str) + Send + Sync>> {
        None
    }
}

/// Tells nothing.
pub struct Silent;

impl Observer for Silent {}
