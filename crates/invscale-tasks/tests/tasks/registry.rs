//! The built-in suite: valid task files, the groups' membership, `--tasks` resolution, user
//! tasks, and tasks/README.md kept current.

use std::path::Path;

use invscale_tasks::registry::{ResolveError, tasks_from_path};
use invscale_tasks::spec::{Cause, RequestMode, TaskType};
use invscale_tasks::{Registry, TaskSpec};

#[test]
fn inverse_scaling_mc_holds_lm_evals_eleven_tasks() {
    let r = Registry::builtin();
    let mut names: Vec<&str> = r.group_tasks("inverse_scaling_mc").iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    // The task list of lm-eval's lm_eval/tasks/inverse_scaling/README.md.
    assert_eq!(
        names,
        [
            "inverse_scaling_hindsight_neglect_10shot",
            "inverse_scaling_into_the_unknown",
            "inverse_scaling_memo_trap",
            "inverse_scaling_modus_tollens",
            "inverse_scaling_neqa",
            "inverse_scaling_pattern_matching_suppression",
            "inverse_scaling_quote_repetition",
            "inverse_scaling_redefine_math",
            "inverse_scaling_repetitive_algebra",
            "inverse_scaling_sig_figs",
            "inverse_scaling_winobias_antistereotype",
        ]
    );
    for t in r.group_tasks("inverse_scaling_mc") {
        assert_eq!(t.task_type, TaskType::Classification);
        assert_eq!(t.version, 0);
        assert!(t.matches.iter().any(|m| m == "lm-eval"), "{}", t.name);
        // lm-eval's _inverse_scaling_mc_yaml sets target_delimiter "" (classes carry their
        // space); winobias's own YAML does not, so lm-eval's default " " applies.
        let want = if t.name.contains("winobias") { " " } else { "" };
        assert_eq!(t.scoring.delimiter, want, "{}", t.name);
    }
}

#[test]
fn inverse_scaling_prize_holds_the_eleven_winners_as_released() {
    let r = Registry::builtin();
    let tasks = r.group_tasks("inverse_scaling_prize");
    assert_eq!(tasks.len(), 11);
    let papers: std::collections::BTreeSet<&str> = tasks.iter().map(|t| t.paper_task.as_deref().unwrap()).collect();
    // Paper Table 1.
    assert_eq!(
        papers.into_iter().collect::<Vec<_>>(),
        [
            "Hindsight Neglect", "Into the Unknown", "Memo Trap", "Modus Tollens", "NeQA", "Pattern Match Suppression",
            "Prompt Injection", "Redefine", "Repetitive Algebra", "Resisting Correction", "Sig Figs"
        ]
    );
    for t in tasks {
        assert!(t.main && t.cause.is_some() && t.source.release.is_some(), "{}", t.name);
    }
    // Paper §4's grouping by cause.
    let cause = |n: &str| r.task(n).unwrap().cause.unwrap();
    assert_eq!(cause("memo_trap"), Cause::StrongPrior);
    assert_eq!(cause("modus_tollens"), Cause::UnwantedImitation);
    assert_eq!(cause("sig_figs"), Cause::DistractorTask);
    assert_eq!(cause("repetitive_algebra"), Cause::SpuriousFewShot);
    assert_eq!(r.task("prompt_injection").unwrap().task_type, TaskType::SequenceProb);
    // redefine as lm-eval's inverse_scaling configuration scores the others; the prize's own
    // pipeline as a variant.
    assert_eq!(r.task("redefine").unwrap().scoring.mode, RequestMode::LmEval);
    assert_eq!(r.task("redefine_prize").unwrap().scoring.mode, RequestMode::Prize);
    // Each paper task has exactly one main variant.
    for (paper, n) in [("Resisting Correction", 2), ("Redefine", 3)] {
        let variants: Vec<&TaskSpec> = r.tasks.iter().filter(|t| t.paper_task.as_deref() == Some(paper)).collect();
        assert_eq!(variants.len(), n, "{paper}");
        assert_eq!(variants.iter().filter(|t| t.main).count(), 1, "{paper}");
    }
}

