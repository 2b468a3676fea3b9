//! The tasks of a `--tasks` value (names, aliases, groups, task files, data files), each with
//! its data: what cannot be found is skipped with a warning, bad data stops everything before
//! any model time is spent.

use invscale_eval::TaskResult;
use invscale_eval::metrics::group as group_aggregate;
use invscale_report::{GroupReport, Skipped};
use invscale_tasks::dataset::Dataset;
use invscale_tasks::spec::Metric;
use invscale_tasks::{DataOptions, Document, Registry, load, locate};

use crate::error::HarnessError;
use crate::observer::Observer;

pub struct TaskSet {
    /// The tasks that have data, in the order asked for.
    pub datasets: Vec<Dataset>,
    /// The tasks asked for that have no data here, and why.
    pub skipped: Vec<Skipped>,
    /// The groups named in the request (their rows are reported over their tasks that ran).
    pub groups: Vec<String>,
}

impl TaskSet {
    /// What to tell of the tasks skipped for want of data, if any.
    pub fn skipped_note(&self) -> Option<String> {
        let names: Vec<&str> = self.skipped.iter().map(|s| s.task.as_str()).collect();
        (!names.is_empty()).then(|| {
            format!(
                "skipped {} task(s) without data: {} (`invscale data validate TASK` lists where invscale looked and how to get the data)",
                names.len(),
                names.join(", ")
            )
        })
    }

    /// Locates and reads the data of every task `tasks` names (comma-separated). Tasks without
    /// data are skipped (a warning each); a dataset with errors, or no task with data, is bad
    /// input, reported whole.
    pub fn load(tasks: &str, data: &DataOptions, observer: &mut dyn Observer) -> Result<TaskSet, HarnessError> {
        let registry = Registry::builtin();
        let specs = registry.resolve(tasks).map_err(|e| HarnessError::BadInput(e.to_string()))?;
        let mut datasets: Vec<Dataset> = Vec::new();
        let mut skipped: Vec<Skipped> = Vec::new();
        let mut errors = Vec::new();
        for spec in specs {
            let files = match locate(&spec, data) {
                Ok(f) => f,
                Err(e) => {
                    // One line each (a group can miss many); `invscale data validate TASK` gives
                    // the whole story: every place looked and how to get the data.
                    let hub = e.hub.as_deref().and_then(|h| h.lines().next()).unwrap_or("no hub source");
                    let reason = format!("no data: not in the --data-dir folders; hub: {}", hub.trim_end_matches('.'));
                    observer.warning(&format!("skipping {}: {reason}", spec.name));
                    skipped.push(Skipped { task: spec.name.clone(), reason });
                    continue;
                }
            };
            match load(&spec, &files) {
                Ok(ds) => {
                    for d in &ds.diagnostics {
                        observer.note(&d.to_string());
                    }
                    datasets.push(ds);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            errors.push("fix the data above (`invscale data validate` lists every problem); nothing was run".into());
            return Err(HarnessError::BadInput(errors.join("\nerror: ")));
        }
        if datasets.is_empty() {
            return Err(HarnessError::BadInput(
                "none of the tasks has data to run (see the warnings above; --data-dir points at local files)".into(),
            ));
        }
        let groups = tasks.split(',').map(str::trim).filter_map(|t| registry.group(t)).map(|g| g.name.clone()).collect();
        Ok(TaskSet { datasets, skipped, groups })
    }

    /// One dataset on its own (`invscale check`'s candidate file, validated by the caller).
    pub fn single(dataset: Dataset) -> TaskSet {
        TaskSet { datasets: vec![dataset], skipped: Vec::new(), groups: Vec::new() }
    }

    /// Task `i`'s documents under `--limit`.
    pub fn docs(&self, i: usize, limit: Option<f64>) -> &[Document] {
        limited(&self.datasets[i].docs, limit)
    }

    /// The rows of the groups asked for, over their tasks in `results` (lm-eval's size-weighted
    /// mean and pooled stderr, on the metrics every member reports).
    pub fn group_reports(&self, results: &[TaskResult]) -> Vec<GroupReport> {
        let registry = Registry::builtin();
        let mut out = Vec::new();
        for name in &self.groups {
            let members: Vec<&TaskResult> =
                results.iter().filter(|r| registry.task(&r.task).is_some_and(|t| t.groups.contains(name))).collect();
            let Some(first) = members.first() else { continue };
            let common: Vec<Metric> =
                first.metrics.iter().map(|(m, _)| *m).filter(|m| members.iter().all(|r| r.metrics.iter().any(|(k, _)| k == m))).collect();
            let metrics = common
                .iter()
                .map(|m| {
                    let aggregates: Vec<_> = members.iter().filter_map(|r| r.metrics.iter().find(|(k, _)| k == m).map(|(_, a)| *a)).collect();
                    (*m, group_aggregate(&aggregates))
                })
                .collect();
            out.push(GroupReport { name: name.clone(), tasks: members.iter().map(|r| r.task.clone()).collect(), metrics });
        }
        out
    }
}

/// lm-eval's `--limit`: a count, or a fraction of each task (rounded up).
pub fn limited(docs: &[Document], limit: Option<f64>) -> &[Document] {
    let n = match limit {
        None => docs.len(),
        Some(l) if l < 1.0 => (docs.len() as f64 * l).ceil() as usize,
        Some(l) => l as usize,
    };
    &docs[..n.min(docs.len())]
}
