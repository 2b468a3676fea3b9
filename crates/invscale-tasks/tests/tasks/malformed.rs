//! The malformed-input corpus (fixtures/malformed/cases.toml): every file gets exactly its
//! expected diagnostics, with file, location and field, and nothing panics.

use std::path::{Path, PathBuf};

use invscale_tasks::Registry;
use invscale_tasks::dataset::check;
use invscale_tasks::diag::{Diagnostic, Location, Severity};
use invscale_tasks::locate::Origin;
use invscale_tasks::registry::task_for_data_file;
use invscale_tasks::spec::Source;
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    file: String,
    #[serde(rename = "as")]
    as_task: Option<String>,
    expect: Vec<Expect>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Expect {
    severity: String,
    at: String,
    field: Option<String>,
    contains: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/malformed")
}

fn location_text(l: Location) -> String {
    match l {
        Location::File => "file".into(),
        Location::Line(n) => format!("line {n}"),
        Location::Row(n) => format!("row {n}"),
    }
}

fn matches(d: &Diagnostic, e: &Expect) -> bool {
    let severity = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    severity == e.severity && location_text(d.location) == e.at && d.field == e.field && d.message.contains(&e.contains)
}

fn diagnose(case: &Case) -> Vec<Diagnostic> {
    let path = corpus_dir().join(&case.file);
    let spec = match &case.as_task {
        Some(name) => {
            let t = Registry::builtin().task(name).expect("known task").clone();
            invscale_tasks::TaskSpec { source: Source { path: Some(path.clone()), ..t.source.clone() }, ..t }
        }
        None => match task_for_data_file(&path) {
            Ok(spec) => spec,
            // An unreadable file still gets a task: the prize classification schema.
            Err(_) => task_for_data_file(&corpus_dir().join("crlf.csv"))
                .map(|s| invscale_tasks::TaskSpec { source: Source { path: Some(path.clone()), ..s.source }, ..s })
                .unwrap(),
        },
    };
    let (_, diagnostics) = check(&spec, &[(path, Origin::Path)]);
    diagnostics
}

#[test]
fn every_malformed_input_gets_its_precise_diagnostics() {
    let text = std::fs::read_to_string(corpus_dir().join("cases.toml")).unwrap();
    let corpus: Corpus = toml::from_str(&text).unwrap();
    assert!(corpus.case.len() >= 30, "the corpus must keep at least 30 cases");
    let mut failures = Vec::new();
    for case in &corpus.case {
        let got = diagnose(case);
        let all_match = got.len() == case.expect.len()
            && case.expect.iter().all(|e| got.iter().any(|d| matches(d, e)))
            && got.iter().all(|d| d.file.ends_with(&case.file));
        if !all_match {
            let got: Vec<String> = got.iter().map(|d| format!("    {d}")).collect();
            failures.push(format!("{}:\n  expected {:?}\n  got:\n{}", case.file, case.expect, got.join("\n")));
        }
    }
    assert!(failures.is_empty(), "{} case(s) differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_corpus_file_is_listed_in_cases_toml() {
    let text = std::fs::read_to_string(corpus_dir().join("cases.toml")).unwrap();
    let corpus: Corpus = toml::from_str(&text).unwrap();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != "cases.toml" {
            assert!(corpus.case.iter().any(|c| c.file == name), "{name} has no expectation in cases.toml");
        }
    }
}

#[test]
fn diagnostics_render_with_file_line_and_field() {
    let case = Case { file: "gold_out_of_range.jsonl".into(), as_task: None, expect: vec![] };
    let d = diagnose(&case).remove(0);
    let text = d.to_string();
    assert!(
        text.ends_with("malformed/gold_out_of_range.jsonl:2: error: field `answer_index`: gold index 2 is out of range: there are 2 classes (valid: 0..=1)"),
        "{text}"
    );
}
