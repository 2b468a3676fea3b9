//! An [`Observer`] for a terminal or a log: notes and warnings on standard error, and each
//! task's progress as a redrawn bar with ETA and tokens/s on a terminal, plain lines (every 10%
//! or 30 s) otherwise, so logs of batch jobs stay readable.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use invscale_eval::{Counts, Progress, TaskResult};

use crate::observer::Observer;

/// Prints everything to standard error.
#[derive(Default)]
pub struct Console {
    bar: Option<ProgressLine>,
}

impl Observer for Console {
    fn note(&mut self, line: &str) {
        eprintln!("{line}");
    }
    fn warning(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }
    fn task_started(&mut self, task: &str, documents: usize) {
        self.bar = Some(ProgressLine::new(task, documents));
    }
    fn progress(&mut self, p: &Progress) {
        if let Some(bar) = &mut self.bar {
            bar.update(p.done, p.counts);
        }
    }
    fn task_finished(&mut self, result: &TaskResult) {
        if let Some(mut bar) = self.bar.take() {
            bar.finish(result.counts);
        }
    }
    fn server_lines(&self) -> Option<Box<dyn Fn(&str) + Send + Sync>> {
        let terminal = std::io::stderr().is_terminal();
        // On a terminal the line clears the progress bar's, which the next update redraws.
        Some(Box::new(move |line| if terminal { eprintln!("\r\x1b[2K{line}") } else { eprintln!("{line}") }))
    }
}

struct ProgressLine {
    task: String,
    total: usize,
    started: Instant,
    last_draw: Instant,
    last_tenth: usize,
    terminal: bool,
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 { format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) } else { format!("{}:{:02}", s / 60, s % 60) }
}

impl ProgressLine {
    pub fn new(task: &str, total: usize) -> ProgressLine {
        let now = Instant::now();
        ProgressLine {
            task: task.to_string(),
            total,
            started: now,
            last_draw: now - Duration::from_secs(60),
            last_tenth: 0,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn line(&self, done: usize, counts: Counts) -> String {
        let elapsed = self.started.elapsed();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let tok_s = counts.tokens_computed as f64 / secs;
        // ETA from the documents computed in this run (cached ones cost nothing).
        let eta = if done > 0 && done < self.total {
            clock(Duration::from_secs_f64(secs / done as f64 * (self.total - done) as f64))
        } else {
            "-".into()
        };
        let cached = if counts.cached > 0 { format!(", {} requests from cache", counts.cached) } else { String::new() };
        format!(
            "{}: {done}/{} documents, {} elapsed, ETA {eta}, {tok_s:.0} tokens/s{cached}",
            self.task,
            self.total,
            clock(elapsed)
        )
    }

    pub fn update(&mut self, done: usize, counts: Counts) {
        if self.terminal {
            if self.last_draw.elapsed() < Duration::from_millis(100) && done < self.total {
                return;
            }
            self.last_draw = Instant::now();
            let width = 24;
            let filled = if self.total == 0 { width } else { done * width / self.total };
            let bar = format!("[{}{}]", "=".repeat(filled), " ".repeat(width - filled));
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{bar} {}", self.line(done, counts));
            let _ = err.flush();
        } else {
            let tenth = if self.total == 0 { 10 } else { done * 10 / self.total };
            if tenth > self.last_tenth || self.last_draw.elapsed() >= Duration::from_secs(30) {
                self.last_tenth = tenth;
                self.last_draw = Instant::now();
                eprintln!("{}", self.line(done, counts));
            }
        }
    }

    pub fn finish(&mut self, counts: Counts) {
        if self.terminal {
            eprintln!();
        }
        eprintln!(
            "{}: done in {}: {} requests ({} computed, {} from the score cache), {} tokens computed",
            self.task,
            clock(self.started.elapsed()),
            counts.requests,
            counts.computed,
            counts.cached,
            counts.tokens_computed
        );
    }
}
