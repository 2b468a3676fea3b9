//! Never losing work: `invscale run` killed with SIGKILL at several points, then the same command
//! again, gives the same results and samples as a run that was never interrupted, and recomputes
//! none of the requests that had finished (each rerun's log says how many it took from the cache).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DOCS: usize = 24; // NeQA documents: 48 requests

fn model() -> PathBuf {
    invscale_models::testing::model_path(invscale_models::testing::SMOLLM2)
}

fn command(cache: &Path, out: &Path, limit: usize) -> Command {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/inverse_scaling/official_release");
    assert!(data.is_dir(), "needs the project's shared/ folder beside the checkout ({})", data.display());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_invscale"));
    // Two requests per forward pass: a batch per document, so the cache grows a document at a time.
    cmd.args(["run", "--tasks", "neqa", "--limit", &limit.to_string(), "--log-samples", "--batch-size", "2"])
        .arg("--model")
        .arg(model())
        .arg("--data-dir")
        .arg(data)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--output-path")
        .arg(out)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("INVSCALE_DATA_DIR");
    cmd
}

/// Complete, valid-looking lines in the cache folder's score file.
fn cached_lines(cache: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(cache) else { return 0 };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .map(|text| text.matches('\n').count())
        .sum()
}

/// The results file and samples file of a finished run, with the fields that legitimately
/// differ between runs taken out: times, the command, and invscale's per-run request counts.
fn outputs(out: &Path) -> (Value, String) {
    let dir = std::fs::read_dir(out).unwrap().next().unwrap().unwrap().path();
    let mut results = None;
    let mut samples = None;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("results_") {
            results = Some(serde_json::from_str::<Value>(&std::fs::read_to_string(&p).unwrap()).unwrap());
        } else if name.starts_with("samples_") {
            samples = Some(std::fs::read_to_string(&p).unwrap());
        }
    }
    let mut results = results.expect("a results file");
    let obj = results.as_object_mut().unwrap();
    for k in ["date", "start_time", "end_time", "total_evaluation_time_seconds"] {
        obj.remove(k).unwrap_or_else(|| panic!("results have `{k}`"));
    }
    // The cache's own path differs between the two runs' folders.
    obj["config"].as_object_mut().unwrap().remove("use_cache").unwrap();
    let inv = obj["invscale"].as_object_mut().unwrap();
    inv.remove("command").unwrap();
    inv.remove("score_cache").unwrap();
    // Wall-clock times, like the top level's.
    inv.remove("timing").unwrap();
    for t in inv["tasks"].as_object_mut().unwrap().values_mut() {
        let t = t.as_object_mut().unwrap();
        for k in ["requests_cached", "requests_computed", "tokens_computed"] {
            t.remove(k).unwrap();
        }
    }
    (results, samples.expect("a samples file"))
}

/// "N requests: C computed, K from the score cache" from a run's log.
fn counts(log: &str) -> (usize, usize, usize) {
    let line = log.lines().find(|l| l.contains(" computed, ") && l.contains("from the score cache;")).expect(log);
    let nums: Vec<usize> = line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).take(3).map(|s| s.parse().unwrap()).collect();
    (nums[0], nums[1], nums[2])
}

#[test]
fn killed_runs_resume_without_recomputing_and_give_identical_results() {
    let tmp = tempfile::tempdir().unwrap();
    // The reference: one run, never interrupted.
    let (ref_cache, ref_out) = (tmp.path().join("ref-cache"), tmp.path().join("ref-out"));
    let o = command(&ref_cache, &ref_out, DOCS).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(counts(&String::from_utf8_lossy(&o.stderr)), (2 * DOCS, 2 * DOCS, 0));
    let reference = outputs(&ref_out);

    // The same command, killed three times as the cache fills, then run to the end.
    let (cache, out) = (tmp.path().join("cache"), tmp.path().join("out"));
    let mut on_record = 0;
    for kill_at in [6, 20, 34] {
        let mut child = command(&cache, &out, DOCS).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        while cached_lines(&cache) < kill_at {
            assert!(Instant::now() < deadline, "the run did not reach {kill_at} cached requests");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the run ended ({status}) before it could be killed at {kill_at}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        let o = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&o.stderr);
        // It had found everything finished before it, and written no results.
        assert!(log.contains(&format!("({on_record} finished requests on record)")), "{log}");
        assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(), "a killed run wrote results");
        on_record = cached_lines(&cache);
        assert!(on_record >= kill_at);
    }
    let o = command(&cache, &out, DOCS).output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    let (requests, computed, from_cache) = counts(&log);
    assert_eq!(requests, 2 * DOCS);
    assert_eq!(from_cache, on_record, "every request finished before the last kill is taken from the cache: {log}");
    assert_eq!(computed, requests - on_record, "nothing finished is recomputed: {log}");
    assert!(!log.contains("corrupt"), "{log}");

    let resumed = outputs(&out);
    assert_eq!(resumed.1, reference.1, "samples differ from the uninterrupted run");
    assert_eq!(resumed.0, reference.0, "results differ from the uninterrupted run");
}

#[test]
fn a_corrupt_cache_entry_is_reported_and_recomputed() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, out) = (tmp.path().join("cache"), tmp.path().join("out"));
    assert!(command(&cache, &out, 3).output().unwrap().status.success());
    let reference = outputs(&out);
    // Change one digit of one stored log-likelihood.
    let file = std::fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path();
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let fields: Vec<&str> = lines[2].split(' ').collect();
    let ll = fields[2];
    let altered_ll: String = ll.chars().rev().enumerate().map(|(i, c)| if i == 1 && c.is_ascii_digit() { char::from(b'0' + (c as u8 - b'0' + 1) % 10) } else { c }).collect::<Vec<_>>().into_iter().rev().collect();
    assert_ne!(ll, altered_ll);
    lines[2] = lines[2].replacen(ll, &altered_ll, 1);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    std::fs::remove_dir_all(&out).unwrap();

    let o = command(&cache, &out, 3).output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(log.contains(":3: corrupt entry (checksum mismatch); not trusted, it will be recomputed"), "{log}");
    assert_eq!(counts(&log), (6, 1, 5), "{log}");
    assert_eq!(outputs(&out), reference);
}
