//! The task file: a declarative description of one task (TOML, data only).
//!
//! Unknown keys are errors, so a misspelt key never silently changes how a task is scored, and
//! nothing in a task file can name code to run.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The name users type (`--tasks`); lm-eval's name where lm-eval has the task.
    pub name: String,
    /// Other accepted names (short forms).
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The task's name in the paper (several variants can share one).
    #[serde(default)]
    pub paper_task: Option<String>,
    /// One sentence: what the task evaluates.
    pub description: String,
    /// One sentence: what this variant is, and what it adds or changes.
    #[serde(default)]
    pub variant: String,
    /// The paper's cause of inverse scaling; absent for tasks that are not prize tasks.
    #[serde(default)]
    pub cause: Option<Cause>,
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// Whether this is the main variant of its paper task.
    #[serde(default = "yes")]
    pub main: bool,
    /// Published setups this variant reproduces (names from `_groups.toml`'s `[[setup]]`).
    #[serde(default)]
    pub matches: Vec<String>,
    #[serde(default)]
    pub version: u32,
    pub source: Source,
    #[serde(default)]
    pub columns: Columns,
    #[serde(default)]
    pub scoring: Scoring,
}

fn yes() -> bool {
    true
}

/// The paper's four causes of inverse scaling (McKenzie et al. 2023, §4).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// (i) Strong prior: repeating memorised sequences over following instructions.
    StrongPrior,
    /// (ii) Unwanted imitation of patterns in the training data.
    UnwantedImitation,
    /// (iii) An easy distractor task the model does instead of the real one.
    DistractorTask,
    /// (iv) Correct but misleading few-shot demonstrations.
    SpuriousFewShot,
}

impl Cause {
    pub fn label(self) -> &'static str {
        match self {
            Cause::StrongPrior => "strong prior",
            Cause::UnwantedImitation => "unwanted imitation",
            Cause::DistractorTask => "distractor task",
            Cause::SpuriousFewShot => "spurious few-shot",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// Choose among classes by log-likelihood.
    Classification,
    /// Loss of a fixed completion (prompt injection).
    SequenceProb,
    /// Change in log-odds of two single-token classes between two prompts.
    Logodds,
    /// Absolute change in log-odds.
    AbsoluteLogodds,
}

impl TaskType {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Classification => "classification",
            TaskType::SequenceProb => "sequence_prob",
            TaskType::Logodds => "logodds",
            TaskType::AbsoluteLogodds => "absolute_logodds",
        }
    }
    pub fn allowed_metrics(self) -> &'static [Metric] {
        use Metric::*;
        match self {
            TaskType::Classification => &[Acc, AccNorm, AccBytes, Loss, Coverage, AccMutualInfo, BrierScore],
            TaskType::SequenceProb => &[Loss, Perplexity],
            TaskType::Logodds | TaskType::AbsoluteLogodds => &[Logodds],
        }
    }
    pub fn default_metrics(self) -> Vec<Metric> {
        match self {
            TaskType::Classification => vec![Metric::Acc, Metric::AccNorm],
            TaskType::SequenceProb => vec![Metric::Loss],
            TaskType::Logodds | TaskType::AbsoluteLogodds => vec![Metric::Logodds],
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metrics a task can report (SCORING.md §3).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Acc,
    AccNorm,
    AccBytes,
    Loss,
    Coverage,
    AccMutualInfo,
    BrierScore,
    Perplexity,
    Logodds,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::AccNorm => "acc_norm",
            Metric::AccBytes => "acc_bytes",
            Metric::Loss => "loss",
            Metric::Coverage => "coverage",
            Metric::AccMutualInfo => "acc_mutual_info",
            Metric::BrierScore => "brier_score",
            Metric::Perplexity => "perplexity",
            Metric::Logodds => "logodds",
        }
    }

    /// The metrics a run adds to its tasks' own (`--metrics acc_bytes,loss`): blanks skipped, an
    /// unknown name an error that lists the known ones.
    pub fn parse_extra(names: &[String]) -> Result<Vec<Metric>, String> {
        const EXTRA: &[Metric] = &[Metric::Acc, Metric::AccNorm, Metric::AccBytes, Metric::Loss, Metric::Coverage, Metric::BrierScore, Metric::AccMutualInfo, Metric::Perplexity];
        names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| {
                EXTRA.iter().copied().find(|m| m.as_str() == n).ok_or_else(|| {
                    let known: Vec<&str> = EXTRA.iter().map(|m| m.as_str()).collect();
                    format!("--metrics: unknown metric `{n}` (known: {})", known.join(", "))
                })
            })
            .collect()
    }
}

