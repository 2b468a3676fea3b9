//! A scaling report: every model of a family on every task, the trend verdict of each metric, and
//! the documents where inverse scaling happens. It is built once and rendered as JSON, markdown,
//! plots and a self-contained HTML page.

use serde::Serialize;
use serde_json::{Value, json};

use crate::flips::Flip;
use crate::trend::{Options, Tests, Trend, Verdict, analyse, decide_all, human_params};

/// What "size" means on the trend's axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    Parameters,
    TrainingTokens,
    TrainingFlops,
    /// Checkpoints of one model over training (`@stepN`, or `step` in the family file).
    TrainingStep,
}

impl Axis {
    pub fn label(self) -> &'static str {
        match self {
            Axis::Parameters => "parameters",
            Axis::TrainingTokens => "training tokens",
            Axis::TrainingFlops => "training FLOPs",
            Axis::TrainingStep => "training step",
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
    /// Its architecture and tokenizer as the weights say (empty where unknown): a family that
    /// mixes them is warned about.
    pub architecture: String,
    pub tokenizer: String,
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
    /// One per family with two or more sizes (and the pooled fit when asked), in the order of
    /// [`ScalingReport::families`]; decided together by [`ScalingReport::adjust`] (in
    /// `scaling.json`'s top-level `verdicts`).
    #[serde(skip)]
    pub verdicts: Vec<FamilyVerdict>,
}

/// One family's verdict on one metric.
#[derive(Clone, Debug)]
pub struct FamilyVerdict {
    /// The family's name, or `pooled (A, B)` for the fit with an intercept per family.
    pub family: String,
    /// Its models, as indices into the report's models.
    pub members: Vec<usize>,
    pub tests: Tests,
    /// The metric's checkpoint-to-checkpoint standard deviation for this family, when known.
    pub noise_floor: Option<f64>,
    pub verdict: Verdict,
}

impl MetricSeries {
    /// The series of `metric`, with the tests of every family that has two or more sizes:
    /// `per_doc[m][d]` is the metric on document d for model m (the report's order). With
    /// `pooled`, also one fit over those families with an intercept each. The verdicts are
    /// provisional until [`ScalingReport::adjust`] adjusts the report's tests together.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        metric: &str,
        higher_is_better: bool,
        values: Vec<f64>,
        stderrs: Vec<Option<f64>>,
        chance: Option<f64>,
        models: &[ModelPoint],
        per_doc: &[Vec<f64>],
        options: Options,
        pooled: bool,
    ) -> MetricSeries {
        let mut verdicts = Vec::new();
        let families: Vec<(&str, Vec<usize>)> = families_of(models);
        let trended: Vec<(&str, Vec<usize>, Option<f64>)> = families
            .iter()
            .filter(|(_, m)| distinct_sizes(models, m) >= 2)
            .map(|(f, m)| {
                let (line, noise) = one_per_size(models, m, per_doc);
                (*f, line, noise)
            })
            .collect();
        let mut add = |family: String, members: Vec<usize>, strata: Vec<usize>, noise_floor: Option<f64>| {
            let sizes: Vec<f64> = members.iter().map(|&i| models[i].size).collect();
            let values: Vec<Vec<f64>> = members.iter().map(|&i| per_doc[i].clone()).collect();
            let tests = analyse(&sizes, &values, &strata, higher_is_better, options);
            let verdict = decide_all(std::slice::from_ref(&tests), &[None]).remove(0);
            verdicts.push(FamilyVerdict { family, members, tests, noise_floor, verdict });
        };
        for (family, members, noise) in &trended {
            add(family.to_string(), members.clone(), vec![0; members.len()], *noise);
        }
        if pooled && trended.len() >= 2 {
            let names: Vec<&str> = trended.iter().map(|(f, _, _)| *f).collect();
            let (members, strata): (Vec<usize>, Vec<usize>) =
                trended.iter().enumerate().flat_map(|(k, (_, m, _))| m.iter().map(move |&i| (i, k))).unzip();
            add(format!("pooled ({})", names.join(", ")), members, strata, None);
        }
        MetricSeries { metric: metric.to_string(), higher_is_better, values, stderrs, chance, verdicts }
    }

