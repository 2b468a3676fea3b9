//! `invscale data validate`: every problem of a data file or task, at once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use invscale_tasks::dataset::check;
use invscale_tasks::diag::Severity;
use invscale_tasks::registry::task_for_data_file;
use invscale_tasks::{DataOptions, Origin, Registry, TaskSpec, locate};
use serde_json::json;

use super::BAD_INPUT;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Check data files or tasks and report every problem (file, line, field), not just the
    /// first. Exits 2 if any error is found; warnings alone exit 0.
    Validate {
        /// Data files (.jsonl, .json, .csv, .parquet), task files (.toml), task names or groups.
        #[arg(required = true)]
        targets: Vec<String>,
        /// Read data files with this task's columns and rules (e.g. check a CSV as `neqa`).
        #[arg(long = "as", value_name = "TASK")]
        as_task: Option<String>,
        /// Print the diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: DataCommand, data: &DataOptions) -> anyhow::Result<ExitCode> {
    let DataCommand::Validate { targets, as_task, json } = cmd;
    let registry = Registry::builtin();
    let template = match as_task.as_deref().map(|n| registry.resolve(n)) {
        None => None,
        Some(Ok(mut v)) if v.len() == 1 => Some(v.remove(0)),
        Some(Ok(_)) => {
            eprintln!("error: --as needs one task, not a group");
            return Ok(ExitCode::from(BAD_INPUT));
        }
        Some(Err(e)) => {
            eprintln!("error: --as: {e}");
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };

    // (task, files) pairs to check; problems finding them are errors too.
    let mut jobs: Vec<(TaskSpec, Vec<(PathBuf, Origin)>)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for target in &targets {
        let path = Path::new(target);
        let is_data_file = path.is_file() && path.extension().is_none_or(|e| e != "toml");
        if is_data_file {
            let spec = match &template {
                Some(t) => Ok(t.reading(path)),
                None => task_for_data_file(path),
            };
            match spec {
                Ok(spec) => jobs.push((spec, vec![(path.to_path_buf(), Origin::Path)])),
                Err(e) => failures.push(e.to_string()),
            }
            continue;
        }
        match registry.resolve(target) {
            Ok(specs) => {
                for spec in specs {
                    match locate(&spec, data) {
                        Ok(files) => jobs.push((spec, files)),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }

    let mut errors = failures.len();
    let mut report = Vec::new();
    for (spec, files) in &jobs {
        let (dataset, diagnostics) = check(spec, files);
        let n_err = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        let n_warn = diagnostics.len() - n_err;
        errors += n_err;
        if json {
            report.push(json!({
                "task": spec.name,
                "files": dataset.files,
                "documents": dataset.docs.len(),
                "errors": n_err,
                "warnings": n_warn,
                "diagnostics": diagnostics,
            }));
            continue;
        }
        for d in &diagnostics {
            println!("{d}");
        }
        let where_: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        let verdict = if n_err == 0 { "ok" } else { "FAILED" };
        println!(
            "{verdict}: {} ({}): {} documents, {n_err} error(s), {n_warn} warning(s)",
            spec.name,
            where_.join(", "),
            dataset.docs.len()
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({"results": report, "failures": failures}))?);
    } else {
        for f in &failures {
            eprintln!("error: {}", f.trim_end());
        }
    }
    Ok(if errors > 0 { ExitCode::from(BAD_INPUT) } else { ExitCode::SUCCESS })
}
