"""Speed of `--dtype quantized` on the GPU: invscale's product (each matrix dequantized, TF32 with
f32 sums) against candle's quantized CUDA kernels (`INVSCALE_GPU_QUANTIZED_KERNELS=candle`, its
port of llama.cpp's MMQ/MMVQ) and against the same file dequantized to bf16, on random-weight
GGUFs of a real shape (random_gguf.py; timing only, never accuracy) over the three real tasks.

    python3 bench/gpu/quantized_speed.py BINARY TOKENIZER.gguf DATA_DIR OUT.json [--layers 8] [--types q4_0,q8_0] [--repeats 2]

Each setting runs once first (PTX JIT, page cache), then --repeats times; scoring time (the
results file's) and end-to-end wall time, unique tokens/s, and the model FLOP rate
(2 × matrix parameters × unique tokens / scoring time).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("binary")
ap.add_argument("tokenizer_gguf")
ap.add_argument("data_dir")
ap.add_argument("out")
ap.add_argument("--layers", type=int, default=8)
ap.add_argument("--types", default="q4_0,q8_0")
ap.add_argument("--repeats", type=int, default=2)
args = ap.parse_args()
tmp = Path(tempfile.mkdtemp())
here = Path(__file__).parent
settings = {"tf32 (invscale)": ("quantized", {}), "candle kernels": ("quantized", {"INVSCALE_GPU_QUANTIZED_KERNELS": "candle"}),
            "bf16 (dequantized at load)": ("bf16", {})}


def run(model: Path, dtype: str, env: dict, out: Path) -> dict:
    cmd = [args.binary, "run", "--model", str(model), "--tasks", "neqa,memo_trap,hindsight_neglect", "--data-dir",
           args.data_dir, "--device", "cuda", "--dtype", dtype, "--no-cache", "--output-path", str(out)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **env))
    wall = time.perf_counter() - t
    if p.returncode:
        sys.exit(f"{cmd} failed:\n{p.stderr[-3000:]}")
    [results] = glob.glob(str(out / "**/results_*.json"), recursive=True)
    r = json.loads(Path(results).read_text())["invscale"]
    subprocess.run(["rm", "-rf", str(out)])
    return {"wall_seconds": wall, "scoring_seconds": r["timing"]["scoring_seconds"],
            "tokens_computed": sum(t["tokens_computed"] for t in r["tasks"].values())}


report = {"layers": args.layers, "shape": "llama3-8b", "rows": []}
for qtype in args.types.split(","):
    model = tmp / f"random-{qtype}.gguf"
    subprocess.run([sys.executable, str(here / "random_gguf.py"), args.tokenizer_gguf, str(model), "--layers",
                    str(args.layers), "--type", qtype], check=True)
    hidden, ffn, kv = 4096, 14336, 1024
    params = args.layers * (2 * hidden * hidden + 2 * kv * hidden + 3 * ffn * hidden)
    for name, (dtype, env) in settings.items():
        run(model, dtype, env, tmp / "warm")
        runs = [run(model, dtype, env, tmp / f"r{i}") for i in range(args.repeats)]
        best = min(runs, key=lambda x: x["scoring_seconds"])
        row = {"type": qtype, "setting": name, "runs": runs, "best_scoring_seconds": best["scoring_seconds"],
               "unique_tokens_per_second": best["tokens_computed"] / best["scoring_seconds"],
               "block_tflops": 2 * params * best["tokens_computed"] / best["scoring_seconds"] / 1e12}
        report["rows"].append(row)
        print(f"{qtype} {name}: scoring {row['best_scoring_seconds']:.2f} s (runs {[round(r['scoring_seconds'], 2) for r in runs]}), "
              f"wall {best['wall_seconds']:.1f} s, {row['unique_tokens_per_second']:.0f} unique tokens/s, "
              f"{row['block_tflops']:.0f} TFLOP/s in the blocks' products", flush=True)
    model.unlink()
Path(args.out).write_text(json.dumps(report, indent=1))
