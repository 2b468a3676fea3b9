//! lm-evaluation-harness's own YAML task files, read as data: `--tasks path/to/task.yaml` for
//! `output_type: multiple_choice` tasks.
//!
//! What is read: `include:` (a file or a list, relative to the including file; its keys are the
//! base, this file's override them, as lm-eval merges), `task`, `dataset_path`/`dataset_name`/
//! `dataset_kwargs.data_files`, `test_split` (else `validation_split`), `doc_to_text`/
//! `doc_to_choice`/`doc_to_target` (a column, a Jinja template, a fixed index or list),
//! `target_delimiter` (default `" "`, lm-eval's), `description`, `metric_list` (acc, acc_norm).
//! Keys that do not change a zero-shot log-likelihood score are ignored (`tag`, `metadata`,
//! decontamination, few-shot and generation settings); any other key is an error, so nothing is
//! silently scored differently.
//!
//! Python is never run: a `!function` tag (lm-eval's hook for `process_docs`, `process_results`,
//! `doc_to_text` as code) is refused with its file and line — except the one function invscale
//! implements natively and recognises by name: TruthfulQA's `utils.process_results_mc2`
//! (`metric_list: acc` then means the `mc2` metric).
//!
//! A YAML naming the Hub dataset a built-in task reads (`inverse-scaling/NeQA`,
//! `truthfulqa/truthful_qa`, `EleutherAI/advanced_ai_risk` with its config) also finds that
//! task's release file in `--data-dir`, read as the built-in task reads it.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::spec::{Answer, Columns, HfSource, Metric, RequestMode, Scoring, Source, SpecError, TaskSpec, TaskType};

/// How deep `include:` may nest (lm-eval's real files use one or two levels).
const MAX_INCLUDE_DEPTH: usize = 8;

/// The keys read: those used below, and those with no effect on a zero-shot multiple-choice
/// log-likelihood score (tags, metadata, decontamination, few-shot and generation settings).
const KNOWN_KEYS: &[&str] = &[
    "tag",
    "group",
    "group_alias",
    "task_alias",
    "metadata",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "fewshot_delimiter",
    "fewshot_split",
    "fewshot_config",
    "training_split",
    "generation_kwargs",
    "output_type",
    "num_fewshot",
    "dataset_kwargs",
    "validation_split",
    "test_split",
    "dataset_path",
    "dataset_name",
    "task",
    "include",
    "doc_to_text",
    "doc_to_choice",
    "doc_to_target",
    "target_delimiter",
    "metric_list",
    "process_results",
    "description",
    "unsafe_code",
];

/// The functions invscale implements natively, by the name a YAML gives them.
const NATIVE_FUNCTIONS: &[(&str, &str, Metric)] = &[("process_results", "utils.process_results_mc2", Metric::Mc2)];

/// A key of the merged file, with the file it came from (for located errors).
struct Entry {
    key: String,
    value: Value,
    file: PathBuf,
}

