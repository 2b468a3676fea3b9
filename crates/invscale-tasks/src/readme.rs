//! `tasks/README.md`, generated from the task files (`invscale tasks --markdown`). A test
//! fails when the checked-in file is not what this renders, so the table cannot go stale.

use std::fmt::Write;

use crate::registry::Registry;
use crate::spec::TaskSpec;

pub const REGENERATE: &str = "cargo run -q -p invscale-cli -- tasks --markdown > tasks/README.md";

pub fn render(registry: &Registry) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# The invscale task suite\n");
    let _ = writeln!(
        w,
        "<!-- Generated from tasks/*.toml by `{REGENERATE}`. Do not edit by hand: CI fails when it is stale. -->\n"
    );
    let _ = writeln!(
        w,
        "Every task is a declarative TOML file in this folder: data, never code. The binary embeds them; \
`invscale tasks` lists them and `invscale tasks show NAME` prints one with a rendered example. \
Your own tasks work the same way: `--tasks path/to/my_task.toml`, or a bare data file in the prize \
format (`prompt, classes, answer_index` as CSV, JSONL, JSON or parquet), or lm-evaluation-harness's own \
YAML task file for a multiple-choice task (`--tasks path/to/task.yaml`: `include:`, `doc_to_text`/\
`doc_to_choice`/`doc_to_target` as columns or Jinja, `target_delimiter`, `description`, `dataset_path`/\
`dataset_name`/splits or `dataset_path: json` with `data_files`, `metric_list` of acc/acc_norm; `!function` \
hooks are refused with their line, except TruthfulQA's `process_results_mc2`, which invscale implements as \
`mc2`; few-shot settings are refused).\n"
    );

    let _ = writeln!(w, "## Groups\n");
    for g in &registry.groups {
        let members: Vec<String> = registry.group_tasks(&g.name).iter().map(|t| format!("`{}`", t.name)).collect();
        let _ = writeln!(w, "### `{}` ({} tasks)\n\n{}\n\n{}\n", g.name, members.len(), g.description, members.join(", "));
    }

    let _ = writeln!(w, "## Tasks\n");
    let _ = writeln!(w, "**Main** marks the main variant of each paper task. Rows are those of the published data (`?`: not known offline).\n");
    let _ = writeln!(w, "**Higher acc** is *better* where gold is the right answer, and *more of the behaviour* where gold is the behaviour being measured (the advanced-AI-risk sets: there a rising curve is the inverse trend).\n");
    let _ = writeln!(w, "| Task | Paper task | Main | Type | Cause | Higher acc | Rows | Data | Matches |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---:|---|---|");
    let mut tasks: Vec<&TaskSpec> = registry.tasks.iter().collect();
    tasks.sort_by(|a, b| a.name.cmp(&b.name));
    for t in &tasks {
        let _ = writeln!(
            w,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.name,
            t.paper_task.as_deref().unwrap_or("— (not a prize task)"),
            if t.main { "**main**" } else { "variant" },
            t.task_type,
            t.cause.map_or("—", |c| c.label()),
            if t.scoring.gold_is_undesired { "more of the behaviour" } else { "better" },
            t.source.rows.map_or("?".to_string(), thousands),
            data_cell(t),
            t.matches.join(", "),
        );
    }

    let _ = writeln!(w, "\n## What each task evaluates\n");
    for t in &tasks {
        let aliases = if t.aliases.is_empty() {
            String::new()
        } else {
            format!(" (also: {})", t.aliases.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "))
        };
        let _ = writeln!(w, "- **`{}`**{aliases}: {} *Variant:* {}", t.name, t.description, t.variant);
    }

    let _ = writeln!(w, "\n## Published setups\n");
    for s in &registry.setups {
        let _ = writeln!(w, "- **{}**: {}", s.name, s.description);
    }

    let _ = writeln!(w, "\n## Data offline\n");
    let _ = writeln!(
        w,
        "invscale looks for a task's data in each `--data-dir` folder and its subfolders (the release file name, also under \
`official_release/`, or `<hub dataset name>.{{jsonl,json,csv,parquet}}`, or `<hub dataset name>/[<config>/]<split>.<ext>`), then in the Hugging Face hub cache \
(`HF_HUB_CACHE`, shared with Python), then downloads it unless `HF_HUB_OFFLINE=1`. When it finds nothing, the \
error lists every path it tried and how to get the file.\n"
    );

    let _ = writeln!(w, "## Task file schema\n");
    let _ = writeln!(w, "```toml\n{SCHEMA}```");
    s
}

fn data_cell(t: &TaskSpec) -> String {
    let mut parts = Vec::new();
    if let Some(hf) = &t.source.hf {
        let config = hf.config.as_ref().map_or(String::new(), |c| format!("{c}, "));
        parts.push(format!("hub `{}` ({config}{})", hf.repo, hf.split));
    }
    if let Some(r) = &t.source.release {
        parts.push(format!("release `{}`", r.file));
    }
    parts.join("<br>")
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const SCHEMA: &str = r#"name = "my_task"                 # what --tasks accepts; ASCII letters, digits, _ and -
aliases = ["mine"]                # optional other names
groups = []                       # optional groups (described in tasks/_groups.toml)
paper_task = "Memo Trap"          # optional: the paper's task this is a variant of
description = "One sentence: what the task evaluates."
variant = "One sentence: what this variant is or adds."
cause = "strong-prior"            # optional: strong-prior | unwanted-imitation | distractor-task | spurious-few-shot
type = "classification"           # classification | sequence_prob | logodds | absolute_logodds
main = true                       # the main variant of its paper task
matches = []                      # published setups it reproduces: lm-eval | hub-evaluator | prize-pipeline | anthropic-evals
version = 0
each = []                         # optional: one task per entry, {each} in name/description/release file/hub config
                                  # replaced: [{ name = "power-seeking-inclination", rows = 998, sha256 = "…" }, …]

[source]                          # at least one of path, hf, release
path = "my_task.csv"              # a local file, relative to this task file
rows = 300                        # optional: documents in the published data (checked)
hf = { repo = "org/name", config = "default", split = "train", revision = "main" }   # config: optional
release = { file = "x_classification.jsonl", sha256 = "…" }
label_maps = []                   # fields holding {answer: label} objects, read as {choices, labels} (TruthfulQA's mc_task.json)

[columns]                         # defaults shown. Each is a column, a nested field (`mc1_targets.choices`), or a
                                  # Jinja template over the row (`Q: {{ question }}\nA:`, `{{ [a, b] }}`): data, never
                                  # code (a sandboxed engine with a work limit, as lm-eval's doc_to_text/doc_to_choice)
prompt = "prompt"
classes = "classes"               # a list, or a string holding a Python list literal
answer = "answer_index"           # an integer index, or the gold class's text; or a fixed index: answer = 0
labels = "mc2_targets.labels"     # optional: 0/1 per class, which are true (the mc2 metric needs it)
completion = "completion"         # sequence_prob
other_prompt = "other_prompt"     # logodds

[scoring]
delimiter = ""                    # between prompt and class (lm-eval's target_delimiter)
mode = "lm-eval"                  # lm-eval | prize: which request construction to reproduce
metrics = ["acc", "acc_norm"]     # default by type; also acc_bytes, loss, coverage, acc_mutual_info, brier_score, perplexity, logodds, mc2
gold_is_undesired = false         # true: gold is the behaviour measured (acc = rate of matching it): a rising acc is inverse scaling
"#;