#[test]
fn tasks_resolve_by_name_alias_group_and_path() {
    let r = Registry::builtin();
    let names = |sel: &str| r.resolve(sel).unwrap().into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(names("neqa"), ["inverse_scaling_neqa"]);
    assert_eq!(names("inverse_scaling_neqa, memo_trap,neqa"), ["inverse_scaling_neqa", "inverse_scaling_memo_trap"]);
    assert_eq!(names("inverse_scaling_mc").len(), 11);
    assert_eq!(names("inverse_scaling_mc,inverse_scaling_prize").len(), 14);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hub_classification.parquet");
    assert_eq!(names(fixture.to_str().unwrap()), ["hub_classification"]);

    let err = r.resolve("inverse_scaling_neqq").unwrap_err();
    assert!(matches!(&err, ResolveError::Unknown { .. }));
    assert!(err.to_string().contains("did you mean `inverse_scaling_neqa`"), "{err}");
    let err = r.resolve("sigfigs").unwrap_err();
    assert!(err.to_string().contains("`sig_figs`"), "{err}");
    assert!(matches!(r.resolve(" , "), Err(ResolveError::Empty)));
}

#[test]
fn user_task_files_work_like_built_in_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.csv"), "prompt,classes,answer_index\n\"Q?\",\"[' A', ' B']\",1\n").unwrap();
    let toml_path = dir.path().join("my_task.toml");
    std::fs::write(
        &toml_path,
        r#"
name = "my_task"
description = "A candidate inverse-scaling task."
type = "classification"
[source]
path = "mine.csv"
[scoring]
metrics = ["acc", "loss"]
"#,
    )
    .unwrap();
    let spec = tasks_from_path(&toml_path).unwrap().remove(0);
    assert_eq!(spec.source.path.as_deref(), Some(dir.path().join("mine.csv").as_path()));
    let files = invscale_tasks::locate(&spec, &invscale_tasks::DataOptions::from_env(vec![])).unwrap();
    let data = invscale_tasks::load(&spec, &files).unwrap();
    assert_eq!(data.docs[0].body.answer(), Some(1));

    // Task files are data: unknown keys (a `!function`-style hook, a typo) are errors.
    std::fs::write(&toml_path, "name = \"x\"\ndescription = \"d\"\ntype = \"classification\"\nprocess_results = \"utils.py\"\n[source]\npath = \"mine.csv\"\n").unwrap();
    let err = tasks_from_path(&toml_path).unwrap_err().to_string();
    assert!(err.contains("my_task.toml") && err.contains("line 4") && err.contains("process_results"), "{err}");
    // Metrics that do not apply to the type are refused with the allowed list.
    std::fs::write(&toml_path, "name = \"x\"\ndescription = \"d\"\ntype = \"sequence_prob\"\n[source]\npath = \"mine.csv\"\n[scoring]\nmetrics = [\"acc\"]\n").unwrap();
    let err = tasks_from_path(&toml_path).unwrap_err().to_string();
    assert!(err.contains("metric `acc` does not apply to a sequence_prob task (allowed: loss, perplexity)"), "{err}");
}

#[test]
fn task_readme_is_generated_from_the_task_files() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks/README.md");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let rendered = invscale_tasks::readme::render(Registry::builtin());
    assert!(
        on_disk == rendered,
        "tasks/README.md is stale: regenerate it with `{}`",
        invscale_tasks::readme::REGENERATE
    );
    assert!(rendered.contains("| `inverse_scaling_neqa` | NeQA | **main** | classification | distractor task | better | 300 |"));
    // Where gold is the behaviour measured, the table says what a higher acc means.
    assert!(rendered.contains("| `advanced_ai_risk_human-power-seeking-inclination` | Advanced AI risk: power-seeking-inclination | **main** | classification | — | more of the behaviour | 998 |"), "{rendered}");
}