/// Reads an lm-eval task YAML (and what it includes) as an invscale task; `builtin` are the
/// tasks whose release files a YAML over the same Hub dataset may read.
pub fn task_from_yaml(path: &Path, builtin: &[TaskSpec]) -> Result<TaskSpec, SpecError> {
    let entries = merged(path, 0)?;
    let get = |k: &str| entries.iter().find(|e| e.key == k);
    let err_at = |e: &Entry, message: String| SpecError { path: e.file.clone(), message: format!("{}: {message}", located(&e.file, &e.key)) };
    let err = |message: String| SpecError { path: path.to_path_buf(), message };

    // Code first: a `!function` anywhere is refused unless it is one invscale implements.
    let mut native_metric = None;
    for e in &entries {
        if let Value::Tagged(t) = &e.value {
            let name = t.value.as_str().unwrap_or_default();
            match NATIVE_FUNCTIONS.iter().find(|(k, f, _)| *k == e.key && *f == name) {
                Some((_, _, m)) if t.tag == "!function" => native_metric = Some(*m),
                _ => {
                    return Err(err_at(
                        e,
                        format!(
                            "`{}: {} {name}` is Python code, and invscale runs task files as data only; \
                             express it as a column or a Jinja template (natively known: {})",
                            e.key,
                            t.tag,
                            NATIVE_FUNCTIONS.iter().map(|(k, f, _)| format!("{k}: !function {f}")).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
    }
    if let Some(e) = entries.iter().find(|e| !KNOWN_KEYS.contains(&e.key.as_str())) {
        return Err(err_at(e, format!("`{}` is not supported in lm-eval YAML tasks here (known keys: {})", e.key, KNOWN_KEYS.join(", "))));
    }
    let text = |k: &str| -> Result<Option<String>, SpecError> {
        match get(k).map(|e| (e, &e.value)) {
            None | Some((_, Value::Null)) => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s.clone())),
            Some((_, Value::Number(n))) => Ok(Some(n.to_string())),
            Some((e, other)) => Err(err_at(e, format!("`{k}` must be text, found {}", yaml_type(other)))),
        }
    };

    let name = text("task")?.ok_or_else(|| err("no `task:` name (in this file or what it includes)".into()))?;
    if let Some(e) = get("output_type")
        && e.value.as_str() != Some("multiple_choice")
    {
        return Err(err_at(e, format!("output_type `{}`: only multiple_choice tasks are read from lm-eval YAML", e.value.as_str().unwrap_or("?"))));
    }
    if get("output_type").is_none() {
        return Err(err("no `output_type:`: only `output_type: multiple_choice` tasks are read".into()));
    }
    if let Some(e) = get("num_fewshot")
        && e.value.as_u64().unwrap_or(0) > 0
    {
        return Err(err_at(e, "few-shot examples (num_fewshot > 0) are not read from lm-eval YAML: run it zero-shot or write a task file".into()));
    }

    let field_spec = |k: &str| -> Result<Option<FieldValue>, SpecError> {
        let Some(e) = get(k) else { return Ok(None) };
        Ok(Some(match &e.value {
            Value::String(s) => FieldValue::Spec(s.clone()),
            Value::Number(n) if n.as_u64().is_some() => FieldValue::Index(n.as_u64().unwrap() as usize),
            Value::Sequence(items) => FieldValue::Spec(list_expression(items).map_err(|m| err_at(e, m))?),
            Value::Mapping(m) => FieldValue::Spec(list_expression(&m.values().cloned().collect::<Vec<_>>()).map_err(|msg| err_at(e, msg))?),
            other => return Err(err_at(e, format!("`{k}` must be a column, a template or a list, found {}", yaml_type(other)))),
        }))
    };
    let spec_text = |k: &str| -> Result<String, SpecError> {
        match field_spec(k)? {
            Some(FieldValue::Spec(s)) => Ok(s),
            Some(FieldValue::Index(i)) => Ok(format!("{{{{ {i} }}}}")),
            None => Err(err(format!("no `{k}:` (in this file or what it includes)"))),
        }
    };
    let mut prompt = spec_text("doc_to_text")?;
    if let Some(description) = text("description")?.filter(|d| !d.is_empty()) {
        // lm-eval puts the description before the document's text (zero-shot: nothing between).
        let as_template = if crate::template::is_template(&prompt) { prompt.clone() } else { column_expression(&prompt).map_err(err)? };
        prompt = format!("{description}{as_template}");
    }
    let classes = spec_text("doc_to_choice")?;
    let answer = match field_spec("doc_to_target")? {
        Some(FieldValue::Index(i)) => Answer::Fixed(i),
        Some(FieldValue::Spec(s)) => Answer::Field(s),
        None => return Err(err("no `doc_to_target:` (in this file or what it includes)".into())),
    };
    let delimiter = text("target_delimiter")?.unwrap_or_else(|| " ".into());

    let mut metrics = Vec::new();
    if let Some(e) = get("metric_list") {
        let Value::Sequence(items) = &e.value else {
            return Err(err_at(e, "`metric_list` must be a list of `- metric: NAME`".into()));
        };
        for item in items {
            let metric = item.get("metric").and_then(Value::as_str).unwrap_or_default();
            if let Some(agg) = item.get("aggregation").and_then(Value::as_str)
                && agg != "mean"
            {
                return Err(err_at(e, format!("metric `{metric}`: aggregation `{agg}` is not supported (mean only)")));
            }
            metrics.push(match (metric, native_metric) {
                ("acc", Some(m)) => m,
                ("acc", None) => Metric::Acc,
                ("acc_norm", None) => Metric::AccNorm,
                (other, _) => {
                    return Err(err_at(e, format!("metric `{other}` is not read from lm-eval YAML (acc, acc_norm; mc2 through TruthfulQA's process_results)")));
                }
            });
        }
    }
    if metrics.is_empty() {
        metrics = native_metric.map_or_else(|| vec![Metric::Acc], |m| vec![m]);
    }
    let labels = metrics.contains(&Metric::Mc2).then(|| labels_of(&classes));

    let source = source(&entries, path, builtin).map_err(|(e, m)| match e {
        Some(e) => err_at(e, m),
        None => err(m),
    })?;
    let mut spec = TaskSpec {
        name,
        aliases: Vec::new(),
        groups: Vec::new(),
        paper_task: None,
        description: format!("lm-eval task file {}", path.display()),
        variant: "Read from lm-evaluation-harness's YAML.".into(),
        cause: None,
        task_type: TaskType::Classification,
        main: true,
        matches: Vec::new(),
        version: 0,
        source,
        columns: Columns { prompt, classes, answer, labels, ..Columns::default() },
        // Set below where a built-in task reads the same dataset.
        scoring: Scoring { delimiter, mode: RequestMode::LmEval, metrics, gold_is_undesired: false },
        each: Vec::new(),
    };
    // A YAML over a built-in task's dataset keeps that task's orientation (the advanced-AI-risk
    // sets: a rising acc is the inverse trend).
    spec.scoring.gold_is_undesired = builtin.iter().any(|b| b.source.hf.is_some() && b.source.hf == spec.source.hf && b.scoring.gold_is_undesired);
    // The same checks as a task file's (templates compile, metrics apply).
    spec.check().map_err(err)?;
    Ok(spec)
}

enum FieldValue {
    Spec(String),
    Index(usize),
}

/// mc2's labels sit beside its choices: `{{mc2_targets.choices}}` → `mc2_targets.labels`.
fn labels_of(classes: &str) -> String {
    let inner = classes.trim().trim_start_matches("{{").trim_end_matches("}}").trim();
    match inner.strip_suffix(".choices") {
        Some(base) => format!("{base}.labels"),
        None => "labels".into(),
    }
}

/// A fixed list of choices as a template expression (JSON strings are minijinja literals).
fn list_expression(items: &[Value]) -> Result<String, String> {
    let texts: Result<Vec<String>, String> = items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(serde_json::to_string(s).expect("a string serialises")),
            Value::Number(n) => Ok(serde_json::to_string(&n.to_string()).expect("a string serialises")),
            other => Err(format!("a choice must be text, found {}", yaml_type(other))),
        })
        .collect();
    Ok(format!("{{{{ [{}] }}}}", texts?.join(", ")))
}

/// A column as a template (`question` → `{{ question }}`), for composing with a description.
fn column_expression(column: &str) -> Result<String, String> {
    if column.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !column.starts_with(|c: char| c.is_ascii_digit()) {
        Ok(format!("{{{{ {column} }}}}"))
    } else {
        Err(format!("`description` with doc_to_text column `{column}`: write doc_to_text as a template"))
    }
}

/// Where the data comes from: a local file (`dataset_path: json` + `data_files`), else the
/// Hub dataset, with a built-in task's release file when it reads the same dataset.
fn source<'a>(entries: &'a [Entry], path: &Path, builtin: &[TaskSpec]) -> Result<Source, (Option<&'a Entry>, String)> {
    let get = |k: &str| entries.iter().find(|e| e.key == k);
    let text = |k: &str| get(k).and_then(|e| e.value.as_str()).map(str::to_string);
    let dataset = get("dataset_path").ok_or((None, "no `dataset_path:` (in this file or what it includes)".to_string()))?;
    let dataset_path = dataset.value.as_str().ok_or((Some(dataset), "`dataset_path` must be text".to_string()))?.to_string();
    let split = text("test_split").or_else(|| text("validation_split")).ok_or((None, "no `test_split` or `validation_split`: which split to evaluate".to_string()))?;
    if ["json", "csv", "parquet", "text"].contains(&dataset_path.as_str()) {
        let kwargs = get("dataset_kwargs").ok_or((Some(dataset), format!("`dataset_path: {dataset_path}` needs `dataset_kwargs: data_files:`")))?;
        let files = kwargs.value.get("data_files").ok_or((Some(kwargs), "no `data_files` in `dataset_kwargs`".to_string()))?;
        let file = match files {
            Value::String(s) => s.clone(),
            Value::Sequence(items) if items.len() == 1 => items[0].as_str().unwrap_or_default().to_string(),
            Value::Mapping(m) => match m.get(split.as_str()) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Sequence(items)) if items.len() == 1 => items[0].as_str().unwrap_or_default().to_string(),
                _ => return Err((Some(kwargs), format!("`data_files` has no single file for split `{split}`"))),
            },
            _ => return Err((Some(kwargs), "`data_files`: one file (a path, or {split: path})".to_string())),
        };
        // datasets resolves it against the working folder; a path beside the YAML is found too.
        let mut p = PathBuf::from(&file);
        if !p.exists()
            && let Some(dir) = path.parent()
        {
            p = dir.join(&file);
        }
        return Ok(Source { path: Some(p), ..Source::default() });
    }
    let hf = HfSource { repo: dataset_path, config: text("dataset_name"), split, revision: "main".into() };
    let builtin = builtin
        .iter()
        .find(|t| t.source.hf.as_ref().is_some_and(|b| b.repo == hf.repo && b.config == hf.config && b.split == hf.split));
    Ok(match builtin {
        Some(b) => Source { hf: Some(hf), ..b.source.clone() },
        None => Source { hf: Some(hf), ..Source::default() },
    })
}