    /// The families' verdicts on one line: "inverse in 1 of 2 families (Qwen2.5); one size,
    /// no trend: SmolLM2".
    pub fn summary(&self, models: &[ModelPoint]) -> String {
        let own: Vec<&FamilyVerdict> = self.verdicts.iter().filter(|v| !v.tests.pooled).collect();
        let mut parts = Vec::new();
        for trend in [Trend::Inverse, Trend::UShaped, Trend::InvertedU, Trend::Positive, Trend::Flat] {
            let named: Vec<&str> = own.iter().filter(|v| v.verdict.trend == trend).map(|v| v.family.as_str()).collect();
            if !named.is_empty() {
                parts.push(format!("{} in {} of {} families ({})", trend.label(), named.len(), own.len(), named.join(", ")));
            }
        }
        let single: Vec<&str> =
            families_of(models).into_iter().filter(|(_, m)| distinct_sizes(models, m) < 2).map(|(f, _)| f).collect();
        if !single.is_empty() {
            parts.push(format!("one size only, so no trend: {}", single.join(", ")));
        }
        if parts.is_empty() { "no family has two sizes: no trend can be called".into() } else { parts.join("; ") }
    }
}

/// A family's line, one model per size, and the noise floor its repeated sizes give.
///
/// Several models of one size in a family are checkpoints of that size (`pythia-410m@step141000`,
/// `…@step142000`, `…@step143000`): the spread of their means is the metric's
/// checkpoint-to-checkpoint noise (the standard deviation, pooled over such sizes: Heineman et
/// al. 2025, "Signal and Noise", estimate it from the last checkpoints), and the size stands on
/// the line by its latest checkpoint (the highest `@stepN`, else the last listed).
fn one_per_size(models: &[ModelPoint], members: &[usize], per_doc: &[Vec<f64>]) -> (Vec<usize>, Option<f64>) {
    let mean = |i: usize| per_doc[i].iter().sum::<f64>() / per_doc[i].len().max(1) as f64;
    let mut line: Vec<usize> = Vec::new();
    let (mut squares, mut dof) = (0.0, 0usize);
    let mut sizes: Vec<f64> = members.iter().map(|&i| models[i].size).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    for size in sizes {
        let same: Vec<usize> = members.iter().copied().filter(|&i| models[i].size == size).collect();
        let latest = same.iter().copied().max_by_key(|&i| (step_of(&models[i].name), i)).expect("a model of this size");
        line.push(latest);
        if same.len() >= 2 {
            let m = same.iter().map(|&i| mean(i)).sum::<f64>() / same.len() as f64;
            squares += same.iter().map(|&i| (mean(i) - m).powi(2)).sum::<f64>();
            dof += same.len() - 1;
        }
    }
    line.sort_unstable();
    (line, (dof > 0).then(|| (squares / dof as f64).sqrt()))
}

