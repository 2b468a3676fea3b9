//! The exact CPU path's f32 matrix product (`cpu::gemm`, weights packed at load) against
//! candle's (`Tensor::matmul` with the transposed weight, as the layers called it before) and
//! PyTorch's (MKL; `torch.matmul` on `x @ W.T`, float32) on the same cores in the same run, on
//! the linear layers' shapes of SmolLM2-135M and Gemma-3-270M (a 412-token pass, and the LM
//! head's 32 and 8 rows): GFLOP/s, best of a second's repetitions each.
//!
//!     cargo bench -p invscale-kernels --bench gemm        # INVSCALE_PYTHON: a Python with torch
//!
//! PyTorch runs with as many threads as candle (RAYON_NUM_THREADS, else the physical cores).
//! `INVSCALE_BENCH_JSON=FILE` also writes the rows as JSON (bench/cpu/benchmark.py reads it).

#[path = "common.rs"]
mod common;


use candle_core::{Device, Tensor};
use invscale_kernels::cpu::gemm::{GemmKernel, PackedMatrix};

/// (what, rows, in, out).
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("SmolLM2 q/o 576→576", 412, 576, 576),
    ("SmolLM2 k/v 576→192", 412, 576, 192),
    ("SmolLM2 gate/up 576→1536", 412, 576, 1536),
    ("SmolLM2 down 1536→576", 412, 1536, 576),
    ("SmolLM2 gate/up, a 774-token pass", 774, 576, 1536),
    ("SmolLM2 down, a 774-token pass", 774, 1536, 576),
    ("SmolLM2 head 576→49152, 32 rows", 32, 576, 49152),
    ("Gemma3 q 640→1024", 412, 640, 1024),
    ("Gemma3 gate/up 640→2048", 412, 640, 2048),
    ("Gemma3 down 2048→640", 412, 2048, 640),
    ("Gemma3 head 640→262144, 8 rows", 8, 640, 262144),
];

fn best_rate(flops: f64, f: impl FnMut()) -> f64 {
    flops / common::best_seconds(f) / 1e9
}

const TORCH: &str = r#"
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
for spec in sys.argv[2:]:
    m, k, n = map(int, spec.split("x"))
    x, w = torch.randn(m, k), torch.randn(n, k)
    x @ w.T
    best, t0 = float("inf"), time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        t = time.perf_counter(); x @ w.T; best = min(best, time.perf_counter() - t)
    print(2 * m * k * n / best / 1e9)
"#;

fn main() {
    let threads = candle_core::utils::get_num_threads();
    let specs: Vec<String> = SHAPES.iter().map(|(_, m, k, n)| format!("{m}x{k}x{n}")).collect();
    let torch = common::torch_numbers(TORCH, threads, &specs);
    println!("{threads} threads, kernel {:?}; GFLOP/s (best of 1 s)", GemmKernel::detect());
    println!("| shape | invscale | candle | PyTorch | invscale / PyTorch |");
    println!("|---|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for (i, &(what, m, k, n)) in SHAPES.iter().enumerate() {
        let flops = 2.0 * (m * k * n) as f64;
        let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
        let packed = PackedMatrix::pack(&w.flatten_all().unwrap().to_vec1::<f32>().unwrap(), n, k);
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut out = vec![0f32; m * n];
        let ours = best_rate(flops, || packed.matmul(&xs, m, &mut out));
        let candle = best_rate(flops, || {
            let _ = x.matmul(&w.t().unwrap()).unwrap();
        });
        let t = torch.as_ref().and_then(|t| t.get(i).copied());
        let fmt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
        println!("| {what} | {ours:.0} | {candle:.0} | {} | {} |", fmt(t), t.map_or("–".into(), |t| format!("{:.2}", ours / t)));
        let torch_json = t.map_or("null".into(), |t| format!("{t:.1}"));
        rows.push(format!(
            r#"{{"shape": "{what}", "rows": {m}, "in": {k}, "out": {n}, "invscale": {ours:.1}, "candle": {candle:.1}, "pytorch": {torch_json}}}"#
        ));
    }
    if let Ok(path) = std::env::var("INVSCALE_BENCH_JSON") {
        let kernel = format!("{:?}", GemmKernel::detect());
        let json = format!("{{\"threads\": {threads}, \"kernel\": \"{kernel}\", \"gflops\": [\n  {}\n]}}\n", rows.join(",\n  "));
        std::fs::write(&path, json).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
}
