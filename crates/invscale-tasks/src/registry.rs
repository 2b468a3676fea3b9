//! The built-in task suite, its groups, and resolving what users pass to `--tasks`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::read::Format;
use crate::spec::{Answer, Columns, Scoring, Source, SpecError, TaskSpec, TaskType};

include!(concat!(env!("OUT_DIR"), "/builtin_tasks.rs"));

const GROUPS_FILE: &str = "_groups.toml";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupInfo {
    pub name: String,
    pub description: String,
}

/// A published evaluation setup that task variants can match.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupInfo {
    pub name: String,
    pub description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupsFile {
    group: Vec<GroupInfo>,
    setup: Vec<SetupInfo>,
}

#[derive(Debug)]
pub struct Registry {
    pub tasks: Vec<TaskSpec>,
    pub groups: Vec<GroupInfo>,
    pub setups: Vec<SetupInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown task or group `{name}`{}\n  (`invscale tasks` lists them; a path to a .toml task file or a data file works too)", suggest(.suggestions))]
    Unknown { name: String, suggestions: Vec<String> },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{}: cannot be used as a task: {message}", path.display())]
    DataFile { path: PathBuf, message: String },
    #[error("--tasks is empty: name tasks or groups, e.g. --tasks inverse_scaling_mc")]
    Empty,
}

fn suggest(suggestions: &[String]) -> String {
    if suggestions.is_empty() { String::new() } else { format!("; did you mean {}?", suggestions.join(", ")) }
}

impl Registry {
    /// The suite compiled into this binary, from the repository's `tasks/` folder.
    pub fn builtin() -> &'static Registry {
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        REGISTRY.get_or_init(|| {
            Registry::from_files(BUILTIN_TASK_FILES.iter().map(|(n, t)| (Path::new(n), *t)))
                .unwrap_or_else(|e| panic!("built-in task files are invalid (a test catches this first): {e}"))
        })
    }

    /// Builds a registry from task files and a `_groups.toml`.
    pub fn from_files<'a>(files: impl IntoIterator<Item = (&'a Path, &'a str)>) -> Result<Registry, SpecError> {
        let mut tasks = Vec::new();
        let mut groups_file = None;
        for (path, text) in files {
            if path.file_name().is_some_and(|n| n == GROUPS_FILE) {
                let parsed: GroupsFile =
                    toml::from_str(text).map_err(|e| SpecError { path: path.into(), message: e.to_string() })?;
                groups_file = Some(parsed);
            } else {
                tasks.extend(TaskSpec::from_toml(text, Path::new("tasks").join(path).as_path())?.expand());
            }
        }
        let GroupsFile { group: groups, setup: setups } =
            groups_file.ok_or_else(|| SpecError { path: GROUPS_FILE.into(), message: "missing".into() })?;
        let registry = Registry { tasks, groups, setups };
        registry.check()?;
        Ok(registry)
    }

    fn check(&self) -> Result<(), SpecError> {
        let err = |name: &str, message: String| SpecError { path: format!("tasks/{name}").into(), message };
        let mut names = std::collections::HashSet::new();
        for t in &self.tasks {
            for n in std::iter::once(&t.name).chain(&t.aliases) {
                if !names.insert(n.clone()) || self.groups.iter().any(|g| &g.name == n) {
                    return Err(err(&t.name, format!("the name `{n}` is used twice")));
                }
            }
            if let Some(g) = t.groups.iter().find(|g| !self.groups.iter().any(|k| &k.name == *g)) {
                return Err(err(&t.name, format!("group `{g}` is not described in {GROUPS_FILE}")));
            }
            if let Some(s) = t.matches.iter().find(|s| !self.setups.iter().any(|k| &k.name == *s)) {
                return Err(err(&t.name, format!("setup `{s}` is not described in {GROUPS_FILE}")));
            }
        }
        Ok(())
    }

    /// A task by name or alias.
    pub fn task(&self, name: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.name == name || t.aliases.iter().any(|a| a == name))
    }

    pub fn group(&self, name: &str) -> Option<&GroupInfo> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn group_tasks(&self, name: &str) -> Vec<&TaskSpec> {
        self.tasks.iter().filter(|t| t.groups.iter().any(|g| g == name)).collect()
    }

    /// Resolves a `--tasks` value: comma-separated task names, aliases, group names, task
    /// files (`.toml`) and data files in the prize format. Order is kept, duplicates dropped.
    pub fn resolve(&self, selector: &str) -> Result<Vec<TaskSpec>, ResolveError> {
        let mut out: Vec<TaskSpec> = Vec::new();
        let push = |t: TaskSpec, out: &mut Vec<TaskSpec>| {
            if !out.iter().any(|o| o.name == t.name) {
                out.push(t);
            }
        };
        for item in selector.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(t) = self.task(item) {
                push(t.clone(), &mut out);
            } else if self.group(item).is_some() {
                for t in self.group_tasks(item) {
                    push(t.clone(), &mut out);
                }
            } else if Path::new(item).is_file() {
                for t in tasks_from_path(Path::new(item))? {
                    push(t, &mut out);
                }
            } else {
                return Err(ResolveError::Unknown { name: item.to_string(), suggestions: self.suggestions(item) });
            }
        }
        if out.is_empty() {
            return Err(ResolveError::Empty);
        }
        Ok(out)
    }

    fn suggestions(&self, name: &str) -> Vec<String> {
        let candidates = self
            .tasks
            .iter()
            .flat_map(|t| std::iter::once(&t.name).chain(&t.aliases))
            .chain(self.groups.iter().map(|g| &g.name));
        let mut scored: Vec<(usize, &String)> = candidates
            .map(|c| {
                let d = edit_distance(name, c);
                // A name typed without the `inverse_scaling_` prefix, or a part of one.
                let d = if c.contains(name) && name.len() >= 3 { d.min(2) } else { d };
                (d, c)
            })
            .filter(|(d, c)| *d <= (c.len() / 3).max(2))
            .collect();
        scored.sort();
        scored.into_iter().take(3).map(|(_, c)| format!("`{c}`")).collect()
    }
}