/// `N` of a name's `@stepN` (Pythia's and OLMo's checkpoint revisions).
pub fn step_of(name: &str) -> Option<u64> {
    let rest = &name[name.find("@step")? + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// How many different sizes `members` have.
fn distinct_sizes(models: &[ModelPoint], members: &[usize]) -> usize {
    let mut sizes: Vec<f64> = members.iter().map(|&i| models[i].size).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    sizes.len()
}

/// The families in order of their smallest model, each with its members' indices.
pub fn families_of(models: &[ModelPoint]) -> Vec<(&str, Vec<usize>)> {
    let mut out: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, m) in models.iter().enumerate() {
        match out.iter_mut().find(|(f, _)| *f == m.family) {
            Some((_, members)) => members.push(i),
            None => out.push((&m.family, vec![i])),
        }
    }
    out
}

/// A document right at a family's smallest model and wrong at its largest, with what it asked.
#[derive(Clone, Debug, Serialize)]
pub struct FlipDoc {
    pub family: String,
    pub doc_id: usize,
    pub prompt: String,
    pub classes: Vec<String>,
    pub gold: usize,
    /// Per model of the family, smallest first: whether it was right.
    pub correct: Vec<bool>,
    /// How far the gold class's loss rose from the family's smallest to its largest model (nats).
    pub loss_increase: f64,
}

impl FlipDoc {
    pub fn new(family: &str, flip: &Flip, doc_id: usize, prompt: &str, classes: &[String], gold: usize) -> FlipDoc {
        FlipDoc {
            family: family.to_string(),
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
    /// Per family with two or more models: how many documents flip from right to wrong.
    pub flips_total: Vec<(String, usize)>,
    /// The first flips of each family by rank.
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
        let inverse: Vec<&FamilyVerdict> = s.verdicts.iter().filter(|v| v.verdict.trend == Trend::Inverse).collect();
        let answer = if inverse.is_empty() { "no inverse scaling shown" } else { "INVERSE SCALING" };
        let detail = match inverse.first().copied().or(s.verdicts.first()) {
            Some(v) => format!("{}: {}", v.family, v.verdict.evidence),
            None => "no family has two sizes".into(),
        };
        Some(format!("verdict: {answer} on {dataset} ({}: {}) — {detail}", s.metric, s.summary(&self.models)))
    }

    /// The families in order of their smallest model, each with its members' indices.
    pub fn families(&self) -> Vec<(&str, Vec<usize>)> {
        families_of(&self.models)
    }

    /// Decides every verdict of the report together: Holm's adjustment over all their tests
    /// (each family's τ test, and its curve test where it had a candidate). Call after the
    /// series are built and whenever a noise floor is set.
    pub fn adjust(&mut self) {
        let all: Vec<&FamilyVerdict> = self.tasks.iter().flat_map(|t| &t.metrics).flat_map(|s| &s.verdicts).collect();
        let tests: Vec<Tests> = all.iter().map(|v| v.tests.clone()).collect();
        let noise: Vec<Option<f64>> = all.iter().map(|v| v.noise_floor).collect();
        let mut decided = decide_all(&tests, &noise).into_iter();
        for t in &mut self.tasks {
            for s in &mut t.metrics {
                let label = metric_label(&s.metric).to_string();
                for v in &mut s.verdicts {
                    v.verdict = decided.next().expect("a verdict per test");
                    v.verdict.description = v.verdict.trend.describe(&label, s.higher_is_better);
                }
            }
        }
    }

    /// How many tests the adjustment covered.
    pub fn tests_adjusted(&self) -> usize {
        self.tasks.iter().flat_map(|t| &t.metrics).flat_map(|s| &s.verdicts).map(|v| v.tests.p_values().len()).sum()
    }

    /// Families that mix architectures or tokenizers (their trend then confounds size with
    /// them), and verdicts whose p-value sits at the resamples' floor.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (family, members) in self.families() {
            for (what, field) in [("architectures", 0), ("tokenizers", 1)] {
                let mut seen: Vec<&str> = members
                    .iter()
                    .map(|&i| if field == 0 { self.models[i].architecture.as_str() } else { self.models[i].tokenizer.as_str() })
                    .filter(|s| !s.is_empty())
                    .collect();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() > 1 {
                    out.push(format!("family `{family}` mixes {what} ({}): its trend confounds size with them", seen.join(", ")));
                }
            }
        }
        let floored = self.verdict_rows().filter(|(_, _, v)| v.verdict.p_at_floor && v.verdict.trend == Trend::Flat).count();
        if floored > 0 {
            out.push(format!(
                "{floored} verdict(s) have the smallest p-value {} resamples can give and were not called after adjustment: more --resamples may call them",
                self.bootstrap.resamples
            ));
        }
        out
    }

    /// Every verdict with its task and metric, in the report's order.
    pub fn verdict_rows(&self) -> impl Iterator<Item = (&TaskScaling, &MetricSeries, &FamilyVerdict)> {
        self.tasks.iter().flat_map(|t| t.metrics.iter().flat_map(move |s| s.verdicts.iter().map(move |v| (t, s, v))))
    }

    /// `scaling.json`: per task, each model's metrics and the flips; every verdict in one list
    /// (`family`, `task`, `metric`, `trend`, `method`, `interval`, `p_value`, `p_adjusted`, and
    /// the evidence), the families, the adjustment and the warnings.
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
                    "summary": t.metrics.iter().map(|s| (s.metric.clone(), json!(s.summary(&self.models)))).collect::<serde_json::Map<_, _>>(),
                    "flips_total": t.flips_total.iter().map(|(f, n)| (f.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
                    "flips": t.flips,
                })
            })
            .collect();
        let verdicts: Vec<Value> = self
            .verdict_rows()
            .map(|(t, s, v)| {
                let mut o = json!({
                    "family": v.family,
                    "task": t.task,
                    "metric": s.metric,
                    "models": v.members.iter().map(|&i| self.models[i].name.clone()).collect::<Vec<_>>(),
                    "pooled": v.tests.pooled,
                });
                if let (Value::Object(o), Value::Object(fields)) = (&mut o, serde_json::to_value(&v.verdict).unwrap()) {
                    o.extend(fields);
                }
                o
            })
            .collect();
        let families: Vec<Value> = self
            .families()
            .iter()
            .map(|(f, members)| json!({"family": f, "models": members.iter().map(|&i| self.models[i].name.clone()).collect::<Vec<_>>()}))
            .collect();
        json!({
            "command": self.command,
            "axis": self.axis,
            "models": self.models,
            "families": families,
            "bootstrap": {"resamples": self.bootstrap.resamples, "level": self.bootstrap.level, "seed": self.bootstrap.seed},
            "multiplicity": {"method": "holm", "tests": self.tests_adjusted(), "alpha": self.bootstrap.alpha()},
            "verdicts": verdicts,
            "warnings": self.warnings(),
            "tasks": tasks,
            "skipped": self.skipped,
        })
    }

    /// `scaling.md`, also what `invscale scale` prints.
    pub fn to_markdown(&self, flips_shown: usize) -> String {
        let mut md = String::new();
        for w in self.warnings() {
            md += &format!("> warning: {w}\n\n");
        }
        for t in &self.tasks {
            md += &format!("## {} ({} documents)\n\n| model | family | {} |", t.task, t.documents, self.axis.label());
            for s in &t.metrics {
                md += &format!(" {} |", s.metric);
            }
            md += &format!("\n|---|---|---:|{}\n", "---:|".repeat(t.metrics.len()));
            for (i, m) in self.models.iter().enumerate() {
                md += &format!("| {} | {} | {} |", m.name, m.family, self.axis.format(m.size));
                for s in &t.metrics {
                    md += &format!(" {:.4} ± {:.4} |", s.values[i], s.stderrs[i].unwrap_or(f64::NAN));
                }
                md += "\n";
            }
            md += "\n";
            for s in &t.metrics {
                md += &format!("- **{}**: {}\n", s.metric, s.summary(&self.models));
                for v in &s.verdicts {
                    let d = &v.verdict;
                    md += &format!("  - {}: **{}** ({}): {}\n", v.family, d.trend.label(), d.description, d.evidence);
                }
            }
            for (family, n) in &t.flips_total {
                md += &format!("\n{family}: {n} document(s) right at its smallest model and wrong at its largest");
                let shown: Vec<&FlipDoc> = t.flips.iter().filter(|f| &f.family == family).take(flips_shown).collect();
                md += if shown.is_empty() { ".\n" } else { "; the largest moves away from the answer:\n\n" };
                for f in shown {
                    md += &format!(
                        "- doc {} (gold {:?} of {:?}, loss +{:.2} nats): {}\n",
                        f.doc_id,
                        f.classes[f.gold],
                        f.classes,
                        f.loss_increase,
                        tail(&f.prompt, 120)
                    );
                }
            }
            md += "\n";
        }
        md += &format!(
            "Verdicts: paired bootstrap over documents ({} resamples), Kendall's tau for a monotone trend, the two-lines test (Simonsohn 2018) for U / inverted-U; {} tests Holm-adjusted together, called at {:.2}.\n",
            self.bootstrap.resamples,
            self.tests_adjusted(),
            self.bootstrap.alpha()
        );
        md
    }
}

/// What a metric is called on an axis.
pub fn metric_label(metric: &str) -> &str {
    match metric {
        "acc" => "accuracy",
        "acc_norm" => "accuracy (length-normalised)",
        "acc_bytes" => "accuracy (byte-normalised)",
        "loss" => "loss (nats)",
        "coverage" => "log-prob of the classes",
        other => other,
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
