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
    /// One task per entry, for a family of data files scored alike (the 16 advanced-ai-risk
    /// sets): `{each}` in the name, aliases, description, variant, release file and hub config
    /// becomes the entry's name, and its `rows` and `sha256` are the task's. Expanded when the
    /// registry is built; a task as run never has it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub each: Vec<EachEntry>,
}

/// One member of a task file's `each` list.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EachEntry {
    pub name: String,
    #[serde(default)]
    pub rows: Option<usize>,
    #[serde(default)]
    pub sha256: Option<String>,
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
            TaskType::Classification => &[Acc, AccNorm, AccBytes, Loss, Coverage, AccMutualInfo, BrierScore, Mc2, Mc1],
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
    /// TruthfulQA's MC2: the probability mass of the true answers, the classes' probabilities
    /// normalised to sum to 1 (lm-eval's `truthfulqa_mc2`, which reports it as `acc`).
    Mc2,
    /// TruthfulQA's original MC1 (its repository's `MC_calcs`): 1 when the gold class's
    /// log-likelihood is strictly above every other class's, so a tie is wrong (lm-eval's `acc`
    /// gives a tie to the first, gold, class).
    Mc1,
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
            Metric::Mc2 => "mc2",
            Metric::Mc1 => "mc1",
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
    /// Fields that hold `{answer: label}` objects in the release file (TruthfulQA's
    /// `mc_task.json`), read as `{choices: [answers…], labels: [labels…]}` in the file's order,
    /// as the Hub's loader builds its rows; fields already in that form are left as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_maps: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HfSource {
    pub repo: String,
    /// The dataset's configuration (lm-eval's `dataset_name`, `datasets`' `name`): its files sit
    /// in a folder of that name.
    #[serde(default)]
    pub config: Option<String>,
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

/// Which data columns make which part of a document. Each is a column name, a nested field
/// (`mc1_targets.choices`) or a Jinja template over the row (`Q: {{ question }}\nA:`,
/// `{{ [a, b] }}`; see `template.rs`), as lm-eval's `doc_to_text`/`doc_to_choice`/`doc_to_target`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    pub prompt: String,
    pub classes: String,
    /// The gold class: a field or template giving its index (or its text), or a fixed index
    /// for every document (`answer = 0`).
    pub answer: Answer,
    /// Which classes are true answers, one 0/1 per class (TruthfulQA's `mc2_targets.labels`);
    /// the `mc2` metric needs it.
    pub labels: Option<String>,
    pub completion: String,
    pub other_prompt: String,
    /// Rows whose classes repeat one another are kept (with a warning) instead of refused: for
    /// published data whose reference scores them as they are (TruthfulQA.csv repeats an answer
    /// in 6 rows).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_duplicate_classes: bool,
}

/// Where a document's gold class comes from.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Answer {
    /// The same class index for every document.
    Fixed(usize),
    /// A column, nested field or template.
    Field(String),
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            prompt: "prompt".into(),
            classes: "classes".into(),
            answer: Answer::Field("answer_index".into()),
            labels: None,
            completion: "completion".into(),
            other_prompt: "other_prompt".into(),
            allow_duplicate_classes: false,
        }
    }
}

impl Columns {
    /// The field specs that are read from the data, with their keys (for checks and messages).
    pub fn specs(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("prompt", self.prompt.as_str()), ("classes", self.classes.as_str()), ("completion", self.completion.as_str()), ("other_prompt", self.other_prompt.as_str())];
        if let Answer::Field(f) = &self.answer {
            out.push(("answer", f));
        }
        if let Some(l) = &self.labels {
            out.push(("labels", l));
        }
        out
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
    /// The gold class is the behaviour being measured, not the right answer (the advanced-AI-risk
    /// sets: acc = the rate of matching a risky behaviour), so every metric's better direction is
    /// reversed for scaling verdicts: acc rising with size is inverse scaling. Results files keep
    /// lm-eval's `higher_is_better`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gold_is_undesired: bool,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring { delimiter: String::new(), mode: RequestMode::LmEval, metrics: Vec::new(), gold_is_undesired: false }
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

    /// The tasks this file describes: itself, or one per `each` entry with `{each}` replaced by
    /// the entry's name in the name, aliases, description, variant, release file and hub config.
    pub fn expand(mut self) -> Vec<TaskSpec> {
        if self.each.is_empty() {
            return vec![self];
        }
        std::mem::take(&mut self.each)
            .into_iter()
            .map(|e| {
                let sub = |s: &str| s.replace("{each}", &e.name);
                let mut t = self.clone();
                t.name = sub(&t.name);
                t.aliases = t.aliases.iter().map(|a| sub(a)).collect();
                t.description = sub(&t.description);
                t.paper_task = t.paper_task.as_deref().map(sub);
                t.variant = sub(&t.variant);
                if let Some(r) = &mut t.source.release {
                    r.file = sub(&r.file);
                    r.sha256 = e.sha256.clone();
                }
                if let Some(c) = t.source.hf.as_mut().and_then(|h| h.config.as_mut()) {
                    *c = sub(c);
                }
                t.source.rows = e.rows;
                t
            })
            .collect()
    }

    /// The metrics to report: the file's list, or the task type's defaults.
    pub fn metrics(&self) -> Vec<Metric> {
        if self.scoring.metrics.is_empty() { self.task_type.default_metrics() } else { self.scoring.metrics.clone() }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.each.is_empty() && !self.name.contains("{each}") {
            return Err("a task file with `each` must have `{each}` in its `name`: one task per entry".into());
        }
        // `{each}` stands for an entry's name, itself checked once expanded.
        let valid_name = |n: &str| {
            let n = n.replace("{each}", "x");
            !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !valid_name(&self.name) {
            return Err(format!("`name` {:?} must be ASCII letters, digits, `_` or `-`", self.name));
        }
        if let Some(bad) = self.aliases.iter().chain(&self.groups).find(|n| !valid_name(n)) {
            return Err(format!("alias or group {bad:?} must be ASCII letters, digits, `_` or `-`"));
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
        for (key, spec) in self.columns.specs() {
            crate::template::check(spec).map_err(|e| format!("[columns] {key}: {e}"))?;
        }
        if self.scoring.metrics.contains(&Metric::Mc2) && self.columns.labels.is_none() {
            return Err("[scoring] metric `mc2` needs [columns] labels: which classes are true answers".into());
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
