"""GGUF on the GPU: the same file scored by invscale's CUDA build on the GPU and on the CPU, kept
quantized (`--dtype quantized`: on the CPU our block kernels with llama.cpp's arithmetic, checked
against llama.cpp by tests/quantized_real.rs; on the GPU candle's quantized CUDA kernels) and
dequantized (`--dtype f32`, the exact path). Per request: |Δ log-likelihood| (median, max) and
whether each document's argmax class is the same.

    python3 bench/gpu/check_quantized.py BINARY MODEL.gguf DATA_DIR [--limit N] [--reference LLAMA.json] [--out F]

With `--reference` (llama.cpp's log-likelihoods of the same file's requests, made here by
bench/gpu/llama_cpp_requests.py: llama.cpp does not run on the accelerator machine) each quantized
run is also held to llama.cpp, per request and per continuation token, and on the class of every
document llama.cpp decides by at least 0.5 nats (the test of tests/quantized_real.rs; closer
agreement is below what float order alone moves, see there).
"""
import glob, json, subprocess, sys, tempfile
from pathlib import Path

binary, model, data = sys.argv[1:4]
model = str(Path(model).resolve())  # output folders are named after it: no hidden (dot) folders for glob to skip
limit = sys.argv[sys.argv.index("--limit") + 1] if "--limit" in sys.argv else "100"
tasks = ["neqa", "memo_trap", "hindsight_neglect"]
tmp = Path(tempfile.mkdtemp())


def run(device: str, dtype: str) -> dict:
    out = tmp / f"{device}-{dtype}"
    cmd = [binary, "run", "--model", model, "--tasks", ",".join(tasks), "--data-dir", data, "--device", device,
           "--dtype", dtype, "--no-cache", "--limit", limit, "--output-path", str(out), "--log-samples"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"{device} {dtype} failed:\n{p.stderr[-3000:]}")
    lls = {}
    for path in glob.glob(str(out / "**/samples_*.jsonl"), recursive=True):
        for line in open(path, encoding="utf-8"):
            s = json.loads(line)
            lls[(Path(path).name.split("_20")[0], s["doc_id"])] = [float(r[0][0]) for r in s["resps"]]
    return lls


def compare(a: dict, b: dict) -> dict:
    deltas = sorted(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
    same = sum(a[k].index(max(a[k])) == b[k].index(max(b[k])) for k in a)
    return {"documents": len(a), "same_argmax": same, "requests": len(deltas), "median_abs_delta_ll": deltas[len(deltas) // 2],
            "max_abs_delta_ll": deltas[-1], "mean_abs_delta_ll": sum(deltas) / len(deltas)}


runs = {(device, dtype): run(device, dtype) for dtype in ["quantized", "f32"] for device in ["cpu", "cuda"]}
report = {}
for name, a, b in [("quantized: cuda vs cpu", ("cuda", "quantized"), ("cpu", "quantized")),
                   ("f32: cuda vs cpu", ("cuda", "f32"), ("cpu", "f32")),
                   ("cpu: quantized vs f32", ("cpu", "quantized"), ("cpu", "f32")),
                   ("cuda: quantized vs f32", ("cuda", "quantized"), ("cuda", "f32"))]:
    report[name] = compare(runs[a], runs[b])
    print(name, json.dumps(report[name]), flush=True)
if "--reference" in sys.argv:
    ref = json.loads(Path(sys.argv[sys.argv.index("--reference") + 1]).read_text())
    by_task = {(r["task"], r["doc"]): r for r in ref["rows"]}
    # Sample files are named after lm-eval's tasks (samples_inverse_scaling_hindsight_neglect_10shot).
    task_of = lambda sample: next((t for t, _ in by_task if t in sample), None)
    top = lambda xs: xs.index(max(xs))
    margin = lambda xs: sorted(xs)[-1] - sorted(xs)[-2]
    # f32 (the weights dequantized, activations not quantized) shows how far quantizing moves things.
    for device, dtype in runs:
        ours = runs[(device, dtype)]
        missing = [k for k in ours if (task_of(k[0]), k[1]) not in by_task]
        if missing:
            sys.exit(f"the reference has no rows for {missing[:3]}: made from other tasks or with a smaller --limit?")
        llama = {k: by_task[(task_of(k[0]), k[1])] for k in ours}
        deltas = [abs(x - y) for k in ours for x, y in zip(ours[k], llama[k]["class_ll"])]
        tokens = sum(sum(llama[k]["tokens"]) for k in ours)
        decisive = [k for k in ours if margin(llama[k]["class_ll"]) >= 0.5]
        row = {"reference": ref["tool"], "documents": len(ours), "requests": len(deltas),
               "mean_abs_delta_ll_per_request": sum(deltas) / len(deltas),
               "median_abs_delta_ll_per_request": sorted(deltas)[len(deltas) // 2],
               "max_abs_delta_ll_per_request": max(deltas), "mean_abs_delta_per_token": sum(deltas) / tokens,
               "same_class": sum(top(ours[k]) == top(llama[k]["class_ll"]) for k in ours),
               "decisive_documents": len(decisive),
               "same_class_on_decisive": sum(top(ours[k]) == top(llama[k]["class_ll"]) for k in decisive)}
        report[f"{device} {dtype} vs llama.cpp"] = row
        print(f"{device} {dtype} vs llama.cpp", json.dumps(row), flush=True)
if "--out" in sys.argv:
    Path(sys.argv[sys.argv.index("--out") + 1]).write_text(json.dumps(report, indent=1))
