//! The `invscale` binary as users run it: output, exit codes (0 ok, 2 bad input), messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn invscale(args: &[&str]) -> Output {
    let empty_cache = std::env::temp_dir().join("invscale-cli-test-empty-hub-cache");
    Command::new(env!("CARGO_BIN_EXE_invscale"))
        .args(args)
        // Never reach for the network; an empty cache.
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", empty_cache)
        .env_remove("INVSCALE_DATA_DIR")
        .output()
        .expect("run invscale")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn shared_data() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/inverse_scaling");
    assert!(dir.is_dir(), "needs the project's shared/ folder beside the checkout ({})", dir.display());
    dir
}

fn malformed(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../invscale-tasks/tests/fixtures/malformed")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn tasks_json_lists_the_suite() {
    let o = invscale(&["tasks", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // The prize's 15 task files, TruthfulQA's 4, and 2 × 16 advanced-AI-risk sets.
    assert_eq!(v["tasks"].as_array().unwrap().len(), 15 + 4 + 32);
    let group = |name: &str| v["groups"].as_array().unwrap().iter().find(|g| g["name"] == name).unwrap()["tasks"].as_array().unwrap().len();
    assert_eq!(group("inverse_scaling_mc"), 11);
    assert_eq!((group("truthfulqa"), group("advanced_ai_risk_human"), group("inverse_scaling_literature")), (2, 16, 18));
}

#[test]
fn tasks_show_renders_an_example_with_its_requests() {
    let data = shared_data();
    let o = invscale(&["tasks", "show", "hindsight_neglect", "--data-dir", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "inverse_scaling_hindsight_neglect_10shot",
        "cause:       spurious few-shot",
        "identical to the official release",
        "documents: 315",
        "classes: [\" Y\", \" N\"]",
        "requests (context, continuation):",
        ", \" N\")",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn tasks_show_without_data_explains_how_to_get_it() {
    let o = invscale(&["tasks", "show", "sig_figs"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("data: not available here."), "{}", stdout(&o));
    assert!(stdout(&o).contains("sig-figs_classification.jsonl"));
}

#[test]
fn unknown_task_is_bad_input_with_a_suggestion() {
    let o = invscale(&["tasks", "show", "inverse_scaling_neqq"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("did you mean `inverse_scaling_neqa`"), "{}", stderr(&o));
}

#[test]
fn validate_reports_every_error_with_file_line_and_field_and_exits_2() {
    let file = malformed("errors_everywhere.jsonl");
    let o = invscale(&["data", "validate", &file]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    let errors: Vec<&str> = out.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 5, "{out}");
    assert!(out.contains(&format!("{file}:2: error: field `answer_index`: gold index 7 is out of range")), "{out}");
    assert!(out.contains("FAILED: errors_everywhere"), "{out}");
}

#[test]
fn validate_json_output() {
    let o = invscale(&["data", "validate", "--json", &malformed("gold_out_of_range.jsonl")]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let d = &v["results"][0]["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["location"]["line"], 2);
    assert_eq!(d["field"], "answer_index");
}

#[test]
fn validate_real_tasks_and_submission_csvs() {
    let data = shared_data();
    let o = invscale(&["data", "validate", "neqa", "memo_trap", "hindsight_neglect", "--data-dir", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).lines().filter(|l| l.starts_with("ok: ")).count(), 3);
    // The authors' CSV, read with the built-in task's rules.
    let csv = data.join("original_submissions/neqa/sample_not_be_300.csv");
    let o = invscale(&["data", "validate", csv.to_str().unwrap(), "--as", "neqa"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("ok: inverse_scaling_neqa"), "{}", stdout(&o));
    // The submission was saved with Windows line endings: reported, and harmless (the
    // documents equal the release's, see invscale-tasks' real_data tests).
    assert!(stdout(&o).contains("301 line(s) end in CRLF"), "{}", stdout(&o));
    assert!(stdout(&o).contains("300 documents, 0 error(s), 1 warning(s)"), "{}", stdout(&o));
}

#[test]
fn validate_a_task_without_data_is_bad_input() {
    let o = invscale(&["data", "validate", "sig_figs"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no data for task `inverse_scaling_sig_figs`"), "{}", stderr(&o));
}

#[test]
fn help_teaches() {
    let o = invscale(&["--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("Examples:") && out.contains("invscale data validate"), "{out}");
}

#[test]
fn logprobs_json_matches_transformers_on_a_real_prompt() {
    // NeQA doc 0 + its first class, against the transformers fixture of invscale-models.
    let model = std::env::var_os("INVSCALE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/invscale/models"))
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(model.is_file(), "{} is missing: run scripts/fetch-models.sh", model.display());
    let line = std::fs::read_to_string(shared_data().join("official_release/neqa_classification.jsonl")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let text = format!("{}{}", doc["prompt"].as_str().unwrap(), " A");
    let o = invscale(&["logprobs", "--model", model.to_str().unwrap(), "--text", &text, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../invscale-models/tests/fixtures/logprobs/transformers-f32-smollm2-135m.jsonl"),
    )
    .unwrap();
    let row: serde_json::Value = serde_json::from_str(fixture.lines().nth(1).unwrap()).unwrap();
    assert_eq!((row["task"].as_str(), row["doc"].as_u64()), (Some("neqa"), Some(0)));
    assert_eq!(doc["classes"].as_str(), Some("[' A', ' B']"));
    let tokens = out["tokens"].as_array().unwrap();
    let want = row["logprobs"].as_array().unwrap();
    assert_eq!(tokens.len(), want.len() + 1, "SmolLM2 adds no BOS by default");
    for (t, w) in tokens[1..].iter().zip(want) {
        let d = (t["logprob"].as_f64().unwrap() - w.as_f64().unwrap()).abs();
        assert!(d <= 1e-3, "{t} vs {w}");
    }
    // Asking for BOS puts one first.
    let o = invscale(&["logprobs", "--model", model.to_str().unwrap(), "--text", "Hello world", "--bos", "always", "--json"]);
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(out["tokens"][0]["bos"], true);
}

#[test]
fn logprobs_on_a_missing_model_is_bad_input() {
    let o = invscale(&["logprobs", "--model", "/no/such/model.gguf", "--text", "hi"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/no/such/model.gguf"), "{}", stderr(&o));
}

fn smollm2() -> String {
    invscale_models::testing::model_path(invscale_models::testing::SMOLLM2).display().to_string()
}

#[test]
fn run_reports_bad_data_with_file_line_and_field_before_loading_the_model() {
    // A model path that does not exist: the data is checked first, so its error is what shows.
    let file = malformed("gold_out_of_range.jsonl");
    let o = invscale(&["run", "--model", "/nonexistent/model.gguf", "--tasks", &file, "--no-cache"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("gold_out_of_range.jsonl:") && err.contains("field `answer_index`"), "{err}");
    assert!(err.contains("nothing was run"), "{err}");
}

#[test]
fn lm_evals_yaml_task_files_run_and_python_hooks_are_refused_with_their_line() {
    let yamls = Path::new(env!("CARGO_MANIFEST_DIR")).join("../invscale-tasks/tests/fixtures/lm-eval-yaml");
    let all_data = shared_data().parent().unwrap().display().to_string();
    // lm-eval's own truthfulqa_mc2.yaml: its process_results hook is recognised as mc2.
    let mc2 = yamls.join("truthfulqa/truthfulqa_mc2.yaml").display().to_string();
    let o = invscale(&["tasks", "show", &mc2, "--data-dir", &all_data]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("metrics mc2") && out.contains("documents: 817") && out.contains("true answers (mc2): [0]"), "{out}");
    // A hook that is Python code: exit 2, the file and line, before any model is loaded.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("my_task.yaml");
    let base = yamls.join("inverse_scaling/_inverse_scaling_mc_yaml");
    std::fs::write(&bad, format!("include: {}\ntask: mine\ndataset_path: inverse-scaling/NeQA\nprocess_docs: !function utils.process_docs\n", base.display())).unwrap();
    let o = invscale(&["run", "--model", "/nonexistent/model.gguf", "--tasks", &bad.display().to_string(), "--no-cache"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("my_task.yaml: line 4: `process_docs: !function utils.process_docs` is Python code"), "{err}");
}

#[test]
fn bad_input_prints_its_message_and_no_backtrace_whatever_rust_backtrace_says() {
    let dir = tempfile::tempdir().unwrap();
    // A GGUF header that declares more tensors than any file holds.
    let gguf = dir.path().join("bad.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(u64::MAX.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    std::fs::write(&gguf, bytes).unwrap();
    for backtrace in ["1", "full"] {
        let o = Command::new(env!("CARGO_BIN_EXE_invscale"))
            .args(["logprobs", "--model", &gguf.display().to_string(), "--text", "hi"])
            .env("RUST_BACKTRACE", backtrace)
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("bad.gguf: unreadable GGUF header"), "{err}");
        assert!(!err.contains("backtrace") && !err.contains("candle_core") && !err.contains("   0: ") && err.lines().count() <= 3, "RUST_BACKTRACE={backtrace}:\n{err}");
    }
}

#[test]
fn run_refuses_bad_arguments_clearly() {
    let data = shared_data();
    let cases: &[(&[&str], &str)] = &[
        (&["--tasks", "no_such_task"], "no_such_task"),
        (&["--tasks", "neqa", "--log-samples"], "--log-samples needs --output-path"),
        (&["--tasks", "neqa", "--device", "cuda:0"], "only the CPU backend"),
        (&["--tasks", "neqa", "--limit", "1.5"], "--limit 1.5"),
        (&["--tasks", "neqa", "--metrics", "accuracy"], "unknown metric `accuracy`"),
        (&["--tasks", "neqa", "--batch-size", "0"], "--batch-size 0"),
        (&["--tasks", "neqa", "--timeout", "30"], "--timeout applies to scoring on a server: give --server URL"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["run", "--model", "/nonexistent/model.gguf", "--no-cache", "--data-dir", data.to_str().unwrap()];
        all.extend_from_slice(args);
        let o = invscale(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn run_a_group_reports_tasks_without_data_and_runs_the_rest() {
    let data = shared_data();
    let out = tempfile::tempdir().unwrap();
    let model = smollm2();
    let o = invscale(&[
        "run", "--model", &model, "--tasks", "inverse_scaling_mc", "--limit", "2", "--no-cache",
        "--data-dir", data.to_str().unwrap(), "--output-path", out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (err, table) = (stderr(&o), stdout(&o));
    assert!(err.contains("warning: skipping inverse_scaling_sig_figs: no data"), "{err}");
    assert!(err.contains("skipped 8 task(s) without data"), "{err}");
    for task in ["inverse_scaling_neqa", "inverse_scaling_memo_trap", "inverse_scaling_hindsight_neglect_10shot", "inverse_scaling_mc"] {
        assert!(table.contains(&format!("|{task}")), "{table}");
    }
    // The results file: lm-eval's keys, the group row, the skipped tasks, the BOS policy.
    let dir = std::fs::read_dir(out.path()).unwrap().next().unwrap().unwrap().path();
    let file = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().contains("results_")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert!(v["results"]["inverse_scaling_neqa"]["acc,none"].is_number());
    assert!(v["results"]["inverse_scaling_neqa"]["acc_norm_stderr,none"].is_number());
    assert_eq!(v["results"]["inverse_scaling_mc"]["alias"], "inverse_scaling_mc");
    assert_eq!(v["n-samples"]["inverse_scaling_neqa"], serde_json::json!({"original": 300, "effective": 2}));
    assert_eq!(v["invscale"]["bos_policy"], "auto");
    assert!(v["invscale"]["timing"]["scoring_seconds"].as_f64().is_some_and(|s| s > 0.0), "{}", v["invscale"]["timing"]);
    assert_eq!(v["invscale"]["bos_prepended"], false);
    assert_eq!(v["invscale"]["skipped"].as_array().unwrap().len(), 8);
    assert_eq!(v["group_subtasks"]["inverse_scaling_mc"].as_array().unwrap().len(), 3);
}

#[test]
fn scale_runs_a_family_and_writes_verdicts() {
    let data = shared_data();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../invscale-models/tests/fixtures/tiny");
    let models: Vec<String> = ["gpt2", "opt", "llama"].iter().map(|m| tiny.join(m).display().to_string()).collect();
    let out = tempfile::tempdir().unwrap();
    let o = invscale(&[
        "scale", "--models", &models.join(","), "--tasks", "neqa", "--limit", "40", "--no-cache", "--resamples", "200",
        "--data-dir", data.to_str().unwrap(), "--output-path", out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(md.contains("## inverse_scaling_neqa (40 documents)"), "{md}");
    // Three architectures named by their folders: three families of one size each, which get
    // no trend (a verdict is per family), and the report says so.
    for metric in ["acc", "acc_norm", "loss"] {
        assert!(md.contains(&format!("- **{metric}**: one size only, so no trend: ")), "{md}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("scaling.json")).unwrap()).unwrap();
    let task = &v["tasks"][0];
    let params: Vec<u64> = task["models"].as_array().unwrap().iter().map(|m| m["parameters"].as_u64().unwrap()).collect();
    assert!(params.windows(2).all(|w| w[0] <= w[1]), "sorted by size, smallest first: {params:?}");
    assert_eq!(v["families"].as_array().unwrap().len(), 3, "{}", v["families"]);
    assert_eq!(v["verdicts"].as_array().unwrap().len(), 0, "{}", v["verdicts"]);
    assert!(out.path().join("scaling.md").is_file());
    // The report: one HTML file with every figure inline, and each figure as SVG and PNG.
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2, "the grid and the task's figure");
    for plot in ["inverse_scaling_neqa.svg", "inverse_scaling_neqa.png", "grid_acc.svg", "grid_acc.png"] {
        let len = std::fs::metadata(out.path().join("plots").join(plot)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "plots/{plot}: {len} bytes");
    }
    // One model is not a family.
    let o = invscale(&["scale", "--models", &models[0], "--tasks", "neqa", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at least two models"), "{}", stderr(&o));

    // A family file: labels, and training tokens as the axis (order follows the tokens, not
    // the parameter counts).
    let family = out.path().join("family.toml");
    let toml = format!(
        "name = \"tiny\"\n[[model]]\npath = {:?}\nlabel = \"small\"\ntrain_tokens = 3e9\n[[model]]\npath = {:?}\nlabel = \"big\"\ntrain_tokens = 1e9\n",
        models[0], models[1]
    );
    std::fs::write(&family, toml).unwrap();
    let o = invscale(&[
        "scale", "--family", family.to_str().unwrap(), "--x", "train-tokens", "--tasks", "neqa", "--limit", "10",
        "--no-cache", "--resamples", "100", "--data-dir", data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    let (big, small) = (md.find("| big |").expect(&md), md.find("| small |").expect(&md));
    assert!(big < small, "sorted by training tokens: {md}");
    // The file's `name` makes them one family: a verdict per metric, each with its method and
    // adjusted p-value, and a warning that the family mixes architectures.
    assert!(md.contains("  - tiny: **") && md.contains("Holm-adjusted"), "{md}");
    assert!(md.contains("> warning: family `tiny` mixes architectures"), "{md}");
    // --x train-flops without them in the file is refused.
    let o = invscale(&["scale", "--family", family.to_str().unwrap(), "--x", "train-flops", "--tasks", "neqa", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("train_flops"), "{}", stderr(&o));

    // Servers in a family file (scored for real in tests/cli/server.rs): refused before any work
    // where the size cannot be known, the API is unknown, or a server flag has no server.
    let served = |extra: &str| {
        std::fs::write(&family, format!("[[model]]\npath = {:?}\nserver = \"http://127.0.0.1:9\"\n{extra}[[model]]\npath = {:?}\n", models[0], models[1])).unwrap();
        let o = invscale(&["scale", "--family", family.to_str().unwrap(), "--tasks", "neqa", "--data-dir", data.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        stderr(&o)
    };
    let e = served("");
    assert!(e.contains("is scored on a server, so its parameters cannot be counted here") && e.contains("give `params`"), "{e}");
    let e = served("params = 1e6\nserver_api = \"vlm\"\n");
    assert!(e.contains("family.toml:5") && e.contains("unknown server_api `vlm`: one of auto, openai, vllm"), "{e}");
    let o = invscale(&["scale", "--models", &models.join(","), "--concurrency", "4", "--tasks", "neqa", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--concurrency applies to models on a server: give a family file's [[model]] a `server"), "{}", stderr(&o));
}

/// A candidate dataset in the prize format, `rows` of them, with `bad_line` (1-based data row)
/// given an answer index out of range.
fn candidate_csv(dir: &Path, rows: usize, bad_row: Option<usize>) -> PathBuf {
    let mut csv = String::from("prompt,classes,answer_index\n");
    for i in 0..rows {
        let (a, b) = (i % 7 + 2, i % 5 + 3);
        let answer = if Some(i + 1) == bad_row { 5 } else { usize::from(a <= b) };
        csv += &format!("\"Q: Is {a} greater than {b}? A:\",\"[' Yes', ' No']\",{answer}\n");
    }
    let path = dir.join(format!("candidate_{rows}_{}.csv", bad_row.unwrap_or(0)));
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn check_validates_then_runs_the_family_and_gives_a_verdict() {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../invscale-models/tests/fixtures/tiny");
    let models: Vec<String> = ["gpt2", "opt", "llama"].iter().map(|m| tiny.join(m).display().to_string()).collect();
    let dir = tempfile::tempdir().unwrap();

    // A dataset with an error: the problem by file, line and field; no model is loaded.
    let bad = candidate_csv(dir.path(), 12, Some(4));
    let o = invscale(&["check", bad.to_str().unwrap(), "--models", "/no/such/model.gguf,/no/such/other.gguf", "--no-cache"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:5:", bad.display())) && err.contains("answer_index"), "{err}");
    assert!(err.contains("nothing was run") && !err.contains("/no/such/model"), "{err}");

    // A valid one: every model runs it, the verdict is printed, the report written.
    let good = candidate_csv(dir.path(), 30, None);
    let out = dir.path().join("report");
    let o = invscale(&[
        "check", good.to_str().unwrap(), "--models", &models.join(","), "--no-cache", "--resamples", "200",
        "--output-path", out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("(30 documents)"), "{text}");
    let verdict = text.lines().find(|l| l.starts_with("verdict: ")).unwrap_or_else(|| panic!("no verdict line: {text}"));
    assert!(verdict.contains("loss: "), "{verdict}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("scaling.json")).unwrap()).unwrap();
    assert_eq!(v["tasks"][0]["documents"], 30);
    assert_eq!(v["models"].as_array().unwrap().len(), 3);
    assert!(out.join("report.html").is_file());
}

/// `--device cpu+cpu`: SmolLM2's 30 layers in two stages (said on stderr), the samples' numbers
/// those of `--device cpu` exactly (issue 21; every architecture: invscale-models' layer_split).
#[test]
fn run_with_the_layers_split_gives_one_devices_samples() {
    let data = shared_data();
    let model = smollm2();
    let samples = |device: &str| -> (String, Vec<serde_json::Value>) {
        let out = tempfile::tempdir().unwrap();
        let o = invscale(&[
            "run", "--model", &model, "--tasks", "neqa", "--limit", "3", "--no-cache", "--device", device, "--log-samples",
            "--data-dir", data.to_str().unwrap(), "--output-path", out.path().to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{device}: {}", stderr(&o));
        let dir = std::fs::read_dir(out.path()).unwrap().next().unwrap().unwrap().path();
        let file = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().contains("samples_")).unwrap();
        let rows = std::fs::read_to_string(file).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["resps"].clone()).collect();
        (stderr(&o), rows)
    };
    let (one_err, one) = samples("cpu");
    let (split_err, split) = samples("cpu+cpu");
    assert!(!one_err.contains("layers split"), "{one_err}");
    assert!(split_err.contains("layers split over 2 devices (15+15 layers), 1 copy"), "{split_err}");
    assert_eq!(split.len(), 3);
    assert_eq!(split, one, "the split model's log-likelihoods are one device's");
}

/// Issue 23: a report from stored runs equals the report from invscale's own runs of the same
/// models. The stored runs are lm-evaluation-harness's own output folders (PyPI lm_eval 0.4.13,
/// `hf` backend, float32, `--log_samples`, the first 40 NeQA documents; made by
/// reference/lm_eval_stored_runs.py, the documents' text taken out), read through a family
/// file's `results = …`; the live runs score the same tiny checkpoints in-process. The sizes are
/// given (`params`) so that both reports put the models at the same place on the axis.
#[test]
fn a_report_from_lm_eval_output_folders_equals_one_from_invscale_runs() {
    let data = shared_data();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tiny = root.join("invscale-models/tests/fixtures/tiny");
    let stored = root.join("invscale-harness/tests/fixtures/lm-eval-runs");
    let dir = tempfile::tempdir().unwrap();
    let report = |name: &str, key: &str, gpt2: &Path, opt: &Path| -> serde_json::Value {
        let family = dir.path().join(format!("{name}.toml"));
        let entry = |p: &Path, label: &str, params: &str| format!("[[model]]\n{key} = {:?}\nlabel = \"{label}\"\nparams = {params}\nfamily = \"tiny\"\n", p.display().to_string());
        std::fs::write(&family, entry(gpt2, "gpt2", "1e6") + &entry(opt, "opt", "2e6")).unwrap();
        let out = dir.path().join(name);
        let o = invscale(&[
            "scale", "--family", family.to_str().unwrap(), "--tasks", "neqa", "--limit", "40", "--no-cache", "--resamples", "500",
            "--data-dir", data.to_str().unwrap(), "--output-path", out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        serde_json::from_str(&std::fs::read_to_string(out.join("scaling.json")).unwrap()).unwrap()
    };
    let from_lm_eval = report("stored", "results", &stored.join("gpt2"), &stored.join("opt"));
    let from_invscale = report("live", "path", &tiny.join("gpt2"), &tiny.join("opt"));
    let (a, b) = (&from_lm_eval["tasks"][0], &from_invscale["tasks"][0]);
    assert_eq!(a["documents"], 40);
    for (ma, mb) in a["models"].as_array().unwrap().iter().zip(b["models"].as_array().unwrap()) {
        assert_eq!(ma["model"], mb["model"]);
        assert!(ma["scored_by"].as_str().unwrap().starts_with("stored results"), "{}", ma["scored_by"]);
        // acc/acc_norm: lm-eval's per-document values, the same means and stderrs to 1e-12;
        // the loss from lm-eval's log-likelihoods, within the parity tolerance (1e-3 nats).
        for metric in ["acc", "acc_norm"] {
            let (x, y) = (&ma["metrics"][metric], &mb["metrics"][metric]);
            for k in ["value", "stderr"] {
                assert!((x[k].as_f64().unwrap() - y[k].as_f64().unwrap()).abs() < 1e-12, "{metric} {k}: {x} vs {y}");
            }
        }
        let (x, y) = (ma["metrics"]["loss"]["value"].as_f64().unwrap(), mb["metrics"]["loss"]["value"].as_f64().unwrap());
        assert!((x - y).abs() < 1e-3, "loss {x} vs {y}");
    }
    let verdicts = |r: &serde_json::Value| r["verdicts"].as_array().unwrap().clone();
    let (va, vb) = (verdicts(&from_lm_eval), verdicts(&from_invscale));
    assert_eq!(va.len(), 3, "acc, acc_norm and loss for the one family: {va:?}");
    for (x, y) in va.iter().zip(&vb) {
        for key in ["family", "task", "metric", "trend", "method", "interval_of"] {
            assert_eq!(x[key], y[key], "{key}: {x} vs {y}");
        }
        for key in ["p_value", "p_adjusted"] {
            assert!((x[key].as_f64().unwrap() - y[key].as_f64().unwrap()).abs() < 1e-9, "{key}: {x} vs {y}");
        }
    }
    // invscale's own output folders read back the same way: `run --output-path --log-samples`.
    for model in ["gpt2", "opt"] {
        let o = invscale(&[
            "run", "--model", tiny.join(model).to_str().unwrap(), "--tasks", "neqa", "--limit", "40", "--no-cache", "--log-samples",
            "--data-dir", data.to_str().unwrap(), "--output-path", dir.path().join(format!("run-{model}")).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let from_runs = report("runs", "results", &dir.path().join("run-gpt2"), &dir.path().join("run-opt"));
    for (x, y) in verdicts(&from_runs).iter().zip(&vb) {
        for key in ["trend", "p_value", "p_adjusted", "interval"] {
            assert_eq!(x[key], y[key], "{key}: {x} vs {y}");
        }
    }
    // A folder that holds no run: the error names it, exit 2.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let family = dir.path().join("bad.toml");
    std::fs::write(&family, format!("[[model]]\nresults = {:?}\nparams = 1e6\n[[model]]\npath = {:?}\n", empty.display().to_string(), tiny.join("opt").display().to_string())).unwrap();
    let o = invscale(&["scale", "--family", family.to_str().unwrap(), "--tasks", "neqa", "--limit", "40", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no results_*.json") && stderr(&o).contains(&empty.display().to_string()), "{}", stderr(&o));
    // A stored run with another --limit than the report's: said so.
    let o = invscale(&[
        "scale", "--family", dir.path().join("stored.toml").to_str().unwrap(), "--tasks", "neqa", "--limit", "50",
        "--data-dir", data.to_str().unwrap(), "--no-cache",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("holds documents 0..39") && stderr(&o).contains("--limit"), "{}", stderr(&o));
}
