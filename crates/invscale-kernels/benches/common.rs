//! What the kernel benchmarks share: PyTorch's figures from a script run by $INVSCALE_PYTHON.

use std::process::Command;
use std::time::Instant;

/// Runs `script` with the thread count and `specs` as arguments; one number a line back, or
/// `None` (said on stderr) where that Python has no torch.
pub fn torch_numbers(script: &str, threads: usize, specs: &[String]) -> Option<Vec<f64>> {
    let python = std::env::var("INVSCALE_PYTHON").unwrap_or_else(|_| "python3".into());
    let numbers = Command::new(&python)
        .args(["-c", script, &threads.to_string()])
        .args(specs)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect());
    if numbers.is_none() {
        eprintln!("PyTorch not found ({python} -c 'import torch' failed): set INVSCALE_PYTHON to a Python with torch");
    }
    numbers
}

/// The best time of `f` over a second of repetitions (after one to warm up).
pub fn best_seconds(mut f: impl FnMut()) -> f64 {
    f();
    let (mut best, started) = (f64::INFINITY, Instant::now());
    while started.elapsed().as_secs_f64() < 1.0 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}
