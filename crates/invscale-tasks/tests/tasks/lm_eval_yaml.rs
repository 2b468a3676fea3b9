//! lm-eval's own YAML task files (copied unchanged from its 0.4.13 wheel into
//! tests/fixtures/lm-eval-yaml) read with `--tasks FILE.yaml`: every document's requests and the
//! metrics equal those of invscale's built-in task for the same data, so they score identically
//! (the engine is the same; the parity test scores one against lm-eval's own numbers too).
//! Python hooks are refused with their file and line.

use std::path::{Path, PathBuf};

use invscale_tasks::registry::tasks_from_path;
use invscale_tasks::spec::Metric;
use invscale_tasks::{DataOptions, Registry, load, locate};

fn yaml(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm-eval-yaml").join(name)
}

fn shared_data() -> DataOptions {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    assert!(data.join("truthfulqa").is_dir(), "needs the project's shared/ folder beside the checkout ({})", data.display());
    DataOptions { data_dirs: vec![data], hub: invscale_hub::HubConfig::new(std::env::temp_dir().join("invscale-test-empty-hub-cache"), "http://127.0.0.1:9", true) }
}

#[test]
fn lm_evals_own_yaml_files_make_the_built_in_tasks_requests() {
    let opts = shared_data();
    for (file, builtin, metrics) in [
        ("inverse_scaling/inverse_scaling_neqa.yaml", "inverse_scaling_neqa", vec![Metric::Acc, Metric::AccNorm]),
        ("truthfulqa/truthfulqa_mc1.yaml", "truthfulqa_mc1", vec![Metric::Acc]),
        // Its `process_results: !function utils.process_results_mc2` is recognised as mc2.
        ("truthfulqa/truthfulqa_mc2.yaml", "truthfulqa_mc2", vec![Metric::Mc2]),
        ("model_written_evals/advanced_ai_risk/human-power-seeking-inclination.yaml", "advanced_ai_risk_human-power-seeking-inclination", vec![Metric::Acc]),
    ] {
        let mut specs = tasks_from_path(&yaml(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(specs.len(), 1);
        let from_yaml = specs.remove(0);
        let reference = Registry::builtin().task(builtin).unwrap();
        assert_eq!(from_yaml.name, reference.name, "{file}: lm-eval's task name");
        assert_eq!(from_yaml.scoring.metrics, metrics, "{file}");
        assert_eq!(from_yaml.scoring.metrics, reference.scoring.metrics, "{file}");
        assert_eq!(from_yaml.scoring.mode, reference.scoring.mode);
        assert_eq!(from_yaml.scoring.gold_is_undesired, reference.scoring.gold_is_undesired, "{file}");
        let a = load(&from_yaml, &locate(&from_yaml, &opts).unwrap_or_else(|e| panic!("{file}: {e}"))).unwrap_or_else(|e| panic!("{file}: {e}"));
        let b = load(reference, &locate(reference, &opts).unwrap()).unwrap();
        assert_eq!(a.docs.len(), b.docs.len(), "{file}");
        assert_eq!(a.files[0].path, b.files[0].path, "{file}: the same data file");
        for (x, y) in a.docs.iter().zip(&b.docs) {
            assert_eq!(x.requests(&from_yaml.scoring.delimiter), y.requests(&reference.scoring.delimiter), "{file} doc {}", x.id);
            assert_eq!(x.body, y.body, "{file} doc {}", x.id);
        }
    }
}

#[test]
fn python_hooks_in_a_yaml_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = yaml("inverse_scaling/_inverse_scaling_mc_yaml");
    let file = dir.path().join("my_task.yaml");
    std::fs::write(&file, format!("include: {}\ntask: mine\ndataset_path: inverse-scaling/NeQA\nprocess_docs: !function utils.process_docs\n", base.display())).unwrap();
    let err = tasks_from_path(&file).unwrap_err().to_string();
    assert!(err.contains("my_task.yaml") && err.contains("line 4") && err.contains("!function utils.process_docs") && err.contains("data only"), "{err}");
    // A hook in an included file is located there.
    let inner = dir.path().join("_base_yaml");
    std::fs::write(&inner, "output_type: multiple_choice\ndoc_to_text: !function utils.doc_to_text\n").unwrap();
    std::fs::write(&file, "include: _base_yaml\ntask: mine\n").unwrap();
    let err = tasks_from_path(&file).unwrap_err().to_string();
    assert!(err.contains("_base_yaml") && err.contains("line 2") && err.contains("doc_to_text"), "{err}");
    // Other task kinds and settings that would change the score are refused, not ignored.
    std::fs::write(&file, format!("include: {}\ntask: mine\ndataset_path: x/y\noutput_type: generate_until\n", base.display())).unwrap();
    assert!(tasks_from_path(&file).unwrap_err().to_string().contains("only multiple_choice"));
    std::fs::write(&file, format!("include: {}\ntask: mine\ndataset_path: x/y\nnum_fewshot: 5\n", base.display())).unwrap();
    assert!(tasks_from_path(&file).unwrap_err().to_string().contains("few-shot"));
    std::fs::write(&file, format!("include: {}\ntask: mine\ndataset_path: x/y\nuse_prompt: promptsource:*\n", base.display())).unwrap();
    let err = tasks_from_path(&file).unwrap_err().to_string();
    assert!(err.contains("line 4") && err.contains("`use_prompt` is not supported"), "{err}");
    // An include that loops is stopped.
    std::fs::write(&file, "include: my_task.yaml\ntask: mine\n").unwrap();
    assert!(tasks_from_path(&file).unwrap_err().to_string().contains("nests deeper"));
}

#[test]
fn a_yaml_over_a_local_json_file_with_a_template() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rows.jsonl"), "{\"q\": \"Is it?\", \"a\": \" yes\", \"b\": \" no\", \"label\": 1}\n").unwrap();
    let file = dir.path().join("mine.yaml");
    std::fs::write(
        &file,
        "task: mine\noutput_type: multiple_choice\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: rows.jsonl\ntest_split: test\n\
         description: \"Answer.\\n\\n\"\ndoc_to_text: \"Q: {{q}}\\nA:\"\ndoc_to_choice: \"{{[a, b]}}\"\ndoc_to_target: \"{{label}}\"\ntarget_delimiter: \"\"\n\
         metric_list:\n  - metric: acc_norm\n",
    )
    .unwrap();
    let spec = tasks_from_path(&file).unwrap().remove(0);
    let data = load(&spec, &locate(&spec, &shared_data()).unwrap()).unwrap();
    let doc = &data.docs[0];
    assert_eq!(doc.body.prompt(), "Answer.\n\nQ: Is it?\nA:");
    assert_eq!(doc.body.classes(), [" yes", " no"]);
    assert_eq!(doc.body.answer(), Some(1));
    assert_eq!(spec.scoring.metrics, [Metric::AccNorm]);
}
