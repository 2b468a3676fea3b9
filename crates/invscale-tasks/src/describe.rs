//! A task described for people: the suite as a table, and one task's summary (what it
//! evaluates, its source, how it is scored), as `invscale tasks` prints them.

use std::fmt::Write;

use crate::registry::Registry;
use crate::spec::TaskSpec;

/// Every task (sorted by name) with its type, rows, whether it is the main variant and its
/// groups; then the groups; then a pointer to `invscale tasks show`.
pub fn table(registry: &Registry) -> String {
    let mut out = String::new();
    let mut tasks: Vec<&TaskSpec> = registry.tasks.iter().collect();
    tasks.sort_by(|a, b| a.name.cmp(&b.name));
    let width = tasks.iter().map(|t| t.name.len()).max().unwrap_or(4);
    let _ = writeln!(out, "{:width$}  {:14}  {:>6}  {:7}  GROUPS", "TASK", "TYPE", "ROWS", "MAIN");
    for t in tasks {
        let _ = writeln!(
            out,
            "{:width$}  {:14}  {:>6}  {:7}  {}",
            t.name,
            t.task_type.as_str(),
            t.source.rows.map_or("?".into(), |r| r.to_string()),
            if t.main { "main" } else { "variant" },
            t.groups.join(", ")
        );
    }
    out.push('\n');
    for g in &registry.groups {
        let _ = writeln!(out, "group {} ({} tasks): {}", g.name, registry.group_tasks(&g.name).len(), g.description);
    }
    let _ = writeln!(out, "\n`invscale tasks show NAME` describes a task; --json for machines; --markdown for tasks/README.md.");
    out
}

/// What `invscale tasks show` says of a task before its data: what it evaluates, its source,
/// how it is scored.
pub fn summary(spec: &TaskSpec) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", spec.name);
    if !spec.aliases.is_empty() {
        let _ = writeln!(out, "  aliases:     {}", spec.aliases.join(", "));
    }
    let _ = writeln!(out, "  evaluates:   {}", spec.description);
    if !spec.variant.is_empty() {
        let _ = writeln!(out, "  variant:     {}", spec.variant);
    }
    if let Some(p) = &spec.paper_task {
        let _ = writeln!(out, "  paper task:  {p} ({})", if spec.main { "main variant" } else { "not the main variant" });
    }
    let _ = writeln!(out, "  cause:       {}", spec.cause.map_or("— (not a prize task)", |c| c.label()));
    let _ = writeln!(out, "  type:        {}", spec.task_type);
    if !spec.groups.is_empty() {
        let _ = writeln!(out, "  groups:      {}", spec.groups.join(", "));
    }
    if !spec.matches.is_empty() {
        let _ = writeln!(out, "  matches:     {}", spec.matches.join(", "));
    }
    if let Some(hf) = &spec.source.hf {
        let config = hf.config.as_ref().map_or(String::new(), |c| format!("configuration {c}, "));
        let _ = writeln!(out, "  hub:         {} ({config}split {}, revision {})", hf.repo, hf.split, hf.revision);
    }
    if let Some(r) = &spec.source.release {
        let _ = writeln!(out, "  release:     {}", r.file);
    }
    if let Some(rows) = spec.source.rows {
        let _ = writeln!(out, "  rows:        {rows}");
    }
    let metrics: Vec<&str> = spec.metrics().iter().map(|m| m.as_str()).collect();
    let _ = writeln!(
        out,
        "  scoring:     delimiter {:?}, request mode {}, metrics {}",
        spec.scoring.delimiter,
        spec.scoring.mode.as_str(),
        metrics.join(", ")
    );
    out
}