/// A user's tasks: a `.toml` task file (several with `each`), an lm-eval `.yaml` task file, or
/// a bare data file in the prize format.
pub fn tasks_from_path(path: &Path) -> Result<Vec<TaskSpec>, ResolveError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    if ext == "toml" {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SpecError { path: path.to_path_buf(), message: e.to_string() })?;
        return Ok(TaskSpec::from_toml(&text, path)?.expand());
    }
    if ext == "yaml" || ext == "yml" {
        return Ok(vec![crate::lm_eval_yaml::task_from_yaml(path, &Registry::builtin().tasks)?]);
    }
    task_for_data_file(path).map(|t| vec![t])
}

/// A candidate dataset's task (`invscale check FILE [--as TASK]`): its columns guessed from the
/// file, or those and the rules of the built-in task `as_task`.
pub fn candidate_task(path: &Path, as_task: Option<&str>) -> Result<TaskSpec, String> {
    let Some(name) = as_task else {
        return task_for_data_file(path).map_err(|e| e.to_string());
    };
    let mut specs = Registry::builtin().resolve(name).map_err(|e| format!("--as: {e}"))?;
    if specs.len() != 1 {
        return Err("--as needs one task, not a group".into());
    }
    Ok(specs.remove(0).reading(path))
}

/// An ad-hoc task for a data file: its type is read off the columns (`completion` →
/// sequence_prob, `other_prompt` → logodds, `text`/`target` → the winobias schema, else the
/// prize's classification schema `prompt, classes, answer_index`).
pub fn task_for_data_file(path: &Path) -> Result<TaskSpec, ResolveError> {
    let fail = |message: String| ResolveError::DataFile { path: path.to_path_buf(), message };
    if Format::from_path(path).is_none() {
        return Err(fail(format!("unknown format: a data file must end in .{}", Format::EXTENSIONS.join(", ."))));
    }
    let columns = crate::read::column_names(path).map_err(fail)?;
    let has = |c: &str| columns.iter().any(|k| k == c);
    let (task_type, cols, delimiter) = if has("completion") && !has("classes") {
        (TaskType::SequenceProb, Columns::default(), "")
    } else if has("other_prompt") {
        (TaskType::Logodds, Columns::default(), "")
    } else if has("text") && has("target") && !has("prompt") {
        (TaskType::Classification, Columns { prompt: "text".into(), answer: Answer::Field("target".into()), ..Columns::default() }, " ")
    } else {
        (TaskType::Classification, Columns::default(), "")
    };
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("task");
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    Ok(TaskSpec {
        name,
        aliases: vec![],
        groups: vec![],
        paper_task: None,
        description: format!("User data file {}", path.display()),
        variant: String::new(),
        cause: None,
        task_type,
        main: true,
        matches: vec![],
        version: 0,
        source: Source { path: Some(path.to_path_buf()), ..Source::default() },
        columns: cols,
        scoring: Scoring { delimiter: delimiter.into(), ..Scoring::default() },
        each: Vec::new(),
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
