//! A scaling report: every model of a family on every task, the trend verdict of each metric, and
//! the documents where inverse scaling happens. It is built once and rendered as JSON, markdown,
//! plots and a self-contained HTML page.

use serde::Serialize;
use serde_json::{Value, json};

use crate::flips::Flip;
use crate::trend::{Options, Trend, Verdict, human_params};

/// What "size" means on the trend's axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    Parameters,
    TrainingTokens,
    TrainingFlops,
}

impl Axis {
    pub fn label(self) -> &'static str {
        match self {
            Axis::Parameters => "parameters",
            Axis::TrainingTokens => "training tokens",
            Axis::TrainingFlops => "training FLOPs",
        }
    }

    /// A tick or table value on this axis: `1.5B` parameters, `2e12` tokens.
    pub fn format(self, size: f64) -> String {
        match self {
            Axis::Parameters => human_params(size).replace(".0B", "B").replace(".0T", "T"),
            _ => format!("{size:.1e}").replace(".0e", "e").replace("e+", "e"),
        }
    }
}

/// One model of the family.
#[derive(Clone, Debug, Serialize)]
pub struct ModelPoint {
    pub name: String,
    /// Models of one family are joined by a line in the plots.
    pub family: String,
    pub parameters: u64,
    /// Without embeddings and an untied output head (0 where unknown: a size from the family file).
    pub non_embedding_parameters: u64,
    /// The size on the report's axis.
    pub size: f64,
    /// Where its scores came from: `in-process (f32)`, or the server (address, API, model).
    pub scored_by: String,
}

/// One metric of one task across the models.
#[derive(Clone, Debug, Serialize)]
pub struct MetricSeries {
    pub metric: String,
    pub higher_is_better: bool,
    /// Per model, in the report's order: the mean and its standard error.
    pub values: Vec<f64>,
    pub stderrs: Vec<Option<f64>>,
    /// What guessing uniformly among the classes scores (accuracy: mean 1/k; loss: mean ln k).
    pub chance: Option<f64>,
    pub verdict: Verdict,
}

/// A document right at the smallest model and wrong at the largest, with what it asked.
#[derive(Clone, Debug, Serialize)]
pub struct FlipDoc {
    pub doc_id: usize,
    pub prompt: String,
    pub classes: Vec<String>,
    pub gold: usize,
    /// Per model, in the report's order: whether it was right.
    pub correct: Vec<bool>,
    /// How far the gold class's loss rose from the smallest to the largest model (nats).
    pub loss_increase: f64,
}

