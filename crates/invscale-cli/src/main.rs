//! `invscale`: a fast, exact evaluation harness for inverse scaling. This binary is a thin shell:
//! argument parsing and printing; the work is done by the invscale-* libraries.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "invscale",
    version,
    about = "Evaluate language models on the Inverse Scaling Prize tasks, exactly as lm-evaluation-harness and the prize scored them",
    long_about = "Evaluate language models on the Inverse Scaling Prize tasks (McKenzie et al. 2023), scoring them \
exactly as lm-evaluation-harness (`inverse_scaling_mc`) and the prize's own pipeline did.\n\n\
Exit status: 0 success, 1 failure, 2 bad input (data, task files, arguments).",
    after_help = "Examples:\n  invscale run --model m.gguf --tasks inverse_scaling_mc --output-path results\n  invscale tasks                                   list tasks and groups\n  \
invscale tasks show neqa                         describe a task, with an example and its requests\n  \
invscale data validate my_task.csv               check a candidate dataset in the prize format\n  \
invscale check my_task.csv --models a.gguf,b.gguf,c.gguf   does it scale inversely? verdict and report\n  \
invscale scale --models a.gguf,b.gguf,c.gguf --tasks inverse_scaling_mc --output-path scaling\n  \
invscale logprobs --model m.gguf --text \"Q: 2+2?\\nA: 4\"   each token's log-prob\n  \
invscale data validate inverse_scaling_mc --data-dir ../shared/data/inverse_scaling"
)]
struct Cli {
    /// Folder(s) holding task data files (the prize release files, or `<hub name>.jsonl`).
    /// Also read from $INVSCALE_DATA_DIR (`:`-separated). Searched before the hub cache.
    #[arg(long = "data-dir", global = true, value_name = "DIR")]
    data_dirs: Vec<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List tasks and groups, or describe one task.
    Tasks(commands::tasks::TasksArgs),
    /// Work with task data files.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Evaluate a model on tasks (the main job), as lm-evaluation-harness would.
    Run(commands::run::RunArgs),
    /// Run a family of models and call each task's trend: inverse, positive, U, inverted-U or flat.
    Scale(commands::scale::ScaleArgs),
    /// Check a candidate dataset (prize format) across a model family: validate, run, verdict, report.
    Check(commands::scale::CheckArgs),
    /// Print each token of a text with its id and log-prob under a model.
    Logprobs(commands::logprobs::LogprobsArgs),
}

fn main() -> ExitCode {
    invscale_models::pin_cpu_thread_count();
    invscale_models::host::quiet_error_backtraces();
    let cli = Cli::parse();
    let data = invscale_tasks::DataOptions::from_env(cli.data_dirs);
    let result = match cli.command {
        Command::Tasks(args) => commands::tasks::run(args, &data),
        Command::Data(cmd) => commands::data::run(cmd, &data),
        Command::Run(args) => commands::run::run(args, &data),
        Command::Scale(args) => commands::scale::run(args, &data),
        Command::Check(args) => commands::scale::run_check(args),
        Command::Logprobs(args) => commands::logprobs::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
