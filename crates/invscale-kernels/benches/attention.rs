//! The fused CPU attention (`cpu::attention`) on a long prompt's shapes, each vector path this
//! CPU runs, against PyTorch's `scaled_dot_product_attention` (causal, float32) on the same
//! threads in the same run: GFLOP/s counting the causal half of the score and value products
//! (`2 · 2 · heads · d · Σ keys seen`), best of a second each.
//!
//!     cargo bench -p invscale-kernels --bench attention   # INVSCALE_PYTHON: a Python with torch

#[path = "common.rs"]
mod common;


use invscale_kernels::cpu::attention::{AttentionKernel, Dims, attention_with};
use invscale_kernels::cpu::test_values as values;

/// (what, heads, kv_heads, rows, head_dim).
const SHAPES: &[(&str, usize, usize, usize, usize)] = &[
    ("SmolLM2 a 774-token pass (9 heads, 3 kv, d 64)", 9, 3, 774, 64),
    ("Gemma3-270M a 774-token pass (4 heads, 1 kv, d 256)", 4, 1, 774, 256),
    ("Qwen2.5-0.5B a 774-token pass (14 heads, 2 kv, d 64)", 14, 2, 774, 64),
];

const TORCH: &str = r#"
import sys, time, torch
import torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1]))
for spec in sys.argv[2:]:
    h, kv, t, d = map(int, spec.split("x"))
    q, k, v = torch.randn(1, h, t, d), torch.randn(1, kv, t, d), torch.randn(1, kv, t, d)
    f = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    f()
    best, t0 = float("inf"), time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        s = time.perf_counter(); f(); best = min(best, time.perf_counter() - s)
    print(best)
"#;

fn main() {
    let threads = candle_core::utils::get_num_threads();
    let specs: Vec<String> = SHAPES.iter().map(|(_, h, kv, t, d)| format!("{h}x{kv}x{t}x{d}")).collect();
    let torch = common::torch_numbers(TORCH, threads, &specs);
    println!("{threads} threads; GFLOP/s of the causal products (best of 1 s)");
    println!("| shape | AVX-512 | AVX2 | PyTorch sdpa | best / PyTorch |");
    println!("|---|---:|---:|---:|---:|");
    for (i, &(what, heads, kv_heads, rows, d)) in SHAPES.iter().enumerate() {
        let dims = Dims { heads, kv_heads, rows, keys: rows, head_dim: d };
        let (q, k, v) = (values(heads * rows * d, 1), values(kv_heads * rows * d, 2), values(kv_heads * rows * d, 3));
        let mut mask = vec![f32::NEG_INFINITY; rows * rows];
        for r in 0..rows {
            mask[r * rows..r * rows + r + 1].fill(0.0);
        }
        let seen = (rows * (rows + 1) / 2) as f64;
        let flops = 4.0 * (heads * d) as f64 * seen;
        let rate = |kernel: AttentionKernel| {
            kernel.runs(d).then(|| flops / common::best_seconds(|| drop(attention_with(kernel, &q, &k, &v, &mask, dims, 0.125, false))) / 1e9)
        };
        let (a512, a2) = (rate(AttentionKernel::Avx512), rate(AttentionKernel::Avx2));
        let t = torch.as_ref().and_then(|t| t.get(i)).map(|s| flops / s / 1e9);
        let fmt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
        let best = match (a512, a2) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let ratio = best.zip(t).map_or("–".into(), |(b, t)| format!("{:.2}", b / t));
        println!("| {what} | {} | {} | {} | {ratio} |", fmt(a512), fmt(a2), fmt(t));
    }
}