impl FlipDoc {
    pub fn new(flip: &Flip, doc_id: usize, prompt: &str, classes: &[String], gold: usize) -> FlipDoc {
        FlipDoc {
            doc_id,
            prompt: prompt.to_string(),
            classes: classes.to_vec(),
            gold,
            correct: flip.correct.clone(),
            loss_increase: flip.loss_increase,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TaskScaling {
    pub task: String,
    pub documents: usize,
    pub metrics: Vec<MetricSeries>,
    /// How many documents flip from right to wrong, and the first of them by rank.
    pub flips_total: usize,
    pub flips: Vec<FlipDoc>,
}

impl TaskScaling {
    pub fn metric(&self, name: &str) -> Option<&MetricSeries> {
        self.metrics.iter().find(|m| m.metric == name)
    }

    /// The task's name without the suite's prefix, for titles.
    pub fn short_name(&self) -> &str {
        self.task.strip_prefix("inverse_scaling_").unwrap_or(&self.task)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub task: String,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct ScalingReport {
    /// The command line that made it (shown in the report so it can be rerun).
    pub command: String,
    pub axis: Axis,
    /// In order of size, smallest first; every series follows this order.
    pub models: Vec<ModelPoint>,
    pub bootstrap: Options,
    pub tasks: Vec<TaskScaling>,
    pub skipped: Vec<Skipped>,
}

impl ScalingReport {
    /// The prize's one question of a candidate dataset, answered first: does task `t` show
    /// inverse scaling (on loss, else its first metric)?
    pub fn prize_verdict(&self, t: usize, dataset: &str) -> Option<String> {
        let task = &self.tasks[t];
        let s = task.metric("loss").or_else(|| task.metrics.first())?;
        let inverse = s.verdict.trend == Trend::Inverse;
        let answer = if inverse { "INVERSE SCALING" } else { "no inverse scaling shown" };
        Some(format!("verdict: {answer} on {dataset} ({}: {}) — {}", s.metric, s.verdict.trend.label(), s.verdict.evidence))
    }

    /// The families in order of their smallest model, each with its members' indices.
    pub fn families(&self) -> Vec<(&str, Vec<usize>)> {
        let mut out: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, m) in self.models.iter().enumerate() {
            match out.iter_mut().find(|(f, _)| *f == m.family) {
                Some((_, members)) => members.push(i),
                None => out.push((&m.family, vec![i])),
            }
        }
        out
    }

    /// `scaling.json`: per task, each model's metrics, each metric's verdict, the flips.
    pub fn to_json(&self) -> Value {
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .map(|t| {
                json!({
                    "task": t.task,
                    "documents": t.documents,
                    "models": self.models.iter().enumerate().map(|(i, m)| json!({
                        "model": m.name,
                        "family": m.family,
                        "parameters": m.parameters,
                        "non_embedding_parameters": m.non_embedding_parameters,
                        "size": m.size,
                        "scored_by": m.scored_by,
                        "metrics": t.metrics.iter().map(|s| (s.metric.clone(), json!({"value": s.values[i], "stderr": s.stderrs[i]}))).collect::<serde_json::Map<_, _>>(),
                    })).collect::<Vec<_>>(),
                    "chance": t.metrics.iter().map(|s| (s.metric.clone(), json!(s.chance))).collect::<serde_json::Map<_, _>>(),
                    "verdicts": t.metrics.iter().map(|s| (s.metric.clone(), serde_json::to_value(&s.verdict).unwrap())).collect::<serde_json::Map<_, _>>(),
                    "flips_total": t.flips_total,
                    "flips": t.flips,
                })
            })
            .collect();
        json!({
            "command": self.command,
            "axis": self.axis,
            "models": self.models,
            "bootstrap": {"resamples": self.bootstrap.resamples, "level": self.bootstrap.level, "seed": self.bootstrap.seed},
            "tasks": tasks,
            "skipped": self.skipped,
        })
    }

    /// `scaling.md`, also what `invscale scale` prints.
    pub fn to_markdown(&self, flips_shown: usize) -> String {
        let mut md = String::new();
        for t in &self.tasks {
            md += &format!("## {} ({} documents)\n\n| model | {} |", t.task, t.documents, self.axis.label());
            for s in &t.metrics {
                md += &format!(" {} |", s.metric);
            }
            md += &format!("\n|---|---:|{}\n", "---:|".repeat(t.metrics.len()));
            for (i, m) in self.models.iter().enumerate() {
                md += &format!("| {} | {} |", m.name, self.axis.format(m.size));
                for s in &t.metrics {
                    md += &format!(" {:.4} ± {:.4} |", s.values[i], s.stderrs[i].unwrap_or(f64::NAN));
                }
                md += "\n";
            }
            md += "\n";
            for s in &t.metrics {
                let v = &s.verdict;
                md += &format!("- **{}: {}** (confidence {:.2}): {}\n", s.metric, v.trend.label(), v.confidence, v.evidence);
            }
            let (first, last) = (&self.models[0].name, &self.models[self.models.len() - 1].name);
            md += &format!("\n{} document(s) right at {first} and wrong at {last}", t.flips_total);
            md += if t.flips.is_empty() { ".\n\n" } else { "; the largest moves away from the answer:\n\n" };
            for f in t.flips.iter().take(flips_shown) {
                md += &format!(
                    "- doc {} (gold {:?} of {:?}, loss +{:.2} nats): {}\n",
                    f.doc_id,
                    f.classes[f.gold],
                    f.classes,
                    f.loss_increase,
                    tail(&f.prompt, 120)
                );
            }
            md += "\n";
        }
        md
    }
}

/// The end of a long text, escapes visible (a prompt ends where the model continues).
pub fn tail(text: &str, max_chars: usize) -> String {
    let n = text.chars().count();
    if n <= max_chars {
        format!("{text:?}")
    } else {
        let tail: String = text.chars().skip(n - max_chars).collect();
        format!("…{tail:?} ({n} characters)")
    }
}