/// Where a task's data comes from. At least one of `hf`, `release`, `path`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Documents in the published data (checked when loading; a mismatch is a warning).
    #[serde(default)]
    pub rows: Option<usize>,
    #[serde(default)]
    pub hf: Option<HfSource>,
    /// The prize data release's file for this task.
    #[serde(default)]
    pub release: Option<ReleaseSource>,
    /// A local data file (user tasks); relative paths are relative to the task file.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HfSource {
    pub repo: String,
    pub split: String,
    #[serde(default = "main_revision")]
    pub revision: String,
}

fn main_revision() -> String {
    "main".into()
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSource {
    pub file: String,
    /// sha256 of the official file; a local copy that differs is reported.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Which data columns hold which part of a document.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    pub prompt: String,
    pub classes: String,
    pub answer: String,
    pub completion: String,
    pub other_prompt: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            prompt: "prompt".into(),
            classes: "classes".into(),
            answer: "answer_index".into(),
            completion: "completion".into(),
            other_prompt: "other_prompt".into(),
        }
    }
}

/// How requests are built and what is reported.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Scoring {
    /// Put between prompt and class (lm-eval's `target_delimiter`).
    pub delimiter: String,
    pub mode: RequestMode,
    /// Empty means the task type's defaults.
    pub metrics: Vec<Metric>,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring { delimiter: String::new(), mode: RequestMode::LmEval, metrics: Vec::new() }
    }
}

/// Which published request construction to reproduce (SCORING.md §2).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RequestMode {
    /// lm-eval's context/continuation split, left truncation.
    #[default]
    LmEval,
    /// The prize pipeline: class = last tokens of prompt + class, right truncation.
    Prize,
}

impl RequestMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestMode::LmEval => "lm-eval",
            RequestMode::Prize => "prize",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct SpecError {
    pub path: PathBuf,
    pub message: String,
}

impl TaskSpec {
    /// This task's columns and rules, reading `path` instead of its own data (`--as TASK`).
    pub fn reading(&self, path: &Path) -> TaskSpec {
        TaskSpec { source: Source { path: Some(path.into()), ..self.source.clone() }, ..self.clone() }
    }

    /// Parses and checks a task file's text. `path` is used in messages and to resolve a
    /// relative `source.path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<TaskSpec, SpecError> {
        let err = |message: String| SpecError { path: path.to_path_buf(), message };
        let mut spec: TaskSpec = toml::from_str(text).map_err(|e| err(toml_error(text, &e)))?;
        if let Some(p) = &spec.source.path
            && p.is_relative()
            && let Some(dir) = path.parent()
        {
            spec.source.path = Some(dir.join(p));
        }
        spec.check().map_err(err)?;
        Ok(spec)
    }

    /// The metrics to report: the file's list, or the task type's defaults.
    pub fn metrics(&self) -> Vec<Metric> {
        if self.scoring.metrics.is_empty() { self.task_type.default_metrics() } else { self.scoring.metrics.clone() }
    }

    fn check(&self) -> Result<(), String> {
        let valid_name = |n: &str| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        };
        if !valid_name(&self.name) {
            return Err(format!("`name` {:?} must be lowercase letters, digits, `_` or `-`", self.name));
        }
        if let Some(bad) = self.aliases.iter().chain(&self.groups).find(|n| !valid_name(n)) {
            return Err(format!("alias or group {bad:?} must be lowercase letters, digits, `_` or `-`"));
        }
        if self.description.trim().is_empty() {
            return Err("`description` is empty: say in one sentence what the task evaluates".into());
        }
        let s = &self.source;
        if s.hf.is_none() && s.release.is_none() && s.path.is_none() {
            return Err("[source] names no data: give `path`, `hf = { repo, split }` or `release = { file }`".into());
        }
        if let Some(hf) = &s.hf
            && (hf.repo.split('/').count() != 2 || hf.repo.split('/').any(str::is_empty))
        {
            return Err(format!("[source] hf.repo {:?} must be `org/name`", hf.repo));
        }
        for metric in &self.scoring.metrics {
            if !self.task_type.allowed_metrics().contains(metric) {
                let allowed: Vec<_> = self.task_type.allowed_metrics().iter().map(|m| m.as_str()).collect();
                return Err(format!(
                    "[scoring] metric `{}` does not apply to a {} task (allowed: {})",
                    metric.as_str(),
                    self.task_type,
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// A TOML error with its line, in the form `line N: message`.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}