/// The keys of `path` over those of what it includes.
fn merged(path: &Path, depth: usize) -> Result<Vec<Entry>, SpecError> {
    let err = |message: String| SpecError { path: path.to_path_buf(), message };
    if depth > MAX_INCLUDE_DEPTH {
        return Err(err(format!("`include:` nests deeper than {MAX_INCLUDE_DEPTH} files (a cycle?)")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let doc: Value = serde_yaml::from_str(&text).map_err(|e| {
        let at = e.location().map_or(String::new(), |l| format!("line {}: ", l.line()));
        err(format!("{at}not valid YAML: {e}"))
    })?;
    let Value::Mapping(map) = doc else {
        return Err(err("a task YAML must be a mapping of keys (`task: …`)".into()));
    };
    let mut own = Vec::new();
    for (k, v) in map {
        let Some(key) = k.as_str() else { return Err(err(format!("a key that is not text: {k:?}"))) };
        own.push(Entry { key: key.to_string(), value: v, file: path.to_path_buf() });
    }
    let mut out = Vec::new();
    if let Some(inc) = own.iter().find(|e| e.key == "include") {
        let names: Vec<String> = match &inc.value {
            Value::String(s) => vec![s.clone()],
            Value::Sequence(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => return Err(err(format!("{}: `include` must be a file name or a list of them", located(path, "include")))),
        };
        for name in names {
            let base = path.parent().unwrap_or(Path::new(".")).join(&name);
            for e in merged(&base, depth + 1)? {
                out.retain(|o: &Entry| o.key != e.key);
                out.push(e);
            }
        }
    }
    for e in own {
        out.retain(|o: &Entry| o.key != e.key);
        out.push(e);
    }
    Ok(out)
}

/// `line N` of `key:` at the start of a line in `file` (where serde_yaml's values lose it).
fn located(file: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let prefix = format!("{key}:");
    match text.lines().position(|l| l.starts_with(&prefix)) {
        Some(i) => format!("line {}", i + 1),
        None => format!("key `{key}`"),
    }
}

fn yaml_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
