//! From raw rows to documents: column mapping by the task file, and validation of every row.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::diag::{Diagnostics, Location};
use crate::pylit;
use crate::read::{RawRow, describe_value};
use crate::spec::{Answer, TaskSpec, TaskType};
use crate::template;

/// What one document asks of a model.
#[derive(Clone, Debug, PartialEq)]
pub enum DocBody {
    /// Pick one of `classes`; `answer` is the gold index. `true_answers` marks every true class
    /// where a task has several (TruthfulQA's mc2), one flag per class.
    Classification { prompt: String, classes: Vec<String>, answer: usize, true_answers: Option<Vec<bool>> },
    /// The loss of `completion` after `prompt`.
    SequenceProb { prompt: String, completion: String },
    /// Log-odds of the two classes after `prompt` versus after `other_prompt`.
    Logodds { prompt: String, other_prompt: String, classes: Vec<String>, answer: usize },
}

impl DocBody {
    pub fn prompt(&self) -> &str {
        match self {
            DocBody::Classification { prompt, .. }
            | DocBody::SequenceProb { prompt, .. }
            | DocBody::Logodds { prompt, .. } => prompt,
        }
    }
    pub fn classes(&self) -> &[String] {
        match self {
            DocBody::Classification { classes, .. } | DocBody::Logodds { classes, .. } => classes,
            DocBody::SequenceProb { .. } => &[],
        }
    }
    /// The indices of the true classes where a task marks several (mc2).
    pub fn true_classes(&self) -> Option<Vec<usize>> {
        match self {
            DocBody::Classification { true_answers: Some(t), .. } => Some(t.iter().enumerate().filter(|(_, x)| **x).map(|(i, _)| i).collect()),
            _ => None,
        }
    }
    pub fn answer(&self) -> Option<usize> {
        match self {
            DocBody::Classification { answer, .. } | DocBody::Logodds { answer, .. } => Some(*answer),
            DocBody::SequenceProb { .. } => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Document {
    /// 0-based position in the task's data (lm-eval's `doc_id`).
    pub id: usize,
    pub location: Location,
    pub body: DocBody,
    /// The row as read (for samples logs: lm-eval's `doc`).
    pub fields: Map<String, Value>,
}

/// One log-likelihood request as lm-eval builds it: `(context, continuation)` with
/// `context = prompt` and `continuation = delimiter + class` (SCORING.md §2). Tokenisation
/// details (moving trailing whitespace, the prize mode) belong to the scoring engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub context: String,
    pub continuation: String,
}

impl Document {
    pub fn requests(&self, delimiter: &str) -> Vec<Request> {
        let req = |context: &str, continuation: &str| Request {
            context: context.to_string(),
            continuation: format!("{delimiter}{continuation}"),
        };
        match &self.body {
            DocBody::Classification { prompt, classes, .. } => classes.iter().map(|c| req(prompt, c)).collect(),
            DocBody::SequenceProb { prompt, completion } => vec![req(prompt, completion)],
            DocBody::Logodds { prompt, other_prompt, classes, .. } => classes
                .iter()
                .map(|c| req(prompt, c))
                .chain(classes.iter().map(|c| req(other_prompt, c)))
                .collect(),
        }
    }
}

/// Maps and validates rows; rows with errors are left out, and every problem is reported.
pub fn to_documents(rows: Vec<RawRow>, spec: &TaskSpec, diags: &mut Diagnostics) -> Vec<Document> {
    let mut docs = Vec::with_capacity(rows.len());
    let mut seen: HashMap<(String, Vec<String>), Location> = HashMap::new();
    let mut carriage_returns = 0usize;
    for mut row in rows {
        for field in &spec.source.label_maps {
            if let Some(v) = row.fields.get_mut(field) {
                label_map_to_lists(v);
            }
        }
        let before = diags.error_count();
        let mut ctx = RowCtx { row: &row, diags: &mut *diags, spec };
        let body = match spec.task_type {
            TaskType::Classification => ctx.classification(),
            TaskType::SequenceProb => ctx.sequence_prob(),
            TaskType::Logodds | TaskType::AbsoluteLogodds => ctx.logodds(),
        };
        let Some(body) = body.filter(|_| diags.error_count() == before) else { continue };
        if body.prompt().contains('\r') {
            carriage_returns += 1;
        }
        let key = (body.prompt().to_string(), body.classes().to_vec());
        if let Some(first) = seen.get(&key) {
            let first = match first {
                Location::Line(n) => format!("line {n}"),
                Location::Row(n) => format!("row {n}"),
                Location::File => "an earlier row".into(),
            };
            diags.warning(row.location, None, format!("duplicate row: same prompt and classes as {first}"));
        } else {
            seen.insert(key, row.location);
        }
        docs.push(Document { id: docs.len(), location: row.location, body, fields: row.fields });
    }
    if carriage_returns > 0 {
        diags.warning(
            Location::File,
            Some(&spec.columns.prompt),
            format!(
                "{carriage_returns} prompt(s) contain a carriage return (\\r): the model sees it, and the references were made from \\n-only text"
            ),
        );
    }
    docs
}

/// `{"answer a": 1, "answer b": 0}` → `{"choices": ["answer a", "answer b"], "labels": [1, 0]}`,
/// in the file's order (TruthfulQA's `mc_task.json` as the Hub's loader reads it).
fn label_map_to_lists(v: &mut Value) {
    let Value::Object(map) = v else { return };
    if map.contains_key("choices") && map.contains_key("labels") {
        return;
    }
    let choices: Vec<Value> = map.keys().map(|k| Value::String(k.clone())).collect();
    let labels: Vec<Value> = map.values().cloned().collect();
    *v = serde_json::json!({ "choices": choices, "labels": labels });
}

struct RowCtx<'a> {
    row: &'a RawRow,
    diags: &'a mut Diagnostics,
    spec: &'a TaskSpec,
}

impl RowCtx<'_> {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.diags.error(self.row.location, Some(field), message);
    }

    /// The value of a column, nested field or template for this row (an error names the spec).
    fn field(&mut self, spec: &str) -> Option<Value> {
        match template::value(spec, &self.row.fields) {
            Ok(v) => Some(v),
            Err(message) => {
                self.diags.error(self.row.location, Some(spec), message);
                None
            }
        }
    }

    fn text(&mut self, name: &str, what: &str) -> Option<String> {
        let value = self.field(name)?;
        match value {
            Value::String(s) if s.trim().is_empty() => {
                self.error(name, format!("empty {what}"));
                None
            }
            Value::String(s) => Some(s),
            other => {
                self.error(name, format!("{what} must be text, found {}", describe_value(&other)));
                None
            }
        }
    }

    fn classes(&mut self, name: &str) -> Option<Vec<String>> {
        let value = self.field(name)?;
        let classes = match value {
            // The release files (and every CSV) hold a Python list literal in a string.
            Value::String(s) => match pylit::parse_str_list(&s) {
                Ok(list) => list,
                Err(e) => {
                    self.error(name, e.to_string());
                    return None;
                }
            },
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        other => {
                            self.error(name, format!("class {} must be text, found {}", i + 1, describe_value(&other)));
                            return None;
                        }
                    }
                }
                out
            }
            other => {
                self.error(name, format!("must be a list of class strings, found {}", describe_value(&other)));
                return None;
            }
        };
        let mut ok = true;
        if classes.len() < 2 {
            self.error(name, format!("needs at least 2 classes to choose from, found {}: {classes:?}", classes.len()));
            ok = false;
        }
        for (i, c) in classes.iter().enumerate() {
            if c.is_empty() {
                self.error(name, format!("class {} is empty", i + 1));
                ok = false;
            } else if let Some(j) = classes[..i].iter().position(|d| d == c) {
                let message = format!("classes {} and {} are the same ({c:?}): the choice is ambiguous", j + 1, i + 1);
                if self.spec.columns.allow_duplicate_classes {
                    let loc = self.row.location;
                    self.diags.warning(loc, Some(name), format!("{message}; kept, as the task's reference scores it"));
                } else {
                    self.error(name, message);
                    ok = false;
                }
            }
        }
        if ok && self.spec.scoring.delimiter.is_empty() {
            let glued: Vec<&String> = classes.iter().filter(|c| !c.starts_with(char::is_whitespace)).collect();
            if !glued.is_empty() {
                let loc = self.row.location;
                self.diags.warning(
                    loc,
                    Some(name),
                    format!(
                        "class(es) {glued:?} do not start with a space; with this task's empty delimiter they are glued to the prompt (the references assume classes like \" Yes\")"
                    ),
                );
            }
        }
        ok.then_some(classes)
    }

    fn answer(&mut self, answer: &Answer, classes: &[String]) -> Option<usize> {
        let name = match answer {
            Answer::Fixed(i) if *i < classes.len() => return Some(*i),
            Answer::Fixed(i) => {
                let message = format!("the task's fixed gold index {i} is out of range: this row has {} classes", classes.len());
                self.error("answer", message);
                return None;
            }
            Answer::Field(name) => name.as_str(),
        };
        let value = self.field(name)?;
        // A template's text is like a CSV cell: `"0"` is an index.
        let typed = self.row.typed && !template::is_template(name);
        let index: Result<i64, String> = match &value {
            Value::Number(n) if n.is_i64() => Ok(n.as_i64().unwrap()),
            Value::Number(n) if n.is_u64() => Err(format!("gold index {n} is out of range")),
            // pandas writes integer columns with missing values as floats (0.0).
            Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15) => {
                Ok(n.as_f64().unwrap() as i64)
            }
            Value::String(s) => {
                let t = s.trim();
                match t.parse::<i64>() {
                    Ok(i) if !typed => Ok(i),
                    _ => match classes.iter().position(|c| c == s) {
                        // A target given as the class text itself (lm-eval accepts it).
                        Some(i) => Ok(i as i64),
                        None if !typed => Err(format!("must be a class index (0, 1, …), found {s:?}")),
                        None => Err(format!("must be an integer class index, found {}", describe_value(&value))),
                    },
                }
            }
            other => Err(format!("must be an integer class index, found {}", describe_value(other))),
        };
        match index {
            Ok(i) if i >= 0 && (i as usize) < classes.len() => Some(i as usize),
            Ok(i) => {
                self.error(
                    name,
                    format!("gold index {i} is out of range: there are {} classes (valid: 0..={})", classes.len(), classes.len().saturating_sub(1)),
                );
                None
            }
            Err(message) => {
                self.error(name, message);
                None
            }
        }
    }

    fn classification(&mut self) -> Option<DocBody> {
        let cols = &self.spec.columns;
        let prompt = self.text(&cols.prompt, "prompt");
        let classes = self.classes(&cols.classes);
        let answer = classes.as_ref().and_then(|c| self.answer(&cols.answer, c));
        let true_answers = match (&cols.labels, &classes) {
            (Some(spec), Some(c)) => Some(self.labels(spec, c.len())?),
            _ => None,
        };
        Some(DocBody::Classification { prompt: prompt?, classes: classes?, answer: answer?, true_answers })
    }

    /// One 0/1 (or true/false) per class: which are true answers; at least one must be.
    fn labels(&mut self, spec: &str, n: usize) -> Option<Vec<bool>> {
        let value = self.field(spec)?;
        let Value::Array(items) = &value else {
            self.error(spec, format!("labels must be a list of 0/1, one per class, found {}", describe_value(&value)));
            return None;
        };
        let labels: Option<Vec<bool>> = items
            .iter()
            .map(|v| match v {
                Value::Bool(b) => Some(*b),
                Value::Number(n) if n.as_f64() == Some(1.0) => Some(true),
                Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
                _ => None,
            })
            .collect();
        match labels {
            Some(l) if l.len() == n && l.contains(&true) => Some(l),
            Some(l) if l.len() != n => {
                self.error(spec, format!("{} labels for {n} classes: give one per class", l.len()));
                None
            }
            Some(_) => {
                self.error(spec, "no class is labelled true (1)");
                None
            }
            None => {
                self.error(spec, format!("labels must be 0 or 1, found {}", describe_value(&value)));
                None
            }
        }
    }

    fn sequence_prob(&mut self) -> Option<DocBody> {
        let cols = &self.spec.columns;
        let prompt = self.text(&cols.prompt, "prompt");
        let completion = self.text(&cols.completion, "completion");
        Some(DocBody::SequenceProb { prompt: prompt?, completion: completion? })
    }

    fn logodds(&mut self) -> Option<DocBody> {
        let cols = &self.spec.columns;
        let prompt = self.text(&cols.prompt, "prompt");
        let other_prompt = self.text(&cols.other_prompt, "other prompt");
        let classes = self.classes(&cols.classes);
        if let Some(c) = &classes
            && c.len() != 2
        {
            self.error(&cols.classes, format!("a logodds task needs exactly 2 classes, found {}", c.len()));
            return None;
        }
        let answer = classes.as_ref().and_then(|c| self.answer(&cols.answer, c));
        Some(DocBody::Logodds { prompt: prompt?, other_prompt: other_prompt?, classes: classes?, answer: answer? })
    }
}
