//! `invscale tasks`: the suite as a table, JSON, or the generated README; `tasks show NAME`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use invscale_tasks::{DataOptions, Registry, describe, load, locate};
use serde_json::json;

use invscale_scale::report::tail;

use super::BAD_INPUT;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TasksArgs {
    #[command(subcommand)]
    show: Option<TasksCommand>,
    /// Print the tasks as JSON (one object per task, with the task file's fields).
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print tasks/README.md as generated from the task files.
    #[arg(long)]
    markdown: bool,
}

#[derive(Subcommand)]
enum TasksCommand {
    /// Describe one task: what it evaluates, its source and columns, and one document of its
    /// data rendered with the requests a model is asked.
    Show {
        /// A task name or alias (`inverse_scaling_neqa`, `neqa`), or a task/data file.
        name: String,
    },
}

pub fn run(args: TasksArgs, data: &DataOptions) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    if let Some(TasksCommand::Show { name }) = args.show {
        return show(registry, &name, data);
    }
    if args.markdown {
        print!("{}", invscale_tasks::readme::render(registry));
    } else if args.json {
        let tasks: Vec<_> = registry.tasks.iter().map(|t| serde_json::to_value(t).expect("task specs serialize")).collect();
        let groups: Vec<_> = registry
            .groups
            .iter()
            .map(|g| {
                let tasks: Vec<&str> = registry.group_tasks(&g.name).iter().map(|t| t.name.as_str()).collect();
                json!({"name": g.name, "description": g.description, "tasks": tasks})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({"tasks": tasks, "groups": groups}))?);
    } else {
        print!("{}", describe::table(registry));
    }
    Ok(ExitCode::SUCCESS)
}

fn show(registry: &Registry, name: &str, data: &DataOptions) -> anyhow::Result<ExitCode> {
    let spec = match registry.task(name) {
        Some(t) => t.clone(),
        None => match registry.resolve(name) {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            Ok(v) => {
                eprintln!("error: `{name}` is a group of {} tasks; show one of them:", v.len());
                for t in v {
                    eprintln!("  {}", t.name);
                }
                return Ok(ExitCode::from(BAD_INPUT));
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(BAD_INPUT));
            }
        },
    };
    print!("{}", describe::summary(&spec));

    let files = match locate(&spec, data) {
        Ok(files) => files,
        Err(not_found) => {
            println!("\ndata: not available here.\n{not_found}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let dataset = match load(&spec, &files) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    println!();
    for f in &dataset.files {
        let official = f.official.map_or("", |same| if same { ", identical to the official release" } else { ", DIFFERS from the official release" });
        println!("data: {} (sha256 {}{official})", f.path.display(), &f.sha256[..16]);
    }
    println!("documents: {}", dataset.docs.len());
    for d in &dataset.diagnostics {
        println!("  {d}");
    }
    if let Some(doc) = dataset.docs.first() {
        println!("\nexample (doc_id 0):");
        println!("  prompt:  {}", tail(doc.body.prompt(), 160));
        if !doc.body.classes().is_empty() {
            println!("  classes: {:?}", doc.body.classes());
        }
        if let Some(a) = doc.body.answer() {
            println!("  answer:  {a} ({:?})", doc.body.classes()[a]);
            if let Some(t) = doc.body.true_classes() {
                println!("  true answers (mc2): {t:?}");
            }
        }
        println!("  requests (context, continuation):");
        for (i, r) in doc.requests(&spec.scoring.delimiter).iter().enumerate() {
            println!("    [{i}] ({}, {:?})", tail(&r.context, 40), r.continuation);
        }
    }
    Ok(ExitCode::SUCCESS)
}
