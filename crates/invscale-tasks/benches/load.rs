//! Data-loading benchmark: a sig-figs-shaped release file (20,897 rows, ~15 MB, the size of
//! the official sig-figs_classification.jsonl) read, mapped and validated, against Python
//! reading the same file the way the prize pipeline does (json.loads + ast.literal_eval on
//! `classes`), in the same run. Synthetic data (the real sig-figs file is not available here).
//!
//!     cargo bench -p invscale-tasks --bench load
//!
//! Prints medians over repeated runs and the ratio; never used as a test.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use invscale_tasks::locate::Origin;
use invscale_tasks::registry::task_for_data_file;

const ROWS: usize = 20_897;
const RUNS: usize = 7;

/// A deterministic pseudo-random stream (no dependency needed for test data).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn number(&mut self) -> String {
        format!("{}.{:08}", self.next() % 100_000, self.next() % 100_000_000)
    }
}

/// One row in the official release serialization (pandas `to_json(orient="records", lines=True)`:
/// compact, ASCII, `/` escaped, classes as a Python list literal in a string).
fn row(rng: &mut Lcg) -> String {
    let mut prompt = String::from("Please round each number to the stated number of significant digits.\n\n");
    for _ in 0..5 {
        let n = rng.number();
        prompt.push_str(&format!("Express {n} to {} significant digits.\nA. {}\nB. {}\nAnswer: A\n\n", 2 + rng.next() % 3, rng.number(), rng.number()));
    }
    prompt.push_str(&format!("Express {} to 2 significant digits.\nA. {}\nB. {}\nAnswer:", rng.number(), rng.number(), rng.number()));
    let value = serde_json::json!({
        "prompt": prompt,
        "classes": "[' A', ' B']",
        "answer_index": rng.next() % 2,
        "round": 2,
        "part": 1,
    });
    value.to_string().replace('/', "\\/")
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

const PYTHON_READER: &str = r#"
import ast, json, sys, time
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    docs = []
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            docs.append((r["prompt"], ast.literal_eval(r["classes"]), int(r["answer_index"])))
    assert len(docs) == int(sys.argv[3])
    times.append(time.perf_counter() - t)
times.sort()
print(times[len(times) // 2])
"#;

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special: keep it quick then.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sig-figs-shaped.jsonl");
    let mut rng = Lcg(20230301);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for _ in 0..ROWS {
        writeln!(out, "{}", row(&mut rng)).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let bytes = std::fs::metadata(&path).unwrap().len();

    let spec = task_for_data_file(&path).unwrap();
    let files = vec![(path.clone(), Origin::Path)];
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let dataset = invscale_tasks::load(&spec, &files).unwrap();
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(dataset.docs.len(), ROWS);
    }
    let ours = median(times);

    println!("invscale data-load benchmark");
    println!("  machine: {} logical CPU(s); build profile: {}", std::thread::available_parallelism().map_or(0, |n| n.get()), if cfg!(debug_assertions) { "debug (numbers not meaningful)" } else { "release" });
    println!("  file: sig-figs-shaped release JSONL (synthetic), {ROWS} rows, {:.1} MB", bytes as f64 / 1e6);
    println!("  invscale load + validate + sha256: median {:.3} s over {RUNS} runs", ours);
    match python_reference(&path) {
        Some(py) => {
            println!("  python json.loads + ast.literal_eval (prize pipeline's reading): median {py:.3} s over {RUNS} runs");
            println!("  ratio: invscale is {:.1}x faster", py / ours);
        }
        None => println!("  python reference: python3 not available, not measured"),
    }
}

fn python_reference(path: &Path) -> Option<f64> {
    let out = Command::new("python3")
        .args(["-c", PYTHON_READER, path.to_str()?, &RUNS.to_string(), &ROWS.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}
